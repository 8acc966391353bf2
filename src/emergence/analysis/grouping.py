"""Step 6: group generated tokens into words and noun phrases, by character offsets (no string matching).

A *word* is a maximal run of letters/digits (with inner apostrophes or hyphens) in the answer text; its tokens are the
generated tokens whose character span overlaps it (``run.token_offsets``, from the tokenizer). Punctuation-only tokens
form no word. *Phrases* are spaCy noun chunks of the answer, when spaCy and an English pipeline with a parser are
installed; otherwise :func:`units` falls back to words and says so.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Unit", "UnitKind", "units", "token_units", "word_units", "phrase_units", "english_pipeline"]

UnitKind = Literal["tokens", "words", "phrases"]
_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")


@dataclass(frozen=True)
class Unit:
    """A scored piece of the answer.

    Attributes:
        kind: ``"token"``, ``"word"`` or ``"phrase"``.
        text: its text.
        tokens: indices of its generated tokens (the unit's map is their mean).
        start, end: character span in the answer.
    """

    kind: str
    text: str
    tokens: tuple[int, ...]
    start: int
    end: int


def _spans_to_units(run: Any, spans: list[tuple[int, int]], kind: str) -> list[Unit]:
    offsets = run.token_offsets.tolist()
    out = []
    for s, e in spans:
        toks = tuple(t for t, (a, b) in enumerate(offsets) if b > a and a < e and b > s)
        if toks:
            out.append(Unit(kind, run.text[s:e], toks, s, e))
    return out


def token_units(run: Any) -> list[Unit]:
    """One unit per generated token that covers any non-space text."""
    out = []
    for t, (a, b) in enumerate(run.token_offsets.tolist()):
        piece = run.text[a:b]
        if b > a and piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append(Unit("token", piece.strip(), (t,), a + lead, a + lead + len(piece.strip())))
    return out


def word_units(run: Any) -> list[Unit]:
    """One unit per word of the answer (module docstring)."""
    return _spans_to_units(run, [m.span() for m in _WORD.finditer(run.text)], "word")


_PIPELINES: dict[str, Any] = {}


def english_pipeline(name: str = "en_core_web_sm") -> Any:
    """The spaCy English pipeline that noun chunks come from (loaded once per process).

    Raises:
        MissingDependencyError: spaCy is not installed.
        EmergenceError: the pipeline is not installed.
    """
    from ..errors import EmergenceError, require

    if name not in _PIPELINES:
        spacy = require("spacy", "nlp", "units='phrases'")
        try:
            _PIPELINES[name] = spacy.load(name)
        except OSError as exc:
            raise EmergenceError(
                f"units='phrases' needs a spaCy English pipeline: python -m spacy download {name}") from exc
    return _PIPELINES[name]


def phrase_units(run: Any, nlp: Any = None) -> list[Unit]:
    """Noun chunks of the answer (spaCy). ``nlp``: a loaded spaCy pipeline (default ``en_core_web_sm``).

    Raises:
        MissingDependencyError: spaCy is not installed.
        EmergenceError: no English pipeline with a dependency parser is installed.
    """
    from ..errors import EmergenceError

    doc = (nlp or english_pipeline())(run.text)
    try:
        chunks = [(c.start_char, c.end_char) for c in doc.noun_chunks]
    except ValueError as exc:  # pipeline without a parser
        raise EmergenceError(f"the spaCy pipeline {nlp.meta.get('name')!r} has no parser for noun chunks") from exc
    return _spans_to_units(run, chunks, "phrase")


def units(run: Any, kind: UnitKind = "words", nlp: Any = None) -> tuple[list[Unit], str]:
    """The answer's units of ``kind``. Returns ``(units, kind_used)``: phrases fall back to words (with a warning)
    when spaCy or its English pipeline is missing."""
    if kind == "tokens":
        return token_units(run), "tokens"
    if kind == "words":
        return word_units(run), "words"
    if kind == "phrases":
        from ..errors import EmergenceError

        try:
            return phrase_units(run, nlp), "phrases"
        except EmergenceError as exc:  # MissingDependencyError included
            warnings.warn(f"noun phrases unavailable ({exc}); falling back to words", stacklevel=2)
            return word_units(run), "words"
    raise ValueError(f"units={kind!r} is not one of 'tokens', 'words', 'phrases'")
