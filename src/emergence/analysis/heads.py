"""Cheap per-head localisation scores, no segmenter: how much of each layer x head map falls inside the ground truth
(mass) and whether its peak does (pointing hit). Rank heads with them, then analyze with ``heads=top_heads(...)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .maps import Normalise, normalise as normalise_maps
from .metrics import map_mass_inside

__all__ = ["head_scores", "top_heads"]


def head_scores(run: Any, gt: np.ndarray, tokens: Sequence[int] | None = None,
                normalise: Normalise = "mean_subtract") -> dict[str, np.ndarray]:
    """Per layer x head localisation of ``tokens`` (default: every generated token that carries text).

    Each head's ``[T, V]`` maps are normalised across the answer on their own, rendered, and scored against
    ``gt [H, W]``; scores are averaged over ``tokens``.

    Returns:
        ``{"mass": [L, H], "hit": [L, H]}`` float64 (mass inside ``gt`` in [0, 1]; pointing-hit rate).
    """
    if run.keep != "heads":
        raise ValueError("head_scores needs a run captured with keep='heads'")
    gt = np.asarray(gt, bool)
    if tuple(gt.shape) != tuple(run.layout.image_size):
        raise ValueError(f"ground truth {gt.shape} does not match the image size {tuple(run.layout.image_size)}")
    if tokens is None:
        tokens = [t for t, s in enumerate(run.tokens) if s.strip()]
    tokens = list(tokens)
    if not tokens:
        raise ValueError("no tokens to score")
    att = run.attention.float()  # [T, L, H, V]
    t_all, n_layers, n_heads, v = att.shape
    per_head = normalise_maps(att.permute(1, 2, 0, 3).reshape(n_layers * n_heads, t_all, v), normalise)
    chosen = per_head[:, tokens].reshape(-1, v)  # [L*H*t, V]
    heat = run.layout.render(chosen)  # [L*H*t, H, W]
    flat = heat.reshape(len(chosen), -1)
    hits = gt.reshape(-1)[flat.argmax(1)].astype(float) if gt.any() else np.zeros(len(chosen))
    mass = np.atleast_1d(map_mass_inside(heat, gt))
    shape = (n_layers, n_heads, len(tokens))
    return {"mass": mass.reshape(shape).mean(-1), "hit": hits.reshape(shape).mean(-1)}


def top_heads(scores: np.ndarray, k: int, layers: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """The ``k`` best ``(layer, head)`` pairs of an ``[L, H]`` score grid; ``layers`` maps rows to layer indices
    (default 0..L-1, i.e. ``run.layers`` when every layer was captured)."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [L, H], got shape {scores.shape}")
    if not 1 <= k <= scores.size:
        raise ValueError(f"k must lie in 1..{scores.size}, got {k}")
    layers = list(layers) if layers is not None else list(range(scores.shape[0]))
    order = np.argsort(-scores.reshape(-1), kind="stable")[:k]
    return [(int(layers[i // scores.shape[1]]), int(i % scores.shape[1])) for i in order]
