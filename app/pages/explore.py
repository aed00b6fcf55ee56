"""Explore: one weld, one checkpoint — contributions, attention maps, the raw weld, faithfulness."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import streamlit as st

from fusion_core.errors import InputError
from fusion_core.explain.engine import BASELINES
from fusion_core.explain.targets import TARGETS
from fusion_core.vocab import MODALITIES
from fusion_core.explain.sanity import method_agreement, randomization_test

from app import figures as F
from app import state, widgets
from app.ui import CHART, apply_request, explain_input, positions_of, target_options

K = "explore"
VALUE_LABEL = {"attention": "attention", "value": "‖α·v‖", "relevance": "relevance"}
CELL = f"{K}_cell"

apply_request(K)


def _take_clicks() -> None:
    """Heatmap overlay clicks → `explore_cell` (modality, token, positions).

    Each heatmap's selection lives in session state under its key; whichever changed since
    the last run is the newest click. Read before the heatmaps are drawn, so the clicked
    cell is outlined in this very run."""
    for m in MODALITIES:
        sel = st.session_state.get(f"{K}_hm_{m}")
        try:
            points = list(sel["selection"]["points"]) if sel else []
        except (KeyError, TypeError):
            points = []
        sig = json.dumps(points, sort_keys=True, default=str)
        if sig != st.session_state.get(f"{K}_seen_{m}", "[]"):
            st.session_state[f"{K}_seen_{m}"] = sig
            cell = F.cell_from_point(points[0]) if points else None
            if cell:
                st.session_state[CELL] = {"modality": m, **cell}


# --------------------------------------------------------------------------- inputs

with st.sidebar:
    st.subheader("Checkpoint")
    ck = widgets.checkpoint_picker(K, default="demo-best", query_param="checkpoint")
    st.subheader("Weld")
    wi = widgets.weld_picker(K, query_param="weld")
    st.subheader("Explanation")
    targets = target_options(ck)
    target = st.selectbox("Target", targets, key=f"{K}_target",
                          help="\n\n".join(f"**{k}**: {v}" for k, v in TARGETS.items()))

header = st.container()
contrib = st.container()
with contrib:
    st.subheader("Modality contributions")
    bc = st.columns([2, 3])
    baseline = bc[0].selectbox("An absent modality means", list(BASELINES), key=f"{K}_baseline",
                               format_func=lambda b: f"{b}: {BASELINES[b]}")

exp = None
if ck is not None and wi is not None:
    try:
        with st.spinner("Explaining…"):
            exp = explain_input(ck, wi, baseline, target)
        st.session_state[f"{K}_good"] = (ck, wi, baseline, target)
    except InputError as e:
        with header:
            st.error(str(e))
if exp is None and st.session_state.get(f"{K}_good"):
    ck, wi, baseline, target = st.session_state[f"{K}_good"]
    exp = explain_input(ck, wi, baseline, target)
    with header:
        st.caption(f"Showing the last explanation that worked: {wi.label} with {ck.info.path}.")
if exp is None:
    with header:
        st.title("Explore")
        st.info("Choose a checkpoint and a weld in the sidebar.")
    st.stop()

weld = wi.weld
b = 0
figs: dict[str, object] = {}
shown = f"{wi.key}:{state.ckpt_key(ck)}"
if st.session_state.get(f"{K}_shown") != shown:      # another weld or model: the old cell means nothing
    st.session_state[f"{K}_shown"] = shown
    st.session_state.pop(CELL, None)

# --------------------------------------------------------------------------- header

with header:
    h = st.columns([3, 2])
    with h[0]:
        st.title(f"Weld {exp.ids[b]}")
        truth = None
        if weld is not None:
            truth = (weld.truth or {}).get("class_name") or weld.class_name
        pred = exp.predicted(b)
        if pred is not None:
            p = float(exp.probabilities[b].max())
            mark = "" if truth is None else (" :green[(right)]" if truth == pred else " :red[(wrong)]")
            st.markdown(f"**Prediction:** {pred} ({p:.0%}){mark}" + (f" · **truth:** {truth}" if truth else ""))
        else:
            st.markdown(f"**Target:** {exp.target} = {exp.target_values[b]:.4g}"
                        + (f" · **truth:** {truth}" if truth else ""))
        st.caption(f"Explained for target `{exp.target}`; an absent modality is `{exp.baseline}`. "
                   f"Checkpoint {ck.info.path} ({ck.info.sha256[:12]}).")
        if weld is not None and weld.truth and weld.truth.get("windows"):
            w_txt = ", ".join(f"{a:.2f}–{z:.2f} s" for a, z in weld.truth["windows"])
            st.caption(f"Planted defect in {', '.join(weld.truth.get('modalities', [])) or '—'} at {w_txt} "
                       "(shaded on the raw-weld views).")
        missing = exp.missing(b)
        if missing:
            st.warning(f"Absent in this weld: {', '.join(missing)}. Their contribution is 0 by construction.")
        for note in exp.notes:
            st.info(note)
    with h[1]:
        if exp.logits is not None:
            names = exp.class_names or [str(i) for i in range(exp.logits.shape[1])]
            figs["prediction"] = F.prediction_figure(names, exp.probabilities[b], truth)
            st.plotly_chart(figs["prediction"], key=f"{K}_pred", **CHART)

# --------------------------------------------------------------------------- contributions

with contrib:
    methods = ["shapley", "leave_one_out", "attention"] if exp.has_attention else ["shapley", "leave_one_out"]
    if exp.has_attention and bc[1].toggle("Also show the relevance share", key=f"{K}_relevance_share"):
        methods.append("relevance")
    c = st.columns([3, 2])
    figs["contributions"] = F.contribution_bars({k: v[b] for k, v in exp.contributions.items()}, exp.present[b],
                                                methods=methods, baseline=exp.baseline,
                                                efficiency_gap=float(exp.efficiency_gap[b]))
    c[0].plotly_chart(figs["contributions"], key=f"{K}_bars", **CHART)
    if exp.token_shapley.shape[1]:
        figs["token_contributions"] = F.token_contribution_figure(exp.token_shapley[b], exp.present[b])
        c[1].plotly_chart(figs["token_contributions"], key=f"{K}_token_bars", **CHART)

# --------------------------------------------------------------------------- attention maps

maps: dict[str, np.ndarray] = {}
robust = False
token = "mean"
cscale = "Viridis"
method = "attention"
full_res = False
if exp.has_attention:
    st.subheader("Attention maps: fusion token × position")
    n_heads = next(iter(exp.attention.values())).shape[1]
    T = next(iter(exp.attention.values())).shape[2]
    c = st.columns([1, 1.3, 1.2, 1, 1.3])
    method = c[1].selectbox("Map", list(F.MAP_METHODS), format_func=F.MAP_METHODS.get, key=f"{K}_method")
    head = c[0].selectbox("Head", ["mean"] + list(range(n_heads)), key=f"{K}_head",
                          format_func=lambda h: "mean of heads" if h == "mean" else f"head {h}",
                          disabled=method == "relevance",
                          help="Relevance (Chefer et al. 2021) is already a mean over heads.")
    token = c[2].selectbox("Token for the raw-weld views", ["mean"] + list(range(T)), key=f"{K}_token",
                           format_func=lambda t: "all tokens (mean)" if t == "mean" else f"token {t}")
    cscale = c[3].selectbox("Colour scale", F.COLORSCALES, key=f"{K}_colorscale")
    shared = c[4].toggle("One scale for all modalities", value=False, key=f"{K}_shared",
                         help="Off: each map has its own range. On: one range over all four.")
    robust = c[3].toggle("Clip outliers", value=True, key=f"{K}_robust",
                         help="Colour range from the 5th to the 95th percentile, so a few extreme cells "
                              "(often the first and last positions) do not flatten the rest; hover shows true values.")
    full_res = c[4].toggle("Full resolution", value=False, key=f"{K}_full",
                           help="Send every position and sample to the browser (slower for long sequences).")
    maps = {m: F.token_map(exp, b, m, head, method) for m in MODALITIES
            if m in exp.attention and exp.present[b, MODALITIES.index(m)]}
    ranges = ({m: F.shared_range(maps, robust) for m in maps} if shared
              else {m: F.shared_range([z], robust) for m, z in maps.items()})
    _take_clicks()
    cell = st.session_state.get(CELL)
    if cell and (cell.get("modality") not in maps or cell["s1"] >= maps[cell["modality"]].shape[1]
                 or cell["token"] >= T):
        cell = None
    cols = st.columns(2)
    for i, m in enumerate(MODALITIES):
        with cols[i % 2]:
            if m not in maps:
                st.info(f"**{m}**: absent in this weld — no attention to show.")
                continue
            fig = F.attention_heatmap(
                maps[m], positions_of(exp, m, b), title=m, zmin=ranges[m][0], zmax=ranges[m][1],
                colorscale=cscale, value_label=VALUE_LABEL[method],
                max_cols=None if full_res else F.HEATMAP_MAX_COLS,
                selected=(cell["token"], cell["s0"]) if cell and cell["modality"] == m else None)
            figs[f"heatmap_{m}"] = fig
            st.plotly_chart(fig, key=f"{K}_hm_{m}", on_select="rerun", selection_mode="points",
                            **CHART)

    # ----------------------------------------------------------------------- selected cell
    if cell:
        m, tok, s0, s1 = cell["modality"], cell["token"], cell["s0"], cell["s1"]
        pos = positions_of(exp, m, b)
        st.markdown(f"#### Selected: {m}, token {tok} — {F.describe_position(pos, s0, s1)}")
        st.session_state[f"{K}_cell_text"] = f"{m} token {tok} {F.describe_position(pos, s0, s1)}"
        d = st.columns([1, 2])
        per_head = {"attention": exp.attention[m][b][:, tok, s0:s1 + 1].sum(-1),
                    "value-weighted": exp.value_norms[m][b][:, tok, s0:s1 + 1].sum(-1)}
        d[0].plotly_chart(F.head_values_figure(per_head, title="this cell, per head"), key=f"{K}_cell_heads",
                          **CHART)
        with d[1]:
            if weld is None or pos is None:
                st.caption("No raw weld behind a feature file: only the numbers above.")
            elif m == "video" and weld.video is not None:
                rows = pos.iloc[s0:s1 + 1]
                st.plotly_chart(F.frames_figure(weld.video, weld.video_times, int(rows["frame0"].min()),
                                                int(rows["frame1"].max()), rows.to_dict("records"),
                                                title="frames of this token's time bin, patch outlined"),
                                key=f"{K}_cell_raw", **CHART)
            elif m == "image" and weld.images:
                rows = pos.iloc[s0:s1 + 1].copy()
                j = int(rows["image"].iloc[0])
                rows["image"] = 0
                regions = [dict(r, image=0) for r in (weld.truth or {}).get("regions", []) if r.get("image") == j]
                st.plotly_chart(F.photos_figure([weld.images[j]], None, rows.reset_index(drop=True),
                                                image_sizes=weld.image_sizes[j:j + 1], regions=regions,
                                                highlight=(0, len(rows) - 1), labels=[f"photo {j + 1}"],
                                                title="the patch on the photo"),
                                key=f"{K}_cell_raw", **CHART)
            elif m in ("audio", "sensor") and pos is not None:
                t0, t1 = float(pos["t0"].iloc[s0]), float(pos["t1"].iloc[s1])
                pad = max(0.5, 2 * (t1 - t0))
                rng = (max(0.0, t0 - pad), t1 + pad)
                if m == "audio" and weld.audio is not None:
                    st.plotly_chart(F.audio_figure(weld.audio, weld.sample_rate, view="spectrogram", t_range=rng,
                                                   windows=[(t0, t1)], max_points=4000,
                                                   title=f"audio around {t0:.2f}–{t1:.2f} s (span shaded)"),
                                    key=f"{K}_cell_raw", **CHART)
                elif m == "sensor" and weld.sensor is not None:
                    st.plotly_chart(F.sensor_figure(weld.sensor, t_range=rng, windows=[(t0, t1)], max_points=None,
                                                    title=f"sensor around {t0:.2f}–{t1:.2f} s (span shaded)"),
                                    key=f"{K}_cell_raw", **CHART)
                    inside = weld.sensor[(weld.sensor["t"] >= t0) & (weld.sensor["t"] < t1)]
                    st.dataframe(inside, hide_index=True, height=150)
    else:
        st.caption("Click a heatmap cell to see that moment or region of the weld here.")
else:
    st.info("This checkpoint has no attention (mean-pool fusion): only the contributions above apply.")

# --------------------------------------------------------------------------- raw weld

if weld is not None:
    st.subheader("Attention on the raw weld")
    band_label = "attention" if not maps else (f"{VALUE_LABEL[method]}, " + ("mean of tokens" if token == "mean"
                                                                              else f"token {token}"))

    def weights(m: str) -> np.ndarray | None:
        if m not in maps:
            return None
        z = maps[m]
        return z.mean(0) if token == "mean" else z[int(token)]

    windows = (weld.truth or {}).get("windows") or []
    dur = float(max(weld.duration, 1e-3))
    rc = st.columns([2, 1])
    zoom = rc[0].slider("Time window (s)", 0.0, round(dur, 2), (0.0, round(dur, 2)), step=0.05,
                        key=f"{K}_zoom_{wi.key[:12]}",
                        help="Narrow it to see the signals at full resolution.")
    audio_view = rc[1].radio("Audio", ["waveform", "spectrogram"], horizontal=True, key=f"{K}_audio_view")
    t_range = None if zoom == (0.0, round(dur, 2)) else (float(zoom[0]), float(zoom[1]))
    max_pts = None if full_res else F.SIGNAL_MAX_POINTS
    r1 = st.columns(2)
    with r1[0]:
        if weld.sensor is not None:
            figs["sensor"] = F.sensor_figure(weld.sensor, weights("sensor"), positions_of(exp, "sensor", b),
                                             windows=windows, t_range=t_range, max_points=max_pts,
                                             colorscale=cscale, band_label=band_label, robust=robust,
                                             title=f"sensor log · band: {band_label}")
            st.plotly_chart(figs["sensor"], key=f"{K}_sensor", **CHART)
        else:
            st.info("No sensor log in this weld.")
    with r1[1]:
        if weld.audio is not None:
            figs["audio"] = F.audio_figure(weld.audio, weld.sample_rate, weights("audio"),
                                           positions_of(exp, "audio", b), view=audio_view, windows=windows,
                                           t_range=t_range, max_points=max_pts, colorscale=cscale, robust=robust,
                                           band_label=band_label, title=f"audio {audio_view} · band: {band_label}")
            st.plotly_chart(figs["audio"], key=f"{K}_audio", **CHART)
        else:
            st.info("No audio in this weld.")
        if weld.images:
            figs["photos"] = F.photos_figure(weld.images, weights("image"), positions_of(exp, "image", b),
                                             image_sizes=weld.image_sizes,
                                             regions=(weld.truth or {}).get("regions", []), colorscale=cscale,
                                             value_label=VALUE_LABEL[method], px_width=620,
                                             title="photos: attention per patch (truth regions dashed)")
            st.plotly_chart(figs["photos"], key=f"{K}_photos", **CHART)
        else:
            st.info("No photos in this weld.")
    vpos = positions_of(exp, "video", b)
    if weld.video is not None and vpos is not None:
        figs["video"] = F.video_strip_figure(weld.video, weights("video") if "video" in maps else np.zeros(len(vpos)),
                                             vpos, colorscale=cscale, value_label=VALUE_LABEL[method], px_width=1150,
                                             title="video: one frame per time bin, attention per patch")
        st.plotly_chart(figs["video"], key=f"{K}_video", **CHART)

else:
    st.caption("A feature file carries no raw weld: the raw-weld views need a weld folder, a zip or the weld's files.")

# --------------------------------------------------------------------------- faithfulness

st.subheader("Faithfulness")
st.caption("Do the methods rank the modalities alike, and do the explanations depend on the weights? "
           "Randomizing the weights (Adebayo et al. 2018) should change a faithful explanation; "
           "a map that stays the same explains nothing about this model.")
fc = st.columns([2, 3])
figs["method_agreement"] = F.agreement_figure(method_agreement(exp, b))
fc[0].plotly_chart(figs["method_agreement"], key=f"{K}_agreement", **CHART)
try:
    with st.spinner("Explaining with randomized weights…"):
        exp_r = explain_input(state.randomized_checkpoint(ck), wi, baseline, target)
    rt = randomization_test(exp, exp_r, b)
    figs["randomization"] = F.randomization_figure(rt.similarity, rt.contributions)
    fc[1].plotly_chart(figs["randomization"], key=f"{K}_random", **CHART)
    if maps:
        pick = st.columns(3)[0].selectbox("Map beside its randomized-weights twin", list(maps),
                                          key=f"{K}_random_modality")
        rand = F.token_map(exp_r, b, pick, head, method)
        figs["randomized_twin"] = F.twin_heatmaps(maps[pick], rand, positions_of(exp, pick, b), colorscale=cscale,
                                                  value_label=VALUE_LABEL[method],
                                                  titles=(f"{pick}: real weights", f"{pick}: randomized weights"))
        st.plotly_chart(figs["randomized_twin"], key=f"{K}_twin", **CHART)
except InputError as e:
    fc[1].error(str(e))

# --------------------------------------------------------------------------- export

st.subheader("Export")


def _json_bytes() -> bytes:
    payload = exp.to_json_dict()
    entry = payload["results"][b]
    entry["positions"] = {m: (p[b].to_dict(orient="records") if p and p[b] is not None else [])
                          for m, p in exp.positions.items()}
    entry["checkpoint"] = {"path": ck.info.path, "sha256": ck.info.sha256}
    if weld is not None:
        entry["weld"] = {"id": weld.weld_id, "digest": weld.digest, "truth": weld.truth}
    return json.dumps(payload, default=float).encode()


def _csv_bytes() -> bytes:
    frames = [exp.contributions_frame().assign(kind="modality")]
    t = exp.token_contributions_frame().assign(kind="token", method="shapley")
    frames.append(t)
    return pd.concat(frames, ignore_index=True).to_csv(index=False).encode()


def _attention_csv() -> bytes:
    frames = [exp.attention_frame(b, m).assign(modality=m) for m in exp.attention]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()).to_csv(index=False).encode()


def _all_figures_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, fig in figs.items():
            z.writestr(f"{exp.ids[b]}_{name}.html", F.figure_html(fig))
    return buf.getvalue()


stem = f"{exp.ids[b]}_{ck.info.sha256[:8]}"
e = st.columns(4)
e[0].download_button("Explanation (JSON)", _json_bytes, file_name=f"{stem}.json", mime="application/json",
                     on_click="ignore", key=f"{K}_dl_json")
e[1].download_button("Contributions (CSV)", _csv_bytes, file_name=f"{stem}_contributions.csv", mime="text/csv",
                     on_click="ignore", key=f"{K}_dl_csv")
e[2].download_button("Attention maps (CSV)", _attention_csv, file_name=f"{stem}_attention.csv", mime="text/csv",
                     on_click="ignore", key=f"{K}_dl_att")
e[3].download_button("All figures (HTML, zip)", _all_figures_zip, file_name=f"{stem}_figures.zip",
                     mime="application/zip", on_click="ignore", key=f"{K}_dl_figs")
fe = st.columns([2, 1, 1])
fig_name = fe[0].selectbox("Figure", list(figs), key=f"{K}_fig_pick", label_visibility="collapsed")
fe[1].download_button("Figure as HTML", lambda: F.figure_html(figs[fig_name]).encode(),
                      file_name=f"{stem}_{fig_name}.html", mime="text/html", on_click="ignore", key=f"{K}_dl_fig")
fe[2].caption("Standalone HTML with plotly.js inside: opens offline.")
