"""Every map method on the same organism scenes (issue: "beyond raw attention"):

    emergence organism compare-maps --seed 41 --n 300 --calib-seed 43 --calib-n 100 --k 3

Methods (:mod:`emergence.maps`): ``attention`` (layer and head mean, mean-subtracted), ``relative``, ``tam``,
``gradient``, ``loc-heads`` (attention over the ``k`` LocalizationHeads heads selected on the calibration scenes, no
ground truth) and ``score-heads`` (attention over the ``k`` best heads of :func:`emergence.analysis.head_scores`
pointing on the calibration scenes' ground truth, today's ranking).

Per test scene two generations, each recording every method's inputs once: the caption (the organism's prompt) and
``describe <referring expression>``. Measured per method:

* pointing accuracy per concept category: the caption words aligned with the reference caption, argmax of the
  word's map inside its referent (as ``emergence organism eval``);
* oracle / automatic mIoU: the analyzer (classical segmenter, word units) on the ``describe`` answer against the
  expression's mask: the best word's IoU, and the score-based choice's (SAM score x peakiness); the same under
  ``protocol="pixfoundation"`` (noun chunks of the world's grammar; its when-unit bins are kept too);
* TAM's metrics on the caption (TAM, ICCV 2025): the answer's rendered maps scaled to 0..255 jointly over the
  answer; Obj-IoU = IoU of each entity / part noun's Otsu-thresholded map with its referent; Func-IoU = for each
  function word (a, an, the, and), the share of its map below the mean of the sample's noun Otsu thresholds;
  F1-IoU = their harmonic mean (of the means);
* time per sample: the seconds each method adds on top of a plain generation (its recording, measured on the first
  ``timing_n`` scenes per method alone) plus its maps and the analyzer run, and the plain generation itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..organism.world import CATEGORIES, ShapesWorld

__all__ = ["MapComparison", "compare_maps", "format_comparison", "otsu_threshold", "plot_methods", "tam_metrics"]

METHOD_ORDER = ("attention", "relative", "tam", "gradient", "loc-heads", "score-heads")
FUNCTION_WORDS = frozenset({"a", "an", "the", "and"})  # TAM's function tags present in the world (DT, CC)


@dataclass
class MapComparison:
    """Results of :func:`compare_maps` (``rows``: one dict per method with every measure)."""

    seed: int
    n: int
    calib_seed: int
    calib_n: int
    k: int
    heads: dict[str, list[list[int]]]
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "n": self.n, "calib_seed": self.calib_seed, "calib_n": self.calib_n, "k": self.k,
                "heads": self.heads, "rows": self.rows, "seconds": self.seconds}


def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold of uint8 values (0..255): the level maximising the between-class variance of
    ``values <= level`` vs ``values > level`` (as OpenCV's ``THRESH_OTSU``; a constant input gives its value)."""
    v = np.asarray(values, dtype=np.uint8).ravel()
    hist = np.bincount(v, minlength=256).astype(np.float64)
    total = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    mean_all = m0[-1] / total
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 - m0) ** 2 / (w0 * w1)
    between[(w0 == 0) | (w1 == 0)] = -1.0
    if between.max() < 0:
        return int(v[0])
    return int(np.argmax(between))


def tam_metrics(heat: np.ndarray, words: list[tuple[int, str, np.ndarray | None, str | None]]
                ) -> tuple[list[float], list[float]]:
    """TAM's Obj-IoU and Func-IoU terms of one answer.

    Args:
        heat: ``[T, H, W]`` rendered maps of every generated token.
        words: ``(token index, word, referent mask or None, category or None)`` of the caption's words.

    Returns:
        ``(obj_ious, func_ious)``: one value per entity / part noun with a referent, and per function word.
    """
    lo, hi = float(heat.min()), float(heat.max())
    scaled = np.zeros(heat.shape, np.uint8) if hi <= lo else np.round(255 * (heat - lo) / (hi - lo)).astype(np.uint8)
    obj, thresholds = [], []
    for t, _word, mask, category in words:
        if category not in ("entity", "part") or mask is None or not mask.any():
            continue
        level = otsu_threshold(scaled[t])
        thresholds.append(level)
        pred = scaled[t] > level
        obj.append(float((pred & mask).sum() / max((pred | mask).sum(), 1)))
    func = []
    if thresholds:
        fg = float(np.mean(thresholds))
        func = [float((scaled[t] < fg).mean()) for t, word, _m, _c in words if word.lower() in FUNCTION_WORDS]
    return obj, func


def compare_maps(seed: int = 41, n: int = 300, calib_seed: int = 43, calib_n: int = 100, k: int = 3,
                 segmenter: str = "classical", timing_n: int = 20, model: str | os.PathLike | None = None,
                 progress: bool = False, figure: str | os.PathLike | None = None) -> MapComparison:
    """The comparison of the module docstring on ``n`` scenes of ``ShapesWorld(seed)``; heads are selected on
    ``calib_n`` scenes of ``ShapesWorld(calib_seed)``. ``figure``: also draw the first scene under every method."""
    import warnings

    from ..analysis import analyze, build_segmenter, head_scores, top_heads
    from ..analysis.token_maps import MapOptions
    from ..datasets.templates import GROUNDING_TEMPLATES, format_grounding
    from ..analysis.heads import localization_heads
    from ..analysis.methods import get_method, method_maps
    from ..probe import Probe
    from .scenes import caption_words, word_pointing
    from ..organism.model import ORGANISM_DIR, PROMPT
    from ..organism.reading import OrganismNounChunks, organism_judge, scene_expression

    if calib_seed == seed:
        raise ValueError(f"calib_seed={calib_seed} equals seed: select heads on other scenes than the test scenes")
    start = time.perf_counter()
    probe = Probe.from_pretrained(model or ORGANISM_DIR, dtype="float32")
    seg = build_segmenter(segmenter)
    judge = organism_judge()
    recorded = ["tam", "relative", "gradient"]

    def ground_prompt(scene: Any) -> tuple[str, np.ndarray]:
        expr = scene_expression(scene)
        return format_grounding(GROUNDING_TEMPLATES["describe"], expr.text), expr.mask

    calib_world = ShapesWorld(calib_seed)
    calib_runs, hits = [], []
    for j in range(calib_n):
        scene = calib_world.scene(j)
        prompt, mask = ground_prompt(scene)
        run = probe.generate(scene.image, prompt, max_new_tokens=64)
        calib_runs.append(run)
        hits.append(head_scores(run, mask)["hit"])
    loc, _freq = localization_heads(calib_runs, top=k)
    scored = top_heads(np.mean(hits, axis=0), k, layers=calib_runs[0].layers)
    heads = {"loc-heads": loc, "score-heads": scored}
    spec = {"attention": ("attention", None), "relative": ("relative", None), "tam": ("tam", None),
            "gradient": ("gradient", None), "loc-heads": ("attention", loc), "score-heads": ("attention", scored)}

    world = ShapesWorld(seed)
    acc: dict[str, dict[str, Any]] = {m: {"hits": {c: [] for c in CATEGORIES}, "oracle": [], "auto": [], "obj": [],
                                          "func": [], "map_s": [], "analyze_s": [], "pix_oracle": [],
                                          "pix_auto": [], "pix_bins": []} for m in METHOD_ORDER}
    chunks = OrganismNounChunks()
    baselines: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    for i in range(n):
        scene = world.scene(i)
        caption = probe.generate(scene.image, PROMPT, max_new_tokens=64, methods=recorded)
        prompt, mask = ground_prompt(scene)
        grounding = probe.generate(scene.image, prompt, max_new_tokens=64, methods=recorded)
        token_idx, words = caption_words(caption)
        first = True
        for name in METHOD_ORDER:
            method, chosen = spec[name]
            options = MapOptions(heads=chosen, normalise=get_method(method).normalise)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            maps = method_maps(caption, method, options)
            acc[name]["map_s"].append(time.perf_counter() - t0)
            pointing = word_pointing(caption, scene, maps)
            for wp in pointing:
                acc[name]["hits"][wp.category].append(float(wp.hit))
                if first:
                    baselines[wp.category].append(float(wp.mask.mean()))
            first = False
            heat = caption.layout.render(maps)
            aligned = {wp.token: wp for wp in pointing}
            word_rows = [(t, w, aligned[t].mask if t in aligned else None,
                          aligned[t].category if t in aligned else None) for t, w in zip(token_idx, words)]
            obj, func = tam_metrics(heat, word_rows)
            acc[name]["obj"] += obj
            acc[name]["func"] += func
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = analyze(grounding, mask, segmenter=seg, method=method, heads=chosen, judge=judge)
            acc[name]["analyze_s"].append(time.perf_counter() - t0)
            summary = report.summary()
            acc[name]["oracle"].append(summary["oracle_iou"])
            acc[name]["auto"].append(summary["auto_score_iou"])
            with warnings.catch_warnings():  # the same answer under PixFoundation's protocol (noun chunks)
                warnings.simplefilter("ignore")
                pix = analyze(grounding, mask, segmenter=seg, method=method, heads=chosen, judge=judge,
                              protocol="pixfoundation", nlp=chunks, layer_emergence=False).summary()
            acc[name]["pix_oracle"].append(pix["oracle_iou"])
            acc[name]["pix_auto"].append(pix["auto_score_iou"])
            acc[name]["pix_bins"].append(pix["emergence_bin"])
        if progress and (i + 1) % 25 == 0:
            print(f"  {i + 1}/{n} scenes, {time.perf_counter() - start:.0f} s", flush=True)

    record_s = _recording_seconds(probe, world, min(timing_n, n), recorded)
    rows = {}
    for name in METHOD_ORDER:
        a = acc[name]
        method = spec[name][0]
        obj, func = float(np.mean(a["obj"])) if a["obj"] else float("nan"), \
            float(np.mean(a["func"])) if a["func"] else float("nan")
        rows[name] = {
            "pointing": {c: {"n": len(v), "accuracy": float(np.mean(v))} for c, v in a["hits"].items() if v},
            "oracle_miou": float(np.nanmean(a["oracle"])), "auto_miou": float(np.nanmean(a["auto"])),
            "pixfoundation": {"oracle_miou": float(np.nanmean(a["pix_oracle"])),
                              "auto_miou": float(np.nanmean(a["pix_auto"])),
                              "when_bins": np.bincount([b for b in a["pix_bins"] if b >= 0],
                                                       minlength=10).tolist()},
            "obj_iou": obj, "func_iou": func, "f1_iou": 2 * obj * func / (obj + func) if obj + func > 0 else 0.0,
            "record_s": record_s.get(method, 0.0), "map_s": float(np.mean(a["map_s"])),
            "analyze_s": float(np.mean(a["analyze_s"])),
        }
    rows["_baseline"] = {"pointing": {c: {"n": len(v), "accuracy": float(np.mean(v))}
                                      for c, v in baselines.items() if v},
                         "generate_s": record_s["plain"]}
    result = MapComparison(seed=seed, n=n, calib_seed=calib_seed, calib_n=calib_n, k=k,
                           heads={k_: [list(p) for p in v] for k_, v in heads.items()}, rows=rows,
                           seconds=time.perf_counter() - start)
    if figure is not None:  # the first scene with three objects (of the first 50), else the first
        scene = world.scene(next((j for j in range(min(n, 50)) if len(world.scene(j).objects) == 3), 0))
        run = probe.generate(scene.image, PROMPT, max_new_tokens=64, methods=recorded)
        plot_methods(run, {name: (spec[name][0], spec[name][1]) for name in METHOD_ORDER}, figure, scene=scene)
    return result


def _recording_seconds(probe: Any, world: ShapesWorld, count: int, methods: list[str]) -> dict[str, float]:
    """Seconds per caption: a plain generation, and what recording each method adds to it. One warm-up generation
    first; then per scene the plain generation and each method's are timed back to back, so drifts in the
    machine's speed hit all alike. A difference below zero (noise) is reported as 0."""
    from ..organism.model import PROMPT

    probe.generate(world.scene(0).image, PROMPT, max_new_tokens=64)  # warm-up: first-call costs are not a method's
    spent = {m: 0.0 for m in ["plain", *methods]}
    for i in range(count):
        image = world.scene(i).image
        for m in spent:
            t0 = time.perf_counter()
            probe.generate(image, PROMPT, max_new_tokens=64, methods=[] if m == "plain" else [m])
            spent[m] += time.perf_counter() - t0
    plain = spent["plain"] / max(count, 1)
    out = {"plain": plain, "attention": 0.0}
    for m in methods:
        out[m] = max(spent[m] / max(count, 1) - plain, 0.0)
    return out


def format_comparison(result: MapComparison) -> str:
    """A Markdown table: one row per method."""
    cats = [c for c in CATEGORIES if c in result.rows["_baseline"]["pointing"]]
    head = ("| method | " + " | ".join(f"pointing {c}" for c in cats) + " | oracle mIoU | auto mIoU | oracle mIoU "
            "(pixfoundation) | auto mIoU (pixfoundation) | Obj-IoU | Func-IoU | F1-IoU | s / sample |")
    lines = [f"organism map methods: world seed {result.seed}, {result.n} scenes; heads from seed {result.calib_seed} "
             f"({result.calib_n} scenes, k={result.k}): loc-heads {result.heads['loc-heads']}, score-heads "
             f"{result.heads['score-heads']}; {result.seconds:.0f} s", "", head,
             "|" + "---|" * (len(cats) + 9)]
    gen = result.rows["_baseline"]["generate_s"]
    for name in METHOD_ORDER:
        r = result.rows[name]
        per = r["record_s"] + r["map_s"] + r["analyze_s"]
        lines.append(f"| {name} | " + " | ".join(f"{r['pointing'][c]['accuracy']:.3f}" for c in cats)
                     + f" | {r['oracle_miou']:.3f} | {r['auto_miou']:.3f} | {r['pixfoundation']['oracle_miou']:.3f}"
                     + f" | {r['pixfoundation']['auto_miou']:.3f} | {r['obj_iou']:.3f} | {r['func_iou']:.3f}"
                     + f" | {r['f1_iou']:.3f} | {gen + per:.3f} |")
    base = result.rows["_baseline"]["pointing"]
    lines.append("| random pixel | " + " | ".join(f"{base[c]['accuracy']:.3f}" for c in cats) + " | | | | | | | | |")
    lines += ["", "oracle / auto mIoU: the analyzer on the describe answer under protocol emergence (words); "
              "(pixfoundation): the same answer and maps under PixFoundation's protocol (noun chunks of the world's "
              "grammar); docs/protocols.md.",
              f"s / sample = one plain caption generation ({gen:.3f} s) + the method's recording + its maps + "
              "one analyzer run (classical segmenter, protocol emergence); words per category: "
              + ", ".join(f"{c} {base[c]['n']}" for c in cats)]
    return "\n".join(lines)


def save_comparison(result: MapComparison, path: str | os.PathLike) -> Path:
    """Write the result as JSON (atomically; never over a file the toolkit did not write)."""
    from ..files import write_result_json

    return write_result_json(path, result.to_dict())


def plot_methods(run: Any, methods: dict[str, tuple[str, Any]], path: str | os.PathLike, scene: Any = None,
                 words: int = 6) -> Path:
    """Write the methods figure (:func:`emergence.plotting.plot_methods`) of an organism caption, its
    columns the scene's colour, shape and part words."""
    from ..plotting.base import save_figure
    from ..plotting.runs import plot_methods as draw

    named = None
    if scene is not None:
        named = [w for w, _m, c in scene.word_referents() if c in ("entity", "part", "appearance")]
    fig = draw(run, methods, words=named, max_words=words)
    return save_figure(fig, path, dpi=60)  # small enough to keep in the repository
