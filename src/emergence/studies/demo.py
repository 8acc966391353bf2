"""The offline demo: the shipped model organism captions a shapes scene; per-token heatmaps, pointing per caption
word, and the analyzer's emergence table against one referring expression (``emergence demo``)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["run_demo"]

#: used when the organism's weights are missing (a source checkout without them): a random-weight tiny LLaVA
FALLBACK_PROBE = "tiny-random-llava"


def _fallback_image() -> Any:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (96, 64), (235, 235, 225))
    draw = ImageDraw.Draw(img)
    draw.ellipse((8, 14, 40, 46), fill=(220, 40, 40))
    draw.rectangle((58, 20, 86, 48), fill=(40, 70, 220))
    return img


def _pointing_lines(run: Any, scene: Any) -> list[str]:
    """Per caption word: its category and whether the mean-subtracted attention peak lies on its referent."""
    from .scenes import caption_words, word_pointing

    exact = caption_words(run)[1] == [w for w, _, _ in scene.word_referents()]
    lines = ["", f"reference caption: {scene.caption}", f"exact: {exact}", "",
             "word | category | attention peak on the word's referent?"]
    lines += [f"{wp.word:>10} | {wp.category:<10} | {'yes' if wp.hit else 'no'}" for wp in word_pointing(run, scene)]
    return lines


def _emergence_lines(run: Any, scene: Any, figure: Path) -> list[str]:
    """The analyzer on the caption against one referring expression's mask: masks figure and emergence table."""
    from ..analysis import analyze
    from ..plotting.base import save_figure
    from ..organism.reading import organism_judge, scene_expression

    expr = scene_expression(scene)
    report = analyze(run, gt_mask=expr.mask, segmenter="classical", judge=organism_judge())
    save_figure(report.plot()[0], figure)
    cols = ["text", "position", "category", "point_x", "point_y", "iou"]
    return ["", f"analyzer (classical segmenter): where does {expr.text!r} get grounded in the answer?", str(report),
            "", report.table[cols].round(3).to_string()]


def run_demo(out: str | os.PathLike, seed: int = 2024, index: int = 0, max_new_tokens: int = 64,
             organism: str = "llava") -> tuple[str, list[Path], float]:
    """Caption scene ``index`` of ``ShapesWorld(seed)`` with the shipped organism of design ``organism``
    (``"llava"`` or ``"fuyu"``) and write ``image.png``,
    ``figure.png`` (per-token heatmaps), ``masks.png`` (the analyzer's figure), ``summary.txt`` and ``run/`` into the
    folder ``out`` (new, empty, or an earlier demo's).

    Returns:
        ``(summary text, files written, seconds)``.

    Raises:
        OutputDirError: ``out`` holds files this toolkit did not write.
    """
    from ..files import atomic_write_bytes, atomic_write_text, claim_output_dir
    from ..plotting.base import save_figure
    from ..plotting.runs import plot_token_heatmaps
    from ..analysis import run_summary
    from ..organism.model import PROMPT, organism_dir

    folder = organism_dir(organism)
    start = time.perf_counter()
    out = claim_output_dir(out, "demo")
    scene = None
    if (folder / "config.json").exists():
        from ..probe import Probe
        from ..organism.world import ShapesWorld

        probe = Probe.from_pretrained(folder, dtype="float32")
        scene = ShapesWorld(seed).scene(index)
        image, prompt, gen_kwargs = scene.image, PROMPT, {}
        params = sum(p.numel() for p in probe.model.parameters())
        kind = "LLaVA" if organism == "llava" else "Fuyu (one transformer reading image patches)"
        note = (
            f"The model organism: a {params / 1e6:.2f}M-parameter {kind} trained here on shapes-world captions only\n"
            "(no grounding supervision). Heatmaps: attention of the row that predicts each word, layer and head mean,\n"
            "minus the mean over the answer's tokens.\n\n"
        )
    elif organism != "llava":
        raise FileNotFoundError(f"no {organism} organism weights at {str(folder)!r}")
    else:
        from ..loading import load_probe
        from ..specs import load_spec

        probe = load_probe(load_spec(FALLBACK_PROBE))
        image, prompt = _fallback_image(), "describe the image"
        gen_kwargs = {"min_new_tokens": max_new_tokens}
        note = (
            "NOTE: no organism weights found; this demo runs a RANDOM-WEIGHT tiny LLaVA (real transformers classes,\n"
            "built in-process): it shows the pipeline end to end; its heatmaps carry no learned grounding.\n\n"
        )
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(out / "image.png", buf.getvalue())
    run = probe.generate(image, prompt, max_new_tokens=max_new_tokens, **gen_kwargs)
    run.save(out / "run")
    save_figure(plot_token_heatmaps(run)[0], out / "figure.png")
    summary = note + run_summary(run)
    written = [out / "image.png", out / "figure.png", out / "summary.txt", out / "run"]
    if scene is not None:
        summary += "\n".join(_pointing_lines(run, scene)) + "\n"
        summary += "\n".join(_emergence_lines(run, scene, out / "masks.png")) + "\n"
        written.insert(2, out / "masks.png")
    atomic_write_text(out / "summary.txt", summary)
    return summary, written, time.perf_counter() - start
