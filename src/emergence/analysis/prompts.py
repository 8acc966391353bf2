"""Step 4: turn a rendered map into a segmenter prompt.

Coordinates are ``(x, y)`` = (column, row) pixel indices of the ORIGINAL image, the convention of SAM's point prompts.
The references use one positive point at the argmax; :class:`PromptOptions` adds top-k peaks with non-maximum
suppression, negative points at the lowest-attention peaks, and a box around the high-attention region.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["PointPrompt", "PromptOptions", "argmax_point", "scale_prompt", "peak_points", "heat_box", "make_prompt"]


@dataclass(frozen=True)
class PointPrompt:
    """One segmenter prompt.

    Attributes:
        points: ``[P, 2]`` float32 ``(x, y)`` in original-image pixels.
        labels: ``[P]`` int64, 1 = positive, 0 = negative.
        box: ``[4]`` float32 ``(x0, y0, x1, y1)`` (inclusive pixel bounds) or ``None``.
    """

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(pts) != len(labels):
            raise ValueError(f"{len(pts)} points but {len(labels)} labels")
        if len(pts) == 0 and self.box is None:
            raise ValueError("a prompt needs at least one point or a box")
        object.__setattr__(self, "points", pts)
        object.__setattr__(self, "labels", labels)
        if self.box is not None:
            object.__setattr__(self, "box", np.asarray(self.box, dtype=np.float32).reshape(4))

    def key(self) -> bytes:
        """Identity of the prompt: identical prompts are decoded once."""
        box = b"" if self.box is None else self.box.tobytes()
        return self.points.tobytes() + b"|" + self.labels.tobytes() + b"|" + box


@dataclass(frozen=True)
class PromptOptions:
    """How maps become prompts.

    Attributes:
        positives: number of positive points (1 = the references' argmax).
        negatives: number of negative points, at the lowest peaks of the map.
        min_distance: suppression radius in pixels between chosen peaks (default: 1/8 of the shorter image side).
        box: also give a box around the pixels above ``box_threshold`` of the map's range.
        box_threshold: fraction in (0, 1).
    """

    positives: int = 1
    negatives: int = 0
    min_distance: float | None = None
    box: bool = False
    box_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.positives < 1 or self.negatives < 0:
            raise ValueError(f"need positives >= 1 and negatives >= 0, got {self.positives} and {self.negatives}")
        if not 0 < self.box_threshold < 1:
            raise ValueError(f"box_threshold must lie in (0, 1), got {self.box_threshold}")


def argmax_point(heat: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the map's maximum (first in row-major order on ties)."""
    heat = np.asarray(heat)
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"heat must be a non-empty [H, W] map, got shape {heat.shape}")
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(x), int(y)


def peak_points(heat: np.ndarray, k: int, min_distance: float) -> np.ndarray:
    """Greedy top-``k`` peaks: repeatedly take the maximum and suppress a disc of ``min_distance`` around it.

    Returns:
        ``[k', 2]`` int ``(x, y)``, ``k' <= k`` (fewer when the suppressed map has nothing left).
    """
    heat = np.asarray(heat, dtype=np.float64).copy()
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"heat must be a non-empty [H, W] map, got shape {heat.shape}")
    yy, xx = np.mgrid[: heat.shape[0], : heat.shape[1]]
    out = []
    for _ in range(k):
        if not np.isfinite(heat).any():
            break
        x, y = argmax_point(np.where(np.isfinite(heat), heat, -np.inf))
        out.append((x, y))
        heat[(xx - x) ** 2 + (yy - y) ** 2 < min_distance**2] = -np.inf
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def heat_box(heat: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``(x0, y0, x1, y1)`` bounding the pixels above ``threshold`` of the map's range, in the connected region
    around the maximum. A constant map gives the whole image."""
    from scipy import ndimage

    heat = np.asarray(heat, dtype=np.float64)
    lo, hi = heat.min(), heat.max()
    if hi <= lo:
        return np.array([0, 0, heat.shape[1] - 1, heat.shape[0] - 1], dtype=np.float32)
    above = heat >= lo + threshold * (hi - lo)
    labels, _ = ndimage.label(above)
    x, y = argmax_point(heat)
    ys, xs = np.nonzero(labels == labels[y, x])
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def make_prompt(heat: np.ndarray, options: PromptOptions | None = None) -> PointPrompt:
    """The prompt for one rendered ``[H, W]`` map."""
    options = options or PromptOptions()
    h, w = np.asarray(heat).shape
    radius = options.min_distance if options.min_distance is not None else min(h, w) / 8
    if options.positives == 1:
        pos = np.asarray([argmax_point(heat)], dtype=np.int64)
    else:
        pos = peak_points(heat, options.positives, radius)
    neg = peak_points(-np.asarray(heat), options.negatives, radius) if options.negatives else np.zeros((0, 2), int)
    points = np.concatenate([pos, neg]).astype(np.float32)
    labels = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    box = heat_box(heat, options.box_threshold) if options.box else None
    return PointPrompt(points, labels, box)


def scale_prompt(prompt: PointPrompt, from_size: tuple[int, int], to_size: tuple[int, int]) -> PointPrompt:
    """A prompt found on a ``from_size`` ``(H, W)`` grid, in the pixels of a ``to_size`` image covering the same area:
    each point goes to the pixel containing the same spot (pixel centre to pixel centre, rounded); a box keeps its
    covered extent. The identity when the sizes are equal."""
    if tuple(from_size) == tuple(to_size):
        return prompt
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    scale = np.asarray([sx, sy], np.float64)
    limit = np.asarray([to_size[1] - 1, to_size[0] - 1], np.float64)
    points = np.clip(np.floor((prompt.points.astype(np.float64) + 0.5) * scale), 0, limit).astype(np.float32)
    box = None
    if prompt.box is not None:
        b = prompt.box.astype(np.float64)
        lo = np.floor(b[:2] * scale)
        hi = np.ceil((b[2:] + 1) * scale) - 1
        box = np.clip(np.concatenate([lo, hi]), 0, np.concatenate([limit, limit])).astype(np.float32)
    return PointPrompt(points, prompt.labels, box)


@dataclass
class PromptBatch:
    """Unique prompts of one sample with the index of each original prompt into them (dedup bookkeeping)."""

    unique: list[PointPrompt] = field(default_factory=list)
    index: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, prompts: list[PointPrompt]) -> PromptBatch:
        seen: dict[bytes, int] = {}
        batch = cls()
        for p in prompts:
            k = p.key()
            if k not in seen:
                seen[k] = len(batch.unique)
                batch.unique.append(p)
            batch.index.append(seen[k])
        return batch
