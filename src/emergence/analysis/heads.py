"""Cheap per-head localisation scores, no segmenter: how much of each layer x head map falls inside the ground truth
(mass) and whether its peak does (pointing hit). Rank heads with them, then analyze with ``heads=top_heads(...)``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .token_maps import Normalise, normalise as normalise_maps
from .metrics import map_mass_inside

__all__ = ["head_maps", "head_scores", "peak_hits", "top_heads"]


def head_maps(run: Any, normalise: Normalise = "mean_subtract") -> Any:
    """Every layer x head's ``[T, V]`` maps, each normalised across the answer on its own.

    Returns:
        ``[L, H, T, V]`` float32 tensor (``run`` must be captured with keep="heads").
    """
    if run.keep != "heads":
        raise ValueError("per-head maps need a run captured with keep='heads'")
    att = run.attention.float()  # [T, L, H, V]
    t_all, n_layers, n_heads, v = att.shape
    per_head = normalise_maps(att.permute(1, 2, 0, 3).reshape(n_layers * n_heads, t_all, v), normalise)
    return per_head.reshape(n_layers, n_heads, t_all, v)


def peak_hits(heat: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Pointing hits of rendered maps: whether each ``[..., H, W]`` map's argmax pixel lies inside ``gt [H, W]``.

    Returns:
        ``[...]`` float64 of 0.0 / 1.0 (all 0.0 for an empty ``gt``).
    """
    heat = np.asarray(heat)
    gt = np.asarray(gt, bool)
    lead = heat.shape[:-2]
    if not gt.any():
        return np.zeros(lead)
    flat = heat.reshape(-1, gt.size)
    return gt.reshape(-1)[flat.argmax(1)].astype(float).reshape(lead)


def head_scores(run: Any, gt: np.ndarray, tokens: Sequence[int] | None = None,
                normalise: Normalise = "mean_subtract", chunk: int = 64) -> dict[str, np.ndarray]:
    """Per layer x head localisation of ``tokens`` (default: every generated token that carries text).

    Each head's ``[T, V]`` maps are normalised across the answer on their own, rendered, and scored against
    ``gt [H, W]``; scores are averaged over ``tokens``. Maps are rendered ``chunk`` at a time, so memory stays
    ``chunk`` images whatever the number of layers, heads and tokens.

    Returns:
        ``{"mass": [L, H], "hit": [L, H]}`` float64 (mass inside ``gt`` in [0, 1]; pointing-hit rate).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    gt = np.asarray(gt, bool)
    if tuple(gt.shape) != tuple(run.layout.image_size):
        raise ValueError(f"ground truth {gt.shape} does not match the image size {tuple(run.layout.image_size)}")
    if tokens is None:
        tokens = [t for t, s in enumerate(run.tokens) if s.strip()]
    tokens = list(tokens)
    if not tokens:
        raise ValueError("no tokens to score")
    maps = head_maps(run, normalise)  # [L, H, T, V]
    n_layers, n_heads, _, v = maps.shape
    chosen = maps[:, :, tokens].reshape(-1, v)  # [L*H*t, V]
    hits, mass = [], []
    for start in range(0, len(chosen), chunk):  # bounded memory: `chunk` full-size maps at a time (7B: 1024 heads)
        heat = run.layout.render(chosen[start:start + chunk])  # [chunk, H, W]
        hits.append(np.atleast_1d(peak_hits(heat, gt)))
        mass.append(np.atleast_1d(map_mass_inside(heat, gt)))
    hits, mass = np.concatenate(hits), np.concatenate(mass)
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
