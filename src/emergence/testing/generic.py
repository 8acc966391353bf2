"""Tiny models of families the generic adapter captures without geometry (adapters/generic.py): Kosmos-2, BLIP-2, PerceptionLM."""

from __future__ import annotations

from typing import Any

import torch

from .common import init_weights, llama_text, make_tokenizer

__all__ = ["tiny_kosmos2", "tiny_perception_lm", "tiny_blip2"]


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
    model = init_weights(Kosmos2ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    ip = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return model, _Kosmos2LikeProcessor(ip, tokenizer, latents)


class _Kosmos2LikeProcessor:
    """Inputs laid out as ``Kosmos2Processor`` lays them out, over the test vocabulary."""

    def __init__(self, image_processor: Any, tokenizer: Any, latents: int) -> None:
        self.image_processor, self.tokenizer, self.latents = image_processor, tokenizer, latents

    def __call__(self, images: Any = None, text: str | None = None, return_tensors: str = "pt", **_: Any) -> Any:
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
    config = PerceptionLMConfig(vision_config=vision, text_config=llama_text(len(tokenizer)),
                                image_token_id=tokenizer.image_token_id, video_token_id=tokenizer.video_token_id,
                                projector_pooling_ratio=1)
    model = init_weights(PerceptionLMForConditionalGeneration(config), seed)
    ip = PerceptionLMImageProcessor(tile_size=tile, max_num_tiles=1, vision_input_type="thumb+tile")
    processor = PerceptionLMProcessor(image_processor=ip, video_processor=PerceptionLMVideoProcessor(),
                                      tokenizer=tokenizer, patch_size=patch, pooling_ratio=1)
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
    model = init_weights(Blip2ForConditionalGeneration(config), seed)
    model.set_attn_implementation(attn_implementation)
    processor = Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": image_size, "width": image_size}),
                               tokenizer=tokenizer, num_query_tokens=query_tokens)
    processor.image_token = image_token  # transformers 5 reads the tokenizer's as a plain string
    return model, processor
