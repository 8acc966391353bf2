"""Train the model organism on shapes-world captions only (no grounding supervision).

    python -m emergence.organism.train --out OUT [--design llava|fuyu] [--steps N] [--batch-size B] [--seed S]

Reproducible from the seed on CPU (each shipped folder's ``training_args.json`` holds the values it was trained with;
the shipped LLaVA organism is ``--seed 1`` with the defaults): with the same torch build and
thread count (`training_args.json` records both; pass ``--threads``) a run repeats the shipped one to the bit on the
same kind of CPU. Another thread count sums in another order and trains a different model (README: how much its
figures move). Checkpoints every ``--save-every`` steps (atomic) so a killed run resumes with ``--resume``. Logs one
JSON line per logged step to ``OUT/train_log.jsonl``; prints a progress line with loss, rate and ETA.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..files import atomic_write_bytes, atomic_write_json, claim_output_dir
from ..progress import ProgressLine
from ..runtime import torch_threads

__all__ = ["train", "main"]

TRAIN_WORLD_SEED = 1_000  # evaluation uses other seeds


def _prompt(processor: Any, design: str = "llava") -> str:
    from .model import PROMPT

    if design == "fuyu":
        return PROMPT + "\n"  # FuyuAdapter.build_prompt: the processor adds the image and the answer mark
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def make_batch(processor: Any, scenes: list, prompt: str, design: str = "llava") -> dict[str, Any]:
    """Inputs and caption-only labels for a list of scenes: the prompt as the toolkit builds it for that design,
    then the caption and ``</s>``; labels only on the caption and ``</s>``."""
    if design == "fuyu":
        return _fuyu_batch(processor, scenes, prompt)
    texts = [f"{prompt} {s.caption} </s>" for s in scenes]
    batch = processor(images=[s.image for s in scenes], text=texts, padding=True, return_tensors="pt")
    prompt_len = len(processor(images=scenes[0].image, text=prompt, return_tensors="pt")["input_ids"][0])
    labels = batch["input_ids"].clone()
    labels[:, :prompt_len] = -100
    labels[batch["attention_mask"] == 0] = -100
    batch["labels"] = labels
    return batch


def _fuyu_batch(processor: Any, scenes: list, prompt: str) -> dict[str, Any]:
    # FuyuProcessor ends the text with its beginning-of-answer mark; the caption follows it, right-padded
    import torch

    from ..adapters.single_transformer import tensor_patchify

    with tensor_patchify(processor.image_processor):
        enc = processor(images=[s.image for s in scenes], text=[prompt] * len(scenes), return_tensors="pt")
    tok = processor.tokenizer
    prefix = tok.convert_tokens_to_ids("\u2581")
    answers = []
    for scene in scenes:
        ids = tok(scene.caption, add_special_tokens=False)["input_ids"]
        answers.append((ids[1:] if ids and ids[0] == prefix else ids) + [tok.eos_token_id])
    width = max(len(a) for a in answers)
    tail = torch.full((len(scenes), width), tok.pad_token_id, dtype=enc["input_ids"].dtype)
    tail_mask = torch.zeros_like(tail)
    for row, ids in enumerate(answers):
        tail[row, :len(ids)] = torch.tensor(ids)
        tail_mask[row, :len(ids)] = 1
    input_ids = torch.cat([enc["input_ids"], tail], dim=1)
    labels = torch.cat([torch.full_like(enc["input_ids"], -100), tail.masked_fill(tail_mask == 0, -100)], dim=1)
    # FuyuProcessor's legacy `image_patches`, or the `pixel_values` it announces in their place: the model takes both
    key = "image_patches" if "image_patches" in enc else "pixel_values"
    return {"input_ids": input_ids, "attention_mask": torch.cat([enc["attention_mask"], tail_mask], dim=1),
            key: enc[key], "labels": labels}


def train(
    out: str | os.PathLike,
    steps: int = 2000,
    batch_size: int = 48,
    lr: float = 1.5e-3,
    seed: int = 0,
    layers: int | None = None,
    design: str = "llava",
    save_every: int = 250,
    log_every: int = 10,
    resume: bool = False,
    threads: int | None = None,
    quiet: bool = False,
    stop_at: int | None = None,
) -> list[dict[str, float]]:
    """Train and save an organism of ``design`` (``"llava"``: the shipped one; ``"fuyu"``: organism B) to ``out``.
    ``layers``: decoder layers (default: 3 for LLaVA, 4 for Fuyu). Returns the logged records (step, loss, lr,
    elapsed).

    ``stop_at``: return after that many steps without saving a model (the schedule still follows ``steps``), e.g. to
    check that a run reproduces the first steps of a logged one.
    """
    import torch

    from .model import DESIGNS
    from .world import ShapesWorld

    if design not in DESIGNS:
        raise ValueError(f"design={design!r}: organism designs are {sorted(DESIGNS)}")
    spec = DESIGNS[design]
    layers = spec.layers if layers is None else layers
    with torch_threads(threads):
        out = claim_output_dir(out, "organism")
        ckpt = out / "checkpoint.pt"
        processor = spec.build_processor()
        model = spec.build_model(processor, seed=seed, layers=layers)
        model.train()
        optim = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
        warmup = max(1, min(200, steps // 10))

        def lr_at(step: int) -> float:
            if step < warmup:
                return lr * (step + 1) / warmup
            progress = (step - warmup) / max(1, steps - warmup)
            return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

        start_step, records = 0, []
        log_path = out / "train_log.jsonl"
        if resume and ckpt.exists():
            state = torch.load(ckpt, weights_only=False)
            model.load_state_dict(state["model"])
            optim.load_state_dict(state["optim"])
            torch.set_rng_state(state["rng"])
            start_step, records = state["step"], state["records"]
            log_path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        elif log_path.exists():
            log_path.unlink()
        world = ShapesWorld(seed=TRAIN_WORLD_SEED + seed)
        prompt = _prompt(processor, design)
        bar = ProgressLine(steps, start_step, unit="steps", per="s", enabled=not quiet)
        t0 = time.perf_counter()
        running = None
        for step in range(start_step, steps):
            if stop_at is not None and step >= stop_at:
                return records
            scenes = [world.scene(step * batch_size + i) for i in range(batch_size)]
            batch = make_batch(processor, scenes, prompt, design)
            for group in optim.param_groups:
                group["lr"] = lr_at(step)
            loss = model(**batch).loss
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            value = float(loss.detach())
            running = value if running is None else 0.9 * running + 0.1 * value
            if (step + 1) % log_every == 0 or step + 1 == steps:
                elapsed = time.perf_counter() - t0
                record = {"step": step + 1, "loss": value, "smoothed": running, "lr": lr_at(step), "elapsed_s": elapsed}
                records.append(record)
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record) + "\n")
                bar.update(step + 1 - bar.done, note=f"loss {running:.4f}")
            if (step + 1) % save_every == 0 and step + 1 < steps:
                buf = io.BytesIO()
                torch.save({"model": model.state_dict(), "optim": optim.state_dict(), "rng": torch.get_rng_state(),
                            "step": step + 1, "records": records}, buf)
                atomic_write_bytes(ckpt, buf.getvalue())
        bar.close()
        model.eval()
        with tempfile.TemporaryDirectory(dir=out, prefix=".saving.") as staging:
            model.save_pretrained(staging)
            processor.save_pretrained(staging)
            for item in Path(staging).iterdir():
                os.replace(item, out / item.name)
        ckpt.unlink(missing_ok=True)
        # the thread count fixes the order of floating-point sums: the same seed on another count trains another model
        atomic_write_json(out / "training_args.json",
                          {"design": design, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                           "layers": layers,
                           "world_seed": TRAIN_WORLD_SEED + seed, "threads": torch.get_num_threads(),
                           "torch": torch.__version__})
        return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--design", default="llava", choices=["llava", "fuyu"],
                        help="llava: the shipped organism; fuyu: organism B, one transformer reading patches")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: 3 llava, 4 fuyu)")
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args(argv)
    train(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, layers=args.layers,
          design=args.design, save_every=args.save_every, resume=args.resume, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
