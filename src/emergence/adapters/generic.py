"""The generic adapter (unregistered models, only where provably right) and the families refused by rule.

Shared helpers for adapters that lay out one grid over the processed image also live here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import LayoutError, UnsupportedModelError
from ..layouts.base import View, VisualLayout
from ..layouts.context import LayoutContext
from ..layouts.geometry import Canvas, simple_canvas
from .base import Adapter
from .registry import find_adapter, how_to_register, set_generic_adapter

__all__ = ["CrossAttentionAdapter", "EncoderDecoderAdapter", "GenericAdapter", "LearnedQueryAdapter",
           "NotYetAdapter", "RefusedAdapter", "QUERY_TOKEN_FIELDS", "TILING_OPTIONS", "check_grid_fits",
           "contiguous_layout", "grid_view"]

#: image-processor options under which one prompt's image becomes several views (tiles, crops, a thumbnail)
TILING_OPTIONS = ("do_image_splitting", "crop_to_patches", "do_pan_and_scan", "image_grid_pinpoints",
                  "use_thumbnail", "do_tiling")
#: config fields of models whose visual tokens are learned queries or latents, not patches
QUERY_TOKEN_FIELDS = ("qformer_config", "num_query_tokens", "perceiver_config", "latent_query_num")


def check_grid_fits(ctx: LayoutContext, rows: int, cols: int, h: int, w: int, what: str) -> None:
    """Refuse a ``rows x cols`` token grid that no aspect-keeping resize of an ``h x w`` image could give.

    An aspect-keeping resize (Qwen's ``smart_resize``, Pixtral's) scales both sides by one factor ``b`` and rounds
    each to whole cells, so ``|rows - b*h/f| <= 1`` and ``|cols - b*w/f| <= 1`` for some ``b`` (``f`` = the cell
    side in pixels): the intervals
    ``[(rows-1)/h, (rows+1)/h]`` and ``[(cols-1)/w, (cols+1)/w]`` overlap. They do not when the processed inputs
    belong to another image (e.g. images given in another order than the inputs were made from); images of nearly
    the same shape cannot be told apart this way."""
    if (rows + 1) / h < (cols - 1) / w or (cols + 1) / w < (rows - 1) / h:
        raise LayoutError(f"{ctx.model_class}: the inputs' grid for {what} is {rows}x{cols} tokens, which no "
                          f"resize of that {h}x{w} (height x width) image gives: the processed inputs were made from "
                          "another image. Pass the images in the order the inputs were made from (or let the probe "
                          "process them: omit inputs=)")


def grid_view(name: str, rows: int, cols: int, start: int, box, kind="global") -> View:
    index = np.arange(start, start + rows * cols).reshape(rows, cols)
    return View(name=name, index=index, box=tuple(float(b) for b in box), kind=kind)


def canvas_or_whole(ctx: LayoutContext) -> tuple[Canvas | None, tuple[float, float, float, float]]:
    h, w = ctx.image_size
    ip = ctx.image_processor
    if ip is None:
        return None, (0.0, 0.0, float(w), float(h))
    canvas = simple_canvas(ip, h, w)
    return canvas, canvas.full_box()


def check_contiguous(positions: np.ndarray, who: str) -> None:
    if len(positions) == 0:
        raise LayoutError(f"{who}: the prompt contains no image token; did the processor insert the image placeholder?")
    if np.any(np.diff(positions) != 1):
        raise LayoutError(f"{who}: image tokens are not one contiguous block (positions {positions[:5]}...)")


def provable_grid(ctx: LayoutContext, n: int) -> tuple[int, int, int] | None:
    """``(rows, cols, first grid token)`` of a single-view block of ``n`` tokens, when the config or the processed
    image implies exactly that count; ``None`` otherwise. Candidates: the tower's ``image_size // patch_size`` square
    (with a leading CLS token for the 'full' feature strategy), a pooled square of ``mm_tokens_per_image`` tokens
    (Gemma3: average pooling of whole patch blocks), and the processed image's ``H // patch x W // patch`` grid."""
    vc = getattr(ctx.config, "vision_config", None)
    patch = getattr(vc, "patch_size", None)
    patch = patch if isinstance(patch, int) or patch is None else patch[0]
    candidates: list[tuple[int, int]] = []
    size = getattr(vc, "image_size", None)
    if size and patch:
        side = (size if isinstance(size, int) else size[0]) // patch
        candidates.append((side, side))
    pooled = getattr(ctx.config, "mm_tokens_per_image", None)
    if isinstance(pooled, int) and math.isqrt(pooled) ** 2 == pooled:
        candidates.append((math.isqrt(pooled), math.isqrt(pooled)))
    pv = ctx.inputs.get("pixel_values") if ctx.inputs else None
    if patch and pv is not None and hasattr(pv, "shape") and len(pv.shape) >= 3:
        candidates.append((int(pv.shape[-2]) // patch, int(pv.shape[-1]) // patch))
    for rows, cols in candidates:
        if rows * cols == n:
            return rows, cols, 0
        if rows * cols + 1 == n and getattr(ctx.config, "vision_feature_select_strategy", None) == "full":
            return rows, cols, 1  # the CLS token comes first
    return None


def contiguous_layout(ctx: LayoutContext, grid: tuple[int, int, int] | None = None, family: str = "contiguous"
                      ) -> VisualLayout:
    """One contiguous block of image tokens = one grid over the processed image.

    Grid: ``grid`` or :func:`provable_grid` (the tower's square, a pooled square, or the processed image's patch grid;
    a leading CLS token for ``vision_feature_select_strategy='full'``). Geometry: the image processor's
    pad-to-square / resize / centre crop.

    Raises:
        LayoutError: the block's token count is none of the grids the config and the processed image imply.
    """
    positions = ctx.image_positions()
    check_contiguous(positions, ctx.model_class)
    n = len(positions)
    canvas, box = canvas_or_whole(ctx)
    grid = grid or provable_grid(ctx, n)
    if grid is None:
        raise LayoutError(f"{ctx.model_class}: {n} image tokens form none of the grids that its config and processed "
                          "image imply (vision image_size // patch_size, mm_tokens_per_image, pixel_values // "
                          "patch_size); the layout cannot place them")
    rows, cols, start = grid
    if rows * cols + start != n:
        raise LayoutError(f"{ctx.model_class}: a {rows}x{cols} grid (+{start}) does not hold the prompt's {n} image "
                          "tokens")
    kinds = np.full(n, "patch", dtype=object)
    kinds[:start] = "cls"
    view = grid_view("image", rows, cols, start, box)
    meta: dict[str, Any] = {"grid": [rows, cols]}
    if canvas is not None:
        meta["canvas_hw"] = [canvas.height, canvas.width]
    return VisualLayout(positions, ctx.image_size, [view], family=family, token_kind=kinds, meta=meta)


def single_view_count(ctx: LayoutContext) -> int:
    """How many processed views ``pixel_values`` (or ``pixel_values_images``) holds for the one image (1 for
    ``[1, C, H, W]``)."""
    inputs = ctx.inputs or {}
    pv = inputs.get("pixel_values")
    pv = inputs.get("pixel_values_images") if pv is None else pv
    if pv is not None and hasattr(pv, "shape") and len(pv.shape) >= 4:
        return int(np.prod(pv.shape[: len(pv.shape) - 3]))
    return 1


def _refuse(ctx: LayoutContext, reason: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"{ctx.model_class} is not registered and {reason}, so the generic layout cannot "
                                 "place its visual tokens with certainty. " + how_to_register(ctx.model_class))


def _is_encoder_decoder(config: Any) -> bool:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return bool(getattr(config, "is_encoder_decoder", False) or getattr(text, "is_encoder_decoder", False))


def _has_cross_attention(config: Any) -> bool:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return bool(getattr(text, "cross_attention_layers", None) or getattr(config, "cross_layer_interval", None))


_ENCODER_DECODER = ("{name} is an encoder-decoder model (Florence-2 style): its decoder reads the image through "
                    "cross-attention over the encoder's outputs, not through self-attention over visual tokens in its "
                    "own sequence, which is what emergence captures. Use a decoder-only vision-language model.")
_CROSS_ATTENTION = ("{name} reads the image only through cross-attention layers (Idefics / Flamingo style): its "
                    "self-attention sees a single image placeholder, so a map over it would be meaningless. "
                    "With use_resampler=True (the released IDEFICS checkpoints) its cross-attention reads perceiver "
                    "latents, which have no place in the image; without the resampler its gated cross-attention is "
                    "not captured yet. Cross-attention capture is built for Llama-3.2-Vision "
                    "(MllamaForConditionalGeneration).")


class GenericAdapter(Adapter):
    """Unregistered models: the one-grid layout only where it is provably right; otherwise a clear refusal.

    Provably right: one contiguous block of image tokens, one processed view (no tiling option in the image
    processor, one image in ``pixel_values``), and a token count equal to a grid the config or the processed image
    implies. Models whose visual tokens are learned queries (Q-Former, perceiver resampler) get a non-spatial layout
    (captured, not drawn). Encoder-decoder models and models that read the image through cross-attention are refused
    with the reason.
    """

    family = "Any other unregistered model"
    architectures = ("...",)
    support = "refused"
    summary = ("unless the generic layout is provable (one contiguous block, one view, a grid the config implies): "
               "the error names the failed rule and shows `register_adapter`")

    def refusal(self, model: Any) -> str | None:
        config, name = getattr(model, "config", None), type(model).__name__
        if config is None:
            return None
        if _is_encoder_decoder(config):
            return _ENCODER_DECODER.format(name=name)
        if _has_cross_attention(config):
            return _CROSS_ATTENTION.format(name=name)
        return None

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        positions = ctx.image_positions()
        if len(positions) == 0:
            raise LayoutError(f"{ctx.model_class}: the prompt contains no image token; did the processor insert the "
                              "image placeholder?")
        if np.any(np.diff(positions) != 1):
            raise _refuse(ctx, f"its {len(positions)} image tokens are not one contiguous block (several images, "
                               "tiles or separator tokens)")
        queries = [k for k in QUERY_TOKEN_FIELDS if getattr(ctx.config, k, None)]
        if queries:
            return learned_query_layout(ctx, f"config {queries[0]}")
        ip = ctx.image_processor
        tiling = {k: getattr(ip, k) for k in TILING_OPTIONS if getattr(ip, k, None) not in (None, False, [], (), 0)}
        if tiling:
            raise _refuse(ctx, f"its image processor makes several views of one image ({tiling})")
        views = single_view_count(ctx)
        if views != 1:
            pv = ctx.inputs["pixel_values"]
            raise _refuse(ctx, f"its pixel_values hold {views} views {tuple(pv.shape)} for one image")
        grid = provable_grid(ctx, len(positions))
        if grid is None:
            raise _refuse(ctx, f"its {len(positions)} image tokens form none of the grids its config and processed "
                               "image imply (vision image_size // patch_size, mm_tokens_per_image, pixel_values // "
                               "patch_size)")
        layout = contiguous_layout(ctx, grid)
        layout.meta["fallback"] = f"{ctx.model_class} is not registered; the contiguous-block layout was proved to fit"
        return layout


def learned_query_layout(ctx: LayoutContext, why: str, positions: np.ndarray | None = None) -> VisualLayout:
    """A non-spatial layout: the visual tokens are learned queries / latents summarising the whole image."""
    positions = ctx.image_positions() if positions is None else positions
    if len(positions) == 0:
        raise LayoutError(f"{ctx.model_class}: the prompt contains no image token")
    return VisualLayout(positions, ctx.image_size, [], family="learned_queries",
                        token_kind=np.full(len(positions), "query", dtype=object),
                        meta={"not_spatial": f"{ctx.model_class} feeds {len(positions)} learned query / latent tokens "
                                             f"({why}) that summarise the whole image; they are not image patches"})


class LearnedQueryAdapter(Adapter):
    """Q-Former and perceiver-resampler models: the visual tokens are learned queries, captured but not drawn."""

    family = "BLIP-2, InstructBLIP, Idefics2 (perceiver), other learned-query models"
    architectures = ("Blip2ForConditionalGeneration", "InstructBlipForConditionalGeneration",
                     "Idefics2ForConditionalGeneration")
    support = "attention only"
    summary = "learned query / latent tokens: captured exactly, not spatial (heatmap and analyze refuse)"
    tested = "tiny_blip2"

    def build_prompt(self, processor: Any, prompt: str) -> str:
        # BLIP-2 / InstructBLIP processors insert their query tokens themselves and have no chat template
        if getattr(processor, "num_query_tokens", None) and not getattr(processor, "chat_template", None):
            return prompt
        return super().build_prompt(processor, prompt)

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        queries = [k for k in QUERY_TOKEN_FIELDS if getattr(ctx.config, k, None)]
        return learned_query_layout(ctx, f"config {queries[0]}" if queries else "a learned resampler")


class RefusedAdapter(Adapter):
    """A family that cannot be probed: refused when the ``Probe`` is built (and by ``layout``) with
    :meth:`reason`."""

    support = "refused"

    def reason(self, name: str) -> str:
        raise NotImplementedError

    def refusal(self, model: Any) -> str | None:
        return self.reason(find_adapter(model)[0])  # the architecture it was registered under (subclasses too)

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        raise UnsupportedModelError(self.reason(ctx.model_class))


class CrossAttentionAdapter(RefusedAdapter):
    """Models that read the image only through cross-attention layers: refused (their self-attention sees one
    placeholder token)."""

    family = "Idefics (v1)"
    architectures = ("IdeficsForVisionText2Text",)
    summary = ("the image enters only through gated cross-attention layers over perceiver latents (not spatial); "
               "Llama-3.2-Vision's cross-attention is captured")

    def reason(self, name: str) -> str:
        return _CROSS_ATTENTION.format(name=name)


class EncoderDecoderAdapter(RefusedAdapter):
    """Encoder-decoder vision-language models: refused (the decoder cross-attends to the encoder)."""

    family = "Florence-2 and other encoder-decoders"
    architectures = ("Florence2ForConditionalGeneration",)
    summary = "encoder-decoder: the decoder reads the image through cross-attention"

    def reason(self, name: str) -> str:
        return _ENCODER_DECODER.format(name=name)


set_generic_adapter(GenericAdapter())


class Kosmos2Adapter(Adapter):
    """Kosmos-2: a resampler turns the image into ``latent_query_num`` learned latent tokens, placed where
    ``image_embeds_position_mask`` is 1 (the config names no image token id)."""

    family = "Kosmos-2"
    architectures = ("Kosmos2ForConditionalGeneration",)
    support = "attention only"
    summary = ("`latent_query_num` learned latent tokens at `image_embeds_position_mask`: captured exactly, not "
               "spatial")
    tested = "tiny_kosmos2"

    def build_prompt(self, processor: Any, prompt: str) -> str:
        return prompt  # Kosmos2Processor inserts <image> + latent placeholders + </image> itself

    def layout(self, ctx: LayoutContext) -> VisualLayout:
        mask = ctx.inputs.get("image_embeds_position_mask") if ctx.inputs else None
        if mask is None:
            raise LayoutError(f"{ctx.model_class} layout needs the processor output 'image_embeds_position_mask' "
                              "(where the image's latent tokens sit in the prompt)")
        positions = np.nonzero(np.asarray(mask).reshape(-1))[0]
        expected = int(getattr(ctx.config, "latent_query_num", len(positions)))
        if len(positions) != expected:
            raise LayoutError(f"{ctx.model_class}: image_embeds_position_mask marks {len(positions)} positions, the "
                              f"config's latent_query_num is {expected}")
        return learned_query_layout(ctx, "a latent-query resampler, config latent_query_num", positions=positions)


class NotYetAdapter(RefusedAdapter):
    """Families whose visual-token geometry is known but not implemented yet: refused with what stands in the way,
    instead of a guessed grid."""

    family = "Not yet placed: Emu3, Gemma3n, Phi-4-multimodal"
    architectures = ("Emu3ForConditionalGeneration",
                     "Gemma3nForConditionalGeneration", "Phi4MultimodalForCausalLM")
    summary = ("VQ codes with an end-of-line per row (Emu3), a MobileNet tower (Gemma3n), dynamic HD crops (Phi-4): "
               "the layout is not implemented; the error says so")

    _WHY = {
        "Emu3ForConditionalGeneration": "VQ codes from a convolutional encoder, rows ended by an end-of-line token",
        "Gemma3nForConditionalGeneration": "a MobileNet tower whose token grid is not read from the config yet",
        "Phi4MultimodalForCausalLM": "dynamic HD crops + a global view merged with separators",
    }

    def reason(self, name: str) -> str:
        why = self._WHY.get(name, "a layout emergence does not implement yet")
        return (f"{name}: its visual tokens are {why}; emergence does not place them yet, and will not guess a grid "
                "(a heatmap in the wrong place is worse than none). " + how_to_register(name))
