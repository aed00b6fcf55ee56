"""Figure builders: arrays and DataFrames in, `plotly.graph_objects.Figure` out.

Pure functions (no Streamlit), so tests call them without a server. Everything sent to the
browser is bounded: heatmaps keep at most `HEATMAP_MAX_COLS` columns, signals at most
`SIGNAL_MAX_POINTS` time bins (a min/max envelope, so peaks survive), numbers go out as
float32 (Plotly 7 ships numpy arrays as base64), spectrogram levels as uint8 and pictures as
JPEG data URIs. `full resolution` is asked for by passing `max_cols=None` / `max_points=None`
or a narrow `t_range` (zoom).

Heatmap clicks: Plotly heatmaps emit no selection events, so each heatmap carries an
invisible scatter overlay with one point per displayed cell; its `customdata` row is
`[token, first position, last position, value, ...]` (see `CELL_FIELDS`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

MODALITIES: tuple[str, ...] = ("video", "image", "audio", "sensor")
MODALITY_COLORS = {"video": "#4C78A8", "image": "#F58518", "audio": "#54A24B", "sensor": "#B279A2"}
METHOD_LABELS = {
    "shapley": "exact Shapley",
    "leave_one_out": "leave-one-out",
    "attention": "attention-only share",
    "relevance": "relevance share",
}
MAP_METHODS = {
    "attention": "raw attention",
    "value": "value-weighted (‖α·v‖)",
    "relevance": "gradient-weighted relevance",
}
COLORSCALES = ("Viridis", "Cividis", "Inferno", "Blues", "YlOrRd", "Turbo")
HEATMAP_MAX_COLS = 600     # about the pixels a half-width heatmap has
SIGNAL_MAX_POINTS = 2000   # time bins of a raw signal (each bin sends its min and max)
SPEC_MAX_FRAMES = 600
SPEC_ROWS = 96
SENSOR_SHORT = {"Pressure": "bar", "CO2 Weld Flow": "L/min", "Feed": "mm/min",
                "Primary Weld Current": "A", "Wire Consumed": "mm", "Secondary Weld Voltage": "V"}
FONT = dict(size=12, family="'Source Sans Pro', 'Source Sans 3', sans-serif", color="#31333F")
TEMPLATE = "plotly_white"


# --------------------------------------------------------------------------- helpers

def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def _layout(fig: go.Figure, title: str | None = None, height: int | None = None, **kw) -> go.Figure:
    kw.setdefault("margin", dict(l=60, r=20, t=40 if title else 16, b=40))
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)) if title else None,
                      height=height, font=FONT, template=TEMPLATE, **kw)
    return fig


def payload_bytes(fig: go.Figure) -> int:
    """Bytes Streamlit sends for this figure (it serialises with `plotly.io.to_json`)."""
    return len(pio.to_json(fig, validate=False).encode())


def figure_html(fig: go.Figure) -> str:
    """Standalone HTML with plotly.js embedded: opens offline, no CDN."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def empty_figure(message: str, height: int = 200) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=13, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, height=height)


# --------------------------------------------------------------------------- downsampling

def bin_edges(n: int, max_bins: int | None) -> np.ndarray:
    """Integer edges (k+1,) splitting range(n) into k = min(n, max_bins) near-equal bins."""
    if n <= 0:
        return np.zeros(1, dtype=np.int64)
    k = n if not max_bins or n <= max_bins else int(max_bins)
    return np.unique(np.linspace(0, n, k + 1).round().astype(np.int64))


def downsample_columns(z: np.ndarray, max_cols: int | None, agg: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """(T, S) → ((T, k) float32, edges (k+1,)) with k ≤ max_cols.

    agg "sum" keeps each row's total mass, "max" keeps each row's peak, "mean" the level.
    """
    z = np.asarray(z, dtype=np.float64)
    edges = bin_edges(z.shape[1], max_cols)
    if len(edges) - 1 == z.shape[1]:
        return _f32(z), edges
    starts = edges[:-1]
    if agg == "sum":
        out = np.add.reduceat(z, starts, axis=1)
    elif agg == "max":
        out = np.maximum.reduceat(z, starts, axis=1)
    elif agg == "mean":
        out = np.add.reduceat(z, starts, axis=1) / np.diff(edges)[None, :]
    else:
        raise ValueError(f"unknown aggregation {agg!r}")
    return _f32(out), edges


def minmax_envelope(t: np.ndarray, y: np.ndarray, max_points: int | None,
                    t_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal (n,) or (n, c) → (t (k,), low (k, c), high (k, c)), k ≤ max_points, within t_range.

    Each bin keeps its minimum and maximum, so no spike disappears; with at most
    max_points samples in range the samples themselves come back (low == high).
    """
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if t_range is not None:
        i0, i1 = np.searchsorted(t, t_range[0], "left"), np.searchsorted(t, t_range[1], "right")
        t, y = t[i0:i1], y[i0:i1]
    edges = bin_edges(len(t), max_points)
    if len(t) == 0:
        return t, y, y
    if len(edges) - 1 == len(t):
        return t, y, y
    starts = edges[:-1]
    lo = np.minimum.reduceat(y, starts, axis=0)
    hi = np.maximum.reduceat(y, starts, axis=0)
    tc = 0.5 * (t[starts] + t[edges[1:] - 1])
    return tc, lo, hi


# --------------------------------------------------------------------------- maps

def token_map(exp, b: int, modality: str, head: str | int = "mean", method: str = "attention") -> np.ndarray:
    """(T, S) map of sample b for one modality: head mean or one head; attention, value-weighted
    norm, or relevance (which is already summed over heads: `head` does not apply)."""
    if method == "relevance":
        return np.asarray(exp.relevance[modality][b], dtype=np.float32)
    src = exp.attention if method == "attention" else exp.value_norms
    a = np.asarray(src[modality][b])
    return _f32(a.mean(0) if head == "mean" else a[int(head)])


def shared_range(maps: Mapping[str, np.ndarray] | Sequence[np.ndarray], robust: bool = False) -> tuple[float, float]:
    """One (min, max) over several maps, for a colour scale they share. `robust`: the 5th and
    95th percentiles instead, so a few extreme cells (edge tokens) do not flatten the rest."""
    arrays = list(maps.values()) if isinstance(maps, Mapping) else list(maps)
    arrays = [np.asarray(z, dtype=np.float64) for z in arrays if np.asarray(z).size and np.isfinite(z).any()]
    if not arrays:
        return 0.0, 1.0
    if robust:
        allv = np.concatenate([z[np.isfinite(z)].ravel() for z in arrays])
        lo, hi = (float(v) for v in np.percentile(allv, [5, 95]))
    else:
        lo = min(float(np.nanmin(z)) for z in arrays)
        hi = max(float(np.nanmax(z)) for z in arrays)
    return lo, (hi if hi > lo else lo + 1e-12)


# --------------------------------------------------------------------------- heatmaps

CELL_FIELDS = ("token", "s0", "s1", "value", "t0", "t1", "frame0", "frame1", "image", "x0", "y0", "x1", "y1")


def _position_fields(positions: pd.DataFrame | None) -> list[str]:
    if positions is None:
        return []
    return [c for c in CELL_FIELDS[4:] if c in positions.columns]


def column_info(positions: pd.DataFrame | None, edges: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per displayed column (bin of positions): (field names, (k, n) values) — t0 = first start,
    t1 = last end, frame0/frame1 first/last frame, image and box of the bin's first position."""
    fields = _position_fields(positions)
    k = len(edges) - 1
    if not fields or positions is None or len(positions) != edges[-1]:
        return [], np.zeros((k, 0))
    out = np.full((k, len(fields)), np.nan)
    starts = edges[:-1]
    for j, f in enumerate(fields):
        v = positions[f].to_numpy(dtype=np.float64)
        if k == len(v):
            out[:, j] = v
        elif f in ("t1", "frame1"):
            out[:, j] = np.maximum.reduceat(v, starts)
        elif f in ("t0", "frame0"):
            out[:, j] = np.minimum.reduceat(v, starts)
        else:
            out[:, j] = v[starts]
    return fields, out


def hover_template(fields: Sequence[str], downsampled: bool, value_label: str) -> str:
    """Hover text for an overlay point: token, position(s), time span, frames, photo/patch."""
    idx = {f: i + 4 for i, f in enumerate(fields)}
    pos = ("positions %{customdata[1]}–%{customdata[2]}" if downsampled else "position %{customdata[1]}")
    parts = ["token %{customdata[0]} · " + pos]
    if "t0" in idx and "t1" in idx:
        parts.append(f"t %{{customdata[{idx['t0']}]:.2f}}–%{{customdata[{idx['t1']}]:.2f}} s")
    if "frame0" in idx:
        parts.append(f"frames %{{customdata[{idx['frame0']}]}}–%{{customdata[{idx['frame1']}]}}")
    if "image" in idx:
        parts.append(f"photo %{{customdata[{idx['image']}]}}")
    if "x0" in idx and not downsampled:
        parts.append(f"patch x %{{customdata[{idx['x0']}]:.0f}}–%{{customdata[{idx['x1']}]:.0f}}, "
                     f"y %{{customdata[{idx['y0']}]:.0f}}–%{{customdata[{idx['y1']}]:.0f}} px")
    parts.append(f"{value_label} %{{customdata[3]:.4g}}")
    return "<br>".join(parts) + "<extra></extra>"


def describe_position(positions: pd.DataFrame | None, s0: int, s1: int | None = None) -> str:
    """Plain words for positions s0..s1 (inclusive): time span, frames, photo and patch box."""
    s1 = s0 if s1 is None else s1
    head = f"position {s0}" if s0 == s1 else f"positions {s0}–{s1}"
    if positions is None or s1 >= len(positions):
        return head
    rows = positions.iloc[s0:s1 + 1]
    parts = [head]
    if {"t0", "t1"} <= set(rows.columns):
        parts.append(f"t {rows['t0'].min():.2f}–{rows['t1'].max():.2f} s")
    if {"frame0", "frame1"} <= set(rows.columns):
        parts.append(f"frames {int(rows['frame0'].min())}–{int(rows['frame1'].max())}")
    if "image" in rows.columns:
        parts.append(f"photo {int(rows['image'].iloc[0]) + 1}")
    if {"x0", "y0", "x1", "y1"} <= set(rows.columns) and s0 == s1:
        r = rows.iloc[0]
        parts.append(f"patch x {r['x0']:.0f}–{r['x1']:.0f}, y {r['y0']:.0f}–{r['y1']:.0f} px")
    return " · ".join(parts)


def _axis_ticks(positions: pd.DataFrame | None, edges: np.ndarray, n_ticks: int = 8) -> dict:
    k = len(edges) - 1
    if positions is None or len(positions) != edges[-1] or k == 0:
        return {}
    starts = edges[:-1]
    if "image" in positions.columns and "t0" not in positions.columns:
        img = positions["image"].to_numpy()[starts]
        first = np.flatnonzero(np.r_[True, img[1:] != img[:-1]])
        return dict(tickvals=first.tolist(), ticktext=[f"photo {int(img[i]) + 1}" for i in first],
                    title_text="photo · patch →")
    if "t0" in positions.columns:
        t0 = positions["t0"].to_numpy(dtype=np.float64)[starts]
        if "frame0" in positions.columns:      # video: ticks where a new time bin starts
            first = np.flatnonzero(np.r_[True, np.diff(t0) != 0])
            step = max(1, int(math.ceil(len(first) / n_ticks)))
            first = first[::step]
            return dict(tickvals=first.tolist(), ticktext=[f"{t0[i]:.1f}s" for i in first],
                        title_text="time bin · patch →")
        ticks = np.unique(np.linspace(0, k - 1, min(k, n_ticks)).round().astype(int))
        return dict(tickvals=ticks.tolist(), ticktext=[f"{t0[i]:.1f}s" for i in ticks], title_text="time →")
    return {}


def attention_heatmap(z: np.ndarray, positions: pd.DataFrame | None = None, *, title: str | None = None,
                      zmin: float | None = None, zmax: float | None = None, colorscale="Viridis",
                      zmid: float | None = None, max_cols: int | None = HEATMAP_MAX_COLS, agg: str = "max",
                      value_label: str = "attention", selected: tuple[int, int] | None = None,
                      height: int | None = None, showscale: bool = True) -> go.Figure:
    """Fusion token × position heatmap with a clickable overlay (one invisible point per cell).

    Columns beyond `max_cols` are binned (`agg`: max keeps peaks, sum keeps mass); the
    overlay's customdata then gives the first and last position of each bin. `selected`
    = (token, position) outlines that cell.
    """
    z = np.asarray(z, dtype=np.float64)
    T, S = z.shape
    zd, edges = downsample_columns(z, max_cols, agg)
    k = zd.shape[1]
    downsampled = k < S
    fields, info = column_info(positions, edges)
    tok, col = np.meshgrid(np.arange(T), np.arange(k), indexing="ij")
    tok, col = tok.ravel(), col.ravel()
    custom = np.column_stack([tok, edges[:-1][col], edges[1:][col] - 1, zd.ravel(), info[col]]).astype(np.float32)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=zd, x=np.arange(k), y=np.arange(T), zmin=zmin, zmax=zmax, zmid=zmid,
                             colorscale=colorscale, hoverinfo="skip", showscale=showscale,
                             colorbar=dict(title=dict(text=value_label, side="right"), thickness=10, len=0.9),
                             name="map"))
    fig.add_trace(go.Scatter(
        x=col.astype(np.float32), y=tok.astype(np.float32), mode="markers", customdata=custom,
        # Tiny markers: Plotly treats every point whose marker covers the cursor as equally close,
        # so big ones would make a click pick a neighbour; hoverdistance=-1 finds the nearest.
        marker=dict(symbol="square", size=2, color="rgba(0,0,0,0)", line=dict(width=0)),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1)),
        hovertemplate=hover_template(fields, downsampled, value_label), showlegend=False, name="cells"))
    if selected is not None:
        t_sel, s_sel = selected
        c_sel = int(np.searchsorted(edges, s_sel, side="right") - 1)
        if 0 <= t_sel < T and 0 <= c_sel < k:
            fig.add_shape(type="rect", x0=c_sel - 0.5, x1=c_sel + 0.5, y0=t_sel - 0.5, y1=t_sel + 0.5,
                          line=dict(color="#E4572E", width=3), fillcolor="rgba(0,0,0,0)")
    ticks = _axis_ticks(positions, edges)
    title_text = ticks.pop("title_text", "position")
    fig.update_xaxes(title_text=title_text + (f"  ({S} positions in {k} columns)" if downsampled else ""),
                     range=[-0.5, k - 0.5], showgrid=False, zeroline=False, **ticks)
    fig.update_yaxes(tickvals=list(range(T)), ticktext=[f"token {t}" for t in range(T)], autorange="reversed",
                     showgrid=False, zeroline=False)
    return _layout(fig, title, height or (110 + 34 * T), hovermode="closest", hoverdistance=-1,
                   clickmode="event+select", dragmode="zoom")


def cell_from_point(point: Mapping) -> dict | None:
    """Selection point of an overlay (as Streamlit returns it) → {"token", "s0", "s1"}.

    customdata travels as a typed array, so the browser may send a row as {"0": .., "1": ..}."""
    cd = point.get("customdata")
    if isinstance(cd, Mapping):
        cd = [cd.get(str(i), cd.get(i)) for i in range(len(cd))]
    if cd is None or len(cd) < 3 or any(v is None for v in cd[:3]):
        return None
    return {"token": int(round(float(cd[0]))), "s0": int(round(float(cd[1]))), "s1": int(round(float(cd[2])))}


def difference_heatmap(za: np.ndarray, zb: np.ndarray, positions: pd.DataFrame | None = None, *,
                       title: str | None = None, max_cols: int | None = HEATMAP_MAX_COLS,
                       value_label: str = "B − A") -> go.Figure:
    """B − A on a symmetric diverging scale (red: B attends more)."""
    d = np.asarray(zb, dtype=np.float64) - np.asarray(za, dtype=np.float64)
    lim = float(np.nanmax(np.abs(d))) if d.size else 1.0
    lim = lim if lim > 0 else 1.0
    # Bin by the signed value of largest magnitude, so both signs survive downsampling.
    zd, edges = downsample_columns(d, max_cols, "max")
    if zd.shape[1] < d.shape[1]:
        lo, _ = downsample_columns(-d, max_cols, "max")
        zd = np.where(zd >= lo, zd, -lo)
        d = zd
    return attention_heatmap(d, positions if zd.shape[1] == np.asarray(za).shape[1] else None, title=title,
                             zmin=-lim, zmax=lim, zmid=0.0, colorscale="RdBu_r", max_cols=None,
                             value_label=value_label)


def js_heatmap(js: np.ndarray, title: str | None = "Jensen–Shannon divergence (A vs B)") -> go.Figure:
    """(T, 4) JSD per fusion token × modality, values written in the cells."""
    js = np.asarray(js, dtype=np.float64)
    T = js.shape[0]
    text = [["n/a" if not np.isfinite(v) else f"{v:.3g}" for v in row] for row in js]
    fig = go.Figure(go.Heatmap(z=_f32(js), x=list(MODALITIES), y=[f"token {t}" for t in range(T)], zmin=0,
                               zmax=max(float(np.nanmax(js)) if np.isfinite(js).any() else 0.0, 1e-6),
                               colorscale="Magma", reversescale=True, text=text, texttemplate="%{text}",
                               hovertemplate="%{y} · %{x}<br>JSD %{z:.4f}<extra></extra>",
                               colorbar=dict(title=dict(text="JSD (bits)"), thickness=10)))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, 110 + 34 * T)


# --------------------------------------------------------------------------- contributions

def contribution_bars(contributions: Mapping[str, np.ndarray], present: Sequence[bool] | np.ndarray, *,
                      methods: Sequence[str] = ("shapley", "leave_one_out", "attention"),
                      baseline: str | None = None, title: str | None = None,
                      efficiency_gap: float | None = None) -> go.Figure:
    """One panel per method (own value axis: Shapley is in target units, shares are fractions),
    a horizontal bar per modality; absent modalities hatched and labelled."""
    methods = [m for m in methods if m in contributions]
    if not methods:
        return empty_figure("no contributions for this model")
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=[METHOD_LABELS.get(m, m) for m in methods],
                        horizontal_spacing=0.05, shared_yaxes=True)
    present = np.asarray(present, dtype=bool)
    for i, method in enumerate(methods, start=1):
        v = np.asarray(contributions[method], dtype=np.float64)
        fig.add_trace(go.Bar(
            y=list(MODALITIES), x=_f32(v), orientation="h",
            marker=dict(color=[MODALITY_COLORS[m] if present[j] else "#BBBBBB" for j, m in enumerate(MODALITIES)],
                        pattern=dict(shape=["" if p else "/" for p in present])),
            text=[f"{x:.3g}" if present[j] else "absent" for j, x in enumerate(v)], textposition="outside",
            cliponaxis=False, hovertemplate="%{y}: %{x:.4g}<extra>" + METHOD_LABELS.get(method, method) + "</extra>",
            showlegend=False), row=1, col=i)
        lo, hi = float(min(0.0, v.min())), float(max(0.0, v.max()))
        pad = 0.35 * (hi - lo or 1.0)
        fig.update_xaxes(range=[lo - (pad if lo < 0 else 0), hi + pad], zeroline=True, zerolinecolor="#888",
                         nticks=4, row=1, col=i)
    fig.update_yaxes(autorange="reversed")
    sub = [title] if title else []
    if baseline:
        sub.append(f"absent modality = {baseline}")
    if efficiency_gap is not None:
        sub.append(f"Shapley efficiency gap {efficiency_gap:.1e}")
    fig.update_annotations(font=dict(size=12))
    return _layout(fig, None, 250, margin=dict(l=60, r=20, t=44, b=46)).add_annotation(
        text=" · ".join(sub), xref="paper", yref="paper", x=0.0, y=-0.2, xanchor="left", yanchor="top",
        showarrow=False, font=dict(size=11, color="#666"))


def token_contribution_figure(token_shapley: np.ndarray, present: Sequence[bool] | np.ndarray | None = None,
                              title: str | None = "Shapley per fusion token") -> go.Figure:
    """(T, 4) per-token Shapley values as grouped bars (token on x, one bar per modality)."""
    ts = np.asarray(token_shapley, dtype=np.float64)
    if ts.size == 0:
        return empty_figure("no per-token values (this model has no fusion tokens)")
    T = ts.shape[0]
    fig = go.Figure()
    for j, m in enumerate(MODALITIES):
        fig.add_trace(go.Bar(x=[f"token {t}" for t in range(T)], y=_f32(ts[:, j]), name=m,
                             marker_color=MODALITY_COLORS[m],
                             hovertemplate=f"{m} · %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(barmode="group", legend=dict(orientation="v", x=1.01, y=1, yanchor="top"))
    fig.update_yaxes(zeroline=True, zerolinecolor="#888", title_text="Shapley")
    return _layout(fig, title, 290)


def prediction_figure(class_names: Sequence[str], probabilities: np.ndarray, truth: str | None = None) -> go.Figure:
    """Class probabilities, predicted class emphasised, the true class marked when known."""
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(p)
    top = int(np.argmax(p))
    names = [class_names[i] + ("  ◀ truth" if truth is not None and class_names[i] == truth else "") for i in order]
    fig = go.Figure(go.Bar(x=_f32(p[order]), y=names, orientation="h",
                           marker_color=["#E4572E" if i == top else "#9DB4C0" for i in order],
                           text=[f"{p[i]:.1%}" for i in order], textposition="outside", cliponaxis=False,
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_xaxes(range=[0, 1.15], tickformat=".0%")
    return _layout(fig, None, 40 + 22 * len(p), margin=dict(l=10, r=20, t=10, b=30))


# --------------------------------------------------------------------------- raw weld: time series

def time_band(positions: pd.DataFrame, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tokens with time spans → (edges (k+1,), values (k,)) over time, ordered by start.

    Tokens sharing a span (video patches of one time bin) add up, so the band shows how much
    the token attends to each moment."""
    t0 = positions["t0"].to_numpy(dtype=np.float64)
    t1 = positions["t1"].to_numpy(dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    spans, inv = np.unique(np.column_stack([t0, t1]), axis=0, return_inverse=True)
    vals = np.bincount(inv.ravel(), weights=w, minlength=len(spans))
    edges = np.r_[spans[:, 0], spans[-1, 1]]
    return edges, vals


def _add_windows(fig: go.Figure, windows, rows=None) -> None:
    for a, z in windows or ():
        kw = dict(row="all", col=1) if rows else {}
        fig.add_vrect(x0=a, x1=z, fillcolor="#E4572E", opacity=0.12, line_width=0, layer="below", **kw)


def _band_trace(edges: np.ndarray, vals: np.ndarray, colorscale, zmax: float | None, label: str,
                robust: bool = False) -> go.Heatmap:
    zmin = None
    if robust and len(vals) > 2:
        zmin, zmax = shared_range([vals], robust=True)
    return go.Heatmap(z=_f32(vals)[None, :], x=_f32(edges), y=["attention"], zmin=zmin, zmax=zmax, colorscale=colorscale,
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
        name = f"{c} ({SENSOR_SHORT[c]})" if c in SENSOR_SHORT else c
        if np.array_equal(lo[:, i - 1], hi[:, i - 1]):
            fig.add_trace(go.Scatter(x=_f32(t), y=_f32(lo[:, i - 1]), mode="lines", name=name, showlegend=False,
                                     line=dict(width=1.2, color="#3D5A80"),
                                     hovertemplate=f"{name}<br>t %{{x:.2f}} s: %{{y:.4g}}<extra></extra>"),
                          row=i, col=1)
        else:
            fig.add_trace(go.Scatter(x=_f32(t), y=_f32(hi[:, i - 1]), mode="lines", line=dict(width=0.8, color="#3D5A80"),
                                     showlegend=False, hovertemplate=f"{name} max %{{y:.4g}}<extra></extra>"), row=i, col=1)
            fig.add_trace(go.Scatter(x=_f32(t), y=_f32(lo[:, i - 1]), mode="lines", line=dict(width=0.8, color="#3D5A80"),
                                     fill="tonexty", fillcolor="rgba(61,90,128,0.35)", showlegend=False,
                                     hovertemplate=f"{name} min %{{y:.4g}}<extra></extra>"), row=i, col=1)
        fig.update_yaxes(title_text=SENSOR_SHORT.get(c, ""), row=i, col=1, nticks=3)
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
    return _layout(fig, title, 80 + 78 * len(chans) + (40 if band else 0))


def spectrogram(audio: np.ndarray, sample_rate: int, *, max_frames: int = SPEC_MAX_FRAMES, n_fft: int = 512,
                rows: int = SPEC_ROWS, t_range: tuple[float, float] | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame times (k,), frequencies (rows,), level dB (rows, k)) — Hann STFT whose hop gives
    at most max_frames frames; frequency bins averaged (in power) down to `rows`."""
    x = np.asarray(audio, dtype=np.float64)
    off = 0.0
    if t_range is not None:
        i0 = max(0, int(t_range[0] * sample_rate))
        i1 = min(len(x), int(math.ceil(t_range[1] * sample_rate)))
        x, off = x[i0:i1], i0 / sample_rate
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    hop = max(1, int(math.ceil((len(x) - n_fft) / max(1, max_frames - 1))))
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft)[None, :], axis=1)) ** 2     # (k, n_fft/2+1)
    fe = bin_edges(spec.shape[1], rows)
    power = np.add.reduceat(spec, fe[:-1], axis=1) / np.diff(fe)[None, :]
    freqs = (fe[:-1] + fe[1:] - 1) / 2 * sample_rate / n_fft
    db = 10 * np.log10(power.T + 1e-12)
    times = off + (np.arange(n_frames) * hop + n_fft / 2) / sample_rate
    return times, freqs, db


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
        fig.add_trace(go.Heatmap(z=q, x=_f32(times), y=_f32(freqs), zmin=0, zmax=255, colorscale="Magma",
                                 colorbar=dict(title=dict(text="dB"), tickvals=ticks.tolist(), thickness=10, len=0.8,
                                               ticktext=[f"{top - db_range + v / 255 * db_range:.0f}" for v in ticks]),
                                 hovertemplate="t %{x:.2f} s · %{y:.0f} Hz<extra></extra>"), row=1, col=1)
        fig.update_yaxes(title_text="Hz", row=1, col=1)
    else:
        t = np.arange(len(audio), dtype=np.float64) / sample_rate
        tt, lo, hi = minmax_envelope(t, audio, max_points, t_range)
        fig.add_trace(go.Scatter(x=_f32(tt), y=_f32(hi[:, 0]), mode="lines", line=dict(width=0.6, color="#2A6F97"),
                                 showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Scatter(x=_f32(tt), y=_f32(lo[:, 0]), mode="lines", line=dict(width=0.6, color="#2A6F97"),
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
    return _layout(fig, title, 300)


# --------------------------------------------------------------------------- raw weld: pictures

def jpeg_data_uri(img: np.ndarray, quality: int = 85) -> str:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def overlay_colorscale(colorscale="Viridis", max_alpha: float = 0.75, steps: int = 6) -> list:
    """The colour scale with opacity rising from 0, so low attention leaves the picture visible."""
    cols = sample_colorscale(colorscale, list(np.linspace(0, 1, steps)), colortype="rgb")
    out = []
    for i, c in enumerate(cols):
        r, g, b = (int(float(v)) for v in c[c.index("(") + 1:-1].split(","))
        out.append([i / (steps - 1), f"rgba({r},{g},{b},{max_alpha * i / (steps - 1):.3f})"])
    return out


def _overlay_range(w: np.ndarray, zmax: float | None) -> tuple[float, float]:
    """From the smallest weight (fully transparent) to the largest: near-uniform attention
    leaves the picture visible and only what stands out is coloured."""
    if not w.size or not np.isfinite(w).any():
        return 0.0, 1.0
    lo, hi = float(np.nanmin(w)), float(np.nanmax(w)) if zmax is None else float(zmax)
    return lo, (hi if hi > lo else lo + 1e-12)


def _grid(rows: pd.DataFrame, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patch boxes forming a grid → (x edges, y edges, z (gy, gx)); NaN where no patch."""
    xs = np.unique(rows["x0"].to_numpy(dtype=np.float64))
    ys = np.unique(rows["y0"].to_numpy(dtype=np.float64))
    xe = np.r_[xs, rows["x1"].max()]
    ye = np.r_[ys, rows["y1"].max()]
    z = np.full((len(ys), len(xs)), np.nan)
    ix = np.searchsorted(xs, rows["x0"].to_numpy(dtype=np.float64))
    iy = np.searchsorted(ys, rows["y0"].to_numpy(dtype=np.float64))
    z[iy, ix] = w
    return xe, ye, z


def _montage(tiles: list[np.ndarray], ncols: int, gap: int = 4) -> tuple[np.ndarray, list[tuple[int, int]]]:
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    nrows = int(math.ceil(len(tiles) / ncols))
    canvas = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255, np.uint8)
    offsets = []
    for i, t in enumerate(tiles):
        r, c = divmod(i, ncols)
        y, x = r * (h + gap), c * (w + gap)
        canvas[y:y + t.shape[0], x:x + t.shape[1]] = t[..., :3]
        offsets.append((x, y))
    return canvas, offsets


def _picture_height(width: int, height: int, px_width: int, title: str | None) -> int:
    """Figure height that shows a width×height picture `px_width` pixels wide."""
    return int((36 if title else 6) + 12 + px_width * height / max(width, 1))


def _picture_layout(fig: go.Figure, width: int, height: int, title: str | None, px_height: int) -> go.Figure:
    fig.update_xaxes(visible=False, range=[0, width], constrain="domain")
    fig.update_yaxes(visible=False, range=[height, 0], scaleanchor="x", constrain="domain")
    return _layout(fig, title, px_height, margin=dict(l=6, r=6, t=36 if title else 6, b=6))


def video_strip_figure(frames: np.ndarray, weights: np.ndarray, positions: pd.DataFrame, *,
                       colorscale="Viridis", zmax: float | None = None, ncols: int = 8,
                       value_label: str = "attention", title: str | None = None,
                       highlight: tuple[int, int] | None = None, px_width: int = 1000) -> go.Figure:
    """One frame per time bin with the bin's patch attention laid over it (transparent at 0).

    `highlight` = (first, last) position outlines those patches."""
    w = np.asarray(weights, dtype=np.float64)
    key = positions["t0"].to_numpy()
    bins = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    bounds = np.r_[bins, len(positions)]
    tiles, groups = [], []
    for a, z in zip(bounds[:-1], bounds[1:]):
        rows = positions.iloc[a:z]
        f0, f1 = int(rows["frame0"].iloc[0]), int(rows["frame1"].iloc[0])
        if f0 < 0 or len(frames) == 0:
            continue
        fi = min(len(frames) - 1, max(0, (f0 + f1) // 2))
        tiles.append(frames[fi])
        groups.append((a, z, rows))
    if not tiles:
        return empty_figure("no video frames")
    ncols = min(ncols, len(tiles))
    canvas, offsets = _montage(tiles, ncols)
    fig = go.Figure(go.Image(source=jpeg_data_uri(canvas), hoverinfo="skip"))
    zmin, zmax = _overlay_range(w, zmax)
    scale = overlay_colorscale(colorscale)
    for i, ((a, z, rows), (ox, oy)) in enumerate(zip(groups, offsets)):
        xe, ye, grid = _grid(rows, w[a:z])
        t0, t1 = rows["t0"].iloc[0], rows["t1"].iloc[0]
        fig.add_trace(go.Heatmap(z=_f32(grid), x=_f32(xe + ox), y=_f32(ye + oy), zmin=zmin, zmax=zmax, colorscale=scale,
                                 showscale=i == 0, colorbar=dict(title=dict(text=value_label), thickness=10),
                                 hovertemplate=f"t {t0:.2f}–{t1:.2f} s<br>{value_label} %{{z:.4g}}<extra></extra>"))
        fig.add_annotation(x=ox + 2, y=oy + 2, text=f"{t0:.1f}s", showarrow=False, xanchor="left", yanchor="top",
                           font=dict(size=10, color="white"), bgcolor="rgba(0,0,0,0.5)")
        if highlight is not None:
            for s in range(max(a, highlight[0]), min(z, highlight[1] + 1)):
                r = positions.iloc[s]
                fig.add_shape(type="rect", x0=r["x0"] + ox, x1=r["x1"] + ox, y0=r["y0"] + oy, y1=r["y1"] + oy,
                              line=dict(color="#E4572E", width=2))
    H, W = canvas.shape[:2]
    return _picture_layout(fig, W, H, title, _picture_height(W, H, px_width - 90, title))


def photos_figure(images: Sequence[np.ndarray], weights: np.ndarray | None, positions: pd.DataFrame | None, *,
                  image_sizes: Sequence[tuple[int, int]] = (), regions: Sequence[Mapping] = (),
                  colorscale="Viridis", zmax: float | None = None, ncols: int = 3, value_label: str = "attention",
                  title: str | None = None, highlight: tuple[int, int] | None = None,
                  labels: Sequence[str] | None = None, px_width: int = 1000) -> go.Figure:
    """The post-weld photos with patch attention over them; truth regions dashed. Boxes are in
    the file's pixels (`image_sizes`) and are scaled to the decoded pictures."""
    if not images:
        return empty_figure("no photos")
    ncols = min(ncols, len(images))
    canvas, offsets = _montage(list(images), ncols)
    fig = go.Figure(go.Image(source=jpeg_data_uri(canvas), hoverinfo="skip"))

    def scale_of(j):
        h, w_ = images[j].shape[:2]
        if j < len(image_sizes) and image_sizes[j]:
            return w_ / image_sizes[j][0], h / image_sizes[j][1]
        return 1.0, 1.0

    if weights is not None and positions is not None and "image" in positions.columns:
        w = np.asarray(weights, dtype=np.float64)
        zmin, zmax = _overlay_range(w, zmax)
        scale = overlay_colorscale(colorscale)
        img_idx = positions["image"].to_numpy()
        for j, (ox, oy) in enumerate(offsets):
            sel = np.flatnonzero(img_idx == j)
            if not len(sel):
                continue
            sx, sy = scale_of(j)
            xe, ye, grid = _grid(positions.iloc[sel], w[sel])
            fig.add_trace(go.Heatmap(z=_f32(grid), x=_f32(xe * sx + ox), y=_f32(ye * sy + oy), zmin=zmin, zmax=zmax,
                                     colorscale=scale, showscale=j == 0,
                                     colorbar=dict(title=dict(text=value_label), thickness=10),
                                     hovertemplate=f"photo {j + 1}<br>{value_label} %{{z:.4g}}<extra></extra>"))
    if highlight is not None and positions is not None and "image" in positions.columns:
        for s in range(highlight[0], min(len(positions), highlight[1] + 1)):
            r = positions.iloc[s]
            j = int(r["image"])
            if j < len(offsets):
                sx, sy = scale_of(j)
                ox, oy = offsets[j]
                fig.add_shape(type="rect", x0=r["x0"] * sx + ox, x1=r["x1"] * sx + ox, y0=r["y0"] * sy + oy,
                              y1=r["y1"] * sy + oy, line=dict(color="#E4572E", width=3))
    for reg in regions or ():
        j = int(reg.get("image", -1))
        if 0 <= j < len(offsets):
            sx, sy = scale_of(j)
            ox, oy = offsets[j]
            fig.add_shape(type="rect", x0=reg["x0"] * sx + ox, x1=reg["x1"] * sx + ox, y0=reg["y0"] * sy + oy,
                          y1=reg["y1"] * sy + oy, line=dict(color="white", width=2, dash="dash"))
    for j, (ox, oy) in enumerate(offsets):
        fig.add_annotation(x=ox + 3, y=oy + 3, text=labels[j] if labels else f"photo {j + 1}", showarrow=False,
                           xanchor="left", yanchor="top",
                           font=dict(size=10, color="white"), bgcolor="rgba(0,0,0,0.5)")
    H, W = canvas.shape[:2]
    return _picture_layout(fig, W, H, title, _picture_height(W, H, px_width - 90, title))


def frames_figure(frames: np.ndarray, frame_times: np.ndarray | None, first: int, last: int,
                  boxes: Sequence[Mapping] = (), max_frames: int = 4, title: str | None = None,
                  px_width: int = 700) -> go.Figure:
    """Frames first..last (evenly picked, at most max_frames) with patch boxes outlined."""
    first, last = max(0, first), min(len(frames) - 1, last)
    if last < first:
        return empty_figure("no frames in this span")
    pick = np.unique(np.linspace(first, last, min(max_frames, last - first + 1)).round().astype(int))
    canvas, offsets = _montage([frames[i] for i in pick], len(pick))
    fig = go.Figure(go.Image(source=jpeg_data_uri(canvas, 90), hoverinfo="skip"))
    for i, (ox, oy) in zip(pick, offsets):
        for b in boxes:
            fig.add_shape(type="rect", x0=b["x0"] + ox, x1=b["x1"] + ox, y0=b["y0"] + oy, y1=b["y1"] + oy,
                          line=dict(color="#E4572E", width=2))
        label = f"frame {i}" + (f" · {frame_times[i]:.2f}s" if frame_times is not None and i < len(frame_times) else "")
        fig.add_annotation(x=ox + 2, y=oy + 2, text=label, showarrow=False, xanchor="left", yanchor="top",
                           font=dict(size=10, color="white"), bgcolor="rgba(0,0,0,0.5)")
    H, W = canvas.shape[:2]
    return _picture_layout(fig, W, H, title, _picture_height(W, H, px_width, title))


def head_values_figure(values: Mapping[str, np.ndarray], title: str | None = "per head") -> go.Figure:
    """Bars per head for one cell: {"attention": (heads,), "value-weighted": (heads,)}."""
    fig = make_subplots(rows=1, cols=len(values), subplot_titles=list(values), horizontal_spacing=0.15)
    for i, (name, v) in enumerate(values.items(), start=1):
        v = np.asarray(v, dtype=np.float64)
        fig.add_trace(go.Bar(x=[f"h{h}" for h in range(len(v))], y=_f32(v), marker_color="#5B8E7D", showlegend=False,
                             hovertemplate="%{x}: %{y:.4g}<extra></extra>"), row=1, col=i)
    fig.update_annotations(font=dict(size=12))
    return _layout(fig, title, 230, margin=dict(l=50, r=20, t=50, b=30))


# --------------------------------------------------------------------------- faithfulness

def agreement_figure(matrix: pd.DataFrame, title: str | None = "Rank agreement between methods (Spearman ρ)") -> go.Figure:
    m = matrix.to_numpy(dtype=np.float64)
    text = [["n/a" if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in m]
    labels = [METHOD_LABELS.get(c, c.replace("_", " ")) for c in matrix.columns]
    fig = go.Figure(go.Heatmap(z=_f32(m), x=labels, y=labels, zmin=-1, zmax=1, zmid=0, colorscale="RdBu",
                               text=text, texttemplate="%{text}", colorbar=dict(title=dict(text="ρ"), thickness=10),
                               hovertemplate="%{y} vs %{x}: ρ %{z:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, 340, margin=dict(l=150, r=20, t=40, b=90))


def twin_heatmaps(left: np.ndarray, right: np.ndarray, positions: pd.DataFrame | None = None, *,
                  titles: tuple[str, str] = ("real weights", "randomized weights"), colorscale="Viridis",
                  value_label: str = "attention", max_cols: int | None = HEATMAP_MAX_COLS,
                  title: str | None = None) -> go.Figure:
    """Two token × position maps side by side, each on its own scale (no click overlay)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.24)
    for i, z in enumerate((left, right)):
        zd, edges = downsample_columns(z, max_cols, "max")
        fig.add_trace(go.Heatmap(z=zd, colorscale=colorscale, colorbar=dict(x=0.39 if i == 0 else 1.0, thickness=10,
                                                                              xanchor="left", len=0.9),
                                 hovertemplate="token %{y} · column %{x}<br>%{z:.4g}<extra></extra>"), row=1, col=i + 1)
        ticks = _axis_ticks(positions, edges)
        ticks.pop("title_text", None)
        fig.update_xaxes(showgrid=False, zeroline=False, row=1, col=i + 1, **ticks)
        T = zd.shape[0]
        fig.update_yaxes(tickvals=list(range(T)), ticktext=[f"token {t}" for t in range(T)], autorange="reversed",
                         showgrid=False, row=1, col=i + 1)
    fig.update_annotations(font=dict(size=12))
    return _layout(fig, title, 150 + 34 * np.asarray(left).shape[0], margin=dict(l=60, r=20, t=60 if title else 40,
                                                                                   b=40))


def randomization_figure(similarity: pd.DataFrame, contributions: pd.DataFrame,
                         title: str | None = "Model-randomization check") -> go.Figure:
    """Left: Shapley of the real vs randomized model; right: Spearman ρ between real and
    randomized maps per modality (near 1 would mean the map ignores the weights)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Shapley: real vs randomized weights",
                                                        "map similarity, real vs randomized (ρ)"),
                        horizontal_spacing=0.12)
    sh = contributions[contributions["method"] == "shapley"]
    for col, color, name in (("real", "#3D5A80", "real"), ("randomized", "#E0A458", "randomized")):
        fig.add_trace(go.Bar(x=sh["modality"], y=_f32(sh[col]), name=name, marker_color=color), row=1, col=1)
    for measure, color in (("attention", "#98C1D9"), ("relevance", "#293241")):
        d = similarity[similarity["measure"] == measure]
        fig.add_trace(go.Bar(x=d["modality"], y=_f32(d["spearman"]), name=f"{measure} map", marker_color=color),
                      row=1, col=2)
    fig.update_yaxes(range=[-1, 1], row=1, col=2)
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.18))
    fig.update_annotations(font=dict(size=12))
    return _layout(fig, title, 340, margin=dict(l=50, r=20, t=60, b=60))


# --------------------------------------------------------------------------- compare / dataset

def contributions_ab_figure(a: np.ndarray, b: np.ndarray, *, label_a: str = "A", label_b: str = "B",
                            method: str = "shapley", title: str | None = None) -> go.Figure:
    fig = go.Figure()
    for v, name, color in ((a, label_a, "#9DB4C0"), (b, label_b, "#3D5A80")):
        fig.add_trace(go.Bar(x=list(MODALITIES), y=_f32(v), name=name, marker_color=color,
                             hovertemplate=f"{name} · %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.15, x=0, yanchor="top"))
    fig.update_yaxes(zeroline=True, zerolinecolor="#888", title_text=METHOD_LABELS.get(method, method))
    return _layout(fig, title, 320, margin=dict(l=60, r=20, t=40, b=70))


def delta_figure(per_weld: pd.DataFrame, title: str | None = "Shapley B − A per weld") -> go.Figure:
    """Welds × modality heatmap of the Shapley deltas; flagged welds marked ⚑."""
    cols = [f"delta_shapley_{m}" for m in MODALITIES]
    z = per_weld[cols].to_numpy(dtype=np.float64)
    lim = float(np.nanmax(np.abs(z))) if z.size else 1.0
    names = [("⚑ " if f else "") + str(w) for w, f in zip(per_weld["weld"], per_weld["flag"])]
    fig = go.Figure(go.Heatmap(z=_f32(z), x=list(MODALITIES), y=names, zmin=-lim or -1, zmax=lim or 1, zmid=0,
                               colorscale="RdBu_r", colorbar=dict(title=dict(text="Δ"), thickness=10),
                               hovertemplate="%{y} · %{x}: Δ %{z:.4g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, 90 + 22 * len(names), margin=dict(l=110, r=20, t=40, b=30))


def contributions_by_class_figure(df: pd.DataFrame, value: str = "value",
                                  title: str | None = "Shapley contributions by class") -> go.Figure:
    """Box + every point, per class (x) and modality (colour). df: class, modality, value, weld."""
    if df.empty:
        return empty_figure("no welds")
    fig = go.Figure()
    for m in MODALITIES:
        d = df[df["modality"] == m]
        fig.add_trace(go.Box(x=d["class"], y=_f32(d[value]), name=m, marker_color=MODALITY_COLORS[m],
                             boxpoints="all", jitter=0.4, pointpos=0, customdata=d[["weld"]].to_numpy(),
                             hovertemplate="%{customdata[0]} · " + m + ": %{y:.4g}<extra></extra>"))
    fig.update_layout(boxmode="group", legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    fig.update_yaxes(zeroline=True, zerolinecolor="#888", title_text="Shapley")
    return _layout(fig, title, 380)


def window_share_figure(df: pd.DataFrame, title: str | None = "Relevance inside the defect windows vs chance") -> go.Figure:
    """Share of relevance inside the truth windows (y) against the windows' share of the weld
    (x, what a uniform map would give), one point per weld and time modality; above the
    diagonal = more relevance on the defect than chance. df: weld, modality, chance, share.
    WebGL markers, so thousands of welds stay light."""
    d = df.dropna(subset=["chance", "share"]) if not df.empty else df
    if d.empty:
        return empty_figure("no welds with defect windows in their truth")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#888", dash="dot", width=1),
                             name="chance", hoverinfo="skip"))
    for m in MODALITIES:
        s = d[d["modality"] == m]
        if s.empty:
            continue
        fig.add_trace(go.Scattergl(x=_f32(s["chance"]), y=_f32(s["share"]), mode="markers", name=m,
                                   marker=dict(color=MODALITY_COLORS[m], size=7, opacity=0.75),
                                   customdata=s[["weld"]].to_numpy(),
                                   hovertemplate="%{customdata[0]} · " + m + ": %{y:.2f} in window "
                                                 "(chance %{x:.2f})<extra></extra>"))
    fig.update_xaxes(range=[-0.02, 1.02], title_text="windows' share of the weld (chance)")
    fig.update_yaxes(range=[-0.02, 1.02], title_text="share of relevance in the windows")
    fig.update_layout(legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return _layout(fig, title, 380)
