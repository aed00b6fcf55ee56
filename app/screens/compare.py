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
from fusion_core.explain import views
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
    widgets.main_area_problems()
    result = explain_both(ck_a, ck_b, welds, baseline, target)
    if result is None:
        st.info("Choose two checkpoints and at least one weld in the sidebar.")
        return
    ck_a, ck_b, welds, exp_a, exp_b = result
    cmp = compare(exp_a, exp_b)
    names = (f"A: {ck_a.info.path.split('/')[-1]}", f"B: {ck_b.info.path.split('/')[-1]}")
    st.caption(f"{names[0]} ({ck_a.info.sha256[:12]}) vs {names[1]} ({ck_b.info.sha256[:12]}) · "
               f"target `{exp_a.target}` · absent = `{exp_a.baseline}` · {len(welds)} weld(s)")
    per_weld, fig_delta = all_welds(cmp, welds)
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


def all_welds(cmp: Comparison, welds: list) -> tuple[pd.DataFrame, go.Figure]:
    """Metrics, accuracy and confusion matrices, and the per-weld decision table of the whole
    selection; returns that table and the figure of the Shapley deltas."""
    truth = views.truth_names(welds)
    table = views.decision_table(cmp, truth)
    m = st.columns(4)
    m[0].metric("Welds", len(table))
    if cmp.prediction_agree is not None:
        m[1].metric("Accuracy A", _pct(views.accuracy(truth, table["A predicts"])))
        m[2].metric("Accuracy B", _pct(views.accuracy(truth, table["B predicts"])))
    m[3].metric("Flagged", int((table["Flag"] != "").sum()),
                help="Welds where A and B disagree on the prediction, or on the top modality (Shapley) with each "
                     f"checkpoint's top leading the other's by at least {views.TOP_MARGIN:.0%} of Σ|φ|.")
    m = st.columns(4)
    if cmp.prediction_agree is not None:
        m[0].metric("Predictions differ", int((~cmp.prediction_agree).sum()))
    m[1].metric("Top modality differs", int((~cmp.top_agree).sum()))
    m[2].metric("Mean JSD (bits)", f"{np.nanmean(cmp.js):.3f}" if np.isfinite(cmp.js).any() else "n/a")
    if cmp.prediction_agree is not None:
        decisions(truth, table)
    st.subheader("Across the selected welds")
    which = st.radio("Show", views.DECISION_FILTERS, horizontal=True, key=f"{K}_filter")
    shown = views.filter_decisions(table, which)
    st.dataframe(shown, hide_index=True, height=min(420, 38 + 35 * max(len(shown), 1)), key=f"{K}_table",
                 column_config=_columns(table))
    st.caption(f"{len(shown)} of {len(table)} welds. Flag: why the weld stands out — the checkpoints predict "
               f"different classes (\"prediction\"), or name a different top modality by Shapley with each "
               f"leading by ≥ {views.TOP_MARGIN:.0%} of Σ|φ| (\"top modality\"). Δφ: Shapley value B − A.")
    deltas = cmp.per_weld_frame()
    deltas["flag"] = (table["Flag"] != "").to_numpy()          # ⚑ in the figure = flagged in the table
    fig_delta = figs.delta_figure(deltas)
    st.plotly_chart(fig_delta, key=f"{K}_delta", **figs.CHART)
    return table, fig_delta


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.0%}"


def _columns(table: pd.DataFrame) -> dict:
    cfg = {c: st.column_config.NumberColumn(format="%+.3f", help="Shapley value of B minus that of A")
           for c in table.columns if c.startswith("Δφ")}
    cfg["Rank agreement ρ"] = st.column_config.NumberColumn(
        format="%.2f", help="Spearman ρ of the four modality Shapley values of A and B (1: same order)")
    cfg["Mean JSD (bits)"] = st.column_config.NumberColumn(
        format="%.3f", help="Jensen–Shannon divergence of A's and B's attention, mean over tokens and modalities")
    cfg["A right"] = st.column_config.CheckboxColumn(help="A's prediction equals the true class")
    cfg["B right"] = st.column_config.CheckboxColumn(help="B's prediction equals the true class")
    return cfg


def decisions(truth: list, table: pd.DataFrame) -> None:
    """Per-class accuracy of A and B; the confusion matrices of A, B and B − A."""
    st.subheader("Which checkpoint is right")
    classes = views.class_order(truth, table["A predicts"], table["B predicts"])
    if not any(t is not None for t in truth):
        st.info("No weld here has a known class (truth.json or part number), so accuracy cannot be measured.")
        return
    acc_a = views.per_class_accuracy(truth, table["A predicts"], classes)
    acc_b = views.per_class_accuracy(truth, table["B predicts"], classes)
    acc = pd.DataFrame({"True class": acc_a["class"], "Welds": acc_a["welds"], "A accuracy": acc_a["accuracy"],
                        "B accuracy": acc_b["accuracy"]})
    acc = acc[acc["Welds"] > 0]
    pct = st.column_config.NumberColumn(format="percent")
    cm_a = views.confusion_matrix(truth, table["A predicts"], classes)
    cm_b = views.confusion_matrix(truth, table["B predicts"], classes)
    c = st.columns(2)
    c[0].plotly_chart(figs.confusion_figure(cm_a, "A: confusion matrix"), key=f"{K}_cm_a", **figs.CHART)
    c[1].plotly_chart(figs.confusion_figure(cm_b, "B: confusion matrix"), key=f"{K}_cm_b", **figs.CHART)
    c = st.columns(2)
    c[0].plotly_chart(figs.confusion_difference_figure(cm_a, cm_b), key=f"{K}_cm_diff", **figs.CHART)
    c[1].dataframe(acc.rename(columns={"A accuracy": "A", "B accuracy": "B"}), hide_index=True,
                   key=f"{K}_class_acc", column_config={"A": pct, "B": pct}, height=min(420, 38 + 35 * len(acc)))
    c[1].caption("Accuracy per true class, A and B.")
    st.caption("Rows: true class; columns: predicted class; numbers are welds. B − A: blue cells gained welds "
               "in B, red cells lost them — on the diagonal, blue is better.")


# --------------------------------------------------------------------------- one weld (display-driven)

def heads_of(exp: Explanation) -> int:
    return next(iter(exp.attention.values())).shape[1] if exp.attention else 0


@st.fragment
def one_weld(exp_a: Explanation, exp_b: Explanation, cmp: Comparison, per_weld: pd.DataFrame,
             names: tuple[str, str], fig_delta: go.Figure, stem: str, assumed: bool = False) -> None:
    """One weld: predictions, contributions A and B, JSD, maps A, B and B − A; then export."""
    st.subheader("One weld")
    ids = list(exp_a.ids)
    c, w = widgets.control_row(), widgets.CONTROL_WIDTH
    i = c.selectbox("Weld", range(len(ids)), key=f"{K}_weld_{len(ids)}", width=w + 60,
                    format_func=lambda j: ("⚑ " if per_weld["Flag"].iloc[j] else "") + widgets.class_label(ids[j]))
    same_heads = heads_of(exp_a) == heads_of(exp_b)
    head = widgets.head_picker(c, f"{K}_head", heads_of(exp_a) if same_heads else 0, assumed=assumed, width=w)
    kind = widgets.map_kind_picker(c, f"{K}_method", width=w)
    cscale = c.selectbox("Colour scale", figs.COLORSCALES, key=f"{K}_colorscale", width=w)
    t = widgets.control_row()
    shared_all = t.toggle("One scale for all modalities", value=False, key=f"{K}_shared")
    robust = t.toggle("Clip outliers", value=True, key=f"{K}_robust",
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
    method = k[0].selectbox("Contributions", both, format_func=figs.method_label, key=f"{K}_contrib_method",
                            width=widgets.CONTROL_WIDTH)
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
    if maps:
        st.caption(f"Each row: {names[0]} · {names[1]} · B − A (red: B attends more); T0… are the fusion "
                   f"tokens. Colour: {label}, one scale for A and B.")
    for m, (za, zb) in maps.items():
        st.markdown(f"**{m}**")
        zmin, zmax = all_range if opts["shared_all"] else shared_range([za, zb], opts["robust"])
        pos = positions_of(exp_a, m, i)
        row = st.columns(3)
        short = dict(colorscale=opts["cscale"], value_label=label, token_label="T", zmin=zmin, zmax=zmax,
                     colorbar_title="")       # named in the caption above: a third of 1000 px has no room
        drawn[f"{m}_A"] = figs.attention_heatmap(za, pos, title=f"{m} · A", **short)
        drawn[f"{m}_B"] = figs.attention_heatmap(zb, pos, title=f"{m} · B", **short)
        drawn[f"{m}_diff"] = figs.difference_heatmap(za, zb, pos, title=f"{m} · B − A", token_label="T")
        for col, key in zip(row, ("A", "B", "diff")):
            col.plotly_chart(drawn[f"{m}_{key}"], key=f"{K}_{m}_{key}", **figs.CHART)


def export(cmp: Comparison, per_weld: pd.DataFrame, stem: str, drawn: dict) -> None:
    st.subheader("Export")
    e = widgets.control_row()
    e.download_button("Comparison (JSON)", lambda: json.dumps(cmp.to_json_dict()).encode(),
                      file_name=f"{stem}.json", mime="application/json", on_click="ignore", key=f"{K}_dl_json")
    e.download_button("Per-weld table (CSV)", lambda: per_weld.to_csv(index=False).encode(),
                      file_name=f"{stem}_per_weld.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_csv")
    e.download_button("JSD per token (CSV)", lambda: cmp.js_frame().to_csv(index=False).encode(),
                      file_name=f"{stem}_js.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_js")
    fig_name = e.selectbox("Figure", list(drawn), key=f"{K}_fig_pick", label_visibility="collapsed",
                           width=widgets.CONTROL_WIDTH)
    e.download_button("Figure as HTML", lambda: figs.figure_html(drawn[fig_name]).encode(),
                      file_name=f"{stem}_{fig_name}.html", mime="text/html", on_click="ignore", key=f"{K}_dl_fig")
