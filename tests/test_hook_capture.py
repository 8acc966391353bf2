"""The hooks fallback (``mechanism="hooks"``): capture of attention modules that never call transformers' attention
functions. A model class written here computes attention by hand, as remote code does (the original LLaVA codebase,
InternVL-Chat, MiniCPM-V); real transformers classes are forced through the same path with eager attention. Both
equal the main path / eager attention within 1e-5 with identical ids, and the hooks are gone after the capture."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import CAPTURE_CASES, FAMILIES, N_NEW, assert_capture_equals_eager
from torch import nn

from emergence import Probe
from emergence.capture import AttentionCapture
from emergence.errors import CaptureError


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class HandWrittenAttention(nn.Module):
    """Self-attention computed by hand from a Llama attention module's projections: rotary embedding, grouped keys,
    causal mask, softmax, all in this forward; it returns ``(output, weights if output_attentions else None)`` as
    remote-code attention classes do, and never calls ``ALL_ATTENTION_FUNCTIONS``."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        self.layer_idx = original.layer_idx
        self.head_dim = original.head_dim
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (original.q_proj, original.k_proj, original.v_proj,
                                                              original.o_proj)

    def forward(self, hidden_states, position_embeddings, attention_mask=None, past_key_values=None,
                output_attentions=False, **kwargs):
        batch, q_len, _ = hidden_states.shape
        shape = (batch, q_len, -1, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        kv_len = k.shape[2]
        causal = torch.ones(q_len, kv_len, dtype=torch.bool, device=q.device).tril(kv_len - q_len)
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")).float(), dim=-1).to(q.dtype)
        out = (weights @ v).transpose(1, 2).reshape(batch, q_len, -1)
        return self.o_proj(out), (weights if output_attentions else None)


def hand_written_llava():
    """A tiny LLaVA whose decoder attention is :class:`HandWrittenAttention` (same weights as the original)."""
    model, processor = FAMILIES["llava"]()
    for layer in model.model.language_model.layers:
        layer.self_attn = HandWrittenAttention(layer.self_attn)
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
