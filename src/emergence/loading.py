"""From a name to a :class:`~emergence.Probe`: a probe spec (:mod:`emergence.specs`), a hub id or local folder, a
``builtin:`` model the package builds itself, or -- with none of them -- the shipped model organism.

    from emergence import load_probe, load_spec
    probe = load_probe(load_spec("llava-1.5-7b"), model="/models/llava-1.5-7b-hf", device="cuda")
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from .specs import ProbeSpec, load_spec

__all__ = ["BUILTIN_MODELS", "BUILTIN_ORGANISMS", "load_probe", "resolve_probe"]

_BUILTIN = "builtin:"
#: ``builtin:<name>`` models a spec may name: an explicit table of :mod:`emergence.testing` builders, so a spec
#: cannot reach any other function.
BUILTIN_MODELS = {"tiny_llava": "tiny_llava"}
#: ``builtin:<name>`` of the shipped model organisms -> their design (:data:`emergence.organism.model.DESIGNS`)
BUILTIN_ORGANISMS = {"organism": "llava", "organism-fuyu": "fuyu"}


def load_probe(spec: ProbeSpec, model: str | os.PathLike | None = None, device: str | None = None,
               dtype: str | None = None) -> Any:
    """Build the :class:`~emergence.Probe` a spec describes.

    Args:
        spec: the probe spec (:func:`emergence.load_spec`).
        model: a local folder to load instead of ``spec.hf_id`` (offline machines).
        device: ``"cuda"``, ``"cpu"``...; default CPU.
        dtype: override the spec's dtype (default: the spec's on GPU, float32 on CPU).

    Raises:
        ValueError: a ``builtin:`` name outside :data:`BUILTIN_MODELS` and :data:`BUILTIN_ORGANISMS`.
    """
    import torch

    from .probe import Probe

    source = str(model) if model is not None else spec.hf_id
    if source.startswith(_BUILTIN):
        name = source[len(_BUILTIN):]
        if name in BUILTIN_ORGANISMS:
            from .organism.model import organism_dir

            probe = Probe.from_pretrained(organism_dir(BUILTIN_ORGANISMS[name]), dtype="float32", device=device)
            probe.name = source
            return probe
        if name not in BUILTIN_MODELS:
            known = sorted([*BUILTIN_MODELS, *BUILTIN_ORGANISMS])
            raise ValueError(f"unknown builtin model {source!r}; built-in models: "
                             f"{', '.join(_BUILTIN + k for k in known)}")
        from . import testing

        mdl, proc = getattr(testing, BUILTIN_MODELS[name])(attn_implementation=spec.attn_implementation)
        probe = Probe(mdl, proc)
        probe.name = source
        return probe
    on_gpu = device is not None and not str(device).startswith("cpu")
    chosen = dtype or (spec.dtype if on_gpu else "float32")
    probe = Probe.from_pretrained(source, dtype=getattr(torch, chosen), device=device,
                                  attn_implementation=spec.attn_implementation)
    if spec.architecture and type(probe.model).__name__ != spec.architecture:
        warnings.warn(f"probe spec {spec.name!r} expects {spec.architecture} but {source!r} loaded "
                      f"{type(probe.model).__name__}", stacklevel=2)
    return probe


def resolve_probe(probe: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
                  local_model: str | os.PathLike | None = None, device: str | None = None,
                  dtype: str | None = None) -> tuple[Any, ProbeSpec | None]:
    """The probe the CLI and sweeps use: from a spec name or .toml path (``probe``, optionally loading
    ``local_model`` instead of its hub id), from a hub id or folder (``model``), or -- with neither -- the shipped
    model organism. Returns ``(Probe, spec)``; ``spec`` is ``None`` for the organism.

    Raises:
        ValueError: both ``probe`` and ``model``; ``local_model`` without ``probe``.
    """
    if probe is not None and model is not None:
        raise ValueError("give a probe spec or a model, not both")
    if local_model is not None and probe is None:
        raise ValueError("--local-model / local_model goes with a probe spec (it replaces the spec's hub id)")
    if probe is None and model is None:
        from .organism.model import ORGANISM_DIR
        from .probe import Probe

        return Probe.from_pretrained(ORGANISM_DIR, dtype="float32", device=device), None
    spec = load_spec(probe) if probe is not None else ProbeSpec(name=str(model), hf_id=str(model),
                                                                dtype=dtype or "bfloat16")
    return load_probe(spec, model=local_model, device=device, dtype=dtype), spec
