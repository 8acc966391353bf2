"""The adapter registry: which :class:`~emergence.adapters.base.Adapter` serves a model, and the layout of a prompt.

Lookup order for a model (:func:`find_adapter`): its class and every base class in MRO order (a subclass of
``LlavaForConditionalGeneration`` uses the LLaVA adapter), then ``config.architectures``, then adapters that
third-party packages expose under the entry-point groups ``emergence.adapters`` (an :class:`Adapter`) or
``emergence.layouts`` (a layout function), and finally the generic adapter, which places an unregistered model's
visual tokens only where that is provably right.

A layout function alone makes an adapter that keeps every other default (attention modules, prompt building)::

    from emergence.layouts import register_layout, LayoutContext, VisualLayout

    @register_layout("MyVLMForConditionalGeneration")
    def my_layout(ctx: LayoutContext) -> VisualLayout:
        ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import LayoutError, UnsupportedModelError
from ..layouts.base import VisualLayout
from ..layouts.context import LayoutBuilder, LayoutContext, Medium
from .base import SUPPORT_LEVELS, Adapter, LayoutAdapter

__all__ = ["adapter_for", "adapters_in_order", "build_layout", "find_adapter", "find_builder", "find_registered",
           "how_to_register", "register_adapter", "register_layout", "registered_adapters", "registered_layouts",
           "set_generic_adapter", "unregister_adapter"]

_ADAPTERS: dict[str, Adapter] = {}
_ORDER: list[Adapter] = []
_GENERIC: list[Adapter] = []
_ENTRY_POINTS_LOADED = False


def register_adapter(adapter: Adapter, architectures: tuple[str, ...] | list[str] | str | type | None = None,
                     *, overwrite: bool = False) -> Adapter:
    """Register ``adapter`` for its ``architectures`` (or the ones given: class names or classes).

    Raises:
        ValueError: an architecture already has another adapter and ``overwrite`` is false.
        TypeError: ``adapter`` is not an :class:`Adapter` instance.
    """
    if isinstance(adapter, type) and issubclass(adapter, Adapter):
        adapter = adapter()
    if not isinstance(adapter, Adapter):
        raise TypeError(f"register_adapter takes an emergence.adapters.Adapter instance, got {type(adapter).__name__}")
    if architectures is None:
        names = tuple(adapter.architectures)
    elif isinstance(architectures, (str, type)):
        names = (_name(architectures),)
    else:
        names = tuple(_name(a) for a in architectures)
    if not names:
        raise ValueError(f"{adapter!r} names no architecture: set its `architectures` or pass them")
    if adapter.support not in SUPPORT_LEVELS:
        raise ValueError(f"{adapter!r}: support={adapter.support!r} is not one of {SUPPORT_LEVELS}")
    for name in names:
        if name in _ADAPTERS and not overwrite and _ADAPTERS[name] is not adapter:
            raise ValueError(f"an adapter is already registered for {name!r} ({_ADAPTERS[name]!r}); pass "
                             "overwrite=True to replace it")
    for name in names:
        _ADAPTERS[name] = adapter
    if adapter not in _ORDER:
        _ORDER.append(adapter)
    return adapter


def _name(architecture: str | type) -> str:
    return architecture if isinstance(architecture, str) else architecture.__name__


def set_generic_adapter(adapter: Adapter) -> None:
    """The adapter of models no registered adapter serves (the package sets its provable-fallback adapter)."""
    _GENERIC[:] = [adapter]


def registered_adapters() -> dict[str, Adapter]:
    """A copy of the architecture -> adapter mapping (entry points included)."""
    _load_entry_points()
    return dict(_ADAPTERS)


def adapters_in_order() -> list[Adapter]:
    """Every distinct registered adapter in registration order, the generic one last (the support table's rows)."""
    _load_entry_points()
    live = [a for a in _ORDER if any(v is a for v in _ADAPTERS.values())]
    return live + list(_GENERIC)


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="emergence.adapters"):
        obj = ep.load()
        register_adapter(obj() if isinstance(obj, type) else obj, overwrite=True)
    for ep in entry_points(group="emergence.layouts"):
        register_adapter(LayoutAdapter(ep.load(), ep.name), overwrite=True)


def find_adapter(model_or_class: Any, config: Any = None) -> tuple[str, Adapter | None]:
    """The registered adapter of a model (instance or class): ``(matched name, adapter or None)``."""
    _load_entry_points()
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    for klass in cls.__mro__:
        if klass.__name__ in _ADAPTERS:
            return klass.__name__, _ADAPTERS[klass.__name__]
    config = config if config is not None else getattr(model_or_class, "config", None)
    for arch in getattr(config, "architectures", None) or []:
        if arch in _ADAPTERS:
            return arch, _ADAPTERS[arch]
    return cls.__name__, None


def adapter_for(model: Any) -> Adapter:
    """The adapter that serves ``model``: the registered one, else the generic one."""
    _, adapter = find_adapter(model)
    if adapter is not None:
        return adapter
    if not _GENERIC:
        raise UnsupportedModelError(f"no adapter serves {type(model).__name__}")
    return _GENERIC[0]


def how_to_register(name: str) -> str:
    """The help text that refusals of unregistered models end with."""
    return (
        f"Register an adapter for it:\n\n"
        f"    from emergence.adapters import Adapter, register_adapter\n\n"
        f"    class MyAdapter(Adapter):\n"
        f"        family = 'my family'\n"
        f"        architectures = ({name!r},)\n"
        f"        def layout(self, ctx):  # ctx: emergence.layouts.LayoutContext\n"
        f"            ...                 # return an emergence.layouts.VisualLayout\n\n"
        f"    register_adapter(MyAdapter())\n\n"
        f"(or only its layout: emergence.layouts.register_layout({name!r}, fn)). "
        f"Registered architectures: {sorted(_ADAPTERS)}."
    )


def find_registered(name: str) -> Adapter | None:
    """The adapter registered under exactly this architecture name (no MRO walk)."""
    return _ADAPTERS.get(name)


def build_layout(
    model: Any,
    input_ids: torch.Tensor,
    image_size: tuple[int, int] | Sequence[Medium],
    inputs: Mapping[str, Any] | None = None,
    processor: Any = None,
    adapter: Adapter | None = None,
) -> VisualLayout:
    """Build the :class:`VisualLayout` of one prompt: of its one image, or a composite over several images and
    videos (:meth:`VisualLayout.combine`).

    Args:
        model: the model (its class and ``config`` choose the adapter).
        input_ids: ``[S]`` or ``[1, S]`` prompt token ids.
        image_size: ``(height, width)`` of the original image; or one :class:`~emergence.layouts.Medium` per image
            / video of the prompt, in prompt order.
        inputs: processor outputs (``pixel_values``, ``image_sizes``, ``image_grid_thw``...).
        processor: the processor (for image-processor geometry and tokenizer markers).
        adapter: use this adapter instead of the registered one.

    Raises:
        UnsupportedModelError: the model is not a vision-language model, or its adapter refuses it (the message
            says why and, for unregistered models, how to register an adapter).
        LayoutError: the prompt's visual tokens do not match what the config and processor outputs imply.
    """
    ids = torch.as_tensor(input_ids)
    if ids.ndim == 2:
        if ids.shape[0] != 1:
            raise LayoutError(f"build_layout takes one sample; got input_ids of shape {tuple(ids.shape)}")
        ids = ids[0]
    config = getattr(model, "config", None)
    name, found = find_adapter(model, config)
    if adapter is None:
        adapter = found
    if adapter is None:
        if getattr(config, "vision_config", None) is None and not any(
            hasattr(config, k) for k in ("image_token_id", "image_token_index")
        ):
            raise UnsupportedModelError(
                f"{name} is not a vision-language model (its config has no vision_config and no image token): "
                "emergence probes models that read an image, e.g. LlavaForConditionalGeneration."
            )
        adapter = adapter_for(model)
    reason = adapter.refusal(model)
    if reason:
        raise UnsupportedModelError(reason)
    media = _as_media(image_size)
    ctx = LayoutContext(config=config, input_ids=ids, image_size=media[0].size, inputs=inputs or {},
                        processor=processor, model_class=name, media=media)
    if len(media) == 1 and media[0].kind == "image":
        _refuse_several_images(ctx)
        layout = adapter.layout(ctx)
    else:
        layout = adapter.layouts(ctx)
    return adapter.check_positions(layout, ctx)


def _as_media(image_size: Any) -> tuple[Medium, ...]:
    if isinstance(image_size, Medium):
        return (image_size,)
    items = list(image_size)
    if len(items) == 2 and all(isinstance(v, (int, np.integer)) for v in items):
        return (Medium("image", (int(items[0]), int(items[1]))),)
    if not items:
        raise LayoutError("a prompt needs at least one image or video")
    media = tuple(m if isinstance(m, Medium) else Medium("image", tuple(m)) for m in items)
    return media


def _refuse_several_images(ctx: LayoutContext) -> None:
    """Inputs with several images (or a video) given with one image's size: say so by name instead of letting a
    family's layout fail on a symptom (two token blocks, a count that fits no grid)."""
    inputs = ctx.inputs or {}
    if inputs.get("pixel_values_videos") is not None:
        raise LayoutError(f"{ctx.model_class}: the inputs hold a video (pixel_values_videos) but one image was given; "
                          "pass the video's frames as a video (probe.generate(video=frames, ...), or "
                          "build_layout(..., image_size=[Medium('video', (h, w), frames)]))")
    for name in ("image_grid_thw", "image_sizes", "batch_num_images"):  # one entry per image
        value = inputs.get(name)
        if value is None or not hasattr(value, "shape"):
            continue
        count = int(value.reshape(-1)[0]) if name == "batch_num_images" else int(value.reshape(-1, value.shape[-1]).shape[0])
        if count > 1:
            raise LayoutError(f"{ctx.model_class}: the inputs hold {count} images ({name} has {count} entries) but "
                              "one image was given; pass every image (probe.generate(image=[im0, im1, ...]), or "
                              "build_layout(..., image_size=[size0, size1, ...]))")


def unregister_adapter(architecture: str | type) -> Adapter | None:
    """Remove the registration of one architecture; returns the adapter it had (``None`` if none)."""
    return _ADAPTERS.pop(_name(architecture), None)  # _ORDER keeps its place for a re-registration


# ---------------------------------------------------------------------------------------------------- layouts
def register_layout(architecture: str | type, builder: LayoutBuilder | None = None, *, overwrite: bool = False):
    """Register a layout function for a model class (or its name). Usable as a decorator.

    Args:
        architecture: model class or its ``__name__`` (e.g. ``"LlavaForConditionalGeneration"``).
        builder: ``LayoutContext -> VisualLayout``.
        overwrite: replace an existing registration instead of raising ``ValueError``.
    """
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
    return {name: adapter.layout for name, adapter in registered_adapters().items()}


def find_builder(model_or_class: Any, config: Any = None) -> tuple[str, LayoutBuilder | None]:
    """The registered layout function for a model (instance or class): ``(matched name, function or None)``."""
    name, adapter = find_adapter(model_or_class, config)
    return name, (adapter.layout if adapter is not None else None)
