"""The raw weld over time: sensor channels and audio (waveform or spectrogram), each with
the attention band beneath and the truth windows shaded; optionally the procedure's allowed
band per channel with the spans out of it, a reference weld drawn faintly underneath, and a
time cursor. Signals beyond `SIGNAL_MAX_POINTS` time bins go out as a min/max envelope, so
peaks survive.

Channel names and units sit in each row's title, above the row (never over the trace), and
the legend goes under the figure."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fusion_core.explain.views import SPEC_MAX_FRAMES, minmax_envelope, shared_range, spectrogram, time_band
from fusion_core.io.procedure import ProcedureLimits, out_of_range_spans
from fusion_core.vocab import SENSOR_UNITS

from .common import axis_suffix, f32, layout, layout_dict
from .maps import add_time_cursor

SIGNAL_MAX_POINTS = 2000   # time bins of a raw signal (each bin sends its min and max)
TRACE = "#3D5A80"
REFERENCE = "rgba(110,110,110,0.55)"
REFERENCE_FILL = "rgba(150,150,150,0.25)"
TRUTH_FILL = "#F2B134"                 # planted-defect windows (truth.json)
TRUTH_LABEL = "planted defect (truth)"
OUT_FILL = "rgba(214,39,40,0.25)"      # out of the procedure's range
BAND_FILL = "rgba(44,160,44,0.10)"     # the procedure's allowed band
BAND_LINE = "rgba(44,160,44,0.7)"
ROW_PX, GAP_PX, BAND_PX = 64, 22, 30   # a channel row, the gap holding a row's title, the attention row
X_TICKS = 10
LEFT_PX = 76                           # one left margin for the sensor and audio figures: their time axes line up


def _add_windows(fig: go.Figure, windows, label: str = TRUTH_LABEL) -> None:
    """Shade `windows` on a figure whose rows share one time axis (`_window_shapes`)."""
    if windows:
        fig.update_layout(shapes=list(fig.layout.shapes) + _window_shapes(windows, label))


def _band_trace(edges: np.ndarray, vals: np.ndarray, colorscale, zmax: float | None, label: str,
                robust: bool = False) -> go.Heatmap:
    zmin = None
    if robust and len(vals) > 2:
        zmin, zmax = shared_range([vals], robust=True)
    return go.Heatmap(z=f32(vals)[None, :], x=f32(edges), y=["attention"], zmin=zmin, zmax=zmax, colorscale=colorscale,
                      showscale=False, hovertemplate="t %{x:.2f} s<br>" + label + " %{z:.4g}<extra></extra>")


def _envelope_traces(t: np.ndarray, lo: np.ndarray, hi: np.ndarray, name: str, *, color: str, fill: str,
                     width: float, legend: str | None = None, group: str | None = None) -> list[go.Scatter]:
    """One channel as a line (lo == hi: the samples themselves) or a filled min/max envelope;
    `legend` names it in the legend (first trace only)."""
    common = dict(mode="lines", line=dict(width=width, color=color), legendgroup=group)
    if np.array_equal(lo, hi):
        return [go.Scatter(x=f32(t), y=f32(lo), name=legend or name, showlegend=legend is not None,
                           hovertemplate=f"{name}<br>t %{{x:.2f}} s: %{{y:.4g}}<extra></extra>", **common)]
    return [go.Scatter(x=f32(t), y=f32(hi), name=legend or name, showlegend=legend is not None,
                       hovertemplate=f"{name} max %{{y:.4g}}<extra></extra>", **common),
            go.Scatter(x=f32(t), y=f32(lo), name=name, showlegend=False, fill="tonexty", fillcolor=fill,
                       hovertemplate=f"{name} min %{{y:.4g}}<extra></extra>", **common)]


def channel_label(c: str) -> str:
    """"Primary Weld Current (A)"."""
    return f"{c} ({SENSOR_UNITS[c]})" if c in SENSOR_UNITS else c


def limit_status(sensor: pd.DataFrame, limits: ProcedureLimits | None) -> dict[str, list[tuple[float, float]]]:
    """Per channel with limits: its out-of-range spans (seconds) over the checked part of the log."""
    if limits is None or sensor is None or not len(sensor):
        return {}
    t = sensor["t"].to_numpy(dtype=np.float64)
    within = limits.checked_span(t)
    return {c: out_of_range_spans(t, sensor[c].to_numpy(dtype=np.float64), lim.min, lim.max, within=within)
            for c, lim in limits.channels.items() if c in sensor.columns}


def _row_title(c: str, limits: ProcedureLimits | None, spans: list | None) -> str:
    text = f"<b>{channel_label(c)}</b>"
    if limits is None or c not in limits.channels or spans is None:
        return text
    if not spans:
        return text + f" · within {limits.channels[c].text()}"
    total = sum(b - a for a, b in spans)
    n = len(spans)
    return text + f" · <span style='color:#C0392B'>{n} span{'s' if n != 1 else ''} out of range, {total:.2f} s in all</span>"


def _limit_shapes(row: int, c: str, limits: ProcedureLimits, spans: list, t: np.ndarray, y: np.ndarray,
                  first: dict) -> list[dict]:
    """The allowed band of channel `c` over the checked span, and its out-of-range spans shaded."""
    lim = limits.channels[c]
    xr, yr = f"x{axis_suffix(row)}", f"y{axis_suffix(row)}"
    a, b = limits.checked_span(t)
    finite = y[np.isfinite(y)]
    lo = lim.min if lim.min is not None else min(float(finite.min()) if finite.size else lim.max, lim.max)
    hi = lim.max if lim.max is not None else max(float(finite.max()) if finite.size else lim.min, lim.min)
    out = [dict(type="rect", x0=a, x1=b, y0=lo, y1=hi, xref=xr, yref=yr, fillcolor=BAND_FILL, layer="below",
                line=dict(color=BAND_LINE, width=1, dash="dot"), name="allowed range", legendgroup="allowed",
                showlegend=not first.get("allowed", False))]
    first["allowed"] = True
    for s0, s1 in spans:
        out.append(dict(type="rect", x0=s0, x1=s1, y0=0, y1=1, xref=xr, yref=f"{yr} domain", fillcolor=OUT_FILL,
                        line=dict(width=0), layer="below", name="out of range", legendgroup="out",
                        showlegend=not first.get("out", False)))
        first["out"] = True
    return out


def _window_shapes(windows, label: str = TRUTH_LABEL) -> list[dict]:
    """Shaded time windows (the truth's, or a clicked cell's span), one paper-high shape each,
    one legend entry for all: the rows share one time axis (make_subplots, shared x), so one
    shape spans them all, where `add_vrect(row="all")` made one per row (a third of the sensor
    figure's build time)."""
    return [dict(type="rect", x0=a, x1=z, xref="x", y0=0, y1=1, yref="paper", fillcolor=TRUTH_FILL, opacity=0.22,
                 line=dict(width=0), layer="below", name=label, legendgroup="truth",
                 showlegend=i == 0) for i, (a, z) in enumerate(windows or ())]


def _aligned(ref: pd.DataFrame, t_start: float) -> pd.DataFrame:
    """A reference log shifted so it starts when this weld's log starts."""
    ref = ref.copy()
    ref["t"] = ref["t"].to_numpy(dtype=np.float64) - float(ref["t"].iloc[0]) + t_start
    return ref


@functools.lru_cache(maxsize=32)
def _sensor_grid(n_chans: int, band: bool) -> tuple[str, float]:
    """make_subplots' layout for this many rows (JSON, without the template), and the plot
    height in px. Cached: make_subplots builds and validates every axis (~16 ms for six rows),
    and a heatmap-cell click draws one."""
    n = n_chans + (1 if band else 0)
    plot_px = ROW_PX * n_chans + (BAND_PX if band else 0) + GAP_PX * (n - 1)
    grid = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=GAP_PX / plot_px,
                         row_heights=[ROW_PX] * n_chans + ([BAND_PX] if band else []))
    lay = grid.layout.to_plotly_json()
    lay.pop("template", None)
    return json.dumps(lay), plot_px


def _sensor_layout(n_chans: int, band: bool, titles: list[str], title: str | None, legend: bool):
    """The rows' layout (a dict) with each row's title in the gap above the row, heights in pixels."""
    grid, plot_px = _sensor_grid(n_chans, band)
    lay = json.loads(grid)
    lay["annotations"] = [
        dict(text=text, x=0.0, xanchor="left", xref="paper", y=lay[f"yaxis{axis_suffix(i)}"]["domain"][1],
             yanchor="bottom", yref="paper", showarrow=False, font=dict(size=12), yshift=-2)
        for i, text in enumerate(titles, start=1)]
    top = (40 if title else 8) + GAP_PX
    bottom = 44 + (34 if legend else 0)
    return lay, n_chans + (1 if band else 0), plot_px + top + bottom, dict(l=LEFT_PX, r=20, t=top, b=bottom)


def sensor_figure(sensor: pd.DataFrame, weights: np.ndarray | None = None, positions: pd.DataFrame | None = None,
                  *, windows=None, t_range: tuple[float, float] | None = None,
                  max_points: int | None = SIGNAL_MAX_POINTS, colorscale="Viridis", zmax: float | None = None,
                  band_label: str = "attention", title: str | None = None, robust: bool = False,
                  limits: ProcedureLimits | None = None, reference: pd.DataFrame | None = None,
                  reference_label: str = "reference", cursor: float | None = None,
                  window_label: str = TRUTH_LABEL) -> go.Figure:
    """Sensor channels over time (min/max envelope beyond max_points), attention band beneath.

    `limits`: each channel's allowed band and its out-of-range spans (counted over the whole
    log, in the row's title). `reference`: another weld's log drawn faintly underneath,
    time-aligned at the start. `cursor`: a vertical line at that time. `windows` are shaded and
    named `window_label` in the legend (the truth's by default)."""
    chans = [c for c in sensor.columns if c != "t"]
    band = weights is not None and positions is not None and "t0" in positions.columns
    status = limit_status(sensor, limits)
    legend = bool(windows) or reference is not None or limits is not None
    titles = [_row_title(c, limits, status.get(c)) for c in chans]
    lay, n, height, margin = _sensor_layout(len(chans), band, titles, title, legend)
    t_all = sensor["t"].to_numpy(dtype=np.float64)
    t, lo, hi = minmax_envelope(t_all, sensor[chans].to_numpy(), max_points, t_range)
    ref = None
    if reference is not None and len(reference) and len(t_all):
        ref_chans = [c for c in chans if c in reference.columns]
        ref = _aligned(reference, float(t_all[0]))
        rt, rlo, rhi = minmax_envelope(ref["t"].to_numpy(), ref[ref_chans].to_numpy(), max_points, t_range)
    # Traces on their row's axes, shapes and axis settings in the layout dict, then ONE
    # Figure(data, layout) call: add_trace(row=) and update_* each took milliseconds.
    traces: list = []
    shapes: list[dict] = []
    first: dict = {}
    on_row = functools.partial(_on_row, traces)
    for i, c in enumerate(chans, start=1):
        if ref is not None and c in ref_chans:
            j = ref_chans.index(c)
            on_row(_envelope_traces(rt, rlo[:, j], rhi[:, j], f"{reference_label} · {c}", color=REFERENCE,
                                    fill=REFERENCE_FILL, width=1.0, group="reference",
                                    legend=reference_label if not first.get("ref") else None), i)
            first["ref"] = True
        on_row(_envelope_traces(t, lo[:, i - 1], hi[:, i - 1], channel_label(c), color=TRACE,
                                fill="rgba(61,90,128,0.35)", width=1.2,
                                legend="this weld" if ref is not None and i == 1 else None, group="weld"), i)
        if c in status:
            shapes += _limit_shapes(i, c, limits, status[c], t_all, sensor[c].to_numpy(dtype=np.float64), first)
        lay[f"yaxis{axis_suffix(i)}"].update(title_text=SENSOR_UNITS.get(c, ""), nticks=3)
    if band:
        edges, vals = time_band(positions, weights)
        on_row([_band_trace(edges, vals, colorscale, zmax, band_label, robust)], n)
        lay[f"yaxis{axis_suffix(n)}"]["showticklabels"] = True
    for name, axis in _time_axes(n, t_range).items():
        lay[name].update(axis)
    lay["shapes"] = shapes + _window_shapes(windows, window_label)
    lay.update(layout_dict(title, height, margin=margin, showlegend=legend,
                           legend=dict(orientation="h", x=0, xanchor="left",
                                       y=-44 / max(height - margin["t"] - margin["b"], 1), yanchor="top",
                                       font=dict(size=11))))
    return add_time_cursor(go.Figure(data=traces, layout=lay), cursor)


def _on_row(traces: list, trs, i: int) -> None:
    """Put these traces on row i's axes (of a make_subplots grid) and into `traces`."""
    for tr in trs:
        tr.update(xaxis=f"x{axis_suffix(i)}", yaxis=f"y{axis_suffix(i)}")
        traces.append(tr)


def _time_axes(n: int, t_range) -> dict:
    """The time axes of n rows sharing one, as layout entries: the range, ~X_TICKS ticks, and
    the title under the last row."""
    axes = {f"xaxis{axis_suffix(j)}": dict(nticks=X_TICKS, **({"range": list(t_range)} if t_range else {}))
            for j in range(1, n + 1)}
    axes[f"xaxis{axis_suffix(n)}"]["title"] = dict(text="time (s)")
    return axes


def _waveform(fig: go.Figure, audio: np.ndarray, sample_rate: int, max_points, t_range, reference, reference_label):
    if reference is not None and len(reference):
        rt = np.arange(len(reference), dtype=np.float64) / sample_rate
        tt, lo, hi = minmax_envelope(rt, np.abs(reference), max_points, t_range)
        for tr in _envelope_traces(tt, -hi[:, 0], hi[:, 0], f"{reference_label} envelope", color=REFERENCE,
                                   fill=REFERENCE_FILL, width=0.8, legend=reference_label, group="reference"):
            fig.add_trace(tr, row=1, col=1)
    t = np.arange(len(audio), dtype=np.float64) / sample_rate
    tt, lo, hi = minmax_envelope(t, audio, max_points, t_range)
    fig.add_trace(go.Scatter(x=f32(tt), y=f32(hi[:, 0]), mode="lines", line=dict(width=0.6, color="#2A6F97"),
                             name="this weld", showlegend=reference is not None, legendgroup="weld",
                             hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Scatter(x=f32(tt), y=f32(lo[:, 0]), mode="lines", line=dict(width=0.6, color="#2A6F97"),
                             fill="tonexty", fillcolor="rgba(42,111,151,0.5)", showlegend=False, legendgroup="weld",
                             hovertemplate="t %{x:.3f} s<extra></extra>"), row=1, col=1)
    fig.update_yaxes(title_text="amplitude (full scale ±1)", nticks=5, row=1, col=1)


def _spectrogram(fig: go.Figure, audio: np.ndarray, sample_rate: int, max_points, t_range, db_range: float) -> None:
    # "full resolution" for a spectrogram: 4× the frames (hop ≥ 1 sample is the real limit)
    frames = SPEC_MAX_FRAMES if max_points else SPEC_MAX_FRAMES * 4
    times, freqs, db = spectrogram(audio, sample_rate, max_frames=frames, t_range=t_range)
    top = float(db.max()) if db.size else 0.0
    q = np.clip(np.round((db - (top - db_range)) / db_range * 255), 0, 255).astype(np.uint8)
    ticks = np.linspace(0, 255, 5)
    fig.add_trace(go.Heatmap(z=q, x=f32(times), y=f32(freqs), zmin=0, zmax=255, colorscale="Magma",
                             colorbar=dict(title=dict(text="dB"), tickvals=ticks.tolist(), thickness=10, len=0.8,
                                           ticktext=[f"{top - db_range + v / 255 * db_range:.0f}" for v in ticks]),
                             hovertemplate="t %{x:.2f} s · %{y:.0f} Hz<extra></extra>"), row=1, col=1)
    fig.update_yaxes(title_text="frequency (Hz)", nticks=5, row=1, col=1)


def audio_figure(audio: np.ndarray, sample_rate: int, weights: np.ndarray | None = None,
                 positions: pd.DataFrame | None = None, *, view: str = "waveform", windows=None,
                 t_range: tuple[float, float] | None = None, max_points: int | None = SIGNAL_MAX_POINTS,
                 colorscale="Viridis", zmax: float | None = None, band_label: str = "attention",
                 title: str | None = None, db_range: float = 80.0, robust: bool = False,
                 reference: np.ndarray | None = None, reference_label: str = "reference",
                 cursor: float | None = None, window_label: str = TRUTH_LABEL) -> go.Figure:
    """Waveform envelope or spectrogram, attention band beneath. The spectrogram's levels
    travel as uint8 (the top `db_range` dB in 256 steps). `reference` (same sample rate):
    another weld's amplitude envelope drawn faintly under the waveform (not on a
    spectrogram), aligned at the start. `cursor`: a vertical line at that time."""
    band = weights is not None and positions is not None and "t0" in positions.columns
    fig = make_subplots(rows=2 if band else 1, cols=1, shared_xaxes=True, vertical_spacing=0.02,
                        row_heights=[1.0, 0.18] if band else [1.0])
    if view == "spectrogram":
        _spectrogram(fig, audio, sample_rate, max_points, t_range, db_range)
        reference = None
    else:
        _waveform(fig, audio, sample_rate, max_points, t_range, reference, reference_label)
    if band:
        edges, vals = time_band(positions, weights)
        fig.add_trace(_band_trace(edges, vals, colorscale, zmax, band_label, robust), row=2, col=1)
    _add_windows(fig, windows, window_label)
    fig.update_layout(_time_axes(2 if band else 1, t_range))
    add_time_cursor(fig, cursor)
    legend = reference is not None or bool(windows)
    return layout(fig, title, 300 + (30 if legend else 0), showlegend=legend,
                  margin=dict(l=LEFT_PX, r=20, t=40 if title else 16, b=40 + (30 if legend else 0)),
                  legend=dict(orientation="h", x=0, xanchor="left", y=-0.22, yanchor="top", font=dict(size=11)))
