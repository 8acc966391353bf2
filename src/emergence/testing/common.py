"""What the tiny models share: the word-level tokenizer, small text / vision configs, seeded weights, the image-processor backend switch and processor helpers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ..wordlevel import word_level_tokenizer

__all__ = [
    "IMAGE_BACKENDS", "with_image_backend", "WORDS", "make_tokenizer", "llama_text", "cohere2_text", "clip_vision",
    "siglip_vision", "init_weights", "source_functions", "with_call_kwargs",
]


#: transformers' image-processor backends: the PIL classes (``XImageProcessorPil``, what the tiny builders use, and
#: what transformers picks without torchvision) and the torchvision ones (``XImageProcessor``, its default with it)
IMAGE_BACKENDS = ("pil", "torchvision")


def with_image_backend(processor: Any, backend: str) -> Any:
    """``processor`` (a shallow copy) whose image processor is transformers' ``backend`` class of the same family,
    built from the same settings: ``"pil"`` returns ``processor`` unchanged; ``"torchvision"`` swaps
    ``XImageProcessorPil`` for ``XImageProcessor``.

    Raises:
        LookupError: the processor's image processor is not a transformers PIL class with a torchvision twin (a
            stand-in of this module, or a family with one backend only).
        ImportError: torchvision is absent.
    """
    import copy

    import transformers

    if backend not in IMAGE_BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {IMAGE_BACKENDS}")
    if backend == "pil":
        return processor
    if isinstance(processor, with_call_kwargs):  # swap inside the wrapper, keep its call keywords
        return with_call_kwargs(with_image_backend(processor._processor, backend), **processor._kwargs)
    import torchvision  # noqa: F401  (the torchvision classes fail later and less clearly without it)

    pil = getattr(processor, "image_processor", None)
    name = type(pil).__name__
    twin = getattr(transformers, name.removesuffix("Pil"), None) if name.endswith("Pil") else None
    if twin is None or not type(pil).__module__.startswith("transformers."):
        raise LookupError(f"{name} has no torchvision twin in transformers (a stand-in, or one backend only)")
    settings = {k: v for k, v in pil.to_dict().items()
                if not k.startswith("_") and k not in ("image_processor_type", "processor_class", "backend")}
    out = copy.copy(processor)
    out.image_processor = twin(**settings)
    return out

WORDS = (
    "a an the is are of in on at to and with left right top bottom above below next red green blue yellow purple "
    "orange white black gray circle square triangle star house roof flag pole mug handle small large big tiny "
    "shape object image picture scene background plain striped dotted there it this that what where which describe "
    "color colour shape segment show find identify one two three open closed full empty . , ? ! : ;"
).split()


def make_tokenizer(extra_special: Sequence[str] = (), words: Sequence[str] = WORDS,
                   named: dict[str, str] | None = None) -> Any:
    """The test vocabulary as a word-level tokenizer (see :func:`emergence.wordlevel.word_level_tokenizer`)."""
    return word_level_tokenizer(words, extra_special, named)


def llama_text(vocab: int, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2, **kw) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=2048,
        **kw,
    )


def cohere2_text(tokenizer: Any, sliding_window: int) -> dict[str, Any]:
    """A two-layer Cohere2 decoder config (one sliding-window layer, one full), as a dict for a VLM config."""
    return dict(model_type="cohere2", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                sliding_window=sliding_window, layer_types=["sliding_attention", "full_attention"],
                max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def clip_vision(image_size: int, patch: int, local: bool) -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1 if local else 2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )


def siglip_vision(image_size: int, patch: int, layers: int) -> dict[str, Any]:
    """A tiny SigLIP vision tower config (no CLS token); ``layers=0`` keeps features local to each patch."""
    return dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                num_attention_heads=4, image_size=image_size, patch_size=patch)


def init_weights(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2 if p.ndim > 1 else 0.02)
    return model.eval()


def source_functions(module: str, names: Sequence[str]) -> dict[str, Any]:
    """Top-level functions of a transformers module, executed from its source file without importing the module
    (modules of torchvision-only processors cannot be imported here). Their globals: ``math``, ``np``, ``torch``,
    ``defaultdict``, ``lru_cache``, ``SizeDict`` and the other functions loaded."""
    import ast
    import importlib.util
    from collections import defaultdict
    from functools import lru_cache
    from pathlib import Path

    import numpy as np
    from transformers.image_utils import SizeDict

    root = Path(importlib.util.find_spec("transformers").origin).parent
    path = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
    tree = ast.parse(path.read_text())
    defs = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = set(names) - {d.name for d in defs}
    if missing:
        raise LookupError(f"{module} does not define {sorted(missing)} at top level")
    namespace: dict[str, Any] = {"math": math, "np": np, "torch": torch, "defaultdict": defaultdict,
                                 "lru_cache": lru_cache, "SizeDict": SizeDict}
    exec(compile(ast.Module(body=defs, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return {name: namespace[name] for name in names}


class with_call_kwargs:  # noqa: N801 - used like a function
    """A processor whose every call carries extra keyword arguments (as a user passes ``do_pan_and_scan=True``)."""

    def __init__(self, processor: Any, **kwargs: Any) -> None:
        self._processor, self._kwargs = processor, kwargs

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._processor(*args, **{**self._kwargs, **kwargs})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_processor", "_kwargs"):  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self._processor, name)
