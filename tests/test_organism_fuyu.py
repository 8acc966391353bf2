"""Organism B, the single-transformer design (a tiny FuyuForCausalLM): its tokenizer and processor as Fuyu's own
behave, the PIL image processor fix, training mechanics, and the shipped model's captions, capture and layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import N_NEW, assert_capture_equals_eager, lm_input_embeddings
from PIL import Image

from emergence import Probe
from emergence.adapters.single_transformer import tensor_patchify
from emergence.organism import FUYU_DIR, ShapesWorld
from emergence.organism.fuyu import build_fuyu_model, build_fuyu_processor
from emergence.organism.model import PROMPT, VOCABULARY

HAVE_WEIGHTS = (FUYU_DIR / "config.json").exists()
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason=f"no shipped Fuyu organism weights in {FUYU_DIR}")


# ---------------------------------------------------------------------------------------------------- tokenizer
def test_tokenizer_has_fuyus_prefix_piece_before_text_and_before_image_tokens():
    """FuyuProcessor strips the first piece of the image placeholders' encoding (SentencePiece's dummy prefix): a
    tokenizer without it would lose the first patch token."""
    tok = build_fuyu_processor().tokenizer
    caption = ShapesWorld(0).scene(1).caption
    enc = tok(caption, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(enc[:1]) == ["\u2581"] and tok.unk_token_id not in enc
    assert tok.decode(enc[1:]) == caption and len(enc) == len(caption.split()) + 1
    marks = tok("|SPEAKER||SPEAKER||NEWLINE|<s>", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(marks) == ["\u2581", "|SPEAKER|", "|SPEAKER|", "|NEWLINE|", "<s>"]
    assert set(VOCABULARY) <= set(tok.get_vocab())


def test_processor_lays_out_8_rows_of_8_patch_tokens_each_ended_by_a_newline():
    processor = build_fuyu_processor()
    scene = ShapesWorld(3).scene(0)
    with tensor_patchify(processor.image_processor):
        enc = processor(images=scene.image, text=PROMPT + "\n", return_tensors="pt")
    tokens = processor.tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    image_part = tokens[:72]
    assert image_part == (["|SPEAKER|"] * 8 + ["|NEWLINE|"]) * 8
    assert tokens[72:] == ["<s>", "\u2581", *PROMPT.split(), "<0x04>"]
    assert enc["image_patches"].shape == (64, 192)


def test_tensor_patchify_fixes_the_pil_backend_only_while_active():
    from transformers.models.fuyu.image_processing_pil_fuyu import FuyuImageProcessorPil

    processor = build_fuyu_processor()
    ip = processor.image_processor
    assert isinstance(ip, FuyuImageProcessorPil)
    image = ShapesWorld(3).scene(0).image
    try:
        processor(images=image, text="x\n", return_tensors="pt")
        defect = False
    except (TypeError, AttributeError):
        defect = True
    with tensor_patchify(ip):
        enc = processor(images=image, text="x\n", return_tensors="pt")
    assert "patchify_image" not in vars(ip)  # nothing stays on the instance
    # the patches are the image's own 8 x 8 cells, in raster order, channels last within a patch
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = (arr - 0.5) / 0.5
    expected = arr.reshape(8, 8, 8, 8, 3).transpose(0, 2, 1, 3, 4).reshape(64, 192)
    np.testing.assert_allclose(enc["image_patches"].numpy(), expected, atol=1e-6)
    if not defect:
        pytest.skip("the installed transformers' PIL FuyuImageProcessor patchifies tensors itself (fixed upstream)")


def test_saved_folder_loads_with_auto_classes_and_processes_identically(tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = build_fuyu_processor()
    model = build_fuyu_model(processor, seed=3)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again = AutoProcessor.from_pretrained(tmp_path)
    image = ShapesWorld(3).scene(1).image
    with tensor_patchify(processor.image_processor), tensor_patchify(again.image_processor):
        a = processor(images=image, text=PROMPT + "\n", return_tensors="pt")
        b = again(images=image, text=PROMPT + "\n", return_tensors="pt")
    assert torch.equal(a["input_ids"], b["input_ids"])
    if type(again.image_processor) is type(processor.image_processor):  # without torchvision: the same PIL class
        assert torch.equal(a["image_patches"], b["image_patches"])
    else:  # torchvision's FuyuImageProcessor rounds its normalisation differently (measured 5.2e-8)
        torch.testing.assert_close(a["image_patches"], b["image_patches"], rtol=0, atol=1e-6)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "FuyuForCausalLM"
    n = sum(p.numel() for p in loaded.parameters())
    assert n == sum(p.numel() for p in model.parameters())
    assert 1.58e6 / 1.5 <= n <= 1.58e6 * 1.5  # within 1.5x of the LLaVA organism's parameter count


# ---------------------------------------------------------------------------------------------------- training
def test_short_fuyu_training_lowers_the_loss_and_the_probe_reads_the_result(tmp_path):
    from emergence.organism.train import train

    records = train(tmp_path / "org", design="fuyu", steps=30, batch_size=8, lr=3e-3, log_every=5,
                    save_every=1000, threads=1, quiet=True)
    assert records[-1]["loss"] < 0.6 * records[0]["loss"], records
    args = json.loads((tmp_path / "org" / "training_args.json").read_text())
    assert args["design"] == "fuyu" and args["layers"] == 4 and args["threads"] == 1
    probe = Probe.from_pretrained(tmp_path / "org", dtype="float32")
    run = probe.generate(ShapesWorld(9).scene(0).image, PROMPT, max_new_tokens=4, min_new_tokens=4)
    assert run.layout.num_tokens == 64 and run.attention.shape[1:] == (4, 6, 64)
    assert run.layout.meta["grid"] == [8, 8]


def test_training_labels_only_the_caption_and_its_end():
    from emergence.organism.train import _prompt, make_batch

    processor = build_fuyu_processor()
    scenes = [ShapesWorld(5).scene(i) for i in range(3)]
    batch = make_batch(processor, scenes, _prompt(processor, "fuyu"), "fuyu")
    tok = processor.tokenizer
    for row, scene in enumerate(scenes):
        labelled = batch["labels"][row][batch["labels"][row] != -100].tolist()
        assert tok.decode(labelled[:-1]) == scene.caption and labelled[-1] == tok.eos_token_id
        ids = batch["input_ids"][row][batch["attention_mask"][row] == 1].tolist()
        boa = ids.index(tok.convert_tokens_to_ids("<0x04>"))
        assert ids[boa + 1:] == labelled  # the caption follows the beginning-of-answer mark, nothing in between


@needs_weights
def test_retraining_reproduces_the_first_steps_of_the_shipped_fuyu_log(tmp_path):
    from emergence.organism.train import train

    args = json.loads((FUYU_DIR / "training_args.json").read_text())
    shipped = [json.loads(line) for line in (FUYU_DIR / "train_log.jsonl").read_text().splitlines()]
    records = train(tmp_path / "again", design="fuyu", steps=args["steps"], batch_size=args["batch_size"],
                    lr=args["lr"], seed=args["seed"], layers=args["layers"], threads=args.get("threads"),
                    quiet=True, stop_at=20)
    np.testing.assert_allclose([r["loss"] for r in records], [r["loss"] for r in shipped[:2]], rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- shipped model
@pytest.fixture(scope="module")
def fuyu_probe():
    return Probe.from_pretrained(FUYU_DIR, dtype="float32")


@needs_weights
def test_shipped_fuyu_organism_is_a_normal_hf_folder_and_a_builtin(fuyu_probe):
    from emergence import load_probe, load_spec

    assert type(fuyu_probe.model).__name__ == "FuyuForCausalLM"
    assert fuyu_probe.adapter.family == "Fuyu"
    probe = load_probe(load_spec("organism-fuyu"))
    assert probe.name == "builtin:organism-fuyu" and type(probe.model).__name__ == "FuyuForCausalLM"


@needs_weights
def test_shipped_fuyu_organism_captions_and_points_on_unseen_scenes(fuyu_probe):
    """60 scenes of a seed never used in training. The shipped seed (training seed 1, the median by the seed rule) on
    them: exact 0.917; pointing appearance 0.86, entity 0.68, part 0.79, location 0.36 (3.6x random), state 0.37. The
    bounds guard that behaviour a few points under it. Issue 30's bars (exact >= 0.90, >= 5x random for colour,
    shape, part and location words) are met by colour, shape and part words, NOT by location words (3.2-4.8x over
    the three seeds, README): a quarter of them are decided by the caption so far, and where an empty slot decides
    one, the organism reads that slot and its map peaks there (docs/organism.md, "What decides a location word")."""
    from emergence.studies.evaluate import evaluate

    result = evaluate(fuyu_probe, seed=31337, n=60, per_head=False)
    assert result.exact_caption >= 0.85, result.examples
    cats = result.categories
    assert all(cats[c]["ratio"] >= 5 for c in ("appearance", "entity", "part")), cats
    assert cats["appearance"]["accuracy"] >= 0.80 and cats["entity"]["accuracy"] >= 0.60, cats
    assert cats["part"]["accuracy"] >= 0.70 and cats["location"]["ratio"] >= 2.5, cats


@needs_weights
@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_shipped_fuyu_capture_equals_eager_and_ids_equal_plain_generate(backend):
    from emergence.organism import load_organism

    model, processor = load_organism(design="fuyu")
    model.set_attn_implementation(backend)
    probe = Probe(model, processor)
    scene = ShapesWorld(77).scene(4)
    inputs = probe.prepare(scene.image, PROMPT)
    run = probe.generate(scene.image, PROMPT, max_new_tokens=N_NEW, min_new_tokens=N_NEW,
                         storage_dtype=torch.float32)
    assert_capture_equals_eager(model, inputs, run)


@needs_weights
def test_shipped_fuyu_layout_places_each_patch_on_its_own_cell(fuyu_probe):
    """Fuyu's patch embedding is one linear layer, so a marker on one 8 x 8 cell changes exactly one input embedding
    of the decoder: the token the layout places on that cell, with that cell as its box, and a one-hot map on it
    renders inside the cell. Checked for all 64 cells."""
    base = ShapesWorld(5).scene(2).image
    layout = fuyu_probe.layout(fuyu_probe.prepare(base, PROMPT), (64, 64))
    boxes = layout.token_boxes()
    ref = lm_input_embeddings(fuyu_probe.model, fuyu_probe.prepare(base, PROMPT))
    for r in range(8):
        for c in range(8):
            arr = np.array(base)
            arr[8 * r:8 * r + 8, 8 * c:8 * c + 8] = 255 - arr[8 * r:8 * r + 8, 8 * c:8 * c + 8]
            marked = lm_input_embeddings(fuyu_probe.model, fuyu_probe.prepare(Image.fromarray(arr), PROMPT))
            changed = np.nonzero((marked - ref).abs().sum(-1).numpy() > 1e-6)[0]
            assert len(changed) == 1, (r, c, changed)
            token = int(np.nonzero(layout.positions == changed[0])[0][0])
            np.testing.assert_allclose(boxes[token], [8 * c, 8 * r, 8 * c + 8, 8 * r + 8])
            one_hot = np.zeros(layout.num_tokens)
            one_hot[token] = 1.0
            py, px = np.unravel_index(np.argmax(layout.render(one_hot)), (64, 64))
            assert 8 * r <= py < 8 * r + 8 and 8 * c <= px < 8 * c + 8


@needs_weights
def test_organism_commands_take_the_fuyu_organism(tmp_path, capsys):
    from emergence.cli import main

    assert main(["organism", "eval", "--organism", "fuyu", "--seed", "5", "--n", "3", "--no-per-head",
                 "--out", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["n"] == 3 and result["categories"]
    assert main(["demo", "--organism", "fuyu", "--out", str(tmp_path / "demo")]) == 0
    assert "Fuyu" in (tmp_path / "demo" / "summary.txt").read_text()


@needs_weights
def test_fuyu_capture_is_the_same_when_the_processor_returns_pixel_values(fuyu_probe):
    """FuyuProcessor announces `pixel_values` in place of the legacy `image_patches`; with the new output the probe
    generates the same ids and captures the same attention and layout, and a training batch gives the same loss (so
    the announced switch changes nothing here)."""
    import inspect

    probe = Probe.from_pretrained(FUYU_DIR, dtype="float32")
    if "return_legacy_image_output" not in inspect.signature(type(probe.processor).__call__).parameters:
        pytest.skip("this transformers' FuyuProcessor has no return_legacy_image_output switch")
    legacy_call = type(probe.processor).__call__
    seen: list[list[str]] = []

    class NewOutput(type(probe.processor)):
        def __call__(self, *args, **kwargs):
            kwargs.setdefault("return_legacy_image_output", False)
            out = legacy_call(self, *args, **kwargs)
            seen.append(sorted(out))
            return out

    probe.processor.__class__ = NewOutput
    scene = ShapesWorld(3).scene(0)
    old = fuyu_probe.generate(scene.image, PROMPT, max_new_tokens=40, keep="heads")
    new = probe.generate(scene.image, PROMPT, max_new_tokens=40, keep="heads")
    assert seen and all("pixel_values" in keys and "image_patches" not in keys for keys in seen), seen
    assert torch.equal(old.token_ids, new.token_ids) and old.text == new.text
    assert torch.equal(old.attention, new.attention)
    np.testing.assert_array_equal(old.layout.token_boxes(), new.layout.token_boxes())
    # training batches too: the same loss from either output
    from emergence.organism.train import _prompt, make_batch

    scenes = [ShapesWorld(5).scene(i) for i in range(3)]
    legacy = build_fuyu_processor()
    batch_old = make_batch(legacy, scenes, _prompt(legacy, "fuyu"), "fuyu")
    legacy.__class__ = type("NewOutputProcessor", (NewOutput,), {})
    batch_new = make_batch(legacy, scenes, _prompt(legacy, "fuyu"), "fuyu")
    assert "image_patches" in batch_old and "pixel_values" in batch_new and "image_patches" not in batch_new
    with torch.no_grad():
        loss_old, loss_new = fuyu_probe.model(**batch_old).loss, fuyu_probe.model(**batch_new).loss
    assert torch.equal(loss_old, loss_new)
