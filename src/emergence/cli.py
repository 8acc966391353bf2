"""The ``emergence`` command. Parses first, imports torch/transformers after (``--help`` stays fast)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__

def _layers(text: str) -> list[int]:
    """``--layers 0,2,5``: a non-empty list of non-negative integers."""
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes comma-separated integers such as 0,2,5; got {text!r}") from None
    if not layers or min(layers) < 0:
        raise argparse.ArgumentTypeError(f"takes non-negative layer indices such as 0,2,5; got {text!r}")
    return layers


def _heads(text: str) -> list[tuple[int, int]]:
    """``--heads 14:3,15:7``: (layer, head) pairs."""
    try:
        pairs = [tuple(int(v) for v in item.split(":")) for item in text.split(",") if item.strip()]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"takes layer:head pairs such as 14:3,15:7; got {text!r}")
    if any(min(p) < 0 for p in pairs):
        raise argparse.ArgumentTypeError(f"takes non-negative layer:head pairs such as 14:3 (negative indices are not "
                                         f"counted from the end); got {text!r}")
    return [(p[0], p[1]) for p in pairs]


_MAP_METHOD_HELP = ("how a token's map is made: attention (default), relative, tam, gradient, or a method registered "
                    "with emergence.maps.register_method (docs/map_methods.md)")
_PROTOCOL_HELP = ("emergence (default): the first unit with IoU >= tau; pixfoundation: PixFoundation's when unit "
                  "(noun chunks, highest IoU, last of ties). docs/protocols.md")


def _number(text: str, cast: type, ok, expected: str):
    """``text`` as ``cast`` if ``ok(value)``, else an argparse error: ``expected`` and the value given."""
    try:
        value = cast(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "must be a positive integer")


def _tau(text: str) -> float:
    return _number(text, float, lambda v: 0 < v <= 1, "must lie in (0, 1] (an IoU threshold)")


def _map_method(text: str) -> str:
    """``--map-method NAME``: a registered map method (the registry loads torch; only when the option is parsed)."""
    from .analysis.methods import get_method

    try:
        return get_method(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _segmenter(text: str) -> str:
    kind = text.partition(":")[0]
    if kind not in ("classical", "sam2", "sam2-official"):
        raise argparse.ArgumentTypeError(f"unknown segmenter {text!r}: use classical, sam2, sam2:<hub id or folder> "
                                         "or sam2-official[:<id>]")
    return text


def _add_model_args(parser: argparse.ArgumentParser, required: bool) -> None:
    """--probe | --model (and --local-model); without either (when not required) the shipped model organism."""
    group = parser.add_mutually_exclusive_group(required=required)
    default = "" if required else " (default: the shipped model organism)"
    group.add_argument("--probe", help=f"probe spec name (see `emergence probes`) or path to a .toml spec{default}")
    group.add_argument("--model", help="hub id or local model folder (no spec)")
    parser.add_argument("--local-model", help="with --probe: load this local folder instead of the spec's hub id")


def _add_organism_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--organism", choices=["llava", "fuyu"], default="llava",
                        help="which shipped organism: llava (vision tower + decoder, default) | fuyu (one transformer "
                             "reading image patches); --model overrides it with a folder")


def _organism_model(args: argparse.Namespace) -> str:
    """The organism folder a study runs on: ``--model`` if given, else the shipped one of ``--organism``."""
    from .organism.model import organism_dir

    return str(args.model) if args.model else str(organism_dir(args.organism))


def _add_study_args(parser: argparse.ArgumentParser, seed: int, calib_seed: int, calib: str, k: str, figure: str,
                    n: int = 200) -> None:
    """The options of an organism study with test and calibration scenes."""
    parser.add_argument("--seed", type=int, default=seed, help="world seed of the test scenes (training used 1000)")
    parser.add_argument("--n", type=_positive_int, default=n, help="number of test scenes")
    parser.add_argument("--calib-seed", type=int, default=calib_seed, help=f"world seed of the scenes that {calib}")
    parser.add_argument("--calib-n", type=_positive_int, default=100, help="number of calibration scenes")
    parser.add_argument("--k", type=_positive_int, default=3, help=k)
    parser.add_argument("--model", default=None, help="organism folder (default: the shipped one)")
    _add_organism_arg(parser)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--figure", default=None, help=f"write {figure} (PNG) here")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emergence",
        description="When does pixel-level grounding emerge in the text a multimodal LLM writes?",
    )
    parser.add_argument("--version", action="version", version=f"emergence {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="offline demo on the bundled model organism: caption a scene, write a figure")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--max-new-tokens", type=_positive_int, default=64)
    demo.add_argument("--seed", type=int, default=2024, help="shapes-world seed of the demo scene")
    demo.add_argument("--index", type=int, default=0, help="scene index in that world")
    demo.add_argument("--organism", choices=["llava", "fuyu"], default="llava",
                      help="llava (default) | fuyu: the single-transformer organism")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="generate for one image and prompt with attention capture; save the run")
    _add_model_args(run, required=True)
    run.add_argument("--image", required=True, help="image file")
    run.add_argument("--prompt", required=True, help="the question or instruction about the image")
    run.add_argument("--out", required=True, help="folder to save the run (attention.safetensors, run.json, image)")
    run.add_argument("--max-new-tokens", type=_positive_int, default=None)
    run.add_argument("--keep", choices=["heads", "layers", "mean"], default=None)
    run.add_argument("--convention", choices=["predicting", "self"], default="predicting")
    run.add_argument("--layers", type=_layers, default=None, help="comma-separated language-model layers (default all)")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default cpu)")
    run.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    run.add_argument("--figure", action="store_true", help="also write figure.png with per-token heatmaps")
    run.set_defaults(func=_cmd_run)

    sub.add_parser("probes", help="list the probe specs (supported checkpoint families)").set_defaults(func=_cmd_probes)

    an = sub.add_parser("analyze", help="generate for one image and prompt, then locate where grounding emerges")
    _add_model_args(an, required=False)
    an.add_argument("--image", required=True, help="image file")
    an.add_argument("--prompt", required=True, help="the question or instruction about the image")
    an.add_argument("--gt-mask", default=None, help="ground-truth mask image (nonzero = object), at the image's size")
    an.add_argument("--segmenter", type=_segmenter, default="sam2",
                    help="sam2 | sam2:<hub id or folder> | sam2-official[:<id>] | classical (default sam2)")
    an.add_argument("--units", choices=["tokens", "words", "phrases"], default=None,
                    help="default: the protocol's (words; pixfoundation: phrases)")
    an.add_argument("--protocol", choices=["emergence", "pixfoundation"], default="emergence",
                    help=_PROTOCOL_HELP)
    an.add_argument("--tau", type=_tau, default=0.5, help="IoU threshold of emergence (default 0.5)")
    an.add_argument("--layers", type=_layers, default=None, help="comma-separated layers to average (default all)")
    an.add_argument("--map-method", type=_map_method, default="attention", help=_MAP_METHOD_HELP)
    an.add_argument("--heads", type=_heads, default=None,
                    help="layer:head pairs to average, e.g. localization heads (default every head)")
    an.add_argument("--methods-figure", action="store_true",
                    help="also record every map method and write methods.png (the answer's words under each)")
    an.add_argument("--normalise", choices=["mean_subtract", "none", "minmax"], default=None,
                    help="default: the method's own (mean_subtract for attention, none for the others)")
    an.add_argument("--max-new-tokens", type=_positive_int, default=None)
    an.add_argument("--device", default=None, help="cpu, cuda, ... (default cpu)")
    an.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    an.add_argument("--out", default="analysis_out", help="folder for report.png, table.csv, summary.json, the run")
    an.set_defaults(func=_cmd_analyze)

    sw = sub.add_parser("sweep", help="run the analyzer over a benchmark (resumable; local or Ray)")
    _add_model_args(sw, required=False)
    sw.add_argument("--dataset", required=True,
                    help="pixmmvp | pixcvbench | refcoco | refcoco+ | refcocog | coco | jsonl | shapes")
    sw.add_argument("--root", default=None, help="annotation folder or file of the dataset")
    sw.add_argument("--images", default=None, help="image folder (pixcvbench: --ade20k-images / --coco-images)")
    sw.add_argument("--ade20k-images", default=None)
    sw.add_argument("--coco-images", default=None)
    sw.add_argument("--split", default=None, help="refcoco split (val, testA, ...) / pixcvbench split (ADE20K, COCO)")
    sw.add_argument("--n", type=_positive_int, default=None, help="only the first N samples (shapes: number of scenes)")
    sw.add_argument("--shapes-seed", type=int, default=11, help="world seed of the shapes dataset")
    sw.add_argument("--out", required=True, help="output folder (a rerun with the same options resumes)")
    sw.add_argument("--templates", default="describe", help="comma-separated grounding templates (or 'all')")
    sw.add_argument("--templates-dir", default=None, help="PixFoundation's data/pixmmvp folder for pf-* templates")
    sw.add_argument("--tasks", default="grounding", help="grounding, vqa or grounding,vqa")
    sw.add_argument("--vqa-templates", default="plain")
    sw.add_argument("--segmenter", type=_segmenter, default="classical", help="classical (default) | sam2[:<id or folder>] | sam2-official")
    sw.add_argument("--units", choices=["tokens", "words", "phrases"], default=None,
                    help="default: the protocol's (words; pixfoundation: phrases)")
    sw.add_argument("--protocol", choices=["emergence", "pixfoundation"], default="emergence",
                    help=_PROTOCOL_HELP)
    sw.add_argument("--tau", type=_tau, default=0.5)
    sw.add_argument("--max-new-tokens", type=_positive_int, default=64)
    sw.add_argument("--map-method", type=_map_method, default="attention", help=_MAP_METHOD_HELP)
    sw.add_argument("--heads", type=_heads, default=None, help="layer:head pairs to average (default every head)")
    sw.add_argument("--store", choices=["layers", "mean", "none"], default="layers", help="attention kept per item")
    sw.add_argument("--chunk-size", type=_positive_int, default=8)
    sw.add_argument("--batch-size", type=_positive_int, default=1,
                    help="items generated at once (families that batch exactly; recorded: a resume keeps it)")
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--threads", type=_positive_int, default=None,
                    help="torch CPU threads per worker (default: this process's; a resume uses the recorded count)")
    sw.add_argument("--allow-env-change", action="store_true",
                    help="resume a sweep in another environment (versions, device, CPU) instead of refusing")
    sw.add_argument("--backend", choices=["local", "ray"], default="local")
    sw.add_argument("--workers", type=_positive_int, default=2, help="Ray actors (one GPU each when there are GPUs)")
    sw.add_argument("--device", default=None)
    sw.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    sw.set_defaults(func=_cmd_sweep)

    gc = sub.add_parser("gcg", help="grounded conversation generation on a GranD-f GCG split: phrase masks from the "
                                    "pipeline, mask AP50 / mIoU / mask recall")
    _add_model_args(gc, required=False)
    gc.add_argument("--root", required=True, help="folder with {split}_gcg_coco_mask_gt.json and _caption_gt.json")
    gc.add_argument("--images", required=True, help="image folder of the split")
    gc.add_argument("--split", choices=["val", "test"], default="test")
    gc.add_argument("--prompt", default=None, help="caption prompt (default: the organism's, else "
                                                    "'Describe the image in detail.')")
    gc.add_argument("--units", choices=["tokens", "words", "phrases"], default="phrases",
                    help="phrase units (spaCy; words when it is absent)")
    gc.add_argument("--map-method", type=_map_method, default="attention", help=_MAP_METHOD_HELP)
    gc.add_argument("--segmenter", type=_segmenter, default="classical")
    gc.add_argument("--n", type=_positive_int, default=None, help="only the first N images")
    gc.add_argument("--max-new-tokens", type=_positive_int, default=128)
    gc.add_argument("--device", default=None)
    gc.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    gc.add_argument("--out", default=None, help="write the metrics as JSON here")
    gc.set_defaults(func=_cmd_gcg)

    vw = sub.add_parser("view", help="write a self-contained HTML viewer of a saved run, an analysis folder, the "
                                     "demo's output or a sweep")
    vw.add_argument("path", help="a run folder (run.json), an analysis folder (report.json), the demo's output, or a "
                                 "sweep folder")
    vw.add_argument("--out", default=None, help="the page to write (default: PATH/viewer.html; a sweep: "
                                                "PATH/report/index.html)")
    vw.add_argument("--max-side", type=_positive_int, default=512, help="longer side of the drawn grid (pixels)")
    vw.add_argument("--budget-mb", type=float, default=32.0,
                    help="most per-head attention to embed, MB of float16 (else layer means; default 32)")
    vw.add_argument("--samples", type=_positive_int, default=20,
                    help="a sweep: write the viewers of this many samples (recomputed with the sweep's model)")
    vw.set_defaults(func=_cmd_view)

    rp = sub.add_parser("report", help="figures and a Markdown summary of a sweep folder")
    rp.add_argument("out", help="the sweep's output folder")
    rp.add_argument("--html", action="store_true",
                    help="also write report/index.html: the figures, the samples, viewers of the first samples")
    rp.add_argument("--html-samples", type=int, default=20,
                    help="with --html: how many grounding items get a viewer (recomputed with the sweep's model)")
    rp.add_argument("--protocol", choices=["emergence", "pixfoundation"], default=None,
                    help="refuse unless the sweep was made under this protocol (default: the sweep's own)")
    rp.set_defaults(func=_cmd_report)

    org = sub.add_parser("organism", help="the model organism: evaluate or train it")
    org_sub = org.add_subparsers(dest="organism_command", metavar="ACTION", required=True)
    ev = org_sub.add_parser("eval", help="exact captions and attention pointing per concept category")
    ev.add_argument("--seed", type=int, default=7, help="world seed of the held-out scenes (training used 1000)")
    ev.add_argument("--n", type=_positive_int, default=500, help="number of scenes")
    ev.add_argument("--model", default=None, help="organism folder (default: the shipped one)")
    _add_organism_arg(ev)
    ev.add_argument("--out", default=None, help="write the results as JSON here")
    ev.add_argument("--no-per-head", action="store_true", help="skip the per layer x head table")
    ev.add_argument("--normalise", default="mean_subtract", choices=["mean_subtract", "none", "minmax"],
                    help="how each map is normalised across the answer before its argmax: mean_subtract (default, "
                         "minus the answer's mean map) | none | minmax (the same hits as none)")
    ev.set_defaults(func=_cmd_organism_eval)
    gr = org_sub.add_parser("ground", help="the analyzer on organism scenes (referring expressions as prompts)")
    gr.add_argument("--seed", type=int, default=11, help="world seed of the scenes (training used 1000)")
    gr.add_argument("--n", type=_positive_int, default=200, help="number of scenes")
    gr.add_argument("--segmenter", type=_segmenter, default="classical", help="classical (default) | sam2[:<folder>] | sam2-official")
    gr.add_argument("--model", default=None, help="organism folder (default: the shipped one)")
    _add_organism_arg(gr)
    gr.add_argument("--protocol", choices=["emergence", "pixfoundation"], default="emergence",
                    help="emergence (words, first with IoU >= 0.5) | pixfoundation (noun chunks by the world's "
                         "grammar, PixFoundation's when unit)")
    gr.add_argument("--out", default=None, help="write the results as JSON here")
    gr.set_defaults(func=_cmd_organism_ground)
    ca = org_sub.add_parser("causal", help="causal checks: ablate top / random / bottom localization heads, knock "
                                           "out the visual tokens inside / outside the objects")
    _add_study_args(ca, seed=31, calib_seed=29, calib="rank the heads", k="heads per ablation",
                    figure="the report figure")
    ca.set_defaults(func=_cmd_organism_causal)
    cm = org_sub.add_parser("compare-maps", help="every map method (attention, relative, TAM, gradient, localization "
                                                 "heads, head scores) on the same scenes")
    _add_study_args(cm, seed=41, calib_seed=43, calib="select the heads", k="heads selected by each head criterion",
                    figure="the methods figure", n=300)
    cm.add_argument("--segmenter", type=_segmenter, default="classical")
    cm.set_defaults(func=_cmd_organism_compare_maps)
    se = org_sub.add_parser("seeds", help="every training seed of both organism designs on the same held-out "
                                          "scenes: mean and spread per design, side by side")
    se.add_argument("--llava", nargs="+", default=None, metavar="FOLDER",
                    help="LLaVA organism folders, one per training seed (default: the shipped one)")
    se.add_argument("--fuyu", nargs="+", default=None, metavar="FOLDER",
                    help="Fuyu organism folders, one per training seed (default: the shipped one)")
    se.add_argument("--eval-seeds", type=int, nargs="+", default=[7, 11], help="world seeds for captions and pointing")
    se.add_argument("--eval-n", type=_positive_int, default=300, help="scenes per evaluation world seed")
    se.add_argument("--ground-seed", type=int, default=2718)
    se.add_argument("--ground-n", type=_positive_int, default=200)
    se.add_argument("--causal-seed", type=int, default=31)
    se.add_argument("--causal-n", type=_positive_int, default=100)
    se.add_argument("--out", default=None, help="write the results as JSON here (rewritten after each model; a rerun "
                                                "with the same settings resumes from it)")
    se.add_argument("--figure", default=None, help="write the side-by-side figure (PNG) here")
    se.add_argument("--controls", action="store_true",
                    help="also measure each design's untrained initialisation (reported beside, not in the mean)")
    se.set_defaults(func=_cmd_organism_seeds)
    gs = org_sub.add_parser("gcg-set", help="write organism scenes as a GCG split in GranD-f's layout")
    gs.add_argument("--out", required=True, help="new or empty folder")
    gs.add_argument("--seed", type=int, default=47, help="world seed (training used 1000)")
    gs.add_argument("--n", type=_positive_int, default=100)
    gs.add_argument("--split", choices=["val", "test"], default="test")
    gs.set_defaults(func=_cmd_organism_gcg_set)
    tr = org_sub.add_parser("train", help="train an organism (same as python -m emergence.organism.train)")
    tr.add_argument("args", nargs=argparse.REMAINDER, help="arguments for emergence.organism.train")
    tr.set_defaults(func=_cmd_organism_train)
    return parser


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--heads -1:0`` -> ``--heads=-1:0``: argparse reads a value that starts with ``-`` (and is not a plain
    number) as the next option and says only "expected one argument"; attached, it reaches the option's own check,
    which names the value."""
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if (item.startswith("--") and "=" not in item and i + 1 < len(items)
                and len(items[i + 1]) > 1 and items[i + 1][0] == "-" and items[i + 1][1].isdigit()):
            out.append(f"{item}={items[i + 1]}")
            i += 2
            continue
        out.append(item)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_attach_negative_values(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 0
    if getattr(args, "local_model", None) and not getattr(args, "probe", None):
        parser.error("--local-model goes with --probe (it replaces the spec's hub id)")
    try:
        if args.command in ("gcg", "organism") and getattr(args, "organism_command", "") != "gcg-set":
            _check_output_files(args)  # --out / --figure FILE: refuse a file the toolkit did not write, before any work
        return args.func(args, parser)
    except KeyboardInterrupt:
        print("emergence: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line; EMERGENCE_DEBUG=1 shows the traceback
        import os

        if os.environ.get("EMERGENCE_DEBUG"):
            raise
        print(f"emergence: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """The error as one line: our own errors as they are; others with their type and the debugging hint."""
    from .errors import EmergenceError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.strerror}: {exc.filename!r}"
    if isinstance(exc, KeyError):
        text = f"missing key {exc}"
    if isinstance(exc, (EmergenceError, ValueError, OSError)):
        return text
    return f"{type(exc).__name__}: {text} (unexpected; rerun with EMERGENCE_DEBUG=1 for the traceback and report it)"


def _cmd_probes(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .adapters.support import text_table
    from .specs import list_specs

    print("Model families (support: exact geometry / attention only / refused with the reason):\n")
    print(text_table())
    specs = list_specs()
    width = max((len(n) for n in specs), default=4)
    print("Probe specs (probes/*.toml: checkpoint, dtype, backend, prompt template):\n")
    for name, spec in sorted(specs.items()):
        print(f"{name:<{width}}  {spec.hf_id:<40}  {spec.architecture}")
    return 0


def _save_figure(run, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .plotting import plot_token_heatmaps, save_figure

    save_figure(plot_token_heatmaps(run)[0], path)


def _cmd_run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .files import check_output_dir, output_lock

    check_output_dir(args.out, "run")  # refuse before the model is loaded
    with output_lock(args.out):  # one writer per folder, from here to the save
        return _run_locked(args)


def _run_locked(args: argparse.Namespace) -> int:
    from .analysis import run_summary
    from .files import atomic_write_text, check_output_dir
    from .loading import resolve_probe

    check_output_dir(args.out, "run")  # again under the lock: what another process left may have changed it
    probe, spec = resolve_probe(args.probe, args.model, args.local_model, device=args.device, dtype=args.dtype)
    run = probe.generate(
        args.image,
        spec.format_prompt(args.prompt),
        max_new_tokens=args.max_new_tokens or spec.max_new_tokens,
        keep=args.keep or spec.keep,
        convention=args.convention,
        layers=args.layers or spec.layers,
    )
    out = run.save(args.out)
    atomic_write_text(out / "summary.txt", run_summary(run))
    if args.figure:
        _save_figure(run, out / "figure.png")
    print(run)
    print(f"saved to {out}/")
    return 0


def _check_output_files(args: argparse.Namespace) -> None:
    """Refuse ``--out`` / ``--figure`` FILE paths that would replace a file the toolkit did not write, before any
    work (folder outputs are claimed by their commands)."""
    from .files import check_output_file

    for name in ("out", "figure"):
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            check_output_file(value)


def _cmd_organism_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .organism.train import main as train_main

    return train_main(args.args)


def _cmd_organism_causal(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .studies.causal import evaluate_causal, format_causal, plot_causal, save_causal

    result = evaluate_causal(seed=args.seed, n=args.n, calib_seed=args.calib_seed, calib_n=args.calib_n, k=args.k,
                             model=_organism_model(args), progress=True)
    print(format_causal(result))
    if args.out:
        print(f"wrote {save_causal(result, args.out)}")
    if args.figure:
        print(f"wrote {plot_causal(result, args.figure)}")
    return 0


def _cmd_organism_seeds(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .organism.model import organism_dir
    from .studies.seeds import format_seeds, plot_seeds, study_seeds

    designs = {d: getattr(args, d) or [str(organism_dir(d))] for d in ("llava", "fuyu")}
    study = study_seeds(designs, eval_seeds=args.eval_seeds, eval_n=args.eval_n, ground_seed=args.ground_seed,
                        ground_n=args.ground_n, causal_seed=args.causal_seed, causal_n=args.causal_n, out=args.out,
                        progress=True, controls=args.controls)
    print(format_seeds(study))
    if args.out:
        print(f"wrote {args.out}")
    if args.figure:
        print(f"wrote {plot_seeds(study, args.figure)}")
    return 0


def _cmd_organism_gcg_set(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .datasets.gcg import write_gcg
    from .organism.reading import gcg_records

    root = write_gcg(args.out, args.split, gcg_records(args.seed, args.n))
    print(f"wrote {args.n} scenes to {root}/ ({args.split}_gcg_coco_mask_gt.json, "
          f"{args.split}_gcg_coco_caption_gt.json, images/)")
    return 0


def _cmd_organism_compare_maps(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .studies.compare import compare_maps, format_comparison, save_comparison

    comparison = compare_maps(seed=args.seed, n=args.n, calib_seed=args.calib_seed, calib_n=args.calib_n,
                              k=args.k, segmenter=args.segmenter, model=_organism_model(args), progress=True,
                              figure=args.figure)
    print(format_comparison(comparison))
    if args.out:
        print(f"wrote {save_comparison(comparison, args.out)}")
    if args.figure:
        print(f"wrote {args.figure}")
    return 0


def _cmd_organism_ground(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .studies.grounding import evaluate_grounding, format_grounding_result, save_grounding

    grounding = evaluate_grounding(seed=args.seed, n=args.n, segmenter=args.segmenter, model=_organism_model(args),
                                   progress=True, protocol=args.protocol)
    print(format_grounding_result(grounding))
    if args.out:
        print(f"wrote {save_grounding(grounding, args.out)}")
    return 0


def _cmd_organism_eval(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .probe import Probe
    from .studies.evaluate import evaluate, format_table, save

    probe = Probe.from_pretrained(_organism_model(args), dtype="float32")
    result = evaluate(probe, seed=args.seed, n=args.n, per_head=not args.no_per_head, normalise=args.normalise)
    print(format_table(result))
    if args.out:
        print(f"wrote {save(result, args.out)}")
    return 0


def _cmd_analyze(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import matplotlib

    matplotlib.use("Agg")

    from .files import check_output_dir, output_lock
    from .images import load_image, load_mask

    if args.protocol == "pixfoundation" and args.units not in (None, "phrases"):
        parser.error(f"--protocol pixfoundation scores noun chunks; --units {args.units} belongs to another protocol")
    if args.protocol == "pixfoundation":
        from .analysis.grouping import english_pipeline

        english_pipeline()  # noun chunks: without a parser the analysis would fail after generating
    out = check_output_dir(args.out, "analysis")  # before any model loads
    image = load_image(args.image)  # bad inputs fail before the model loads
    gt = load_mask(args.gt_mask, (image.height, image.width)) if args.gt_mask else None
    with output_lock(out):  # one writer per folder, from here to the save
        check_output_dir(out, "analysis")  # again under the lock
        return _analyze_locked(args, out, image, gt)


def _analyze_locked(args: argparse.Namespace, out: Path, image: object, gt: object) -> int:
    from .analysis import analyze
    from .loading import resolve_probe

    probe, spec = resolve_probe(args.probe, args.model, args.local_model, device=args.device, dtype=args.dtype)
    prompt = spec.format_prompt(args.prompt) if spec else args.prompt
    max_new = args.max_new_tokens or (spec.max_new_tokens if spec else 64)
    probe.check_selection(args.layers, args.heads)  # before generating
    methods = [args.map_method]
    if args.methods_figure:
        from .analysis.methods import recordable_methods

        methods = recordable_methods(probe)
    run = probe.generate(image, prompt, max_new_tokens=max_new, methods=methods)
    report = analyze(run, gt_mask=gt, segmenter=args.segmenter, units=args.units, protocol=args.protocol,
                     tau=args.tau, layers=args.layers, normalise=args.normalise, method=args.map_method,
                     heads=args.heads)
    report.save(out)
    if args.methods_figure:
        from .plotting import plot_methods, save_figure

        print(f"wrote {save_figure(plot_methods(run), out / 'methods.png', dpi=100)}")
    print(f"answer: {run.text}")
    print(report)
    cols = [c for c in ("text", "position", "category", "point_x", "point_y", "iou_chosen", "iou") if c in report.table]
    print(report.table[cols].round(3).to_string())
    print(f"wrote {out / 'report.png'}, {out / 'table.csv'}, {out / 'summary.json'} and {out / 'run'}/")
    return 0


def _cmd_sweep(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .datasets import dataset_options
    from .datasets.templates import expand_templates
    from .sweep import SweepConfig, run_sweep

    kwargs, limit = dataset_options(args.dataset, n=args.n, shapes_seed=args.shapes_seed, split=args.split,
                                    ade20k_images=args.ade20k_images, coco_images=args.coco_images)
    templates = expand_templates(args.templates.split(","), args.templates_dir)
    config = SweepConfig(
        out=args.out, dataset=args.dataset, root=args.root, images=args.images, dataset_kwargs=kwargs,
        probe=args.probe, model=args.model, local_model=args.local_model, device=args.device, dtype=args.dtype,
        templates=tuple(templates), vqa_templates=tuple(args.vqa_templates.split(",")),
        templates_dir=args.templates_dir, tasks=tuple(args.tasks.split(",")), limit=limit,
        segmenter=args.segmenter, units=args.units, protocol=args.protocol, tau=args.tau,
        max_new_tokens=args.max_new_tokens,
        store=args.store, chunk_size=args.chunk_size, seed=args.seed, threads=args.threads,
        map_method=args.map_method, heads=None if args.heads is None else tuple(args.heads),
        batch_size=args.batch_size,
    )
    store = run_sweep(config, backend=args.backend, workers=args.workers, allow_env_change=args.allow_env_change)
    samples = store.table("samples")
    failed = int(samples["error"].notna().sum()) if "error" in samples else 0
    if len(samples) and failed == len(samples):
        first = samples["error"].dropna().iloc[0]
        print(f"emergence: error: every one of the {len(samples)} items failed, nothing succeeded (first: {first}); "
              f"the error rows are in {store.out}/samples/", file=sys.stderr)
        return 1
    print(f"{len(samples)} items in {store.out}/ (samples/, units/, maps/, manifest.json)"
          f"{f', {failed} of them failed (error rows)' if failed else ''}; "
          f"`emergence report {store.out}` draws the figures")
    return 0


def _cmd_gcg(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import json

    from .datasets.gcg import load_gcg
    from .sweep.gcg import caption_prompt, evaluate_gcg, predict_gcg
    from .loading import resolve_probe

    truth = load_gcg(args.root, args.split, images=args.images)[: args.n]  # bad folders fail before the model loads
    probe, spec = resolve_probe(args.probe, args.model, args.local_model, device=args.device, dtype=args.dtype)
    prompt = caption_prompt(args.prompt, spec, organism=args.probe is None and args.model is None)
    predictions = predict_gcg(probe, truth, prompt=prompt, segmenter=args.segmenter, units=args.units,
                              method=args.map_method, max_new_tokens=args.max_new_tokens)
    metrics = evaluate_gcg(truth, predictions)
    used = sorted({p.unit_kind for p in predictions.values()})  # phrases may have fallen back to words
    metrics.update(split=args.split, units=",".join(used) or args.units, map_method=args.map_method,
                   segmenter=args.segmenter, prompt=prompt)
    print(json.dumps(metrics, indent=1))
    if args.out:
        from .files import write_result_json

        print(f"wrote {write_result_json(args.out, metrics)}")
    return 0


def _cmd_view(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .plotting.viewer import viewer_source

    kind, folder = viewer_source(args.path)
    if kind == "sweep":
        from .sweep.html import write_sweep_html

        page = write_sweep_html(folder, page=args.out, samples=args.samples, max_side=args.max_side,
                                budget_mb=args.budget_mb)
        print(f"wrote {page}")
        return 0
    out = Path(args.out) if args.out else Path(args.path) / "viewer.html"
    if kind == "report":
        from .analysis import EmergenceReport

        page = EmergenceReport.load(folder).to_html(out, max_side=args.max_side, budget_mb=args.budget_mb)
    else:
        from .analysis.methods import recorded_maps
        from .run import ProbeRun

        run = ProbeRun.load(folder)
        page = run.to_html(out, max_side=args.max_side, budget_mb=args.budget_mb, maps=recorded_maps(run))
    print(f"wrote {page} ({page.stat().st_size / 2**20:.2f} MB)")
    return 0


def _cmd_report(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .sweep import load_sweep, make_report
    from .sweep.report import sweep_status
    from .sweep.store import SweepStore

    path = make_report(args.out, protocol=args.protocol)
    samples, _, manifest = load_sweep(args.out)
    status = sweep_status(SweepStore(args.out), manifest, samples)
    if not status["finished"]:
        print(f"warning: the sweep is UNFINISHED ({status['items_done']} of {status['items']} items); the report "
              "covers only those", file=sys.stderr)
    if status["errors"]:
        print(f"warning: {status['errors']} items failed (listed in the report)", file=sys.stderr)
    print(f"wrote {path} and its figures")
    if args.html:
        from .sweep.html import write_sweep_html

        print(f"wrote {write_sweep_html(args.out, samples=max(0, args.html_samples))}")
    return 0


def _cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .studies.demo import run_demo

    summary, written, seconds = run_demo(args.out, seed=args.seed, index=args.index,
                                         max_new_tokens=args.max_new_tokens, organism=args.organism)
    print(summary)
    print(f"wrote {', '.join(str(p) for p in written)} in {seconds:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
