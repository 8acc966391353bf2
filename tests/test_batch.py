"""Batched generation with capture (Probe.generate_batch): each item of a left-padded batch gets what it gets alone.

Tiny random-config models of the real classes, float32, items of different image sizes and prompt lengths: the
generated ids are identical, and the attention equals the batch-of-one run within ATOL (padding changes the order of
some float sums; measured largest differences in docs/batching.md). Captured in float32 here so the comparison is not
blurred by the float16 storage.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, noise_image

from emergence import Probe
from emergence.adapters.registry import adapters_in_order
from emergence.errors import CaptureError, UnsupportedModelError

ATOL = 1e-5
BATCHED = ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "gemma3_fallback", "gemma3_pan_and_scan", "internvl", "llava_next_video", "qwen2_5_omni", "qwen3_vl", "qwen3_vl_moe", "qwen3_5",
           "qwen3_5_moe"]
SIZES = [(96, 64), (64, 64), (50, 90), (120, 70)]
PROMPTS = ["describe the image", "what is in the picture? answer in detail please", "colours", "where is the cat?"]


def _items(n: int = 4) -> list[tuple]:
    return [(noise_image(w, h, seed=i), PROMPTS[i % len(PROMPTS)]) for i, (w, h) in enumerate(SIZES[:n])]


def _alone(probe: Probe, items, **kw):
    return [probe.generate(image, prompt, **kw) for image, prompt in items]


@pytest.mark.parametrize("family", BATCHED)
def test_each_item_of_a_batch_is_what_it_is_alone(family):
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    items = _items()
    kw = dict(max_new_tokens=6, storage_dtype=torch.float32)
    runs = probe.generate_batch(items, **kw)
    alone = _alone(probe, items, **kw)
    assert len(runs) == len(items)
    for run, ref in zip(runs, alone):
        assert torch.equal(run.token_ids, ref.token_ids) and run.text == ref.text
        assert run.attention.shape == ref.attention.shape  # the item's own visual tokens, not the padded width
        torch.testing.assert_close(run.attention, ref.attention, rtol=0, atol=ATOL)
        assert run.layout.to_dict() == ref.layout.to_dict()  # positions in the item's own prompt
        assert torch.equal(run.prompt_ids, ref.prompt_ids)
        assert run.meta["batch"]["size"] == len(items)


def test_every_batched_family_is_tested_here():
    marked = {type(a).__name__ for a in adapters_in_order() if a.batched}
    assert marked == {"LlavaAdapter", "LlavaNextAdapter", "LlavaNextVideoAdapter", "Qwen2VLAdapter",
                      "Qwen25OmniAdapter", "Idefics3Adapter", "Gemma3Adapter", "InternVLAdapter"}


def test_an_item_that_ends_keeps_nothing_after_its_end(pil_organism):
    from emergence.organism import ShapesWorld
    from emergence.organism.model import PROMPT

    world = ShapesWorld(7)
    items = [(world.scene(i).image, PROMPT) for i in range(5)]
    runs = pil_organism.generate_batch(items, max_new_tokens=48, storage_dtype=torch.float32)
    alone = _alone(pil_organism, items, max_new_tokens=48, storage_dtype=torch.float32)
    lengths = [len(r.token_ids) for r in runs]
    assert len(set(lengths)) > 1  # items end at different steps
    eos = pil_organism.model.generation_config.eos_token_id
    for run, ref in zip(runs, alone):
        assert torch.equal(run.token_ids, ref.token_ids)
        assert run.attention.shape[0] == len(run.token_ids)
        assert (run.token_ids == eos).sum() <= 1 and (int(run.token_ids[-1]) == eos or len(run.token_ids) == 48)
        torch.testing.assert_close(run.attention, ref.attention, rtol=0, atol=ATOL)


@pytest.mark.parametrize("keep", ["layers", "mean"])
def test_keep_modes_and_the_self_convention(keep):
    model, processor = FAMILIES["llava_next"]()
    probe = Probe(model, processor)
    items = _items(3)
    for convention in ("predicting", "self"):
        kw = dict(max_new_tokens=5, keep=keep, convention=convention, storage_dtype=torch.float32)
        for run, ref in zip(probe.generate_batch(items, **kw), _alone(probe, items, **kw)):
            assert torch.equal(run.token_ids, ref.token_ids) and run.convention == convention
            torch.testing.assert_close(run.attention, ref.attention, rtol=0, atol=ATOL)


def test_map_methods_recorded_after_the_batch_and_tam_refused_by_name():
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    items = _items(3)
    runs = probe.generate_batch(items, max_new_tokens=4, methods=["relative", "gradient"], storage_dtype=torch.float32)
    alone = _alone(probe, items, max_new_tokens=4, methods=["relative", "gradient"], storage_dtype=torch.float32)
    for run, ref in zip(runs, alone):
        for key in ("generic_attention", "gradient"):
            torch.testing.assert_close(run.extras[key].float(), ref.extras[key].float(), rtol=1e-4, atol=ATOL)
    with pytest.raises(UnsupportedModelError, match="'tam'"):
        probe.generate_batch(items, max_new_tokens=2, methods=["tam"])


def test_families_without_batching_and_bad_items_are_refused():
    for family in ("mistral3", "glm4v"):
        model, processor = FAMILIES[family]()
        with pytest.raises(UnsupportedModelError, match="batched generation is not supported"):
            Probe(model, processor).generate_batch(_items(2), max_new_tokens=2)
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    with pytest.raises(ValueError, match="at least one item"):
        probe.generate_batch([], max_new_tokens=2)
    with pytest.raises(ValueError, match="item 1 has no prompt"):
        probe.generate_batch([(noise_image(), "a"), {"image": noise_image()}], max_new_tokens=2)
    with pytest.raises(ValueError, match="item 0 must be"):
        probe.generate_batch(["just a string"], max_new_tokens=2)


def test_the_batch_keeps_per_item_visual_keys_only():
    """Memory: the kept attention of a batch holds each item's visual keys (at most the largest item's), never the
    padded sequence width."""
    from emergence.capture import AttentionCapture

    model, processor = FAMILIES["llava_next"]()
    probe = Probe(model, processor)
    items = _items(3)
    runs = probe.generate_batch(items, max_new_tokens=3)
    widths = [r.layout.num_tokens for r in runs]
    assert len(set(widths)) > 1 and [r.attention.shape[-1] for r in runs] == widths
    cap = AttentionCapture(model, [np.arange(3), np.arange(5, 12)])
    assert tuple(cap.visual_positions.shape) == (2, 7)


# ---------------------------------------------------------------------------------------------------- sweeps
def _sweep(out, **kw):
    from emergence.sweep import SweepConfig

    return SweepConfig(out=str(out), dataset="shapes", dataset_kwargs={"n": 6, "seed": 23}, chunk_size=4,
                       templates=("describe", "where"), store="layers", **kw)


def test_a_batched_sweep_equals_the_one_item_sweep_and_a_resume_keeps_its_batch_size(tmp_path):
    import pandas as pd

    from emergence.sweep import load_sweep, run_sweep
    from emergence.sweep.store import SweepError, SweepStore

    run_sweep(_sweep(tmp_path / "one"), progress=False)
    run_sweep(_sweep(tmp_path / "four", batch_size=4), progress=False)
    one, one_units, manifest = load_sweep(tmp_path / "one")
    four, four_units, manifest4 = load_sweep(tmp_path / "four")
    assert manifest4["options"]["batch_size"] == 4 and "batch_size" not in manifest["options"]
    assert list(one["key"]) == list(four["key"]) and four["error"].isna().all()
    for column in ("answer", "emergence_text", "best_text", "emergence_position"):
        if column in one:
            assert list(one[column]) == list(four[column]), column
    pd.testing.assert_series_equal(one["oracle_iou"], four["oracle_iou"], rtol=0, atol=1e-6)
    maps1, maps4 = SweepStore(tmp_path / "one").tensors(), SweepStore(tmp_path / "four").tensors()
    assert maps1.keys() == maps4.keys()
    for key in maps1:
        torch.testing.assert_close(maps4[key].float(), maps1[key].float(), rtol=0, atol=2e-3)  # float16 maps
    with pytest.raises(SweepError, match="batch_size"):
        run_sweep(_sweep(tmp_path / "four", batch_size=2), progress=False)
    with pytest.raises(SweepError, match="batch_size"):
        run_sweep(_sweep(tmp_path / "one", batch_size=4), progress=False)


def test_an_item_that_fails_inside_a_batch_is_its_own_error_row(tmp_path):
    """A truncated image file among the items of one batch: its error row, and the batch's other items computed."""
    import json

    from PIL import Image

    from emergence.organism import ShapesWorld
    from emergence.sweep import SweepConfig, load_sweep, run_sweep

    data = tmp_path / "data"
    data.mkdir()
    rows = []
    world = ShapesWorld(5)
    for i in range(4):
        scene = world.scene(i)
        scene.image.save(data / f"{i}.png")
        expression = scene.referring_expressions()[0]
        Image.fromarray(expression.mask.astype(np.uint8) * 255).save(data / f"{i}_mask.png")
        rows.append({"id": f"s{i}", "image": f"{i}.png", "mask": f"{i}_mask.png", "expression": expression.text})
    (data / "2.png").write_bytes((data / "2.png").read_bytes()[:60])  # truncated
    ann = data / "set.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in rows))
    run_sweep(SweepConfig(out=str(tmp_path / "s"), dataset="jsonl", root=str(ann), store="none", max_new_tokens=24,
                          chunk_size=4, batch_size=4), progress=False)
    samples, _units, _manifest = load_sweep(tmp_path / "s")
    bad, good = samples[samples["sample"] == "s2"], samples[samples["sample"] != "s2"]
    assert len(bad) == 1 and bad["error"].iloc[0] and "s2" in bad["error"].iloc[0]
    assert len(good) == 3 and good["error"].isna().all() and good["oracle_iou"].notna().all()
    run_sweep(SweepConfig(out=str(tmp_path / "one"), dataset="jsonl", root=str(ann), store="none", max_new_tokens=24,
                          chunk_size=4), progress=False)
    alone = load_sweep(tmp_path / "one")[0]
    assert list(alone["answer"].fillna("")) == list(samples["answer"].fillna(""))


def test_a_batch_whose_joint_analysis_fails_is_analyzed_one_run_at_a_time(tmp_path, monkeypatch):
    """Fault injection: analyze_batch raises for every batch; each run is then analyzed alone, so the sweep's rows
    are the batch-1 sweep's, and an item whose own analysis fails is its error row only."""
    import emergence.analysis as analysis
    from emergence.sweep import load_sweep, run_sweep

    run_sweep(_sweep(tmp_path / "one"), progress=False)

    def broken(*args, **kwargs):
        raise RuntimeError("injected: the joint analysis fails")

    real = analysis.analyze
    seen = []

    def analyze_failing_on_the_third(run, *args, **kwargs):
        seen.append(run.prompt)
        if len(seen) == 3:
            raise RuntimeError("injected: this run's analysis fails")
        return real(run, *args, **kwargs)

    monkeypatch.setattr(analysis, "analyze_batch", broken)
    monkeypatch.setattr(analysis, "analyze", analyze_failing_on_the_third)
    run_sweep(_sweep(tmp_path / "four", batch_size=4), progress=False)
    one, four = load_sweep(tmp_path / "one")[0], load_sweep(tmp_path / "four")[0]
    assert list(one["key"]) == list(four["key"])
    failed = four[four["error"].notna()]
    assert len(failed) == 1 and "injected: this run's analysis fails" in failed["error"].iloc[0]
    good = four["error"].isna()
    assert list(one["answer"][good]) == list(four["answer"][good])
    assert np.allclose(one["oracle_iou"][good], four["oracle_iou"][good], rtol=0, atol=1e-6)


def test_a_sweep_of_a_family_that_cannot_batch_is_refused_before_any_item(tmp_path):
    from emergence.sweep import run_sweep
    from emergence.testing import tiny_vipllava

    model, processor = tiny_vipllava()
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    with pytest.raises(UnsupportedModelError, match="batch_size=2: batched generation is not supported"):
        run_sweep(_sweep(tmp_path / "x", batch_size=2, model=str(tmp_path / "m")), progress=False)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_a_batch_capture_session_around_your_own_generate_gives_each_items_run(family):
    """probe.capture_batch: the user runs model.generate on session.inputs; runs() == generate_batch == alone."""
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    items = _items(3)
    session = probe.capture_batch(items, storage_dtype=torch.float32)
    with session, torch.no_grad():
        out = model.generate(**session.inputs, max_new_tokens=6, do_sample=False,
                             pad_token_id=session.pad_token_id)
    runs = session.runs(out)
    batched = probe.generate_batch(items, max_new_tokens=6, storage_dtype=torch.float32)
    alone = _alone(probe, items, max_new_tokens=6, storage_dtype=torch.float32)
    for run, same, ref in zip(runs, batched, alone):
        assert torch.equal(run.token_ids, ref.token_ids) and torch.equal(run.token_ids, same.token_ids)
        assert torch.equal(run.attention, same.attention)  # the very same computation as generate_batch
        torch.testing.assert_close(run.attention, ref.attention, rtol=0, atol=ATOL)
        assert run.layout.to_dict() == ref.layout.to_dict()
    with pytest.raises(CaptureError, match="runs"):
        session.run(out)


def test_a_batch_capture_session_refuses_what_it_did_not_record():
    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    items = _items(3)
    session = probe.capture_batch(items)
    with pytest.raises(CaptureError, match="leave the"):
        session.runs(torch.zeros(3, 4, dtype=torch.long))
    with session, torch.no_grad():
        out = model.generate(**session.inputs, max_new_tokens=4, do_sample=False, pad_token_id=session.pad_token_id)
    with pytest.raises(CaptureError, match="padded prompts"):
        session.runs(out[:2])  # a batch of two is not the session's three
    tampered = out.clone()
    first = session.inputs["input_ids"].shape[1]  # the first new token is fed back; the last one never is
    tampered[0, first] = (tampered[0, first] + 1) % model.config.get_text_config().vocab_size
    with pytest.raises(CaptureError, match="not the ones generated"):
        session.runs(tampered)
    other = probe.capture_batch(items)
    inputs = dict(other.inputs)
    inputs["input_ids"] = inputs["input_ids"].flip(0)  # the prompts swapped between rows
    inputs["attention_mask"] = inputs["attention_mask"].flip(0)
    with other, torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=other.pad_token_id)
    with pytest.raises(CaptureError, match="session's"):
        other.runs(out)
    fuyu = Probe(*FAMILIES["fuyu"]())
    with pytest.raises(UnsupportedModelError, match="Fuyu"):
        fuyu.capture_batch(items)
