"""Figures. Every ``plot_*`` function returns ``(fig, axes)`` (or the figure) and never calls ``show()``;
:func:`save_figure` is the toolkit's only writer of figure PNGs.

One module per thing drawn, each at the layer of what it draws (docs/architecture.md): ``base`` (the PNG writer,
overlays), ``reports`` (an :class:`~emergence.analysis.EmergenceReport`), ``runs`` (a :class:`~emergence.ProbeRun`:
per-token heatmaps, a video's frame profile, map methods side by side), ``sweeps`` (``emergence report``) and
``studies`` (the organism studies). The names below load their module on first use, so drawing a report never
loads the model-side modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "save_figure": "base", "figure_png": "base", "overlay": "base", "contour": "base",
    "plot_report": "reports",
    "plot_token_heatmaps": "runs", "plot_frame_profile": "runs", "plot_methods": "runs",
    "plot_emergence_positions": "sweeps", "plot_emergence_layers": "sweeps", "plot_categories": "sweeps", "plot_head_grid": "sweeps",
    "plot_templates": "sweeps",
    "plot_causal": "studies",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'emergence.plotting' has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{home}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
