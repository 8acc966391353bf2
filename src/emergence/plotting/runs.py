"""Figures of a :class:`~emergence.ProbeRun`: per-token heatmaps, a video's frame profile, the map methods side by
side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analysis.grouping import word_units
from ..analysis.methods import METHODS, get_method
from ..analysis.prompts import argmax_point
from ..analysis.token_maps import MapOptions, normalise
from ..layouts.base import working_size
from ..run import ProbeRun
from .base import overlay

__all__ = ["plot_frame_profile", "plot_methods", "plot_token_heatmaps"]


def plot_token_heatmaps(
    run: ProbeRun,
    tokens: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    mean_subtract: bool = True,
    cols: int = 5,
    panel_size: float = 2.4,
    max_side: int | None = 768,
    image: int | None = None,
    frame: int | None = None,
) -> tuple[Any, np.ndarray]:
    """The image, then one attention heatmap per generated token (overlaid).

    Args:
        run: a :class:`ProbeRun` with its image.
        tokens: token indices to show (default: every token with visible text, at most 24).
        layers, heads: reduction (mean) over these; default all captured.
        mean_subtract: subtract the mean map over all output tokens first (the references' normalisation against
            attention sinks and text-independent attention).
        max_side: maps are rendered on a grid whose longer side is at most this (display resolution; ``None``:
            the image's full size).
        image, frame: for a run over several images or a video, which image / frame to draw
            (:meth:`ProbeRun.select`).

    Returns:
        ``(fig, axes)``; axes is a flat array, ``axes[0]`` shows the image.
    """
    import matplotlib.pyplot as plt

    if image is not None or frame is not None:
        run = run.select(image=image, frame=frame)

    maps = normalise(run.token_map(None, layers, heads), "mean_subtract" if mean_subtract else "none")  # [T, V]
    if tokens is None:
        tokens = [t for t, s in enumerate(run.tokens) if s.strip()][:24]
    tokens = list(tokens)
    n = len(tokens) + 1
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_size, rows * panel_size * 0.9), squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(run.image) if run.image is not None else None
    axes[0].set_title("image", fontsize=9)
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    size = working_size(run.layout.image_size, max_side)
    covered = run.layout.coverage(size)
    for ax, t in zip(axes[1:], tokens):
        overlay(ax, run.image, run.layout.render(maps[t], size=size), covered=covered)
        ax.set_title(f"{t}: {run.tokens[t].strip()!r}", fontsize=9)
    for ax in axes[n:]:
        ax.axis("off")
    fig.suptitle(run.text if len(run.text) < 90 else run.text[:87] + "...", fontsize=9)
    fig.tight_layout()
    return fig, axes


def plot_frame_profile(
    run: ProbeRun,
    image: int | None = None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    normalise_tokens: bool = True,
    size: tuple[float, float] | None = None,
) -> tuple[Any, Any]:
    """The "when" plot of a video: attention mass of every generated token (x) on every frame (y), from
    :meth:`ProbeRun.frame_profile`.

    Args:
        image: the video's index among the prompt's media (default: the only video).
        normalise_tokens: divide each token's column by its mass on the whole video (where in the video each
            token looks), instead of the raw mass (how much it looks at the video at all).

    Returns:
        ``(fig, ax)``.
    """
    import matplotlib.pyplot as plt

    frames, mass = run.frame_profile(image=image, layers=layers, heads=heads)
    values = mass.numpy()
    if normalise_tokens:
        values = values / np.maximum(values.sum(axis=0, keepdims=True), 1e-12)
    width = size or (max(4.0, 0.32 * values.shape[1] + 1.5), max(2.5, 0.25 * values.shape[0] + 1.2))
    fig, ax = plt.subplots(figsize=width)
    im = ax.imshow(values, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(frames)))
    ax.set_yticklabels([f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in frames], fontsize=7)
    ax.set_xticks(range(len(run.tokens)))
    ax.set_xticklabels([s.strip() or "·" for s in run.tokens], rotation=90, fontsize=7)
    ax.set_ylabel("frame")
    ax.set_xlabel("generated token")
    fig.colorbar(im, ax=ax, label="share of the video's attention" if normalise_tokens else "attention mass")
    fig.tight_layout()
    return fig, ax


def plot_methods(run: Any, methods: Any = None, words: Any = None, max_words: int = 6,
                 panel_size: float = 1.9) -> Any:
    """The "methods" figure: the same answer's words (columns) under every map method (rows), each word's map (the
    mean of its tokens' maps, as the analyzer makes it) over the image, its argmax marked by a white cross.

    Args:
        run: a one-image :class:`~emergence.ProbeRun`.
        methods: ``{label: method name}`` or ``{label: (method name, heads)}`` (heads: ``(layer, head)`` pairs or
            ``None``); default every method the run can make (attention, and those its extras allow).
        words: the words to show (default: the first ``max_words`` words of more than three letters).

    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt


    if methods is None:
        methods = {m.name: m.name for m in METHODS.values() if all(k in run.extras for k in m.needs)}
    units = word_units(run)
    if words is None:
        chosen = [u for u in units if len(u.text) > 3 and u.text.isalpha()][:max_words]
    else:
        wanted = list(words)
        chosen = [u for u in units if u.text in wanted][:max_words]
    if not chosen:
        raise ValueError(f"none of the words {words!r} is in the answer {run.text!r}")
    fig, axes = plt.subplots(len(methods), len(chosen), figsize=(panel_size * len(chosen),
                                                                 panel_size * len(methods)), squeeze=False)
    for r, (label, spec) in enumerate(methods.items()):
        name, heads = (spec, None) if isinstance(spec, str) else spec
        method = get_method(name)
        maps = method.maps(run, MapOptions(heads=heads, normalise=method.normalise))  # type: ignore[arg-type]
        for c, unit in enumerate(chosen):
            heat = run.layout.render(maps[list(unit.tokens)].mean(0))
            ax = axes[r, c]
            ax.imshow(run.image)
            ax.imshow(heat, cmap="jet", alpha=0.5, extent=(0, run.image.width, run.image.height, 0))
            x, y = argmax_point(heat)
            ax.plot([x], [y], "w+", markersize=10, markeredgewidth=2)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(repr(unit.text), fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(run.text.strip()[:100], fontsize=9)
    fig.tight_layout()
    return fig
