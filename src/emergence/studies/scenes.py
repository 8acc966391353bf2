"""What the organism studies share: the generated words of a caption matched to a scene's referents."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["WordPointing", "caption_words", "word_pointing"]


@dataclass
class WordPointing:
    """One generated word matched to a reference caption word that has a referent."""

    word: str
    category: str
    token: int  # index of the generated token
    mask: np.ndarray  # the referent, [H, W] bool
    hit: bool  # argmax of the layer/head-mean, mean-subtracted map lies inside the mask


def caption_words(run: Any) -> tuple[list[int], list[str]]:
    """Indices and stripped text of the generated tokens that carry a word (the organism's tokens are words)."""
    token_idx = [t for t, s in enumerate(run.tokens) if s.strip()]
    return token_idx, [run.tokens[t].strip() for t in token_idx]


def word_pointing(run: Any, scene: Any, maps: Any = None) -> list[WordPointing]:
    """Align the generated words with ``scene``'s reference words (longest matching blocks) and score pointing
    for every matched word that has a referent (``maps``: ``[T, V]``, default the layer and head mean of the
    attention minus the answer's mean map)."""
    from ..analysis import argmax_point, pointing_hit, token_maps

    maps = token_maps(run) if maps is None else maps  # [T, V]
    reference = scene.word_referents()
    token_idx, words = caption_words(run)
    matcher = difflib.SequenceMatcher(None, words, [w for w, _, _ in reference], autojunk=False)
    out = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            word, mask, category = reference[block.b + k]
            if mask is None or category is None or not mask.any():
                continue
            t = token_idx[block.a + k]
            hit = pointing_hit(argmax_point(run.layout.render(maps[t])), mask)
            out.append(WordPointing(word, category, t, mask, hit))
    return out
