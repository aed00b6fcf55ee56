"""The one-weld report (issue 12): one offline HTML file with plotly.js inside once, the
contribution table as the Explanation has it, escaped user strings; the figures as PNG and
SVG through kaleido and the system Chromium, titled with their context; the Explore JSON with
the CLI's keys; and the Explore page's download buttons."""
from __future__ import annotations

import dataclasses
import html
import io
import json
import os
import re
import time
import xml.etree.ElementTree as ET
import zipfile
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from plotly.offline import get_plotlyjs

from app import figures as figs
from app import report
from app.screens import explore as explore_page
from app.screens import explore_export
from fusion_core import cli
from fusion_core.explain.methods import METHODS
from fusion_core.explain.sanity import method_agreement, randomization_test, randomized_copy
from fusion_core.explain.views import positions_of, shared_range
from fusion_core.explain.welds import explain_welds
from fusion_core import load_weld
from fusion_core.models.checkpoint import load_checkpoint
from fusion_core.vocab import MODALITIES
from test_app_support import data_root, errors, new_app, problems, weld_dirs

# The page draws only its open tab; the export is in the one named so (if the page has tabs).
EXPORT_TAB = next((t for t in getattr(explore_page, "TABS", ()) if "export" in t.lower()), None)
HOSTILE = '<img src=x onerror="alert(1)">&\'weld'


def _weld_folder():
    """A bundled weld with every modality (sample_data/000303 when it is there)."""
    dirs = weld_dirs(data_root())
    named = [d for d in dirs if d.name == "000303"]
    return (named or dirs)[0]


def explore_figures(exp, ck, weld) -> dict:
    """The figures the Explore page draws for this weld (its default controls)."""
    b = 0
    maps = {m: exp.token_map(b, m) for m in MODALITIES if m in exp.attention and exp.present[b, MODALITIES.index(m)]}
    drawn = {"prediction": figs.prediction_figure(exp.class_names, exp.probabilities[b], report.truth_of(weld)),
             "contributions": figs.contribution_bars({k: v[b] for k, v in exp.contributions.items()}, exp.present[b],
                                                     baseline=exp.baseline,
                                                     efficiency_gap=float(exp.efficiency_gap[b])),
             "token_contributions": figs.token_contribution_figure(exp.token_shapley[b], exp.present[b])}
    for m, z in maps.items():
        lo, hi = shared_range([z], True)
        drawn[f"heatmap_{m}"] = figs.attention_heatmap(z, positions_of(exp, m, b), title=m, zmin=lo, zmax=hi)
    windows = (weld.truth or {}).get("windows") or []
    drawn["sensor"] = figs.sensor_figure(weld.sensor, maps["sensor"].mean(0), positions_of(exp, "sensor", b),
                                         title="sensor log · band: attention", windows=windows)
    drawn["audio"] = figs.audio_figure(weld.audio, weld.sample_rate, maps["audio"].mean(0),
                                       positions_of(exp, "audio", b), title="audio waveform", windows=windows)
    drawn["photos"] = figs.photos_figure(weld.images, maps["image"].mean(0), positions_of(exp, "image", b),
                                         image_sizes=weld.image_sizes, px_width=620, title="photos")
    drawn["video"] = figs.video_strip_figure(weld.video, maps["video"].mean(0), positions_of(exp, "video", b),
                                             px_width=1150, title="video")
    drawn["method_agreement"] = figs.agreement_figure(method_agreement(exp, b))
    exp_r = explain_welds(randomized_copy(ck, 0), [weld])
    rt = randomization_test(exp, exp_r, b)
    drawn["randomization"] = figs.randomization_figure(rt.similarity, rt.contributions)
    drawn["randomized_twin"] = figs.twin_heatmaps(maps["sensor"], exp_r.token_map(b, "sensor"),
                                                  positions_of(exp, "sensor", b))
    return drawn


@pytest.fixture(scope="module")
def explored():
    folder = _weld_folder()
    ck = load_checkpoint(str(data_root() / "checkpoints" / "demo-best.safetensors"))
    weld = load_weld(str(folder))
    exp = explain_welds(ck, [weld])
    drawn = explore_figures(exp, ck, weld)
    ctx = report.report_context(exp, ck, weld)
    return SimpleNamespace(folder=folder, ck=ck, weld=weld, exp=exp, drawn=drawn, ctx=ctx,
                           html=report.report_html(ctx, drawn).decode())


def _old_figures_zip(drawn: dict) -> bytes:
    """What "All figures (HTML, zip)" gave before the report: one standalone HTML per figure."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, fig in drawn.items():
            z.writestr(f"{name}.html", fig.to_html(include_plotlyjs=True, full_html=True))
    return buf.getvalue()


class _Tables(HTMLParser):
    """The rows (lists of cell texts) of every <table> in a page, by table id."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _contribution_rows(page: str) -> list[list[str]]:
    p = _Tables()
    p.feed(page)
    return p.tables["contributions"]


def _needs_chromium():
    problem = report.static_export_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


# --------------------------------------------------------------------------- the report

def test_report_holds_plotly_js_once_and_reaches_for_nothing(explored):
    page = explored.html
    js = get_plotlyjs()
    banner = js[:js.index("*/")]                                # "/**\n* plotly.js vX.Y.Z\n* Copyright …"
    assert "plotly.js v" in banner and page.count(banner) == 1
    middle = js[len(js) // 2: len(js) // 2 + 400]
    assert page.count(middle) == 1
    assert page.count("Plotly.newPlot") == len(explored.drawn)  # every figure drawn from the one copy
    assert '<script src="http' not in page and "<script src='http" not in page
    # Outside the bundle (whose option defaults name a few hosts) no address at all: no CDN,
    # no script or style from anywhere (base64 figure data may spell "cdn" by chance).
    rest = page.replace(js, "")
    assert re.findall(r"(?:https?:)?//[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", rest) == []
    assert not re.search(r"cdn\.|cdnjs|jsdelivr|unpkg", rest, re.I)
    assert not re.search(r"<(?:script|link)[^>]*(?:src|href)=", rest)


def test_report_names_weld_checkpoint_prediction_truth_target_and_baseline(explored):
    page, ctx, exp = explored.html, explored.ctx, explored.exp
    assert f"<h1>Weld {explored.weld.weld_id}</h1>" in page
    assert explored.ck.info.sha256 in page and ctx.checkpoint_name == "demo-best.safetensors"
    assert ctx.checkpoint_name in page
    assert ctx.prediction == exp.predicted(0) and html.escape(ctx.prediction) in page
    assert f"probability {float(exp.probabilities[0].max()):.4f}" in page
    assert ctx.truth == report.truth_of(explored.weld) and ctx.truth is not None
    assert f"<dt>Truth</dt><dd>{html.escape(ctx.truth)}</dd>" in page
    assert ("(right)" if ctx.prediction == ctx.truth else "(wrong)") in page
    assert html.escape(exp.target) in page and f"{float(exp.target_values[0]):.9g}" in page
    assert f"<code>{exp.baseline}</code>" in page
    assert report.product_line() in page and report.product_line().startswith(report.PRODUCT)
    assert "generated " in page and " UTC" in page
    assert "<ul id='notes'>" in page


def test_report_contribution_table_is_the_explanations(explored):
    exp = explored.exp
    rows = _contribution_rows(explored.html)
    header, body = rows[0], rows[1:]
    assert header[0] == "modality" and header[-1] == "present"
    assert [r[0] for r in body] == list(MODALITIES)
    frame = exp.contributions_frame()
    for method in exp.contributions:
        m = METHODS[method]
        col = [i for i, h in enumerate(header) if h.startswith(m.label + " (")]
        assert len(col) == 1, (method, header)
        assert (exp.target in header[col[0]]) if m.unit == "target" else ("share" in header[col[0]])
        for j, mod in enumerate(MODALITIES):
            want = frame[(frame.method == method) & (frame.modality == mod)]["value"].item()
            assert float(body[j][col[0]]) == pytest.approx(want, abs=1e-6)
            assert float(body[j][col[0]]) == pytest.approx(float(exp.contributions[method][0, j]), abs=1e-6)
    assert [r[-1] for r in body] == ["yes" if p else "absent" for p in exp.present[0]]


def test_user_strings_are_escaped_everywhere(explored):
    ctx = dataclasses.replace(explored.ctx, weld_id=HOSTILE, checkpoint_name=f"{HOSTILE}.pt",
                              checkpoint_path=f"/tmp/{HOSTILE}.pt", notes=(f"note {HOSTILE}",))
    page = report.report_html(ctx, {"heatmap_sensor": explored.drawn["heatmap_sensor"]}).decode()
    assert "<img" not in page and 'onerror="' not in page
    assert f"Weld {html.escape(HOSTILE)}</h1>" in page
    assert f"<title>Weld {html.escape(HOSTILE)}" in page
    assert html.escape(f"note {HOSTILE}") in page
    assert report.file_stem(ctx).replace("_", "").replace("-", "").replace(".", "").isalnum()


def test_report_is_under_a_third_of_the_old_per_figure_zip(explored):
    old = _old_figures_zip(explored.drawn)
    new = explored.html.encode()
    print(f"\nreport {len(new):,} bytes, old per-figure zip {len(old):,} bytes ({len(explored.drawn)} figures)")
    assert len(new) * 3 < len(old)


def test_every_figure_is_titled_with_its_context(explored):
    ctx = explored.ctx
    for name, fig in explored.drawn.items():
        title = report.with_context_title(fig, name, ctx).layout.title.text
        for part in (f"weld {ctx.weld_id}", ctx.checkpoint_name, f"({ctx.sha8})", f"pred {ctx.prediction}"):
            assert part in title, (name, title)
    hm = report.with_context_title(explored.drawn["heatmap_sensor"], "heatmap_sensor", ctx).layout.title.text
    assert hm.startswith("heatmap sensor")
    assert report.context_title("heatmap_sensor", ctx) == (
        f"heatmap sensor · weld {ctx.weld_id} · {ctx.checkpoint_name} ({ctx.sha8}) · pred {ctx.prediction}")
    long = dataclasses.replace(ctx, weld_id="w" * 150)
    assert "<br>" in report.with_context_title(explored.drawn["sensor"], "sensor", long).layout.title.text
    one = explore_export.figure_bytes(ctx, explored.drawn, "heatmap_sensor").decode()
    assert f"<title>{html.escape(report.context_title('heatmap_sensor', ctx))}</title>" in one
    assert one.count("plotly.js v") >= 1 and '<script src="http' not in one


# --------------------------------------------------------------------------- static images

@pytest.fixture
def offline_kaleido(monkeypatch):
    """Kaleido may neither download a browser nor find one by searching: a bogus
    $BROWSER_PATH, and get_chrome that fails."""
    import choreographer.cli
    import kaleido

    def no_download(*a, **k):
        raise AssertionError("get_chrome must not be called")

    for owner in (kaleido, choreographer.cli):
        monkeypatch.setattr(owner, "get_chrome", no_download)
        monkeypatch.setattr(owner, "get_chrome_sync", no_download)
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chrome")


def test_png_export_gives_one_png_per_figure_at_its_size(explored, offline_kaleido):
    _needs_chromium()
    t = time.perf_counter()
    data = report.figure_images(explored.drawn, "png", explored.ctx)
    seconds = time.perf_counter() - t
    print(f"\nPNG export of {len(explored.drawn)} figures: {seconds:.1f} s, {len(data):,} bytes")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.namelist() == [f"{name}.png" for name in explored.drawn]
        for name, fig in explored.drawn.items():
            img = Image.open(io.BytesIO(z.read(f"{name}.png")))
            img.load()
            assert img.format == "PNG"
            assert img.size == report.export_size(fig), name
            assert np.asarray(img.convert("L")).std() > 0, name         # something is drawn


def test_svg_export_parses_and_carries_the_title(explored, offline_kaleido):
    _needs_chromium()
    subset = {k: explored.drawn[k] for k in ("heatmap_sensor", "contributions")}
    data = report.figure_images(subset, "svg", explored.ctx)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.namelist() == ["heatmap_sensor.svg", "contributions.svg"]
        for name in subset:
            svg = z.read(f"{name}.svg").decode()
            root = ET.fromstring(svg)
            assert root.tag.rsplit("}", 1)[-1] == "svg"
            assert f"weld {explored.ctx.weld_id}" in svg and explored.ctx.sha8 in svg
        assert "heatmap sensor" in z.read("heatmap_sensor.svg").decode()


def test_missing_chromium_is_one_clear_error(explored, monkeypatch, tmp_path):
    monkeypatch.setattr(report, "CHROMIUM", str(tmp_path / "chromium"))
    with pytest.raises(report.ExportError, match=r"PNG/SVG export needs Chromium at .*chromium: run make browser"):
        report.figure_images(explored.drawn, "png", explored.ctx)
    failed: dict = {}                                           # the page shows it on its next run
    with pytest.raises(report.ExportError):
        explore_export.images_bytes(explored.ctx, explored.drawn, "svg", failed)
    assert "run make browser" in failed["message"]
    with pytest.raises(ValueError, match="unknown image format"):
        report.render_images([], "gif")


# --------------------------------------------------------------------------- JSON

def test_explore_json_has_the_cli_keys(explored, tmp_path):
    out = tmp_path / "cli.json"
    ck_path = explored.ck.info.path
    assert cli.main(["explain", "--checkpoint", ck_path, "--samples", str(explored.folder), "--out", str(out)]) == 0
    want = json.loads(out.read_text())
    got = json.loads(explore_export.json_bytes(explored.exp, explored.ck, explored.weld))
    assert set(want) <= set(got)
    assert set(want["checkpoint"]) <= set(got["checkpoint"])
    assert {"path", "sha256", "name"} <= set(got["checkpoint"])
    assert got["checkpoint"]["name"] == "demo-best.safetensors"
    assert got["checkpoint"]["sha256"] == want["checkpoint"]["sha256"]
    assert set(want["results"][0]) <= set(got["results"][0])
    for key in ("weld", "truth", "prediction", "top_modality", "target_value"):
        assert got["results"][0].get(key) == want["results"][0].get(key), key
    assert set(want["notes"]) <= set(got["notes"])
    assert got["target"] == want["target"] and got["baseline"] == want["baseline"]


# --------------------------------------------------------------------------- the page

def export_tab_app():
    """Explore opened on its export tab (the page draws only the open tab)."""
    at = new_app()
    if EXPORT_TAB:
        at.query_params["view"] = EXPORT_TAB
    at.run()
    assert problems(at) == []
    return at


def test_explore_shows_report_and_image_downloads(data):
    at = export_tab_app()
    labels = {b.label: b for b in at.download_button}
    assert {"Report (HTML)", "Figures (PNG, zip)", "Figures (SVG, zip)", "Explanation (JSON)",
            "Contributions (CSV)", "Attention maps (CSV)", "Figure as HTML"} <= set(labels)
    assert "All figures (HTML, zip)" not in labels
    can = report.static_export_problem() is None
    assert labels["Figures (PNG, zip)"].proto.disabled is (not can)
    assert labels["Report (HTML)"].proto.disabled is False
    picked = at.selectbox(key="explore_fig_pick").options
    assert {"prediction", "contributions", "heatmap_sensor"} <= set(picked)


def test_explore_without_chromium_says_so_and_stays_usable(data, monkeypatch, tmp_path):
    monkeypatch.setattr(report, "CHROMIUM", str(tmp_path / "chromium"))
    at = export_tab_app()
    assert any("run make browser" in e for e in errors(at))
    labels = {b.label: b for b in at.download_button}
    assert labels["Figures (PNG, zip)"].proto.disabled and labels["Figures (SVG, zip)"].proto.disabled
    assert labels["Report (HTML)"].proto.disabled is False
    at.selectbox(key="explore_fig_pick").set_value("contributions").run()
    assert problems(at) == []
