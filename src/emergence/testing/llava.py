"""Tiny models of the LLaVA-like families (adapters/llava.py): LLaVA, LLaVA-NeXT, OneVision, Video-LLaVA, VipLLaVA, DeepSeek-VL, Janus, PaliGemma, Mistral3, Gemma3."""

from __future__ import annotations

from typing import Any

import torch

from ..processing import without_video_processor
from .common import clip_vision, init_weights, llama_text, make_tokenizer, siglip_vision, with_call_kwargs

__all__ = [
    "LLAVA_TEMPLATE", "tiny_llava", "tiny_llava_next", "FrameVideoProcessor", "tiny_llava_onevision",
    "tiny_video_llava", "DummyPrefixTokenizer", "tiny_deepseek_vl", "tiny_deepseek_vl_hybrid", "tiny_janus",
    "tiny_paligemma", "tiny_mistral3", "tiny_gemma3", "tiny_vipllava",
]


LLAVA_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'video' %}<video> {% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %} "
    "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %} </s> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


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
        text = llama_text(len(tokenizer), layers=text_layers)
    elif text_backbone == "qwen2":
        from transformers import Qwen2Config

        text = Qwen2Config(num_key_value_heads=1, **common)
    elif text_backbone == "mistral":  # sliding window 12: decode steps see fewer and fewer image keys
        from transformers import MistralConfig

        text = MistralConfig(num_key_value_heads=2, sliding_window=12, **common)
    else:
        raise ValueError(f"text_backbone={text_backbone!r} is not one of ('llama', 'qwen2', 'mistral')")
    config = LlavaConfig(
        vision_config=clip_vision(image_size, patch, local_vision),
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,  # with a 1-layer tower (local_vision) this is the patch-embedding output
        vision_feature_select_strategy="default",
    )
    config._attn_implementation = attn_implementation
    model = init_weights(LlavaForConditionalGeneration(config), seed)
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
        vision_config=clip_vision(tile, patch, local_vision),
        text_config=llama_text(len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,  # with a 1-layer tower (local_vision) this is the patch-embedding output
        vision_feature_select_strategy="default",
        **extra,
    )
    model = init_weights(model_cls(config), seed)
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
        vision_config=siglip_vision(tile, patch, layers=1 if local_vision else 2),
        text_config=llama_text(len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_layer=-2,  # with a 1-layer tower (local_vision) this is the patch-embedding output
        vision_feature_select_strategy="full",
        vision_aspect_ratio=aspect,
    )
    model = init_weights(LlavaOnevisionForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = LlavaOnevisionImageProcessorPil(size={"height": tile, "width": tile}, image_grid_pinpoints=pinpoints)
    processor = without_video_processor(LlavaOnevisionProcessor)(
        image_processor=ip, tokenizer=tokenizer, video_processor=None, num_image_tokens=(tile // patch) ** 2,
        vision_feature_select_strategy="full", vision_aspect_ratio=aspect, chat_template=LLAVA_TEMPLATE,
        video_token="<video>",
    )
    processor.video_processor = FrameVideoProcessor(tile, crop=False)  # LlavaOnevisionVideoProcessor needs torchvision
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
        vision_config=clip_vision(image_size, patch, local_vision),
        text_config=llama_text(len(tokenizer)),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_layer=-2,  # with a 1-layer tower (local_vision) this is the patch-embedding output
        vision_feature_select_strategy="default",
    )
    model = init_weights(VideoLlavaForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = VideoLlavaImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    processor = without_video_processor(VideoLlavaProcessor)(
        image_processor=ip, video_processor=None, tokenizer=tokenizer, patch_size=patch,
        vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE, num_additional_image_tokens=1,
    )
    return model, processor


class DummyPrefixTokenizer:
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
        vision_config=siglip_vision(image_size, patch, layers=0 if local_vision else 1),
        text_config=llama_text(len(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = init_weights(DeepseekVLForConditionalGeneration(config), seed)
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
        vision_config=siglip_vision(image_size, patch, layers=0 if local_vision else 1),
        high_res_vision_config=dict(hidden_size=32, output_channels=16, num_hidden_layers=1, num_attention_heads=4,
                                    image_size=2 * image_size, patch_size=2 * patch, mlp_dim=64,
                                    global_attn_indexes=[0]),
        text_config=llama_text(len(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = init_weights(DeepseekVLHybridForConditionalGeneration(config), seed)
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
        text_config=llama_text(len(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    model = init_weights(JanusForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = JanusImageProcessorPil(size={"height": image_size, "width": image_size}, min_size=patch)
    processor = JanusProcessor(image_processor=ip, tokenizer=tokenizer, num_image_tokens=g * g,
                               chat_template=LLAVA_TEMPLATE, use_default_system_prompt=False)
    return model, processor


def tiny_paligemma(seed: int = 0, image_size: int = 32, patch: int = 8, local_vision: bool = False,
                   attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """PaliGemma shape (SigLIP tower without CLS, Gemma decoder, image prefix with bidirectional attention)."""
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer = make_tokenizer()
    config = PaliGemmaConfig(
        vision_config=siglip_vision(image_size, patch, layers=1 if local_vision else 2),
        text_config=dict(model_type="gemma", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=64,
    )
    model = init_weights(PaliGemmaForConditionalGeneration(config), seed)
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
        model = init_weights(LlavaForConditionalGeneration(config), seed)
    else:
        config = Mistral3Config(vision_config=vision, text_config=text, image_token_index=image_token,
                                spatial_merge_size=merge, vision_feature_layer=layer)
        model = init_weights(Mistral3ForConditionalGeneration(config), seed)
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
        vision_config=siglip_vision(image_size, patch, layers=1 if local_vision else 2),
        text_config=dict(model_type="gemma3_text", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                         sliding_window=8, max_position_embeddings=2048),
        mm_tokens_per_image=tokens_per_side ** 2, image_token_index=image, boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=eoi,
    )
    model = init_weights(Gemma3ForConditionalGeneration(config), seed)
    if local_vision:  # SigLIP has no pre-encoder norm: drop the encoder layers so features stay per patch
        model.model.vision_tower.encoder.layers = torch.nn.ModuleList()
    model.set_attn_implementation(attn_implementation)
    ip = Gemma3ImageProcessorPil(size={"height": image_size, "width": image_size})
    processor = Gemma3Processor(image_processor=ip, tokenizer=tokenizer, image_seq_length=tokens_per_side ** 2)
    if pan_and_scan:
        return model, with_call_kwargs(processor, do_pan_and_scan=True, pan_and_scan_min_crop_size=8)
    return model, processor


def tiny_vipllava(seed: int = 0, image_size: int = 32, patch: int = 8, local_vision: bool = False,
                  attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """VipLLaVA shape: LLaVA-1.5 with features of several tower layers concatenated (one, the patch embedding, with
    ``local_vision``). Not in emergence's layout registry: the generic layout proves its grid."""
    from transformers import LlavaProcessor, VipLlavaConfig, VipLlavaForConditionalGeneration
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer = make_tokenizer()
    config = VipLlavaConfig(vision_config=clip_vision(image_size, patch, local_vision),
                            text_config=llama_text(len(tokenizer)),
                            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                            vision_feature_layers=[-2] if local_vision else [-2, -1])
    model = init_weights(VipLlavaForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = LlavaImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
                                do_center_crop=True)
    processor = LlavaProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=patch,
                               vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                               num_additional_image_tokens=1)
    return model, processor
