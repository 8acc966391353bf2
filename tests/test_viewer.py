"""The HTML viewer (emergence.plotting.viewer), driven in a real headless Chromium through WebDriver: the page's maps
equal the library's for the same options (peak pixel exact; values within 1e-5 of the map's scale, the float64 of
the page against the float32 of torch), the canvas draws them, reports, several images, video frames, sweeps and
the CLI. Without chromium + chromedriver (Debian: apt-get install -y chromium chromium-driver) the browser tests
skip with that reason; the page-building checks run everywhere."""

from __future__ import annotations

import html as htmllib
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from browser import Browser, missing
from conftest import FAMILIES, noise_image

from emergence import Probe, analyze
from emergence.analysis.grouping import word_units
from emergence.analysis.token_maps import MapOptions, token_maps
from emergence.files import OutputDirError
from emergence.plotting.viewer import page_html, run_payload

needs_browser = pytest.mark.skipif(missing() is not None, reason=str(missing()))
REL = 1e-5


def _heat(browser: Browser) -> tuple[np.ndarray, tuple[int, int]]:
    cur = browser.js("return window.emergenceViewer.current()")
    return np.asarray(cur["heat"], np.float64).reshape(cur["height"], cur["width"]), tuple(cur["peak"])


def _expect(run, unit, size, **options) -> np.ndarray:
    maps = token_maps(run, MapOptions(**options))
    return run.layout.render(maps[list(unit.tokens)].mean(0), size=size).astype(np.float64)


def _assert_same(page: np.ndarray, ref: np.ndarray) -> None:
    assert page.shape == ref.shape
    scale = float(np.abs(ref).max()) or 1.0
    assert np.abs(page - ref).max() <= REL * scale, (np.abs(page - ref).max(), scale)
    peak = np.unravel_index(int(ref.argmax()), ref.shape)
    assert np.unravel_index(int(page.argmax()), page.shape) == peak


def _set_range(browser: Browser, css: str, value: int) -> None:
    """Move a range slider as a user's drag does: its value, then the input event."""
    browser.js(f"const e = document.querySelector({css!r}); e.value = arguments[0];"
               "e.dispatchEvent(new Event('input'));", value)


@pytest.fixture(scope="module")
def tiled_run():
    """LLaVA-NeXT on a wide image: a base grid and a tile mosaic of different cell sizes (density fusion)."""
    model, processor = FAMILIES["llava_next"]()
    run = Probe(model, processor).generate(noise_image(150, 90, seed=3), "describe the image in detail",
                                           max_new_tokens=8, min_new_tokens=8)
    assert run.layout.default_fuse == "density" and run.keep == "heads"
    return run


@needs_browser
def test_words_layers_heads_and_normalisation_in_the_page_equal_the_library(tiled_run, tmp_path):
    run = tiled_run
    units = word_units(run)
    page = run.to_html(tmp_path / "run.html")
    with Browser() as b:
        b.open(page)
        heat, _ = _heat(b)
        size = heat.shape
        _assert_same(heat, _expect(run, units[0], size))
        last = len(units) - 1
        b.click(f".ev-word[data-word='{last}']")  # click a word
        _assert_same(_heat(b)[0], _expect(run, units[last], size))
        _set_range(b, "#ev-layer-lo", 1)  # layers 1..L-1
        _assert_same(_heat(b)[0], _expect(run, units[last], size, layers=run.layers[1:]))
        b.select("#ev-head", "2")  # one head
        _assert_same(_heat(b)[0], _expect(run, units[last], size, layers=run.layers[1:], heads=[2]))
        b.select("#ev-norm", "minmax")
        _assert_same(_heat(b)[0], _expect(run, units[last], size, layers=run.layers[1:], heads=[2],
                                          normalise="minmax"))
        b.select("#ev-norm", "none")
        b.js("const e = document.getElementById('ev-sink'); e.value = '2'; e.dispatchEvent(new Event('change'));")
        _assert_same(_heat(b)[0], _expect(run, units[last], size, layers=run.layers[1:], heads=[2], normalise="none",
                                          sink_z=2.0))
        b.click("#ev-corners")
        _assert_same(_heat(b)[0], _expect(run, units[last], size, layers=run.layers[1:], heads=[2], normalise="none",
                                          sink_z=2.0, remove_corners=True))
        # the canvas shows it: with the overlay opaque and no marker, the peak pixel is the colour map's top colour
        b.click("#ev-marker")
        _set_range(b, "#ev-opacity", 1)
        heat, (px, py) = _heat(b)
        lo_y, lo_x = np.unravel_index(int(heat.argmin()), heat.shape)
        pixels = b.js("const c = document.getElementById('ev-canvas').getContext('2d');"
                      "return [Array.from(c.getImageData(arguments[0], arguments[1], 1, 1).data),"
                      "Array.from(c.getImageData(arguments[2], arguments[3], 1, 1).data)];",
                      px, py, int(lo_x), int(lo_y))
        assert pixels[0][:3] == [128, 0, 0] and pixels[1][:3] == [0, 0, 128]  # jet(1), jet(0)
        assert b.console_errors() == []


@needs_browser
def test_a_page_over_its_budget_holds_the_layer_means_and_says_so(pil_organism, tmp_path):
    """On the organism (trained, peaked maps): the layer means rounded to float16 keep the peak pixel."""
    from emergence.organism import ShapesWorld
    from emergence.organism.model import PROMPT

    run = pil_organism.generate(ShapesWorld(2024).scene(1).image, PROMPT, max_new_tokens=30)
    page = run.to_html(tmp_path / "small.html", budget_mb=0.01)
    text = page.read_text()
    assert "layer means only" in text and "budget_mb" in text
    units = word_units(run)
    raw = float(run.attention.float().mean(2).abs().max())
    with Browser() as b:
        b.open(page)
        assert b.js("return document.querySelectorAll('#ev-head option').length") == 1
        for k in (2, 6, 10):
            b.click(f".ev-word[data-word='{k}']")
            heat, _ = _heat(b)
            ref = _expect(run, units[k], heat.shape)
            # the layer means are rounded to float16 once: each value within 2**-11 of the largest layer-mean
            # attention, and a mean-subtracted map (a difference of two such values) within twice that
            bound = 2 ** -10 * raw
            assert np.abs(heat - ref).max() <= bound
            # so the page's peak is the library's unless another pixel of the library's map comes within twice
            # that bound of its peak (a near-tie: "striped" on this scene peaks at two background corners 1.6e-6
            # apart); then it is one of the near-tied pixels
            page_peak = np.unravel_index(int(heat.argmax()), heat.shape)
            ref_peak = np.unravel_index(int(ref.argmax()), ref.shape)
            if np.sort(ref.ravel())[-2] < ref.max() - 2 * bound:
                assert page_peak == ref_peak
            assert ref[page_peak] >= ref.max() - 2 * bound
        assert b.console_errors() == []


def test_the_size_budget_picks_heads_or_layer_means_and_refuses_what_cannot_be_drawn(tiled_run):
    full = run_payload(tiled_run)
    t, n_layers, n_heads, v = tiled_run.attention.shape
    assert full["attention"]["shape"] == [t, n_layers, n_heads, v] and full["note"] is None
    reduced = run_payload(tiled_run, budget_mb=0.001)
    assert reduced["attention"]["shape"] == [t, n_layers, 1, v] and reduced["attention"]["embedded"] == "layer means"
    with pytest.raises(ValueError, match="max_side"):
        run_payload(tiled_run, max_side=4)
    with pytest.raises(ValueError, match="budget_mb"):
        run_payload(tiled_run, budget_mb=0)
    from dataclasses import replace

    with pytest.raises(ValueError, match="holds no image"):
        run_payload(replace(tiled_run, image=None))


@needs_browser
def test_the_report_page_names_the_emergence_word_of_the_python_report(tmp_path, pil_organism):
    from emergence.organism import ShapesWorld
    from emergence.organism.model import PROMPT
    from emergence.organism.reading import organism_judge

    scene = ShapesWorld(2024).scene(0)
    run = pil_organism.generate(scene.image, PROMPT, max_new_tokens=40, methods=["tam", "relative"])
    report = analyze(run, scene.referring_expressions()[0].mask, segmenter="classical", judge=organism_judge())
    assert report.emergence is not None
    emergence = int(report.emergence.name)
    page = report.to_html(tmp_path / "report.html")
    with Browser() as b:
        b.open(page)
        assert b.js("return Array.from(document.querySelectorAll('#ev-curve .ev-emerge')).map(c => c.dataset.word)") \
            == [str(emergence)]
        b.click(f"#ev-curve circle[data-word='{emergence}']")
        info = b.js("return document.getElementById('ev-info').textContent")
        assert f'"{report.units[emergence].text}"' in info and "EMERGENCE" in info
        heat, _ = _heat(b)
        _assert_same(heat, report.heat[emergence].astype(np.float64))  # the report's own map, same options
        assert sorted(b.js("return Array.from(document.querySelectorAll('#ev-methods canvas'))"
                           ".map(c => c.dataset.method)")) == ["attention", "relative", "tam"]
        b.click("#ev-methods figure:nth-child(3)")  # show TAM
        assert b.js("return window.emergenceViewer.state.method") == "tam"
        assert b.console_errors() == []
        b.screenshot(tmp_path / "report.png")


@needs_browser
def test_a_page_of_an_image_and_a_video_switches_images_and_frames(tmp_path):
    model, processor = FAMILIES["llava_next_video"]()
    frames = [noise_image(120, 80, seed=f) for f in range(3)]
    run = Probe(model, processor).generate(image=[noise_image(100, 60, seed=9)], video=frames, prompt="compare",
                                           max_new_tokens=4, min_new_tokens=4)
    page = run.to_html(tmp_path / "video.html")
    unit = word_units(run)[0]
    with Browser() as b:
        b.open(page)
        labels = b.js("return Array.from(document.querySelectorAll('#ev-panel option')).map(o => o.textContent)")
        assert labels == ["image 0", "video 1 frame 0", "video 1 frame 1", "video 1 frame 2"]
        for k, (image, frame) in enumerate([(0, None), (1, 0), (1, 2)]):
            b.select("#ev-panel", str(labels.index(f"image {image}" if frame is None else
                                                    f"video {image} frame {frame}")))
            heat, _ = _heat(b)
            part = run.select(image=image, frame=frame)
            _assert_same(heat, _expect(part, unit, heat.shape))
        assert b.console_errors() == []


def test_view_and_report_html_commands_write_pages_and_refuse_foreign_files(tmp_path):
    from emergence.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--max-new-tokens", "16"]) == 0
    mine = out / "viewer.html"
    assert main(["view", str(out)]) == 0 and "emergence viewer" in mine.read_text()[:600]
    assert main(["view", str(out)]) == 0  # its own page is replaced
    foreign = tmp_path / "notes.html"
    foreign.write_text("<html>mine</html>")
    assert main(["view", str(out), "--out", str(foreign)]) == 2 and foreign.read_text() == "<html>mine</html>"
    with pytest.raises(OutputDirError):
        from emergence.run import ProbeRun

        ProbeRun.load(out / "run").to_html(foreign)
    assert main(["view", str(tmp_path / "nothing")]) == 2


@needs_browser
def test_emergence_view_on_the_demo_and_a_sweep_opens_without_console_errors(tmp_path):
    demo, sweep = tmp_path / "demo", tmp_path / "sweep"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for argv in (["demo", "--out", str(demo)], ["view", str(demo)],
                 ["sweep", "--dataset", "shapes", "--n", "3", "--templates", "describe,where", "--out", str(sweep)],
                 ["report", str(sweep), "--html", "--html-samples", "2"],
                 ["view", str(sweep), "--samples", "1", "--out", str(tmp_path / "one.html")]):
        done = subprocess.run([sys.executable, "-m", "emergence.cli", *argv], capture_output=True, text=True, env=env,
                              timeout=600)
        assert done.returncode == 0, done.stderr
    index = sweep / "report" / "index.html"
    links = re.findall(r'href="(index_samples/\d+\.html)"', index.read_text())
    assert len(links) == 2 and "WARNING" not in (sweep / "report" / links[0]).read_text()
    assert len(re.findall(r'href="(one_samples/\d+\.html)"', (tmp_path / "one.html").read_text())) == 1
    assert not (sweep / "one_samples").exists() and (tmp_path / "one_samples" / "00000.html").is_file()
    with Browser() as b:
        b.open(demo / "viewer.html")
        assert b.js("return document.querySelectorAll('.ev-word').length") > 5
        b.open(index)
        assert b.js("return document.querySelectorAll('img').length") == 5
        b.click(f"a[href='{links[1]}']")
        time.sleep(0.2)
        assert b.js("return window.emergenceViewer.current().width") > 0
        assert b.console_errors() == []


def test_jupyter_shows_the_viewer_inline_in_an_isolated_frame(tiled_run):
    shown = tiled_run._repr_html_()
    assert shown.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in shown
    inner = htmllib.unescape(re.search(r'srcdoc="([^"]*)"', shown).group(1))
    assert inner == page_html(run_payload(tiled_run, max_side=384, budget_mb=8.0))
    data = json.loads(re.search(r'<script type="application/json" id="emergence-data">(.*?)</script>', inner,
                                re.S).group(1))
    assert data["tokens"] == list(tiled_run.tokens) and data["layers"] == list(tiled_run.layers)


@needs_browser
def test_a_report_made_with_selected_heads_opens_on_them(pil_organism, tmp_path):
    """Localization heads: a report analysed over (layer, head) pairs opens on those heads, with the report's map."""
    from emergence.organism import ShapesWorld
    from emergence.organism.model import PROMPT
    from emergence.organism.reading import organism_judge

    scene = ShapesWorld(2024).scene(2)
    run = pil_organism.generate(scene.image, PROMPT, max_new_tokens=30)
    pairs = [(0, 0), (2, 1)]
    report = analyze(run, scene.referring_expressions()[0].mask, segmenter="classical", judge=organism_judge(),
                     heads=pairs)
    page = report.to_html(tmp_path / "heads.html")
    with Browser() as b:
        b.open(page)
        assert b.js("return window.emergenceViewer.state.head") == "selected"
        assert "selected heads (0:0, 2:1)" in b.js("return document.getElementById('ev-head').selectedOptions[0].text")
        for u in (0, 4):
            b.click(f".ev-word[data-word='{u}']")
            _assert_same(_heat(b)[0], report.heat[u].astype(np.float64))
        b.select("#ev-head", "mean")
        _assert_same(_heat(b)[0], _expect(run, report.units[4], report.heat.shape[1:]))
        assert b.console_errors() == []
