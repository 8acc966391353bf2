"""Tiny Mllama, the cross-attention family (adapters/mllama.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .common import init_weights, make_tokenizer

__all__ = ["MLLAMA_TEMPLATE", "tiny_mllama"]


MLLAMA_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|image|>{% else %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %} </s> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def tiny_mllama(seed: int = 0, tile: int = 32, patch: int = 8, max_tiles: int = 4, local_vision: bool = False,
                attn_implementation: str = "sdpa", cross_layers: Sequence[int] = (1, 3), text_layers: int = 4
                ) -> tuple[Any, Any]:
    """Llama-3.2-Vision (Mllama) shape with the real ``MllamaProcessor`` and ``MllamaImageProcessorPil``: aspect-ratio
    tiling into up to ``max_tiles`` tiles of ``tile`` px (CLS + ``(tile/patch)^2`` patches each), a decoder of
    ``text_layers`` layers of which ``cross_layers`` cross-attend to the vision tokens. ``local_vision=True`` zeroes
    the vision layers' attention output, so a token's features depend only on its own patch (and its position)."""
    from transformers import MllamaConfig, MllamaForConditionalGeneration, MllamaProcessor
    from transformers.models.mllama.image_processing_pil_mllama import MllamaImageProcessorPil

    tokenizer = make_tokenizer(extra_special=["<|image|>", "<|python_tag|>"], named={"image_token": "<|image|>"})
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_global_layers=1, attention_heads=4,
                  image_size=tile, patch_size=patch, max_num_tiles=max_tiles, intermediate_layers_indices=[0],
                  vision_output_dim=64)
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=text_layers,
                num_attention_heads=4, num_key_value_heads=2, cross_attention_layers=list(cross_layers),
                max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=tokenizer.image_token_id)
    model = init_weights(MllamaForConditionalGeneration(config), seed)
    if local_vision:
        with torch.no_grad():
            for name, param in model.model.vision_model.named_parameters():
                if ".self_attn.o_proj." in name:
                    param.zero_()
    model.set_attn_implementation(attn_implementation)
    ip = MllamaImageProcessorPil(size={"height": tile, "width": tile}, max_image_tiles=max_tiles)
    processor = MllamaProcessor(image_processor=ip, tokenizer=tokenizer, chat_template=MLLAMA_TEMPLATE)
    return model, processor
