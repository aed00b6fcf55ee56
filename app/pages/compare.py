"""Compare: two checkpoints on the same welds — side-by-side maps, B−A, JSD, contributions."""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

from fusion_core.explain.compare import compare
from fusion_core.errors import InputError
from fusion_core.explain.engine import BASELINES
from fusion_core.vocab import MODALITIES

from app import figures as F
from app import state, widgets
from app.ui import CHART, positions_of, target_options

K = "compare"

with st.sidebar:
    st.subheader("Checkpoint A")
    ck_a = widgets.checkpoint_picker(f"{K}_a", label="Checkpoint A", default="demo-early")
    st.subheader("Checkpoint B")
    ck_b = widgets.checkpoint_picker(f"{K}_b", label="Checkpoint B", default="demo-best")
    st.subheader("Welds")
    got = widgets.weld_set_picker(K)
    chosen = []
    if got is not None:
        ids = [w.weld_id for w in got[0]]
        chosen = st.multiselect("Welds to compare", ids, default=ids, key=f"{K}_welds_{len(ids)}_{hash(got[1])}")
    st.subheader("Explanation")
    common_targets = [t for t in target_options(ck_a) if t in target_options(ck_b)]
    target = st.selectbox("Target", common_targets, key=f"{K}_target")
    baseline = st.selectbox("An absent modality means", list(BASELINES), key=f"{K}_baseline")

st.title("Compare two checkpoints")

result = None
if ck_a is not None and ck_b is not None and got is not None and chosen:
    welds = [w for w in got[0] if w.weld_id in set(chosen)]
    bar = st.progress(0.0, text="Explaining…")
    try:
        n = len(welds)
        exp_a = state.explain_welds(ck_a, welds, baseline=baseline, target=target,
                                    progress=lambda d, t: bar.progress(0.5 * d / t, text=f"A: {d}/{t} welds"))
        exp_b = state.explain_welds(ck_b, welds, baseline=baseline, target=target,
                                    progress=lambda d, t: bar.progress(0.5 + 0.5 * d / t, text=f"B: {d}/{t} welds"))
        result = (ck_a, ck_b, welds, exp_a, exp_b)
        st.session_state[f"{K}_good"] = (ck_a, ck_b, welds, baseline, target)
    except InputError as e:
        st.error(str(e))
    finally:
        bar.empty()
if result is None and st.session_state.get(f"{K}_good"):
    ck_a, ck_b, welds, baseline, target = st.session_state[f"{K}_good"]
    result = (ck_a, ck_b, welds, state.explain_welds(ck_a, welds, baseline=baseline, target=target),
              state.explain_welds(ck_b, welds, baseline=baseline, target=target))
    st.caption("Showing the last comparison that worked.")
if result is None:
    st.info("Choose two checkpoints and at least one weld in the sidebar.")
    st.stop()

ck_a, ck_b, welds, exp_a, exp_b = result
cmp = compare(exp_a, exp_b)
name_a, name_b = f"A: {ck_a.info.path.split('/')[-1]}", f"B: {ck_b.info.path.split('/')[-1]}"
st.caption(f"{name_a} ({ck_a.info.sha256[:12]}) vs {name_b} ({ck_b.info.sha256[:12]}) · target `{exp_a.target}` · "
           f"absent = `{exp_a.baseline}` · {len(welds)} weld(s)")

# --------------------------------------------------------------------------- all welds

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
fig_delta = F.delta_figure(per_weld)
t[1].plotly_chart(fig_delta, key=f"{K}_delta", **CHART)

# --------------------------------------------------------------------------- one weld

st.subheader("One weld")
ids = list(exp_a.ids)
flagged = [i for i, f in enumerate(per_weld["flag"]) if f]
c = st.columns([1.4, 1, 1.3, 1, 1.3])
i = c[0].selectbox("Weld", range(len(ids)), key=f"{K}_weld_{len(ids)}",
                   format_func=lambda j: ("⚑ " if per_weld["flag"].iloc[j] else "") + widgets.class_label(ids[j]))
heads_a = next(iter(exp_a.attention.values())).shape[1] if exp_a.attention else 0
heads_b = next(iter(exp_b.attention.values())).shape[1] if exp_b.attention else 0
head_opts = ["mean"] + (list(range(heads_a)) if heads_a == heads_b else [])
head = c[1].selectbox("Head", head_opts, key=f"{K}_head",
                      format_func=lambda h: "mean of heads" if h == "mean" else f"head {h}")
method = c[2].selectbox("Map", list(F.MAP_METHODS), format_func=F.MAP_METHODS.get, key=f"{K}_method")
cscale = c[3].selectbox("Colour scale", F.COLORSCALES, key=f"{K}_colorscale")
shared_all = c[4].toggle("One scale for all modalities", value=False, key=f"{K}_shared")
robust = c[3].toggle("Clip outliers", value=True, key=f"{K}_robust",
                     help="Colour range from the 5th to the 95th percentile (hover shows true values).")

pred_a, pred_b = exp_a.predicted(i), exp_b.predicted(i)
if pred_a is not None:
    st.markdown(f"**{name_a}** predicts {pred_a} · **{name_b}** predicts {pred_b}"
                + ("" if pred_a == pred_b else " — :red[they disagree]"))

figs = {"delta": fig_delta}
k = st.columns(2)
method_c = k[0].columns(2)[0].selectbox("Contributions", [x for x in ("shapley", "leave_one_out", "attention", "relevance")
                                            if x in exp_a.contributions and x in exp_b.contributions],
                          format_func=lambda x: F.METHOD_LABELS.get(x, x), key=f"{K}_contrib_method")
figs["contributions"] = F.contributions_ab_figure(exp_a.contributions[method_c][i], exp_b.contributions[method_c][i],
                                                  label_a=name_a, label_b=name_b, method=method_c,
                                                  title=f"{F.METHOD_LABELS.get(method_c, method_c)}: A and B")
k[0].plotly_chart(figs["contributions"], key=f"{K}_contrib", **CHART)
if np.isfinite(cmp.js[i]).any():
    figs["js"] = F.js_heatmap(cmp.js[i])
    k[1].plotly_chart(figs["js"], key=f"{K}_js", **CHART)

maps = {}
for m_ in MODALITIES:
    j = MODALITIES.index(m_)
    if (m_ in exp_a.attention and m_ in exp_b.attention and exp_a.present[i, j] and exp_b.present[i, j]):
        za = F.token_map(exp_a, i, m_, head, method)
        zb = F.token_map(exp_b, i, m_, head, method)
        if za.shape == zb.shape:
            maps[m_] = (za, zb)
all_range = F.shared_range([z for pair in maps.values() for z in pair], robust)
if not maps:
    st.info("No attention maps to compare (a mean-pool model, or sequence shapes that differ between A and B).")
for m_, (za, zb) in maps.items():
    st.markdown(f"**{m_}**")
    zmin, zmax = all_range if shared_all else F.shared_range([za, zb], robust)
    pos = positions_of(exp_a, m_, i)
    row = st.columns(3)
    figs[f"{m_}_A"] = F.attention_heatmap(za, pos, title=name_a, zmin=zmin, zmax=zmax, colorscale=cscale,
                                          value_label=method if method != "value" else "‖α·v‖")
    figs[f"{m_}_B"] = F.attention_heatmap(zb, pos, title=name_b, zmin=zmin, zmax=zmax, colorscale=cscale,
                                          value_label=method if method != "value" else "‖α·v‖")
    figs[f"{m_}_diff"] = F.difference_heatmap(za, zb, pos, title="B − A")
    for col, key in zip(row, ("A", "B", "diff")):
        col.plotly_chart(figs[f"{m_}_{key}"], key=f"{K}_{m_}_{key}", **CHART)

# --------------------------------------------------------------------------- export

st.subheader("Export")
e = st.columns(4)
stem = f"compare_{ck_a.info.sha256[:8]}_{ck_b.info.sha256[:8]}"
e[0].download_button("Comparison (JSON)", lambda: json.dumps(cmp.to_json_dict()).encode(),
                     file_name=f"{stem}.json", mime="application/json", on_click="ignore", key=f"{K}_dl_json")
e[1].download_button("Per-weld deltas (CSV)", lambda: per_weld.to_csv(index=False).encode(),
                     file_name=f"{stem}_per_weld.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_csv")
e[2].download_button("JSD per token (CSV)", lambda: cmp.js_frame().to_csv(index=False).encode(),
                     file_name=f"{stem}_js.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_js")
fig_name = e[3].selectbox("Figure", list(figs), key=f"{K}_fig_pick", label_visibility="collapsed")
e[3].download_button("Figure as HTML", lambda: F.figure_html(figs[fig_name]).encode(),
                     file_name=f"{stem}_{fig_name}.html", mime="text/html", on_click="ignore", key=f"{K}_dl_fig")
