"""Memory and time of ``analyze`` on a large photo: maps on the bounded working grid (``max_side=1024``, the
default) vs every map at full resolution (``max_side=None``, what analyze did before).

    python bench/analyze_memory.py [--width 4000 --height 3000] [--tokens 24] [--out bench/RESULTS.md]

The shipped model organism captions an upscaled shapes scene (its processor resizes any image to 64 px, so the
model's cost is the same for every size: the difference is the analyzer's). Each variant runs in a fresh process;
peak memory is that process's maximum resident set size (``ru_maxrss``) minus its size after the model and image
are loaded. Prints one table; ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import numpy as np
from PIL import Image
from emergence import Probe, analyze
from emergence.organism import ORGANISM_DIR, ShapesWorld

width, height, tokens, max_side = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
max_side = None if max_side == "none" else int(max_side)
probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
scene = ShapesWorld(3).scene(0)
image = scene.image.resize((width, height), Image.NEAREST)
gt = np.asarray(Image.fromarray(scene.objects[0].mask).resize((width, height), Image.NEAREST))
run = probe.generate(image, "describe the image", max_new_tokens=tokens, min_new_tokens=tokens)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
report = analyze(run, gt_mask=gt, segmenter="classical", max_side=max_side)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "extra_mib": (peak - base) / 1024, "units": len(report.units),
                  "oracle_iou": float(report.table["iou"].max()), "heat": list(report.heat.shape)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--out", default=None, help="append the table to this Markdown file")
    args = parser.parse_args()
    results = {}
    for variant in ("1024", "none"):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.width), str(args.height), str(args.tokens),
                              variant], capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    new, old = results["1024"], results["none"]
    import torch

    lines = [
        f"### analyze on a {args.width}x{args.height} photo ({args.width * args.height / 1e6:.0f} Mpx), "
        f"{args.tokens} tokens, classical segmenter — {time.strftime('%Y-%m-%d')}",
        "",
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; command: "
        f"`python bench/analyze_memory.py --width {args.width} --height {args.height} --tokens {args.tokens}`",
        "",
        "| maps rendered on | heat shape | time (s) | peak extra memory (MiB) | oracle IoU |",
        "| --- | --- | ---: | ---: | ---: |",
        f"| working grid, max_side=1024 (default) | {new['heat']} | {new['seconds']:.1f} | {new['extra_mib']:.0f} | "
        f"{new['oracle_iou']:.3f} |",
        f"| full resolution, max_side=None | {old['heat']} | {old['seconds']:.1f} | {old['extra_mib']:.0f} | "
        f"{old['oracle_iou']:.3f} |",
        "",
        f"- full / working grid: time **{old['seconds'] / new['seconds']:.1f}x**, peak memory "
        f"**{old['extra_mib'] / max(new['extra_mib'], 1):.1f}x**",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
