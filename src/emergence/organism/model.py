"""The organism's architecture: a small LLaVA (CLIP-style tower + Llama decoder) with a real HF tokenizer, processor
and chat template, saved as an ordinary HF model folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .world import BACKGROUNDS, COLOURS, COLS, PARTS, ROWS, SHAPES, SIZES

__all__ = ["ORGANISM_DIR", "PROMPT", "VOCABULARY", "build_model", "build_processor", "load_organism"]

ORGANISM_DIR = Path(__file__).resolve().parent / "weights"
PROMPT = "describe the image"
IMAGE_SIZE = 64
PATCH = 8

_FUNCTION = "a an the with and at on is or of what colour hollow solid background left right describe image ? . :".split()
VOCABULARY = sorted(
    set(_FUNCTION) | set(COLOURS) | set(SHAPES) | set(PARTS) | set(SIZES) | set(BACKGROUNDS) | set(ROWS)
    | set(COLS)
)
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER : {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT : {% for c in m['content'] %}{{ c['text'] }}{% endfor %} </s> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT :{% endif %}"
)


def build_processor() -> Any:
    """``LlavaProcessor``: word-level tokenizer over the world's vocabulary, CLIP normalisation, 64 x 64 images."""
    from transformers import LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    from ..wordlevel import word_level_tokenizer

    tokenizer = word_level_tokenizer(VOCABULARY)
    image_processor = LlavaImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_center_crop=False, do_pad=False,
    )
    return LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
        vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE, num_additional_image_tokens=1,
    )


def build_model(processor: Any, seed: int = 0, width: int = 192, layers: int = 3, vision_width: int = 128) -> Any:
    """A freshly initialised organism (``LlavaForConditionalGeneration``).

    The language model reads the vision tower's patch-embedding output (``vision_feature_layer=-2`` of a one-layer
    tower): each visual token carries only its own 8 x 8 patch, so naming an object's colour or shape requires the
    decoder to attend to that object — the mechanism whose emergence the toolkit studies. (Reading features after
    global vision attention lets any patch answer for any object and blurs the maps.)
    """
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    tok = processor.tokenizer
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=vision_width, intermediate_size=vision_width * 2, num_hidden_layers=1,
            num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=vision_width,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tok), hidden_size=width, intermediate_size=width * 8 // 3, num_hidden_layers=layers,
            num_attention_heads=width // 32, num_key_value_heads=width // 32, max_position_embeddings=256,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            tie_word_embeddings=False,
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    return model


def load_organism(path: str | os.PathLike | None = None, device: str | None = None) -> tuple[Any, Any]:
    """The shipped organism (or one saved at ``path``): ``(model, processor)``, model in eval mode."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = Path(path) if path is not None else ORGANISM_DIR
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"no organism at {str(folder)!r}: train one with `python -m emergence.organism.train --out {folder}`"
        )
    model = LlavaForConditionalGeneration.from_pretrained(folder, attn_implementation="sdpa").eval()
    if device is not None:
        model = model.to(device)
    return model, AutoProcessor.from_pretrained(folder)
