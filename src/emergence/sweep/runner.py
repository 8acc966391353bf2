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
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.grouping import english_pipeline
from ..analysis.protocols import get_protocol
from ..progress import ProgressLine
from ..runtime import torch_threads

__all__ = ["SweepConfig", "SweepPlan", "dataset_fingerprint", "environment", "plan_sweep", "run_sweep", "work_items"]


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
        segmenter, units, tau, max_new_tokens: analyzer and generation options (``units=None``: the protocol's).
        protocol: ``"emergence"`` or ``"pixfoundation"`` (:mod:`emergence.analysis.protocols`); recorded in the
            manifest, so a resume or a report under another protocol is refused, never mixed.
        noun_chunks: where phrase units come from: ``"spacy"`` (``en_core_web_sm``) or ``"organism"`` (the shapes
            world's grammar, :class:`emergence.organism.reading.OrganismNounChunks`).
        map_method: the analyzer's map method (:mod:`emergence.maps`); what it reads is recorded with each
            generation.
        heads: ``(layer, head)`` pairs the maps average (e.g. :func:`emergence.maps.localization_heads` of a
            calibration set); ``None`` = every head.
        store: attention kept per item: ``"layers"`` ([T, L, V] float16), ``"mean"`` ([T, V]) or ``"none"``.
        chunk_size: work items per committed chunk.
        seed: torch seed set before every item.
        threads: torch CPU threads in every worker (``None``: this process's count when the sweep starts; a resume
            uses the count recorded in the manifest). Float sums are split by thread, so another count changes the
            last bits of logits and maps; a sweep therefore runs every item, local or on Ray, fresh or resumed, with
            one recorded count.
        batch_size: items generated at once (:meth:`emergence.Probe.generate_batch`; families whose batched
            generation matches single items). Recorded: like the thread count, another size changes the last bits
            (padding reorders float sums), so a resume with another size is refused.
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
    units: str | None = None
    protocol: str = "emergence"
    noun_chunks: str = "spacy"
    tau: float = 0.5
    max_new_tokens: int = 64
    store: str = "layers"
    chunk_size: int = 8
    seed: int = 0
    threads: int | None = None
    map_method: str = "attention"
    heads: tuple[tuple[int, int], ...] | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        from ..analysis.methods import get_method

        get_method(self.map_method)  # an unknown name fails here, before any model loads
        protocol = get_protocol(self.protocol)
        if protocol.units is not None and self.units not in (None, protocol.units):
            raise ValueError(f"protocol={protocol.name!r} scores units={protocol.units!r}; units={self.units!r} "
                             "belongs to another protocol")
        self.units = self.units or protocol.units or "words"
        if self.noun_chunks not in ("spacy", "organism"):
            raise ValueError(f"noun_chunks={self.noun_chunks!r} is not one of 'spacy', 'organism'")
        if self.heads is not None:
            self.heads = tuple((int(layer), int(head)) for layer, head in self.heads)
            if not self.heads:
                raise ValueError("heads must name at least one (layer, head) pair, or be None for every head")
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
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau must lie in (0, 1], got {self.tau}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def result_options(self) -> dict[str, Any]:
        """The options that determine the rows (compared on resume; ``out``, ``device`` and ``threads`` excluded:
        those are part of the manifest's environment)."""
        d = asdict(self)
        for k in ("out", "device", "threads"):
            d.pop(k)
        if d["map_method"] == "attention" and d["heads"] is None:  # the defaults: manifests written before these
            del d["map_method"], d["heads"]                        # options existed still resume
        if d["protocol"] == "emergence":  # likewise: sweeps made before protocols were named are 'emergence' ones
            del d["protocol"]
        if d["batch_size"] == 1:  # manifests written before batches existed still resume
            del d["batch_size"]
        if d["noun_chunks"] == "spacy":
            del d["noun_chunks"]
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


@dataclass
class SweepPlan:
    """What a sweep works through, resolved once from its config: the dataset, the prompt templates, the work items
    in sweep order and the dataset's fingerprint (:func:`plan_sweep`).

    Attributes:
        dataset: the loaded dataset (``config.limit`` applied).
        grounding_templates, vqa_templates: every known template by name (built-in, plus PixFoundation's).
        items: ``(task, template, sample index)`` in sweep order.
        fingerprint: :func:`dataset_fingerprint`.
    """

    dataset: Any
    grounding_templates: dict[str, str]
    vqa_templates: dict[str, str]
    items: list[tuple[str, str, int]]
    fingerprint: str


def plan_sweep(config: SweepConfig) -> SweepPlan:
    """Load the dataset and resolve the templates once; list the work items and fingerprint the data.

    Raises:
        ValueError: an unknown template (the message lists the known ones).
    """
    dataset = load_dataset_of(config)
    ground, vqa = templates_of(config)
    items = work_items(config, len(dataset), [s.question is not None and bool(s.options) for s in dataset])
    return SweepPlan(dataset, ground, vqa, items, dataset_fingerprint(dataset, config, (ground, vqa)))


class Worker:
    """Holds the probe, the segmenter and the dataset; computes chunks. One per process (or Ray actor).

    Args:
        config: the sweep's options.
        threads: torch CPU threads for this worker's process (the sweep's recorded count); ``None`` leaves them.
        plan: the sweep's plan when the worker runs in the process that made it (a Ray actor makes its own).
    """

    def __init__(self, config: SweepConfig, threads: int | None = None, plan: SweepPlan | None = None) -> None:
        from ..analysis import build_segmenter
        from ..loading import resolve_probe

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.config = config
        self.probe, self.spec = resolve_probe(config.probe, config.model, config.local_model, device=config.device,
                                              dtype=config.dtype)
        if config.batch_size > 1 and not self.probe.adapter.batched:
            from ..errors import UnsupportedModelError

            raise UnsupportedModelError(f"batch_size={config.batch_size}: batched generation is not supported for "
                                        f"{self.probe.adapter.family or type(self.probe.model).__name__}; run the "
                                        "sweep with batch_size=1")
        self.segmenter = build_segmenter(config.segmenter, device=config.device)
        plan = plan or plan_sweep(config)
        self.dataset = plan.dataset
        self.ground_t, self.vqa_t = plan.grounding_templates, plan.vqa_templates
        self.judge = getattr(self.dataset, "judge", None)  # a dataset may carry its own concept judge
        self.nlp = None
        if config.units == "phrases":
            if config.noun_chunks == "organism":
                from ..organism.reading import OrganismNounChunks

                self.nlp = OrganismNounChunks()
            else:
                try:
                    self.nlp = english_pipeline()  # loaded once, not per sample
                except Exception:  # noqa: BLE001 - 'emergence' falls back to words per sample, with the reason
                    self.nlp = None

    def _phrase(self, prompt: str) -> str:
        """The probe spec's prompt template around a filled template (none for the organism)."""
        return self.spec.format_prompt(prompt) if self.spec is not None else prompt

    def chunk(self, items: list[tuple[str, str, int]]) -> tuple[list[dict], list[dict], dict[str, Any]]:
        samples, units, tensors = [], [], {}
        done = self.batched_chunk(items) if self.batches() else [self.item(*item) for item in items]
        for s, u, t in done:
            samples.append(s)
            units += u
            tensors.update(t)
        return samples, units, tensors

    def ground(self, sample: Any, template: str, image: Any = None) -> tuple[str, Any, Any, Any]:
        """``(prompt, run, report, ground truth [H, W] bool)`` of one grounding item, exactly as the sweep computes
        it (the seed is set by the caller, as :meth:`item` does)."""
        image = sample.image() if image is None else image
        prompt, gt = self._ground_prompt(sample, template, image)
        run = self.probe.generate(image, prompt, max_new_tokens=self.config.max_new_tokens,
                                  methods=[self.config.map_method])
        return prompt, run, self._analyze(run, gt), gt

    def _ground_prompt(self, sample: Any, template: str, image: Any) -> tuple[str, Any]:
        from ..datasets.templates import format_grounding

        gt = sample.gt_mask((image.height, image.width))
        text = sample.expression or sample.question or "the object"
        return self._phrase(format_grounding(self.ground_t[template], text)), gt

    def _vqa_prompt(self, sample: Any, template: str) -> str:
        from ..datasets.templates import format_vqa

        return self._phrase(format_vqa(self.vqa_t[template], sample.question, sample.options))

    def _analysis_options(self) -> dict[str, Any]:
        return dict(segmenter=self.segmenter, units=self.config.units, protocol=self.config.protocol,
                    tau=self.config.tau, judge=self.judge, nlp=self.nlp, method=self.config.map_method,
                    heads=None if self.config.heads is None else list(self.config.heads))

    def _analyze(self, run: Any, gt: Any) -> Any:
        from ..analysis import EmptyGroundTruthWarning, analyze

        with warnings.catch_warnings():  # an empty ground truth is flagged in the row ("absent")
            warnings.simplefilter("ignore", EmptyGroundTruthWarning)
            return analyze(run, gt_mask=gt, **self._analysis_options())

    def _analyze_together(self, runs: list[Any], gts: list[Any]) -> list[Any]:
        """Reports of several runs, the runs of one image decoded together (``analyze_batch``); if that fails, each
        run alone, so that a failing run is an exception in its own place (returned, not raised)."""
        from ..analysis import EmptyGroundTruthWarning, analyze_batch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EmptyGroundTruthWarning)
            try:
                return analyze_batch(list(zip(runs, gts)), **self._analysis_options())
            except Exception:  # noqa: BLE001 - find the failing run: each one alone
                pass
        out: list[Any] = []
        for run, gt in zip(runs, gts):
            try:
                out.append(self._analyze(run, gt))
            except Exception as exc:  # noqa: BLE001 - becomes that item's error row
                out.append(exc)
        return out

    def _row(self, task: str, template: str, index: int, sample: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"key": f"{task}/{template}/{sample.id}", "task": task, "template": template,
                               "sample": sample.id, "index": index, "expression": sample.expression,
                               "pair": sample.pair, "absent": sample.absent, "unannotated": sample.unannotated,
                               "error": None, "error_type": None}
        row.update({f"meta_{k}": v for k, v in sample.meta.items()
                    if v is None or isinstance(v, (str, bool, int, float))})  # scalar metadata (pattern, target...)
        return row

    @staticmethod
    def _failed(row: dict[str, Any], sample: Any, exc: BaseException) -> tuple[dict, list[dict], dict[str, Any]]:
        """One bad sample must not stop the sweep: an error row names it and the cause."""
        row["error"] = f"sample {sample.id!r}: {type(exc).__name__}: {exc}"
        row["error_type"] = type(exc).__name__
        return row, [], {}

    def item(self, task: str, template: str, index: int) -> tuple[dict, list[dict], dict[str, Any]]:
        import torch

        sample = self.dataset[index]
        row = self._row(task, template, index, sample)
        torch.manual_seed(self.config.seed)
        try:
            image = sample.image()
            if task == "vqa":
                prompt = self._vqa_prompt(sample, template)
                run = self.probe.generate(image, prompt, max_new_tokens=self.config.max_new_tokens, keep="mean")
                return self._vqa_result(row, sample, prompt, run)
            prompt, run, report, gt = self.ground(sample, template, image)
        except Exception as exc:  # noqa: BLE001 - becomes the item's error row
            return self._failed(row, sample, exc)
        return self._ground_result(row, sample, prompt, run, report, gt)

    def _vqa_result(self, row: dict[str, Any], sample: Any, prompt: str, run: Any
                    ) -> tuple[dict, list[dict], dict[str, Any]]:
        from .vqa import answer_letter, parse_option

        pick = parse_option(run.text, sample.options or ())
        truth = answer_letter(sample.answer or "", sample.options or ())
        row.update(prompt=prompt, answer=run.text, vqa_choice=pick, vqa_correct=None if truth is None else pick == truth)
        return row, [], {}

    def _ground_result(self, row: dict[str, Any], sample: Any, prompt: str, run: Any, report: Any, gt: Any
                       ) -> tuple[dict, list[dict], dict[str, Any]]:
        import numpy as np
        import torch

        from ..analysis import head_scores

        key, task, template = row["key"], row["task"], row["template"]
        row.update(prompt=prompt, **report.summary())
        row["noun_iou"] = _noun_baseline(report, sample.expression)
        unit_rows = []
        for r in report.table.to_dict("records"):
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

    # ------------------------------------------------------------------ batches
    def batches(self) -> bool:
        """Whether this worker generates several items at once (``batch_size`` > 1, a family whose batched
        generation matches single items, a map method recorded after the generation)."""
        from ..analysis.methods import MapMethod, get_method

        method = get_method(self.config.map_method)
        return (self.config.batch_size > 1 and self.probe.adapter.batched
                and type(method).recording is MapMethod.recording)

    def batched_chunk(self, items: list[tuple[str, str, int]]) -> list[tuple[dict, list[dict], dict[str, Any]]]:
        """The chunk's items, generated ``batch_size`` at a time: items of one task are grouped by image size, sample
        and prompt length (little padding), in a fixed order (the same chunk always makes the same batches); results
        come back in the chunk's order. The runs of one batch are analyzed together (``analyze_batch``: the prompts of
        the runs of one image decoded in shared calls). An item that fails alone becomes its error row; a batch whose
        generation (or joint analysis) fails is redone one item at a time, so one bad item costs only itself."""
        import torch

        results: list[Any] = [None] * len(items)
        jobs: dict[str, list[tuple[int, Any, dict, Any, str, Any]]] = {"grounding": [], "vqa": []}
        for k, (task, template, index) in enumerate(items):
            sample = self.dataset[index]
            row = self._row(task, template, index, sample)
            try:
                image = sample.image()
                if task == "vqa":
                    prompt, gt = self._vqa_prompt(sample, template), None
                else:
                    prompt, gt = self._ground_prompt(sample, template, image)
            except Exception as exc:  # noqa: BLE001 - becomes the item's error row
                results[k] = self._failed(row, sample, exc)
                continue
            jobs[task].append((k, sample, row, image, prompt, gt))
        for task, todo in jobs.items():  # a sample's templates side by side: their prompts are segmented together
            todo.sort(key=lambda j: (j[3].size, j[2]["index"], len(j[4]), j[0]))
            for start in range(0, len(todo), self.config.batch_size):
                group = todo[start: start + self.config.batch_size]
                torch.manual_seed(self.config.seed)
                try:
                    runs = self.probe.generate_batch(
                        [(j[3], j[4]) for j in group], max_new_tokens=self.config.max_new_tokens,
                        **({"keep": "mean"} if task == "vqa" else {"methods": [self.config.map_method]}))
                except Exception:  # noqa: BLE001 - isolate the failing item: each one alone
                    for k, *_ in group:
                        results[k] = self.item(*items[k])
                    continue
                reports = self._analyze_together(runs, [j[5] for j in group]) if task == "grounding" else runs
                for (k, sample, row, _image, prompt, gt), run, report in zip(group, runs, reports):
                    try:
                        if isinstance(report, Exception):
                            raise report
                        if task == "vqa":
                            results[k] = self._vqa_result(row, sample, prompt, run)
                        else:
                            results[k] = self._ground_result(row, sample, prompt, run, report, gt)
                    except Exception as exc:  # noqa: BLE001 - becomes the item's error row
                        results[k] = self._failed(row, sample, exc)
        return results


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
def environment(threads: int, device: str | None) -> dict[str, Any]:
    """What, besides the options and the data, decides a sweep's bits: library versions, the torch thread count, the
    device kind and the CPU's vector instruction set (another one sums in another order)."""
    import numpy
    import torch
    import transformers

    from .._version import __version__

    dev = torch.device(device or "cpu")
    env = {"threads": int(threads), "device": dev.type, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "machine": platform.machine(), "emergence": __version__, "torch": torch.__version__,
           "transformers": transformers.__version__, "numpy": numpy.__version__}
    if dev.type == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(dev)
    return env


def environment_id(env: dict[str, Any]) -> str:
    """A short stable id of :func:`environment`'s dict (recorded with every committed chunk)."""
    import hashlib

    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:12]


def _manifest(config: SweepConfig, n_samples: int, n_items: int, env: dict[str, Any],
              fingerprint: str) -> dict[str, Any]:
    model_id = config.model or config.probe or "emergence-organism"
    revision = None
    if config.local_model or config.model:
        path = config.local_model or config.model
        cfg = Path(path) / "config.json"
        if cfg.exists():
            revision = json.loads(cfg.read_text(encoding="utf-8")).get("_commit_hash")
    versions = {k: env[k] for k in ("emergence", "torch", "transformers", "numpy")}
    versions["python"] = platform.python_version()
    return {"format": 2, "options": config.result_options(), "model_id": model_id, "model_revision": revision,
            "samples": n_samples, "items": n_items, "dataset_fingerprint": fingerprint, "environment": env,
            "versions": versions}


def _check_resume(config: SweepConfig, old: dict[str, Any], env: dict[str, Any], fingerprint: str,
                  allow_env_change: bool) -> None:
    """Refuse a resume that would mix rows made with other options, data or environment."""
    from .store import SweepError

    options = config.result_options()
    if old.get("options") != options:
        changed = sorted(k for k in set(options) | set(old.get("options", {}))
                         if old.get("options", {}).get(k) != options.get(k))
        raise SweepError(f"{config.out!r} holds a sweep made with other options ({changed}); use a new --out "
                         "or the same options to resume it")
    recorded = old.get("dataset_fingerprint")
    if recorded is not None and recorded != fingerprint:
        raise SweepError(f"the dataset changed since the sweep in {config.out!r} started (its annotation files, samples, "
                         "image paths or prompts differ: fingerprint " f"{fingerprint[:12]} vs {recorded[:12]}); resuming would mix "
                         "rows of the old and the new data. Restore the data, or start a new sweep in a new --out.")
    old_env = old.get("environment")
    if old_env is None:
        warnings.warn(f"the sweep in {config.out!r} was started by an older emergence that recorded no thread count "
                      f"or environment: rows computed now (with {env['threads']} threads) may differ in the last bits "
                      "from the committed ones. Start a new sweep for bit-identical rows.", stacklevel=3)
        return
    diff = {k: (old_env.get(k), env.get(k)) for k in set(old_env) | set(env) if old_env.get(k) != env.get(k)}
    if diff and not allow_env_change:
        shown = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(diff.items()))
        raise SweepError(f"the sweep in {config.out!r} was started in another environment ({shown}); its remaining "
                         "rows could differ in the last bits from the committed ones. Resume where it started, or "
                         "pass allow_env_change=True (--allow-env-change) to go on; the report then lists the "
                         "environments its chunks came from.")


def _resolve_threads(config: SweepConfig, old: dict[str, Any] | None) -> int:
    import torch

    from .store import SweepError

    recorded = (old or {}).get("environment", {}).get("threads")
    if config.threads is not None and recorded is not None and config.threads != recorded:
        raise SweepError(f"the sweep in {config.out!r} runs with threads={recorded} (recorded in its manifest), not "
                         f"{config.threads}: another count changes the last bits of the results. Leave threads unset "
                         "to resume it.")
    return int(config.threads or recorded or torch.get_num_threads())


def run_sweep(config: SweepConfig, backend: str = "local", workers: int = 2, progress: bool = True,
              allow_env_change: bool = False, max_consecutive_errors: int = 25) -> Any:
    """Run (or resume) a sweep; returns its :class:`~emergence.sweep.store.SweepStore` (read-only).

    Every item is computed with the thread count recorded in the manifest, so a local run, a Ray run and a resumed
    run give the same bits. On resume the options, the dataset's fingerprint and the environment are compared with
    the manifest, and committed chunks whose files were damaged are recomputed.

    Args:
        backend: ``"local"`` (in this process) or ``"ray"`` (an actor per worker, each holding the MLLM and the
            segmenter; one GPU each when the cluster has GPUs). Both write identical outputs.
        workers: Ray actors.
        allow_env_change: resume in another environment (versions, device, CPU kind) instead of refusing; each chunk
            records the environment it was computed in.
        max_consecutive_errors: stop when this many items in a row failed (a broken model or setup, not bad samples).
            Failed items are written as rows with ``error`` / ``error_type``.

    Raises:
        SweepError: ``config.out`` is not a sweep folder, another process writes it, or resuming would mix options,
            data or environments.
    """
    from .store import SweepError, SweepStore

    if backend not in ("local", "ray"):
        raise ValueError(f"backend={backend!r} is not one of 'local', 'ray'")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if config.units == "phrases" and config.noun_chunks == "spacy" and get_protocol(config.protocol).units:
        english_pipeline()  # before any sample: without it every one would fail
    plan = plan_sweep(config)
    dataset, items, fingerprint = plan.dataset, plan.items, plan.fingerprint
    with SweepStore(config.out, writable=True) as store:
        old = store.manifest()
        threads = _resolve_threads(config, old)
        env = environment(threads, config.device)
        if old is None:
            if store.committed():
                raise SweepError(f"{config.out!r} holds committed chunks but no manifest.json: the options they were "
                                 "made with are unknown. Restore manifest.json, or start the sweep in a new --out.")
            created = store.create_manifest(_manifest(config, len(dataset), len(items), env, fingerprint))
            if created.get("dataset_fingerprint") != fingerprint or created.get("options") != config.result_options():
                _check_resume(config, created, env, fingerprint, allow_env_change)
        else:
            _check_resume(config, old, env, fingerprint, allow_env_change)
        damaged = store.damaged()
        if damaged:
            for c, problems in sorted(damaged.items()):
                warnings.warn(f"sweep {config.out!r}: chunk {c} is damaged ({'; '.join(problems)}); recomputing it",
                              stacklevel=2)
            store.uncommit(list(damaged))
        chunks = [items[i: i + config.chunk_size] for i in range(0, len(items), config.chunk_size)]
        done = set(store.committed())
        todo = [c for c in range(len(chunks)) if c not in done]
        bar = ProgressLine(len(items), sum(len(chunks[c]) for c in done if c < len(chunks)), unit="items", per="h",
                           enabled=progress)
        guard = _ErrorGuard(max_consecutive_errors)
        env_id = environment_id(env)
        if backend == "local":
            with torch_threads(threads):
                worker = Worker(config, plan=plan)
                for c in todo:
                    result = worker.chunk(chunks[c])
                    guard.check(result[0])
                    store.write_chunk(c, *result, env=env_id)
                    bar.update(len(chunks[c]))
        else:
            _run_ray(config, store, chunks, todo, workers, threads, bar, guard, env_id)
        bar.close()
    return SweepStore(config.out)


def dataset_fingerprint(dataset: Any, config: SweepConfig,
                        templates: tuple[dict[str, str], dict[str, str]] | None = None) -> str:
    """SHA-256 over what the sweep reads of the dataset: each sample's id, prompt material and flags, the bytes of the
    annotation files the loader read (``dataset.sources``), and the prompt templates in use (``templates``:
    :func:`templates_of`'s, resolved here when not given)."""
    import hashlib

    h = hashlib.sha256()
    for s in dataset:
        h.update(json.dumps([s.id, s.expression, s.question, s.options, s.answer, s.pair, s.absent, s.unannotated,
                             str(s.image_path) if s.image_path else None], default=str).encode())
    for src in sorted(str(p) for p in getattr(dataset, "sources", ())):
        h.update(src.encode())
        with open(src, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    ground, vqa = templates if templates is not None else templates_of(config)
    h.update(json.dumps([[ground[t] for t in config.templates], [vqa[t] for t in config.vqa_templates]]).encode())
    return h.hexdigest()


class _ErrorGuard:
    """Stops a sweep when ``limit`` items in a row failed: that is a broken setup, not a few bad samples."""

    def __init__(self, limit: int) -> None:
        self.limit, self.run, self.last = limit, 0, None

    def check(self, rows: list[dict]) -> None:
        from .store import SweepError

        for row in rows:
            if row.get("error"):
                self.run += 1
                self.last = row["error"]
            else:
                self.run = 0
        if self.limit and self.run >= self.limit:
            raise SweepError(f"{self.run} items in a row failed; stopping (the committed chunks are kept). Last "
                             f"error: {self.last}")


def _run_ray(config: SweepConfig, store: Any, chunks: list, todo: list[int], workers: int, threads: int, bar: Any,
             guard: _ErrorGuard, env_id: str) -> None:
    from ..errors import require

    ray = require("ray", "distributed", "backend='ray'")
    from ray.util import ActorPool

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        # Ray sets OMP_NUM_THREADS=1 in actors: each Worker sets the sweep's recorded torch thread count itself (the
        # bits depend on it). One CPU is reserved per actor, so a pool never waits for CPUs a cluster lacks.
        actor_cls = ray.remote(num_gpus=1 if gpus >= 1 else 0, num_cpus=1)(Worker)
        pool = ActorPool([actor_cls.remote(config, threads) for _ in range(workers)])
        # ordered map: chunks are committed in order as their results arrive
        for c, result in zip(todo, pool.map(lambda a, c: a.chunk.remote(chunks[c]), todo)):
            guard.check(result[0])
            store.write_chunk(c, *result, env=env_id)
            bar.update(len(chunks[c]))
    finally:
        if started:
            ray.shutdown()
