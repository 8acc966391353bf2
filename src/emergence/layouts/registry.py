"""Layout functions by model architecture: a thin front over :mod:`emergence.adapters`.

A layout function is the part of an adapter that places visual tokens. Registering one makes an adapter that keeps
every other default (attention modules, prompt building)::

    from emergence.layouts import register_layout, LayoutContext, VisualLayout

    @register_layout("MyVLMForConditionalGeneration")
    def my_layout(ctx: LayoutContext) -> VisualLayout:
        ...

Packages can expose such functions under the entry-point group ``emergence.layouts``, or whole adapters under
``emergence.adapters``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .base import VisualLayout
from .context import LayoutBuilder, LayoutContext, Medium

__all__ = ["LayoutBuilder", "LayoutContext", "build_layout", "find_builder", "register_layout", "registered_layouts"]


def register_layout(architecture: str | type, builder: LayoutBuilder | None = None, *, overwrite: bool = False):
    """Register a layout function for a model class (or its name). Usable as a decorator.

    Args:
        architecture: model class or its ``__name__`` (e.g. ``"LlavaForConditionalGeneration"``).
        builder: ``LayoutContext -> VisualLayout``.
        overwrite: replace an existing registration instead of raising ``ValueError``.
    """
    from ..adapters.base import LayoutAdapter, find_registered, register_adapter

    name = architecture if isinstance(architecture, str) else architecture.__name__

    def _register(fn: LayoutBuilder) -> LayoutBuilder:
        current = find_registered(name)
        if isinstance(current, LayoutAdapter) and current.builder is fn:
            return fn
        register_adapter(LayoutAdapter(fn, name), overwrite=overwrite)
        return fn

    return _register(builder) if builder is not None else _register


def registered_layouts() -> dict[str, LayoutBuilder]:
    """Architecture -> layout function of every registered adapter."""
    from ..adapters.base import registered_adapters

    return {name: adapter.layout for name, adapter in registered_adapters().items()}


def find_builder(model_or_class: Any, config: Any = None) -> tuple[str, LayoutBuilder | None]:
    """The registered layout function for a model (instance or class): ``(matched name, function or None)``."""
    from ..adapters.base import find_adapter

    name, adapter = find_adapter(model_or_class, config)
    return name, (adapter.layout if adapter is not None else None)


def build_layout(
    model: Any,
    input_ids: torch.Tensor,
    image_size: tuple[int, int] | Sequence[Medium],
    inputs: Mapping[str, Any] | None = None,
    processor: Any = None,
) -> VisualLayout:
    """Build the :class:`VisualLayout` of one prompt (one image, or one :class:`Medium` per image / video) with the
    model's adapter (:func:`emergence.adapters.build_layout`)."""
    from ..adapters import build_layout as _build

    return _build(model, input_ids, image_size, inputs, processor)
