"""Variable-resolution adapters: the whole image resized to a multiple of the patch grid, no tiles (the Qwen2-VL
family, GLM-4V, Gemma 4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import LayoutError
from ..layouts.base import VisualLayout
from ..layouts.context import LayoutContext
from .base import Adapter, split_counts
from .registry import register_adapter
from .generic import check_contiguous, check_grid_fits, grid_view

__all__ = ["Gemma4Adapter", "Glm4vAdapter", "Qwen25OmniAdapter", "Qwen2VLAdapter", "qwen2_vl_layout",
           "qwen2_vl_video_layouts", "split_by_grid"]


def qwen2_vl_layout(ctx: LayoutContext) -> VisualLayout:
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL: ``smart_resize`` of the whole image (no pad, no crop), patches merged
    ``spatial_merge_size x spatial_merge_size``; tokens in raster order over ``image_grid_thw[1:] // merge``."""
    positions = ctx.image_positions()
    check_contiguous(positions, ctx.model_class)
    thw = np.asarray(ctx.input("image_grid_thw")).reshape(-1, 3)
    if thw.shape[0] != 1:
        raise LayoutError(f"image_grid_thw has {thw.shape[0]} rows for one image; pass every image "
                          "(probe.generate(image=[...]))")
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
    check_grid_fits(ctx, rows, cols, h, w, f"image {ctx.item}")
    view = grid_view("image", rows, cols, 0, (0.0, 0.0, float(w), float(h)))
    patch = int(getattr(ctx.vision_config, "patch_size", 14))
    meta = {"grid": [rows, cols], "canvas_hw": [gh * patch, gw * patch]}
    return VisualLayout(positions, ctx.image_size, [view], family="qwen2_vl", meta=meta)



def check_padded_frames(ctx: LayoutContext, pixels: Any, grid: tuple[int, int, int], tps: int, frames: int,
                        item: int) -> None:
    """When ``frames`` does not fill the last temporal patch, the processor repeats the last frame there: the
    patch's later temporal slices equal its last real one. If they differ, the inputs were made from more frames
    than were given (the layout would place the last part over frames that are not there)."""
    real = frames % tps
    if real == 0 or pixels is None or not hasattr(pixels, "shape"):
        return
    t, gh, gw = grid
    vc = ctx.vision_config
    channels = int(getattr(vc, "in_channels", None) or getattr(vc, "in_chans", None) or 3)
    x = torch.as_tensor(pixels).detach().cpu()
    if x.ndim != 2 or x.shape[0] != t * gh * gw or x.shape[1] % (channels * tps):
        return  # not the flattened-patch packing this check reads
    last = x[(t - 1) * gh * gw:].reshape(gh * gw, channels, tps, -1)  # [patches, C, tps, p*p]
    for k in range(real, tps):
        if not torch.equal(last[:, :, k], last[:, :, real - 1]):
            raise LayoutError(f"{ctx.model_class}: video {item} was given {frames} frames, but its inputs' last "
                              f"temporal patch holds {tps} different frames: the inputs were made from more frames. "
                              "Pass every frame the processor read")


def split_by_grid(ctx: LayoutContext, count: int, grid_name: str, positions: np.ndarray, pixel_name: str
                  ) -> list[tuple[np.ndarray, dict]]:
    """Several images (or videos) of the Qwen2-VL packing: ``grid_name`` (``image_grid_thw``) has one ``(t, h, w)``
    row per image, whose ``t*h*w / merge^2`` tokens follow in prompt order; ``pixel_name`` holds the ``t*h*w``
    flattened patches of every image back to back."""
    thw = np.asarray(ctx.input(grid_name)).reshape(-1, 3)
    if len(thw) != count:
        raise LayoutError(f"{ctx.model_class}: {count} {grid_name.split('_')[0]}s were given, but {grid_name} has "
                          f"{len(thw)} rows")
    merge = int(getattr(ctx.vision_config, "spatial_merge_size", 2))
    counts = [int(np.prod(row)) // (merge * merge) for row in thw]
    groups = split_counts(positions, counts, ctx.model_class)
    patches = np.cumsum([0] + [int(np.prod(row)) for row in thw])
    out = []
    for k, group in enumerate(groups):
        inputs = dict(ctx.inputs)
        inputs[grid_name] = ctx.inputs[grid_name][k:k + 1]
        pv = inputs.get(pixel_name)
        if pv is not None and hasattr(pv, "shape") and pv.shape[0] == patches[-1]:
            inputs[pixel_name] = pv[patches[k]:patches[k + 1]]
        out.append((group, inputs))
    return out


class Qwen2VLAdapter(Adapter):
    family = "Qwen2-VL, Qwen2.5-VL, Qwen3-VL (+ MoE), Qwen3.5 (+ MoE)"
    architectures = ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                     "Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration",
                     "Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration")
    summary = "`image_grid_thw[1:] // merge` over the smart-resized image"
    tested = "tiny_qwen2_vl"
    batched = True
    multi_image = True

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        return qwen2_vl_layout(ctx)

    def split_images(self, ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict]]:
        return split_by_grid(ctx, count, "image_grid_thw", ctx.image_positions(), "pixel_values")

    video = True

    def video_layouts(self, ctx: LayoutContext, items: list[int]) -> list[VisualLayout]:
        return qwen2_vl_video_layouts(ctx, items)


def qwen2_vl_video_layouts(ctx: LayoutContext, items: list[int]) -> list[VisualLayout]:
    """Qwen2-VL-family videos: each frame ``smart_resize``\ d (no pad, no crop), consecutive frames grouped by
    ``temporal_patch_size`` into one temporal patch (the last frame repeated to fill the last group), patches merged
    ``merge x merge``. ``video_grid_thw`` has one ``(t, h, w)`` row per video; its ``t`` groups of
    ``h*w / merge^2`` video tokens follow in order (one block for Qwen2/2.5-VL; one block per group after its
    timestamp for Qwen3-VL). One part per group: it reads frames ``[g*tps, (g+1)*tps)``."""
    video_id = getattr(ctx.config, "video_token_id", None)
    if not isinstance(video_id, int):
        raise LayoutError(f"{ctx.model_class}: config.video_token_id is not set")
    ids = ctx.input_ids.detach().cpu().reshape(-1)
    positions = torch.nonzero(ids == video_id).flatten().numpy()
    groups = split_by_grid(ctx, len(items), "video_grid_thw", positions, "pixel_values_videos")
    vc = ctx.vision_config
    merge = int(getattr(vc, "spatial_merge_size", 2))
    tps = int(getattr(vc, "temporal_patch_size", 2))
    patch = int(getattr(vc, "patch_size", 14))
    parts = []
    for item, (pos, inputs) in zip(items, groups):
        t, gh, gw = (int(v) for v in np.asarray(inputs["video_grid_thw"]).reshape(3))
        frames = ctx.media[item].frames
        if -(-frames // tps) != t:
            raise LayoutError(f"{ctx.model_class}: video {item} has {frames} frames, which make "
                              f"{-(-frames // tps)} temporal patches of {tps}, but video_grid_thw says t={t}; pass "
                              "the frames the processor read (it may sample frames: do_sample_frames=False, or give "
                              "the sampled frames)")
        rows, cols = gh // merge, gw // merge
        h, w = ctx.media[item].size
        check_grid_fits(ctx, rows, cols, h, w, f"video {item}")
        check_padded_frames(ctx, inputs.get("pixel_values_videos"), (t, gh, gw), tps, frames, item)
        for g, chunk in enumerate(split_counts(pos, [rows * cols] * t, ctx.model_class)):
            view = grid_view("frames", rows, cols, 0, (0.0, 0.0, float(w), float(h)))
            parts.append(VisualLayout(chunk, (h, w), [view], family="qwen2_vl_video", item=item,
                                      frames=(g * tps, min((g + 1) * tps, frames)),
                                      meta={"grid": [rows, cols], "canvas_hw": [gh * patch, gw * patch],
                                            "temporal_patch": g, "temporal_patch_size": tps}))
    return parts


register_adapter(Qwen2VLAdapter())


class Glm4vAdapter(Qwen2VLAdapter):
    family = "GLM-4.1V, GLM-4.5V, GLM-4.6V"
    architectures = ("Glm4vForConditionalGeneration", "Glm4vMoeForConditionalGeneration",
                     "Glm46VForConditionalGeneration")
    summary = ("`image_grid_thw[1:] // merge` over the smart-resized image (Qwen2-VL packing, merged by a strided "
               "convolution)")
    tested = "tiny_glm4v"
    video = False  # GLM-4V writes video frames as image tokens between timestamps: not placed yet
    batched = False  # its rope index over a left-padded batch fails in transformers (tests/test_batch.py)


register_adapter(Glm4vAdapter())


class Qwen25OmniAdapter(Qwen2VLAdapter):
    family = "Qwen2.5-Omni thinker (images)"
    architectures = ("Qwen2_5OmniThinkerForConditionalGeneration",)
    summary = "`image_grid_thw[1:] // merge` over the smart-resized image (the Qwen2.5-VL image path)"
    tested = "tiny_qwen2_5_omni"
    video = False  # the thinker interleaves video with audio tokens: not placed yet


register_adapter(Qwen25OmniAdapter())


class Gemma4Adapter(Adapter):
    """Gemma 4: the whole image resized, aspect kept, to a patch budget with sides multiples of
    ``pooling_kernel_size x patch_size`` (no pad, no crop); the patch grid is pooled ``k x k`` into one token per
    block, raster order. The grid is read from ``image_position_ids`` (the real patches' ``(x, y)``)."""

    family = "Gemma 4"
    architectures = ("Gemma4ForConditionalGeneration",)
    summary = "pooled patch grid read from `image_position_ids` over the aspect-preserving resized image"
    tested = "tiny_gemma4"

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        positions = ctx.image_positions()
        check_contiguous(positions, ctx.model_class)
        xy = np.asarray(ctx.input("image_position_ids"))
        if xy.ndim != 3 or xy.shape[0] != 1:
            raise LayoutError(f"{ctx.model_class}: one image per prompt is supported; image_position_ids has shape "
                              f"{xy.shape}")
        real = xy[0][(xy[0] >= 0).all(-1)]
        k = int(getattr(ctx.vision_config, "pooling_kernel_size", 1))
        patch_w, patch_h = int(real[:, 0].max()) + 1, int(real[:, 1].max()) + 1
        if len(real) != patch_w * patch_h or patch_w % k or patch_h % k:
            raise LayoutError(f"{ctx.model_class}: image_position_ids do not form a full grid divisible by the "
                              f"pooling kernel {k} ({patch_h}x{patch_w} for {len(real)} patches)")
        rows, cols = patch_h // k, patch_w // k
        if rows * cols != len(positions):
            raise LayoutError(f"{ctx.model_class}: a {rows}x{cols} pooled grid, but the prompt has {len(positions)} "
                              "image tokens")
        h, w = ctx.image_size
        view = grid_view("image", rows, cols, 0, (0.0, 0.0, float(w), float(h)))
        patch = int(getattr(ctx.vision_config, "patch_size", 1))
        return VisualLayout(positions, ctx.image_size, [view], family="gemma4",
                            meta={"grid": [rows, cols], "canvas_hw": [patch_h * patch, patch_w * patch]})


register_adapter(Gemma4Adapter())
