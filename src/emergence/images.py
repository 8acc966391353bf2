"""Image loading with errors that name the file and the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageLoadError

__all__ = ["ImageLike", "load_image"]

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


def load_image(image: ImageLike | Any) -> Image.Image:
    """Return an RGB ``PIL.Image`` from a path, a PIL image, or an ``[H, W]`` / ``[H, W, 3|4]`` array.

    Float arrays are read as values in [0, 1]; integer arrays as 0..255.

    Raises:
        ImageLoadError: the file is missing, unreadable or corrupt, or the array has the wrong shape.
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if str(image).startswith(("http://", "https://")):
            raise ImageLoadError(f"{image!r} is a URL; download it first and pass the local file path")
        if not path.exists():
            raise ImageLoadError(f"image file not found: {str(path)!r}. Check the path (relative to {os.getcwd()!r}).")
        if path.is_dir():
            raise ImageLoadError(f"{str(path)!r} is a directory, not an image file")
        try:
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageLoadError(
                f"cannot read image {str(path)!r}: {exc}. The file is corrupt or not an image format PIL can open "
                "(PNG, JPEG, WebP, BMP, TIFF...); re-export or re-download it."
            ) from exc
    if isinstance(image, np.ndarray) or type(image).__module__.startswith("torch"):
        arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)) or min(arr.shape[:2]) == 0:
            raise ImageLoadError(f"an image array must be [H, W], [H, W, 3] or [H, W, 4]; got shape {arr.shape}")
        if np.issubdtype(arr.dtype, np.floating):
            if not np.all(np.isfinite(arr)):
                raise ImageLoadError("the image array contains NaN or infinity")
            arr = np.clip(arr * 255.0 if arr.max() <= 1.0 else arr, 0, 255).round()
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    raise ImageLoadError(
        f"cannot use an object of type {type(image).__name__} as an image; pass a file path, a PIL.Image or an array"
    )
