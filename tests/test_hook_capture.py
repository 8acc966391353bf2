"""The hooks fallback (``mechanism="hooks"``): capture of attention modules that never call transformers' attention
functions. A model class computes attention by hand, as remote code does (the original LLaVA codebase,
InternVL-Chat, MiniCPM-V); real transformers classes are forced through the same path with eager attention. Both
equal the main path / eager attention within 1e-5 with identical ids, and the hooks are gone after the capture. (The
hand-written class is ``emergence.testing.HandWrittenAttention``.)"""

from __future__ import annotations

import pytest
import torch
from conftest import CAPTURE_CASES, FAMILIES, N_NEW, assert_capture_equals_eager

from emergence import Probe
from emergence.capture import AttentionCapture
from emergence.errors import CaptureError
from emergence.testing import hand_written_attention


def hand_written_llava():
    """A tiny LLaVA whose decoder attention is ``emergence.testing.HandWrittenAttention`` (same weights)."""
    model, processor = FAMILIES["llava"]()
    hand_written_attention(model.model.language_model)
    return model, processor


def test_hand_written_attention_captured_by_hooks_equals_the_real_class(image):
    reference_model, processor = FAMILIES["llava"]()  # same seed: the same weights, attention via transformers
    kw = dict(max_new_tokens=N_NEW, min_new_tokens=N_NEW, storage_dtype=torch.float32)
    reference = Probe(reference_model, processor).generate(image, "describe the image", **kw)
    model, processor = hand_written_llava()
    probe = Probe(model, processor)
    assert [type(m).__name__ for m in probe.attention_modules] == ["HandWrittenAttention"] * 2
    run = probe.generate(image, "describe the image", mechanism="hooks", **kw)
    assert run.meta["mechanism"] == "hooks"
    assert run.token_ids.tolist() == reference.token_ids.tolist()
    assert (run.attention - reference.attention).abs().max().item() <= 1e-5
    assert run.attention.sum().item() > 0.01
    # the "self" convention reads the rows at the answer's own positions from one full forward
    own = probe.generate(image, "describe the image", mechanism="hooks", convention="self", **kw)
    own_ref = Probe(reference_model, processor).generate(image, "describe the image", convention="self", **kw)
    assert (own.attention - own_ref.attention).abs().max().item() <= 1e-5
    for module in probe.attention_modules:  # nothing stays hooked
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_the_main_path_names_the_fallback_when_attention_bypasses_transformers(image):
    probe = Probe(*hand_written_llava())
    with pytest.raises(CaptureError, match="mechanism='hooks'"):
        probe.generate(image, "describe the image", max_new_tokens=2)


@pytest.mark.parametrize("case", ["llava", "qwen2_vl", "llava_mistral_sliding", "mllama_cross_attention"])
def test_real_classes_forced_through_the_hooks_equal_eager(case, image):
    model, processor = CAPTURE_CASES[case](attn_implementation="eager")
    probe = Probe(model, processor)
    inputs = probe.prepare(image, "describe the image")
    run = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32, mechanism="hooks")
    assert_capture_equals_eager(model, inputs, run)


def test_hooks_refuse_modules_that_return_no_weights_and_always_unhook(image):
    model, processor = FAMILIES["llava"]()  # sdpa: the modules return no weights
    probe = Probe(model, processor)
    with pytest.raises(CaptureError, match="returned no attention weights.*attn_implementation='eager'"):
        probe.generate(image, "describe the image", max_new_tokens=2, mechanism="hooks")
    for module in probe.attention_modules:
        assert not module._forward_hooks and not module._forward_pre_hooks
    with pytest.raises(ValueError, match="mechanism="):
        AttentionCapture(model, [1], mechanism="everything")
