"""Qwen2-VL family adapters (Qwen2-VL, Qwen2.5-VL, Qwen3-VL and the models that share their image packing)."""

from __future__ import annotations

import numpy as np

from ..errors import LayoutError
from ..layouts.base import VisualLayout
from ..layouts.context import LayoutContext
from .base import Adapter, register_adapter
from .generic import check_contiguous, grid_view

__all__ = ["Glm4vAdapter", "Qwen2VLAdapter", "qwen2_vl_layout"]


def qwen2_vl_layout(ctx: LayoutContext) -> VisualLayout:
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL: ``smart_resize`` of the whole image (no pad, no crop), patches merged
    ``spatial_merge_size x spatial_merge_size``; tokens in raster order over ``image_grid_thw[1:] // merge``."""
    positions = ctx.image_positions()
    check_contiguous(positions, ctx.model_class)
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
    view = grid_view("image", rows, cols, 0, (0.0, 0.0, float(w), float(h)))
    patch = int(getattr(ctx.vision_config, "patch_size", 14))
    meta = {"grid": [rows, cols], "canvas_hw": [gh * patch, gw * patch]}
    return VisualLayout(positions, ctx.image_size, [view], family="qwen2_vl", meta=meta)



class Qwen2VLAdapter(Adapter):
    family = "Qwen2-VL, Qwen2.5-VL, Qwen3-VL (+ MoE), Qwen3.5"
    architectures = ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                     "Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration",
                     "Qwen3_5ForConditionalGeneration")
    summary = "`image_grid_thw[1:] // merge` over the smart-resized image"
    tested = "tiny_qwen2_vl"

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        return qwen2_vl_layout(ctx)


register_adapter(Qwen2VLAdapter())


class Glm4vAdapter(Qwen2VLAdapter):
    family = "GLM-4.1V, GLM-4.5V, GLM-4.6V"
    architectures = ("Glm4vForConditionalGeneration", "Glm4vMoeForConditionalGeneration",
                     "Glm46VForConditionalGeneration")
    summary = ("`image_grid_thw[1:] // merge` over the smart-resized image (Qwen2-VL packing, merged by a strided "
               "convolution)")
    tested = "tiny_glm4v"


register_adapter(Glm4vAdapter())
