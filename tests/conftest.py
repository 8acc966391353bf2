"""Shared fixtures: tiny random-config models of every supported family (real transformers classes)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from emergence import testing as tiny

warnings.filterwarnings("ignore", message=".*requires torchvision.*")

# name -> factory(**kwargs) -> (model, processor)
FAMILIES = {
    "llava": tiny.tiny_llava,
    "llava_pad": functools.partial(tiny.tiny_llava, do_pad=True),
    "llava_resize": functools.partial(tiny.tiny_llava, crop=False),
    "llava_next": tiny.tiny_llava_next,
    "qwen2_vl": tiny.tiny_qwen2_vl,
    "qwen2_5_vl": functools.partial(tiny.tiny_qwen2_vl, version="2.5"),
    "qwen3_vl": functools.partial(tiny.tiny_qwen2_vl, version="3"),
    "qwen3_vl_moe": functools.partial(tiny.tiny_qwen2_vl, version="3-moe"),
    "qwen3_5": functools.partial(tiny.tiny_qwen2_vl, version="3.5"),
    "qwen3_5_moe": functools.partial(tiny.tiny_qwen2_vl, version="3.5-moe"),
    "idefics3": tiny.tiny_idefics3,
    "smolvlm": functools.partial(tiny.tiny_idefics3, smolvlm=True),
    "smolvlm_uneven_tiles": functools.partial(tiny.tiny_idefics3, smolvlm=True, tile=36, patch=8),
    "smolvlm_real_geometry": functools.partial(tiny.tiny_idefics3, smolvlm=True, tile=384, patch=14, scale=3,
                                               tiles_per_side=4),
    "paligemma_fallback": tiny.tiny_paligemma,
    "mistral3": tiny.tiny_mistral3,
    "llava_pixtral": functools.partial(tiny.tiny_mistral3, llava=True),
    "gemma3_fallback": tiny.tiny_gemma3,
    "gemma3_pan_and_scan": functools.partial(tiny.tiny_gemma3, pan_and_scan=True),
    "gemma4": tiny.tiny_gemma4,
    "vipllava_fallback": tiny.tiny_vipllava,
    "llava_next_video": functools.partial(tiny.tiny_llava_next, video=True),
    "glm4v": tiny.tiny_glm4v,
    "glm4v_moe": functools.partial(tiny.tiny_glm4v, variant="4.5v"),
    "glm46v": functools.partial(tiny.tiny_glm4v, variant="4.6v"),
    "qwen2_5_omni": tiny.tiny_qwen2_5_omni,
    "llava_onevision": tiny.tiny_llava_onevision,
    "llava_onevision_shrunk": functools.partial(tiny.tiny_llava_onevision, max_patches=1),
    "internvl": tiny.tiny_internvl,
    "internvl_one_tile": functools.partial(tiny.tiny_internvl, max_patches=1),
    "aya_vision": tiny.tiny_aya_vision,
    "lfm2_vl": tiny.tiny_lfm2_vl,
    "cohere2_vision": tiny.tiny_cohere2_vision,
    "llama4": tiny.tiny_llama4,
    "llama4_one_tile": functools.partial(tiny.tiny_llama4, max_patches=1),
    "got_ocr2": tiny.tiny_got_ocr2,
    "got_ocr2_tiles": functools.partial(tiny.tiny_got_ocr2, max_patches=6),
    "ovis2": tiny.tiny_ovis2,
    "ovis2_tiles": functools.partial(tiny.tiny_ovis2, max_patches=6),
    "cohere2_vision_one_tile": functools.partial(tiny.tiny_cohere2_vision, max_tiles=1),
    "lfm2_vl_one_view": functools.partial(tiny.tiny_lfm2_vl, max_image_tokens=128),
    "video_llava": tiny.tiny_video_llava,
    "fuyu": tiny.tiny_fuyu,
    "deepseek_vl": tiny.tiny_deepseek_vl,
    "janus": tiny.tiny_janus,
    "deepseek_vl_hybrid": tiny.tiny_deepseek_vl_hybrid,
}

# capture exactness also over decoder variants: grouped-query (1 kv head), sliding window
CAPTURE_CASES = {
    **FAMILIES,
    "llava_qwen2_gqa": functools.partial(tiny.tiny_llava, text_backbone="qwen2"),
    "llava_mistral_sliding": functools.partial(tiny.tiny_llava, text_backbone="mistral"),
    "blip2_learned_queries": tiny.tiny_blip2,  # captured exactly; its layout is not spatial (no geometry tests)
    "kosmos2_latent_queries": tiny.tiny_kosmos2,  # likewise; latents placed by image_embeds_position_mask
}


def noise_image(width: int = 160, height: int = 100, seed: int = 0) -> Image.Image:
    """A non-square RGB noise image (width != height on purpose)."""
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(height, width, 3) * 255).astype(np.uint8))


@pytest.fixture
def image() -> Image.Image:
    return noise_image()


@pytest.fixture(autouse=True)
def _no_capture_left_registered():
    """Every test must leave transformers' attention registry exactly as it found it."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    torch.manual_seed(0)
    yield
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == before, "a capture stayed registered"
