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

    demo = sub.add_parser("demo", help="offline demo on a bundled model: generate with capture, write a figure")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--max-new-tokens", type=int, default=10)

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


def _demo_image():
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (96, 64), (235, 235, 225))
    draw = ImageDraw.Draw(img)
    draw.ellipse((8, 14, 40, 46), fill=(220, 40, 40))
    draw.rectangle((58, 20, 86, 48), fill=(40, 70, 220))
    return img


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from .specs import load_spec

    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = load_spec(DEMO_PROBE)
    probe = spec.load()
    image = _demo_image()
    image.save(out / "image.png")
    run = probe.generate(image, "describe the image", max_new_tokens=args.max_new_tokens,
                         min_new_tokens=args.max_new_tokens)
    run.save(out / "run")
    _save_figure(run, out / "figure.png")
    note = (
        "NOTE: this demo runs a RANDOM-WEIGHT tiny LLaVA (real transformers classes, built in-process, no download):\n"
        "it shows the capture, layout and rendering pipeline end to end; its heatmaps carry no learned grounding.\n"
        "The trained model organism replaces it as the demo's default.\n\n"
    )
    summary = note + _summary(run)
    (out / "summary.txt").write_text(summary, encoding="utf-8")
    print(summary)
    print(f"wrote {out / 'figure.png'}, {out / 'summary.txt'} and {out / 'run'}/ in {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
