"""Contributions and the figures built from them: bars per method, per token, the
prediction, method agreement, the randomization check, A vs B, by class, and relevance
in the defect windows against chance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fusion_core.explain.methods import METHODS
from fusion_core.vocab import MODALITIES

from .common import MODALITY_COLORS, empty_figure, f32, layout, method_label, wrap_label


def target_unit(target: str, class_names: Sequence[str] | None = None) -> str:
    """The unit of a target-valued contribution (Shapley, leave-one-out), from the target's
    name as the engine reports it ("logit[predicted class]", "logit[porosity]", "anomaly", "cosine")."""
    if target.startswith("logit["):
        return f"Δ logit of {target[6:-1]}"
    return {"anomaly": "Δ distance to the good welds", "cosine": "Δ cosine similarity"}.get(target, f"Δ {target}")


def short_unit(unit: str | None) -> str:
    """The axis-title form of `target_unit` ("Δ logit of porosity" → "Δ logit")."""
    return " ".join((unit or "target units").split()[:2])


def axis_unit(method: str, target_unit_text: str | None) -> str:
    """x-axis title of a method's panel: the target's unit (short), or "share" for shares."""
    if method in METHODS and METHODS[method].unit == "share":
        return "share"
    return short_unit(target_unit_text)


def contribution_bars(contributions: Mapping[str, np.ndarray], present: Sequence[bool] | np.ndarray, *,
                      methods: Sequence[str] = ("shapley", "leave_one_out", "attention"),
                      baseline: str | None = None, title: str | None = None,
                      efficiency_gap: float | None = None, unit: str | None = None) -> go.Figure:
    """One panel per method (own value axis: Shapley is in target units — `unit`, e.g. "Δ logit
    of porosity" — shares are fractions), a horizontal bar per modality; absent modalities
    hatched and labelled."""
    methods = [m for m in methods if m in contributions]
    if not methods:
        return empty_figure("no contributions for this model")
    fig = make_subplots(rows=1, cols=len(methods), subplot_titles=[wrap_label(method_label(m), 12) for m in methods],
                        horizontal_spacing=0.1, shared_yaxes=True)
    present = np.asarray(present, dtype=bool)
    for i, method in enumerate(methods, start=1):
        v = np.asarray(contributions[method], dtype=np.float64)
        for is_present in (True, False):    # absent ones hatched: a trace of their own, since plotly.js
            js = [j for j in range(len(MODALITIES)) if present[j] == is_present]   # warns on per-bar patterns
            if not js:
                continue
            fig.add_trace(go.Bar(
                y=[MODALITIES[j] for j in js], x=f32(v[js]), orientation="h",
                marker=dict(color=[MODALITY_COLORS[MODALITIES[j]] for j in js]) if is_present
                else dict(color="#BBBBBB", pattern=dict(shape="/")),
                text=[f"{v[j]:.3g}" if is_present else "absent" for j in js], textposition="outside",
                cliponaxis=False, hovertemplate="%{y}: %{x:.4g}<extra>" + method_label(method) + "</extra>",
                showlegend=False), row=1, col=i)
        lo, hi = float(min(0.0, v.min())), float(max(0.0, v.max()))
        pad = 0.6 * (hi - lo or 1.0)        # room for the value labels, inside the panel
        fig.update_xaxes(range=[lo - (pad if lo < 0 else 0), hi + (pad if hi > 0 else 0)], zeroline=True, zerolinecolor="#888",
                         nticks=3, row=1, col=i, title=dict(text=axis_unit(method, unit), font=dict(size=11)))
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=list(MODALITIES))
    sub = [title] if title else []
    if unit and any(METHODS[m].unit != "share" for m in methods if m in METHODS):
        sub.append(f"Shapley and leave-one-out in {unit}; shares sum to 1")
    if baseline:
        sub.append(f"absent modality = {baseline}")
    if efficiency_gap is not None:
        sub.append(f"Shapley efficiency gap {efficiency_gap:.1e}")
    fig.update_annotations(font=dict(size=12))
    return layout(fig, None, 330, margin=dict(l=60, r=20, t=56, b=118)).add_annotation(
        text="<br>".join(sub), xref="paper", yref="paper", x=0.0, y=-0.3, xanchor="left", yanchor="top",
        showarrow=False, font=dict(size=11, color="#666"))


def token_contribution_figure(token_shapley: np.ndarray, present: Sequence[bool] | np.ndarray | None = None,
                              title: str | None = "Shapley per fusion token", unit: str | None = None) -> go.Figure:
    """(T, 4) per-token Shapley values as grouped bars (token on x, one bar per modality)."""
    ts = np.asarray(token_shapley, dtype=np.float64)
    if ts.size == 0:
        return empty_figure("no per-token values (this model has no fusion tokens)")
    T = ts.shape[0]
    fig = go.Figure()
    for j, m in enumerate(MODALITIES):
        fig.add_trace(go.Bar(x=[f"token {t}" for t in range(T)], y=f32(ts[:, j]), name=m,
                             marker_color=MODALITY_COLORS[m],
                             hovertemplate=f"{m} · %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(barmode="group", legend=dict(orientation="v", x=1.01, y=1, yanchor="top"))
    fig.update_xaxes(tickangle=0, tickvals=[f"token {t}" for t in range(T)], ticktext=[str(t) for t in range(T)],
                     title_text="fusion token")
    fig.update_yaxes(zeroline=True, zerolinecolor="#888", title_text=f"Shapley ({short_unit(unit)})" if unit
                     else "Shapley")
    return layout(fig, title, 260)


def prediction_figure(class_names: Sequence[str], probabilities: np.ndarray, truth: str | None = None) -> go.Figure:
    """Class probabilities, predicted class emphasised, the true class marked when known."""
    p = np.asarray(probabilities, dtype=np.float64)
    order = np.argsort(p)
    top = int(np.argmax(p))
    names = [class_names[i] + ("  ◀ truth" if truth is not None and class_names[i] == truth else "") for i in order]
    fig = go.Figure(go.Bar(x=f32(p[order]), y=names, orientation="h",
                           marker_color=["#E4572E" if i == top else "#9DB4C0" for i in order],
                           text=[f"{p[i]:.1%}" for i in order], cliponaxis=False,
                           # a long bar carries its value inside, so no width can push it off the chart
                           textposition=["inside" if p[i] > 0.5 else "outside" for i in order],
                           insidetextanchor="end", insidetextfont=dict(color="white"),
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_xaxes(range=[0, 1.15], tickvals=[0, 1], tickformat=".0%", tickangle=0)
    return layout(fig, None, 40 + 22 * len(p), margin=dict(l=10, r=10, t=10, b=30))


def agreement_figure(matrix: pd.DataFrame, title: str | None = "Rank agreement between methods (Spearman ρ)") -> go.Figure:
    m = matrix.to_numpy(dtype=np.float64)
    text = [["n/a" if not np.isfinite(v) else f"{v:.2f}" for v in row] for row in m]
    labels = [method_label(c) for c in matrix.columns]
    fig = go.Figure(go.Heatmap(z=f32(m), x=labels, y=labels, zmin=-1, zmax=1, zmid=0, colorscale="RdBu",
                               text=text, texttemplate="%{text}", colorbar=dict(title=dict(text="ρ"), thickness=10),
                               hovertemplate="%{y} vs %{x}: ρ %{z:.2f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return layout(fig, title, 340, margin=dict(l=150, r=20, t=40, b=90))



def randomization_figure(similarity: pd.DataFrame, contributions: pd.DataFrame,
                         title: str | None = "Model-randomization check") -> go.Figure:
    """Left: Shapley of the real vs randomized model; right: Spearman ρ between real and
    randomized maps per modality (near 1 would mean the map ignores the weights)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Shapley: real vs randomized weights",
                                                        "map similarity, real vs randomized (ρ)"),
                        horizontal_spacing=0.12)
    sh = contributions[contributions["method"] == "shapley"]
    for col, color, name in (("real", "#3D5A80", "real"), ("randomized", "#E0A458", "randomized")):
        fig.add_trace(go.Bar(x=sh["modality"], y=f32(sh[col]), name=name, marker_color=color), row=1, col=1)
    for measure, color in (("attention", "#98C1D9"), ("relevance", "#293241")):
        d = similarity[similarity["measure"] == measure]
        fig.add_trace(go.Bar(x=d["modality"], y=f32(d["spearman"]), name=f"{measure} map", marker_color=color),
                      row=1, col=2)
    fig.update_yaxes(range=[-1, 1], row=1, col=2)
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.18))
    fig.update_annotations(font=dict(size=12))
    return layout(fig, title, 340, margin=dict(l=50, r=20, t=60, b=60))


# --------------------------------------------------------------------------- compare / dataset

def contributions_ab_figure(a: np.ndarray, b: np.ndarray, *, label_a: str = "A", label_b: str = "B",
                            method: str = "shapley", title: str | None = None) -> go.Figure:
    fig = go.Figure()
    for v, name, color in ((a, label_a, "#9DB4C0"), (b, label_b, "#3D5A80")):
        fig.add_trace(go.Bar(x=list(MODALITIES), y=f32(v), name=name, marker_color=color,
                             hovertemplate=f"{name} · %{{x}}: %{{y:.4g}}<extra></extra>"))
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.15, x=0, yanchor="top"))
    fig.update_yaxes(zeroline=True, zerolinecolor="#888", title_text=method_label(method))
    return layout(fig, title, 320, margin=dict(l=60, r=20, t=40, b=70))


def delta_figure(per_weld: pd.DataFrame, title: str | None = "Shapley B − A per weld") -> go.Figure:
    """Welds × modality heatmap of the Shapley deltas; flagged welds marked ⚑."""
    cols = [f"delta_shapley_{m}" for m in MODALITIES]
    z = per_weld[cols].to_numpy(dtype=np.float64)
    lim = float(np.nanmax(np.abs(z))) if z.size else 1.0
    names = [("⚑ " if f else "") + str(w) for w, f in zip(per_weld["weld"], per_weld["flag"])]
    fig = go.Figure(go.Heatmap(z=f32(z), x=list(MODALITIES), y=names, zmin=-lim or -1, zmax=lim or 1, zmid=0,
                               colorscale="RdBu_r", colorbar=dict(title=dict(text="Δ"), thickness=10),
                               hovertemplate="%{y} · %{x}: Δ %{z:.4g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return layout(fig, title, 90 + 22 * len(names), margin=dict(l=110, r=20, t=40, b=30))


def contributions_by_class_figure(df: pd.DataFrame, value: str = "value",
                                  title: str | None = "Shapley contributions by class") -> go.Figure:
    """Box + every point, per class (x) and modality (colour). df: class, modality, value, weld."""
    if df.empty:
        return empty_figure("no welds")
    fig = go.Figure()
    for m in MODALITIES:
        d = df[df["modality"] == m]
        fig.add_trace(go.Box(x=d["class"], y=f32(d[value]), name=m, marker_color=MODALITY_COLORS[m],
                             boxpoints="all", jitter=0.4, pointpos=0, customdata=d[["weld"]].to_numpy(),
                             hovertemplate="%{customdata[0]} · " + m + ": %{y:.4g}<extra></extra>"))
    fig.update_layout(boxmode="group", legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    fig.update_yaxes(zeroline=True, zerolinecolor="#888", title_text="Shapley")
    return layout(fig, title, 380)


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
        fig.add_trace(go.Scattergl(x=f32(s["chance"]), y=f32(s["share"]), mode="markers", name=m,
                                   marker=dict(color=MODALITY_COLORS[m], size=7, opacity=0.75),
                                   customdata=s[["weld"]].to_numpy(),
                                   hovertemplate="%{customdata[0]} · " + m + ": %{y:.2f} in window "
                                                 "(chance %{x:.2f})<extra></extra>"))
    fig.update_xaxes(range=[-0.02, 1.02], title_text="windows' share of the weld (chance)")
    fig.update_yaxes(range=[-0.02, 1.02], title_text="share of relevance in the windows")
    fig.update_layout(legend=dict(orientation="h", y=1.02, x=1, xanchor="right", yanchor="bottom"))
    return layout(fig, title, 380)
