"""How the analyzer reads the shapes world: its concept judge (the world's nouns) and each scene's referring
expression used as the grounding prompt."""

from __future__ import annotations

from typing import Any

import numpy as np

from .world import BACKGROUNDS, PARTS, SHAPES

__all__ = ["OrganismNounChunks", "gcg_records", "organism_judge", "scene_expression"]


def organism_judge() -> Any:
    """The lexicon judge, told the world's nouns (shape names are entities, background patterns are context)."""
    from ..analysis import LexiconJudge

    extra = {s: "entity" for s in SHAPES}
    extra.update({p: "part" for p in PARTS})
    extra.update({b: "context" for b in BACKGROUNDS})
    extra["hollow"] = "state"
    return LexiconJudge(extra)


class OrganismNounChunks:
    """Noun chunks of the shapes world's language, by its grammar, for ``units="phrases"`` and
    ``protocol="pixfoundation"`` where no spaCy English pipeline can be installed: a determiner (``a``, ``an``,
    ``the``) and the words after it up to the next function word (``and``, ``with``, ``on``, ``at``, ``of``, ``in``,
    ``or``, ``is``, another determiner, ``.``, ``?``). "at the top left a solid red square with a blue roof" ->
    "the top left", "a solid red square", "a blue roof". Callable like a spaCy pipeline: ``nlp(text).noun_chunks``
    (spans with ``start_char``, ``end_char``, ``text``)."""

    STOP = frozenset({"and", "with", "on", "at", "of", "in", "or", "is", "a", "an", "the", ".", "?"})
    meta = {"name": "organism_grammar"}

    def spans(self, text: str) -> list[tuple[int, int]]:
        import re

        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        out, i = [], 0
        while i < len(words):
            if text[slice(*words[i])] in ("a", "an", "the"):
                j = i + 1
                while j < len(words) and text[slice(*words[j])] not in self.STOP:
                    j += 1
                if j > i + 1:
                    out.append((words[i][0], words[j - 1][1]))
                i = j
            else:
                i += 1
        return out

    def __call__(self, text: str) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(noun_chunks=[SimpleNamespace(start_char=s, end_char=e, text=text[s:e])
                                            for s, e in self.spans(text)])


def scene_expression(scene: Any) -> Any:
    """The scene's referring expression used as the prompt (deterministic per scene)."""
    exprs = scene.referring_expressions()
    rng = np.random.RandomState((scene.seed * 31_337 + scene.index) % 2**31)
    return exprs[rng.randint(len(exprs))]


def gcg_records(seed: int, n: int) -> list[tuple[str, Any, str, list[str], list[np.ndarray]]]:
    """``n`` scenes of ``ShapesWorld(seed)`` as GCG ground truth (:func:`emergence.datasets.gcg.write_gcg`): the
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
