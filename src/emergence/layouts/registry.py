"""Registry of layout builders, keyed by model architecture (class name).

Lookup order for a model: its class and every base class in MRO order (so a subclass of
``LlavaForConditionalGeneration`` uses the LLaVA builder), then ``config.architectures``, then the builders that
third-party packages expose under the entry-point group ``emergence.layouts``, and finally a generic builder for
models whose visual tokens are one contiguous block of the configured image token.

Register your own model::

    from emergence.layouts import register_layout, LayoutContext, VisualLayout

    @register_layout("MyVLMForConditionalGeneration")
    def my_layout(ctx: LayoutContext) -> VisualLayout:
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import LayoutError, UnsupportedModelError
from .base import VisualLayout

__all__ = ["LayoutContext", "LayoutBuilder", "register_layout", "registered_layouts", "build_layout", "find_builder"]


@dataclass
class LayoutContext:
    """Everything a layout builder may read.

    Attributes:
        config: the model's top-level config.
        input_ids: ``[S]`` token ids of ONE sample (the prompt that was fed to the model).
        image_size: ``(height, width)`` of the original image.
        inputs: the processor's outputs (``pixel_values``, ``image_sizes``, ``image_grid_thw``...), batch of one.
        processor: the model's processor or image processor (may be ``None`` for hand-built inputs).
        model_class: name of the model class.
    """

    config: Any
    input_ids: torch.Tensor
    image_size: tuple[int, int]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    processor: Any = None
    model_class: str = ""

    @property
    def text_config(self) -> Any:
        return getattr(self.config, "text_config", None) or self.config

    @property
    def vision_config(self) -> Any:
        vc = getattr(self.config, "vision_config", None)
        if vc is None:
            raise LayoutError(f"{self.model_class} config has no vision_config")
        return vc

    @property
    def image_processor(self) -> Any:
        return getattr(self.processor, "image_processor", self.processor)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", None)

    @property
    def image_token_id(self) -> int:
        """The id of the image placeholder token (config first, then the processor)."""
        for source in (self.config, self.processor, self.tokenizer):
            for name in ("image_token_id", "image_token_index"):
                value = getattr(source, name, None)
                if isinstance(value, int):
                    return value
        raise LayoutError(
            f"cannot find the image token id of {self.model_class}: neither config.image_token_id nor "
            "config.image_token_index nor processor.image_token_id is set"
        )

    def image_positions(self) -> np.ndarray:
        """``[V]`` positions where ``input_ids`` equals the image token id."""
        ids = self.input_ids.detach().cpu().reshape(-1)
        return torch.nonzero(ids == self.image_token_id).flatten().numpy()

    def input(self, name: str) -> Any:
        value = self.inputs.get(name) if self.inputs is not None else None
        if value is None:
            raise LayoutError(f"{self.model_class} layout needs the processor output {name!r}, which is missing")
        return value


LayoutBuilder = Callable[[LayoutContext], VisualLayout]
_BUILDERS: dict[str, LayoutBuilder] = {}
_FALLBACK: list[LayoutBuilder] = []


def register_layout(architecture: str | type, builder: LayoutBuilder | None = None, *, overwrite: bool = False):
    """Register ``builder`` for a model class (or its name). Usable as a decorator.

    Args:
        architecture: model class or its ``__name__`` (e.g. ``"LlavaForConditionalGeneration"``).
        builder: ``LayoutContext -> VisualLayout``.
        overwrite: replace an existing registration instead of raising.
    """
    name = architecture if isinstance(architecture, str) else architecture.__name__

    def _register(fn: LayoutBuilder) -> LayoutBuilder:
        if name in _BUILDERS and not overwrite and _BUILDERS[name] is not fn:
            raise ValueError(f"a layout is already registered for {name!r}; pass overwrite=True to replace it")
        _BUILDERS[name] = fn
        return fn

    return _register(builder) if builder is not None else _register


def registered_layouts() -> dict[str, LayoutBuilder]:
    """A copy of the architecture -> builder mapping (entry points included)."""
    _load_entry_points()
    return dict(_BUILDERS)


_ENTRY_POINTS_LOADED = False


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="emergence.layouts"):
        register_layout(ep.name, ep.load(), overwrite=True)


def _how_to_register(name: str) -> str:
    return (
        f"Register a layout for it:\n\n"
        f"    from emergence.layouts import register_layout\n\n"
        f"    @register_layout({name!r})\n"
        f"    def my_layout(ctx):  # ctx: emergence.layouts.LayoutContext\n"
        f"        ...              # return an emergence.layouts.VisualLayout\n\n"
        f"Supported architectures: {sorted(_BUILDERS)}."
    )


def find_builder(model_or_class: Any, config: Any = None) -> tuple[str, LayoutBuilder | None]:
    """The registered builder for a model (instance or class): ``(matched name, builder or None)``."""
    _load_entry_points()
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    for klass in cls.__mro__:
        if klass.__name__ in _BUILDERS:
            return klass.__name__, _BUILDERS[klass.__name__]
    for arch in getattr(config, "architectures", None) or []:
        if arch in _BUILDERS:
            return arch, _BUILDERS[arch]
    return cls.__name__, None


def build_layout(
    model: Any,
    input_ids: torch.Tensor,
    image_size: tuple[int, int],
    inputs: Mapping[str, Any] | None = None,
    processor: Any = None,
) -> VisualLayout:
    """Build the :class:`VisualLayout` of one image in one prompt.

    Args:
        model: the model (or its class; then ``inputs`` must hold what the builder needs and config comes from
            ``model.config``).
        input_ids: ``[S]`` or ``[1, S]`` prompt token ids.
        image_size: ``(height, width)`` of the original image.
        inputs: processor outputs (``pixel_values``, ``image_sizes``, ``image_grid_thw``...).
        processor: the processor (for image-processor geometry and tokenizer markers).

    Raises:
        UnsupportedModelError: no builder fits (the message shows how to register one).
        LayoutError: the builder's token count does not match the prompt's visual tokens.
    """
    ids = torch.as_tensor(input_ids)
    if ids.ndim == 2:
        if ids.shape[0] != 1:
            raise LayoutError(f"build_layout takes one sample; got input_ids of shape {tuple(ids.shape)}")
        ids = ids[0]
    config = getattr(model, "config", None)
    name, builder = find_builder(model, config)
    ctx = LayoutContext(
        config=config, input_ids=ids, image_size=tuple(image_size), inputs=inputs or {}, processor=processor,
        model_class=name,
    )
    if builder is None:
        if getattr(config, "vision_config", None) is None and not any(
            hasattr(config, k) for k in ("image_token_id", "image_token_index")
        ):
            raise UnsupportedModelError(
                f"{name} is not a vision-language model (its config has no vision_config and no image token): "
                "emergence probes models that read an image, e.g. LlavaForConditionalGeneration."
            )
        for fallback in _FALLBACK:
            layout = fallback(ctx)
            if layout is not None:
                return layout
        raise UnsupportedModelError(f"No visual-token layout is registered for {name}. " + _how_to_register(name))
    return builder(ctx)


def register_fallback(builder: Callable[[LayoutContext], VisualLayout | None]) -> None:
    """Add a builder tried for unregistered models; it returns ``None`` when it does not apply."""
    _FALLBACK.append(builder)
