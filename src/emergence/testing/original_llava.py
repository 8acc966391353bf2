"""The original LLaVA codebase's model class, rebuilt offline (adapters/original_llava.py), and a hand-written attention module."""

from __future__ import annotations

import math
from typing import Any

import torch

from ..capture import find_cache
from .common import clip_vision, init_weights, make_tokenizer

__all__ = ["HandWrittenAttention", "hand_written_attention", "tiny_original_llava"]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class HandWrittenAttention(torch.nn.Module):
    """Self-attention computed by hand from a Llama attention module's projections, as remote-code classes (and
    transformers' own classes before 4.48) do: rotary embedding, grouped keys, causal mask and softmax in this
    ``forward``, which returns ``(output, weights if output_attentions else None)`` and never calls transformers'
    attention interface. Batches of one without padding (the attention mask is not read)."""

    def __init__(self, original: torch.nn.Module) -> None:
        super().__init__()
        self.layer_idx = original.layer_idx
        self.head_dim = original.head_dim
        self.q_proj, self.k_proj = original.q_proj, original.k_proj
        self.v_proj, self.o_proj = original.v_proj, original.o_proj

    def forward(self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor],
                attention_mask: Any = None, output_attentions: bool = False,
                **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, q_len, _ = hidden_states.shape
        shape = (batch, q_len, -1, self.head_dim)
        q = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        cache = find_cache(kwargs)  # `cache=` from transformers 5.24 on, `past_key_values=` before
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        kv_len = k.shape[2]
        causal = torch.ones(q_len, kv_len, dtype=torch.bool, device=q.device).tril(kv_len - q_len)
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")).float(), dim=-1).to(q.dtype)
        out = (weights @ v).transpose(1, 2).reshape(batch, q_len, -1)
        return self.o_proj(out), (weights if output_attentions else None)


def hand_written_attention(decoder: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``layer.self_attn`` of a Llama-style ``decoder`` by :class:`HandWrittenAttention` (same
    weights); returns the decoder."""
    for layer in decoder.layers:
        layer.self_attn = HandWrittenAttention(layer.self_attn)
    return decoder


def _original_llava_class() -> type:
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaForCausalLM

    from ..adapters.original_llava import IMAGE_TOKEN_INDEX

    class LlavaLlamaForCausalLM(LlamaForCausalLM):
        """A stand-in built the way the original LLaVA codebase's class is: a ``LlamaForCausalLM`` that holds a CLIP
        tower and an ``mm_projector`` (2-layer MLP with GELU), reads ``config.mm_vision_select_layer`` /
        ``mm_vision_select_feature``, splices each image's features in place of ``IMAGE_TOKEN_INDEX`` (-200)
        (``prepare_inputs_labels_for_multimodal``) and generates from ``inputs_embeds``, returning only the new
        tokens."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.vision_tower = CLIPVisionModel(CLIPVisionConfig(**config.mm_vision_config))
            hidden = config.hidden_size
            self.mm_projector = torch.nn.Sequential(torch.nn.Linear(config.mm_hidden_size, hidden), torch.nn.GELU(),
                                                    torch.nn.Linear(hidden, hidden))

        def get_vision_tower(self) -> Any:
            return self.vision_tower

        def encode_images(self, images: torch.Tensor) -> torch.Tensor:
            out = self.vision_tower(images, output_hidden_states=True)
            features = out.hidden_states[self.config.mm_vision_select_layer]
            if self.config.mm_vision_select_feature == "patch":
                features = features[:, 1:]
            return self.mm_projector(features)

        def prepare_inputs_labels_for_multimodal(self, input_ids: torch.Tensor, images: torch.Tensor
                                                 ) -> torch.Tensor:
            features = self.encode_images(images)
            embed = self.get_input_embeddings()
            rows = []
            for b in range(input_ids.shape[0]):
                ids = input_ids[b]
                at = torch.nonzero(ids == IMAGE_TOKEN_INDEX).flatten().tolist()
                pieces, start = [], 0
                for k, pos in enumerate(at):
                    pieces += [embed(ids[start:pos]), features[k]]
                    start = pos + 1
                pieces.append(embed(ids[start:]))
                rows.append(torch.cat(pieces))
            return torch.stack(rows)

        def forward(self, input_ids: Any = None, images: Any = None, inputs_embeds: Any = None,
                    attention_mask: Any = None, **kwargs: Any) -> Any:
            if inputs_embeds is None and images is not None:
                inputs_embeds = self.prepare_inputs_labels_for_multimodal(input_ids, images)
                input_ids, attention_mask = None, None
            return super().forward(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   **kwargs)

        @torch.no_grad()
        def generate(self, inputs: Any = None, images: Any = None, **kwargs: Any) -> Any:
            if images is None:
                return super().generate(inputs, **kwargs)
            kwargs.pop("attention_mask", None)
            embeds = self.prepare_inputs_labels_for_multimodal(inputs, images)
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            return super().generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)

    return LlavaLlamaForCausalLM


def tiny_original_llava(seed: int = 0, image_size: int = 32, patch: int = 8, image_aspect_ratio: str = "pad",
                        select_feature: str = "patch", hand_written: bool = False, local_vision: bool = False,
                        attn_implementation: str = "sdpa") -> tuple[Any, Any]:
    """A stand-in for an original-LLaVA-codebase model (``LlavaLlamaForCausalLM``, see :func:`_original_llava_class`)
    with its processor (:class:`emergence.adapters.original_llava.OriginalLlavaProcessor`: the tokenizer, the CLIP
    image processor, the image settings). ``hand_written=True`` gives its decoder :class:`HandWrittenAttention`, as
    the transformers versions the codebase pins compute attention (capture: ``mechanism="auto"`` picks hooks; load
    with ``attn_implementation="eager"`` semantics: those modules return their weights)."""
    from transformers import LlamaConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from ..adapters.original_llava import OriginalLlavaProcessor

    tokenizer = make_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    config.mm_vision_config = clip_vision(image_size, patch, local=local_vision).to_dict()
    config.mm_hidden_size = 32
    config.mm_vision_select_layer = -2
    config.mm_vision_select_feature = select_feature
    config.image_aspect_ratio = image_aspect_ratio
    config.mm_patch_merge_type = "flat"
    config.architectures = ["LlavaLlamaForCausalLM"]
    model = init_weights(_original_llava_class()(config), seed)
    model.set_attn_implementation(attn_implementation)
    if hand_written:
        hand_written_attention(model.model)
    ip = CLIPImageProcessorPil(size={"shortest_edge": image_size}, crop_size={"height": image_size,
                                                                             "width": image_size})
    template = "USER: <image>\n{prompt} ASSISTANT:"
    return model, OriginalLlavaProcessor.from_model(model, tokenizer, ip, template=template)
