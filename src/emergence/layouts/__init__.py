"""Visual-token layouts: which sequence positions are visual tokens and which original-image pixels each covers."""

from . import families as _families  # noqa: F401  (registers the built-in builders)
from .base import FuseRule, View, VisualLayout, working_size
from .geometry import Canvas, simple_canvas
from .registry import (
    LayoutBuilder,
    LayoutContext,
    build_layout,
    find_builder,
    register_fallback,
    register_layout,
    registered_layouts,
)

__all__ = [
    "Canvas",
    "FuseRule",
    "LayoutBuilder",
    "LayoutContext",
    "View",
    "VisualLayout",
    "build_layout",
    "find_builder",
    "register_fallback",
    "register_layout",
    "registered_layouts",
    "simple_canvas",
    "working_size",
]
