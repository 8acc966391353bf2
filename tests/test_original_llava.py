"""Models of the original LLaVA codebase (haotian-liu/LLaVA, DiffLMM, attend-and-segment), on a stand-in class built
the same way (``emergence.testing.tiny_original_llava``: a ``LlavaLlamaForCausalLM`` that splices image features in
place of the -200 placeholder and generates from embeddings): the layout in the spliced sequence, marker geometry
through the mean-colour square padding, capture == eager with identical ids, and the hooks path for its
hand-written attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import N_NEW, box_gap, noise_image, run_example
from PIL import Image

from emergence import Probe
from emergence.adapters.original_llava import IMAGE_TOKEN_INDEX, OriginalLlavaAdapter
from emergence.errors import UnsupportedModelError
from emergence.testing import tiny_original_llava

#: the support table's "tested on" builders whose capture exactness is tested here, not in CAPTURE_CASES
BUILDERS_TESTED_HERE = ("tiny_original_llava",)

def spliced_embeddings(model, inputs) -> torch.Tensor:
    """``[S', D]``: what the language model reads after the image features are spliced in."""
    with torch.no_grad():
        return model.prepare_inputs_labels_for_multimodal(inputs["input_ids"], inputs["images"])[0]


def eager_reference(model, inputs, positions):
    """``([T, L, H, V], new ids)`` from the stand-in's own eager generate with ``output_attentions``."""
    model.set_attn_implementation("eager")
    out = model.generate(inputs["input_ids"], images=inputs["images"], max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         do_sample=False, output_attentions=True, return_dict_in_generate=True)
    pos = torch.as_tensor(positions)
    maps = torch.stack([torch.stack([a[0, :, -1].float()[:, pos] for a in step]) for step in out.attentions])
    return maps, out.sequences[0, -N_NEW:]


@pytest.mark.parametrize("size", [(160, 100), (90, 140)])
def test_layout_sits_in_the_spliced_sequence_over_the_padded_square(size):
    model, processor = tiny_original_llava(local_vision=True)
    probe = Probe(model, processor)
    assert isinstance(probe.adapter, OriginalLlavaAdapter)
    image = noise_image(*size, seed=4)
    inputs = probe.prepare(image, "describe the image")
    ids = inputs["input_ids"][0]
    assert int((ids == IMAGE_TOKEN_INDEX).sum()) == 1
    layout = probe.layout(inputs, (image.height, image.width))
    first = int(torch.nonzero(ids == IMAGE_TOKEN_INDEX)[0])
    assert np.array_equal(layout.positions, first + np.arange(16))  # a 4 x 4 grid replaces the placeholder
    w, h = size
    side = max(w, h)
    left, top = (0, (w - h) // 2) if w > h else ((h - w) // 2, 0)
    assert layout.views[0].box == pytest.approx((-left, -top, side - left, side - top))
    # a marker changes exactly the spliced features whose boxes sit on it
    arr = np.array(image)
    rect = (int(0.3 * w), int(0.3 * h), int(0.6 * w), int(0.7 * h))
    arr[rect[1]:rect[3], rect[0]:rect[2]] = [255, 0, 255]
    diff = (spliced_embeddings(model, inputs)
            - spliced_embeddings(model, probe.prepare(Image.fromarray(arr), "describe the image"))).abs().sum(-1)
    assert diff.shape[0] == len(ids) - 1 + 16
    outside = torch.ones_like(diff, dtype=torch.bool)
    outside[torch.as_tensor(layout.positions)] = False
    assert diff[outside].max().item() == 0.0
    changed = np.nonzero(diff[torch.as_tensor(layout.positions)].numpy() > 1e-5)[0]
    assert len(changed) > 0
    boxes = layout.token_boxes()
    for v in changed:
        b = boxes[v]
        assert box_gap(b, rect) <= 0.5 * max(b[2] - b[0], b[3] - b[1]) + 1, (v, b, rect)
    for v in range(16):
        b = boxes[v]
        if b[0] >= rect[0] + 1 and b[1] >= rect[1] + 1 and b[2] <= rect[2] - 1 and b[3] <= rect[3] - 1:
            assert v in changed


def test_capture_equals_eager_with_identical_ids(image):
    model, processor = tiny_original_llava()
    probe = Probe(model, processor)
    run = probe.generate(image, "describe the image", max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    assert run.meta["mechanism"] == "interface"  # its modules are transformers' own: the main path
    assert run.prompt_ids.tolist() == probe.prepare(image, "describe the image")["input_ids"][0].tolist()
    reference, ids = eager_reference(model, probe.prepare(image, "describe the image"), run.layout.positions)
    assert run.token_ids.tolist() == ids.tolist()
    assert (run.attention - reference).abs().max().item() <= 1e-5 and reference.sum().item() > 0.01
    assert run.heatmap(0).shape == (image.height, image.width)


def test_hand_written_attention_is_captured_through_hooks_automatically(image):
    kw = dict(max_new_tokens=N_NEW, min_new_tokens=N_NEW, storage_dtype=torch.float32)
    reference = Probe(*tiny_original_llava()).generate(image, "describe the image", **kw)
    probe = Probe(*tiny_original_llava(hand_written=True))
    run = probe.generate(image, "describe the image", **kw)
    assert run.meta["mechanism"] == "hooks"
    assert run.token_ids.tolist() == reference.token_ids.tolist()
    assert (run.attention - reference.attention).abs().max().item() <= 1e-5


def test_refusals_name_the_case(image):
    model, processor = tiny_original_llava()
    model.config.image_aspect_ratio = "anyres"
    with pytest.raises(UnsupportedModelError, match="anyres.*LlavaNextForConditionalGeneration"):
        Probe(model, processor)
    model.config.image_aspect_ratio = "pad"
    probe = Probe(model, processor)
    with pytest.raises(UnsupportedModelError, match="convention='self'"):
        probe.generate(image, "describe", max_new_tokens=2, convention="self")
    # features that need one forward over prompt + answer are refused before generating, naming themselves
    generated = []
    handle = model.register_forward_pre_hook(lambda *a: generated.append(1))
    try:
        with pytest.raises(UnsupportedModelError, match="gradient maps and the teacher-forced effects"):
            probe.generate(image, "describe", max_new_tokens=2, methods=["gradient"])
    finally:
        handle.remove()
    assert not generated
    run = probe.generate(image, "describe", max_new_tokens=2)
    from emergence.causal import answer_log_probs

    with pytest.raises(UnsupportedModelError, match="answer_log_probs"):
        answer_log_probs(probe, run)
    with pytest.raises(ValueError, match="one <image> placeholder"):
        probe.generate(image, "compare <image> and this", max_new_tokens=2)


def test_the_example_runs_both_mechanisms_to_the_same_result():
    stdout = run_example("original_llava.py")
    assert "transformers attention" in stdout and "mechanism interface" in stdout
    assert "hand-written attention" in stdout and "mechanism hooks" in stdout
    assert "same answer: True" in stdout and "heatmap: (100, 160)" in stdout
    gap = float(stdout.split("max attention difference ")[1].split()[0])
    assert gap <= 1e-3  # float16 storage of the runs
