"""Tiny Idefics3 (adapters/idefics.py)."""

from __future__ import annotations

from typing import Any


from .common import init_weights, llama_text, make_tokenizer

__all__ = ["tiny_idefics3"]


def tiny_idefics3(
    seed: int = 0, tile: int = 32, patch: int = 4, local_vision: bool = False, attn_implementation: str = "sdpa",
    smolvlm: bool = False, scale: int = 2, tiles_per_side: int = 2,
) -> tuple[Any, Any]:
    """Idefics3 (or SmolVLM) shape: up to ``tiles_per_side`` x ``tiles_per_side`` tiles of ``tile`` px + a global
    image, pixel shuffle ``scale``. ``tile=384, patch=14, scale=3, tiles_per_side=4`` is SmolVLM's real geometry (a
    narrow model: the tower and decoder stay tiny)."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    markers = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]
    markers += [f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    tokenizer = make_tokenizer(extra_special=markers)
    seq_len = (tile // patch // scale) ** 2
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=0 if local_vision else 1,
                  num_attention_heads=4, image_size=tile, patch_size=patch)
    cfg_kwargs = dict(
        vision_config=vision, text_config=llama_text(len(tokenizer)).to_dict(), scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    if smolvlm:
        from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

        config = SmolVLMConfig(**cfg_kwargs)
        model_cls = SmolVLMForConditionalGeneration
    else:
        config = Idefics3Config(**cfg_kwargs)
        model_cls = Idefics3ForConditionalGeneration
    model = init_weights(model_cls(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Idefics3ImageProcessorPil(size={"longest_edge": tiles_per_side * tile}, max_image_size={"longest_edge": tile})
    template = (
        "{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance> "
        "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    )
    processor = Idefics3Processor(image_processor=ip, tokenizer=tokenizer, image_seq_len=seq_len, chat_template=template)
    return model, processor
