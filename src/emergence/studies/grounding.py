"""The "when does grounding emerge" study on the organism: each scene's referring expression as the prompt, the
analyzer over the answer, scores against the expression's exact mask.

    emergence organism ground --seed 11 --n 200 --segmenter classical

Per scene one referring expression is drawn (deterministically from the scene) among the scene's entity and part
expressions; the prompt is ``describe <expression>``. Reported: oracle mIoU (best word per scene), the score-based
automatic choice's mIoU, recall at IoU 0.5, the emergence-position histogram (10% bins of the answer), the emergence
layer histogram, and the concept-category histogram of the best words (categories by the offline lexicon with the
world's own vocabulary).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..organism.reading import organism_judge, scene_expression  # re-exported: the study has always offered them

__all__ = ["GroundingEval", "evaluate_grounding", "format_grounding_result", "organism_judge", "scene_expression"]


@dataclass
class GroundingEval:
    """Results of :func:`evaluate_grounding` (``rows``: one summary record per scene)."""

    seed: int
    n: int
    segmenter: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    protocol: str = "emergence"

    def metric(self, key: str) -> float:
        vals = [r[key] for r in self.rows if not np.isnan(r[key])]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def oracle_miou(self) -> float:
        return self.metric("oracle_iou")

    def histogram(self, key: str) -> dict[Any, int]:
        out: dict[Any, int] = {}
        for r in self.rows:
            if r.get(key) is not None and r.get(key) != -1:
                out[r[key]] = out.get(r[key], 0) + 1
        return dict(sorted(out.items(), key=lambda kv: str(kv[0])))

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "n": self.n, "segmenter": self.segmenter, "seconds": self.seconds,
                "protocol": self.protocol, "tied_scenes": int(sum(r.get("best_ties", 1) >= 2 for r in self.rows)),
                "oracle_miou": self.oracle_miou, "auto_score_miou": self.metric("auto_score_iou"),
                "recall_at_0.5": float(np.mean([r["oracle_iou"] >= 0.5 for r in self.rows])) if self.rows else 0.0,
                "emergence_bins": self.histogram("emergence_bin"),
                "emergence_layers": self.histogram("emergence_layer"),
                "best_categories": self.histogram("best_category"), "rows": self.rows}


def evaluate_grounding(seed: int, n: int, segmenter: str = "classical", model: str | os.PathLike | None = None,
                       max_new_tokens: int = 64, progress: bool = False,
                       out: str | os.PathLike | None = None, protocol: str = "emergence") -> GroundingEval:
    """The analyzer on ``n`` scenes of ``ShapesWorld(seed)`` (module docstring), run as a sweep over
    :class:`~emergence.datasets.ShapesBench` with the ``describe`` template.

    Args:
        model: an organism folder (default: the shipped one).
        out: keep the sweep folder there (default: a temporary folder); a sweep folder resumes.
        protocol: ``"emergence"`` (words, the first with IoU >= 0.5) or ``"pixfoundation"`` (noun chunks by the
            world's grammar, :class:`~emergence.organism.reading.OrganismNounChunks`; PixFoundation's when unit).
    """
    import tempfile

    from ..sweep import SweepConfig, run_sweep

    with tempfile.TemporaryDirectory() as tmp:
        config = SweepConfig(out=str(out or Path(tmp) / "sweep"), dataset="shapes",
                             dataset_kwargs={"n": n, "seed": seed}, model=None if model is None else str(model),
                             segmenter=segmenter, max_new_tokens=max_new_tokens, store="none", protocol=protocol,
                             noun_chunks="organism" if protocol == "pixfoundation" else "spacy")
        start = time.perf_counter()
        samples = run_sweep(config, progress=progress).table("samples")
        seconds = time.perf_counter() - start
    if samples["error"].notna().any():
        raise RuntimeError(f"organism grounding: {int(samples['error'].notna().sum())} scenes failed; first: "
                           f"{samples.loc[samples['error'].notna(), 'error'].iloc[0]}")
    keep = ["answer", "units", "unit_kind", "tau", "protocol", "best_ties", "absent", "oracle_iou", "best_text",
            "best_category", "best_position", "emerged", "emergence_text", "emergence_token", "emergence_position",
            "emergence_bin", "emergence_layer", "auto_score_text", "auto_score_iou", "auto_mllm_iou"]
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}  # plain Python values
            for rec in samples[keep].to_dict("records")]
    for row, r in zip(rows, samples.itertuples()):
        row.update({"scene": int(r.sample), "expression": r.expression, "target": r.meta_target})
    return GroundingEval(seed=seed, n=n, segmenter=segmenter, rows=rows, seconds=seconds, protocol=protocol)


def format_grounding_result(result: GroundingEval) -> str:
    """Plain-text report: mIoUs, emergence position and layer histograms, category histogram of best words."""
    from ..analysis.metrics import BIN_LABELS

    d = result.to_dict()
    n = max(len(result.rows), 1)
    when = ("when unit (PixFoundation: the noun chunk with the highest-IoU mask, last of ties)"
            if result.protocol == "pixfoundation" else "emergence position (first word with IoU >= 0.5)")
    lines = [
        f"organism grounding: world seed {result.seed}, {len(result.rows)} scenes, segmenter {result.segmenter}, "
        f"protocol {result.protocol}, {result.seconds:.0f} s",
        f"oracle mIoU (best unit per scene): {d['oracle_miou']:.3f}",
        f"automatic (SAM score x peakiness) mIoU: {d['auto_score_miou']:.3f}",
        f"recall (oracle IoU >= 0.5): {d['recall_at_0.5']:.3f}",
        f"scenes with several units tied at the best IoU: {d['tied_scenes']}",
        "",
        f"{when}, scenes per 10% bin of the answer:",
    ]
    bins = d["emergence_bins"]
    for b, label in enumerate(BIN_LABELS):
        c = bins.get(b, 0)
        lines.append(f"  {label:>8} {c:4d} {'#' * round(40 * c / n)}")
    lines.append(f"  {'never':>8} {n - sum(bins.values()):4d}")
    lines += ["", "emergence layer:"] + [f"  layer {k}: {v}" for k, v in d["emergence_layers"].items()]
    lines += ["", "concept category of the best unit:"]
    for cat, c in sorted(d["best_categories"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {cat:<11} {c:4d} {'#' * round(40 * c / n)}")
    by_target: dict[str, list[float]] = {}
    for r in result.rows:
        by_target.setdefault(r["target"], []).append(r["oracle_iou"])
    lines += ["", "oracle mIoU by expression type:"]
    lines += [f"  {t:<8} {np.mean(v):.3f} ({len(v)} scenes)" for t, v in sorted(by_target.items())]
    return "\n".join(lines)


def save_grounding(result: GroundingEval, path: str | os.PathLike) -> Path:
    """Write the result as JSON (atomically; never over a file the toolkit did not write)."""
    from ..files import write_result_json

    return write_result_json(path, result.to_dict())
