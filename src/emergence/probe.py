"""``Probe``: wrap any HuggingFace image-text-to-text model and generate with attention capture."""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image

from .adapters import Adapter, adapter_for, build_layout, find_adapter
from .capture.engine import AttentionCapture, KeepMode, calls_attention_interface
from .errors import CaptureError, MissingDependencyError, ModelLoadError, UnsupportedModelError, check_device
from .images import ImageLike, load_image
from .layouts.base import VisualLayout
from .layouts.context import Medium
from .run import ProbeRun

__all__ = ["CaptureSession", "Probe"]

_CONVENTIONS = ("predicting", "self")


def _is_vision_language(model: Any) -> bool:
    """A vision tower or an image token in the config, or a registered adapter for the model's class (remote-code
    models keep their tower elsewhere, e.g. the original LLaVA codebase's ``mm_vision_tower``)."""
    cfg = getattr(model, "config", None)
    return getattr(cfg, "vision_config", None) is not None or any(
        isinstance(getattr(cfg, k, None), int) for k in ("image_token_id", "image_token_index")
    ) or find_adapter(model)[1] is not None


def _check_generation(convention: str, max_new_tokens: Any, generate_kwargs: Mapping[str, Any]) -> None:
    """Refuse a convention, a length or a decoding the capture cannot follow (before anything is processed)."""
    if convention not in _CONVENTIONS:
        raise ValueError(f"convention={convention!r} is not one of {_CONVENTIONS}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if generate_kwargs.get("num_beams", 1) != 1:
        raise ValueError("beam search is not supported: each step must extend one sequence (use num_beams=1)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Probe:
    """A vision-language model and its processor, ready to generate with attention capture.

    Args:
        model: a loaded transformers image-text-to-text model (e.g. ``LlavaForConditionalGeneration``).
        processor: its processor (``AutoProcessor``); ``None`` when you pass already-processed ``inputs`` and a
            ``tokenizer``.
        tokenizer: defaults to ``processor.tokenizer``.
        adapter: the model family's :class:`~emergence.adapters.Adapter` (default: the registered one for the
            model's class, else the generic adapter).

    Raises:
        UnsupportedModelError: the model reads no image (text-only), or its adapter refuses it (the error says why;
            unregistered models that cannot be placed with certainty are refused when their layout is built, with
            how to register an adapter).

    Example:
        >>> probe = Probe.from_pretrained("llava-hf/llava-1.5-7b-hf", dtype=torch.bfloat16)  # doctest: +SKIP
        >>> run = probe.generate("cat.jpg", "Describe the image.", max_new_tokens=64)           # doctest: +SKIP
        >>> run.heatmap(3).shape                                                               # doctest: +SKIP
        (480, 640)
    """

    def __init__(self, model: Any, processor: Any = None, tokenizer: Any = None, adapter: Adapter | None = None) -> None:
        if not _is_vision_language(model):
            raise UnsupportedModelError(
                f"{type(model).__name__} is a text-only model (its config has no vision_config and no image token). "
                "emergence probes models that read an image; load one with "
                "AutoModelForImageTextToText.from_pretrained(...) or Probe.from_pretrained(...)."
            )
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else getattr(processor, "tokenizer", None)
        if self.tokenizer is None and processor is not None and hasattr(processor, "convert_ids_to_tokens"):
            self.tokenizer = processor
        self.architecture, _ = find_adapter(model, model.config)
        self.adapter = adapter if adapter is not None else adapter_for(model)
        reason = self.adapter.refusal(model)
        if reason:
            raise UnsupportedModelError(reason)
        self.attention_modules = self.adapter.attention_modules(model)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        attn_implementation: str = "sdpa",
        **model_kwargs: Any,
    ) -> Probe:
        """Load ``AutoProcessor`` + ``AutoModelForImageTextToText`` from a hub id or a local folder.

        Args:
            path_or_id: hub id (needs network or a filled cache) or local directory.
            dtype: model dtype (e.g. ``torch.bfloat16`` or ``"bfloat16"``); default: the checkpoint's.
            device: where to put the model; default CPU (or ``model_kwargs['device_map']``).
            attn_implementation: backend used for generation (``"sdpa"``, ``"eager"``, ``"flash_attention_2"``).
        """
        from transformers import AutoConfig, AutoModelForImageTextToText

        from .processing import load_processor

        if isinstance(dtype, str):
            if not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise ValueError(f"dtype {dtype!r} is not a torch dtype (use float32, float16 or bfloat16)")
            dtype = getattr(torch, dtype)
        check_device(device)
        where = str(path_or_id)
        try:
            config = AutoConfig.from_pretrained(path_or_id)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"could not load a model config from {where!r}: {_first_line(exc)}. On an offline machine pass a "
                "local folder that holds config.json, the weights and the processor files."
            ) from exc
        try:
            model = AutoModelForImageTextToText.from_pretrained(
                path_or_id, dtype=dtype, attn_implementation=attn_implementation, **model_kwargs
            )
        except ValueError as exc:
            if "Unrecognized configuration class" in str(exc):
                raise UnsupportedModelError(
                    f"{where!r} ({type(config).__name__}) is not an image-text-to-text model: "
                    "AutoModelForImageTextToText has no class for it. emergence probes models that read an image."
                ) from exc
            raise ModelLoadError(f"could not load the model in {where!r}: {_first_line(exc)}") from exc
        except OSError as exc:
            raise ModelLoadError(f"could not load the model weights from {where!r}: {_first_line(exc)}") from exc
        if device is not None:
            model = model.to(device)
        try:
            processor = load_processor(path_or_id)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"could not load the processor of {where!r}: {_first_line(exc)}") from exc
        probe = cls(model.eval(), processor)
        probe.name = str(path_or_id)
        return probe

    name: str = ""

    def upstream_fixes(self) -> contextlib.AbstractContextManager[None]:
        """A context manager holding the adapter's scoped workarounds for defects of this model's class in the
        installed transformers (:meth:`emergence.adapters.Adapter.upstream_fixes`; e.g. Llama 4 on transformers
        5.24). Every call the toolkit makes to the model runs inside it; enter it around your own calls of
        ``probe.model`` (nothing stays registered after the block)."""
        return self.adapter.upstream_fixes(self.model)

    def check_selection(self, layers: Sequence[int] | None = None,
                        heads: Sequence[tuple[int, int]] | Sequence[int] | None = None) -> None:
        """Refuse, before any generation, layers or heads this model's captured attention does not have.

        Raises:
            ValueError: a layer that is not a captured language-model layer, a head outside ``0..H-1`` (negative
                indices are not counted from the end), or an empty selection.
        """
        from .capture.engine import num_attention_heads

        valid = [m.layer_idx for m in self.attention_modules]
        if layers is not None:
            bad = [i for i in layers if i not in valid]
            if bad or not len(layers):
                raise ValueError(f"layers={list(layers)}: this model's captured layers are {valid[0]}..{valid[-1]}")
        if heads is None:
            return
        if not len(heads):
            raise ValueError("heads=[] selects no head; pass None for every head")
        n = num_attention_heads(self.attention_modules[0], self.model)
        for head in heads:
            layer, index = head if isinstance(head, (tuple, list)) else (None, head)
            if layer is not None and layer not in valid:
                raise ValueError(f"head {tuple(head)}: layer {layer} is not a captured layer "
                                 f"({valid[0]}..{valid[-1]})")
            if not 0 <= int(index) < n:
                raise ValueError(f"head {head if layer is None else tuple(head)}: this model has heads 0..{n - 1} per "
                                 "layer (negative indices are not counted from the end)")

    @property
    def num_layers(self) -> int:
        """Number of language-model layers."""
        return len(self.attention_modules)

    # ------------------------------------------------------------------ inputs
    def build_prompt(self, prompt: str) -> str:
        """The text fed to the processor for a user prompt (the adapter's rule: by default the chat template with
        one image, or the prompt prefixed with the image token)."""
        return self.adapter.build_prompt(self.processor, prompt)

    def prepare(self, image: ImageLike, prompt: str) -> Mapping[str, Any]:
        """Processor outputs (batch of one) for an image and a user prompt, on the model's device."""
        if self.processor is None:
            raise ValueError("this Probe has no processor: pass already-processed inputs=... to generate()")
        pil = load_image(image)
        return self.adapter.process(self.processor, pil, self.build_prompt(prompt))

    def prepare_media(self, images: Sequence[Image.Image], videos: Sequence[Sequence[Image.Image]], prompt: str
                      ) -> Mapping[str, Any]:
        """Processor outputs (batch of one) for several images and / or videos and a user prompt (images first,
        then videos, then the text, in the chat template when the processor has one)."""
        if self.processor is None:
            raise ValueError("this Probe has no processor: pass already-processed inputs=... to generate()")
        if videos and getattr(self.processor, "video_processor", False) is None:
            missing = importlib.util.find_spec("torchvision") is None
            raise MissingDependencyError(
                f"the processor of {type(self.model).__name__} has no video processor"
                + (": transformers' video processors need torchvision (pip install 'emergence[vision]')"
                   if missing else "; load one that has (AutoProcessor.from_pretrained)")
                + ", or pass inputs=... processed elsewhere")
        text = self.adapter.build_media_prompt(self.processor, prompt, len(images), len(videos))
        try:
            return self.adapter.process_media(self.processor, list(images), [list(v) for v in videos], text)
        except (ImportError, NameError) as exc:
            # NameError: transformers' torchvision-backed processors name torchvision's modules (``tvF``...) that
            # were never imported when it is absent
            if isinstance(exc, NameError) and importlib.util.find_spec("torchvision") is not None:
                raise
            raise MissingDependencyError(f"the processor of {type(self.model).__name__} could not process the "
                                         f"{'video' if videos else 'images'}: {_first_line(exc)}. Its video and fast "
                                         "image processors need torchvision (pip install 'emergence[vision]'), or "
                                         "pass inputs=... processed elsewhere.") from exc

    def _media_layout(self, inputs: Mapping[str, Any], pils: list[Image.Image], videos: list[list[Image.Image]]
                      ) -> VisualLayout:
        """The layout of inputs made from these images, then these videos' frames."""
        media = [Medium("image", (p.height, p.width)) for p in pils]
        media += [Medium("video", (v[0].height, v[0].width), len(v)) for v in videos]
        return self.layout(inputs, media)

    def layout(self, inputs: Mapping[str, Any], image_size: tuple[int, int] | Sequence[Medium]) -> VisualLayout:
        """The visual-token layout of these inputs (``image_size`` = original ``(height, width)``, or one
        :class:`~emergence.layouts.Medium` per image / video of the prompt)."""
        return build_layout(self.model, inputs["input_ids"], image_size, inputs, self.processor, adapter=self.adapter)

    # ------------------------------------------------------------------ generation
    def generate(
        self,
        image: ImageLike | Sequence[ImageLike] | None = None,
        prompt: str | None = None,
        *,
        video: Sequence[ImageLike] | None = None,
        inputs: Mapping[str, Any] | None = None,
        max_new_tokens: int = 128,
        keep: KeepMode = "heads",
        convention: str = "predicting",
        layers: Sequence[int] | None = None,
        storage_dtype: torch.dtype = torch.float16,
        frames: Sequence[int] | None = None,
        mechanism: str | None = None,
        methods: Sequence[str] = (),
        generic_prompt: str | None = None,
        **generate_kwargs: Any,
    ) -> ProbeRun:
        """Generate an answer while recording attention over the visual tokens.

        Args:
            image: path, PIL image or array; or a list of them (several images in one prompt, in prompt order).
                With ``inputs``, the original image(s) (needed for their sizes and plots).
            prompt: the user's question; wrapped in the processor's chat template when it has one.
            video: a video's frames (paths, PIL images or arrays, all one size), placed after the images. The
                run then holds every frame's tokens: ``run.heatmap(t, frame=f)``, ``run.select(frame=f)``.
            inputs: already-processed inputs (``input_ids``, ``pixel_values``...); batch of one.
            max_new_tokens: generation length limit.
            keep: ``"heads"`` -> attention ``[T, L, H, V]``; ``"layers"`` -> ``[T, L, V]``; ``"mean"`` -> ``[T, V]``.
            convention: ``"predicting"`` (row that predicts token t: the last position at step t) or ``"self"``
                (row at token t's own position; computed in one extra full forward over prompt + answer).
            layers: language-model layers to capture (default all).
            storage_dtype: dtype of the stored maps (float16 default; computed in float32).
            frames: with a video, keep only the tokens of the parts that read these frames (the softmax still runs
                over every key, so the kept probabilities are exact): memory per token ~ L x H x the kept tokens,
                the bound for long videos (with ``keep="layers"`` or ``"mean"``).
            mechanism: how attention is read (:class:`~emergence.capture.AttentionCapture`): ``"interface"``
                (transformers' attention functions, any backend), ``"hooks"`` (hooks on the attention modules:
                models whose attention bypasses transformers' functions, or transformers classes loaded with
                ``attn_implementation="eager"``) or ``"auto"`` (hooks when a captured module's forward never calls
                the attention interface). Default: the adapter's (``"interface"`` for the built-in families).
            methods: map methods besides attention to record for (:mod:`emergence.maps`): ``"tam"`` (the final
                hidden states, read during this generation), ``"relative"`` (one extra prefill of
                ``generic_prompt`` over the same image(s)), ``"gradient"`` (a teacher-forced forward and one
                backward pass per token, afterwards). Stored in ``run.extras``.
            generic_prompt: the generic prompt of relative attention (default
                :data:`emergence.maps.GENERIC_PROMPT`).
            **generate_kwargs: passed to ``model.generate`` (greedy ``do_sample=False`` by default).

        Returns:
            A :class:`ProbeRun`.

        Raises:
            ValueError: no image; batch larger than one; beam search.
        """
        _check_generation(convention, max_new_tokens, generate_kwargs)
        from .analysis.methods import RecordRequest, get_method

        if isinstance(methods, str):  # one method named as a string, not its letters
            methods = [methods]
        recorders = list({m.name: m for m in map(get_method, methods) if m.needs}.values())  # once per name
        if convention == "self" and not self.adapter.teacher_forced:
            # the family's own reason, if its extend_inputs has one; else the general refusal below
            self.adapter.extend_inputs({}, torch.zeros(1, 0, dtype=torch.long))
            raise UnsupportedModelError(f"{self.adapter.family or type(self.model).__name__}: one forward over the "
                                        "prompt and the answer is not supported, which convention='self' and gradient "
                                        "maps need; generate with convention='predicting' and another map method")
        request = RecordRequest(prompt=prompt, images=[], videos=[], model_inputs={}, capture={},
                                convention=convention, generic_prompt=generic_prompt)
        for method in recorders:
            method.check_request(self, request)
        pils, videos, inputs = self._resolve_inputs(image, prompt, inputs, video)
        input_ids = inputs["input_ids"]
        layout = self._media_layout(inputs, pils, videos)
        if frames is not None:
            layout = layout.keep_frames(frames)
        model_inputs = self._model_inputs(inputs)
        generate_kwargs.setdefault("do_sample", False)
        pad_id = getattr(self.tokenizer, "pad_token_id", None)
        if pad_id is not None:
            generate_kwargs.setdefault("pad_token_id", pad_id)
        self._warn_context(input_ids.shape[1], max_new_tokens)
        capture = {"keep": keep, "layers": layers, "storage_dtype": storage_dtype,
                   "mechanism": self._mechanism(mechanism)}
        generate_kwargs["max_new_tokens"] = max_new_tokens
        request.images, request.videos, request.model_inputs = pils, videos, model_inputs
        request.capture = {"keep": keep, "layers": layers, "storage_dtype": storage_dtype, "frames": frames,
                           "mechanism": mechanism}
        with contextlib.ExitStack() as stack:
            recorded = [stack.enter_context(m.recording(self)) for m in recorders]
            if convention == "predicting":
                new_ids, attention, cap = self._generate_predicting(model_inputs, layout, capture, generate_kwargs)
            else:
                new_ids, attention, cap = self._generate_self(model_inputs, layout, capture, generate_kwargs)
        run = self._make_run(new_ids, attention, layout, cap, convention, prompt or "", input_ids, pils, videos,
                             generate_kwargs)
        for method, state in zip(recorders, recorded):
            method.record(self, run, state, request)
        return run

    def generate_batch(
        self,
        items: Sequence[Any],
        *,
        max_new_tokens: int = 128,
        keep: KeepMode = "heads",
        convention: str = "predicting",
        layers: Sequence[int] | None = None,
        storage_dtype: torch.dtype = torch.float16,
        mechanism: str | None = None,
        methods: Sequence[str] = (),
        generic_prompt: str | None = None,
        **generate_kwargs: Any,
    ) -> list[ProbeRun]:
        """Generate for several prompts in one batch, with capture: one :class:`ProbeRun` per item, each what
        :meth:`generate` gives for that item alone (identical ids; attention equal within float accumulation order,
        since padding changes the order of some sums: docs/batching.md states the measured difference).

        Each item is processed alone (its layout is its own), then the prompts are left-padded into one batch; the
        capture keeps each item's own visual keys (never the padded width), and an item that ends (its
        end-of-sequence token) keeps nothing after it.

        Args:
            items: ``(image, prompt)`` pairs, or mappings with ``image`` (one or a list), ``prompt`` and optionally
                ``video``.
            max_new_tokens, keep, convention, layers, storage_dtype, mechanism, generic_prompt, generate_kwargs: as
                :meth:`generate` (``convention="self"``: the batch generates, then each item's answer is read in its
                own forward).
            methods: map methods recorded after the generation (``relative``, ``gradient``); a method that reads the
                model during the generation (``tam``) is refused by name.

        Raises:
            UnsupportedModelError: a family whose batched generation is not known to match single items (the
                message names it; use :meth:`generate` per item), or a refused map method.
            ValueError: no items; an item without image or prompt; beam search.
        """
        from .analysis.methods import MapMethod, RecordRequest, get_method
        from .batching import answer_lengths

        self._check_batched()
        _check_generation(convention, max_new_tokens, generate_kwargs)
        if isinstance(methods, str):
            methods = [methods]
        recorders = list({m.name: m for m in map(get_method, methods) if m.needs}.values())
        for method in recorders:
            if type(method).recording is not MapMethod.recording:
                raise UnsupportedModelError(f"map method {method.name!r} reads the model during a batch-of-one "
                                            "generation; record it with probe.generate per item")
        prepared = []
        for prompt, pils, videos, inputs, layout in self._batch_items(items):
            own = self._model_inputs(inputs) if recorders or convention == "self" else {}  # read after the batch
            request = RecordRequest(prompt=prompt, images=pils, videos=videos, model_inputs=own,
                                    capture={"keep": keep, "layers": layers, "storage_dtype": storage_dtype,
                                             "frames": None, "mechanism": mechanism},
                                    convention=convention, generic_prompt=generic_prompt)
            for method in recorders:
                method.check_request(self, request)
            self._warn_context(inputs["input_ids"].shape[1], max_new_tokens)
            prepared.append((prompt, pils, videos, inputs, layout, request))
        model_inputs, pads, pad_id = self._collate([p[3] for p in prepared])
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("pad_token_id", int(pad_id))
        generate_kwargs["max_new_tokens"] = max_new_tokens
        capture = {"keep": keep, "layers": layers, "storage_dtype": storage_dtype,
                   "mechanism": self._mechanism(mechanism)}
        prompt_len = model_inputs["input_ids"].shape[1]
        positions = [p[4].shifted(pad).positions for p, pad in zip(prepared, pads)]
        recorded = convention == "predicting"
        with (AttentionCapture(self.model, positions, modules=self.attention_modules,
                               cross_attention=self.adapter.cross_attention, **capture) if recorded
              else contextlib.nullcontext()) as cap, torch.no_grad(), self.upstream_fixes():
            sequences = self.adapter.generate(self.model, model_inputs, **generate_kwargs)
        new = sequences[:, prompt_len:].cpu()
        eos = generate_kwargs.get("eos_token_id", getattr(self.model.generation_config, "eos_token_id", None))
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        lengths = answer_lengths(new, eos)
        if recorded and cap.num_steps != new.shape[1]:
            raise CaptureError(f"recorded {cap.num_steps} steps for {new.shape[1]} generated tokens; the model's "
                               "generate ran extra or fewer forward passes than tokens")
        runs = []
        for b, ((prompt, pils, videos, inputs, layout, request), n) in enumerate(zip(prepared, lengths)):
            # (capture_batch's runs() builds its runs the same way)
            new_ids = new[b, :n]
            if recorded:
                attention, item_cap = cap.maps(b)[:n], cap
            else:
                own = torch.cat([inputs["input_ids"].to(sequences.device), new_ids[None].to(sequences.device)], 1)
                attention, item_cap = self._capture_self(request.model_inputs, layout, capture, own)
            run = self._make_run(new_ids, attention, layout, item_cap, convention, prompt, inputs["input_ids"], pils,
                                 videos, generate_kwargs)
            run.meta["batch"] = {"size": len(items), "index": b, "padding": int(pads[b])}
            for method in recorders:
                method.record(self, run, None, request)
            runs.append(run)
        return runs

    def _check_batched(self) -> None:
        if not self.adapter.batched:
            family = self.adapter.family or type(self.model).__name__
            raise UnsupportedModelError(f"{family}: batched generation is not supported for this family (its batched "
                                        "generate is not checked to give each item what it gives alone); call "
                                        "probe.generate per item")

    def _batch_items(self, items: Sequence[Any]
                     ) -> list[tuple[str, list[Image.Image], list[list[Image.Image]], Mapping[str, Any], VisualLayout]]:
        """Each item of a batch processed alone: ``(prompt, images, videos, inputs, layout)``."""
        items = list(items)
        if not items:
            raise ValueError("a batch needs at least one item")
        out = []
        for k, item in enumerate(items):
            if isinstance(item, Mapping):
                image, prompt, video = item.get("image"), item.get("prompt"), item.get("video")
            elif isinstance(item, (tuple, list)) and len(item) == 2:
                (image, prompt), video = item, None
            else:
                raise ValueError(f"item {k} must be (image, prompt) or a mapping with image / prompt / video, got "
                                 f"{type(item).__name__}")
            if prompt is None:
                raise ValueError(f"item {k} has no prompt")
            pils, videos, inputs = self._resolve_inputs(image, prompt, None, video)
            out.append((prompt, pils, videos, inputs, self._media_layout(inputs, pils, videos)))
        return out

    def _collate(self, inputs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[int], int]:
        """Items' processed inputs left-padded into one batch, on the model's device: ``(model inputs, each item's
        padding, pad id)``."""
        from .batching import collate_left

        pad_id = getattr(self.tokenizer, "pad_token_id", None)
        if pad_id is None:
            pad_id = getattr(self.model.generation_config, "pad_token_id", None)
        if pad_id is None:
            raise ValueError("the tokenizer has no pad token, which left padding needs; set tokenizer.pad_token")
        batch, pads = collate_left(list(inputs), int(pad_id))
        return self._model_inputs(batch), pads, int(pad_id)

    def capture_batch(self, items: Sequence[Any], *, keep: KeepMode = "heads", layers: Sequence[int] | None = None,
                      storage_dtype: torch.dtype = torch.float16, mechanism: str | None = None
                      ) -> BatchCaptureSession:
        """:meth:`capture` for one batched generation that YOU run (your ``model.generate``, an nnsight context)
        over several items: enter it, generate once with ``session.inputs`` (the items left-padded into one batch,
        as :meth:`generate_batch` builds it), leave it, then ``session.runs(sequences)`` gives one
        :class:`ProbeRun` per item, each what :meth:`generate` gives for that item alone.

        Args:
            items: as :meth:`generate_batch`.
            keep, layers, storage_dtype, mechanism: as :meth:`generate`.

        Raises:
            UnsupportedModelError: a family whose batched generation is not checked (as :meth:`generate_batch`).
            ValueError: no items, an item without image or prompt, a tokenizer without a pad token.
        """
        self._check_batched()
        prepared = self._batch_items(items)
        model_inputs, pads, pad_id = self._collate([p[3] for p in prepared])
        positions = [p[4].shifted(pad).positions for p, pad in zip(prepared, pads)]
        cap = AttentionCapture(self.model, positions, keep=keep, layers=layers, storage_dtype=storage_dtype,
                               modules=self.attention_modules, cross_attention=self.adapter.cross_attention,
                               mechanism=self._mechanism(mechanism))  # type: ignore[arg-type]
        return BatchCaptureSession(self, cap, prepared, model_inputs, pads, pad_id)

    def _make_run(self, new_ids: torch.Tensor, attention: torch.Tensor, layout: VisualLayout, cap: AttentionCapture,
                  convention: str, prompt: str, input_ids: torch.Tensor, pils: list[Image.Image],
                  videos: list[list[Image.Image]], generate_kwargs: dict[str, Any]) -> ProbeRun:
        text, tokens, offsets = self._decode(new_ids)
        return ProbeRun(
            text=text,
            token_ids=new_ids,
            tokens=tokens,
            token_offsets=offsets,
            attention=attention,
            layout=layout,
            layers=cap.layers,
            keep=cap.keep,
            convention=convention,
            prompt=prompt,
            prompt_ids=input_ids[0].cpu(),
            image=None if layout.is_composite else pils[0],
            media=[*pils, *videos] if layout.is_composite else [],
            meta=self._meta(cap, generate_kwargs),
        )

    def capture(self, image: ImageLike | Sequence[ImageLike] | None = None, inputs: Mapping[str, Any] | None = None,
                prompt: str | None = None, *, video: Sequence[ImageLike] | None = None, keep: KeepMode = "heads",
                layers: Sequence[int] | None = None, storage_dtype: torch.dtype = torch.float16,
                mechanism: str | None = None) -> CaptureSession:
        """A capture around a generation YOU run (your own ``model.generate``, or an nnsight ``generate`` /
        ``trace`` context with your interventions): the rows that predict each new token, over these inputs'
        visual tokens. Enter it, generate once with ``inputs``, leave it, then ``session.run(sequences)``.

        Args:
            image: the original image(s) (their sizes place the tokens; kept with the run).
            inputs: the processed inputs you generate with (default: ``prepare(image, prompt)``); batch of one.
            prompt: the user's prompt (kept with the run; processed when ``inputs`` is not given).
            video, keep, layers, storage_dtype, mechanism: as :meth:`generate`.

        Example:
            >>> session = probe.capture(image, prompt="Describe the image.")      # doctest: +SKIP
            >>> with session, nn_model.generate(dict(session.inputs), max_new_tokens=16) as tracer:  # doctest: +SKIP
            ...     out = tracer.result.save()
            >>> run = session.run(out)                                             # doctest: +SKIP
        """
        pils, videos, inputs = self._resolve_inputs(image, prompt, inputs, video)
        layout = self._media_layout(inputs, pils, videos)
        cap = AttentionCapture(self.model, layout.positions, keep=keep, layers=layers, storage_dtype=storage_dtype,
                               modules=self.attention_modules, cross_attention=self.adapter.cross_attention,
                               mechanism=self._mechanism(mechanism))  # type: ignore[arg-type]
        return CaptureSession(self, cap, layout, self._model_inputs(inputs), prompt or "", pils, videos)

    @classmethod
    def from_nnsight(cls, nn_model: Any, processor: Any = None, adapter: Adapter | None = None) -> Probe:
        """A ``Probe`` over the model an nnsight wrapper holds (``TransformersModel(..., task="image-text-to-text")``,
        or the deprecated ``VisionLanguageModel`` / ``LanguageModel``): the same torch modules, so captures see the
        forwards that nnsight runs, interventions included (:meth:`capture`). ``processor``: default the wrapper's.

        Raises:
            TypeError: ``nn_model`` is not an nnsight model wrapper.
        """
        module = getattr(nn_model, "_module", None)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"{type(nn_model).__name__} is not an nnsight model wrapper (it holds no _module); pass "
                            "nnsight's TransformersModel / VisionLanguageModel, or use Probe(model, processor)")
        if processor is None:
            processor = nn_model.__dict__.get("processor") or nn_model.__dict__.get("tokenizer")
        probe = cls(module, processor, adapter=adapter)
        probe.name = str(getattr(module.config, "_name_or_path", "") or type(module).__name__)
        return probe

    def _resolve_inputs(self, image: Any, prompt: str | None, inputs: Mapping[str, Any] | None, video: Any = None
                        ) -> tuple[list[Image.Image], list[list[Image.Image]], Mapping[str, Any]]:
        """``(original images, videos' frames, processed inputs of one sample)``, built from the media and prompt
        unless given."""
        several = isinstance(image, (list, tuple))
        if several and not image:
            raise ValueError("image=[] holds no image; pass one image, a list of images, or video=frames")
        pils = [load_image(im) for im in image] if several else ([] if image is None else [load_image(image)])
        videos = [] if video is None else [_load_frames(video)]
        if not pils and not videos:
            raise ValueError(
                "probe.generate needs an image: pass image=... (a file path, PIL image or array, or a list of them) "
                "or video=frames with a prompt, or already-processed inputs=... together with the original image(s)"
            )
        if inputs is not None and not videos:
            self.adapter.check_inputs(inputs)  # video inputs given with image=: say so before counting images
        self._check_media_support(len(pils), len(videos))
        if inputs is None:
            if prompt is None:
                raise ValueError("probe.generate needs a prompt (the user's question about the image)")
            if len(pils) == 1 and not videos:
                inputs = self.prepare(pils[0], prompt)
            else:
                inputs = self.prepare_media(pils, videos, prompt)
        input_ids = inputs["input_ids"]
        if input_ids.ndim != 2 or input_ids.shape[0] != 1:
            raise ValueError(f"one sample at a time: input_ids must be [1, S], got {tuple(input_ids.shape)}")
        return pils, videos, inputs

    def _check_media_support(self, images: int, videos: int) -> None:
        """Refuse, before any processing, media the adapter cannot place."""
        family = self.adapter.family or type(self.model).__name__
        if images > 1 and not self.adapter.multi_image:
            raise UnsupportedModelError(f"{family}: several images per prompt are not supported for this family yet "
                                        f"({images} given); probe one image per prompt. Families with several "
                                        "images: see `emergence probes`.")
        if videos and not self.adapter.video:
            raise UnsupportedModelError(f"{family}: per-frame maps of videos are not supported for this family yet; "
                                        "probe single frames as images. Families with video: see `emergence probes`.")
        if videos > 1:
            raise UnsupportedModelError("one video per prompt is supported; got several")

    def _model_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs on the model's device, floating image tensors in the model's dtype."""
        return self.adapter.model_inputs(inputs, self.model)

    def _generate_predicting(self, model_inputs: dict[str, Any], layout: Any, capture: dict[str, Any],
                             generate_kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, AttentionCapture]:
        """Generate under capture: step t's last row predicts token t. Returns ``(new ids [T], attention, capture)``."""
        prompt_len = model_inputs["input_ids"].shape[1]
        with AttentionCapture(self.model, layout.positions, modules=self.attention_modules,
                              cross_attention=self.adapter.cross_attention, **capture) as cap, torch.no_grad(), \
                self.upstream_fixes():
            sequences = self.adapter.generate(self.model, model_inputs, **generate_kwargs)
        new_ids = sequences[0, prompt_len:].cpu()
        attention = cap.maps()
        if attention.shape[0] != len(new_ids):
            raise CaptureError(
                f"recorded {attention.shape[0]} steps for {len(new_ids)} generated tokens; the model's generate "
                "ran extra or fewer forward passes than tokens (speculative or assisted decoding is unsupported)"
            )
        return new_ids, attention, cap

    def _generate_self(self, model_inputs: dict[str, Any], layout: Any, capture: dict[str, Any],
                       generate_kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, AttentionCapture]:
        """Generate, then capture one full forward over prompt + answer at the answer's own rows."""
        prompt_len = model_inputs["input_ids"].shape[1]
        with torch.no_grad(), self.upstream_fixes():
            sequences = self.adapter.generate(self.model, model_inputs, **generate_kwargs)
        new_ids = sequences[0, prompt_len:].cpu()
        attention, cap = self._capture_self(model_inputs, layout, capture, sequences)
        return new_ids, attention, cap

    def _capture_self(self, model_inputs: dict[str, Any], layout: Any, capture: dict[str, Any],
                      sequences: torch.Tensor) -> tuple[torch.Tensor, AttentionCapture]:
        """One full forward over prompt + answer (``sequences`` ``[1, P + T]``), captured at the answer's own rows."""
        prompt_len = model_inputs["input_ids"].shape[1]
        full = self.teacher_forced_inputs(model_inputs, sequences)
        positions = torch.arange(prompt_len, sequences.shape[1])
        with AttentionCapture(self.model, layout.positions, query_positions=positions, modules=self.attention_modules,
                              cross_attention=self.adapter.cross_attention, **capture) as cap, torch.no_grad(), \
                self.upstream_fixes():
            self.model(**full, use_cache=False)
        return cap.maps(), cap

    #: config fields that name a placeholder token the processor expands into media features
    _MEDIA_TOKEN_FIELDS = ("image_token_id", "image_token_index", "video_token_id", "video_token_index",
                           "audio_token_id", "audio_token_index")

    def teacher_forced_inputs(self, inputs: Mapping[str, Any], sequences: torch.Tensor) -> dict[str, Any]:
        """Inputs for one forward over prompt + answer (``sequences`` ``[1, P + T]``, the ``P`` prompt ids first),
        as the adapter extends them.

        Raises:
            CaptureError: the answer holds a media placeholder token (the model's image / video / audio token): the
                forward would read it as one more image or video, whose features do not exist.
        """
        prompt_len = inputs["input_ids"].shape[1]
        answer = sequences[0, prompt_len:].detach().cpu()
        config = self.model.config
        for field in self._MEDIA_TOKEN_FIELDS:
            token = getattr(config, field, None)
            if isinstance(token, int) and token >= 0 and bool((answer == token).any()):
                where = torch.nonzero(answer == token).flatten().tolist()
                raise CaptureError(
                    f"the answer holds the model's {field.split('_')[0]} placeholder token (id {token}) at answer "
                    f"position(s) {where[:5]}: one forward over prompt + answer (convention='self', gradient maps, "
                    "answer log-probabilities, knockout effects) would read it as one more "
                    f"{field.split('_')[0]} that has no features. Use convention='predicting' without "
                    f"methods=['gradient'], or keep the model from writing it (generate(..., suppress_tokens=[{token}]))")
        return self.adapter.extend_inputs(inputs, sequences)

    def _mechanism(self, mechanism: str | None) -> str:
        """The capture mechanism: as asked, else the adapter's; ``"auto"`` = ``"hooks"`` when a captured module's
        forward never calls transformers' attention interface, else ``"interface"``."""
        chosen = mechanism or self.adapter.mechanism
        if chosen == "auto":
            return "interface" if all(calls_attention_interface(m) for m in self.attention_modules) else "hooks"
        return chosen

    def _meta(self, cap: AttentionCapture, generate_kwargs: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": self.name or type(self.model).__name__,
            "architecture": type(self.model).__name__,
            "backend": cap.backend,
            "attention": "cross-attention" if cap.cross_attention else "self-attention",
            "mechanism": cap.mechanism,
            "dtype": str(self.model.dtype).replace("torch.", ""),
            "max_new_tokens": generate_kwargs["max_new_tokens"],
            "generate_kwargs": {k: v for k, v in generate_kwargs.items()
                                if k != "max_new_tokens" and isinstance(v, (int, float, str, bool))},
            "versions": _versions(),
        }

    def _warn_context(self, prompt_len: int, max_new_tokens: int) -> None:
        """Warn when prompt + answer can exceed the language model's context (positions past it are unreliable)."""
        import warnings

        config = self.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        limit = getattr(text_config, "max_position_embeddings", None)
        if isinstance(limit, int) and prompt_len + max_new_tokens > limit:
            warnings.warn(
                f"the prompt has {prompt_len} tokens (image tokens included) and up to {max_new_tokens} new tokens may "
                f"follow, beyond the model's context of {limit} positions: attention past it is not meaningful. "
                "Use a smaller image, a shorter prompt or fewer new tokens.",
                stacklevel=3,
            )

    def _decode(self, ids: torch.Tensor) -> tuple[str, list[str], torch.Tensor]:
        """Answer text, per-token strings and ``[T, 2]`` char offsets, by incremental decoding (exact substrings)."""
        tok = self.tokenizer
        if tok is None:
            strings = [str(int(i)) for i in ids]
            text = " ".join(strings)
        else:
            prev = ""
            strings = []
            for k in range(len(ids)):
                cur = tok.decode(ids[: k + 1], skip_special_tokens=True)
                strings.append(cur[len(prev):] if cur.startswith(prev) else tok.decode(ids[k : k + 1], skip_special_tokens=True))
                prev = cur
            text = tok.decode(ids, skip_special_tokens=True)
        offsets, cursor = [], 0
        for s in strings:
            start = text.find(s, cursor) if s else cursor
            start = cursor if start < 0 else start
            offsets.append((start, start + len(s)))
            cursor = start + len(s)
        return text, strings, torch.tensor(offsets, dtype=torch.long).reshape(-1, 2)

    def __repr__(self) -> str:
        return (
            f"Probe({self.name or type(self.model).__name__!r}, layers={self.num_layers}, "
            f"backend={self.model.config.get_text_config()._attn_implementation!r})"
        )


class CaptureSession:
    """What :meth:`Probe.capture` returns: a context manager around one generation that you run, then
    :meth:`run` to turn its output into a :class:`ProbeRun`.

    Attributes:
        inputs: the processed inputs to generate with (batch of one; on the model's device, images in its dtype).
        layout: where their visual tokens are.
    """

    def __init__(self, probe: Probe, cap: AttentionCapture, layout: VisualLayout, inputs: Mapping[str, Any],
                 prompt: str, pils: list[Image.Image], videos: list[list[Image.Image]]) -> None:
        self.probe, self.capture, self.layout, self.inputs = probe, cap, layout, inputs
        self.prompt, self._pils, self._videos = prompt, pils, videos
        self._done = False
        self._scope = contextlib.ExitStack()
        self._batches: list[int] = []  # the batch size of every forward pass inside the session
        self._fed: list[torch.Tensor] = []  # the ids fed to each pass after the first (the generated tokens)
        self._foreign: str | None = None  # why the first pass's inputs are not the session's, if they are not
        self._pixels_seen = False  # whether the vision tower has been called inside the session

    def __enter__(self) -> CaptureSession:
        if self._done:
            raise CaptureError("a capture session records one generation; call probe.capture(...) again")
        with contextlib.ExitStack() as scope:
            scope.enter_context(self.capture)
            scope.enter_context(self.probe.upstream_fixes())
            handle = self.probe.model.register_forward_pre_hook(self._watch, with_kwargs=True)
            scope.callback(handle.remove)
            tower = _vision_tower(self.probe.model)
            if tower is not None:
                scope.callback(tower.register_forward_pre_hook(self._watch_pixels, with_kwargs=True).remove)
            self._scope = scope.pop_all()
        return self

    def _watch_pixels(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Pre-hook on the vision tower: its first input inside the session must be one of the session's own pixel
        tensors (generate may encode the image before the model's first forward). Conservative: only a tensor of the
        same size with other values is called foreign (processors may reshape pixels before the tower)."""
        if self._pixels_seen:
            return
        self._pixels_seen = True
        given = kwargs.get("pixel_values", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        if not isinstance(given, torch.Tensor):
            return
        own = [v for k, v in self.inputs.items() if isinstance(v, torch.Tensor) and k.startswith("pixel_values")]
        same_size = [v for v in own if v.numel() == given.numel()]
        if same_size and not any(torch.equal(given.flatten(), v.to(given.device, given.dtype).flatten())
                                 for v in same_size):
            self._foreign = "its pixel values differ from the session's (another image?)"

    def _watch(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Pre-hook on the model for the session's lifetime: what each forward pass inside was given."""
        ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        shaped = next((v for v in (ids, kwargs.get("inputs_embeds")) if isinstance(v, torch.Tensor)), None)
        self._batches.append(int(shaped.shape[0]) if shaped is not None else 1)
        if len(self._batches) > 1:
            if isinstance(ids, torch.Tensor):
                self._fed.append(ids[0].detach().cpu())
            return
        if isinstance(ids, torch.Tensor) and ids.shape[0] == 1:
            own = self.inputs["input_ids"][0].to(ids.device)
            if ids.shape[1] != own.shape[0] or not torch.equal(ids[0], own):
                self._foreign = "its prompt ids differ from the session's"
        for name in (*self.probe.adapter.pixel_inputs, "pixel_values_videos"):
            given, own = kwargs.get(name), self.inputs.get(name)
            if isinstance(given, torch.Tensor) and isinstance(own, torch.Tensor) and given.numel() == own.numel():
                if not torch.equal(given.flatten(), own.to(given.device, given.dtype).flatten()):
                    self._foreign = "its pixel values differ from the session's (another image?)"

    def __exit__(self, *exc_info: object) -> None:
        self._done = True
        self._scope.__exit__(*exc_info)

    def run(self, sequences: torch.Tensor) -> ProbeRun:
        """The :class:`ProbeRun` of the generation made inside: ``sequences`` ``[1, P + T]`` (what ``generate``
        returned: the prompt's ``P`` ids, then the ``T`` new ones), one recorded step per new token.

        Raises:
            CaptureError: the session is still open, or the recorded steps do not match the new tokens.
        """
        if not self._done:
            raise CaptureError("leave the `with session:` block before asking for the run")
        input_ids = self.inputs["input_ids"]
        if hasattr(sequences, "sequences"):  # generate(..., return_dict_in_generate=True) returned an output object
            sequences = sequences.sequences
        sequences = torch.as_tensor(sequences)
        if sequences.is_floating_point() or sequences.is_complex() or sequences.dtype == torch.bool:
            raise CaptureError(f"sequences must be token ids (an integer tensor [1, P + T]), got dtype "
                               f"{sequences.dtype}: pass what generate returned")
        sequences = sequences[None] if sequences.ndim == 1 else sequences
        prompt_len = input_ids.shape[1]
        if sequences.shape[0] != 1 or not torch.equal(sequences[0, :prompt_len].cpu(), input_ids[0].cpu()):
            raise CaptureError("sequences do not start with the session's prompt ids: pass what the generation "
                               "inside the session returned (batch of one, prompt included)")
        new_ids = sequences[0, prompt_len:].cpu()
        if any(b != 1 for b in self._batches):
            raise CaptureError(f"the generation inside the session ran batches of {sorted(set(self._batches))}: a "
                               "session records one sequence; generate with num_beams=1, num_return_sequences=1 and "
                               "one prompt (beam search mixes the beams' rows)")
        if self._foreign:
            raise CaptureError(f"the generation inside the session was not given the session's inputs ({self._foreign}"
                               "): generate with session.inputs")
        attention = self.capture.maps()
        if attention.shape[0] != len(new_ids):
            raise CaptureError(f"recorded {attention.shape[0]} steps for {len(new_ids)} new tokens: generate exactly "
                               "once inside the session, with these inputs")
        if self._fed:
            fed = torch.cat(self._fed)
            if not torch.equal(fed, new_ids[: len(fed)].to(fed.dtype)):
                raise CaptureError("the ids given to run() are not the ones generated inside the session (the tokens "
                                   "fed back during the generation differ): pass what that generation returned")
        kwargs = {"max_new_tokens": len(new_ids)}
        return self.probe._make_run(new_ids, attention, self.layout, self.capture, "predicting", self.prompt,
                                    input_ids, self._pils, self._videos, kwargs)


class BatchCaptureSession(CaptureSession):
    """What :meth:`Probe.capture_batch` returns: a context manager around one batched generation that you run, then
    :meth:`runs` for one :class:`ProbeRun` per item.

    Attributes:
        inputs: the items' processed inputs, left-padded into one batch (``pad_token_id`` is the pad id to pass to
            ``generate``); on the model's device.
        layouts: each item's own layout (positions in its unpadded prompt).
        pad_token_id: the id the prompts are padded with.
    """

    def __init__(self, probe: Probe, cap: AttentionCapture, prepared: list[Any], inputs: Mapping[str, Any],
                 pads: list[int], pad_id: int) -> None:
        super().__init__(probe, cap, prepared[0][4], inputs, "", [], [])
        self._prepared, self._pads, self.pad_token_id = prepared, pads, pad_id
        self.layouts = [p[4] for p in prepared]

    def _watch(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args and isinstance(args[0], torch.Tensor) else None)
        shaped = next((v for v in (ids, kwargs.get("inputs_embeds")) if isinstance(v, torch.Tensor)), None)
        self._batches.append(int(shaped.shape[0]) if shaped is not None else 1)
        if len(self._batches) > 1:
            if isinstance(ids, torch.Tensor):
                self._fed.append(ids[:, -1:].detach().cpu())
            return
        own = self.inputs["input_ids"]
        if isinstance(ids, torch.Tensor) and (ids.shape != own.shape or not torch.equal(ids, own.to(ids.device))):
            self._foreign = "its prompt ids differ from the session's batch"
        for name in (*self.probe.adapter.pixel_inputs, "pixel_values_videos"):
            given, mine = kwargs.get(name), self.inputs.get(name)
            if isinstance(given, torch.Tensor) and isinstance(mine, torch.Tensor) and given.numel() == mine.numel():
                if not torch.equal(given.flatten(), mine.to(given.device, given.dtype).flatten()):
                    self._foreign = "its pixel values differ from the session's (other images?)"

    def run(self, sequences: torch.Tensor) -> ProbeRun:
        raise CaptureError("a batch session gives one run per item: call session.runs(sequences)")

    def runs(self, sequences: torch.Tensor, eos_token_id: int | Sequence[int] | None = None) -> list[ProbeRun]:
        """One :class:`ProbeRun` per item from what the generation inside returned: ``sequences`` ``[B, P + T]``
        (the padded prompts, then the new ids). Each item's answer ends at its first end-of-sequence token
        (``eos_token_id``, default the model's generation config), which it keeps; nothing after it is kept.

        Raises:
            CaptureError: the session is still open; the sequences are not the batch generated inside (batch size,
                prompt ids, fed-back tokens); the recorded steps do not match the new tokens.
        """
        from .batching import answer_lengths

        if not self._done:
            raise CaptureError("leave the `with session:` block before asking for the runs")
        if hasattr(sequences, "sequences"):
            sequences = sequences.sequences
        sequences = torch.as_tensor(sequences)
        if sequences.is_floating_point() or sequences.is_complex() or sequences.dtype == torch.bool:
            raise CaptureError(f"sequences must be token ids (an integer tensor [B, P + T]), got dtype "
                               f"{sequences.dtype}: pass what generate returned")
        own = self.inputs["input_ids"].cpu()
        batch, prompt_len = own.shape
        if sequences.ndim != 2 or sequences.shape[0] != batch or not torch.equal(sequences[:, :prompt_len].cpu(),
                                                                                 own):
            raise CaptureError(f"sequences do not start with the session's {batch} padded prompts: pass what the "
                               "generation inside the session returned")
        if any(b != batch for b in self._batches):
            raise CaptureError(f"the generation inside the session ran batches of {sorted(set(self._batches))}, not "
                               f"{batch}: generate once with session.inputs, num_beams=1, num_return_sequences=1")
        if self._foreign:
            raise CaptureError(f"the generation inside the session was not given the session's inputs ({self._foreign}"
                               "): generate with session.inputs")
        new = sequences[:, prompt_len:].cpu()
        if self.capture.num_steps != new.shape[1]:
            raise CaptureError(f"recorded {self.capture.num_steps} steps for {new.shape[1]} new tokens: generate "
                               "exactly once inside the session, with these inputs")
        if self._fed:
            fed = torch.cat(self._fed, dim=1)
            if not torch.equal(fed, new[:, :fed.shape[1]].to(fed.dtype)):
                raise CaptureError("the ids given to runs() are not the ones generated inside the session")
        if eos_token_id is None:
            eos_token_id = getattr(self.probe.model.generation_config, "eos_token_id", None)
        eos = [] if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
        out = []
        for b, ((prompt, pils, videos, inputs, layout), n) in enumerate(zip(self._prepared, answer_lengths(new, eos))):
            run = self.probe._make_run(new[b, :n], self.capture.maps(b)[:n], layout, self.capture, "predicting",
                                       prompt, inputs["input_ids"], pils, videos, {"max_new_tokens": new.shape[1]})
            run.meta["batch"] = {"size": batch, "index": b, "padding": int(self._pads[b])}
            out.append(run)
        return out


#: the attribute names of vision encoders in transformers' image-text-to-text classes
_TOWER_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder")


def _vision_tower(model: torch.nn.Module) -> torch.nn.Module | None:
    """The model's vision encoder (the shallowest submodule with one of :data:`_TOWER_NAMES`), or None."""
    found = [(name.count("."), module) for name, module in model.named_modules()
             if name.rsplit(".", 1)[-1] in _TOWER_NAMES]
    return min(found, key=lambda x: x[0])[1] if found else None


def _load_frames(video: Any) -> list[Image.Image]:
    """A video's frames as PIL images of one size (from a list of frames or a ``[F, H, W, 3]`` array)."""
    if isinstance(video, (str, os.PathLike)):
        raise ValueError(f"video={str(video)!r}: pass the decoded frames (a list of images or a [F, H, W, 3] "
                         "array); emergence does not decode video files")
    shape = getattr(video, "shape", None)
    if shape is not None and len(shape) != 4:
        raise ValueError(f"video= takes a [F, H, W, 3] array or a list of frames; got an array of shape "
                         f"{tuple(shape)} (one frame [H, W, 3] is an image: pass image=..., or video=[frame])")
    frames = list(video) if shape is None else [video[i] for i in range(shape[0])]
    if not frames:
        raise ValueError("video holds no frame")
    if any(isinstance(f, (list, tuple)) for f in frames):
        raise ValueError("video= takes ONE video (a list of frames); got a list of lists: one video per prompt is "
                         "supported")
    pils = [load_image(f) for f in frames]
    sizes = {(p.height, p.width) for p in pils}
    if len(sizes) != 1:
        raise ValueError(f"the video's frames have different sizes {sorted(sizes)}; all frames must be one size")
    return pils


def _versions() -> dict[str, str]:
    import transformers

    from ._version import __version__

    return {"emergence": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
