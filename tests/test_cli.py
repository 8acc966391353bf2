"""The `emergence` command: fast help, specs, `run` and `demo` end to end (offline, real files)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import noise_image

from emergence import ProbeRun
from emergence.cli import main
from emergence.specs import ProbeSpec, list_specs, load_spec


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys, contextlib, io\n"
        "from emergence.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'matplotlib', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_shipped_spec_is_valid_and_names_a_registered_family():
    from emergence.layouts import registered_layouts

    specs = list_specs()
    assert {"llava-1.5-7b", "llava-next-mistral-7b", "qwen2-vl-7b", "idefics3-8b", "tiny-random-llava"} <= set(specs)
    for spec in specs.values():
        assert spec.architecture in registered_layouts(), spec.name


def test_spec_errors(tmp_path):
    with pytest.raises(KeyError, match="Available"):
        load_spec("no-such-model")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nhf_id = "y"\ncolour = "red"\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_spec(bad)
    with pytest.raises(ValueError, match="dtype"):
        ProbeSpec(name="x", hf_id="y", dtype="int8")


def test_run_command_on_a_local_model_folder(tmp_path):
    from emergence.testing import tiny_llava

    model, processor = tiny_llava()
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    noise_image().save(tmp_path / "img.png")
    spec = tmp_path / "mine.toml"
    spec.write_text('name = "mine"\nhf_id = "nowhere/none"\nprompt_template = "please {prompt}"\nmax_new_tokens = 4\n'
                    'keep = "layers"\n')
    rc = main(["run", "--probe", str(spec), "--local-model", str(tmp_path / "model"), "--image",
               str(tmp_path / "img.png"), "--prompt", "describe the image", "--out", str(tmp_path / "out"), "--figure"])
    assert rc == 0
    run = ProbeRun.load(tmp_path / "out")
    assert run.prompt == "please describe the image" and run.keep == "layers" and len(run) == 4
    assert run.attention.shape == (4, 2, 16)
    assert (tmp_path / "out" / "figure.png").stat().st_size > 1000
    assert "answer:" in (tmp_path / "out" / "summary.txt").read_text()


def test_run_command_reports_bad_image_in_one_line(tmp_path, capsys):
    rc = main(["run", "--probe", "tiny-random-llava", "--image", str(tmp_path / "missing.jpg"), "--prompt", "x",
               "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "image file not found" in capsys.readouterr().err


def test_demo_offline_writes_figure_and_run(tmp_path, monkeypatch):
    from emergence.organism.model import ORGANISM_DIR

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["demo", "--out", str(tmp_path), "--max-new-tokens", "40"]) == 0
    assert (tmp_path / "figure.png").stat().st_size > 5000
    run = ProbeRun.load(tmp_path / "run")
    assert 0 < len(run) <= 40 and torch.isfinite(run.attention.float()).all()
    summary = (tmp_path / "summary.txt").read_text()
    if (ORGANISM_DIR / "config.json").exists():
        assert "model organism" in summary and "reference caption" in summary
        assert "EmergenceReport(" in summary and (tmp_path / "masks.png").stat().st_size > 5000
    else:
        assert "RANDOM-WEIGHT" in summary


def test_analyze_command_writes_report_table_and_summary(tmp_path, capsys):
    import json

    import numpy as np
    from PIL import Image

    from emergence.organism import ShapesWorld

    scene = ShapesWorld(77).scene(2)
    scene.image.save(tmp_path / "scene.png")
    target = scene.objects[-1]
    Image.fromarray((target.mask * 255).astype(np.uint8)).save(tmp_path / "gt.png")
    out = tmp_path / "out"
    rc = main(["analyze", "--image", str(tmp_path / "scene.png"), "--prompt", "describe the image",
               "--gt-mask", str(tmp_path / "gt.png"), "--segmenter", "classical", "--out", str(out)])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    import pandas as pd

    table = pd.read_csv(out / "table.csv")
    assert summary["oracle_iou"] == table["iou"].max() and summary["units"] == len(table)
    assert (out / "report.png").stat().st_size > 5000 and (out / "run" / "run.json").exists()
    assert "EmergenceReport(" in capsys.readouterr().out
    # a mis-sized mask: one clear line, exit code 2
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "small.png")
    rc = main(["analyze", "--image", str(tmp_path / "scene.png"), "--prompt", "describe the image",
               "--gt-mask", str(tmp_path / "small.png"), "--segmenter", "classical", "--out", str(out)])
    assert rc == 2 and "ORIGINAL image's size" in capsys.readouterr().err


def test_organism_ground_command_prints_the_emergence_tables(tmp_path, capsys):
    import json

    rc = main(["organism", "ground", "--seed", "5", "--n", "6", "--out", str(tmp_path / "g.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "oracle mIoU" in text and "emergence position" in text and "concept category of the best unit" in text
    data = json.loads((tmp_path / "g.json").read_text())
    assert len(data["rows"]) == 6
    assert data["oracle_miou"] == __import__("pytest").approx(sum(r["oracle_iou"] for r in data["rows"]) / 6)
    assert sum(data["best_categories"].values()) == 6


def test_organism_ground_under_the_pixfoundation_protocol_scores_noun_chunks(tmp_path, capsys):
    """The same scenes under both protocols: PixFoundation's when unit is a noun chunk of the world's grammar, the
    highest-IoU one (last of ties); every scene has one (no threshold), and its IoU is the scene's oracle IoU."""
    import json

    from emergence.organism.reading import OrganismNounChunks

    assert main(["organism", "ground", "--seed", "5", "--n", "6", "--protocol", "pixfoundation",
                 "--out", str(tmp_path / "pix.json")]) == 0
    text = capsys.readouterr().out
    assert "protocol pixfoundation" in text and "when unit (PixFoundation" in text
    pix = json.loads((tmp_path / "pix.json").read_text())
    assert pix["protocol"] == "pixfoundation"
    chunker = OrganismNounChunks()
    for row in pix["rows"]:
        assert row["unit_kind"] == "phrases" and row["protocol"] == "pixfoundation" and row["emerged"]
        chunks = [c.text for c in chunker(row["answer"]).noun_chunks]
        assert row["emergence_text"] in chunks and row["emergence_text"] == row["best_text"]
    assert sum(pix["emergence_bins"].values()) == 6


def test_the_version_is_one_string_in_the_package_and_pyproject(capsys):
    import re
    from pathlib import Path

    from emergence import __version__
    from emergence._version import __version__ as direct

    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert __version__ == direct == re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    with __import__("pytest").raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"emergence {__version__}"
