"""Adapters of models whose decoder reads image patches directly, a row at a time (Fuyu, the design Pixel-SAIL
builds on)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import LayoutError
from ..layouts.base import VisualLayout
from ..layouts.context import LayoutContext
from ..layouts.geometry import size_dict
from .base import Adapter
from .registry import register_adapter
from .generic import grid_view
from .tiles import runs

__all__ = ["FuyuAdapter", "tensor_patchify"]


@contextlib.contextmanager
def tensor_patchify(image_processor: Any) -> Iterator[None]:
    """While active, ``image_processor.patchify_image`` accepts torch tensors.

    ``FuyuProcessor`` hands the image processor's output, torch tensors, to ``patchify_image``; the PIL backend's
    ``patchify_image`` (the one ``AutoProcessor`` picks without torchvision) is written for numpy arrays and fails on
    them (transformers 5.25). Detected by behaviour: a 1-patch tensor is patchified; where that works (the
    torchvision backend, a fixed release) nothing changes. The instance attribute set here is removed on exit.
    """
    import torch

    original = getattr(image_processor, "patchify_image", None)
    if original is None or "patchify_image" in vars(image_processor):
        yield
        return
    patch = size_dict(getattr(image_processor, "patch_size", None))
    probe = torch.zeros(1, 3, int(patch.get("height", 1)), int(patch.get("width", 1)))
    try:
        original(image=probe)
        works = True
    except (TypeError, AttributeError):
        works = False
    if works:
        yield
        return

    def patchify(image: Any, patch_size: Any = None) -> Any:
        if isinstance(image, torch.Tensor):
            return torch.from_numpy(np.ascontiguousarray(original(image=image.numpy(), patch_size=patch_size)))
        return original(image=image, patch_size=patch_size)

    image_processor.patchify_image = patchify
    try:
        yield
    finally:
        del image_processor.patchify_image


class FuyuAdapter(Adapter):
    """Fuyu: the image is resized to fit the processor's ``size`` (only when larger, aspect kept) and padded at the
    bottom / right; each ``patch_size`` cell of the unpadded part, rounded up to whole patches, is one ``|SPEAKER|``
    token, raster order, a ``|NEWLINE|`` after every row. The patches enter the decoder through one linear layer."""

    family = "Fuyu"
    architectures = ("FuyuForCausalLM",)
    summary = "rows of SPEAKER patch tokens, each ended by a NEWLINE token; the image resized to fit, padded bottom / right"
    tested = "tiny_fuyu"
    pixel_inputs = ("image_patches", "pixel_values")

    def build_prompt(self, processor: Any, prompt: str) -> str:
        # FuyuProcessor puts the image placeholders before the text itself; prompts end with a newline
        return prompt if prompt.endswith("\n") else prompt + "\n"

    def process(self, processor: Any, image: Any, text: str) -> Mapping[str, Any]:
        with tensor_patchify(getattr(processor, "image_processor", None)):
            return super().process(processor, image, text)

    def process_media(self, processor: Any, images: list[Any], videos: list[list[Any]], text: str
                      ) -> Mapping[str, Any]:
        with tensor_patchify(getattr(processor, "image_processor", None)):
            return super().process_media(processor, images, videos, text)

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        positions = ctx.image_positions()
        starts, lengths = runs(positions)
        if len(starts) == 0:
            raise LayoutError(f"{ctx.model_class}: the prompt contains no image patch token")
        ip = ctx.image_processor
        if ip is None:
            raise LayoutError(f"{ctx.model_class} layout needs the image processor (its size and patch_size)")
        h, w = ctx.image_size
        target = size_dict(getattr(ip, "size", None))
        patch = size_dict(getattr(ip, "patch_size", None))
        ph, pw = int(patch.get("height", ctx.config.patch_size)), int(patch.get("width", ctx.config.patch_size))
        th, tw = int(target["height"]), int(target["width"])
        new_h, new_w = h, w
        if getattr(ip, "do_resize", True) and (h > th or w > tw):
            scale = min(th / h, tw / w)
            new_h, new_w = int(h * scale), int(w * scale)
        rows = min(th if getattr(ip, "do_pad", True) else new_h, math.ceil(new_h / ph) * ph) // ph
        cols = min(tw if getattr(ip, "do_pad", True) else new_w, math.ceil(new_w / pw) * pw) // pw
        if len(starts) != rows or np.any(lengths != cols):
            raise LayoutError(f"{ctx.model_class}: image-token rows of lengths {lengths.tolist()}, but a {h}x{w} image "
                              f"resized to {new_h}x{new_w} gives {rows} rows of {cols} patches of {ph}x{pw}")
        box = (0.0, 0.0, cols * pw * w / new_w, rows * ph * h / new_h)
        view = grid_view("image", rows, cols, 0, box)
        return VisualLayout(positions, ctx.image_size, [view], family="fuyu",
                            meta={"grid": [rows, cols], "resized_hw": [new_h, new_w]})


register_adapter(FuyuAdapter())
