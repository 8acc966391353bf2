"""Layout builders of the supported model families (DESIGN.md, "Layout families").

Every builder derives positions from the image-token mask of the prompt, grid sizes from the config and the
processor's outputs, and geometry from the image processor's configuration; nothing is hard-coded per checkpoint.
Each one checks that its token count equals the number of image tokens in the prompt.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..errors import LayoutError
from .base import View, VisualLayout
from .geometry import Canvas, simple_canvas, size_dict
from .registry import LayoutContext, register_fallback, register_layout

__all__ = ["contiguous_layout", "llava_next_layout", "qwen2_vl_layout", "idefics3_layout"]


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


def _factor_grid(n: int, aspect: float) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == n`` and ``cols / rows`` closest to ``aspect``."""
    best = None
    for rows in range(1, n + 1):
        if n % rows:
            continue
        cols = n // rows
        err = abs(math.log(cols / rows) - math.log(aspect))
        if best is None or err < best[0]:
            best = (err, rows, cols)
    assert best is not None
    return best[1], best[2]


def _check_contiguous(positions: np.ndarray, who: str) -> None:
    if len(positions) == 0:
        raise LayoutError(f"{who}: the prompt contains no image token; did the processor insert the image placeholder?")
    if np.any(np.diff(positions) != 1):
        raise LayoutError(f"{who}: image tokens are not one contiguous block (positions {positions[:5]}...)")


# ---------------------------------------------------------------------------------------------------- LLaVA-1.5 & co
@register_layout("LlavaForConditionalGeneration")
def contiguous_layout(ctx: LayoutContext) -> VisualLayout:
    """One contiguous block of image tokens = one square (or processed-aspect) grid over the processed image.

    Grid: ``vision_config.image_size // patch_size`` per side when that matches the token count (plus a leading CLS
    token for ``vision_feature_select_strategy='full'``), otherwise the factorisation of the count closest to the
    processed image's aspect ratio. Geometry: the image processor's pad-to-square / resize / centre crop.
    """
    positions = ctx.image_positions()
    _check_contiguous(positions, ctx.model_class)
    n = len(positions)
    canvas, box = _canvas_or_whole(ctx)
    vc = getattr(ctx.config, "vision_config", None)
    side = None
    if vc is not None and getattr(vc, "image_size", None) and getattr(vc, "patch_size", None):
        image_size = vc.image_size if isinstance(vc.image_size, int) else vc.image_size[0]
        patch = vc.patch_size if isinstance(vc.patch_size, int) else vc.patch_size[0]
        side = image_size // patch
    kinds = np.full(n, "patch", dtype=object)
    start = 0
    if side is not None and n == side * side:
        rows = cols = side
    elif side is not None and n == side * side + 1:  # 'full' feature strategy keeps the CLS token first
        rows = cols = side
        kinds[0] = "cls"
        start = 1
    else:
        if canvas is not None:
            aspect = canvas.width / canvas.height
        else:
            pv = ctx.inputs.get("pixel_values") if ctx.inputs else None
            aspect = pv.shape[-1] / pv.shape[-2] if pv is not None else ctx.image_size[1] / ctx.image_size[0]
        rows, cols = _factor_grid(n, aspect)
    view = _grid_view("image", rows, cols, start, box)
    meta = {"grid": [rows, cols]}
    if canvas is not None:
        meta["canvas_hw"] = [canvas.height, canvas.width]
    return VisualLayout(positions, ctx.image_size, [view], family="contiguous", token_kind=kinds, meta=meta)


def _contiguous_fallback(ctx: LayoutContext) -> VisualLayout | None:
    try:
        positions = ctx.image_positions()
    except LayoutError:
        return None
    if len(positions) == 0 or np.any(np.diff(positions) != 1):
        return None
    layout = contiguous_layout(ctx)
    layout.meta["fallback"] = f"{ctx.model_class} is not registered; used the contiguous-block layout"
    return layout


register_fallback(_contiguous_fallback)


# ---------------------------------------------------------------------------------------------------- LLaVA-NeXT
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
    whole = (0.0, 0.0, float(w), float(h))
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
    views = []
    meta: dict = {"tile_side": side, "tokens_per_tile": per_tile}
    if tiles:
        n_rows = max(r for r, _ in tiles) + 1
        n_cols = max(c for _, c in tiles) + 1
        if len(tiles) != n_rows * n_cols:
            raise LayoutError(f"{ctx.model_class}: tile markers do not form a full {n_rows}x{n_cols} grid")
        index = np.zeros((n_rows * g, n_cols * g), dtype=np.int64)
        for (r, c), start in tiles.items():
            index[r * g : (r + 1) * g, c * g : (c + 1) * g] = np.arange(start, start + per_tile).reshape(g, g)
        views.append(View("tiles", index, whole, kind="tiles"))
        meta["tile_grid"] = [n_rows, n_cols]
    if global_start is not None:
        if not tiles:
            pv = ctx.inputs.get("pixel_values") if ctx.inputs else None
            if pv is not None and tuple(pv.shape[-2:]) != (side, side):
                raise LayoutError(f"{ctx.model_class}: an unsplit image padded to {tuple(pv.shape[-2:])} is not supported")
        views.append(_grid_view("global", g, g, global_start, whole, kind="global"))
    return VisualLayout(positions, ctx.image_size, views, family="idefics3", meta=meta)


for _name in ("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"):
    register_layout(_name, idefics3_layout)

