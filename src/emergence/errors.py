"""Exceptions raised by emergence. Every one names the bad value and says how to fix it."""

from __future__ import annotations

__all__ = [
    "EmergenceError",
    "UnsupportedModelError",
    "ImageLoadError",
    "CaptureError",
    "LayoutError",
    "MissingDependencyError",
    "ModelLoadError",
    "check_device",
]


class EmergenceError(Exception):
    """Base class of all errors raised by emergence."""


class UnsupportedModelError(EmergenceError, ValueError):
    """The model cannot be probed (text-only, unknown layout, unsupported attention backend)."""


class ImageLoadError(EmergenceError, ValueError):
    """An image is missing, unreadable or corrupt."""


class CaptureError(EmergenceError, RuntimeError):
    """Attention capture could not run on these inputs."""


class LayoutError(EmergenceError, ValueError):
    """The visual-token layout does not fit the inputs (token counts, grids, image sizes)."""


class MissingDependencyError(EmergenceError, ImportError):
    """An optional dependency is needed for this feature; the message names the extra to install."""


class ModelLoadError(EmergenceError, OSError):
    """A model, processor or segmenter could not be loaded from the given id or folder."""


def check_device(device: object) -> None:
    """Refuse a device this torch build cannot use, naming it and what is available.

    Raises:
        EmergenceError: unparsable device, or a CUDA / MPS device without that backend.
    """
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise EmergenceError(f"device {device!r} is not a torch device (use cpu, cuda, cuda:1, mps): {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise EmergenceError(f"device {device!r}: this torch build ({torch.__version__}) has no usable CUDA GPU; "
                                 "use --device cpu, or install a CUDA build of torch on a GPU machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise EmergenceError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise EmergenceError(f"device {device!r}: MPS is not available on this machine; use --device cpu")


def require(module: str, extra: str, feature: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the optional package {module!r}. Install it with: pip install 'emergence[{extra}]'"
        ) from exc
