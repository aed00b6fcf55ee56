"""The dashboard's figure builders as pure functions: values in, Plotly figures out."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest

from app import figures as figs
from fusion_core.explain import views
from fusion_core.explain.engine import Explanation
from fusion_core.vocab import MODALITIES


def token_map(exp, *args):
    """The map the pages draw: `Explanation.token_map` (here of a stand-in explanation)."""
    return Explanation.token_map(exp, *args)


def _decode(v):
    """A Plotly 7 typed array ({"dtype", "bdata", "shape"}) or a plain list → numpy."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            a = a.reshape([int(x) for x in str(v["shape"]).split(",")])
        return a
    return np.asarray(v)


def _spec(fig) -> dict:
    return json.loads(pio.to_json(fig, validate=False))


def _fake_exp(B=1, heads=3, T=2, S=5, seed=0):
    rng = np.random.default_rng(seed)
    att = rng.random((B, heads, T, S)).astype(np.float32)
    att /= att.sum(-1, keepdims=True)
    return SimpleNamespace(attention={"sensor": att}, value_norms={"sensor": att * 2.0},
                           relevance={"sensor": rng.random((B, T, S)).astype(np.float32)})


def _time_positions(S, dur=8.0):
    e = np.linspace(0, dur, S + 1)
    return pd.DataFrame({"t0": e[:-1], "t1": e[1:]})


def _video_positions(bins=3, gh=2, gw=3, W=96, H=64, dur=6.0):
    rows = []
    e = np.linspace(0, dur, bins + 1)
    for b in range(bins):
        for r in range(gh):
            for c in range(gw):
                rows.append(dict(t0=e[b], t1=e[b + 1], frame0=2 * b, frame1=2 * b + 1, x0=c * W / gw,
                                 y0=r * H / gh, x1=(c + 1) * W / gw, y1=(r + 1) * H / gh))
    return pd.DataFrame(rows)


def _image_positions(n=2, gh=2, gw=2, W=400, H=180):
    rows = [dict(image=i, x0=c * W / gw, y0=r * H / gh, x1=(c + 1) * W / gw, y1=(r + 1) * H / gh)
            for i in range(n) for r in range(gh) for c in range(gw)]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- downsampling

def test_downsample_sum_keeps_mass_and_max_keeps_peak():
    rng = np.random.default_rng(1)
    z = rng.random((4, 10_007))
    z[2, 5_003] = 50.0
    zs, edges = views.downsample_columns(z, 600, "sum")
    zm, edges_m = views.downsample_columns(z, 600, "max")
    assert zs.shape == (4, 600) and zs.dtype == np.float32
    assert edges[0] == 0 and edges[-1] == z.shape[1] and np.all(np.diff(edges) > 0)
    np.testing.assert_allclose(zs.sum(1), z.sum(1), rtol=1e-5)
    np.testing.assert_allclose(zm.max(1), z.max(1), rtol=1e-6)
    assert zm[2].argmax() == np.searchsorted(edges_m, 5_003, side="right") - 1
    zmean, _ = views.downsample_columns(z, 600, "mean")
    np.testing.assert_allclose(zmean.mean(1), z.mean(1), rtol=0.02)


def test_downsample_is_a_no_op_when_it_fits():
    z = np.arange(12.0).reshape(2, 6)
    zd, edges = views.downsample_columns(z, 600)
    np.testing.assert_array_equal(zd, z)
    np.testing.assert_array_equal(edges, np.arange(7))
    _, e = views.downsample_columns(z, None)
    assert len(e) == 7


def test_minmax_envelope_keeps_extremes_and_bounds_points():
    t = np.arange(100_000) / 8.6
    y = np.sin(t)[:, None] * np.array([1.0, 3.0])
    y[77_777, 1] = 40.0
    y[12_345, 0] = -9.0
    tt, lo, hi = views.minmax_envelope(t, y, 2000)
    assert len(tt) == 2000 and lo.shape == hi.shape == (2000, 2)
    assert hi[:, 1].max() == 40.0 and lo[:, 0].min() == -9.0
    assert np.all(lo <= hi)
    # zoomed: a narrow window comes back at full resolution
    tz, loz, hiz = views.minmax_envelope(t, y, 2000, t_range=(100.0, 110.0))
    assert np.all((tz >= 100.0) & (tz <= 110.0)) and np.array_equal(loz, hiz)
    assert len(tz) == ((t >= 100.0) & (t <= 110.0)).sum()


# --------------------------------------------------------------------------- maps and heatmaps

def test_token_map_head_mean_single_head_and_relevance():
    exp = _fake_exp()
    a = exp.attention["sensor"][0]
    np.testing.assert_allclose(token_map(exp, 0, "sensor", "mean", "attention"), a.mean(0), rtol=1e-6)
    np.testing.assert_allclose(token_map(exp, 0, "sensor", 2, "attention"), a[2])
    np.testing.assert_allclose(token_map(exp, 0, "sensor", 1, "value_norms"), 2 * a[1], rtol=1e-6)
    np.testing.assert_allclose(token_map(exp, 0, "sensor", 1, "relevance"), exp.relevance["sensor"][0])


def test_heatmap_z_is_the_head_mean_attention_and_every_cell_carries_its_positions():
    exp = _fake_exp(T=3, S=7)
    pos = _time_positions(7)
    z = token_map(exp, 0, "sensor", "mean", "attention")
    fig = figs.attention_heatmap(z, pos, title="sensor", clickable="sensor")
    spec = _spec(fig)
    (heat,) = spec["data"]                 # no overlay trace: the heatmap itself is hovered and clicked
    assert heat["type"] == "heatmap"
    np.testing.assert_allclose(_decode(heat["z"]), exp.attention["sensor"][0].mean(0), rtol=1e-6)
    assert _decode(heat["z"]).dtype == np.float32
    cd = _decode(heat["customdata"])
    assert cd.shape[:2] == (3, 7)
    # customdata per cell: token, first position, last position, value, t0, t1
    for t in range(3):
        for c in range(7):
            tok, s0, s1, v, t0, t1 = cd[t, c, :6]
            assert (tok, s0, s1) == (t, c, c)
            assert v == pytest.approx(z[t, c], rel=1e-6)
            assert t0 == pytest.approx(pos["t0"][c], abs=1e-5) and t1 == pytest.approx(pos["t1"][c], abs=1e-5)
    # the hover shows the time span of the position
    assert "customdata[4]" in heat["hovertemplate"] and "customdata[5]" in heat["hovertemplate"]
    assert " s<br>" in heat["hovertemplate"]
    assert spec["layout"]["meta"] == {figs.CLICKABLE: "sensor"}
    assert "meta" not in _spec(figs.attention_heatmap(z, pos))["layout"]      # not clickable unless asked


def test_heatmap_hover_names_frames_and_photo_patches():
    vpos = _video_positions()
    fig = figs.attention_heatmap(np.ones((2, len(vpos))), vpos)
    tpl = fig.data[0].hovertemplate
    assert "frames" in tpl and "patch x" in tpl and " s" in tpl
    ipos = _image_positions()
    tpl = figs.attention_heatmap(np.ones((2, len(ipos))), ipos).data[0].hovertemplate
    assert "photo" in tpl and "patch x" in tpl
    assert "t " not in tpl.split("<br>")[1]


def test_describe_position_gives_time_span_frames_and_box():
    vpos = _video_positions()
    text = views.describe_position(vpos, 7)
    assert "t 2.00–4.00 s" in text and "frames 2–3" in text and "patch x 32–64" in text
    assert "t 0.00–4.00 s" in views.describe_position(vpos, 0, 7)
    assert "photo 2" in views.describe_position(_image_positions(), 5)


def test_heatmap_downsampling_bounds_columns_and_keeps_peak_and_spans():
    S = 100_000
    pos = _time_positions(S, dur=1000.0)
    z = np.full((2, S), 1e-5)
    z[1, 54_321] = 0.7
    fig = figs.attention_heatmap(z, pos, max_cols=500)
    heat = _decode(_spec(fig)["data"][0]["z"])
    assert heat.shape == (2, 500)
    assert heat.max() == pytest.approx(0.7)
    cd = fig.data[0].customdata
    assert cd.shape[:2] == (2, 500) and (cd[1, :, 1:3] == cd[0, :, 1:3]).all()   # same bins on every token row
    first = cd[0]
    assert first[0, 1] == 0 and first[-1, 2] == S - 1                      # bins cover every position
    assert (first[1:, 1] == first[:-1, 2] + 1).all()                        # ... without gaps or overlaps
    assert first[0, 4] == pytest.approx(0.0) and first[-1, 5] == pytest.approx(1000.0, rel=1e-6)
    peak = int(np.argmax(heat[1]))
    assert first[peak, 1] <= 54_321 <= first[peak, 2]                      # the peak's bin holds its position
    assert "positions" in fig.data[0].hovertemplate
    assert figs.payload_bytes(fig) < 150_000
    full = figs.attention_heatmap(z[:, :3000], pos.iloc[:3000], max_cols=None)
    assert _decode(_spec(full)["data"][0]["z"]).shape == (2, 3000)


def test_selected_cell_is_outlined_and_clicks_map_back_to_positions():
    z = np.random.default_rng(0).random((4, 20))
    fig = figs.attention_heatmap(z, _time_positions(20), selected=(2, 13), clickable="sensor")
    (shape,) = fig.layout.shapes
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (12.5, 13.5, 1.5, 2.5)
    # what app.browser_events' script sends: the map's name and the cell's first customdata fields
    click = {"map": "sensor", "customdata": [float(v) for v in fig.data[0].customdata[2, 13, :3]]}
    assert figs.cell_from_click(click) == ("sensor", {"token": 2, "s0": 13, "s1": 13})
    # a typed array may arrive as an object
    as_object = {"map": "sensor", "customdata": {str(i): v for i, v in enumerate(click["customdata"])}}
    assert figs.cell_from_click(as_object) == ("sensor", {"token": 2, "s0": 13, "s1": 13})
    # anything malformed from the page is ignored, not an error
    for bad in (None, {}, {"map": "sensor"}, {"map": 3, "customdata": [1, 2, 3]}, {"map": "sensor", "customdata": [1]},
                {"map": "sensor", "customdata": ["a", 1, 2]}, {"map": "sensor", "customdata": [1, 5, 4]},
                {"map": "sensor", "customdata": [-1, 0, 0]}, {"map": "sensor", "customdata": [float("inf"), 0, 0]},
                {"map": "sensor", "customdata": "123"}):
        assert figs.cell_from_click(bad) is None, bad


def test_shared_range_spans_all_maps():
    assert views.shared_range({"a": np.array([[0.1, 0.5]]), "b": np.array([[0.2, 0.9]])}) == (0.1, 0.9)
    assert views.shared_range([]) == (0.0, 1.0)
    z = np.full((4, 100), 0.01)
    z[:, 0] = 0.9                                          # an edge token that takes all the colour
    z[:, 1:50] = 0.02
    z[:, 99] = 0.5
    lo, hi = views.shared_range([z], robust=True)
    assert (lo, hi) == (pytest.approx(0.01), pytest.approx(0.02))
    assert views.shared_range([z]) == (pytest.approx(0.01), pytest.approx(0.9))


def test_difference_heatmap_is_b_minus_a_on_a_symmetric_scale():
    rng = np.random.default_rng(3)
    a, b = rng.random((2, 9)), rng.random((2, 9))
    fig = figs.difference_heatmap(a, b, _time_positions(9))
    z = _decode(_spec(fig)["data"][0]["z"])
    np.testing.assert_allclose(z, b - a, rtol=1e-5, atol=1e-7)
    assert fig.data[0].zmin == -fig.data[0].zmax == pytest.approx(-np.abs(b - a).max(), rel=1e-6)
    # downsampled: the signed extreme of each bin survives
    d = np.zeros((1, 5000))
    d[0, 10] = -3.0
    d[0, 4000] = 2.0
    big = figs.difference_heatmap(np.zeros((1, 5000)), d, None, max_cols=100)
    zz = _decode(_spec(big)["data"][0]["z"])
    assert zz.shape == (1, 100) and zz.min() == -3.0 and zz.max() == 2.0


def test_js_heatmap_writes_values_and_marks_missing():
    js = np.array([[0.1, np.nan, 0.3, 0.0], [0.2, np.nan, 0.25, 0.01]])
    fig = figs.js_heatmap(js)
    assert fig.data[0].text[0][1] == "n/a" and fig.data[0].text[1][2] == "0.25"


# --------------------------------------------------------------------------- contributions

def test_contribution_bars_show_each_method_and_mark_absent():
    contrib = {"shapley": np.array([0.5, -0.1, 0.2, 0.0]), "leave_one_out": np.array([0.4, 0.0, 0.1, 0.0]),
               "attention": np.array([0.4, 0.3, 0.3, 0.0])}
    present = np.array([True, True, True, False])
    fig = figs.contribution_bars(contrib, present, baseline="drop-attention", efficiency_gap=1e-9)
    assert len(fig.data) == 6          # per method: the present bars, and the absent ones (hatched) apart
    for (shown, absent), m in zip(zip(fig.data[::2], fig.data[1::2]), ("shapley", "leave_one_out", "attention")):
        assert shown.xaxis == absent.xaxis
        np.testing.assert_allclose(np.asarray(shown.x, dtype=float), contrib[m][:3], rtol=1e-6)
        assert list(shown.y) == list(MODALITIES[:3]) and list(absent.y) == [MODALITIES[3]]
        assert list(absent.text) == ["absent"] and absent.marker.pattern.shape == "/"
        # one colour per bar, and no per-bar pattern (plotly.js warns "Invalid color specifier" on those)
        assert not shown.marker.pattern.shape and isinstance(absent.marker.color, str)
    assert list(fig.layout.yaxis.categoryarray) == list(MODALITIES)
    assert "drop-attention" in fig.layout.annotations[-1].text
    assert len(figs.contribution_bars(contrib, present, methods=("shapley",)).data) == 2
    assert len(figs.contribution_bars(contrib, np.ones(4, bool), methods=("shapley",)).data) == 1


def test_token_contributions_and_prediction():
    ts = np.arange(12, dtype=float).reshape(3, 4)
    fig = figs.token_contribution_figure(ts)
    assert [t.name for t in fig.data] == list(MODALITIES)
    np.testing.assert_allclose(np.asarray(fig.data[2].y, dtype=float), ts[:, 2])
    pf = figs.prediction_figure(["good", "porosity", "spatter"], np.array([0.2, 0.7, 0.1]), truth="good")
    bar = pf.data[0]
    assert bar.y[-1] == "porosity" and any("truth" in y for y in bar.y)


# --------------------------------------------------------------------------- raw weld

def test_time_band_adds_tokens_that_share_a_span():
    vpos = _video_positions(bins=3, gh=2, gw=3)
    w = np.arange(len(vpos), dtype=float)
    edges, vals = views.time_band(vpos, w)
    np.testing.assert_allclose(edges, [0, 2, 4, 6])
    np.testing.assert_allclose(vals, [w[:6].sum(), w[6:12].sum(), w[12:].sum()])
    assert vals.sum() == pytest.approx(w.sum())


def _sensor(n, rate=8.6, seed=0):
    rng = np.random.default_rng(seed)
    cols = ["Pressure", "CO2 Weld Flow", "Feed", "Primary Weld Current", "Wire Consumed", "Secondary Weld Voltage"]
    return pd.DataFrame({"t": np.arange(n) / rate, **{c: rng.normal(size=n) for c in cols}})


def test_sensor_figure_bounds_a_100k_step_log_and_keeps_its_peaks():
    s = _sensor(100_000)
    s.loc[61_000, "Primary Weld Current"] = 99.0
    pos = _time_positions(64, dur=float(s["t"].iloc[-1]))
    w = np.random.default_rng(0).random(64)
    fig = figs.sensor_figure(s, w, pos, windows=[(10.0, 20.0)])
    lines = [t for t in fig.data if t.type == "scatter"]
    assert all(len(t.x) <= figs.SIGNAL_MAX_POINTS for t in lines)
    assert max(float(np.max(t.y)) for t in lines) == pytest.approx(99.0)
    band = [t for t in fig.data if t.type == "heatmap"][0]
    np.testing.assert_allclose(np.asarray(band.z, dtype=float)[0], w, rtol=1e-6)
    assert figs.payload_bytes(fig) < 600_000
    assert any(sh.x0 == 10.0 and sh.x1 == 20.0 for sh in fig.layout.shapes)
    # full resolution on request
    full = figs.sensor_figure(s.iloc[:5000], max_points=None)
    assert len(full.data[0].x) == 5000


def test_audio_waveform_and_uint8_spectrogram():
    sr = 16_000
    t = np.arange(sr * 4) / sr
    audio = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    pos = _time_positions(32, dur=4.0)
    wave = figs.audio_figure(audio, sr, np.ones(32), pos)
    assert len(wave.data[0].x) <= figs.SIGNAL_MAX_POINTS
    assert float(np.max(wave.data[0].y)) == pytest.approx(0.3, rel=1e-3)
    spec = figs.audio_figure(audio, sr, np.ones(32), pos, view="spectrogram")
    z = _decode(_spec(spec)["data"][0]["z"])
    assert z.dtype == np.uint8 and z.shape[1] <= views.SPEC_MAX_FRAMES
    freqs = np.asarray(spec.data[0].y, dtype=float)
    assert abs(freqs[z.mean(1).argmax()] - 1000) < 100       # the tone's band is the loudest
    times, fr, db = views.spectrogram(audio, sr, t_range=(1.0, 2.0))
    assert times.min() >= 1.0 and times.max() <= 2.0


def test_video_strip_overlays_patch_weights_on_frames():
    vpos = _video_positions(bins=3, gh=2, gw=3, W=96, H=64)
    frames = np.zeros((6, 64, 96, 3), np.uint8)
    w = np.arange(len(vpos), dtype=float)
    fig = figs.video_strip_figure(frames, w, vpos, highlight=(7, 7))
    assert fig.data[0].type == "image" and fig.data[0].source.startswith("data:image/jpeg;base64,")
    overlays = [t for t in fig.data if t.type == "heatmap"]
    assert len(overlays) == 3
    np.testing.assert_allclose(np.asarray(overlays[1].z, dtype=float), w[6:12].reshape(2, 3))
    assert overlays[0].zmin == 0 and overlays[0].zmax == w.max()
    assert len(fig.layout.shapes) == 1


def test_photos_figure_scales_boxes_and_draws_truth_regions():
    ipos = _image_positions(n=2, gh=2, gw=2, W=400, H=180)       # boxes in the file's pixels
    images = [np.zeros((90, 200, 3), np.uint8)] * 2               # decoded at half size
    w = np.arange(len(ipos), dtype=float)
    fig = figs.photos_figure(images, w, ipos, image_sizes=[(400, 180)] * 2,
                          regions=[{"image": 1, "x0": 100, "y0": 40, "x1": 200, "y1": 80}])
    overlays = [t for t in fig.data if t.type == "heatmap"]
    np.testing.assert_allclose(np.asarray(overlays[0].x, dtype=float), [0, 100, 200])
    np.testing.assert_allclose(np.asarray(overlays[1].z, dtype=float), w[4:].reshape(2, 2))
    (region,) = fig.layout.shapes
    assert region.x1 - region.x0 == pytest.approx(50) and region.line.dash == "dash"


def test_frames_figure_outlines_boxes():
    frames = np.zeros((10, 32, 48, 3), np.uint8)
    fig = figs.frames_figure(frames, np.arange(10) / 5, 2, 5, [{"x0": 0, "y0": 0, "x1": 16, "y1": 16}])
    assert len(fig.layout.shapes) == 4 and len(fig.layout.annotations) == 4


# --------------------------------------------------------------------------- faithfulness, compare, dataset

def test_agreement_and_randomization_figures():
    names = ["shapley", "leave_one_out", "attention"]
    mat = pd.DataFrame([[1, 0.5, np.nan], [0.5, 1, 0.2], [np.nan, 0.2, 1]], index=names, columns=names)
    fig = figs.agreement_figure(mat)
    assert fig.data[0].text[0][2] == "n/a" and fig.data[0].zmin == -1
    sim = pd.DataFrame({"modality": ["video", "video"], "measure": ["attention", "relevance"],
                        "spearman": [0.1, 0.9]})
    con = pd.DataFrame({"modality": ["video"], "method": ["shapley"], "real": [0.4], "randomized": [0.01]})
    rf = figs.randomization_figure(sim, con)
    assert {t.name for t in rf.data} == {"real", "randomized", "attention map", "relevance map"}


def test_compare_and_dataset_figures():
    ab = figs.contributions_ab_figure(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0]), label_a="early")
    assert ab.data[0].name == "early" and list(ab.data[1].y) == [4, 3, 2, 1]
    per_weld = pd.DataFrame({"weld": ["a", "b"], "flag": [True, False],
                             **{f"delta_shapley_{m}": [0.1, -0.2] for m in MODALITIES}})
    df = figs.delta_figure(per_weld)
    assert df.data[0].y[0].startswith("⚑") and not df.data[0].y[1].startswith("⚑")
    long = pd.DataFrame({"weld": ["a", "b"] * 4, "class": ["good", "porosity"] * 4,
                         "modality": np.repeat(MODALITIES, 2), "value": np.arange(8.0)})
    box = figs.contributions_by_class_figure(long)
    assert [t.name for t in box.data] == list(MODALITIES)
    assert figs.contributions_by_class_figure(long.iloc[:0]).layout.annotations


def test_figure_html_embeds_plotly_js_and_needs_no_cdn():
    html = figs.figure_html(figs.attention_heatmap(np.ones((2, 3))))
    assert len(html) > 1_000_000                      # plotly.js is inside
    assert "cdn.plot.ly" not in html.split("Plotly.newPlot")[0].split("<script")[1]
    assert '<script src="http' not in html


def test_heatmap_colour_bar_title_defaults_to_the_value_label_and_can_be_left_out():
    z = np.random.default_rng(1).random((2, 9))
    assert figs.attention_heatmap(z, value_label="‖α·v‖").data[0].colorbar.title.text == "‖α·v‖"
    narrow = figs.attention_heatmap(z, value_label="‖α·v‖", colorbar_title="")
    assert not narrow.data[0].colorbar.title.text
    assert "‖α·v‖" in narrow.data[0].hovertemplate          # the hover still names the value
