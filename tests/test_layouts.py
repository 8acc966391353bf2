"""Layouts against the REAL processors and models: token counts, and where each token's pixels come from.

The geometry test is not circular: with ``local_vision=True`` each visual token's embedding depends only on the
pixels of its own patch, so drawing a marker into the original image and diffing the language model's input
embeddings tells which tokens see the marker, according to the real processor (resize, pad, crop, tiles) and the real
model (feature packing, unpad, newlines, pixel shuffle). The layout's boxes for exactly those tokens must sit on the
marker, and a one-hot vector on such a token must render there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, box_gap, lm_input_embeddings, noise_image, run_example
from PIL import Image
from transformers import LlavaForConditionalGeneration

from emergence import Probe
from emergence.errors import LayoutError, UnsupportedModelError
from emergence.layouts import View, VisualLayout, build_layout, register_layout, registered_layouts
from emergence.adapters import unregister_adapter
from emergence.testing import with_image_backend

W, H = 160, 100  # non-square on purpose

try:
    import torchvision  # noqa: F401

    #: the image-processor backends whose geometry is checked here: transformers' PIL classes (what it uses without
    #: torchvision) and, where torchvision is installed (`make test-full`), the torchvision classes it uses with it
    BACKENDS = ["pil", "torchvision"]
except ImportError:
    BACKENDS = ["pil"]


def _family(family: str, backend: str, **kwargs):
    """``FAMILIES[family]`` with its image processor on ``backend``; skipped (with the reason) for families whose
    processor has no transformers twin on that backend (the stand-ins for processors that need torchvision)."""
    model, processor = FAMILIES[family](**kwargs)
    try:
        return model, with_image_backend(processor, backend)
    except LookupError as exc:
        pytest.skip(f"{family}: {exc}")

# (x0, y0, x1, y1) marker rectangles in original pixels: off-centre, near corners, inside the crop band
MARKERS = [(20, 14, 44, 34), (112, 60, 136, 84), (66, 40, 86, 58)]


def _changed_tokens(model, probe, layout, base_img, marked_img) -> np.ndarray:
    a = lm_input_embeddings(model, probe.prepare(base_img, "describe"))
    b = lm_input_embeddings(model, probe.prepare(marked_img, "describe"))
    diff = (a - b).abs().sum(-1)[torch.as_tensor(layout.positions)]
    return np.nonzero(diff.numpy() > 1e-5)[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_token_count_equals_image_tokens_and_model_features(family, backend):
    model, processor = _family(family, backend)
    probe = Probe(model, processor)
    img = noise_image(W, H)
    inputs = probe.prepare(img, "describe")
    layout = probe.layout(inputs, (H, W))
    n_image_tokens = int((inputs["input_ids"][0] == model.config.image_token_id).sum())
    assert layout.num_tokens == n_image_tokens
    # the model accepts exactly this many visual features (it raises on a mismatch) and the grids cover them
    with torch.no_grad(), probe.upstream_fixes():
        model(**inputs)
    grid_tokens = sum(int((v.index >= 0).sum()) for v in layout.views)
    assert grid_tokens == int(layout.patch_mask.sum())
    assert grid_tokens + int((~layout.patch_mask).sum()) == n_image_tokens


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("marker", MARKERS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_marker_lands_on_the_tokens_whose_boxes_cover_it(family, marker, backend):
    model, processor = _family(family, backend, local_vision=True)
    probe = Probe(model, processor)
    base = noise_image(W, H, seed=1)
    arr = np.array(base)
    x0, y0, x1, y1 = marker
    arr[y0:y1, x0:x1] = [255, 0, 255]
    marked = Image.fromarray(arr)
    layout = probe.layout(probe.prepare(base, "describe"), (H, W))
    changed = _changed_tokens(model, probe, layout, base, marked)
    assert len(changed) > 0, "the marker changed no visual token"
    boxes = layout.token_boxes()
    assert layout.patch_mask[changed].all(), "a non-grid token (newline/CLS) changed"
    # every token that sees the marker has its box on (or within half a cell of) the marker: resize kernels bleed
    for v in changed:
        cell = max(boxes[v, 2] - boxes[v, 0], boxes[v, 3] - boxes[v, 1])
        assert box_gap(boxes[v], marker) <= 0.5 * cell + 1, (v, boxes[v], marker)
    # every token whose box lies well inside the marker sees it
    inside = [
        v for v in np.nonzero(layout.patch_mask)[0]
        if boxes[v, 0] >= x0 + 2 and boxes[v, 2] <= x1 - 2 and boxes[v, 1] >= y0 + 2 and boxes[v, 3] <= y1 - 2
    ]
    assert set(inside) <= set(changed.tolist())
    # a one-hot vector on a changed token renders with its peak inside that token's box, near the marker
    for v in changed[:4]:
        one_hot = np.zeros(layout.num_tokens)
        one_hot[v] = 1.0
        heat = layout.render(one_hot)
        assert heat.shape == (H, W)
        py, px = np.unravel_index(np.argmax(heat), heat.shape)
        b = boxes[v]
        assert b[0] - 1 <= px + 0.5 <= b[2] + 1 and b[1] - 1 <= py + 0.5 <= b[3] + 1


def test_llava_crop_geometry_matches_hand_computation():
    # 160x100 -> shortest edge 32 -> 51x32 (int(32*160/100)=51) -> centre crop 32: left = (51-32)//2 = 9
    model, processor = FAMILIES["llava"]()
    layout = Probe(model, processor).layout(processor(images=noise_image(W, H), text="<image>", return_tensors="pt"), (H, W))
    scale_x = 51 / 160  # canvas pixels per original pixel along x
    x0, y0, x1, y1 = layout.views[0].box
    assert x0 == pytest.approx(9 / scale_x) and x1 == pytest.approx((9 + 32) / scale_x) and (y0, y1) == (0.0, 100.0)
    coverage = layout.coverage()
    assert not coverage[:, 0].any() and coverage[:, W // 2].all()  # the crop removed the sides


def test_unregistered_contiguous_model_uses_fallback_without_new_code():
    """With its adapter unregistered, PaliGemma gets the generic layout, proved to fit, with the adapter's geometry."""
    from emergence.adapters import register_adapter

    model, processor = FAMILIES["paligemma_fallback"]()
    registered = Probe(model, processor).layout(Probe(model, processor).prepare(noise_image(W, H), "describe"), (H, W))
    adapter = unregister_adapter("PaliGemmaForConditionalGeneration")
    try:
        assert "PaliGemmaForConditionalGeneration" not in registered_layouts()
        run = Probe(model, processor).generate(noise_image(W, H), "describe", max_new_tokens=2)
    finally:
        register_adapter(adapter)
    assert "fallback" in run.layout.meta and run.layout.num_tokens == 16
    assert np.array_equal(run.layout.token_boxes(), registered.token_boxes())


def test_llava_subclass_and_other_backbones_work_without_new_code():
    class MyLlava(LlavaForConditionalGeneration):
        pass

    model, processor = FAMILIES["llava"](text_backbone="qwen2")
    model.__class__ = MyLlava
    run = Probe(model, processor).generate(noise_image(W, H), "describe", max_new_tokens=2)
    assert run.layout.views[0].grid == (4, 4)


class _UnknownVLM:
    """A model whose image tokens are not one contiguous block and whose class is not registered."""

    def __init__(self, config):
        self.config = config


def test_unsupported_architecture_error_names_class_and_how_to_register():
    model, processor = FAMILIES["idefics3"]()
    inputs = processor(images=noise_image(W, H), text="<image>describe", return_tensors="pt")
    with pytest.raises(UnsupportedModelError) as err:
        build_layout(_UnknownVLM(model.config), inputs["input_ids"], (H, W), inputs, processor)
    assert "_UnknownVLM" in str(err.value) and "register_adapter" in str(err.value)


def test_register_layout_for_a_custom_model():
    model, processor = FAMILIES["idefics3"]()
    inputs = processor(images=noise_image(W, H), text="<image>describe", return_tensors="pt")

    def my_layout(ctx):
        positions = ctx.image_positions()
        return VisualLayout(positions, ctx.image_size, [View("all", np.arange(len(positions))[None], (0, 0, W, H))],
                            family="mine")

    register_layout(_UnknownVLM, my_layout)
    try:
        layout = build_layout(_UnknownVLM(model.config), inputs["input_ids"], (H, W), inputs, processor)
        assert layout.family == "mine" and layout.num_tokens == 80
        with pytest.raises(ValueError, match="already registered"):
            register_layout("_UnknownVLM", lambda ctx: None)
    finally:
        unregister_adapter("_UnknownVLM")


def test_text_only_model_is_rejected():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    with pytest.raises(UnsupportedModelError, match="text-only"):
        Probe(model, None)


def test_layout_count_mismatch_is_a_clear_error():
    model, processor = FAMILIES["llava_next"]()
    inputs = processor(images=noise_image(W, H), text="<image>describe", return_tensors="pt")
    with pytest.raises(LayoutError, match="image tokens"):
        build_layout(model, inputs["input_ids"][:, 5:], (H, W), inputs, processor)


# ---------------------------------------------------------------------------------------------------- rendering
def _toy_layout() -> VisualLayout:
    views = [
        View("global", np.arange(4).reshape(2, 2), (0, 0, 40, 20), kind="global"),
        View("tiles", np.arange(4, 12).reshape(2, 4), (0, 0, 40, 20), kind="tiles"),
    ]
    return VisualLayout(np.arange(10, 22), (20, 40), views, family="toy")


def test_render_constant_is_constant_and_never_nan():
    layout = _toy_layout()
    for fuse in ("mean", "global", "tiles"):
        heat = layout.render(np.full(12, 0.25), fuse=fuse)
        assert np.allclose(heat, 0.25, atol=1e-6)
    assert np.isfinite(layout.render(np.zeros(12))).all()


def test_render_fusion_rules():
    layout = _toy_layout()
    vec = np.zeros(12)
    vec[:4] = 1.0  # global view only
    assert np.allclose(layout.render(vec, fuse="mean"), 0.5, atol=1e-6)
    assert np.allclose(layout.render(vec, fuse="global"), 1.0, atol=1e-6)
    assert np.allclose(layout.render(vec, fuse="tiles"), 0.0, atol=1e-6)
    # density: attention mass per pixel, so the map integrates to the total mass (4 tokens of mass 1)
    assert layout.render(vec, fuse="density").sum() == pytest.approx(4.0, rel=1e-4)


def test_render_fills_uncovered_pixels_with_the_minimum():
    layout = VisualLayout(np.arange(4), (10, 30), [View("image", np.arange(4).reshape(2, 2), (10, 0, 20, 10))],
                          family="toy")
    heat = layout.render(np.array([1.0, 2.0, 3.0, 4.0]), mode="nearest")
    assert heat[:, :10].max() == heat[:, 10:20].min() == 1.0
    assert heat[0, 10] == 1.0 and heat[9, 19] == 4.0
    assert np.all(layout.render(np.arange(4.0), fill=-5.0)[:, 25] == -5.0)


def test_render_rejects_wrong_length_and_nan():
    layout = _toy_layout()
    with pytest.raises(LayoutError, match="12 tokens"):
        layout.render(np.zeros(5))
    with pytest.raises(LayoutError, match="NaN"):
        layout.render(np.full(12, np.nan))


def test_layout_dict_round_trip():
    layout = _toy_layout()
    again = VisualLayout.from_dict(layout.to_dict())
    assert again.to_dict() == layout.to_dict()
    assert np.array_equal(again.render(np.arange(12.0)), layout.render(np.arange(12.0)))


def test_pixels_a_tile_feeds_to_no_token_are_claimed_by_no_tile_token():
    """SmolVLM-style tiles whose side is not a multiple of the patch (36 px, patch 8: the tower reads 32 px of each
    tile). On a 72 x 72 image (2 x 2 tiles, no resize, so no resampling blur) a marker in the unread strip of the
    first tile changes no tile token in the real model, and no tile token's box may cover it (the global view, which
    reads the whole image, may)."""
    model, processor = FAMILIES["smolvlm_uneven_tiles"](local_vision=True)
    probe = Probe(model, processor)
    side, patch, scale = 36, 8, 2
    base = noise_image(2 * side, 2 * side, seed=3)
    layout = probe.layout(probe.prepare(base, "describe"), (2 * side, 2 * side))
    assert layout.meta["tile_grid"] == [2, 2]
    used = side // patch // scale * scale * patch  # 32
    x0, x1, y0, y1 = used, side, 4, 28  # the unread strip of tile (0, 0)
    arr = np.array(base)
    arr[y0:y1, x0:x1] = [255, 0, 255]
    changed = _changed_tokens(model, probe, layout, base, Image.fromarray(arr))
    tile_tokens = {int(t) for v in layout.views if v.kind == "tiles" for t in v.index[v.index >= 0].ravel()}
    assert len(changed) > 0 and not set(changed.tolist()) & tile_tokens  # the model: only global tokens see it
    boxes = layout.token_boxes()
    for t in tile_tokens:
        b = boxes[t]
        assert not (b[0] < x1 and b[2] > x0 and b[1] < y1 and b[3] > y0), (t, b, (x0, y0, x1, y1))


@pytest.mark.parametrize("size", [(60, 170), (170, 60), (48, 200), (200, 48), (500, 1400), (1400, 500)])
@pytest.mark.parametrize("family", ["smolvlm", "smolvlm_real_geometry", "llava_next"])
def test_default_rendering_puts_a_corner_marker_inside_the_marker_at_any_aspect_ratio(family, size):
    """How much each token sees a corner marker (per the real model), rendered with the default fusion rule, peaks
    inside the marker, also on tall and narrow images where a coarse global view covers far more than the marker
    (SmolVLM's real tile geometry included)."""
    w, h = size
    model, processor = FAMILIES[family](local_vision=True)
    probe = Probe(model, processor)
    base = noise_image(w, h, seed=5)
    side = max(8, min(w, h) // 3)
    rect = (w - side - 2, h - side - 2, w - 2, h - 2)  # bottom-right corner
    arr = np.array(base)
    arr[rect[1]:rect[3], rect[0]:rect[2]] = [255, 0, 255]
    layout = probe.layout(probe.prepare(base, "describe"), (h, w))
    a = lm_input_embeddings(model, probe.prepare(base, "describe"))
    b = lm_input_embeddings(model, probe.prepare(Image.fromarray(arr), "describe"))
    vec = (a - b).abs().sum(-1)[torch.as_tensor(layout.positions)].numpy()  # how much each token saw the marker
    heat = layout.render(vec / vec.max())
    py, px = np.unravel_index(np.argmax(heat), heat.shape)
    assert rect[0] - 1 <= px <= rect[2] and rect[1] - 1 <= py <= rect[3], (layout.default_fuse, (px, py), rect)


def test_a_registered_adapter_owns_attention_modules_prompt_and_layout():
    """Probe and the capture engine take the captured modules, the prompt text and the layout from the adapter."""
    from emergence.adapters import Adapter, adapter_for, register_adapter, self_attention_modules
    from emergence.layouts import build_layout as layouts_build

    class MyLlava(LlavaForConditionalGeneration):
        pass

    class LastLayerAdapter(Adapter):
        family = "test: last layer only"
        architectures = ("MyLlava",)

        def attention_modules(self, model):
            return self_attention_modules(model)[-1:]

        def build_prompt(self, processor, prompt):
            return super().build_prompt(processor, "Answer briefly. " + prompt)

        def layout(self, ctx):
            return adapter_for(LlavaForConditionalGeneration).layout(ctx)

    model, processor = FAMILIES["llava"]()
    model.__class__ = MyLlava
    register_adapter(LastLayerAdapter())
    try:
        probe = Probe(model, processor)
        assert isinstance(probe.adapter, LastLayerAdapter)
        assert "Answer briefly. describe" in probe.build_prompt("describe")
        run = probe.generate(noise_image(W, H), "describe", max_new_tokens=2)
        last = model.config.text_config.num_hidden_layers - 1
        assert run.layers == [last] and run.attention.shape[1] == 1
        inputs = probe.prepare(noise_image(W, H), "describe")
        assert layouts_build(model, inputs["input_ids"], (H, W), inputs, processor).num_tokens == run.layout.num_tokens
    finally:
        unregister_adapter("MyLlava")
    assert isinstance(Probe(model, processor).adapter, type(adapter_for(LlavaForConditionalGeneration)))


def test_video_llava_images_under_pixel_values_images_are_probed_from_processed_inputs():
    """Video-LLaVA's processor returns ``pixel_values_images``: processed inputs are accepted as they are (no
    "inputs hold no pixel_values" error), cast to the model's dtype, and a missing image is still named."""
    model, processor = FAMILIES["video_llava"]()
    probe = Probe(model, processor)
    inputs = probe.prepare(noise_image(W, H), "describe")
    assert "pixel_values" not in inputs and "pixel_values_images" in inputs
    run = probe.generate(noise_image(W, H), inputs=inputs, max_new_tokens=2)
    assert run.layout.num_tokens == 16 and run.attention.shape[-1] == 16
    half = probe.adapter.model_inputs(inputs, model.to(torch.bfloat16))
    assert half["pixel_values_images"].dtype == torch.bfloat16
    model.to(torch.float32)
    with pytest.raises(ValueError, match="pixel_values_images or pixel_values"):
        probe.generate(noise_image(W, H), inputs={k: v for k, v in inputs.items() if k != "pixel_values_images"})


def test_gemma3_pan_and_scan_crops_of_a_portrait_image_sit_where_the_model_reads_them():
    """The landscape case runs in the generic marker test; here a portrait image cut into three crops."""
    model, processor = FAMILIES["gemma3_pan_and_scan"](local_vision=True)
    probe = Probe(model, processor)
    w, h = 100, 260
    base = noise_image(w, h, seed=3)
    arr = np.array(base)
    marker = (30, 200, 70, 240)  # inside the last crop only
    arr[marker[1]:marker[3], marker[0]:marker[2]] = [255, 0, 255]
    layout = probe.layout(probe.prepare(base, "describe"), (h, w))
    assert layout.meta["pan_and_scan_crops"] == 3
    changed = _changed_tokens(model, probe, layout, base, Image.fromarray(arr))
    boxes = layout.token_boxes()
    views = {v.name: set(v.index.flatten().tolist()) for v in layout.views}
    touched = {name for name, idx in views.items() if idx & set(changed.tolist())}
    assert touched == {"original", "crop_2"}
    for v in changed:
        cell = max(boxes[v, 2] - boxes[v, 0], boxes[v, 3] - boxes[v, 1])
        assert box_gap(boxes[v], marker) <= 0.5 * cell + 1


def test_deepseek_hybrid_high_resolution_input_is_checked_and_cast_with_the_image():
    model, processor = FAMILIES["deepseek_vl_hybrid"]()
    probe = Probe(model, processor)
    inputs = dict(probe.prepare(noise_image(W, H), "describe"))
    high = inputs["high_res_pixel_values"]
    assert high.shape[-2:] == (2 * inputs["pixel_values"].shape[-2], 2 * inputs["pixel_values"].shape[-1])
    cast = probe.adapter.model_inputs(inputs, model.to(torch.bfloat16))
    model.to(torch.float32)
    assert cast["high_res_pixel_values"].dtype == torch.bfloat16 == cast["pixel_values"].dtype
    with pytest.raises(LayoutError, match="not the same square"):
        probe.layout(dict(inputs, high_res_pixel_values=high[..., :, : high.shape[-1] // 2]), (H, W))


def test_lfm2_vl_tiles_without_their_markers_are_refused_not_guessed():
    """Without the <|img_row_r_col_c|> markers (use_image_special_tokens=False) the tile grid of six views could be
    1x6, 2x3, 3x2 or 6x1: refused."""
    model, processor = FAMILIES["lfm2_vl"]()
    probe = Probe(model, processor)
    inputs = dict(probe.prepare(noise_image(W, H), "describe"))
    ids = inputs["input_ids"][0]
    tok = processor.tokenizer
    marks = {i for t, i in zip(tok.convert_ids_to_tokens(ids), range(len(ids))) if t.startswith("<|img_")}
    keep = torch.tensor([i not in marks for i in range(len(ids))])
    bare = dict(inputs, input_ids=ids[keep][None], attention_mask=inputs["attention_mask"][:, keep])
    with pytest.raises(UnsupportedModelError, match="use_image_special_tokens=True"):
        probe.layout(bare, (H, W))


def test_cohere2_canvas_rule_equals_the_processors_own_code():
    """The restated canvas rule (used when torchvision is absent) against Cohere2VisionImageProcessor's functions."""
    from emergence.adapters.tiles import cohere2_tile_grid

    from emergence.testing import source_functions

    real = source_functions("transformers.models.cohere2_vision.image_processing_cohere2_vision",
                            ("get_all_supported_aspect_ratios", "get_optimal_tiled_canvas"))
    rng = np.random.default_rng(0)
    sizes = [(100, 160), (160, 100), (512, 512), (3000, 200), (200, 3000), (1, 1), (511, 1025)]
    sizes += [tuple(int(v) for v in rng.integers(1, 4000, 2)) for _ in range(300)]
    for h, w in sizes:
        for max_tiles in (1, 4, 6, 12):
            expected = tuple(int(v) for v in real["get_optimal_tiled_canvas"]((h, w), (512, 512), 1, max_tiles))
            assert cohere2_tile_grid((h, w), 512, max_tiles) == expected, (h, w, max_tiles)


def test_llama4_fit_rule_equals_the_processors_own_code():
    from emergence.adapters.tiles import max_res_without_distortion
    from emergence.testing import source_functions

    real = source_functions("transformers.models.llama4.image_processing_llama4", ("get_max_res_without_distortion",))
    rng = np.random.default_rng(1)
    for _ in range(2000):
        image = tuple(int(v) for v in rng.integers(1, 3000, 2))
        target = tuple(int(v) * 336 for v in rng.integers(1, 5, 2))
        assert max_res_without_distortion(image, target) == tuple(real["get_max_res_without_distortion"](image, target))


def test_llama4_tiles_sit_on_the_fitted_image_and_the_padding_belongs_to_no_pixel():
    model, processor = FAMILIES["llama4"]()
    probe = Probe(model, processor)
    layout = probe.layout(probe.prepare(noise_image(W, H), "describe"), (H, W))
    rows, cols = layout.meta["tile_grid"]
    assert rows * cols > 1 and layout.views[-1].name == "global"
    tiles = [v for v in layout.views if v.kind == "tiles"]
    right = max(v.box[2] for v in tiles)
    bottom = max(v.box[3] for v in tiles)
    assert right >= W and bottom >= H  # the canvas covers the image, padding reaches past it
    # the fitted size the layout derives is the one the processor's own functions gave, so tiles end where the image
    # does and the padding lies outside the original image
    nh, nw = processor.last_resized_hw
    assert tuple(layout.meta["resized_hw"]) == (nh, nw)
    tile = model.config.vision_config.image_size
    assert right == pytest.approx(cols * tile * W / nw) and bottom == pytest.approx(rows * tile * H / nh)


def test_inputs_with_several_images_or_a_video_given_one_image_size_are_named_not_misplaced():
    """Inputs with two images (or a video) given with one image's size are refused by name, with the fix (pass
    every image / the video's frames), not 'token blocks are not contiguous' or 'no pixel_values'."""
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    img = noise_image(W, H)
    two = processor(images=[img, img], text="USER: <image> <image> describe ASSISTANT:", return_tensors="pt")
    with pytest.raises(LayoutError, match="hold 2 views but one image was given.*pass every image"):
        probe.layout(two, (H, W))
    model, processor = FAMILIES["qwen2_vl"]()
    probe = Probe(model, processor)
    one = dict(probe.prepare(img, "describe"))
    grid = one["image_grid_thw"]
    with pytest.raises(LayoutError, match="inputs hold 2 images \\(image_grid_thw has 2 entries\\).*pass every"):
        probe.layout(dict(one, image_grid_thw=torch.cat([grid, grid])), (H, W))
    video = {k: v for k, v in one.items() if k not in ("pixel_values", "image_grid_thw")}
    video["pixel_values_videos"] = one["pixel_values"]
    with pytest.raises(ValueError, match="hold a video \\(pixel_values_videos\\) and no image"):
        probe.generate(img, inputs=video, max_new_tokens=1)


def test_the_custom_adapter_example_runs_and_its_adapter_is_used():
    stdout = run_example("custom_adapter.py")
    assert "MyVLMAdapter('My VLM', exact)" in stdout and "Task: describe." in stdout
    assert "my_vlm, 16 visual tokens" in stdout and "heatmap: (100, 160)" in stdout


@pytest.mark.parametrize("family", ["got_ocr2_tiles", "llava_next", "llava_onevision"])
@pytest.mark.parametrize("size", [(17, 300), (300, 17), (1000, 90)])
def test_extreme_aspect_ratios_are_placed_or_refused_never_crash(family, size):
    """GotOcr2Processor tiles with its call default max_patches=12 whatever the image processor says (6 here): the
    grid is still found. LLaVA-NeXT / OneVision mosaics of images thinner than one feature are empty (newlines
    only): the base view alone is placed."""
    w, h = size
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    inputs = probe.prepare(noise_image(w, h), "describe")
    layout = probe.layout(inputs, (h, w))
    assert layout.num_tokens == int((inputs["input_ids"][0] == model.config.image_token_id).sum())
    with torch.no_grad():
        model(**inputs)
    heat = layout.render(np.random.default_rng(0).random(layout.num_tokens))
    assert heat.shape == (h, w) and np.isfinite(heat).all()
    if family == "got_ocr2_tiles":
        rows, cols = layout.meta["tile_grid"]
        assert rows * cols + 1 == inputs["pixel_values"].shape[0]
