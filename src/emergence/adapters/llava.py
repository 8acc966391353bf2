"""LLaVA-family adapters: LLaVA-1.5, VipLLaVA, Pixtral / Mistral3, LLaVA-NeXT (+ Video, images), PaliGemma, Gemma3."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import LayoutError, UnsupportedModelError
from ..layouts.base import View, VisualLayout
from ..layouts.context import LayoutContext
from ..layouts.geometry import Canvas, size_dict
from .base import Adapter, split_counts
from .registry import register_adapter
from .generic import check_grid_fits, contiguous_layout, grid_view, provable_grid, single_view_count

__all__ = ["LlavaAdapter", "LlavaNextAdapter", "OneGridAdapter", "llava_next_layout", "pixtral_layout",
           "split_by_views"]


def split_by_views(ctx: LayoutContext, count: int, names: tuple[str, ...]) -> list[tuple[np.ndarray, dict]]:
    """Several images of a one-view family: ``pixel_values`` (or the first of ``names`` present) holds one view per
    image; every image has the same token count, so the image tokens split into ``count`` equal runs in order, and
    each image gets its own row of the pixel inputs."""
    views = single_view_count(ctx)
    if views != count:
        raise LayoutError(f"{ctx.model_class}: {count} images were given, but the pixel inputs hold {views} views")
    positions = ctx.image_positions()
    if len(positions) % count:
        raise LayoutError(f"{ctx.model_class}: {len(positions)} image tokens do not split evenly over {count} images")
    groups = split_counts(positions, [len(positions) // count] * count, ctx.model_class)
    out = []
    for k, group in enumerate(groups):
        inputs = dict(ctx.inputs)
        for name in names:
            value = inputs.get(name)
            if value is not None and hasattr(value, "shape") and len(value.shape) >= 4:
                inputs[name] = value.reshape(-1, *value.shape[-3:])[k:k + 1]
        out.append((group, inputs))
    return out


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
        raise LayoutError(f"{ctx.model_class}: image_sizes {sizes} has several rows for one image; pass every image "
                          "(probe.generate(image=[...]))")
    resized_h, resized_w = (int(v) for v in sizes[0])
    patch = ctx.vision_config.patch_size
    patch = patch if isinstance(patch, int) else patch[0]
    cell = patch * int(getattr(ctx.config, "spatial_merge_size", 1) or 1)
    rows, cols = resized_h // cell, resized_w // cell
    if rows * cols != len(positions) or resized_h % cell or resized_w % cell:
        raise LayoutError(f"{ctx.model_class}: {len(positions)} image tokens, but image_sizes {resized_h}x{resized_w} "
                          f"in cells of {cell} px give {rows}x{cols}")
    h, w = ctx.image_size
    check_grid_fits(ctx, rows, cols, h, w, f"image {ctx.item}")
    view = grid_view("image", rows, cols, 0, (0.0, 0.0, float(w), float(h)))
    return VisualLayout(positions, ctx.image_size, [view], family="pixtral",
                        meta={"grid": [rows, cols], "resized_hw": [resized_h, resized_w]})


def split_pixtral(ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict]]:
    """Several Pixtral images: ``image_sizes`` has one row per image; image k has ``rows_k x cols_k`` tokens."""
    sizes = np.asarray(ctx.input("image_sizes")).reshape(-1, 2)
    if len(sizes) != count:
        raise LayoutError(f"{ctx.model_class}: {count} images were given, but image_sizes has {len(sizes)} rows")
    patch = ctx.vision_config.patch_size
    patch = patch if isinstance(patch, int) else patch[0]
    cell = patch * int(getattr(ctx.config, "spatial_merge_size", 1) or 1)
    counts = [int(h) // cell * (int(w) // cell) for h, w in sizes]
    groups = split_counts(ctx.image_positions(), counts, ctx.model_class)
    out = []
    for k, group in enumerate(groups):
        inputs = dict(ctx.inputs)
        inputs["image_sizes"] = ctx.inputs["image_sizes"][k:k + 1]
        pv = inputs.get("pixel_values")
        if pv is not None and hasattr(pv, "shape") and pv.ndim == 4 and pv.shape[0] == count:
            inputs["pixel_values"] = pv[k:k + 1]
        out.append((group, inputs))
    return out




class OneGridAdapter(Adapter):
    """One view, one contiguous block whose count is a grid the config implies (:func:`provable_grid`)."""

    family = "VipLLaVA"
    layout_family = "vipllava"
    architectures = ("VipLlavaForConditionalGeneration",)
    summary = "one grid: the tower's square over the pad-to-square / resized / centre-cropped image"
    tested = "tiny_vipllava"

    multi_image = True

    def split_images(self, ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict]]:
        return split_by_views(ctx, count, self.pixel_inputs)

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        views = single_view_count(ctx)
        if views != 1:
            raise LayoutError(f"{ctx.model_class}: the pixel inputs hold {views} views but one image was given; this "
                              "family reads one view per image: pass every image (probe.generate(image=[...]))")
        positions = ctx.image_positions()
        grid = provable_grid(ctx, len(positions))
        if grid is None:
            raise LayoutError(f"{ctx.model_class}: {len(positions)} image tokens are none of the grids its config "
                              "implies (vision image_size // patch_size, mm_tokens_per_image)")
        return contiguous_layout(ctx, grid, family=self.layout_family)


class LlavaAdapter(OneGridAdapter):
    """LLaVA-1.5 and LLaVA checkpoints with a Pixtral tower."""

    family = "LLaVA-1.5, LLaVA with a Pixtral tower"
    layout_family = "llava"
    architectures = ("LlavaForConditionalGeneration",)
    summary = ("one grid; pad-to-square / shortest-edge resize / centre crop of the image processor (Pixtral tower: "
               "rows of `[IMG]` ended by `[IMG_BREAK]`)")
    tested = "tiny_llava"
    batched = True

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        if getattr(getattr(ctx.config, "vision_config", None), "model_type", None) == "pixtral":
            return pixtral_layout(ctx)
        return OneGridAdapter.layout(self, ctx)

    def split_images(self, ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict]]:
        if getattr(getattr(ctx.config, "vision_config", None), "model_type", None) == "pixtral":
            return split_pixtral(ctx, count)
        return split_by_views(ctx, count, self.pixel_inputs)


class Mistral3Adapter(Adapter):
    family = "Mistral3, Pixtral"
    architectures = ("Mistral3ForConditionalGeneration",)
    summary = "rows of `[IMG]` ended by `[IMG_BREAK]`; the whole image resized to `image_sizes`"
    tested = "tiny_mistral3"

    multi_image = True

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        return pixtral_layout(ctx)

    def split_images(self, ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict]]:
        return split_pixtral(ctx, count)


class VideoLlavaAdapter(OneGridAdapter):
    family = "Video-LLaVA (images)"
    layout_family = "video_llava"
    architectures = ("VideoLlavaForConditionalGeneration",)
    summary = "one grid: the tower's square over the resized, centre-cropped image (`pixel_values_images`)"
    tested = "tiny_video_llava"
    pixel_inputs = ("pixel_values_images", "pixel_values")

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        if ctx.inputs and ctx.inputs.get("pixel_values_videos") is not None:
            raise UnsupportedModelError(f"{ctx.model_class}: video inputs (pixel_values_videos) are not supported "
                                        "yet; probe one image (pixel_values_images)")
        return super().layout(ctx)


class PaliGemmaAdapter(OneGridAdapter):
    family = "PaliGemma"
    layout_family = "paligemma"
    architectures = ("PaliGemmaForConditionalGeneration",)
    summary = "one grid: the tower's square over the resized image; bidirectional image prefix"
    tested = "tiny_paligemma"


class Gemma3Adapter(OneGridAdapter):
    """Gemma3: the pooled ``mm_tokens_per_image`` square over the image resized to the tower's square; with
    pan-and-scan, the original image first, then ``n`` crops along the longer side, each resized to the square.
    The crops are ``ceil(side / n)`` wide (tall for portrait images) at multiples of that size, clipped to the
    image: the processor's rule, determined by ``n`` and the image size alone."""

    family = "Gemma3 (with pan-and-scan crops)"
    layout_family = "gemma3"
    architectures = ("Gemma3ForConditionalGeneration",)
    summary = ("the pooled `mm_tokens_per_image` square over the resized image; pan-and-scan: the original, then "
               "each crop along the longer side")
    tested = "tiny_gemma3"
    batched = True

    def split_images(self, ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict]]:
        from .tiles import runs

        starts, _ = runs(ctx.image_positions())
        if len(starts) != count:
            raise UnsupportedModelError(f"{ctx.model_class}: {count} images in {len(starts)} image-token runs: "
                                        "several images with pan-and-scan crops are not supported (the processor "
                                        "does not return how many crops each image got); process with "
                                        "do_pan_and_scan=False, or probe one image per prompt")
        return split_by_views(ctx, count, self.pixel_inputs)

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        from .tiles import runs

        positions = ctx.image_positions()
        starts, lengths = runs(positions)
        if len(starts) <= 1:
            return super().layout(ctx)
        side = math.isqrt(int(ctx.config.mm_tokens_per_image))
        views = single_view_count(ctx)
        if side * side != int(ctx.config.mm_tokens_per_image) or np.any(lengths != side * side) or views != len(starts):
            raise LayoutError(f"{ctx.model_class}: {len(starts)} image-token runs of lengths {lengths.tolist()} and "
                              f"{views} processed views; pan-and-scan expects one view per run of "
                              f"{ctx.config.mm_tokens_per_image} tokens")
        h, w = ctx.image_size
        n = len(starts) - 1
        boxes = [(0.0, 0.0, float(w), float(h))]
        if w >= h:
            size = math.ceil(w / n)
            boxes += [(float(i * size), 0.0, float(min(w, (i + 1) * size)), float(h)) for i in range(n)]
        else:
            size = math.ceil(h / n)
            boxes += [(0.0, float(i * size), float(w), float(min(h, (i + 1) * size))) for i in range(n)]
        out = [grid_view("original" if k == 0 else f"crop_{k - 1}", side, side, int(start), box,
                         kind="global" if k == 0 else "tiles")
               for k, (start, box) in enumerate(zip(starts, boxes))]
        return VisualLayout(positions, ctx.image_size, out, family="gemma3",
                            meta={"grid": [side, side], "pan_and_scan_crops": n})


def llava_next_layout(ctx: LayoutContext, max_patches: int | None = None, family: str = "llava_next") -> VisualLayout:
    """LLaVA-NeXT ("anyres") and LLaVA-OneVision ("anyres_max_N"): base image grid, then the unpadded tile mosaic
    with one newline token per row.

    Tiles: the image is resized (aspect kept) into the best grid pinpoint, centred with padding, and cut into
    ``vision_config.image_size`` tiles; the model then crops the feature mosaic back to the original aspect ratio
    (``unpad``) and appends a newline token to every row. Base: the whole image resized to one tile.
    ``max_patches`` (OneVision): when the unpadded mosaic holds more than ``1.1^2 x max_patches`` tiles' worth of
    features, the model shrinks it bilinearly by ``ratio`` to ``int(rows // ratio) x int(cols // ratio)`` cells
    over the same region, as the model does.
    """
    from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
    from transformers.image_utils import ChannelDimension

    cfg, vc = ctx.config, ctx.vision_config
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
    rows_t, cols_t = rows_u, cols_u  # the tile tokens' grid (after OneVision's shrink)
    if max_patches is not None:
        ratio = math.sqrt(rows_u * cols_u / (max_patches * g**2))
        if ratio > 1.1:
            rows_t, cols_t = int(rows_u // ratio), int(cols_u // ratio)
    expected = g * g + rows_t * (cols_t + 1)
    if len(positions) != expected:
        raise LayoutError(
            f"{ctx.model_class} layout expects {expected} image tokens ({g}x{g} base + {rows_t}x({cols_t}+1) tiles "
            f"with newlines) for an image of {h}x{w}, but the prompt has {len(positions)}"
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
    base = grid_view("base", g, g, 0, base_box, kind="global")
    index = np.full((rows_t, cols_t), -1, dtype=np.int64)
    kinds = np.full(len(positions), "patch", dtype=object)
    cursor = g * g
    for r in range(rows_t):
        index[r] = np.arange(cursor, cursor + cols_t)
        kinds[cursor + cols_t] = "newline"
        cursor += cols_t + 1
    views = [base]
    if rows_t > 0 and cols_t > 0:  # an image far thinner than a feature leaves an empty mosaic (newlines only)
        tiles_box = mosaic.box_in_original(c0 * cell, r0 * cell, c1 * cell, r1 * cell)
        views.append(View("tiles", index, tiles_box, kind="tiles"))
    meta: dict[str, Any] = {"tile_grid": [tile_rows, tile_cols], "best_resolution": [best_h, best_w],
                            "unpadded_grid": [rows_u, cols_u]}
    if (rows_t, cols_t) != (rows_u, cols_u):
        meta["shrunk_grid"] = [rows_t, cols_t]
    return VisualLayout(positions, ctx.image_size, views, family=family, token_kind=kinds, meta=meta)


class LlavaNextAdapter(Adapter):
    family = "LLaVA-NeXT"
    architectures = ("LlavaNextForConditionalGeneration",)
    summary = "base grid + unpadded tile mosaic, newline token per row (not rendered)"
    tested = "tiny_llava_next"
    batched = True

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        return llava_next_layout(ctx)


def video_frame_canvas(ctx: LayoutContext, h: int, w: int) -> Canvas:
    """The canvas of one video frame under the processor's video processor (resize, centre crop), read from
    ``processor.video_processor``'s configuration."""
    from ..layouts.geometry import simple_canvas

    vp = getattr(ctx.processor, "video_processor", None)
    if vp is None or getattr(vp, "size", None) is None:
        raise LayoutError(f"{ctx.model_class}: the video layout needs the processor's video_processor (its resize "
                          "and crop sizes); pass the processor that processed the video (video processors need "
                          "torchvision)")
    return simple_canvas(vp, h, w)


def _video_token_positions(ctx: LayoutContext, items: list[int]) -> tuple[np.ndarray, list[int]]:
    """``(positions of the video token, frames of each video in items)``, the frame count checked against
    ``pixel_values_videos`` ``[videos, frames, 3, H, W]``."""
    video_id = getattr(ctx.config, "video_token_id", None)
    if not isinstance(video_id, int):
        raise LayoutError(f"{ctx.model_class}: config.video_token_id is not set")
    ids = ctx.input_ids.detach().cpu().reshape(-1)
    frames = [ctx.media[item].frames for item in items]
    pv = ctx.inputs.get("pixel_values_videos") if ctx.inputs else None
    if pv is not None and (pv.ndim != 5 or int(pv.shape[0]) * int(pv.shape[1]) != sum(frames)):
        raise LayoutError(f"{ctx.model_class}: pixel_values_videos of shape {tuple(pv.shape)} do not hold the "
                          f"{sum(frames)} frames given; pass the frames the processor read")
    return np.nonzero((ids == video_id).numpy())[0], frames


def _frame_box(ctx: LayoutContext, h: int, w: int, used: int) -> tuple[float, float, float, float]:
    """The original-frame box of the top-left ``used x used`` canvas pixels that a frame's token grid covers."""
    vc = ctx.vision_config
    canvas = video_frame_canvas(ctx, h, w)
    if (canvas.height, canvas.width) != (vc.image_size, vc.image_size):
        raise LayoutError(f"{ctx.model_class}: the video processor makes {canvas.height}x{canvas.width} frames, "
                          f"the tower reads {vc.image_size}x{vc.image_size}")
    return canvas.box_in_original(0, 0, used, used)


def llava_next_video_layouts(ctx: LayoutContext, items: list[int]) -> list[VisualLayout]:
    """LLaVA-NeXT-Video videos: each frame resized and centre-cropped by the video processor to the tower's square,
    its ``g x g`` patch features pooled ``stride x stride`` (``spatial_pool_stride``; floor) into
    ``g // stride`` squared tokens, frames back to back, no newline tokens. One part per frame."""
    positions, frames = _video_token_positions(ctx, items)
    vc = ctx.vision_config
    g = vc.image_size // vc.patch_size
    stride = int(getattr(ctx.config, "spatial_pool_stride", 2))
    side = g // stride
    per_frame = split_counts(positions, [side * side] * sum(frames), ctx.model_class)
    parts, k = [], 0
    for item, n in zip(items, frames):
        h, w = ctx.media[item].size
        box = _frame_box(ctx, h, w, side * stride * vc.patch_size)  # floor pooling: the cells cover this much
        for f in range(n):
            view = grid_view("frame", side, side, 0, box)
            parts.append(VisualLayout(per_frame[k], (h, w), [view], family="llava_next_video", item=item,
                                      frames=(f, f + 1), meta={"grid": [side, side], "pool_stride": stride}))
            k += 1
    return parts


def llava_onevision_video_layouts(ctx: LayoutContext, items: list[int]) -> tuple[list[VisualLayout], list[int]]:
    """LLaVA-OneVision videos: each frame resized straight to the tower's square by the video processor (aspect
    ratio not kept), its ``g x g`` patch grid (over the top-left ``g * patch`` pixels) bilinearly resized to
    ``ceil(g / 2)`` squared tokens, frames back to back, then ONE newline token after the video's last frame.
    Returns ``(one part per frame, the newline tokens' positions)``: the newlines are captured, in no part."""
    positions, frames = _video_token_positions(ctx, items)
    vc = ctx.vision_config
    g = vc.image_size // vc.patch_size
    side = math.ceil(g / 2)
    per_video = split_counts(positions, [n * side * side + 1 for n in frames], ctx.model_class)
    parts, newlines = [], []
    for item, n, tokens in zip(items, frames, per_video):
        h, w = ctx.media[item].size
        box = _frame_box(ctx, h, w, g * vc.patch_size)  # bilinear resize: the pooled grid spans the patch grid
        for f, frame_tokens in enumerate(split_counts(tokens[:-1], [side * side] * n, ctx.model_class)):
            view = grid_view("frame", side, side, 0, box)
            parts.append(VisualLayout(frame_tokens, (h, w), [view], family="llava_onevision_video", item=item,
                                      frames=(f, f + 1), meta={"grid": [side, side], "pooling": "bilinear"}))
        newlines.append(int(tokens[-1]))
    return parts, newlines


class LlavaNextVideoAdapter(LlavaNextAdapter):
    family = "LLaVA-NeXT-Video"
    architectures = ("LlavaNextVideoForConditionalGeneration",)
    summary = ("images: base grid + unpadded tile mosaic, newline per row; video: each frame's pooled grid over the "
               "resized, centre-cropped frame")
    tested = "tiny_llava_next"
    video = True

    def video_layouts(self, ctx: LayoutContext, items: list[int]) -> list[VisualLayout]:
        return llava_next_video_layouts(ctx, items)


class LlavaOnevisionAdapter(Adapter):
    family = "LLaVA-OneVision"
    architectures = ("LlavaOnevisionForConditionalGeneration",)
    summary = ("base grid + unpadded tile mosaic (bilinearly shrunk past `anyres_max_N`), newline token per row (not "
               "rendered); video: each frame's grid bilinearly halved over the resized frame, one newline per video")
    tested = "tiny_llava_onevision"
    video = True

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        aspect = str(getattr(ctx.config, "vision_aspect_ratio", "anyres_max_9"))
        if not aspect.startswith("anyres_max_") or not aspect[len("anyres_max_"):].isdigit():
            raise LayoutError(f"{ctx.model_class}: vision_aspect_ratio={aspect!r} is not 'anyres_max_N'")
        sizes = np.asarray(ctx.input("image_sizes")).reshape(-1, 2)
        if len(sizes) != 1:
            raise LayoutError(f"{ctx.model_class}: one image per prompt is supported here, got {len(sizes)}")
        if single_view_count(ctx) == 1:
            raise LayoutError(f"{ctx.model_class}: an image without tiles (several images per prompt, padded to a "
                              "square) is not supported yet")
        return llava_next_layout(ctx, max_patches=int(aspect[len("anyres_max_"):]), family="llava_onevision")

    def video_layouts(self, ctx: LayoutContext, items: list[int]) -> list[VisualLayout]:
        return llava_onevision_video_layouts(ctx, items)[0]

    def layouts(self, ctx: LayoutContext) -> VisualLayout:
        """As the default, with each video's closing newline token kept among the captured positions."""
        layout = super().layouts(ctx)
        videos = [k for k, m in enumerate(ctx.media) if m.kind == "video"]
        if not videos:
            return layout
        newlines = llava_onevision_video_layouts(ctx, videos)[1]
        return VisualLayout.combine(layout.parts, positions=np.union1d(layout.positions, newlines))


for _adapter in (LlavaAdapter(), Mistral3Adapter(), LlavaNextAdapter(), LlavaNextVideoAdapter(), LlavaOnevisionAdapter(),
                 PaliGemmaAdapter(), Gemma3Adapter(), OneGridAdapter(), VideoLlavaAdapter()):
    register_adapter(_adapter)


class DeepseekVLAdapter(Adapter):
    """DeepSeek-VL / Janus: the longer side resized to the tower's size (``round``, ``min_size`` floor), centred
    padding to a square, one grid of the tower's square."""

    family = "DeepSeek-VL (+ hybrid), Janus (understanding)"
    architectures = ("DeepseekVLForConditionalGeneration", "DeepseekVLHybridForConditionalGeneration",
                     "JanusForConditionalGeneration")
    summary = ("one grid: the tower's square over the image resized by its longer side and padded to a centred square "
               "(the hybrid's high-resolution branch reads the same square)")
    tested = "tiny_deepseek_vl, tiny_deepseek_vl_hybrid, tiny_janus"
    pixel_inputs = ("pixel_values", "high_res_pixel_values")

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        positions = ctx.image_positions()
        views = single_view_count(ctx)
        if views != 1:
            raise LayoutError(f"{ctx.model_class}: pixel_values hold {views} views for one image; this family reads one")
        ip = ctx.image_processor
        if ip is None:
            raise LayoutError(f"{ctx.model_class} layout needs the image processor (its size, min_size and padding)")
        vc = ctx.vision_config
        patch = vc.patch_size if isinstance(vc.patch_size, int) else vc.patch_size[0]
        side = int(size_dict(getattr(ip, "size", None)).get("height") or vc.image_size)
        g = side // patch
        if len(positions) != g * g or np.any(np.diff(positions) != 1):
            raise LayoutError(f"{ctx.model_class}: expected one block of {g}x{g} image tokens (size {side}, patch "
                              f"{patch}), the prompt has {len(positions)}")
        h, w = ctx.image_size
        new_h, new_w = h, w
        if getattr(ip, "do_resize", True):
            delta = side / max(h, w)
            floor = int(getattr(ip, "min_size", 0) or 0)
            new_h, new_w = max(round(h * delta), floor), max(round(w * delta), floor)
        dim = max(new_h, new_w)
        if getattr(ip, "do_pad", True):
            canvas = Canvas(dim, dim, new_w / w, new_h / h, float((dim - new_w) // 2), float((dim - new_h) // 2))
        else:
            canvas = Canvas(new_h, new_w, new_w / w, new_h / h)
        pv = ctx.inputs.get("pixel_values") if ctx.inputs else None
        if pv is not None and tuple(pv.shape[-2:]) != (canvas.height, canvas.width):
            raise LayoutError(f"{ctx.model_class}: the processed image is {tuple(pv.shape[-2:])}, the resize-and-pad "
                              f"rule gives {(canvas.height, canvas.width)}")
        high = ctx.inputs.get("high_res_pixel_values") if ctx.inputs else None
        if high is not None and high.shape[-1] * canvas.height != high.shape[-2] * canvas.width:
            raise LayoutError(f"{ctx.model_class}: the high-resolution image {tuple(high.shape[-2:])} is not the same "
                              f"square as the low-resolution one {(canvas.height, canvas.width)}")
        view = grid_view("image", g, g, 0, canvas.full_box())
        return VisualLayout(positions, ctx.image_size, [view], family="deepseek_vl",
                            meta={"grid": [g, g], "canvas_hw": [canvas.height, canvas.width],
                                  "resized_hw": [new_h, new_w]})


register_adapter(DeepseekVLAdapter())
