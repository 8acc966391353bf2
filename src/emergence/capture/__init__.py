"""Attention capture: scoped registration through transformers' AttentionInterface."""

from .engine import AttentionCapture, KeepMode, language_model_attention_modules, row_attention_probs

__all__ = ["AttentionCapture", "KeepMode", "language_model_attention_modules", "row_attention_probs"]
