"""Where upstream moved: behaviour that changed between transformers releases, detected by behaviour (never by
version number), so that each test runs on every version and says what to do when upstream moves again."""

from __future__ import annotations

import pytest
import torch
from conftest import N_NEW, noise_image
from test_hook_capture import hand_written_llava

from emergence import Probe
from emergence.errors import CaptureError
from emergence.testing import HandWrittenAttention, tiny_llama4


class CacheBlindAttention(HandWrittenAttention):
    """Hand-written attention that reads its cache under one fixed keyword name that the model does not use (as
    remote code written for `past_key_values=` does under transformers 5.24, which passes `cache=`)."""

    def forward(self, hidden_states, position_embeddings, attention_mask=None, output_attentions=False, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k != "cache" and k != "past_key_values"}
        return super().forward(hidden_states, position_embeddings, attention_mask, output_attentions, **kwargs)


def test_a_module_that_does_not_extend_its_cache_is_named():
    model, processor = hand_written_llava()
    for layer in model.model.language_model.layers:
        layer.self_attn.__class__ = CacheBlindAttention
    probe = Probe(model, processor)
    with pytest.raises(CaptureError, match="layer 0 did not extend its KV cache.*`cache=`"):
        probe.generate(noise_image(64, 48), "describe", max_new_tokens=3, mechanism="hooks")


def _llama4_forward(model, inputs):
    with torch.no_grad():
        return model(**inputs).logits


def test_llama4_forward_works_without_the_workaround_or_fails_only_by_the_known_defect():
    """transformers 5.24's Llama4ForConditionalGeneration.forward reads ``image_outputs`` from its language model's
    output, which has no such field (every forward fails); 5.25 fixed it, and the locks moved to 5.25 on 2026-12-03
    (this test was a strict expected failure until then, and turned red on 5.25 as it was meant to). ``pyproject``
    still allows 5.24, where ``Llama4Adapter.upstream_fixes`` is needed: on any installed version the plain forward
    either works, or fails by exactly that defect and works inside the workaround; any other failure is new."""
    model, processor = tiny_llama4()
    probe = Probe(model, processor)
    inputs = probe.prepare(noise_image(64, 48), "describe")
    try:
        logits = _llama4_forward(model, inputs)
    except AttributeError as exc:
        assert "image_outputs" in str(exc), exc  # the 5.24 defect, and no other
        with probe.upstream_fixes():
            logits = _llama4_forward(model, inputs)
    assert torch.isfinite(logits).all()


def test_llama4_workaround_is_scoped_and_changes_no_logit():
    model, processor = tiny_llama4()
    probe = Probe(model, processor)
    inputs = probe.prepare(noise_image(64, 48), "describe")
    with probe.upstream_fixes():
        logits = _llama4_forward(model, inputs)
    assert not model.language_model._forward_hooks  # nothing stays registered
    # the hook only adds a field: the logits are the language model's own, as a direct call computes them
    with torch.no_grad():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        feats = model.get_image_features(pixel_values=inputs["pixel_values"], return_dict=True).last_hidden_state
        proj = model.multi_modal_projector(feats.view(-1, feats.size(-1)))
        mask = (inputs["input_ids"] == model.config.image_token_id)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(mask, proj)
        direct = model.language_model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits
    assert torch.equal(logits, direct)
    run = probe.generate(noise_image(64, 48), "describe", max_new_tokens=N_NEW)
    assert len(run.token_ids) == N_NEW and not model.language_model._forward_hooks
