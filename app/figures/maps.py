"""Token × position maps: the clickable attention heatmap, B − A, JSD, the randomized twin,
and per-head bars of one cell.

Each heatmap cell carries `customdata` `[token, first position, last position, value, ...]`
(see `CELL_FIELDS`): its hover text, and what a click sends back. Plotly heatmaps emit no
selection events for Streamlit's `on_select`; a clickable heatmap names itself in
`layout.meta` (`CLICKABLE`) and `app.browser_events` forwards its `plotly_click` events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fusion_core.explain.views import downsample_columns, shared_range
from fusion_core.vocab import MODALITIES

from .common import axis_suffix, f32, layout, layout_dict

HEATMAP_MAX_COLS = 600     # about the pixels a half-width heatmap has
# The colour-bar label of each map kind (fusion_core.explain.engine.MAP_KINDS).
MAP_VALUE_LABELS = {"attention": "attention", "value_norms": "‖α·v‖", "relevance": "relevance"}

# layout.meta key of a clickable heatmap (read by app.browser_events' script in the browser).
CLICKABLE = "weld_cells"
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
    """Hover text for a heatmap cell: token, position(s), time span, frames, photo/patch."""
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


def _seconds(t: float, span: float) -> str:
    """A tick label in seconds, as short as the span allows ("4 s" over 8 s, "0.25 s" over 1 s)."""
    return f"{t:.0f}" if span >= 4 else (f"{t:.1f}" if span >= 0.4 else f"{t:.2f}")


def _axis_ticks(positions: pd.DataFrame | None, edges: np.ndarray, n_ticks: int = 4) -> dict:
    k = len(edges) - 1
    if positions is None or len(positions) != edges[-1] or k == 0:
        return {}
    starts = edges[:-1]
    if "image" in positions.columns and "t0" not in positions.columns:
        img = positions["image"].to_numpy()[starts]
        first = np.flatnonzero(np.r_[True, img[1:] != img[:-1]])
        return dict(tickvals=first.tolist(), ticktext=[f"{int(img[i]) + 1}" for i in first],
                    title_text="photo 1–5 · patch →")
    if "t0" in positions.columns:
        t0 = positions["t0"].to_numpy(dtype=np.float64)[starts]
        if "frame0" in positions.columns:      # video: ticks where a new time bin starts
            first = np.flatnonzero(np.r_[True, np.diff(t0) != 0])
            step = max(1, int(math.ceil(len(first) / n_ticks)))
            first = first[::step]
            span = float(t0.max() - t0.min()) if len(t0) else 0.0
            return dict(tickvals=first.tolist(), ticktext=[_seconds(t0[i], span) for i in first],
                        title_text="time bin (s) →")
        ticks = np.unique(np.linspace(0, k - 1, min(k, n_ticks)).round().astype(int))
        span = float(t0.max() - t0.min()) if len(t0) else 0.0
        return dict(tickvals=ticks.tolist(), ticktext=[_seconds(t0[i], span) for i in ticks], title_text="time (s) →")
    return {}


def attention_heatmap(z: np.ndarray, positions: pd.DataFrame | None = None, *, title: str | None = None,
                      zmin: float | None = None, zmax: float | None = None, colorscale="Viridis",
                      zmid: float | None = None, max_cols: int | None = HEATMAP_MAX_COLS, agg: str = "max",
                      value_label: str = "attention", selected: tuple[int, int] | None = None,
                      height: int | None = None, showscale: bool = True, token_label: str = "token ",
                      clickable: str | None = None, colorbar_title: str | None = None) -> go.Figure:
    """Fusion token × position heatmap; each cell's customdata holds its token and positions.

    Columns beyond `max_cols` are binned (`agg`: max keeps peaks, sum keeps mass); a cell's
    customdata then gives the first and last position of its bin. `selected` = (token,
    position) outlines that cell. `clickable` (a name, e.g. the modality) marks the figure
    for `app.browser_events`, which reports clicks on its cells under that name.
    `colorbar_title` (default: `value_label`; "" for none) titles the colour bar: in a third
    of a 1000 px page its vertical title ran into the next column.
    """
    z = np.asarray(z, dtype=np.float64)
    T, S = z.shape
    zd, edges = downsample_columns(z, max_cols, agg)
    k = zd.shape[1]
    downsampled = k < S
    fields, info = column_info(positions, edges)
    tok, col = np.meshgrid(np.arange(T), np.arange(k), indexing="ij")
    # Per cell (T, k, fields): token, first and last position, value, then the column's info.
    custom = np.concatenate([np.stack([tok, edges[:-1][col], edges[1:][col] - 1, zd], axis=-1),
                             np.broadcast_to(info[None], (T, k, info.shape[1]))], axis=-1).astype(np.float32)
    heat = go.Heatmap(z=zd, x=np.arange(k), y=np.arange(T), zmin=zmin, zmax=zmax, zmid=zmid,
                      colorscale=colorscale, customdata=custom, showscale=showscale,
                      hovertemplate=hover_template(fields, downsampled, value_label),
                      colorbar=dict(title=dict(text=value_label if colorbar_title is None else colorbar_title,
                                               side="right"), thickness=10, len=0.9), name="map")
    shapes = []
    if selected is not None:
        t_sel, s_sel = selected
        c_sel = int(np.searchsorted(edges, s_sel, side="right") - 1)
        if 0 <= t_sel < T and 0 <= c_sel < k:
            shapes.append(dict(type="rect", x0=c_sel - 0.5, x1=c_sel + 0.5, y0=t_sel - 0.5, y1=t_sel + 0.5,
                               line=dict(color="#E4572E", width=3), fillcolor="rgba(0,0,0,0)"))
    ticks = _axis_ticks(positions, edges)
    title_text = ticks.pop("title_text", "position")
    # Fixed margins, no automargin: automargin makes Plotly measure and lay out each heatmap a
    # second time (head change 2.2× the bare page with it, 1.5× without, bench_ui). The left
    # margin holds the longest token label, and at least 56 px, so that an x title wider than a
    # narrow plot (Compare's three columns at 1000 px) is not cut on the left.
    # One Figure(data, layout) call: built up by update_* calls it took ~19 ms, four per rerun.
    xaxis = dict(title_text=title_text + (f"  ({S} positions in {k} columns)" if downsampled else ""),
                 range=[-0.5, k - 0.5], showgrid=False, zeroline=False, tickangle=0, automargin=False, **ticks)
    yaxis = dict(tickvals=list(range(T)), ticktext=[f"{token_label}{t}" for t in range(T)], autorange="reversed",
                 showgrid=False, zeroline=False, automargin=False)
    lay = layout_dict(title, height or (110 + 34 * T), hovermode="closest", dragmode="zoom",
                      margin=dict(l=max(56, 16 + 7 * len(f"{token_label}{T - 1}")), r=20, t=40 if title else 16, b=48),
                      xaxis=xaxis, yaxis=yaxis, shapes=shapes)
    if clickable is not None:
        lay["meta"] = {CLICKABLE: clickable}
    return go.Figure(data=[heat], layout=lay)


def cell_from_click(click: object) -> tuple[str, dict] | None:
    """What the browser reports for a click on a clickable heatmap (`app.browser_events`):
    {"map": name, "customdata": [token, s0, s1, ...]} → (name, {"token", "s0", "s1"}).

    It comes from the page, so anything else (missing or non-numeric fields, negative or
    inverted positions) is None rather than an error."""
    if not isinstance(click, Mapping) or not isinstance(click.get("map"), str):
        return None
    cd = click.get("customdata")
    if isinstance(cd, Mapping):                    # a typed array may arrive as {"0": .., "1": ..}
        cd = [cd.get(str(i), cd.get(i)) for i in range(len(cd))]
    if not isinstance(cd, (list, tuple)) or len(cd) < 3:
        return None
    try:
        token, s0, s1 = (int(round(float(v))) for v in cd[:3])
    except (TypeError, ValueError, OverflowError):
        return None
    if token < 0 or s0 < 0 or s1 < s0:
        return None
    return click["map"], {"token": token, "s0": s0, "s1": s1}


def difference_heatmap(za: np.ndarray, zb: np.ndarray, positions: pd.DataFrame | None = None, *,
                       title: str | None = None, max_cols: int | None = HEATMAP_MAX_COLS,
                       value_label: str = "B − A", token_label: str = "token ") -> go.Figure:
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
                             value_label=value_label, token_label=token_label)


def js_heatmap(js: np.ndarray, title: str | None = "Jensen–Shannon divergence (A vs B)") -> go.Figure:
    """(T, 4) JSD per fusion token × modality, values written in the cells."""
    js = np.asarray(js, dtype=np.float64)
    T = js.shape[0]
    text = [["n/a" if not np.isfinite(v) else f"{v:.3g}" for v in row] for row in js]
    fig = go.Figure(go.Heatmap(z=f32(js), x=list(MODALITIES), y=[f"token {t}" for t in range(T)], zmin=0,
                               zmax=max(float(np.nanmax(js)) if np.isfinite(js).any() else 0.0, 1e-6),
                               colorscale="Magma", reversescale=True, text=text, texttemplate="%{text}",
                               hovertemplate="%{y} · %{x}<br>JSD %{z:.4f}<extra></extra>",
                               colorbar=dict(title=dict(text="JSD (bits)"), thickness=10)))
    fig.update_yaxes(autorange="reversed")
    return layout(fig, title, 110 + 34 * T)


def twin_heatmaps(left: np.ndarray, right: np.ndarray, positions: pd.DataFrame | None = None, *,
                  titles: tuple[str, str] = ("real weights", "randomized weights"), colorscale="Viridis",
                  value_label: str = "attention", max_cols: int | None = HEATMAP_MAX_COLS,
                  title: str | None = None, robust: bool = True) -> go.Figure:
    """Two token × position maps side by side on ONE colour scale (range over both, 5th–95th
    percentile when `robust`), so a flat randomized map looks flat beside a structured real
    one; one colour bar. Not clickable."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.12)
    zmin, zmax = shared_range([np.asarray(left), np.asarray(right)], robust)
    for i, z in enumerate((left, right)):
        zd, edges = downsample_columns(z, max_cols, "max")
        fig.add_trace(go.Heatmap(z=zd, colorscale=colorscale, zmin=zmin, zmax=zmax,
                                 showscale=i == 1,
                                 colorbar=dict(x=1.0, thickness=10, xanchor="left", len=0.9,
                                               title=dict(text=value_label, side="right")),
                                 hovertemplate="token %{y} · column %{x}<br>%{z:.4g}<extra></extra>"), row=1, col=i + 1)
        ticks = _axis_ticks(positions, edges)
        ticks.pop("title_text", None)
        fig.update_xaxes(showgrid=False, zeroline=False, tickangle=0, nticks=6, row=1, col=i + 1, **ticks)
        T = zd.shape[0]
        fig.update_yaxes(tickvals=list(range(T)), ticktext=[f"token {t}" for t in range(T)], autorange="reversed",
                         showgrid=False, showticklabels=i == 0, row=1, col=i + 1)
    fig.update_annotations(font=dict(size=12))
    return layout(fig, title, 150 + 34 * np.asarray(left).shape[0], margin=dict(l=60, r=20, t=60 if title else 40,
                                                                                   b=40))


def head_values_figure(values: Mapping[str, np.ndarray], title: str | None = "per head") -> go.Figure:
    """Bars per head for one cell: {"attention": (heads,), "value-weighted": (heads,)}, one
    panel each, stacked (side by side in a third of a 1000 px page, their titles collided).
    Laid out by hand in one Figure call: make_subplots and update_* took ~16 ms per click."""
    n = len(values)
    gap = 0.22 if n > 1 else 0.0
    h = (1.0 - gap * (n - 1)) / n
    traces, lay = [], {}
    for i, (name, v) in enumerate(values.items()):
        v = np.asarray(v, dtype=np.float64)
        sfx = axis_suffix(i + 1)
        top = 1.0 - i * (h + gap)
        traces.append(go.Bar(x=[f"h{j}" for j in range(len(v))], y=f32(v), marker_color="#5B8E7D", showlegend=False,
                             xaxis=f"x{sfx}", yaxis=f"y{sfx}", hovertemplate="%{x}: %{y:.4g}<extra>" + name + "</extra>"))
        lay[f"xaxis{sfx}"] = dict(anchor=f"y{sfx}", domain=[0.0, 1.0], tickangle=0,
                                  title_text="head" if i == n - 1 else None)      # under the last panel only
        lay[f"yaxis{sfx}"] = dict(anchor=f"x{sfx}", domain=[top - h, top], tickformat=".2~g", nticks=4)  # 8e-07, not 800n
        lay.setdefault("annotations", []).append(
            dict(text=name, x=0.5, xanchor="center", xref="paper", y=top, yanchor="bottom", yref="paper",
                 showarrow=False, font=dict(size=12)))
    return go.Figure(data=traces, layout=layout_dict(title, 110 + 130 * n, margin=dict(l=50, r=20, t=50, b=30), **lay))


# --------------------------------------------------------------------------- the time cursor

CURSOR_COLOR = "#111111"
CURSOR_HALO = "rgba(255,255,255,0.9)"     # under the line, so it shows on any colour scale


def _cursor_line(fig: go.Figure, x: float, xref: str, yref: str) -> None:
    for name, color, width in (("cursor halo", CURSOR_HALO, 4), ("cursor", CURSOR_COLOR, 1.6)):
        fig.add_shape(type="line", x0=x, x1=x, y0=0, y1=1, xref=xref, yref=yref, name=name,
                      line=dict(color=color, width=width), layer="above")


def time_columns(fig: go.Figure, t: float, positions: pd.DataFrame) -> list[tuple[float, float]]:
    """Where time `t` falls on a heatmap drawn by `attention_heatmap` over these positions:
    (first, last) displayed column of each run of columns whose positions cover t; first ==
    last becomes a fractional column (the line sits at t within the position's span). Read
    from the heatmap's customdata (it gives each column's positions), so it
    holds for a binned map too. [] when no position covers t."""
    if positions is None or "t0" not in positions.columns or "t1" not in positions.columns:
        return []
    t0 = positions["t0"].to_numpy(dtype=np.float64)
    t1 = positions["t1"].to_numpy(dtype=np.float64)
    last = len(t0) - 1
    hit = np.flatnonzero((t0 <= t) & ((t < t1) | ((np.arange(len(t0)) == last) & (t <= t1))))
    cells = next((tr for tr in fig.data if tr.name == "map" and tr.customdata is not None), None)
    if not len(hit) or cells is None:
        return []
    cd = np.asarray(cells.customdata, dtype=np.float64)    # (tokens, columns, fields)
    s0, s1 = cd[0, :, 1], cd[0, :, 2]
    col_of = np.searchsorted(s0, hit, side="right") - 1
    col_of = np.unique(col_of[(col_of >= 0) & (hit <= s1[np.clip(col_of, 0, len(s1) - 1)])])
    if not len(col_of):
        return []
    runs = np.split(col_of, np.flatnonzero(np.diff(col_of) > 1) + 1)
    if len(runs) == 1 and len(runs[0]) == 1:               # one column: the line sits at t within it
        c = int(runs[0][0])
        ta, tb = t0[int(s0[c]):int(s1[c]) + 1].min(), t1[int(s0[c]):int(s1[c]) + 1].max()
        x = float(c - 0.5 + (np.clip((t - ta) / (tb - ta), 0.0, 1.0) if tb > ta else 0.5))
        return [(x, x)]
    return [(float(r[0]), float(r[-1])) for r in runs]


def add_time_cursor(fig: go.Figure, t: float | None, positions: pd.DataFrame | None = None) -> go.Figure:
    """A vertical line at time `t` (seconds) on every subplot of `fig`.

    Without `positions`, the x axes are time (the sensor and audio figures). With them, `fig`
    is a token × position heatmap (`attention_heatmap`) of a time-based modality (audio,
    sensor, video): the line goes where `t` falls among the columns, and when several columns
    cover t (a video time bin, one column per patch) they are outlined as a band."""
    if t is None:
        return fig
    t = float(t)
    if positions is None:
        names = sorted(k for k in fig.layout.to_plotly_json() if k.startswith("yaxis")) or ["yaxis"]
        for name in names:
            anchor = fig.layout[name].anchor
            _cursor_line(fig, t, anchor if anchor not in (None, "free") else "x", f"y{name[5:]} domain")
        return fig
    for a, b in time_columns(fig, t, positions):
        if a == b:
            _cursor_line(fig, a, "x", "y domain")
        else:
            fig.add_shape(type="rect", x0=a - 0.5, x1=b + 0.5, y0=0, y1=1, xref="x", yref="y domain",
                          name="cursor", line=dict(color=CURSOR_COLOR, width=1.6), layer="above",
                          fillcolor="rgba(255,255,255,0.15)")
    return fig
