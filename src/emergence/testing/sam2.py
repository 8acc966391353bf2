"""A tiny random SAM2 (transformers' Sam2Model) and its processor."""

from __future__ import annotations

from typing import Any

import torch


__all__ = ["tiny_sam2"]


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
