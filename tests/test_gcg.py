"""GCG evaluation (GranD-f layout): the loader reads a small set the test writes; mask AP50, mIoU and mask recall
against cases whose answers are worked out by hand; the recall's similarity is pluggable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emergence.datasets import DatasetError
from emergence.datasets.gcg import GcgImage, load_gcg
from emergence.datasets.masks import encode_rle
from emergence.sweep.gcg import GcgPrediction, evaluate_gcg, greedy_pairs, mask_ap50, word_overlap
from PIL import Image


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def write_set(root, masks_per_image, labels_per_image, split="val"):
    images = [{"id": k + 1, "file_name": f"{k + 1}.jpg", "height": 10, "width": 10}
              for k in range(len(masks_per_image))]
    anns, caps = [], []
    for k, masks in enumerate(masks_per_image):
        for m in masks:
            rle = encode_rle(m)
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 1, "segmentation": rle})
        caps.append({"id": k + 1, "image_id": k + 1, "caption": " and ".join(labels_per_image[k]),
                     "labels": labels_per_image[k]})
    (root / f"{split}_gcg_coco_mask_gt.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                                     "categories": [{"id": 1}]}))
    (root / f"{split}_gcg_coco_caption_gt.json").write_text(json.dumps({"images": images, "annotations": caps}))


def test_the_loader_pairs_phrases_and_masks_and_names_what_is_wrong(tmp_path):
    a, b = box(10, 10, 0, 4, 0, 4), box(10, 10, 5, 10, 5, 10)
    write_set(tmp_path, [[a, b], [b]], [["a red ball", "the table"], ["a cat"]])
    (tmp_path / "imgs").mkdir()
    for name in ("1.jpg", "2.jpg"):  # the loader checks that every image is on disk
        Image.new("RGB", (10, 10)).save(tmp_path / "imgs" / name)
    data = load_gcg(tmp_path, "val", images=tmp_path / "imgs")
    assert [im.image_id for im in data] == [1, 2] and data[0].phrases == ["a red ball", "the table"]
    assert np.array_equal(data[0].masks[1], b) and data[1].masks.shape == (1, 10, 10)
    assert data[0].path == tmp_path / "imgs" / "1.jpg"
    with pytest.raises(DatasetError, match="test_gcg_coco_mask_gt.json is missing"):
        load_gcg(tmp_path, "test")
    write_set(tmp_path, [[a]], [["one", "two"]])
    with pytest.raises(DatasetError, match="2 phrases .* but 1 masks"):
        load_gcg(tmp_path, "val")


def test_greedy_pairing_takes_the_largest_remaining_iou():
    ious = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert greedy_pairs(ious) == [(0, 0, 0.9), (1, 1, 0.1)]  # not the better-sum assignment (0.8 + 0.85)
    assert greedy_pairs(np.zeros((2, 2))) == []
    assert greedy_pairs(ious, accept=lambda r, c: r == 1) == []  # the first refused pair ends it


def test_mask_ap50_on_a_hand_worked_case():
    gt = np.stack([box(10, 10, 0, 4, 0, 4), box(10, 10, 5, 10, 5, 10)])  # areas 16 and 25
    hit0 = box(10, 10, 0, 4, 0, 3)       # IoU 12/16 = 0.75 with gt 0
    miss = box(10, 10, 0, 2, 6, 10)      # IoU 0 with both
    hit1 = box(10, 10, 5, 10, 5, 8)      # IoU 15/25 = 0.6 with gt 1
    dup0 = box(10, 10, 0, 4, 1, 4)       # IoU 0.75 with gt 0, already taken -> false positive
    # ranked: hit0 (0.9) TP, miss (0.8) FP, hit1 (0.7) TP, dup0 (0.6) FP
    # recall 0.5, 0.5, 1, 1; precision 1, 0.5, 0.667, 0.5 -> envelope 1, 0.667, 0.667, 0.5
    # 101 points: r = 0 .. 0.5 (51 points) -> 1; r = 0.51 .. 1 (50 points) -> 2/3
    ap = mask_ap50([np.stack([hit0, miss, hit1, dup0])], [gt], scores=[[0.9, 0.8, 0.7, 0.6]])
    assert ap == pytest.approx((51 * 1.0 + 50 * (2 / 3)) / 101, abs=1e-12)
    assert mask_ap50([np.stack([hit0, hit1])], [gt]) == pytest.approx(1.0)
    assert mask_ap50([np.zeros((0, 10, 10), bool)], [gt]) == 0.0
    below = box(10, 10, 0, 4, 0, 2)  # IoU 8/16 = 0.5 exactly: a match at the 0.5 threshold
    assert mask_ap50([below[None]], [gt[:1]]) == pytest.approx(1.0)


def test_evaluate_gcg_miou_and_recall_with_a_pluggable_similarity():
    gt = GcgImage(1, "1.jpg", "a red ball on the table", ["a red ball", "the table"],
                  np.stack([box(10, 10, 0, 4, 0, 4), box(10, 10, 5, 10, 5, 10)]))
    pred = GcgPrediction("a ball on a desk", ["a ball", "a desk"],
                         np.stack([box(10, 10, 0, 4, 0, 3), box(10, 10, 5, 10, 5, 8)]))
    out = evaluate_gcg([gt], {1: pred})
    assert out["miou"] == pytest.approx((0.75 + 0.6) / 2)
    # "a red ball" vs "a ball": cosine 2 / (sqrt 3 * sqrt 2) = 0.816 -> accepted; then "the table" vs "a desk":
    # no shared word -> similarity 0 -> refused, which ends the image (as in the reference): recall 1 / 2
    assert word_overlap("a red ball", "a ball") == pytest.approx(2 / np.sqrt(6))
    assert out["recall"] == pytest.approx(0.5)
    assert evaluate_gcg([gt], {1: pred}, similarity=lambda a, b: 1.0)["recall"] == pytest.approx(1.0)
    assert out["mask_ap50"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no prediction for GCG images \\[1\\]"):
        evaluate_gcg([gt], {})
    with pytest.raises(ValueError, match="do not match ground truth"):
        evaluate_gcg([gt], {1: GcgPrediction("x", ["x"], np.zeros((1, 5, 5), bool))})


def test_an_image_without_phrases_counts_as_an_unpaired_image():
    empty = GcgImage(2, "2.jpg", "nothing", [], np.zeros((0, 10, 10), bool))
    gt = GcgImage(1, "1.jpg", "a ball", ["a ball"], box(10, 10, 0, 4, 0, 4)[None])
    preds = {1: GcgPrediction("a ball", ["a ball"], box(10, 10, 0, 4, 0, 4)[None]),
             2: GcgPrediction("a cat", ["a cat"], box(10, 10, 5, 9, 5, 9)[None])}
    out = evaluate_gcg([gt, empty], preds)
    assert out["miou"] == pytest.approx(0.5)  # (1.0 + 0.0) / 2
    assert out["recall"] == pytest.approx(1.0)
    assert out["mask_ap50"] == pytest.approx(1.0)  # the false positive (image 2) ranks after full recall


# ---------------------------------------------------------------------------------------------------- pipeline
def test_write_gcg_round_trips_through_the_loader_and_refuses_foreign_folders(tmp_path):
    from emergence.datasets.gcg import write_gcg
    from emergence.files import OutputDirError
    from emergence.organism.reading import gcg_records

    records = gcg_records(seed=47, n=3)
    root = write_gcg(tmp_path / "gcg", "test", records)
    loaded = load_gcg(root, "test", images=root / "images")
    assert [im.image_id for im in loaded] == [r[0] for r in records]
    for im, (_id, picture, caption, phrases, masks) in zip(loaded, records):
        assert im.caption == caption and im.phrases == phrases
        assert np.array_equal(im.masks, np.stack(masks)) and im.path.is_file()
        assert all(p.split()[-1] in caption for p in phrases)  # the caption's own wording
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputDirError):
        write_gcg(foreign, "test", records)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_phrase_masks_from_the_pipeline_score_on_organism_scenes(tmp_path):
    """The organism grounds its caption words: predicted masks pair with the objects (mIoU well above chance)."""
    from emergence import Probe
    from emergence.datasets.gcg import write_gcg
    from emergence.sweep.gcg import predict_gcg
    from emergence.cli import main
    from emergence.organism.model import ORGANISM_DIR, PROMPT
    from emergence.organism.reading import gcg_records

    root = write_gcg(tmp_path / "gcg", "test", gcg_records(seed=47, n=3))
    truth = load_gcg(root, "test", images=root / "images")
    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    predictions = predict_gcg(probe, truth, prompt=PROMPT, units="words", max_new_tokens=64)
    for im in truth:
        pred = predictions[im.image_id]
        assert pred.masks.shape == (len(pred.phrases), *im.masks.shape[1:]) and len(pred.scores) == len(pred.phrases)
        assert pred.caption.split()[:3] == im.caption.split()[:3]
    metrics = evaluate_gcg(truth, predictions)
    assert metrics["miou"] > 0.5
    out = tmp_path / "metrics.json"
    assert main(["gcg", "--root", str(root), "--images", str(root / "images"), "--units", "words",
                 "--max-new-tokens", "64", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    for key in ("mask_ap50", "miou", "recall"):
        assert written[key] == pytest.approx(metrics[key], abs=0, rel=0)


def _edit_set(root, kind, change):
    path = root / f"val_gcg_coco_{kind}_gt.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("kind, change, message", [
    ("caption", lambda d: d["images"].append(dict(d["images"][0])), "image id 1 has more than one image entry"),
    ("caption", lambda d: d["annotations"].append(dict(d["annotations"][0])), "more than one caption annotation"),
    ("caption", lambda d: d["annotations"][0].update(labels="abcdef"), "'labels' must be a list of phrase strings"),
    ("mask", lambda d: d["images"][0].pop("height"), "needs positive integer height and width"),
    ("mask", lambda d: d["images"][0].update(width=-3), "needs positive integer height and width"),
    ("mask", lambda d: d["annotations"][0].pop("image_id"), "has no image_id"),
    ("mask", lambda d: d["annotations"][0].update(segmentation=None), "image 1 has an unreadable segmentation"),
    ("mask", lambda d: d["annotations"][0].update(segmentation="garbage"), "image 1 has an unreadable segmentation"),
    ("mask", lambda d: d["annotations"][0]["segmentation"].pop("size"), "image 1 has an unreadable segmentation"),
    ("mask", lambda d: d["annotations"][0].update(segmentation=encode_rle(np.ones((20, 20), bool))),
     "is 20x20, but the image is 10x10"),
    ("mask", lambda d: d.clear(), "'images' must be a list of objects"),
    ("caption", lambda d: d.update(images=[], annotations=[]), "lists no image: the val split is empty"),
])
def test_broken_gcg_sets_are_refused_at_load_naming_the_file_and_image(tmp_path, kind, change, message):
    a, b = box(10, 10, 0, 4, 0, 4), box(10, 10, 5, 10, 5, 10)
    write_set(tmp_path, [[a, b], [b]], [["a red ball", "the table"], ["a cat"]])
    _edit_set(tmp_path, kind, change)
    with pytest.raises(DatasetError, match=message):
        load_gcg(tmp_path, "val")


def test_an_image_missing_on_disk_is_refused_at_load(tmp_path):
    write_set(tmp_path, [[box(10, 10, 0, 4, 0, 4)]], [["a red ball"]])
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DatasetError, match=r"GCG image 1: .*1\.jpg does not exist"):
        load_gcg(tmp_path, "val", images=tmp_path / "imgs")


def test_metrics_that_would_all_be_nan_are_refused():
    """An empty split, or a split without a single ground-truth phrase: every metric undefined (was: NaN written as
    non-standard JSON)."""
    with pytest.raises(ValueError, match="empty split"):
        evaluate_gcg([], {})
    empty = GcgImage(2, "2.jpg", "nothing", [], np.zeros((0, 10, 10), bool))
    with pytest.raises(ValueError, match="none of the 1 GCG ground-truth images has a phrase"):
        evaluate_gcg([empty], {2: GcgPrediction("a cat", ["a cat"], box(10, 10, 5, 9, 5, 9)[None])})


def test_the_old_module_path_still_hands_out_every_name():
    """``emergence.analysis.gcg`` moved (the folders to datasets, the scoring to sweep); its names stay importable
    there, as the same objects."""
    import emergence.analysis.gcg as old
    import emergence.datasets.gcg as data
    import emergence.sweep.gcg as scoring

    for name in old.__all__:
        assert getattr(old, name) is getattr(data if hasattr(data, name) else scoring, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        old.nope  # noqa: B018
