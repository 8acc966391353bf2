"""The four families the core tests run on."""

from __future__ import annotations



from .idefics import tiny_idefics3
from .llava import tiny_llava, tiny_llava_next
from .qwen import tiny_qwen2_vl

__all__ = ["TINY_FAMILIES"]


TINY_FAMILIES = {
    "llava": tiny_llava,
    "llava_next": tiny_llava_next,
    "qwen2_vl": tiny_qwen2_vl,
    "idefics3": tiny_idefics3,
}
