"""Causal checks on the model organism: do the heads whose attention points at the object matter for pointing and
for the colour and shape words, more than random heads? Does the answer need the objects' visual tokens?

    emergence organism causal --seed 31 --n 200 --calib-seed 29 --calib-n 100 --k 3

1. Calibration (``calib_seed``, ``calib_n`` scenes, disjoint from the test scenes): every layer x head's pointing
   accuracy over the captioned words (:func:`emergence.studies.evaluate.evaluate`, ``per_head``), averaged over
   concept categories, ranks the heads.
2. On each test scene the organism captions the image (the base run). Then, under each condition, one teacher-forced
   forward over the same prompt and answer (:func:`emergence.causal.answer_effects`) gives the attention that predicts
   each word and each word's log-probability, and a fresh greedy caption (:func:`emergence.causal.free_answer`) shows
   which words change:

   - ``top-k`` / ``random-k`` / ``bottom-k``: the k best-ranked heads, k heads drawn at random (seeded per scene),
     the k worst, ablated (their output zeroed);
   - ``top-k mean``: the top k heads' output replaced by its mean over the first 20 calibration scenes' captions;
   - ``top-k blind`` / ``random-k blind``: those heads' attention to every visual token blocked (text positions
     after the image), the rest of the heads untouched;
   - ``knockout inside`` / ``knockout outside``: every text position after the image is blocked from the visual
     tokens whose cell centre lies on an object (any object or part of the scene), or from as many tokens drawn at
     random among those that touch no object (seeded per scene).

Reported per condition: pointing accuracy of the layer/head-mean map over all scored words, colour words and shape
words (not for the conditions that block visual tokens: they zero that attention by construction); the mean change
of the answer words' log-probability against the unablated forward (all, colour, shape words); the fraction of
captions that change; and the recall of the reference colour / shape words in the fresh caption.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..organism.world import COLOURS, SHAPES, ShapesWorld

__all__ = ["CausalEval", "evaluate_causal", "format_causal", "plot_causal", "save_causal"]

CONDITIONS = ("none", "top-k", "random-k", "bottom-k", "top-k mean", "top-k blind", "random-k blind",
              "knockout inside", "knockout outside")
#: conditions that block attention to visual tokens: their pointing is changed by construction, not reported
BLOCKING = ("top-k blind", "random-k blind", "knockout inside", "knockout outside")
KINDS = ("all", "colour", "shape")


@dataclass
class CausalEval:
    """Results of :func:`evaluate_causal`: ``table[condition][metric]`` and how the heads were ranked."""

    seed: int
    n: int
    calib_seed: int
    calib_n: int
    k: int
    ranking: list[tuple[int, int, float]]  # (layer, head, calibration pointing accuracy), best first
    table: dict[str, dict[str, float]] = field(default_factory=dict)
    knocked: dict[str, float] = field(default_factory=dict)  # mean visual tokens blocked, inside / outside
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "n": self.n, "calib_seed": self.calib_seed, "calib_n": self.calib_n, "k": self.k,
                "ranking": self.ranking, "table": self.table, "knocked": self.knocked, "seconds": self.seconds}


def _word_kind(word: str) -> str | None:
    return "colour" if word in COLOURS else "shape" if word in SHAPES else None


def _object_tokens(run: Any, scene: Any) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``[V]`` of the visual tokens whose cell centre lies on an object of the scene, and of those whose
    cell touches no object."""
    objects = np.zeros(scene.background_mask.shape, bool)
    for obj in scene.objects:
        objects |= obj.mask
        for part in (obj.parts or {}).values():
            objects |= part
    boxes = run.layout.token_boxes()  # [V, 4], NaN for tokens outside the grid
    h, w = objects.shape
    inside, outside = [], []
    for v, (x0, y0, x1, y1) in enumerate(boxes):
        if np.isnan(x0):
            continue
        cx, cy = int(np.clip((x0 + x1) / 2, 0, w - 1)), int(np.clip((y0 + y1) / 2, 0, h - 1))
        rows = slice(int(max(0, np.floor(y0))), int(min(h, np.ceil(y1))))
        cols = slice(int(max(0, np.floor(x0))), int(min(w, np.ceil(x1))))
        cell = objects[rows, cols]
        if objects[cy, cx]:
            inside.append(v)
        elif not cell.any():
            outside.append(v)
    return np.asarray(inside, dtype=np.int64), np.asarray(outside, dtype=np.int64)


def _recall(generated: list[str], scene: Any) -> dict[str, list[float]]:
    """Per kind, 1/0 per reference colour / shape word: reproduced at its aligned place in ``generated``."""
    import difflib

    reference = [w for w, _, _ in scene.word_referents()]
    matcher = difflib.SequenceMatcher(None, reference, generated, autojunk=False)
    kept = np.zeros(len(reference), bool)
    for block in matcher.get_matching_blocks():
        kept[block.a:block.a + block.size] = True
    out: dict[str, list[float]] = {"colour": [], "shape": []}
    for i, word in enumerate(reference):
        kind = _word_kind(word)
        if kind:
            out[kind].append(float(kept[i]))
    return out


def evaluate_causal(seed: int = 31, n: int = 200, calib_seed: int = 29, calib_n: int = 100, k: int = 3,
                    model: str | os.PathLike | None = None, progress: bool = False,
                    conditions: tuple[str, ...] = CONDITIONS) -> CausalEval:
    """The study of the module docstring on ``n`` scenes of ``ShapesWorld(seed)``.

    ``conditions``: a subset of :data:`CONDITIONS` (``"none"`` is always run: the others are measured against it).
    Without a head condition no head is ranked and no calibration scene is captioned (``ranking`` is empty).
    """
    import dataclasses

    import torch

    from ..analysis import argmax_point, pointing_hit, token_maps
    from ..causal import (ablate_heads, answer_effects, answer_log_probs, free_answer, head_means, knockout,
                          run_inputs)
    from ..probe import Probe
    from .evaluate import evaluate
    from .scenes import caption_words, word_pointing
    from ..organism.model import ORGANISM_DIR, PROMPT

    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown conditions {unknown}; the conditions are {list(CONDITIONS)}")
    chosen = tuple(c for c in CONDITIONS if c in conditions or c == "none")
    heads_needed = any(not c.startswith("knockout") and c != "none" for c in chosen)
    if calib_seed == seed and heads_needed:
        raise ValueError(f"calib_seed={calib_seed} equals seed: rank the heads on other scenes than the test scenes")
    start = time.perf_counter()
    probe = Probe.from_pretrained(model or ORGANISM_DIR, dtype="float32")
    layers = probe.attention_modules
    n_layers = len(layers)
    ranking: list[tuple[int, int, float]] = []
    top = bottom = []
    means = None
    if heads_needed:
        calib = evaluate(probe, seed=calib_seed, n=calib_n, per_head=True)
        scores = np.mean([np.asarray(v) for v in calib.per_head.values()], axis=0)  # [L, H]
        n_layers, n_heads = scores.shape
        if not 1 <= k <= scores.size // 2:
            raise ValueError(f"k={k} must lie in 1..{scores.size // 2} (half of the {scores.size} heads)")
        order = np.argsort(-scores.reshape(-1), kind="stable")
        pairs = [(layers[i // n_heads].layer_idx, int(i % n_heads)) for i in order]
        ranking = [(lay, h, float(scores.reshape(-1)[i])) for (lay, h), i in zip(pairs, order)]
        top, bottom = pairs[:k], pairs[-k:]
        calib_world = ShapesWorld(calib_seed)
        reference_runs = [probe.generate(calib_world.scene(j).image, PROMPT, max_new_tokens=64, keep="mean")
                          for j in range(min(20, calib_n))]
        means = head_means(probe, reference_runs)
    else:
        from ..capture.engine import num_attention_heads

        n_heads = num_attention_heads(layers[0], probe.model)

    world = ShapesWorld(seed)
    acc: dict[str, dict[str, list[float]]] = {c: {} for c in chosen}
    knocked: dict[str, list[int]] = {"inside": [], "outside": []}

    def add(cond: str, key: str, value: float) -> None:
        acc[cond].setdefault(key, []).append(float(value))

    for i in range(n):
        scene = world.scene(i)
        run = probe.generate(scene.image, PROMPT, max_new_tokens=64, keep="heads")
        token_idx, base_words = caption_words(run)
        by_kind = {kind: [t for t in token_idx if _word_kind(run.tokens[t].strip()) == kind]
                   for kind in ("colour", "shape")}
        inputs = run_inputs(probe, run)  # processed once, reused by every condition
        scored = word_pointing(run, scene)
        kinds = {wp.token: _word_kind(wp.word) for wp in scored}
        rng = np.random.RandomState(seed * 100003 + i)
        draw = rng.choice(n_layers * n_heads, size=k, replace=False)
        random_heads = [(layers[int(j) // n_heads].layer_idx, int(j) % n_heads) for j in draw]
        inside, outside = _object_tokens(run, scene)
        outside = np.sort(rng.choice(outside, size=min(len(inside), len(outside)), replace=False))
        knocked["inside"].append(len(inside))
        knocked["outside"].append(len(outside))
        first_text = int(run.layout.positions.max()) + 1
        positions = run.layout.positions
        interventions = {
            "none": contextlib.nullcontext,
            "top-k": lambda: ablate_heads(probe, top),
            "random-k": lambda: ablate_heads(probe, random_heads),
            "bottom-k": lambda: ablate_heads(probe, bottom),
            "top-k mean": lambda: ablate_heads(probe, top, mode="mean", means=means),
            "top-k blind": lambda: knockout(probe, positions, first_text, heads=top),
            "random-k blind": lambda: knockout(probe, positions, first_text, heads=random_heads),
            "knockout inside": lambda: knockout(probe, positions[inside], first_text),
            "knockout outside": lambda: knockout(probe, positions[outside], first_text),
        }
        base_lp = None
        for cond, make in interventions.items():
            if cond not in chosen:
                continue
            if cond in BLOCKING:
                with make():  # no maps: blocking zeroes that attention by construction
                    lp = answer_log_probs(probe, run, inputs)
                    fresh = free_answer(probe, run, inputs=inputs)
            else:
                with make():
                    attention, lp = answer_effects(probe, run, inputs=inputs)
                    fresh = free_answer(probe, run, inputs=inputs)
                redone = dataclasses.replace(run, attention=attention.to(run.attention.dtype))
                maps = token_maps(redone)
                for wp in scored:
                    hit = float(pointing_hit(argmax_point(run.layout.render(maps[wp.token])), wp.mask))
                    add(cond, "pointing all", hit)
                    if kinds[wp.token]:
                        add(cond, f"pointing {kinds[wp.token]}", hit)
            if cond == "none":
                base_lp = lp
            delta = (lp - base_lp).numpy()
            if token_idx:  # an answer with no caption word (an untrained model) has nothing to score
                add(cond, "dlogp all", float(delta[token_idx].mean()))
            for kind, picked in by_kind.items():
                if picked:
                    add(cond, f"dlogp {kind}", float(delta[picked].mean()))
            fresh_words = [s.strip() for s in probe._decode(torch.tensor(fresh, dtype=torch.long))[1] if s.strip()]
            add(cond, "caption changed", float(fresh_words != base_words))
            for kind, vals in _recall(fresh_words, scene).items():
                for v in vals:
                    add(cond, f"recall {kind}", v)
        if progress and (i + 1) % 20 == 0:
            print(f"  {i + 1}/{n} scenes, {time.perf_counter() - start:.0f} s", flush=True)
    table = {c: {key: float(np.mean(v)) for key, v in acc[c].items()} for c in chosen}
    return CausalEval(seed=seed, n=n, calib_seed=calib_seed, calib_n=calib_n, k=k, ranking=ranking, table=table,
                      knocked={key: float(np.mean(v)) for key, v in knocked.items()},
                      seconds=time.perf_counter() - start)


COLUMNS = ("pointing all", "pointing colour", "pointing shape", "dlogp all", "dlogp colour", "dlogp shape",
           "caption changed", "recall colour", "recall shape")


def format_causal(result: CausalEval) -> str:
    """The README's Markdown table."""
    head = "| condition | " + " | ".join(COLUMNS) + " |"
    lines = [head, "| --- |" + " ---: |" * len(COLUMNS)]
    for cond in (c for c in CONDITIONS if c in result.table):
        row = result.table[cond]
        cells = [("—" if key not in row else f"{row[key]:+.3f}" if key.startswith("dlogp") else f"{row[key]:.3f}")
                 for key in COLUMNS]
        lines.append(f"| {cond} | " + " | ".join(cells) + " |")
    top = ", ".join(f"L{lay}H{h} ({s:.2f})" for lay, h, s in result.ranking[:result.k])
    bottom = ", ".join(f"L{lay}H{h} ({s:.2f})" for lay, h, s in result.ranking[-result.k:])
    ranked = (f"Heads ranked on {result.calib_n} calibration scenes (seed {result.calib_seed}) by pointing "
              f"accuracy: top-{result.k} {top}; bottom-{result.k} {bottom}. " if result.ranking else "")
    lines += ["", f"{ranked}Knockout blocks on average "
              f"{result.knocked.get('inside', 0):.1f} visual tokens inside the objects and "
              f"{result.knocked.get('outside', 0):.1f} outside. {result.n} test scenes (seed {result.seed}), "
              f"{result.seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def save_causal(result: CausalEval, path: str | os.PathLike) -> Path:
    """Write the results as JSON (atomically; never over a file the toolkit did not write)."""
    from ..files import write_result_json

    return write_result_json(path, result.to_dict())


def plot_causal(result: CausalEval, path: str | os.PathLike) -> Path:
    """Write the report figure (:func:`emergence.plotting.studies.plot_causal`): pointing accuracy and
    log-probability change per condition (all / colour / shape)."""
    import matplotlib

    matplotlib.use("Agg")
    from ..plotting.base import save_figure
    from ..plotting.studies import plot_causal as draw

    fig = draw(result.table, [c for c in CONDITIONS if c in result.table], KINDS,
               f"Causal checks on the organism: {result.n} scenes, k = {result.k}")
    return save_figure(fig, path, dpi=110)
