"""PixFoundation's paired benchmarks: PixMMVP and PixCV-Bench (annotations from MSiam/PixFoundation ``data/``;
images from the user's own folders)."""

from __future__ import annotations

import ast
import csv
import os
from pathlib import Path

import numpy as np

from .base import Dataset, DatasetError, Sample, lazy_union, read_json
from .masks import decode_segmentation

__all__ = ["PixMMVP", "PixCVBench", "parse_options"]


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """The data rows of an annotation CSV whose header names ``columns`` (in that order, possibly after an unnamed
    index column); rows are padded to the header's length only if they reach every named column.

    Raises:
        DatasetError: missing file, no header, a missing column, no data row, or a short row (names file and line).
    """
    if not path.exists():
        raise DatasetError(f"annotation file not found: {str(path)!r}")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [(n, row) for n, row in enumerate(csv.reader(fh), 1) if any(c.strip() for c in row)]
    if not rows:
        raise DatasetError(f"{str(path)!r} is empty; expected a header with columns {list(columns)}")
    header = [c.strip() for c in rows[0][1]]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetError(f"{str(path)!r}: missing column(s) {missing} in its header {header}")
    if len(rows) == 1:
        raise DatasetError(f"{str(path)!r} has a header but no data rows")
    need = max(header.index(c) for c in columns) + 1
    for n, row in rows[1:]:
        if len(row) < need:
            raise DatasetError(f"{str(path)!r} line {n}: {len(row)} fields, expected {len(header)} ({header})")
    return [row for _, row in rows[1:]]


def _coco_tables(path: Path, data: object) -> tuple[dict, dict[int, list[dict]]]:
    """``(images by file name, annotations by image id)`` of a COCO-style json, validated.

    Raises:
        DatasetError: missing keys, duplicate images, or an annotation whose image id has no image entry.
    """
    try:
        images = {im["file_name"]: im for im in data["images"]}
        ids = {int(im["id"]) for im in data["images"]}
        anns: dict[int, list[dict]] = {}
        for a in data["annotations"]:
            if int(a["image_id"]) not in ids:
                raise DatasetError(f"{str(path)!r}: annotation {a.get('id')} refers to image id {a['image_id']}, "
                                   "which has no entry in 'images'")
            a["segmentation"]  # noqa: B018 - every annotation needs one
            anns.setdefault(int(a["image_id"]), []).append(a)
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{str(path)!r} is not a COCO-style annotation file: missing field {exc}") from exc
    if len(images) != len(data["images"]):
        raise DatasetError(f"{str(path)!r}: two image entries share a file name")
    return images, anns


def _int(text: str, path: Path, column: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{str(path)!r}: {column} {text!r} is not an integer") from None


def parse_options(text: str) -> tuple[str, ...]:
    """``"(a) Open (b) Closed"`` -> ``("Open", "Closed")``."""
    import re

    parts = re.split(r"\(([a-z])\)\s*", text.strip())
    opts = [parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)]
    if not opts:
        raise ValueError(f"no (a)/(b) options in {text!r}")
    return tuple(opts)


class PixMMVP(Dataset):
    """PixMMVP: the 300 MMVP images (``1.jpg ... 300.jpg``, 224 x 224) with referring expressions, polygon masks and
    the MMVP questions (pairs (1, 2), (3, 4), ...).

    Args:
        annotations: folder with ``Objects.csv``, ``Segmentations.json``, ``visual_patterns.csv``.
        images: folder with ``1.jpg ... 300.jpg`` (optional: masks and questions load without it).

    ``absent`` samples (``Object == None``, 14 of them) and ``unannotated`` ones (an object is named but no polygon
    exists) both have an empty ground truth and are flagged.
    """

    name = "pixmmvp"

    def __init__(self, annotations: str | os.PathLike, images: str | os.PathLike | None = None) -> None:
        super().__init__()
        root = Path(annotations)
        self.sources = [root / "Objects.csv", root / "Segmentations.json", root / "visual_patterns.csv"]
        objects = _read_csv(self.sources[0], ("Index", "Object"))
        seg = read_json(self.sources[1])
        patterns = {}
        for r in _read_csv(self.sources[2], ("Index", "Question", "Options", "Correct Answer", "Pattern")):
            patterns[_int(r[1], self.sources[2], "Index")] = r
        images_by_name, anns = _coco_tables(self.sources[1], seg)
        image_dir = Path(images) if images is not None else None
        for row in objects:
            index = _int(row[0], self.sources[0], "Index")
            expression = ",".join(row[1:]).strip().replace('""', '"')
            if not expression:
                raise DatasetError(f"{self.sources[0]}: sample {index} has an empty Object (write None for an "
                                   "absent object)")
            name = f"{index}.jpg"
            info = images_by_name.get(name)
            if info is None:
                raise DatasetError(f"{root / 'Segmentations.json'}: no image entry for {name} (sample {index})")
            absent = expression == "None"
            polys = [a["segmentation"] for a in anns.get(int(info["id"]), [])]
            h, w = int(info["height"]), int(info["width"])
            q = patterns.get(index)
            self.samples.append(Sample(
                id=str(index), dataset=self.name, expression=None if absent else expression,
                image_path=image_dir / name if image_dir is not None else None,
                question=q[2] if q else None, options=parse_options(q[3]) if q else None,
                answer=q[4].strip() if q else None, pair=(index + 1) // 2, absent=absent,
                unannotated=not absent and not polys,
                meta={"pattern": q[5] if q else None, "width": w, "height": h,
                      "bboxes": [a["bbox"] for a in anns.get(int(info["id"]), [])], "file_name": name},
                mask_fn=lazy_union(polys, h, w),
            ))
        self._check_unique_ids(str(self.sources[0]))


def _rle_union(segs: list, sample: str, image_path: Path | None):
    """Union of RLE (dict or literal string) and polygon annotations. Polygons carry no size: it comes from the
    image's RLE annotations, else from the image file's header."""

    def build() -> np.ndarray:
        if not segs:
            raise ValueError(f"no annotation for sample {sample}")
        parsed = [ast.literal_eval(s) if isinstance(s, str) else s for s in segs]
        rles = [decode_segmentation(s) for s in parsed if isinstance(s, dict)]
        if len(rles) < len(parsed):
            if rles:
                h, w = rles[0].shape
            elif image_path is not None and image_path.exists():
                from ..images import image_size

                h, w = image_size(image_path)
            else:
                raise ValueError(f"its polygon annotation carries no image size and the image "
                                 f"{str(image_path) if image_path else '(no image folder given)'} is not available")
            rles += [decode_segmentation(s, h, w) for s in parsed if not isinstance(s, dict)]
        masks = rles
        shapes = {m.shape for m in masks}
        if len(shapes) > 1:
            raise ValueError(f"its instance masks have different sizes {sorted(shapes)}")
        return np.logical_or.reduce(masks)

    return build


class PixCVBench(Dataset):
    """PixCV-Bench: CV-Bench 2D images (ADE20K validation, COCO val2017) with object names and RLE masks.

    Args:
        annotations: folder with ``Objects.csv``, ``ADE20K/FinalSegmentations.json``, ``COCO/FinalSegmentations.json``.
        ade20k_images, coco_images: folders holding the images by file name (optional).
        splits: which of ``("ADE20K", "COCO")`` to load.

    The expression is the object name (the first ADE20K synonym; CV-Bench's object pairs joined with "and"); all
    names are in ``meta["objects"]``.
    """

    name = "pixcvbench"

    def __init__(self, annotations: str | os.PathLike, ade20k_images: str | os.PathLike | None = None,
                 coco_images: str | os.PathLike | None = None, splits: tuple[str, ...] = ("ADE20K", "COCO")) -> None:
        super().__init__()
        root = Path(annotations)
        bad = [s for s in splits if s not in ("ADE20K", "COCO")]
        if bad:
            raise ValueError(f"unknown PixCV-Bench splits {bad}; use 'ADE20K' and/or 'COCO'")
        self.sources = [root / "Objects.csv"]
        objects = _read_csv(self.sources[0], ("Id", "file", "Objects"))
        folders = {"ADE20K": ade20k_images, "COCO": coco_images}
        self.annotation_counts: dict[str, int] = {}
        for split in splits:
            path = root / split / "FinalSegmentations.json"
            self.sources.append(path)
            data = read_json(path)
            by_name, by_image = _coco_tables(path, data)
            anns = {k: [a["segmentation"] for a in v] for k, v in by_image.items()}
            self.annotation_counts[split] = len(data["annotations"])
            folder = Path(folders[split]) if folders[split] is not None else None
            for row in objects:
                file = row[2]
                if f"/{split}/" not in file:
                    continue
                base = file.rsplit("/", 1)[-1]
                info = by_name.get(base)
                if info is None:
                    raise DatasetError(f"{path}: no image entry for {base} (Objects.csv row {row[1]})")
                names = _object_names(row[3])
                segs = anns.get(int(info["id"]), [])
                sid = f"{split}/{row[1]}"
                image_path = folder / base if folder is not None else None
                self.samples.append(Sample(
                    id=sid, dataset=self.name, expression=" and ".join(n.split(",")[0].strip() for n in names),
                    image_path=image_path, unannotated=not segs,
                    meta={"split": split, "objects": names, "file": file, "file_name": base,
                          "polygons": sum(isinstance(s, list) for s in segs)},
                    mask_fn=_rle_union(segs, sid, image_path),
                ))
        self._check_unique_ids(str(self.sources[0]))


def _object_names(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("("):
        try:
            value = ast.literal_eval(text)
            return [str(v) for v in (value if isinstance(value, tuple) else (value,))]
        except (ValueError, SyntaxError):
            pass
    return [text]
