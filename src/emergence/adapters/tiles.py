"""Adapters of families that cut the image into a grid of equal tiles plus a thumbnail: InternVL 2.5 / 3 and Aya
Vision and GOT-OCR2 (``GotOcr2ImageProcessor``'s ``crop_to_patches``), LFM2-VL, Cohere2-Vision, Llama 4, Ovis2; and the
shared helpers for tiled layouts."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..errors import LayoutError, UnsupportedModelError
from ..layouts.base import VisualLayout
from ..layouts.context import LayoutContext
from .base import Adapter, scoped_forward_hook
from .registry import register_adapter
from .generic import grid_view

__all__ = ["AyaVisionAdapter", "Cohere2VisionAdapter", "GotOcr2Adapter", "InternVLAdapter", "Lfm2VlAdapter",
           "Llama4Adapter", "Ovis2Adapter", "cohere2_tile_grid", "got_ocr2_tile_grid", "max_res_without_distortion",
           "runs", "separator_count", "tiled_layout"]


def _side(value: Any) -> int:
    return int(value if isinstance(value, int) else value[0])


def shuffled_tile_side(ctx: LayoutContext) -> tuple[int, int]:
    """``(tile px, tokens per tile side)`` of a tower whose patch grid is pixel-shuffled by ``downsample_factor``
    (Aya Vision, Cohere2-Vision)."""
    vc = ctx.vision_config
    tile, patch = _side(vc.image_size), _side(vc.patch_size)
    return tile, tile // patch // int(getattr(ctx.config, "downsample_factor", 1))


def got_ocr2_tile_grid(ctx: LayoutContext, tile_hw: tuple[int, int]) -> tuple[int, int, bool]:
    """``(rows, cols, thumbnail)`` of ``GotOcr2ImageProcessor``'s ``crop_to_patches`` for this image.

    The number of views is read from ``pixel_values`` (processors such as InternVL's turn ``crop_to_patches`` on in
    their call defaults whatever the image processor's attribute says); the grid is the processor's own
    closest-aspect canvas rule with its ``min_patches`` / ``max_patches``, and must account for exactly those views
    (tiles, then a thumbnail when there is more than one tile).
    """
    pv = ctx.input("pixel_values")
    views = int(pv.shape[0]) if pv.ndim == 4 else int(np.prod(pv.shape[:-3]))
    if views == 1:
        return 1, 1, False
    ip = ctx.image_processor
    if ip is None:
        raise LayoutError(f"{ctx.model_class} layout needs the image processor (its min_patches / max_patches)")
    try:
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas
    except ImportError:  # pragma: no cover - older layouts of transformers
        from transformers.models.got_ocr2.image_processing_got_ocr2 import get_optimal_tiled_canvas
    h, w = ctx.image_size
    lo, hi = int(getattr(ip, "min_patches", 1)), int(getattr(ip, "max_patches", 12))
    cols, rows = get_optimal_tiled_canvas((h, w), tile_hw, lo, hi)
    if rows * cols + 1 == views:
        return int(rows), int(cols), True
    # The processor ran with other limits than the image processor's attributes (processors' call defaults, e.g.
    # GotOcr2Processor's max_patches=12): accept the grid only if every limit that yields this many tiles agrees.
    grids = _grids_with_tile_count(lambda m, low: get_optimal_tiled_canvas((h, w), tile_hw, low, m), views - 1, lo)
    if len(grids) == 1:
        cols, rows = grids.pop()
        return int(rows), int(cols), True
    raise LayoutError(
        f"{ctx.model_class}: pixel_values hold {views} views; the tile rule gives {rows}x{cols} tiles + a thumbnail "
        f"with the image processor's min_patches={lo}, max_patches={hi}, and the limits that give {views - 1} tiles "
        f"disagree on the grid ({sorted(grids)}); process with the image processor's own min_patches / max_patches")


def _grids_with_tile_count(rule: Any, tiles: int, low: int) -> set[tuple[int, int]]:
    """The distinct ``(cols, rows)`` grids of ``tiles`` tiles that ``rule(max_tiles, min_tiles)`` picks for some
    tile limits (``max_tiles`` from ``tiles`` up to ``4 * tiles + 12``; ``min_tiles`` the given one or 1)."""
    found: set[tuple[int, int]] = set()
    for low_limit in sorted({low, 1}):
        for limit in range(max(tiles, low_limit), 4 * tiles + 13):
            cols, rows = (int(v) for v in rule(limit, low_limit))
            if cols * rows == tiles:
                found.add((cols, rows))
    return found


def tiled_layout(ctx: LayoutContext, rows: int, cols: int, per_side: tuple[int, int], thumbnail: bool,
                 family: str, starts: list[int] | None = None, tile_wh: tuple[float, float] | None = None,
                 thumbnail_grid: tuple[int, int] | None = None, thumbnail_name: str = "thumbnail",
                 meta: dict[str, Any] | None = None) -> VisualLayout:
    """Tiles of a canvas the image was resized onto (``cols x rows`` tiles, raster order), each a
    ``per_side = (grid rows, grid cols)`` grid of tokens in raster order, and a thumbnail: the whole image resized to
    one view.

    Args:
        starts: index (into the visual tokens) where each view's tokens begin, tiles in raster order then the
            thumbnail (wherever it sits in the prompt); default: back to back, thumbnail last, and the token count
            checked.
        tile_wh: one tile's size in original pixels; default ``(width / cols, height / rows)`` (the image resized
            onto the canvas without padding). Larger when the canvas pads the image (Llama 4).
        thumbnail_grid: the thumbnail's token grid when it differs from the tiles' (LFM2-VL).
        meta: extra layout metadata.
    """
    positions = ctx.image_positions()
    gr, gc = per_side
    thumb_grid = thumbnail_grid or per_side
    if starts is None:
        starts = [k * gr * gc for k in range(rows * cols + (1 if thumbnail else 0))]
        total = rows * cols * gr * gc + (thumb_grid[0] * thumb_grid[1] if thumbnail else 0)
        if len(positions) != total:
            raise LayoutError(
                f"{ctx.model_class}: {len(positions)} image tokens, but {rows}x{cols} tiles"
                f"{' + a thumbnail' if thumbnail else ''} of {gr}x{gc} tokens make {total}")
    h, w = ctx.image_size
    tw, th = tile_wh or (w / cols, h / rows)
    views = [grid_view(f"tile_{r}_{c}", gr, gc, starts[r * cols + c], (c * tw, r * th, (c + 1) * tw, (r + 1) * th),
                       kind="tiles")
             for r in range(rows) for c in range(cols)]
    if thumbnail:
        views.append(grid_view(thumbnail_name, *thumb_grid, starts[-1], (0.0, 0.0, float(w), float(h)),
                               kind="global"))
    info: dict[str, Any] = {"tile_grid": [rows, cols], "thumbnail": thumbnail, "tokens_per_tile": [gr, gc]}
    return VisualLayout(positions, ctx.image_size, views, family=family, meta={**info, **(meta or {})})


def separator_count(ctx: LayoutContext, positions: np.ndarray, name: str) -> int:
    """How many tokens whose text contains ``name`` sit between the first and last visual token (tile separators)."""
    tok = ctx.tokenizer
    if tok is None:
        raise LayoutError(f"{ctx.model_class} layout needs the tokenizer to read the tile separators ({name})")
    ids = ctx.input_ids.detach().cpu().reshape(-1).numpy()
    return sum(name in str(t) for t in tok.convert_ids_to_tokens([int(i) for i in ids[positions[0]:positions[-1]]]))


class InternVLAdapter(Adapter):
    family = "InternVL 2.5 / 3 (tiles + thumbnail)"
    architectures = ("InternVLForConditionalGeneration",)
    summary = ("`crop_to_patches` tile grid (the processor's closest-aspect canvas, no padding) + thumbnail; "
               "pixel-shuffled square per tile")
    tested = "tiny_internvl"
    batched = True
    multi_image = True

    @staticmethod
    def _side(ctx: LayoutContext) -> int:
        vc = ctx.vision_config
        tile, patch = _side(vc.image_size), _side(vc.patch_size)
        return int(tile // patch * float(getattr(ctx.config, "downsample_ratio", 0.5)))

    def split_images(self, ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict]]:
        """Each image is one contiguous run of image tokens (between ``<img>`` and ``</img>``) of ``views x side^2``
        tokens; ``pixel_values`` holds every image's views back to back."""
        positions = ctx.image_positions()
        starts, lengths = runs(positions)
        per_view = self._side(ctx) ** 2
        if len(starts) != count or np.any(lengths % per_view):
            raise LayoutError(f"{ctx.model_class}: {count} images were given, but the prompt has {len(starts)} runs "
                              f"of image tokens of lengths {lengths.tolist()} (views of {per_view} tokens each)")
        pv = ctx.input("pixel_values")
        views = np.cumsum([0] + [int(n) // per_view for n in lengths])
        if pv.shape[0] != views[-1]:
            raise LayoutError(f"{ctx.model_class}: the image tokens imply {views[-1]} views, pixel_values holds "
                              f"{pv.shape[0]}")
        return [(positions[s:s + n], {**ctx.inputs, "pixel_values": pv[views[k]:views[k + 1]]})
                for k, (s, n) in enumerate(zip(starts, lengths))]

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        side = self._side(ctx)
        vc = ctx.vision_config
        tile = _side(vc.image_size)
        positions = ctx.image_positions()
        if len(positions) == 0 or np.any(np.diff(positions) != 1):
            raise LayoutError(f"{ctx.model_class}: expected one contiguous block of image tokens for one image "
                              "(several images: pass every image, probe.generate(image=[...]))")
        rows, cols, thumb = got_ocr2_tile_grid(ctx, (tile, tile))
        return tiled_layout(ctx, rows, cols, (side, side), thumb, family="internvl")


def runs(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, lengths)`` of the runs of consecutive positions, as indices into ``positions``."""
    if len(positions) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    breaks = np.nonzero(np.diff(positions) != 1)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks + 1, [len(positions)]])
    return starts, ends - starts


class AyaVisionAdapter(Adapter):
    family = "Aya Vision (tiles + global)"
    architectures = ("AyaVisionForConditionalGeneration",)
    summary = ("`crop_to_patches` tile grid, each run after its `TILE_i` marker, then the global image after "
               "`TILE_GLOBAL`; pixel-shuffled square per tile")
    tested = "tiny_aya_vision"

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        tile, side = shuffled_tile_side(ctx)
        starts, lengths = runs(ctx.image_positions())
        rows, cols, thumb = got_ocr2_tile_grid(ctx, (tile, tile))
        n_views = rows * cols + int(thumb)
        if len(starts) != n_views or np.any(lengths != side * side):
            raise LayoutError(f"{ctx.model_class}: image-token runs of lengths {lengths.tolist()}, but {rows}x{cols} "
                              f"tiles{' + a global image' if thumb else ''} of {side}x{side} tokens were expected")
        return tiled_layout(ctx, rows, cols, (side, side), thumb, family="aya_vision", starts=starts.tolist())


_TILE_MARK = re.compile(r"<\|img_row_(\d+)_col_(\d+)\|>")


class Lfm2VlAdapter(Adapter):
    """LFM2-VL: a small image is one view (smart-resized whole image); a large one is resized onto a grid of tiles
    (no padding), each run of image tokens after its ``<|img_row_r_col_c|>`` marker, then the smart-resized whole
    image after ``<|img_thumbnail|>``. Each view's grid is its ``spatial_shapes`` patch grid unshuffled by
    ``downsample_factor``."""

    family = "LFM2-VL (tiles + thumbnail)"
    architectures = ("Lfm2VlForConditionalGeneration",)
    summary = ("tile grid read from the per-tile `img_row_r_col_c` markers + thumbnail; each view's grid from "
               "`spatial_shapes` / `downsample_factor`")
    tested = "tiny_lfm2_vl"

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        positions = ctx.image_positions()
        starts, lengths = runs(positions)
        shapes = np.asarray(ctx.input("spatial_shapes")).reshape(-1, 2)
        ds = int(getattr(ctx.config, "downsample_factor", 1))
        grids = [(int(a) // ds, int(b) // ds) for a, b in shapes]
        counts = [r * c for r, c in grids]
        h, w = ctx.image_size
        if len(shapes) == 1:
            if len(starts) != 1 or int(lengths[0]) != counts[0]:
                raise LayoutError(f"{ctx.model_class}: one view of {grids[0][0]}x{grids[0][1]} tokens, but image-token "
                                  f"runs of lengths {lengths.tolist()}")
            view = grid_view("image", grids[0][0], grids[0][1], 0, (0.0, 0.0, float(w), float(h)))
            return VisualLayout(positions, ctx.image_size, [view], family="lfm2_vl", meta={"grid": list(grids[0])})
        tok = ctx.tokenizer
        if tok is None:
            raise LayoutError(f"{ctx.model_class} layout needs the tokenizer to read the <|img_row_r_col_c|> markers")
        ids = ctx.input_ids.detach().cpu().reshape(-1).numpy()
        marks = tok.convert_ids_to_tokens([int(ids[positions[s] - 1]) for s in starts])
        tiles = {}
        for k, mark in enumerate(marks):
            m = _TILE_MARK.search(str(mark))
            if m:
                tiles[(int(m.group(1)) - 1, int(m.group(2)) - 1)] = k
        if not tiles or len(tiles) != len(starts) - 1 or "thumbnail" not in str(marks[-1]):
            raise UnsupportedModelError(
                f"{ctx.model_class}: {len(shapes)} views but the prompt's image runs are not marked "
                f"<|img_row_r_col_c|> ... <|img_thumbnail|> (markers {marks}); process with "
                "use_image_special_tokens=True so the tile grid can be read")
        rows, cols = max(r for r, _ in tiles) + 1, max(c for _, c in tiles) + 1
        if len(tiles) != rows * cols or [tiles.get((r, c)) for r in range(rows) for c in range(cols)] != list(
                range(rows * cols)):
            raise LayoutError(f"{ctx.model_class}: tile markers {sorted(tiles)} do not form a {rows}x{cols} grid "
                              "in raster order")
        if [int(n) for n in lengths] != counts or len(set(grids[:-1])) != 1:
            raise LayoutError(f"{ctx.model_class}: image-token runs of lengths {lengths.tolist()} do not match the "
                              f"views' grids {grids} (spatial_shapes / downsample_factor)")
        return tiled_layout(ctx, rows, cols, grids[0], True, family="lfm2_vl", starts=starts.tolist(),
                            thumbnail_grid=grids[-1], meta={"thumbnail_grid": list(grids[-1])})


def cohere2_tile_grid(image_hw: tuple[int, int], tile: int, max_tiles: int) -> tuple[int, int]:
    """``(cols, rows)`` of ``Cohere2VisionImageProcessor``'s canvas: among every ``cols x rows <= max_tiles``
    arrangement (sorted by area), the one needing the least upscaling to cover the image, or, when every one must
    downscale it, the least downscaling. The processor's own function is used when it can be imported (it needs
    torchvision); this restatement is tested against its source."""
    try:
        from transformers.models.cohere2_vision.image_processing_cohere2_vision import get_optimal_tiled_canvas
    except ImportError:
        pass
    else:
        cols, rows = get_optimal_tiled_canvas(image_hw, (tile, tile), 1, max_tiles)
        return int(cols), int(rows)
    h, w = image_hw
    options = sorted(((c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1) if c * r <= max_tiles),
                     key=lambda cr: cr[0] * cr[1])
    scales = [min(c * tile / w, r * tile / h) for c, r in options]
    if all(sc < 1 for sc in scales):
        return options[int(np.argmax(scales))]
    return options[int(np.argmin([sc if sc >= 1.0 else 10e9 for sc in scales]))]


class Cohere2VisionAdapter(Adapter):
    """Cohere2-Vision (Command A Vision): the image resized onto the canvas of :func:`cohere2_tile_grid` (no padding)
    and cut into tiles, then a thumbnail (the whole image resized to one tile) when there is more than one tile; each
    view is a run of pixel-shuffled tokens ended by an ``<|IMG_LINE_BREAK|>`` token."""

    family = "Cohere2-Vision (tiles + thumbnail)"
    architectures = ("Cohere2VisionForConditionalGeneration",)
    summary = ("least-scaling tile canvas + thumbnail, each view a run of pixel-shuffled tokens ended by a "
               "line-break token")
    tested = "tiny_cohere2_vision"

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        tile, side = shuffled_tile_side(ctx)
        starts, lengths = runs(ctx.image_positions())
        pv = ctx.input("pixel_values")
        views = int(np.prod(pv.shape[:-3]))
        if len(starts) != views or np.any(lengths != side * side):
            raise LayoutError(f"{ctx.model_class}: image-token runs of lengths {lengths.tolist()} for {views} views of "
                              f"{side}x{side} tokens")
        if views == 1:
            return tiled_layout(ctx, 1, 1, (side, side), False, family="cohere2_vision", starts=[int(starts[0])])
        ip = ctx.image_processor
        max_tiles = int(getattr(ip, "max_patches", 12)) if ip is not None else 12
        cols, rows = cohere2_tile_grid(ctx.image_size, tile, max_tiles)
        if cols * rows + 1 != views:
            grids = _grids_with_tile_count(lambda m, _low: cohere2_tile_grid(ctx.image_size, tile, m), views - 1, 1)
            if len(grids) != 1:
                raise LayoutError(f"{ctx.model_class}: {views} views, but the canvas rule with max_patches={max_tiles} "
                                  f"gives {rows}x{cols} tiles + a thumbnail, and the limits that give {views - 1} "
                                  f"tiles disagree on the grid ({sorted(grids)}); process with the image "
                                  "processor's own max_patches")
            cols, rows = grids.pop()
        return tiled_layout(ctx, rows, cols, (side, side), True, family="cohere2_vision", starts=starts.tolist())


def max_res_without_distortion(image_hw: tuple[int, int], target_hw: tuple[int, int]) -> tuple[int, int]:
    """Llama 4's resize inside a canvas: the largest aspect-preserving ``(height, width)`` within ``target_hw``
    (floor on the limited side); tested against the image processor's own source."""
    (h, w), (th, tw) = image_hw, target_hw
    sw, sh = tw / w, th / h
    if sw < sh:
        return min(math.floor(h * sw), th), tw
    return th, min(math.floor(w * sh), tw)


def _llama4_image_outputs(_module: Any, _args: Any, output: Any) -> Any:
    """Forward hook of :meth:`Llama4Adapter.upstream_fixes`: the field transformers 5.24 reads but never sets."""
    if output is not None and not isinstance(output, tuple) and not hasattr(output, "image_outputs"):
        output.image_outputs = None
    return output


class Llama4Adapter(Adapter):
    """Llama 4: the image resized without distortion into the best canvas of ``rows x cols`` tiles (upscaling limited
    to one tile unless ``resize_to_max_canvas``), padded at the bottom / right and cut row by row; then a global view
    (the whole image resized to one tile) after ``<|image|>``. The grid is read from the prompt's tile separators;
    each tile is a pixel-shuffled square of ``<|patch|>`` tokens."""

    family = "Llama 4 (tiles + global)"
    architectures = ("Llama4ForConditionalGeneration",)
    summary = ("tile grid read from the tile x / y separators, the image fitted without distortion and padded bottom "
               "/ right; + global view")
    tested = "tiny_llama4"

    def upstream_fixes(self, model: Any) -> Any:
        """transformers 5.24's ``Llama4ForConditionalGeneration.forward`` builds its output with
        ``image_outputs=outputs.image_outputs`` from its language model's ``MoeCausalLMOutputWithPast``, which has no
        such field, so every forward fails (text-only ones too; fixed in 5.25). While the toolkit calls the model, a
        forward hook on the language model gives its output the missing field (``None``: the toolkit never reads
        the image outputs) when, and only when, it lacks it."""
        language_model = getattr(model, "language_model", None)
        if language_model is None:
            return super().upstream_fixes(model)
        return scoped_forward_hook(language_model, _llama4_image_outputs)

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        vc = ctx.vision_config
        tile, patch = _side(vc.image_size), _side(vc.patch_size)
        side = int(tile // patch * float(getattr(vc, "pixel_shuffle_ratio", 0.5)))
        positions = ctx.image_positions()
        starts, lengths = runs(positions)
        if len(starts) == 0 or np.any(lengths != side * side):
            raise LayoutError(f"{ctx.model_class}: image-token runs of lengths {lengths.tolist()}, expected "
                              f"{side}x{side} tokens per tile")
        h, w = ctx.image_size
        if len(starts) == 1:
            rows = cols = 1
        else:
            rows = separator_count(ctx, positions, "tile_y_separator")
            tiles = len(starts) - 1
            cols = tiles // rows if rows else 0
            if rows == 0 or rows * cols != tiles:
                raise LayoutError(f"{ctx.model_class}: {tiles} tiles and {rows} row separators do not form a grid")
        ip = ctx.image_processor
        th, tw = rows * tile, cols * tile
        if ip is not None and getattr(ip, "resize_to_max_canvas", False):
            limit = (th, tw)
        else:
            limit = (min(max(h, tile), th), min(max(w, tile), tw))
        nh, nw = max_res_without_distortion((h, w), limit)
        nh, nw = max(nh, 1), max(nw, 1)
        sx, sy = w / nw, h / nh  # original pixels per canvas pixel (the image sits at the canvas's top left)
        return tiled_layout(ctx, rows, cols, (side, side), rows * cols > 1, family="llama4", starts=starts.tolist(),
                            tile_wh=(tile * sx, tile * sy), thumbnail_name="global", meta={"resized_hw": [nh, nw]})


class GotOcr2Adapter(Adapter):
    """GOT-OCR2: each view (the image resized to the square, or with ``crop_to_patches`` the tile grid + a
    thumbnail) goes through a SAM-style encoder and two stride-2 3x3 convolutions: one token per ``4 x 4`` patch
    cell, raster order, all views in one block. A token's box is its cell; the convolutions also read the
    neighbouring cells (as every deep tower mixes its neighbourhood)."""

    family = "GOT-OCR2 (one view, or tiles + thumbnail)"
    architectures = ("GotOcr2ForConditionalGeneration",)
    summary = "one 4x4-patch cell per token over the resized square; `crop_to_patches`: the tile grid + thumbnail"
    tested = "tiny_got_ocr2"

    def build_prompt(self, processor: Any, prompt: str) -> str:
        """GOT's own conversation (it has no chat template) around the image placeholder and the user's query
        (e.g. ``"OCR: "``)."""
        start = getattr(processor, "message_start_token", "<|im_start|>")
        end = getattr(processor, "message_end_token", "<|im_end|>")
        system = getattr(processor, "system_query", "")
        img = (getattr(processor, "img_start_token", "<img>") + getattr(processor, "image_token", "<imgpad>")
               + getattr(processor, "img_end_token", "</img>"))
        return f"{start}{system}{end}{start}user\n{img}\n{prompt}{end}{start}assistant\n"

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        vc = ctx.vision_config
        tile, patch = _side(vc.image_size), _side(vc.patch_size)
        side = tile // patch // 4
        positions = ctx.image_positions()
        if len(positions) == 0 or np.any(np.diff(positions) != 1):
            raise LayoutError(f"{ctx.model_class}: expected one contiguous block of image tokens (one image per "
                              "prompt, one page)")
        rows, cols, thumb = got_ocr2_tile_grid(ctx, (tile, tile))
        return tiled_layout(ctx, rows, cols, (side, side), thumb, family="got_ocr2")


class Ovis2Adapter(Adapter):
    """Ovis2: a global view (the whole image resized to one tile) first, then, with ``crop_to_patches``, the tiles of
    the image resized onto a ``rows x cols`` canvas (no padding), separated by ``<IMG_COL>`` / ``<IMG_ROW>``. Each
    view is a ``hidden_stride``-merged square of visual-vocabulary tokens, raster order."""

    family = "Ovis2 (global + tiles)"
    architectures = ("Ovis2ForConditionalGeneration",)
    summary = "global view first, then the tile grid read from the column / row separators; merged square per view"
    tested = "tiny_ovis2"

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        vc = ctx.vision_config
        tile, patch = _side(vc.image_size), _side(vc.patch_size)
        side = math.ceil(tile // patch / int(getattr(vc, "hidden_stride", 1) or 1))
        positions = ctx.image_positions()
        starts, lengths = runs(positions)
        if len(starts) == 0 or np.any(lengths != side * side):
            raise LayoutError(f"{ctx.model_class}: image-token runs of lengths {lengths.tolist()}, expected "
                              f"{side}x{side} tokens per view")
        if len(starts) == 1:
            return tiled_layout(ctx, 1, 1, (side, side), False, family="ovis2", starts=[int(starts[0])])
        rows = 1 + separator_count(ctx, positions, "IMG_ROW")
        tiles = len(starts) - 1
        cols = tiles // rows
        if rows * cols != tiles:
            raise LayoutError(f"{ctx.model_class}: {tiles} tiles and {rows} rows do not form a grid")
        # views in prompt order: the global view, then the tiles; tiled_layout wants tiles first
        order = [int(v) for v in starts[1:]] + [int(starts[0])]
        return tiled_layout(ctx, rows, cols, (side, side), True, family="ovis2", starts=order)


for _adapter in (InternVLAdapter(), AyaVisionAdapter(), Lfm2VlAdapter(), Cohere2VisionAdapter(), Llama4Adapter(),
                 GotOcr2Adapter(), Ovis2Adapter()):
    register_adapter(_adapter)
