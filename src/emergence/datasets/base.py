"""One sample type for every benchmark: image, prompt material, ground truth, ids and metadata."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmergenceError, ImageLoadError

__all__ = ["Sample", "Dataset", "DatasetError", "read_json", "lazy_union"]


class DatasetError(EmergenceError, ValueError):
    """An annotation or image of a dataset is missing, unreadable or inconsistent (names the file and sample)."""


def read_json(path: Path) -> Any:
    """An annotation file's JSON, or a :class:`DatasetError` naming the file."""
    import json

    if not path.exists():
        raise DatasetError(f"annotation file not found: {str(path)!r}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read annotation file {str(path)!r}: {exc}") from exc


def lazy_union(segmentations: list, height: int, width: int) -> Callable[[], np.ndarray]:
    """A function building the ``[height, width]`` union of COCO segmentations (polygons or RLE) when called."""
    from .masks import decode_segmentation

    def build() -> np.ndarray:
        out = np.zeros((height, width), bool)
        for seg in segmentations:
            out |= decode_segmentation(seg, height, width)
        return out

    return build


@dataclass
class Sample:
    """One benchmark item.

    Attributes:
        id: unique within its dataset (stable across runs: the sweep's resume key).
        dataset: dataset name.
        expression: what to ground (a referring expression or object name); ``None`` for VQA-only items.
        image_path: the image file (``None`` when ``image_fn`` builds it, e.g. ShapesBench).
        question, options, answer: VQA material (MMVP style), if any.
        pair: pair id for paired benchmarks (MMVP protocol), if any.
        absent: the queried object is not in the image (its ground truth is empty by design).
        unannotated: the image has no annotation at all (ground truth empty; flagged, not an error).
        meta: anything else (pattern, category names, source file names...).
    """

    id: str
    dataset: str
    expression: str | None
    image_path: Path | None = None
    question: str | None = None
    options: tuple[str, ...] | None = None
    answer: str | None = None
    pair: int | None = None
    absent: bool = False
    unannotated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    mask_fn: Callable[[], np.ndarray] | None = field(default=None, repr=False)
    image_fn: Callable[[], Any] | None = field(default=None, repr=False)

    def image(self) -> Any:
        """The RGB ``PIL.Image``.

        Raises:
            DatasetError: the image file is missing or unreadable (names the sample and the file).
        """
        from ..images import load_image

        if self.image_fn is not None:
            return self.image_fn()
        if self.image_path is None:
            raise DatasetError(f"sample {self.id!r} of {self.dataset} has no image path; pass the image folder")
        try:
            return load_image(self.image_path)
        except ImageLoadError as exc:
            raise DatasetError(f"sample {self.id!r} of {self.dataset}: {exc}") from exc

    def gt_mask(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """Ground truth ``[H, W]`` bool: the union of the instances (empty for absent or unannotated samples).

        Args:
            size: the image's ``(H, W)``; when given, a mask of another size raises.

        Raises:
            DatasetError: mask of the wrong size, or undecodable annotation (names the sample).
        """
        if self.mask_fn is None:
            raise DatasetError(f"sample {self.id!r} of {self.dataset} has no ground-truth mask")
        try:
            mask = np.asarray(self.mask_fn(), dtype=bool)
        except (ValueError, KeyError, SyntaxError, TypeError, OSError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DatasetError(f"sample {self.id!r} of {self.dataset}: cannot build its ground truth: {detail}") from exc
        if size is not None and tuple(mask.shape) != tuple(size):
            raise DatasetError(
                f"sample {self.id!r} of {self.dataset}: ground-truth mask is {mask.shape[1]}x{mask.shape[0]} (WxH) "
                f"but the image {self.image_path or ''} is {size[1]}x{size[0]}; the image file does not match the "
                "annotations (wrong or resized image)"
            )
        return mask


class Dataset:
    """A sized, indexable collection of :class:`Sample` (subclasses fill ``self.samples``).

    Attributes:
        samples: the samples, in a fixed order.
        sources: the annotation files the loader read (their bytes enter a sweep's dataset fingerprint).
        judge: a concept judge ``(unit_text, answer) -> category`` that knows this dataset's vocabulary, or ``None``
            (the analyzer's offline lexicon is used).
    """

    name = "dataset"

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.sources: list[Path] = []
        self.judge: Callable[[str, str], str] | None = None

    def _check_unique_ids(self, where: str) -> None:
        """Raise a :class:`DatasetError` naming the first duplicate sample id (ids are a sweep's resume keys)."""
        seen: set[str] = set()
        for s in self.samples:
            if s.id in seen:
                raise DatasetError(f"{where}: sample id {s.id!r} occurs more than once; ids must be unique (they key "
                                   "a sweep's rows and maps)")
            seen.add(s.id)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples)"
