"""Capture == eager attention probabilities; generations identical to plain generate; scoping; keep modes."""

from __future__ import annotations

import pytest
import torch
from conftest import CAPTURE_CASES, FAMILIES, N_NEW, assert_capture_equals_eager
from conftest import eager_reference as _eager_reference
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from emergence import Probe
from emergence.capture import AttentionCapture, language_model_attention_modules
from emergence.errors import CaptureError



@pytest.mark.parametrize("backend", ["sdpa", "eager"])
@pytest.mark.parametrize("case", sorted(CAPTURE_CASES))
def test_capture_equals_eager_and_ids_equal_plain_generate(case, backend, image):
    model, processor = CAPTURE_CASES[case](attn_implementation=backend)
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    run = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    assert run.meta["backend"] == backend
    reference = assert_capture_equals_eager(model, inputs, run)
    assert reference.shape == (N_NEW, len(run.layers), run.num_heads, run.layout.num_tokens)


@pytest.mark.parametrize("case", ["llava", "qwen2_vl", "llava_mistral_sliding", "mllama_cross_attention"])
def test_self_convention_equals_eager_rows_of_the_next_step(case, image):
    model, processor = CAPTURE_CASES[case]()
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    run = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         convention="self", storage_dtype=torch.float32)
    reference, _ = _eager_reference(model, inputs, run.layout.positions, inputs["input_ids"].shape[1])
    # token t's own row is the last row of step t + 1 (eager has it for t < T-1; ours also has the last token)
    assert run.attention.shape[0] == N_NEW
    assert (run.attention[:-1] - reference[1:]).abs().max().item() <= 1e-5


def test_keep_modes_and_layer_subset_are_reductions_of_heads(image):
    model, processor = FAMILIES["llava"](text_layers=3)
    probe = Probe(model, processor)
    kw = dict(max_new_tokens=4, min_new_tokens=4, storage_dtype=torch.float32)
    heads = probe.generate(image, "describe", keep="heads", **kw)
    layers = probe.generate(image, "describe", keep="layers", **kw)
    mean = probe.generate(image, "describe", keep="mean", **kw)
    subset = probe.generate(image, "describe", keep="heads", layers=[2, 0], **kw)
    assert layers.attention.shape == (4, 3, 16) and mean.attention.shape == (4, 16)
    torch.testing.assert_close(layers.attention, heads.attention.mean(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(mean.attention, heads.attention.mean((1, 2)), atol=1e-6, rtol=0)
    assert subset.layers == [2, 0]
    torch.testing.assert_close(subset.attention, heads.attention[:, [2, 0]], atol=0, rtol=0)


def test_default_storage_is_float16_on_cpu(image):
    model, processor = FAMILIES["llava"]()
    run = Probe(model, processor).generate(image, "describe", max_new_tokens=3)
    assert run.attention.dtype == torch.float16 and run.attention.device.type == "cpu"


def test_only_language_model_attention_is_captured():
    model, _ = FAMILIES["llava"](text_layers=3)
    modules = language_model_attention_modules(model)
    assert [m.layer_idx for m in modules] == [0, 1, 2]
    vision = set(map(id, model.model.vision_tower.modules()))
    assert not any(id(m) in vision for m in modules)


def test_registration_is_restored_after_an_exception():
    model, _ = FAMILIES["llava"]()
    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    with pytest.raises(RuntimeError, match="boom"):
        with AttentionCapture(model, [2, 3]):
            assert ALL_ATTENTION_FUNCTIONS["sdpa"] is not sdpa_attention_forward
            raise RuntimeError("boom")
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == before
    assert ALL_ATTENTION_FUNCTIONS.get_interface("sdpa", None) is sdpa_attention_forward


def test_error_inside_the_model_restores_registration(image):
    model, processor = FAMILIES["llava"]()
    inputs = Probe(model, processor).prepare(image, "describe")
    with pytest.raises(CaptureError, match="beyond the sequence length"):
        with AttentionCapture(model, [10_000]):
            model(**inputs)
    assert "sdpa" not in ALL_ATTENTION_FUNCTIONS._local_mapping


def test_nested_captures_on_one_backend_both_record(image):
    model, processor = FAMILIES["llava"]()
    inputs = Probe(model, processor).prepare(image, "describe")
    positions = torch.nonzero(inputs["input_ids"][0] == model.config.image_token_id).flatten()
    with AttentionCapture(model, positions, storage_dtype=torch.float32) as outer:
        with AttentionCapture(model, positions[:4], storage_dtype=torch.float32) as inner:
            model(**inputs)
    assert outer.maps().shape[-1] == 16 and inner.maps().shape[-1] == 4
    torch.testing.assert_close(outer.maps()[..., :4], inner.maps(), atol=0, rtol=0)


def test_bad_capture_arguments_raise():
    model, _ = FAMILIES["llava"]()
    with pytest.raises(ValueError, match="keep="):
        AttentionCapture(model, [1], keep="everything")
    with pytest.raises(ValueError, match="not captured language-model layers; valid are 0..1"):
        AttentionCapture(model, [1], layers=[7])
    with pytest.raises(CaptureError, match="empty"):
        AttentionCapture(model, [])


def test_concurrent_captures_in_threads_equal_sequential_ones_and_leave_nothing_registered(image):
    """Two threads capture on two models at once (the same backend key), many times: each run equals the run made
    alone, no capture takes the other's steps, and the attention registry ends exactly as it began."""
    import threading

    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    probes = [Probe(*FAMILIES["llava"]()), Probe(*FAMILIES["qwen2_vl"]())]
    alone = [p.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW) for p in probes]
    failures: list[BaseException] = []
    results: dict[int, list] = {0: [], 1: []}

    def work(i: int) -> None:
        try:
            for _ in range(6):
                results[i].append(probes[i].generate(image, "describe the image", max_new_tokens=N_NEW,
                                                     min_new_tokens=N_NEW))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    for i in (0, 1):
        assert len(results[i]) == 6
        for run in results[i]:
            assert run.token_ids.tolist() == alone[i].token_ids.tolist()
            assert torch.equal(run.attention, alone[i].attention)
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == before


def test_captures_exiting_out_of_order_restore_the_registry_and_one_model_is_captured_by_one_thread(image):
    import threading

    before = dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    m1, _ = FAMILIES["llava"]()
    m2, _ = FAMILIES["llava"]()
    a = AttentionCapture(m1, [0, 1])
    b = AttentionCapture(m2, [0, 1])
    a.__enter__()
    b.__enter__()
    refused: list[BaseException] = []

    def other_thread() -> None:
        try:
            AttentionCapture(m1, [0, 1]).__enter__()
        except CaptureError as exc:
            refused.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert len(refused) == 1 and "another thread" in str(refused[0])
    a.__exit__(None, None, None)  # the first one leaves first
    assert "sdpa" in ALL_ATTENTION_FUNCTIONS._local_mapping  # b is still active
    b.__exit__(None, None, None)
    assert dict(ALL_ATTENTION_FUNCTIONS._local_mapping) == before
    with AttentionCapture(m1, [0, 1]):  # free again
        pass


def test_capture_refuses_no_layers_and_non_float_storage():
    model, _ = FAMILIES["llava"]()
    with pytest.raises(ValueError, match=r"layers=\[\] selects no layer"):
        AttentionCapture(model, [0, 1], layers=[])
    with pytest.raises(ValueError, match="storage_dtype=torch.int8 cannot hold probabilities"):
        AttentionCapture(model, [0, 1], storage_dtype=torch.int8)
