"""Figures of the organism studies (:mod:`emergence.studies`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["plot_causal", "plot_seeds"]


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


def plot_seeds(records: Mapping[str, Sequence[Mapping[str, float]]], title: str = "") -> Any:
    """The seeds study's side-by-side figure: per design (colour), each training seed a dot and the mean a bar or
    line: (a) pointing accuracy per concept category, random baselines as ticks; (b) where grounding emerges (share of
    scenes per 10% bin of the answer); (c) in which layer, by relative depth; (d) the log-probability change of the
    answer words when the text cannot read the visual tokens inside / outside the objects.

    Args:
        records: ``{design: [metrics of one seed, ...]}`` (:func:`emergence.studies.seeds.model_metrics`).

    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    designs = list(records)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    width = 0.8 / max(len(designs), 1)

    def seeds(design: str, key: str) -> np.ndarray:
        return np.asarray([m[key] for m in records[design] if m.get(key) is not None], dtype=float)

    cats = ("appearance", "entity", "part", "location", "state")
    x = np.arange(len(cats))
    for j, d in enumerate(designs):
        off = (j - (len(designs) - 1) / 2) * width
        means = [seeds(d, f"pointing {c}").mean() if len(seeds(d, f"pointing {c}")) else np.nan for c in cats]
        axes[0].bar(x + off, means, width=width, color=colours[j], alpha=0.45, label=d)
        for i, c in enumerate(cats):
            vals = seeds(d, f"pointing {c}")
            axes[0].plot(np.full(len(vals), x[i] + off), vals, "o", color=colours[j], ms=3.5)
            base = seeds(d, f"random {c}")
            if len(base):
                axes[0].plot([x[i] + off - width / 2, x[i] + off + width / 2], [base.mean()] * 2, color="k", lw=1)
    axes[0].set_xticks(x, cats, fontsize=8)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("pointing (dots: seeds; black: random)", fontsize=9)
    axes[0].legend(fontsize=8)

    bins = np.arange(10)
    for j, d in enumerate(designs):
        table = np.stack([seeds(d, f"emergence bin {b}") for b in bins], axis=1)  # [seeds, 10]
        axes[1].fill_between(bins * 10 + 5, table.min(0), table.max(0), color=colours[j], alpha=0.2)
        axes[1].plot(bins * 10 + 5, table.mean(0), "-o", color=colours[j], ms=3, label=d)
    axes[1].set_xlabel("emergence position (% of the answer)", fontsize=8)
    axes[1].set_ylabel("share of scenes", fontsize=8)
    axes[1].set_title("where grounding emerges (band: seed range)", fontsize=9)

    for j, d in enumerate(designs):
        layers = int(seeds(d, "layers").max()) if len(seeds(d, "layers")) else 0
        depth = np.arange(layers) / max(layers - 1, 1)
        table = np.stack([seeds(d, f"emergence at layer {k}") for k in range(layers)], axis=1)
        for row in table:
            axes[2].plot(depth, row, "o", color=colours[j], ms=3.5, alpha=0.8)
        axes[2].plot(depth, table.mean(0), "-", color=colours[j], label=f"{d} ({layers} layers)")
    axes[2].set_xlabel("emergence layer, relative depth (0 first, 1 last)", fontsize=8)
    axes[2].set_title("in which layer", fontsize=9)
    axes[2].legend(fontsize=8)

    conds = ("knockout inside", "knockout outside")
    kinds = ("all", "colour", "shape")
    x = np.arange(len(conds) * len(kinds))
    labels = [f"{c.split()[1]}\n{k}" for c in conds for k in kinds]
    for j, d in enumerate(designs):
        off = (j - (len(designs) - 1) / 2) * width
        for i, (c, k) in enumerate((c, k) for c in conds for k in kinds):
            vals = seeds(d, f"{c} dlogp {k}")
            if len(vals):
                axes[3].bar(x[i] + off, vals.mean(), width=width, color=colours[j], alpha=0.45)
                axes[3].plot(np.full(len(vals), x[i] + off), vals, "o", color=colours[j], ms=3.5)
    axes[3].set_xticks(x, labels, fontsize=7)
    axes[3].axhline(0, color="k", lw=0.5)
    axes[3].set_title("knockout: log-prob change of the answer words", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
