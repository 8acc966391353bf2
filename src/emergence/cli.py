"""The ``emergence`` command. Parses first, imports torch/transformers after (``--help`` stays fast)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

DEMO_PROBE = "tiny-random-llava"


def _parse_layers(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emergence",
        description="When does pixel-level grounding emerge in the text a multimodal LLM writes?",
    )
    parser.add_argument("--version", action="version", version=f"emergence {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="offline demo on the bundled model organism: caption a scene, write a figure")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--max-new-tokens", type=int, default=64)
    demo.add_argument("--seed", type=int, default=2024, help="shapes-world seed of the demo scene")
    demo.add_argument("--index", type=int, default=0, help="scene index in that world")

    run = sub.add_parser("run", help="generate for one image and prompt with attention capture; save the run")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--probe", help="probe spec name (see `emergence probes`) or path to a .toml spec")
    src.add_argument("--model", help="hub id or local model folder (no spec)")
    run.add_argument("--local-model", help="with --probe: load this local folder instead of the spec's hub id")
    run.add_argument("--image", required=True, help="image file")
    run.add_argument("--prompt", required=True, help="the question or instruction about the image")
    run.add_argument("--out", required=True, help="folder to save the run (attention.safetensors, run.json, image)")
    run.add_argument("--max-new-tokens", type=int, default=None)
    run.add_argument("--keep", choices=["heads", "layers", "mean"], default=None)
    run.add_argument("--convention", choices=["predicting", "self"], default="predicting")
    run.add_argument("--layers", default=None, help="comma-separated language-model layers (default all)")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")
    run.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    run.add_argument("--figure", action="store_true", help="also write figure.png with per-token heatmaps")

    sub.add_parser("probes", help="list the probe specs (supported checkpoint families)")

    org = sub.add_parser("organism", help="the model organism: evaluate or train it")
    org_sub = org.add_subparsers(dest="organism_command", metavar="ACTION", required=True)
    ev = org_sub.add_parser("eval", help="exact captions and attention pointing per concept category")
    ev.add_argument("--seed", type=int, default=7, help="world seed of the held-out scenes (training used 1000)")
    ev.add_argument("--n", type=int, default=500, help="number of scenes")
    ev.add_argument("--model", default=None, help="organism folder (default: the shipped one)")
    ev.add_argument("--out", default=None, help="write the results as JSON here")
    ev.add_argument("--no-per-head", action="store_true", help="skip the per layer x head table")
    tr = org_sub.add_parser("train", help="train an organism (same as python -m emergence.organism.train)")
    tr.add_argument("args", nargs=argparse.REMAINDER, help="arguments for emergence.organism.train")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "probes":
            return _cmd_probes()
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "run":
            return _cmd_run(args, parser)
        if args.command == "organism":
            return _cmd_organism(args)
    except Exception as exc:  # one clear line for known errors; tracebacks for bugs
        from .errors import EmergenceError

        if isinstance(exc, (EmergenceError, KeyError, FileNotFoundError)):
            print(f"emergence: error: {exc}", file=sys.stderr)
            return 2
        raise
    parser.error(f"unknown command {args.command!r}")
    return 2


def _cmd_probes() -> int:
    from .specs import list_specs

    specs = list_specs()
    width = max((len(n) for n in specs), default=4)
    for name, spec in sorted(specs.items()):
        print(f"{name:<{width}}  {spec.hf_id:<40}  {spec.architecture}")
    return 0


def _save_figure(run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import plot_token_heatmaps

    fig, _ = plot_token_heatmaps(run)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary(run) -> str:
    import numpy as np

    maps = run.token_map(None)
    maps = maps - maps.mean(0, keepdim=True)
    lines = [
        f"model: {run.meta.get('model')}  backend: {run.meta.get('backend')}",
        f"prompt: {run.prompt}",
        f"answer: {run.text}",
        f"attention: {tuple(run.attention.shape)} ({run.keep}), convention={run.convention}",
        f"layout: {run.layout}",
        "",
        "token | text | peak of the mean-subtracted map (x, y) in original pixels",
    ]
    for t, tok in enumerate(run.tokens):
        heat = run.layout.render(maps[t])
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        lines.append(f"{t:5d} | {tok!r:>14} | ({x}, {y})")
    return "\n".join(lines) + "\n"


def _cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .specs import ProbeSpec, load_spec

    if args.probe:
        spec = load_spec(args.probe)
    else:
        spec = ProbeSpec(name=str(args.model), hf_id=str(args.model), dtype=args.dtype or "bfloat16")
    if args.local_model and not args.probe:
        parser.error("--local-model goes with --probe")
    probe = spec.load(model=args.local_model, device=args.device, dtype=args.dtype)
    run = probe.generate(
        args.image,
        spec.format_prompt(args.prompt),
        max_new_tokens=args.max_new_tokens or spec.max_new_tokens,
        keep=args.keep or spec.keep,
        convention=args.convention,
        layers=_parse_layers(args.layers) or spec.layers,
    )
    out = Path(args.out)
    run.save(out)
    (out / "summary.txt").write_text(_summary(run), encoding="utf-8")
    if args.figure:
        _save_figure(run, out / "figure.png")
    print(run)
    print(f"saved to {out}/")
    return 0


def _cmd_organism(args: argparse.Namespace) -> int:
    if args.organism_command == "train":
        from .organism.train import main as train_main

        return train_main(args.args)
    from .organism.evaluate import evaluate, format_table, save
    from .organism.model import ORGANISM_DIR
    from .probe import Probe

    probe = Probe.from_pretrained(args.model or ORGANISM_DIR, dtype="float32")
    result = evaluate(probe, seed=args.seed, n=args.n, per_head=not args.no_per_head)
    print(format_table(result))
    if args.out:
        print(f"wrote {save(result, args.out)}")
    return 0


def _demo_image():
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (96, 64), (235, 235, 225))
    draw = ImageDraw.Draw(img)
    draw.ellipse((8, 14, 40, 46), fill=(220, 40, 40))
    draw.rectangle((58, 20, 86, 48), fill=(40, 70, 220))
    return img


def _organism_pointing(run, scene) -> list[str]:
    """Per caption word: its category and whether the mean-subtracted attention peak lies on its referent."""
    from .organism.evaluate import caption_words, word_pointing

    exact = caption_words(run)[1] == [w for w, _, _ in scene.word_referents()]
    lines = ["", f"reference caption: {scene.caption}", f"exact: {exact}", "",
             "word | category | attention peak on the word's referent?"]
    lines += [f"{wp.word:>10} | {wp.category:<10} | {'yes' if wp.hit else 'no'}" for wp in word_pointing(run, scene)]
    return lines


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from .organism.model import ORGANISM_DIR, PROMPT

    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scene = None
    if (ORGANISM_DIR / "config.json").exists():
        from .organism import ShapesWorld
        from .probe import Probe

        probe = Probe.from_pretrained(ORGANISM_DIR, dtype="float32")
        scene = ShapesWorld(args.seed).scene(args.index)
        image, prompt, gen_kwargs = scene.image, PROMPT, {}
        note = (
            "The model organism: a 2.5M-parameter LLaVA trained here on shapes-world captions only (no grounding\n"
            "supervision). Heatmaps: attention of the row that predicts each word, layer and head mean, minus the\n"
            "mean over the answer's tokens.\n\n"
        )
    else:
        from .specs import load_spec

        probe = load_spec(DEMO_PROBE).load()
        image, prompt = _demo_image(), "describe the image"
        gen_kwargs = {"min_new_tokens": args.max_new_tokens}
        note = (
            "NOTE: no organism weights found; this demo runs a RANDOM-WEIGHT tiny LLaVA (real transformers classes,\n"
            "built in-process): it shows the pipeline end to end; its heatmaps carry no learned grounding.\n\n"
        )
    image.save(out / "image.png")
    run = probe.generate(image, prompt, max_new_tokens=args.max_new_tokens, **gen_kwargs)
    run.save(out / "run")
    _save_figure(run, out / "figure.png")
    summary = note + _summary(run)
    if scene is not None:
        summary += "\n".join(_organism_pointing(run, scene)) + "\n"
    (out / "summary.txt").write_text(summary, encoding="utf-8")
    print(summary)
    print(f"wrote {out / 'figure.png'}, {out / 'summary.txt'} and {out / 'run'}/ in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
