"""Explore's raw-weld views: procedure limits (file and spans), the large photo with its truth
boxes, the shared time cursor, the time window on the video strip, the reference weld, the
values at the cursor, and the page (AppTest) stepping through photos."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from app import figures as figs
from fusion_core.errors import InputError
from fusion_core.io.procedure import (MAX_BYTES, ProcedureLimits, out_of_range_spans, parse_procedure_limits,
                                      read_procedure_limits)
from fusion_core.vocab import SENSOR_CHANNELS

from test_app_support import REPO, charts, new_app, problems

GOOD = {"procedure": "WPS-1", "ignore_first_s": 0.5, "ignore_last_s": 0.25,
        "Primary Weld Current": {"min": 160, "max": 240, "unit": "A"},
        "Secondary Weld Voltage": {"min": 21.0, "max": 27.0},
        "CO2 Weld Flow": {"min": 12}}


def _write(tmp_path, text: str, name: str = "limits.json"):
    p = tmp_path / name
    p.write_text(text)
    return p


# --------------------------------------------------------------------------- the limits file

def test_a_good_limits_file_reads_with_its_channels_in_log_order(tmp_path):
    lim = read_procedure_limits(_write(tmp_path, json.dumps(GOOD)))
    assert list(lim.channels) == ["CO2 Weld Flow", "Primary Weld Current", "Secondary Weld Voltage"]
    cur = lim.channels["Primary Weld Current"]
    assert (cur.min, cur.max, cur.unit) == (160.0, 240.0, "A")
    assert lim.channels["Secondary Weld Voltage"].unit == "V"            # the log's unit when none is given
    assert lim.channels["CO2 Weld Flow"].max is None and lim.channels["CO2 Weld Flow"].text() == "≥ 12 L/min"
    assert lim.procedure == "WPS-1" and lim.checked_span(np.array([0.0, 1.0, 8.0])) == (0.5, 7.75)


def test_the_bundled_limits_file_reads_and_covers_the_sample_channels():
    lim = read_procedure_limits(REPO / "sample_data" / "procedure_limits.json")
    assert set(lim.channels) <= set(SENSOR_CHANNELS) and "Primary Weld Current" in lim.channels


BAD = [
    ({**GOOD, "Primary Weld Curent": {"min": 1, "max": 2}}, "'Primary Weld Curent'", "did you mean"),
    ({**GOOD, "Primary Weld Current": {"min": "160", "max": 240}}, "'Primary Weld Current.min'", "number"),
    ({**GOOD, "Primary Weld Current": {"min": 250, "max": 240}}, "'Primary Weld Current'", "below max"),
    ({**GOOD, "Primary Weld Current": {"min": 240, "max": 240}}, "'Primary Weld Current'", "below max"),
    ({**GOOD, "Primary Weld Current": {"min": True, "max": 240}}, "'Primary Weld Current.min'", "number"),
    ({**GOOD, "Primary Weld Current": {"min": 1, "max": 2, "unit": "kA"}}, "'Primary Weld Current.unit'", "in A"),
    ({**GOOD, "Primary Weld Current": {"min": 1, "mx": 2}}, "'Primary Weld Current'", "unknown field 'mx'"),
    ({**GOOD, "Primary Weld Current": {}}, "'Primary Weld Current'", "a min, a max"),
    ({**GOOD, "Primary Weld Current": [160, 240]}, "'Primary Weld Current'", "object"),
    ({**GOOD, "ignore_first_s": -1}, "'ignore_first_s'", "0 or more"),
    ({**GOOD, "ignore_last_s": "1"}, "'ignore_last_s'", "number"),
    ({**GOOD, "procedure": 7}, "'procedure'", "text"),
    ({"procedure": "empty"}, "names no channel", ""),
]


@pytest.mark.parametrize("doc, key, why", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_each_bad_limits_file_is_refused_naming_the_file_and_the_key(tmp_path, doc, key, why):
    p = _write(tmp_path, json.dumps(doc))
    with pytest.raises(InputError) as e:
        read_procedure_limits(p)
    assert str(e.value).startswith(f"{p}: ") and key in str(e.value) and why in str(e.value)


@pytest.mark.parametrize("text, key", [
    ('{"Primary Weld Current": {"min": NaN, "max": 240}}', "'Primary Weld Current.min'"),
    ('{"Primary Weld Current": {"min": 1, "max": Infinity}}', "'Primary Weld Current.max'"),
    ('{"Primary Weld Current": {"min": 1, "max": 1e999}}', "'Primary Weld Current.max'"),
    ('{"Feed": {"min": 1}, "Feed": {"max": 2}}', "'Feed' appears twice"),
    ('{"Feed": {"min": 1},}', "not valid JSON (line 1"),
    ('[1, 2]', "must be a JSON object"),
])
def test_nan_infinity_duplicates_and_broken_json_are_refused(tmp_path, text, key):
    p = _write(tmp_path, text)
    with pytest.raises(InputError, match=None) as e:
        read_procedure_limits(p)
    assert str(e.value).startswith(f"{p}: ") and key in str(e.value)


def test_size_encoding_and_missing_files_are_refused(tmp_path):
    big = _write(tmp_path, json.dumps({**GOOD, "procedure": "x" * MAX_BYTES}), "big.json")
    with pytest.raises(InputError, match=r"big\.json: file is \d+ bytes"):
        read_procedure_limits(big)
    with pytest.raises(InputError, match="upload.json: file is over"):
        parse_procedure_limits(b"{" + b" " * MAX_BYTES + b"}", "upload.json")
    with pytest.raises(InputError, match="latin.json: not UTF-8"):
        parse_procedure_limits('{"procedure": "Schwei\u00dfen"}'.encode("latin-1"), "latin.json")
    with pytest.raises(InputError, match="nowhere.json: cannot read"):
        read_procedure_limits(tmp_path / "nowhere.json")
    with pytest.raises(InputError, match="not a regular file"):
        read_procedure_limits(tmp_path)
    ok = parse_procedure_limits("\ufeff" + json.dumps(GOOD), "bom.json")     # a BOM is fine
    assert ok.source == "bom.json"


# --------------------------------------------------------------------------- out-of-range spans

def _spans_by_hand(t, y, lo, hi, within):
    """Runs of samples outside [lo, hi] found one sample at a time; sample i lasts to t[i+1]."""
    step = float(np.median(np.diff(t)))
    spans, start = [], None
    for i in range(len(t)):
        bad = within[0] <= t[i] <= within[1] and not math.isnan(y[i]) and (y[i] < lo or y[i] > hi)
        if bad and start is None:
            start = i
        if start is not None and (not bad or i == len(t) - 1):
            last = i - 1 if not bad else i
            end = t[last + 1] if last + 1 < len(t) else t[last] + step
            spans.append((t[start], min(end, within[1])))
            start = None
    return spans


def _trace(n=200, rate=10.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    y = 200 + 25 * np.sin(t * 1.3) + rng.normal(0, 8, n)
    y[50:54] = 300.0                          # a burst above
    y[120] = np.nan                           # nothing measured
    y[150:160] = 100.0                        # a dip below
    return t, y


def test_out_of_range_spans_match_a_sample_by_sample_count():
    t, y = _trace()
    within = (0.5, 30.0)                      # past the log's end: no span is clipped
    got = out_of_range_spans(t, y, 180, 230, within=within)
    want = _spans_by_hand(t, y, 180, 230, within)
    assert len(got) == len(want) >= 3
    np.testing.assert_allclose(np.array(got), np.array(want))
    # on a uniform log the time out of range is the count of bad samples times the step
    inside = (t >= within[0]) & (t <= within[1])
    with np.errstate(invalid="ignore"):
        n_bad = int(np.sum(inside & ((y < 180) | (y > 230))))
    assert sum(b - a for a, b in got) == pytest.approx(n_bad * 0.1)
    assert out_of_range_spans(t, np.full_like(t, 200.0), 180, 230) == []
    assert out_of_range_spans(t, y, None, 250) == _spans_by_hand(t, y, -np.inf, 250, (0, 1e9))


def test_sensor_figure_draws_the_band_the_spans_and_their_count_in_the_row_title():
    t, y = _trace()
    sensor = pd.DataFrame({"t": t, "Primary Weld Current": y, "Feed": np.full_like(t, 8000.0)})
    limits = ProcedureLimits({"Primary Weld Current": parse_procedure_limits(
        json.dumps({"Primary Weld Current": {"min": 180, "max": 230}}), "x").channels["Primary Weld Current"],
        "Feed": parse_procedure_limits(json.dumps({"Feed": {"min": 7000, "max": 9000}}), "x").channels["Feed"]},
        ignore_first_s=0.5, ignore_last_s=1.9)
    fig = figs.sensor_figure(sensor, limits=limits)
    want = _spans_by_hand(t, y, 180, 230, (0.5, float(t[-1]) - 1.9))
    out = [(sh.x0, sh.x1) for sh in fig.layout.shapes if sh.name == "out of range"]
    np.testing.assert_allclose(np.array(out), np.array(want))
    titles = [a.text for a in fig.layout.annotations]
    assert any(f"{len(want)} spans out of range, {sum(b - a for a, b in want):.2f} s in all" in a for a in titles)
    assert any("Feed (mm/min)" in a and "within 7000–9000 mm/min" in a for a in titles)
    band = [sh for sh in fig.layout.shapes if sh.name == "allowed range"]
    assert [(b.y0, b.y1) for b in band] == [(180, 230), (7000, 9000)] and band[0].x0 == 0.5
    # names sit in the titles above the rows, not over the traces: no annotation inside a plot area
    assert all(a.yanchor == "bottom" for a in fig.layout.annotations)


# --------------------------------------------------------------------------- photos

def _image_positions(n, gh, gw, W, H):
    return pd.DataFrame([dict(image=i, x0=c * W / gw, y0=r * H / gh, x1=(c + 1) * W / gw, y1=(r + 1) * H / gh)
                         for i in range(n) for r in range(gh) for c in range(gw)])


def test_the_large_photo_has_its_truth_boxes_at_the_scaled_coordinates():
    images = [np.full((90, 200, 3), 40 * i, np.uint8) for i in range(3)]         # decoded at half size
    pos = _image_positions(3, 2, 4, 400, 180)
    w = np.arange(len(pos), dtype=float)
    regions = [{"image": 1, "x0": 100, "y0": 40, "x1": 160, "y1": 90}, {"image": 2, "x0": 0, "y0": 0, "x1": 8, "y1": 8}]
    fig = figs.photo_figure(images, 1, w, pos, image_sizes=[(400, 180)] * 3, regions=regions)
    (box,) = [sh for sh in fig.layout.shapes if sh.name == "truth region"]
    assert (box.x0, box.y0, box.x1, box.y1) == (50, 20, 80, 45) and box.line.dash == "dash"
    (overlay,) = [t for t in fig.data if t.type == "heatmap"]
    np.testing.assert_allclose(np.asarray(overlay.z, dtype=float), w[8:16].reshape(2, 4))
    assert (overlay.zmin, overlay.zmax) == (0.0, w.max())                        # one scale over all photos
    assert fig.layout.annotations[0].text == "photo 2 of 3"
    other = figs.photo_figure(images, 2, w, pos, image_sizes=[(400, 180)] * 3, regions=regions)
    assert [(s.x0, s.x1) for s in other.layout.shapes if s.name == "truth region"] == [(0, 4)]
    strip = figs.photos_figure(images, w, pos, image_sizes=[(400, 180)] * 3, regions=regions, ncols=3, outline=2)
    (shown,) = [sh for sh in strip.layout.shapes if sh.name == "shown"]
    assert shown.x0 == 2 * (200 + 4)                                             # the third tile framed


# --------------------------------------------------------------------------- the time cursor

def _cursors(fig):
    return [sh for sh in fig.layout.shapes if sh.name == "cursor"]


def test_the_cursor_is_a_line_at_t_on_every_row_of_the_sensor_and_audio_figures():
    t = np.arange(100) / 10
    sensor = pd.DataFrame({"t": t, **{c: np.sin(t + i) for i, c in enumerate(SENSOR_CHANNELS)}})
    pos = pd.DataFrame({"t0": np.arange(10.0), "t1": np.arange(1.0, 11.0)})
    fig = figs.sensor_figure(sensor, np.ones(10), pos, cursor=3.7)
    lines = _cursors(fig)
    assert len(lines) == len(SENSOR_CHANNELS) + 1 and all(sh.x0 == sh.x1 == 3.7 for sh in lines)
    assert {sh.yref for sh in lines} == {"y domain"} | {f"y{i} domain" for i in range(2, len(SENSOR_CHANNELS) + 2)}
    audio = np.zeros(16_000 * 10, np.float32)
    for view in ("waveform", "spectrogram"):
        a = figs.audio_figure(audio, 16_000, np.ones(10), pos, view=view, cursor=6.25)
        assert [(sh.x0, sh.xref) for sh in _cursors(a)] == [(6.25, "x"), (6.25, "x2")]
    assert _cursors(figs.sensor_figure(sensor)) == []
    # units on every axis
    assert fig.layout.xaxis7.title.text == "time (s)" and fig.layout.yaxis4.title.text == "A"
    assert a.layout.yaxis.title.text == "frequency (Hz)"


def test_the_cursor_on_a_time_heatmap_falls_in_the_column_of_t_binned_or_not():
    pos = pd.DataFrame({"t0": np.arange(64) * 0.125, "t1": np.arange(1, 65) * 0.125})
    z = np.random.default_rng(0).random((4, 64))
    hm = figs.add_time_cursor(figs.attention_heatmap(z, pos), 3.0625, pos)        # position 24, half way
    (line,) = _cursors(hm)
    assert line.x0 == pytest.approx(24.0)
    binned = figs.add_time_cursor(figs.attention_heatmap(z, pos, max_cols=16), 3.0625, pos)   # 4 per column
    (line,) = _cursors(binned)
    assert line.x0 == pytest.approx(6 - 0.5 + 0.0625 / 0.5) and line.xref == "x"     # t 3.0–3.5 s in column 6
    vpos = pd.DataFrame([dict(t0=b * 0.5, t1=(b + 1) * 0.5, frame0=b, frame1=b, x0=c, y0=0, x1=c + 1, y1=1)
                         for b in range(8) for c in range(6)])
    v = figs.add_time_cursor(figs.attention_heatmap(np.ones((2, 48)), vpos), 1.2, vpos)
    (band,) = _cursors(v)
    assert band.type == "rect" and (band.x0, band.x1) == (12 - 0.5, 17 + 0.5)     # the bin of 1.0–1.5 s
    assert _cursors(figs.add_time_cursor(figs.attention_heatmap(z, pos), 99.0, pos)) == []


def _video_positions(bins=8, dur=4.0):
    e = np.linspace(0, dur, bins + 1)
    return pd.DataFrame([dict(t0=e[b], t1=e[b + 1], frame0=3 * b, frame1=3 * b + 2, x0=c * 16, y0=0,
                              x1=(c + 1) * 16, y1=16) for b in range(bins) for c in range(2)])


def test_the_video_strip_keeps_the_window_and_shows_the_frame_nearest_the_cursor():
    vpos = _video_positions()
    frames = np.stack([np.full((16, 32, 3), i, np.uint8) for i in range(24)])
    times = np.arange(24) / 6.0
    fig = figs.video_strip_figure(frames, np.ones(len(vpos)), vpos, t_range=(1.2, 2.6), frame_times=times,
                                  cursor=2.1)
    starts = sorted(float(str(h.hovertemplate).split("t ")[1].split("–")[0]) for h in fig.data if h.type == "heatmap")
    assert starts == [1.0, 1.5, 2.0, 2.5]                  # the bins overlapping 1.2–2.6 s, no other
    labels = [a.text for a in fig.layout.annotations]
    assert labels == ["1.0s", "1.5s", "▶ 2.17s", "2.5s"]   # frame 13 (2.17 s) is the nearest to 2.1 s
    (mark,) = _cursors(fig)
    assert mark.x0 == 2 * (32 + 4)
    everything = figs.video_strip_figure(frames, np.ones(len(vpos)), vpos)
    assert len([h for h in everything.data if h.type == "heatmap"]) == 8 and _cursors(everything) == []


# --------------------------------------------------------------------------- the reference weld

def test_the_reference_weld_is_drawn_faintly_aligned_at_the_start_and_labelled():
    t = np.arange(50) / 10
    sensor = pd.DataFrame({"t": t, "Feed": np.full(50, 8000.0), "Pressure": np.full(50, 4.5)})
    ref = pd.DataFrame({"t": t[:40] + 7.0, "Feed": np.full(40, 7600.0), "Pressure": np.full(40, 4.2)})
    fig = figs.sensor_figure(sensor, reference=ref, reference_label="reference: 000800")
    refs = [tr for tr in fig.data if tr.legendgroup == "reference"]
    assert len(refs) == 2 and [tr.name for tr in refs if tr.showlegend] == ["reference: 000800"]
    np.testing.assert_allclose(np.asarray(refs[0].x, dtype=float), t[:40], atol=1e-6)   # from 0, like this weld
    np.testing.assert_allclose(np.asarray(refs[0].y, dtype=float), 7600.0)
    assert fig.data.index(refs[0]) < fig.data.index(next(tr for tr in fig.data if tr.legendgroup == "weld"))
    sr = 16_000
    audio = np.zeros(sr * 2, np.float32)
    ref_audio = (0.5 * np.sin(np.arange(sr) / 5)).astype(np.float32)
    wave = figs.audio_figure(audio, sr, reference=ref_audio, reference_label="reference: 000800")
    env = [tr for tr in wave.data if tr.legendgroup == "reference"]
    assert env and env[0].name == "reference: 000800" and float(np.max(env[0].y)) == pytest.approx(0.5, abs=1e-3)


def test_cursor_values_give_the_nearest_samples_the_reference_and_the_verdict():
    from app.screens.explore_raw import cursor_values

    t = np.arange(0, 5, 0.25)
    sensor = pd.DataFrame({"t": t, "Primary Weld Current": 200 + 10 * t, "Feed": 8000 - t})
    ref = pd.DataFrame({"t": t + 3.0, "Primary Weld Current": 150 + 0 * t, "Feed": 7000 + t})
    lim = parse_procedure_limits(json.dumps({"Primary Weld Current": {"min": 160, "max": 230},
                                             "ignore_first_s": 0.5}), "x")
    table = cursor_values(sensor, 3.1, ref, "reference: 000800", lim)
    assert list(table.columns) == ["channel", "this weld", "reference", "allowed", "check"]
    cur = table.set_index("channel").loc["Primary Weld Current (A)"]
    assert (cur["this weld"], cur["reference"], cur["allowed"], cur["check"]) == ("230", "150", "160–230 A", "within")
    assert table.attrs["at"] == ["this weld at 3.00 s", "reference: 000800 at 3.00 s"]
    assert cursor_values(sensor, 3.3, limits=lim).set_index("channel").loc["Primary Weld Current (A)", "check"] == \
        "▲ above max"
    assert cursor_values(sensor, 0.2, limits=lim).iloc[0]["check"] == "not checked"


# --------------------------------------------------------------------------- the page

def _chart(at, key: str) -> dict:
    return json.loads(next(c for c in charts(at) if c.key == key).proto.spec)


def _photo_title(at) -> str:
    return _chart(at, "explore_photo_large")["layout"]["annotations"][0]["text"]


def test_the_page_shows_the_photo_viewer_and_steps_through_the_photos(data):
    at = new_app()
    at.session_state["explore_tab"] = "On the raw weld"
    at.run()
    assert problems(at) == []
    picker = at.segmented_control(key="explore_photo")
    n = len(picker.options)
    assert picker.value == 0 and _photo_title(at) == f"photo 1 of {n}" and n >= 2
    at.button(key="explore_photo_next").click().run()
    assert problems(at) == [] and _photo_title(at) == f"photo 2 of {n}"
    assert at.segmented_control(key="explore_photo").value == 1
    at.segmented_control(key="explore_photo").set_value(n - 1).run()
    assert problems(at) == [] and _photo_title(at) == f"photo {n} of {n}"
    at.button(key="explore_photo_next").click().run()                              # wraps around
    assert _photo_title(at) == f"photo 1 of {n}"
    at.button(key="explore_photo_prev").click().run()
    assert _photo_title(at) == f"photo {n} of {n}" and problems(at) == []
    # the overview frames the photo shown
    shown = [s for s in _chart(at, "explore_photos")["layout"]["shapes"] if s.get("name") == "shown"]
    assert len(shown) == 1


def test_the_page_moves_the_cursor_keeps_it_across_tabs_and_draws_the_reference(data):
    from app.screens.explore_raw import good_weld_folders

    at = new_app()
    at.session_state["explore_tab"] = "On the raw weld"
    at.run()
    at.slider(key="explore_cursor").set_value(2.5).run()
    assert problems(at) == []
    for key in ("explore_sensor", "explore_audio"):
        xs = {s["x0"] for s in _chart(at, key)["layout"]["shapes"] if s.get("name") == "cursor"}
        assert xs == {2.5}, key
    assert any("2.5" in c.value or "2.4" in c.value for c in at.caption if c.value.startswith("Logged nearest"))
    at.session_state["explore_tab"] = "Attention maps"
    at.run()
    at.session_state["explore_tab"] = "On the raw weld"
    at.run()
    assert at.slider(key="explore_cursor").value == 2.5                              # kept while the tab was closed
    if not good_weld_folders():
        pytest.skip("no good weld in the data folder")
    at.toggle(key="explore_ref_on").set_value(True).run()
    assert problems(at) == []
    first = good_weld_folders()[0].name
    names = [t.get("name") for t in _chart(at, "explore_sensor")["data"] if t.get("showlegend")]
    assert f"reference: {first}" in names
    beside = _chart(at, "explore_photo_reference")["layout"]["title"]["text"]
    assert beside.startswith(f"good weld {first}: photo 1 of ")


def test_raw_figures_build_every_view_of_a_sample_weld_for_the_report(data):
    """What the report takes (`raw_figures`, no widgets): sensor, audio, video, photo, photos,
    with the cursor, the window, the limits and a reference weld."""
    from app.screens.explore_common import MapView
    from app.screens.explore_raw import RawChoices, good_weld_folders, raw_figures
    from fusion_core import explain_welds, load_checkpoint, load_weld
    from test_app_support import weld_dirs

    folder = next(p for p in weld_dirs(data) if p.name[-2:] != "00")
    weld = load_weld(folder)
    exp = explain_welds(load_checkpoint(data / "checkpoints" / "demo-best.safetensors"), [weld])
    view = MapView(maps={m: exp.token_map(0, m, "mean", "attention") for m in exp.attention})
    goods = good_weld_folders()
    ref = load_weld(goods[0]) if goods else None
    lim = parse_procedure_limits(json.dumps({"Primary Weld Current": {"min": 160, "max": 240}}), "x")
    got = raw_figures(exp, weld, view, RawChoices(t_range=(1.0, 3.0), cursor=2.0, reference=ref, limits=lim,
                                                  photo=1))
    assert set(got) == {"sensor", "audio", "video", "photo", "photos"} | ({"reference_photo"} if ref else set())
    assert {s.x0 for s in got["sensor"].layout.shapes if s.name == "cursor"} == {2.0}
    assert list(got["sensor"].layout.xaxis.range) == [1.0, 3.0]
    assert any("Primary Weld Current (A)</b> · " in a.text for a in got["sensor"].layout.annotations)
    assert got["photo"].layout.annotations[0].text.startswith("photo 2 of ")
    spans = [str(h.hovertemplate).split("t ")[1].split(" s<br>")[0].split("–") for h in got["video"].data
             if h.type == "heatmap"]
    bins = exp.positions["video"][0][["t0", "t1"]].drop_duplicates()
    inside = bins[(bins["t1"] > 1.0) & (bins["t0"] < 3.0)]                       # bins overlapping 1–3 s
    assert 0 < len(spans) == len(inside) < len(bins)
    assert [float(a) for a, _ in spans] == pytest.approx(inside["t0"].tolist(), abs=0.006)
    if ref is not None:
        assert any(t.legendgroup == "reference" for t in got["sensor"].data)
        # The good weld's photo of the same index, plain (no attention overlay, no truth boxes).
        assert got["reference_photo"].layout.title.text == f"good weld {ref.weld_id}: photo 2 of {len(ref.images)}"
        assert [t.type for t in got["reference_photo"].data] == ["image"] and not got["reference_photo"].layout.shapes
