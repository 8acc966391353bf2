"""Map methods: the ways the literature turns a multimodal LLM's internals into one map per generated token.

A stable facade: the methods live in :mod:`emergence.analysis.methods` (one :class:`MapMethod` object each, with
what it records and how it maps), head selection in :mod:`emergence.analysis.heads`, and what the methods record
besides attention in :mod:`emergence.capture.extras`. Every name stays importable from here.
"""

from __future__ import annotations

from .analysis.heads import elbow_value, localization_heads, spatial_entropy
from .analysis.methods import (
    GENERIC_PROMPT,
    METHODS,
    AttentionMethod,
    GradientMethod,
    MapMethod,
    RecordRequest,
    RelativeMethod,
    TamMethod,
    get_method,
    method_maps,
    rank_gaussian_filter,
    recordable_methods,
    register_method,
    relative_maps,
    tam_maps,
)
from .analysis.token_maps import MapOptions
from .capture.extras import class_logits, gradient_attention, record_final_hidden, tam_logits

tam_extras = tam_logits  # the name before the split

__all__ = [
    "METHODS", "GENERIC_PROMPT", "MapMethod", "MapOptions", "RecordRequest", "AttentionMethod", "RelativeMethod",
    "TamMethod", "GradientMethod", "register_method", "get_method", "method_maps", "recordable_methods", "tam_maps",
    "rank_gaussian_filter", "relative_maps", "gradient_attention", "class_logits", "record_final_hidden",
    "tam_logits", "tam_extras", "localization_heads", "spatial_entropy", "elbow_value",
]
