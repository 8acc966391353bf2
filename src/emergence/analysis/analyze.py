"""``analyze``: one generation's maps -> point prompts -> a mask per token/word/phrase -> scores and emergence.

Definitions (DESIGN.md, pipeline steps 3-8):

* a unit's map is the mean of its tokens' normalised maps; its prompt comes from the rendered map
  (:mod:`emergence.analysis.prompts`); the segmenter returns ``K`` masks and scores per prompt;
* ``iou_k`` is mask k's IoU with the ground truth (union of instances; an empty ground truth means an absent object,
  :mod:`emergence.analysis.metrics`); ``iou_chosen`` is the IoU of the mask the segmenter scores highest;
  ``iou`` = max over the ``K`` masks (the oracle over multimask outputs);
* under the default ``protocol="emergence"``, the **best** unit has the highest ``iou`` (the first of ties; the
  oracle unit) and the **emergence** unit is the first unit, in answer order, with ``iou >= tau``; under
  ``protocol="pixfoundation"`` both are PixFoundation's when unit: the phrase holding the highest-IoU mask over
  phrases x masks, the last of ties, no threshold (:mod:`emergence.analysis.protocols`, ``docs/protocols.md``);
  the position is character offset / answer length in 10% bins, and the **emergence layer** is the first captured
  layer whose single-layer map gives ``iou >= tau`` for that unit (this project's addition in both protocols);
* without ground truth, :attr:`EmergenceReport.automatic` holds the score-based choice (SAM score x map peakiness)
  and, when a judge MLLM is given, its choice (:mod:`emergence.analysis.select`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import EmergenceError
from ..images import MaskError, load_image, load_mask
from .concepts import Judge, LexiconJudge
from ..layouts.base import working_size
from .grouping import Unit, UnitKind, phrase_units, units as make_units
from .token_maps import MapOptions, Normalise, peakiness
from .metrics import BIN_LABELS, map_mass_inside, mask_ious, pointing_hit, position_bin
from .protocols import Protocol, get_protocol, last_best, pixfoundation_bin
from .prompts import PointPrompt, PromptOptions, make_prompt, scale_prompt
from .segmenters import Segmenter, build_segmenter, segment_prompts

__all__ = ["analyze", "analyze_batch", "AnalysisOptions", "EmergenceReport", "EmptyGroundTruthWarning", "MaskError",
           "ground_truth_mask"]


_UNSET = object()


class EmptyGroundTruthWarning(UserWarning):
    """The ground truth is all zero: the object is scored as ABSENT (by the protocol's rule)."""


def ground_truth_mask(mask: Any, size: tuple[int, int]) -> np.ndarray:
    """A ground truth as ``[H, W]`` bool at the image's ``size`` ``(H, W)``, by the mask rules of
    :mod:`emergence.images` (nonzero / any colour channel / alpha / probabilities >= 0.5; ``[N, H, W]`` instances
    united).

    Raises:
        MaskError: wrong size or shape, or values no rule covers, naming both and the fix.
    """
    return load_mask(mask, size)


@dataclass
class EmergenceReport:
    """Everything :func:`analyze` computed for one sample.

    Attributes:
        table: one row per unit (pandas DataFrame; columns in :func:`analyze`'s docstring).
        units: the units, in answer order.
        unit_kind: ``"tokens"``, ``"words"`` or ``"phrases"`` (what was used; phrases may fall back to words).
        heat: ``[U, h, w]`` float32 rendered maps on the working grid (the image's size, or smaller with the same
            aspect ratio when its longer side exceeds ``max_side``; plots stretch it over the image).
        masks: ``[U, K, H, W]`` bool segmenter outputs.
        scores: ``[U, K]`` float32 segmenter scores.
        prompts: one :class:`PointPrompt` per unit.
        gt: ``[H, W]`` bool ground truth, or ``None``.
        tau: emergence threshold.
        layer_ious: ``{layer: iou}`` of the emergence unit (of the best unit when none emerges) per single layer.
        automatic: ``{"score": row index, "mllm": row index or None}`` choices made without ground truth.
    """

    run: Any
    image: Any
    units: list[Unit]
    unit_kind: str
    table: Any
    heat: np.ndarray
    masks: np.ndarray
    scores: np.ndarray
    prompts: list[PointPrompt]
    gt: np.ndarray | None
    tau: float
    layer_ious: dict[int, float] = field(default_factory=dict)
    automatic: dict[str, int | None] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ headline numbers
    @property
    def protocol(self) -> Protocol:
        """The protocol the report was made under (reports saved before protocols existed: ``"emergence"``)."""
        return get_protocol(self.options.get("protocol", "emergence"))

    def _iou_columns(self) -> np.ndarray:
        k = self.masks.shape[1] if self.masks.ndim == 4 else 1
        return self.table[[f"iou_{j}" for j in range(k)]].to_numpy()

    @property
    def best(self) -> Any:
        """The oracle unit's row (highest IoU; the first of ties under ``"emergence"``, the last unit x mask pair
        under ``"pixfoundation"``), or ``None`` without ground truth or units."""
        if self.gt is None or self.table.empty:
            return None
        if self.protocol.ties == "last":
            return self.table.loc[last_best(self._iou_columns())[0]]
        return self.table.loc[int(self.table["iou"].to_numpy().argmax())]

    @property
    def best_ties(self) -> int:
        """How many units share the best IoU (1 = no tie; 0 without ground truth or units). With the classical
        segmenter, or small objects, several units often reach the same mask."""
        if self.gt is None or self.table.empty:
            return 0
        values = self.table["iou"].to_numpy()
        return int((values == values.max()).sum())

    @property
    def emergence(self) -> Any:
        """``"emergence"`` protocol: the first unit (answer order) with IoU >= tau. ``"pixfoundation"``: the when
        unit (:attr:`best`), none when the ground truth is empty (the reference skips absent objects). ``None``
        when there is none."""
        if self.gt is None or self.table.empty:
            return None
        if self.protocol.when == "best_last":
            return self.best if self.gt.any() else None
        hits = np.nonzero(self.table["iou"].to_numpy() >= self.tau)[0]
        return self.table.loc[int(hits[0])] if len(hits) else None

    @property
    def emergence_layer(self) -> int | None:
        """First layer whose single-layer map of the emergence unit reaches tau (``None`` if no unit emerges)."""
        if self.emergence is None:
            return None
        for layer, value in sorted(self.layer_ious.items()):
            if value >= self.tau:
                return layer
        return None

    def summary(self) -> dict[str, Any]:
        """One flat record per sample (what a sweep writes)."""
        best, emerged, auto = self.best, self.emergence, self.automatic.get("score")
        out: dict[str, Any] = {
            "answer": self.run.text, "units": len(self.units), "unit_kind": self.unit_kind, "tau": self.tau,
            "protocol": self.protocol.name, "best_ties": self.best_ties,
            "absent": bool(self.gt is not None and not self.gt.any()),
            "oracle_iou": float(best["iou"]) if best is not None else float("nan"),
            "best_text": best["text"] if best is not None else None,
            "best_category": best["category"] if best is not None else None,
            "best_position": float(best["position"]) if best is not None else float("nan"),
            "emerged": emerged is not None,
            "emergence_text": emerged["text"] if emerged is not None else None,
            "emergence_token": int(emerged["token_start"]) if emerged is not None else -1,
            "emergence_position": float(emerged["position"]) if emerged is not None else float("nan"),
            "emergence_bin": int(emerged["position_bin"]) if emerged is not None else -1,
            "emergence_layer": self.emergence_layer if self.emergence_layer is not None else -1,
            "auto_score_text": self.table.loc[auto, "text"] if auto is not None else None,
            "auto_score_iou": float(self.table.loc[auto, "iou_chosen"]) if auto is not None and self.gt is not None
            else float("nan"),
        }
        mllm = self.automatic.get("mllm")
        out["auto_mllm_iou"] = (float(self.table.loc[mllm, "iou_chosen"]) if mllm is not None and self.gt is not None
                                else float("nan"))
        pick = mllm if mllm is not None else auto
        # the image share of the automatically chosen mask (the MLLM's pick when there is one): PixFoundation's
        # paired analysis scores an absent object by it (correct under half the image)
        out["auto_area"] = (float(self.masks[pick, int(self.table.loc[pick, "chosen"])].mean()) if pick is not None
                            else float("nan"))
        return out

    def __repr__(self) -> str:
        best, emerged = self.best, self.emergence
        parts = [f"EmergenceReport({len(self.units)} {self.unit_kind}"]
        if best is not None:
            parts.append(f"best={best['text']!r} IoU {best['iou']:.3f} ({best['category']})")
        if emerged is not None:
            parts.append(f"emerges at {emerged['text']!r} ({BIN_LABELS[int(emerged['position_bin'])]}, "
                         f"layer {self.emergence_layer})")
        elif self.gt is not None:
            parts.append(f"no unit reaches IoU {self.tau}")
        if self.gt is not None and not self.gt.any():
            parts.append("ground truth EMPTY: scored as an absent object")
        return ", ".join(parts) + ")"

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any, figure: bool = True) -> Any:
        """Write the report to the folder ``path`` (new, empty, or an earlier analysis folder; anything else is
        refused): ``run/`` (the :class:`~emergence.ProbeRun`), ``table.parquet`` (lossless) and ``table.csv``,
        ``summary.json``, ``report.json`` (units, prompts, options), ``arrays.npz`` (``heat [U, H, W]`` float16,
        ``masks [U, K, H, W]`` and ``gt [H, W]`` bit-packed, ``scores [U, K]``) and, with ``figure``,
        ``report.png``. Every file is written atomically. Returns the folder.

        Raises:
            OutputDirError: the folder holds files this toolkit did not write, or cannot be written.
        """
        import io
        from dataclasses import asdict

        from ..files import atomic_write_bytes, atomic_write_json, atomic_write_text, claim_output_dir

        out = claim_output_dir(path, "analysis")
        self.run.save(out / "run")
        buf = io.BytesIO()
        self.table.to_parquet(buf, index=False)
        atomic_write_bytes(out / "table.parquet", buf.getvalue())
        atomic_write_text(out / "table.csv", self.table.to_csv(index=False))
        atomic_write_json(out / "summary.json", self.summary())
        arrays = {"heat": self.heat.astype(np.float16), "masks": np.packbits(self.masks, axis=-1),
                  "scores": self.scores.astype(np.float32)}
        if self.gt is not None:
            arrays["gt"] = np.packbits(self.gt, axis=-1)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(out / "arrays.npz", buf.getvalue())
        atomic_write_json(out / "report.json", {
            "format_version": 1, "unit_kind": self.unit_kind, "tau": self.tau, "masks_shape": list(self.masks.shape),
            "units": [asdict(u) for u in self.units], "layer_ious": {str(k): v for k, v in self.layer_ious.items()},
            "automatic": self.automatic, "options": self.options,
            "prompts": [{"points": p.points.tolist(), "labels": p.labels.tolist(),
                         "box": None if p.box is None else p.box.tolist()} for p in self.prompts],
        })
        if figure:
            from ..plotting.base import save_figure

            save_figure(self.plot()[0], out / "report.png", dpi=110)
        return out

    @classmethod
    def load(cls, path: Any) -> EmergenceReport:
        """Read a report written by :meth:`save` (the heat maps come back as float16 values in float32).

        Raises:
            EmergenceError: ``path`` holds no saved report.
        """
        import json
        from pathlib import Path

        import pandas as pd

        from ..run import ProbeRun

        path = Path(path)
        if not (path / "report.json").exists():
            raise EmergenceError(f"{str(path)!r} holds no saved analysis (no report.json); write one with "
                                 "report.save(folder)")
        doc = json.loads((path / "report.json").read_text(encoding="utf-8"))
        run = ProbeRun.load(path / "run")
        size = tuple(run.layout.image_size)
        with np.load(path / "arrays.npz") as z:
            heat = z["heat"].astype(np.float32)
            masks = np.unpackbits(z["masks"], axis=-1, count=size[1]).astype(bool)
            scores = z["scores"]
            gt = np.unpackbits(z["gt"], axis=-1, count=size[1]).astype(bool) if "gt" in z else None
        return cls(
            run=run, image=run.image, units=[Unit(u["kind"], u["text"], tuple(u["tokens"]), u["start"], u["end"])
                                             for u in doc["units"]],
            unit_kind=doc["unit_kind"], table=pd.read_parquet(path / "table.parquet"), heat=heat,
            masks=masks.reshape(doc["masks_shape"]), scores=scores,
            prompts=[PointPrompt(np.asarray(p["points"], np.float32), np.asarray(p["labels"], np.int64),
                                 None if p["box"] is None else np.asarray(p["box"], np.float32))
                     for p in doc["prompts"]],
            gt=gt, tau=float(doc["tau"]), layer_ious={int(k): v for k, v in doc["layer_ious"].items()},
            automatic=doc["automatic"], options=doc["options"],
        )

    # ------------------------------------------------------------------ viewer
    def to_html(self, path: Any = None, *, max_side: int = 512, budget_mb: float = 32.0) -> Any:
        """The report in a self-contained HTML viewer (:mod:`emergence.plotting.viewer`): the run's words with their
        maps (computed in the page with the report's options), each unit's chosen mask, SAM2 points, IoU and concept
        category, the IoU curve along the answer with the emergence unit, and the maps of the other methods the run
        recorded side by side. ``path``: write there and return the path; ``None``: return the HTML."""
        from ..plotting.viewer import page_html, report_payload, write_page
        from .methods import recorded_maps

        payload = report_payload(self, max_side=max_side, budget_mb=budget_mb, maps=recorded_maps(self.run))
        return page_html(payload) if path is None else write_page(payload, path)

    def _repr_html_(self) -> str:
        """Jupyter: the report's viewer inline (an isolated frame)."""
        from ..plotting.viewer import inline_frame, report_payload
        from .methods import recorded_maps

        return inline_frame(report_payload(self, max_side=384, budget_mb=8.0, maps=recorded_maps(self.run)))

    # ------------------------------------------------------------------ figures
    def plot(self, max_units: int = 6, panel_size: float = 2.6) -> tuple[Any, np.ndarray]:
        """Figure: the image (with the ground truth), the best, emergence and automatic units and the first others
        (map, chosen mask, point), and the IoU along the answer. Returns ``(fig, axes)``."""
        from ..plotting.reports import plot_report

        return plot_report(self, max_units=max_units, panel_size=panel_size)


def _resample_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` read at the pixel centres of a ``size`` grid over the same area (the identity at its own size)."""
    h, w = mask.shape
    if (h, w) == tuple(size):
        return mask
    ys = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(int), h - 1)
    xs = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(int), w - 1)
    return mask[np.ix_(ys, xs)]


def _unit_maps(maps: torch.Tensor, units: Sequence[Unit]) -> torch.Tensor:
    return torch.stack([maps[list(u.tokens)].mean(0) for u in units]) if units else maps[:0]


@dataclass
class AnalysisOptions:
    """How :func:`analyze` turns maps into masks and scores (everything but the inputs and the judges).

    Attributes:
        protocol: ``"emergence"`` (default) or ``"pixfoundation"`` (:mod:`emergence.analysis.protocols`): which
            unit is the emergence unit, how ties and absent objects are scored.
        units: ``"tokens"``, ``"words"`` or ``"phrases"``; ``None`` = the protocol's (``"words"`` for
            ``"emergence"``; ``"pixfoundation"`` requires ``"phrases"``, spaCy noun chunks with no fallback).
        layers, heads: which attention to average (see :class:`MapOptions`); ``heads`` may be ``(layer, head)``
            pairs, e.g. from :func:`~emergence.analysis.top_heads`.
        tau: IoU threshold of emergence, in (0, 1].
        method: the map method (:mod:`emergence.maps`): ``"attention"`` (default), ``"relative"``, ``"tam"`` or
            ``"gradient"`` (the last three read what ``Probe.generate(methods=[...])`` recorded).
        normalise: map normalisation (:mod:`emergence.analysis.token_maps`); ``None`` = the method's own
            (``"mean_subtract"`` for attention, ``"none"`` for the others).
        sink_z, remove_corners: sink and corner suppression (:mod:`emergence.analysis.token_maps`).
        prompt: point/box prompt options (default: the argmax point).
        layer_emergence: also segment single-layer maps of the emergence unit to find the emergence layer.
        max_side: maps are rendered on a grid whose longer side is at most this many pixels (``None``: the image's
            full size). Bounds memory on large photos; the peak is found there and mapped to the original pixel it
            falls in (at most ``image side / max_side`` pixels from the full-size peak), and masks and IoUs stay at
            full size. Images up to ``max_side`` are rendered at their own size.
    """

    units: UnitKind | None = None
    protocol: str = "emergence"
    layers: Sequence[int] | None = None
    heads: Sequence[int] | Sequence[tuple[int, int]] | None = None
    tau: float = 0.5
    method: Any = "attention"  # a name or an emergence.maps.MapMethod; a MapMethod after __post_init__
    normalise: Normalise | None = None
    sink_z: float | None = None
    remove_corners: bool = False
    prompt: PromptOptions | None = None
    layer_emergence: bool = True
    max_side: int | None = 1024

    def __post_init__(self) -> None:
        protocol = get_protocol(self.protocol)
        self.protocol = protocol.name
        if protocol.units is not None:
            if self.units not in (None, protocol.units):
                raise ValueError(f"protocol={protocol.name!r} scores units={protocol.units!r} (noun chunks); "
                                 f"units={self.units!r} belongs to another protocol: drop it, or use "
                                 "protocol='emergence'")
            self.units = protocol.units  # type: ignore[assignment]
        elif self.units is None:
            self.units = "words"
        if self.units not in ("tokens", "words", "phrases"):
            raise ValueError(f"units={self.units!r} is not one of 'tokens', 'words', 'phrases'")
        if isinstance(self.tau, bool) or not isinstance(self.tau, (int, float)) or not 0 < self.tau <= 1:
            raise ValueError(f"tau must lie in (0, 1], got {self.tau!r}")
        if self.max_side is not None and self.max_side < 1:
            raise ValueError(f"max_side must be >= 1 or None, got {self.max_side}")
        self.prompt = self.prompt or PromptOptions()
        from .methods import get_method

        self.method = get_method(self.method)
        if not self.method.selects and (self.layers is not None or self.heads is not None):
            raise ValueError(f"method={self.method.name!r} takes no layers or heads (it reads no attention)")

    def map_options(self, layers: Any = _UNSET, heads: Any = _UNSET) -> MapOptions:
        """The :class:`MapOptions` of these options (``layers`` / ``heads`` replaced when given, ``None`` included)."""
        return MapOptions(layers=self.layers if layers is _UNSET else layers,
                          heads=self.heads if heads is _UNSET else heads,
                          normalise=self.normalise or self.method.normalise,
                          sink_z=self.sink_z, remove_corners=self.remove_corners)

    @property
    def head_pairs(self) -> bool:
        """Whether ``heads`` holds ``(layer, head)`` pairs."""
        return self.heads is not None and len(self.heads) > 0 and not isinstance(self.heads[0], (int, np.integer))


def analyze(
    run: Any,
    gt_mask: Any = None,
    segmenter: str | Segmenter | None = "sam2",
    options: AnalysisOptions | None = None,
    *,
    judge: Judge | None = None,
    mllm_judge: Any = None,
    expression: str | None = None,
    image: Any = None,
    frame: int | None = None,
    nlp: Any = None,
    **option_values: Any,
) -> EmergenceReport:
    """Locate where grounding emerges in ``run``'s answer.

    Steps (each a function of this module): check the inputs, render each unit's map on the working grid, turn each
    map into a prompt in original pixels, segment all prompts on one image embedding, score the units, choose without
    ground truth, and find the emergence layer.

    Args:
        run: a :class:`~emergence.ProbeRun` (keep="heads" for head selection and per-layer emergence).
        gt_mask: ground truth at the ORIGINAL image size: ``[H, W]`` / ``[N, H, W]`` array, PIL image or mask file
            (rules in :mod:`emergence.images`); all zero = absent object; ``None`` = no scoring.
        segmenter: ``"sam2"`` (default), ``"sam2:<id or folder>"``, ``"sam2-official"``, ``"classical"`` or an
            object with ``set_image``/``predict``.
        options: :class:`AnalysisOptions`; its fields may also be given as keywords (``units="tokens"``,
            ``tau=0.7``, ``layers=[...]``, ``max_side=None``...), which override ``options``.
        judge: concept classifier ``(unit_text, answer) -> category`` (default: offline lexicon).
        mllm_judge: a :class:`~emergence.Probe` (usually the probed model) asked to pick the best candidate mask
            for ``expression`` without ground truth.
        expression: the referring expression (for ``mllm_judge``).
        image: the image (default ``run.image``); or, for a run over several images or a video, the index ``k``
            of the image / video to analyze (``gt_mask`` is then that image's ground truth): the same as
            ``analyze(run.select(image=k, frame=frame), ...)``.
        frame: for a video, the frame to analyze (its ground truth in ``gt_mask``).
        nlp: a spaCy pipeline for phrases.

    Returns:
        :class:`EmergenceReport`. ``report.table`` columns: ``text, kind, token_start, token_end, char_start,
        char_end, position, position_bin, category, point_x, point_y, score_k, chosen, peakiness`` and, with ground
        truth, ``iou_k, iou_chosen, iou, hit, mass_inside`` (k = 0..K-1).

    Raises:
        TypeError: an unknown keyword.
        ValueError, EmergenceError, MaskError: bad options, image or ground truth (the message names the value).
    """
    opts = _resolve_options(options, option_values)
    job = _prepare(run, gt_mask, opts, image=image, frame=frame, nlp=nlp)
    return _segment_and_score([job], build_segmenter(segmenter), opts, judge or LexiconJudge(),
                              mllm_judge=mllm_judge, expression=expression)[0]


def analyze_batch(
    items: Sequence[tuple[Any, Any]],
    segmenter: str | Segmenter | None = "sam2",
    options: AnalysisOptions | None = None,
    *,
    judge: Judge | None = None,
    nlp: Any = None,
    **option_values: Any,
) -> list[EmergenceReport]:
    """:func:`analyze` over several runs at once: ``items`` = ``[(run, gt_mask), ...]`` (each run over one image or
    frame). Runs of the same image (equal pixels: a benchmark's templates of one sample) share its embedding and
    their point prompts are decoded together, each distinct prompt once, in batched calls; so are their single-layer
    prompts. Each report is what :func:`analyze` gives for its item (with SAM2, masks from a batched decoder call
    may differ from a smaller call's in float rounding; the classical segmenter is exact per prompt).

    Returns:
        One :class:`EmergenceReport` per item, in order.

    Raises:
        as :func:`analyze`, for the first item that fails (check items alone to find which).
    """
    opts = _resolve_options(options, option_values)
    items = list(items)
    for k, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"analyze_batch items are (run, gt_mask) pairs (gt_mask may be None); item {k} is "
                            f"{type(item).__name__}")
    jobs = [_prepare(run, gt_mask, opts, nlp=nlp) for run, gt_mask in items]
    return _segment_and_score(jobs, build_segmenter(segmenter), opts, judge or LexiconJudge())


@dataclass
class _Job:
    """One run, ready to segment: its image and ground truth, units, maps on the working grid and prompts."""

    run: Any
    image: Any
    size: tuple[int, int]
    gt: np.ndarray | None
    units: list[Unit]
    kind: str
    work: tuple[int, int]
    heat: np.ndarray
    prompts: list[PointPrompt]


def _prepare(run: Any, gt_mask: Any, opts: AnalysisOptions, image: Any = None, frame: int | None = None,
             nlp: Any = None) -> _Job:
    """Check the inputs, make the units, render each unit's map on the working grid and turn it into a prompt in
    original pixels."""
    if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
        run, image = run.select(image=int(image), frame=frame), None
    elif frame is not None:
        run = run.select(frame=frame)
    if run.layout.is_composite:
        raise EmergenceError(f"this run holds {len(run.layout.parts)} images / video frames; analyze one: "
                             "analyze(run, gt_mask, image=k) or frame=f, or run.select(image=k, frame=f) (gt_mask is "
                             "that image's or frame's ground truth)")
    image, size, gt = _check_inputs(run, image, gt_mask)
    protocol = get_protocol(opts.protocol)
    if protocol.units == "phrases":  # no fallback to words: the protocol is defined on noun chunks
        unit_list, kind_used = phrase_units(run, nlp), "phrases"
    else:
        unit_list, kind_used = make_units(run, opts.units, nlp=nlp)
    work = working_size(size, opts.max_side)
    heat = _render_units(run, unit_list, opts, work)
    prompts = [scale_prompt(make_prompt(h, opts.prompt), work, size) for h in heat]
    return _Job(run, image, size, gt, list(unit_list), kind_used, work, heat, prompts)


def _segment_together(seg: Segmenter, prompt_lists: Sequence[Sequence[PointPrompt]], size: tuple[int, int]
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode every list's prompts in one :func:`segment_prompts` call on the image last set; ``(masks [N, K, H, W],
    scores [N, K])`` per list (empty lists get empty arrays)."""
    flat = [p for ps in prompt_lists for p in ps]
    if flat:
        masks, scores = segment_prompts(seg, flat)
    else:
        masks, scores = np.zeros((0, 1, *size), bool), np.zeros((0, 1), np.float32)
    out, start = [], 0
    for ps in prompt_lists:
        out.append((masks[start: start + len(ps)], scores[start: start + len(ps)]))
        start += len(ps)
    return out


def _segment_and_score(jobs: Sequence[_Job], seg: Segmenter, opts: AnalysisOptions, judge: Judge,
                       mllm_judge: Any = None, expression: str | None = None) -> list[EmergenceReport]:
    """Segment the jobs' prompts image by image (the jobs of one image together, on one embedding), score the units,
    choose without ground truth and find the emergence layer; one report per job, in order."""
    from ..images import image_digest

    protocol = get_protocol(opts.protocol)
    groups: dict[bytes, list[int]] = {}
    for i, job in enumerate(jobs):  # (one job needs no grouping: its pixels are not hashed)
        groups.setdefault(image_digest(job.image) if len(jobs) > 1 else b"", []).append(i)
    reports: list[EmergenceReport | None] = [None] * len(jobs)
    for members in groups.values():
        seg.set_image(jobs[members[0]].image)
        decoded = _segment_together(seg, [jobs[i].prompts for i in members], jobs[members[0]].size)
        for i, (masks, scores) in zip(members, decoded):
            job = jobs[i]
            table = _score_table(job.run, job.units, job.prompts, job.heat, masks, scores, job.gt, job.work, judge,
                                 protocol)
            report = EmergenceReport(
                run=job.run, image=job.image, units=job.units, unit_kind=job.kind, table=table, heat=job.heat,
                masks=masks, scores=scores, prompts=job.prompts, gt=job.gt, tau=float(opts.tau),
                options=_options_record(opts, seg),
            )
            if job.units:
                report.automatic = _choose_without_ground_truth(report, mllm_judge, expression)
            reports[i] = report
        layered = [i for i in members if jobs[i].gt is not None and jobs[i].units and opts.layer_emergence
                   and jobs[i].run.keep != "mean" and opts.method.layered]
        asked = [_layer_prompts(reports[i], opts, jobs[i].work) for i in layered]
        decoded = _segment_together(seg, [prompts for _, prompts in asked], jobs[members[0]].size)
        for i, (layer_list, _), (lmasks, _) in zip(layered, asked, decoded):
            lious = mask_ious(lmasks, reports[i].gt, absent=protocol.absent).max(1)
            reports[i].layer_ious = {int(layer): float(v) for layer, v in zip(layer_list, lious)}
    return reports  # type: ignore[return-value]


def _resolve_options(options: AnalysisOptions | None, values: dict[str, Any]) -> AnalysisOptions:
    from dataclasses import fields, replace

    known = {f.name for f in fields(AnalysisOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"analyze() got unknown keyword(s) {unknown}; options are {sorted(known)}")
    if options is None:
        return AnalysisOptions(**values)
    if "protocol" in values and "units" not in values and get_protocol(values["protocol"]).name != options.protocol:
        values = {**values, "units": None}  # another protocol: its own units unless given
    return replace(options, **values) if values else options


def _check_inputs(run: Any, image: Any, gt_mask: Any) -> tuple[Any, tuple[int, int], np.ndarray | None]:
    """The image (the run's by default) checked against the run's layout, its ``(H, W)``, and the ground truth."""
    if image is None:
        image = run.image
    if image is None:
        raise EmergenceError("this run holds no image; pass image=... (the image the answer was generated for)")
    image = load_image(image)
    size = (image.height, image.width)
    if tuple(run.layout.image_size) != size:
        raise EmergenceError(f"the run's layout is for a {run.layout.image_size[1]}x{run.layout.image_size[0]} image "
                             f"but the image given is {size[1]}x{size[0]}")
    gt = ground_truth_mask(gt_mask, size) if gt_mask is not None else None
    if gt is not None and not gt.any():
        warnings.warn("the ground-truth mask is empty (all zero): the object is scored as ABSENT — under "
                      "protocol 'emergence' a unit is correct when its mask covers less than half the image, under "
                      "'pixfoundation' only when its mask is empty (and there is no when unit). If the object is in "
                      "the image, the mask file did not load as intended (see emergence.images for the mask rules).",
                      EmptyGroundTruthWarning, stacklevel=4)
    elif gt is not None and gt.mean() >= 0.9:
        warnings.warn(f"the ground-truth mask covers {100 * gt.mean():.0f}% of the image. If the object is the "
                      "small dark part, the mask is inverted: masks count nonzero pixels as the object (see "
                      "emergence.images); pass ~mask.", stacklevel=4)
    return image, size, gt


def _render_units(run: Any, unit_list: Sequence[Unit], opts: AnalysisOptions, work: tuple[int, int]) -> np.ndarray:
    """``[U, h, w]``: each unit's map (mean of its tokens' normalised maps, by ``opts.method``) rendered on the
    working grid."""
    maps = opts.method.maps(run, opts.map_options())  # [T, V]
    return run.layout.render(_unit_maps(maps, unit_list), size=work).reshape(len(unit_list), *work)


def _score_table(run: Any, unit_list: Sequence[Unit], prompts: Sequence[PointPrompt], heat: np.ndarray,
                 masks: np.ndarray, scores: np.ndarray, gt: np.ndarray | None, work: tuple[int, int],
                 judge: Judge, protocol: Protocol) -> Any:
    """One row per unit: position, category, prompt point, segmenter scores and choice, peakiness and, with ground
    truth, IoU per mask, of the chosen mask and the best, pointing hit and map mass inside."""
    import pandas as pd

    n_k = masks.shape[1]
    chosen = scores.argmax(1) if len(scores) else np.zeros(0, int)
    text_len = max(len(run.text), 1)
    rows = []
    for i, u in enumerate(unit_list):
        pos = u.start / text_len
        bin_ = pixfoundation_bin(u.start, text_len) if protocol.name == "pixfoundation" else position_bin(pos)
        row: dict[str, Any] = {
            "text": u.text, "kind": u.kind, "token_start": u.tokens[0], "token_end": u.tokens[-1] + 1,
            "char_start": u.start, "char_end": u.end, "position": pos, "position_bin": bin_,
            "category": judge(u.text, run.text),
            "point_x": float(prompts[i].points[0, 0]), "point_y": float(prompts[i].points[0, 1]),
        }
        row.update({f"score_{k}": float(scores[i, k]) for k in range(n_k)})
        row["chosen"] = int(chosen[i])
        row["peakiness"] = peakiness(heat[i])
        rows.append(row)
    table = pd.DataFrame(rows)
    if gt is not None and unit_list:
        ious = mask_ious(masks, gt, absent=protocol.absent)  # [U, K]
        for k in range(n_k):
            table[f"iou_{k}"] = ious[:, k]
        table["iou_chosen"] = ious[np.arange(len(ious)), chosen]
        table["iou"] = ious.max(1)
        table["hit"] = [pointing_hit((r.point_x, r.point_y), gt) for r in table.itertuples()]
        table["mass_inside"] = np.atleast_1d(map_mass_inside(heat, _resample_mask(gt, work))) if gt.any() else np.nan
    return table


def _options_record(opts: AnalysisOptions, seg: Any) -> dict[str, Any]:
    heads = None if opts.heads is None else [h if isinstance(h, int) else list(h) for h in opts.heads]
    return {"protocol": opts.protocol, "units": opts.units,
            "layers": None if opts.layers is None else list(opts.layers), "heads": heads,
            "method": opts.method.name, "normalise": opts.map_options().normalise, "sink_z": opts.sink_z,
            "remove_corners": opts.remove_corners,
            "prompt": opts.prompt.__dict__, "segmenter": type(seg).__name__, "max_side": opts.max_side}


def _choose_without_ground_truth(report: EmergenceReport, mllm_judge: Any, expression: str | None
                                 ) -> dict[str, int | None]:
    """The score-based choice (SAM score of the chosen mask x map peakiness) and, with a judge MLLM, its pick."""
    table, masks, scores = report.table, report.masks, report.scores
    chosen = table["chosen"].to_numpy()
    auto = np.asarray([scores[i, chosen[i]] * table.loc[i, "peakiness"] for i in range(len(table))])
    out: dict[str, int | None] = {"score": int(auto.argmax()), "mllm": None}
    if mllm_judge is not None:
        from .select import select_with_mllm

        if not expression:
            raise ValueError("mllm_judge needs expression=... (what the masks should show)")
        candidates = [masks[i, chosen[i]] for i in range(len(table))]
        out["mllm"] = select_with_mllm(mllm_judge, report.image, expression, candidates, order=np.argsort(-auto))
    return out


def _layer_prompts(report: EmergenceReport, opts: AnalysisOptions, work: tuple[int, int]
                   ) -> tuple[list[int], list[PointPrompt]]:
    """The layers, and the prompt of each one's single-layer map of the emergence unit (the best unit when none
    emerges; with ``(layer, head)`` pairs, each layer with its own chosen heads), whose masks give
    ``report.layer_ious``."""
    run, size = report.run, tuple(report.gt.shape)
    target = report.emergence if report.emergence is not None else report.best
    unit = report.units[int(target.name)]
    pairs = opts.head_pairs
    layer_list = sorted({int(h[0]) for h in opts.heads}) if pairs else \
        (list(opts.layers) if opts.layers is not None else list(run.layers))
    layer_heat = []
    for layer in layer_list:
        if pairs:
            lm = opts.method.maps(run, opts.map_options(layers=None,
                                                        heads=[h for h in opts.heads if int(h[0]) == layer]))
        else:
            lm = opts.method.maps(run, opts.map_options(layers=[layer]))
        layer_heat.append(_unit_maps(lm, [unit])[0])
    lh = run.layout.render(torch.stack(layer_heat), size=work).reshape(len(layer_list), *work)
    return [int(x) for x in layer_list], [scale_prompt(make_prompt(h, opts.prompt), work, size) for h in lh]
