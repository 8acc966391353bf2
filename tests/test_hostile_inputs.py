"""Hostile inputs (docs/hostile_inputs.md): each gets a documented conversion or a clear one-line error — never a
silently wrong result, never a lost user file."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from emergence.analysis import EmptyGroundTruthWarning, analyze, ground_truth_mask
from emergence.cli import main
from emergence.datasets import DatasetError, load_dataset
from emergence.errors import ImageLoadError
from emergence.images import MaskError, load_image, load_mask
from emergence.organism.model import ORGANISM_DIR

H, W = 24, 32


def _object() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[5:15, 8:20] = True
    return m


# ---------------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("colour", [(255, 0, 0), (0, 0, 255), (0, 1, 0), (255, 255, 255)])
def test_colour_mask_files_are_the_object_wherever_any_channel_is_set(tmp_path, colour):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[_object()] = colour
    Image.fromarray(rgb).save(tmp_path / "m.png")
    assert np.array_equal(ground_truth_mask(tmp_path / "m.png", (H, W)), _object())
    assert np.array_equal(load_mask(rgb, (H, W)), _object())  # the same as an [H, W, 3] array


@pytest.mark.parametrize("label", [1, 3, 100, 255])
def test_label_maps_are_the_object_wherever_nonzero(tmp_path, label):
    lab = np.where(_object(), label, 0).astype(np.uint8)
    Image.fromarray(lab).save(tmp_path / "l.png")
    assert np.array_equal(ground_truth_mask(tmp_path / "l.png", (H, W)), _object())
    assert np.array_equal(load_mask(lab.astype(np.int32)), _object())
    palette = Image.fromarray(lab, mode="L").convert("P")
    palette.save(tmp_path / "p.png")
    assert np.array_equal(load_mask(tmp_path / "p.png"), _object())


def test_soft_float_masks_are_thresholded_at_one_half_and_logits_are_refused():
    soft = np.where(_object(), 0.8, 0.2).astype(np.float32)
    assert np.array_equal(load_mask(soft), _object())
    assert np.array_equal(load_mask(torch.from_numpy(soft).to(torch.bfloat16)), _object())
    with pytest.raises(MaskError, match="looks like logits"):
        load_mask(soft - 0.5)
    with pytest.raises(MaskError, match="NaN"):
        load_mask(np.full((H, W), np.nan))
    with pytest.raises(MaskError, match="fractional values"):
        load_mask(soft * 7)


def test_an_alpha_channel_with_transparency_decides_the_mask(tmp_path):
    rgba = np.full((H, W, 4), 255, np.uint8)  # white everywhere: colour alone would be all foreground
    rgba[..., 3] = np.where(_object(), 255, 0)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "cut.png")
    assert np.array_equal(load_mask(tmp_path / "cut.png"), _object())


def test_colour_arrays_and_instance_stacks_are_told_apart_by_the_image_size():
    inst = np.zeros((3, H, W), np.uint8)
    inst[1][_object()] = 1
    assert np.array_equal(load_mask(inst, (H, W)), _object())
    with pytest.raises(MaskError, match=r"is 32x24 \(WxH\) but the image is 24x32"):
        load_mask(np.zeros((H, W), bool), (W, H))


def test_an_empty_ground_truth_is_announced_as_an_absent_object(tmp_path):
    from emergence import Probe

    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    from emergence.organism import ShapesWorld

    scene = ShapesWorld(5).scene(0)
    run = probe.generate(scene.image, "describe the image", max_new_tokens=12)
    with pytest.warns(EmptyGroundTruthWarning, match="scored as ABSENT"):
        report = analyze(run, gt_mask=np.zeros((64, 64), np.uint8), segmenter="classical")
    assert report.summary()["absent"] and "EMPTY" in repr(report)
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyGroundTruthWarning)
        analyze(run, gt_mask=scene.objects[0].mask, segmenter="classical")  # a real object: no warning


def test_jpeg_mask_files_warn(tmp_path):
    Image.fromarray((_object() * 255).astype(np.uint8)).save(tmp_path / "m.jpg")
    with pytest.warns(UserWarning, match="JPEG"):
        load_mask(tmp_path / "m.jpg")


# ---------------------------------------------------------------------------------------------------- images
def test_exif_orientation_is_applied_to_images_masks_and_sizes(tmp_path):
    from emergence.images import image_size

    stored = np.zeros((30, 40, 3), np.uint8)
    stored[:10, :10] = (250, 0, 0)  # red at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored top-left shows at the top-right
    Image.fromarray(stored).save(tmp_path / "phone.png", exif=exif)
    shown = load_image(tmp_path / "phone.png")
    assert shown.size == (30, 40)  # W x H as displayed
    arr = np.asarray(shown)
    assert arr[:10, -10:, 0].min() > 200 and arr[:10, :10, 0].max() < 50
    assert image_size(tmp_path / "phone.png") == (40, 30)
    Image.fromarray((stored[..., 0] > 0).astype(np.uint8) * 255).save(tmp_path / "mask.png", exif=exif)
    mask = load_mask(tmp_path / "mask.png", (40, 30))
    assert mask[:10, -10:].all() and not mask[:, :20].any()


def test_pixel_values_convert_by_range_or_are_refused(tmp_path):
    ramp16 = (np.arange(H * W).reshape(H, W) * 60).astype(np.uint16)  # up to ~46000 of 65535
    Image.fromarray(ramp16).save(tmp_path / "deep.png")
    expect = np.round(ramp16 / 257.0).astype(np.uint8)
    got = np.asarray(load_image(tmp_path / "deep.png"))[..., 0]
    assert np.abs(got.astype(int) - expect).max() <= 1 and got.max() < 255  # not saturated
    assert np.array_equal(np.asarray(load_image(ramp16))[..., 0], expect)
    assert np.asarray(load_image(np.full((H, W), 200, np.int32)))[0, 0, 0] == 200
    with pytest.raises(ImageLoadError, match=r"values in \[0, 46020\], outside 0..255"):
        load_image(ramp16.astype(np.int32))
    with pytest.raises(ImageLoadError, match="looks normalised"):
        load_image(np.linspace(-1, 1, H * W * 3).reshape(H, W, 3).astype(np.float32))
    assert np.asarray(load_image(np.ones((H, W), bool)))[0, 0, 0] == 255
    half = torch.full((3, H, W), 0.5, dtype=torch.bfloat16)
    assert np.asarray(load_image(half))[0, 0, 0] == 128
    with pytest.raises(ImageLoadError, match="dtype object"):
        load_image(np.empty((H, W), dtype=object))


# ---------------------------------------------------------------------------------------------------- outputs
def test_run_and_analyze_refuse_a_folder_of_user_files_and_keep_them(tmp_path, capsys):
    Image.new("RGB", (64, 64), (40, 40, 40)).save(tmp_path / "img.png")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    (tmp_path / "photo.jpg").write_bytes(b"not really")
    for cmd in (["run", "--model", str(ORGANISM_DIR)], ["analyze", "--segmenter", "classical"]):
        for out in (mine, tmp_path / "photo.jpg"):
            rc = main([*cmd, "--image", str(tmp_path / "img.png"), "--prompt", "describe the image",
                       "--out", str(out)])
            err = capsys.readouterr().err
            assert rc == 2 and "emergence: error:" in err and "Traceback" not in err
    assert (mine / "notes.txt").read_text() == "precious" and sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert (tmp_path / "photo.jpg").read_bytes() == b"not really"


def test_saving_a_run_again_replaces_only_its_own_files(tmp_path):
    from emergence import Probe, ProbeRun

    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    image = Image.new("RGB", (64, 64), (10, 90, 10))
    first = probe.generate(image, "describe the image", max_new_tokens=6)
    out = first.save(tmp_path / "run")
    (out / "my_notes.md").write_text("mine")
    second = probe.generate(image, "describe the image", max_new_tokens=3)
    second.save(out)
    loaded = ProbeRun.load(out)
    assert len(loaded) == 3 and (out / "my_notes.md").read_text() == "mine"
    # a folder caught half-way (new tensors, old run.json) is detected, not read as a mix
    doc = json.loads((out / "run.json").read_text())
    first.save(tmp_path / "other")
    (out / "attention.safetensors").write_bytes((tmp_path / "other" / "attention.safetensors").read_bytes())
    (out / "run.json").write_text(json.dumps(doc))
    with pytest.raises(Exception, match="half-written"):
        ProbeRun.load(out)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc (unwritable even for root)")
def test_an_unwritable_output_folder_is_one_line(capsys):
    rc = main(["demo", "--out", "/proc/self/emergence-out"])
    err = capsys.readouterr().err
    assert rc == 2 and "emergence: error: cannot create '/proc/self/emergence-out'" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("args, message", [
    (["--max-new-tokens", "0"], "must be a positive integer"),
    (["--max-new-tokens", "ten"], "must be a positive integer"),
    (["--tau", "1.5"], r"must lie in \(0, 1\]"),
    (["--layers", "a,b"], "comma-separated integers"),
    (["--layers", ","], "non-negative layer indices"),
    (["--heads", "-1:0"], r"non-negative layer:head pairs .*got '-1:0'"),  # was argparse's "expected one argument"
    (["--heads", "0:-2"], r"non-negative layer:head pairs .*got '0:-2'"),
    (["--layers", "-3,1"], r"non-negative layer indices .*got '-3,1'"),
    (["--heads", "3"], r"layer:head pairs such as 14:3,15:7; got '3'"),
    (["--segmenter", "magic"], "unknown segmenter 'magic'"),
])
def test_bad_analyze_arguments_are_usage_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "--image", "x.png", "--prompt", "p", "--out", str(tmp_path / "o"), *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and __import__("re").search(message, err)


def test_bad_model_device_and_layers_are_one_line_errors(tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "img.png")
    base = ["run", "--image", str(tmp_path / "img.png"), "--prompt", "describe the image"]
    cases = [
        ([*base, "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "a")], "could not load a model config"),
        ([*base, "--model", str(ORGANISM_DIR), "--device", "cuda", "--out", str(tmp_path / "b")],
         "no usable CUDA GPU" if not torch.cuda.is_available() else None),
        ([*base, "--model", str(ORGANISM_DIR), "--layers", "9", "--out", str(tmp_path / "c")],
         r"layers=\[9\] are not captured language-model layers"),
    ]
    for argv, message in cases:
        if message is None:
            continue
        assert main(argv) == 2
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("emergence:")]
        assert len(lines) == 1 and __import__("re").search(message, lines[0]) and "Traceback" not in err


def test_an_empty_progress_file_is_a_clear_error(tmp_path, capsys):
    from emergence.sweep import SweepConfig, run_sweep

    out = tmp_path / "sw"
    run_sweep(SweepConfig(out=str(out), dataset="shapes", dataset_kwargs={"n": 1, "seed": 2}, store="none",
                          max_new_tokens=6), progress=False)
    (out / "progress.json").write_text("")
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "progress.json" in err and "damaged" in err and "Expecting value" in err


# ---------------------------------------------------------------------------------------------------- datasets
def _pixmmvp(root, objects="Index, Object\n1, the cat\n2, the dog\n", annotations=None, images=None):
    root.mkdir(exist_ok=True)
    (root / "Objects.csv").write_text(objects)
    (root / "visual_patterns.csv").write_text(",Index,Question,Options,Correct Answer,Pattern\n"
                                              "0,1,Is it?,(a) yes (b) no,(a),State\n")
    seg = {"images": images or [{"id": 1, "file_name": "1.jpg", "height": 20, "width": 20},
                                {"id": 2, "file_name": "2.jpg", "height": 20, "width": 20}],
           "annotations": annotations if annotations is not None else
           [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 10, 1, 10, 10]], "bbox": [1, 1, 9, 9]}]}
    (root / "Segmentations.json").write_text(json.dumps(seg))
    return root


@pytest.mark.parametrize("objects, annotations, message", [
    ("Index, Object\n1, the cat\n1, the dog\n", None, "sample id '1' occurs more than once"),
    ("Index, Thing\n1, the cat\n", None, r"missing column\(s\) \['Object'\]"),
    ("", None, "is empty"),
    ("Index, Object\n", None, "no data rows"),
    ("Index, Object\n1\n", None, "line 2: 1 fields"),
    ("Index, Object\n1, the cat\n", [{"id": 9, "image_id": 77, "segmentation": [[1, 1, 5, 1, 5, 5]]}],
     "refers to image id 77"),
    ("Index, Object\n1, the cat\n", [{"id": 9, "image_id": 1}], "missing field 'segmentation'"),
])
def test_malformed_pixmmvp_annotations_are_refused_at_load(tmp_path, objects, annotations, message):
    root = _pixmmvp(tmp_path / "p", objects, annotations)
    with pytest.raises(DatasetError, match=message):
        load_dataset("pixmmvp", root=root)


@pytest.mark.parametrize("segmentation, message", [
    ([[1, 1, float("nan"), 1, 10, 10]], "NaN or infinite"),
    ([], "holds no polygon"),
])
def test_bad_polygons_fail_with_the_sample_id(tmp_path, segmentation, message):
    root = _pixmmvp(tmp_path / "p", "Index, Object\n1, the cat\n",
                    [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]], "bbox": [0, 0, 1, 1]},
                     {"id": 2, "image_id": 1, "segmentation": segmentation, "bbox": [0, 0, 1, 1]}])
    ds = load_dataset("pixmmvp", root=root)
    with pytest.raises(DatasetError, match=f"sample '1' of pixmmvp: .*{message}"):
        ds[0].gt_mask()


def test_coco_without_image_sizes_reads_them_from_the_image_and_names_a_missing_one(tmp_path):
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    ann = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png"}],
           "categories": [{"id": 5, "name": "box"}],
           "annotations": [{"image_id": 1, "category_id": 5, "segmentation": [[2, 2, 12, 2, 12, 12]]},
                           {"image_id": 2, "category_id": 5, "segmentation": [[2, 2, 12, 2, 12, 12]]}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    ds = load_dataset("coco", root=tmp_path / "ann.json", images=tmp_path)
    assert ds[0].gt_mask((20, 30)).sum() > 50
    with pytest.raises(DatasetError, match=r"sample '2/5' .*gone.png"):
        ds[1].gt_mask()
    del ann["images"][0]["file_name"]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    with pytest.raises(DatasetError, match="missing or malformed field 'file_name'"):
        load_dataset("coco", root=tmp_path / "ann.json")


def test_jsonl_missing_mask_file_names_the_sample_and_colour_masks_follow_the_rules(tmp_path):
    Image.new("RGB", (W, H)).save(tmp_path / "img.png")
    red = np.zeros((H, W, 3), np.uint8)
    red[_object()] = (200, 0, 0)
    Image.fromarray(red).save(tmp_path / "red.png")
    rows = [{"id": "a", "image": "img.png", "mask": "red.png", "expression": "x"},
            {"id": "b", "image": "img.png", "mask": "nope.png", "expression": "x"}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset("jsonl", root=tmp_path / "d.jsonl")
    assert np.array_equal(ds[0].gt_mask((H, W)), _object())
    with pytest.raises(DatasetError, match=r"sample 'b' .*nope.png"):
        ds[1].gt_mask()


# ---------------------------------------------------------------------------------------------------- memory
def test_large_photos_are_rendered_on_a_bounded_grid_with_peaks_in_original_pixels():
    """A 2400 x 1600 photo: maps live on a grid of longer side max_side; each unit's point is the original pixel
    under its working-grid peak, within one working cell of the full-resolution peak; masks and IoUs stay full size."""
    from emergence import Probe
    from emergence.analysis.prompts import PointPrompt, scale_prompt
    from emergence.layouts import working_size
    from emergence.organism import ShapesWorld

    assert working_size((1600, 2400), 256) == (171, 256) and working_size((60, 80), 256) == (60, 80)
    p = scale_prompt(PointPrompt(np.array([[0, 0], [255, 170]], np.float32), np.array([1, 1]),
                                 np.array([0, 0, 255, 170], np.float32)), (171, 256), (1600, 2400))
    assert p.points.tolist() == [[4, 4], [2395, 1595]] and p.box.tolist() == [0, 0, 2399, 1599]

    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    scene = ShapesWorld(9).scene(1)
    big = scene.image.resize((2400, 1600), Image.NEAREST)
    gt = np.asarray(Image.fromarray(scene.objects[0].mask).resize((2400, 1600), Image.NEAREST))
    run = probe.generate(big, "describe the image", max_new_tokens=16)
    small = analyze(run, gt_mask=gt, segmenter="classical", max_side=256, layer_emergence=False)
    full = analyze(run, gt_mask=gt, segmenter="classical", max_side=None, layer_emergence=False)
    assert small.heat.shape[1:] == (171, 256) and full.heat.shape[1:] == (1600, 2400)
    assert small.masks.shape[2:] == (1600, 2400)
    cell = 2400 / 256
    dist = np.hypot(small.table["point_x"] - full.table["point_x"], small.table["point_y"] - full.table["point_y"])
    assert (dist <= 1.5 * cell).mean() >= 0.9, dist.tolist()
    assert abs(small.table["iou"].max() - full.table["iou"].max()) < 0.05


def test_probe_specs_reach_only_the_explicit_builtin_table(tmp_path):
    """`builtin:` names an entry of BUILTIN_MODELS, never an arbitrary function of emergence.testing."""
    from emergence.loading import BUILTIN_MODELS, load_probe
    from emergence.specs import load_spec

    assert set(BUILTIN_MODELS) == {"tiny_llava"}
    spec_file = tmp_path / "x.toml"
    spec_file.write_text('name = "x"\nhf_id = "builtin:tiny_qwen2_vl"\narchitecture = "Qwen2VLForConditionalGeneration"\n')
    with pytest.raises(ValueError, match="unknown builtin model 'builtin:tiny_qwen2_vl'; built-in models: builtin:organism, builtin:organism-fuyu, builtin:tiny_llava"):
        load_probe(load_spec(str(spec_file)))
    assert load_probe(load_spec("tiny-random-llava")).name == "builtin:tiny_llava"


def test_only_real_older_outputs_are_adopted_not_user_files_with_the_same_names(tmp_path):
    """Folders written before markers existed are recognised by their content, not by file names: a user's own
    summary.json + table.csv are refused; an older saved run (no marker) is still overwritten in place."""
    from emergence import Probe
    from emergence.files import MARKER, OutputDirError, check_output_dir

    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "summary.json").write_text('{"accuracy": 0.9}')
    (mine / "table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(OutputDirError, match="not empty"):
        check_output_dir(mine, "analysis")
    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    run = probe.generate(Image.new("RGB", (64, 64)), "describe the image", max_new_tokens=3)
    old = run.save(tmp_path / "old_run")
    (old / MARKER).unlink()  # as an older emergence left it
    assert run.save(old) == old and (old / MARKER).exists()
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "run.json").write_text('{"notes": "mine"}')
    with pytest.raises(OutputDirError, match="not empty"):
        run.save(tmp_path / "fake")
    assert (tmp_path / "fake" / "run.json").read_text() == '{"notes": "mine"}'


def test_a_ground_truth_covering_nearly_the_whole_image_warns_that_it_may_be_inverted():
    from emergence import Probe
    from emergence.organism import ShapesWorld

    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    world = ShapesWorld(5)
    scene, obj = next((sc, o) for sc in (world.scene(i) for i in range(50)) for o in sc.objects if o.mask.mean() < 0.08)
    run = probe.generate(scene.image, "describe the image", max_new_tokens=8)
    inverted = ~obj.mask  # a black object on white, read by the nonzero rule
    assert inverted.mean() >= 0.9
    with pytest.warns(UserWarning, match=r"covers \d+% of the image.*inverted"):
        analyze(run, gt_mask=inverted, segmenter="classical", layer_emergence=False)


def test_file_outputs_never_replace_a_file_the_toolkit_did_not_write(tmp_path, capsys, monkeypatch):
    """`--out FILE` / `--figure FILE`: a user's file (a ground-truth JSON, notes, a photo saved as .png, a dangling
    link) is refused before any work and left as it was; the toolkit's own earlier output of the same command is
    replaced."""
    import json

    from emergence.files import OutputDirError, check_output_file, write_result_json
    from emergence.plotting import save_figure

    truth = tmp_path / "test_gcg_coco_mask_gt.json"
    truth.write_text(json.dumps({"images": [], "annotations": []}))
    notes = tmp_path / "mine.json"
    notes.write_text("my notes, not JSON")
    photo = tmp_path / "holiday.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(photo)
    link = tmp_path / "gone.json"
    link.symlink_to(tmp_path / "nowhere.json")
    kept = {p: p.read_bytes() for p in (truth, notes, photo)}
    calls = []
    monkeypatch.setattr("emergence.studies.evaluate.evaluate", lambda *a, **k: calls.append(1))
    for argv in (["organism", "eval", "--out", str(notes)], ["organism", "causal", "--figure", str(photo)],
                 ["organism", "eval", "--out", str(link)], ["organism", "causal", "--out", str(notes)],
                 ["organism", "compare-maps", "--figure", str(photo)], ["organism", "ground", "--out", str(notes)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "emergence: error:" in err and ("not written by emergence" in err or "dangling" in err), argv
    assert not calls  # refused before the evaluation ran
    # a JSON object that is not this command's output (the GCG ground truth) is refused when the result is written
    with pytest.raises(OutputDirError, match="not written by emergence"):
        write_result_json(truth, {"AP50": 0.1, "mIoU": 0.2})
    with pytest.raises(OutputDirError, match="not written by emergence"):
        save_figure(__import__("matplotlib.pyplot").pyplot.figure(), photo)
    assert {p: p.read_bytes() for p in (truth, notes, photo)} == kept
    # the toolkit's own outputs are replaced
    ours = write_result_json(tmp_path / "metrics.json", {"AP50": 0.1, "mIoU": 0.2})
    assert json.loads(write_result_json(ours, {"AP50": 0.3, "mIoU": 0.4}).read_text())["AP50"] == 0.3
    figure = save_figure(__import__("matplotlib.pyplot").pyplot.figure(), tmp_path / "fig.png")
    assert check_output_file(save_figure(__import__("matplotlib.pyplot").pyplot.figure(), figure)) == figure


def test_analyze_refuses_heads_and_layers_the_model_lacks_before_generating(tmp_path, capsys, monkeypatch):
    from emergence import Probe

    Image.new("RGB", (64, 64), (40, 40, 40)).save(tmp_path / "img.png")
    generated = []
    monkeypatch.setattr(Probe, "generate", lambda *a, **k: generated.append(1))
    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    n_heads, n_layers = probe.model.config.text_config.num_attention_heads, probe.num_layers
    for flag, value, message in (("--heads", f"0:{n_heads}", f"heads 0..{n_heads - 1} per layer"),
                                 ("--heads", f"{n_layers}:0", "is not a captured layer"),
                                 ("--layers", f"{n_layers}", "captured layers are")):
        rc = main(["analyze", "--model", str(ORGANISM_DIR), "--image", str(tmp_path / "img.png"), "--prompt",
                   "describe the image", "--segmenter", "classical", flag, value, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert rc == 2 and message in err, (flag, value, err)
    assert not generated
    with pytest.raises(ValueError, match="negative indices are not counted"):
        probe.check_selection(heads=[(0, -1)])
    probe.check_selection(layers=[0], heads=[(0, n_heads - 1)])  # valid selections pass


def test_a_second_process_writing_the_same_run_folder_is_refused(tmp_path, capsys):
    """`emergence run` / `analyze` hold the output folder's lock from the check to the save (as sweeps do): a
    second writer is refused at once instead of both reporting success while one result survives."""
    from emergence.files import output_lock

    Image.new("RGB", (64, 64), (40, 40, 40)).save(tmp_path / "img.png")
    out = tmp_path / "shared"
    with output_lock(out):  # the other process, mid-generation
        for cmd in (["run", "--model", str(ORGANISM_DIR)], ["analyze", "--segmenter", "classical"]):
            rc = main([*cmd, "--image", str(tmp_path / "img.png"), "--prompt", "describe the image",
                       "--out", str(out)])
            assert rc == 2 and "another emergence process is writing" in capsys.readouterr().err
    assert main(["run", "--model", str(ORGANISM_DIR), "--image", str(tmp_path / "img.png"), "--prompt",
                 "describe the image", "--max-new-tokens", "3", "--out", str(out)]) == 0  # free again
    assert (out / "run.json").is_file()


def test_a_dangling_symlink_output_folder_is_named(tmp_path, capsys):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "missing-target")
    rc = main(["demo", "--out", str(link)])
    err = capsys.readouterr().err
    # was: "cannot create ...: File exists"
    assert rc == 2 and "is a dangling symbolic link" in err and "missing-target" in err
    assert link.is_symlink() and not (tmp_path / "missing-target").exists()  # nothing created behind the user's back


def test_analyze_under_pixfoundation_without_a_noun_chunk_parser_is_one_line_before_any_model(
        no_noun_chunk_parser, tmp_path, capsys):
    Image.new("RGB", (64, 64)).save(tmp_path / "img.png")
    argv = ["analyze", "--image", str(tmp_path / "img.png"), "--prompt", "describe", "--protocol", "pixfoundation",
            "--model", str(tmp_path / "no-model-needed"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "spaCy" in err or "spacy" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()  # refused before the folder and the model
    with pytest.raises(SystemExit):
        main([*argv[:-2], "--units", "words", "--out", str(tmp_path / "p")])
    assert "--units words belongs to another protocol" in capsys.readouterr().err
