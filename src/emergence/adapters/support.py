"""The support table, generated from the adapter registry: exact geometry, attention only, or refused with the reason.

It feeds ``emergence probes`` and the README's family table (regenerate it with
``python -m emergence.adapters.support``; a test checks that the README matches). ``tested`` names the tiny
random-config instance of the real class that the test suite runs (token count, marker geometry, capture
exactness); a family is listed as exact only with such a test.
"""

from __future__ import annotations

import sys

from .base import Adapter
from .registry import adapters_in_order

__all__ = ["families", "markdown_table", "media", "text_table"]


def families() -> list[Adapter]:
    """The registered adapters in table order (the generic adapter last)."""
    import emergence.adapters  # noqa: F401  (registers the built-in adapters)

    return adapters_in_order()


def markdown_table() -> str:
    """The README's family table."""
    lines = ["| family | classes | support | inputs | layout | tested on |", "| --- | --- | --- | --- | --- | --- |"]
    for a in families():
        classes = ", ".join(c if c == "..." else f"`{c}`" for c in a.architectures)
        tested = f"`{a.tested}`" if a.tested else "—"
        lines.append(f"| {a.family} | {classes} | {a.support} | {media(a)} | {a.summary} | {tested} |")
    return "\n".join(lines) + "\n"


def media(adapter: Adapter) -> str:
    """What one prompt may hold for this family: ``image``, ``+ several images``, ``+ video``."""
    if adapter.support == "refused":
        return "—"
    parts = ["image"]
    if adapter.multi_image:
        parts.append("several images")
    if adapter.video:
        parts.append("video")
    return ", ".join(parts)


def text_table() -> str:
    """The families as ``emergence probes`` prints them."""
    rows = families()
    width = max(len(a.support) for a in rows)
    out = []
    for a in rows:
        out.append(f"{a.support:<{width}}  {a.family}" + (f"  [{media(a)}]" if a.support != "refused" else ""))
        out.append(f"{'':<{width}}    {', '.join(a.architectures)}: {a.summary.replace('`', '')}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(markdown_table())
