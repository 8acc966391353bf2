"""Figures of a sweep (``emergence report``): where grounding emerges, concept categories, heads, templates."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.concepts import CATEGORIES
from ..analysis.metrics import BIN_LABELS

__all__ = ["plot_categories", "plot_emergence_layers", "plot_emergence_positions", "plot_head_grid", "plot_templates"]


def plot_emergence_positions(rows: Any, ax: Any = None) -> tuple[Any, Any]:
    """Histogram of the emergence position in 10% bins of the answer (share of grounding samples).

    Args:
        rows: the scored grounding rows of a sweep (:func:`emergence.sweep.report.grounding_rows`).
    """
    import matplotlib.pyplot as plt

    g = rows
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3))
    emerged = g.loc[g["emerged"].astype(bool), "emergence_bin"] if "emerged" in g else []
    counts = np.bincount(np.asarray(emerged, dtype=int), minlength=10)[:10]
    share = counts / max(len(g), 1)
    ax.bar(range(10), share, color="tab:blue")
    ax.set_xticks(range(10))
    ax.set_xticklabels(BIN_LABELS, rotation=45, fontsize=7)
    ax.set_ylabel("share of samples")
    ax.set_title(f"where grounding emerges in the answer ({int(counts.sum())}/{len(g)} samples emerge)", fontsize=9)
    fig.tight_layout()
    return fig, ax


def plot_categories(rows: Any, ax: Any = None) -> tuple[Any, Any]:
    """Histogram of the concept category of the best word (``rows``: as :func:`plot_emergence_positions`)."""
    import matplotlib.pyplot as plt

    g = rows
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3))
    cats = list(CATEGORIES) + ["other"]
    counts = [int((g["best_category"] == c).sum()) if "best_category" in g else 0 for c in cats]
    ax.bar(cats, counts, color="tab:orange")
    ax.set_ylabel("samples")
    ax.set_title("concept category of the best (oracle) word", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig, ax


def plot_head_grid(grid: np.ndarray | None, ax: Any = None) -> tuple[Any, Any]:
    """Layer x head grounding heatmap."""
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5, 3.5))
    if grid is None:
        ax.text(0.5, 0.5, "no head scores stored (store='none')", ha="center", va="center")
        ax.axis("off")
        return fig, ax
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label="map mass inside ground truth")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("which heads ground the best word", fontsize=9)
    fig.tight_layout()
    return fig, ax


def plot_templates(table: Any, ax: Any = None) -> tuple[Any, Any]:
    """Oracle mIoU per grounding template (prompt sensitivity; ``table``:
    :func:`emergence.sweep.report.template_table`)."""
    import matplotlib.pyplot as plt

    t = table
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3))
    ax.bar(t["template"].astype(str), t["oracle_miou"], color="tab:green")
    ax.set_ylim(0, 1)
    ax.set_ylabel("oracle mIoU")
    ax.set_title("prompt sensitivity", fontsize=9)
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    fig.tight_layout()
    return fig, ax


def plot_emergence_layers(rows: Any, ax: Any = None) -> tuple[Any, Any]:
    """Share of grounding samples whose emergence unit first reaches IoU >= tau in each single layer (the analyzer's
    ``emergence_layer``; ``rows`` as :func:`plot_emergence_positions`). Samples with no such layer are counted
    apart."""
    import matplotlib.pyplot as plt

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6, 3))
    layers = np.asarray(rows["emergence_layer"], dtype=float) if "emergence_layer" in rows else np.zeros(0)
    known = layers[np.isfinite(layers) & (layers >= 0)].astype(int)
    total = max(len(layers), 1)
    if len(known):
        values, counts = np.unique(known, return_counts=True)
        ax.bar(values, counts / total, color="tab:purple")
        ax.set_xticks(values)
    ax.set_xlabel("layer")
    ax.set_ylabel("share of samples")
    ax.set_title(f"in which layer grounding first emerges ({len(known)}/{len(layers)} samples have one)", fontsize=9)
    fig.tight_layout()
    return fig, ax

