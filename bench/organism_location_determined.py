"""Which location words the caption so far already decides, and where their maps point.

    python bench/organism_location_determined.py FOLDER [FOLDER ...] [--seed 9] [--n 300] [--knockout [--own-row]] [--normalise none]
        [--out FILE.json]

The shapes world names its objects in slot order, column-major from the left (top left, bottom left, top right, bottom
right; the slots are the world's ``ROWS`` x ``COLS`` grid, so a patched 3 x 3 world runs too). Given the slots already
named and, for a column word, the row word just written, the grammar leaves a list of **candidate** slots for the object
the location word names. Each scored location word is one of:

- **determined**: every candidate gives the same word (e.g. "bottom" after an object at the top right, or "right"
  after "at the bottom" when the bottom left was named before); a reader of the caption alone knows it;
- **first candidate**: the object sits in the first candidate slot, so an object there decides the word;
- **later candidate**: the object sits in a later candidate, so the word is decided by the first candidate slot
  being empty (e.g. "right" after "at the bottom" as the first object: the bottom left is empty).

Printed per folder: pointing of each kind (with its random baseline, the mean fraction of the image the named objects
cover, and its count), the pointing per slot, and for missed words of the later-candidate kind how often the map's
peak lies in the first candidate's (empty) slot. The split is computed from the reference caption; scenes whose
generated caption is not exact count too (words aligned as ``emergence organism eval`` aligns them). Maps are the
ones pointing scores: the layer/head mean minus the answer's mean map (``--normalise none``: nothing subtracted,
as ``emergence organism eval --normalise none``).

``--knockout`` adds a causal check of where each word's evidence lies. In one teacher-forced forward per slot, every
text position after the image is blocked from the visual tokens whose cell centre lies in that slot (a quarter of the
2 x 2 world's image; :func:`emergence.causal.knockout`); the change of each location word's log-probability against the
unblocked forward is averaged per kind of word and per kind of slot blocked: the named object's slot, the first
candidate's slot (later-candidate words only: for first-candidate words it is the named slot), every other slot, and the
whole image (every token of the image blocked, row-end tokens included).

``--own-row`` adds the same blocks of the named slot and of the first candidate's slot for the word's own row only
(the row that predicts it, the row whose attention is the word's map): earlier rows still read the slot, so the
change measures what that row itself takes from it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from typing import Any

import numpy as np

from emergence.organism.world import COLS, ROWS  # the world on PYTHONPATH: 2 x 2, or a patched grid

ORDER = [(r, c) for c in COLS for r in ROWS]  # column-major slot order


def word_kind(previous: tuple[str, str] | None, slot: tuple[str, str], column: bool) -> tuple[str, tuple[str, str]]:
    """``(kind, first candidate slot)`` of a location word (module docstring): ``previous`` is the slot named before
    (``None`` for the first object), ``slot`` the named object's, ``column`` whether it is the column word."""
    start = 0 if previous is None else ORDER.index(previous) + 1
    candidates = [s for s in ORDER[start:] if not column or s[0] == slot[0]]
    if slot not in candidates:
        raise ValueError(f"slot {slot} cannot follow {previous} in column-major order")
    if len({s[1] if column else s[0] for s in candidates}) == 1:
        return "determined", candidates[0]
    return ("first candidate" if candidates[0] == slot else "later candidate"), candidates[0]


def quadrant(y: int, x: int, height: int, width: int) -> tuple[str, str]:
    """The slot (the cell of the world's ``ROWS`` x ``COLS`` grid; a quarter of the 2 x 2 world) that pixel
    ``(x, y)`` lies in."""
    return ROWS[y * len(ROWS) // height], COLS[x * len(COLS) // width]


def slot_tokens(run: Any) -> dict[tuple[str, str], np.ndarray]:
    """Per slot, the indices into ``[V]`` of the visual tokens whose cell centre lies in it."""
    boxes = run.layout.token_boxes()  # [V, 4] (x0, y0, x1, y1), NaN outside the grid
    h, w = run.layout.image_size
    out: dict[tuple[str, str], list[int]] = {s: [] for s in ORDER}
    for v, (x0, y0, x1, y1) in enumerate(boxes):
        if not np.isnan(x0):
            out[quadrant(int((y0 + y1) / 2), int((x0 + x1) / 2), h, w)].append(v)
    return {s: np.asarray(v, dtype=np.int64) for s, v in out.items()}


def location_words(folder: str, seed: int, n: int, knockouts: bool = False, own_row: bool = False,
                   normalise: str = "mean_subtract") -> list[dict[str, Any]]:
    """One record per scored location word: slot, word kind (module docstring), hit, mask fraction and, with
    ``knockouts``, the change of its log-probability when each slot's visual tokens are blocked."""
    from emergence import Probe
    from emergence.analysis import MapOptions, argmax_point, token_maps
    from emergence.causal import answer_log_probs, knockout, run_inputs
    from emergence.capture.replay import teacher_forced
    from emergence.organism import ShapesWorld
    from emergence.organism.model import PROMPT
    from emergence.studies.scenes import word_pointing

    probe = Probe.from_pretrained(folder, dtype="float32")
    world, out = ShapesWorld(seed), []
    for i in range(n):
        scene = world.scene(i)
        run = probe.generate(scene.image, PROMPT, max_new_tokens=64, keep="heads")
        slots = [(o.row, o.col) for o in scene.objects]
        maps = token_maps(run, MapOptions(normalise=normalise))
        dlogp: dict[Any, np.ndarray] = {}
        if knockouts:
            inputs = run_inputs(probe, run)
            base = answer_log_probs(probe, run, inputs).numpy()
            first_text = int(run.layout.positions.max()) + 1
            blocks: dict[Any, np.ndarray] = dict(slot_tokens(run))
            blocks["image"] = np.arange(run.layout.num_tokens)
            rows = teacher_forced(probe, run, inputs)[1]  # [T] positions of the rows that predict each answer token
            for slot, tokens in blocks.items():
                with knockout(probe, run.layout.positions[tokens], first_text):
                    dlogp[slot] = answer_log_probs(probe, run, inputs).numpy() - base
        for wp in word_pointing(run, scene, maps):
            if wp.category != "location":
                continue
            k = next(j for j, o in enumerate(scene.objects) if np.array_equal(wp.mask, o.mask))
            column = wp.word in ("left", "right")
            kind, first = word_kind(slots[k - 1] if k else None, slots[k], column)
            x, y = argmax_point(run.layout.render(maps[wp.token]))
            record = {"slot": "-".join(slots[k]), "word": "column" if column else "row", "kind": kind,
                      "hit": float(wp.hit), "random": float(wp.mask.mean()),
                      "peak in first candidate": quadrant(int(y), int(x), *wp.mask.shape) == first}
            if dlogp:
                record["dlogp named slot"] = float(dlogp[slots[k]][wp.token])
                if kind == "later candidate":
                    record["dlogp first candidate's slot"] = float(dlogp[first][wp.token])
                others = [s for s in ORDER if s not in (slots[k], first)]
                record["dlogp other slots"] = float(np.mean([dlogp[s][wp.token] for s in others]))
                record["dlogp image"] = float(dlogp["image"][wp.token])
                if own_row:
                    own = {"dlogp named slot, own row": slots[k]}
                    if kind == "later candidate":
                        own["dlogp first candidate's slot, own row"] = first
                    for key, slot in own.items():
                        with knockout(probe, run.layout.positions[blocks[slot]], int(rows[wp.token])):
                            lp = answer_log_probs(probe, run, inputs).numpy()
                        record[key] = float(lp[wp.token] - base[wp.token])
            out.append(record)
    return out


def summarise(records: list[dict[str, Any]]) -> dict[str, float]:
    groups: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in records:
        groups["all"].append(r)
        groups[r["kind"]].append(r)
        groups[f"{r['word']} {r['kind']}"].append(r)
        groups[f"slot {r['slot']}"].append(r)
    out: dict[str, float] = {}
    for name, rs in sorted(groups.items()):
        out[f"pointing {name}"] = float(np.mean([r["hit"] for r in rs]))
        out[f"random {name}"] = float(np.mean([r["random"] for r in rs]))
        out[f"words {name}"] = float(len(rs))
        for key in ("dlogp named slot", "dlogp first candidate's slot", "dlogp other slots", "dlogp image",
                    "dlogp named slot, own row", "dlogp first candidate's slot, own row"):
            vals = [r[key] for r in rs if key in r]
            if vals:
                out[f"{key} {name}"] = float(np.mean(vals))
    missed = [r for r in records if r["kind"] == "later candidate" and not r["hit"]]
    out["later-candidate misses"] = float(len(missed))
    out["later-candidate misses peaking in the first candidate"] = float(sum(r["peak in first candidate"]
                                                                             for r in missed))
    return out


def print_knockouts(results: dict[str, dict[str, float]], headers: list[str], keys: list[str]) -> None:
    """One Markdown row per folder and kind of word: the mean change of log-probability under each block."""
    print("\n| folder | kind | " + " | ".join(f"dlogp, {h} blocked" for h in headers) + " |")
    print("| --- | --- |" + " ---: |" * len(keys))
    for folder, s in results.items():
        for kind in ("first candidate", "later candidate", "determined"):
            cells = [s.get(f"{key} {kind}") for key in keys]
            print(f"| {folder} | {kind} | " + " | ".join("-" if c is None else f"{c:.2f}" for c in cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--knockout", action="store_true", help="add the slot knockouts (module docstring)")
    parser.add_argument("--own-row", action="store_true", help="with --knockout: also block the word's own row only")
    parser.add_argument("--normalise", default="mean_subtract", choices=["mean_subtract", "none"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.own_row and not args.knockout:
        parser.error("--own-row adds to the --knockout blocks: pass both")
    results = {}
    for folder in args.folders:
        results[folder] = summarise(location_words(folder, args.seed, args.n, args.knockout, args.own_row,
                                                   args.normalise))
    print(f"# world seed {args.seed}, {args.n} scenes, normalise {args.normalise}; pointing (x random) [words]")
    cols = ["all", "first candidate", "later candidate", "determined"]
    print("| folder | " + " | ".join(cols) + " |")
    print("| --- |" + " ---: |" * len(cols))
    for folder, s in results.items():
        cells = []
        for c in cols:
            if f"pointing {c}" not in s:
                cells.append("-")
                continue
            p, r, w = s[f"pointing {c}"], s[f"random {c}"], int(s[f"words {c}"])
            cells.append(f"{p:.3f} ({p / r:.1f}) [{w}]")
        print(f"| {folder} | " + " | ".join(cells) + " |")
    slots = ["-".join(s) for s in ORDER]
    print("\n| folder | " + " | ".join(slots) + " |")
    print("| --- |" + " ---: |" * len(slots))
    for folder, s in results.items():
        print(f"| {folder} | " + " | ".join(f"{s[f'pointing slot {c}']:.3f}" for c in slots) + " |")
    print("\n| folder | later-candidate misses | their peak in the first candidate's slot |")
    print("| --- | ---: | ---: |")
    for folder, s in results.items():
        print(f"| {folder} | {int(s['later-candidate misses'])} | "
              f"{int(s['later-candidate misses peaking in the first candidate'])} |")
    if args.knockout:
        print_knockouts(results, ["named slot", "first candidate's slot", "other slots", "whole image"],
                        ["dlogp named slot", "dlogp first candidate's slot", "dlogp other slots", "dlogp image"])
    if args.own_row:
        print_knockouts(results, ["named slot, own row", "first candidate's slot, own row"],
                        ["dlogp named slot, own row", "dlogp first candidate's slot, own row"])
    if args.out:
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"seed": args.seed, "n": args.n, "normalise": args.normalise, "results": results}, fh, indent=1)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
