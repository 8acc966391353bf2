"""``emergence report OUT``: PixFoundation's figures and a Markdown summary from a sweep folder.

Figures (PNG, in ``OUT/report/``): emergence position histogram (10% bins), concept-category histogram of the best
words, layer x head grounding heatmap (mean share of each head's map inside the ground truth for the best word),
prompt sensitivity (oracle mIoU per template). Tables in ``report.md``: mIoU (oracle, automatic, "noun of the
expression" baseline), recall, prompt sensitivity, VQA accuracy and the paired VQA/grounding analysis.
Every figure function takes the loaded tables, so the notebook draws the same figures interactively.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.metrics import BIN_LABELS
from ..plotting import sweeps as figures

__all__ = ["make_report", "sweep_protocol", "sweep_status", "grounding_rows", "unscored_counts", "UNSCORED",
           "miou_table", "template_table", "plot_emergence_positions", "plot_categories", "plot_head_grid",
           "plot_templates", "head_grid"]


#: grounding samples with no ground truth to score: the object is absent, or its annotation is empty
UNSCORED = ("absent", "unannotated")


def grounding_rows(samples: Any, scored: bool = True) -> Any:
    """Grounding rows without errors; with ``scored`` (the default) also without the samples that have no ground
    truth to score (:data:`UNSCORED`: an absent object, an empty annotation). With an all-zero ground truth the
    analyzer would call the first small mask a success, so those samples never enter an emergence histogram, an
    emerged share or an mIoU mean; the report counts them apart (:func:`unscored_counts`)."""
    if samples.empty or "task" not in samples:
        return samples
    g = samples[samples["task"] == "grounding"]
    g = g[g["error"].isna()] if "error" in g else g
    if scored:
        for column in UNSCORED:
            if column in g:
                g = g[~g[column].fillna(False).astype(bool)]
    return g


def unscored_counts(samples: Any) -> dict[str, int]:
    """How many error-free grounding rows are left out of the statistics, per reason of :data:`UNSCORED`."""
    g = grounding_rows(samples, scored=False)
    return {c: int(g[c].fillna(False).astype(bool).sum()) if c in g else 0 for c in UNSCORED}


def miou_table(samples: Any, tau: float = 0.5, protocol: str = "emergence") -> Any:
    """Per template: oracle / automatic / noun-baseline mIoU and oracle recall at ``tau`` over the scored samples.
    Under ``protocol="pixfoundation"`` also the mIoU as PixFoundation's ``eval_nonpixLMM_iou.py --type oracle``
    counts it: every sample whose annotation is empty (absent objects included) scores IoU 1, the reference's empty
    prediction against an empty ground truth."""
    import pandas as pd

    g = grounding_rows(samples)
    every = grounding_rows(samples, scored=False)
    rows = []
    for template, part in g.groupby("template", sort=False):
        row = {"template": template, "samples": len(part), "oracle mIoU": part["oracle_iou"].mean(),
               "automatic mIoU": part["auto_score_iou"].mean(), "noun baseline mIoU": part["noun_iou"].mean(),
               f"recall@{tau}": (part["oracle_iou"] >= tau).mean(),
               "emerged": part["emerged"].mean()}
        if protocol == "pixfoundation":
            unscored = len(every[every["template"] == template]) - len(part)
            row["oracle mIoU, empty annotations as 1 (reference)"] = \
                (part["oracle_iou"].sum() + unscored) / (len(part) + unscored)
        rows.append(row)
    return pd.DataFrame(rows)


def template_table(samples: Any) -> Any:
    """Prompt sensitivity: per template, oracle mIoU and the mean emergence position."""
    import pandas as pd

    g = grounding_rows(samples)
    if g.empty or "oracle_iou" not in g:
        return pd.DataFrame(columns=["template", "oracle_miou", "emergence_position", "samples"])
    return g.groupby("template", sort=False).agg(oracle_miou=("oracle_iou", "mean"),
                                                 emergence_position=("emergence_position", "mean"),
                                                 samples=("oracle_iou", "size")).reset_index()


def plot_emergence_positions(samples: Any, ax: Any = None) -> tuple[Any, Any]:
    """Histogram of the emergence position in 10% bins of the answer (share of grounding samples)."""
    return figures.plot_emergence_positions(grounding_rows(samples), ax)


def plot_categories(samples: Any, ax: Any = None) -> tuple[Any, Any]:
    """Histogram of the concept category of the best word."""
    return figures.plot_categories(grounding_rows(samples), ax)


def head_grid(tensors: dict[str, Any]) -> np.ndarray | None:
    """Mean ``[L, H]`` head mass over the sweep's grounding items (``None`` when none was stored)."""
    grids = [v.float().numpy() for k, v in tensors.items() if k.endswith("/head_mass")]
    return np.mean(grids, axis=0) if grids else None


plot_head_grid = figures.plot_head_grid


def plot_templates(samples: Any, ax: Any = None) -> tuple[Any, Any]:
    """Oracle mIoU per grounding template (prompt sensitivity)."""
    return figures.plot_templates(template_table(samples), ax)


def _md_table(df: Any) -> str:
    if df is None or len(df) == 0:
        return "_none_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + " --- |" * len(cols)]
    for r in df.itertuples(index=False):
        cells = [f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sweep_protocol(manifest: dict[str, Any], samples: Any, asked: str | None = None) -> str:
    """The protocol a sweep's rows were made under (manifests before protocols were named: ``"emergence"``).

    Raises:
        EmergenceError: rows of several protocols, or ``asked`` is another protocol than the sweep's (a report
            never mixes or relabels them).
    """
    from ..analysis.protocols import get_protocol
    from ..errors import EmergenceError

    made = manifest.get("options", {}).get("protocol", "emergence")
    if "protocol" in samples:
        found = sorted({str(p) for p in samples["protocol"].dropna().unique()})
        if len(found) > 1 or (found and found[0] != made):
            raise EmergenceError(f"the sweep's rows were made under protocols {found} (manifest: {made!r}); a report "
                                 "never mixes protocols: report each sweep folder on its own")
    if asked is not None and get_protocol(asked).name != made:
        raise EmergenceError(f"this sweep was made under protocol {made!r}, not {asked!r}: its rows hold that "
                             f"protocol's units and choices. Run a new sweep with --protocol {asked} into another "
                             "--out")
    return made


def make_report(out: str | os.PathLike, protocol: str | None = None) -> Path:
    """Write ``OUT/report/*.png`` and ``OUT/report/report.md``; returns the Markdown path. ``protocol``: refuse
    unless the sweep was made under it (:func:`sweep_protocol`)."""
    import pandas as pd

    from ..files import atomic_write_text
    from ..plotting.base import save_figure
    from .store import SweepStore, load_sweep
    from .vqa import paired_analysis, pair_accuracy

    samples, _units, manifest = load_sweep(out)
    made = sweep_protocol(manifest, samples, protocol)
    store = SweepStore(out)
    folder = Path(out) / "report"
    folder.mkdir(exist_ok=True)
    tau = float(manifest["options"].get("tau", 0.5))
    figures = {
        "emergence_position.png": plot_emergence_positions(samples),
        "categories.png": plot_categories(samples),
        "head_grid.png": plot_head_grid(head_grid(_scored_tensors(store.tensors(key_suffix="/head_mass"), samples))),
        "templates.png": plot_templates(samples),
    }
    for name, (fig, _) in figures.items():
        save_figure(fig, folder / name)
    g = grounding_rows(samples)
    lines = [f"# Sweep report: {manifest['model_id']} on {manifest['options']['dataset']}", "",
             f"{manifest['items']} work items over {manifest['samples']} samples; tasks "
             f"{', '.join(manifest['options']['tasks'])}; segmenter {manifest['options']['segmenter']}; "
             f"tau {tau}. Versions: " + ", ".join(f"{k} {v}" for k, v in manifest["versions"].items()) + ".", "",
             f"Protocol: **{made}** (docs/protocols.md): "
             + ("the when unit is the noun chunk holding the highest-IoU mask, the last of ties, no threshold."
                if made == "pixfoundation" else
                f"the emergence unit is the first unit with IoU >= {tau}; the best unit is the first of ties."), "",
             ]
    status = sweep_status(store, manifest, samples)
    lines += status["notes"]
    unscored = unscored_counts(samples)
    if any(unscored.values()):
        lines += [f"> Left out of every grounding statistic below (no ground truth to score): {unscored['absent']} "
                  f"samples whose object is absent, {unscored['unannotated']} whose annotation is empty.", ""]
    if len(g) and "best_ties" in g:
        tied = int((g["best_ties"] >= 2).sum())
        lines += [f"Ties: {tied} of {len(g)} scored samples have several units at the best IoU "
                  f"({'the last' if made == 'pixfoundation' else 'the first'} is taken as the best unit; common "
                  "with the classical segmenter, whose masks often coincide).", ""]
    lines += ["## Grounding (mIoU)", "", _md_table(miou_table(samples, tau, made)), ""]
    if len(g) and "emerged" in g:
        bins = np.bincount(g.loc[g["emerged"].astype(bool), "emergence_bin"].astype(int), minlength=10)[:10]
        lines += ["## Where grounding emerges", "", "![emergence position](emergence_position.png)", "",
                  _md_table(pd.DataFrame({"bin": BIN_LABELS, "samples": bins})), "",
                  "## Concept category of the best word", "", "![categories](categories.png)", "",
                  _md_table(g["best_category"].value_counts().rename_axis("category").reset_index(name="samples")),
                  "", "## Heads", "", "![head grid](head_grid.png)", "",
                  "## Prompt sensitivity", "", "![templates](templates.png)", "", _md_table(template_table(samples)),
                  ""]
    v = samples[samples["task"] == "vqa"] if "task" in samples else samples.iloc[0:0]
    if len(v):
        acc = pair_accuracy(v.to_dict("records"))
        pairs = (f", pair accuracy {acc['pair']:.3f} ({acc['pairs']} pairs, MMVP protocol)" if acc["pairs"]
                 else " (the dataset has no question pairs: no pair accuracy)")
        lines += ["## VQA", "", f"question accuracy {acc['question']:.3f} ({acc['questions']} questions){pairs}", ""]
        merged = pd.DataFrame()
        every = grounding_rows(samples, scored=False)  # a pair is judged on both images, absent ones included
        columns = [c for c in ("sample", "oracle_iou", "auto_score_iou", "auto_mllm_iou", "auto_area", "absent",
                               "unannotated") if c in every]
        if len(every) and "oracle_iou" in every:
            first = every[columns].groupby("sample", as_index=False).first()
            merged = v.drop(columns=[c for c in columns if c in v and c != "sample"]).merge(first, on="sample",
                                                                                         how="inner")
        if len(merged):
            pa = paired_analysis(merged.to_dict("records"), tau, made)
            rule = ("the automatically chosen mask, IoU > 0.5 (PixFoundation's eval_accandiou.py)"
                    if made == "pixfoundation" else f"the oracle mask, IoU >= {tau}")
            lines += [f"Paired analysis (per pair; grounding: {rule}; an empty annotation: the mask covers under "
                      "half the image):", "", _md_table(pd.DataFrame([pa])), ""]
    errors = samples[samples["error"].notna()] if "error" in samples else samples.iloc[0:0]
    if len(errors):
        kinds = errors["error_type"].fillna("?").value_counts() if "error_type" in errors else None
        lines += ["## Errors", "", f"{len(errors)} of {len(samples)} items failed and are left out of every table "
                  "above" + (" (" + ", ".join(f"{k}: {n}" for k, n in kinds.items()) + ")" if kinds is not None
                             else "") + ":", ""]
        lines += [f"- `{r.key}`: {r.error}" for r in errors.head(20).itertuples()]
        if len(errors) > 20:
            lines.append(f"- ... and {len(errors) - 20} more (the `error` column of samples/*.parquet)")
        lines.append("")
    path = atomic_write_text(folder / "report.md", "\n".join(lines))
    return path


def _scored_tensors(tensors: dict[str, Any], samples: Any) -> dict[str, Any]:
    """The per-item tensors (keys ``<item key>/...``) of the scored grounding rows only."""
    keys = set(grounding_rows(samples)["key"]) if "key" in samples else set()
    return {k: v for k, v in tensors.items() if k.rsplit("/", 1)[0] in keys}


def sweep_status(store: Any, manifest: dict[str, Any], samples: Any) -> dict[str, Any]:
    """``{"finished", "items_done", "items", "errors", "environments", "notes"}`` of a sweep: whether every work item
    is committed, how many failed, and from how many environments its chunks came (``notes``: Markdown lines)."""
    items = int(manifest.get("items", 0))
    done = len(samples)
    errors = int(samples["error"].notna().sum()) if "error" in samples else 0
    envs = {rec.get("env") for rec in store.chunk_records().values() if rec.get("env")}
    notes = []
    if done < items:
        notes += [f"> **UNFINISHED**: {done} of {items} work items are committed. Every figure and table below covers "
                  "only those; run the same `emergence sweep` command again to finish it.", ""]
    if errors:
        notes += [f"> {errors} items failed (see Errors below).", ""]
    if len(envs) > 1:
        notes += [f"> The committed chunks come from {len(envs)} different environments (resumed with "
                  "--allow-env-change): rows may differ in their last bits between chunks.", ""]
    return {"finished": done >= items, "items_done": done, "items": items, "errors": errors,
            "environments": len(envs), "notes": notes}
