"""Step 8: choose a mask without ground truth, with the probed MLLM as judge (PixFoundation's automatic mode).

The distinct candidate masks (best-scored first, at most ``max_candidates``) are each drawn in red on a copy of the
image; the copies are tiled, numbered from 1, into one picture, and the model is asked which number shows the
expression. The first number in its answer that names a candidate is its choice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["candidate_montage", "parse_choice", "select_with_mllm", "JUDGE_PROMPT"]

JUDGE_PROMPT = (
    "The picture shows {n} numbered copies of one image, each with a region highlighted in red. "
    "Which number highlights {expression}? Answer with the number only."
)


def candidate_montage(image: Image.Image, masks: Sequence[np.ndarray], alpha: float = 0.55) -> Image.Image:
    """Tile copies of ``image`` with each ``[H, W]`` mask blended in red, numbered 1..N (up to 2 columns)."""
    w, h = image.size
    cols = 1 if len(masks) == 1 else 2
    rows = (len(masks) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    for i, m in enumerate(masks):
        tile = base.copy()
        tile[m] = (1 - alpha) * tile[m] + alpha * red
        im = Image.fromarray(tile.round().astype(np.uint8))
        draw = ImageDraw.Draw(im)
        draw.rectangle([0, 0, max(10, w // 12), max(12, h // 10)], fill=(255, 255, 255))
        draw.text((2, 1), str(i + 1), fill=(0, 0, 0))
        canvas.paste(im, ((i % cols) * w, (i // cols) * h))
    return canvas


def parse_choice(answer: str, n: int) -> int | None:
    """0-based index of the first number 1..n in ``answer`` (``None`` when there is none)."""
    for match in re.finditer(r"\d+", answer):
        value = int(match.group())
        if 1 <= value <= n:
            return value - 1
    return None


def select_with_mllm(
    probe: Any,
    image: Image.Image,
    expression: str,
    masks: Sequence[np.ndarray],
    order: Sequence[int] | None = None,
    max_candidates: int = 4,
    prompt: str = JUDGE_PROMPT,
) -> int | None:
    """Index into ``masks`` of the candidate the model picks, or ``None`` when its answer names none.

    Args:
        probe: a :class:`~emergence.Probe`.
        masks: ``[H, W]`` bool candidates (one per unit; duplicates are shown once).
        order: preference order of the candidates (default: as given).
    """
    order = list(order) if order is not None else list(range(len(masks)))
    shown: list[int] = []
    for i in order:
        if masks[i].any() and not any(np.array_equal(masks[i], masks[j]) for j in shown):
            shown.append(i)
        if len(shown) == max_candidates:
            break
    if not shown:
        return None
    montage = candidate_montage(image, [masks[i] for i in shown])
    run = probe.generate(montage, prompt.format(n=len(shown), expression=expression), max_new_tokens=8, keep="mean")
    pick = parse_choice(run.text, len(shown))
    return shown[pick] if pick is not None else None
