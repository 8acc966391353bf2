"""The token-emergence analyzer: golden maps/points/IoUs/positions, segmenters (classical, tiny real Sam2Model),
grouping by offsets, concept judges, and analyze() end to end on the shipped organism."""

from __future__ import annotations

import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emergence.analysis import (
    BIN_LABELS,
    ClassicalSegmenter,
    HTTPJudge,
    LexiconJudge,
    MapOptions,
    PointPrompt,
    PromptOptions,
    Sam2Segmenter,
    analyze,
    answer_position,
    argmax_point,
    build_segmenter,
    ciou,
    head_scores,
    iou,
    make_prompt,
    map_mass_inside,
    mask_ious,
    miou,
    peak_points,
    pointing_hit,
    position_bin,
    recall_at,
    segment_prompts,
    token_maps,
    top_heads,
    word_units,
)
from emergence.analysis.select import candidate_montage, parse_choice
from emergence.errors import EmergenceError
from emergence.layouts.base import View, VisualLayout
from emergence.run import ProbeRun

# ---------------------------------------------------------------------------------------------------- helpers


def grid_layout(rows: int = 4, cols: int = 4, size: tuple[int, int] = (64, 64)) -> VisualLayout:
    view = View(name="grid", index=np.arange(rows * cols).reshape(rows, cols), box=(0, 0, size[1], size[0]))
    return VisualLayout(positions=np.arange(5, 5 + rows * cols), image_size=size, views=[view], family="test")


def synthetic_run(attention: torch.Tensor, text: str, tokens: list[str], offsets: list[tuple[int, int]],
                  layout: VisualLayout, image: Image.Image | None = None) -> ProbeRun:
    return ProbeRun(text=text, token_ids=torch.arange(len(tokens)), tokens=tokens, token_offsets=torch.tensor(offsets),
                    attention=attention, layout=layout, layers=list(range(attention.shape[1])), image=image)


def square_image(size: int = 64) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """Grey image with a red square (rows/cols 8..23) and a blue disc; returns (image, square mask, disc mask)."""
    img = np.full((size, size, 3), 200, np.uint8)
    square = np.zeros((size, size), bool)
    square[8:24, 8:24] = True
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 44) ** 2 + (xx - 44) ** 2 <= 81
    img[square] = (220, 30, 30)
    img[disc] = (30, 60, 220)
    return Image.fromarray(img), square, disc


# ---------------------------------------------------------------------------------------------------- golden: points


def test_argmax_and_top_k_peaks_are_exact_on_synthetic_maps():
    yy, xx = np.mgrid[:50, :80]
    peaks = [(61, 12, 1.0), (15, 40, 0.8), (40, 25, 0.6)]  # (x, y, height)
    heat = sum(h * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 18.0) for x, y, h in peaks)
    assert argmax_point(heat) == (61, 12)
    assert peak_points(heat, 3, min_distance=10).tolist() == [[61, 12], [15, 40], [40, 25]]
    # suppression: with a radius wider than the gaps only the first peak survives each disc
    assert peak_points(heat, 2, min_distance=60).tolist()[0] == [61, 12]
    prompt = make_prompt(heat, PromptOptions(positives=2, negatives=1, min_distance=10, box=True))
    assert prompt.points.tolist()[:2] == [[61, 12], [15, 40]]
    assert prompt.labels.tolist() == [1, 1, 0]
    assert heat[int(prompt.points[2, 1]), int(prompt.points[2, 0])] == heat.min()
    x0, y0, x1, y1 = prompt.box
    assert x0 <= 61 <= x1 and y0 <= 12 <= y1 and (x1 - x0) < 20  # box around the top peak only


def test_maps_with_known_peaks_render_to_points_in_the_right_patch():
    layout = grid_layout()
    t, v = 3, 16
    att = torch.full((t, 2, 2, v), 0.01)
    hot = [5, 10, 15]  # token -> patch with the peak
    for i, p in enumerate(hot):
        att[i, :, :, p] = 0.5
    run = synthetic_run(att, "a b c", ["a", " b", " c"], [(0, 1), (1, 3), (3, 5)], layout)
    maps = token_maps(run)
    heat = layout.render(maps)
    for i, p in enumerate(hot):
        x, y = argmax_point(heat[i])
        r, c = divmod(p, 4)
        assert 16 * c <= x < 16 * (c + 1) and 16 * r <= y < 16 * (r + 1), (i, x, y)


def test_normalisation_of_constant_and_empty_maps_never_gives_nan():
    layout = grid_layout()
    const = torch.full((4, 1, 1, 16), 1 / 16)
    run = synthetic_run(const, "a b c d", ["a", " b", " c", " d"], [(0, 1), (1, 3), (3, 5), (5, 7)], layout)
    for mode in ("mean_subtract", "minmax", "none"):
        m = token_maps(run, MapOptions(normalise=mode))
        assert torch.isfinite(m).all()
        if mode != "none":
            assert torch.count_nonzero(m) == 0
    zero = synthetic_run(torch.zeros(4, 1, 1, 16), "a b c d", ["a", " b", " c", " d"],
                         [(0, 1), (1, 3), (3, 5), (5, 7)], layout)
    assert torch.isfinite(token_maps(zero, MapOptions(normalise="minmax", sink_z=3.0))).all()


def test_sink_and_corner_suppression_remove_exactly_the_planted_positions():
    layout = grid_layout()
    g = torch.Generator().manual_seed(0)
    att = torch.rand(6, 1, 1, 16, generator=g) * 0.05
    att[:, :, :, 6] = 0.9  # a sink: huge mass on every token
    run = synthetic_run(att, "a b c d e f", list("abcdef"), [(i, i + 1) for i in range(6)], layout)
    raw = token_maps(run, MapOptions(normalise="none"))
    assert (raw.argmax(1) == 6).all()
    cleaned = token_maps(run, MapOptions(normalise="none", sink_z=3.0))
    assert not (cleaned.argmax(1) == 6).any()
    assert torch.equal(torch.cat([cleaned[:, :6], cleaned[:, 7:]], 1), torch.cat([raw[:, :6], raw[:, 7:]], 1))
    att2 = att.clone()
    att2[:, :, :, 6] = att[:, :, :, 7]
    att2[:, :, :, [0, 3, 12, 15]] = 0.7
    corners = token_maps(synthetic_run(att2, "a b c d e f", list("abcdef"), [(i, i + 1) for i in range(6)], layout),
                         MapOptions(normalise="none", remove_corners=True))
    assert set(corners.argmax(1).tolist()).isdisjoint({0, 3, 12, 15})


# ---------------------------------------------------------------------------------------------------- golden: metrics


def test_ious_of_synthetic_masks_are_exact():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[0:10, 0:10] = True  # 100 px
    b[5:15, 5:15] = True  # 100 px, overlap 25
    assert iou(a, b) == pytest.approx(25 / 175)
    assert iou(a, a) == 1.0
    stack = np.stack([a, b, a & b, np.zeros_like(a)])[None]  # [1, 4, H, W]
    assert mask_ious(stack, b)[0].tolist() == pytest.approx([25 / 175, 1.0, 25 / 100, 0.0])
    assert ciou([a, b], [b, b]) == pytest.approx((25 + 100) / (175 + 100))
    assert miou([0.2, 0.6]) == pytest.approx(0.4)
    assert recall_at([0.49, 0.5, 0.9]) == pytest.approx(2 / 3)
    assert pointing_hit((7, 3), a) and not pointing_hit((12, 3), a) and not pointing_hit((-1, 3), a)
    heat = np.zeros((20, 20))
    heat[0:10, 0:10] = 1.0
    heat[15, 15] = 3.0
    assert map_mass_inside(heat, a) == pytest.approx(100 / 103)


def test_empty_ground_truth_follows_the_absent_object_rule():
    gt = np.zeros((10, 10), bool)
    small, half, big = (np.zeros((10, 10), bool) for _ in range(3))
    small[:4] = True  # 40% of the image
    half[:5] = True  # exactly 50%: not below half
    big[:9] = True
    assert iou(small, gt) == 1.0 and iou(half, gt) == 0.0 and iou(big, gt) == 0.0
    assert mask_ious(np.stack([small, half, big]), gt).tolist() == [1.0, 0.0, 0.0]


def test_answer_position_and_ten_percent_bins_match_hand_computed_values():
    text = "The red car is parked on the left side."  # 39 characters
    assert len(text) == 39
    assert answer_position(text.index("car"), len(text)) == pytest.approx(8 / 39)
    assert position_bin(8 / 39) == 2  # 20.5% -> 20-30%
    assert position_bin(answer_position(text.index("left"), len(text))) == 7  # 29/39 = 74.4%
    assert position_bin(0.3) == 3 and position_bin(0.0) == 0 and position_bin(0.999) == 9
    assert BIN_LABELS[2] == "20-30%"
    with pytest.raises(ValueError, match="outside"):
        answer_position(39, 39)


# ---------------------------------------------------------------------------------------------------- grouping, concepts


def test_words_are_grouped_from_token_offsets():
    layout = grid_layout()
    text = "a red-ish car, parked."
    tokens = ["a", " re", "d", "-ish", " car", ",", " par", "ked", "."]
    offsets, pos = [], 0
    for tok in tokens:
        offsets.append((pos, pos + len(tok)))
        pos += len(tok)
    run = synthetic_run(torch.rand(len(tokens), 1, 1, 16), text, tokens, offsets, layout)
    words = word_units(run)
    assert [(w.text, w.tokens) for w in words] == [("a", (0,)), ("red-ish", (1, 2, 3)), ("car", (4,)),
                                                    ("parked", (6, 7))]
    assert words[2].start == text.index("car")


def test_phrases_fall_back_to_words_with_a_warning_without_spacy():
    pytest.importorskip("torch")
    try:
        import spacy  # noqa: F401

        pytest.skip("spaCy is installed here; the fallback path is for machines without it")
    except ImportError:
        pass
    from emergence.analysis import units

    run = synthetic_run(torch.rand(2, 1, 1, 16), "red car", ["red", " car"], [(0, 3), (3, 7)], grid_layout())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, kind = units(run, "phrases")
    assert kind == "words" and [u.text for u in got] == ["red", "car"]
    assert any("emergence[nlp]" in str(w.message) for w in caught)


def test_lexicon_judge_categories():
    judge = LexiconJudge()
    cases = {"red": "appearance", "left": "location", "roof": "part", "background": "context", "car": "entity",
             "open": "state", "the": "other", "the red car": "entity", "wheels": "part", ",": "other"}
    assert {w: judge(w, "") for w in cases} == cases
    assert LexiconJudge({"car": "part"})("car", "") == "part"
    with pytest.raises(ValueError, match="unknown categories"):
        LexiconJudge({"car": "vehicle"})


def test_http_judge_speaks_the_openai_chat_protocol():
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen["path"] = self.path
            seen["body"] = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["auth"] = self.headers.get("Authorization")
            reply = {"choices": [{"message": {"content": "Part."}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        judge = HTTPJudge(f"http://127.0.0.1:{server.server_port}/v1", model="judge-x", api_key_env=None)
        assert judge("the handle", "a mug with a red handle") == "part"
    finally:
        server.shutdown()
    assert seen["path"] == "/v1/chat/completions" and seen["body"]["model"] == "judge-x"
    assert "the handle" in seen["body"]["messages"][0]["content"] and seen["auth"] is None


# ---------------------------------------------------------------------------------------------------- segmenters


def test_classical_segmenter_recovers_flat_objects_and_honours_negatives_and_boxes():
    image, square, disc = square_image()
    seg = ClassicalSegmenter()
    seg.set_image(image)
    masks, scores = seg.predict(np.array([[[15, 15]], [[44, 44]]], np.float32), np.ones((2, 1), np.int64))
    assert masks.shape == (2, 3, 64, 64) and scores.shape == (2, 3)
    assert iou(masks[0, 0], square) == 1.0 and iou(masks[1, 0], disc) == 1.0
    assert iou(masks[0, 2], square) == 1.0  # the foreground component
    # a negative point on the square removes it from a two-seed prompt
    m, _ = seg.predict(np.array([[[15, 15], [44, 44], [10, 10]]], np.float32), np.array([[1, 1, 0]]))
    assert iou(m[0, 0], disc) == 1.0
    # a box restricts the mask
    m, _ = seg.predict(np.array([[[15, 15]]], np.float32), np.ones((1, 1), np.int64), np.array([[8, 8, 15, 23]]))
    assert m[0, 0].sum() == 8 * 16 and not m[0, 0][:, 16:].any()
    single, s1 = seg.predict(np.array([[[15, 15]]], np.float32), np.ones((1, 1), np.int64), multimask=False)
    assert single.shape == (1, 1, 64, 64) and s1.shape == (1, 1)
    assert seg.embedding_calls == 1


def test_segment_prompts_decodes_each_distinct_prompt_once_in_batches():
    image, square, disc = square_image()
    seg = ClassicalSegmenter()
    seg.set_image(image)
    p1 = PointPrompt([[15, 15]], [1])
    p2 = PointPrompt([[44, 44]], [1])
    p3 = PointPrompt([[15, 15], [44, 44]], [1, 0])
    masks, scores = segment_prompts(seg, [p1, p2, p1, p3, p2])
    assert masks.shape[0] == 5
    assert np.array_equal(masks[0], masks[2]) and np.array_equal(masks[1], masks[4])
    assert seg.decode_calls == 2  # one call for the 1-point prompts, one for the 2-point prompt


def test_segmenter_names_and_errors():
    assert isinstance(build_segmenter("classical"), ClassicalSegmenter)
    with pytest.raises(ValueError, match="unknown segmenter"):
        build_segmenter("sam3")
    with pytest.raises(EmergenceError, match="classical"):
        build_segmenter("sam2:/no/such/folder")
    with pytest.raises(EmergenceError, match="set_image"):
        ClassicalSegmenter().predict(np.zeros((1, 1, 2)), np.ones((1, 1)))
    seg = ClassicalSegmenter()
    seg.set_image(square_image()[0])
    with pytest.raises(ValueError, match=r"\[N, P, 2\]"):
        seg.predict(np.zeros((1, 2)), None)


@pytest.fixture(scope="module")
def sam2_folder(tmp_path_factory):
    from emergence.testing import tiny_sam2

    folder = tmp_path_factory.mktemp("tiny_sam2")
    tiny_sam2().save_pretrained(folder)
    return folder


def test_sam2_segmenter_runs_a_real_sam2_model_with_one_embedding_per_image(sam2_folder):
    image, square, _ = square_image(96)
    seg = build_segmenter(f"sam2:{sam2_folder}")
    assert isinstance(seg, Sam2Segmenter) and seg.input_size == 128
    calls = []
    seg.model.vision_encoder.register_forward_hook(lambda *a: calls.append(1))
    seg.set_image(image)
    pts = np.array([[[10, 20]], [[50, 70]], [[90, 5]]], np.float32)
    masks, scores = seg.predict(pts, np.ones((3, 1), np.int64))
    assert masks.shape == (3, 3, 96, 96) and masks.dtype == bool and scores.shape == (3, 3)
    # batching does not change results: one-by-one equals batched
    seg.batch_size = 1
    one = np.concatenate([seg.predict(pts[i: i + 1], np.ones((1, 1), np.int64))[0] for i in range(3)])
    assert np.array_equal(one, masks)
    # boxes alone, and points with boxes
    mb, sb = seg.predict(None, None, np.array([[5, 5, 40, 40], [0, 0, 95, 95]], np.float32))
    assert mb.shape == (2, 3, 96, 96)
    assert seg.predict(pts[:2], np.ones((2, 1), np.int64), np.array([[5, 5, 40, 40], [0, 0, 95, 95]]))[0].shape[0] == 2
    assert len(calls) == 1 and seg.embedding_calls == 1
    # the prompt's coordinates reach the model scaled per axis to its 128 x 128 input
    seen = {}
    hook = seg.model.prompt_encoder.register_forward_hook(
        lambda mod, args, kwargs, out: seen.update(points=kwargs["input_points"].clone()), with_kwargs=True)
    seg.predict(np.array([[[48, 24]]], np.float32), np.ones((1, 1), np.int64))
    hook.remove()
    assert seen["points"][0, 0, 0].tolist() == pytest.approx([48 * 128 / 96, 24 * 128 / 96])


def test_sam2_segmenter_embeds_an_image_given_again_once(sam2_folder):
    """A sweep's templates of one image: the embedding is computed once and reused (same masks), while another
    image, even of the same size, is embedded anew; the cache keeps the last cache_images images."""
    image, _square, _ = square_image(96)
    other = image.transpose(0)
    seg = build_segmenter(f"sam2:{sam2_folder}")
    seg.cache_images = 2
    pts, labels = np.array([[[10, 20]], [[50, 70]]], np.float32), np.ones((2, 1), np.int64)
    seg.set_image(image)
    first = seg.predict(pts, labels)[0]
    seg.set_image(other)
    theirs = seg.predict(pts, labels)[0]
    seg.set_image(image.copy())  # the same pixels in another object
    again = seg.predict(pts, labels)[0]
    assert seg.embedding_calls == 2 and np.array_equal(first, again) and not np.array_equal(first, theirs)
    seg.set_image(image.rotate(90))  # a third image: the cache keeps the two most recent (image, the third)
    seg.set_image(image)
    assert seg.embedding_calls == 3
    seg.set_image(other)  # pushed out
    assert seg.embedding_calls == 4


def test_sam2_preprocessing_matches_the_transformers_processor_where_torchvision_exists(sam2_folder):
    pytest.importorskip("torchvision", reason="Sam2ImageProcessor needs torchvision (absent on CPU build machines)")
    from transformers import Sam2ImageProcessor

    image = Image.fromarray((np.random.RandomState(0).rand(70, 110, 3) * 255).astype(np.uint8))
    seg = build_segmenter(f"sam2:{sam2_folder}")
    ours = seg.preprocess(image)
    theirs = Sam2ImageProcessor(size={"height": 128, "width": 128})(images=image, return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=2e-2)


# ---------------------------------------------------------------------------------------------------- analyze on the organism


@pytest.fixture(scope="module")
def organism():
    from emergence import Probe
    from emergence.organism import ShapesWorld, load_organism

    model, processor = load_organism()
    return Probe(model, processor), ShapesWorld(4242)


def test_analyze_end_to_end_on_the_organism(organism, sam2_folder):
    probe, world = organism
    scene = world.scene(3)
    obj = scene.objects[0]
    run = probe.generate(scene.image, "describe the image", max_new_tokens=64)
    report = analyze(run, gt_mask=obj.mask, segmenter="classical", tau=0.5)
    table = report.table
    assert len(table) == len(report.units) == len(run.text.split()) - 1  # every word but the final "."
    assert report.masks.shape == (len(table), 3, 64, 64) and report.heat.shape == (len(table), 64, 64)
    assert (table["iou"] == table[["iou_0", "iou_1", "iou_2"]].max(axis=1)).all()
    best = report.best
    assert best["iou"] == table["iou"].max()
    hits = table.index[table["iou"] >= 0.5]
    if len(hits):
        assert report.emergence.name == hits[0]
        assert report.emergence_layer is None or report.layer_ious[report.emergence_layer] >= 0.5
    else:
        assert report.emergence is None
    for row in table.itertuples():
        assert row.position == pytest.approx(row.char_start / len(run.text))
        assert row.position_bin == position_bin(row.position)
        assert run.text[row.char_start: row.char_end] == row.text
    summary = report.summary()
    assert summary["oracle_iou"] == best["iou"] and summary["units"] == len(table)
    assert set(report.layer_ious) == set(run.layers)
    fig, axes = report.plot()
    assert axes.shape[0] == 2 and fig.axes
    import matplotlib.pyplot as plt

    plt.close(fig)
    # the same run through a real (random) Sam2Model: one image embedding for all words and the layer scan
    sam = build_segmenter(f"sam2:{sam2_folder}")
    sam_report = analyze(run, gt_mask=obj.mask, segmenter=sam)
    assert sam.embedding_calls == 1 and sam_report.masks.shape == (len(table), 3, 64, 64)


def test_analyze_batch_equals_analyze_and_decodes_the_runs_of_one_image_together(organism, sam2_folder):
    """Two templates of one scene (the image loaded twice: equal pixels, other objects) and another scene: each report
    is analyze()'s for its item, the repeated image is embedded once and its runs' prompts share decoder calls (the
    word prompts of both runs in one call, their layer prompts in another), identical prompts decoded once."""
    from emergence.analysis import analyze_batch

    probe, world = organism
    a, b = world.scene(3), world.scene(6)
    runs = [probe.generate(a.image.copy(), "describe the image", max_new_tokens=48),
            probe.generate(a.image.copy(), f"describe {a.referring_expressions()[0].text}", max_new_tokens=48),
            probe.generate(b.image, "describe the image", max_new_tokens=48)]
    gts = [a.objects[0].mask, a.referring_expressions()[0].mask, b.objects[0].mask]
    for seg_spec in ("classical", f"sam2:{sam2_folder}"):
        together_seg = build_segmenter(seg_spec)
        reports = analyze_batch(list(zip(runs, gts)), segmenter=together_seg)
        for run, gt, report in zip(runs, gts, reports):
            alone = analyze(run, gt_mask=gt, segmenter=build_segmenter(seg_spec))
            pd.testing.assert_frame_equal(report.table, alone.table)
            assert np.array_equal(report.masks, alone.masks) and report.layer_ious == alone.layer_ious
            assert json.dumps(report.summary(), default=str) == json.dumps(alone.summary(), default=str)
            assert report.automatic == alone.automatic
        if seg_spec != "classical":
            assert together_seg.embedding_calls == 2
            # per image: one call for its words' 1-point prompts, one for its layer prompts
            assert together_seg.decode_calls == 4
    with pytest.raises(EmergenceError, match="64x64"):
        analyze_batch([(runs[0], gts[0]), (runs[2], np.zeros((32, 48), bool))], segmenter="classical")
    with pytest.raises(TypeError, match="item 1 is ProbeRun"):
        analyze_batch([(runs[0], gts[0]), runs[1]], segmenter="classical")
    assert analyze_batch([], segmenter="classical") == []


def test_analyze_rejects_bad_inputs(organism):
    probe, world = organism
    scene = world.scene(0)
    run = probe.generate(scene.image, "describe the image", max_new_tokens=8)
    with pytest.raises(EmergenceError, match="64x64"):
        analyze(run, gt_mask=np.zeros((32, 48), bool), segmenter="classical")
    with pytest.raises(EmergenceError, match="no image"):
        analyze(ProbeRun(**{**run.__dict__, "image": None}), segmenter="classical")
    with pytest.raises(EmergenceError, match="not found"):
        analyze(run, gt_mask="/no/such/mask.png", segmenter="classical")
    with pytest.raises(ValueError, match="tau"):
        analyze(run, gt_mask=scene.objects[0].mask, segmenter="classical", tau=0)
    # without ground truth: nothing scored, the automatic choice still made
    report = analyze(run, segmenter="classical")
    assert report.best is None and report.emergence is None and report.automatic["score"] is not None
    assert "iou" not in report.table


def test_head_scores_rank_localisation_heads(organism):
    probe, world = organism
    scene = world.scene(5)
    run = probe.generate(scene.image, "describe the image", max_new_tokens=64)
    gt = scene.objects[0].mask
    scores = head_scores(run, gt)
    layers, heads = run.attention.shape[1:3]
    assert scores["mass"].shape == (layers, heads) and ((scores["mass"] >= 0) & (scores["mass"] <= 1)).all()
    best = top_heads(scores["mass"], 3, run.layers)
    assert len(best) == 3 and scores["mass"][best[0][0], best[0][1]] == scores["mass"].max()
    focused = analyze(run, gt_mask=gt, segmenter="classical", heads=best)
    assert focused.options["heads"] == [list(p) for p in best]


def test_mllm_judge_parts():
    image, square, disc = square_image()
    montage = candidate_montage(image, [square, disc, square & ~disc])
    assert montage.size == (128, 128)
    px = np.asarray(montage)
    assert px[20, 20, 0] > px[20, 20, 1] + 100  # square tinted red in tile 1
    assert parse_choice("I think it is 2.", 3) == 1 and parse_choice("number 7", 3) is None
    assert parse_choice("none", 3) is None


def test_report_save_load_round_trip_and_refusal_of_foreign_folders(tmp_path):
    from emergence import Probe
    from emergence.analysis import EmergenceReport
    from emergence.files import OutputDirError
    from emergence.organism import ORGANISM_DIR, ShapesWorld

    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    scene = ShapesWorld(13).scene(2)
    run = probe.generate(scene.image, "describe the image", max_new_tokens=20)
    report = analyze(run, gt_mask=scene.objects[0].mask, segmenter="classical")
    out = report.save(tmp_path / "a")
    back = EmergenceReport.load(out)
    pd.testing.assert_frame_equal(back.table, report.table)
    assert np.array_equal(back.masks, report.masks) and np.array_equal(back.gt, report.gt)
    assert np.allclose(back.heat, report.heat, rtol=1e-3, atol=1e-3 * np.abs(report.heat).max())  # float16 on disk
    assert back.units == report.units and back.layer_ious == report.layer_ious
    assert json.dumps(back.summary(), sort_keys=True, default=str) == json.dumps(report.summary(), sort_keys=True,
                                                                               default=str)
    assert all(np.array_equal(a.points, b.points) for a, b in zip(back.prompts, report.prompts))
    assert (out / "report.png").stat().st_size > 3000
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "paper.tex").write_text("mine")
    with pytest.raises(OutputDirError, match="not empty"):
        report.save(tmp_path / "b")


def test_prompts_beyond_the_context_warn():
    from emergence import Probe
    from emergence.organism import ORGANISM_DIR

    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    limit = probe.model.config.get_text_config().max_position_embeddings
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.warns(UserWarning, match=f"beyond the model's context of {limit} positions"):
        probe.generate(image, "describe the image", max_new_tokens=limit, eos_token_id=None)


def test_head_scores_in_small_chunks_equal_one_batch_exactly():
    """Rendering per-head maps a few at a time (bounded memory for 7B-size models) changes no score."""
    from emergence import Probe
    from emergence.analysis import head_scores
    from emergence.organism import ORGANISM_DIR, ShapesWorld

    probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
    scene = ShapesWorld(17).scene(4)
    run = probe.generate(scene.image, "describe the image", max_new_tokens=16)
    whole = head_scores(run, scene.objects[0].mask, chunk=10**6)
    pieces = head_scores(run, scene.objects[0].mask, chunk=5)
    assert whole["mass"].shape == (run.attention.shape[1], run.attention.shape[2])
    assert np.array_equal(whole["mass"], pieces["mass"]) and np.array_equal(whole["hit"], pieces["hit"])
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        head_scores(run, scene.objects[0].mask, chunk=0)
