"""Probe a model of the original LLaVA codebase (haotian-liu/LLaVA, DiffLMM, the attend-and-segment models).

With the codebase installed you would load the model with its own builder::

    from llava.model.builder import load_pretrained_model
    tokenizer, model, image_processor, _ = load_pretrained_model(path, None, "llava-v1.5-7b",
                                                                 attn_implementation="eager")

Here a stand-in built the same way runs instead (``emergence.testing.tiny_original_llava``: a
``LlavaLlamaForCausalLM`` that splices the image's features in place of the -200 placeholder and generates from
embeddings), once with transformers' attention classes and once with attention computed by hand, as the transformers
versions the codebase pins do: the probe captures the first through transformers' attention interface and the second
through hooks, with the same result.

    python examples/original_llava.py
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from emergence import Probe
from emergence.adapters.original_llava import OriginalLlavaProcessor
from emergence.testing import tiny_original_llava


def main() -> None:
    image = Image.fromarray((np.random.RandomState(0).rand(100, 160, 3) * 255).astype(np.uint8))
    runs = {}
    for hand_written in (False, True):
        model, processor = tiny_original_llava(hand_written=hand_written)
        # with the real codebase: OriginalLlavaProcessor.from_model(model, tokenizer, image_processor)
        assert isinstance(processor, OriginalLlavaProcessor)
        probe = Probe(model, processor)
        run = probe.generate(image, "What is in the image?", max_new_tokens=6, min_new_tokens=6)
        runs[hand_written] = run
        print(f"{'hand-written' if hand_written else 'transformers'} attention: adapter {probe.adapter.family!r}, "
              f"mechanism {run.meta['mechanism']}")
    run = runs[False]
    print(f"prompt ids: {run.prompt_ids.tolist()} (-200 = the image placeholder)")
    print(f"visual tokens at positions {run.layout.positions[0]}..{run.layout.positions[-1]} of the spliced sequence; "
          f"grid {run.layout.meta['grid']}, box {tuple(round(v, 1) for v in run.layout.views[0].box)}")
    gap = (runs[True].attention.float() - run.attention.float()).abs().max().item()
    print(f"same answer: {runs[True].token_ids.tolist() == run.token_ids.tolist()}; max attention difference {gap:.1e}")
    print(f"heatmap: {run.heatmap(0).shape} (height, width of the original image)")


if __name__ == "__main__":
    main()
