"""Declarative probe specs: one small TOML file per supported checkpoint family (the repository's ``probes/``).

A spec is data; :mod:`emergence.loading` turns it into a :class:`~emergence.Probe`. It says which checkpoint to
load, in which dtype and attention backend, how to phrase the prompt, and which layers to capture by default.
``emergence run --probe NAME`` and :func:`load_spec` find specs by name in, in order: the folders of
``$EMERGENCE_PROBES`` (``os.pathsep``-separated), the specs shipped in the wheel, and the repository's ``probes/``
folder (editable installs). A path to a ``.toml`` file works too.

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

__all__ = ["ProbeSpec", "load_spec", "list_specs", "spec_dirs"]

_DTYPES = ("float32", "float16", "bfloat16")
_KEEPS = ("heads", "layers", "mean")


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

    def load(self, *_args: Any, **_kwargs: Any) -> Any:
        """Removed: a spec is data. Load it with :func:`emergence.load_probe` (``load_probe(spec, model=...,
        device=..., dtype=...)``)."""
        from .errors import EmergenceError

        raise EmergenceError(f"ProbeSpec.load() moved: load probe spec {self.name!r} with "
                             "emergence.load_probe(spec, model=None, device=None, dtype=None)")


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
