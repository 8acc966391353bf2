"""Tiny models of the Qwen-like families (adapters/qwen.py): Qwen2-VL, GLM-4V, Qwen2.5-Omni, Gemma 4."""

from __future__ import annotations

from typing import Any

import torch

from ..processing import without_video_processor
from .common import init_weights, make_tokenizer
from .llava import LLAVA_TEMPLATE

__all__ = ["tiny_gemma4", "HandBuiltProcessor", "tiny_qwen2_vl", "tiny_glm4v", "tiny_qwen2_5_omni"]


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
    model = init_weights(Gemma4ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Gemma4ImageProcessorPil(patch_size=patch, pooling_kernel_size=pool, max_soft_tokens=max_soft_tokens)
    processor = without_video_processor(Gemma4Processor)(
        feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=ip, tokenizer=tokenizer, video_processor=None,
        chat_template=LLAVA_TEMPLATE, image_seq_length=max_soft_tokens,
    )
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
    model = init_weights(model_cls(config), seed)
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
    model = init_weights(getattr(transformers, f"{name}ForConditionalGeneration")(config), seed)
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
    model = init_weights(Qwen2_5OmniThinkerForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16,
                                  max_pixels=96 * 96)
    return model, HandBuiltProcessor(ip, tokenizer, merge_size=2, image_token="<|IMAGE|>", start="<|vision_bos|>",
                                     end="<|vision_eos|>", token_types=False)
