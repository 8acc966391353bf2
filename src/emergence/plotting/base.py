"""The figures' common parts: the only writer of figure PNGs (files, or bytes that pages embed), and overlays."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["contour", "figure_png", "overlay", "save_figure"]


def save_figure(fig: Any, path: Any, dpi: int = 110) -> Any:
    """Write a figure as PNG atomically (parent folders created) and close it; the toolkit's only PNG writer. The
    PNG's ``Software`` text names emergence, so a later run may replace it; any other existing file is refused
    (:func:`emergence.files.check_output_file`). Returns the path."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    from ..files import atomic_write_bytes, check_output_file

    try:
        path = check_output_file(path)
    except Exception:
        plt.close(fig)
        raise
    data = figure_png(fig, dpi)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, data)


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """The figure's PNG bytes (its ``Software`` text names emergence), and the figure closed: what
    :func:`save_figure` writes and what pages embed."""
    import io

    import matplotlib.pyplot as plt

    from .._version import __version__
    from ..files import SOFTWARE

    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": f"{SOFTWARE} {__version__}"})
    finally:
        plt.close(fig)
    return buf.getvalue()


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


def contour(ax: Any, mask: np.ndarray | None, colour: str) -> None:
    """Outline ``mask`` ([h, w] bool) on ``ax`` in ``colour`` (nothing for an empty or full mask)."""
    if mask is not None and mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)



