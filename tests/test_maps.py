"""Map methods (``emergence.maps``): golden cases with known answers for relative attention, TAM (rank Gaussian
filter, estimated causal inference), localization-head selection (elbow, spatial entropy) and gradient-weighted
attention; the recorded extras equal what the model computes; every method runs through the analyzer on tiny models
of two families; extras survive save / load / select; the analyzer, CLI and sweep take a method by name."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import CAPTURE_CASES, FAMILIES, N_NEW

from emergence import Probe
from emergence.analysis import analyze
from emergence.errors import EmergenceError, UnsupportedModelError
from emergence.layouts.base import View, VisualLayout
from emergence.maps import (
    METHODS,
    elbow_value,
    gradient_attention,
    localization_heads,
    method_maps,
    rank_gaussian_filter,
    relative_maps,
    spatial_entropy,
    tam_maps,
)
from emergence.run import ProbeRun


def grid_layout(rows: int = 4, cols: int = 4, first: int = 5) -> VisualLayout:
    view = View(name="grid", index=np.arange(rows * cols).reshape(rows, cols), box=(0, 0, 64, 64))
    return VisualLayout(positions=np.arange(first, first + rows * cols), image_size=(64, 64), views=[view],
                        family="test")


def run_of(attention: torch.Tensor, token_ids: list[int], layout: VisualLayout, **fields) -> ProbeRun:
    n = len(token_ids)
    return ProbeRun(text=" ".join(map(str, token_ids)), token_ids=torch.tensor(token_ids), tokens=["x"] * n,
                    token_offsets=torch.tensor([(2 * i, 2 * i + 1) for i in range(n)]), attention=attention,
                    layout=layout, layers=list(range(attention.shape[1])), **fields)


# ---------------------------------------------------------------------------------------------------- golden
def test_rank_gaussian_filter_known_values():
    flat = np.full((4, 5), 0.3)
    np.testing.assert_allclose(rank_gaussian_filter(flat), flat)  # a constant window keeps its value
    assert (rank_gaussian_filter(np.zeros((3, 3))) == 0).all()  # mean <= 0 gives 0
    spike = np.ones((3, 3))
    spike[1, 1] = 10.0  # centre window: eight 1s and one 10; mean 2, std sqrt(8), sigma sqrt(2)
    weights = np.exp(-(np.arange(9) - 4) ** 2 / 4.0)
    expected = (np.sort(spike.ravel()) @ weights) / weights.sum()
    assert rank_gaussian_filter(spike)[1, 1] == pytest.approx(expected, rel=1e-12)
    assert rank_gaussian_filter(spike)[1, 1] == pytest.approx(1 + 9 * math.exp(-4) / weights.sum(), rel=1e-12)
    with pytest.raises(ValueError, match="odd"):
        rank_gaussian_filter(spike, size=2)


def _tam_run(leak: float, context_weight: float) -> tuple[ProbeRun, np.ndarray, np.ndarray]:
    """Prompt of 23 positions: 16 visual tokens (5..20), a context token (21, id 7), the answer-start position (22,
    id 8). Answer ids [3, 4]. Class 3 lights the top-left block; class 4 the bottom-right block plus ``leak`` x the
    top-left one (activation induced by the earlier token, which weighs ``context_weight`` at the row predicting
    it)."""
    layout = grid_layout()
    top_left = np.zeros(16)
    top_left[[0, 1, 4, 5]] = 1.0
    bottom_right = np.zeros(16)
    bottom_right[[10, 11, 14, 15]] = 2.0
    classes = [3, 4, 7, 8]
    logits = np.full((23 + 2 - 1, 4), -1.0)  # rows 0..23: the prompt and the row predicting token 1
    logits[5:21, 0] = top_left
    logits[5:21, 1] = bottom_right + leak * top_left
    logits[5:21, 2:] = 0.0  # the prompt's own tokens light nothing
    logits[22, 1] = context_weight  # class 4 at the row predicting token 0 (id 3)
    logits[23, 1] = 1.0  # the row predicting token 1 itself: not context
    extras = {"tam_logits": torch.tensor(logits, dtype=torch.float32), "tam_classes": torch.tensor(classes)}
    run = run_of(torch.full((2, 1, 1, 16), 1 / 16), [3, 4], layout, prompt_ids=torch.tensor([1] * 21 + [7, 8]),
                 extras=extras, meta={"special_ids": [1]})
    return run, top_left, bottom_right


def test_tam_removes_the_activation_the_earlier_token_induced():
    run, top_left, bottom_right = _tam_run(leak=0.5, context_weight=2.0)
    maps = tam_maps(run, filter_size=1).numpy()
    # token 0: its own map (no context lights anything), min-max with its text scores (-1 clipped to 0): 0..1
    np.testing.assert_allclose(maps[0], top_left, atol=1e-7)
    # token 1: least squares scale 0.5 of token 0's map removes the leak exactly; joint max 2 -> the block at 1
    np.testing.assert_allclose(maps[1], bottom_right / 2, atol=1e-7)
    unmixed = tam_maps(_tam_run(leak=0.5, context_weight=0.0)[0], filter_size=1).numpy()  # no weight: no removal
    np.testing.assert_allclose(unmixed[1], (bottom_right + 0.5 * top_left) / 2, atol=1e-7)
    assert not np.allclose(tam_maps(run, filter_size=5), tam_maps(run, filter_size=3))  # the window is used
    smoothed = tam_maps(run).numpy()
    assert smoothed.shape == (2, 16) and set(np.argsort(smoothed[1])[-4:]) == {10, 11, 14, 15}


def test_tam_refuses_logits_of_another_run():
    run, _, _ = _tam_run(0.5, 2.0)
    run.meta["tam_rows"] = 99
    with pytest.raises(EmergenceError, match="does not belong"):
        tam_maps(run)


def test_relative_attention_divides_out_what_the_generic_prompt_attends():
    layout = grid_layout()
    generic = torch.full((2, 3, 16), 0.02)
    generic[..., 0] = 0.7  # a sink both prompts attend
    question = generic[None].repeat(2, 1, 1, 1).clone()
    question[0, ..., 9] = 0.3  # token 0 looks at key 9 (3x the generic prompt's 0.1 there after the next line)
    generic[..., 9] = 0.1
    run = run_of(question, [3, 4], layout, extras={"generic_attention": generic})
    rel = relative_maps(run)
    assert int(rel[0].argmax()) == 9 and rel[0, 9] == pytest.approx(3.0)
    assert rel[0, 0] == pytest.approx(1.0)  # the sink cancels
    assert rel[1, 9] == pytest.approx(0.2)  # token 1 looks at key 9 less than the generic prompt
    raw = run.token_map(None)
    assert int(raw[0].argmax()) == 0  # plain attention points at the sink
    with pytest.raises(EmergenceError, match="methods=\\['relative'\\]"):
        method_maps(run_of(question, [3, 4], layout), "relative")


def test_spatial_entropy_and_elbow_known_values():
    one = np.zeros((6, 6))
    one[1:3, 1:3] = 1.0
    assert spatial_entropy(one) == pytest.approx(0.0)
    two = one.copy()
    two[4:6, 4:6] = 1.0  # two equal blobs, not 8-connected
    assert spatial_entropy(two) == pytest.approx(math.log(2))
    assert spatial_entropy(np.full((4, 4), 0.5)) == math.inf
    assert elbow_value([0.1, 0.1, 0.1, 0.1, 0.9, 1.0]) == pytest.approx(0.1)
    assert elbow_value([0.0, 0.01, 0.02, 0.5, 0.52, 0.54]) == pytest.approx(0.02)


def test_localization_heads_pick_the_compact_high_mass_head():
    layout = grid_layout()
    runs = []
    for shift in range(3):
        att = torch.zeros(1, 2, 3, 16)
        att[0, 0, 0] = 0.0005
        att[0, 0, 0, [10, 11, 14, 15]] = 0.002  # compact but little mass on the image: fails the elbow criterion
        att[0, 0, 2] = att[0, 1, 1] = 0.001  # flat, little mass
        att[0, 1, 0] = 0.00125  # flat, the knee of the mass curve
        att[0, 0, 1, [0, 3, 12, 15]] = 0.25  # much mass, four separate corners (entropy log 4)
        att[0, 1, 2, [0 + shift, 1 + shift, 4 + shift, 5 + shift]] = 0.24  # much mass, one compact block
        runs.append(run_of(att, [3], layout))
    heads, freq = localization_heads(runs, top=2, per_sample=1)
    assert heads[0] == (1, 2) and freq[1, 2] == 1.0 and freq.sum() == 1.0
    assert freq[0, 0] == 0  # entropy 0, but below the elbow of the attention sums
    heads, freq = localization_heads(runs, top=2, per_sample=2)
    assert heads == [(0, 1), (1, 2)] or heads == [(1, 2), (0, 1)]
    with pytest.raises(ValueError, match="keep='heads'"):
        localization_heads([run_of(torch.zeros(1, 16), [3], layout, keep="mean")])


# ---------------------------------------------------------------------------------------------------- real models
@pytest.fixture(scope="module", params=["llava", "qwen2_vl"])
def probe_and_run(request):
    from conftest import noise_image

    image = noise_image()
    model, processor = FAMILIES[request.param]()
    probe = Probe(model, processor)
    run = probe.generate(image, "describe the image", max_new_tokens=N_NEW, methods=["tam", "relative", "gradient"])
    return probe, run


def test_recording_methods_leaves_the_answer_and_attention_unchanged(probe_and_run, image):
    probe, run = probe_and_run
    plain = probe.generate(image, "describe the image", max_new_tokens=N_NEW)
    assert torch.equal(plain.token_ids, run.token_ids)
    torch.testing.assert_close(plain.attention, run.attention, rtol=0, atol=0)


def test_tam_logits_equal_the_models_own_logits(probe_and_run, image):
    probe, run = probe_and_run
    inputs = probe._model_inputs(probe.prepare(image, "describe the image"))
    out = probe.adapter.generate(probe.model, inputs, max_new_tokens=len(run.token_ids), do_sample=False,
                                 output_logits=True, return_dict_in_generate=True,
                                 pad_token_id=probe.tokenizer.pad_token_id)
    classes = run.extras["tam_classes"]
    prompt_rows = run.extras["tam_logits"].shape[0] - len(run.token_ids) + 1
    for t, step in enumerate(out.logits):  # the row predicting token t
        torch.testing.assert_close(run.extras["tam_logits"][prompt_rows - 1 + t], step[0, classes].float(),
                                   rtol=1e-5, atol=1e-5)


def test_generic_attention_is_the_generic_prompts_first_row(probe_and_run, image):
    probe, run = probe_and_run
    generic = probe.generate(image, run.meta["generic_prompt"], max_new_tokens=1)
    torch.testing.assert_close(run.extras["generic_attention"], generic.attention[0], rtol=0, atol=0)


def test_gradient_attention_equals_autograd_through_eager_attention(probe_and_run, image):
    probe, run = probe_and_run
    from emergence.capture.replay import teacher_forced

    full, rows = teacher_forced(probe, run)
    impl = probe.model.config._attn_implementation
    probe.model.set_attn_implementation("eager")
    try:
        with torch.enable_grad():
            out = probe.model(**full, use_cache=False, output_attentions=True)
            layer_idx = [m.layer_idx for m in probe.attention_modules]
            attentions = [out.attentions[i] for i in layer_idx]
            vis = torch.as_tensor(run.layout.positions)
            expected = []
            for t in range(len(run.token_ids)):  # every token: an early row would see future keys without a mask
                grads = torch.autograd.grad(out.logits[0, rows[t], run.token_ids[t]], attentions, retain_graph=True)
                expected.append(torch.stack([(g[0, :, rows[t], vis] * a[0, :, rows[t], vis]).clamp_min(0).detach()
                                             for g, a in zip(grads, attentions)]))
    finally:
        probe.model.set_attn_implementation(impl)
    assert impl == "sdpa"  # the probe's own backend builds its masks for sdpa (None when plainly causal)
    torch.testing.assert_close(run.extras["gradient"].float(), torch.stack(expected), rtol=1e-3, atol=1e-5)
    assert run.extras["gradient"].shape == run.attention.shape and (run.extras["gradient"] >= 0).all()
    again = gradient_attention(probe, run)  # the post-hoc call gives the same
    torch.testing.assert_close(again, run.extras["gradient"], rtol=0, atol=0)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_through_the_analyzer(probe_and_run, method):
    _probe, run = probe_and_run
    square = np.zeros((run.layout.image_size), bool)
    square[: square.shape[0] // 2, : square.shape[1] // 2] = True
    report = analyze(run, square, segmenter="classical", method=method, units="tokens")
    assert report.options["method"] == method
    assert report.heat.shape[0] == len(report.units) > 0 and np.isfinite(report.heat).all()
    assert (report.options["normalise"] == "mean_subtract") == (method == "attention")
    assert bool(report.layer_ious) == (method != "tam")


def test_extras_survive_save_load_and_select(probe_and_run, tmp_path):
    _probe, run = probe_and_run
    back = ProbeRun.load(run.save(tmp_path / "run"))
    assert set(back.extras) == set(run.extras)
    for k in run.extras:
        assert torch.equal(back.extras[k], run.extras[k])
    for method in METHODS:
        torch.testing.assert_close(method_maps(back, method), method_maps(run, method), rtol=0, atol=0)


def test_extras_are_sliced_with_the_image_of_a_two_image_run(image):
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    second = image.transpose(0)
    run = probe.generate([image, second], "compare the images", max_new_tokens=N_NEW, methods=["relative", "tam"])
    one = run.select(image=1)
    assert one.extras["generic_attention"].shape[-1] == one.attention.shape[-1] == one.layout.num_tokens
    assert torch.equal(one.extras["tam_logits"], run.extras["tam_logits"])
    assert tam_maps(one).shape == (len(run.token_ids), one.layout.num_tokens)


def test_tam_and_gradient_are_refused_for_cross_attention(image):
    model, processor = CAPTURE_CASES["mllama_cross_attention"]()
    probe = Probe(model, processor)
    with pytest.raises(UnsupportedModelError, match="cross-attention"):
        probe.generate(image, "describe the image", max_new_tokens=2, methods=["tam"])
    run = probe.generate(image, "describe the image", max_new_tokens=2)
    with pytest.raises(UnsupportedModelError, match="cross-attention"):
        gradient_attention(probe, run)


def test_unknown_method_and_tam_with_layers_are_refused(probe_and_run):
    _probe, run = probe_and_run
    with pytest.raises(ValueError, match="unknown map method 'cam'"):
        analyze(run, None, segmenter="classical", method="cam")
    with pytest.raises(ValueError, match="no layers or heads"):
        analyze(run, None, segmenter="classical", method="tam", layers=[0])
    for method in ("tam", "relative"):  # options these maps would not apply are refused, not ignored
        with pytest.raises(ValueError, match="sink_z / remove_corners"):
            analyze(run, None, segmenter="classical", method=method, sink_z=3.0)


def test_cli_analyze_with_a_map_method_and_heads(tmp_path, image):
    from emergence.cli import main

    img = tmp_path / "scene.png"
    from emergence.organism.world import ShapesWorld

    scene = ShapesWorld(7).scene(0)
    scene.image.save(img)
    out = tmp_path / "out"
    assert main(["analyze", "--image", str(img), "--prompt", "describe the scene", "--segmenter", "classical",
                 "--map-method", "tam", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["options"]["method"] == "tam" and report["options"]["normalise"] == "none"
    out2 = tmp_path / "out2"
    assert main(["analyze", "--image", str(img), "--prompt", "describe the scene", "--segmenter", "classical",
                 "--heads", "1:0,2:3", "--out", str(out2)]) == 0
    assert json.loads((out2 / "report.json").read_text())["options"]["heads"] == [[1, 0], [2, 3]]
    with pytest.raises(SystemExit):
        main(["analyze", "--image", str(img), "--prompt", "x", "--heads", "1-0", "--out", str(tmp_path / "o3")])
    out4 = tmp_path / "out4"
    assert main(["analyze", "--image", str(img), "--prompt", "describe the scene", "--segmenter", "classical",
                 "--methods-figure", "--out", str(out4)]) == 0
    assert (out4 / "methods.png").stat().st_size > 10_000
    assert "methods.png" in {p.name for p in out4.iterdir()}


def test_sweep_records_the_method_and_refuses_to_mix_methods_on_resume(tmp_path):
    from emergence.sweep.store import SweepError
    from emergence.sweep import SweepConfig, run_sweep

    config = SweepConfig(out=str(tmp_path / "sw"), dataset="shapes", dataset_kwargs={"n": 2, "seed": 3},
                         store="none", map_method="relative")
    samples = run_sweep(config, progress=False).table("samples")
    assert len(samples) == 2 and samples["error"].isna().all()
    manifest = json.loads((tmp_path / "sw" / "manifest.json").read_text())
    assert manifest["options"]["map_method"] == "relative"
    with pytest.raises(SweepError, match="map_method"):
        run_sweep(SweepConfig(out=str(tmp_path / "sw"), dataset="shapes", dataset_kwargs={"n": 2, "seed": 3},
                              store="none", map_method="tam"), progress=False)
    with pytest.raises(ValueError, match="unknown map method"):
        SweepConfig(out=str(tmp_path / "x"), map_method="cam")


# ---------------------------------------------------------------------------------------------------- comparison
def test_otsu_and_tam_metrics_known_values():
    from emergence.studies.compare import otsu_threshold, tam_metrics

    assert otsu_threshold(np.array([10] * 50 + [200] * 50)) == 10  # first level of the maximal split
    assert otsu_threshold(np.array([7] * 9)) == 7
    values = np.concatenate([np.full(60, 20), np.full(30, 120), np.full(10, 250)])
    assert 20 <= otsu_threshold(values) < 120  # the largest gap in variance splits the 20s off
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:7] = True
    heat = np.stack([np.where(mask, 1.0, 0.2), np.zeros((8, 8))])
    words = [(0, "diamond", mask, "entity"), (1, "the", None, None)]
    obj, func = tam_metrics(heat, words)
    assert obj == [1.0] and func == [1.0]  # the noun's Otsu split is its mask; 'the' lies below that threshold
    heat[1] = 1.0  # a function word lighting everything is never below the nouns' threshold
    assert tam_metrics(heat, words)[1] == [0.0]


def test_compare_maps_agrees_with_the_organism_eval_on_plain_attention(tmp_path):
    from emergence.studies.compare import compare_maps, format_comparison, save_comparison
    from emergence.studies.evaluate import evaluate
    from emergence.organism.model import ORGANISM_DIR

    result = compare_maps(seed=41, n=3, calib_seed=43, calib_n=3, k=2, timing_n=1, figure=tmp_path / "m.png")
    reference = evaluate(Probe.from_pretrained(ORGANISM_DIR, dtype="float32"), seed=41, n=3, per_head=False)
    for cat, r in reference.categories.items():
        assert result.rows["attention"]["pointing"][cat]["accuracy"] == pytest.approx(r["accuracy"], abs=1e-12)
        assert result.rows["_baseline"]["pointing"][cat]["accuracy"] == pytest.approx(r["baseline"], abs=1e-12)
    assert set(result.rows) >= {"attention", "relative", "tam", "gradient", "loc-heads", "score-heads"}
    assert len(result.heads["loc-heads"]) == len(result.heads["score-heads"]) == 2
    for row in result.rows.values():
        if "f1_iou" in row:
            assert 0 <= row["obj_iou"] <= 1 and 0 <= row["func_iou"] <= 1 and 0 <= row["oracle_miou"] <= 1
            pix = row["pixfoundation"]  # the same answers under PixFoundation's protocol: one when unit per scene
            assert 0 <= pix["oracle_miou"] <= 1 and sum(pix["when_bins"]) == 3
    table = format_comparison(result)
    methods = ("attention", "relative", "tam", "gradient", "loc-heads", "score-heads", "random pixel")
    assert [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ")][1:] == list(methods)
    saved = json.loads(save_comparison(result, tmp_path / "c.json").read_text())
    assert saved["rows"]["tam"]["obj_iou"] == result.rows["tam"]["obj_iou"]
    assert (tmp_path / "m.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="calib_seed"):
        compare_maps(seed=5, n=1, calib_seed=5)


def test_empty_selections_are_refused_not_averaged_to_zero(probe_and_run, image):
    """`heads=[]` / `layers=[]` average nothing: refused by name everywhere (analyze, token maps, heatmaps, the
    method maps), not turned into all-zero or NaN maps; likewise a localization-heads selection of no head."""
    from emergence import analyze
    from emergence.analysis.token_maps import MapOptions
    from emergence.maps import localization_heads, method_maps

    _probe, run = probe_and_run
    gt = np.zeros((image.height, image.width), bool)
    gt[5:20, 5:20] = True
    for call in (lambda: analyze(run, gt, segmenter="classical", heads=[]),
                 lambda: analyze(run, gt, segmenter="classical", layers=[]),
                 lambda: run.token_map(0, heads=[]), lambda: run.heatmap(0, layers=[]),
                 lambda: method_maps(run, "attention", MapOptions(heads=[])),
                 lambda: method_maps(run, "gradient", MapOptions(layers=[]))):
        with pytest.raises(ValueError, match=r"(heads|layers)=\[\] selects no"):
            call()
    with pytest.raises(ValueError, match="per_sample=0"):
        localization_heads([run], per_sample=0)


# ---------------------------------------------------------------------------------------------------- extension
@pytest.fixture
def toy_method():
    """A map method defined here, outside the package: it records the first captured layer's attention after the
    generation and maps each token by that layer's head mean, squared (docs/architecture.md walks through it)."""
    from dataclasses import dataclass

    from emergence.maps import METHODS, MapMethod, register_method

    @dataclass(frozen=True)
    class FirstLayerSquared(MapMethod):
        name: str = "first-layer-squared"
        layered: bool = False
        selects: bool = False
        needs: tuple[str, ...] = ("first_layer",)

        def record(self, probe, run, recorded, request):
            run.extras["first_layer"] = run.attention[:, 0].float()  # [T, H, V]

        def compute(self, run, options):
            return run.extras["first_layer"].mean(1) ** 2  # [T, V]

    method = register_method(FirstLayerSquared())
    yield method
    METHODS.pop(method.name)


def test_a_method_registered_outside_the_package_runs_through_analyze_and_the_cli(toy_method, tmp_path):
    from emergence.cli import main
    from emergence.organism.world import ShapesWorld

    scene = ShapesWorld(7).scene(0)
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    run = probe.generate(scene.image, "describe the scene", max_new_tokens=N_NEW, methods=[toy_method.name])
    assert set(run.extras) == {"first_layer"}
    expected = run.attention[:, 0].float().mean(1) ** 2
    torch.testing.assert_close(method_maps(run, toy_method.name), expected, rtol=0, atol=0)
    square = np.zeros(run.layout.image_size, bool)
    square[: square.shape[0] // 2, : square.shape[1] // 2] = True
    report = analyze(run, square, segmenter="classical", method=toy_method.name, units="tokens")
    assert report.options["method"] == toy_method.name and not report.layer_ious  # not layered
    unit = report.units[0]
    drawn = run.layout.render(expected[list(unit.tokens)].mean(0), size=report.heat.shape[1:])
    np.testing.assert_allclose(report.heat[0], drawn, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="takes no layers or heads"):
        analyze(run, None, segmenter="classical", method=toy_method.name, layers=[0])
    with pytest.raises(ValueError, match="is registered already"):
        from emergence.maps import register_method

        register_method(toy_method)

    img = tmp_path / "scene.png"
    scene.image.save(img)
    out = tmp_path / "out"
    assert main(["analyze", "--image", str(img), "--prompt", "describe the scene", "--segmenter", "classical",
                 "--map-method", toy_method.name, "--out", str(out)]) == 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["options"]["method"] == toy_method.name
    assert set(ProbeRun.load(out / "run").extras) == {"first_layer"}


def test_the_cli_names_the_registered_methods_when_a_name_is_unknown(toy_method, capsys):
    from emergence.cli import main

    with pytest.raises(SystemExit):
        main(["analyze", "--image", "x.png", "--prompt", "p", "--map-method", "cam"])
    err = capsys.readouterr().err
    assert "unknown map method 'cam'" in err and toy_method.name in err and "tam" in err
