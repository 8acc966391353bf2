"""Pointing per concept category under the two normalisations of the maps, for every organism seed folder.

    python bench/organism_normalise.py --out bench/organism_normalise.json

Each folder captions the seeds study's held-out scenes once (world seeds 7 and 11, 300 scenes each, pooled as in
`emergence organism seeds`), and every scored word is checked twice: on the layer/head-mean map minus the answer's
mean map (`mean_subtract`, the pointing the README reports) and on the layer/head-mean map as it is (`none`; `minmax`
gives the same argmax). The `mean_subtract` column must equal the seeds study's pointing (checked against
`bench/organism_seeds_study.json` when it holds the same folder with the same weights); a mismatch stops the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "llava": ["bench/organism_seeds/llava_seed0", "src/emergence/organism/weights", "bench/organism_seeds/llava_seed2"],
    "fuyu": ["bench/organism_seeds/fuyu_seed0", "src/emergence/organism/weights_fuyu",
             "bench/organism_seeds/fuyu_seed2"],
}
MODES = ("mean_subtract", "none")
SHOWN = ("appearance", "entity", "part", "location", "state", "context")


def measure(folder: Path, seeds: list[int], n: int) -> dict[str, dict[str, dict[str, float]]]:
    """``{mode: {category: {"n", "accuracy", "baseline", "ratio"}}}`` pooled over ``seeds``."""
    from emergence import Probe
    from emergence.analysis import MapOptions, token_maps
    from emergence.organism import CATEGORIES, ShapesWorld
    from emergence.organism.model import PROMPT
    from emergence.studies.scenes import word_pointing

    probe = Probe.from_pretrained(folder, dtype="float32")
    hits = {m: {c: [] for c in CATEGORIES} for m in MODES}
    base = {c: [] for c in CATEGORIES}
    for seed in seeds:
        world = ShapesWorld(seed)
        for i in range(n):
            scene = world.scene(i)
            run = probe.generate(scene.image, PROMPT, max_new_tokens=64, keep="heads")
            for k, mode in enumerate(MODES):
                for wp in word_pointing(run, scene, token_maps(run, MapOptions(normalise=mode))):
                    hits[mode][wp.category].append(float(wp.hit))
                    if k == 0:
                        base[wp.category].append(float(wp.mask.mean()))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for mode in MODES:
        out[mode] = {}
        for c in CATEGORIES:
            if hits[mode][c]:
                acc, bl = float(np.mean(hits[mode][c])), float(np.mean(base[c]))
                out[mode][c] = {"n": len(hits[mode][c]), "accuracy": acc, "baseline": bl, "ratio": acc / bl}
    return out


def check_against_study(folder: str, result: dict, study: dict | None) -> str:
    """``"equal"`` / ``"not in the study"``; raises if the study holds the folder and its pointing differs."""
    if study is None:
        return "not in the study"
    for records in study["models"].values():
        for rec in records:
            if rec.get("folder") == folder:
                from emergence.studies.seeds import _weights_digest

                if rec.get("digest") != _weights_digest(ROOT / folder):
                    return "other weights than the study's"
                for c, r in result["mean_subtract"].items():
                    want = rec["metrics"].get(f"pointing {c}")
                    if want is not None and abs(want - r["accuracy"]) > 1e-9:
                        raise SystemExit(f"{folder}: {c} pointing {r['accuracy']:.6f} != the seeds study's {want:.6f}")
                return "equal"
    return "not in the study"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--study", default=str(ROOT / "bench/organism_seeds_study.json"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    study_path = Path(args.study)
    study = json.loads(study_path.read_text()) if study_path.exists() else None
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    for design, folders in FOLDERS.items():
        for folder in folders:
            r = measure(ROOT / folder, args.seeds, args.n)
            r["seeds study"] = check_against_study(folder, r, study) if args.seeds == [7, 11] and args.n == 300 \
                else "other scenes"
            results[folder] = {"design": design, **r}
            print(f"{folder}: {time.perf_counter() - t0:.0f} s, mean_subtract vs the seeds study: {r['seeds study']}",
                  file=sys.stderr, flush=True)
    print(f"# pointing (x random) per seed folder; world seeds {args.seeds}, {args.n} scenes each; "
          f"{time.perf_counter() - t0:.0f} s")
    print("| design | folder | normalise | " + " | ".join(SHOWN) + " |")
    print("| --- | --- | --- | " + " | ".join("---:" for _ in SHOWN) + " |")
    for folder, r in results.items():
        for mode in MODES:
            cells = [f"{r[mode][c]['accuracy']:.3f} ({r[mode][c]['ratio']:.1f})" if c in r[mode] else "—"
                     for c in SHOWN]
            print(f"| {r['design']} | {Path(folder).name} | {mode} | " + " | ".join(cells) + " |")
    if args.out:
        from emergence.files import write_result_json

        write_result_json(args.out, {"bench": "organism normalise", "seeds": args.seeds, "n": args.n,
                                     "folders": results})
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
