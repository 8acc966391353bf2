"""The organism's architecture: a small LLaVA (CLIP-style tower + Llama decoder) with a real HF tokenizer, processor
and chat template, saved as an ordinary HF model folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .world import BACKGROUNDS, COLOURS, COLS, PARTS, ROWS, SHAPES, SIZES

__all__ = ["DESIGNS", "FUYU_DIR", "ORGANISM_DIR", "PROMPT", "VOCABULARY", "OrganismDesign", "build_model",
           "build_processor", "load_organism", "organism_dir"]

ORGANISM_DIR = Path(__file__).resolve().parent / "weights"
FUYU_DIR = Path(__file__).resolve().parent / "weights_fuyu"
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


@dataclass(frozen=True)
class OrganismDesign:
    """One organism architecture: where its shipped weights live and how a fresh one is built."""

    name: str
    folder: Path
    build_processor: Callable[[], Any]
    build_model: Callable[..., Any]  # (processor, seed=, layers=) -> model
    layers: int  # the shipped decoder depth
    summary: str


def _fuyu_processor() -> Any:
    from .fuyu import build_fuyu_processor

    return build_fuyu_processor()


def _fuyu_model(processor: Any, seed: int = 0, layers: int = 4) -> Any:
    from .fuyu import build_fuyu_model

    return build_fuyu_model(processor, seed=seed, layers=layers)


DESIGNS: dict[str, OrganismDesign] = {
    "llava": OrganismDesign("llava", ORGANISM_DIR, build_processor, build_model, 3,
                            "LLaVA: patch embedding tower + MLP projector + 3-layer Llama decoder (1.58M parameters)"),
    "fuyu": OrganismDesign("fuyu", FUYU_DIR, _fuyu_processor, _fuyu_model, 4,
                           "Fuyu: image patches through one linear layer into a 4-layer Persimmon decoder, no vision "
                           "encoder (1.84M parameters)"),
}


def organism_dir(design: str = "llava") -> Path:
    """The folder of the shipped organism of ``design`` (``"llava"`` or ``"fuyu"``)."""
    if design not in DESIGNS:
        raise ValueError(f"organism design {design!r}: the shipped designs are {sorted(DESIGNS)}")
    return DESIGNS[design].folder


def load_organism(path: str | os.PathLike | None = None, device: str | None = None,
                  design: str = "llava") -> tuple[Any, Any]:
    """The shipped organism of ``design`` (or one saved at ``path``, of either design): ``(model, processor)``,
    model in eval mode."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = Path(path) if path is not None else organism_dir(design)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"no organism at {str(folder)!r}: train one with `python -m emergence.organism.train --out {folder}`"
        )
    model = AutoModelForImageTextToText.from_pretrained(folder, attn_implementation="sdpa").eval()
    if device is not None:
        model = model.to(device)
    return model, AutoProcessor.from_pretrained(folder)
