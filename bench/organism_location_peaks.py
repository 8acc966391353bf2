"""Where the map that predicts a location word peaks, for one organism folder: on the object the word names, on
another object, or on the background of the named object's slot, of another occupied slot or of an empty slot (row
words ("top", "bottom") apart from column words ("left", "right")).

    python bench/organism_location_peaks.py FOLDER [--seed 5] [--n 80]

The map is the one pointing scores (README): the layer/head mean of the row that predicts the word, minus the
answer's mean map, rendered on the image; its argmax pixel is classified. Scenes hold 1-3 objects in a grid of
slots (the world's ``ROWS`` x ``COLS``: 2 x 2, or 3 x 3 with ``bench/organism_variants/grid3x3.patch``), so at least
one slot is empty; a pixel's slot is the grid cell it lies in.
"""

from __future__ import annotations

import argparse
import collections
import sys

import numpy as np


def peaks(folder: str, seed: int, n: int) -> dict[tuple[str, str], int]:
    from emergence import Probe
    from emergence.analysis import token_maps
    from emergence.organism import ShapesWorld
    from emergence.organism.model import PROMPT
    from emergence.organism.world import COLS, ROWS
    from emergence.studies.scenes import word_pointing

    probe = Probe.from_pretrained(folder, dtype="float32")
    world, counts = ShapesWorld(seed), collections.Counter()
    for i in range(n):
        scene = world.scene(i)
        run = probe.generate(scene.image, PROMPT, max_new_tokens=64, keep="heads")
        maps = token_maps(run)
        for wp in word_pointing(run, scene):
            if wp.category != "location":
                continue
            heat = run.layout.render(maps[wp.token][None])[0]
            y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
            if wp.mask[y, x]:
                where = "the object named"
            elif any(o.mask[y, x] for o in scene.objects):
                where = "another object"
            else:
                h, w = heat.shape
                row, col = ROWS[y * len(ROWS) // h], COLS[x * len(COLS) // w]
                named = next(o for o in scene.objects if np.array_equal(wp.mask, o.mask))
                if (named.row, named.col) == (row, col):
                    where = "background of the named object's slot"
                elif any(o.row == row and o.col == col for o in scene.objects):
                    where = "background of another occupied slot"
                else:
                    where = "background of an empty slot"
            counts[("row" if wp.word in ROWS else "column", where)] += 1
    return dict(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--n", type=int, default=80)
    args = parser.parse_args()
    counts = peaks(args.folder, args.seed, args.n)
    print(f"# {args.folder}: world seed {args.seed}, {args.n} scenes")
    print("| word | peak on | words |")
    print("| --- | --- | ---: |")
    for (kind, where), c in sorted(counts.items()):
        print(f"| {kind} | {where} | {c} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
