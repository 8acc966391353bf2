"""Step 3 of the pipeline: reduce recorded attention to one map per generated token, normalise it, render it.

``run.attention`` holds ``[T, L, H, V]`` (or its layer/head means). :func:`token_maps` picks layers and heads, averages
them, optionally suppresses attention sinks and grid corners, and normalises across the answer:

``mean_subtract`` (the references' default)
    subtract the mean map over all output tokens, removing attention that does not depend on the token (sinks,
    "global" tokens). Constant maps become zero, never NaN.
``minmax``
    rescale each token's map to [0, 1]; a constant map becomes all zeros.
``none``
    raw attention probabilities.

Sink suppression: visual positions whose mean attention over the answer is an outlier (above
``median + sink_z * 1.4826 * MAD`` of all positions) are replaced, in every token's map, by that map's median over the
other positions. Corner removal does the same for the four corner tokens of every view's grid (a known artefact of
some vision towers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ..run import HeadSelection, reduce_attention

__all__ = ["MapOptions", "Normalise", "reduce_attention", "token_maps", "normalise", "sink_positions", "corner_positions", "peakiness"]

Normalise = Literal["mean_subtract", "none", "minmax"]


@dataclass(frozen=True)
class MapOptions:
    """How generated tokens' attention becomes maps.

    Attributes:
        layers: language-model layer indices to average (``None``: every captured layer).
        heads: ``None`` (all heads), a list of head indices (used in every chosen layer), or a list of
            ``(layer, head)`` pairs (e.g. the top-k localisation heads from :func:`emergence.analysis.rank_heads`).
        normalise: ``"mean_subtract"`` (default), ``"minmax"`` or ``"none"``.
        sink_z: suppress attention-sink positions whose answer-mean mass is this many robust standard deviations
            above the median (``None``: off).
        remove_corners: replace the four corner tokens of every view by the map's median.
    """

    layers: Sequence[int] | None = None
    heads: HeadSelection = None
    normalise: Normalise = "mean_subtract"
    sink_z: float | None = None
    remove_corners: bool = False

    def __post_init__(self) -> None:
        if self.normalise not in ("mean_subtract", "none", "minmax"):
            raise ValueError(f"normalise={self.normalise!r} is not one of 'mean_subtract', 'none', 'minmax'")
        if self.sink_z is not None and not self.sink_z > 0:
            raise ValueError(f"sink_z must be a positive number of robust standard deviations, got {self.sink_z}")


def _select(run: Any, layers: Sequence[int] | None, heads: HeadSelection) -> torch.Tensor:
    """``[T, V]`` mean over the chosen layers and heads (float32)."""
    return reduce_attention(run.attention, run.keep, run.layers, layers, heads)


def sink_positions(maps: torch.Tensor, z: float) -> torch.Tensor:
    """Visual positions whose answer-mean attention is a robust outlier.

    Args:
        maps: ``[T, V]`` raw attention.
        z: threshold in robust standard deviations (1.4826 x median absolute deviation).

    Returns:
        ``[V]`` bool.
    """
    mean = maps.float().mean(0)
    med = mean.median()
    mad = (mean - med).abs().median() * 1.4826
    if float(mad) == 0.0:
        return mean > med  # all but a few positions equal: the few above them are the outliers
    return mean > med + z * mad


def corner_positions(layout: Any) -> torch.Tensor:
    """``[V]`` bool: the four corner tokens of every view's grid."""
    out = torch.zeros(layout.num_tokens, dtype=torch.bool)
    for view in layout.views:
        idx = view.index
        for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
            if idx[r, c] >= 0:
                out[int(idx[r, c])] = True
    return out


def _replace_by_median(maps: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    if not bool(positions.any()) or bool(positions.all()):
        return maps
    keep = maps[:, ~positions]
    med = keep.median(dim=1, keepdim=True).values
    out = maps.clone()
    out[:, positions] = med.expand(-1, int(positions.sum()))
    return out


def token_maps(run: Any, options: MapOptions | None = None) -> torch.Tensor:
    """One normalised map per generated token.

    Args:
        run: a :class:`~emergence.ProbeRun`.
        options: layers, heads, normalisation, sink and corner handling (default: all layers and heads, mean-subtract).

    Returns:
        ``[T, V]`` float32, finite.
    """
    options = options or MapOptions()
    maps = _select(run, options.layers, options.heads)
    if options.sink_z is not None:
        maps = _replace_by_median(maps, sink_positions(maps, options.sink_z))
    if options.remove_corners:
        maps = _replace_by_median(maps, corner_positions(run.layout))
    return normalise(maps, options.normalise)


def normalise(maps: torch.Tensor, mode: Normalise) -> torch.Tensor:
    """Normalise ``[..., T, V]`` maps across the answer's ``T`` tokens (module docstring); never produces NaN."""
    maps = torch.nan_to_num(maps.float())
    if mode == "mean_subtract":
        return maps - maps.mean(-2, keepdim=True) if maps.shape[-2] else maps
    if mode == "minmax":
        lo = maps.min(dim=-1, keepdim=True).values
        span = maps.max(dim=-1, keepdim=True).values - lo
        return torch.where(span > 0, (maps - lo) / span.clamp_min(1e-30), torch.zeros_like(maps))
    if mode == "none":
        return maps
    raise ValueError(f"normalise={mode!r} is not one of 'mean_subtract', 'none', 'minmax'")


def peakiness(heat: np.ndarray) -> float:
    """How concentrated a rendered map is, in [0, 1]: ``(max - mean) / (max - min)`` (0 for a constant map)."""
    heat = np.asarray(heat, dtype=np.float64)
    hi, lo = float(heat.max()), float(heat.min())
    if hi - lo <= 0:
        return 0.0
    return (hi - float(heat.mean())) / (hi - lo)
