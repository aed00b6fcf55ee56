"""Dataset: one checkpoint over a set of welds — a table per weld, contributions by class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fusion_core.errors import InputError
from fusion_core.explain import BASELINES
from fusion_core.model import MODALITIES
from fusion_core.sanity import mass_in_windows

from app import figures as F
from app import state, widgets
from app.ui import CHART, positions_of, request_explore, target_options

K = "dataset"
TIME_MODALITIES = ("video", "audio", "sensor")

with st.sidebar:
    st.subheader("Checkpoint")
    ck = widgets.checkpoint_picker(K, default="demo-best")
    st.subheader("Welds")
    got = widgets.weld_set_picker(K)
    st.subheader("Explanation")
    target = st.selectbox("Target", target_options(ck), key=f"{K}_target")
    baseline = st.selectbox("An absent modality means", list(BASELINES), key=f"{K}_baseline")

st.title("Dataset")

exp = None
if ck is not None and got is not None:
    welds, label = got
    bar = st.progress(0.0, text=f"Explaining {len(welds)} welds…")
    try:
        exp = state.explain_welds(ck, welds, baseline=baseline, target=target,
                                  progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} welds explained"))
        st.session_state[f"{K}_good"] = (ck, got, baseline, target)
    except InputError as e:
        st.error(str(e))
    finally:
        bar.empty()
if exp is None and st.session_state.get(f"{K}_good"):
    ck, got, baseline, target = st.session_state[f"{K}_good"]
    exp = state.explain_welds(ck, got[0], baseline=baseline, target=target)
    st.caption("Showing the last run that worked.")
if exp is None:
    st.info("Choose a checkpoint and a folder or zip of welds in the sidebar.")
    st.stop()

welds, label = got
st.caption(f"{len(welds)} welds from {label} · checkpoint {ck.info.path} ({ck.info.sha256[:12]}) · "
           f"target `{exp.target}` · absent = `{exp.baseline}`")


def weld_table(exp, welds) -> pd.DataFrame:
    """One row per weld: truth, prediction, Shapley per modality, top modality and, when the
    truth gives defect windows, the share of relevance inside them (and the share by chance)."""
    rows = []
    for b, w in enumerate(welds):
        truth = (w.truth or {}).get("class_name") or w.class_name
        row = {"weld": w.weld_id, "class": truth or "unknown", "prediction": exp.predicted(b)}
        row["correct"] = (row["prediction"] == truth) if truth and row["prediction"] is not None else None
        for j, m in enumerate(MODALITIES):
            row[f"φ {m}"] = float(exp.contributions["shapley"][b, j])
        row["top"] = exp.top_modality(b)
        windows = (w.truth or {}).get("windows") or []
        duration = float((w.truth or {}).get("duration_s") or w.duration)
        chance = np.nan
        for m in TIME_MODALITIES:
            share = np.nan
            pos = positions_of(exp, m, b)
            if windows and m in exp.relevance and pos is not None and exp.present[b, MODALITIES.index(m)]:
                share, chance = mass_in_windows(exp.relevance[m][b], pos, windows, duration)
            row[f"in window: {m}"] = share
        row["window share"] = chance
        row["missing"] = ", ".join(exp.missing(b))
        rows.append(row)
    return pd.DataFrame(rows)


table = weld_table(exp, welds)
known = table["correct"].dropna()
m = st.columns(3)
m[0].metric("Welds", len(table))
if len(known):
    m[1].metric("Accuracy (where the class is known)", f"{known.mean():.0%}")
m[2].metric("Most frequent top modality", table["top"].mode().iloc[0])

st.subheader("Per weld")
st.caption("Select a row to open that weld in Explore. φ: exact Shapley value. In window: share of the "
           "gradient-weighted relevance on tokens inside the planted defect's time windows; compare with the "
           "windows' share of the weld (chance).")
num = {c: st.column_config.NumberColumn(format="%.3f", help=f"exact Shapley value of {c[2:]}")
       for c in table.columns if c.startswith("φ ")}
num.update({c: st.column_config.NumberColumn(format="%.2f", help=f"share of {c[11:]} relevance inside the defect windows")
            for c in table.columns if c.startswith("in window")})
num["window share"] = st.column_config.NumberColumn(format="%.2f", help="the windows' share of the weld (chance level)")
num["top"] = st.column_config.TextColumn(help="modality with the largest Shapley value")
sel = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row", key=f"{K}_table",
                   column_config=num, height=min(460, 38 + 35 * len(table)))
rows = sel.selection.rows if sel is not None else []
if rows:
    r = int(rows[0])
    w = welds[r]
    if st.button(f"Open {w.weld_id} in Explore", type="primary", key=f"{K}_open"):
        in_data = w.weld_id in {p.name for p in state.list_weld_folders()} and \
            str(state.data_dir()) in str(w.source)
        ckpt_name = next((p.name for p in state.list_checkpoints() if state.display_path(p) == ck.info.path), None)
        request_explore(weld_path=w.weld_id if in_data else None, weld=None if in_data else w,
                        ckpt_name=ckpt_name, ckpt=None if ckpt_name else ck)
        st.switch_page("pages/explore.py")

st.subheader("Contributions by class")
mc = st.columns(3)[0].selectbox("Method", list(exp.contributions), format_func=lambda x: F.METHOD_LABELS.get(x, x),
                  key=f"{K}_method")
long = pd.DataFrame([{"weld": w.weld_id, "class": table["class"].iloc[b], "modality": m_,
                      "value": float(exp.contributions[mc][b, j])}
                     for b, w in enumerate(welds) for j, m_ in enumerate(MODALITIES) if exp.present[b, j]])
fig = F.contributions_by_class_figure(long, title=f"{F.METHOD_LABELS.get(mc, mc)} by class")
fig.update_yaxes(title_text=F.METHOD_LABELS.get(mc, mc))
st.plotly_chart(fig, key=f"{K}_by_class", **CHART)

st.subheader("Export")
e = st.columns(3)
e[0].download_button("Table (CSV)", lambda: table.to_csv(index=False).encode(), file_name="welds.csv",
                     mime="text/csv", on_click="ignore", key=f"{K}_dl_csv")
e[1].download_button("Contributions (CSV)", lambda: exp.contributions_frame().to_csv(index=False).encode(),
                     file_name="contributions.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_contrib")
e[2].download_button("Figure as HTML", lambda: F.figure_html(fig).encode(), file_name="contributions_by_class.html",
                     mime="text/html", on_click="ignore", key=f"{K}_dl_fig")
