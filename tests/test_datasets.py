"""Dataset loaders on the real PixFoundation annotation files (skipped when ../shared/data/pixfoundation is absent),
plus the mask codecs, RefCOCO/COCO/JSONL formats on real files written here, and the prompt templates."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emergence.datasets import (
    CocoJson,
    DatasetError,
    JsonlDataset,
    PixCVBench,
    PixMMVP,
    RefCOCO,
    ShapesBench,
    decode_rle,
    encode_rle,
    format_grounding,
    format_vqa,
    load_templates,
    parse_options,
    polygons_to_mask,
    rle_counts,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pixfoundation"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"PixFoundation annotations not found at {DATA} "
                                                           "(the shared data folder of the build machines)")


def _compress(counts: list[int]) -> str:
    """COCO's compressed RLE string of ``counts`` (the encoder, to test our decoder against known runs)."""
    out = []
    for i, c in enumerate(counts):
        x = c - counts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = not ((x == 0 and not ch & 0x10) or (x == -1 and ch & 0x10))
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def test_rle_round_trip_and_compressed_strings():
    rng = np.random.RandomState(0)
    mask = np.zeros((37, 53), bool)
    mask[5:20, 10:40] = True
    mask[rng.rand(37, 53) < 0.05] = True
    rle = encode_rle(mask)
    assert np.array_equal(decode_rle(rle), mask)
    string = _compress(rle["counts"])
    assert rle_counts(string) == rle["counts"]
    assert np.array_equal(decode_rle({"size": [37, 53], "counts": string}), mask)
    with pytest.raises(ValueError, match="cover"):
        decode_rle({"size": [37, 54], "counts": rle["counts"]})


def test_polygon_rasterisation_fills_the_polygon():
    m = polygons_to_mask([[2, 2, 12, 2, 12, 8, 2, 8]], 10, 15)
    assert m.shape == (10, 15) and m[2:9, 2:13].all() and m.sum() == 7 * 11


# ---------------------------------------------------------------------------------------------------- PixMMVP


@needs_data
def test_pixmmvp_loads_300_samples_with_masks_matching_the_bboxes():
    ds = PixMMVP(DATA / "pixmmvp")
    assert len(ds) == 300
    absent = [s for s in ds if s.absent]
    assert len(absent) == 14 and all(s.expression is None and not s.gt_mask().any() for s in absent)
    assert {f"{s.id}.jpg" for s in absent} == set((DATA / "pixmmvp" / "meta_none.txt").read_text().split())
    unannotated = [s for s in ds if s.unannotated]
    assert len(unannotated) == 300 - 14 - 247 and all(not s.gt_mask().any() for s in unannotated)
    worst = 0
    for s in ds:
        m = s.gt_mask()
        assert m.shape == (224, 224)
        if s.meta["bboxes"]:
            ys, xs = np.nonzero(m)
            x0 = min(b[0] for b in s.meta["bboxes"])
            y0 = min(b[1] for b in s.meta["bboxes"])
            x1 = max(b[0] + b[2] for b in s.meta["bboxes"])
            y1 = max(b[1] + b[3] for b in s.meta["bboxes"])
            worst = max(worst, abs(xs.min() - x0), abs(ys.min() - y0), abs(xs.max() + 1 - x1), abs(ys.max() + 1 - y1))
    assert worst <= 3
    key = ds[8]
    assert key.expression == 'the key "Z"' and key.pair == 5
    assert ds[0].options == ("Open", "Closed") and ds[0].answer == "(a)" and ds[1].answer == "(b)"


@needs_data
def test_pixmmvp_images_are_read_and_checked_against_the_masks(tmp_path):
    ds = PixMMVP(DATA / "pixmmvp", images=tmp_path)
    Image.new("RGB", (224, 224)).save(tmp_path / "1.jpg")
    Image.new("RGB", (200, 224)).save(tmp_path / "2.jpg")
    (tmp_path / "3.jpg").write_bytes(b"not a jpeg")
    img = ds[0].image()
    assert ds[0].gt_mask((img.height, img.width)).shape == (224, 224)
    with pytest.raises(DatasetError, match=r"sample '2'.*200x224"):
        im2 = ds[1].image()
        ds[1].gt_mask((im2.height, im2.width))
    with pytest.raises(DatasetError, match=r"sample '3'.*3\.jpg"):
        ds[2].image()
    with pytest.raises(DatasetError, match=r"sample '4'.*not found"):
        ds[3].image()


def test_unreadable_annotations_name_the_file(tmp_path):
    (tmp_path / "Objects.csv").write_text("Index, Object\n1, a cat\n")
    (tmp_path / "Segmentations.json").write_text("{broken")
    (tmp_path / "visual_patterns.csv").write_text(",Index,Question,Options,Correct Answer,Pattern\n")
    with pytest.raises(DatasetError, match="Segmentations.json"):
        PixMMVP(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        PixMMVP(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------- PixCV-Bench


@needs_data
@pytest.mark.parametrize("split,count", [("ADE20K", 1366), ("COCO", 1672)])
def test_pixcvbench_decodes_every_rle_to_its_stated_size(split, count):
    data = json.loads((DATA / "pixcvbench" / split / "FinalSegmentations.json").read_text())
    assert len(data["annotations"]) == count
    from emergence.datasets import decode_segmentation

    rles = 0
    for a in data["annotations"]:
        seg = a["segmentation"]
        seg = ast.literal_eval(seg) if isinstance(seg, str) else seg
        if isinstance(seg, dict):
            m = decode_segmentation(seg)
            assert m.shape == tuple(seg["size"])
            rles += 1
    assert rles > 0.9 * count  # the rest are polygons (no size of their own)
    ds = PixCVBench(DATA / "pixcvbench", splits=(split,))
    assert ds.annotation_counts[split] == count


@needs_data
def test_pixcvbench_polygon_only_samples_take_their_size_from_the_image(tmp_path):
    ds = PixCVBench(DATA / "pixcvbench", coco_images=tmp_path, splits=("COCO",))
    poly_only = [s for s in ds if s.meta["polygons"] and not s.unannotated]
    sample = next(s for s in poly_only if _only_polygons(s))
    with pytest.raises(DatasetError, match="no image size"):
        sample.gt_mask()
    Image.new("RGB", (640, 480)).save(tmp_path / sample.meta["file_name"])
    assert sample.gt_mask().shape == (480, 640) and sample.gt_mask().any()
    pair = next(s for s in ds if len(s.meta["objects"]) == 2)
    assert " and " in pair.expression


def _only_polygons(sample) -> bool:
    try:
        sample.gt_mask()
        return False
    except DatasetError:
        return True


# ---------------------------------------------------------------------------------------------------- other formats


def _coco_files(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30)).save(images / "a.jpg")
    mask = np.zeros((30, 40), bool)
    mask[5:10, 20:30] = True
    inst = {
        "images": [{"id": 7, "file_name": "a.jpg", "height": 30, "width": 40}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 100, "image_id": 7, "category_id": 1, "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8]]},
            {"id": 101, "image_id": 7, "category_id": 2, "segmentation": {"size": [30, 40],
                                                                           "counts": _compress(encode_rle(mask)["counts"])}},
            {"id": 102, "image_id": 7, "category_id": 1, "segmentation": [[30, 20, 35, 20, 35, 25, 30, 25]]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(inst))
    return path, images


def test_coco_json_groups_instances_per_category(tmp_path):
    path, images = _coco_files(tmp_path)
    ds = CocoJson(path, images)
    assert [(s.expression, s.id) for s in ds] == [("cat", "7/1"), ("dog", "7/2")]
    cat = ds[0].gt_mask((30, 40))
    assert cat[2:9, 2:13].all() and cat[20:26, 30:36].all() and cat.sum() == 7 * 11 + 6 * 6
    assert ds[1].gt_mask().sum() == 50 and ds[1].image().size == (40, 30)


def test_refcoco_refer_format(tmp_path):
    path, images = _coco_files(tmp_path)
    folder = tmp_path / "refer" / "refcoco"
    folder.mkdir(parents=True)
    (folder / "instances.json").write_text(path.read_text())
    refs = [{"ref_id": 1, "ann_id": 101, "image_id": 7, "split": "val", "category_id": 2,
             "sentences": [{"sent": "the dog on the right"}, {"sent": "dog"}]},
            {"ref_id": 2, "ann_id": 100, "image_id": 7, "split": "train", "category_id": 1,
             "sentences": [{"sent": "cat"}]}]
    with open(folder / "refs(unc).p", "wb") as fh:
        pickle.dump(refs, fh)
    ds = RefCOCO(tmp_path / "refer", images, name="refcoco", split="val")
    assert [s.expression for s in ds] == ["the dog on the right", "dog"]
    assert ds[0].gt_mask().sum() == 50
    with pytest.raises(DatasetError, match=r"refs\(umd\)\.p"):
        RefCOCO(tmp_path / "refer", images, name="refcoco", split_by="umd")


def test_jsonl_format_and_its_errors(tmp_path):
    Image.new("RGB", (20, 10)).save(tmp_path / "x.png")
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), ((0, 6), (0, 16)))).save(tmp_path / "x_mask.png")
    lines = [{"id": "a", "image": "x.png", "expression": "the box", "mask": "x_mask.png"},
             {"id": "b", "image": "x.png", "expression": "a unicorn", "absent": True,
              "question": "Is there a unicorn?", "options": ["yes", "no"], "answer": "(b)", "pair": 1}]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    ds = JsonlDataset(path)
    assert ds[0].gt_mask((10, 20)).sum() == 16 and not ds[1].gt_mask().any() and ds[1].absent
    path.write_text(json.dumps(lines[0]) + "\n" + json.dumps(lines[0]))
    with pytest.raises(DatasetError, match="duplicate id"):
        JsonlDataset(path)
    path.write_text('{"id": "a"}')
    with pytest.raises(DatasetError, match=r"d\.jsonl:1.*image"):
        JsonlDataset(path)


def test_shapes_bench_is_deterministic_and_carries_exact_masks():
    a, b = ShapesBench(n=5, seed=3), ShapesBench(n=5, seed=3)
    assert [s.expression for s in a] == [s.expression for s in b]
    s = a[2]
    assert s.gt_mask((64, 64)).any() and s.image().size == (64, 64) and s.options and s.answer in s.options


def test_templates():
    assert format_grounding("describe {}", "the red house") == "describe the red house"
    text = format_vqa("Q: {}\n|{}\n|{}\nA:", "Is it open?", ("Open", "Closed"), "Pick one.")
    assert text == "Q: Is it open?\n(a) Open (b) Closed\nPick one.\nA:"
    assert parse_options("(a) Open (b) Closed") == ("Open", "Closed")
    if DATA.exists():
        ground, vqa = load_templates(DATA / "pixmmvp")
        assert len(ground) == 7 and len(vqa) == 10
        assert format_grounding(ground["pf-ground-4"], "the cat") == "Identify the cat in the scene, with grounding."
        assert format_vqa(vqa["pf-vqa-7"], "Q?", ("x", "y"), "I.") == "Q: Q?\n(a) x (b) y\nI.\nA:"
