"""Tiny random-config models of the real transformers classes, with real tokenizers and processors.

Used by the test suite, the capture benchmark and the offline demo: no download, seconds on a CPU. Every factory
returns ``(model, processor)`` where ``processor`` is the real HF processor class of the family, except Qwen2-VL
whose ``Qwen2VLProcessor`` needs torchvision (its video processor): there ``processor`` is a
:class:`HandBuiltProcessor` that expands ``<|image_pad|>`` from ``image_grid_thw`` like the real one.

``local_vision=True`` makes the vision features of a visual token depend only on the pixels of its own patch (the
vision tower's embedding output is used, or the tower has no layers), so tests can tell exactly which tokens see a
marker drawn in the image.

One module per adapter file (``testing/llava.py`` builds the families of ``adapters/llava.py``, ...); every builder
stays importable from here.
"""

from __future__ import annotations

from .common import (
    IMAGE_BACKENDS,
    WORDS,
    clip_vision,
    cohere2_text,
    init_weights,
    llama_text,
    make_tokenizer,
    siglip_vision,
    source_functions,
    with_call_kwargs,
    with_image_backend,
)
from .llava import (
    DummyPrefixTokenizer,
    FrameVideoProcessor,
    LLAVA_TEMPLATE,
    tiny_deepseek_vl,
    tiny_deepseek_vl_hybrid,
    tiny_gemma3,
    tiny_janus,
    tiny_llava,
    tiny_llava_next,
    tiny_llava_onevision,
    tiny_mistral3,
    tiny_paligemma,
    tiny_video_llava,
    tiny_vipllava,
)
from .tiles import (
    tiny_aya_vision,
    tiny_cohere2_vision,
    tiny_got_ocr2,
    tiny_internvl,
    tiny_lfm2_vl,
    tiny_llama4,
    tiny_ovis2,
)
from .qwen import (
    HandBuiltProcessor,
    tiny_gemma4,
    tiny_glm4v,
    tiny_qwen2_5_omni,
    tiny_qwen2_vl,
)
from .idefics import (
    tiny_idefics3,
)
from .mllama import (
    MLLAMA_TEMPLATE,
    tiny_mllama,
)
from .single_transformer import (
    tiny_fuyu,
)
from .generic import (
    tiny_blip2,
    tiny_kosmos2,
    tiny_perception_lm,
)
from .original_llava import (
    HandWrittenAttention,
    hand_written_attention,
    tiny_original_llava,
)
from .sam2 import (
    tiny_sam2,
)
from .text import (
    FixedNounChunks,
)
from .families import (
    TINY_FAMILIES,
)

__all__ = [
    "DummyPrefixTokenizer",
    "FixedNounChunks",
    "FrameVideoProcessor",
    "HandBuiltProcessor",
    "HandWrittenAttention",
    "IMAGE_BACKENDS",
    "LLAVA_TEMPLATE",
    "MLLAMA_TEMPLATE",
    "TINY_FAMILIES",
    "WORDS",
    "clip_vision",
    "cohere2_text",
    "hand_written_attention",
    "init_weights",
    "llama_text",
    "make_tokenizer",
    "siglip_vision",
    "source_functions",
    "tiny_aya_vision",
    "tiny_blip2",
    "tiny_cohere2_vision",
    "tiny_deepseek_vl",
    "tiny_deepseek_vl_hybrid",
    "tiny_fuyu",
    "tiny_gemma3",
    "tiny_gemma4",
    "tiny_glm4v",
    "tiny_got_ocr2",
    "tiny_idefics3",
    "tiny_internvl",
    "tiny_janus",
    "tiny_kosmos2",
    "tiny_lfm2_vl",
    "tiny_llama4",
    "tiny_llava",
    "tiny_llava_next",
    "tiny_llava_onevision",
    "tiny_mistral3",
    "tiny_mllama",
    "tiny_original_llava",
    "tiny_ovis2",
    "tiny_paligemma",
    "tiny_perception_lm",
    "tiny_qwen2_5_omni",
    "tiny_qwen2_vl",
    "tiny_sam2",
    "tiny_video_llava",
    "tiny_vipllava",
    "with_call_kwargs",
    "with_image_backend",
]
