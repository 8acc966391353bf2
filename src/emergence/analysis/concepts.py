"""Concept category of a unit (PixFoundation's "what does the grounding token describe"): appearance, location, part,
context, entity, state — or ``other`` for function words and punctuation.

:class:`LexiconJudge` is the offline default: a word list per category, looked up for the unit's words from the last
content word backwards (so "red car" is an entity phrase and "red" alone is appearance); any other content word is an
entity. A judge is any callable ``(unit_text, answer_text) -> category``; :class:`HTTPJudge` asks an OpenAI-compatible
chat endpoint (never required).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Callable

__all__ = ["CATEGORIES", "Judge", "LexiconJudge", "HTTPJudge", "classify"]

CATEGORIES = ("appearance", "location", "part", "context", "entity", "state")
Judge = Callable[[str, str], str]

_LEXICON: dict[str, str] = {}
for _cat, _words in {
    "appearance": """red green blue yellow purple orange pink brown black white grey gray golden silver violet cyan
        magenta beige tan dark light bright pale colorful colourful coloured colored large small big tiny huge little
        tall short long wide narrow thick thin round square rectangular triangular circular oval striped spotted
        dotted plain shiny wooden metal metallic plastic glass fluffy furry hairy smooth rough transparent
        patterned checkered floral size color colour shape texture""",
    "location": """left right top bottom middle center centre above below under underneath beneath behind front
        near next beside between inside outside corner edge side upper lower far close foreground distance across
        along around over on at in position located""",
    "part": """roof pole handle wheel wheels leg legs arm arms head heads hand hands foot feet tail wing wings door
        doors window windows eye eyes ear ears nose mouth face hair neck body seat screen lid cap blade beak trunk
        branch branches leaf leaves petal petals stem handlebar handlebars pedal engine hood bumper tire tires
        button buttons strap sleeve collar tip base chimney paw paws horn horns fin mirror""",
    "context": """background scene sky ground floor wall walls room street road grass field water sea ocean beach
        table desk kitchen park forest tree trees building buildings city landscape snow sand indoors outdoors
        surroundings environment setting backdrop""",
    "state": """hollow solid open closed empty full broken sitting standing running walking lying sleeping eating
        flying parked moving wet dry lit on off filled folded hanging stacked upside opened""",
}.items():
    for _w in _words.split():
        _LEXICON.setdefault(_w, _cat)

_STOP = set("""a an the this that these those of and or with to for from by as is are was were be been it its
    there here which who what whose his her their our your my some any each every one two three image picture photo
    shows showing depicts depicting""".split())
_WORD = re.compile(r"[^\W_]+")


class LexiconJudge:
    """Offline lexicon classifier (module docstring). ``extra`` adds or overrides ``{word: category}``."""

    def __init__(self, extra: dict[str, str] | None = None) -> None:
        bad = {w: c for w, c in (extra or {}).items() if c not in CATEGORIES}
        if bad:
            raise ValueError(f"unknown categories in {bad}; use one of {CATEGORIES}")
        self.lexicon = {**_LEXICON, **{w.lower(): c for w, c in (extra or {}).items()}}

    def __call__(self, unit_text: str, answer_text: str = "") -> str:
        words = [w.lower() for w in _WORD.findall(unit_text)]
        content = [w for w in words if w not in _STOP]
        if not content:
            return "other"
        last = content[-1]
        if last in self.lexicon:
            return self.lexicon[last]
        if last.endswith("s") and last[:-1] in self.lexicon:
            return self.lexicon[last[:-1]]
        return "entity"


class HTTPJudge:
    """Ask an OpenAI-compatible ``/chat/completions`` endpoint for the category.

    Args:
        base_url: e.g. ``"http://localhost:8000/v1"``.
        model: model name sent in the request.
        api_key_env: environment variable holding the API key (optional).
        timeout: seconds per request.
    """

    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout: float = 30.0) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.timeout = timeout

    def __call__(self, unit_text: str, answer_text: str = "") -> str:
        question = (
            f"In the sentence {answer_text!r}, which concept does the phrase {unit_text!r} describe? "
            f"Answer with exactly one word from: {', '.join(CATEGORIES)}, other."
        )
        body = json.dumps({"model": self.model, "temperature": 0,
                           "messages": [{"role": "user", "content": question}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            reply = json.loads(response.read())["choices"][0]["message"]["content"].lower()
        for cat in (*CATEGORIES, "other"):
            if re.search(rf"\b{cat}\b", reply):
                return cat
        raise ValueError(f"the judge at {self.url} answered {reply!r}, which names no category")


def classify(unit_text: str, answer_text: str = "", judge: Judge | None = None) -> str:
    """Category of ``unit_text`` by ``judge`` (default :class:`LexiconJudge`)."""
    return (judge or _DEFAULT)(unit_text, answer_text)


_DEFAULT = LexiconJudge()
