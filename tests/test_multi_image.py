"""Several images in one prompt: one layout part per image, each placed exactly as if it were alone; markers drawn
into one image change only that image's tokens; capture over every image's tokens equals eager attention; the run
API (heatmap / select / analyze with image=k) and save / load keep the images apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, N_NEW, assert_capture_equals_eager, box_gap, lm_input_embeddings, noise_image
from PIL import Image

from emergence import Probe, ProbeRun, analyze
from emergence.errors import EmergenceError, LayoutError, UnsupportedModelError
from emergence.layouts import Medium, VisualLayout

SIZES = [(160, 100), (90, 130)]  # (width, height): one landscape, one portrait image
MARKER = (0.25, 0.3, 0.45, 0.55)  # a rectangle in fractions of the image: (x0, y0, x1, y1)
MULTI = ["gemma3_fallback", "glm4v", "idefics3", "internvl", "llava", "llava_pad", "llava_pixtral", "mistral3",
         "paligemma_fallback", "qwen2_5_omni", "qwen2_5_vl", "qwen2_vl", "qwen3_5", "qwen3_vl", "smolvlm",
         "smolvlm_uneven_tiles", "video_llava", "vipllava_fallback"]


def _images(seed: int = 0) -> list[Image.Image]:
    return [noise_image(w, h, seed=seed + k) for k, (w, h) in enumerate(SIZES)]


def _media(images):
    return [Medium("image", (im.height, im.width)) for im in images]


def test_the_multi_image_list_covers_every_family_that_says_it_places_several_images():
    says = sorted(name for name, build in FAMILIES.items()
                  if Probe(*build()).adapter.multi_image and name not in ("gemma3_pan_and_scan",))
    # families left out of MULTI are variants of a listed class (same adapter, same processor path)
    left = set(says) - set(MULTI)
    assert left <= {"glm46v", "glm4v_moe", "internvl_one_tile", "llava_resize", "qwen3_5_moe", "qwen3_vl_moe",
                    "smolvlm_real_geometry"}, left


@pytest.mark.parametrize("family", MULTI)
def test_each_image_is_placed_as_if_it_were_alone(family):
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    images = _images()
    inputs = probe.prepare_media(images, [], "describe")
    layout = probe.layout(inputs, _media(images))
    assert layout.is_composite and [p.item for p in layout.parts] == [0, 1]
    image_tokens = int((inputs["input_ids"][0] == model.config.image_token_id).sum())
    assert layout.num_tokens == image_tokens == sum(p.num_tokens for p in layout.parts)
    for k, im in enumerate(images):
        alone = probe.layout(probe.prepare(im, "describe"), (im.height, im.width))
        part = layout.part(image=k)
        assert part.image_size == (im.height, im.width)
        assert part.num_tokens == alone.num_tokens
        assert [v.grid for v in part.views] == [v.grid for v in alone.views]
        np.testing.assert_allclose(part.token_boxes(), alone.token_boxes(), equal_nan=True)
        members = layout.members(k)
        assert np.array_equal(layout.positions[members], part.positions)
    # parts are disjoint and in prompt order
    assert layout.parts[0].positions.max() < layout.parts[1].positions.min()
    with torch.no_grad():  # the model accepts exactly these inputs
        model(**inputs)


@pytest.mark.parametrize("marked", [0, 1])
@pytest.mark.parametrize("family", MULTI)
def test_a_marker_in_one_image_changes_only_that_images_tokens_under_it(family, marked):
    model, processor = FAMILIES[family](local_vision=True)
    probe = Probe(model, processor)
    images = _images(seed=3)
    arr = np.array(images[marked])
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = (int(MARKER[0] * w), int(MARKER[1] * h), int(MARKER[2] * w), int(MARKER[3] * h))
    arr[y0:y1, x0:x1] = [255, 0, 255]
    changed_images = list(images)
    changed_images[marked] = Image.fromarray(arr)
    base = probe.prepare_media(images, [], "describe")
    layout = probe.layout(base, _media(images))
    diff = lm_input_embeddings(model, base) - lm_input_embeddings(model, probe.prepare_media(changed_images, [], "describe"))
    changed = np.nonzero(diff.abs().sum(-1)[torch.as_tensor(layout.positions)].numpy() > 1e-5)[0]
    assert len(changed) > 0
    assert set(changed.tolist()) <= set(layout.members(marked).tolist()), "a token of the other image changed"
    boxes = layout.token_boxes()  # each token's box in its own image
    for v in changed:
        b = boxes[v]
        assert box_gap(b, (x0, y0, x1, y1)) <= 0.5 * max(b[2] - b[0], b[3] - b[1]) + 1, (v, b, (x0, y0, x1, y1))


@pytest.mark.parametrize("family", ["gemma3_fallback", "idefics3", "internvl", "llava", "mistral3", "qwen2_vl",
                                    "qwen3_vl"])
def test_capture_over_several_images_equals_eager_with_identical_ids(family):
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    images = _images()
    inputs = probe.prepare_media(images, [], "describe the images")
    run = probe.generate(images, "describe the images", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    assert_capture_equals_eager(model, inputs, run)  # over every image's / frame's tokens


def test_run_api_keeps_the_images_apart(tmp_path):
    model, processor = FAMILIES["qwen2_vl"]()
    probe = Probe(model, processor)
    images = _images()
    run = probe.generate(images, "describe the images", max_new_tokens=4, min_new_tokens=4)
    assert run.image is None and len(run.media) == 2
    for k, im in enumerate(images):
        heat = run.heatmap(1, image=k)
        assert heat.shape == (im.height, im.width)
        part = run.layout.part(image=k)
        expected = part.render(run.token_map(1)[torch.from_numpy(run.layout.members(k))], fuse="mean")
        np.testing.assert_array_equal(heat, expected)
        one = run.select(image=k)
        assert one.layout is part and one.image is run.media[k] and one.attention.shape[-1] == part.num_tokens
        assert one.meta["selected"]["image"] == k
        np.testing.assert_array_equal(one.heatmap(1), heat)
    with pytest.raises(LayoutError, match="holds 2 images / video frames.*image=k"):
        run.heatmap(1)
    with pytest.raises(LayoutError, match="no part of this layout is image=2"):
        run.heatmap(1, image=2)
    # analyze one image against its own ground truth; the composite alone is refused by name
    gt = np.zeros((images[1].height, images[1].width), bool)
    gt[30:90, 20:70] = True
    report = analyze(run, gt, segmenter="classical", image=1, layer_emergence=False)
    assert np.array_equal(np.array(report.image), np.array(run.media[1])) and report.gt.shape == gt.shape
    with pytest.raises(EmergenceError, match="holds 2 images.*image=k"):
        analyze(run, gt, segmenter="classical")
    with pytest.raises(LayoutError, match="no part"):
        analyze(run, gt, segmenter="classical", image=5)
    # save / load keeps parts, items and both images
    run.save(tmp_path / "run")
    back = ProbeRun.load(tmp_path / "run")
    assert torch.equal(back.attention, run.attention)
    assert back.layout.to_dict() == run.layout.to_dict() and back.layout.is_composite
    assert [np.array_equal(np.array(a), np.array(b)) for a, b in zip(back.media, run.media)] == [True, True]
    np.testing.assert_array_equal(back.heatmap(2, image=1), run.heatmap(2, image=1))
    # saving a one-image run into the same folder removes the media files the multi-image run wrote, and only those
    (tmp_path / "run" / "notes.txt").write_text("mine")
    single = probe.generate(images[0], "describe", max_new_tokens=2)
    single.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("media_")) == []
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert ProbeRun.load(tmp_path / "run").image is not None


def test_composite_layouts_reject_overlaps_and_name_their_parts():
    from emergence.layouts import View

    def part(start, item, size=(10, 20)):
        return VisualLayout(np.arange(start, start + 4), size, [View("image", np.arange(4).reshape(2, 2),
                                                                      (0, 0, size[1], size[0]))], "test", item=item)

    with pytest.raises(LayoutError, match="share visual positions"):
        VisualLayout.combine([part(0, 0), part(2, 1)])
    with pytest.raises(LayoutError, match="same image"):
        VisualLayout.combine([part(0, 0), part(10, 0)])
    layout = VisualLayout.combine([part(0, 0), part(10, 1, (30, 5))])
    assert layout.num_tokens == 8 and layout.items == [0, 1] and "composite of 2 parts" in repr(layout)
    assert layout.part(image=1).image_size == (30, 5)
    assert np.array_equal(layout.members(1), np.arange(4, 8))
    with pytest.raises(LayoutError, match="render one of them"):
        layout.render(np.ones(8))
    back = VisualLayout.from_dict(layout.to_dict())
    assert back.to_dict() == layout.to_dict() and back.parts[1].item == 1


def test_several_images_where_the_family_cannot_place_them_are_refused_before_processing():
    model, processor = FAMILIES["fuyu"]()
    with pytest.raises(UnsupportedModelError, match="several images per prompt are not supported.*2 given"):
        Probe(model, processor).generate(_images(), "describe", max_new_tokens=1)
    model, processor = FAMILIES["gemma3_pan_and_scan"]()
    probe = Probe(model, processor)
    images = [noise_image(300, 60, seed=1), noise_image(60, 300, seed=2)]
    inputs = probe.prepare_media(images, [], "describe")
    with pytest.raises(UnsupportedModelError, match="pan-and-scan crops are not supported.*do_pan_and_scan=False"):
        probe.layout(inputs, _media(images))
    # three sizes for two images: named, not misplaced
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    images = _images()
    inputs = probe.prepare_media(images, [], "describe")
    with pytest.raises(LayoutError, match="3 images were given, but the pixel inputs hold 2 views"):
        probe.layout(inputs, _media(images + images[:1]))


SHAPE_GRIDS = ["glm4v", "llava_pixtral", "mistral3", "qwen2_5_omni", "qwen2_5_vl", "qwen2_vl", "qwen3_5", "qwen3_vl"]


@pytest.mark.parametrize("family", SHAPE_GRIDS)
def test_images_given_in_another_order_than_the_inputs_are_refused(family):
    """``generate([B, A], inputs=prepare_media([A, B]))``: where the token grid follows each image's shape (Qwen's
    ``image_grid_thw``, Pixtral's ``image_sizes``), a landscape grid over a portrait image is refused (was: A's grid
    drawn over B). Families that resize every image to one square grid cannot tell (docs/hostile_inputs.md)."""
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    images = _images()
    inputs = probe.prepare_media(images, [], "describe")
    assert len(probe.layout(inputs, _media(images)).parts) == 2  # the right order is placed
    with pytest.raises(LayoutError, match=r"grid for image 0 is \d+x\d+ tokens, which no resize of that 130x90"):
        probe.generate(images[::-1], inputs=inputs, max_new_tokens=1)
