"""Compare: two checkpoints on the same welds — side-by-side maps, B−A, JSD, contributions.

The sidebar picks the checkpoints, the welds and the explanation; both are explained (or
taken from the cache) once per run. The one-weld views and the export depend only on the
two explanations and the display controls, so they are one fragment (`one_weld`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from streamlit.navigation.page import StreamlitPage

from fusion_core.errors import InputError
from fusion_core.explain.compare import Comparison, compare
from fusion_core.explain.engine import BASELINES, Explanation
from fusion_core.explain.methods import METHODS
from fusion_core.explain.views import positions_of, shared_range
from fusion_core.vocab import MODALITIES

from app import figures as figs
from app import services, state, widgets

K = "compare"


def page() -> StreamlitPage:
    return st.Page(compare_page, title="Compare", url_path="compare")


def compare_page() -> None:
    state.restore(K)
    ck_a, ck_b, welds, baseline, target = sidebar()
    st.title("Compare two checkpoints")
    result = explain_both(ck_a, ck_b, welds, baseline, target)
    if result is None:
        st.info("Choose two checkpoints and at least one weld in the sidebar.")
        return
    ck_a, ck_b, welds, exp_a, exp_b = result
    cmp = compare(exp_a, exp_b)
    names = (f"A: {ck_a.info.path.split('/')[-1]}", f"B: {ck_b.info.path.split('/')[-1]}")
    st.caption(f"{names[0]} ({ck_a.info.sha256[:12]}) vs {names[1]} ({ck_b.info.sha256[:12]}) · "
               f"target `{exp_a.target}` · absent = `{exp_a.baseline}` · {len(welds)} weld(s)")
    per_weld, fig_delta = all_welds(cmp)
    one_weld(exp_a, exp_b, cmp, per_weld, names, fig_delta, f"compare_{ck_a.info.sha256[:8]}_{ck_b.info.sha256[:8]}",
             widgets.heads_assumed(ck_a) or widgets.heads_assumed(ck_b))


def sidebar() -> tuple:
    """(checkpoint A, checkpoint B, the chosen welds or None, baseline, target)."""
    with st.sidebar:
        st.subheader("Checkpoint A")
        ck_a = widgets.checkpoint_picker(f"{K}_a", label="Checkpoint A", default="demo-early")
        st.subheader("Checkpoint B")
        ck_b = widgets.checkpoint_picker(f"{K}_b", label="Checkpoint B", default="demo-best")
        st.subheader("Welds")
        got = widgets.weld_set_picker(K)
        welds = None
        if got is not None:
            ids = [w.weld_id for w in got[0]]
            chosen = st.multiselect("Welds to compare", ids, default=ids, key=f"{K}_welds_{len(ids)}_{hash(got[1])}")
            welds = [w for w in got[0] if w.weld_id in set(chosen)] or None
        st.subheader("Explanation")
        common_targets = [t for t in widgets.target_options(ck_a) if t in widgets.target_options(ck_b)]
        target = st.selectbox("Target", common_targets, key=f"{K}_target")
        baseline = st.selectbox("An absent modality means", list(BASELINES), key=f"{K}_baseline")
        state.copy_link(K)
    state.remember(K)
    state.write_url(K)
    return ck_a, ck_b, welds, baseline, target


def explain_both(ck_a, ck_b, welds, baseline: str, target: str) -> tuple | None:
    """(A, B, welds, explanation A, explanation B); after an error, those of the last
    comparison that worked; None before any worked."""
    if ck_a is not None and ck_b is not None and welds:
        bar = st.progress(0.0, text="Explaining…")
        try:
            exp_a = services.explain_welds(ck_a, welds, baseline=baseline, target=target,
                                           progress=lambda d, t: bar.progress(0.5 * d / t, text=f"A: {d}/{t} welds"))
            exp_b = services.explain_welds(ck_b, welds, baseline=baseline, target=target,
                                           progress=lambda d, t: bar.progress(0.5 + 0.5 * d / t,
                                                                              text=f"B: {d}/{t} welds"))
            st.session_state[f"{K}_good"] = (ck_a, ck_b, welds, baseline, target)
            return ck_a, ck_b, welds, exp_a, exp_b
        except InputError as e:
            st.error(str(e))
        finally:
            bar.empty()
    if st.session_state.get(f"{K}_good"):
        ck_a, ck_b, welds, baseline, target = st.session_state[f"{K}_good"]
        st.caption("Showing the last comparison that worked.")
        return (ck_a, ck_b, welds, services.explain_welds(ck_a, welds, baseline=baseline, target=target),
                services.explain_welds(ck_b, welds, baseline=baseline, target=target))
    return None


def all_welds(cmp: Comparison) -> tuple[pd.DataFrame, go.Figure]:
    """Metrics and the per-weld table of the whole selection; returns that table and the
    figure of the Shapley deltas."""
    per_weld = cmp.per_weld_frame()
    m = st.columns(4)
    m[0].metric("Welds", len(per_weld))
    if cmp.prediction_agree is not None:
        m[1].metric("Predictions differ", int((~cmp.prediction_agree).sum()))
    m[2].metric("Top modality differs", int((~cmp.top_agree).sum()))
    m[3].metric("Mean JSD (bits)", f"{np.nanmean(cmp.js):.3f}" if np.isfinite(cmp.js).any() else "n/a")

    st.subheader("Across the selected welds")
    table = per_weld.copy()
    table.insert(0, "⚑", np.where(table["flag"], "⚑", ""))
    table = table.drop(columns=["flag"])
    t = st.columns([3, 2])
    t[0].dataframe(table, hide_index=True, height=min(420, 38 + 35 * len(table)),
                   column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                                  if c.startswith("delta_") or c in ("rank_rho_shapley", "mean_js")})
    t[0].caption("⚑: A and B disagree on the top modality (by Shapley) or on the prediction.")
    fig_delta = figs.delta_figure(per_weld)
    t[1].plotly_chart(fig_delta, key=f"{K}_delta", **figs.CHART)
    return per_weld, fig_delta


# --------------------------------------------------------------------------- one weld (display-driven)

def heads_of(exp: Explanation) -> int:
    return next(iter(exp.attention.values())).shape[1] if exp.attention else 0


@st.fragment
def one_weld(exp_a: Explanation, exp_b: Explanation, cmp: Comparison, per_weld: pd.DataFrame,
             names: tuple[str, str], fig_delta: go.Figure, stem: str, assumed: bool = False) -> None:
    """One weld: predictions, contributions A and B, JSD, maps A, B and B − A; then export."""
    st.subheader("One weld")
    ids = list(exp_a.ids)
    c = st.columns([1.4, 1, 1.3, 1, 1.3])
    i = c[0].selectbox("Weld", range(len(ids)), key=f"{K}_weld_{len(ids)}",
                       format_func=lambda j: ("⚑ " if per_weld["flag"].iloc[j] else "") + widgets.class_label(ids[j]))
    same_heads = heads_of(exp_a) == heads_of(exp_b)
    head = widgets.head_picker(c[1], f"{K}_head", heads_of(exp_a) if same_heads else 0, assumed=assumed)
    kind = widgets.map_kind_picker(c[2], f"{K}_method")
    cscale = c[3].selectbox("Colour scale", figs.COLORSCALES, key=f"{K}_colorscale")
    shared_all = c[4].toggle("One scale for all modalities", value=False, key=f"{K}_shared")
    robust = c[3].toggle("Clip outliers", value=True, key=f"{K}_robust",
                         help="Colour range from the 5th to the 95th percentile (hover shows true values).")

    pred_a, pred_b = exp_a.predicted(i), exp_b.predicted(i)
    if pred_a is not None:
        st.markdown(f"**{names[0]}** predicts {pred_a} · **{names[1]}** predicts {pred_b}"
                    + ("" if pred_a == pred_b else " — :red[they disagree]"))
    drawn = {"delta": fig_delta}
    contributions_ab(exp_a, exp_b, cmp, i, names, drawn)
    maps_ab(exp_a, exp_b, i, names, dict(head=head, kind=kind, cscale=cscale, shared_all=shared_all,
                                          robust=robust), drawn)
    export(cmp, per_weld, stem, drawn)
    state.remember(K)
    state.write_url(K)


def contributions_ab(exp_a: Explanation, exp_b: Explanation, cmp: Comparison, i: int, names: tuple[str, str],
                     drawn: dict) -> None:
    k = st.columns(2)
    both = [x for x in METHODS if x in exp_a.contributions and x in exp_b.contributions]
    method = k[0].columns(2)[0].selectbox("Contributions", both, format_func=figs.method_label,
                                          key=f"{K}_contrib_method")
    drawn["contributions"] = figs.contributions_ab_figure(
        exp_a.contributions[method][i], exp_b.contributions[method][i], label_a=names[0], label_b=names[1],
        method=method, title=f"{figs.method_label(method)}: A and B")
    k[0].plotly_chart(drawn["contributions"], key=f"{K}_contrib", **figs.CHART)
    if np.isfinite(cmp.js[i]).any():
        drawn["js"] = figs.js_heatmap(cmp.js[i])
        k[1].plotly_chart(drawn["js"], key=f"{K}_js", **figs.CHART)


def maps_ab(exp_a: Explanation, exp_b: Explanation, i: int, names: tuple[str, str], opts: dict,
            drawn: dict) -> None:
    """Per modality both models attend to: A, B and B − A (same shapes only)."""
    maps = {}
    for j, m in enumerate(MODALITIES):
        if m in exp_a.attention and m in exp_b.attention and exp_a.present[i, j] and exp_b.present[i, j]:
            za = exp_a.token_map(i, m, opts["head"], opts["kind"])
            zb = exp_b.token_map(i, m, opts["head"], opts["kind"])
            if za.shape == zb.shape:
                maps[m] = (za, zb)
    all_range = shared_range([z for pair in maps.values() for z in pair], opts["robust"])
    if not maps:
        st.info("No attention maps to compare (a mean-pool model, or sequence shapes that differ between A and B).")
    label = figs.MAP_VALUE_LABELS[opts["kind"]]
    for m, (za, zb) in maps.items():
        st.markdown(f"**{m}**")
        zmin, zmax = all_range if opts["shared_all"] else shared_range([za, zb], opts["robust"])
        pos = positions_of(exp_a, m, i)
        row = st.columns(3)
        drawn[f"{m}_A"] = figs.attention_heatmap(za, pos, title=names[0], zmin=zmin, zmax=zmax,
                                                 colorscale=opts["cscale"], value_label=label)
        drawn[f"{m}_B"] = figs.attention_heatmap(zb, pos, title=names[1], zmin=zmin, zmax=zmax,
                                                 colorscale=opts["cscale"], value_label=label)
        drawn[f"{m}_diff"] = figs.difference_heatmap(za, zb, pos, title="B − A")
        for col, key in zip(row, ("A", "B", "diff")):
            col.plotly_chart(drawn[f"{m}_{key}"], key=f"{K}_{m}_{key}", **figs.CHART)


def export(cmp: Comparison, per_weld: pd.DataFrame, stem: str, drawn: dict) -> None:
    st.subheader("Export")
    e = st.columns(4)
    e[0].download_button("Comparison (JSON)", lambda: json.dumps(cmp.to_json_dict()).encode(),
                         file_name=f"{stem}.json", mime="application/json", on_click="ignore", key=f"{K}_dl_json")
    e[1].download_button("Per-weld deltas (CSV)", lambda: per_weld.to_csv(index=False).encode(),
                         file_name=f"{stem}_per_weld.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_csv")
    e[2].download_button("JSD per token (CSV)", lambda: cmp.js_frame().to_csv(index=False).encode(),
                         file_name=f"{stem}_js.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_js")
    fig_name = e[3].selectbox("Figure", list(drawn), key=f"{K}_fig_pick", label_visibility="collapsed")
    e[3].download_button("Figure as HTML", lambda: figs.figure_html(drawn[fig_name]).encode(),
                         file_name=f"{stem}_{fig_name}.html", mime="text/html", on_click="ignore", key=f"{K}_dl_fig")
