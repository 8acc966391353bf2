"""The model organism: shapes world invariants, training mechanics, and the shipped model's learned behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emergence import Probe
from emergence.organism import CATEGORIES, COLOURS, PARTS, ShapesWorld
from emergence.organism.model import ORGANISM_DIR, PROMPT, VOCABULARY, build_processor

HAVE_WEIGHTS = (ORGANISM_DIR / "config.json").exists()
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason=f"no shipped organism weights in {ORGANISM_DIR}")


# ---------------------------------------------------------------------------------------------------- world
def test_scenes_are_deterministic_per_seed_and_index():
    a, b = ShapesWorld(3).scene(5), ShapesWorld(3).scene(5)
    assert a.caption == b.caption and np.array_equal(np.array(a.image), np.array(b.image))
    assert ShapesWorld(4).scene(5).caption != a.caption or not np.array_equal(
        np.array(ShapesWorld(4).scene(5).image), np.array(a.image))


def test_masks_are_consistent_with_the_image_and_each_other():
    world = ShapesWorld(11)
    for i in range(40):
        scene = world.scene(i)
        img = np.array(scene.image)
        union = np.zeros((64, 64), bool)
        for obj in scene.objects:
            assert obj.body.any() and not (obj.mask & union).any(), "objects overlap"
            union |= obj.mask
            # every body pixel has the object's colour; every part pixel the part's colour
            assert (img[obj.body] == COLOURS[obj.colour]).all()
            for name, m in obj.parts.items():
                assert name in PARTS and name == obj.part and m.any() and not (m & obj.body).any()
                assert (img[m] == COLOURS[obj.part_colour]).all()
        assert np.array_equal(scene.background_mask, ~union)


def test_word_referents_follow_the_caption_and_categories():
    world = ShapesWorld(2)
    seen = set()
    for i in range(60):
        scene = world.scene(i)
        words = scene.word_referents()
        assert " ".join(w for w, _, _ in words) == scene.caption
        for word, mask, category in words:
            assert (mask is None) == (category is None)
            if mask is not None:
                assert category in CATEGORIES and mask.shape == (64, 64) and mask.any()
                seen.add(category)
            assert word in VOCABULARY
        for obj in scene.objects:  # the entity noun covers body and part; the part noun only the part
            entity = [m for w, m, c in words if c == "entity" and w == obj.shape and m[obj.body].all()]
            assert entity and np.array_equal(entity[0], obj.mask)
    assert seen == set(CATEGORIES)


def test_referring_expressions_and_questions():
    scene = ShapesWorld(5).scene(3)
    refs = scene.referring_expressions()
    assert len(refs) >= len(scene.objects)
    for r in refs:
        assert r.mask.any() and r.category in ("entity", "part")
    for q in scene.questions():
        assert q.answer in q.options and len(set(q.options)) == 2 and q.mask.any()


def test_processor_tokenizes_every_caption_word_to_one_known_token():
    processor = build_processor()
    tok = processor.tokenizer
    caption = ShapesWorld(0).scene(1).caption
    ids = tok(caption)["input_ids"]
    assert tok.unk_token_id not in ids and len(ids) == len(caption.split())
    assert tok.decode(ids) == caption


# ---------------------------------------------------------------------------------------------------- training
def test_short_training_run_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    import torch

    from emergence.organism.train import train

    callers_threads = torch.get_num_threads()
    records = train(tmp_path / "org", steps=40, batch_size=8, lr=3e-3, log_every=5, save_every=1000, threads=1,
                    quiet=True)
    assert torch.get_num_threads() == callers_threads  # the run's thread count does not leak out
    first, last = records[0]["loss"], records[-1]["loss"]
    assert last < 0.6 * first, (first, last)
    args = json.loads((tmp_path / "org" / "training_args.json").read_text())
    assert args["threads"] == 1 and args["torch"] == torch.__version__ and args["steps"] == 40
    lines = (tmp_path / "org" / "train_log.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 40
    probe = Probe.from_pretrained(tmp_path / "org", dtype="float32")
    run = probe.generate(ShapesWorld(9).scene(0).image, PROMPT, max_new_tokens=6)
    assert run.layout.num_tokens == 64 and run.attention.shape[1:] == (3, 6, 64)


def test_training_resumes_from_a_checkpoint(tmp_path, monkeypatch):
    from emergence.organism import train as train_module

    kw = dict(steps=6, batch_size=4, log_every=1, save_every=3, quiet=True)
    full = train_module.train(tmp_path / "a", **kw)
    assert not (tmp_path / "a" / "checkpoint.pt").exists()  # a finished run removes its checkpoint
    original = train_module.make_batch
    calls = {"n": 0}

    def killed_during_step_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train_module, "make_batch", killed_during_step_five)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(tmp_path / "b", **kw)
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    monkeypatch.setattr(train_module, "make_batch", original)
    resumed = train_module.train(tmp_path / "b", resume=True, **kw)
    assert [r["step"] for r in resumed] == [r["step"] for r in full] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in resumed], [r["loss"] for r in full], rtol=1e-4)
    logged = [json.loads(line)["step"] for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5, 6]


@needs_weights
def test_retraining_reproduces_the_first_steps_of_the_shipped_training_log(tmp_path):
    """Same seed and hyperparameters: the first logged losses of the shipped run come out again, to float precision."""
    from emergence.organism.train import train

    args = json.loads((ORGANISM_DIR / "training_args.json").read_text())
    shipped = [json.loads(line) for line in (ORGANISM_DIR / "train_log.jsonl").read_text().splitlines()]
    records = train(tmp_path / "again", steps=args["steps"], batch_size=args["batch_size"], lr=args["lr"],
                    seed=args["seed"], layers=args.get("layers", 3), threads=args.get("threads"), quiet=True,
                    stop_at=20)
    assert [r["step"] for r in records] == [10, 20]
    np.testing.assert_allclose([r["loss"] for r in records], [r["loss"] for r in shipped[:2]], rtol=1e-5)


# ---------------------------------------------------------------------------------------------------- shipped model
@pytest.fixture(scope="module")
def organism_probe():
    return Probe.from_pretrained(ORGANISM_DIR, dtype="float32")


@needs_weights
def test_shipped_organism_is_a_normal_hf_folder(organism_probe):
    from transformers import PreTrainedTokenizerFast

    from emergence.organism import load_organism

    model, processor = load_organism()
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert isinstance(processor.tokenizer, PreTrainedTokenizerFast)  # transformers 5 names it TokenizersBackend
    assert processor.chat_template
    size = sum(p.stat().st_size for p in ORGANISM_DIR.glob("*.safetensors"))
    assert size <= 20 * 2**20
    assert "describe the image" in organism_probe.build_prompt(PROMPT)


@needs_weights
def test_shipped_organism_captions_and_grounds_unseen_scenes(organism_probe):
    """A 60-scene check on a seed never used in training (the full 500-scene figures: README / `organism eval`)."""
    from emergence.studies.evaluate import evaluate

    # shipped v7, training seed 1 (the median of three by the rule in docs/organism_notes.md), on these 60 scenes:
    # exact 0.967; pointing appearance 0.88, entity 0.65, part 0.75, state 0.79, location 0.59 (6-15x random). The
    # bounds guard that behaviour a few points under it, and the bar of 5x random for every category.
    result = evaluate(organism_probe, seed=31337, n=60, per_head=False)
    assert result.exact_caption >= 0.90, result.examples
    cats = result.categories
    assert all(cats[c]["ratio"] >= 5 for c in ("appearance", "entity", "part", "location")), cats
    assert cats["appearance"]["accuracy"] >= 0.82
    assert cats["entity"]["accuracy"] >= 0.58
    assert cats["part"]["accuracy"] >= 0.66
    assert cats["state"]["accuracy"] >= 0.70


@needs_weights
def test_eval_scores_the_maps_under_the_normalisation_asked_for(organism_probe, tmp_path):
    """``normalise`` reaches every scored map: the hits equal an independent recount with raw maps, ``minmax`` gives
    the same argmax as ``none``, the default is the mean subtraction, and the choice is recorded."""
    from emergence.analysis import MapOptions, token_maps
    from emergence.analysis.heads import head_maps, peak_hits
    from emergence.cli import main
    from emergence.studies.evaluate import evaluate
    from emergence.studies.scenes import word_pointing

    seed, n = 97, 6
    raw = evaluate(organism_probe, seed=seed, n=n, per_head=True, normalise="none")
    hits = {c: [] for c in CATEGORIES}
    heads = {c: [] for c in CATEGORIES}
    for i in range(n):
        scene = ShapesWorld(seed).scene(i)
        run = organism_probe.generate(scene.image, PROMPT, max_new_tokens=64, keep="heads")
        plain = run.attention.float().mean(dim=(1, 2))  # [T, V]: the layer/head mean, nothing subtracted
        per = run.attention.float().permute(1, 2, 0, 3)  # [L, H, T, V]
        for wp in word_pointing(run, scene, plain):
            hits[wp.category].append(wp.hit)
            grid = run.layout.render(per[:, :, wp.token].reshape(-1, per.shape[-1]))
            heads[wp.category].append(peak_hits(grid, wp.mask).reshape(per.shape[:2]))
        assert torch.equal(head_maps(run, "none"), per)
        assert torch.allclose(token_maps(run, MapOptions(normalise="none")), plain, atol=1e-7)
    for c, r in raw.categories.items():
        assert r["n"] == len(hits[c]) and r["accuracy"] == pytest.approx(np.mean(hits[c]), abs=1e-12), c
        np.testing.assert_allclose(raw.per_head[c], np.mean(heads[c], axis=0).round(4), atol=1e-12)
    minmax = evaluate(organism_probe, seed=seed, n=n, per_head=False, normalise="minmax")
    assert {c: r["accuracy"] for c, r in minmax.categories.items()} == {c: r["accuracy"] for c, r in
                                                                        raw.categories.items()}
    default = evaluate(organism_probe, seed=seed, n=n, per_head=False)
    centred = evaluate(organism_probe, seed=seed, n=n, per_head=False, normalise="mean_subtract")
    assert default.to_dict() | {"seconds": 0} == centred.to_dict() | {"seconds": 0}
    assert default.normalise == "mean_subtract"
    # the two normalisations disagree on some word here, so the option is not a no-op
    assert any(default.categories[c]["accuracy"] != raw.categories[c]["accuracy"] for c in raw.categories)
    with pytest.raises(ValueError, match="'centre'"):
        evaluate(organism_probe, seed=seed, n=1, normalise="centre")
    assert main(["organism", "eval", "--seed", str(seed), "--n", "2", "--no-per-head", "--normalise", "none",
                 "--out", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["normalise"] == "none"


@pytest.mark.slow
@needs_weights
def test_full_retraining_reproduces_the_shipped_eval(tmp_path, organism_probe):
    """~20 min on 2 CPU cores (v7): retrain from the seed and compare held-out figures with the shipped model."""
    from emergence.studies.evaluate import evaluate
    from emergence.organism.train import train

    args = json.loads((ORGANISM_DIR / "training_args.json").read_text())
    train(tmp_path / "again", steps=args["steps"], batch_size=args["batch_size"], lr=args["lr"], seed=args["seed"],
          layers=args.get("layers", 3), threads=args.get("threads"), quiet=True)
    fresh = evaluate(Probe.from_pretrained(tmp_path / "again", dtype="float32"), seed=4242, n=200, per_head=False)
    shipped = evaluate(organism_probe, seed=4242, n=200, per_head=False)
    assert abs(fresh.exact_caption - shipped.exact_caption) <= 0.03
    for c in ("appearance", "entity", "part"):
        assert abs(fresh.categories[c]["accuracy"] - shipped.categories[c]["accuracy"]) <= 0.03
