"""What the toolkit supports per model family: exact geometry, attention only, or a refusal with its reason.

One table (:data:`FAMILIES`) feeds ``emergence probes`` and the README's family table (regenerate it with
``python -m emergence.layouts.support``; a test checks that the README matches). ``tested`` names the tiny
random-config instance of the real class that the test suite runs (token count, marker geometry, capture
exactness); a family is listed as exact only with such a test.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = ["FAMILIES", "Family", "markdown_table", "text_table"]

SUPPORT_LEVELS = ("exact", "attention only", "refused")


@dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
        name: the family as users know it.
        classes: transformers classes (``...`` abbreviates a shared prefix).
        support: ``"exact"`` (heatmaps in the right place), ``"attention only"`` (captured; not spatial) or
            ``"refused"`` (a clear error saying why).
        layout: how the visual tokens are laid out, or why the family is refused.
        tested: the ``emergence.testing`` builder the test suite runs on it (``None`` for refusals by rule).
    """

    name: str
    classes: tuple[str, ...]
    support: str
    layout: str
    tested: str | None = None


FAMILIES: tuple[Family, ...] = (
    Family("LLaVA-1.5", ("LlavaForConditionalGeneration",), "exact",
           "one grid; pad-to-square / shortest-edge resize / centre crop of the image processor", "tiny_llava"),
    Family("Pixtral (LLaVA with a Pixtral tower), Mistral3", ("LlavaForConditionalGeneration",
                                                            "Mistral3ForConditionalGeneration"), "exact",
           "rows of `[IMG]` ended by `[IMG_BREAK]`; the whole image resized to `image_sizes`", "tiny_mistral3"),
    Family("LLaVA-NeXT, LLaVA-NeXT-Video (images)", ("LlavaNextForConditionalGeneration",
                                                     "LlavaNextVideoForConditionalGeneration"), "exact",
           "base grid + unpadded tile mosaic, newline token per row (not rendered)", "tiny_llava_next"),
    Family("Qwen2-VL, Qwen2.5-VL, Qwen3-VL", ("Qwen2VLForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                                              "Qwen3VLForConditionalGeneration"), "exact",
           "`image_grid_thw[1:] // merge` over the smart-resized image", "tiny_qwen2_vl"),
    Family("Idefics3, SmolVLM", ("Idefics3ForConditionalGeneration", "SmolVLMForConditionalGeneration"), "exact",
           "tile mosaic read from `<row_i_col_j>` markers + global image", "tiny_idefics3"),
    Family("PaliGemma", ("PaliGemmaForConditionalGeneration",), "exact",
           "generic layout, proved: one view, the tower's square grid; bidirectional image prefix", "tiny_paligemma"),
    Family("Gemma3 (without pan-and-scan)", ("Gemma3ForConditionalGeneration",), "exact",
           "generic layout, proved: the pooled `mm_tokens_per_image` square", "tiny_gemma3"),
    Family("VipLLaVA", ("VipLlavaForConditionalGeneration",), "exact",
           "generic layout, proved: one view, the tower's square grid", "tiny_vipllava"),
    Family("BLIP-2, InstructBLIP, perceiver resamplers", ("Blip2ForConditionalGeneration",
                                                          "InstructBlipForConditionalGeneration", "..."),
           "attention only",
           "learned query / latent tokens: captured exactly, not spatial (heatmap and analyze refuse)", "tiny_blip2"),
    Family("Llama-3.2-Vision (Mllama), Idefics", ("MllamaForConditionalGeneration", "IdeficsForVisionText2Text"),
           "refused", "the image enters only through cross-attention layers (cross-attention capture: not yet)"),
    Family("Florence-2 and other encoder-decoders", ("Florence2ForConditionalGeneration", "..."), "refused",
           "encoder-decoder: the decoder reads the image through cross-attention"),
    Family("Tiling processors without an adapter (LLaVA-OneVision, InternVL tiles, Aya Vision tiles, LFM2-VL, "
           "Gemma3 pan-and-scan)", ("...",), "refused",
           "several views of one image (a tiling option or several crops in `pixel_values`): no adapter yet"),
    Family("Any other unregistered model", ("...",), "refused",
           "unless the generic layout is provable (one contiguous block, one view, a grid the config implies): the "
           "error names the failed rule and shows `register_layout`"),
)


def markdown_table() -> str:
    """The README's family table."""
    lines = ["| family | classes | support | layout | tested on |", "| --- | --- | --- | --- | --- |"]
    for f in FAMILIES:
        classes = ", ".join(c if c == "..." else f"`{c}`" for c in f.classes)
        tested = f"`{f.tested}`" if f.tested else "—"
        lines.append(f"| {f.name} | {classes} | {f.support} | {f.layout} | {tested} |")
    return "\n".join(lines) + "\n"


def text_table() -> str:
    """The families as ``emergence probes`` prints them."""
    width = max(len(f.support) for f in FAMILIES)
    out = []
    for f in FAMILIES:
        out.append(f"{f.support:<{width}}  {f.name}")
        out.append(f"{'':<{width}}    {', '.join(f.classes)}: {f.layout.replace('`', '')}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown_table())
