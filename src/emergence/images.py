"""Image and mask loading with documented conversion rules and errors that name the file and the fix.

Images (:func:`load_image`) become 8-bit RGB ``PIL.Image`` objects **as a viewer shows them**:

* files and PIL images are turned upright by their EXIF orientation tag (a phone photo taken sideways is analysed
  and drawn the way it is displayed);
* 16-bit samples (PIL modes ``I;16*`` and ``I``, ``uint16`` arrays) are scaled by 255/65535; 32-bit float images
  (mode ``F``) follow the float rule; palette, grey, CMYK and alpha images are converted by PIL (alpha is dropped,
  as the models' processors do);
* arrays and tensors (``[H, W]``, ``[H, W, 3|4]`` or ``[3|4, H, W]``): ``bool`` -> 0 / 255; ``uint8`` as is;
  ``uint16`` scaled by 255/65535; other integer types must lie in 0..255; floating types (float16 / bfloat16 /
  float32 / float64) in [0, 1] are multiplied by 255, in [0, 255] (max > 1) used as is; negative values, values
  above the 8- or 16-bit range, NaN / infinity and non-numeric (object, complex, string) arrays are refused.

Masks (:func:`load_mask`) become ``[H, W]`` bool, True = object:

* integer and bool values: nonzero = object (a label map ``{0, 3}`` or ``{0, 100}`` is the object wherever it is
  nonzero); palette PNGs: palette index nonzero = object;
* colour masks (RGB files, ``[H, W, 3]`` arrays): any channel nonzero = object (a red, blue or white object on black);
* an alpha channel that is not fully opaque decides alone: alpha > 0 = object (a cut-out);
* floats: values in [0, 1] are probabilities, >= 0.5 = object; whole-number floats (0 / 255) follow the integer
  rule; negative values (logits), other fractional values and NaN are refused;
* ``[N, H, W]`` arrays are N instance masks: their union;
* JPEG mask files are read with a warning (lossy compression puts nonzero noise around the object).

An all-zero mask is a valid ground truth: it means the object is absent (the analyzer says so in its output).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import EmergenceError, ImageLoadError

__all__ = ["ImageLike", "MaskError", "image_digest", "image_size", "load_image", "load_mask"]

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]


class MaskError(EmergenceError, ValueError):
    """A mask is unreadable, of the wrong shape or size, or has values no conversion rule covers."""


def _open_file(path: Path, what: str, error: type[Exception]) -> Image.Image:
    """Open and fully load an image file, upright by its EXIF orientation."""
    if str(path).startswith(("http://", "https://")):
        raise error(f"{str(path)!r} is a URL; download it first and pass the local file path")
    if not path.exists():
        raise error(f"{what} file not found: {str(path)!r}. Check the path (relative to {os.getcwd()!r}).")
    if path.is_dir():
        raise error(f"{str(path)!r} is a directory, not an {what} file")
    try:
        with Image.open(path) as im:
            im.load()
            upright = ImageOps.exif_transpose(im) or im
            upright.format = im.format  # the transposed copy forgets it (masks warn about JPEG)
            return upright
    except Image.DecompressionBombError as exc:
        raise error(f"{what} {str(path)!r} is too large to load safely ({exc}). Downscale it, or raise "
                    "PIL.Image.MAX_IMAGE_PIXELS if you trust the file.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise error(
            f"cannot read {what} {str(path)!r}: {exc}. The file is corrupt or not an image format PIL can open "
            "(PNG, JPEG, WebP, BMP, TIFF...); re-export or re-download it."
        ) from exc


def _as_array(x: Any, error: type[Exception]) -> np.ndarray:
    """A numpy view of an array or tensor (bfloat16 / float16 tensors as float32)."""
    if hasattr(x, "detach"):  # torch tensor
        import torch

        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise error(f"an array of dtype {arr.dtype} cannot be read as pixels; pass numbers (uint8, uint16, bool or "
                    "floats in [0, 1])")
    return arr


def _to_uint8(arr: np.ndarray, what: str) -> np.ndarray:
    """The pixel rule of the module docstring: any numeric array -> uint8 of the same shape."""
    kind = arr.dtype.kind
    if kind == "b":
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    if arr.size == 0:
        raise ImageLoadError(f"the {what} is empty (shape {arr.shape})")
    lo, hi = arr.min(), arr.max()
    if kind in "iu":
        if lo < 0 or hi > 255:
            raise ImageLoadError(
                f"{what} of dtype {arr.dtype} has values in [{lo}, {hi}], outside 0..255; pass uint8 (0..255), "
                "uint16 (0..65535, scaled) or floats in [0, 1]"
            )
        return arr.astype(np.uint8)
    if not np.all(np.isfinite(arr)):
        raise ImageLoadError(f"the {what} contains NaN or infinity")
    if lo < 0:
        raise ImageLoadError(
            f"{what} of dtype {arr.dtype} has negative values (range [{lo:.3g}, {hi:.3g}]): it looks normalised. "
            "Undo the normalisation first (e.g. x * 0.5 + 0.5 for [-1, 1]) and pass values in [0, 1] or [0, 255]."
        )
    if hi > 255:
        raise ImageLoadError(f"{what} of dtype {arr.dtype} has values up to {hi:.4g}; float images must lie in [0, 1] "
                             "or [0, 255]")
    scale = 255.0 if hi <= 1.0 else 1.0
    return np.round(arr.astype(np.float64) * scale).astype(np.uint8)


def _pil_to_rgb(im: Image.Image, what: str) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageLoadError(f"{what} in 32-bit mode 'I' has values in [{arr.min()}, {arr.max()}], outside the "
                                 "16-bit range; convert it to 8- or 16-bit first")
        return Image.fromarray(_to_uint8(arr.astype(np.uint16), what)).convert("RGB")
    if im.mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(im), what)).convert("RGB")
    return im.convert("RGB")


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file as displayed (EXIF orientations 5-8 swap the stored width and height), read from
    its header only."""
    with Image.open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def image_digest(image: Image.Image) -> bytes:
    """An identity of an image's pixels: equal for two images with the same size, mode and pixels (two loads of one
    file), different otherwise. Used to embed an image once and to decode the prompts of its samples together."""
    import hashlib

    return hashlib.blake2b(image.tobytes(), digest_size=16, person=b"emergence-img").digest() + \
        repr((image.size, image.mode)).encode()


def load_image(image: ImageLike | Any) -> Image.Image:
    """Return an upright 8-bit RGB ``PIL.Image`` from a path, a PIL image, or an array / tensor (module docstring).

    Raises:
        ImageLoadError: the file is missing, unreadable, corrupt or too large; or the array has the wrong shape,
            dtype or value range (the message names the rule and the fix).
    """
    if isinstance(image, Image.Image):
        return _pil_to_rgb(ImageOps.exif_transpose(image) or image, "image")
    if isinstance(image, (str, os.PathLike)):
        return _pil_to_rgb(_open_file(Path(image), "image", ImageLoadError), f"image {str(image)!r}")
    if isinstance(image, np.ndarray) or type(image).__module__.startswith("torch"):
        arr = _as_array(image, ImageLoadError)
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
            arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)) or min(arr.shape[:2]) == 0:
            raise ImageLoadError(f"an image array must be [H, W], [H, W, 3] or [H, W, 4]; got shape {arr.shape}")
        return Image.fromarray(np.ascontiguousarray(_to_uint8(arr, "image array"))).convert("RGB")
    raise ImageLoadError(
        f"cannot use an object of type {type(image).__name__} as an image; pass a file path, a PIL.Image or an array"
    )


# ---------------------------------------------------------------------------------------------------- masks
def _binary(arr: np.ndarray, what: str) -> np.ndarray:
    """The 2-D value rule of the module docstring."""
    kind = arr.dtype.kind
    if kind == "b":
        return arr
    if kind in "iu":
        return arr != 0
    if not np.all(np.isfinite(arr)):
        raise MaskError(f"{what} contains NaN or infinity")
    if arr.size == 0:
        return arr.astype(bool)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0:
        raise MaskError(f"{what} has negative values (range [{lo:.3g}, {hi:.3g}]): it looks like logits. Threshold "
                        "it yourself (e.g. logits > 0) and pass a bool mask.")
    if hi <= 1.0:
        return arr >= 0.5
    if np.all(arr == np.round(arr)):
        return arr != 0
    raise MaskError(f"{what} holds fractional values up to {hi:.4g}; a float mask must be probabilities in [0, 1] or "
                    "whole numbers (nonzero = object)")


def _colour(arr: np.ndarray, what: str) -> np.ndarray:
    """``[H, W, 3|4]`` -> ``[H, W]``: alpha > 0 when the alpha channel has any transparency, else any channel set."""
    if arr.shape[-1] == 4:
        alpha = _binary(arr[..., 3], f"{what} (alpha channel)") if arr.dtype.kind == "f" else arr[..., 3] > 0
        full = arr[..., 3].max() if arr.size else 0
        if arr.size and (arr[..., 3] < full).any():
            return alpha
        arr = arr[..., :3]
    return _binary(arr, what).any(-1)


def _mask_from_pil(im: Image.Image, what: str) -> np.ndarray:
    if im.mode == "1":
        return np.asarray(im, dtype=bool)
    if im.mode == "P":
        if "transparency" in im.info:
            return _colour(np.asarray(im.convert("RGBA")), what)
        return np.asarray(im) != 0  # palette index: label-map convention
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _colour(np.asarray(im.convert("RGBA")), what)
    if im.mode in ("L", "I", "F") or im.mode.startswith("I;16"):
        return _binary(np.asarray(im), what)
    return _colour(np.asarray(im.convert("RGB")), what)


def load_mask(mask: Any, size: tuple[int, int] | None = None) -> np.ndarray:
    """A ``[H, W]`` bool mask (True = object) from a file, a PIL image, an array or a tensor (module docstring).

    Args:
        mask: ``[H, W]``, ``[H, W, 3|4]`` (colour) or ``[N, H, W]`` (instances, united); a PIL image; a mask file.
        size: the image's ``(H, W)``: decides between ``[H, W, 3]`` colour and ``[N, H, W]`` instances, and is
            checked.

    Raises:
        MaskError: unreadable file, unsupported shape or values, or a size other than ``size`` (names both).
    """
    from PIL import Image as PILImage

    what = "the mask"
    if isinstance(mask, (str, bytes)) or hasattr(mask, "__fspath__"):
        path = Path(os.fsdecode(mask))
        what = f"mask {str(path)!r}"
        im = _open_file(path, "mask", MaskError)
        if (im.format or "").upper() in ("JPEG", "MPO"):
            warnings.warn(f"{what} is a JPEG: lossy compression adds nonzero noise around the object, which counts "
                          "as object. Save masks as PNG.", stacklevel=2)
        arr = _mask_from_pil(im, what)
    elif isinstance(mask, PILImage.Image):
        arr = _mask_from_pil(ImageOps.exif_transpose(mask) or mask, what)
    else:
        arr = _as_array(mask, MaskError)
        if arr.ndim == 3:
            colour = arr.shape[-1] in (3, 4) and (size is None or tuple(arr.shape[:2]) == tuple(size))
            if colour:
                arr = _colour(arr, what)
            else:
                arr = np.stack([_binary(a, f"instance {i} of the mask") for i, a in enumerate(arr)]).any(0) \
                    if arr.shape[0] else np.zeros(arr.shape[1:], bool)
        elif arr.ndim == 2:
            arr = _binary(arr, what)
        else:
            raise MaskError(f"a mask must be [H, W], [H, W, 3|4] or [N, H, W]; got shape {arr.shape}")
    if size is not None and tuple(arr.shape) != tuple(size):
        raise MaskError(
            f"{what} is {arr.shape[1]}x{arr.shape[0]} (WxH) but the image is {size[1]}x{size[0]}; give the mask at "
            "the ORIGINAL image's size (resize it with nearest-neighbour sampling)"
        )
    return np.asarray(arr, dtype=bool)
