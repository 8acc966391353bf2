"""The seeds study (`emergence organism seeds`): spread per design, the side-by-side verdict, resume, controls."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emergence.organism import ORGANISM_DIR
from emergence.studies import seeds as seeds_module
from emergence.studies.seeds import SeedsStudy, format_seeds, study_seeds, untrained_organism

needs_weights = pytest.mark.skipif(not (ORGANISM_DIR / "config.json").exists(),
                                   reason=f"no shipped organism weights in {ORGANISM_DIR}")


def _record(**metrics: float) -> dict:
    return {"folder": "x", "digest": "d", "metrics": metrics, "training_args": {}, "seconds": 0.0}


def test_summary_is_mean_sample_std_and_range_over_seeds_and_the_verdict_needs_disjoint_ranges():
    study = SeedsStudy(settings={"eval_seeds": [7], "eval_n": 1, "ground_seed": 1, "ground_n": 1, "causal_seed": 2,
                                 "causal_n": 1, "segmenter": "classical", "protocol": "emergence"})
    study.models["llava"] = [_record(**{"exact caption": v, "pointing entity": p})
                             for v, p in ((0.90, 0.70), (0.96, 0.80), (0.93, 0.75))]
    study.models["fuyu"] = [_record(**{"exact caption": v, "pointing entity": p})
                            for v, p in ((0.95, 0.50), (0.99, 0.55), (0.97, 0.60))]
    stats = study.summary()["llava"]["exact caption"]
    assert stats["mean"] == pytest.approx(0.93) and stats["std"] == pytest.approx(np.std([0.9, 0.96, 0.93], ddof=1))
    assert (stats["min"], stats["max"]) == (0.90, 0.96)
    table = format_seeds(study)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert rows["exact caption"].endswith(" no |")  # 0.90..0.96 overlaps 0.95..0.99
    assert rows["pointing: entity"].endswith(" yes |")  # 0.70..0.80 vs 0.50..0.60
    assert "0.930 ± 0.030 (0.900..0.960)" in rows["exact caption"]


def test_one_seed_per_design_gives_no_verdict():
    study = SeedsStudy(settings={"eval_seeds": [7], "eval_n": 1, "ground_seed": 1, "ground_n": 1, "causal_seed": 2,
                                 "causal_n": 1, "segmenter": "classical", "protocol": "emergence"})
    study.models = {"llava": [_record(**{"exact caption": 0.9})], "fuyu": [_record(**{"exact caption": 0.5})]}
    line = [x for x in format_seeds(study).splitlines() if x.startswith("| exact caption")][0]
    assert line.endswith(" — |") and "±" not in line


def test_a_folder_given_twice_or_a_design_without_folders_is_refused(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        study_seeds({"llava": [tmp_path, tmp_path]})
    with pytest.raises(ValueError, match="at least one"):
        study_seeds({"llava": [tmp_path], "fuyu": []})
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        study_seeds({"llava": [tmp_path]})


@needs_weights
def test_study_measures_each_folder_resumes_and_reports_controls_apart(tmp_path, monkeypatch):
    fuyu = untrained_organism("fuyu", tmp_path / "fuyu_init", seed=5)
    calls = []
    real = seeds_module.model_metrics

    def counted(folder, *args, **kwargs):
        calls.append(str(folder))
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(seeds_module, "model_metrics", counted)
    small = dict(eval_seeds=[7], eval_n=2, ground_n=2, causal_n=2, out=tmp_path / "seeds.json")
    study = study_seeds({"llava": [ORGANISM_DIR], "fuyu": [fuyu]}, controls=True, **small)
    assert len(calls) == 4  # two folders, two untrained controls
    saved = json.loads((tmp_path / "seeds.json").read_text())
    assert saved["settings"]["eval_n"] == 2 and set(saved["controls"]) == {"llava", "fuyu"}
    summary = study.summary()
    for design in ("llava", "fuyu"):  # controls never enter the mean
        metrics = study.models[design][0]["metrics"]
        assert summary[design]["exact caption"]["values"] == [metrics["exact caption"]]
    assert study.models["llava"][0]["metrics"]["exact caption"] > study.controls["llava"]["metrics"]["exact caption"]
    assert study.models["fuyu"][0]["metrics"]["layers"] == 4.0
    assert sum(study.models["llava"][0]["metrics"][f"emergence bin {b}"] for b in range(10)) + \
        study.models["llava"][0]["metrics"]["never emerged"] == pytest.approx(1.0)
    assert "llava untrained" in format_seeds(study)

    calls.clear()
    again = study_seeds({"llava": [ORGANISM_DIR], "fuyu": [fuyu]}, controls=True, **small)
    assert calls == []  # everything came from the file
    assert again.models == study.models and again.controls == study.controls

    # the same weights in another folder: taken from the file, named by the new folder (relative to the working
    # directory, so a committed study names no machine's paths); the same weights twice are one seed, refused
    moved = shutil.copytree(fuyu, tmp_path / "moved_fuyu")
    monkeypatch.chdir(tmp_path)
    calls.clear()
    again = study_seeds({"llava": [ORGANISM_DIR], "fuyu": [moved]}, controls=True, **small)
    assert calls == [] and again.models["fuyu"][0]["folder"] == "moved_fuyu"
    assert again.models["fuyu"][0]["metrics"] == study.models["fuyu"][0]["metrics"]
    with pytest.raises(ValueError, match="same weights"):
        study_seeds({"llava": [ORGANISM_DIR], "fuyu": [fuyu, moved]}, **small)

    calls.clear()
    study_seeds({"llava": [ORGANISM_DIR]}, **{**small, "causal_n": 1})  # another setting starts over
    assert calls == [str(ORGANISM_DIR.resolve())]

