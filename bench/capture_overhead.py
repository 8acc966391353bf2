"""Capture overhead: plain `generate` vs emergence's capture vs the peers' way, on one model, in one run.

Variants (same random-init LLaVA-shaped model, same prompt, same `max_new_tokens`, EOS disabled):
  plain   sdpa, `model.generate(...)`
  capture sdpa, the same call inside `AttentionCapture` (keep="heads", float16 maps on CPU: what `Probe` does)
  peers   eager + `output_attentions=True` + `return_dict_in_generate=True` (attend-and-segment, PixFoundation)
  hooks   eager, inside `AttentionCapture(..., mechanism="hooks")`: the fallback for attention modules that bypass
          transformers' attention functions (the module computes its full weights; hooks keep the needed rows)

Time: the three variants interleaved, `--repeats` rounds, median wall time each (after a warm-up round).
Memory: each variant once more in a fresh child process. CPU: peak RSS (VmHWM, reset through /proc/self/clear_refs
after one identical warm-up call) above the RSS before the call. CUDA: peak allocated above the allocated memory before the call. Also the bytes of the attention the
variant keeps (exact: tensor sizes).

    python bench/capture_overhead.py                           # CPU, ~250M-parameter model, 64 and 256 tokens
    python bench/capture_overhead.py --device cuda --config llava-1.5-7b --dtype bfloat16 --new-tokens 512
    python bench/capture_overhead.py --config qwen2-vl-video --frames 16   # a 16-frame video (Qwen2-VL classes)
    python bench/capture_overhead.py --variants plain capture hooks       # the hooks fallback next to the main path
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time

CONFIGS = {
    # ~250M parameters: ViT (512 wide, 8 layers, 224 px / 14 -> 256 visual tokens) + Llama (1024 wide, 12 layers)
    "small": dict(
        vision=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=8,
                    image_size=224, patch_size=14),
        text=dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12, num_attention_heads=16,
                  num_key_value_heads=16, vocab_size=32064),
    ),
    # LLaVA-1.5-7B's shapes: CLIP ViT-L/14-336 (576 visual tokens) + Llama-2-7B (Vicuna)
    "llava-1.5-7b": dict(
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    image_size=336, patch_size=14),
        text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32064),
    ),
}
# A video case: Qwen2-VL's classes with a `--frames`-frame video of 224 x 224 frames (16 x 16 patches of 14 px, 2 x 2
# merge, 2 frames per temporal patch -> 64 tokens per temporal patch); the language model is "small"'s.
VIDEO_CONFIG = "qwen2-vl-video"
VARIANTS = ("plain", "capture", "peers", "hooks")
TEXT_TOKENS = 40


def build_video(device: str, dtype_name: str, frames: int):
    """Qwen2-VL (random init) with one video of ``frames`` frames: ``(model, inputs, video positions, params)``."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    text = dict(CONFIGS["small"]["text"])
    vocab = text["vocab_size"]
    video_token, start, end = vocab - 1, vocab - 2, vocab - 3
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    half = head_dim // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    config = Qwen2VLConfig(
        text_config=dict(text, max_position_embeddings=8192, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         rope_parameters={
            "rope_type": "default", "mrope_section": section, "rope_theta": 10000.0}),
        vision_config=dict(depth=8, embed_dim=512, hidden_size=text["hidden_size"], num_heads=8, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        image_token_id=vocab - 4, video_token_id=video_token, vision_start_token_id=start, vision_end_token_id=end,
    )
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration(config).to(dtype).eval()
    model.set_attn_implementation("sdpa")
    t, grid = -(-frames // 2), 16
    n_video = t * grid * grid // 4
    gen = torch.Generator().manual_seed(0)
    words = torch.randint(3, vocab - 5, (TEXT_TOKENS,), generator=gen)
    input_ids = torch.cat([torch.tensor([1, start]), torch.full((n_video,), video_token), torch.tensor([end]),
                           words])[None].to(device)
    pixels = torch.randn(t * grid * grid, 3 * 2 * 14 * 14, generator=gen)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "pixel_values_videos": pixels.to(device=device, dtype=dtype),
              "video_grid_thw": torch.tensor([[t, grid, grid]], device=device),
              "mm_token_type_ids": (input_ids == video_token).long() * 2}
    positions = torch.arange(2, 2 + n_video)
    return model, inputs, positions, sum(p.numel() for p in model.parameters())


def build(config_name: str, device: str, dtype_name: str, frames: int = 16):
    import torch

    if config_name == VIDEO_CONFIG:
        return build_video(device, dtype_name, frames)
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    spec = CONFIGS[config_name]
    image_token = spec["text"]["vocab_size"] - 1
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**spec["vision"], projection_dim=spec["vision"]["hidden_size"]),
        text_config=LlamaConfig(**spec["text"], max_position_embeddings=4096),
        image_token_id=image_token,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration(config).to(dtype).eval()
    model.set_attn_implementation("sdpa")
    side = spec["vision"]["image_size"] // spec["vision"]["patch_size"]
    gen = torch.Generator().manual_seed(0)
    text = torch.randint(3, image_token - 1, (TEXT_TOKENS,), generator=gen)
    input_ids = torch.cat([torch.tensor([1]), torch.full((side * side,), image_token), text])[None].to(device)
    pixel_values = torch.randn(1, 3, spec["vision"]["image_size"], spec["vision"]["image_size"], generator=gen)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "pixel_values": pixel_values.to(device=device, dtype=dtype)}
    positions = torch.arange(1, 1 + side * side)
    n_params = sum(p.numel() for p in model.parameters())
    return model, inputs, positions, n_params


def run_variant(model, inputs, positions, variant: str, new_tokens: int):
    """One generation; returns the number of bytes of attention the variant keeps."""
    import torch

    from emergence.capture import AttentionCapture

    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        if variant == "plain":
            model.set_attn_implementation("sdpa")
            out = model.generate(**inputs, **kw)
            assert out.shape[1] == inputs["input_ids"].shape[1] + new_tokens
            return 0
        if variant == "capture":
            model.set_attn_implementation("sdpa")
            with AttentionCapture(model, positions, keep="heads") as cap:
                model.generate(**inputs, **kw)
            maps = cap.maps()
            assert maps.shape[0] == new_tokens
            return maps.numel() * maps.element_size()
        if variant == "hooks":
            model.set_attn_implementation("eager")
            with AttentionCapture(model, positions, keep="heads", mechanism="hooks") as cap:
                model.generate(**inputs, **kw)
            model.set_attn_implementation("sdpa")
            maps = cap.maps()
            assert maps.shape[0] == new_tokens
            return maps.numel() * maps.element_size()
        model.set_attn_implementation("eager")
        out = model.generate(**inputs, output_attentions=True, return_dict_in_generate=True, **kw)
        kept = sum(a.numel() * a.element_size() for step in out.attentions for a in step)
        model.set_attn_implementation("sdpa")
        return kept


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def timing(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    model, inputs, positions, n_params = build(args.config, args.device, args.dtype, args.frames)
    results = {"params": n_params, "times": {}, "positions": positions.tolist()}
    for new_tokens in args.new_tokens:
        for variant in args.variants:  # warm-up round
            run_variant(model, inputs, positions, variant, min(new_tokens, 8))
        times = {v: [] for v in args.variants}
        for _ in range(args.repeats):
            for variant in args.variants:
                _sync(args.device)
                start = time.perf_counter()
                run_variant(model, inputs, positions, variant, new_tokens)
                _sync(args.device)
                times[variant].append(time.perf_counter() - start)
        results["times"][new_tokens] = times
    return results


def _memory_child(args, variant: str, new_tokens: int, queue) -> None:
    import torch

    torch.set_num_threads(args.threads)
    model, inputs, positions, _ = build(args.config, args.device, args.dtype, args.frames)
    run_variant(model, inputs, positions, variant, new_tokens)  # same call once: warm allocator and kernels
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        kept = run_variant(model, inputs, positions, variant, new_tokens)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = _status_kib("VmHWM") * 1024
        kept = run_variant(model, inputs, positions, variant, new_tokens)
        peak = _status_kib("VmHWM") * 1024 - base
    queue.put({"peak": peak, "kept": kept})


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory(args) -> dict:
    # Large blocks through mmap are returned to the OS when freed, so RSS follows live tensor memory instead of
    # glibc's retained heap (which otherwise makes small peaks depend on allocation history).
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "0")
    ctx = mp.get_context("spawn")
    out: dict = {}
    for new_tokens in args.new_tokens:
        for variant in args.variants:
            queue = ctx.Queue()
            proc = ctx.Process(target=_memory_child, args=(args, variant, new_tokens, queue))
            proc.start()
            result = queue.get()
            proc.join()
            out[(new_tokens, variant)] = result
    return out


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def report(args, t: dict, m: dict) -> str:
    lines = []
    device = args.device
    if device.startswith("cuda"):
        import torch

        device = f"{device} ({torch.cuda.get_device_name()})"
    else:
        device = f"cpu ({platform.processor() or platform.machine()}, {args.threads} threads)"
    import torch
    import transformers

    what = args.config + (f", {args.frames}-frame video ({len(t['positions'])} video tokens)"
                          if args.config == VIDEO_CONFIG else "")
    lines.append(
        f"### {what} ({t['params'] / 1e6:,.0f}M parameters), {args.dtype}, {device} — "
        f"{datetime.date.today().isoformat()}"
    )
    lines.append("")
    lines.append(
        f"torch {torch.__version__}, transformers {transformers.__version__}; prompt = 1 + visual + {TEXT_TOKENS} "
        f"text tokens; median of {args.repeats} interleaved rounds; EOS disabled (min_new_tokens = max_new_tokens)."
    )
    lines.append("")
    lines.append("| new tokens | variant | time (s) | time / plain | peak extra memory (MiB) | peak / capture | attention kept (MiB) |")
    lines.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for new_tokens in args.new_tokens:
        times = t["times"][new_tokens]
        plain = statistics.median(times["plain"])
        cap_peak = max(m[(new_tokens, "capture")]["peak"], 1)
        for variant in args.variants:
            med = statistics.median(times[variant])
            mem = m[(new_tokens, variant)]
            lines.append(
                f"| {new_tokens} | {variant} | {med:.2f} | {med / plain:.3f} | {mib(mem['peak'])} | "
                f"{mem['peak'] / cap_peak:.1f} | {mib(mem['kept'])} |"
            )
    lines.append("")
    for new_tokens in args.new_tokens:
        times = t["times"][new_tokens]
        plain = statistics.median(times["plain"])
        cap = statistics.median(times["capture"])
        cap_peak = max(m[(new_tokens, "capture")]["peak"], 1)
        line = f"- {new_tokens} tokens: capture/plain = **{cap / plain:.3f}**"
        for other in ("peers", "hooks"):
            if other in times:
                line += (f"; {other}/capture = **{statistics.median(times[other]) / cap:.2f}x** time, "
                         f"**{m[(new_tokens, other)]['peak'] / cap_peak:.1f}x** peak memory")
        lines.append(line)
    lines.append("")
    lines.append("Raw times (s): " + json.dumps({str(k): v for k, v in t["times"].items()}))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS) + [VIDEO_CONFIG], default="small")
    parser.add_argument("--frames", type=int, default=16, help=f"video frames of --config {VIDEO_CONFIG}")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="which variants to run (plain and capture always included)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=None, help="append the Markdown table to this file")
    args = parser.parse_args()
    args.variants = ["plain", "capture"] + [v for v in VARIANTS[2:] if v in args.variants]
    t = timing(args)
    m = memory(args)
    text = report(args, t, m)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
