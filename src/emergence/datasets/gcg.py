"""GranD-f's Grounded Conversation Generation (GCG) ground truth: read and write its folders.

Ground truth, per split (``val`` / ``test``), in one folder:

- ``{split}_gcg_coco_mask_gt.json``: COCO instances (``images``; ``annotations`` with ``image_id``, an RLE or polygon
  ``segmentation``, category 1), one annotation per grounded phrase, in phrase order;
- ``{split}_gcg_coco_caption_gt.json``: COCO captions (``images``; ``annotations`` with ``image_id``, ``caption`` and
  ``labels``: the grounded phrases, in the order of that image's masks).

Scoring predictions against it: :mod:`emergence.sweep.gcg`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GcgImage", "load_gcg", "write_gcg"]


@dataclass
class GcgImage:
    """One GCG ground-truth image: ``masks`` ``[N, H, W]`` bool, one per phrase of ``phrases`` (same order)."""

    image_id: Any
    file_name: str
    caption: str
    phrases: list[str]
    masks: np.ndarray
    path: Path | None = None


def load_gcg(root: str | os.PathLike, split: str = "val", images: str | os.PathLike | None = None) -> list[GcgImage]:
    """The GCG ground truth of ``split`` from a GranD-f annotation folder (module docstring).

    Raises:
        DatasetError: a file is missing or unreadable, or an image's phrases and masks do not pair up.
    """
    from .base import DatasetError
    from .masks import decode_segmentation

    if split not in ("val", "test"):
        raise DatasetError(f"split={split!r}: GCG has the splits 'val' and 'test'")
    root = Path(root)
    files = {kind: root / f"{split}_gcg_coco_{kind}_gt.json" for kind in ("mask", "caption")}
    docs = {}
    for kind, path in files.items():
        if not path.is_file():
            raise DatasetError(f"{path} is missing: a GranD-f GCG folder holds {split}_gcg_coco_mask_gt.json and "
                               f"{split}_gcg_coco_caption_gt.json")
        try:
            docs[kind] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path} is not readable JSON: {exc}") from exc
    def records(kind: str, key: str) -> list[dict[str, Any]]:
        doc = docs[kind]
        rows = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DatasetError(f"{files[kind]}: '{key}' must be a list of objects (a COCO-format file)")
        needed = "id" if key == "images" else "image_id"
        if any(needed not in r for r in rows):
            raise DatasetError(f"{files[kind]}: an entry of '{key}' has no {needed}")
        return rows

    def once(kind: str, ids: list[Any], what: str) -> None:
        seen: set[Any] = set()
        for i in ids:
            if i in seen:
                raise DatasetError(f"{files[kind]}: image id {i!r} has more than one {what}; each must be listed once")
            seen.add(i)

    mask_images, caption_images = records("mask", "images"), records("caption", "images")
    once("mask", [im["id"] for im in mask_images], "image entry")
    once("caption", [im["id"] for im in caption_images], "image entry")
    sizes: dict[Any, tuple[int, int]] = {}
    for im in mask_images:
        h, w = im.get("height"), im.get("width")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (h, w)):
            raise DatasetError(f"{files['mask']}: image {im['id']!r} needs positive integer height and width "
                               f"(got {h!r} x {w!r})")
        sizes[im["id"]] = (h, w)
    masks: dict[Any, list[np.ndarray]] = {}
    for ann in records("mask", "annotations"):
        image_id = ann["image_id"]
        if image_id not in sizes:
            raise DatasetError(f"{files['mask']}: a mask of image {image_id!r}, which its 'images' do not list")
        h, w = sizes[image_id]
        try:
            mask = decode_segmentation(ann.get("segmentation"), h, w)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is this file's fault, named with the image
            raise DatasetError(f"{files['mask']}: image {image_id!r} has an unreadable segmentation "
                               f"({type(exc).__name__}: {exc})") from exc
        if mask.shape != (h, w):
            raise DatasetError(f"{files['mask']}: a mask of image {image_id!r} is {mask.shape[0]}x{mask.shape[1]}, "
                               f"but the image is {h}x{w}")
        masks.setdefault(image_id, []).append(mask)
    caption_anns = records("caption", "annotations")
    once("caption", [a["image_id"] for a in caption_anns], "caption annotation")
    captions = {ann["image_id"]: ann for ann in caption_anns}
    if not caption_images:
        raise DatasetError(f"{files['caption']} lists no image: the {split} split is empty")
    out = []
    for im in caption_images:
        ann = captions.get(im["id"])
        if ann is None:
            raise DatasetError(f"{files['caption']}: image {im['id']} has no caption annotation")
        labels = ann.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(p, str) for p in labels):
            raise DatasetError(f"{files['caption']}: image {im['id']!r}: 'labels' must be a list of phrase strings "
                               f"(got {type(labels).__name__})")
        phrases = list(labels)
        found = masks.get(im["id"], [])
        if len(found) != len(phrases):
            raise DatasetError(f"GCG image {im['id']}: {len(phrases)} phrases in {files['caption'].name} but "
                               f"{len(found)} masks in {files['mask'].name}; they must pair up in order")
        h, w = sizes.get(im["id"], (int(im.get("height", 0) or 0), int(im.get("width", 0) or 0)))
        stack = np.stack(found).astype(bool) if found else np.zeros((0, h, w), bool)
        path = Path(images) / str(im.get("file_name", "")) if images else None
        if path is not None and not path.is_file():
            raise DatasetError(f"GCG image {im['id']!r}: {path} does not exist (--images folder)")
        out.append(GcgImage(im["id"], str(im.get("file_name", "")), str(ann.get("caption", "")), phrases, stack, path))
    return out


def write_gcg(root: str | os.PathLike, split: str, records: Sequence[tuple[Any, Any, str, Sequence[str],
                                                                          Sequence[np.ndarray]]]) -> Path:
    """Write a GCG split in GranD-f's layout (the files :func:`load_gcg` reads) and its images.

    Args:
        root: a new or empty folder, or one this function wrote.
        records: ``(image_id, PIL image, caption, phrases, masks)`` per image, one ``[H, W]`` mask per phrase.

    Returns:
        ``root``; images are written to ``root / "images"``.
    """
    import io

    from .masks import encode_rle
    from ..files import atomic_write_bytes, atomic_write_json, claim_output_dir

    if split not in ("val", "test"):
        raise ValueError(f"split={split!r}: GCG has the splits 'val' and 'test'")
    root = claim_output_dir(root, "gcg")
    (root / "images").mkdir(exist_ok=True)
    images, masks, captions = [], [], []
    for image_id, picture, caption, phrases, phrase_masks in records:
        if len(phrases) != len(phrase_masks):
            raise ValueError(f"image {image_id}: {len(phrases)} phrases but {len(phrase_masks)} masks")
        name = f"{image_id}.png"
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        atomic_write_bytes(root / "images" / name, buf.getvalue())
        entry = {"id": image_id, "file_name": name, "height": picture.height, "width": picture.width}
        images.append(entry)
        for k, mask in enumerate(phrase_masks):
            masks.append({"id": len(masks) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                          "segmentation": encode_rle(np.asarray(mask, bool)), "area": int(np.asarray(mask).sum())})
        captions.append({"id": len(captions) + 1, "image_id": image_id, "caption": caption, "labels": list(phrases)})
    category = [{"id": 1, "name": "object"}]
    atomic_write_json(root / f"{split}_gcg_coco_mask_gt.json",
                      {"images": images, "annotations": masks, "categories": category})
    atomic_write_json(root / f"{split}_gcg_coco_caption_gt.json", {"images": images, "annotations": captions})
    return root
