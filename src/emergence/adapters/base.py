"""The :class:`Adapter` interface (the registry that finds one for a model: :mod:`emergence.adapters.registry`).

An adapter owns everything model-specific about one model family:

- the visual-token layout (positions, views, original-image boxes; :meth:`Adapter.layout`),
- which attention modules are the language model's self-attention (:meth:`Adapter.attention_modules`),
- how a user prompt becomes the processor's text (:meth:`Adapter.build_prompt`) and which processor outputs carry
  the image (:attr:`Adapter.pixel_inputs`),
- how per-token inputs are extended over the answer for one full forward (:meth:`Adapter.extend_inputs`),
- whether the family is supported at all (:meth:`Adapter.refusal`), and what the support table says about it.

The capture engine and :class:`~emergence.Probe` ask the adapter and hold no family knowledge.

Which adapter serves a model, and in which order it is looked up: :mod:`emergence.adapters.registry`.

Register your own family::

    from emergence.adapters import Adapter, register_adapter

    class MyVLMAdapter(Adapter):
        family = "My VLM"
        architectures = ("MyVLMForConditionalGeneration",)

        def layout(self, ctx):      # ctx: emergence.layouts.LayoutContext
            ...                     # return an emergence.layouts.VisualLayout

    register_adapter(MyVLMAdapter())
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import LayoutError, UnsupportedModelError
from ..layouts.base import VisualLayout
from ..layouts.context import LayoutContext

__all__ = ["Adapter", "LayoutAdapter", "SUPPORT_LEVELS", "scoped_forward_hook", "self_attention_modules",
           "split_counts"]

#: what the support table may say about a family
SUPPORT_LEVELS = ("exact", "attention only", "refused")


def self_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of ``model``'s language model, ordered by ``layer_idx`` (the default rule).

    The language model is found with ``model.get_decoder()`` (transformers' own lookup); its attention modules are the
    submodules that carry an integer ``layer_idx`` and whose class name ends in ``Attention`` (``...CrossAttention``
    excluded). Vision-tower attention is not included.

    Raises:
        UnsupportedModelError: no language-model attention module was found.
    """
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    found: dict[int, nn.Module] = {}
    for module in decoder.modules():
        name = type(module).__name__
        if name.endswith("Attention") and isinstance(getattr(module, "layer_idx", None), int):
            if "Cross" in name:
                continue  # cross-attention layers read the image differently; not captured here
            found.setdefault(module.layer_idx, module)
    if not found:
        raise UnsupportedModelError(
            f"No language-model self-attention modules were found in {type(model).__name__} (looked for submodules "
            f"of model.get_decoder() -> {type(decoder).__name__} whose class name ends in 'Attention' and that have "
            "an integer `layer_idx`). Register an adapter whose attention_modules(model) returns them "
            "(emergence.adapters.register_adapter)."
        )
    return [found[i] for i in sorted(found)]


class Adapter:
    """Everything model-specific about one model family. Subclass it and override what differs.

    Class attributes (the support table, ``emergence probes`` and the README are generated from them):
        family: the family as users know it, e.g. ``"LLaVA-NeXT"``.
        architectures: model class names it serves (looked up along the model's MRO, then ``config.architectures``).
        support: ``"exact"`` (heatmaps in the right place), ``"attention only"`` (captured; tokens not spatial) or
            ``"refused"`` (a clear error saying why).
        summary: how the visual tokens are laid out, or why the family is refused.
        tested: the :mod:`emergence.testing` builder the test suite runs the family on (``None`` for refusals).
        pixel_inputs: processor outputs that carry the image (one of them must be present).
    """

    family: ClassVar[str] = ""
    architectures: ClassVar[tuple[str, ...]] = ()
    support: ClassVar[str] = "exact"
    summary: ClassVar[str] = ""
    tested: ClassVar[str | None] = None
    pixel_inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    #: whether :meth:`split_images` places several images of one prompt
    multi_image: ClassVar[bool] = False
    #: whether :meth:`video_layouts` places video frames
    video: ClassVar[bool] = False
    #: the image enters through cross-attention layers (Mllama): :meth:`attention_modules` returns those layers,
    #: and a layout's ``positions`` index their keys (the vision tokens), not the text sequence
    cross_attention: ClassVar[bool] = False
    #: how the capture reads attention: ``"interface"`` (transformers' attention functions), ``"hooks"`` (forward
    #: hooks on the attention modules, for modules that compute attention by hand; see emergence.capture) or
    #: ``"auto"`` (``"hooks"`` when a captured module's forward never calls the attention interface)
    mechanism: ClassVar[str] = "interface"
    #: whether one forward over prompt + answer (:meth:`extend_inputs`) reproduces the generation's positions; it
    #: serves convention="self", gradient maps and the causal helpers' teacher-forced effects
    teacher_forced: ClassVar[bool] = True
    #: whether the model's own batched ``generate`` over left-padded prompts gives each item what it gives alone
    #: (:meth:`emergence.Probe.generate_batch`; checked per family by tests/test_batch.py)
    batched: ClassVar[bool] = False

    # ------------------------------------------------------------------ support
    def refusal(self, model: Any) -> str | None:
        """Why this model cannot be probed (``None`` when it can). :class:`~emergence.Probe` raises it at once."""
        return None

    # ------------------------------------------------------------------ layout
    def layout(self, ctx: LayoutContext) -> VisualLayout:
        """The :class:`VisualLayout` of one image in one prompt.

        Raises:
            LayoutError: the prompt's visual tokens do not match what the config and processor outputs imply.
            UnsupportedModelError: this input cannot be placed with certainty (the message says why).
        """
        raise NotImplementedError(f"{type(self).__name__} does not define layout(ctx)")

    def split_images(self, ctx: LayoutContext, count: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Cut a prompt with ``count`` images into one ``(image-token positions, processor outputs)`` pair per
        image, in prompt order; :meth:`layouts` then lays each out with :meth:`layout` on its own slice.

        Raises:
            UnsupportedModelError: the family cannot place several images yet (the default).
            LayoutError: the prompt's tokens do not split into ``count`` images as the inputs imply.
        """
        if count == 1:  # one image beside a video: every image token is its
            return [(ctx.image_positions(), dict(ctx.inputs))]
        raise UnsupportedModelError(f"{ctx.model_class}: the prompt holds {count} images; several images per prompt "
                                    f"are not supported for {self.family or ctx.model_class} yet. Probe one image "
                                    "per prompt, or register an adapter whose split_images() cuts the prompt.")

    def video_layouts(self, ctx: LayoutContext, items: list[int]) -> list[VisualLayout]:
        """One single-image layout per video frame (or group of frames read together), with ``item`` and
        ``frames`` set, for the videos ``items`` (indices into ``ctx.media``) in prompt order.

        Raises:
            UnsupportedModelError: the family cannot place video frames yet (the default).
        """
        raise UnsupportedModelError(f"{ctx.model_class}: the prompt holds a video; per-frame maps of videos are not "
                                    f"supported for {self.family or ctx.model_class} yet. Probe single frames as "
                                    "images.")

    def layouts(self, ctx: LayoutContext) -> VisualLayout:
        """The composite layout of a prompt with several images and/or videos (``ctx.media``): each image laid out
        by :meth:`layout` on its slice from :meth:`split_images`, each video by :meth:`video_layouts`."""
        media = ctx.media
        images = [k for k, m in enumerate(media) if m.kind == "image"]
        videos = [k for k, m in enumerate(media) if m.kind == "video"]
        parts: list[VisualLayout] = []
        if images:
            groups = self.split_images(ctx, len(images))
            if len(groups) != len(images):
                raise LayoutError(f"{ctx.model_class}: the prompt's image tokens split into {len(groups)} images, "
                                  f"but {len(images)} images were given")
            for item, (positions, inputs) in zip(images, groups):
                part = self.layout(ctx.for_item(item, positions, inputs))
                if not np.array_equal(part.positions, np.asarray(positions)):
                    raise LayoutError(f"{ctx.model_class}: image {item}'s layout does not hold exactly its tokens")
                part.item = item
                parts.append(part)
        if videos:
            parts += self.video_layouts(ctx, videos)
        return VisualLayout.combine(parts)

    # ------------------------------------------------------------------ capture
    def upstream_fixes(self, model: nn.Module) -> contextlib.AbstractContextManager[None]:
        """Scoped workarounds for defects of the model's class in the installed transformers, active while the
        toolkit calls the model (:meth:`emergence.Probe.upstream_fixes`) and removed on exit. Each fix detects its
        defect by behaviour (never by version number) and does nothing where the defect is absent. Default: none."""
        return contextlib.nullcontext()

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        """The language model's self-attention modules (its cross-attention modules when :attr:`cross_attention`),
        in layer order; each must carry an int ``layer_idx`` and call transformers' attention interface. Default:
        :func:`self_attention_modules`."""
        return self_attention_modules(model)

    # ------------------------------------------------------------------ inputs
    def build_prompt(self, processor: Any, prompt: str) -> str:
        """The text fed to the processor for one image and a user prompt.

        Default: the processor's chat template (a user turn with one image, generation prompt) when it has one;
        else the prompt prefixed with the processor's image token (``<image>`` when it names none) unless the prompt
        already holds it.
        """
        if getattr(processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image_token = getattr(processor, "image_token", None) or "<image>"
        image_token = str(getattr(image_token, "content", image_token))
        return prompt if image_token in prompt else f"{image_token}\n{prompt}"

    def process(self, processor: Any, image: Any, text: str) -> Mapping[str, Any]:
        """Run the processor on one PIL image and the built prompt; a batch of one, PyTorch tensors."""
        return processor(images=image, text=text, return_tensors="pt")

    def build_media_prompt(self, processor: Any, prompt: str, images: int, videos: int) -> str:
        """The processor text for a prompt with ``images`` images, then ``videos`` videos, then the user's text:
        the chat template with that many image / video entries, else one placeholder token per image and video
        (the processor's ``image_token`` / ``video_token``) before the prompt."""
        if getattr(processor, "chat_template", None):
            content = [{"type": "image"}] * images + [{"type": "video"}] * videos + [{"type": "text", "text": prompt}]
            messages = [{"role": "user", "content": content}]
            return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

        def token(name: str, default: str) -> str:
            value = getattr(processor, name, None) or default
            return str(getattr(value, "content", value))

        marks = token("image_token", "<image>") * images + token("video_token", "<video>") * videos
        return f"{marks}\n{prompt}"

    def process_media(self, processor: Any, images: list[Any], videos: list[list[Any]], text: str
                      ) -> Mapping[str, Any]:
        """Run the processor on several PIL images and / or videos (lists of PIL frames) and the built prompt."""
        kwargs: dict[str, Any] = {"text": text, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        if videos:
            kwargs["videos"] = videos
        return processor(**kwargs)

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` when processed inputs carry no image (naming video inputs when those are what they
        carry: pass them with ``video=``, or, for a family without video support, probe a frame as an image)."""
        if not any(inputs.get(name) is not None for name in self.pixel_inputs):
            if inputs.get("pixel_values_videos") is not None:
                if self.video:
                    raise ValueError("the inputs hold a video (pixel_values_videos) and no image: pass its frames as "
                                     "video=frames, not image= (probe.generate(video=frames, inputs=inputs))")
                raise ValueError(f"the inputs hold a video (pixel_values_videos) and no image: per-frame maps of "
                                 f"videos are not supported for {self.family or 'this family'} yet; probe one frame "
                                 "as an image")
            names = " or ".join(self.pixel_inputs)
            raise ValueError(f"inputs hold no {names}: the prompt has no image. Process the prompt with an image "
                             f"(processor(images=..., text=...)).")

    def model_inputs(self, inputs: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
        """The inputs on the model's device; floating image and video tensors in the model's dtype."""
        device = next(model.parameters()).device
        out = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}
        for name in (*self.pixel_inputs, "pixel_values_videos"):
            value = out.get(name)
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                out[name] = value.to(model.dtype)
        return out

    def extend_inputs(self, inputs: Mapping[str, Any], sequences: torch.Tensor) -> dict[str, Any]:
        """Inputs for one forward over prompt + answer (``convention="self"``): per-token ``[1, S]`` tensors of the
        prompt are extended over the answer (``attention_mask`` with ones; token-type ids such as
        ``mm_token_type_ids`` and other masks with zeros = text)."""
        prompt_len = inputs["input_ids"].shape[1]
        extra = sequences.shape[1] - prompt_len
        full = dict(inputs)
        full["input_ids"] = sequences
        for name, value in inputs.items():
            if name == "input_ids" or not isinstance(value, torch.Tensor) or tuple(value.shape) != (1, prompt_len):
                continue
            pad = torch.ones if name == "attention_mask" else torch.zeros
            full[name] = torch.cat([value, pad((1, extra), dtype=value.dtype, device=value.device)], dim=1)
        return full

    def generate(self, model: nn.Module, inputs: Mapping[str, Any], **kwargs: Any) -> torch.Tensor:
        """Run the model's generation: ``[1, P + T]`` token ids, the ``P`` prompt ids (``inputs["input_ids"]``)
        followed by the ``T`` new ones. Default: ``model.generate(**inputs, **kwargs)``."""
        return model.generate(**inputs, **kwargs)

    def check_positions(self, layout: VisualLayout, ctx: LayoutContext) -> VisualLayout:
        """Raise when a layout's positions fall outside the sequence the language model reads (default: the prompt
        ``ctx.input_ids``; cross-attention adapters: their keys, checked by the layout)."""
        if self.cross_attention:
            return layout
        return _check_positions_in_prompt(layout, ctx)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.family!r}, {self.support})"


@contextlib.contextmanager
def scoped_forward_hook(module: nn.Module, hook: Callable[[nn.Module, Any, Any], Any]) -> Iterator[None]:
    """``hook`` registered as a forward hook of ``module`` for the ``with`` block only (removed on exit or error)."""
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class LayoutAdapter(Adapter):
    """An adapter that differs from the default only by its layout function (what ``register_layout`` makes)."""

    support = "exact"

    def __init__(self, builder: Callable[[LayoutContext], VisualLayout], architecture: str = "") -> None:
        self.builder = builder
        self.family = architecture  # type: ignore[misc]
        self.architectures = (architecture,) if architecture else ()  # type: ignore[misc]
        self.summary = (builder.__doc__ or "a registered layout function").strip().splitlines()[0]  # type: ignore[misc]

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        return self.builder(ctx)


def _check_positions_in_prompt(layout: VisualLayout, ctx: LayoutContext) -> VisualLayout:
    """Raise when a layout's positions fall outside the prompt (shared guard over every adapter)."""
    n = len(ctx.input_ids)
    if len(layout.positions) and (layout.positions.min() < 0 or layout.positions.max() >= n):
        raise LayoutError(f"{ctx.model_class}: layout positions fall outside the prompt of {n} tokens")
    return layout


def split_counts(positions: np.ndarray, counts: list[int], what: str) -> list[np.ndarray]:
    """Cut ``[V]`` ascending positions into consecutive groups of ``counts`` tokens (one per image, in order).

    Raises:
        LayoutError: the counts do not add up to the positions.
    """
    counts = [int(c) for c in counts]
    if sum(counts) != len(positions) or any(c <= 0 for c in counts):
        raise LayoutError(f"{what}: the prompt has {len(positions)} image tokens, but the inputs imply "
                          f"{counts} per image (sum {sum(counts)})")
    edges = np.cumsum([0] + counts)
    return [np.asarray(positions[a:b]) for a, b in zip(edges[:-1], edges[1:])]
