"""Idefics3 / SmolVLM adapter: a tile mosaic read from the ``<row_i_col_j>`` markers plus a global image."""

from __future__ import annotations

import re

import numpy as np

from ..errors import LayoutError
from ..layouts.base import VisualLayout
from ..layouts.context import LayoutContext
from .base import Adapter
from .registry import register_adapter
from .generic import grid_view

__all__ = ["Idefics3Adapter", "idefics3_layout"]

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
            views.append(grid_view(f"tile_{r}_{c}", g, g, start, box, kind="tiles"))
        meta["tile_grid"] = [n_rows, n_cols]
    if global_start is not None:
        if not tiles:
            pv = ctx.inputs.get("pixel_values") if ctx.inputs else None
            if pv is not None and tuple(pv.shape[-2:]) != (side, side):
                raise LayoutError(f"{ctx.model_class}: an unsplit image padded to {tuple(pv.shape[-2:])} is not supported")
        box = (0.0, 0.0, w * used / side, h * used / side)  # the whole image resized to S x S
        views.append(grid_view("global", g, g, global_start, box, kind="global"))
    return VisualLayout(positions, ctx.image_size, views, family="idefics3", meta=meta)



class Idefics3Adapter(Adapter):
    family = "Idefics3, SmolVLM"
    architectures = ("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration")
    summary = "tile mosaic read from `<row_i_col_j>` markers + global image"
    tested = "tiny_idefics3"
    batched = True
    multi_image = True

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        return idefics3_layout(ctx)

    def split_images(self, ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict]]:
        """Each image is its tile runs (after ``<row_i_col_j>`` markers) closed by its global run (after
        ``<global-img>``), or one unsplit run; images follow in prompt order."""
        from .tiles import runs

        positions = ctx.image_positions()
        starts, lengths = runs(positions)
        tok = ctx.tokenizer
        if tok is None:
            raise LayoutError(f"{ctx.model_class} layout needs the processor's tokenizer to read the image markers")
        ids = ctx.input_ids.detach().cpu().reshape(-1).numpy()
        markers = [str(m) for m in tok.convert_ids_to_tokens([int(ids[positions[s] - 1]) for s in starts])]
        groups, current = [], []
        for start, length, marker in zip(starts, lengths, markers):
            current.append(positions[start:start + length])
            if not _ROW_COL.search(marker):  # a global image (or an unsplit image) closes the image
                groups.append(np.concatenate(current))
                current = []
        if current or len(groups) != count:
            raise LayoutError(f"{ctx.model_class}: the image markers give {len(groups)} complete images"
                              f"{' and an unclosed tile run' if current else ''}, but {count} images were given")
        return [(g, dict(ctx.inputs)) for g in groups]


register_adapter(Idefics3Adapter())
