"""Tiny random-config models of the real transformers classes, with real tokenizers and processors.

Used by the test suite, the capture benchmark and the offline demo: no download, seconds on a CPU. Every factory
returns ``(model, processor)`` where ``processor`` is the real HF processor class of the family, except Qwen2-VL
whose ``Qwen2VLProcessor`` needs torchvision (its video processor): there ``processor`` is a
:class:`HandBuiltProcessor` that expands ``<|image_pad|>`` from ``image_grid_thw`` like the real one.

``local_vision=True`` makes the vision features of a visual token depend only on the pixels of its own patch (the
vision tower's embedding output is used, or the tower has no layers), so tests can tell exactly which tokens see a
marker drawn in the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .capture import find_cache
from .processing import without_video_processor
from .wordlevel import word_level_tokenizer

__all__ = [
    "make_tokenizer",
    "tiny_llava",
    "tiny_llava_next",
    "tiny_qwen2_vl",
    "tiny_idefics3",
    "tiny_paligemma",
    "tiny_mllama",
    "tiny_sam2",
    "HandBuiltProcessor",
    "TINY_FAMILIES",
    "with_image_backend",
]

#: transformers' image-processor backends: the PIL classes (``XImageProcessorPil``, what the tiny builders use, and
#: what transformers picks without torchvision) and the torchvision ones (``XImageProcessor``, its default with it)
IMAGE_BACKENDS = ("pil", "torchvision")


def with_image_backend(processor: Any, backend: str) -> Any:
    """``processor`` (a shallow copy) whose image processor is transformers' ``backend`` class of the same family,
    built from the same settings: ``"pil"`` returns ``processor`` unchanged; ``"torchvision"`` swaps
    ``XImageProcessorPil`` for ``XImageProcessor``.

    Raises:
        LookupError: the processor's image processor is not a transformers PIL class with a torchvision twin (a
            stand-in of this module, or a family with one backend only).
        ImportError: torchvision is absent.
    """
    import copy

    import transformers

    if backend not in IMAGE_BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {IMAGE_BACKENDS}")
    if backend == "pil":
        return processor
    if isinstance(processor, _with_call_kwargs):  # swap inside the wrapper, keep its call keywords
        return _with_call_kwargs(with_image_backend(processor._processor, backend), **processor._kwargs)
    import torchvision  # noqa: F401  (the torchvision classes fail later and less clearly without it)

    pil = getattr(processor, "image_processor", None)
    name = type(pil).__name__
    twin = getattr(transformers, name.removesuffix("Pil"), None) if name.endswith("Pil") else None
    if twin is None or not type(pil).__module__.startswith("transformers."):
        raise LookupError(f"{name} has no torchvision twin in transformers (a stand-in, or one backend only)")
    settings = {k: v for k, v in pil.to_dict().items()
                if not k.startswith("_") and k not in ("image_processor_type", "processor_class", "backend")}
    out = copy.copy(processor)
    out.image_processor = twin(**settings)
    return out

WORDS = (
    "a an the is are of in on at to and with left right top bottom above below next red green blue yellow purple "
    "orange white black gray circle square triangle star house roof flag pole mug handle small large big tiny "
    "shape object image picture scene background plain striped dotted there it this that what where which describe "
    "color colour shape segment show find identify one two three open closed full empty . , ? ! : ;"
).split()

LLAVA_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'video' %}<video> {% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %} "
    "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %} </s> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def make_tokenizer(extra_special: Sequence[str] = (), words: Sequence[str] = WORDS,
                   named: dict[str, str] | None = None) -> Any:
    """The test vocabulary as a word-level tokenizer (see :func:`emergence.wordlevel.word_level_tokenizer`)."""
    return word_level_tokenizer(words, extra_special, named)


def _llama_text(vocab: int, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2, **kw) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        **kw,
    )


def _cohere2_text(tokenizer: Any, sliding_window: int) -> dict[str, Any]:
    """A two-layer Cohere2 decoder config (one sliding-window layer, one full), as a dict for a VLM config."""
    return dict(model_type="cohere2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                sliding_window=sliding_window, layer_types=["sliding_attention", "full_attention"],
                max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def _clip_vision(image_size: int, patch: int, local: bool) -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1 if local else 2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )


def _siglip_vision(image_size: int, patch: int, layers: int) -> dict[str, Any]:
    """A tiny SigLIP vision tower config (no CLS token); ``layers=0`` keeps features local to each patch."""
    return dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                num_attention_heads=4, image_size=image_size, patch_size=patch)


def _init(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2 if p.ndim > 1 else 0.02)
    return model.eval()


def tiny_llava(
    seed: int = 0,
    image_size: int = 32,
    patch: int = 8,
    local_vision: bool = False,
    attn_implementation: str = "sdpa",
    text_layers: int = 2,
    do_pad: bool = False,
    crop: bool = True,
    text_backbone: str = "llama",
) -> tuple[Any, Any]:
    """LLaVA-1.5 shape: CLIP tower, one contiguous block of ``(image_size/patch)^2`` image tokens.

    ``do_pad`` pads to a square first (LLaVA's own image processor); ``crop=False`` resizes straight to a square
    instead of shortest-edge resize + centre crop; ``text_backbone`` swaps the decoder class (``'qwen2'``: one
    key/value head; ``'mistral'``: sliding window of 12)."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer = make_tokenizer()
    common = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=text_layers,
        num_attention_heads=4, max_position_embeddings=2048,
    )
    if text_backbone == "llama":
        text = _llama_text(len(tokenizer), layers=text_layers)
    elif text_backbone == "qwen2":
        from transformers import Qwen2Config

        text = Qwen2Config(num_key_value_heads=1, **common)
    elif text_backbone == "mistral":  # sliding window 12: decode steps see fewer and fewer image keys
        from transformers import MistralConfig

        text = MistralConfig(num_key_value_heads=2, sliding_window=12, **common)
    else:
        raise ValueError(f"text_backbone={text_backbone!r} is not one of ('llama', 'qwen2', 'mistral')")
    config = LlavaConfig(
        vision_config=_clip_vision(image_size, patch, local_vision),
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,  # with a 1-layer tower (local_vision) this is the patch-embedding output
        vision_feature_select_strategy="default",
    )
    config._attn_implementation = attn_implementation
    model = _init(LlavaForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    if crop:
        ip = LlavaImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
            do_center_crop=True, do_pad=do_pad,
        )
    else:
        ip = LlavaImageProcessorPil(size={"height": image_size, "width": image_size}, do_center_crop=False, do_pad=do_pad)
    processor = LlavaProcessor(
        image_processor=ip, tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy="default",
        chat_template=LLAVA_TEMPLATE, num_additional_image_tokens=1,
    )
    return model, processor


def tiny_llava_next(
    seed: int = 0, tile: int = 32, patch: int = 8, local_vision: bool = False, attn_implementation: str = "sdpa",
    video: bool = False,
) -> tuple[Any, Any]:
    """LLaVA-NeXT shape: base image + anyres tiles (pinpoints up to 2x3 tiles), newline token per row.

    ``video=True`` builds ``LlavaNextVideoForConditionalGeneration`` (LLaVA-NeXT-Video), whose image path packs
    features exactly as LLaVA-NeXT; its images are processed by the LLaVA-NeXT image processor and token expansion
    (what ``LlavaNextVideoProcessor`` does for images; its video processor needs torchvision)."""
    import transformers
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    family = "LlavaNextVideo" if video else "LlavaNext"
    config_cls = getattr(transformers, f"{family}Config")
    model_cls = getattr(transformers, f"{family}ForConditionalGeneration")
    tokenizer = make_tokenizer(extra_special=["<video>"] if video else ())
    pinpoints = [[tile, 2 * tile], [2 * tile, tile], [2 * tile, 2 * tile], [tile, 3 * tile], [3 * tile, tile]]
    extra = {"video_token_id": tokenizer.convert_tokens_to_ids("<video>"), "spatial_pool_stride": 2} if video else {}
    config = config_cls(
        vision_config=_clip_vision(tile, patch, local_vision),
        text_config=_llama_text(len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,  # with a 1-layer tower (local_vision) this is the patch-embedding output
        vision_feature_select_strategy="default",
        **extra,
    )
    model = _init(model_cls(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = LlavaNextImageProcessorPil(
        size={"shortest_edge": tile}, crop_size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints
    )
    kwargs = dict(image_processor=ip, tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy="default",
                  chat_template=LLAVA_TEMPLATE, num_additional_image_tokens=1)
    if not video:
        return model, LlavaNextProcessor(**kwargs)
    from transformers import LlavaNextVideoProcessor

    processor = without_video_processor(LlavaNextVideoProcessor)(video_processor=None, **kwargs)
    processor.video_processor = FrameVideoProcessor(tile)
    return model, processor


class FrameVideoProcessor:
    """A stand-in for ``LlavaNextVideoVideoProcessor`` (which needs torchvision) with its configuration: every
    frame resized (shortest edge ``side``, bicubic), centre-cropped to ``side x side``, rescaled and normalised with
    the CLIP mean / std -- the same steps, done by the PIL image processor frame by frame. ``crop=False`` stands in
    for ``LlavaOnevisionVideoProcessor``: every frame resized straight to ``side x side`` (bicubic, aspect ratio not
    kept, no crop), the same CLIP mean / std.

    Returns ``pixel_values_videos`` ``[videos, frames, 3, side, side]``.
    """

    model_input_names = ["pixel_values_videos"]

    def __init__(self, side: int, crop: bool = True) -> None:
        if crop:
            self.size: dict[str, int] = {"shortest_edge": side}
            self.crop_size: dict[str, int] | None = {"height": side, "width": side}
        else:
            self.size, self.crop_size = {"height": side, "width": side}, None
        self.do_resize = True
        self.do_center_crop = crop
        self.do_pad = False

    def __call__(self, videos: Any = None, return_tensors: str = "pt", **_: Any) -> Any:
        from transformers import BatchFeature
        from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

        ip = LlavaImageProcessorPil(size=self.size, crop_size=self.crop_size or self.size,
                                    do_center_crop=self.do_center_crop, do_pad=False)
        if videos is None:
            return BatchFeature({})
        stacks = [ip(images=list(frames), return_tensors="pt")["pixel_values"] for frames in videos]
        return BatchFeature({"pixel_values_videos": torch.stack(stacks)})


def tiny_llava_onevision(
    seed: int = 0, tile: int = 32, patch: int = 8, local_vision: bool = False, attn_implementation: str = "sdpa",
    max_patches: int = 9,
) -> tuple[Any, Any]:
    """LLaVA-OneVision shape: SigLIP tower (no CLS, ``full`` features), base image resized to one tile, anyres tiles
    up to 3x3 with unpad and a newline per row; ``max_patches`` sets ``vision_aspect_ratio='anyres_max_N'`` (a small
    N makes the model bilinearly shrink the tile mosaic, as anyres_max_9 does for large images). Videos go through
    :class:`FrameVideoProcessor` ``(crop=False)``, configured as ``LlavaOnevisionVideoProcessor``."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
        LlavaOnevisionImageProcessorPil,
    )

    tokenizer = make_tokenizer(extra_special=["<video>"])
    pinpoints = [[tile * r, tile * c] for r in (1, 2, 3) for c in (1, 2, 3)]
    aspect = f"anyres_max_{max_patches}"
    config = LlavaOnevisionConfig(
        vision_config=_siglip_vision(tile, patch, layers=1 if local_vision else 2),
        text_config=_llama_text(len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,  # with a 1-layer tower (local_vision) this is the patch-embedding output
        vision_feature_select_strategy="full",
        vision_aspect_ratio=aspect,
    )
    model = _init(LlavaOnevisionForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = LlavaOnevisionImageProcessorPil(size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints)
    processor = without_video_processor(LlavaOnevisionProcessor)(
        image_processor=ip, tokenizer=tokenizer, video_processor=None, num_image_tokens=(tile // patch) ** 2,
        vision_feature_select_strategy="full", vision_aspect_ratio=aspect, chat_template=LLAVA_TEMPLATE,
        video_token="<video>",
    )
    processor.video_processor = FrameVideoProcessor(tile, crop=False)  # LlavaOnevisionVideoProcessor needs torchvision
    return model, processor


def tiny_internvl(
    seed: int = 0, tile: int = 32, patch: int = 4, local_vision: bool = False, attn_implementation: str = "sdpa",
    max_patches: int = 6, crop_to_patches: bool = True,
) -> tuple[Any, Any]:
    """InternVL 2.5 / 3 shape: InternViT tower with CLS, pixel shuffle 0.5, the real ``GotOcr2ImageProcessor``
    tiling (``crop_to_patches``: the closest tile grid of up to ``max_patches`` tiles + a thumbnail) and the real
    ``InternVLProcessor`` (``<img>`` + ``<IMG_CONTEXT>`` x tokens per tile x tiles + ``</img>``)."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    named = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<image>",
             "video_token": "<video>"}
    tokenizer = make_tokenizer(named=named)
    per_tile = (tile // patch // 2) ** 2
    config = InternVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1 if local_vision else 2,
                           num_attention_heads=4, image_size=tile, patch_size=patch, use_mean_pooling=False),
        text_config=_llama_text(len(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=per_tile,
        downsample_ratio=0.5,
        vision_feature_layer=-2 if local_vision else -1,  # -2 with one layer: the patch-embedding output
    )
    model = _init(InternVLForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=crop_to_patches,
                                  min_patches=1, max_patches=max_patches)
    processor = without_video_processor(InternVLProcessor)(
        image_processor=ip, tokenizer=tokenizer, video_processor=None, image_seq_length=per_tile,
        chat_template=LLAVA_TEMPLATE,
    )
    return model, processor


def tiny_aya_vision(
    seed: int = 0, tile: int = 32, patch: int = 4, local_vision: bool = False, attn_implementation: str = "sdpa",
    max_patches: int = 6,
) -> tuple[Any, Any]:
    """Aya Vision shape: SigLIP tower, pixel shuffle by 2, a Cohere2 decoder (transformers 5.25 scales the logits by its
    ``logit_scale``), the real ``GotOcr2ImageProcessor`` tiling and the real ``AyaVisionProcessor`` (``TILE_i`` + patches per tile, then ``TILE_GLOBAL`` + the thumbnail's patches)."""
    from transformers import AyaVisionConfig, AyaVisionForConditionalGeneration, AyaVisionProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    marks = ["<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>", "TILE", "TILE_GLOBAL", "_",
             *[str(i) for i in range(1, 13)]]
    tokenizer = make_tokenizer(extra_special=marks)
    config = AyaVisionConfig(
        vision_config=_siglip_vision(tile, patch, layers=1 if local_vision else 2),
        text_config=_cohere2_text(tokenizer, sliding_window=4096),  # Aya Vision's decoder (its window > any prompt)
        image_token_index=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"),
        downsample_factor=2,
        vision_feature_layer=-2 if local_vision else -1,  # -2 with one layer: the patch-embedding output
    )
    model = _init(AyaVisionForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=True, min_patches=1,
                                  max_patches=max_patches)
    processor = AyaVisionProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=patch, img_size=tile,
                                   downsample_factor=2, chat_template=LLAVA_TEMPLATE)
    return model, processor


def tiny_video_llava(
    seed: int = 0, image_size: int = 32, patch: int = 8, local_vision: bool = False, attn_implementation: str = "sdpa",
) -> tuple[Any, Any]:
    """Video-LLaVA shape: CLIP tower (CLS dropped), images under ``pixel_values_images``; the real
    ``VideoLlavaImageProcessor`` (shortest-edge resize + centre crop) and ``VideoLlavaProcessor`` (its video
    processor needs torchvision and is left out)."""
    from transformers import VideoLlavaConfig, VideoLlavaForConditionalGeneration, VideoLlavaImageProcessor, VideoLlavaProcessor

    tokenizer = make_tokenizer(extra_special=["<video>"])
    config = VideoLlavaConfig(
        vision_config=_clip_vision(image_size, patch, local_vision),
        text_config=_llama_text(len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-2,  # with a 1-layer tower (local_vision) this is the patch-embedding output
        vision_feature_select_strategy="default",
    )
    model = _init(VideoLlavaForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = VideoLlavaImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    processor = without_video_processor(VideoLlavaProcessor)(
        image_processor=ip, video_processor=None, tokenizer=tokenizer, patch_size=patch,
        vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE, num_additional_image_tokens=1,
    )
    return model, processor


def tiny_fuyu(seed: int = 0, patch: int = 8, max_hw: tuple[int, int] = (64, 96), local_vision: bool = True,
              attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """Fuyu shape (the single-transformer design): image patches go straight through a linear layer into a Persimmon
    decoder, ``|SPEAKER|`` per patch and ``|NEWLINE|`` after each row. The real ``FuyuProcessor`` and
    ``FuyuImageProcessorPil`` (resize to fit ``max_hw`` only when larger, pad bottom / right); its PIL
    ``patchify_image`` is handed numpy arrays as the torchvision backend would be handed tensors. The patch
    embedding is local by construction (``local_vision`` is accepted for symmetry)."""
    import numpy as np
    import torch
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
    model = _init(FuyuForCausalLM(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = FuyuImageProcessorArrays(size={"height": max_hw[0], "width": max_hw[1]},
                                  patch_size={"height": patch, "width": patch})
    processor = FuyuProcessor(image_processor=ip, tokenizer=tokenizer)
    processor.tokenizer = _DummyPrefixTokenizer(tokenizer)
    return model, processor


class _DummyPrefixTokenizer:
    """The word-level test tokenizer with SentencePiece's dummy prefix: every encoded text starts with a
    ``"\u2581"`` piece (FuyuProcessor strips that piece off the image placeholders). Everything else delegates."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self._prefix = tokenizer.convert_tokens_to_ids("\u2581")

    def __call__(self, text: Any, **kwargs: Any) -> Any:
        import torch

        enc = self._tok(text, **kwargs)
        ids = enc["input_ids"]
        if isinstance(ids, torch.Tensor):
            pad = torch.full((*ids.shape[:-1], 1), self._prefix, dtype=ids.dtype)
            enc["input_ids"] = torch.cat([pad, ids], dim=-1)
            if "attention_mask" in enc:
                enc["attention_mask"] = torch.cat([torch.ones_like(pad), enc["attention_mask"]], dim=-1)
        else:
            enc["input_ids"] = [self._prefix, *ids]
            if "attention_mask" in enc:
                enc["attention_mask"] = [1, *enc["attention_mask"]]
        return enc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)


def tiny_deepseek_vl(seed: int = 0, image_size: int = 32, patch: int = 4, local_vision: bool = False,
                     attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """DeepSeek-VL shape: SigLIP tower (``last_hidden_state``; no layer when ``local_vision``), MLP aligner, the real
    ``DeepseekVLImageProcessorPil`` (longer side resized to ``image_size``, centred padding to a square) and
    ``DeepseekVLProcessor`` (``(image_size / patch)^2`` image tokens)."""
    from transformers import DeepseekVLConfig, DeepseekVLForConditionalGeneration, DeepseekVLProcessor
    from transformers.models.deepseek_vl.image_processing_pil_deepseek_vl import DeepseekVLImageProcessorPil

    tokenizer = make_tokenizer(named={"image_token": "<image>"})
    config = DeepseekVLConfig(
        vision_config=_siglip_vision(image_size, patch, layers=0 if local_vision else 1),
        text_config=_llama_text(len(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = _init(DeepseekVLForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = DeepseekVLImageProcessorPil(size={"height": image_size, "width": image_size}, min_size=patch)
    processor = DeepseekVLProcessor(image_processor=ip, tokenizer=tokenizer, num_image_tokens=(image_size // patch) ** 2,
                                    chat_template=LLAVA_TEMPLATE)
    return model, processor


def tiny_deepseek_vl_hybrid(seed: int = 0, image_size: int = 32, patch: int = 4, local_vision: bool = False,
                            attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """DeepSeek-VL hybrid (7B's design): the SigLIP low-resolution grid of :func:`tiny_deepseek_vl` plus a SAM
    high-resolution branch over the same padded square at twice the size, fused into the same tokens; the real
    ``DeepseekVLHybridImageProcessorPil`` and ``DeepseekVLHybridProcessor``. ``local_vision`` zeroes the SAM branch's
    projection (its global attention and convolutional neck are not local), so marker tests see the low-resolution
    grid; the processor test checks that the high-resolution input is the same padded square."""
    from transformers import (
        DeepseekVLHybridConfig,
        DeepseekVLHybridForConditionalGeneration,
        DeepseekVLHybridProcessor,
    )
    from transformers.models.deepseek_vl_hybrid.image_processing_pil_deepseek_vl_hybrid import (
        DeepseekVLHybridImageProcessorPil,
    )

    tokenizer = make_tokenizer(named={"image_token": "<image>"})
    config = DeepseekVLHybridConfig(
        vision_config=_siglip_vision(image_size, patch, layers=0 if local_vision else 1),
        high_res_vision_config=dict(hidden_size=32, output_channels=16, num_hidden_layers=1, num_attention_heads=4,
                                    image_size=2 * image_size, patch_size=2 * patch, mlp_dim=64,
                                    global_attn_indexes=[0]),
        text_config=_llama_text(len(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = _init(DeepseekVLHybridForConditionalGeneration(config), seed)
    if local_vision:  # the SAM branch (global attention, conv neck) is not local: silence it for the marker test
        with torch.no_grad():
            model.model.aligner.high_res_vision_proj.weight.zero_()
            model.model.aligner.high_res_vision_proj.bias.zero_()
    model.set_attn_implementation(attn_implementation)
    ip = DeepseekVLHybridImageProcessorPil(size={"height": image_size, "width": image_size},
                                           high_res_size={"height": 2 * image_size, "width": 2 * image_size},
                                           min_size=patch)
    processor = DeepseekVLHybridProcessor(image_processor=ip, tokenizer=tokenizer,
                                          num_image_tokens=(image_size // patch) ** 2, chat_template=LLAVA_TEMPLATE)
    return model, processor


def tiny_janus(seed: int = 0, image_size: int = 32, patch: int = 4, local_vision: bool = False,
               attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """Janus (understanding path): SigLIP-style tower, aligner, the real ``JanusImageProcessorPil`` (longer side
    resized, centred padding to a square) and ``JanusProcessor``; a small VQ model (generation path, unused here)."""
    from transformers import JanusConfig, JanusForConditionalGeneration, JanusProcessor
    from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

    named = {"image_token": "<image>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}
    tokenizer = make_tokenizer(named=named)
    g = image_size // patch
    config = JanusConfig(
        vision_config=dict(hidden_size=32, num_hidden_layers=0 if local_vision else 1, num_attention_heads=4,
                           image_size=image_size, patch_size=patch, projection_dim=64, depth=1, mlp_ratio=2.0,
                           num_image_tokens=g * g),
        vq_config=dict(embed_dim=4, num_embeddings=32, latent_channels=32, base_channels=32, channel_multiplier=[1, 1],
                       num_res_blocks=1, num_patches=g, projection_dim=64, image_token_embed_dim=64),
        text_config=_llama_text(len(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = _init(JanusForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = JanusImageProcessorPil(size={"height": image_size, "width": image_size}, min_size=patch)
    processor = JanusProcessor(image_processor=ip, tokenizer=tokenizer, num_image_tokens=g * g,
                               chat_template=LLAVA_TEMPLATE, use_default_system_prompt=False)
    return model, processor


def tiny_kosmos2(seed: int = 0, image_size: int = 32, patch: int = 8, latents: int = 4, local_vision: bool = False,
                 attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """Kosmos-2 shape: CLIP-style tower, a resampler of ``latents`` learned latent queries, placed where
    ``image_embeds_position_mask`` is 1. Its processor needs the real 65k-token vocabulary, so the returned
    processor builds the inputs as ``Kosmos2Processor`` lays them out (``<s> <image> latents </image> text``)."""
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = make_tokenizer(extra_special=["</image>", "<image_latent>"])
    config = Kosmos2Config(
        text_config=dict(vocab_size=len(tokenizer), embed_dim=64, layers=2, ffn_dim=128, attention_heads=4,
                         max_position_embeddings=256, dropout=0.0, attention_dropout=0.0, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=image_size, patch_size=patch),
        latent_query_num=latents,
    )
    model = _init(Kosmos2ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return model, _Kosmos2LikeProcessor(ip, tokenizer, latents)


class _Kosmos2LikeProcessor:
    """Inputs laid out as ``Kosmos2Processor`` lays them out, over the test vocabulary."""

    def __init__(self, image_processor: Any, tokenizer: Any, latents: int) -> None:
        self.image_processor, self.tokenizer, self.latents = image_processor, tokenizer, latents

    def __call__(self, images: Any = None, text: str | None = None, return_tensors: str = "pt", **_: Any) -> Any:
        import torch
        from transformers import BatchFeature

        if images is None:
            raise ValueError("Kosmos-2 inputs need an image")
        pixel = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        prompt = "<s> <image> " + "<image_latent> " * self.latents + "</image> " + (text or "")
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        latent_id = self.tokenizer.convert_tokens_to_ids("<image_latent>")
        mask = (ids == latent_id).long()
        return BatchFeature({"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": pixel,
                             "image_embeds_position_mask": mask})


def tiny_gemma4(seed: int = 0, patch: int = 4, pool: int = 2, max_soft_tokens: int = 70, local_vision: bool = False,
                attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """Gemma 4 shape: aspect-preserving resize to a patch budget (sides multiples of ``pool x patch``), ``pool x pool``
    pooling of the patch grid, sliding / full attention layers, bidirectional image tokens; the real
    ``Gemma4ImageProcessorPil`` and ``Gemma4Processor`` (video processor left out: it needs torchvision)."""
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4Processor
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    named = {"image_token": "<image>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
             "audio_token": "<audio>", "boa_token": "<start_of_audio>", "eoa_token": "<end_of_audio>"}
    tokenizer = make_tokenizer(named=named)
    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in named.items()}
    config = Gemma4Config(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=16,
                         layer_types=["sliding_attention", "full_attention"], sliding_window=16,
                         vocab_size_per_layer_input=len(tokenizer), hidden_size_per_layer_input=8,
                         max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=0 if local_vision else 1,
                           num_attention_heads=4, num_key_value_heads=4, head_dim=8, patch_size=patch,
                           pooling_kernel_size=pool, position_embedding_size=64),
        image_token_id=ids["image_token"], boi_token_id=ids["boi_token"], eoi_token_id=ids["eoi_token"],
    )
    model = _init(Gemma4ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Gemma4ImageProcessorPil(patch_size=patch, pooling_kernel_size=pool, max_soft_tokens=max_soft_tokens)
    processor = without_video_processor(Gemma4Processor)(
        feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=ip, tokenizer=tokenizer, video_processor=None,
        chat_template=LLAVA_TEMPLATE, image_seq_length=max_soft_tokens,
    )
    return model, processor


def tiny_lfm2_vl(seed: int = 0, tile: int = 32, patch: int = 4, max_tiles: int = 6, max_image_tokens: int = 16,
                 local_vision: bool = False, attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """LFM2-VL shape: SigLIP2 NaFlex tower, 2x2 pixel unshuffle, a hybrid LFM2 decoder (short convolutions and
    attention layers). ``Lfm2VlImageProcessor`` needs torchvision, so the returned processor lays the inputs out as it
    does (:class:`_Lfm2VlLikeProcessor`): a large image becomes the closest-aspect grid of ``tile`` px tiles, each
    after its ``<|img_row_r_col_c|>`` marker, then ``<|img_thumbnail|>`` and the smart-resized whole image."""
    from transformers import Lfm2VlConfig, Lfm2VlForConditionalGeneration

    marks = ["<|image_start|>", "<|image_end|>", "<|img_thumbnail|>",
             *[f"<|img_row_{r}_col_{c}|>" for r in range(1, max_tiles + 1) for c in range(1, max_tiles + 1)]]
    tokenizer = make_tokenizer(extra_special=marks)
    config = Lfm2VlConfig(
        vision_config=dict(model_type="siglip2_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=0 if local_vision else 1, num_attention_heads=4, patch_size=patch,
                           num_patches=(tile // patch) ** 2),
        text_config=dict(model_type="lfm2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         layer_types=["conv", "full_attention"], max_position_embeddings=2048,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), projector_hidden_size=64, downsample_factor=2,
    )
    model = _init(Lfm2VlForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    return model, _Lfm2VlLikeProcessor(tokenizer, tile=tile, patch=patch, max_tiles=max_tiles,
                                       max_image_tokens=max_image_tokens)


class _Lfm2VlLikeProcessor:
    """Inputs laid out as ``Lfm2VlProcessor`` + ``Lfm2VlImageProcessor`` lay them out (their rules, restated):
    ``smart_resize`` of the whole image to multiples of ``patch x 2`` within the token budget; an image too large for
    one view (``max_pixels_tolerance`` 2) is resized onto the closest-aspect grid of ``min_tiles..max_tiles`` tiles
    (no padding) and cut row by row, the smart-resized image following as a thumbnail; patches flattened
    ``(p, p, C)`` row-major, padded to the longest view with ``pixel_attention_mask``. Resizing uses PIL's bilinear
    filter where the real processor uses torchvision's (pixel values differ slightly; the geometry does not)."""

    def __init__(self, tokenizer: Any, tile: int, patch: int, max_tiles: int, max_image_tokens: int,
                 min_image_tokens: int = 4, min_tiles: int = 2) -> None:
        self.tokenizer, self.tile, self.patch = tokenizer, tile, patch
        self.min_tiles, self.max_tiles = min_tiles, max_tiles
        self.min_image_tokens, self.max_image_tokens = min_image_tokens, max_image_tokens
        self.image_token = "<image>"
        self.chat_template = None

    def _smart_resize(self, h: int, w: int) -> tuple[int, int]:
        f = self.patch * 2
        lo, hi = self.min_image_tokens * f * f, self.max_image_tokens * f * f
        hb, wb = max(f, round(h / f) * f), max(f, round(w / f) * f)
        if hb * wb > hi:
            beta = math.sqrt(h * w / hi)
            hb, wb = max(f, math.floor(h / beta / f) * f), max(f, math.floor(w / beta / f) * f)
        elif hb * wb < lo:
            beta = math.sqrt(lo / (h * w))
            hb, wb = math.ceil(h * beta / f) * f, math.ceil(w * beta / f) * f
        return hb, wb

    def _grid(self, h: int, w: int) -> tuple[int, int]:
        ratios = sorted({(c, r) for n in range(self.min_tiles, self.max_tiles + 1) for c in range(1, n + 1)
                         for r in range(1, n + 1) if self.min_tiles <= c * r <= self.max_tiles},
                        key=lambda x: x[0] * x[1])
        best, best_diff = (1, 1), float("inf")
        for c, r in ratios:
            diff = abs(w / h - c / r)
            if diff < best_diff:
                best, best_diff = (c, r), diff
            elif diff == best_diff and h * w > 0.5 * self.tile * self.tile * c * r:
                best = (c, r)
        return best

    def __call__(self, images: Any = None, text: str | None = None, return_tensors: str = "pt", **_: Any) -> Any:
        import numpy as np
        import torch
        from PIL import Image
        from transformers import BatchFeature

        image = images.convert("RGB")
        w, h = image.size
        f = self.patch * 2
        th, tw = self._smart_resize(h, w)
        large = max(self.patch, round(h / f) * f) * max(self.patch, round(w / f) * f) > self.max_image_tokens * f * f * 2.0
        views, marks = [], []
        if large:
            cols, rows = self._grid(h, w)
            canvas = image.resize((cols * self.tile, rows * self.tile), Image.BILINEAR)
            for r in range(rows):
                for c in range(cols):
                    views.append(canvas.crop((c * self.tile, r * self.tile, (c + 1) * self.tile, (r + 1) * self.tile)))
                    marks.append(f"<|img_row_{r + 1}_col_{c + 1}|>")
            marks.append("<|img_thumbnail|>")
        else:
            marks.append("")
        views.append(image.resize((tw, th), Image.BILINEAR))
        longest = max(self.max_image_tokens * 4, (self.tile // self.patch) ** 2)
        pixel, masks, shapes, parts = [], [], [], ["<|image_start|>"]
        for view, mark in zip(views, marks):
            arr = (np.asarray(view, dtype=np.float32) / 255.0 - 0.5) / 0.5  # (H, W, C)
            gh, gw = arr.shape[0] // self.patch, arr.shape[1] // self.patch
            patches = arr.reshape(gh, self.patch, gw, self.patch, 3).transpose(0, 2, 1, 3, 4).reshape(gh * gw, -1)
            padded = np.zeros((longest, patches.shape[1]), np.float32)
            padded[: len(patches)] = patches
            pixel.append(padded)
            masks.append(np.arange(longest) < len(patches))
            shapes.append((gh, gw))
            parts.append(mark + self.image_token * ((gh // 2) * (gw // 2)))
        parts.append("<|image_end|>")
        block = "".join(parts)
        prompt = (text or "").replace(self.image_token, block, 1) if self.image_token in (text or "") else block + (text or "")
        enc = self.tokenizer(prompt, return_tensors="pt")
        return BatchFeature({**enc, "pixel_values": torch.tensor(np.stack(pixel)),
                             "pixel_attention_mask": torch.tensor(np.stack(masks)).long(),
                             "spatial_shapes": torch.tensor(shapes)})


def tiny_cohere2_vision(seed: int = 0, tile: int = 32, patch: int = 4, max_tiles: int = 6, local_vision: bool = False,
                        attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """Cohere2-Vision shape: SigLIP tower, pixel shuffle by 2, a Cohere2 decoder. ``Cohere2VisionImageProcessor``
    needs torchvision, so the returned processor lays the inputs out as it does (:class:`_Cohere2VisionLikeProcessor`)
    with the canvas rule of :func:`emergence.adapters.tiles.cohere2_tile_grid` (tested against the processor's own
    source)."""
    from transformers import Cohere2VisionConfig, Cohere2VisionForConditionalGeneration

    marks = ["<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_LINE_BREAK|>"]
    tokenizer = make_tokenizer(extra_special=marks)
    config = Cohere2VisionConfig(
        vision_config=_siglip_vision(tile, patch, layers=0 if local_vision else 1),
        text_config=_cohere2_text(tokenizer, sliding_window=16),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), downsample_factor=2,
        alignment_intermediate_size=64,
    )
    model = _init(Cohere2VisionForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    return model, _Cohere2VisionLikeProcessor(tokenizer, tile=tile, side=tile // patch // 2, max_tiles=max_tiles)


class _Cohere2VisionLikeProcessor:
    """Inputs laid out as ``Cohere2VisionProcessor`` lays them out: tiles of the least-scaling canvas (bicubic
    resize, no padding) in raster order, then the whole image resized to one tile when there is more than one tile;
    ``<|START_OF_IMG|>`` + (``<image>`` x side^2 + ``<|IMG_LINE_BREAK|>``) per view + ``<|END_OF_IMG|>``."""

    def __init__(self, tokenizer: Any, tile: int, side: int, max_tiles: int) -> None:
        self.tokenizer, self.tile, self.side, self.max_patches = tokenizer, tile, side, max_tiles
        self.image_token = "<image>"
        self.chat_template = None

    def __call__(self, images: Any = None, text: str | None = None, return_tensors: str = "pt", **_: Any) -> Any:
        import numpy as np
        from PIL import Image
        from transformers import BatchFeature

        from .adapters.tiles import cohere2_tile_grid

        image = images.convert("RGB")
        w, h = image.size
        cols, rows = cohere2_tile_grid((h, w), self.tile, self.max_patches)
        canvas = image.resize((cols * self.tile, rows * self.tile), Image.BICUBIC)
        views = [canvas.crop((c * self.tile, r * self.tile, (c + 1) * self.tile, (r + 1) * self.tile))
                 for r in range(rows) for c in range(cols)]
        if len(views) > 1:
            views.append(image.resize((self.tile, self.tile), Image.BICUBIC))
        mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.26130258, 0.27577711])
        pixel = np.stack([((np.asarray(v, np.float32) / 255.0 - mean) / std).transpose(2, 0, 1) for v in views])
        block = "<|START_OF_IMG|>" + (self.image_token * self.side**2 + "<|IMG_LINE_BREAK|>") * len(views)
        block += "<|END_OF_IMG|>"
        t = text or ""
        prompt = t.replace(self.image_token, block, 1) if self.image_token in t else block + t
        enc = self.tokenizer(prompt, return_tensors="pt")
        return BatchFeature({**enc, "pixel_values": torch.tensor(pixel, dtype=torch.float32)})


def source_functions(module: str, names: Sequence[str]) -> dict[str, Any]:
    """Top-level functions of a transformers module, executed from its source file without importing the module
    (modules of torchvision-only processors cannot be imported here). Their globals: ``math``, ``np``, ``torch``,
    ``defaultdict``, ``lru_cache``, ``SizeDict`` and the other functions loaded."""
    import ast
    import importlib.util
    from collections import defaultdict
    from functools import lru_cache
    from pathlib import Path

    import numpy as np
    from transformers.image_utils import SizeDict

    root = Path(importlib.util.find_spec("transformers").origin).parent
    path = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
    tree = ast.parse(path.read_text())
    defs = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = set(names) - {d.name for d in defs}
    if missing:
        raise LookupError(f"{module} does not define {sorted(missing)} at top level")
    namespace: dict[str, Any] = {"math": math, "np": np, "torch": torch, "defaultdict": defaultdict,
                                 "lru_cache": lru_cache, "SizeDict": SizeDict}
    exec(compile(ast.Module(body=defs, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return {name: namespace[name] for name in names}


def tiny_llama4(seed: int = 0, tile: int = 32, patch: int = 4, max_patches: int = 6, local_vision: bool = False,
                attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """Llama 4 shape: a vision tower with an appended CLS token, pixel shuffle 0.5, a chunked-attention MoE decoder.
    ``Llama4ImageProcessor`` needs torchvision, so the returned processor lays the inputs out as it does
    (:class:`_Llama4LikeProcessor`) with its own canvas functions, loaded from its source."""
    from transformers import Llama4Config, Llama4ForConditionalGeneration

    marks = ["<|image_start|>", "<|image_end|>", "<|image|>", "<|patch|>", "<|tile_x_separator|>",
             "<|tile_y_separator|>"]
    tokenizer = make_tokenizer(extra_special=marks)
    config = Llama4Config(
        vision_config=dict(hidden_size=32, num_hidden_layers=0 if local_vision else 1, num_attention_heads=4,
                           intermediate_size=128, vision_output_dim=32, image_size=tile, patch_size=patch,
                           pixel_shuffle_ratio=0.5, projector_input_dim=32, projector_output_dim=32),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=64, intermediate_size_mlp=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         num_local_experts=2, attention_chunk_size=16, max_position_embeddings=2048,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id),
        image_token_index=tokenizer.convert_tokens_to_ids("<|patch|>"),
        boi_token_index=tokenizer.convert_tokens_to_ids("<|image_start|>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<|image_end|>"),
    )
    model = _init(Llama4ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    return model, _Llama4LikeProcessor(tokenizer, tile=tile, per_tile=(tile // patch // 2) ** 2,
                                       max_patches=max_patches)


class _Llama4LikeProcessor:
    """Inputs laid out as ``Llama4Processor`` + ``Llama4ImageProcessor`` lay them out, with the image processor's
    own ``find_supported_resolutions`` / ``get_best_fit`` / ``get_max_res_without_distortion`` (loaded from its
    source): the image resized without distortion into the best canvas (upscaling limited to one tile), padded at
    the bottom / right, cut into tiles row by row, then a global view (the whole image resized to one tile) when
    there is more than one tile. Prompt: tiles separated by ``<|tile_x_separator|>``, rows ended by
    ``<|tile_y_separator|>``, then ``<|image|>`` and the global view. PIL's bilinear filter stands in for
    torchvision's."""

    def __init__(self, tokenizer: Any, tile: int, per_tile: int, max_patches: int) -> None:
        self.tokenizer, self.tile, self.per_tile, self.max_patches = tokenizer, tile, per_tile, max_patches
        self.image_token = "<image>"
        self.chat_template = None
        self.rules = source_functions("transformers.models.llama4.image_processing_llama4",
                                      ("get_factors", "find_supported_resolutions", "get_best_fit",
                                       "get_max_res_without_distortion"))

    def __call__(self, images: Any = None, text: str | None = None, return_tensors: str = "pt", **_: Any) -> Any:
        import numpy as np
        from PIL import Image
        from transformers import BatchFeature
        from transformers.image_utils import SizeDict

        image = images.convert("RGB")
        w, h = image.size
        s = self.tile
        options = self.rules["find_supported_resolutions"](self.max_patches, SizeDict(height=s, width=s))
        th, tw = (int(v) for v in self.rules["get_best_fit"]((h, w), torch.tensor(options), False))
        limit = (min(max(h, s), th), min(max(w, s), tw))
        nh, nw = self.rules["get_max_res_without_distortion"]((h, w), limit)
        self.last_resized_hw = (int(nh), int(nw))  # what the processor's own rule gave (tests compare layouts to it)
        canvas = np.zeros((th, tw, 3), np.float32)
        canvas[: max(nh, 1), : max(nw, 1)] = np.asarray(image.resize((max(nw, 1), max(nh, 1)), Image.BILINEAR),
                                                        np.float32)
        rows, cols = th // s, tw // s
        views = [canvas[r * s:(r + 1) * s, c * s:(c + 1) * s] for r in range(rows) for c in range(cols)]
        if rows * cols > 1:
            views.append(np.asarray(image.resize((s, s), Image.BILINEAR), np.float32))
        pixel = np.stack([((v / 255.0 - 0.5) / 0.5).transpose(2, 0, 1) for v in views])
        block = "<|image_start|>"
        if rows * cols > 1:
            for r in range(rows):
                block += "<|tile_x_separator|>".join(["<|patch|>" * self.per_tile] * cols) + "<|tile_y_separator|>"
        block += "<|image|>" + "<|patch|>" * self.per_tile + "<|image_end|>"
        t = text or ""
        prompt = t.replace(self.image_token, block, 1) if self.image_token in t else block + t
        enc = self.tokenizer(prompt, return_tensors="pt")
        return BatchFeature({**enc, "pixel_values": torch.tensor(pixel, dtype=torch.float32)})


def tiny_perception_lm(seed: int = 0, tile: int = 32, patch: int = 8) -> tuple[Any, Any]:
    """PerceptionLM shape: a timm ViT tower through ``TimmWrapper`` (needs ``timm``), a Llama decoder, the real
    ``PerceptionLMProcessor`` with its image and video processors (need torchvision): the full lane only. No
    adapter places it yet (a thumbnail and tiles per image): the toolkit refuses it by name."""
    from transformers import (PerceptionLMConfig, PerceptionLMForConditionalGeneration, PerceptionLMImageProcessor,
                              PerceptionLMProcessor, PerceptionLMVideoProcessor, TimmWrapperConfig)

    tokenizer = make_tokenizer(extra_special=["<|image|>", "<|video|>"])
    tokenizer.image_token, tokenizer.video_token = "<|image|>", "<|video|>"  # read by the real processor
    tokenizer.image_token_id = tokenizer.convert_tokens_to_ids("<|image|>")
    tokenizer.video_token_id = tokenizer.convert_tokens_to_ids("<|video|>")
    vision = TimmWrapperConfig(architecture="vit_tiny_patch16_224", num_labels=0,
                               model_args={"img_size": tile, "patch_size": patch, "depth": 1, "embed_dim": 32,
                                           "num_heads": 2, "class_token": False, "global_pool": ""})
    config = PerceptionLMConfig(vision_config=vision, text_config=_llama_text(len(tokenizer)),
                                image_token_id=tokenizer.image_token_id, video_token_id=tokenizer.video_token_id,
                                projector_pooling_ratio=1)
    model = _init(PerceptionLMForConditionalGeneration(config), seed)
    ip = PerceptionLMImageProcessor(tile_size=tile, max_num_tiles=1, vision_input_type="thumb+tile")
    processor = PerceptionLMProcessor(image_processor=ip, video_processor=PerceptionLMVideoProcessor(),
                                      tokenizer=tokenizer, patch_size=patch, pooling_ratio=1)
    return model, processor


def tiny_got_ocr2(seed: int = 0, image_size: int = 64, patch: int = 4, local_vision: bool = False,
                  attn_implementation: str = "sdpa", max_patches: int = 1) -> tuple[Any, Any]:
    """GOT-OCR2 shape: a SAM-style encoder with a convolutional neck, two stride-2 3x3 convolutions down to
    ``(image_size / patch / 4)^2`` tokens per view, a Qwen2 decoder; the real ``GotOcr2ImageProcessorPil`` (resize to
    the square; ``max_patches > 1`` turns ``crop_to_patches`` on: tiles + thumbnail) and ``GotOcr2Processor``.
    ``local_vision`` keeps only the centre tap of every 3x3 convolution, so each token reads one patch of its own
    4x4 cell (the real convolutions also read the neighbouring cells)."""
    from transformers import GotOcr2Config, GotOcr2ForConditionalGeneration, GotOcr2Processor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    tokenizer = make_tokenizer(extra_special=["<img>", "</img>", "<imgpad>", "<|im_start|>", "<|im_end|>",
                                              "system", "user", "assistant", "OCR", "You", "should", "follow",
                                              "instructions", "carefully", "explain", "your", "answers", "detail"])
    per_view = (image_size // patch // 4) ** 2
    config = GotOcr2Config(
        vision_config=dict(hidden_size=32, output_channels=16, num_hidden_layers=0 if local_vision else 1,
                           num_attention_heads=4, image_size=image_size, patch_size=patch, mlp_dim=64,
                           global_attn_indexes=[] if local_vision else [0], window_size=4),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048),
        image_token_index=tokenizer.convert_tokens_to_ids("<imgpad>"), image_seq_length=per_view,
    )
    model = _init(GotOcr2ForConditionalGeneration(config), seed)
    if local_vision:
        with torch.no_grad():
            for conv in (model.model.vision_tower.neck.conv2, model.model.multi_modal_projector.conv_upsampler1,
                         model.model.multi_modal_projector.conv_upsampler2):
                centre = conv.weight[:, :, 1, 1].clone()
                conv.weight.zero_()
                conv.weight[:, :, 1, 1] = centre
    model.set_attn_implementation(attn_implementation)
    ip = GotOcr2ImageProcessorPil(size={"height": image_size, "width": image_size}, crop_to_patches=max_patches > 1,
                                  min_patches=1, max_patches=max_patches)
    processor = GotOcr2Processor(image_processor=ip, tokenizer=tokenizer)
    processor.num_image_tokens = per_view
    return model, _with_call_kwargs(processor, num_image_tokens=per_view, crop_to_patches=max_patches > 1)


def tiny_ovis2(seed: int = 0, image_size: int = 32, patch: int = 4, local_vision: bool = False,
               attn_implementation: str = "sdpa", max_patches: int = 1) -> tuple[Any, Any]:
    """Ovis2 shape: an AIMv2-style tower, a 2x2 merge, a visual tokenizer (softmax over a visual vocabulary) whose
    probabilities weight a visual embedding table, a Qwen2 decoder; the real ``Ovis2ImageProcessorPil`` (``max_patches
    > 1`` turns ``crop_to_patches`` on: a global view first, then the covering tile grid) and ``Ovis2Processor``."""
    from transformers import Ovis2Config, Ovis2ForConditionalGeneration, Ovis2Processor
    from transformers.models.ovis2.image_processing_pil_ovis2 import Ovis2ImageProcessorPil

    marks = ["<IMG_ATOM>", "<IMG_START>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>"]
    tokenizer = make_tokenizer(extra_special=marks)
    ids = [tokenizer.convert_tokens_to_ids(t) for t in marks]
    per_view = (image_size // patch // 2) ** 2
    config = Ovis2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=0 if local_vision else 1,
                           num_attention_heads=4, image_size=image_size, patch_size=patch, vocab_size=64,
                           hidden_stride=2),
        text_config=dict(model_type="qwen2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048),
        image_token_id=ids[0], visual_indicator_token_ids=ids[1:], vocab_size=len(tokenizer), hidden_size=64,
    )
    model = _init(Ovis2ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Ovis2ImageProcessorPil(size={"height": image_size, "width": image_size}, crop_to_patches=max_patches > 1,
                                max_patches=max_patches)
    processor = Ovis2Processor(image_processor=ip, tokenizer=tokenizer, image_seq_length=per_view,
                               chat_template=LLAVA_TEMPLATE)
    return model, processor


class HandBuiltProcessor:
    """A stand-in for processors that cannot be constructed without torchvision (Qwen2-VL).

    Calls the real image processor, then writes the prompt with ``<|vision_start|>``, one ``<|image_pad|>`` per merged
    visual token (``prod(image_grid_thw) // merge**2``) and ``<|vision_end|>``, exactly as ``Qwen2VLProcessor`` does.

    Videos (``videos=[frames, ...]``) are laid out as ``Qwen2VLVideoProcessor`` does: every frame resized by the
    image processor's rule, frames grouped by ``temporal_patch_size`` (the last repeated to fill the last group),
    patches flattened as ``(C, temporal, patch, patch)``; the prompt gets one block of
    ``t * h * w // merge**2`` ``<|video_pad|>`` tokens, or with ``timestamps`` (Qwen3-VL) one
    ``<{time:.1f} seconds>`` + block per temporal group (``fps`` frames per second, the group's mean frame time).
    """

    def __init__(self, image_processor: Any, tokenizer: Any, merge_size: int = 2, image_token: str = "<|image_pad|>",
                 start: str = "<|vision_start|>", end: str = "<|vision_end|>", token_types: bool = True,
                 video_token: str = "<|video_pad|>", timestamps: bool = False, fps: float = 2.0) -> None:
        self.token_types = token_types
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.merge_size = merge_size
        self.image_token, self.video_token = image_token, video_token
        self.start, self.end = start, end
        self.timestamps, self.fps = timestamps, fps
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)

    def _video(self, frames: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixel_values_videos [t*h*w, C*tps*p*p], video_grid_thw [1, 3])`` of one video."""
        tps = int(self.image_processor.temporal_patch_size)
        per_frame = []
        grid = None
        for frame in frames:
            out = self.image_processor(images=frame, return_tensors="pt")
            _, gh, gw = (int(v) for v in out["image_grid_thw"][0])
            if grid not in (None, (gh, gw)):
                raise ValueError("the video's frames resize to different grids; give frames of one size")
            grid = (gh, gw)
            patches = out["pixel_values"].reshape(gh * gw, 3, tps, -1)[:, :, 0]  # [N, C, p*p]: one frame's pixels
            per_frame.append(patches)
        per_frame += [per_frame[-1]] * (-len(per_frame) % tps)  # repeat the last frame
        groups = [torch.stack(per_frame[g:g + tps], dim=2) for g in range(0, len(per_frame), tps)]  # [N, C, tps, pp]
        pixels = torch.cat([g.reshape(g.shape[0], -1) for g in groups])
        return pixels, torch.tensor([[len(groups), grid[0], grid[1]]])

    def _video_block(self, thw: torch.Tensor) -> str:
        t, h, w = (int(v) for v in thw)
        per_group = h * w // self.merge_size**2
        if not self.timestamps:
            return self.start + self.video_token * (t * per_group) + self.end
        tps = int(self.image_processor.temporal_patch_size)
        return "".join(f"<{(g * tps + (tps - 1) / 2) / self.fps:.1f} seconds>" + self.start
                       + self.video_token * per_group + self.end for g in range(t))

    def __call__(self, images: Any = None, text: str | None = None, return_tensors: str = "pt", videos: Any = None,
                 **_: Any) -> Any:
        from transformers import BatchFeature

        if images is None and videos is None:
            raise ValueError("HandBuiltProcessor needs an image or a video")
        image_inputs = dict(self.image_processor(images=images, return_tensors="pt")) if images is not None else {}
        blocks = []
        for thw in image_inputs.get("image_grid_thw", []):  # one block per image, in order
            blocks.append((self.image_token, "<image>",
                           self.start + self.image_token * (int(thw.prod()) // self.merge_size**2) + self.end))
        if videos is not None:
            made = [self._video(list(v)) for v in videos]
            image_inputs["pixel_values_videos"] = torch.cat([m[0] for m in made])
            image_inputs["video_grid_thw"] = torch.cat([m[1] for m in made])
            blocks += [(self.video_token, "<video>", self._video_block(m[1][0])) for m in made]
        prompt, cursor = text or "", 0  # text before `cursor` is already expanded
        for token, alias, block in blocks:
            at = -1
            for placeholder in (token, alias):  # like Qwen2VLProcessor: a placeholder becomes its block
                at = prompt.find(placeholder, cursor)
                if at >= 0:
                    prompt = prompt[:at] + block + prompt[at + len(placeholder):]
                    break
            if at < 0:  # no placeholder: blocks go first
                at = cursor
                prompt = prompt[:at] + block + prompt[at:]
            cursor = at + len(block)
        enc = self.tokenizer(prompt, return_tensors="pt")
        if not self.token_types:
            return BatchFeature({**enc, **image_inputs})
        ids = enc["input_ids"]
        # 1 marks image tokens, 2 video tokens, as the real processor
        mm_types = (ids == self.image_token_id).long() + 2 * (ids == self.video_token_id).long()
        return BatchFeature({**enc, "mm_token_type_ids": mm_types, **image_inputs})


def tiny_qwen2_vl(
    seed: int = 0, local_vision: bool = False, attn_implementation: str = "sdpa", version: str = "2"
) -> tuple[Any, Any]:
    """Qwen2-VL (``version='2'``), Qwen2.5-VL (``'2.5'``), Qwen3-VL (``'3'``), Qwen3-VL-MoE (``'3-moe'``), Qwen3.5
    (``'3.5'``, hybrid linear / full attention) or Qwen3.5-MoE (``'3.5-moe'``): patch 4, 2x2 merge, smart resize to
    multiples of 8."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = make_tokenizer(extra_special=["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")}
    text = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
    )
    vision = dict(depth=0 if local_vision else 1, embed_dim=32, hidden_size=64, num_heads=2, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    if version == "2":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        config = Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
        model_cls = Qwen2VLForConditionalGeneration
    elif version in ("3", "3-moe", "3.5", "3.5-moe"):
        import transformers

        # Qwen3-VL towers: learned position embeddings interpolated to the grid, optional deepstack; patch 4 here
        vision = dict(depth=0 if local_vision else 1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4,
                      spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64)
        text.update(head_dim=16, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3],
                                                  "rope_theta": 10000.0, "mrope_interleaved": True})
        if version == "3":
            vision["deepstack_visual_indexes"] = []
            name = "Qwen3VL"
        elif version == "3-moe":
            vision["deepstack_visual_indexes"] = []
            text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
            name = "Qwen3VLMoe"
        else:  # Qwen3.5: hybrid decoder, linear-attention layers between full-attention ones
            text.update(layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
                        linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16,
                        partial_rotary_factor=1.0)
            name = "Qwen3_5"
            if version == "3.5-moe":
                text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                            shared_expert_intermediate_size=32)
                name = "Qwen3_5Moe"
        config = getattr(transformers, f"{name}Config")(text_config=text, vision_config=vision, **tokens)
        model_cls = getattr(transformers, f"{name}ForConditionalGeneration")
    else:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        vision.update(intermediate_size=64, out_hidden_size=64, window_size=16, fullatt_block_indexes=[0])
        vision.pop("embed_dim")
        vision["hidden_size"] = 32
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
        model_cls = Qwen2_5_VLForConditionalGeneration
    model = _init(model_cls(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16, max_pixels=96 * 96)
    return model, HandBuiltProcessor(ip, tokenizer, merge_size=2, timestamps=version.startswith("3"))


def tiny_glm4v(seed: int = 0, local_vision: bool = False, attn_implementation: str = "sdpa", variant: str = "4.1v"
               ) -> tuple[Any, Any]:
    """GLM-4.1V (``variant='4.1v'``, ``Glm4vForConditionalGeneration``), GLM-4.5V (``'4.5v'``, the MoE decoder) or
    GLM-4.6V (``'4.6v'``): Qwen2-VL-style packing (patch 4, 2x2 merge by a strided convolution, smart resize to
    multiples of 8) with ``<|begin_of_image|> <|image|>... <|end_of_image|>``."""
    import transformers
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    names = ("<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|video|>", "<|begin_of_video|>",
             "<|end_of_video|>")
    tokenizer = make_tokenizer(extra_special=list(names))
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in names}
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                pad_token_id=tokenizer.pad_token_id,
                rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 10000.0,
                                 "partial_rotary_factor": 0.5})
    vision = dict(depth=0 if local_vision else 1, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=4,
                  image_size=32, spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64)
    name = {"4.1v": "Glm4v", "4.5v": "Glm4vMoe", "4.6v": "Glm46V"}[variant]
    if variant == "4.5v":
        text.update(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                    first_k_dense_replace=1, n_group=1, topk_group=1)
    config = getattr(transformers, f"{name}Config")(text_config=text, vision_config=vision, image_token_id=ids["<|image|>"],
                         video_token_id=ids["<|video|>"], image_start_token_id=ids["<|begin_of_image|>"],
                         image_end_token_id=ids["<|end_of_image|>"], video_start_token_id=ids["<|begin_of_video|>"],
                         video_end_token_id=ids["<|end_of_video|>"])
    model = _init(getattr(transformers, f"{name}ForConditionalGeneration")(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Glm4vImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2,
                                size={"shortest_edge": 16 * 16, "longest_edge": 96 * 96})
    return model, HandBuiltProcessor(ip, tokenizer, merge_size=2, image_token="<|image|>", start="<|begin_of_image|>",
                                     end="<|end_of_image|>")


def tiny_qwen2_5_omni(seed: int = 0, local_vision: bool = False, attn_implementation: str = "sdpa"
                      ) -> tuple[Any, Any]:
    """Qwen2.5-Omni thinker (``Qwen2_5OmniThinkerForConditionalGeneration``): the Qwen2.5-VL image path (patch 4, 2x2
    merge, smart resize) beside an audio encoder; image prompts ``<|vision_bos|> <|IMAGE|>... <|vision_eos|>`` as its
    processor writes them (that processor needs torchvision for its video part)."""
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    names = ["<|vision_bos|>", "<|vision_eos|>", "<|IMAGE|>", "<|VIDEO|>", "<|AUDIO|>", "<|audio_bos|>",
             "<|audio_eos|>"]
    tokenizer = make_tokenizer(extra_special=names)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in names}
    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(num_mel_bins=8, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16,
                          output_dim=64, n_window=4, max_source_positions=16),
        vision_config=dict(depth=0 if local_vision else 1, hidden_size=32, intermediate_size=64, num_heads=2,
                           patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                           out_hidden_size=64, fullatt_block_indexes=[0]),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}),
        image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"], audio_token_index=ids["<|AUDIO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"],
    )
    model = _init(Qwen2_5OmniThinkerForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16,
                                  max_pixels=96 * 96)
    return model, HandBuiltProcessor(ip, tokenizer, merge_size=2, image_token="<|IMAGE|>", start="<|vision_bos|>",
                                     end="<|vision_eos|>", token_types=False)


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
        vision_config=vision, text_config=_llama_text(len(tokenizer)).to_dict(), scale_factor=scale,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    if smolvlm:
        from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

        config = SmolVLMConfig(**cfg_kwargs)
        model_cls = SmolVLMForConditionalGeneration
    else:
        config = Idefics3Config(**cfg_kwargs)
        model_cls = Idefics3ForConditionalGeneration
    model = _init(model_cls(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Idefics3ImageProcessorPil(size={"longest_edge": tiles_per_side * tile}, max_image_size={"longest_edge": tile})
    template = (
        "{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance> "
        "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    )
    processor = Idefics3Processor(image_processor=ip, tokenizer=tokenizer, image_seq_len=seq_len, chat_template=template)
    return model, processor


def tiny_paligemma(seed: int = 0, image_size: int = 32, patch: int = 8, local_vision: bool = False,
                   attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """PaliGemma shape (SigLIP tower without CLS, Gemma decoder, image prefix with bidirectional attention)."""
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer = make_tokenizer()
    config = PaliGemmaConfig(
        vision_config=_siglip_vision(image_size, patch, layers=1 if local_vision else 2),
        text_config=dict(model_type="gemma", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=64,
    )
    model = _init(PaliGemmaForConditionalGeneration(config), seed)
    if local_vision:  # SigLIP has no pre-encoder norm: drop the encoder layers so features stay per patch
        model.model.vision_tower.encoder.layers = torch.nn.ModuleList()
    model.set_attn_implementation(attn_implementation)
    ip = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    ip.image_seq_length = (image_size // patch) ** 2
    return model, PaliGemmaProcessor(image_processor=ip, tokenizer=tokenizer)


def _pixtral_without_torchvision() -> None:
    """Let ``processing_pixtral`` import where torchvision is missing (CPU build machines): it imports the
    torchvision image processor only for ``get_resize_output_image_size``, which the PIL image processor module
    defines identically. Registers a stand-in module for that import; does nothing where torchvision exists."""
    import importlib.util
    import sys
    import types

    name = "transformers.models.pixtral.image_processing_pixtral"
    if importlib.util.find_spec("torchvision") is not None or name in sys.modules:
        return
    from transformers.models.pixtral import image_processing_pil_pixtral as pil

    stand_in = types.ModuleType(name)
    stand_in.get_resize_output_image_size = pil.get_resize_output_image_size
    sys.modules[name] = stand_in


def tiny_mistral3(seed: int = 0, longest_edge: int = 64, patch: int = 8, merge: int = 2, local_vision: bool = False,
                  attn_implementation: str = "sdpa", llava: bool = False) -> tuple[Any, Any]:
    """Mistral3 / Pixtral shape: the image is resized (aspect kept, longest edge <= ``longest_edge``) to multiples of
    ``patch * merge``; each row of ``[IMG]`` tokens ends with ``[IMG_BREAK]``, the last with ``[IMG_END]``; the
    projector merges ``merge x merge`` patches. ``llava=True`` builds pixtral-12b's shape instead:
    ``LlavaForConditionalGeneration`` with a Pixtral tower and no merge."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, Mistral3Config, Mistral3ForConditionalGeneration
    from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

    _pixtral_without_torchvision()
    from transformers.models.pixtral.processing_pixtral import PixtralProcessor  # the top-level name is gated

    if llava:
        merge = 1
    tokenizer = make_tokenizer(extra_special=["[IMG]", "[IMG_BREAK]", "[IMG_END]"])
    vision = dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1 if local_vision else 2,
                  num_attention_heads=4, image_size=longest_edge, patch_size=patch)
    text = dict(model_type="mistral", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                max_position_embeddings=2048, sliding_window=None)
    image_token = tokenizer.convert_tokens_to_ids("[IMG]")
    layer = -2 if local_vision else -1  # local: the patch embedding (convolution + per-patch norm)
    if llava:
        config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token,
                             vision_feature_layer=layer, vision_feature_select_strategy="full")
        model = _init(LlavaForConditionalGeneration(config), seed)
    else:
        config = Mistral3Config(vision_config=vision, text_config=text, image_token_index=image_token,
                                spatial_merge_size=merge, vision_feature_layer=layer)
        model = _init(Mistral3ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = PixtralImageProcessorPil(size={"longest_edge": longest_edge}, patch_size={"height": patch, "width": patch})
    processor = PixtralProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=patch, spatial_merge_size=merge,
                                 image_token="[IMG]", image_break_token="[IMG_BREAK]", image_end_token="[IMG_END]")
    return model, processor


def tiny_gemma3(seed: int = 0, image_size: int = 32, patch: int = 4, tokens_per_side: int = 4,
                local_vision: bool = False, attn_implementation: str = "sdpa", pan_and_scan: bool = False
                ) -> tuple[Any, Any]:
    """Gemma3 shape: SigLIP tower, the patch grid average-pooled to ``tokens_per_side``^2 soft tokens
    (``mm_tokens_per_image``) between ``<start_of_image>`` / ``<end_of_image>``, bidirectional attention over them,
    a sliding-window Gemma3 decoder. ``pan_and_scan=True``: the processor is called with ``do_pan_and_scan=True``
    and a minimum crop of 8 px (the original image, then crops along the longer side)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil
    from transformers.models.gemma3.processing_gemma3 import Gemma3Processor

    specials = ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    tokenizer = make_tokenizer(extra_special=specials)
    tokenizer.boi_token, tokenizer.eoi_token, tokenizer.image_token = specials
    tokenizer.boi_token_id, eoi, image = (tokenizer.convert_tokens_to_ids(t) for t in specials)
    tokenizer.image_token_id = image
    config = Gemma3Config(
        vision_config=_siglip_vision(image_size, patch, layers=1 if local_vision else 2),
        text_config=dict(model_type="gemma3_text", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                         sliding_window=8, max_position_embeddings=2048),
        mm_tokens_per_image=tokens_per_side ** 2, image_token_index=image, boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=eoi,
    )
    model = _init(Gemma3ForConditionalGeneration(config), seed)
    if local_vision:  # SigLIP has no pre-encoder norm: drop the encoder layers so features stay per patch
        model.model.vision_tower.encoder.layers = torch.nn.ModuleList()
    model.set_attn_implementation(attn_implementation)
    ip = Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(image_processor=ip, tokenizer=tokenizer, image_seq_length=tokens_per_side ** 2)
    if pan_and_scan:
        return model, _with_call_kwargs(processor, do_pan_and_scan=True, pan_and_scan_min_crop_size=8)
    return model, processor


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
    model = _init(MllamaForConditionalGeneration(config), seed)
    if local_vision:
        with torch.no_grad():
            for name, param in model.model.vision_model.named_parameters():
                if ".self_attn.o_proj." in name:
                    param.zero_()
    model.set_attn_implementation(attn_implementation)
    ip = MllamaImageProcessorPil(size={"height": tile, "width": tile}, max_image_tiles=max_tiles)
    processor = MllamaProcessor(image_processor=ip, tokenizer=tokenizer, chat_template=MLLAMA_TEMPLATE)
    return model, processor


class _with_call_kwargs:  # noqa: N801 - used like a function
    """A processor whose every call carries extra keyword arguments (as a user passes ``do_pan_and_scan=True``)."""

    def __init__(self, processor: Any, **kwargs: Any) -> None:
        self._processor, self._kwargs = processor, kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._processor(*args, **{**self._kwargs, **kwargs})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_processor", "_kwargs"):  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self._processor, name)


def tiny_vipllava(seed: int = 0, image_size: int = 32, patch: int = 8, local_vision: bool = False,
                  attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """VipLLaVA shape: LLaVA-1.5 with features of several tower layers concatenated (one, the patch embedding, with
    ``local_vision``). Not in emergence's layout registry: the generic layout proves its grid."""
    from transformers import LlavaProcessor, VipLlavaConfig, VipLlavaForConditionalGeneration
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer = make_tokenizer()
    config = VipLlavaConfig(vision_config=_clip_vision(image_size, patch, local_vision),
                            text_config=_llama_text(len(tokenizer)),
                            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                            vision_feature_layers=[-2] if local_vision else [-2, -1])
    model = _init(VipLlavaForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = LlavaImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                                do_center_crop=True)
    processor = LlavaProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                               num_additional_image_tokens=1)
    return model, processor


def tiny_blip2(seed: int = 0, image_size: int = 32, patch: int = 8, query_tokens: int = 4,
               attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """BLIP-2 shape (ViT tower, Q-Former with ``query_tokens`` learned queries, OPT decoder): its visual tokens are
    learned queries, not patches. Not in emergence's layout registry: the fallback must call it non-spatial."""
    from tokenizers import AddedToken
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tokenizer = make_tokenizer()
    image_token = AddedToken("<image>", normalized=False, special=True)
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                           image_size=image_size, patch_size=patch),
        qformer_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                            encoder_hidden_size=32, vocab_size=100),
        text_config=dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                         num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=128),
        num_query_tokens=query_tokens, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = _init(Blip2ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    processor = Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": image_size, "width": image_size}),
                               tokenizer=tokenizer, num_query_tokens=query_tokens)
    processor.image_token = image_token  # transformers 5 reads the tokenizer's as a plain string
    return model, processor


TINY_FAMILIES = {
    "llava": tiny_llava,
    "llava_next": tiny_llava_next,
    "qwen2_vl": tiny_qwen2_vl,
    "idefics3": tiny_idefics3,
}


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class HandWrittenAttention(torch.nn.Module):
    """Self-attention computed by hand from a Llama attention module's projections, as remote-code classes (and
    transformers' own classes before 4.48) do: rotary embedding, grouped keys, causal mask and softmax in this
    ``forward``, which returns ``(output, weights if output_attentions else None)`` and never calls transformers'
    attention interface. Batches of one without padding (the attention mask is not read)."""

    def __init__(self, original: torch.nn.Module) -> None:
        super().__init__()
        self.layer_idx = original.layer_idx
        self.head_dim = original.head_dim
        self.q_proj, self.k_proj = original.q_proj, original.k_proj
        self.v_proj, self.o_proj = original.v_proj, original.o_proj

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask: Any = None, output_attentions: bool = False,
                **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, q_len, _ = hidden_states.shape
        shape = (batch, q_len, -1, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        cache = find_cache(kwargs)  # `cache=` from transformers 5.24 on, `past_key_values=` before
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        kv_len = k.shape[2]
        causal = torch.ones(q_len, kv_len, dtype=torch.bool, device=q.device).tril(kv_len - q_len)
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")).float(), dim=-1).to(q.dtype)
        out = (weights @ v).transpose(1, 2).reshape(batch, q_len, -1)
        return self.o_proj(out), (weights if output_attentions else None)


def hand_written_attention(decoder: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``layer.self_attn`` of a Llama-style ``decoder`` by :class:`HandWrittenAttention` (same
    weights); returns the decoder."""
    for layer in decoder.layers:
        layer.self_attn = HandWrittenAttention(layer.self_attn)
    return decoder


def _original_llava_class() -> type:
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaForCausalLM

    from .adapters.original_llava import IMAGE_TOKEN_INDEX

    class LlavaLlamaForCausalLM(LlamaForCausalLM):
        """A stand-in built the way the original LLaVA codebase's class is: a ``LlamaForCausalLM`` that holds a CLIP
        tower and an ``mm_projector`` (2-layer MLP with GELU), reads ``config.mm_vision_select_layer`` /
        ``mm_vision_select_feature``, splices each image's features in place of ``IMAGE_TOKEN_INDEX`` (-200)
        (``prepare_inputs_labels_for_multimodal``) and generates from ``inputs_embeds``, returning only the new
        tokens."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.vision_tower = CLIPVisionModel(CLIPVisionConfig(**config.mm_vision_config))
            hidden = config.hidden_size
            self.mm_projector = torch.nn.Sequential(torch.nn.Linear(config.mm_hidden_size, hidden), torch.nn.GELU(),
                                                    torch.nn.Linear(hidden, hidden))

        def get_vision_tower(self) -> Any:
            return self.vision_tower

        def encode_images(self, images: torch.Tensor) -> torch.Tensor:
            out = self.vision_tower(images, output_hidden_states=True)
            features = out.hidden_states[self.config.mm_vision_select_layer]
            if self.config.mm_vision_select_feature == "patch":
                features = features[:, 1:]
            return self.mm_projector(features)

        def prepare_inputs_labels_for_multimodal(self, input_ids: torch.Tensor, images: torch.Tensor
                                                 ) -> torch.Tensor:
            features = self.encode_images(images)
            embed = self.get_input_embeddings()
            rows = []
            for b in range(input_ids.shape[0]):
                ids = input_ids[b]
                at = torch.nonzero(ids == IMAGE_TOKEN_INDEX).flatten().tolist()
                pieces, start = [], 0
                for k, pos in enumerate(at):
                    pieces += [embed(ids[start:pos]), features[k]]
                    start = pos + 1
                pieces.append(embed(ids[start:]))
                rows.append(torch.cat(pieces))
            return torch.stack(rows)

        def forward(self, input_ids: Any = None, images: Any = None, inputs_embeds: Any = None,
                    attention_mask: Any = None, **kwargs: Any) -> Any:
            if inputs_embeds is None and images is not None:
                inputs_embeds = self.prepare_inputs_labels_for_multimodal(input_ids, images)
                input_ids, attention_mask = None, None
            return super().forward(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   **kwargs)

        @torch.no_grad()
        def generate(self, inputs: Any = None, images: Any = None, **kwargs: Any) -> Any:
            if images is None:
                return super().generate(inputs, **kwargs)
            kwargs.pop("attention_mask", None)
            embeds = self.prepare_inputs_labels_for_multimodal(inputs, images)
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            return super().generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)

    return LlavaLlamaForCausalLM


def tiny_original_llava(seed: int = 0, image_size: int = 32, patch: int = 8, image_aspect_ratio: str = "pad",
                        select_feature: str = "patch", hand_written: bool = False, local_vision: bool = False,
                        attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """A stand-in for an original-LLaVA-codebase model (``LlavaLlamaForCausalLM``, see :func:`_original_llava_class`)
    with its processor (:class:`emergence.adapters.original_llava.OriginalLlavaProcessor`: the tokenizer, the CLIP
    image processor, the image settings). ``hand_written=True`` gives its decoder :class:`HandWrittenAttention`, as
    the transformers versions the codebase pins compute attention (capture: ``mechanism="auto"`` picks hooks; load
    with ``attn_implementation="eager"`` semantics: those modules return their weights)."""
    from transformers import LlamaConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from .adapters.original_llava import OriginalLlavaProcessor

    tokenizer = make_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    config.mm_vision_config = _clip_vision(image_size, patch, local=local_vision).to_dict()
    config.mm_hidden_size = 32
    config.mm_vision_select_layer = -2
    config.mm_vision_select_feature = select_feature
    config.image_aspect_ratio = image_aspect_ratio
    config.mm_patch_merge_type = "flat"
    config.architectures = ["LlavaLlamaForCausalLM"]
    model = _init(_original_llava_class()(config), seed)
    model.set_attn_implementation(attn_implementation)
    if hand_written:
        hand_written_attention(model.model)
    ip = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size,
                                                                             "width": image_size})
    template = "USER: <image>\n{prompt} ASSISTANT:"
    return model, OriginalLlavaProcessor.from_model(model, tokenizer, ip, template=template)


def tiny_sam2(seed: int = 0, image_size: int = 128) -> Any:
    """A random-config ``transformers.Sam2Model`` (~0.35M parameters): a 4-stage Hiera backbone, FPN neck, prompt
    encoder and mask decoder of the real classes, with a ``image_size`` x ``image_size`` input (a multiple of 32)."""
    from transformers import Sam2Config, Sam2Model
    from transformers.models.sam2.configuration_sam2 import (
        Sam2HieraDetConfig,
        Sam2MaskDecoderConfig,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    if image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32, got {image_size}")
    s = image_size // 4
    backbone = Sam2HieraDetConfig(
        hidden_size=16, num_attention_heads=1, image_size=[image_size, image_size], blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[16, 32, 64, 128], num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[4, 4, 4, 4], global_attention_blocks=[3], window_positional_embedding_background_size=[4, 4],
    )
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[128, 64, 32, 16],
                              backbone_feature_sizes=[[s, s], [s // 2, s // 2], [s // 4, s // 4]], fpn_hidden_size=32)
    config = Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32, image_size=image_size, patch_size=16),
        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2,
                                                  iou_head_hidden_dim=32),
    )
    torch.manual_seed(seed)
    return Sam2Model(config).eval()


class FixedNounChunks:
    """Stands in for a spaCy English pipeline where none can be installed (offline machines): ``nlp(text)`` returns
    a doc whose ``noun_chunks`` are the given character spans of that text (spans with ``start_char``,
    ``end_char``, ``text``), so that noun-chunk units (``units="phrases"``, ``protocol="pixfoundation"``) run on a
    parse fixed by the caller, e.g. the parse a reference computation was given.

    Args:
        chunks: ``{text: [(start_char, end_char), ...]}``.
    """

    def __init__(self, chunks: dict[str, Sequence[tuple[int, int]]]) -> None:
        self.chunks = {text: [(int(s), int(e)) for s, e in spans] for text, spans in chunks.items()}
        self.meta = {"name": "fixed_noun_chunks"}

    def __call__(self, text: str) -> Any:
        from types import SimpleNamespace

        if text not in self.chunks:
            raise KeyError(f"no fixed parse for {text!r}")
        return SimpleNamespace(noun_chunks=[SimpleNamespace(start_char=s, end_char=e, text=text[s:e])
                                            for s, e in self.chunks[text]])
