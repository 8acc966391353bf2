"""Organism B: the single-transformer design (Fuyu, the class Pixel-SAIL's design builds on). Image patches go
through one linear layer straight into a Persimmon decoder, ``|SPEAKER|`` per 8 x 8 patch and ``|NEWLINE|`` after
each row, with no vision encoder and no 2-D position embedding; it reads the same shapes world as the LLaVA organism
and is trained with the same caption-only objective. Saved as an ordinary HF model folder that ``AutoProcessor`` and
``FuyuForCausalLM.from_pretrained`` load."""

from __future__ import annotations

from typing import Any

from .model import IMAGE_SIZE, PATCH, VOCABULARY

__all__ = ["build_fuyu_model", "build_fuyu_processor", "fuyu_tokenizer"]

# FuyuProcessor's own tokens: patch, row end, beginning of answer
_FUYU_SPECIAL = ("|SPEAKER|", "|NEWLINE|", "<0x04>")
_PREFIX = "\u2581"


def fuyu_tokenizer() -> Any:
    """A word-level tokenizer that behaves like Fuyu's SentencePiece one where ``FuyuProcessor`` relies on it.

    Every encoded text starts with a ``"\u2581"`` piece (the processor strips that piece off the image placeholders,
    so a tokenizer without it would lose the first patch token). ``|SPEAKER|`` and ``|NEWLINE|`` are ordinary vocabulary
    words, as in Fuyu's vocabulary, so the prefix is added before them too; ``<0x04>`` (beginning of answer), ``<s>``,
    ``</s>`` and ``<pad>`` are special tokens."""
    import re

    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", "<0x04>"]
    vocab: dict[str, int] = {}
    for token in [*specials, _PREFIX, "|SPEAKER|", "|NEWLINE|", *VOCABULARY]:
        vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Prepend(_PREFIX)
    pieces = "|".join(re.escape(p) for p in (_PREFIX, "|SPEAKER|", "|NEWLINE|", "?", ".", ":", ","))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pieces), behavior="isolated"), pre_tokenizers.WhitespaceSplit(),
    ])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
    )


def build_fuyu_processor() -> Any:
    """``FuyuProcessor`` over :func:`fuyu_tokenizer` and the PIL ``FuyuImageProcessor`` at 64 x 64 (no resize, no
    padding for the world's images), 8 x 8 patches: 8 rows of 8 ``|SPEAKER|`` tokens, each row ended by
    ``|NEWLINE|``."""
    from transformers import FuyuProcessor
    from transformers.models.fuyu.image_processing_pil_fuyu import FuyuImageProcessorPil

    image_processor = FuyuImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, patch_size={"height": PATCH, "width": PATCH},
    )
    return FuyuProcessor(image_processor=image_processor, tokenizer=fuyu_tokenizer())


def build_fuyu_model(processor: Any, seed: int = 0, width: int = 192, layers: int = 4) -> Any:
    """A freshly initialised ``FuyuForCausalLM``: a linear patch embedding (192 -> ``width``) and a ``layers``-layer
    Persimmon decoder (``width // 32`` heads, MLP ``4 x width``, RoPE on half of each head, query / key layer norm).
    With the defaults it has 1.84M parameters, 1.16x the LLaVA organism's 1.58M."""
    import torch
    from transformers import FuyuConfig, FuyuForCausalLM

    tok = processor.tokenizer
    config = FuyuConfig(
        vocab_size=len(tok), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=width // 32, max_position_embeddings=256, image_size=IMAGE_SIZE, patch_size=PATCH,
        num_channels=3, qk_layernorm=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, image_token_id=tok.convert_tokens_to_ids("|SPEAKER|"),
        text_config={"model_type": "persimmon", "vocab_size": len(tok), "hidden_size": width,
                     "intermediate_size": 4 * width, "num_hidden_layers": layers,
                     "num_attention_heads": width // 32, "max_position_embeddings": 256, "qk_layernorm": True,
                     "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
                     "eos_token_id": tok.eos_token_id},
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = FuyuForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model
