"""Probe / ProbeRun public API: inputs, heatmaps, persistence, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, noise_image

from emergence import Probe, ProbeRun
from emergence.errors import ImageLoadError, UnsupportedModelError


@pytest.fixture(scope="module")
def llava():
    return FAMILIES["llava"](text_layers=3)


@pytest.fixture(scope="module")
def run(llava):
    model, processor = llava
    return Probe(model, processor).generate(noise_image(), "describe the image", max_new_tokens=5, min_new_tokens=5)


def test_run_fields_and_shapes(run, llava):
    model, processor = llava
    assert run.attention.shape == (5, 3, 4, 16)
    assert len(run.tokens) == len(run.token_ids) == 5
    assert "".join(run.tokens) == run.text
    for tok, (a, b) in zip(run.tokens, run.token_offsets.tolist()):
        assert run.text[a:b] == tok
    assert run.text == processor.tokenizer.decode(run.token_ids, skip_special_tokens=True)
    assert run.layout.image_size == (100, 160)
    # attention rows are probabilities: visual mass is in [0, 1]
    mass = run.attention.float().sum(-1)
    assert (mass >= 0).all() and (mass <= 1.0 + 1e-3).all()


def test_chat_template_is_used(llava):
    model, processor = llava
    probe = Probe(model, processor)
    text = probe.build_prompt("what colour is the roof?")
    assert text.startswith("USER: <image>") and text.endswith("ASSISTANT:")


def test_inputs_path_equals_image_path(llava):
    model, processor = llava
    probe = Probe(model, processor)
    img = noise_image()
    a = probe.generate(img, "describe", max_new_tokens=4)
    b = probe.generate(inputs=probe.prepare(img, "describe"), image=img, max_new_tokens=4)
    assert a.token_ids.tolist() == b.token_ids.tolist()
    assert torch.equal(a.attention, b.attention)


def test_heatmap_is_layer_head_mean_rendered(run):
    heat = run.heatmap(2, layers=[1], heads=[0, 3])
    expected = run.layout.render(run.attention[2, 1, [0, 3]].float().mean(0))
    assert heat.shape == (100, 160) and heat.dtype == np.float32
    np.testing.assert_allclose(heat, expected, atol=1e-6)
    np.testing.assert_allclose(run.heatmap(-1), run.heatmap(4), atol=0)


def test_out_of_range_token_and_bad_selections(run):
    with pytest.raises(IndexError, match="out of range for a run of 5"):
        run.heatmap(5)
    with pytest.raises(ValueError, match="were not captured"):
        run.heatmap(0, layers=[9])
    with pytest.raises(IndexError, match="head indices"):
        run.heatmap(0, heads=[4])


def test_save_load_round_trip_is_lossless(run, tmp_path):
    path = run.save(tmp_path / "run")
    again = ProbeRun.load(path)
    assert torch.equal(again.attention, run.attention) and again.attention.dtype == run.attention.dtype
    assert again.token_ids.tolist() == run.token_ids.tolist()
    assert again.tokens == run.tokens and again.text == run.text
    assert torch.equal(again.token_offsets, run.token_offsets) and torch.equal(again.prompt_ids, run.prompt_ids)
    assert again.layout.to_dict() == run.layout.to_dict()
    assert np.array_equal(np.array(again.image), np.array(run.image))
    assert again.meta == run.meta and again.layers == run.layers
    np.testing.assert_array_equal(again.heatmap(1), run.heatmap(1))
    # saving again over the same folder replaces it atomically and leaves no temporary folders behind
    run.save(tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_load_rejects_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved ProbeRun"):
        ProbeRun.load(tmp_path)


def test_run_validates_shapes(run):
    with pytest.raises(Exception, match="must agree"):
        ProbeRun(run.text, run.token_ids[:3], run.tokens, run.token_offsets, run.attention, run.layout, run.layers)
    with pytest.raises(Exception, match="visual tokens"):
        ProbeRun(run.text, run.token_ids, run.tokens, run.token_offsets, run.attention[..., :8], run.layout,
                 run.layers)


def test_repr_is_informative(run):
    text = repr(run)
    assert "tokens=5" in text and "5x3x4x16" in text and "llava:16" in text


# ---------------------------------------------------------------------------------------------------- bad input
def test_missing_image_file(llava, tmp_path):
    probe = Probe(*llava)
    with pytest.raises(ImageLoadError, match="not found"):
        probe.generate(tmp_path / "nope.jpg", "describe")


def test_corrupt_image_file(llava, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(ImageLoadError, match="broken.png"):
        Probe(*llava).generate(bad, "describe")


def test_truncated_jpeg(llava, tmp_path):
    good = tmp_path / "img.jpg"
    noise_image().save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageLoadError, match="cut.jpg"):
        Probe(*llava).generate(cut, "describe")


def test_prompt_without_image(llava):
    probe = Probe(*llava)
    with pytest.raises(ValueError, match="needs an image"):
        probe.generate(prompt="describe")
    inputs = llava[1].tokenizer("USER: describe ASSISTANT:", return_tensors="pt")
    with pytest.raises(ValueError, match="no pixel_values"):
        probe.generate(inputs=inputs, image=noise_image())


def test_bad_array_image(llava):
    with pytest.raises(ImageLoadError, match="shape"):
        Probe(*llava).generate(np.zeros((5, 7, 2)), "describe")


def test_batch_and_beams_rejected(llava):
    probe = Probe(*llava)
    inputs = probe.prepare(noise_image(), "describe")
    batch = {k: torch.cat([v, v]) for k, v in inputs.items()}
    with pytest.raises(ValueError, match="one sample at a time"):
        probe.generate(inputs=batch, image=noise_image())
    with pytest.raises(ValueError, match="beam search"):
        probe.generate(noise_image(), "describe", num_beams=2)


def test_from_pretrained_local_folder_round_trip(llava, tmp_path):
    model, processor = llava
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    loaded = Probe.from_pretrained(tmp_path / "m", dtype="float32")
    img = noise_image()
    a = Probe(model, processor).generate(img, "describe", max_new_tokens=4)
    b = loaded.generate(img, "describe", max_new_tokens=4)
    assert a.token_ids.tolist() == b.token_ids.tolist()
    assert torch.equal(a.attention, b.attention)
    assert b.meta["model"] == str(tmp_path / "m")


@pytest.fixture(scope="module")
def onevision_folder(tmp_path_factory):
    """A LLaVA-OneVision folder as transformers saves it: processor_config.json names its video processor
    (``LlavaOnevisionVideoProcessor``, which needs torchvision)."""
    import json

    from emergence.testing import tiny_llava_onevision

    model, processor = tiny_llava_onevision()
    folder = tmp_path_factory.mktemp("onevision")
    model.save_pretrained(folder)
    # what processor.save_pretrained writes (it cannot run without the torchvision video processor): the tokenizer's
    # files, the chat template, and processor_config.json with the image and video processors nested
    processor.tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").write_text(processor.chat_template)
    stand_in, processor.video_processor = processor.video_processor, None
    doc = processor.to_dict()
    processor.video_processor = stand_in
    doc.pop("chat_template", None)
    doc["video_processor"] = {"video_processor_type": "LlavaOnevisionVideoProcessor", "do_resize": True,
                              "size": {"height": 32, "width": 32}, "resample": 3, "do_rescale": True,
                              "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
                              "image_mean": [0.48145466, 0.4578275, 0.40821073],
                              "image_std": [0.26862954, 0.26130258, 0.27577711], "do_sample_frames": False}
    (folder / "processor_config.json").write_text(json.dumps(doc))
    return folder, model, processor


def test_a_folder_whose_video_processor_needs_torchvision_still_probes_images(onevision_folder):
    """Without torchvision, AutoProcessor cannot load such a folder at all (ImportError, even for images): the
    probe loads the same processor class without its video processor; images give the run the in-memory processor
    gives; a video is refused naming torchvision. With torchvision the real video processor loads."""
    import importlib.util

    from emergence.errors import MissingDependencyError

    folder, model, processor = onevision_folder
    if importlib.util.find_spec("torchvision") is None:
        with pytest.warns(UserWarning, match="WITHOUT its video processor"):  # said, not silent
            loaded = Probe.from_pretrained(folder, dtype="float32")
    else:
        loaded = Probe.from_pretrained(folder, dtype="float32")
    img = noise_image(90, 60)
    a = Probe(model, processor).generate(img, "describe", max_new_tokens=3)
    b = loaded.generate(img, "describe", max_new_tokens=3)
    assert a.token_ids.tolist() == b.token_ids.tolist() and torch.equal(a.attention, b.attention)
    frames = [noise_image(40, 30, seed=k) for k in range(2)]
    if importlib.util.find_spec("torchvision") is None:
        assert type(loaded.processor).__name__ == "LlavaOnevisionProcessor" and loaded.processor.video_processor is None
        with pytest.raises(MissingDependencyError, match=r"no video processor.*need torchvision.*emergence\[vision\]"):
            loaded.generate(video=frames, prompt="describe", max_new_tokens=1)
    else:
        assert type(loaded.processor.video_processor).__name__ == "LlavaOnevisionVideoProcessor"
        assert loaded.generate(video=frames, prompt="describe", max_new_tokens=1).layout.num_tokens > 0


def test_from_pretrained_text_only_folder(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(tmp_path / "llama")
    with pytest.raises(UnsupportedModelError, match="not an image-text-to-text model"):
        Probe.from_pretrained(tmp_path / "llama")


def test_from_pretrained_missing_folder_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="local folder"):
        Probe.from_pretrained(tmp_path / "does-not-exist")


def test_missing_optional_dependency_names_the_extra():
    from emergence.errors import MissingDependencyError, require

    with pytest.raises(MissingDependencyError, match=r"pip install 'emergence\[nlp\]'"):
        require("surely_not_installed_module_xyz", "nlp", "Noun-phrase grouping")
    assert require("json", "dev", "JSON").dumps([1]) == "[1]"


def test_a_capture_session_around_your_own_generate_equals_probe_generate(image):
    from emergence.errors import CaptureError

    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    reference = probe.generate(image, "describe the image", max_new_tokens=4, min_new_tokens=4,
                               storage_dtype=torch.float32)
    session = probe.capture(image, prompt="describe the image", storage_dtype=torch.float32)
    with session:
        out = model.generate(**session.inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        with pytest.raises(CaptureError, match="leave the `with session:` block"):
            session.run(out)
    run = session.run(out)
    assert run.token_ids.tolist() == reference.token_ids.tolist() and run.prompt == "describe the image"
    assert torch.equal(run.attention, reference.attention)
    with pytest.raises(CaptureError, match="do not start with the session's prompt ids"):
        session.run(out[:, 1:])
    twice = probe.capture(image, prompt="describe the image")
    with twice:
        model.generate(**twice.inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
        model.generate(**twice.inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    with pytest.raises(CaptureError, match="generate exactly once"):
        twice.run(out)


def test_a_capture_session_refuses_generations_it_cannot_vouch_for(image):
    """Beam search (a batch of beams), another image's pixels, and ids from another generation of the same length
    are refused by the session; a generate output object is accepted, float ids are refused by name."""
    from emergence.errors import CaptureError

    model, processor = FAMILIES["llava"]()
    probe = Probe(model, processor)
    kw = dict(max_new_tokens=4, min_new_tokens=4)
    beams = probe.capture(image, prompt="describe the image")
    with beams:
        out = model.generate(**beams.inputs, num_beams=3, do_sample=False, **kw)
    with pytest.raises(CaptureError, match="batches of .*num_beams=1"):
        beams.run(out)
    other = noise_image(seed=7)
    session = probe.capture(image, prompt="describe the image")
    foreign = probe.prepare(other, "describe the image")
    with session:
        out = model.generate(**probe.adapter.model_inputs(foreign, model), do_sample=False, **kw)
    with pytest.raises(CaptureError, match="pixel values differ from the session.s"):
        session.run(out)
    # the same number of steps, but the ids of another generation (sampled with another seed)
    session = probe.capture(image, prompt="describe the image")
    with session:
        out = model.generate(**session.inputs, do_sample=False, return_dict_in_generate=True, **kw)
    assert session.run(out).token_ids.tolist() == out.sequences[0, -4:].tolist()  # an output object is accepted
    session = probe.capture(image, prompt="describe the image")
    with session:
        model.generate(**session.inputs, do_sample=False, **kw)
    torch.manual_seed(3)
    alien = model.generate(**session.inputs, do_sample=True, top_k=0, temperature=5.0, **kw)
    assert alien[0, -4:-1].tolist() != out.sequences[0, -4:-1].tolist()
    with pytest.raises(CaptureError, match="not the ones generated inside the session"):
        session.run(alien)
    with pytest.raises(CaptureError, match="must be token ids"):
        session.run(out.sequences.float())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_capture_session_accepts_its_own_generation_in_every_family(family, image):
    """The session's checks (batch, pixels at the vision tower, fed ids) refuse nothing that is the session's own:
    a plain generate with ``session.inputs`` gives the same run as ``probe.generate`` in every family."""
    model, processor = FAMILIES[family]()
    probe = Probe(model, processor)
    reference = probe.generate(image, "describe the image", max_new_tokens=3, min_new_tokens=3)
    session = probe.capture(image, prompt="describe the image")
    with session:
        out = probe.adapter.generate(model, session.inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    run = session.run(out)
    assert run.token_ids.tolist() == reference.token_ids.tolist()
    assert torch.equal(run.attention, reference.attention)
