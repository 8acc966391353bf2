"""Mask codecs of the annotation formats: COCO polygons and (compressed or raw) run-length encoding."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["rle_counts", "decode_rle", "encode_rle", "polygons_to_mask", "decode_segmentation"]


def rle_counts(encoded: str | bytes) -> list[int]:
    """Run lengths of a COCO *compressed* RLE string (6-bit groups with a continuation bit, offset by 48; from the
    third count on, each is stored as the difference to the count two before)."""
    s = encoded.decode() if isinstance(encoded, bytes) else encoded
    counts: list[int] = []
    p = 0
    while p < len(s):
        value, shift, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError(f"truncated RLE string (ends inside a number at character {p})")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {s[p]!r} in RLE string at {p}")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p += 1
            shift += 5
            if not more and (c & 0x10):
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """``{"size": [h, w], "counts": str | list[int]}`` -> ``[h, w]`` bool (runs alternate 0/1, column-major).

    Raises:
        ValueError: the runs do not add up to ``h * w`` or are negative.
    """
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    counts = rle_counts(counts) if isinstance(counts, (str, bytes)) else [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError("negative run length in RLE")
    total = sum(counts)
    if total != h * w:
        raise ValueError(f"RLE runs cover {total} pixels but its size {h}x{w} has {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T.copy()


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """``[h, w]`` bool -> uncompressed RLE ``{"size": [h, w], "counts": [...]}`` (column-major, starting with 0s)."""
    mask = np.asarray(mask, bool)
    flat = mask.T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": runs}


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons (each ``[x0, y0, x1, y1, ...]``) -> ``[height, width]`` bool, rasterised and unioned."""
    canvas = Image.new("L", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    if len(polygons) == 0:
        raise ValueError("the segmentation holds no polygon (an empty list)")
    for poly in polygons:
        try:
            pts = [float(v) for v in poly]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a polygon must be a flat list of numbers [x0, y0, x1, y1, ...]: {exc}") from exc
        if len(pts) < 6 or len(pts) % 2:
            raise ValueError(f"a polygon needs an even number (>= 6) of coordinates, got {len(pts)}")
        if not np.all(np.isfinite(pts)):
            raise ValueError("a polygon has NaN or infinite coordinates")
        draw.polygon(list(zip(pts[0::2], pts[1::2])), fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def decode_segmentation(segmentation: Any, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Any COCO ``segmentation`` field: polygons (needs ``height``/``width``), an RLE dict, or an RLE dict written as
    a Python-literal string (PixCV-Bench's COCO split)."""
    if isinstance(segmentation, str):
        segmentation = ast.literal_eval(segmentation)
    if isinstance(segmentation, dict):
        return decode_rle(segmentation)
    if isinstance(segmentation, list):
        if height is None or width is None:
            raise ValueError("polygon segmentations need the image's height and width (the annotation's image entry "
                             "has none and no image file was available to read them from)")
        return polygons_to_mask(segmentation, height, width)
    raise ValueError(f"unknown segmentation format {type(segmentation).__name__}")
