"""The dashboard in a real browser (headless Chromium, offline): upload a zipped weld and a
checkpoint on Explore, see heatmaps and bars, click a heatmap cell and see its detail, then
open Compare with both sample checkpoints."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from conftest import wait_for_app, wait_for_plotly
from app.widgets import class_label
from test_app_support import CELL_CENTRE_JS, DATA_ENV, REPO, data_root, sample_data_ready, weld_dirs, zip_weld

# The server fixture starts `streamlit run` with this process's environment. Without a
# complete sample_data/ (fresh checkout), point it at a stand-in that the fixture below
# links into place before the server starts.
_STANDIN = None
if not sample_data_ready(REPO / "sample_data") and DATA_ENV not in os.environ:
    _STANDIN = Path(tempfile.mkdtemp(prefix="weld-browser-")) / "data"
    os.environ[DATA_ENV] = str(_STANDIN)


@pytest.fixture(scope="module")
def data() -> Path:
    root = data_root()
    if _STANDIN is not None and not _STANDIN.exists():
        _STANDIN.symlink_to(root, target_is_directory=True)
    return root


def _choose(page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    box = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True)).first
    box.locator("input").click()
    page.get_by_role("option", name=option).click()
    wait_for_app(page)


def _click_heatmap_cell(page, title: str, col: int, token: int) -> str:
    """Click the centre of one heatmap cell, as a user would; returns the hover text shown
    just before the click."""
    xy = page.evaluate(CELL_CENTRE_JS, [title, col, token])
    page.mouse.move(xy[0], xy[1])
    page.locator(".hoverlayer .hovertext").first.wait_for()
    hover = page.evaluate("[...document.querySelectorAll('.hoverlayer .hovertext')].map(e => e.textContent).join(' | ')")
    page.mouse.click(xy[0], xy[1])
    return hover


# Installed before the page's scripts: what the page held when its first chart appeared.
_AT_FIRST_CHART_JS = """
(() => {
  new MutationObserver((_, obs) => {
    if (!document.querySelector('.js-plotly-plot .main-svg')) return;
    window.__atFirstChart = {
      charts: document.querySelectorAll('.js-plotly-plot').length,
      controls: document.querySelectorAll('[data-testid="stSelectbox"]').length,
      heading: (document.querySelector('[data-testid="stMain"] h1') || {}).textContent || null,
    };
    obs.disconnect();
  }).observe(document, {subtree: true, childList: true});
})();
"""


def test_a_first_look_shows_the_prediction_first_then_the_whole_page(page, page_log, data):
    """A new tab on a link to a weld: the prediction is drawn alone (no controls, no other chart
    yet), then, once the browser has painted it, the whole page on that same weld."""
    weld = weld_dirs(data)[2].name
    page.add_init_script(_AT_FIRST_CHART_JS)
    page.goto(f"/?weld={weld}")
    wait_for_plotly(page, 7)
    wait_for_app(page)
    first = page.evaluate("window.__atFirstChart")
    assert first == {"charts": 1, "controls": 0, "heading": f"Weld {weld}"}, first
    assert page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').count() >= 3
    assert page.get_by_test_id("stMain").locator("h1").first.text_content() == f"Weld {weld}"
    shown = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"] input').evaluate_all(
        "els => els.map(e => e.value)")
    assert class_label(weld) in shown, shown
    assert f"weld={weld}" in page.url


def test_explore_uploads_heatmaps_cell_click_then_compare(page, page_log, data, tmp_path):
    page.goto("/")
    wait_for_app(page)
    wait_for_plotly(page, 7)          # prediction, contributions, per-token, 4 heatmaps (the open tab)

    # a checkpoint, uploaded
    ckpt = tmp_path / "uploaded-best.safetensors"
    ckpt.write_bytes((data / "checkpoints" / "demo-best.safetensors").read_bytes())
    _choose(page, "Checkpoint", "Upload a checkpoint…")
    page.get_by_test_id("stFileUploader").filter(has_text="Checkpoint file").locator(
        "input[type=file]").set_input_files(str(ckpt))
    wait_for_app(page)
    page.get_by_test_id("stMain").locator("p", has_text="Checkpoint uploaded-best.safetensors").wait_for()

    # a zipped weld, uploaded
    folder = weld_dirs(data)[-1]
    zipped = tmp_path / f"{folder.name}.zip"
    zipped.write_bytes(zip_weld(folder))
    page.get_by_test_id("stRadio").get_by_text("Upload a zip").click()
    wait_for_app(page)
    page.get_by_test_id("stFileUploader").filter(has_text="Zipped weld").locator(
        "input[type=file]").set_input_files(str(zipped))
    wait_for_app(page)
    page.get_by_role("heading", name=f"Weld {folder.name}").wait_for()
    wait_for_plotly(page, 7)

    # heatmaps (one per modality) and contribution bars are drawn
    drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .filter(el => el.querySelector('.main-svg')).map(el => (el.data || []).map(t => t.type).join(','))""")
    assert sum("heatmap" == d for d in drawn) >= 4, drawn
    assert any(d.startswith("bar") for d in drawn)
    assert page.locator(".js-plotly-plot .heatmaplayer image, .js-plotly-plot .hm image").count() >= 4
    assert page.locator('[data-testid="stException"]').count() == 0

    # click a cell of the sensor heatmap: its detail appears
    hover = _click_heatmap_cell(page, "sensor", 20, 2)
    assert "token 2 · position 20" in hover and " s" in hover, hover     # the cell's own hover, with its time span
    wait_for_app(page)
    detail = page.get_by_role("heading", name="Selected: sensor, token 2")
    detail.wait_for()
    assert "position 20 ·" in detail.inner_text() and " s" in detail.inner_text()
    wait_for_plotly(page, 9)          # + the cell's per-head bars and its stretch of the sensor log

    # the raw weld, in its own tab: only then are its charts drawn
    page.get_by_role("tab", name="On the raw weld").click()
    wait_for_app(page)
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')].some(el => el.layout
        && el.layout.title && /sensor log/.test(el.layout.title.text || ''))""", timeout=60_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    heat = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .filter(el => el.layout && el.layout.meta && el.layout.meta.weld_cells).length""")
    assert heat == 0                  # the maps tab is not drawn while another is open

    # Compare, with both sample checkpoints
    page.get_by_test_id("stSidebarNav").get_by_text("Compare").click()
    wait_for_app(page)
    page.get_by_role("heading", name="Compare two checkpoints").wait_for()
    wait_for_plotly(page, 9)
    main = page.get_by_test_id("stMain")
    main.get_by_text("Each row: A: demo-early.safetensors · B: demo-best.safetensors").first.wait_for(timeout=60_000)
    assert "a=demo-early.safetensors" in page.url and "b=demo-best.safetensors" in page.url
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page_log.page_errors == []


def test_explore_and_compare_fit_a_1000px_screen(page, page_log, data):
    """At 1000 px no chart is wider than its column, and the map controls wrap instead of
    being cut (each selector keeps its whole width)."""
    page.set_viewport_size({"width": 1000, "height": 900})
    too_wide = """() => [...document.querySelectorAll('.js-plotly-plot')].filter(el => el.querySelector('.main-svg'))
        .filter(el => el.getBoundingClientRect().width > el.closest('[data-testid="stElementContainer"]')
                                                           .getBoundingClientRect().width + 1)
        .map(el => (el.layout && el.layout.title && el.layout.title.text) || '?')"""
    page.goto("/")
    wait_for_app(page)
    wait_for_plotly(page, 7)
    assert page.evaluate(too_wide) == []
    page.get_by_role("tab", name="On the raw weld").click()
    wait_for_app(page)
    wait_for_plotly(page, 8)
    assert page.evaluate(too_wide) == []
    widths = page.evaluate("""() => [...document.querySelectorAll('[data-testid="stSelectbox"]')]
        .filter(el => el.closest('[data-testid="stMain"]')).map(el => el.getBoundingClientRect().width)""")
    assert widths and min(widths) >= 150, widths
    page.get_by_test_id("stSidebarNav").get_by_text("Compare").click()
    wait_for_app(page)
    page.get_by_role("heading", name="Which checkpoint is right").wait_for()
    wait_for_plotly(page, 9)
    assert page.evaluate(too_wide) == []
    assert page_log.page_errors == []
