"""Llama-3.2-Vision (Mllama): the image enters only through cross-attention layers.

The language model's self-attention sees one ``<|image|>`` placeholder per image; the image itself is read by the
cross-attention layers listed in ``text_config.cross_attention_layers``, whose keys are the vision tokens. So the
captured modules are those cross-attention layers, and a layout's ``positions`` index their keys.

Key order (``MllamaVisionModel`` then the projector): image ``j`` of the prompt, tile ``t`` of ``max_image_tiles``
(row-major over the tile grid, padding tiles last), token ``p`` of ``1 + g * g`` per tile (``p = 0`` the tile's CLS
token, then its ``g x g`` patches row-major, ``g = tile_size // patch_size``):
``key = (j * max_image_tiles + t) * (1 + g * g) + p``.

Geometry (``MllamaImageProcessor``): the image is resized, aspect ratio kept, to fit the canvas of the best
``rows x cols`` tile arrangement (``get_optimal_tiled_canvas``, ``get_image_size_fit_to_canvas``), padded at the bottom
and right to the canvas, and cut into ``tile_size`` tiles. The tiles' patch grids form one mosaic over the canvas,
which maps back to original pixels by the resize scale; padding tiles (beyond ``rows x cols``) are masked out of the
cross-attention (probability exactly 0) and not kept; each tile's CLS token is kept with ``token_kind == "cls"`` and
not rendered.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import LayoutError, UnsupportedModelError
from ..layouts.base import View, VisualLayout
from ..layouts.context import LayoutContext
from ..layouts.geometry import Canvas
from .base import Adapter
from .registry import register_adapter

__all__ = ["MllamaAdapter", "cross_attention_modules", "mllama_layout"]


def cross_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The cross-attention modules of ``model``'s language model (class name ending in ``CrossAttention``, an integer
    ``layer_idx``), in layer order.

    Raises:
        UnsupportedModelError: the language model has none.
    """
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    found: dict[int, nn.Module] = {}
    for module in decoder.modules():
        if type(module).__name__.endswith("CrossAttention") and isinstance(getattr(module, "layer_idx", None), int):
            found.setdefault(module.layer_idx, module)
    if not found:
        raise UnsupportedModelError(f"{type(model).__name__}: its language model has no cross-attention modules "
                                    "(class name ending in CrossAttention, with an integer layer_idx) to capture")
    return [found[i] for i in sorted(found)]


def _tiling(ctx: LayoutContext, image: int, tile: int, max_tiles: int) -> tuple[int, int]:
    """``(rows, cols)`` of image ``image``'s tile grid: from ``aspect_ratio_ids``, checked against the tiling that
    the processor's rule gives the original image size."""
    from transformers.models.mllama.image_processing_pil_mllama import (
        get_all_supported_aspect_ratios,
        get_optimal_tiled_canvas,
    )

    ids = np.asarray(ctx.input("aspect_ratio_ids")).reshape(-1)
    if image >= len(ids):
        raise LayoutError(f"{ctx.model_class}: aspect_ratio_ids has {len(ids)} entries, image {image} has none")
    arrangements = get_all_supported_aspect_ratios(max_tiles)
    rid = int(ids[image])
    if not 1 <= rid <= len(arrangements):
        raise LayoutError(f"{ctx.model_class}: aspect_ratio_ids[{image}] = {rid} names no tile arrangement of "
                          f"{max_tiles} tiles (valid 1..{len(arrangements)}; 0 is a padding image)")
    rows, cols = arrangements[rid - 1]  # the processor stores (tiles along height, tiles along width)
    h, w = ctx.image_size
    canvas = tuple(int(v) for v in get_optimal_tiled_canvas(h, w, max_tiles, tile))
    if canvas != (rows * tile, cols * tile):
        raise LayoutError(f"{ctx.model_class}: image {image} was tiled {rows} x {cols} (aspect_ratio_ids), but an "
                          f"image of {h} x {w} px gets a {canvas[0] // tile} x {canvas[1] // tile} tile canvas: the "
                          "given image size is not the size of the processed image; pass the original image's size")
    return int(rows), int(cols)


def mllama_layout(ctx: LayoutContext, image: int = 0) -> VisualLayout:
    """The layout of image ``image`` of an Mllama prompt: its tiles' CLS and patch tokens among the cross-attention
    keys, one mosaic view over the tile canvas (module docstring)."""
    from transformers.models.mllama.image_processing_pil_mllama import get_image_size_fit_to_canvas

    pixels = ctx.input("pixel_values")
    if pixels.ndim != 6:
        raise LayoutError(f"{ctx.model_class}: pixel_values must be [batch, images, tiles, 3, tile, tile], got "
                          f"{tuple(pixels.shape)}")
    images, max_tiles, tile = int(pixels.shape[1]), int(pixels.shape[2]), int(pixels.shape[-1])
    vc = ctx.vision_config
    patch = int(vc.patch_size if isinstance(vc.patch_size, int) else vc.patch_size[0])
    if int(vc.image_size) != tile or tile % patch:
        raise LayoutError(f"{ctx.model_class}: tiles of {tile} px do not match the vision tower (image_size "
                          f"{vc.image_size}, patch {patch})")
    side = tile // patch
    per_tile = side * side + 1  # CLS + patches
    rows, cols = _tiling(ctx, image, tile, max_tiles)
    n_tiles = rows * cols
    check_tiles_read(ctx, image, n_tiles)
    h, w = ctx.image_size
    new_h, new_w = get_image_size_fit_to_canvas(h, w, rows * tile, cols * tile, tile)
    canvas = Canvas(height=rows * tile, width=cols * tile, scale_x=new_w / w, scale_y=new_h / h)

    r, c = np.meshgrid(np.arange(rows * side), np.arange(cols * side), indexing="ij")
    tile_of = (r // side) * cols + c // side
    index = tile_of * per_tile + 1 + (r % side) * side + (c % side)
    kinds = np.full(n_tiles * per_tile, "patch", dtype=object)
    kinds[::per_tile] = "cls"
    first = image * max_tiles * per_tile
    positions = first + np.arange(n_tiles * per_tile)
    view = View("tiles", index, canvas.full_box(), kind="tiles")
    meta = {"tiles": [rows, cols], "tile_size": tile, "canvas": [rows * tile, cols * tile],
            "resized": [int(new_h), int(new_w)], "tokens_per_tile": per_tile, "keys": "cross-attention",
            "key_count": images * max_tiles * per_tile}
    return VisualLayout(positions, (h, w), [view], family="mllama", token_kind=kinds, meta=meta, item=ctx.item)


def check_tiles_read(ctx: LayoutContext, image: int, n_tiles: int) -> None:
    """Check that the answer's rows read image ``image``'s ``n_tiles`` tiles: ``generate`` repeats the prompt's last
    ``cross_attention_mask`` row for every new token. A prompt whose last row reads no image is refused (the layer's
    output is zeroed there, so its attention means nothing); an image the answer does not read is warned about (its
    probabilities are exactly 0)."""
    mask = ctx.inputs.get("cross_attention_mask") if ctx.inputs else None
    if mask is None:
        raise LayoutError(f"{ctx.model_class}: the inputs hold no cross_attention_mask; process the prompt with "
                          "MllamaProcessor (it builds the mask from the <|image|> tokens)")
    last = torch.as_tensor(mask)[0, -1]  # [images, max_tiles]
    if image >= last.shape[0]:
        raise LayoutError(f"{ctx.model_class}: cross_attention_mask covers {last.shape[0]} images, image {image} "
                          "has no column")
    if not bool(last.any()):
        raise LayoutError(f"{ctx.model_class}: the prompt's last token reads no image (its cross_attention_mask row "
                          "is all 0), so the answer cannot attend to the image: put the <|image|> token before the "
                          "text (the chat template does)")
    row = last[image]
    if not bool(row[:n_tiles].all()) or bool(row[n_tiles:].any()):
        if not bool(row.any()):
            warnings.warn(f"image {image} is not read by the answer (a later <|image|> token closes its span in "
                          "cross_attention_mask): its attention is exactly 0 at every answer token", stacklevel=4)
            return
        raise LayoutError(f"{ctx.model_class}: cross_attention_mask marks tiles {row.tolist()} of image {image}, "
                          f"but it has {n_tiles} tiles")


class MllamaAdapter(Adapter):
    family = "Llama-3.2-Vision (Mllama)"
    architectures = ("MllamaForConditionalGeneration",)
    summary = ("cross-attention layers over each tile's CLS + patch tokens; the tile mosaic over the aspect-ratio "
               "canvas (bottom / right padding), padding tiles masked")
    tested = "tiny_mllama"
    multi_image = True
    cross_attention = True

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        return cross_attention_modules(model)

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        images = int(ctx.input("pixel_values").shape[1])
        if images != 1:
            raise LayoutError(f"{ctx.model_class}: the inputs hold {images} images (pixel_values) but one image was "
                              "given; pass every image (probe.generate(image=[im0, im1, ...]), or "
                              "build_layout(..., image_size=[size0, size1, ...]))")
        return mllama_layout(ctx, 0)

    def layouts(self, ctx: LayoutContext) -> VisualLayout:
        media = ctx.media
        if any(m.kind != "image" for m in media):
            raise UnsupportedModelError(f"{ctx.model_class}: Mllama reads images only, not video")
        images = int(ctx.input("pixel_values").shape[1])
        if images != len(media):
            raise LayoutError(f"{ctx.model_class}: the inputs hold {images} images (pixel_values) but "
                              f"{len(media)} were given")
        parts = [mllama_layout(replace(ctx, image_size=media[k].size, item=k), k) for k in range(images)]
        return VisualLayout.combine(parts)

    def extend_inputs(self, inputs: Mapping[str, Any], sequences: torch.Tensor) -> dict[str, Any]:
        """As the default, and ``cross_attention_mask`` ``[1, S, images, tiles]`` extended by repeating its last row
        (what ``generate`` does for each new token)."""
        full = super().extend_inputs(inputs, sequences)
        mask = inputs.get("cross_attention_mask")
        if isinstance(mask, torch.Tensor):
            extra = sequences.shape[1] - mask.shape[1]
            full["cross_attention_mask"] = torch.cat([mask, mask[:, -1:].expand(-1, extra, -1, -1)], dim=1)
        return full


register_adapter(MllamaAdapter())
