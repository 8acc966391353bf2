"""Tiny models of the tiled families (adapters/tiles.py): InternVL, Aya Vision, LFM2-VL, Cohere2 Vision, Llama 4, GOT-OCR2, Ovis2."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..processing import without_video_processor
from .common import (
    cohere2_text,
    init_weights,
    llama_text,
    make_tokenizer,
    siglip_vision,
    source_functions,
    with_call_kwargs,
)
from .llava import LLAVA_TEMPLATE

__all__ = [
    "tiny_internvl", "tiny_aya_vision", "tiny_lfm2_vl", "tiny_cohere2_vision", "tiny_llama4", "tiny_got_ocr2",
    "tiny_ovis2",
]


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
        text_config=llama_text(len(tokenizer)).to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=per_tile,
        downsample_ratio=0.5,
        vision_feature_layer=-2 if local_vision else -1,  # -2 with one layer: the patch-embedding output
    )
    model = init_weights(InternVLForConditionalGeneration(config), seed)
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
        vision_config=siglip_vision(tile, patch, layers=1 if local_vision else 2),
        text_config=cohere2_text(tokenizer, sliding_window=4096),  # Aya Vision's decoder (its window > any prompt)
        image_token_index=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"),
        downsample_factor=2,
        vision_feature_layer=-2 if local_vision else -1,  # -2 with one layer: the patch-embedding output
    )
    model = init_weights(AyaVisionForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, crop_to_patches=True, min_patches=1,
                                  max_patches=max_patches)
    processor = AyaVisionProcessor(image_processor=ip, tokenizer=tokenizer, patch_size=patch, img_size=tile,
                                   downsample_factor=2, chat_template=LLAVA_TEMPLATE)
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
    model = init_weights(Lfm2VlForConditionalGeneration(config), seed)
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
        vision_config=siglip_vision(tile, patch, layers=0 if local_vision else 1),
        text_config=cohere2_text(tokenizer, sliding_window=16),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), downsample_factor=2,
        alignment_intermediate_size=64,
    )
    model = init_weights(Cohere2VisionForConditionalGeneration(config), seed)
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

        from ..adapters.tiles import cohere2_tile_grid

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
    model = init_weights(Llama4ForConditionalGeneration(config), seed)
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
    model = init_weights(GotOcr2ForConditionalGeneration(config), seed)
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
    return model, with_call_kwargs(processor, num_image_tokens=per_view, crop_to_patches=max_patches > 1)


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
    model = init_weights(Ovis2ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Ovis2ImageProcessorPil(size={"height": image_size, "width": image_size}, crop_to_patches=max_patches > 1,
                                max_patches=max_patches)
    processor = Ovis2Processor(image_processor=ip, tokenizer=tokenizer, image_seq_length=per_view,
                               chat_template=LLAVA_TEMPLATE)
    return model, processor
