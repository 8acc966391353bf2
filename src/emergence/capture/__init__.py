"""Attention capture: scoped registration through transformers' AttentionInterface, or scoped hooks on the attention
modules for models that bypass it."""

from .engine import (
    AttentionCapture,
    KeepMode,
    Mechanism,
    calls_attention_interface,
    find_cache,
    language_model_attention_modules,
    row_attention_probs,
)

__all__ = ["AttentionCapture", "KeepMode", "Mechanism", "calls_attention_interface", "find_cache",
           "language_model_attention_modules", "row_attention_probs"]
