"""emergence: when, in the text a multimodal LLM writes, does pixel-level grounding emerge?

Public API (imported lazily, so ``import emergence`` and the CLI's ``--help`` stay fast)::

    from emergence import Probe, ProbeRun
    probe = Probe.from_pretrained("llava-hf/llava-1.5-7b-hf")
    run = probe.generate("cat.jpg", "Describe the image.")
    run.attention      # [T, L, H, V]
    run.heatmap(3)     # [H, W] in original image pixels
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    "Probe": ("emergence.probe", "Probe"),
    "ProbeRun": ("emergence.run", "ProbeRun"),
    "AttentionCapture": ("emergence.capture", "AttentionCapture"),
    "VisualLayout": ("emergence.layouts", "VisualLayout"),
    "View": ("emergence.layouts", "View"),
    "register_layout": ("emergence.adapters", "register_layout"),
    "Adapter": ("emergence.adapters", "Adapter"),
    "register_adapter": ("emergence.adapters", "register_adapter"),
    "build_layout": ("emergence.adapters", "build_layout"),
    "load_image": ("emergence.images", "load_image"),
    "ProbeSpec": ("emergence.specs", "ProbeSpec"),
    "load_spec": ("emergence.specs", "load_spec"),
    "load_probe": ("emergence.loading", "load_probe"),
    "analyze": ("emergence.analysis", "analyze"),
    "analyze_batch": ("emergence.analysis", "analyze_batch"),
    "EmergenceReport": ("emergence.analysis", "EmergenceReport"),
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .adapters import Adapter, build_layout, register_adapter, register_layout
    from .capture import AttentionCapture
    from .images import load_image
    from .layouts import View, VisualLayout
    from .probe import Probe
    from .run import ProbeRun
    from .analysis import EmergenceReport, analyze, analyze_batch
    from .loading import load_probe
    from .specs import ProbeSpec, load_spec


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emergence' has no attribute {name!r}")
