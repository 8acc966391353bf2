"""Batches of prompts for one generation: left padding, and where each item's answer ends.

Each item is processed alone (its own inputs, its own layout, exactly as a batch of one), then the items' inputs are
put side by side: token-aligned tensors (``[1, S]``: input ids, attention mask, token types) are padded on the LEFT to
the longest prompt, so every item's last prompt position is the batch's last one and its answer starts at the same
step; media tensors are concatenated along their first axis, or, when the items hold different numbers of tiles /
images in the second axis (``[1, N, ...]``: LLaVA-NeXT patches, Idefics3 images), padded there with zeros first (the
models drop those: LLaVA-NeXT counts its patches from ``image_sizes``, Idefics3 drops all-zero images).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .errors import CaptureError

__all__ = ["answer_lengths", "collate_left"]


def collate_left(items: Sequence[Mapping[str, Any]], pad_id: int) -> tuple[dict[str, Any], list[int]]:
    """One left-padded batch from single-item inputs; returns ``(batch inputs, each item's padding)``.

    Raises:
        CaptureError: an input the batch cannot hold (a tensor whose items differ in more than the axes above, or a
            non-tensor value that differs between items).
    """
    lengths = [int(x["input_ids"].shape[1]) for x in items]
    width = max(lengths)
    pads = [width - n for n in lengths]
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [x[key] for x in items]
        first = values[0]
        if not isinstance(first, torch.Tensor):
            if any(v != first for v in values[1:]):
                raise CaptureError(f"input {key!r} differs between the batch's items ({values[:3]}...); batch items "
                                   "whose processed inputs agree on it, or generate them one at a time")
            out[key] = first
            continue
        if first.ndim == 2 and first.shape[0] == 1 and all(v.shape == (1, n) for v, n in zip(values, lengths)):
            fill = pad_id if key == "input_ids" else 0
            out[key] = torch.cat([torch.cat([v.new_full((1, p), fill), v], dim=1) for v, p in zip(values, pads)])
            continue
        if all(v.shape[1:] == first.shape[1:] for v in values):
            out[key] = torch.cat(values, dim=0)
            continue
        if first.ndim >= 2 and all(v.shape[0] == 1 and v.shape[2:] == first.shape[2:] for v in values):
            most = max(int(v.shape[1]) for v in values)
            out[key] = torch.cat([torch.cat([v, v.new_zeros((1, most - v.shape[1], *v.shape[2:]))], dim=1)
                                  for v in values])
            continue
        raise CaptureError(f"input {key!r} has shapes {[tuple(v.shape) for v in values]} across the batch, which no "
                           "padding rule here joins; generate these items one at a time")
    return out, pads


def answer_lengths(new_ids: torch.Tensor, eos: Sequence[int]) -> list[int]:
    """How many of each row's generated ids ``[B, T]`` are its answer: up to and including its first end-of-sequence
    token (a finished item's later positions are padding), else all ``T``."""
    out = []
    ends = torch.zeros_like(new_ids, dtype=torch.bool)
    for token in eos:
        ends |= new_ids == int(token)
    for row in ends:
        hit = torch.nonzero(row).flatten()
        out.append(int(hit[0]) + 1 if hit.numel() else int(new_ids.shape[1]))
    return out
