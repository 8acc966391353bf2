"""Word-level HF tokenizers for small closed vocabularies (the model organism, the tiny test models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["word_level_tokenizer"]


def word_level_tokenizer(words: Sequence[str], extra_special: Sequence[str] = (),
                         named: dict[str, str] | None = None) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` (whitespace + punctuation split, one token per word) with ``<s>``,
    ``</s>``, ``<pad>``, ``<unk>``, ``<image>``, ``USER``, ``ASSISTANT`` and ``extra_special`` as special tokens.
    ``named`` adds named special tokens (``{"start_image_token": "<img>"}`` -> ``tok.start_image_token`` and
    ``tok.start_image_token_id``), as some processors read them."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    named = dict(named or {})
    specials = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "USER", "ASSISTANT", *extra_special,
                *[t for t in named.values() if t not in extra_special]]
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
        extra_special_tokens={"image_token": "<image>", **named},
    )
    fast.add_special_tokens({"additional_special_tokens": [s for s in specials if s not in ("<pad>", "<s>", "</s>", "<unk>")]})
    return fast
