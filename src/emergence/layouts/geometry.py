"""Axis-aligned maps from original-image pixels to a processor's canvas (resize, pad-to-square, centre crop).

Canvas coordinates relate to original coordinates by ``u = x * scale_x + offset_x`` (and the same for y), which is
exact for every resize / pad / crop a HuggingFace image processor performs. Output sizes come from transformers' own
size helpers so that rounding matches the processor bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import LayoutError

__all__ = ["Canvas", "simple_canvas", "resized_size", "size_dict"]


@dataclass(frozen=True)
class Canvas:
    """The processed image: ``height x width`` pixels; original ``(x, y)`` lands at ``(x*sx + ox, y*sy + oy)``."""

    height: int
    width: int
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    def box_in_original(self, u0: float, v0: float, u1: float, v1: float) -> tuple[float, float, float, float]:
        """Map a canvas box to original-image coordinates."""
        return (
            (u0 - self.offset_x) / self.scale_x,
            (v0 - self.offset_y) / self.scale_y,
            (u1 - self.offset_x) / self.scale_x,
            (v1 - self.offset_y) / self.scale_y,
        )

    def full_box(self) -> tuple[float, float, float, float]:
        """The whole canvas in original-image coordinates."""
        return self.box_in_original(0, 0, self.width, self.height)


def size_dict(size: Any) -> dict[str, int]:
    """A processor ``size`` (dict, SizeDict, int) as a plain dict of its set keys."""
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    if isinstance(size, dict):
        items = size.items()
    else:
        items = ((k, getattr(size, k)) for k in ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width"))
    return {k: int(v) for k, v in items if v is not None and not isinstance(v, (list, tuple, dict))}


def resized_size(size: Any, height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` that a processor's ``resize`` with ``size`` produces for an image of ``height x width``."""
    from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio
    from transformers.image_utils import ChannelDimension, get_image_size_for_max_height_width

    s = size_dict(size)
    dummy = np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (1, height, width))  # no memory, only the shape is read
    if "shortest_edge" in s and "longest_edge" in s:
        return tuple(int(v) for v in get_size_with_aspect_ratio((height, width), s["shortest_edge"], s["longest_edge"]))
    if "shortest_edge" in s:
        h, w = get_resize_output_image_size(
            dummy, size=s["shortest_edge"], default_to_square=False, input_data_format=ChannelDimension.FIRST
        )
        return int(h), int(w)
    if "max_height" in s and "max_width" in s:
        h, w = get_image_size_for_max_height_width((height, width), s["max_height"], s["max_width"])
        return int(h), int(w)
    if "height" in s and "width" in s:
        return s["height"], s["width"]
    if "longest_edge" in s:
        scale = s["longest_edge"] / max(height, width)
        return max(1, int(round(height * scale))), max(1, int(round(width * scale)))
    raise LayoutError(f"cannot tell the resize output size from the processor size {size!r}")


def simple_canvas(image_processor: Any, height: int, width: int) -> Canvas:
    """Canvas of a single-view processor (CLIP, SigLIP, LLaVA): optional pad-to-square, resize, centre crop.

    Args:
        image_processor: the model's image processor (only its configuration is read).
        height, width: size of the original image.
    """
    sx = sy = 1.0
    ox = oy = 0.0
    h, w = height, width
    if getattr(image_processor, "do_pad", False) and hasattr(image_processor, "pad_to_square"):
        side = max(h, w)
        if w > h:
            oy = float((side - h) // 2)
        elif h > w:
            ox = float((side - w) // 2)
        h = w = side
    if getattr(image_processor, "do_resize", True) and getattr(image_processor, "size", None) is not None:
        nh, nw = resized_size(image_processor.size, h, w)
        sx, sy = nw / w, nh / h
        ox, oy = ox * sx, oy * sy
        h, w = nh, nw
    if getattr(image_processor, "do_center_crop", False) and getattr(image_processor, "crop_size", None) is not None:
        crop = size_dict(image_processor.crop_size)
        ch, cw = crop.get("height", h), crop.get("width", w)
        top, left = (h - ch) // 2, (w - cw) // 2  # same integer rule as transformers' center_crop
        ox, oy = ox - left, oy - top
        h, w = ch, cw
    return Canvas(height=int(h), width=int(w), scale_x=sx, scale_y=sy, offset_x=ox, offset_y=oy)
