"""Probe one image with any HuggingFace vision-language model and save the per-token heatmaps.

    python examples/quickstart.py IMAGE "PROMPT" [MODEL]

MODEL is a hub id or a local folder (default: llava-hf/llava-1.5-7b-hf). Offline, pass a local folder, or
"builtin:tiny_llava" for the random-weight tiny model that needs no download.
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

import torch  # noqa: E402

from emergence import Probe  # noqa: E402
from emergence.loading import load_probe  # noqa: E402
from emergence.plotting import plot_token_heatmaps  # noqa: E402
from emergence.specs import ProbeSpec  # noqa: E402


def main() -> None:
    image, prompt = sys.argv[1], sys.argv[2]
    model = sys.argv[3] if len(sys.argv) > 3 else "llava-hf/llava-1.5-7b-hf"
    if model.startswith("builtin:"):
        probe = load_probe(ProbeSpec(name="example", hf_id=model))
    else:
        cuda = torch.cuda.is_available()
        probe = Probe.from_pretrained(model, dtype=torch.float16 if cuda else torch.float32,
                                      device="cuda" if cuda else None)
    run = probe.generate(image, prompt, max_new_tokens=64)
    print(run)
    for t, token in enumerate(run.tokens):
        heat = run.heatmap(t)
        y, x = divmod(int(heat.argmax()), heat.shape[1])
        print(f"{t:3d} {token!r:>16}  peak at ({x}, {y})")
    fig, _ = plot_token_heatmaps(run)
    fig.savefig("quickstart.png", dpi=110)
    run.save("quickstart_run")
    print("wrote quickstart.png and quickstart_run/")


if __name__ == "__main__":
    main()
