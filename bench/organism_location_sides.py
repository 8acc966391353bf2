"""Location words by the side of the image their object is on, with knockouts: what each word is read from.

    python bench/organism_location_sides.py FOLDER [FOLDER ...] [--seed 9] [--n 300] [--normalise none] [--out FILE.json]

Written for worlds that do not name the objects in slot order (the colour-order pilots of docs/organism_notes.md;
run it with the patched ``world.py`` first on ``PYTHONPATH``); on the shipped world it runs too, but there the grammar
fixes more words than the *fixed* kind below counts (``bench/organism_location_determined.py`` splits those).

Each scored location word is *fixed* when the slots the caption has not named yet allow only one value of it (for a
column word: only one free slot in the object's row), else *free*. Teacher-forced forwards of each scene (one
unblocked, two per occupied slot, one with the whole image blocked) measure the change of each word's log-probability
(nats) against the unblocked forward (:func:`emergence.causal.knockout`):

- **own slot, text**: the text positions after the image blocked from the visual tokens whose cell centre lies in the
  object's slot (a cell of the world's ``ROWS`` x ``COLS`` grid: a quarter of the 2 x 2 world's image);
- **own slot, every query**: the same tokens blocked from every query from the first visual token on, so that no
  later visual token can read them either;
- **image**: the text blocked from every visual token.

Where the image starts the sequence (Fuyu), the slot holding the first patch cannot be blocked from every query (that
patch would have no key left; :func:`emergence.causal.knockout` refuses), so the *every query* change of a group
holding such words is NaN, not measured.

Printed and written: pointing (with its random baseline) of fixed and free, row and column words; and per word kind
(row / column) and side of its object (its row or its column: top / bottom, left / right, and middle / centre in a 3 x 3
world), the pointing, the three changes and how often the word's map peaks in a slot after the object's own in raster
order (rows top to bottom, left to right). Maps are the ones pointing scores (the layer/head mean minus the answer's
mean map; ``--normalise none``: nothing subtracted).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from organism_location_determined import COLS, ROWS, quadrant as slot_of, slot_tokens  # noqa: E402  (the same slots)

SLOTS = [(r, c) for r in ROWS for c in COLS]  # raster order


def fixed_words(objects: list[Any]) -> dict[tuple[int, str], bool]:
    """``{(object index, "row" | "column"): fixed}`` for the objects in caption order (module docstring)."""
    used: set[tuple[str, str]] = set()
    out = {}
    for k, obj in enumerate(objects):
        free = [s for s in SLOTS if s not in used]
        out[(k, "row")] = len({r for r, _ in free}) == 1
        out[(k, "column")] = sum(r == obj.row for r, _ in free) == 1
        used.add((obj.row, obj.col))
    return out


def location_words(folder: str, seed: int, n: int, normalise: str = "mean_subtract") -> list[dict[str, Any]]:
    """One record per scored location word (module docstring)."""
    from emergence import Probe
    from emergence.analysis import MapOptions, argmax_point, token_maps
    from emergence.causal import answer_log_probs, knockout, run_inputs
    from emergence.errors import CaptureError
    from emergence.organism import ShapesWorld
    from emergence.organism.model import PROMPT
    from emergence.studies.scenes import word_pointing

    probe = Probe.from_pretrained(folder, dtype="float32")
    world, out = ShapesWorld(seed), []
    for i in range(n):
        scene = world.scene(i)
        run = probe.generate(scene.image, PROMPT, max_new_tokens=64, keep="heads")
        slots = [(o.row, o.col) for o in scene.objects]
        inputs = run_inputs(probe, run)
        base = answer_log_probs(probe, run, inputs).numpy()
        positions = run.layout.positions
        first_text, first_image = int(positions.max()) + 1, int(positions.min())
        tokens = slot_tokens(run)
        text: dict[Any, np.ndarray] = {}
        every: dict[Any, np.ndarray] = {}
        for slot in set(slots):
            with knockout(probe, positions[tokens[slot]], first_text):
                text[slot] = answer_log_probs(probe, run, inputs).numpy() - base
            try:
                with knockout(probe, positions[tokens[slot]], first_image):
                    every[slot] = answer_log_probs(probe, run, inputs).numpy() - base
            except CaptureError:  # the image starts the sequence (Fuyu): its first patch would have no key left
                every[slot] = np.full_like(base, np.nan)
        with knockout(probe, positions, first_text):
            image = answer_log_probs(probe, run, inputs).numpy() - base
        fixed = fixed_words(scene.objects)
        maps = token_maps(run, MapOptions(normalise=normalise))
        for wp in word_pointing(run, scene, maps):
            if wp.category != "location":
                continue
            k = next(j for j, o in enumerate(scene.objects) if np.array_equal(wp.mask, o.mask))
            kind = "column" if wp.word in COLS else "row"
            x, y = argmax_point(run.layout.render(maps[wp.token]))
            peak = slot_of(int(y), int(x), *wp.mask.shape)
            out.append({
                "scene": i, "word": wp.word, "kind": kind, "slot": "-".join(slots[k]),
                "side": slots[k][0] if kind == "row" else slots[k][1],
                "fixed": fixed[(k, kind)], "hit": float(wp.hit), "random": float(wp.mask.mean()),
                "peak after own slot": SLOTS.index(peak) > SLOTS.index(slots[k]),
                "dlogp own slot, text": float(text[slots[k]][wp.token]),
                "dlogp own slot, every query": float(every[slots[k]][wp.token]),
                "dlogp image": float(image[wp.token]),
            })
    return out


def summary(records: list[dict[str, Any]]) -> dict[str, float]:
    """Pointing per fixed / free and row / column; pointing, changes and late peaks per kind and side."""
    out: dict[str, float] = {}
    groups: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in records:
        split = "fixed" if r["fixed"] else "free"
        for key in ("all", split, f"{split} {r['kind']}", f"{r['kind']} {r['side']}"):
            groups[key].append(r)
    for key, rs in sorted(groups.items()):
        out[f"words {key}"] = float(len(rs))
        for field in ("hit", "random") + (("peak after own slot", "dlogp own slot, text", "dlogp own slot, every query",
                                           "dlogp image") if key.split()[0] in ("row", "column") else ()):
            name = "pointing" if field == "hit" else field
            out[f"{name} {key}"] = float(np.mean([float(r[field]) for r in rs]))  # NaN where one is not measured
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--normalise", default="mean_subtract", choices=["mean_subtract", "none"])
    parser.add_argument("--out", default=None, help="write the summaries as JSON (atomic, after every folder)")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    for folder in args.folders:
        s = results[os.path.normpath(folder)] = summary(location_words(folder, args.seed, args.n, args.normalise))
        print(f"# {folder}: world seed {args.seed}, {args.n} scenes, maps {args.normalise}")
        print("| words | n | pointing (x random) |\n| --- | ---: | ---: |")
        for key in ("all", "fixed", "free", "free row", "free column"):
            if f"words {key}" in s:
                p, r = s[f"pointing {key}"], s[f"random {key}"]
                print(f"| {key} | {s[f'words {key}']:.0f} | {p:.3f} ({p / r:.1f}) |")
        print("\n| word | side | n | pointing | own slot, text | own slot, every query | image | peak after own slot |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind, side in [("row", r) for r in ROWS] + [("column", c) for c in COLS]:
            key = f"{kind} {side}"
            if f"words {key}" in s:
                print(f"| {kind} | {side} | {s[f'words {key}']:.0f} | {s[f'pointing {key}']:.3f} | "
                      f"{s[f'dlogp own slot, text {key}']:.2f} | {s[f'dlogp own slot, every query {key}']:.2f} | "
                      f"{s[f'dlogp image {key}']:.2f} | {s[f'peak after own slot {key}']:.2f} |")
        print(flush=True)
        if args.out:
            from emergence.files import atomic_write_json

            clean = {f: {k: (None if np.isnan(v) else v) for k, v in r.items()} for f, r in results.items()}
            atomic_write_json(args.out, {"seed": args.seed, "n": args.n, "normalise": args.normalise,
                                         "results": clean})  # null: not measured
    return 0


if __name__ == "__main__":
    sys.exit(main())
