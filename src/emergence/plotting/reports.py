"""The figure of an :class:`~emergence.analysis.EmergenceReport` (``report.plot()``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import contour, overlay

__all__ = ["plot_report"]


def plot_report(report: Any, max_units: int = 6, panel_size: float = 2.6) -> tuple[Any, np.ndarray]:
    """Top row: the image with the ground truth (green), then units — best (oracle), emergence, automatic
    choice, then the first others — each with its map, chosen mask (white) and point (white cross). Bottom: IoU
    along the answer (oracle over masks and the segmenter's choice) with tau. Returns ``(fig, axes)``."""
    import matplotlib.pyplot as plt

    table = report.table
    picks: list[tuple[int, str]] = []
    for row, label in ((report.best, "best"), (report.emergence, "emergence")):
        if row is not None:
            picks.append((int(row.name), label))
    if report.automatic.get("score") is not None:
        picks.append((int(report.automatic["score"]), "auto"))
    for i in range(len(table)):
        if len(picks) >= max_units:
            break
        if all(i != p for p, _ in picks):
            picks.append((i, ""))
    cols = 1 + max(1, len(picks))
    fig = plt.figure(figsize=(panel_size * cols, panel_size * 2.1))
    grid = fig.add_gridspec(2, cols, height_ratios=[1, 0.8])
    axes = np.empty((2, cols), dtype=object)
    ax = axes[0, 0] = fig.add_subplot(grid[0, 0])
    ax.imshow(report.image)
    if report.gt is not None:
        contour(ax, report.gt, "lime")
    ax.set_title("image" + (" + ground truth" if report.gt is not None else ""), fontsize=8)
    ax.axis("off")
    for j, (i, label) in enumerate(picks, start=1):
        ax = axes[0, j] = fig.add_subplot(grid[0, j])
        overlay(ax, report.image, report.heat[i])
        row = table.loc[i]
        mask = report.masks[i, int(row["chosen"])]
        contour(ax, mask, "white")
        ax.plot([row["point_x"]], [row["point_y"]], marker="x", color="white", markersize=7, mew=2)
        title = f"{label + ': ' if label else ''}{row['text']!r}"
        if "iou" in table:
            title += f"\nIoU {row['iou']:.2f} · {row['category']}"
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    for j in range(len(picks) + 1, cols):
        axes[0, j] = None
    ax = axes[1, 0] = fig.add_subplot(grid[1, :])
    for j in range(1, cols):
        axes[1, j] = ax
    if "iou" in table and len(table):
        x = np.arange(len(table))
        ax.plot(x, table["iou"], "o-", label="IoU (best of masks)")
        ax.plot(x, table["iou_chosen"], ".--", label="IoU (segmenter's choice)")
        ax.axhline(report.tau, color="grey", lw=0.8, ls=":", label=f"tau = {report.tau}")
        if report.emergence is not None:
            ax.axvline(int(report.emergence.name), color="red", lw=1, label="emergence")
        ax.set_xticks(x)
        ax.set_xticklabels(table["text"], rotation=60, fontsize=7, ha="right")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("IoU")
        ax.legend(fontsize=7, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no ground truth: nothing to score", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
    fig.tight_layout()
    return fig, axes
