"""Figures of the organism studies (:mod:`emergence.studies`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["plot_causal"]


def plot_causal(table: Mapping[str, Mapping[str, float]], conditions: Sequence[str], kinds: Sequence[str],
                title: str) -> Any:
    """The causal checks' figure: pointing accuracy and log-probability change per condition (bars per word kind).

    Args:
        table: ``{condition: {"pointing <kind>": value, "dlogp <kind>": value}}``.
        conditions, kinds: the bars' order.

    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    x = np.arange(len(conditions))
    for ax, metric, name in ((axes[0], "pointing", "pointing accuracy"), (axes[1], "dlogp", "log-prob change")):
        for j, kind in enumerate(kinds):
            vals = [table.get(c, {}).get(f"{metric} {kind}", np.nan) for c in conditions]
            ax.bar(x + (j - 1) * 0.27, vals, width=0.27, label=kind)
        ax.set_xticks(x, conditions, rotation=25, ha="right", fontsize=8)
        ax.set_title(name)
        ax.axhline(0, color="k", lw=0.5)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
