"""Grounded Conversation Generation (GCG) evaluation (GLaMM; attend-and-segment's main benchmark): predictions from
the emergence pipeline scored against a GranD-f split (:mod:`emergence.datasets.gcg`).

Predictions, per image: the generated caption, its grounded phrases, and one mask per phrase (from the emergence
pipeline: each phrase unit's mask).

Metrics, as the reference evaluation defines them (own implementations; no pycocotools):

- **mask AP50**: COCO-style average precision at IoU 0.5, class-agnostic (every mask is category 1, every prediction
  scores 1.0 unless scores are given): detections ranked by score (ties in image order), each matched to the
  unmatched ground-truth mask of highest IoU >= 0.5 in its image, precision made monotone, and read at the 101
  recall points 0, 0.01, ..., 1; at most 100 detections per image. Crowd regions are not modelled (GCG has none).
- **mIoU**: per image, greedy one-to-one pairing of predicted and ground-truth masks by the largest remaining IoU
  (while it is above 0), the mean of the paired IoUs (0 for an image without a pair); then the mean over images.
- **mask recall**: per image, greedy one-to-one pairs by the largest remaining IoU, accepted while that pair has
  IoU >= 0.5 AND phrase similarity >= 0.5 (the first pair that fails either ends the image, as in the reference);
  accepted pairs / ground-truth phrases over the split.

Cross-check (2026-11-23, not a test: pycocotools is not a dependency): on 33 random multi-image cases with mixed
scores, :func:`mask_ap50` equalled pycocotools 2.0.11's ``COCOeval(..., "segm")`` AP50 (``stats[1]``, category 1)
exactly.

Phrase similarity is pluggable (``similarity=``). The reference uses the cosine of mean-pooled ``bert-base-uncased``
embeddings, which cannot be downloaded here. The offline default, :func:`word_overlap`, is the cosine between the
phrases' bags of lower-cased words: it is 0 for phrases with no common word, where BERT embeddings of two short
English phrases usually stay well above 0.5, so the default is stricter on paraphrases ("a puppy" vs "the dog": 0).
Pass ``similarity=your_bert_cosine`` to reproduce the reference's recall.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..datasets.gcg import GcgImage

__all__ = ["GCG_PROMPT", "GcgPrediction", "caption_prompt", "evaluate_gcg", "greedy_pairs", "mask_ap50", "predict_gcg",
           "prediction_from_report", "word_overlap"]


@dataclass
class GcgPrediction:
    """One image's prediction: the caption, its grounded phrases and one ``[H, W]`` mask per phrase; ``scores``
    (default 1.0 each) order the masks for AP; ``unit_kind``: what the phrases are (``"phrases"``, or ``"words"``
    when the analyzer fell back to words)."""

    caption: str
    phrases: list[str]
    masks: np.ndarray
    scores: list[float] = field(default_factory=list)
    unit_kind: str = "phrases"


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]`` IoU of two mask stacks (an empty union gives 0)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"predicted masks of size {a.shape[1:]} do not match ground truth of size {b.shape[1:]}")
    fa = a.reshape(len(a), -1).astype(np.float64)
    fb = b.reshape(len(b), -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_pairs(ious: np.ndarray, accept: Callable[[int, int], bool] | None = None) -> list[tuple[int, int, float]]:
    """One-to-one pairs ``(row, col, iou)`` by repeatedly taking the largest remaining entry (first in row-major order
    on ties), while it is above 0 and ``accept(row, col)`` holds (the first refused pair ends the pairing)."""
    m = np.array(ious, dtype=np.float64, copy=True)
    pairs = []
    while m.size and m.max() > 0:
        r, c = np.unravel_index(int(np.argmax(m)), m.shape)
        if accept is not None and not accept(int(r), int(c)):
            break
        pairs.append((int(r), int(c), float(m[r, c])))
        m[r, :] = 0
        m[:, c] = 0
    return pairs


def mask_ap50(predictions: Sequence[np.ndarray], ground_truth: Sequence[np.ndarray],
              scores: Sequence[Sequence[float]] | None = None, max_dets: int = 100) -> float:
    """COCO-style class-agnostic mask AP at IoU 0.5 over images (module docstring).

    Args:
        predictions: per image, ``[P, H, W]`` masks.
        ground_truth: per image, ``[G, H, W]`` masks.
        scores: per image, ``P`` scores (default 1.0 each).
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} prediction sets for {len(ground_truth)} images")
    ranked: list[tuple[float, int, bool]] = []  # (score, order, true positive)
    n_gt = 0
    order = 0
    for k, (pred, gt) in enumerate(zip(predictions, ground_truth)):
        pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
        s = np.ones(len(pred)) if scores is None else np.asarray(scores[k], float)
        if len(s) != len(pred):
            raise ValueError(f"image {k}: {len(s)} scores for {len(pred)} masks")
        keep = np.argsort(-s, kind="stable")[:max_dets]
        ious = _iou_matrix(pred[keep], gt)
        taken = np.zeros(len(gt), bool)
        for d in range(len(keep)):
            best, best_iou = -1, 0.5
            for g in range(len(gt)):
                if not taken[g] and ious[d, g] >= best_iou:
                    best, best_iou = g, ious[d, g]
            if best >= 0:
                taken[best] = True
            ranked.append((float(s[keep[d]]), order, best >= 0))
            order += 1
        n_gt += len(gt)
    if n_gt == 0:
        return float("nan")
    ranked.sort(key=lambda t: (-t[0], t[1]))
    tp = np.cumsum([t[2] for t in ranked], dtype=np.float64)
    fp = np.cumsum([not t[2] for t in ranked], dtype=np.float64)
    recall = tp / n_gt
    precision = tp / (tp + fp + np.spacing(1))
    for i in range(len(precision) - 1, 0, -1):  # the precision envelope
        precision[i - 1] = max(precision[i - 1], precision[i])
    points = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, points, side="left")
    sampled = np.array([precision[i] if i < len(precision) else 0.0 for i in idx])
    return float(sampled.mean())


_WORD = re.compile(r"[a-z0-9]+")


def word_overlap(a: str, b: str) -> float:
    """Cosine between the bags of lower-cased words of two phrases (0 when either has no word)."""
    wa, wb = _WORD.findall(a.lower()), _WORD.findall(b.lower())
    if not wa or not wb:
        return 0.0
    vocab = sorted(set(wa) | set(wb))
    va = np.array([wa.count(w) for w in vocab], float)
    vb = np.array([wb.count(w) for w in vocab], float)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def evaluate_gcg(ground_truth: Sequence[GcgImage], predictions: Mapping[Any, GcgPrediction],
                 similarity: Callable[[str, str], float] = word_overlap, iou_threshold: float = 0.5,
                 similarity_threshold: float = 0.5) -> dict[str, float]:
    """Mask AP50, mIoU and mask recall of ``predictions`` (by ``image_id``) against ``ground_truth``.

    Raises:
        ValueError: no ground-truth image or no ground-truth phrase at all (every metric would be NaN), an image has
            no prediction, or a prediction's phrases and masks do not pair up.
    """
    if not ground_truth:
        raise ValueError("no GCG ground-truth image to evaluate: the metrics of an empty split are undefined")
    if not any(len(im.phrases) for im in ground_truth):
        raise ValueError(f"none of the {len(ground_truth)} GCG ground-truth images has a phrase with a mask: mask AP50 "
                         "and recall are undefined (check the split's 'labels')")
    missing = [im.image_id for im in ground_truth if im.image_id not in predictions]
    if missing:
        raise ValueError(f"no prediction for GCG images {missing[:5]}{'...' if len(missing) > 5 else ''}")
    mious, hits, positives = [], 0, 0
    preds, gts, scores = [], [], []
    for im in ground_truth:
        pred = predictions[im.image_id]
        masks = np.asarray(pred.masks, bool)
        if masks.size == 0:
            masks = np.zeros((0, *im.masks.shape[1:]), bool)
        elif masks.ndim == 2:
            masks = masks[None]
        if masks.ndim != 3 or masks.shape[1:] != im.masks.shape[1:]:
            raise ValueError(f"image {im.image_id}: predicted masks of shape {tuple(np.shape(pred.masks))} do not "
                             f"match ground truth of size {tuple(im.masks.shape[1:])} (one [H, W] mask per phrase)")
        if len(masks) != len(pred.phrases):
            raise ValueError(f"image {im.image_id}: {len(pred.phrases)} phrases but {len(masks)} masks")
        preds.append(masks)
        gts.append(im.masks)
        scores.append(list(pred.scores) or [1.0] * len(masks))
        ious = _iou_matrix(masks, im.masks)  # [P, G]
        pairs = greedy_pairs(ious)
        mious.append(float(np.mean([p[2] for p in pairs])) if pairs else 0.0)
        sims = np.zeros((len(im.phrases), len(pred.phrases)))
        for g, gt_phrase in enumerate(im.phrases):
            for q, phrase in enumerate(pred.phrases):
                sims[g, q] = similarity(gt_phrase, phrase)
        accepted = greedy_pairs(ious.T, accept=lambda g, p: ious[p, g] >= iou_threshold
                                and sims[g, p] >= similarity_threshold)
        hits += len(accepted)
        positives += len(im.phrases)
    return {"mask_ap50": mask_ap50(preds, gts, scores), "miou": float(np.mean(mious)),
            "recall": hits / positives, "images": float(len(ground_truth))}


# ---------------------------------------------------------------------------------------------------- predictions
GCG_PROMPT = "Describe the image in detail."


def caption_prompt(prompt: str | None = None, spec: Any = None, organism: bool = False) -> str:
    """The GCG caption prompt: ``prompt`` when given, else the organism's own prompt (``organism``) or
    :data:`GCG_PROMPT`; phrased by the probe spec's template when there is a ``spec``."""
    if not prompt:
        if organism:
            from ..organism.model import PROMPT as prompt
        else:
            prompt = GCG_PROMPT
    return spec.format_prompt(prompt) if spec else prompt


def prediction_from_report(report: Any) -> GcgPrediction:
    """A GCG prediction from an analysis without ground truth: the answer, each unit (phrase; words when spaCy is
    absent) as a grounded phrase, and the mask the segmenter scores highest for it (its score orders AP)."""
    chosen = report.table["chosen"].to_numpy() if len(report.units) else np.zeros(0, int)
    index = np.arange(len(chosen))
    masks = report.masks[index, chosen] if len(chosen) else np.zeros((0, *report.masks.shape[2:]), bool)
    return GcgPrediction(caption=report.run.text, phrases=[u.text for u in report.units], masks=masks,
                         scores=[float(s) for s in report.scores[index, chosen]], unit_kind=report.unit_kind)


def predict_gcg(probe: Any, images: Sequence[GcgImage], prompt: str = GCG_PROMPT, segmenter: Any = "classical",
                units: str = "phrases", method: str = "attention", max_new_tokens: int = 128, nlp: Any = None,
                **analysis: Any) -> dict[Any, GcgPrediction]:
    """Phrase -> mask with the emergence pipeline for every GCG image: generate a caption for ``prompt`` (recording
    what ``method`` reads), analyze it without ground truth (``units`` maps -> point prompts -> ``segmenter``),
    and keep each unit's best-scored mask (:func:`prediction_from_report`). Phrases fall back to words, with the
    analyzer's warning, when spaCy or its English pipeline is missing (each prediction's ``unit_kind`` says so).

    Args:
        images: from :func:`load_gcg` with ``images=`` (each needs its ``path``).
        analysis: more :func:`~emergence.analyze` options (``layers``, ``heads``, ``tau``...).

    Raises:
        ValueError: an image has no path.
    """
    from ..analysis.analyze import analyze
    from ..analysis.segmenters import build_segmenter
    from ..images import load_image

    seg = build_segmenter(segmenter)
    out: dict[Any, GcgPrediction] = {}
    for im in images:
        if im.path is None:
            raise ValueError(f"GCG image {im.image_id} has no path: load the split with load_gcg(..., images=folder)")
        picture = load_image(im.path)
        run = probe.generate(picture, prompt, max_new_tokens=max_new_tokens, methods=[method])
        report = analyze(run, None, segmenter=seg, units=units, method=method, nlp=nlp, layer_emergence=False,
                         **analysis)
        out[im.image_id] = prediction_from_report(report)
    return out
