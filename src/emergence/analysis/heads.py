"""Head selection: which (layer, head) pairs to average.

- With ground truth, cheap per-head localisation scores, no segmenter: how much of each layer x head map falls inside
  the ground truth (mass) and whether its peak does (pointing hit); rank heads with them, then analyze with
  ``heads=top_heads(...)``.
- Without ground truth, LocalizationHeads' selection (Kang et al., CVPR 2025) over calibration runs
  (:func:`localization_heads`); attention restricted to the heads it picks is the map (``analyze(..., heads=pairs)``).

A new head criterion goes here: a function from runs (and ground truth, if it reads any) to ``(layer, head)`` pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .token_maps import Normalise, normalise as normalise_maps
from .metrics import map_mass_inside

__all__ = ["elbow_value", "head_maps", "head_scores", "localization_heads", "peak_hits", "spatial_entropy", "top_heads"]


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


# ---------------------------------------------------------------------------------------------------- LocalizationHeads
def _components(grid: np.ndarray, threshold: float) -> tuple[float, np.ndarray]:
    """``(spatial entropy, 8-connected component labels)`` of a 2-D map (:func:`spatial_entropy`)."""
    from scipy.ndimage import label

    grid = np.asarray(grid, dtype=np.float64)
    kept = np.maximum(grid - grid.mean(), 0.0)
    labels, n = label(kept > threshold, structure=np.ones((3, 3)))
    total = kept.sum()
    if total <= 0:
        return float("inf"), labels
    shares = np.asarray([kept[labels == k].sum() for k in range(1, n + 1)]) / total
    shares = shares[shares > 0]
    return float(-(shares * np.log(shares)).sum()), labels


def spatial_entropy(grid: np.ndarray, threshold: float = 1e-3) -> float:
    """LocalizationHeads' spatial entropy of a 2-D attention map: keep ``max(map - mean, 0)``, split the entries
    above ``threshold`` into 8-connected components, and return ``-sum p log p`` over the components' shares of the
    kept mass (``inf`` when nothing is above the mean). Low = one compact region."""
    return _components(grid, threshold)[0]


def elbow_value(values: np.ndarray) -> float:
    """The elbow of the ascending curve of ``values`` (the point farthest from the chord between its ends): heads
    whose attention sum reaches it pass LocalizationHeads' first criterion."""
    y = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if len(y) < 3 or y[-1] == y[0]:
        return float(y[0]) if len(y) else 0.0
    x = np.arange(len(y), dtype=np.float64)
    chord = np.array([x[-1] - x[0], y[-1] - y[0]])
    chord /= np.linalg.norm(chord)
    rel = np.stack([x - x[0], y - y[0]], axis=1)
    dist = np.abs(rel[:, 0] * chord[1] - rel[:, 1] * chord[0])
    return float(y[int(dist.argmax())])


def localization_heads(runs: Sequence[Any], top: int = 3, per_sample: int = 10, threshold: float = 1e-3,
                       exclude_bottom_row: bool = True) -> tuple[list[tuple[int, int]], np.ndarray]:
    """LocalizationHeads' selection (Kang et al., CVPR 2025) over calibration runs, no ground truth.

    Per run, on the row that ends the prompt (step 0 of the predicting convention): heads whose attention sum over
    the visual tokens reaches the elbow of all heads' sums pass (criterion 1; the reference code compares flat head
    indices with the elbow head's index, which we read as the paper's intent: the sums); among them the
    ``per_sample`` with the lowest :func:`spatial_entropy` over the first view's grid are selected (criterion 2),
    leaving out heads whose components cover the whole bottom row (the reference's ``bottom_row_focus`` flag) when
    ``exclude_bottom_row``. The ``top`` heads selected most often over the runs are returned.

    Args:
        runs: calibration runs with keep="heads", predicting convention, one image each.

    Returns:
        ``([(layer, head), ...] best first, frequency [L, H])`` (frequency = share of runs selecting the head).
    """
    if not runs:
        raise ValueError("localization_heads needs at least one calibration run")
    for name, value in (("top", top), ("per_sample", per_sample)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: give a positive number of heads")
    counts: np.ndarray | None = None
    for run in runs:
        if run.keep != "heads" or run.convention != "predicting":
            raise ValueError("localization heads need runs captured with keep='heads' and the predicting convention")
        att = run.attention[0].double().numpy()  # [L, H, V]: the prompt's last row
        n_layers, n_heads, _ = att.shape
        counts = np.zeros((n_layers, n_heads)) if counts is None else counts
        if counts.shape != (n_layers, n_heads):
            raise ValueError("calibration runs hold different layers or heads")
        sums = att.sum(-1)
        passing = sums >= elbow_value(sums)
        index = np.asarray(run.layout.views[0].index)
        entropies = []
        for layer in range(n_layers):
            for head in range(n_heads):
                if not passing[layer, head]:
                    continue
                grid = np.where(index >= 0, att[layer, head][np.maximum(index, 0)], 0.0)
                se, labels = _components(grid, threshold)
                if exclude_bottom_row and np.isfinite(se) and (labels[-1] > 0).all():
                    continue
                entropies.append((se, layer, head))
        entropies.sort()
        for se, layer, head in entropies[:per_sample]:
            if np.isfinite(se):
                counts[layer, head] += 1
    freq = np.asarray(counts) / len(runs)
    order = np.argsort(-freq.reshape(-1), kind="stable")[:top]
    layers = runs[0].layers
    return [(int(layers[i // freq.shape[1]]), int(i % freq.shape[1])) for i in order], freq
