"""Register a visual-token layout for a model family emergence does not know yet.

A layout tells which sequence positions are visual tokens and which original-image box each token covers. Here:
a hypothetical model whose processor resizes every image to 448x448 and whose image tokens form a 16x16 grid, but
are preceded by a learned "<img_start>" token that also counts as an image token (so the block is 257 long).
"""

from __future__ import annotations

import numpy as np

from emergence.layouts import LayoutContext, View, VisualLayout, register_layout


@register_layout("MyVLMForConditionalGeneration")
def my_vlm_layout(ctx: LayoutContext) -> VisualLayout:
    positions = ctx.image_positions()  # where input_ids == config.image_token_id
    side = ctx.vision_config.image_size // ctx.vision_config.patch_size  # 16
    if len(positions) != side * side + 1:
        raise ValueError(f"expected {side * side + 1} image tokens, got {len(positions)}")
    h, w = ctx.image_size
    grid = View("image", np.arange(1, 1 + side * side).reshape(side, side), box=(0.0, 0.0, float(w), float(h)))
    kinds = np.array(["start"] + ["patch"] * side * side, dtype=object)
    return VisualLayout(positions, (h, w), [grid], family="my_vlm", token_kind=kinds)


if __name__ == "__main__":
    from emergence.layouts import registered_layouts

    print("registered:", sorted(registered_layouts()))
