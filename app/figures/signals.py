"""The raw weld over time: sensor channels and audio (waveform or spectrogram), each with
the attention band beneath and the truth windows shaded. Signals beyond
`SIGNAL_MAX_POINTS` time bins go out as a min/max envelope, so peaks survive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fusion_core.explain.views import SPEC_MAX_FRAMES, minmax_envelope, shared_range, spectrogram, time_band
from fusion_core.vocab import SENSOR_UNITS

from .common import f32, layout

SIGNAL_MAX_POINTS = 2000   # time bins of a raw signal (each bin sends its min and max)


def _add_windows(fig: go.Figure, windows, rows=None) -> None:
    for a, z in windows or ():
        kw = dict(row="all", col=1) if rows else {}
        fig.add_vrect(x0=a, x1=z, fillcolor="#E4572E", opacity=0.12, line_width=0, layer="below", **kw)


def _band_trace(edges: np.ndarray, vals: np.ndarray, colorscale, zmax: float | None, label: str,
                robust: bool = False) -> go.Heatmap:
    zmin = None
    if robust and len(vals) > 2:
        zmin, zmax = shared_range([vals], robust=True)
    return go.Heatmap(z=f32(vals)[None, :], x=f32(edges), y=["attention"], zmin=zmin, zmax=zmax, colorscale=colorscale,
                      showscale=False, hovertemplate="t %{x:.2f} s<br>" + label + " %{z:.4g}<extra></extra>")


def sensor_figure(sensor: pd.DataFrame, weights: np.ndarray | None = None, positions: pd.DataFrame | None = None,
                  *, windows=None, t_range: tuple[float, float] | None = None,
                  max_points: int | None = SIGNAL_MAX_POINTS, colorscale="Viridis", zmax: float | None = None,
                  band_label: str = "attention", title: str | None = None, robust: bool = False) -> go.Figure:
    """Six sensor channels over time (min/max envelope beyond max_points), attention band beneath."""
    chans = [c for c in sensor.columns if c != "t"]
    band = weights is not None and positions is not None and "t0" in positions.columns
    n = len(chans) + (1 if band else 0)
    heights = [1.0] * len(chans) + ([0.45] if band else [])
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.012, row_heights=heights)
    t, lo, hi = minmax_envelope(sensor["t"].to_numpy(), sensor[chans].to_numpy(), max_points, t_range)
    for i, c in enumerate(chans, start=1):
        name = f"{c} ({SENSOR_UNITS[c]})" if c in SENSOR_UNITS else c
        if np.array_equal(lo[:, i - 1], hi[:, i - 1]):
            fig.add_trace(go.Scatter(x=f32(t), y=f32(lo[:, i - 1]), mode="lines", name=name, showlegend=False,
                                     line=dict(width=1.2, color="#3D5A80"),
                                     hovertemplate=f"{name}<br>t %{{x:.2f}} s: %{{y:.4g}}<extra></extra>"),
                          row=i, col=1)
        else:
            fig.add_trace(go.Scatter(x=f32(t), y=f32(hi[:, i - 1]), mode="lines", line=dict(width=0.8, color="#3D5A80"),
                                     showlegend=False, hovertemplate=f"{name} max %{{y:.4g}}<extra></extra>"), row=i, col=1)
            fig.add_trace(go.Scatter(x=f32(t), y=f32(lo[:, i - 1]), mode="lines", line=dict(width=0.8, color="#3D5A80"),
                                     fill="tonexty", fillcolor="rgba(61,90,128,0.35)", showlegend=False,
                                     hovertemplate=f"{name} min %{{y:.4g}}<extra></extra>"), row=i, col=1)
        fig.update_yaxes(title_text=SENSOR_UNITS.get(c, ""), row=i, col=1, nticks=3)
        fig.add_annotation(text=c, xref="x domain" if i == 1 else f"x{i} domain",
                           yref="y domain" if i == 1 else f"y{i} domain", x=0.005, y=0.98, showarrow=False,
                           xanchor="left", yanchor="top", font=dict(size=11, color="#333"),
                           bgcolor="rgba(255,255,255,0.7)")
    if band:
        edges, vals = time_band(positions, weights)
        fig.add_trace(_band_trace(edges, vals, colorscale, zmax, band_label, robust), row=n, col=1)
        fig.update_yaxes(showticklabels=True, row=n, col=1)
    _add_windows(fig, windows, rows=True)
    if t_range is not None:
        fig.update_xaxes(range=list(t_range))
    fig.update_xaxes(title_text="time (s)", row=n, col=1)
    return layout(fig, title, 80 + 78 * len(chans) + (40 if band else 0))



def audio_figure(audio: np.ndarray, sample_rate: int, weights: np.ndarray | None = None,
                 positions: pd.DataFrame | None = None, *, view: str = "waveform", windows=None,
                 t_range: tuple[float, float] | None = None, max_points: int | None = SIGNAL_MAX_POINTS,
                 colorscale="Viridis", zmax: float | None = None, band_label: str = "attention",
                 title: str | None = None, db_range: float = 80.0, robust: bool = False) -> go.Figure:
    """Waveform envelope or spectrogram, attention band beneath. The spectrogram's levels
    travel as uint8 (the top `db_range` dB in 256 steps)."""
    band = weights is not None and positions is not None and "t0" in positions.columns
    fig = make_subplots(rows=2 if band else 1, cols=1, shared_xaxes=True, vertical_spacing=0.02,
                        row_heights=[1.0, 0.18] if band else [1.0])
    if view == "spectrogram":
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
        fig.update_yaxes(title_text="Hz", row=1, col=1)
    else:
        t = np.arange(len(audio), dtype=np.float64) / sample_rate
        tt, lo, hi = minmax_envelope(t, audio, max_points, t_range)
        fig.add_trace(go.Scatter(x=f32(tt), y=f32(hi[:, 0]), mode="lines", line=dict(width=0.6, color="#2A6F97"),
                                 showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Scatter(x=f32(tt), y=f32(lo[:, 0]), mode="lines", line=dict(width=0.6, color="#2A6F97"),
                                 fill="tonexty", fillcolor="rgba(42,111,151,0.5)", showlegend=False,
                                 hovertemplate="t %{x:.3f} s<extra></extra>"), row=1, col=1)
        fig.update_yaxes(title_text="amplitude", row=1, col=1)
    if band:
        edges, vals = time_band(positions, weights)
        fig.add_trace(_band_trace(edges, vals, colorscale, zmax, band_label, robust), row=2, col=1)
    _add_windows(fig, windows, rows=True)
    if t_range is not None:
        fig.update_xaxes(range=list(t_range))
    fig.update_xaxes(title_text="time (s)", row=2 if band else 1, col=1)
    return layout(fig, title, 300)
