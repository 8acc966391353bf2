"""How much do training seeds move the organism findings, and do the two organism designs differ beyond that spread?

    emergence organism seeds --llava A B C --fuyu D E F --out seeds.json --figure seeds.png

Every model folder (one training seed of one design) is measured on the same held-out scenes:

- :func:`emergence.studies.evaluate.evaluate` on each world seed of ``eval_seeds`` (``eval_n`` scenes each, pooled):
  exact captions, and pointing accuracy per concept category with its random baseline (the referent's area);
- :func:`emergence.studies.grounding.evaluate_grounding` (``ground_seed``, ``ground_n`` scenes, protocol
  ``emergence``, classical segmenter): oracle and automatic mIoU, recall at 0.5, where grounding emerges (10% bins
  of the answer, the median position) and in which layer (also as relative depth, 0 = first layer, 1 = last, since
  the designs differ in depth);
- :func:`emergence.studies.causal.evaluate_causal` with only the knockout conditions (``causal_seed``, ``causal_n``
  scenes): the change in the answer words' log-probability and the fraction of captions changed when the text can
  no longer read the visual tokens inside the objects, or as many outside them.

Per design, each metric is reported as the mean, sample standard deviation, minimum and maximum over its seeds
(never the best seed). With three seeds per design no test of significance is meaningful; the criterion used is
plain and strict: a difference between the designs is called "beyond the seed spread" only when the two designs'
seed ranges (min..max) do not overlap.

Controls (``controls=True``): each design's untrained initialisation (training seed 0's, before any step) is
measured the same way and reported beside the trained seeds, never in their mean: what a metric gives with no
learned grounding (with the classical segmenter and the best word of a long answer, the oracle mIoU of an untrained
model is already high).

Each model's metrics are written into the output JSON as soon as they are measured, so a killed study resumes
where it stopped (models are keyed by the SHA-256 of their weights, so a folder that moved is not measured again;
a changed setting starts over).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..organism.world import CATEGORIES

__all__ = ["HEADLINE", "SeedsStudy", "format_seeds", "model_metrics", "plot_seeds", "study_seeds",
           "untrained_organism"]

#: the metrics of the side-by-side table, in order: (key, label, format)
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("exact caption", "exact caption", "{:.3f}"),
    *((f"pointing {c}", f"pointing: {c}", "{:.3f}") for c in ("appearance", "entity", "part", "location", "state")),
    *((f"x random {c}", f"x random: {c}", "{:.1f}") for c in ("appearance", "entity", "part", "location")),
    ("oracle mIoU", "oracle mIoU", "{:.3f}"),
    ("auto mIoU", "automatic mIoU", "{:.3f}"),
    ("emerged in first 10%", "emergence in the first 10% of the answer", "{:.2f}"),
    ("median emergence position", "median emergence position", "{:.2f}"),
    ("emergence depth", "emergence layer (relative depth)", "{:.2f}"),
    ("emergence at layer 0", "emergence in the first layer", "{:.2f}"),
    ("knockout inside dlogp all", "knockout inside: dlogp all", "{:+.2f}"),
    ("knockout inside dlogp shape", "knockout inside: dlogp shape", "{:+.2f}"),
    ("knockout outside dlogp all", "knockout outside: dlogp all", "{:+.3f}"),
    ("knockout inside caption changed", "knockout inside: captions changed", "{:.2f}"),
    ("knockout outside caption changed", "knockout outside: captions changed", "{:.2f}"),
)


def _weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {str(folder)!r}: give the folder of a trained organism")
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def model_metrics(folder: str | os.PathLike, eval_seeds: Sequence[int] = (7, 11), eval_n: int = 300,
                  ground_seed: int = 2718, ground_n: int = 200, causal_seed: int = 31, causal_n: int = 100
                  ) -> dict[str, float | None]:
    """One organism folder's metrics (module docstring), a flat ``{name: value}`` dict; ``None`` where a metric is
    undefined (no word of that kind to score)."""
    from ..probe import Probe
    from .causal import evaluate_causal
    from .evaluate import evaluate
    from .grounding import evaluate_grounding

    out: dict[str, float] = {}
    probe = Probe.from_pretrained(folder, dtype="float32")
    evals = [evaluate(probe, seed=s, n=eval_n, per_head=False) for s in eval_seeds]
    out["exact caption"] = float(np.mean([e.exact_caption for e in evals]))
    for c in CATEGORIES:
        n = sum(e.categories.get(c, {}).get("n", 0) for e in evals)
        if not n:
            continue
        acc = sum(e.categories[c]["accuracy"] * e.categories[c]["n"] for e in evals if c in e.categories) / n
        base = sum(e.categories[c]["baseline"] * e.categories[c]["n"] for e in evals if c in e.categories) / n
        out[f"pointing {c}"], out[f"random {c}"] = acc, base
        out[f"x random {c}"] = acc / base if base else float("nan")
        out[f"words {c}"] = float(n)

    grounding = evaluate_grounding(seed=ground_seed, n=ground_n, model=folder)
    rows = grounding.rows
    summary = grounding.to_dict()
    out["oracle mIoU"], out["auto mIoU"] = summary["oracle_miou"], summary["auto_score_miou"]
    out["recall@0.5"] = summary["recall_at_0.5"]
    scenes = max(len(rows), 1)
    for b in range(10):
        out[f"emergence bin {b}"] = sum(r["emergence_bin"] == b for r in rows) / scenes
    out["emerged in first 10%"] = out["emergence bin 0"]
    out["never emerged"] = sum(r["emergence_bin"] == -1 for r in rows) / scenes
    positions = [r["emergence_position"] for r in rows if r["emergence_bin"] != -1]
    out["median emergence position"] = float(np.median(positions)) if positions else float("nan")
    n_layers = len(probe.attention_modules)
    layers = [r["emergence_layer"] for r in rows if r["emergence_layer"] != -1]
    out["layers"] = float(n_layers)
    for layer in range(n_layers):
        out[f"emergence at layer {layer}"] = sum(x == layer for x in layers) / max(len(layers), 1)
    out["emergence depth"] = float(np.mean([x / max(n_layers - 1, 1) for x in layers])) if layers else float("nan")

    causal = evaluate_causal(seed=causal_seed, n=causal_n, model=folder,
                             conditions=("none", "knockout inside", "knockout outside"))
    for cond in ("knockout inside", "knockout outside"):
        for key, value in causal.table[cond].items():
            out[f"{cond} {key}"] = value
    # undefined (e.g. no caption word to score in an untrained model's answer): None, which JSON can hold
    return {k: (None if isinstance(v, float) and np.isnan(v) else float(v)) for k, v in out.items()}


def untrained_organism(design: str, out: str | os.PathLike, seed: int = 0) -> Path:
    """Save the untrained initialisation of ``design`` (``"llava"`` / ``"fuyu"``, training seed ``seed``: the weights
    training starts from) as an organism folder at ``out`` (new or empty). Returns the folder."""
    from ..files import atomic_write_json, claim_output_dir
    from ..organism.model import DESIGNS

    if design not in DESIGNS:
        raise ValueError(f"design={design!r}: organism designs are {sorted(DESIGNS)}")
    spec = DESIGNS[design]
    folder = claim_output_dir(out, "organism")
    processor = spec.build_processor()
    model = spec.build_model(processor, seed=seed, layers=spec.layers).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    atomic_write_json(folder / "training_args.json", {"design": design, "steps": 0, "seed": seed,
                                                      "layers": spec.layers, "world_seed": None})
    return folder


def _label(folder: Path) -> str:
    """How a folder is named in the study's JSON: relative to the working directory when inside it (so a committed
    study names no machine's paths), else absolute."""
    try:
        return folder.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(folder)


@dataclass
class SeedsStudy:
    """The result of :func:`study_seeds`: ``models[design]`` = one record per folder (``folder``, ``digest``,
    ``training_args``, ``metrics``); ``controls[design]``: the untrained initialisation's record, when measured."""

    settings: dict[str, Any]
    models: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    def values(self, design: str, key: str) -> list[float]:
        return [float(m["metrics"][key]) for m in self.models.get(design, []) if m["metrics"].get(key) is not None]

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{design: {metric: {"mean", "std", "min", "max", "values"}}}`` (``std``: sample standard deviation,
        NaN for one seed)."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for design, records in self.models.items():
            keys = sorted({k for r in records for k in r["metrics"]})
            out[design] = {}
            for key in keys:
                vals = np.asarray(self.values(design, key), dtype=float)
                if not len(vals):
                    continue
                out[design][key] = {"mean": float(np.mean(vals)),
                                    "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"),
                                    "min": float(np.min(vals)), "max": float(np.max(vals)), "values": vals.tolist()}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"study": "organism seeds", "settings": self.settings, "models": self.models,
                "controls": self.controls, "summary": self.summary(), "seconds": self.seconds}


def study_seeds(designs: Mapping[str, Sequence[str | os.PathLike]], eval_seeds: Sequence[int] = (7, 11),
                eval_n: int = 300, ground_seed: int = 2718, ground_n: int = 200, causal_seed: int = 31,
                causal_n: int = 100, out: str | os.PathLike | None = None, progress: bool = False,
                controls: bool = False) -> SeedsStudy:
    """Measure every folder of every design (module docstring). ``designs``: ``{"llava": [folders], "fuyu": [...]}``;
    ``controls``: also each design's untrained initialisation (module docstring).

    With ``out``, the JSON is rewritten after each model and a study with the same settings resumes from it.

    Raises:
        ValueError: a design with no folder, or a folder (or the same weights) given twice.
        FileNotFoundError: a folder without weights.
    """
    from ..files import write_result_json

    settings = {"eval_seeds": list(eval_seeds), "eval_n": eval_n, "ground_seed": ground_seed, "ground_n": ground_n,
                "causal_seed": causal_seed, "causal_n": causal_n, "segmenter": "classical", "protocol": "emergence"}
    folders = [Path(f).resolve() for fs in designs.values() for f in fs]
    if any(not fs for fs in designs.values()):
        raise ValueError(f"every design needs at least one organism folder: {dict(designs)}")
    if len(set(folders)) != len(folders):
        raise ValueError("an organism folder is given twice: each seed is one folder")
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if out is not None and Path(out).is_file():
        try:
            old = json.loads(Path(out).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = {}
        if old.get("study") == "organism seeds" and old.get("settings") == settings:
            done = {m["digest"]: m for ms in old.get("models", {}).values() for m in ms}
            done.update({m["digest"]: m for m in old.get("controls", {}).values()})
    study = SeedsStudy(settings=settings)
    start = time.perf_counter()

    seen: dict[str, str] = {}

    def measure(design: str, folder: Path, key: str) -> dict[str, Any]:
        digest = _weights_digest(folder)
        if digest in seen:
            raise ValueError(f"{key!r} and {seen[digest]!r} hold the same weights: each seed is one trained model")
        seen[digest] = key
        record = done.get(digest)
        if record is not None:
            record = dict(record, folder=key)  # the same weights, perhaps moved: measured once
        else:
            t0 = time.perf_counter()
            metrics = model_metrics(folder, eval_seeds, eval_n, ground_seed, ground_n, causal_seed, causal_n)
            args_path = folder / "training_args.json"
            record = {"folder": key, "digest": digest, "metrics": metrics,
                      "training_args": json.loads(args_path.read_text()) if args_path.is_file() else {},
                      "seconds": time.perf_counter() - t0}
            if progress:
                print(f"  {design} {key}: {record['seconds']:.0f} s", flush=True)
        return record

    def save() -> None:
        if out is not None:
            study.seconds = time.perf_counter() - start
            write_result_json(out, study.to_dict())

    for design, fs in designs.items():
        study.models[design] = []
        for f in fs:
            folder = Path(f).resolve()
            study.models[design].append(measure(design, folder, _label(folder)))
            save()
    if controls:
        import tempfile

        for design in designs:
            with tempfile.TemporaryDirectory() as tmp:
                folder = untrained_organism(design, Path(tmp) / "untrained")
                study.controls[design] = measure(design, folder, "untrained " + design)
            save()
    study.seconds = time.perf_counter() - start
    return study


def _cell(stats: Mapping[str, Any] | None, fmt: str) -> str:
    if not stats:
        return "—"
    if len(stats["values"]) == 1:
        return fmt.format(stats["mean"])
    return (f"{fmt.format(stats['mean'])} ± {fmt.format(stats['std']).lstrip('+')} "
            f"({fmt.format(stats['min'])}..{fmt.format(stats['max'])})")


def format_seeds(study: SeedsStudy) -> str:
    """The README's side-by-side Markdown table: per design, mean ± standard deviation (min..max) over seeds, and
    whether the designs differ beyond the seed spread (their ranges do not overlap)."""
    summary = study.summary()
    designs = list(study.models)
    controls = [d for d in designs if d in study.controls]
    counts = ", ".join(f"{d}: {len(study.models[d])} seeds" for d in designs)
    head = ("| metric | " + " | ".join(designs) + "".join(f" | {d} untrained" for d in controls)
            + (" | beyond the seed spread? |" if len(designs) == 2 else " |"))
    lines = [head, "| --- |" + " ---: |" * (len(designs) + len(controls)) + (" :---: |" if len(designs) == 2 else "")]
    for key, label, fmt in HEADLINE:
        stats = [summary.get(d, {}).get(key) for d in designs]
        if all(s is None for s in stats):
            continue
        cells = [_cell(s, fmt) for s in stats]
        for d in controls:
            value = study.controls[d]["metrics"].get(key)
            cells.append("—" if value is None else fmt.format(value))
        verdict = ""
        if len(designs) == 2:
            a, b = stats
            if a is None or b is None or min(len(a["values"]), len(b["values"])) < 2:
                verdict = " — |"
            else:
                apart = a["max"] < b["min"] or b["max"] < a["min"]
                verdict = " yes |" if apart else " no |"
        lines.append(f"| {label} | " + " | ".join(cells) + " |" + verdict)
    s = study.settings
    lines += ["", f"{counts}. Pointing and captions: world seeds {', '.join(map(str, s['eval_seeds']))} "
              f"({s['eval_n']} scenes each); grounding: seed {s['ground_seed']} ({s['ground_n']} scenes, "
              f"{s['protocol']} protocol, {s['segmenter']} segmenter); knockout: seed {s['causal_seed']} "
              f"({s['causal_n']} scenes). Cells: mean ± sample standard deviation (min..max) over seeds."]
    return "\n".join(lines) + "\n"


def plot_seeds(study: SeedsStudy, path: str | os.PathLike) -> Path:
    """Write the side-by-side figure (:func:`emergence.plotting.studies.plot_seeds`)."""
    import matplotlib

    matplotlib.use("Agg")
    from ..plotting.base import save_figure
    from ..plotting.studies import plot_seeds as draw

    records = {d: [m["metrics"] for m in ms] for d, ms in study.models.items()}
    fig = draw(records, title="Two organism designs, every training seed")
    return save_figure(fig, path, dpi=110)
