"""The rule that picks the shipped organism among training seeds (docs/organism_notes.md, stated before the seeds'
results): each seed's mean pointing over colour (appearance), entity and part words on the DEV world seed 9 (300
scenes; never used for training, tests or reported figures); the median seed ships (ties: the lower seed).

    python bench/organism_seed_rule.py SEED0_FOLDER SEED1_FOLDER SEED2_FOLDER [--out bench/organism_seed_rule.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CATEGORIES = ("appearance", "entity", "part")
DEV_SEED, DEV_N = 9, 300


def score(folder: str) -> dict:
    from emergence.probe import Probe
    from emergence.studies.evaluate import evaluate

    result = evaluate(Probe.from_pretrained(folder, dtype="float32"), seed=DEV_SEED, n=DEV_N, per_head=False)
    pointing = {c: result.categories[c]["accuracy"] for c in CATEGORIES}
    args = json.loads((Path(folder) / "training_args.json").read_text())
    return {"folder": str(folder), "training_seed": args["seed"], "exact_caption": result.exact_caption,
            "pointing": pointing, "score": sum(pointing.values()) / len(pointing)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = sorted((score(f) for f in args.folders), key=lambda r: (r["score"], -r["training_seed"]))
    median = rows[(len(rows) - 1) // 2]
    print(f"dev world seed {DEV_SEED}, {DEV_N} scenes; score = mean pointing over {', '.join(CATEGORIES)}")
    print("| training seed | exact caption | " + " | ".join(CATEGORIES) + " | score |")
    print("| --- | ---: | " + " | ".join("---:" for _ in CATEGORIES) + " | ---: |")
    for r in sorted(rows, key=lambda r: r["training_seed"]):
        print(f"| {r['training_seed']} | {r['exact_caption']:.3f} | "
              + " | ".join(f"{r['pointing'][c]:.3f}" for c in CATEGORIES) + f" | {r['score']:.3f} |")
    print(f"median (ships): training seed {median['training_seed']}")
    if args.out:
        from emergence.files import write_result_json

        write_result_json(args.out, {"dev_seed": DEV_SEED, "n": DEV_N, "rows": rows,
                                     "median_seed": median["training_seed"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
