"""Benchmarks behind one sample type: PixMMVP, PixCV-Bench, RefCOCO-family, COCO json, JSONL, ShapesBench.

    from emergence.datasets import load_dataset
    ds = load_dataset("pixmmvp", root="data/pixmmvp", images="MMVP/images")
    sample = ds[0]; sample.image(); sample.gt_mask(); sample.expression
"""

from __future__ import annotations

import os
from typing import Any

from .base import Dataset, DatasetError, Sample
from .generic import CocoJson, JsonlDataset, RefCOCO, ShapesBench
from .masks import decode_rle, decode_segmentation, encode_rle, polygons_to_mask, rle_counts
from .pixfoundation import PixCVBench, PixMMVP, parse_options
from .templates import GROUNDING_TEMPLATES, VQA_TEMPLATES, format_grounding, format_vqa, load_templates

__all__ = [
    "Dataset", "DatasetError", "Sample", "load_dataset", "dataset_options", "DATASETS",
    "PixMMVP", "PixCVBench", "RefCOCO", "CocoJson", "JsonlDataset", "ShapesBench",
    "decode_rle", "decode_segmentation", "encode_rle", "polygons_to_mask", "rle_counts", "parse_options",
    "GROUNDING_TEMPLATES", "VQA_TEMPLATES", "format_grounding", "format_vqa", "load_templates",
]

DATASETS = ("pixmmvp", "pixcvbench", "refcoco", "refcoco+", "refcocog", "coco", "jsonl", "shapes")


def load_dataset(name: str, root: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
                 **kwargs: Any) -> Dataset:
    """A dataset by name.

    Args:
        name: one of ``DATASETS``.
        root: annotation folder (pixmmvp, pixcvbench, refcoco*), annotation file (coco, jsonl); unused for shapes.
        images: image folder (pixcvbench: pass ``ade20k_images=``/``coco_images=`` instead).
        **kwargs: dataset-specific options (``n``/``seed`` for shapes, ``split`` for refcoco...).
    """
    if name == "shapes":
        return ShapesBench(**kwargs)
    if root is None:
        raise ValueError(f"dataset {name!r} needs root= (its annotation folder or file)")
    if name == "pixmmvp":
        return PixMMVP(root, images, **kwargs)
    if name == "pixcvbench":
        return PixCVBench(root, **kwargs)
    if name in ("refcoco", "refcoco+", "refcocog"):
        return RefCOCO(root, images, name=name, **kwargs)
    if name == "coco":
        return CocoJson(root, images, **kwargs)
    if name == "jsonl":
        return JsonlDataset(root, **kwargs)
    raise ValueError(f"unknown dataset {name!r}; use one of {DATASETS}")


def dataset_options(name: str, n: int | None = None, shapes_seed: int = 11, split: str | None = None,
                    ade20k_images: str | os.PathLike | None = None, coco_images: str | os.PathLike | None = None
                    ) -> tuple[dict[str, Any], int | None]:
    """``(load_dataset kwargs, sample limit)`` from the command line's dataset options: ``shapes`` builds ``n``
    scenes (100 by default) of world ``shapes_seed``; ``pixcvbench`` takes its two image folders and ``split`` as one
    of its splits; RefCOCO's ``split`` is passed on; every other dataset keeps its first ``n`` samples."""
    if name == "shapes":
        return {"n": n or 100, "seed": shapes_seed}, None
    if name == "pixcvbench":
        kwargs: dict[str, Any] = {"ade20k_images": ade20k_images, "coco_images": coco_images}
        if split:
            kwargs["splits"] = (split,)
        return kwargs, n
    return ({"split": split} if split else {}), n
