"""Models built on the original LLaVA codebase (haotian-liu/LLaVA and its forks: DiffLMM, the attend-and-segment
models), whose classes are not transformers' ``LlavaForConditionalGeneration``.

What differs from the transformers port, and what this adapter does about it:

- The prompt holds ONE ``IMAGE_TOKEN_INDEX`` (``-200``) per image, not one token per patch; the model splices the
  image's features in its place (``prepare_inputs_labels_for_multimodal``) and generates from ``inputs_embeds``. So the
  visual tokens sit at ``p .. p + N - 1`` of the sequence the language model reads (``p`` = the placeholder's index),
  and the text after it is shifted by ``N - 1``.
- ``model.generate(input_ids, images=...)`` returns only the new tokens (generation from embeddings):
  :meth:`OriginalLlavaAdapter.generate` puts the prompt back in front.
- Images: ``image_aspect_ratio == "pad"`` (LLaVA-1.5) pads the image to a square with the processor's mean colour,
  centred (``expand2square``), then the CLIP processor resizes it; anything else but ``anyres`` goes straight to
  the CLIP processor (shortest-edge resize + centre crop). ``mm_vision_select_feature == "patch"`` drops the tower's
  CLS token (``"cls_patch"`` keeps it, captured and not drawn). One grid of ``image_size // patch_size`` squared.
- Its attention modules compute attention themselves in the transformers versions the codebase pins (4.31 / 4.37):
  the adapter's mechanism is ``"auto"``, so those are captured through hooks (load with
  ``attn_implementation="eager"``: the modules then return their weights); classes that call transformers'
  attention interface use the main path.

Refused by name: ``anyres`` (LLaVA-1.6 in the original codebase; its transformers port ``LlavaNextForConditional
Generation`` is supported), several images per prompt, and ``convention="self"``.

Usage (see ``docs/original_llava.md``)::

    from llava.model.builder import load_pretrained_model          # the original codebase
    tokenizer, model, image_processor, _ = load_pretrained_model(path, None, name, attn_implementation="eager")
    probe = Probe(model, OriginalLlavaProcessor.from_model(model, tokenizer, image_processor))
    run = probe.generate("cat.jpg", "Describe the image.", max_new_tokens=64)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import LayoutError, UnsupportedModelError
from ..layouts.base import VisualLayout
from ..layouts.context import LayoutContext
from ..layouts.geometry import simple_canvas
from .base import Adapter
from .registry import register_adapter
from .generic import grid_view

__all__ = ["IMAGE_TOKEN_INDEX", "OriginalLlavaAdapter", "OriginalLlavaProcessor", "expand_to_square",
           "tokenize_with_images"]

#: the placeholder id of an image in the original codebase's prompts (``llava.constants.IMAGE_TOKEN_INDEX``)
IMAGE_TOKEN_INDEX = -200
#: the conversation template of LLaVA-1.5 (``conv_vicuna_v1``), with the image first in the user's turn
VICUNA_V1 = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
             "detailed, and polite answers to the human's questions. USER: <image>\n{prompt} ASSISTANT:")


@dataclass
class OriginalLlavaProcessor:
    """The original codebase's tokenizer, CLIP image processor and image settings, held together as ``Probe``'s
    processor. Build it with :meth:`from_model`.

    Attributes:
        tokenizer: the model's tokenizer (``load_pretrained_model``'s first return value).
        image_processor: its CLIP image processor.
        image_size: the vision tower's input side (336 for LLaVA-1.5).
        patch_size: the tower's patch side (14).
        image_aspect_ratio: the model config's (``"pad"``: centred on a mean-colour square first).
        select_feature: the config's ``mm_vision_select_feature`` (``"patch"`` drops the CLS token).
        template: the conversation around the user's prompt; ``{prompt}`` is replaced, ``<image>`` marks the image.
    """

    tokenizer: Any
    image_processor: Any
    image_size: int
    patch_size: int
    image_aspect_ratio: str = "pad"
    select_feature: str = "patch"
    template: str = VICUNA_V1

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, image_processor: Any, template: str = VICUNA_V1
                   ) -> OriginalLlavaProcessor:
        """Read the tower geometry (``model.get_vision_tower().config``) and image settings (``model.config``)."""
        tower = model.get_vision_tower()
        vc = tower.config
        patch = vc.patch_size if isinstance(vc.patch_size, int) else vc.patch_size[0]
        return cls(tokenizer, image_processor, int(vc.image_size), int(patch),
                   str(getattr(model.config, "image_aspect_ratio", "pad")),
                   str(getattr(model.config, "mm_vision_select_feature", "patch")), template)


def tokenize_with_images(text: str, tokenizer: Any, image_token: str = "<image>") -> list[int]:
    """Token ids of ``text`` with ``IMAGE_TOKEN_INDEX`` where ``image_token`` stands, as the codebase's
    ``tokenizer_image_token`` builds them: each chunk tokenized on its own, one BOS at the start."""
    ids: list[int] = []
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and tokenizer("", add_special_tokens=True).input_ids[:1] == [bos]:
        ids.append(int(bos))
    for k, chunk in enumerate(text.split(image_token)):
        if k:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(int(i) for i in tokenizer(chunk, add_special_tokens=False).input_ids)
    return ids


def expand_to_square(image: Any, background: tuple[int, ...]) -> tuple[Any, tuple[int, int]]:
    """The codebase's ``expand2square``: the image pasted, centred along its shorter side, on a square of its longer
    side filled with ``background``. Returns ``(square image, (left, top) offset of the image)``."""
    from PIL import Image

    w, h = image.size
    if w == h:
        return image, (0, 0)
    side = max(w, h)
    offset = (0, (w - h) // 2) if w > h else ((h - w) // 2, 0)
    square = Image.new(image.mode, (side, side), background)
    square.paste(image, offset)
    return square, offset


def _mean_colour(image_processor: Any) -> tuple[int, ...]:
    return tuple(int(x * 255) for x in image_processor.image_mean)


#: why one forward over prompt + answer is refused for this family, whichever feature asked for it
TEACHER_FORCED_REFUSAL = (
    "one forward over the prompt and the answer is not supported for the original LLaVA codebase (the spliced image "
    "features shift the answer's positions): convention='self', gradient maps and the teacher-forced effects of "
    "emergence.causal (answer_log_probs, answer_effects, head_means) need it; generate with convention='predicting' "
    "and use the other map methods")


class OriginalLlavaAdapter(Adapter):
    family = "LLaVA original codebase (haotian-liu/LLaVA, DiffLMM, attend-and-segment)"
    architectures = ("LlavaLlamaForCausalLM",)
    summary = ("one `-200` placeholder per image, spliced into one patch grid over the padded square (`pad`) or the "
               "resized, centre-cropped image; attention read through hooks when its modules bypass transformers")
    tested = "tiny_original_llava"
    pixel_inputs = ("images",)
    mechanism = "auto"

    def refusal(self, model: Any) -> str | None:
        aspect = str(getattr(model.config, "image_aspect_ratio", "pad"))
        if aspect.startswith("anyres"):
            return (f"{type(model).__name__}: image_aspect_ratio={aspect!r} (LLaVA-1.6 tiling in the original "
                    "codebase) is not placed; convert the checkpoint to transformers' "
                    "LlavaNextForConditionalGeneration (llava-hf), which is supported, or use image_aspect_ratio='pad'")
        if str(getattr(model.config, "mm_patch_merge_type", "flat")) != "flat":
            return f"{type(model).__name__}: mm_patch_merge_type={model.config.mm_patch_merge_type!r} is not placed"
        return None

    def build_prompt(self, processor: Any, prompt: str) -> str:
        return processor.template.format(prompt=prompt)

    def process(self, processor: Any, image: Any, text: str) -> Mapping[str, Any]:
        ids = tokenize_with_images(text, processor.tokenizer)
        if ids.count(IMAGE_TOKEN_INDEX) != 1:
            raise ValueError(f"the prompt must hold one <image> placeholder, it holds {ids.count(IMAGE_TOKEN_INDEX)}: "
                             f"{text!r}")
        ip = processor.image_processor
        if processor.image_aspect_ratio == "pad":
            image = expand_to_square(image.convert("RGB"), _mean_colour(ip))[0]
        pixels = ip(images=image, return_tensors="pt")["pixel_values"]
        input_ids = torch.tensor([ids])
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "images": pixels}

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        ids = ctx.input_ids.detach().cpu().reshape(-1)
        where = torch.nonzero(ids == IMAGE_TOKEN_INDEX).flatten().tolist()
        if len(where) != 1:
            raise LayoutError(f"{ctx.model_class}: the prompt holds {len(where)} image placeholders "
                              f"({IMAGE_TOKEN_INDEX}); one image per prompt is supported")
        proc = ctx.processor
        if not isinstance(proc, OriginalLlavaProcessor):
            raise LayoutError(f"{ctx.model_class}: the layout needs the OriginalLlavaProcessor that processed the "
                              "prompt (OriginalLlavaProcessor.from_model(model, tokenizer, image_processor))")
        aspect = str(getattr(ctx.config, "image_aspect_ratio", "pad"))
        if proc.image_aspect_ratio != aspect:
            raise LayoutError(f"{ctx.model_class}: the processor pads by image_aspect_ratio="
                              f"{proc.image_aspect_ratio!r}, the model config says {aspect!r}")
        side = proc.image_size // proc.patch_size
        cls = proc.select_feature == "cls_patch"
        first = where[0]
        count = side * side + int(cls)
        h, w = ctx.image_size
        ip = ctx.image_processor
        used = side * proc.patch_size
        if aspect == "pad":
            square = max(h, w)
            left, top = (0, (w - h) // 2) if w > h else ((h - w) // 2, 0)
            canvas = simple_canvas(ip, square, square)
            x0, y0, x1, y1 = canvas.box_in_original(0, 0, used, used)
            box = (x0 - left, y0 - top, x1 - left, y1 - top)
        else:
            canvas = simple_canvas(ip, h, w)
            box = canvas.box_in_original(0, 0, used, used)
        if (canvas.height, canvas.width) != (proc.image_size, proc.image_size):
            raise LayoutError(f"{ctx.model_class}: the image processor makes {canvas.height}x{canvas.width} images, "
                              f"the tower reads {proc.image_size}x{proc.image_size}")
        kinds = np.array(["cls"] * int(cls) + ["patch"] * side * side, dtype=object)
        view = grid_view("image", side, side, int(cls), box)
        return VisualLayout(first + np.arange(count), (h, w), [view], family="original_llava", token_kind=kinds,
                            meta={"grid": [side, side], "placeholder": first, "spliced": count})

    def check_positions(self, layout: VisualLayout, ctx: LayoutContext) -> VisualLayout:
        """The positions index the sequence after the image features are spliced in: the prompt's length plus
        ``N - 1`` per image."""
        spliced = len(ctx.input_ids) - 1 + int(layout.meta.get("spliced", 1))
        if layout.positions.min() < 0 or layout.positions.max() >= spliced:
            raise LayoutError(f"{ctx.model_class}: layout positions fall outside the spliced sequence of {spliced}")
        return layout

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        if inputs.get("images") is None:
            raise ValueError("inputs hold no images: the original LLaVA codebase's models take images=... "
                             "(process the prompt with OriginalLlavaProcessor through Probe.prepare)")

    def generate(self, model: nn.Module, inputs: Mapping[str, Any], **kwargs: Any) -> torch.Tensor:
        """The codebase's ``generate(input_ids, images=...)`` returns only the new tokens; the prompt is put back in
        front (when it did not already)."""
        prompt = inputs["input_ids"]
        out = model.generate(prompt, images=inputs["images"], attention_mask=inputs.get("attention_mask"), **kwargs)
        if out.shape[1] >= prompt.shape[1] and torch.equal(out[:, :prompt.shape[1]], prompt.to(out.device)):
            return out
        return torch.cat([prompt.to(out.device), out], dim=1)

    teacher_forced = False

    def extend_inputs(self, inputs: Mapping[str, Any], sequences: torch.Tensor) -> dict[str, Any]:
        raise UnsupportedModelError(TEACHER_FORCED_REFUSAL)


register_adapter(OriginalLlavaAdapter())
