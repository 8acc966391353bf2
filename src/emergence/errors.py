"""Exceptions raised by emergence. Every one names the bad value and says how to fix it."""

from __future__ import annotations

__all__ = [
    "EmergenceError",
    "UnsupportedModelError",
    "ImageLoadError",
    "CaptureError",
    "LayoutError",
    "MissingDependencyError",
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


def require(module: str, extra: str, feature: str):
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the optional package {module!r}. Install it with: pip install 'emergence[{extra}]'"
        ) from exc
