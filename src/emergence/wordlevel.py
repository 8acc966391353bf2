"""Word-level HF tokenizers for small closed vocabularies (the model organism, the tiny test models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["word_level_tokenizer"]


def word_level_tokenizer(words: Sequence[str], extra_special: Sequence[str] = ()) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` (whitespace + punctuation split, one token per word) with ``<s>``,
    ``</s>``, ``<pad>``, ``<unk>``, ``<image>``, ``USER``, ``ASSISTANT`` and ``extra_special`` as special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "USER", "ASSISTANT", *extra_special]
    vocab: dict[str, int] = {}
    for token in [*specials, *words]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in ("<pad>", "<s>", "</s>", "<unk>")]})
    return fast
