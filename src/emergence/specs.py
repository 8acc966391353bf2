"""Declarative probe specs: one small TOML file per supported checkpoint family (the repository's ``probes/``).

A spec says which checkpoint to load, in which dtype and attention backend, how to phrase the prompt, and which
layers to capture by default. ``emergence run --probe NAME`` and :func:`load_spec` find specs by name in, in order:
the folders of ``$EMERGENCE_PROBES`` (``os.pathsep``-separated), the specs shipped in the wheel, and the
repository's ``probes/`` folder (editable installs). A path to a ``.toml`` file works too.

Example spec::

    name = "llava-1.5-7b"
    hf_id = "llava-hf/llava-1.5-7b-hf"
    architecture = "LlavaForConditionalGeneration"
    dtype = "float16"
    prompt_template = "{prompt}"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["ProbeSpec", "load_spec", "list_specs", "spec_dirs", "resolve_probe"]

_DTYPES = ("float32", "float16", "bfloat16")
_KEEPS = ("heads", "layers", "mean")
_BUILTIN = "builtin:"
#: ``builtin:<name>`` models a spec may name: an explicit table, so a spec cannot reach any other function.
BUILTIN_MODELS = {"tiny_llava": "emergence.testing:tiny_llava"}


@dataclass(frozen=True)
class ProbeSpec:
    """How to probe one checkpoint family.

    Attributes:
        name: short name used on the command line.
        hf_id: hub id or local folder; ``builtin:NAME`` for models the package builds itself (``builtin:tiny_llava``).
        architecture: the transformers model class (documentation and a load-time check).
        dtype: recommended dtype on GPU (CPU runs use float32).
        attn_implementation: backend for generation; the capture wraps it.
        prompt_template: how the user's prompt is phrased, ``{prompt}`` is replaced.
        max_new_tokens: default generation length.
        layers: default language-model layers to capture (``None`` = all).
        keep: default storage mode.
        notes: quirks worth knowing (processor behaviour, required extras).
    """

    name: str
    hf_id: str
    architecture: str = ""
    dtype: str = "bfloat16"
    attn_implementation: str = "sdpa"
    prompt_template: str = "{prompt}"
    max_new_tokens: int = 128
    layers: list[int] | None = None
    keep: str = "heads"
    notes: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"probe spec {self.name!r}: dtype={self.dtype!r} is not one of {_DTYPES}")
        if self.keep not in _KEEPS:
            raise ValueError(f"probe spec {self.name!r}: keep={self.keep!r} is not one of {_KEEPS}")
        if "{prompt}" not in self.prompt_template:
            raise ValueError(f"probe spec {self.name!r}: prompt_template must contain '{{prompt}}'")
        if self.max_new_tokens < 1:
            raise ValueError(f"probe spec {self.name!r}: max_new_tokens must be >= 1")

    def format_prompt(self, prompt: str) -> str:
        """The user's prompt phrased with ``prompt_template``."""
        return self.prompt_template.replace("{prompt}", prompt)

    def load(self, model: str | os.PathLike | None = None, device: str | None = None, dtype: str | None = None):
        """Build the :class:`~emergence.Probe`.

        Args:
            model: a local folder to load instead of ``hf_id`` (offline machines).
            device: ``"cuda"``, ``"cpu"``...; default CPU.
            dtype: override the spec's dtype (default: the spec's on GPU, float32 on CPU).
        """
        import torch

        from .probe import Probe

        source = str(model) if model is not None else self.hf_id
        if source.startswith(_BUILTIN):
            name = source[len(_BUILTIN):]
            if name not in BUILTIN_MODELS:
                raise ValueError(f"unknown builtin model {source!r}; built-in models: "
                                 f"{', '.join(_BUILTIN + k for k in sorted(BUILTIN_MODELS))}")
            module, _, attr = BUILTIN_MODELS[name].partition(":")
            import importlib

            factory = getattr(importlib.import_module(module), attr)
            mdl, proc = factory(attn_implementation=self.attn_implementation)
            probe = Probe(mdl, proc)
            probe.name = source
            return probe
        on_gpu = device is not None and not str(device).startswith("cpu")
        chosen = dtype or (self.dtype if on_gpu else "float32")
        probe = Probe.from_pretrained(source, dtype=getattr(torch, chosen), device=device,
                                      attn_implementation=self.attn_implementation)
        if self.architecture and type(probe.model).__name__ != self.architecture:
            import warnings

            warnings.warn(
                f"probe spec {self.name!r} expects {self.architecture} but {source!r} loaded "
                f"{type(probe.model).__name__}", stacklevel=2,
            )
        return probe


def spec_dirs() -> list[Path]:
    """Folders searched for ``NAME.toml``, in priority order."""
    dirs = [Path(p) for p in os.environ.get("EMERGENCE_PROBES", "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    dirs += [here / "_probes", here.parents[1] / "probes"]
    return [d for d in dirs if d.is_dir()]


def _read(path: Path) -> ProbeSpec:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"probe spec {str(path)!r} is not valid TOML: {exc}") from exc
    known = {f.name for f in fields(ProbeSpec)} - {"source"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"probe spec {str(path)!r} has unknown keys {unknown}; known keys are {sorted(known)}")
    missing = [k for k in ("name", "hf_id") if k not in data]
    if missing:
        raise ValueError(f"probe spec {str(path)!r} is missing {missing}")
    return ProbeSpec(**data, source=str(path))


def list_specs() -> dict[str, ProbeSpec]:
    """All specs found, by name (earlier folders win)."""
    specs: dict[str, ProbeSpec] = {}
    for folder in spec_dirs():
        for path in sorted(folder.glob("*.toml")):
            spec = _read(path)
            specs.setdefault(spec.name, spec)
    return specs


def load_spec(name_or_path: str | os.PathLike) -> ProbeSpec:
    """A spec by name (see :func:`spec_dirs`) or from a ``.toml`` path.

    Raises:
        KeyError: no spec of that name; the message lists the available ones.
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return _read(path)
    specs = list_specs()
    if str(name_or_path) not in specs:
        raise KeyError(
            f"no probe spec named {str(name_or_path)!r}. Available: {sorted(specs)}. Add your own as a TOML file "
            "in a folder listed in $EMERGENCE_PROBES, or pass the path of a .toml file."
        )
    return specs[str(name_or_path)]


def resolve_probe(probe: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
                  local_model: str | os.PathLike | None = None, device: str | None = None,
                  dtype: str | None = None) -> tuple[Any, ProbeSpec | None]:
    """The probe the CLI and sweeps use: from a spec name or .toml path (``probe``, optionally loading
    ``local_model`` instead of its hub id), from a hub id or folder (``model``), or — with neither — the shipped model
    organism. Returns ``(Probe, spec)``; ``spec`` is ``None`` for the organism."""
    if probe is not None and model is not None:
        raise ValueError("give a probe spec or a model, not both")
    if local_model is not None and probe is None:
        raise ValueError("local_model goes with a probe spec (it replaces the spec's hub id)")
    if probe is None and model is None:
        from .organism.model import ORGANISM_DIR
        from .probe import Probe

        return Probe.from_pretrained(ORGANISM_DIR, dtype="float32", device=device), None
    spec = load_spec(probe) if probe is not None else ProbeSpec(name=str(model), hf_id=str(model),
                                                                dtype=dtype or "bfloat16")
    return spec.load(model=local_model, device=device, dtype=dtype), spec
