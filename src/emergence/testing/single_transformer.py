"""Tiny Fuyu, one transformer reading image patches directly (adapters/single_transformer.py)."""

from __future__ import annotations

from typing import Any

import torch

from .common import init_weights, make_tokenizer
from .llava import DummyPrefixTokenizer

__all__ = ["tiny_fuyu"]


def tiny_fuyu(seed: int = 0, patch: int = 8, max_hw: tuple[int, int] = (64, 96), local_vision: bool = True,
              attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """Fuyu shape (the single-transformer design): image patches go straight through a linear layer into a Persimmon
    decoder, ``|SPEAKER|`` per patch and ``|NEWLINE|`` after each row. The real ``FuyuProcessor`` and
    ``FuyuImageProcessorPil`` (resize to fit ``max_hw`` only when larger, pad bottom / right); its PIL
    ``patchify_image`` is handed numpy arrays as the torchvision backend would be handed tensors. The patch
    embedding is local by construction (``local_vision`` is accepted for symmetry)."""
    import numpy as np
    from transformers import FuyuConfig, FuyuForCausalLM, FuyuProcessor
    from transformers.models.fuyu.image_processing_pil_fuyu import FuyuImageProcessorPil

    class FuyuImageProcessorArrays(FuyuImageProcessorPil):
        def patchify_image(self, image: Any, patch_size: Any = None) -> Any:
            if isinstance(image, torch.Tensor):
                return torch.from_numpy(np.ascontiguousarray(super().patchify_image(image.numpy(), patch_size)))
            return super().patchify_image(image, patch_size)

    tokenizer = make_tokenizer(extra_special=["|SPEAKER|", "|NEWLINE|", "<0x04>", "|ENDOFTEXT|", "\u2581"])
    config = FuyuConfig(
        text_config=dict(model_type="persimmon", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=2048),
        image_size=max(max_hw), patch_size=patch, num_channels=3, hidden_size=64, vocab_size=len(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("|SPEAKER|"),
    )
    model = init_weights(FuyuForCausalLM(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = FuyuImageProcessorArrays(size={"height": max_hw[0], "width": max_hw[1]},
                                  patch_size={"height": patch, "width": patch})
    processor = FuyuProcessor(image_processor=ip, tokenizer=tokenizer)
    processor.tokenizer = DummyPrefixTokenizer(tokenizer)
    return model, processor
