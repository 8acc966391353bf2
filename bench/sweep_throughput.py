"""Throughput of a grounding sweep at batch 1, 4, 8, 16 (samples per hour), in one run.

    python bench/sweep_throughput.py                       # CPU: the LLaVA-shaped "small" config and the organism
    python bench/sweep_throughput.py --device cuda --config llava-1.5-7b --dtype bfloat16 --items 64

Per item what a sweep's worker does: generate with capture (``Probe.generate_batch``, ``batch`` items at a time;
``generate`` at batch 1), then the analyzer (classical segmenter) on each run. The LLaVA-shaped configs are random
init of real sizes (bench/capture_overhead.py's), with a real LLaVA processor (224 or 336 px, word-level tokenizer);
EOS is suppressed so every item writes ``--new-tokens`` tokens. The organism is the shipped model on shapes scenes,
through ``run_sweep`` itself (``SweepConfig.batch_size``), so store writes are counted too. Also reported: the peak
resident memory above the start per item (CPU) / peak allocated (CUDA), and whether every item of a batched run
equals its batch-of-one run (ids identical; largest attention difference). A second table splits the LLaVA-shaped
items' seconds into prefill, decode and analysis, and gives the ceiling they set on batching: the speed-up over batch
1 if every decode step were free.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def llava_probe(config_name: str, device: str, dtype_name: str):
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    from capture_overhead import CONFIGS
    from emergence import Probe
    from emergence.testing.common import make_tokenizer
    from emergence.testing.llava import LLAVA_TEMPLATE

    spec = CONFIGS[config_name]
    tokenizer = make_tokenizer()
    size, patch = spec["vision"]["image_size"], spec["vision"]["patch_size"]
    text = dict(spec["text"], vocab_size=len(tokenizer))
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**spec["vision"], projection_dim=spec["vision"]["hidden_size"]),
        text_config=LlamaConfig(**text, max_position_embeddings=4096),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(getattr(torch, dtype_name)).eval()
    model.set_attn_implementation("sdpa")
    processor = LlavaProcessor(
        image_processor=LlavaImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
        num_additional_image_tokens=1)
    return Probe(model, processor), sum(p.numel() for p in model.parameters())


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _llava_child(args, batch: int, queue) -> None:
    """One batch size in a fresh process: time, peak memory above the start, ids and attention of every item."""
    import torch

    from emergence import analyze
    from emergence.organism import ShapesWorld

    torch.set_num_threads(args.threads)
    probe, n_params = llava_probe(args.config, args.device, args.dtype)
    world = ShapesWorld(3)
    scenes = [world.scene(i) for i in range(args.items)]
    big = [s.image.resize((s.image.width * 4, s.image.height * 4)) for s in scenes]
    masks = [s.referring_expressions()[0].mask.repeat(4, 0).repeat(4, 1) for s in scenes]
    items = [(im, f"describe {s.referring_expressions()[0].text}") for im, s in zip(big, scenes)]
    kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    probe.generate_batch(items[:batch], max_new_tokens=2) if batch > 1 else probe.generate(*items[0], max_new_tokens=2)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        start = _status_kib("VmRSS") * 1024
    def sync() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def generate(group, **gen_kw):
        return probe.generate_batch(group, **gen_kw) if batch > 1 else [probe.generate(*group[0], **gen_kw)]

    t0 = sync()
    runs, gen_s, analyze_s = [], 0.0, 0.0
    for k in range(0, len(items), batch):
        t = sync()
        got = generate(items[k: k + batch], **kw)
        gen_s += sync() - t
        t = sync()
        for run, mask in zip(got, masks[k: k + batch]):
            analyze(run, mask, segmenter="classical", units="words")
        analyze_s += sync() - t
        runs += got
    seconds = sync() - t0
    peak = (torch.cuda.max_memory_allocated() if cuda else _status_kib("VmHWM") * 1024) - start
    t = sync()  # where the time goes: the prefill alone (one new token), batched the same way; not in `seconds`
    for k in range(0, len(items), batch):
        generate(items[k: k + batch], max_new_tokens=1)
    prefill_s = sync() - t
    queue.put({"seconds": seconds, "peak": peak, "params": n_params, "ids": [r.token_ids.tolist() for r in runs],
               "attention": [r.attention.numpy() for r in runs], "generate_s": gen_s, "analyze_s": analyze_s,
               "prefill_s": prefill_s})


def llava_rows(args) -> list[dict]:
    import multiprocessing as mp

    import numpy as np

    ctx = mp.get_context("spawn")
    results = {}
    for batch in args.batches:
        queue = ctx.Queue()
        child = ctx.Process(target=_llava_child, args=(args, batch, queue))
        child.start()
        results[batch] = queue.get()
        child.join()
    reference = results[args.batches[0]]
    rows = []
    for batch, r in results.items():
        same = r["ids"] == reference["ids"]
        diff = max(float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max())
                   for a, b in zip(r["attention"], reference["attention"])) if same else float("nan")
        rows.append({"setting": f"{args.config} ({r['params'] / 1e6:.0f}M params, {args.dtype}, {args.device})",
                     "batch": batch, "seconds": r["seconds"], "per_hour": args.items / r["seconds"] * 3600,
                     "peak_mib": r["peak"] / 2**20, "per_item_mib": r["peak"] / 2**20 / batch, "ids_identical": same,
                     "max_diff": diff, "phases": {k: r[k] / args.items for k in ("prefill_s", "generate_s",
                                                                                   "analyze_s")}})
    return rows


def print_gemm(config_name: str, device: str, dtype_name: str, batches: list[int]) -> None:
    """What one decode step's matrix products cost with ``batch`` rows against one row: the decoder's MLP weight
    (``intermediate x hidden``) applied to ``[batch, hidden]``, median of 50 calls. Decoding amortises over a batch at
    most by ``batch / cost ratio``."""
    import statistics

    import torch

    from capture_overhead import CONFIGS

    text = CONFIGS[config_name]["text"]
    dtype = getattr(torch, dtype_name)
    weight = torch.randn(text["intermediate_size"], text["hidden_size"], device=device, dtype=dtype)
    cost = {}
    for rows in sorted({1, *batches}):
        x = torch.randn(rows, text["hidden_size"], device=device, dtype=dtype)
        times = []
        for i in range(60):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            torch.nn.functional.linear(x, weight)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 10:
                times.append(time.perf_counter() - t)
        cost[rows] = statistics.median(times)
    print()
    print(f"# one decode step's matrix product ({text['intermediate_size']} x {text['hidden_size']} weight, {dtype_name},"
          f" {device}): cost with N rows / cost with 1 row, and the most a batch can amortise decoding (N / ratio)")
    print("| rows | ms | cost / 1 row | N / ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for rows, t in cost.items():
        print(f"| {rows} | {1000 * t:.3f} | {t / cost[1]:.2f} | {rows * cost[1] / t:.1f} |")


def print_phases(rows: list[dict], new_tokens: int) -> None:
    """Seconds per item of each phase, and the ceiling they put on batching: the speed-up over batch 1 if decoding
    cost nothing, (batch 1's seconds per item) / (prefill + analysis per item at that batch size)."""
    llava = [r for r in rows if "phases" in r]
    if not llava:
        return
    first = llava[0]
    per_item_1 = 3600 / first["per_hour"]
    print()
    print(f"# where the time goes (LLaVA-shaped, seconds per item; decode = generate - prefill, {new_tokens - 1} "
          "steps after the prefill)")
    print("| batch | prefill | decode | decode step per item (ms) | analyze | ceiling: x batch 1 with free decoding |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in llava:
        ph = r["phases"]
        decode = ph["generate_s"] - ph["prefill_s"]
        ceiling = per_item_1 / (ph["prefill_s"] + ph["analyze_s"])
        print(f"| {r['batch']} | {ph['prefill_s']:.3f} | {decode:.3f} | {1000 * decode / max(new_tokens - 1, 1):.1f} "
              f"| {ph['analyze_s']:.3f} | {ceiling:.2f} |")


def organism_rows(args) -> list[dict]:
    from emergence.sweep import SweepConfig, load_sweep, run_sweep

    rows, reference = [], None
    warm = Path(tempfile.mkdtemp(prefix="throughput_warm_"))  # loading, first calls: not counted
    run_sweep(SweepConfig(out=str(warm / "s"), dataset="shapes", dataset_kwargs={"n": 2, "seed": 1}), progress=False)
    for batch in args.batches:
        out = Path(tempfile.mkdtemp(prefix=f"throughput_b{batch}_"))
        config = SweepConfig(out=str(out / "s"), dataset="shapes",
                             dataset_kwargs={"n": args.organism_items, "seed": 23}, templates=("describe",),
                             store="layers", chunk_size=max(16, batch), batch_size=batch,
                             device=None if args.device == "cpu" else args.device)
        t0 = time.perf_counter()
        run_sweep(config, progress=False)
        seconds = time.perf_counter() - t0
        samples = load_sweep(out / "s")[0]
        if reference is None:
            reference, same = samples, True
        else:
            same = list(samples["answer"]) == list(reference["answer"]) and \
                bool((samples["oracle_iou"] - reference["oracle_iou"]).abs().max() <= 1e-6)
        rows.append({"setting": "organism (1.58M params, float32, run_sweep)", "batch": batch, "seconds": seconds,
                     "per_hour": len(samples) / seconds * 3600, "peak_mib": float("nan"), "per_item_mib": float("nan"),
                     "ids_identical": same, "max_diff": float("nan")})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default="small", choices=["small", "llava-1.5-7b"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--organism-items", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--skip-organism", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: this machine's)")
    args = parser.parse_args()
    import torch

    args.threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows = llava_rows(args)
    if not args.skip_organism:
        rows += organism_rows(args)
    print(f"# sweep throughput, {datetime.date.today()}, {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    print(f"# LLaVA-shaped: {args.items} items x {args.new_tokens} new tokens (EOS suppressed), analyze per item; "
          f"organism: run_sweep over {args.organism_items} shapes scenes")
    print("| setting | batch | seconds | samples / hour | x batch 1 | peak memory above start (MiB) | per item (MiB) "
          "| items equal batch 1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    base: dict[str, float] = {}
    for r in rows:
        base.setdefault(r["setting"], r["per_hour"])
        diff = "" if r["max_diff"] != r["max_diff"] else f"; attention max diff {r['max_diff']:.1e}"
        mem = "—" if r["peak_mib"] != r["peak_mib"] else f"{r['peak_mib']:.0f} | {r['per_item_mib']:.0f}"
        print(f"| {r['setting']} | {r['batch']} | {r['seconds']:.1f} | {r['per_hour']:.0f} | "
              f"{r['per_hour'] / base[r['setting']]:.2f} | {mem if mem != '—' else '— | —'} | "
              f"{'yes' if r['ids_identical'] else 'NO'}{diff} |")
    print_phases(rows, args.new_tokens)
    print_gemm(args.config, args.device, args.dtype, args.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
