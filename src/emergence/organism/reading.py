"""How the analyzer reads the shapes world: its concept judge (the world's nouns) and each scene's referring
expression used as the grounding prompt."""

from __future__ import annotations

from typing import Any

import numpy as np

from .world import BACKGROUNDS, PARTS, SHAPES

__all__ = ["gcg_records", "organism_judge", "scene_expression"]


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


def gcg_records(seed: int, n: int) -> list[tuple[str, Any, str, list[str], list[np.ndarray]]]:
    """``n`` scenes of ``ShapesWorld(seed)`` as GCG ground truth (:func:`emergence.analysis.gcg.write_gcg`): the
    reference caption, and per object the phrase ``<solid|hollow> <colour> <shape>`` with the object's mask and, with
    a part, ``<part colour> <part>`` with the part's mask (the caption's own wording)."""
    from .world import ShapesWorld

    world = ShapesWorld(seed)
    out = []
    for i in range(n):
        scene = world.scene(i)
        phrases, masks = [], []
        for obj in scene.objects:
            phrases.append(f"{'hollow' if obj.hollow else 'solid'} {obj.colour} {obj.shape}")
            masks.append(obj.mask)
            for part, mask in obj.parts.items():
                phrases.append(f"{obj.part_colour} {part}")
                masks.append(mask)
        out.append((f"shapes-{seed}-{i}", scene.image, scene.caption, phrases, masks))
    return out
