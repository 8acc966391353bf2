"""Evaluate the organism on held-out scenes: exact captions and attention pointing per concept category.

Pointing (the attend-and-segment / PixFoundation reading of attention): for each generated word that matches a
reference caption word with a referent, take the attention row that predicts that word, average it over all layers
and heads, subtract the mean map over the answer's tokens, render it on the image and check whether its argmax pixel
falls inside the word's referent mask. The random baseline is the probability that a uniformly random pixel does
(the mask's area fraction). The same is computed for every single layer x head.

``normalise="none"`` scores the averaged maps as they are, without the subtraction (``"minmax"`` rescales each map
and so gives the same argmax, the same hits). Subtracting the answer's mean removes what every row looks at (sinks,
the objects in general); on the organisms it helps background words and costs the words whose rows look at the
objects as most rows do, location and state words most (docs/organism.md, "Which normalisation pointing uses").
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..organism.world import CATEGORIES, ShapesWorld
from .scenes import WordPointing, caption_words, word_pointing

if TYPE_CHECKING:
    from ..analysis.token_maps import Normalise

NORMALISE_MODES = ("mean_subtract", "none", "minmax")

__all__ = ["NORMALISE_MODES", "OrganismEval", "WordPointing", "caption_words", "evaluate", "format_table",
           "word_pointing"]


@dataclass
class OrganismEval:
    """Results of :func:`evaluate`.

    Attributes:
        seed, n: world seed and number of scenes.
        exact_caption: fraction of scenes whose generated caption equals the reference exactly.
        categories: per category: ``n`` words scored, ``accuracy`` (pointing hit rate), ``baseline`` (random pixel),
            ``ratio`` = accuracy / baseline.
        per_head: per category, ``[L, H]`` pointing accuracy of each single layer x head map.
        examples: a few (reference, generated) caption pairs.
        normalise: how each map was normalised across the answer before its argmax (``mean_subtract``, the
            default, ``none`` or ``minmax``).
    """

    seed: int
    n: int
    exact_caption: float
    categories: dict[str, dict[str, float]]
    per_head: dict[str, list[list[float]]] = field(default_factory=dict)
    examples: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    normalise: str = "mean_subtract"

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "n": self.n, "exact_caption": self.exact_caption, "categories": self.categories,
            "per_head": self.per_head, "examples": self.examples, "seconds": self.seconds,
            "normalise": self.normalise,
        }


def evaluate(probe: Any, seed: int, n: int, max_new_tokens: int = 64, per_head: bool = True,
             normalise: Normalise = "mean_subtract") -> OrganismEval:
    """Caption ``n`` scenes of ``ShapesWorld(seed)`` with ``probe`` and score them (see module docstring).

    ``normalise``: ``mean_subtract`` (default: each map minus the answer's mean map), ``none`` or ``minmax``; it
    applies to the layer/head-mean maps and to every single layer x head map.
    """
    from ..analysis import MapOptions, token_maps
    from ..analysis.heads import head_maps, peak_hits
    from ..organism.model import PROMPT

    if normalise not in NORMALISE_MODES:
        raise ValueError(f"normalise={normalise!r} is not one of {', '.join(map(repr, NORMALISE_MODES))}")
    options = MapOptions(normalise=normalise)

    world = ShapesWorld(seed)
    start = time.perf_counter()
    exact = 0
    hits: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    base: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    head_hits: dict[str, list[np.ndarray]] = {c: [] for c in CATEGORIES}
    examples = []
    for i in range(n):
        scene = world.scene(i)
        run = probe.generate(scene.image, PROMPT, max_new_tokens=max_new_tokens, keep="heads")
        gen_words = caption_words(run)[1]
        exact += gen_words == [w for w, _, _ in scene.word_referents()]
        if len(examples) < 5:
            examples.append((scene.caption, run.text.strip()))
        if per_head:
            maps = head_maps(run, normalise)  # [L, H, T, V], each layer x head normalised over the answer
            layers, heads = maps.shape[:2]
        for wp in word_pointing(run, scene, token_maps(run, options)):
            hits[wp.category].append(float(wp.hit))
            base[wp.category].append(float(wp.mask.mean()))
            if per_head:
                heats = run.layout.render(maps[:, :, wp.token].reshape(layers * heads, -1))
                head_hits[wp.category].append(peak_hits(heats, wp.mask).reshape(layers, heads))
    categories = {}
    for c in CATEGORIES:
        if hits[c]:
            acc, bl = float(np.mean(hits[c])), float(np.mean(base[c]))
            categories[c] = {"n": len(hits[c]), "accuracy": acc, "baseline": bl, "ratio": acc / bl if bl else 0.0}
    per_head_out = {c: np.mean(v, axis=0).round(4).tolist() for c, v in head_hits.items() if v}
    return OrganismEval(seed=seed, n=n, exact_caption=exact / max(n, 1), categories=categories,
                        per_head=per_head_out, examples=examples, seconds=time.perf_counter() - start,
                        normalise=normalise)


def format_table(result: OrganismEval) -> str:
    """A plain-text report: exact captions, pointing per category vs baseline, best single heads."""
    lines = [
        f"organism eval: world seed {result.seed}, {result.n} scenes, {result.seconds:.0f} s"
        + ("" if result.normalise == "mean_subtract" else f", maps normalised: {result.normalise}"),
        f"exact caption: {result.exact_caption:.3f}",
        "",
        f"{'category':<12} {'words':>6} {'pointing':>9} {'random':>7} {'x random':>9}",
    ]
    for c in CATEGORIES:
        r = result.categories.get(c)
        if r:
            lines.append(f"{c:<12} {r['n']:>6d} {r['accuracy']:>9.3f} {r['baseline']:>7.3f} {r['ratio']:>9.1f}")
    if result.per_head:
        lines += ["", "best single layer x head per category (pointing accuracy):"]
        for c, grid in result.per_head.items():
            arr = np.asarray(grid)
            l, h = np.unravel_index(int(arr.argmax()), arr.shape)
            lines.append(f"  {c:<12} layer {l} head {h}: {arr[l, h]:.3f}   (mean over heads {arr.mean():.3f})")
    return "\n".join(lines)


def save(result: OrganismEval, path: str | os.PathLike) -> Path:
    """Write the result as JSON (atomically; never over a file the toolkit did not write)."""
    from ..files import write_result_json

    return write_result_json(path, result.to_dict())
