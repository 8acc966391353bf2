"""Sweeps on the organism: outputs, report, kill -9 and resume (a real subprocess), Ray backend = local backend,
VQA scoring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from emergence.sweep import SweepConfig, load_sweep, make_report, pair_accuracy, paired_analysis, parse_option, run_sweep
from emergence.sweep.store import SweepStore

N = 20


def _config(out: Path, **kw) -> SweepConfig:
    return SweepConfig(out=str(out), dataset="shapes", dataset_kwargs={"n": N, "seed": 23}, chunk_size=4,
                       store="mean", **kw)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    run_sweep(_config(out), progress=False)
    return out


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    samples, units, _ = load_sweep(out)
    return samples, units, SweepStore(out).tensors()


def _assert_same(a: Path, b: Path) -> None:
    sa, ua, ta = _tables(a)
    sb, ub, tb = _tables(b)
    pd.testing.assert_frame_equal(sa, sb)
    pd.testing.assert_frame_equal(ua, ub)
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_local_sweep_writes_rows_maps_manifest_and_report(local_sweep):
    samples, units, manifest = load_sweep(local_sweep)
    assert len(samples) == N and samples["key"].is_unique and (samples["error"].isna()).all()
    assert set(units["key"]) <= set(samples["key"]) and len(units) > 10 * N
    for key, part in units.groupby("key"):
        row = samples.set_index("key").loc[key]
        assert row["oracle_iou"] == pytest.approx(part["iou"].max()) and row["units"] == len(part)
    assert manifest["options"]["dataset"] == "shapes" and manifest["versions"]["torch"] == torch.__version__
    maps = SweepStore(local_sweep).tensors()
    assert len([k for k in maps if k.endswith("/maps")]) == N
    report = make_report(local_sweep)
    text = report.read_text()
    assert "oracle mIoU" in text and "Where grounding emerges" in text
    for fig in ("emergence_position.png", "categories.png", "head_grid.png", "templates.png"):
        assert (report.parent / fig).stat().st_size > 3000


def test_killed_sweep_resumes_to_the_uninterrupted_result(local_sweep, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "emergence.cli", "sweep", "--dataset", "shapes", "--n", str(N), "--shapes-seed",
           "23", "--chunk-size", "4", "--store", "mean", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            progress = out / "progress.json"
            if progress.exists() and len(json.loads(progress.read_text())["chunks"]) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("the sweep finished before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("the sweep committed no chunk in time")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    committed = SweepStore(out).committed()
    assert 2 <= len(committed) < 5, committed  # killed mid-run
    run_sweep(_config(out), progress=False)  # resume
    _assert_same(out, local_sweep)


def test_resume_refuses_other_options(local_sweep):
    with pytest.raises(ValueError, match=r"other options \(\['tau'\]\)"):
        run_sweep(replace(_config(local_sweep), tau=0.7), progress=False)


def test_ray_backend_writes_the_same_rows_as_local(local_sweep, tmp_path):
    pytest.importorskip("ray", reason="the Ray backend needs emergence[distributed]")
    out = tmp_path / "ray"
    run_sweep(_config(out), backend="ray", workers=2, progress=False)
    _assert_same(out, local_sweep)


def test_vqa_option_parsing_and_mmvp_pair_accuracy():
    opts = ("Open", "Closed")
    assert parse_option("(b) Closed", opts) == "b"
    assert parse_option("B. closed", opts) == "b"
    assert parse_option("The wings are open.", opts) == "a"
    assert parse_option("Option a", opts) == "a"
    assert parse_option("I cannot tell", opts) is None
    assert parse_option("I cannot tell", opts, judge=lambda a, o: "b") == "b"
    assert parse_option("a red one", ("red", "dark red")) == "a"
    assert parse_option("it is dark red", ("red", "dark red")) == "b"
    from emergence.sweep.vqa import answer_letter

    assert answer_letter("(b)", opts) == "b" and answer_letter("Closed", opts) == "b" and answer_letter("x", opts) is None
    rows = [{"pair": 1, "vqa_correct": True, "oracle_iou": 0.8}, {"pair": 1, "vqa_correct": True, "oracle_iou": 0.7},
            {"pair": 2, "vqa_correct": True, "oracle_iou": 0.2}, {"pair": 2, "vqa_correct": False, "oracle_iou": 0.9},
            {"pair": 3, "vqa_correct": False, "oracle_iou": 0.1}, {"pair": 3, "vqa_correct": True, "oracle_iou": 0.9},
            {"pair": 4, "vqa_correct": True, "oracle_iou": 0.1}, {"pair": 4, "vqa_correct": True, "oracle_iou": 0.6}]
    acc = pair_accuracy(rows)
    assert acc["question"] == pytest.approx(6 / 8) and acc["pair"] == pytest.approx(2 / 4)
    assert paired_analysis(rows) == {"both_succeed": 1, "grounding_only_failure": 1, "vqa_only_failure": 0,
                                     "both_fail": 2}
    # PixFoundation's rule (eval_accandiou.py): the automatic mask, IoU > 0.5 strictly; an empty annotation counts
    # when the automatic mask covers under half the image; an MLLM judge's pick before the score-based one
    nan = float("nan")
    pix = [{"pair": 1, "vqa_correct": True, "oracle_iou": 0.9, "auto_score_iou": 0.5, "auto_mllm_iou": nan},
           {"pair": 1, "vqa_correct": True, "oracle_iou": 0.9, "auto_score_iou": 0.9, "auto_mllm_iou": nan},
           {"pair": 2, "vqa_correct": True, "oracle_iou": 0.1, "auto_score_iou": 0.1, "auto_mllm_iou": 0.7},
           {"pair": 2, "vqa_correct": True, "oracle_iou": 1.0, "absent": True, "auto_area": 0.3,
            "auto_score_iou": 1.0, "auto_mllm_iou": nan},
           {"pair": 3, "vqa_correct": False, "oracle_iou": 1.0, "absent": True, "auto_area": 0.6,
            "auto_score_iou": 1.0, "auto_mllm_iou": nan},
           {"pair": 3, "vqa_correct": True, "oracle_iou": 0.9, "auto_score_iou": 0.9, "auto_mllm_iou": nan}]
    assert paired_analysis(pix, 0.5) == {"both_succeed": 1, "grounding_only_failure": 1, "vqa_only_failure": 1,
                                         "both_fail": 0}
    assert paired_analysis(pix, 0.5, "pixfoundation") == {"both_succeed": 1, "grounding_only_failure": 1,
                                                          "vqa_only_failure": 0, "both_fail": 1}


def test_vqa_sweep_and_report_on_a_vqa_only_run(tmp_path):
    out = tmp_path / "vqa"
    store = run_sweep(SweepConfig(out=str(out), dataset="shapes", dataset_kwargs={"n": 3, "seed": 5},
                                  tasks=("vqa",), store="none"), progress=False)
    samples = store.table("samples")
    assert len(samples) == 3 and set(samples["task"]) == {"vqa"}
    assert samples["vqa_correct"].notna().all() and samples["prompt"].str.contains(r"\(a\)").all()
    assert "question accuracy" in make_report(out).read_text()


DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pixfoundation"


@pytest.mark.skipif(not DATA.exists(), reason=f"PixFoundation annotations not found at {DATA}")
def test_pixmmvp_sweep_through_the_cli_with_stand_in_images(tmp_path):
    from PIL import Image

    from emergence.cli import main

    images = tmp_path / "images"
    images.mkdir()
    for i in (1, 2, 3):
        Image.new("RGB", (224, 224), (40 * i, 90, 160)).save(images / f"{i}.jpg")
    out = tmp_path / "out"
    rc = main(["sweep", "--dataset", "pixmmvp", "--root", str(DATA / "pixmmvp"), "--images", str(images),
               "--n", "3", "--tasks", "grounding,vqa", "--templates", "pf-ground-4", "--templates-dir",
               str(DATA / "pixmmvp"), "--vqa-templates", "pf-vqa-7", "--out", str(out), "--store", "none"])
    assert rc == 0
    samples, units, manifest = load_sweep(out)
    assert len(samples) == 6 and samples["error"].isna().all()
    ground = samples[samples["task"] == "grounding"]
    assert ground["prompt"].iloc[0] == "Identify the butterfly's wings in the scene, with grounding."
    assert manifest["options"]["templates"] == ["pf-ground-4"]
    assert main(["report", str(out)]) == 0


def test_a_local_sweep_loads_its_dataset_and_resolves_its_templates_once(tmp_path, monkeypatch):
    """The plan (dataset, templates, items, fingerprint) is built once and handed to the local worker; the real
    loaders run, wrapped only to count the calls."""
    import emergence.sweep.runner as runner

    calls = {"dataset": 0, "templates": 0}
    real_dataset, real_templates = runner.load_dataset_of, runner.templates_of

    def counted_dataset(config):
        calls["dataset"] += 1
        return real_dataset(config)

    def counted_templates(config):
        calls["templates"] += 1
        return real_templates(config)

    monkeypatch.setattr(runner, "load_dataset_of", counted_dataset)
    monkeypatch.setattr(runner, "templates_of", counted_templates)
    config = SweepConfig(out=str(tmp_path / "s"), dataset="shapes", dataset_kwargs={"n": 2, "seed": 5},
                         templates=("describe", "where"), store="none", max_new_tokens=8)
    store = run_sweep(config, progress=False)
    assert calls == {"dataset": 1, "templates": 1}
    assert len(store.table("samples")) == 4  # 2 scenes x 2 templates: the plan's items all ran
    plan = runner.plan_sweep(config)
    assert store.manifest()["dataset_fingerprint"] == plan.fingerprint  # the same plan gives the same fingerprint
