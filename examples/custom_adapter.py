"""Plug a model family emergence does not know into the probe with an adapter.

The stand-in here is built the way remote-code models often are: a LLaVA-style model under its own class name
(``MyVLMForConditionalGeneration``), whose prompts must start with a task prefix and whose image tokens form one
grid over the whole image resized to a square. The adapter says exactly that, and nothing else changes:
``Probe`` asks it for the prompt, the layout and the attention modules to capture.

    python examples/custom_adapter.py
"""

from __future__ import annotations

import numpy as np
from transformers import LlavaForConditionalGeneration

from emergence import Probe
from emergence.adapters import Adapter, register_adapter, self_attention_modules
from emergence.layouts import LayoutContext, View, VisualLayout
from emergence.testing import tiny_llava


class MyVLMForConditionalGeneration(LlavaForConditionalGeneration):
    """Stand-in for a model loaded with trust_remote_code (its own class, LLaVA's internals)."""


class MyVLMAdapter(Adapter):
    family = "My VLM"
    architectures = ("MyVLMForConditionalGeneration",)
    summary = "one grid over the image resized to the tower's square"

    def build_prompt(self, processor, prompt: str) -> str:
        return super().build_prompt(processor, "Task: describe. " + prompt)

    def attention_modules(self, model):
        return self_attention_modules(model)  # the default; override when the decoder's classes are unusual

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        positions = ctx.image_positions()  # where input_ids == the image token
        side = ctx.vision_config.image_size // ctx.vision_config.patch_size
        if len(positions) != side * side:
            raise ValueError(f"expected {side * side} image tokens, the prompt has {len(positions)}")
        h, w = ctx.image_size
        grid = View("image", np.arange(side * side).reshape(side, side), box=(0.0, 0.0, float(w), float(h)))
        return VisualLayout(positions, (h, w), [grid], family="my_vlm")


def noise_image(width: int, height: int):
    from PIL import Image

    return Image.fromarray((np.random.RandomState(0).rand(height, width, 3) * 255).astype(np.uint8))


def main() -> None:
    register_adapter(MyVLMAdapter())
    model, processor = tiny_llava(crop=False)  # resize straight to the square: the geometry the adapter states
    model.__class__ = MyVLMForConditionalGeneration
    probe = Probe(model, processor)
    run = probe.generate(noise_image(160, 100), "What is in the image?", max_new_tokens=4)
    print(f"adapter: {probe.adapter!r}")
    print(f"prompt:  {probe.build_prompt('What is in the image?')!r}")
    print(f"layout:  {run.layout.family}, {run.layout.num_tokens} visual tokens, views {[v.name for v in run.layout.views]}")
    print(f"heatmap: {run.heatmap(0).shape} (height, width of the original image)")


if __name__ == "__main__":
    main()
