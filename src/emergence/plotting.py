"""Figures. Every function returns ``(fig, axes)`` and never calls ``show()``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .layouts.base import working_size
from .run import ProbeRun

__all__ = ["plot_frame_profile", "plot_token_heatmaps", "overlay"]


def save_figure(fig: Any, path: Any, dpi: int = 110) -> Any:
    """Write a figure as PNG atomically (parent folders created) and close it; the toolkit's only PNG writer. The
    PNG's ``Software`` text names emergence, so a later run may replace it; any other existing file is refused
    (:func:`emergence.files.check_output_file`). Returns the path."""
    import io
    from pathlib import Path

    import matplotlib.pyplot as plt

    from ._version import __version__
    from .files import SOFTWARE, atomic_write_bytes, check_output_file

    try:
        path = check_output_file(path)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": f"{SOFTWARE} {__version__}"})
    finally:
        plt.close(fig)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, buf.getvalue())


def overlay(
    ax: Any, image: Any, heat: np.ndarray, alpha: float = 0.55, cmap: str = "jet", covered: np.ndarray | None = None
) -> None:
    """Draw ``heat`` ([h, w], any range; min-max scaled for display) over ``image`` on ``ax``, stretched over the
    image's full extent when it is on a coarser working grid; pixels outside ``covered`` (same shape as ``heat``,
    e.g. ``layout.coverage(size)``: cropped away by the processor) stay unpainted."""
    extent = None
    if image is not None:
        ax.imshow(image)
        width, height = image.size if hasattr(image, "size") and not isinstance(image, np.ndarray) else \
            (np.asarray(image).shape[1], np.asarray(image).shape[0])
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    lo, hi = float(np.min(heat)), float(np.max(heat))
    scaled = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    if covered is not None:
        scaled = np.where(covered, scaled, np.nan)
    ax.imshow(scaled, cmap=cmap, alpha=alpha if image is not None else 1.0, vmin=0, vmax=1, extent=extent)
    ax.set_xticks([])
    ax.set_yticks([])


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

    from .analysis.token_maps import normalise

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
