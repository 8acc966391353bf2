"""Step 7: mask and map metrics.

Absent objects (an empty ground truth) score 1 or 0 by a rule (``absent=``): ``"under_half"`` (the ``emergence``
protocol; the rule of PixFoundation's paired VQA / grounding analysis) counts a mask correct when it covers less than
half the image; ``"empty_only"`` (the ``pixfoundation`` protocol; PixFoundation's ``compute_iou`` for mIoU) only when
the mask is empty. See :mod:`emergence.analysis.protocols`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "ABSENT_RULES",
    "iou",
    "mask_ious",
    "miou",
    "ciou",
    "recall_at",
    "pointing_hit",
    "map_mass_inside",
    "answer_position",
    "position_bin",
    "BIN_LABELS",
]

BIN_LABELS = tuple(f"{10 * i}-{10 * (i + 1)}%" for i in range(10))


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape[-2:] != gt.shape[-2:]:
        raise ValueError(f"mask of shape {pred.shape[-2:]} cannot be scored against a ground truth of {gt.shape[-2:]}")


ABSENT_RULES = ("under_half", "empty_only")


def _absent_score(flat: np.ndarray, absent: str) -> np.ndarray:
    """IoU of ``[N, P]`` masks against an empty ground truth under ``absent`` (:data:`ABSENT_RULES`)."""
    if absent == "under_half":
        return (flat.mean(1) < 0.5).astype(np.float64)
    if absent == "empty_only":  # PixFoundation's compute_iou: both empty -> 1, else 0 / |mask| = 0
        return (~flat.any(1)).astype(np.float64)
    raise ValueError(f"absent={absent!r} is not one of {ABSENT_RULES}")


def iou(pred: np.ndarray, gt: np.ndarray, absent: str = "under_half") -> float:
    """IoU of two ``[H, W]`` bool masks; an empty ``gt`` uses the absent-object rule ``absent``
    (``"under_half"``: module docstring; ``"empty_only"``: PixFoundation's, 1 only for an empty mask)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    _check_pair(pred, gt)
    if not gt.any():
        return float(_absent_score(pred.reshape(1, -1), absent)[0])
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union)


def mask_ious(masks: np.ndarray, gt: np.ndarray, absent: str = "under_half") -> np.ndarray:
    """IoU of every mask in ``[..., H, W]`` against ``gt [H, W]`` -> ``[...]`` float64 (absent-object rule
    ``absent`` too, as :func:`iou`)."""
    masks, gt = np.asarray(masks, bool), np.asarray(gt, bool)
    _check_pair(masks, gt)
    flat = masks.reshape(-1, gt.size)
    if not gt.any():
        return _absent_score(flat, absent).reshape(masks.shape[:-2])
    g = gt.reshape(-1)
    # one mask at a time: temporaries of one image, not of every mask (12 Mpx x 72 masks would copy 0.9 GB twice)
    inter = np.fromiter((np.count_nonzero(m & g) for m in flat), np.int64, len(flat))
    union = np.fromiter((np.count_nonzero(m | g) for m in flat), np.int64, len(flat))
    return (inter / union).reshape(masks.shape[:-2])


def miou(ious: Sequence[float]) -> float:
    """Mean IoU over samples (NaN for none)."""
    return float(np.mean(ious)) if len(ious) else float("nan")


def ciou(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> float:
    """Cumulative IoU: total intersection over total union across samples."""
    inter = union = 0
    for p, g in zip(preds, gts, strict=True):
        p, g = np.asarray(p, bool), np.asarray(g, bool)
        _check_pair(p, g)
        inter += int((p & g).sum())
        union += int((p | g).sum())
    return inter / union if union else float("nan")


def recall_at(ious: Sequence[float], threshold: float = 0.5) -> float:
    """Fraction of samples with IoU >= ``threshold``."""
    return float(np.mean(np.asarray(ious) >= threshold)) if len(ious) else float("nan")


def pointing_hit(point: tuple[float, float], gt: np.ndarray) -> bool:
    """Whether the ``(x, y)`` point lies inside ``gt`` (an empty ``gt`` never holds it)."""
    x, y = int(round(point[0])), int(round(point[1]))
    h, w = gt.shape
    return bool(0 <= x < w and 0 <= y < h and gt[y, x])


def map_mass_inside(heat: np.ndarray, gt: np.ndarray) -> float:
    """Share of the map's positive mass (after subtracting its minimum) that lies inside ``gt``; ``[..., H, W]``
    maps give ``[...]``. A constant map gives the area fraction of ``gt``."""
    heat = np.asarray(heat, np.float64)
    _check_pair(heat, gt)
    flat = heat.reshape(-1, gt.size)
    flat = flat - flat.min(1, keepdims=True)
    total = flat.sum(1)
    inside = flat[:, np.asarray(gt, bool).reshape(-1)].sum(1)
    out = np.where(total > 0, inside / np.where(total > 0, total, 1), np.asarray(gt, bool).mean())
    return float(out[0]) if heat.ndim == 2 else out.reshape(heat.shape[:-2])


def answer_position(char_offset: int, answer_length: int) -> float:
    """PixFoundation's position of a unit in the answer: its character offset / the answer's length, in [0, 1)."""
    if answer_length <= 0:
        raise ValueError(f"answer length must be positive, got {answer_length}")
    if not 0 <= char_offset < answer_length:
        raise ValueError(f"character offset {char_offset} lies outside an answer of {answer_length} characters")
    return char_offset / answer_length


def position_bin(position: float) -> int:
    """10% bin (0..9) of a position in [0, 1]; label with ``BIN_LABELS``. (A tiny epsilon keeps exact decimals such
    as 0.3 in their own bin despite floating point.)"""
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position must lie in [0, 1], got {position}")
    return min(int(position * 10 + 1e-9), 9)
