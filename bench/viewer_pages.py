"""Sizes of viewer pages (docs/viewer.md), and how long a browser takes to draw them.

    python bench/viewer_pages.py [--out DIR] [--screenshots docs/figures]

Pages: the demo's (the shipped organism on the demo scene, its report), and a LLaVA-1.5-7B-shaped run (random
attention of the real shape: 128 answer tokens x 32 layers x 32 heads x 576 visual tokens on a 24 x 24 grid over a
336 x 336 image) at the default budget (32 MB: layer means) and with a budget that holds every head. With Chromium
and chromedriver installed (Debian: apt-get install -y chromium chromium-driver), each page is opened headless and
the time to its first drawn map and to a word change is measured.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def llava_7b_shaped_run(seed: int = 0, tokens: int = 128):
    from emergence.layouts.base import View, VisualLayout
    from emergence.run import ProbeRun

    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(tokens, 32, 32, 576, generator=g) * 2
    attention = (logits.softmax(-1) * 0.6).half()  # the visual keys' share of each row
    layout = VisualLayout(positions=np.arange(5, 5 + 576), image_size=(336, 336),
                          views=[View("image", np.arange(576).reshape(24, 24), (0, 0, 336, 336))], family="llava")
    words = [f" word{t}" for t in range(tokens)]
    ends = np.cumsum([len(w) for w in words])
    offsets = torch.as_tensor(np.stack([ends - [len(w) for w in words], ends], 1))
    image = Image.fromarray((np.random.default_rng(seed).random((336, 336, 3)) * 255).astype(np.uint8))
    return ProbeRun(text="".join(words), token_ids=torch.arange(tokens), tokens=words, token_offsets=offsets,
                    attention=attention, layout=layout, layers=list(range(32)), keep="heads", convention="predicting",
                    prompt="Describe the image.", prompt_ids=torch.arange(600), image=image, media=[],
                    meta={"model": "random LLaVA-1.5-7B shape"})


def demo_report():
    from emergence import analyze
    from emergence.organism import ShapesWorld
    from emergence.organism.model import PROMPT, build_processor
    from emergence.organism import load_organism
    from emergence.organism.reading import organism_judge
    from emergence.probe import Probe

    model, _ = load_organism()
    probe = Probe(model, build_processor())
    scene = ShapesWorld(2024).scene(0)
    run = probe.generate(scene.image, PROMPT, max_new_tokens=64, methods=["tam", "relative"])
    return analyze(run, scene.referring_expressions()[0].mask, segmenter="classical", judge=organism_judge())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=None, help="folder for the pages (default: a temporary one)")
    parser.add_argument("--screenshots", default=None, help="write screenshots of the demo pages here")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="viewer_pages_"))
    out.mkdir(parents=True, exist_ok=True)
    report = demo_report()
    big = llava_7b_shaped_run()
    pages = {
        "demo report (organism, 64 tokens max)": report.to_html(out / "demo_report.html"),
        "demo run (organism)": report.run.to_html(out / "demo_run.html"),
        "LLaVA-7B-shaped, default budget (layer means)": big.to_html(out / "llava7b_layers.html"),
        "LLaVA-7B-shaped, budget 160 MB (every head)": big.to_html(out / "llava7b_heads.html", budget_mb=160),
    }
    from browser import Browser, missing

    reason = missing()
    rows = []
    browser = Browser() if reason is None else None
    try:
        for name, page in pages.items():
            size = page.stat().st_size / 2**20
            first = change = None
            if browser is not None:
                t0 = time.perf_counter()
                browser.open(page)
                browser.js("return window.emergenceViewer.current().peak")
                first = time.perf_counter() - t0
                t0 = time.perf_counter()
                browser.click(".ev-word[data-word='5']")
                browser.js("return window.emergenceViewer.current().peak")
                change = time.perf_counter() - t0
                if args.screenshots and name.startswith("demo report"):
                    browser.click(".ev-word[data-word='3']")
                    browser.screenshot(Path(args.screenshots) / "viewer_report.png")
            rows.append((name, size, first, change))
    finally:
        if browser is not None:
            browser.close()
    print("| page | size (MB) | open to first map (s) | word change (s) |")
    print("| --- | ---: | ---: | ---: |")
    for name, size, first, change in rows:
        fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"| {name} | {size:.2f} | {fmt(first)} | {fmt(change)} |")
    if reason:
        print(f"(no browser timings: {reason})")
    print(f"pages in {out}")


if __name__ == "__main__":
    main()
