"""Visual-token layouts: which sequence positions are visual tokens and which original-image pixels each covers.

The layouts of model families live in their adapters (:mod:`emergence.adapters`); this package holds the layout
types and the geometry helpers. ``register_layout``, ``build_layout``, ``find_builder`` and ``registered_layouts``
live in :mod:`emergence.adapters.registry`; they stay importable from here (loaded on first use).
"""

from typing import Any

from .base import FuseRule, View, VisualLayout, working_size
from .context import LayoutBuilder, LayoutContext, Medium
from .geometry import Canvas, simple_canvas

_REGISTRY_NAMES = ("build_layout", "find_builder", "register_layout", "registered_layouts")


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:  # the registry sits above the layout types; load it only when asked
        from ..adapters import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'emergence.layouts' has no attribute {name!r}")

__all__ = [
    "Canvas",
    "FuseRule",
    "LayoutBuilder",
    "LayoutContext",
    "Medium",
    "View",
    "VisualLayout",
    "build_layout",
    "find_builder",
    "register_layout",
    "registered_layouts",
    "simple_canvas",
    "working_size",
]
