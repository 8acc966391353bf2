"""A self-contained HTML viewer of one :class:`~emergence.ProbeRun` or one
:class:`~emergence.analysis.EmergenceReport`: ``run.to_html(path)``, ``report.to_html(path)``, ``emergence view``,
and inline in Jupyter (``_repr_html_``).

One file, no server, no network: the page embeds the run's attention, its layout, the image(s) and the answer, and
computes every map in the browser with the library's rules (layer and head means, sink and corner handling, the
normalisations of :mod:`emergence.analysis.token_maps`, bicubic rendering through the layout as
:meth:`~emergence.layouts.VisualLayout.render`), so changing the word, the layers, the head or the normalisation
needs no Python.

What is embedded, at which precision (the size budget)
    The attention as float16 (the precision runs store it in; a layer or head mean computed here in float32 is rounded
    to float16 once, a relative step of at most 2**-11). The full ``[T, L, H, V]`` when it fits ``budget_mb``
    (default 32 MB of attention); otherwise the layer means ``[T, L, V]`` (the page says so and how to get the heads:
    a larger ``budget_mb``, fewer ``layers``, or ``run.select(...)``); a run kept as layer or answer means embeds what
    it has. Images are embedded as PNG on a grid whose longer side is ``max_side`` (default 512) pixels; maps are
    rendered on that grid. A LLaVA-1.5-7B-shaped run (128 answer tokens, 32 layers x 32 heads x 576 visual tokens)
    holds 151 MB of head attention, over the budget: its page embeds the 4.7 MB of layer means.
"""

from __future__ import annotations

import base64
import html
import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..analysis.grouping import word_units
from ..layouts.base import working_size

__all__ = ["GENERATOR", "inline_frame", "page_html", "report_payload", "run_payload", "viewer_source", "write_page"]

#: the page's ``<meta name="generator">``: how a later write recognises a page the toolkit wrote
GENERATOR = "emergence viewer"
PAYLOAD_FORMAT = 1


def _short(text: str, width: int = 90) -> str:
    text = text.strip()
    return text if len(text) <= width else text[: width - 2] + "…"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _png(image: Any, size: tuple[int, int]) -> str:
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    picture = picture.convert("RGB")
    if picture.size != (size[1], size[0]):
        picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return _b64(buf.getvalue())


def _half(values: Any) -> str:
    """float16 little-endian bytes of ``values``, base64."""
    import torch

    arr = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float32)
    return _b64(np.ascontiguousarray(arr.astype("<f2")).tobytes())


def _attention(run: Any, budget_mb: float) -> tuple[dict[str, Any], str | None]:
    """The embedded attention ``[T, L, H, V]`` (H = 1 for layer means, L = 1 for an answer mean) and, when it is a
    reduced set of what the run holds, the page's note saying so."""
    att = run.attention
    note = None
    if run.keep == "heads":
        nbytes = att.numel() * 2
        if nbytes > budget_mb * 2**20:
            att = att.float().mean(2, keepdim=True)
            note = (f"This page holds the layer means only: the run's per-head attention ({nbytes / 2**20:.1f} MB as "
                    f"float16) exceeds the page's budget of {budget_mb:g} MB. For single heads, write the page with a "
                    "larger budget (run.to_html(path, budget_mb=...)), capture fewer layers, or select one image.")
    elif run.keep == "layers":
        att = att.float()[:, :, None]
    else:
        att = att.float()[:, None, None]
    t, n_layers, n_heads, v = (int(s) for s in att.shape)
    return {"shape": [t, n_layers, n_heads, v], "data": _half(att), "stored": run.keep,
            "embedded": "heads" if run.keep == "heads" and note is None else
                        "layer means" if run.keep in ("heads", "layers") else "answer mean"}, note


def _part(layout: Any, members: np.ndarray) -> dict[str, Any]:
    return {
        "image_size": [int(s) for s in layout.image_size],
        "fuse": layout.default_fuse,
        "members": [int(k) for k in members],
        "views": [{"rows": int(v.grid[0]), "cols": int(v.grid[1]),
                   "index": [int(i) for i in np.asarray(v.index).ravel()], "box": [float(b) for b in v.box],
                   "cell": [float(c) for c in v.cell_size], "kind": v.kind} for v in layout.views],
    }


def _panels(run: Any, max_side: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(parts, panels)``: every image part of the layout, and one panel per image / video frame to draw."""
    layout = run.layout
    if not layout.spatial:
        from ..errors import UnsupportedModelError

        raise UnsupportedModelError(f"{layout.family}'s visual tokens are not spatial: there is no map to draw in a "
                                    "viewer")
    if not layout.is_composite:
        if run.image is None:
            raise ValueError("the run holds no image (it was made from processed inputs without image=...): pass the "
                             "original image to generate, or set run.image, to draw it")
        size = working_size(layout.image_size, max_side)
        parts = [_part(layout, np.arange(layout.num_tokens))]
        return parts, [{"label": "image", "part": 0, "png": _png(run.image, size), "height": size[0],
                        "width": size[1]}]
    parts, panels = [], []
    for k, part in enumerate(layout.parts):
        parts.append(_part(part, layout.members(k)))
        size = working_size(part.image_size, max_side)
        source = run.media[layout.items.index(part.item)] if run.media else None
        if part.frames is None:
            if source is None:
                raise ValueError(f"the run holds no pixels of image {part.item}; it cannot be drawn")
            panels.append({"label": f"image {part.item}", "part": k, "png": _png(source, size), "height": size[0],
                           "width": size[1]})
            continue
        for f in range(*part.frames):  # the part's (first, stop) frame range
            if source is None:
                raise ValueError(f"the run holds no frames of video {part.item}; it cannot be drawn")
            panels.append({"label": f"video {part.item} frame {f}", "part": k, "png": _png(source[f], size),
                           "height": size[0], "width": size[1]})
    return parts, panels


def _maps(maps: Any, t: int, v: int) -> dict[str, dict[str, str]]:
    """``{name: [T, V] maps}`` of other map methods, embedded as float16."""
    out = {}
    for name, values in (maps or {}).items():
        shape = tuple(getattr(values, "shape", np.shape(values)))
        if shape != (t, v):
            raise ValueError(f"the {name!r} maps have shape {shape}; the run's are [T, V] = {(t, v)}")
        out[str(name)] = {"data": _half(values)}
    return out


def run_payload(run: Any, *, max_side: int = 512, budget_mb: float = 32.0, maps: Any = None,
                units: Any = None, title: str | None = None) -> dict[str, Any]:
    """The data a viewer page embeds for ``run`` (module docstring).

    Args:
        max_side: the longer side, in pixels, of the grid images and maps are drawn on.
        budget_mb: the most attention, in MB of float16, to embed per head (else layer means).
        maps: ``{method name: [T, V] maps}`` of other map methods to show beside the attention
            (:func:`emergence.analysis.methods.recorded_maps`).
        units: the clickable units (default: the answer's words, as the analyzer groups them).
    """
    if not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < 16:
        raise ValueError(f"max_side must be an integer of at least 16 pixels, got {max_side!r}")
    if not budget_mb > 0:
        raise ValueError(f"budget_mb must be positive, got {budget_mb!r}")
    if len(run) == 0:
        raise ValueError("the run generated no token: there is nothing to explore")
    parts, panels = _panels(run, max_side)
    attention, note = _attention(run, budget_mb)
    units = word_units(run) if units is None else units
    return {
        "format": PAYLOAD_FORMAT, "kind": "run", "title": title or _short(run.text),
        "version": __version__, "prompt": run.prompt, "text": run.text, "tokens": list(run.tokens),
        "words": [{"text": u.text, "tokens": [int(t) for t in u.tokens]} for u in units],
        "layers": [int(layer) for layer in run.layers], "keep": run.keep, "convention": run.convention,
        "family": run.layout.family, "model": run.meta.get("model"), "attention": attention, "note": note,
        "parts": parts, "panels": panels, "methods": _maps(maps, len(run), run.layout.num_tokens),
        "defaults": {"normalise": "mean_subtract", "method": "attention", "layers": None, "head": "mean",
                     "sink_z": None, "remove_corners": False},
        "selected_heads": [],
    }


def _bits(mask: np.ndarray, size: tuple[int, int]) -> str:
    """``mask`` read at the centres of a ``size`` grid, bit-packed (row-major, most significant bit first)."""
    h, w = mask.shape
    ys = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(int), h - 1)
    xs = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(int), w - 1)
    return _b64(np.packbits(mask[np.ix_(ys, xs)].astype(bool).ravel()).tobytes())


def report_payload(report: Any, *, max_side: int = 512, budget_mb: float = 32.0, maps: Any = None) -> dict[str, Any]:
    """The data a viewer page embeds for an :class:`~emergence.analysis.EmergenceReport`: the run's (with the
    report's units as the clickable words and its map options as the defaults), and per unit its chosen mask, SAM2
    points, IoU and concept category, the emergence and best units, tau and the map method (``maps``: as
    :func:`run_payload`)."""
    options = report.options
    payload = run_payload(report.run, max_side=max_side, budget_mb=budget_mb, units=report.units, maps=maps)
    payload["kind"] = "report"
    table = report.table
    panel = payload["panels"][0]
    size = (panel["height"], panel["width"])
    emergence = None if report.emergence is None else int(report.emergence.name)
    best = None if report.best is None else int(report.best.name)
    units = []
    for i in range(len(report.units)):
        row = table.iloc[i]
        chosen = int(row["chosen"]) if "chosen" in table else 0
        prompt = report.prompts[i]
        iou = float(row["iou"]) if "iou" in table and np.isfinite(row["iou"]) else None
        units.append({"iou": iou, "category": str(row.get("category", "")), "emergence": i == emergence,
                      "best": i == best, "mask": _bits(report.masks[i, chosen], size),
                      "points": [[float(x), float(y), int(lab)] for (x, y), lab in zip(prompt.points, prompt.labels)]})
    heads = options.get("heads")
    pairs = [[int(a), int(b)] for a, b in heads] if heads and all(isinstance(h, (list, tuple)) for h in heads) else []
    payload["report"] = {
        "units": units, "tau": float(report.tau), "emergence": emergence, "best": best,
        "unit_kind": report.unit_kind, "method": getattr(options.get("method"), "name", options.get("method")),
        "mask_size": list(size), "image_size": [int(s) for s in report.run.layout.image_size],
        "gt": None if report.gt is None else _bits(report.gt, size),
        "emergence_layer": report.emergence_layer if hasattr(report, "emergence_layer") else None,
    }
    method = payload["report"]["method"] or "attention"
    payload["defaults"].update(normalise=options.get("normalise") or "mean_subtract",
                               method=method if method in ("attention", *payload["methods"]) else "attention",
                               layers=options.get("layers"), sink_z=options.get("sink_z"),
                               remove_corners=bool(options.get("remove_corners")))
    if pairs:
        payload["selected_heads"] = pairs
        payload["defaults"]["head"] = "selected"
    elif heads:
        payload["defaults"]["head"] = str(int(heads[0])) if len(heads) == 1 else "mean"
    return payload


def page_html(payload: dict[str, Any]) -> str:
    """The self-contained page of a payload (:func:`run_payload` / :func:`report_payload`)."""
    script = resources.files(__package__).joinpath("viewer.js").read_text(encoding="utf-8")
    style = resources.files(__package__).joinpath("viewer.css").read_text(encoding="utf-8")
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    title = html.escape(f"emergence · {payload['title']}")
    note = f'<p class="ev-note" id="ev-note">{html.escape(payload["note"])}</p>' if payload.get("note") else ""
    report = payload.get("kind") == "report"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="{GENERATOR} {html.escape(__version__)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head>
<body>
<header><h1>{html.escape(payload["title"])}</h1>
<p class="ev-meta">{html.escape(str(payload.get("model") or ""))} · {html.escape(payload["family"])} ·
prompt: <q>{html.escape(payload["prompt"])}</q> · attention embedded: {payload["attention"]["embedded"]}
({" x ".join(str(s) for s in payload["attention"]["shape"])}, float16)</p>{note}</header>
<main>
<section class="ev-answer"><h2>Answer <label class="ev-small"><input type="checkbox" id="ev-hover"> follow the
pointer</label></h2><p id="ev-words"></p><p id="ev-info" class="ev-info"></p></section>
<section class="ev-view"><canvas id="ev-canvas"></canvas>
<div class="ev-controls">
<label>image <select id="ev-panel"></select></label>
<label>map <select id="ev-method"></select></label>
<label><span id="ev-layers-label">layers</span> <input type="range" id="ev-layer-lo" min="0" value="0">
<input type="range" id="ev-layer-hi" min="0" value="0"></label>
<label>head <select id="ev-head"></select></label>
<label>normalise <select id="ev-norm"><option value="mean_subtract">mean-subtracted</option>
<option value="minmax">min-max per token</option><option value="none">raw</option></select></label>
<label>sinks: z <input type="number" id="ev-sink" min="0.5" step="0.5" placeholder="off"></label>
<label><input type="checkbox" id="ev-corners"> remove grid corners</label>
<label>opacity <input type="range" id="ev-opacity" min="0" max="1" step="0.05"></label>
<label>colours <select id="ev-cmap"><option>jet</option><option>viridis</option><option>gray</option></select></label>
<label><input type="checkbox" id="ev-marker" checked> peak marker</label>
<label{'' if report else ' hidden'}><input type="checkbox" id="ev-masks" checked> mask, points and ground truth</label>
</div></section>
<section id="ev-methods"{'' if payload.get("methods") else ' hidden'}></section>
{'<section class="ev-report"><svg id="ev-curve" viewBox="0 0 640 190"></svg></section>' if report else ''}
</main>
<footer>Written by emergence {html.escape(__version__)}: maps computed in this page from the embedded attention
(docs/viewer.md). Arrow keys step through the words.</footer>
<script type="application/json" id="emergence-data">{data}</script>
<script>{script}</script>
</body></html>
"""


def viewer_source(path: str | Any) -> tuple[str, Path]:
    """What a folder holds for ``emergence view``: ``("run", folder)``, ``("report", folder)`` or ``("sweep",
    folder)`` (the demo's output: its ``run/``).

    Raises:
        FileNotFoundError: no such folder. ValueError: a folder that holds none of them (the message says what).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {str(folder)!r}")
    if (folder / "report.json").is_file() and (folder / "run" / "run.json").is_file():
        return "report", folder
    if (folder / "run.json").is_file():
        return "run", folder
    if (folder / "manifest.json").is_file():
        return "sweep", folder
    if (folder / "run" / "run.json").is_file():
        return "run", folder / "run"
    raise ValueError(f"{str(folder)!r} holds no saved run (run.json), analysis (report.json + run/) or sweep "
                     "(manifest.json); give the folder that `emergence run`, `analyze`, `demo` or `sweep` wrote")


def inline_frame(payload: dict[str, Any], height: int = 760) -> str:
    """The page in an ``<iframe srcdoc>``: what Jupyter shows inline (scripts run in the frame, isolated from the
    notebook and from other viewers)."""
    return (f'<iframe srcdoc="{html.escape(page_html(payload), quote=True)}" style="width:100%;height:{height}px;'
            'border:1px solid #ddd" sandbox="allow-scripts"></iframe>')


def write_page(payload: dict[str, Any], path: str | Any) -> Path:
    """Write the page atomically; an existing file is replaced only when this toolkit wrote it (its generator tag).

    Raises:
        OutputDirError: ``path`` is a folder, or a file the toolkit did not write.
    """
    from ..files import atomic_write_text, check_output_file

    path = check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, page_html(payload))
