"""How the analyzer reads the shapes world: its concept judge (the world's nouns) and each scene's referring
expression used as the grounding prompt."""

from __future__ import annotations

from typing import Any

import numpy as np

from .world import BACKGROUNDS, PARTS, SHAPES

__all__ = ["organism_judge", "scene_expression"]


def organism_judge() -> Any:
    """The lexicon judge, told the world's nouns (shape names are entities, background patterns are context)."""
    from ..analysis import LexiconJudge

    extra = {s: "entity" for s in SHAPES}
    extra.update({p: "part" for p in PARTS})
    extra.update({b: "context" for b in BACKGROUNDS})
    extra["hollow"] = "state"
    return LexiconJudge(extra)


def scene_expression(scene: Any) -> Any:
    """The scene's referring expression used as the prompt (deterministic per scene)."""
    exprs = scene.referring_expressions()
    rng = np.random.RandomState((scene.seed * 31_337 + scene.index) % 2**31)
    return exprs[rng.randint(len(exprs))]
