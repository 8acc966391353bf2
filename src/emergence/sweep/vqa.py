"""VQA scoring for the paired benchmarks: option parsing, per-question and per-pair accuracy (MMVP protocol), and the
paired grounding/VQA analysis."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["parse_option", "option_letter", "answer_letter", "pair_accuracy", "paired_analysis", "OptionJudge"]

OptionJudge = Callable[[str, Sequence[str]], "str | None"]


def option_letter(answer: str) -> str | None:
    """The letter of a reference answer such as ``"(a)"`` or ``"b"``."""
    m = re.search(r"\(?\b([a-z])\b\)?", answer.strip().lower())
    return m.group(1) if m else None


def answer_letter(answer: str, options: Sequence[str]) -> str | None:
    """The option letter of a reference answer given as a letter (``"(a)"``, ``"b"``) or as an option's text."""
    text = answer.strip().lower()
    m = re.fullmatch(r"\(?([a-z])\)?\.?", text)
    if m and ord(m.group(1)) - 97 < len(options):
        return m.group(1)
    for i, o in enumerate(options):
        if o.strip().lower() == text:
            return chr(97 + i)
    return None


def parse_option(answer: str, options: Sequence[str], judge: OptionJudge | None = None) -> str | None:
    """Which option (``"a"``, ``"b"``, ...) a free-form answer picks, or ``None``.

    Rules, in order: a bracketed or leading letter (``"(b)"``, ``"b)"``, ``"B."``, ``"Option b"``); else the only
    option whose text occurs in the answer (whole words, case-insensitive; the longest wins when one contains
    another). When the rules find nothing, ``judge(answer, options)`` decides (if given).
    """
    text = answer.strip().lower()
    letters = [chr(97 + i) for i in range(len(options))]
    m = re.search(r"\(([a-z])\)", text) or re.match(r"^([a-z])(?:[\).:,]|\s|$)", text) or \
        re.search(r"\boption\s+([a-z])\b", text)
    if m and m.group(1) in letters:
        return m.group(1)
    found = [(len(o), letters[i]) for i, o in enumerate(options)
             if o.strip() and re.search(rf"\b{re.escape(o.strip().lower())}\b", text)]
    if found:
        found.sort(reverse=True)
        longest = [f for f in found if f[0] == found[0][0]]
        if len(longest) == 1:
            return longest[0][1]
    return judge(answer, options) if judge is not None else None


def pair_accuracy(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """MMVP protocol: ``question`` = mean correctness, ``pair`` = share of pairs whose questions are all correct.
    ``rows`` need ``pair`` and ``vqa_correct``; rows without a pair id count as questions only, and a dataset
    without pairs has ``pair`` = NaN and ``pairs`` = 0."""
    rows = [r for r in rows if _present(r.get("vqa_correct"))]
    if not rows:
        return {"question": float("nan"), "pair": float("nan"), "questions": 0, "pairs": 0}
    pairs: dict[Any, list[bool]] = {}
    for r in rows:
        if _present(r.get("pair")):
            pairs.setdefault(r["pair"], []).append(bool(r["vqa_correct"]))
    return {"question": sum(bool(r["vqa_correct"]) for r in rows) / len(rows),
            "pair": sum(all(v) for v in pairs.values()) / len(pairs) if pairs else float("nan"),
            "questions": len(rows), "pairs": len(pairs)}


def _present(value: Any) -> bool:
    """Not None and not NaN (pandas writes a missing value of a numeric column as NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _grounded(row: dict[str, Any], tau: float, protocol: str) -> bool:
    """Whether one sample's grounding succeeds in the paired analysis of ``protocol``."""
    if protocol == "pixfoundation":  # eval_accandiou.py: the automatically selected mask, IoU > 0.5 (strict);
        empty = any(_present(row.get(k)) and bool(row[k]) for k in ("absent", "unannotated"))
        if empty:  # an empty annotation: the mask covers under half (NaN, a missing flag, is not a True)
            return float(row["auto_area"]) < 0.5
        value = row.get("auto_mllm_iou")
        if not _present(value) or not np.isfinite(float(value)):
            value = row["auto_score_iou"]
        return float(value) > 0.5
    return float(row["oracle_iou"]) >= tau  # absent objects: the under-half rule is already in the IoU


def paired_analysis(rows: Sequence[dict[str, Any]], tau: float = 0.5, protocol: str = "emergence"
                    ) -> dict[str, int]:
    """Per pair: grounding succeeds when every sample's grounding succeeds, VQA when every answer is correct.
    Counts of ``both_succeed``, ``grounding_only_failure``, ``vqa_only_failure``, ``both_fail``.

    A sample's grounding succeeds under ``"emergence"`` when its oracle IoU >= ``tau`` (an absent object: the
    best mask covers under half the image); under ``"pixfoundation"`` (``eval_accandiou.py``) when the
    automatically chosen mask (the MLLM judge's, else the score-based one; PixFoundation's is GPT-4o's) has IoU
    > 0.5, or for an empty annotation covers under half the image. Rows must include absent and unannotated
    samples: a pair is judged on both of its images."""
    pairs: dict[Any, list[dict]] = {}
    for r in rows:
        if _present(r.get("vqa_correct")) and _present(r.get("pair")):
            pairs.setdefault(r["pair"], []).append(r)
    out = {"both_succeed": 0, "grounding_only_failure": 0, "vqa_only_failure": 0, "both_fail": 0}
    for members in pairs.values():
        g = all(_grounded(m, tau, protocol) for m in members)
        v = all(bool(m["vqa_correct"]) for m in members)
        key = ("both_succeed" if g and v else "grounding_only_failure" if v else "vqa_only_failure" if g
               else "both_fail")
        out[key] += 1
    return out
