"""Stand-ins for text tools the analysis uses (a fixed noun-chunk parser)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any



__all__ = ["FixedNounChunks"]


class FixedNounChunks:
    """Stands in for a spaCy English pipeline where none can be installed (offline machines): ``nlp(text)`` returns
    a doc whose ``noun_chunks`` are the given character spans of that text (spans with ``start_char``,
    ``end_char``, ``text``), so that noun-chunk units (``units="phrases"``, ``protocol="pixfoundation"``) run on a
    parse fixed by the caller, e.g. the parse a reference computation was given.

    Args:
        chunks: ``{text: [(start_char, end_char), ...]}``.
    """

    def __init__(self, chunks: dict[str, Sequence[tuple[int, int]]]) -> None:
        self.chunks = {text: [(int(s), int(e)) for s, e in spans] for text, spans in chunks.items()}
        self.meta = {"name": "fixed_noun_chunks"}

    def __call__(self, text: str) -> Any:
        from types import SimpleNamespace

        if text not in self.chunks:
            raise KeyError(f"no fixed parse for {text!r}")
        return SimpleNamespace(noun_chunks=[SimpleNamespace(start_char=s, end_char=e, text=text[s:e])
                                            for s, e in self.chunks[text]])
