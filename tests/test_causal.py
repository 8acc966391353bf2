"""Causal interventions (``emergence.causal``): head ablation zeroes exactly the chosen heads' slice of the output
projection's input; knockout gives exactly zero attention from the blocked queries to the blocked keys and leaves the
other rows alone, with sdpa equal to eager; a capture records the attention the model used, entered before or
inside a knockout; the teacher-forced effects of no intervention reproduce the run; and the organism
study runs end to end on a few scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, N_NEW

from emergence import Probe
from emergence.capture import AttentionCapture
from emergence.causal import ablate_heads, answer_effects, knockout, output_projection
from emergence.errors import CaptureError


def _forward(model, inputs, **kw):
    with torch.no_grad():
        return model(**inputs, **kw)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "fuyu"])  # o_proj, o_proj, dense
def test_ablating_heads_zeroes_exactly_their_slice_and_nothing_stays_hooked(family, image):
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    attn = probe.attention_modules[0]
    proj = output_projection(attn)
    seen = {}
    handle = proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach().clone()))
    try:
        base = _forward(model, inputs).logits
        unchanged = seen["x"]
        with ablate_heads(probe, [(attn.layer_idx, 1)]):
            ablated = _forward(model, inputs).logits
            handle.remove()  # ours ran before the ablation's hook; read the projection's input after it instead
            handle = proj.register_forward_hook(lambda m, a, o: seen.__setitem__("x", a[0].detach().clone()))
            _forward(model, inputs)
    finally:
        handle.remove()
    dim = proj.in_features // probe.model.config.get_text_config().num_attention_heads
    expected = unchanged.clone()
    expected[..., dim:2 * dim] = 0
    assert torch.equal(seen["x"], expected)
    assert not torch.equal(base, ablated)
    assert not proj._forward_pre_hooks
    torch.testing.assert_close(_forward(model, inputs).logits, base, rtol=0, atol=0)  # nothing stays
    with pytest.raises(ValueError, match="head 99"):
        with ablate_heads(probe, [(attn.layer_idx, 99)]):
            pass


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_knockout_blocks_exactly_the_chosen_rows_and_keys(family, image):
    model, processor = FAMILIES[family](attn_implementation="eager")
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    layout = probe.layout(inputs, (image.height, image.width))
    keys = layout.positions[::3]
    start = int(layout.positions.max()) + 1
    base = _forward(model, inputs, output_attentions=True)
    with knockout(probe, keys, start):
        out = _forward(model, inputs, output_attentions=True)
    for a, b in zip(base.attentions, out.attentions):
        assert b[0, :, start:][..., torch.as_tensor(keys)].abs().max().item() == 0.0  # blocked: exactly 0
        torch.testing.assert_close(b[0, :, start:].sum(-1), torch.ones_like(b[0, :, start:].sum(-1)))
        torch.testing.assert_close(b[0, :, :start], a[0, :, :start], rtol=0, atol=1e-6)  # earlier rows untouched
    assert a[0, :, start:][..., torch.as_tensor(keys)].abs().max().item() > 0  # and they did attend before
    # sdpa builds the same mask from its causal (None) one
    model.set_attn_implementation("sdpa")
    with knockout(probe, keys, start):
        torch.testing.assert_close(_forward(model, inputs).logits, out.logits, rtol=1e-5, atol=1e-5)


def test_a_capture_records_the_knocked_out_attention_in_either_order_of_entry(image):
    model, processor = FAMILIES["llava"](attn_implementation="eager")
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    layout = probe.layout(inputs, (image.height, image.width))
    keys, start = layout.positions[:5], int(layout.positions.max()) + 1
    with AttentionCapture(model, layout.positions, storage_dtype=torch.float32) as cap, knockout(probe, keys, start):
        out = _forward(model, inputs, output_attentions=True)
    eager = torch.stack([a[0, :, -1][:, torch.as_tensor(layout.positions)] for a in out.attentions])  # [L, H, V]
    assert (cap.maps()[0] - eager).abs().max().item() <= 1e-6
    assert cap.maps()[0][..., :5].abs().max().item() == 0.0
    # entered the other way round, the capture records the same attention (both go through one dispatcher)
    with knockout(probe, keys, start), AttentionCapture(model, layout.positions, storage_dtype=torch.float32) as inner:
        _forward(model, inputs)
    assert torch.equal(inner.maps(), cap.maps())


def test_answer_effects_without_intervention_reproduce_the_run(image):
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    run = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    attention, log_probs = answer_effects(probe, run)
    assert (attention - run.attention).abs().max().item() <= 1e-5
    inputs = probe.prepare(image, "describe the image")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=N_NEW, min_new_tokens=N_NEW, do_sample=False,
                             output_logits=True, return_dict_in_generate=True)
    raw = torch.stack([torch.log_softmax(step[0].float(), -1) for step in out.logits])
    torch.testing.assert_close(log_probs, raw.gather(1, run.token_ids[:, None])[:, 0], rtol=0, atol=1e-5)


def test_the_organism_study_runs_and_its_table_is_consistent(tmp_path):
    from emergence.studies.causal import CONDITIONS, evaluate_causal, format_causal, plot_causal

    result = evaluate_causal(seed=31, n=3, calib_seed=29, calib_n=4, k=2)
    assert list(result.table) == list(CONDITIONS)
    assert result.table["none"]["dlogp all"] == 0.0 and result.table["none"]["caption changed"] == 0.0
    assert "pointing all" not in result.table["knockout inside"]
    assert len(result.ranking) == 18 and result.ranking[0][2] >= result.ranking[-1][2]
    table = format_causal(result)
    assert table.count("\n| ") == len(CONDITIONS) + 1 and "top-2" in table
    assert plot_causal(result, tmp_path / "causal.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="calib_seed"):
        evaluate_causal(seed=3, n=1, calib_seed=3)
    assert np.isfinite([v for row in result.table.values() for v in row.values()]).all()


def test_blocking_chosen_heads_from_keys_leaves_the_other_heads_alone(image):
    model, processor = FAMILIES["llava"](attn_implementation="eager")
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    layout = probe.layout(inputs, (image.height, image.width))
    keys, start = layout.positions, int(layout.positions.max()) + 1
    base = _forward(model, inputs, output_attentions=True)
    with knockout(probe, keys, start, heads=[(1, 2)]):
        out = _forward(model, inputs, output_attentions=True)
    torch.testing.assert_close(out.attentions[0], base.attentions[0], rtol=0, atol=0)  # layer 0 untouched
    a, b = base.attentions[1][0], out.attentions[1][0]
    assert b[2, start:][:, torch.as_tensor(keys)].abs().max().item() == 0.0
    others = [0, 1, 3]
    torch.testing.assert_close(b[others], a[others], rtol=0, atol=1e-6)
    model.set_attn_implementation("sdpa")  # the head-wise mask through sdpa's None (causal) mask
    with knockout(probe, keys, start, heads=[(1, 2)]):
        torch.testing.assert_close(_forward(model, inputs).logits, out.logits, rtol=1e-5, atol=1e-5)


def test_mean_ablation_replaces_the_heads_slice_by_its_reference_mean(image):
    from emergence.causal import head_means

    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    runs = [probe.generate(image, "describe the image", max_new_tokens=3)]
    means = head_means(probe, runs)
    attn = probe.attention_modules[1]
    assert set(means) == {0, 1} and means[1].shape == (attn.o_proj.in_features,)
    inputs = probe.prepare(image, "describe the image")
    seen = {}
    handle = attn.o_proj.register_forward_hook(lambda m, a, o: seen.__setitem__("x", a[0].detach().clone()))
    try:
        with ablate_heads(probe, [(1, 3)], mode="mean", means=means):
            _forward(model, inputs)
    finally:
        handle.remove()
    dim = attn.o_proj.in_features // 4
    assert torch.equal(seen["x"][0, :, 3 * dim:], means[1][3 * dim:].expand(seen["x"].shape[1], dim))
    with pytest.raises(ValueError, match="needs means for layers \\[0\\]"):
        with ablate_heads(probe, [(0, 1)], mode="mean", means={1: means[1]}):
            pass


def test_gradient_maps_see_an_active_knockout(image):
    """A gradient map computed inside a knockout reads the attention the model used: the knocked-out keys get
    exactly 0 (their attention is 0), and the map differs from the one without the knockout."""
    from emergence.maps import gradient_attention

    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    run = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    free = gradient_attention(probe, run)
    keys = run.layout.positions[:6]
    with knockout(probe, keys, int(run.layout.positions.max()) + 1):
        blocked = gradient_attention(probe, run)
    assert blocked[..., :6].abs().max().item() == 0.0
    assert free[..., :6].abs().max().item() > 0.0
    assert not torch.equal(blocked[..., 6:], free[..., 6:])


def test_captures_gradient_maps_and_knockouts_in_threads_on_two_models_equal_each_call_alone(image):
    """Two threads, two models (the organism and a tiny LLaVA), each looping over a capture with a gradient map and a
    knockout's answer log-probabilities: every result is bit-identical to the same call made alone, and transformers'
    attention registry is exactly as before afterwards."""
    import threading

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from emergence.causal import answer_log_probs
    from emergence.organism import ShapesWorld, load_organism

    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    scene = ShapesWorld(5).scene(0)
    jobs = {"organism": (Probe(*load_organism()), scene.image, "describe the image"),
            "llava": (Probe(*FAMILIES["llava"]()), image, "describe the image")}

    def work(probe, img, prompt):
        run = probe.generate(img, prompt, max_new_tokens=N_NEW, min_new_tokens=N_NEW, storage_dtype=torch.float32,
                             methods=["gradient"])
        with knockout(probe, run.layout.positions, int(run.layout.positions.max()) + 1):
            knocked = answer_log_probs(probe, run)
        return run.token_ids, run.attention, run.extras["gradient"], knocked

    alone = {name: work(*job) for name, job in jobs.items()}
    results: dict[str, list] = {name: [] for name in jobs}
    errors: list[BaseException] = []

    def loop(name):
        try:
            for _ in range(4):
                results[name].append(work(*jobs[name]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for name, got in results.items():
        assert len(got) == 4
        for parts in got:
            for mine, want in zip(parts, alone[name]):
                assert torch.equal(mine, want), name
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == before


@pytest.mark.parametrize("kwargs, error, message", [
    ({"keys": [-1, 3], "from_position": 5}, ValueError, "keys must be key positions >= 0"),
    ({"keys": [2, 3], "from_position": -1}, ValueError, "from_position=-1"),
    ({"keys": [2, 3], "from_position": 5, "heads": [(0, -1)]}, ValueError, "names head -1"),
    ({"keys": [2, 3], "from_position": 5, "heads": [(0, 99)]}, ValueError, "names head 99"),
    ({"keys": [2, 10_000], "from_position": 5}, CaptureError, "must lie inside the sequence"),
    ({"keys": [2, 3], "from_position": 10_000}, CaptureError, "must lie inside the sequence"),
    ({"keys": "all", "from_position": 0}, CaptureError, "blocks every key of some query"),
])
def test_knockouts_that_would_do_something_else_than_asked_are_refused(image, kwargs, error, message):
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    if kwargs["keys"] == "all":
        kwargs = {**kwargs, "keys": list(range(inputs["input_ids"].shape[1]))}
    with pytest.raises(error, match=message):
        with knockout(probe, **kwargs):
            _forward(model, inputs)


def test_a_knockout_of_the_answer_rows_during_generation_is_not_refused(image):
    """from_position = the prompt's length blocks nothing in the prefill but every decoding step: accepted, and it
    changes the attention of the answer's rows only."""
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    run = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    prompt_len = probe.prepare(image, "describe the image")["input_ids"].shape[1]
    keys = run.layout.positions[:4]
    with AttentionCapture(model, run.layout.positions, storage_dtype=torch.float32) as cap, \
            knockout(probe, keys, prompt_len), torch.no_grad():
        probe.adapter.generate(model, probe.adapter.model_inputs(probe.prepare(image, "describe the image"), model),
                               max_new_tokens=N_NEW, min_new_tokens=N_NEW, do_sample=False)
    knocked = cap.maps()
    assert torch.equal(knocked[0], run.attention[0])  # the prefill's row (position P-1) is not blocked
    assert knocked[1:, ..., :4].abs().max().item() == 0.0  # the answer's rows are


def test_mean_ablation_with_means_of_the_wrong_size_is_refused_before_the_forward(image):
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    with pytest.raises(ValueError, match=r"means\[1\] has shape \(7,\).*head_means"):
        with ablate_heads(probe, [(1, 0)], mode="mean", means={1: torch.zeros(7)}):
            pass
