"""Sweeps stay exact and honest: the same bits under any thread count, fresh or resumed; one writer per folder;
damaged or edited inputs and outputs are detected; bad samples become error rows; nothing of the user's is deleted."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from emergence.files import OutputDirError
from emergence.sweep import SweepConfig, load_sweep, make_report, run_sweep
from emergence.sweep.store import SweepError, SweepStore

N = 8


def _config(out: Path, **kw) -> SweepConfig:
    return SweepConfig(out=str(out), dataset="shapes", dataset_kwargs={"n": N, "seed": 41}, chunk_size=2,
                       store="mean", max_new_tokens=24, **kw)


def _same(a: Path, b: Path) -> None:
    sa, ua, _ = load_sweep(a)
    sb, ub, _ = load_sweep(b)
    pd.testing.assert_frame_equal(sa, sb)
    pd.testing.assert_frame_equal(ua, ub)
    ta, tb = SweepStore(a).tensors(), SweepStore(b).tensors()
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep run with 1 thread (recorded in its manifest)."""
    out = tmp_path_factory.mktemp("integrity") / "ref"
    run_sweep(_config(out, threads=1), progress=False)
    return out


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _half_done_copy(reference: Path, dest: Path, keep: int = 2) -> Path:
    shutil.copytree(reference, dest)
    with SweepStore(dest, writable=True) as store:
        store.uncommit([c for c in store.committed() if c >= keep])
    return dest


def test_manifest_records_threads_and_environment(reference):
    manifest = json.loads((reference / "manifest.json").read_text())
    env = manifest["environment"]
    assert env["threads"] == 1 and env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert len(manifest["dataset_fingerprint"]) == 64


def test_resume_under_another_thread_count_applies_the_recorded_one(reference, tmp_path, threads):
    """A half-done 1-thread sweep resumed by a process running 3 threads ends bit-identical to the uninterrupted
    run; the caller's thread count is restored afterwards."""
    out = _half_done_copy(reference, tmp_path / "resumed")
    torch.set_num_threads(3)
    run_sweep(_config(out), progress=False)
    assert torch.get_num_threads() == 3
    _same(out, reference)


def test_resume_with_an_explicit_other_thread_count_is_refused(reference, tmp_path):
    out = _half_done_copy(reference, tmp_path / "other")
    with pytest.raises(SweepError, match=r"threads=1 .* not 2"):
        run_sweep(_config(out, threads=2), progress=False)


def test_resume_in_another_environment_is_refused_unless_allowed(reference, tmp_path):
    out = _half_done_copy(reference, tmp_path / "env")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["environment"]["torch"] = "0.0.1-elsewhere"
    (out / "manifest.json").write_text(json.dumps(manifest))
    progress = json.loads((out / "progress.json").read_text())  # the committed chunks came from there too
    for record in progress["chunks"].values():
        record["env"] = "elsewhere"
    (out / "progress.json").write_text(json.dumps(progress))
    with pytest.raises(SweepError, match=r"another environment \(torch: 0.0.1-elsewhere -> "):
        run_sweep(_config(out), progress=False)
    run_sweep(_config(out), progress=False, allow_env_change=True)
    text = make_report(out).read_text()
    assert "2 different environments" in text


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(reference, tmp_path):
    out = _half_done_copy(reference, tmp_path / "locked")
    with SweepStore(out, writable=True):
        with pytest.raises(SweepError, match="another process is writing the sweep"):
            run_sweep(replace(_config(out), tau=0.9), progress=False)
    assert SweepStore(out).committed() == [0, 1]  # untouched


def test_concurrent_starts_into_one_empty_folder_never_mix_options(tmp_path):
    """Two sweeps with different options started at once into one empty folder: exactly one may write."""
    import threading

    out = tmp_path / "race"
    out.mkdir()
    errors: list[BaseException] = []

    def start(tau: float) -> None:
        try:
            run_sweep(SweepConfig(out=str(out), dataset="shapes", dataset_kwargs={"n": 2, "seed": 3}, tau=tau,
                                  store="none", max_new_tokens=8), progress=False)
        except SweepError as exc:
            errors.append(exc)

    workers = [threading.Thread(target=start, args=(tau,)) for tau in (0.5, 0.9)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    samples, _, manifest = load_sweep(out)
    assert len(errors) == 1 and len(samples) == 2
    assert set(samples["tau"]) == {manifest["options"]["tau"]}


def test_a_deleted_manifest_is_not_silently_replaced(reference, tmp_path):
    out = _half_done_copy(reference, tmp_path / "nomanifest")
    (out / "manifest.json").unlink()
    with pytest.raises(SweepError, match="committed chunks but no manifest.json"):
        run_sweep(replace(_config(out), tau=0.9), progress=False)


def test_a_truncated_chunk_is_named_by_readers_and_recomputed_on_resume(reference, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(reference, out)
    part = out / "samples" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:-40])
    with pytest.raises(SweepError, match=r"part-00001.parquet.*truncated or changed"):
        load_sweep(out)
    edited = out / "units" / "part-00002.parquet"
    frame = pd.read_parquet(edited)
    frame.loc[0, "iou"] = 0.123
    frame.to_parquet(edited, index=False)
    with pytest.warns(UserWarning, match=r"chunk 1 is damaged"):
        run_sweep(_config(out), progress=False)
    _same(out, reference)


def test_annotations_edited_between_kill_and_resume_are_refused(tmp_path):
    images = tmp_path / "data"
    images.mkdir()
    rows = []
    for i in range(4):
        img = np.zeros((64, 64, 3), np.uint8)
        img[8 + 8 * i: 32 + 8 * i, 10:40] = (200, 40, 40)
        Image.fromarray(img).save(images / f"{i}.png")
        mask = np.zeros((64, 64), np.uint8)
        mask[8 + 8 * i: 32 + 8 * i, 10:40] = 1
        Image.fromarray(mask).save(images / f"{i}_mask.png")
        rows.append({"id": f"s{i}", "image": f"{i}.png", "mask": f"{i}_mask.png", "expression": "the red square"})
    ann = images / "set.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in rows))
    cfg = SweepConfig(out=str(tmp_path / "out"), dataset="jsonl", root=str(ann), store="none", max_new_tokens=8,
                      chunk_size=2)
    run_sweep(cfg, progress=False)
    with SweepStore(cfg.out, writable=True) as store:
        store.uncommit([1])
    rows[3]["expression"] = "the blue circle"
    ann.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(SweepError, match="the dataset changed since the sweep"):
        run_sweep(cfg, progress=False)


def test_bad_samples_become_error_rows_and_the_report_counts_them(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (48, 40), (30, 120, 200)).save(data / "ok.png")
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(data / "ok_mask.png")
    bomb = data / "bomb.png"
    Image.new("L", (12000, 12000)).save(bomb)  # 144 Mpx > PIL's decompression-bomb limit (2 x 89 Mpx is an error)
    rows = [{"id": "good", "image": "ok.png", "mask": "ok_mask.png", "expression": "the sky"},
            {"id": "no-mask", "image": "ok.png", "mask": "missing.png", "expression": "the sky"},
            {"id": "bomb", "image": "bomb.png", "mask": "ok_mask.png", "expression": "the sky"}]
    (data / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 12000 * 12000 // 4  # make the 144-Mpx file a bomb without a 180-Mpx fixture
    try:
        run_sweep(SweepConfig(out=str(tmp_path / "out"), dataset="jsonl", root=str(data / "set.jsonl"),
                              store="none", max_new_tokens=8), progress=False)
    finally:
        Image.MAX_IMAGE_PIXELS = old
    samples, _, _ = load_sweep(tmp_path / "out")
    by_id = samples.set_index("sample")
    assert pd.isna(by_id.loc["good", "error"])
    assert "sample 'no-mask'" in by_id.loc["no-mask", "error"] and "missing.png" in by_id.loc["no-mask", "error"]
    assert "sample 'bomb'" in by_id.loc["bomb", "error"] and "too large" in by_id.loc["bomb", "error"]
    text = make_report(tmp_path / "out").read_text()
    assert "2 of 3 items failed" in text and "`grounding/describe/bomb`" in text


def test_report_says_a_sweep_is_unfinished_and_omits_pair_accuracy_without_pairs(reference, tmp_path):
    out = _half_done_copy(reference, tmp_path / "unfinished", keep=1)
    text = make_report(out).read_text()
    assert "**UNFINISHED**: 2 of 8 work items are committed" in text
    assert "UNFINISHED" not in make_report(reference).read_text()
    from emergence.sweep import pair_accuracy

    acc = pair_accuracy([{"vqa_correct": True, "pair": None}, {"vqa_correct": False, "pair": float("nan")}])
    assert acc["pairs"] == 0 and np.isnan(acc["pair"]) and acc["question"] == 0.5


def test_sweep_refuses_a_folder_of_user_files_and_never_deletes_their_tmp_files(reference, tmp_path):
    user = tmp_path / "mine"
    (user / "deep").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes")
    (user / "deep" / "draft.tmp").write_text("keep me")
    with pytest.raises(OutputDirError, match="not empty"):
        run_sweep(_config(user), progress=False)
    assert (user / "notes.txt").read_text() == "my notes" and (user / "deep" / "draft.tmp").exists()
    # inside a sweep folder, only the toolkit's own temporary names are cleaned up
    out = _half_done_copy(reference, tmp_path / "sweep")
    (out / "maps" / "mine.tmp").write_text("keep me too")
    stale = out / "samples" / ".part-00002.parquet.1a2b3c4d.emergence-tmp"
    stale.write_bytes(b"half")
    run_sweep(_config(out), progress=False)
    assert (out / "maps" / "mine.tmp").read_text() == "keep me too" and not stale.exists()


def test_resuming_a_sweep_an_older_version_started_warns_that_bits_may_differ(reference, tmp_path):
    out = _half_done_copy(reference, tmp_path / "older")
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["environment"]  # format 1 recorded no thread count or environment
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="recorded no thread count or environment"):
        run_sweep(_config(out), progress=False)


def test_a_sweep_in_which_every_item_fails_exits_non_zero_and_says_so(tmp_path, capsys):
    from emergence.cli import main

    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (48, 40), (30, 120, 200)).save(data / "ok.png")
    rows = [{"id": f"s{i}", "image": "ok.png", "mask": "missing.png", "expression": "the sky"} for i in range(2)]
    (data / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    argv = ["sweep", "--dataset", "jsonl", "--root", str(data / "set.jsonl"), "--store", "none",
            "--max-new-tokens", "4"]
    assert main([*argv, "--out", str(tmp_path / "all_failed")]) == 1
    err = capsys.readouterr().err
    assert "every one of the 2 items failed, nothing succeeded" in err and "missing.png" in err
    # one good item is a success with its failures counted
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(data / "ok_mask.png")
    rows.append({"id": "good", "image": "ok.png", "mask": "ok_mask.png", "expression": "the sky"})
    (data / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert main([*argv, "--out", str(tmp_path / "some_failed")]) == 0
    assert "2 of them failed (error rows)" in capsys.readouterr().out


def test_absent_and_unannotated_samples_stay_out_of_every_grounding_statistic(tmp_path):
    """Two of four samples have no object (an empty ground truth): the analyzer would call any small mask a
    success on them. The report's emergence histogram, emerged share, mIoU and head grid cover the two scored samples
    only, and the left-out ones are counted apart."""
    from emergence.sweep.report import grounding_rows, miou_table, plot_emergence_positions, unscored_counts

    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (48, 40), (30, 120, 200)).save(data / "ok.png")
    mask = np.zeros((40, 48), np.uint8)
    mask[8:30, 10:40] = 255
    Image.fromarray(mask).save(data / "ok_mask.png")
    rows = [{"id": "a", "image": "ok.png", "mask": "ok_mask.png", "expression": "the sky"},
            {"id": "b", "image": "ok.png", "mask": "ok_mask.png", "expression": "the blue sky"},
            {"id": "gone1", "image": "ok.png", "expression": "the cat", "absent": True},
            {"id": "gone2", "image": "ok.png", "expression": "the dog", "absent": True}]
    (data / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    run_sweep(SweepConfig(out=str(out), dataset="jsonl", root=str(data / "set.jsonl"), max_new_tokens=8),
              progress=False)
    samples, _, _ = load_sweep(out)
    scored = grounding_rows(samples)
    assert sorted(scored["sample"]) == ["a", "b"]
    assert unscored_counts(samples) == {"absent": 2, "unannotated": 0}
    table = miou_table(samples)
    assert table["samples"].sum() == 2
    assert table["oracle mIoU"].iloc[0] == pytest.approx(scored["oracle_iou"].mean())
    _, ax = plot_emergence_positions(samples)
    assert ax.get_title().endswith(f"({int(scored['emerged'].sum())}/2 samples emerge)")
    text = make_report(out).read_text()
    assert "2 samples whose object is absent, 0 whose annotation is empty" in text


def test_a_sweep_records_its_protocol_and_a_report_never_relabels_it(reference, tmp_path):
    from emergence.errors import EmergenceError

    samples, _, manifest = load_sweep(reference)
    assert set(samples.loc[samples["task"] == "grounding", "protocol"]) == {"emergence"}
    assert "protocol" not in manifest["options"]  # the default: sweeps from before protocols still resume
    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    with pytest.raises(EmergenceError, match="made under protocol 'emergence', not 'pixfoundation'"):
        make_report(copy, protocol="pixfoundation")
    text = make_report(copy, protocol="emergence").read_text()
    assert "Protocol: **emergence**" in text and "Ties:" in text
    assert samples["best_ties"].dropna().min() >= 1
    # a resume under the other protocol is refused (the options differ), before any model loads
    with pytest.raises(EmergenceError, match="protocol|spaCy|spacy"):
        run_sweep(_config(copy, threads=1, protocol="pixfoundation"), progress=False)


def test_a_pixfoundation_sweep_without_a_noun_chunk_parser_is_refused_up_front(no_noun_chunk_parser, tmp_path):
    from emergence.errors import EmergenceError

    with pytest.raises(EmergenceError, match="spaCy|spacy"):
        run_sweep(_config(tmp_path / "pix", protocol="pixfoundation"), progress=False)
    assert not (tmp_path / "pix").exists()  # refused before the folder was made


def test_the_paired_analysis_judges_a_pair_on_both_images_when_one_object_is_absent(tmp_path):
    """An absent object's grounding row is left out of the grounding statistics, but not out of its pair: the pair
    counts only when both images' grounding succeed (was: the absent image was dropped and the pair judged on the
    other image alone)."""
    from emergence.sweep.report import grounding_rows

    data = tmp_path / "data"
    data.mkdir()
    picture = np.full((40, 48, 3), 255, np.uint8)
    picture[8:30, 10:40] = (30, 120, 200)  # a blue block on white: its mask is found wherever the map peaks in it
    Image.fromarray(picture).save(data / "block.png")
    Image.new("RGB", (48, 40), (30, 120, 200)).save(data / "plain.png")  # every mask covers the whole image
    mask = np.zeros((40, 48), np.uint8)
    mask[8:30, 10:40] = 255
    Image.fromarray(mask).save(data / "block_mask.png")
    q = {"question": "is it blue?", "options": ["yes", "no"], "answer": "yes"}
    rows = [{"id": "a", "image": "block.png", "mask": "block_mask.png", "expression": "the block", "pair": 1, **q},
            {"id": "gone", "image": "plain.png", "expression": "the cat", "absent": True, "pair": 1, **q}]
    (data / "set.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "out"
    run_sweep(SweepConfig(out=str(out), dataset="jsonl", root=str(data / "set.jsonl"), max_new_tokens=8,
                          tasks=("grounding", "vqa")), progress=False)
    samples, _, _ = load_sweep(out)
    every = grounding_rows(samples, scored=False).set_index("sample")
    text = make_report(out).read_text()
    line = next(t for t in text.splitlines() if t.startswith("| ") and "both_succeed" not in t and "---" not in t
                and text.index(t) > text.index("Paired analysis"))
    counts = [int(x) for x in line.strip("| ").split(" | ")]
    assert sum(counts) == 1  # one pair, judged once
    assert every.loc["gone", "oracle_iou"] == 0.0  # the absent object's masks all cover over half the image
    assert every.loc["a", "oracle_iou"] >= 0.5  # judged on "a" alone, the pair would count as grounded
    grounded = every.loc["a", "oracle_iou"] >= 0.5 and every.loc["gone", "oracle_iou"] >= 0.5
    vqa = samples[samples["task"] == "vqa"]["vqa_correct"].all()
    expected = ("both_succeed" if grounded and vqa else "grounding_only_failure" if vqa
                else "vqa_only_failure" if grounded else "both_fail")
    header = text.splitlines()[text.splitlines().index(line) - 2]
    assert [h.strip() for h in header.strip("| ").split("|")][counts.index(1)] == expected
