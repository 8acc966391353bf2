"""A sweep in the browser: ``emergence report SWEEP --html`` / ``emergence view SWEEP``.

``OUT/report/index.html`` holds the sweep's figures (where grounding emerges, concept categories, heads, templates),
its mIoU table and a table of samples; the first ``samples`` grounding items (or the keys given) link to their own
viewer page (``OUT/report/index_samples/NNNNN.html``: beside the page, named after it;
:mod:`emergence.plotting.viewer`). A sweep stores maps, not runs, so
those items are recomputed with the sweep's model and options; each recomputed item is checked against its committed
row (oracle IoU and emergence unit), and a page whose item does not reproduce says so at the top.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_sweep_html"]


def _png_tag(fig: Any, alt: str) -> str:
    from ..plotting.base import figure_png

    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(figure_png(fig)).decode()}">'


def _table(df: Any) -> str:
    if df is None or not len(df):
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for v in r.tolist():
            if v is None or isinstance(v, (float, np.floating)) and np.isnan(v):
                text = ""
            else:
                text = f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v)
            cells.append(f"<td>{text if str(text).startswith('<a ') else html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _config(folder: Path, manifest: dict[str, Any], device: str | None) -> Any:
    from .runner import SweepConfig

    options = dict(manifest["options"])
    return SweepConfig(out=str(folder), device=device, threads=manifest.get("environment", {}).get("threads"),
                       **options)


def _sample_pages(folder: Path, manifest: dict[str, Any], rows: Any, pages: Path, max_side: int,
                  budget_mb: float, device: str | None, progress: bool) -> dict[str, str]:
    """Recompute the chosen grounding items and write their viewer pages: ``{item key: relative link}``."""
    import torch

    from ..plotting.viewer import report_payload, write_page
    from ..progress import ProgressLine
    from ..runtime import torch_threads
    from .runner import Worker, plan_sweep

    config = _config(folder, manifest, device)
    plan = plan_sweep(config)
    if plan.fingerprint != manifest.get("dataset_fingerprint", plan.fingerprint):
        raise ValueError(f"the dataset changed since the sweep in {str(folder)!r} ran (fingerprint differs): its "
                         "samples cannot be recomputed to match its rows")
    links: dict[str, str] = {}
    threads = int(config.threads or torch.get_num_threads())
    bar = ProgressLine(len(rows), 0, unit="pages", enabled=progress)
    with torch_threads(threads):
        worker = Worker(config, plan=plan)
        for _, row in rows.iterrows():
            torch.manual_seed(config.seed)
            sample = plan.dataset[int(row["index"])]
            _prompt, _run, report, _gt = worker.ground(sample, str(row["template"]))
            payload = report_payload(report, max_side=max_side, budget_mb=budget_mb)
            payload["title"] = f"{row['key']}: {sample.expression or ''}"
            notes = [payload["note"]] if payload.get("note") else []
            summary = report.summary()
            same = _same(summary.get("oracle_iou"), row.get("oracle_iou")) and \
                str(summary.get("emergence_text")) == str(row.get("emergence_text"))
            if not same:
                notes.insert(0, f"WARNING: this recomputed item does not reproduce the sweep's row (oracle IoU "
                                f"{summary.get('oracle_iou')} here, {row.get('oracle_iou')} in the sweep; emergence "
                                f"{summary.get('emergence_text')!r} here, {row.get('emergence_text')!r} in the sweep): "
                                "another environment or model folder. The figures below are the recomputation's.")
            payload["note"] = " ".join(notes) or None
            name = f"{int(row.name):05d}.html"
            write_page(payload, pages / name)
            links[str(row["key"])] = f"{pages.name}/{name}"
            bar.update(1)
    bar.close()
    return links


def _same(a: Any, b: Any) -> bool:
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    return (np.isnan(fa) and np.isnan(fb)) or fa == fb


def write_sweep_html(out: str | os.PathLike, page: str | os.PathLike | None = None, samples: int = 20,
                     keys: Any = None, max_side: int = 512, budget_mb: float = 32.0, device: str | None = None,
                     progress: bool = True) -> Path:
    """Write the sweep's page (module docstring) and return its path.

    Args:
        out: the sweep folder.
        page: where to write it (default ``OUT/report/index.html``).
        samples: how many grounding items (the first ones, in sweep order) get a viewer page; 0 for none.
        keys: item keys (``grounding/<template>/<sample id>``) to give a viewer page instead.
        device: where the recomputation runs (default CPU).

    Raises:
        SweepError: not a sweep folder. ValueError: an unknown key, or a dataset that changed since the sweep.
    """
    import pandas as pd

    from ..files import atomic_write_text, check_output_file
    from ..plotting import sweeps as figures
    from .report import grounding_rows, head_grid, miou_table, sweep_protocol, template_table
    from .store import SweepStore, load_sweep

    folder = Path(out)
    table, _units, manifest = load_sweep(folder)
    made = sweep_protocol(manifest, table, None)
    tau = float(manifest["options"].get("tau", 0.5))
    target = check_output_file(Path(page) if page else folder / "report" / "index.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    scored = grounding_rows(table)
    ground_all = table[(table["task"] == "grounding") & table["error"].isna()] if len(table) else table
    if keys is not None:
        wanted = [str(k) for k in keys]
        unknown = [k for k in wanted if k not in set(ground_all["key"])]
        if unknown:
            raise ValueError(f"no grounding item {unknown} in this sweep; keys look like "
                             f"{list(ground_all['key'][:2])}")
        chosen = ground_all[ground_all["key"].isin(wanted)]
    else:
        chosen = ground_all.head(samples)
    pages = target.parent / f"{target.stem}_samples"  # beside the page, never inside the sweep's own data folders
    links = _sample_pages(folder, manifest, chosen, pages, max_side, budget_mb, device, progress) if len(chosen) else {}
    store = SweepStore(folder)
    tensors = {k: v for k, v in store.tensors(key_suffix="/head_mass").items()
               if k.rsplit("/", 1)[0] in set(scored["key"])} if len(scored) else {}
    figs = [_png_tag(figures.plot_emergence_positions(scored)[0], "where grounding emerges"),
            _png_tag(figures.plot_emergence_layers(scored)[0], "in which layer grounding emerges"),
            _png_tag(figures.plot_categories(scored)[0], "concept category of the best word"),
            _png_tag(figures.plot_head_grid(head_grid(tensors))[0], "heads"),
            _png_tag(figures.plot_templates(template_table(table))[0], "prompt sensitivity")]
    columns = [c for c in ("key", "expression", "answer", "oracle_iou", "emergence_text", "emergence_position",
                           "best_text", "best_category", "error") if c in table]
    listing = table[columns].copy() if len(table) else pd.DataFrame(columns=columns)
    listing.insert(0, "viewer", [f'<a href="{links[k]}">open</a>' if k in links else "" for k in table["key"]])
    more = len(ground_all) - len(links)
    dataset = str(manifest["options"]["dataset"])
    later = (f"; {more} more have none: write them with <code>emergence view {html.escape(str(folder))} --samples N"
             "</code>") if more > 0 else ""
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="emergence viewer (sweep)">
<title>emergence sweep · {html.escape(str(manifest['model_id']))} on {html.escape(dataset)}</title>
<style>body{{font:14px/1.45 system-ui,sans-serif;max-width:1200px;margin:0 auto;padding:0 16px 24px}}
img{{max-width:48%;border:1px solid #ddd;margin:4px;vertical-align:top}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}}
.note{{background:#fff4d6;padding:6px}}</style>
</head><body>
<h1>Sweep: {html.escape(str(manifest['model_id']))} on {html.escape(dataset)}</h1>
<p>{manifest['items']} work items over {manifest['samples']} samples; protocol <b>{made}</b>; tau {tau};
segmenter {html.escape(str(manifest['options'].get('segmenter')))}; map method
{html.escape(str(manifest['options'].get('map_method', 'attention')))}.</p>
<h2>Figures</h2>{''.join(figs)}
<h2>Grounding (mIoU)</h2>{_table(miou_table(table, tau, made))}
<h2>Samples</h2>
<p class="note">{len(links)} grounding items have a viewer page (recomputed with the sweep's model and options, each
checked against its row){later}.</p>
{_table(listing)}
</body></html>
"""
    return atomic_write_text(target, body)
