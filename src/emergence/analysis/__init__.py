"""The token-emergence analyzer: maps -> point prompts -> a mask per token/word/phrase -> scores and emergence.

    from emergence.analysis import analyze
    report = analyze(run, gt_mask=mask, segmenter="classical")
    report.table, report.best, report.emergence, report.plot()
"""

from .analyze import (
    AnalysisOptions,
    EmergenceReport,
    EmptyGroundTruthWarning,
    analyze,
    analyze_batch,
    ground_truth_mask,
)
from .concepts import CATEGORIES, HTTPJudge, LexiconJudge, classify
from .grouping import Unit, phrase_units, token_units, units, word_units
from .heads import head_scores, top_heads
from .token_maps import MapOptions, token_maps
from .metrics import (
    BIN_LABELS,
    answer_position,
    ciou,
    iou,
    map_mass_inside,
    mask_ious,
    miou,
    pointing_hit,
    position_bin,
    recall_at,
)
from .prompts import PointPrompt, PromptOptions, argmax_point, make_prompt, peak_points
from .summary import run_summary
from .segmenters import ClassicalSegmenter, OfficialSam2Segmenter, Sam2Segmenter, Segmenter, build_segmenter, segment_prompts

__all__ = [
    "analyze", "analyze_batch", "AnalysisOptions", "EmergenceReport", "EmptyGroundTruthWarning", "ground_truth_mask",
    "CATEGORIES", "HTTPJudge", "LexiconJudge", "classify",
    "Unit", "units", "token_units", "word_units", "phrase_units",
    "head_scores", "top_heads",
    "MapOptions", "token_maps",
    "BIN_LABELS", "answer_position", "ciou", "iou", "map_mass_inside", "mask_ious", "miou", "pointing_hit",
    "position_bin", "recall_at",
    "PointPrompt", "PromptOptions", "argmax_point", "make_prompt", "peak_points",
    "run_summary",
    "Segmenter", "ClassicalSegmenter", "Sam2Segmenter", "OfficialSam2Segmenter", "build_segmenter", "segment_prompts",
]
