"""nnsight (0.8, the ``emergence[nnsight]`` extra): a Probe over the model an nnsight wrapper holds; a capture around
nnsight's own ``generate`` context records the same run as ``Probe.generate`` (identical ids, equal attention) for two
families, through the current ``TransformersModel`` and the deprecated ``VisionLanguageModel``; and an nnsight
intervention (a head's output zeroed at every step) gives the same run as ``emergence.causal.ablate_heads``."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import FAMILIES, N_NEW

from emergence import Probe
from emergence.causal import ablate_heads
from emergence.errors import CaptureError

nnsight = pytest.importorskip("nnsight", reason="nnsight is the emergence[nnsight] extra (pip install nnsight)")


def _wrap(model, processor, deprecated: bool):
    if deprecated:
        from nnsight.modeling.vlm import VisionLanguageModel

        with pytest.warns(Warning, match="VisionLanguageModel is deprecated"):
            return VisionLanguageModel(model, processor=processor)
    from nnsight.modeling.transformers import TransformersModel

    return TransformersModel(model, processor=processor, task="image-text-to-text")


@pytest.mark.parametrize("deprecated", [False, True])
@pytest.mark.parametrize("family", ["llava", "idefics3"])
def test_a_capture_around_nnsight_generate_equals_probe_generate(family, deprecated, image):
    model, processor = FAMILIES[family]()
    nn_model = _wrap(model, processor, deprecated)
    probe = Probe.from_nnsight(nn_model)
    assert probe.model is model and probe.processor is processor
    reference = Probe(model, processor).generate(image, "describe the image", max_new_tokens=N_NEW,
                                                 min_new_tokens=N_NEW, storage_dtype=torch.float32)
    session = probe.capture(image, prompt="describe the image", storage_dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nnsight's own deprecation notices
        with session, nn_model.generate(dict(session.inputs), max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                                        do_sample=False) as tracer:
            out = tracer.result.save()
    run = session.run(out)
    assert run.token_ids.tolist() == reference.token_ids.tolist()
    assert (run.attention - reference.attention).abs().max().item() <= 1e-5
    assert run.heatmap(0).shape == (image.height, image.width)
    with pytest.raises(CaptureError, match="one generation"):
        with session:
            pass


def test_an_nnsight_intervention_equals_the_projects_own_ablation(image):
    """Zero every head of both layers but head 0 of layer 0 (their slices of o_proj's input) at every step, through
    nnsight (bounded ``tracer.iter``; the result is read after the loop) and through ``ablate_heads``: identical ids
    and attention, and an answer that differs from the unablated one (this tiny model's answer survives smaller
    ablations)."""
    model, processor = FAMILIES["llava"]()
    nn_model = _wrap(model, processor, deprecated=False)
    probe = Probe.from_nnsight(nn_model)
    dim = model.config.text_config.hidden_size // model.config.text_config.num_attention_heads
    session = probe.capture(image, prompt="describe the image", storage_dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with session, nn_model.generate(dict(session.inputs), max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                                        do_sample=False) as tracer:
            for _step in tracer.iter[0:N_NEW]:
                x = nn_model.model.language_model.layers[0].self_attn.o_proj.input
                x[..., dim:4 * dim] = 0
                y = nn_model.model.language_model.layers[1].self_attn.o_proj.input
                y[:] = 0
            out = tracer.result.save()
    via_nnsight = session.run(out)
    with ablate_heads(probe, [(0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]):
        via_hooks = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                                   storage_dtype=torch.float32)
    plain = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                           storage_dtype=torch.float32)
    assert via_nnsight.token_ids.tolist() == via_hooks.token_ids.tolist()
    assert (via_nnsight.attention - via_hooks.attention).abs().max().item() <= 1e-5
    assert via_hooks.token_ids.tolist() != plain.token_ids.tolist()  # the intervention changed the answer


def test_from_nnsight_refuses_other_objects():
    with pytest.raises(TypeError, match="not an nnsight model wrapper"):
        Probe.from_nnsight(object())
