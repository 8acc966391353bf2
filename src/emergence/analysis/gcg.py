"""Moved: the GranD-f folders to :mod:`emergence.datasets.gcg`, the GCG scoring to :mod:`emergence.sweep.gcg`.

The names stay importable from here (loaded on first use: the analysis layer does not import the sweep's).
"""

from __future__ import annotations

from typing import Any

_WHERE = {"GcgImage": "emergence.datasets.gcg", "load_gcg": "emergence.datasets.gcg",
          "write_gcg": "emergence.datasets.gcg"}
_SCORING = ("GCG_PROMPT", "GcgPrediction", "evaluate_gcg", "greedy_pairs", "mask_ap50", "predict_gcg",
            "prediction_from_report", "word_overlap")
__all__ = [*_WHERE, *_SCORING]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _WHERE or name in _SCORING:
        return getattr(importlib.import_module(_WHERE.get(name, "emergence.sweep.gcg")), name)
    raise AttributeError(f"module 'emergence.analysis.gcg' has no attribute {name!r}")
