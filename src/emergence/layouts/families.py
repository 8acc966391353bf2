"""Layout builders of the supported model families (DESIGN.md, "Layout families").

Every builder derives positions from the image-token mask of the prompt, grid sizes from the config and the
processor's outputs, and geometry from the image processor's configuration; nothing is hard-coded per checkpoint.
Each one checks that its token count equals the number of image tokens in the prompt.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import LayoutError, UnsupportedModelError
from .base import View, VisualLayout
from .geometry import Canvas, simple_canvas, size_dict
from .registry import LayoutContext, register_fallback, register_layout

__all__ = ["QUERY_TOKEN_FIELDS", "TILING_OPTIONS", "contiguous_layout", "idefics3_layout", "llava_layout",
           "llava_next_layout", "pixtral_layout", "qwen2_vl_layout"]


def _grid_view(name: str, rows: int, cols: int, start: int, box, kind="global") -> View:
    index = np.arange(start, start + rows * cols).reshape(rows, cols)
    return View(name=name, index=index, box=tuple(float(b) for b in box), kind=kind)


def _canvas_or_whole(ctx: LayoutContext) -> tuple[Canvas | None, tuple[float, float, float, float]]:
    h, w = ctx.image_size
    ip = ctx.image_processor
    if ip is None:
        return None, (0.0, 0.0, float(w), float(h))
    canvas = simple_canvas(ip, h, w)
    return canvas, canvas.full_box()


def _check_contiguous(positions: np.ndarray, who: str) -> None:
    if len(positions) == 0:
        raise LayoutError(f"{who}: the prompt contains no image token; did the processor insert the image placeholder?")
    if np.any(np.diff(positions) != 1):
        raise LayoutError(f"{who}: image tokens are not one contiguous block (positions {positions[:5]}...)")


# ---------------------------------------------------------------------------------------------------- LLaVA-1.5 & co
def _provable_grid(ctx: LayoutContext, n: int) -> tuple[int, int, int] | None:
    """``(rows, cols, first grid token)`` of a single-view block of ``n`` tokens, when the config or the processed
    image implies exactly that count; ``None`` otherwise. Candidates: the tower's ``image_size // patch_size`` square
    (with a leading CLS token for the 'full' feature strategy), a pooled square of ``mm_tokens_per_image`` tokens
    (Gemma3: average pooling of whole patch blocks), and the processed image's ``H // patch x W // patch`` grid."""
    vc = getattr(ctx.config, "vision_config", None)
    patch = getattr(vc, "patch_size", None)
    patch = patch if isinstance(patch, int) or patch is None else patch[0]
    candidates: list[tuple[int, int]] = []
    size = getattr(vc, "image_size", None)
    if size and patch:
        side = (size if isinstance(size, int) else size[0]) // patch
        candidates.append((side, side))
    pooled = getattr(ctx.config, "mm_tokens_per_image", None)
    if isinstance(pooled, int) and math.isqrt(pooled) ** 2 == pooled:
        candidates.append((math.isqrt(pooled), math.isqrt(pooled)))
    pv = ctx.inputs.get("pixel_values") if ctx.inputs else None
    if patch and pv is not None and hasattr(pv, "shape") and len(pv.shape) >= 3:
        candidates.append((int(pv.shape[-2]) // patch, int(pv.shape[-1]) // patch))
    for rows, cols in candidates:
        if rows * cols == n:
            return rows, cols, 0
        if rows * cols + 1 == n and getattr(ctx.config, "vision_feature_select_strategy", None) == "full":
            return rows, cols, 1  # the CLS token comes first
    return None


def contiguous_layout(ctx: LayoutContext, grid: tuple[int, int, int] | None = None) -> VisualLayout:
    """One contiguous block of image tokens = one grid over the processed image.

    Grid: :func:`_provable_grid` (the tower's square, a pooled square, or the processed image's patch grid; a leading
    CLS token for ``vision_feature_select_strategy='full'``). Geometry: the image processor's pad-to-square / resize /
    centre crop.

    Raises:
        LayoutError: the block's token count is none of the grids the config and the processed image imply.
    """
    positions = ctx.image_positions()
    _check_contiguous(positions, ctx.model_class)
    n = len(positions)
    canvas, box = _canvas_or_whole(ctx)
    grid = grid or _provable_grid(ctx, n)
    if grid is None:
        raise LayoutError(f"{ctx.model_class}: {n} image tokens form none of the grids that its config and processed "
                          "image imply (vision image_size // patch_size, mm_tokens_per_image, pixel_values // "
                          "patch_size); the layout cannot place them")
    rows, cols, start = grid
    kinds = np.full(n, "patch", dtype=object)
    kinds[:start] = "cls"
    view = _grid_view("image", rows, cols, start, box)
    meta = {"grid": [rows, cols]}
    if canvas is not None:
        meta["canvas_hw"] = [canvas.height, canvas.width]
    return VisualLayout(positions, ctx.image_size, [view], family="contiguous", token_kind=kinds, meta=meta)


def pixtral_layout(ctx: LayoutContext) -> VisualLayout:
    """Pixtral image tokens (Mistral3, and LLaVA checkpoints with a Pixtral tower such as pixtral-12b): the image is
    resized, aspect ratio kept, to ``image_sizes`` = whole multiples of ``P = patch_size x spatial_merge_size`` and
    read as ``rows x cols`` cells of ``P`` pixels in raster order; each row of image tokens is followed by an
    ``[IMG_BREAK]`` (the last by ``[IMG_END]``), which are not image tokens. No crop and no padding: the grid covers
    the whole original image."""
    positions = ctx.image_positions()
    if len(positions) == 0:
        raise LayoutError(f"{ctx.model_class}: the prompt contains no image token")
    sizes = ctx.input("image_sizes")
    if len(sizes) != 1:
        raise LayoutError(f"{ctx.model_class}: one image per prompt is supported here, got image_sizes {sizes}")
    resized_h, resized_w = (int(v) for v in sizes[0])
    patch = ctx.vision_config.patch_size
    patch = patch if isinstance(patch, int) else patch[0]
    cell = patch * int(getattr(ctx.config, "spatial_merge_size", 1) or 1)
    rows, cols = resized_h // cell, resized_w // cell
    if rows * cols != len(positions) or resized_h % cell or resized_w % cell:
        raise LayoutError(f"{ctx.model_class}: {len(positions)} image tokens, but image_sizes {resized_h}x{resized_w} "
                          f"in cells of {cell} px give {rows}x{cols}")
    h, w = ctx.image_size
    view = _grid_view("image", rows, cols, 0, (0.0, 0.0, float(w), float(h)))
    return VisualLayout(positions, ctx.image_size, [view], family="pixtral",
                        meta={"grid": [rows, cols], "resized_hw": [resized_h, resized_w]})


@register_layout("LlavaForConditionalGeneration")
def llava_layout(ctx: LayoutContext) -> VisualLayout:
    """LLaVA: :func:`pixtral_layout` for a Pixtral vision tower (rows with break tokens), else
    :func:`contiguous_layout`."""
    if getattr(getattr(ctx.config, "vision_config", None), "model_type", None) == "pixtral":
        return pixtral_layout(ctx)
    return contiguous_layout(ctx)


register_layout("Mistral3ForConditionalGeneration", pixtral_layout)

#: image-processor options under which one prompt's image becomes several views (tiles, crops, a thumbnail)
TILING_OPTIONS = ("do_image_splitting", "crop_to_patches", "do_pan_and_scan", "image_grid_pinpoints",
                  "use_thumbnail", "do_tiling")
#: config fields of models whose visual tokens are learned queries or latents, not patches
QUERY_TOKEN_FIELDS = ("qformer_config", "num_query_tokens", "perceiver_config")


def _refuse(ctx: LayoutContext, reason: str) -> UnsupportedModelError:
    from .registry import _how_to_register

    return UnsupportedModelError(f"{ctx.model_class} is not registered and {reason}, so the generic layout cannot "
                                 "place its visual tokens with certainty. " + _how_to_register(ctx.model_class))


def _contiguous_fallback(ctx: LayoutContext) -> VisualLayout:
    """The layout of an unregistered model, only where it is provably right; otherwise a clear refusal.

    Provably right: one contiguous block of image tokens, one processed view (no tiling option in the image
    processor, one image in ``pixel_values``), and a token count equal to a grid the config or the processed image
    implies. Models whose visual tokens are learned queries (Q-Former, perceiver resampler) get a non-spatial layout
    (captured, not drawn). Encoder-decoder models and models that read the image through cross-attention are refused
    with the reason.
    """
    config, text = ctx.config, ctx.text_config
    if getattr(config, "is_encoder_decoder", False) or getattr(text, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"{ctx.model_class} is an encoder-decoder model (Florence-2 style): its decoder reads the image through "
            "cross-attention over the encoder's outputs, not through self-attention over visual tokens in its own "
            "sequence, which is what emergence captures. Use a decoder-only vision-language model."
        )
    if getattr(text, "cross_attention_layers", None) or getattr(config, "cross_layer_interval", None):
        raise UnsupportedModelError(
            f"{ctx.model_class} reads the image only through cross-attention layers (Llama-3.2-Vision / Idefics "
            "style): its self-attention sees a single image placeholder, so a map over it would be meaningless. "
            "Cross-attention capture is not supported yet."
        )
    positions = ctx.image_positions()
    if len(positions) == 0:
        raise LayoutError(f"{ctx.model_class}: the prompt contains no image token; did the processor insert the "
                          "image placeholder?")
    if np.any(np.diff(positions) != 1):
        raise _refuse(ctx, f"its {len(positions)} image tokens are not one contiguous block (several images, tiles "
                           "or separator tokens)")
    queries = [k for k in QUERY_TOKEN_FIELDS if getattr(config, k, None)]
    if queries:
        return VisualLayout(positions, ctx.image_size, [], family="learned_queries",
                            token_kind=np.full(len(positions), "query", dtype=object),
                            meta={"not_spatial": f"{ctx.model_class} feeds {len(positions)} learned query / latent "
                                                 f"tokens (config {queries[0]}) that summarise the whole image; they "
                                                 "are not image patches"})
    ip = ctx.image_processor
    tiling = {k: getattr(ip, k) for k in TILING_OPTIONS if getattr(ip, k, None) not in (None, False, [], (), 0)}
    if tiling:
        raise _refuse(ctx, f"its image processor makes several views of one image ({tiling})")
    pv = ctx.inputs.get("pixel_values") if ctx.inputs else None
    if pv is not None and hasattr(pv, "shape") and len(pv.shape) >= 4:
        views = int(np.prod(pv.shape[: len(pv.shape) - 3]))
        if views != 1:
            raise _refuse(ctx, f"its pixel_values hold {views} views {tuple(pv.shape)} for one image")
    grid = _provable_grid(ctx, len(positions))
    if grid is None:
        raise _refuse(ctx, f"its {len(positions)} image tokens form none of the grids its config and processed image "
                           "imply (vision image_size // patch_size, mm_tokens_per_image, pixel_values // patch_size)")
    layout = contiguous_layout(ctx, grid)
    layout.meta["fallback"] = f"{ctx.model_class} is not registered; the contiguous-block layout was proved to fit"
    return layout


register_fallback(_contiguous_fallback)


# ---------------------------------------------------------------------------------------------------- LLaVA-NeXT
@register_layout("LlavaNextVideoForConditionalGeneration")  # images: packed exactly as LLaVA-NeXT
@register_layout("LlavaNextForConditionalGeneration")
def llava_next_layout(ctx: LayoutContext) -> VisualLayout:
    """LLaVA-NeXT ("anyres"): base image grid, then the unpadded tile mosaic with one newline token per row.

    Tiles: the image is resized (aspect kept) into the best grid pinpoint, centred with padding, and cut into
    ``vision_config.image_size`` tiles; the model then crops the feature mosaic back to the original aspect ratio
    (``unpad``) and appends a newline token to every row. Base: the whole image resized to one tile.
    """
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
    from transformers.image_utils import ChannelDimension

    cfg, vc = ctx.config, ctx.vision_config
    strategy = getattr(cfg, "vision_feature_select_strategy", "default")
    if strategy != "default":
        raise LayoutError(f"LLaVA-NeXT layout supports vision_feature_select_strategy='default', got {strategy!r}")
    positions = ctx.image_positions()
    h, w = ctx.image_size
    sizes = ctx.inputs.get("image_sizes") if ctx.inputs else None
    if sizes is not None:
        sh, sw = (int(v) for v in np.asarray(sizes).reshape(-1, 2)[0])
        if (sh, sw) != (h, w):
            raise LayoutError(f"image_sizes {(sh, sw)} from the processor differ from the image size {(h, w)}")
    tile = vc.image_size
    g = tile // vc.patch_size
    best_h, best_w = select_best_resolution((h, w), cfg.image_grid_pinpoints)
    tile_rows, tile_cols = best_h // tile, best_w // tile
    # canvas of the tile mosaic: aspect-preserving resize into (best_h, best_w), centred padding
    dummy = np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (1, h, w))
    new_h, new_w = get_patch_output_size(dummy, (best_h, best_w), input_data_format=ChannelDimension.FIRST)
    mosaic = Canvas(best_h, best_w, new_w / w, new_h / h, float((best_w - new_w) // 2), float((best_h - new_h) // 2))
    # unpad of the feature mosaic (rows x cols features), the model's own rule
    cur_h, cur_w = tile_rows * g, tile_cols * g
    r0, r1, c0, c1 = 0, cur_h, 0, cur_w
    if w / h > cur_w / cur_h:
        scale = cur_w / w
        pad = (cur_h - int(round(h * scale, 7))) // 2
        r0, r1 = pad, cur_h - pad
    else:
        scale = cur_h / h
        pad = (cur_w - int(round(w * scale, 7))) // 2
        c0, c1 = pad, cur_w - pad
    rows_u, cols_u = r1 - r0, c1 - c0
    cell = tile / g  # canvas pixels per feature
    expected = g * g + rows_u * (cols_u + 1)
    if len(positions) != expected:
        raise LayoutError(
            f"LLaVA-NeXT layout expects {expected} image tokens ({g}x{g} base + {rows_u}x({cols_u}+1) tiles with "
            f"newlines) for an image of {h}x{w}, but the prompt has {len(positions)}"
        )
    # base view: the whole image resized to one tile (then the patch resize/crop of the processor)
    ip = ctx.image_processor
    base_box: tuple[float, float, float, float] = (0.0, 0.0, float(w), float(h))
    if ip is not None:
        size = size_dict(getattr(ip, "size", None))
        side = size.get("shortest_edge") or size.get("height") or tile
        base_canvas = Canvas(side, side, side / w, side / h)
        crop = size_dict(getattr(ip, "crop_size", None)) if getattr(ip, "do_center_crop", False) else {}
        if crop and (crop.get("height", side), crop.get("width", side)) != (side, side):
            top, left = (side - crop["height"]) // 2, (side - crop["width"]) // 2
            base_canvas = Canvas(crop["height"], crop["width"], side / w, side / h, -left, -top)
        base_box = base_canvas.full_box()
    base = _grid_view("base", g, g, 0, base_box, kind="global")
    index = np.full((rows_u, cols_u), -1, dtype=np.int64)
    kinds = np.full(len(positions), "patch", dtype=object)
    cursor = g * g
    for r in range(rows_u):
        index[r] = np.arange(cursor, cursor + cols_u)
        kinds[cursor + cols_u] = "newline"
        cursor += cols_u + 1
    tiles_box = mosaic.box_in_original(c0 * cell, r0 * cell, c1 * cell, r1 * cell)
    tiles = View("tiles", index, tiles_box, kind="tiles")
    meta = {"tile_grid": [tile_rows, tile_cols], "best_resolution": [best_h, best_w], "unpadded_grid": [rows_u, cols_u]}
    return VisualLayout(positions, ctx.image_size, [base, tiles], family="llava_next", token_kind=kinds, meta=meta)


# ---------------------------------------------------------------------------------------------------- Qwen2-VL family
def qwen2_vl_layout(ctx: LayoutContext) -> VisualLayout:
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL: ``smart_resize`` of the whole image (no pad, no crop), patches merged
    ``spatial_merge_size x spatial_merge_size``; tokens in raster order over ``image_grid_thw[1:] // merge``."""
    positions = ctx.image_positions()
    _check_contiguous(positions, ctx.model_class)
    thw = np.asarray(ctx.input("image_grid_thw")).reshape(-1, 3)
    if thw.shape[0] != 1:
        raise LayoutError(f"one image per prompt is supported; image_grid_thw has {thw.shape[0]} rows")
    t, gh, gw = (int(v) for v in thw[0])
    merge = int(getattr(ctx.vision_config, "spatial_merge_size", 2))
    rows, cols = gh // merge, gw // merge
    if t * rows * cols != len(positions):
        raise LayoutError(
            f"image_grid_thw {[t, gh, gw]} with merge {merge} gives {t * rows * cols} tokens, prompt has {len(positions)}"
        )
    if t != 1:
        raise LayoutError(f"temporal patches t={t}: video inputs are not supported by this layout")
    h, w = ctx.image_size
    view = _grid_view("image", rows, cols, 0, (0.0, 0.0, float(w), float(h)))
    patch = int(getattr(ctx.vision_config, "patch_size", 14))
    meta = {"grid": [rows, cols], "canvas_hw": [gh * patch, gw * patch]}
    return VisualLayout(positions, ctx.image_size, [view], family="qwen2_vl", meta=meta)


for _name in (
    "Qwen2VLForConditionalGeneration",
    "Qwen2_5_VLForConditionalGeneration",
    "Qwen3VLForConditionalGeneration",
):
    register_layout(_name, qwen2_vl_layout)


# ---------------------------------------------------------------------------------------------------- Idefics3 / SmolVLM
_ROW_COL = re.compile(r"<row_(\d+)_col_(\d+)>")


def idefics3_layout(ctx: LayoutContext) -> VisualLayout:
    """Idefics3 / SmolVLM: tiles in raster order, each run of image tokens after its ``<row_i_col_j>`` marker, then the
    global image after ``<global-img>``. The image is resized to ``rows*S x cols*S`` (S = tile side, no pad) before
    cutting; the global image is the whole image resized to ``S x S``. Tokens per tile: ``(S / patch / scale)^2``
    after the pixel shuffle."""
    ids = ctx.input_ids.detach().cpu().reshape(-1).numpy()
    image_id = ctx.image_token_id
    is_img = ids == image_id
    positions = np.nonzero(is_img)[0]
    if len(positions) == 0:
        raise LayoutError(f"{ctx.model_class}: the prompt contains no image token")
    # runs of consecutive image tokens
    breaks = np.nonzero(np.diff(positions) != 1)[0]
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks + 1, [len(positions)]])
    vc = ctx.vision_config
    side = vc.image_size
    scale = int(getattr(ctx.config, "scale_factor", 1))
    g = side // vc.patch_size // scale
    per_tile = g * g
    lengths = ends - starts
    if np.any(lengths != per_tile):
        raise LayoutError(f"{ctx.model_class}: runs of image tokens have lengths {lengths.tolist()}, expected {per_tile}")
    tok = ctx.tokenizer
    if tok is None:
        raise LayoutError(f"{ctx.model_class} layout needs the processor's tokenizer to read the <row_i_col_j> markers")
    markers = tok.convert_ids_to_tokens([int(ids[positions[s] - 1]) for s in starts])
    h, w = ctx.image_size
    tiles: dict[tuple[int, int], int] = {}
    global_start = None
    for run, marker in zip(starts, markers):
        m = _ROW_COL.search(str(marker))
        if m:
            tiles[(int(m.group(1)) - 1, int(m.group(2)) - 1)] = int(run)
        elif "global" in str(marker):
            global_start = int(run)
        elif len(starts) == 1:
            global_start = int(run)
        else:
            raise LayoutError(f"{ctx.model_class}: unexpected marker {marker!r} before a run of image tokens")
    # The tower's patch convolution reads only whole patches: of each S-px tile, the first `used` px reach a token
    # (SmolVLM: 27 x 14 = 378 of 384 px); the rest of the tile belongs to no token.
    used = g * scale * vc.patch_size
    views = []
    meta: dict = {"tile_side": side, "tokens_per_tile": per_tile, "tile_px_seen": used}
    if tiles:
        n_rows = max(r for r, _ in tiles) + 1
        n_cols = max(c for _, c in tiles) + 1
        if len(tiles) != n_rows * n_cols:
            raise LayoutError(f"{ctx.model_class}: tile markers do not form a full {n_rows}x{n_cols} grid")
        sx, sy = w / (n_cols * side), h / (n_rows * side)  # the image is resized to n_rows*S x n_cols*S, no pad
        for (r, c), start in sorted(tiles.items()):
            box = (c * side * sx, r * side * sy, (c * side + used) * sx, (r * side + used) * sy)
            views.append(_grid_view(f"tile_{r}_{c}", g, g, start, box, kind="tiles"))
        meta["tile_grid"] = [n_rows, n_cols]
    if global_start is not None:
        if not tiles:
            pv = ctx.inputs.get("pixel_values") if ctx.inputs else None
            if pv is not None and tuple(pv.shape[-2:]) != (side, side):
                raise LayoutError(f"{ctx.model_class}: an unsplit image padded to {tuple(pv.shape[-2:])} is not supported")
        box = (0.0, 0.0, w * used / side, h * used / side)  # the whole image resized to S x S
        views.append(_grid_view("global", g, g, global_start, box, kind="global"))
    return VisualLayout(positions, ctx.image_size, views, family="idefics3", meta=meta)


for _name in ("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"):
    register_layout(_name, idefics3_layout)

