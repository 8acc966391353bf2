"""Segment-stage benchmark: one image embedding + deduplicated, batched prompts (ours) vs the references' loop (set the
image and decode one prompt at a time, for every token).

    python bench/segment_stage.py [--device cpu|cuda] [--sam2 FOLDER] [--tokens 64] [--out bench/RESULTS.md]

Without ``--sam2`` a random-init ``Sam2Model`` is used: ``--size tiny`` (the test model, 128 px input) or ``--size
hiera-tiny`` (SAM2.1-hiera-tiny's real shape, 1024 px input: timings equal the trained model's). Prompts are the
argmax points of ``--tokens`` maps of which ``--duplicates`` share a point (words whose maps peak at the same pixel are
common). Prints one table; ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def hiera_tiny() -> torch.nn.Module:
    """Random-init Sam2Model with SAM2.1-hiera-tiny's configuration (blocks 1-2-7-2, dims 96..768)."""
    from transformers import Sam2Config, Sam2Model
    from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

    backbone = Sam2HieraDetConfig(blocks_per_stage=[1, 2, 7, 2], global_attention_blocks=[5, 7, 9])
    config = Sam2Config(vision_config=Sam2VisionConfig(backbone_config=backbone))
    return Sam2Model(config).eval()


def main() -> None:
    from emergence.analysis import PointPrompt, Sam2Segmenter, segment_prompts
    from emergence.testing import tiny_sam2

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sam2", default=None, help="a local Sam2Model folder (default: random init, see --size)")
    parser.add_argument("--size", choices=["tiny", "hiera-tiny"], default="tiny")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--duplicates", type=float, default=0.4, help="share of prompts repeating an earlier point")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    if args.sam2:
        seg = Sam2Segmenter.from_pretrained(args.sam2, device=args.device)
    else:
        model = tiny_sam2() if args.size == "tiny" else hiera_tiny()
        seg = Sam2Segmenter(model.to(args.device))
    rng = np.random.RandomState(0)
    image = (rng.rand(480, 640, 3) * 255).astype(np.uint8)
    unique = max(1, int(args.tokens * (1 - args.duplicates)))
    points = rng.randint(0, [640, 480], size=(unique, 2))
    chosen = np.concatenate([points, points[rng.randint(unique, size=args.tokens - unique)]])
    prompts = [PointPrompt([p], [1]) for p in chosen]

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def ours() -> None:
        seg.set_image(image)
        segment_prompts(seg, prompts)
        sync()

    def loop() -> None:  # the references: per token, set the image and decode its prompt
        for p in prompts:
            seg.set_image(image)
            seg.predict(p.points[None], p.labels[None])
        sync()

    def loop_embed_once() -> None:  # one embedding, but one decoder call per token
        seg.set_image(image)
        for p in prompts:
            seg.predict(p.points[None], p.labels[None])
        sync()

    ours(), loop_embed_once()  # warm-up
    times = {"ours": [], "embed once, 1 prompt/call": [], "references' loop": []}
    for _ in range(args.rounds):
        for name, fn in (("ours", ours), ("embed once, 1 prompt/call", loop_embed_once), ("references' loop", loop)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    label = args.sam2 or f"random-init {args.size}"
    lines = [
        f"segment stage, {args.tokens} prompts ({unique} distinct), 640x480 image, {label}, device {args.device}, "
        f"torch {torch.__version__}, best of {args.rounds}",
        "",
        "| method | seconds / sample | tokens / s | time vs ours |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, t in best.items():
        lines.append(f"| {name} | {t:.3f} | {args.tokens / t:.1f} | {t / best['ours']:.1f}x |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(f"\n### Segment stage ({time.strftime('%Y-%m-%d')})\n\n```\npython bench/segment_stage.py "
                     f"--device {args.device} --size {args.size} --tokens {args.tokens}\n```\n\n{table}\n")


if __name__ == "__main__":
    main()
