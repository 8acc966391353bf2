"""Visual-token layouts: which sequence positions are visual tokens and which original-image pixels each covers.

The layouts of model families live in their adapters (:mod:`emergence.adapters`); this package holds the layout
types, the geometry helpers and a front for registering a layout function alone.
"""

from .base import FuseRule, View, VisualLayout, working_size
from .context import LayoutBuilder, LayoutContext, Medium
from .geometry import Canvas, simple_canvas
from .registry import build_layout, find_builder, register_layout, registered_layouts

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
