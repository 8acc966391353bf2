"""RefCOCO-family (refer format), generic COCO json + image folder, our JSONL format, and the organism's ShapesBench."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np

from .base import Dataset, DatasetError, Sample, lazy_union, read_json
from .masks import decode_segmentation

__all__ = ["RefCOCO", "CocoJson", "JsonlDataset", "ShapesBench"]


class RefCOCO(Dataset):
    """RefCOCO / RefCOCO+ / RefCOCOg in the refer toolkit's layout: ``<root>/<name>/refs(<split_by>).p`` and
    ``<root>/<name>/instances.json``; one sample per referring sentence of the chosen split.

    Args:
        root: folder holding ``refcoco/``, ``refcoco+/``, ``refcocog/``.
        images: COCO train2014 image folder.
        name: ``"refcoco"``, ``"refcoco+"`` or ``"refcocog"``.
        split: ``"val"``, ``"testA"``, ``"testB"``, ``"test"``, ``"train"``.
        split_by: ``"unc"`` (RefCOCO, RefCOCO+), ``"umd"`` or ``"google"`` (RefCOCOg); default by name.
    """

    def __init__(self, root: str | os.PathLike, images: str | os.PathLike | None = None, name: str = "refcoco",
                 split: str = "val", split_by: str | None = None) -> None:
        super().__init__()
        self.name = name
        split_by = split_by or ("umd" if name == "refcocog" else "unc")
        folder = Path(root) / name
        refs_path = folder / f"refs({split_by}).p"
        if not refs_path.exists():
            raise DatasetError(f"refer file not found: {str(refs_path)!r} (expected the refer toolkit's layout)")
        try:
            with open(refs_path, "rb") as fh:
                refs = pickle.load(fh)
        except (pickle.UnpicklingError, EOFError) as exc:
            raise DatasetError(f"cannot read {str(refs_path)!r}: {exc}") from exc
        self.sources = [refs_path, folder / "instances.json"]
        inst = read_json(self.sources[1])
        image_dir = Path(images) if images is not None else None
        try:
            anns = {a["id"]: a for a in inst["annotations"]}
            images_by_id = {im["id"]: im for im in inst["images"]}
            for ref in refs:
                if ref.get("split") != split:
                    continue
                ann = anns.get(ref["ann_id"])
                im = images_by_id.get(ref["image_id"])
                if ann is None or im is None:
                    raise DatasetError(f"{refs_path}: ref {ref.get('ref_id')} points to a missing annotation or image")
                image_path = image_dir / im["file_name"] if image_dir is not None else None
                for k, sent in enumerate(ref["sentences"]):
                    self.samples.append(Sample(
                        id=f"{ref['ref_id']}/{k}", dataset=name, expression=sent["sent"], image_path=image_path,
                        meta={"ref_id": ref["ref_id"], "ann_id": ref["ann_id"], "file_name": im["file_name"],
                              "category_id": ref.get("category_id")},
                        mask_fn=_sized_union([ann["segmentation"]], im, image_path),
                    ))
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"{refs_path} / instances.json are not in the refer toolkit's format: missing field "
                               f"{exc}") from exc
        self._check_unique_ids(str(refs_path))


class CocoJson(Dataset):
    """A COCO instances json + image folder: one sample per (image, category) present; the expression is the
    category name and the ground truth the union of that category's instances."""

    def __init__(self, annotation_file: str | os.PathLike, images: str | os.PathLike | None = None,
                 name: str = "coco") -> None:
        super().__init__()
        self.name = name
        self.sources = [Path(annotation_file)]
        data = read_json(self.sources[0])
        image_dir = Path(images) if images is not None else None
        try:
            cats = {c["id"]: c["name"] for c in data.get("categories", [])}
            images_by_id = {im["id"]: im for im in data["images"]}
            groups: dict[tuple[int, int], list] = {}
            for a in data["annotations"]:
                groups.setdefault((a["image_id"], a["category_id"]), []).append(a["segmentation"])
            for (image_id, cat), segs in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
                im = images_by_id.get(image_id)
                if im is None:
                    raise DatasetError(f"{annotation_file}: annotation for missing image id {image_id}")
                image_path = image_dir / im["file_name"] if image_dir is not None else None
                self.samples.append(Sample(
                    id=f"{image_id}/{cat}", dataset=name, expression=cats.get(cat, str(cat)), image_path=image_path,
                    meta={"image_id": image_id, "category_id": cat, "file_name": im["file_name"]},
                    mask_fn=_sized_union(segs, im, image_path),
                ))
        except (KeyError, TypeError, AttributeError) as exc:
            raise DatasetError(f"{annotation_file} is not a COCO instances file: missing or malformed field {exc}") \
                from exc
        self._check_unique_ids(str(annotation_file))


def _sized_union(segmentations: list, image_info: dict, image_path: Path | None):
    """:func:`lazy_union` at the image entry's ``height``/``width``; where the entry has none, at the image file's
    size (read from its header when the mask is built)."""
    h, w = image_info.get("height"), image_info.get("width")
    if h is not None and w is not None:
        return lazy_union(segmentations, int(h), int(w))

    def build() -> np.ndarray:
        if image_path is None or not image_path.exists():
            raise ValueError(f"the image entry {image_info.get('file_name')!r} has no height/width and the image file "
                             f"{str(image_path) if image_path else '(no image folder given)'} is not available")
        from ..images import image_size

        return lazy_union(segmentations, *image_size(image_path))()

    return build


class JsonlDataset(Dataset):
    """Our own format: one JSON object per line with ``id``, ``image`` (path, relative to the file), ``expression``
    and optionally ``mask`` (a mask image path; nonzero = object), ``polygons`` or ``rle``, ``question``,
    ``options``, ``answer``, ``pair``, ``absent`` and any ``meta``."""

    def __init__(self, path: str | os.PathLike, name: str | None = None) -> None:
        super().__init__()
        path = Path(path)
        self.name = name or path.stem
        if not path.exists():
            raise DatasetError(f"dataset file not found: {str(path)!r}")
        self.sources = [path]
        seen = set()
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
            missing = [k for k in ("id", "image") if k not in rec]
            if missing:
                raise DatasetError(f"{path}:{lineno}: missing field(s) {missing}")
            sid = str(rec["id"])
            if sid in seen:
                raise DatasetError(f"{path}:{lineno}: duplicate id {sid!r}")
            seen.add(sid)
            image_path = (path.parent / rec["image"]).resolve()
            self.samples.append(Sample(
                id=sid, dataset=self.name, expression=rec.get("expression"), image_path=image_path,
                question=rec.get("question"), options=tuple(rec["options"]) if rec.get("options") else None,
                answer=rec.get("answer"), pair=rec.get("pair"), absent=bool(rec.get("absent", False)),
                meta=rec.get("meta", {}), mask_fn=_jsonl_mask(rec, path.parent, image_path),
            ))


def _jsonl_mask(rec: dict, base: Path, image_path: Path):
    if rec.get("absent") and not any(k in rec for k in ("mask", "polygons", "rle")):
        def empty() -> np.ndarray:
            from ..images import image_size

            return np.zeros(image_size(image_path), bool)

        return empty
    if "mask" in rec:
        def from_file() -> np.ndarray:
            from ..images import load_mask

            return load_mask(base / rec["mask"])

        return from_file
    if "rle" in rec:
        return lambda: decode_segmentation(rec["rle"])
    if "polygons" in rec:
        def from_polygons() -> np.ndarray:
            from ..images import image_size

            return decode_segmentation(rec["polygons"], *image_size(image_path))

        return from_polygons
    return None


class ShapesBench(Dataset):
    """``n`` deterministic organism scenes of ``ShapesWorld(seed)``: each scene's referring expression (see
    :func:`emergence.organism.reading.scene_expression`) with its exact mask, and its first two-choice question."""

    def __init__(self, n: int = 100, seed: int = 11) -> None:
        super().__init__()
        from ..organism import ShapesWorld
        from ..organism.reading import scene_expression

        self.name = f"shapes-{seed}"
        world = ShapesWorld(seed)
        for i in range(n):
            scene = world.scene(i)
            expr = scene_expression(scene)
            q = scene.questions()[0]
            self.samples.append(Sample(
                id=str(i), dataset=self.name, expression=expr.text, question=q.text, options=q.options,
                answer=q.answer, meta={"target": expr.category, "seed": seed},
                mask_fn=(lambda m=expr.mask: m), image_fn=(lambda s=scene: s.image),
            ))
        from ..organism.reading import organism_judge

        self.judge = organism_judge()
