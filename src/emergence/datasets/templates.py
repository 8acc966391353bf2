"""Prompt templates, selectable by name.

Built in (ours): grounding ``describe`` (``"describe {}"``, the organism's), ``segment``, ``where``; VQA ``plain``.
PixFoundation's own templates are read from the user's copy of its data folder with :func:`load_templates`:
``lang_grounding_prompt_templates.csv`` gives ``pf-ground-1 ... pf-ground-7`` (one ``{}`` slot: the expression) and
``prompt_templates.csv`` gives ``pf-vqa-1 ... pf-vqa-10`` (three ``|``-separated parts with a ``{}`` each: question,
options, instruction).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["GROUNDING_TEMPLATES", "VQA_TEMPLATES", "VQA_INSTRUCTION", "expand_templates", "load_templates",
           "format_grounding", "format_vqa"]

GROUNDING_TEMPLATES: dict[str, str] = {
    "describe": "describe {}",
    "segment": "Please segment {} in this image.",
    "where": "Where is {} in the image? Describe it.",
}
VQA_TEMPLATES: dict[str, str] = {
    "plain": "{}\n|{}\n|{}",
}
VQA_INSTRUCTION = "Answer with the option's letter from the given choices directly."


def load_templates(folder: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """PixFoundation's templates from ``folder`` (its ``data/pixmmvp``): ``(grounding, vqa)`` dicts by name.
    Missing files give empty dicts."""
    folder = Path(folder)
    out: list[dict[str, str]] = []
    for file, prefix in (("lang_grounding_prompt_templates.csv", "pf-ground"), ("prompt_templates.csv", "pf-vqa")):
        path = folder / file
        found: dict[str, str] = {}
        if path.exists():
            with open(path, newline="", encoding="utf-8") as fh:
                for row in list(csv.reader(fh))[1:]:
                    if len(row) >= 2:
                        found[f"{prefix}-{row[0].strip()}"] = row[1].replace("\\n", "\n").replace("\\t", "\t")
        out.append(found)
    return out[0], out[1]


def expand_templates(names: Sequence[str], folder: str | os.PathLike | None = None) -> list[str]:
    """Grounding template names as given, with ``["all"]`` expanded: every PixFoundation template found in
    ``folder`` (``pf-ground-*``), or the built-in ones when there is no folder or it has none."""
    names = [n for n in names if n]
    if names != ["all"]:
        return names
    extra = load_templates(folder)[0] if folder else {}
    return sorted(extra) or list(GROUNDING_TEMPLATES)


def format_grounding(template: str, expression: str) -> str:
    """Fill a one-slot grounding template; a template without ``{}`` gets the expression appended."""
    return template.format(expression) if "{}" in template else f"{template} {expression}"


def format_vqa(template: str, question: str, options: tuple[str, ...] | None, instruction: str = VQA_INSTRUCTION
               ) -> str:
    """Fill a ``question | options | instruction`` template; options are written ``(a) ... (b) ...``."""
    opts = " ".join(f"({chr(97 + i)}) {o}" for i, o in enumerate(options or ()))
    parts = template.split("|")
    values = [question, opts, instruction]
    return "".join(p.format(v) if "{}" in p else p for p, v in zip(parts, values + [""] * (len(parts) - 3)))
