"""Batch "when does grounding emerge" sweeps: every sample x template x task, resumable, local or on Ray.

Work items are ``(task, template, sample)`` in a fixed order (tasks, then templates, then samples) cut into fixed
chunks of ``chunk_size``; each chunk is computed, written and committed as one unit (:mod:`.store`). A resumed run
skips committed chunks, so a killed run continues where it stopped and its output equals an uninterrupted run's
(generation is greedy and seeded per item).

Tasks:

``grounding``
    prompt = grounding template filled with the expression (the question for absent objects without one), generate
    with capture, :func:`~emergence.analysis.analyze` against the ground truth; the sample row holds the report's
    summary plus the "noun of the expression" baseline (the answer's word equal to the expression's last word).
``vqa``
    prompt = VQA template with the question and options; the answer's option (rule-based, :mod:`.vqa`) and whether it
    is correct.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SweepConfig", "run_sweep", "work_items"]


@dataclass
class SweepConfig:
    """Everything that defines a sweep's output (recorded in the manifest).

    Attributes:
        out: output folder.
        dataset: dataset name (:data:`emergence.datasets.DATASETS`); ``root``/``images``/``dataset_kwargs`` locate it.
        probe: probe spec name or .toml path; or ``model``: hub id / folder; neither = the shipped organism.
        templates: grounding template names (built-in, or ``pf-ground-N`` with ``templates_dir``).
        vqa_templates: VQA template names (used when ``"vqa"`` is in ``tasks``).
        tasks: ``("grounding",)``, ``("vqa",)`` or both.
        limit: only the first ``limit`` samples.
        segmenter, units, tau, max_new_tokens: analyzer and generation options.
        store: attention kept per item: ``"layers"`` ([T, L, V] float16), ``"mean"`` ([T, V]) or ``"none"``.
        chunk_size: work items per committed chunk.
        seed: torch seed set before every item.
    """

    out: str
    dataset: str = "shapes"
    root: str | None = None
    images: str | None = None
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    probe: str | None = None
    model: str | None = None
    local_model: str | None = None
    device: str | None = None
    dtype: str | None = None
    templates: tuple[str, ...] = ("describe",)
    vqa_templates: tuple[str, ...] = ("plain",)
    templates_dir: str | None = None
    tasks: tuple[str, ...] = ("grounding",)
    limit: int | None = None
    segmenter: str = "classical"
    units: str = "words"
    tau: float = 0.5
    max_new_tokens: int = 64
    store: str = "layers"
    chunk_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        self.templates = tuple(self.templates)
        self.vqa_templates = tuple(self.vqa_templates)
        self.tasks = tuple(self.tasks)
        bad = [t for t in self.tasks if t not in ("grounding", "vqa")]
        if bad or not self.tasks:
            raise ValueError(f"tasks must be 'grounding' and/or 'vqa', got {self.tasks}")
        if self.store not in ("layers", "mean", "none"):
            raise ValueError(f"store={self.store!r} is not one of 'layers', 'mean', 'none'")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")

    def result_options(self) -> dict[str, Any]:
        """The options that determine the rows (compared on resume; ``out`` and ``device`` excluded)."""
        d = asdict(self)
        for k in ("out", "device"):
            d.pop(k)
        return json.loads(json.dumps(d, default=str))


# ---------------------------------------------------------------------------------------------------- work
def load_dataset_of(config: SweepConfig) -> Any:
    from ..datasets import load_dataset

    kwargs = dict(config.dataset_kwargs)
    ds = load_dataset(config.dataset, root=config.root, images=config.images, **kwargs)
    if config.limit is not None:
        ds.samples = ds.samples[: config.limit]
    return ds


def templates_of(config: SweepConfig) -> tuple[dict[str, str], dict[str, str]]:
    from ..datasets.templates import GROUNDING_TEMPLATES, VQA_TEMPLATES, load_templates

    ground, vqa = dict(GROUNDING_TEMPLATES), dict(VQA_TEMPLATES)
    if config.templates_dir:
        g, v = load_templates(config.templates_dir)
        ground.update(g)
        vqa.update(v)
    for names, table, kind in ((config.templates, ground, "grounding"), (config.vqa_templates, vqa, "VQA")):
        missing = [n for n in names if n not in table]
        if missing:
            raise ValueError(f"unknown {kind} template(s) {missing}; known: {sorted(table)} "
                             "(PixFoundation's need templates_dir=<its data/pixmmvp folder>)")
    return ground, vqa


def work_items(config: SweepConfig, n_samples: int, has_question: list[bool]) -> list[tuple[str, str, int]]:
    """``(task, template, sample index)`` in sweep order; VQA only for samples with a question."""
    items = []
    for task in config.tasks:
        names = config.templates if task == "grounding" else config.vqa_templates
        for name in names:
            items += [(task, name, i) for i in range(n_samples) if task == "grounding" or has_question[i]]
    return items


class Worker:
    """Holds the probe, the segmenter and the dataset; computes chunks. One per process (or Ray actor)."""

    def __init__(self, config: SweepConfig) -> None:
        from ..analysis import build_segmenter
        from ..specs import resolve_probe

        self.config = config
        self.probe, self.spec = resolve_probe(config.probe, config.model, config.local_model, device=config.device,
                                              dtype=config.dtype)
        self.segmenter = build_segmenter(config.segmenter, device=config.device)
        self.dataset = load_dataset_of(config)
        self.ground_t, self.vqa_t = templates_of(config)
        self.judge = None
        if config.dataset == "shapes":
            from ..organism.grounding import organism_judge

            self.judge = organism_judge()

    def _phrase(self, prompt: str) -> str:
        """The probe spec's prompt template around a filled template (none for the organism)."""
        return self.spec.format_prompt(prompt) if self.spec is not None else prompt

    def chunk(self, items: list[tuple[str, str, int]]) -> tuple[list[dict], list[dict], dict[str, Any]]:
        samples, units, tensors = [], [], {}
        for item in items:
            s, u, t = self.item(*item)
            samples.append(s)
            units += u
            tensors.update(t)
        return samples, units, tensors

    def item(self, task: str, template: str, index: int) -> tuple[dict, list[dict], dict[str, Any]]:
        import numpy as np
        import torch

        from ..analysis import analyze, head_scores
        from ..datasets import DatasetError
        from ..datasets.templates import format_grounding, format_vqa
        from .vqa import answer_letter, parse_option

        sample = self.dataset[index]
        key = f"{task}/{template}/{sample.id}"
        row: dict[str, Any] = {"key": key, "task": task, "template": template, "sample": sample.id,
                               "index": index, "expression": sample.expression, "pair": sample.pair,
                               "absent": sample.absent, "unannotated": sample.unannotated, "error": None}
        torch.manual_seed(self.config.seed)
        try:
            image = sample.image()
            if task == "vqa":
                prompt = self._phrase(format_vqa(self.vqa_t[template], sample.question, sample.options))
                run = self.probe.generate(image, prompt, max_new_tokens=self.config.max_new_tokens, keep="mean")
                pick = parse_option(run.text, sample.options or ())
                truth = answer_letter(sample.answer or "", sample.options or ())
                row.update(prompt=prompt, answer=run.text, vqa_choice=pick,
                           vqa_correct=None if truth is None else pick == truth)
                return row, [], {}
            gt = sample.gt_mask((image.height, image.width))
            text = sample.expression or sample.question or "the object"
            prompt = self._phrase(format_grounding(self.ground_t[template], text))
            run = self.probe.generate(image, prompt, max_new_tokens=self.config.max_new_tokens)
            report = analyze(run, gt_mask=gt, segmenter=self.segmenter, units=self.config.units,
                             tau=self.config.tau, judge=self.judge)
        except DatasetError as exc:
            row["error"] = str(exc)
            return row, [], {}
        row.update(prompt=prompt, **report.summary())
        row["noun_iou"] = _noun_baseline(report, sample.expression)
        table = report.table
        unit_rows = []
        for r in table.to_dict("records"):
            unit_rows.append({"key": key, "task": task, "template": template, "sample": sample.id,
                              **{k: (float(v) if isinstance(v, (np.floating,)) else v) for k, v in r.items()}})
        tensors: dict[str, Any] = {}
        if self.config.store != "none" and len(run):
            att = run.attention.float()
            tensors[f"{key}/maps"] = (att.mean(2) if self.config.store == "layers" else att.mean((1, 2))).half()
            if report.best is not None:
                toks = list(report.units[int(report.best.name)].tokens)
                tensors[f"{key}/head_mass"] = torch.from_numpy(head_scores(run, gt, toks)["mass"]).float()
        return row, unit_rows, tensors


def _noun_baseline(report: Any, expression: str | None) -> float:
    """IoU of the answer's first word equal to the expression's last word (its head noun, roughly); 0 when the answer
    never names it; NaN without an expression."""
    import re

    if not expression or report.table.empty or "iou" not in report.table:
        return float("nan")
    words = re.findall(r"[^\W_]+", expression.lower())
    if not words:
        return float("nan")
    noun = words[-1]
    match = report.table[report.table["text"].str.lower() == noun]
    return float(match["iou"].iloc[0]) if len(match) else 0.0


# ---------------------------------------------------------------------------------------------------- driver
def _manifest(config: SweepConfig, n_samples: int, n_items: int) -> dict[str, Any]:
    import numpy
    import torch
    import transformers

    from .. import __version__

    model_id = config.model or config.probe or "emergence-organism"
    revision = None
    if config.local_model or config.model:
        path = config.local_model or config.model
        cfg = Path(path) / "config.json"
        if cfg.exists():
            revision = json.loads(cfg.read_text(encoding="utf-8")).get("_commit_hash")
    return {"format": 1, "options": config.result_options(), "model_id": model_id, "model_revision": revision,
            "samples": n_samples, "items": n_items,
            "versions": {"emergence": __version__, "torch": torch.__version__,
                         "transformers": transformers.__version__, "numpy": numpy.__version__,
                         "python": platform.python_version()}}


def run_sweep(config: SweepConfig, backend: str = "local", workers: int = 2, progress: bool = True) -> Any:
    """Run (or resume) a sweep; returns its :class:`~emergence.sweep.store.SweepStore`.

    Args:
        backend: ``"local"`` (in this process) or ``"ray"`` (an actor per worker, each holding the MLLM and the
            segmenter; one GPU each when the cluster has GPUs). Both write identical outputs.
        workers: Ray actors.

    Raises:
        ValueError: ``config.out`` holds a sweep made with different options.
    """
    from .store import SweepStore

    if backend not in ("local", "ray"):
        raise ValueError(f"backend={backend!r} is not one of 'local', 'ray'")
    store = SweepStore(config.out, writable=True)
    dataset = load_dataset_of(config)
    templates_of(config)
    items = work_items(config, len(dataset), [s.question is not None and bool(s.options) for s in dataset])
    old = store.manifest()
    if old is not None and old["options"] != config.result_options():
        changed = sorted(k for k in config.result_options() if old["options"].get(k) != config.result_options()[k])
        raise ValueError(f"{config.out!r} holds a sweep made with other options ({changed}); use a new --out "
                         "or the same options to resume it")
    if old is None:
        store.write_manifest(_manifest(config, len(dataset), len(items)))
    chunks = [items[i: i + config.chunk_size] for i in range(0, len(items), config.chunk_size)]
    done = set(store.committed())
    todo = [c for c in range(len(chunks)) if c not in done]
    bar = _Progress(len(items), sum(len(chunks[c]) for c in done), enabled=progress)
    if backend == "local":
        worker = Worker(config)
        for c in todo:
            store.write_chunk(c, *worker.chunk(chunks[c]))
            bar.update(len(chunks[c]))
    else:
        _run_ray(config, store, chunks, todo, workers, bar)
    bar.close()
    return store


def _run_ray(config: SweepConfig, store: Any, chunks: list, todo: list[int], workers: int, bar: Any) -> None:
    from ..errors import require

    ray = require("ray", "distributed", "backend='ray'")
    from ray.util import ActorPool

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        actor_cls = ray.remote(num_gpus=1 if gpus >= 1 else 0, num_cpus=1)(Worker)
        pool = ActorPool([actor_cls.remote(config) for _ in range(max(1, workers))])
        # ordered map: chunks are committed in order as their results arrive
        for c, result in zip(todo, pool.map(lambda a, c: a.chunk.remote(chunks[c]), todo)):
            store.write_chunk(c, *result)
            bar.update(len(chunks[c]))
    finally:
        if started:
            ray.shutdown()


class _Progress:
    """A one-line progress bar with rate and ETA on stderr."""

    def __init__(self, total: int, done: int, enabled: bool = True) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.t0 = time.perf_counter()
        self.enabled = enabled
        self._draw()

    def update(self, n: int) -> None:
        self.done += n
        self._draw()

    def _draw(self) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        rate = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(30 * frac)
        print(f"\r[{bar:<30}] {self.done}/{self.total} items {rate * 3600:.0f}/h ETA {eta / 60:.1f} min",
              end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr)
