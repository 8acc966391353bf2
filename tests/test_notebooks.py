"""The notebooks run top to bottom offline (executed with nbclient in a fresh kernel)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(name: str, tmp_path: Path):
    nbformat = pytest.importorskip("nbformat", reason="notebook tests need the dev extra (nbformat)")
    nbclient = pytest.importorskip("nbclient", reason="notebook tests need the dev extra (nbclient)")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute()
    return nb


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_explore_single_image_notebook_runs_and_shows_the_analysis(tmp_path):
    nb = _execute("explore_single_image.ipynb", tmp_path)
    text = _text(nb)
    assert "EmergenceReport(" in text and "oracle_iou" in text and "top heads (layer, head)" in text
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))
    assert images >= 4  # scene, token heatmaps, report figure, head grid
    shown = [out["data"]["text/html"] for cell in nb.cells for out in cell.get("outputs", [])
             if "text/html" in out.get("data", {}) and "srcdoc=" in out["data"]["text/html"]]
    assert len(shown) == 1 and "emergence viewer" in shown[0]  # the report's viewer, inline
    assert (tmp_path / "report_viewer.html").stat().st_size > 10_000
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors


def test_sweep_analysis_notebook_runs_a_small_organism_sweep_and_draws_the_report(tmp_path):
    nb = _execute("sweep_analysis.ipynb", tmp_path)
    text = _text(nb)
    assert "emergence-organism shapes 16 items" in text and "best-unit categories" in text
    images = sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))
    assert images >= 4


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_every_notebook_cell_has_its_own_id(name):
    # nbformat 5.x only warns on a cell without an id (and fills one in when it reads the file); it says that this
    # will become an error. Read the file itself, so the check does not depend on what the installed nbformat mends.
    nb = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5), "cell ids need nbformat 4.5"
    ids = [cell.get("id") for cell in nb["cells"]]
    missing = [i for i, cell_id in enumerate(ids) if not cell_id]
    assert not missing, f"{name}: cells {missing} have no id"
    assert len(set(ids)) == len(ids), f"{name}: repeated cell ids"
