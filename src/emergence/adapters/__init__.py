"""Model adapters: everything model-specific (visual-token layout, captured attention modules, prompt and input
quirks, support level), one per family, in a registry keyed by architecture. See :mod:`emergence.adapters.base`."""

from .base import SUPPORT_LEVELS, Adapter, LayoutAdapter, self_attention_modules
from .registry import (
    adapter_for,
    build_layout,
    find_adapter,
    find_builder,
    register_adapter,
    register_layout,
    registered_adapters,
    registered_layouts,
    unregister_adapter,
)
from . import generic as _generic  # noqa: E402,F401  (the generic adapter and the refusals by rule)
from . import llava as _llava  # noqa: E402,F401
from . import qwen as _qwen  # noqa: E402,F401
from . import idefics as _idefics  # noqa: E402,F401
from . import tiles as _tiles  # noqa: E402,F401
from . import single_transformer as _single  # noqa: E402,F401
from . import mllama as _mllama  # noqa: E402,F401
from . import original_llava as _original_llava  # noqa: E402,F401
from .generic import (  # noqa: E402
    CrossAttentionAdapter,
    EncoderDecoderAdapter,
    GenericAdapter,
    Kosmos2Adapter,
    LearnedQueryAdapter,
    NotYetAdapter,
)
from ..layouts.context import LayoutContext  # noqa: E402

# the families refused or read without geometry come last in the support table
for _adapter in (LearnedQueryAdapter(), Kosmos2Adapter(), CrossAttentionAdapter(), EncoderDecoderAdapter(),
                 NotYetAdapter()):
    register_adapter(_adapter)

__all__ = [
    "SUPPORT_LEVELS",
    "Adapter",
    "CrossAttentionAdapter",
    "EncoderDecoderAdapter",
    "GenericAdapter",
    "Kosmos2Adapter",
    "LayoutAdapter",
    "LayoutContext",
    "LearnedQueryAdapter",
    "NotYetAdapter",
    "adapter_for",
    "build_layout",
    "find_adapter",
    "find_builder",
    "register_adapter",
    "register_layout",
    "registered_adapters",
    "registered_layouts",
    "self_attention_modules",
    "unregister_adapter",
]
