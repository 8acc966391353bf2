"""A plain-text summary of one :class:`~emergence.ProbeRun` (what ``emergence run`` writes to ``summary.txt``)."""

from __future__ import annotations

from typing import Any

from ..layouts.base import working_size
from .token_maps import token_maps
from .prompts import make_prompt, scale_prompt

__all__ = ["run_summary"]


def run_summary(run: Any) -> str:
    """A plain-text summary of a run: model, prompt, answer, shapes, layout, and per generated token the peak of its
    mean-subtracted map (``x, y`` in original-image pixels). What ``emergence run`` writes to ``summary.txt``."""

    lines = [
        f"model: {run.meta.get('model')}  backend: {run.meta.get('backend')}",
        f"prompt: {run.prompt}",
        f"answer: {run.text}",
        f"attention: {tuple(run.attention.shape)} ({run.keep}), convention={run.convention}",
        f"layout: {run.layout}",
        "",
        "token | text | peak of the mean-subtracted map (x, y) in original pixels",
    ]
    if len(run):
        maps = token_maps(run)
        size = tuple(run.layout.image_size)
        work = working_size(size, 1024)  # as analyze(): a bounded grid, the peak mapped to its original pixel
        for t, tok in enumerate(run.tokens):  # one token at a time: memory stays one grid
            peak = scale_prompt(make_prompt(run.layout.render(maps[t], size=work).reshape(work)), work, size)
            x, y = (int(v) for v in peak.points[0])
            lines.append(f"{t:5d} | {tok!r:>14} | ({x}, {y})")
    return "\n".join(lines) + "\n"
