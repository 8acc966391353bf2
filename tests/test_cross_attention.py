"""Cross-attention capture (Llama-3.2-Vision / Mllama) on a tiny random-config ``MllamaForConditionalGeneration``
with the real ``MllamaProcessor``: the layout indexes the cross-attention keys (tiles x (CLS + patches)); markers
drawn into the image change exactly the keys whose boxes sit on them; padding tiles get probability exactly 0;
several images keep their key blocks apart; self-attention over the text stays capturable. Capture == eager
(``<= 1e-5``, identical ids, sdpa and eager backends, both conventions) is in test_capture's ``CAPTURE_CASES``."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import N_NEW, assert_capture_equals_eager, box_gap, decoder_input, noise_image
from PIL import Image

from emergence import Probe, ProbeRun, analyze
from emergence.adapters import build_layout, self_attention_modules
from emergence.capture import AttentionCapture
from emergence.errors import CaptureError, EmergenceError, LayoutError
from emergence.layouts import Medium
from emergence.testing import tiny_mllama

#: (width, height): landscape, portrait, a wide strip (3 of 4 tiles: one padding tile), a small square (upscaled to
#: one tile), a very wide image (downscaled into 1 x 4 tiles)
SIZES = [(160, 100), (100, 160), (70, 30), (20, 20), (300, 60)]
MARKER = (0.3, 0.25, 0.55, 0.7)  # (x0, y0, x1, y1) in fractions of the image
#: classes whose several-image placement is tested here (test_several_images_keep_their_key_blocks_apart)
MULTI_IMAGE_CLASSES = ("MllamaForConditionalGeneration",)


def vision_keys(model, inputs) -> torch.Tensor:
    """``[K, D]``: the vision tokens the cross-attention layers read (the language model's
    ``cross_attention_states``), from one forward."""
    keys = decoder_input(model, inputs, "cross_attention_states")
    return keys.reshape(-1, keys.shape[-1])


def _marked(image: Image.Image) -> tuple[Image.Image, tuple[int, int, int, int]]:
    arr = np.array(image)
    h, w = arr.shape[:2]
    rect = (int(MARKER[0] * w), int(MARKER[1] * h), int(MARKER[2] * w), int(MARKER[3] * h))
    arr[rect[1]:rect[3], rect[0]:rect[2]] = [255, 0, 255]
    return Image.fromarray(arr), rect


@pytest.mark.parametrize("size", SIZES)
def test_layout_indexes_the_keys_of_the_processors_tiles(size):
    model, processor = tiny_mllama()
    probe = Probe(model, processor)
    image = noise_image(*size)
    inputs = probe.prepare(image, "describe")
    layout = probe.layout(inputs, (image.height, image.width))
    keys = vision_keys(model, inputs)
    per_tile = (32 // 8) ** 2 + 1
    assert layout.meta["key_count"] == keys.shape[0] == inputs["pixel_values"].shape[2] * per_tile
    rows, cols = layout.meta["tiles"]
    real = int(inputs["aspect_ratio_mask"][0, 0].sum())
    assert rows * cols == real and layout.num_tokens == real * per_tile
    assert np.array_equal(layout.positions, np.arange(real * per_tile))  # padding tiles come last, not kept
    (view,) = layout.views
    assert view.grid == (rows * 4, cols * 4)
    grid = view.index.reshape(-1)
    assert len(set(grid.tolist())) == grid.size  # every patch token once
    assert set(grid.tolist()) | set(np.nonzero(layout.token_kind == "cls")[0].tolist()) == set(range(layout.num_tokens))
    assert (layout.token_kind == "cls").sum() == real
    # the canvas box: the resized image fills its top-left corner, the rest is bottom / right padding
    new_h, new_w = layout.meta["resized"]
    x0, y0, x1, y1 = view.box
    assert (x0, y0) == (0.0, 0.0)
    assert x1 == pytest.approx(cols * 32 * image.width / new_w)
    assert y1 == pytest.approx(rows * 32 * image.height / new_h)
    assert x1 >= image.width - 1e-9 and y1 >= image.height - 1e-9
    assert layout.render(np.arange(layout.num_tokens, dtype=np.float32)).shape == (image.height, image.width)


@pytest.mark.parametrize("size", SIZES)
def test_a_marker_changes_exactly_the_keys_whose_boxes_sit_on_it(size):
    model, processor = tiny_mllama(local_vision=True)
    probe = Probe(model, processor)
    image = noise_image(*size, seed=5)
    marked, rect = _marked(image)
    inputs = probe.prepare(image, "describe")
    layout = probe.layout(inputs, (image.height, image.width))
    diff = (vision_keys(model, inputs) - vision_keys(model, probe.prepare(marked, "describe"))).abs().sum(-1)
    kept = torch.as_tensor(layout.positions)
    outside = torch.ones(diff.shape[0], dtype=torch.bool)
    outside[kept] = False
    assert diff[outside].abs().sum().item() == 0.0  # padding tiles (if any) do not see the image
    changed = set(np.nonzero(diff[kept].numpy() > 1e-5)[0].tolist())
    assert changed and not changed & set(np.nonzero(layout.token_kind == "cls")[0].tolist())
    boxes = layout.token_boxes()
    for v in changed:
        b = boxes[v]
        assert box_gap(b, rect) <= 0.5 * max(b[2] - b[0], b[3] - b[1]) + 1, (v, b, rect)
    # and every token whose box lies well inside the marker did change
    for v in np.nonzero(layout.token_kind == "patch")[0]:
        b = boxes[v]
        if b[0] >= rect[0] + 1 and b[1] >= rect[1] + 1 and b[2] <= rect[2] - 1 and b[3] <= rect[3] - 1:
            assert v in changed, (v, b, rect)


def test_padding_tiles_get_exactly_zero_and_the_kept_keys_hold_all_the_mass():
    model, processor = tiny_mllama()
    probe = Probe(model, processor)
    image = noise_image(70, 30)  # 1 x 3 tiles of 4: one padding tile
    inputs = probe.prepare(image, "describe")
    layout = probe.layout(inputs, (image.height, image.width))
    assert layout.meta["tiles"] == [1, 3]
    every_key = torch.arange(layout.meta["key_count"])
    with AttentionCapture(model, every_key, storage_dtype=torch.float32) as cap, torch.no_grad():
        model.generate(**inputs, max_new_tokens=N_NEW, min_new_tokens=N_NEW, do_sample=False)
    maps = cap.maps()  # [T, L, H, K]
    padding = torch.ones(maps.shape[-1], dtype=torch.bool)
    padding[torch.as_tensor(layout.positions)] = False
    assert padding.sum() == 17 and maps[..., padding].abs().max().item() == 0.0
    torch.testing.assert_close(maps[..., ~padding].sum(-1), torch.ones(maps.shape[:-1]), rtol=0, atol=1e-5)


def test_run_records_cross_attention_layers_and_draws_heatmaps(tmp_path):
    model, processor = tiny_mllama()
    probe = Probe(model, processor)
    image = noise_image(120, 90)
    run = probe.generate(image, "describe the image", max_new_tokens=4, min_new_tokens=4)
    assert run.layers == [1, 3] and probe.num_layers == 2  # the cross-attention layers, by their decoder index
    assert run.meta["attention"] == "cross-attention"
    assert run.attention.shape == (4, 2, 4, run.layout.num_tokens)
    heat = run.heatmap(1)
    assert heat.shape == (90, 120) and np.isfinite(heat).all()
    gt = np.zeros((90, 120), bool)
    gt[20:60, 30:80] = True
    report = analyze(run, gt, segmenter="classical", layer_emergence=False)
    assert report.gt.shape == gt.shape
    run.save(tmp_path / "run")
    back = ProbeRun.load(tmp_path / "run")
    assert back.layout.to_dict() == run.layout.to_dict() and back.meta["attention"] == "cross-attention"
    assert list(back.layout.token_kind) == list(run.layout.token_kind)
    np.testing.assert_array_equal(back.heatmap(1), heat)


def test_several_images_keep_their_key_blocks_apart():
    model, processor = tiny_mllama(local_vision=True)
    probe = Probe(model, processor)
    images = [noise_image(160, 100, seed=1), noise_image(60, 90, seed=2)]
    inputs = probe.prepare_media(images, [], "describe the images")
    layout = probe.layout(inputs, [Medium("image", (im.height, im.width)) for im in images])
    assert layout.is_composite and [p.item for p in layout.parts] == [0, 1]
    block = 4 * 17  # max_image_tiles x (CLS + 16 patches)
    assert layout.parts[0].positions.min() == 0 and layout.parts[1].positions.min() == block
    for k, im in enumerate(images):  # each image's part is its layout when alone, moved to its key block
        alone = probe.layout(probe.prepare(im, "describe"), (im.height, im.width))
        part = layout.part(image=k)
        assert np.array_equal(part.positions, alone.positions + k * block)
        np.testing.assert_allclose(part.token_boxes(), alone.token_boxes(), equal_nan=True)
    marked, _ = _marked(images[1])
    diff = (vision_keys(model, inputs) - vision_keys(model, probe.prepare_media([images[0], marked], [], "describe "
                                                                                "the images"))).abs().sum(-1)
    changed = set(np.nonzero(diff.numpy() > 1e-5)[0].tolist())
    assert changed and changed <= set(layout.parts[1].positions.tolist())
    run = probe.generate(images, "describe the images", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    assert_capture_equals_eager(model, inputs, run)
    assert run.heatmap(1, image=1).shape == (90, 60)
    with pytest.raises(LayoutError, match="image=k"):
        run.heatmap(1)


def test_an_image_the_answer_does_not_read_is_warned_about_and_exactly_zero():
    model, processor = tiny_mllama()
    probe = Probe(model, processor)
    images = [noise_image(64, 64, seed=1), noise_image(64, 32, seed=2)]
    inputs = processor(images=[images], text=["<|image|> a red circle <|image|> describe"], return_tensors="pt")
    with pytest.warns(UserWarning, match="image 0 is not read by the answer"):
        run = probe.generate(images, inputs=inputs, max_new_tokens=3, min_new_tokens=3)
    assert run.select(image=0).attention.abs().max().item() == 0.0
    assert run.select(image=1).attention.float().sum(-1).min().item() > 0.99


def test_refusals_name_the_case():
    model, processor = tiny_mllama()
    probe = Probe(model, processor)
    image = noise_image(160, 100)
    inputs = dict(probe.prepare(image, "describe"))
    with pytest.raises(LayoutError, match="not the size of the processed image"):
        probe.layout(inputs, (100, 20))
    no_read = dict(inputs, cross_attention_mask=torch.zeros_like(inputs["cross_attention_mask"]))
    with pytest.raises(LayoutError, match="reads no image"):
        probe.layout(no_read, (100, 160))
    with pytest.raises(LayoutError, match="inputs hold no cross_attention_mask"):
        probe.layout({k: v for k, v in inputs.items() if k != "cross_attention_mask"}, (100, 160))
    two = probe.prepare_media([image, image], [], "describe")
    with pytest.raises(LayoutError, match="2 images.*one image was given"):
        build_layout(model, two["input_ids"], (100, 160), two, processor)
    with pytest.raises(EmergenceError, match="video"):
        probe.generate(video=[image, image], prompt="describe")


def test_self_attention_over_the_text_is_still_captured_and_kinds_do_not_mix(image):
    """The self-attention layers see the <|image|> placeholder in the text: capturing them over text positions
    works as for any decoder (== eager); one capture over both kinds of layer is refused."""
    model, processor = tiny_mllama(attn_implementation="eager")
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    text_positions = torch.arange(inputs["input_ids"].shape[1])
    selfs = self_attention_modules(model)
    assert [m.layer_idx for m in selfs] == [0, 2]
    with AttentionCapture(model, text_positions, modules=selfs, storage_dtype=torch.float32) as cap, torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=N_NEW, min_new_tokens=N_NEW, do_sample=False,
                             output_attentions=True, return_dict_in_generate=True)
    assert not cap.cross_attention
    first = torch.stack([out.attentions[0][i][0, :, -1] for i in (0, 2)])  # step 0: [L, H, S]
    assert (cap.maps()[0] - first).abs().max().item() <= 1e-5
    with pytest.raises(CaptureError, match="mix cross-attention and self-attention"):
        AttentionCapture(model, text_positions, modules=[*selfs, *probe.attention_modules])


@pytest.mark.parametrize("mechanism", ["interface", "hooks"])
def test_rows_over_a_prefill_and_cached_passes_equal_eager(mechanism):
    """Several rows per pass over a prefill and three cached passes (as chunked decoding or a speculative verifier
    runs them): each pass's text position comes from the cache the model is given (`cache=` from transformers 5.24
    on, `past_key_values=` before), and every row equals eager `output_attentions` at the vision keys."""
    from transformers import DynamicCache

    from emergence.adapters import adapter_for

    model, processor = tiny_mllama()
    probe = Probe(model, processor)
    image = noise_image(160, 100)
    inputs = probe.prepare(image, "describe")
    layout = probe.layout(inputs, (image.height, image.width))
    prompt_len = inputs["input_ids"].shape[1]
    with torch.no_grad():
        sequences = model.generate(**inputs, max_new_tokens=7, min_new_tokens=7, do_sample=False)
    full = adapter_for(model).extend_inputs(inputs, sequences)
    bounds = [0, prompt_len, prompt_len + 2, prompt_len + 5, prompt_len + 7]
    layers = [m.layer_idx for m in probe.attention_modules]

    # the cache keyword the model's forward takes: `cache` from transformers 5.24 on, `past_key_values` before
    cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def passes(attn: str, each):
        model.set_attn_implementation(attn)
        cache = DynamicCache(config=model.config.get_text_config())
        for a, b in zip(bounds, bounds[1:]):
            step = {"input_ids": full["input_ids"][:, a:b], "attention_mask": full["attention_mask"][:, :b],
                    "cross_attention_mask": full["cross_attention_mask"][:, a:b], cache_name: cache,
                    "use_cache": True}
            if a == 0:
                step.update({k: inputs[k] for k in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")})
            each(a, b, step)

    reference = []

    def eager(a, b, step):
        with torch.no_grad():
            out = model(**step, output_attentions=True)
        rows = torch.stack([out.attentions[i][0].float() for i in layers])  # [L, H, q_len, K]
        reference.append(rows[..., torch.as_tensor(layout.positions)].permute(2, 0, 1, 3))  # [q_len, L, H, V]

    captured = []

    def capture(a, b, step):
        with AttentionCapture(model, layout.positions, query_positions=range(a, b), storage_dtype=torch.float32,
                              mechanism=mechanism) as cap, torch.no_grad():
            model(**step)
        captured.append(cap.maps())

    passes("eager", eager)
    passes("eager" if mechanism == "hooks" else "sdpa", capture)
    assert [c.shape[0] for c in captured] == [b - a for a, b in zip(bounds, bounds[1:])]
    for got, want in zip(captured, reference):
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= 1e-5
    assert torch.cat(reference).sum().item() > 0.01
