"""Explore: one weld, one checkpoint — contributions, attention maps, the raw weld, faithfulness.

The sidebar picks the checkpoint, the weld and the target; the explanation is computed (or
taken from the cache) once per run. Everything below the contributions depends only on
that explanation and the display controls (head, map, token, colour scale, clicks, zoom),
so it is one fragment (`views`): changing a display control reruns that part alone.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.navigation.page import StreamlitPage

from fusion_core.errors import InputError
from fusion_core.explain.engine import BASELINES, MAP_KINDS, Explanation
from fusion_core.explain.sanity import method_agreement, randomization_test
from fusion_core.explain.targets import TARGETS
from fusion_core.explain.views import describe_position, positions_of, shared_range
from fusion_core.io.weld import Weld
from fusion_core.models.checkpoint import LoadedCheckpoint
from fusion_core.vocab import MODALITIES

from app import figures as figs
from app import services, state, widgets
from app.widgets import WeldInput

K = "explore"
CELL = f"{K}_cell"
B = 0                       # the page explains one weld: sample 0 of the explanation


def page() -> StreamlitPage:
    """This page, for st.navigation and st.switch_page (the default page, at /)."""
    return st.Page(explore_page, title="Explore", url_path="explore", default=True)


def open_in_explore(**what) -> None:
    """Switch to Explore showing this weld with this checkpoint (see `widgets.request`)."""
    widgets.request(K, **what)
    st.switch_page(page())


def explore_page() -> None:
    state.restore(K)
    widgets.apply_request(K)
    ck, wi, target = sidebar()
    problems, header, contrib = st.container(), st.container(), st.container()
    with problems:
        widgets.main_area_problems()
    with contrib:
        st.subheader("Modality contributions")
        bc = st.columns([2, 3])
        state.from_url(f"{K}_baseline", "baseline", list(BASELINES))
        baseline = bc[0].selectbox("An absent modality means", list(BASELINES), key=f"{K}_baseline",
                                   format_func=lambda b: f"{b}: {BASELINES[b]}")
    got = explanation(header, ck, wi, baseline, target)
    state.remember(K)
    state.write_url(K)
    if got is None:
        return
    exp, ck, wi, baseline, target = got
    shown = f"{wi.key}:{services.ckpt_key(ck)}"
    if st.session_state.get(f"{K}_shown") != shown:      # another weld or model: the old cell means nothing
        st.session_state[f"{K}_shown"] = shown
        st.session_state.pop(CELL, None)
    drawn: dict = {}
    with header:
        weld_header(exp, ck, wi.weld, drawn)
    with contrib:
        contributions(exp, bc[1], drawn)
    views(ck, wi, exp, baseline, target, drawn)


# --------------------------------------------------------------------------- inputs

def sidebar() -> tuple[LoadedCheckpoint | None, WeldInput | None, str]:
    with st.sidebar:
        st.subheader("Checkpoint")
        ck = widgets.checkpoint_picker(K, default="demo-best", query_param="checkpoint")
        st.subheader("Weld")
        wi = widgets.weld_picker(K, query_param="weld")
        st.subheader("Explanation")
        state.from_url(f"{K}_target", "target", widgets.target_options(ck))
        target = st.selectbox("Target", widgets.target_options(ck), key=f"{K}_target",
                              help="\n\n".join(f"**{k}**: {v}" for k, v in TARGETS.items()))
        state.copy_link(K)
    return ck, wi, target


def explanation(header, ck, wi, baseline: str, target: str) -> tuple | None:
    """(explanation, checkpoint, weld input, baseline, target) of the inputs; after an error
    (shown in `header`) those of the last inputs that worked; None before any worked."""
    exp = None
    if ck is not None and wi is not None:
        try:
            with st.spinner("Explaining…"):
                exp = services.explain_input(ck, wi, baseline, target)
            st.session_state[f"{K}_good"] = (ck, wi, baseline, target)
        except InputError as e:
            with header:
                st.error(str(e))
    if exp is None and st.session_state.get(f"{K}_good"):
        ck, wi, baseline, target = st.session_state[f"{K}_good"]
        exp = services.explain_input(ck, wi, baseline, target)
        with header:
            st.caption(f"Showing the last explanation that worked: {wi.label} with {ck.info.path}.")
    if exp is None:
        with header:
            st.title("Explore")
            st.info("Choose a checkpoint and a weld in the sidebar.")
        return None
    return exp, ck, wi, baseline, target


# --------------------------------------------------------------------------- header and contributions

def weld_header(exp: Explanation, ck: LoadedCheckpoint, weld: Weld | None, drawn: dict) -> None:
    h = st.columns([3, 2])
    truth = ((weld.truth or {}).get("class_name") or weld.class_name) if weld is not None else None
    with h[0]:
        st.title(f"Weld {exp.ids[B]}")
        pred = exp.predicted(B)
        if pred is not None:
            p = float(exp.probabilities[B].max())
            mark = "" if truth is None else (" :green[(right)]" if truth == pred else " :red[(wrong)]")
            st.markdown(f"**Prediction:** {pred} ({p:.0%}){mark}" + (f" · **truth:** {truth}" if truth else ""))
        else:
            st.markdown(f"**Target:** {exp.target} = {exp.target_values[B]:.4g}"
                        + (f" · **truth:** {truth}" if truth else ""))
        st.caption(f"Explained for target `{exp.target}`; an absent modality is `{exp.baseline}`. "
                   f"Checkpoint {ck.info.path} ({ck.info.sha256[:12]}).")
        if weld is not None and weld.truth and weld.truth.get("windows"):
            w_txt = ", ".join(f"{a:.2f}–{z:.2f} s" for a, z in weld.truth["windows"])
            st.caption(f"Planted defect in {', '.join(weld.truth.get('modalities', [])) or '—'} at {w_txt} "
                       "(shaded on the raw-weld views).")
        missing = exp.missing(B)
        if missing:
            st.warning(f"Absent in this weld: {', '.join(missing)}. Their contribution is 0 by construction.")
        for note in exp.notes:
            st.info(note)
    with h[1]:
        if exp.logits is not None:
            names = exp.class_names or [str(i) for i in range(exp.logits.shape[1])]
            drawn["prediction"] = figs.prediction_figure(names, exp.probabilities[B], truth)
            st.plotly_chart(drawn["prediction"], key=f"{K}_pred", **figs.CHART)


def contributions(exp: Explanation, toggle_at, drawn: dict) -> None:
    """Bars per contribution method (relevance share on request) and Shapley per fusion token."""
    methods = [m for m in exp.contributions if m != "relevance"]
    if exp.has_attention and toggle_at.toggle("Also show the relevance share", key=f"{K}_relevance_share"):
        methods.append("relevance")
    c = st.columns([3, 2])
    drawn["contributions"] = figs.contribution_bars({k: v[B] for k, v in exp.contributions.items()},
                                                    exp.present[B], methods=methods, baseline=exp.baseline,
                                                    efficiency_gap=float(exp.efficiency_gap[B]))
    c[0].plotly_chart(drawn["contributions"], key=f"{K}_bars", **figs.CHART)
    if exp.token_shapley.shape[1]:
        drawn["token_contributions"] = figs.token_contribution_figure(exp.token_shapley[B], exp.present[B])
        c[1].plotly_chart(drawn["token_contributions"], key=f"{K}_token_bars", **figs.CHART)


# --------------------------------------------------------------------------- display-driven views

@dataclass
class MapView:
    """The display controls' choices and the maps they give (one (T, S) array per modality)."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    kind: str = "attention"
    head: str | int = "mean"
    token: str | int = "mean"
    cscale: str = "Viridis"
    shared: bool = False
    robust: bool = False
    full_res: bool = False
    assumed: bool = False                 # the checkpoint's head count is a guess

    @property
    def value_label(self) -> str:
        return figs.MAP_VALUE_LABELS[self.kind]

    def weights(self, m: str) -> np.ndarray | None:
        """Per position of modality m: the chosen token's map row (or the mean of tokens)."""
        if m not in self.maps:
            return None
        z = self.maps[m]
        return z.mean(0) if self.token == "mean" else z[int(self.token)]


@st.fragment
def views(ck: LoadedCheckpoint, wi: WeldInput, exp: Explanation, baseline: str, target: str, drawn: dict) -> None:
    """Attention maps, the clicked cell, the raw weld, faithfulness and export (`drawn`: the
    figures above, for the export)."""
    drawn = dict(drawn)
    view = MapView()
    if exp.has_attention:
        st.subheader("Attention maps: fusion token × position")
        view = map_controls(exp, widgets.heads_assumed(ck))
        cell = heatmaps(exp, view, drawn)
        if cell:
            cell_detail(exp, wi.weld, cell, view.assumed)
        else:
            st.caption("Click a heatmap cell to see that moment or region of the weld here.")
    else:
        st.info("This checkpoint has no attention (mean-pool fusion): only the contributions above apply.")
    if wi.weld is not None:
        raw_weld(exp, wi, view, drawn)
    else:
        st.caption("A feature file carries no raw weld: the raw-weld views need a weld folder, a zip or the "
                   "weld's files.")
    faithfulness(ck, wi, exp, (baseline, target), view, drawn)
    export(exp, ck, wi.weld, drawn)
    state.remember(K)               # a display change reruns this fragment alone: keep it and link it
    state.write_url(K)


def map_controls(exp: Explanation, assumed: bool = False) -> MapView:
    n_heads = next(iter(exp.attention.values())).shape[1]
    T = next(iter(exp.attention.values())).shape[2]
    c = widgets.control_row()
    w = widgets.CONTROL_WIDTH
    state.from_url(f"{K}_method", "map", list(MAP_KINDS))
    state.from_url(f"{K}_head", "head", ["mean"] + list(range(n_heads)))
    state.from_url(f"{K}_token", "token", ["mean"] + list(range(T)))
    head_box = c.container(width=w)             # Head first on the row, though it depends on Map
    kind = widgets.map_kind_picker(c, f"{K}_method", width=w)
    head = widgets.head_picker(head_box, f"{K}_head", n_heads, assumed=assumed, disabled=kind == "relevance",
                               help="Relevance (Chefer et al. 2021) is already a mean over heads.")
    token = c.selectbox("Token for the raw-weld views", ["mean"] + list(range(T)), key=f"{K}_token", width=w,
                        format_func=lambda t: "all tokens (mean)" if t == "mean" else f"token {t}")
    cscale = c.selectbox("Colour scale", figs.COLORSCALES, key=f"{K}_colorscale", width=w)
    t = widgets.control_row()
    shared = t.toggle("One scale for all modalities", value=False, key=f"{K}_shared",
                      help="Off: each map has its own range. On: one range over all four.")
    robust = t.toggle("Clip outliers", value=True, key=f"{K}_robust",
                      help="Colour range from the 5th to the 95th percentile, so a few extreme cells "
                           "(often the first and last positions) do not flatten the rest; hover shows true values.")
    full_res = t.toggle("Full resolution", value=False, key=f"{K}_full",
                        help="Send every position and sample to the browser (slower for long sequences).")
    maps = {m: exp.token_map(B, m, head, kind) for m in MODALITIES
            if m in exp.attention and exp.present[B, MODALITIES.index(m)]}
    return MapView(maps, kind, head, token, cscale, shared, robust, full_res, assumed)


def take_clicks() -> None:
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
            cell = figs.cell_from_point(points[0]) if points else None
            if cell:
                st.session_state[CELL] = {"modality": m, **cell}


def heatmaps(exp: Explanation, view: MapView, drawn: dict) -> dict | None:
    """One clickable heatmap per modality; returns the selected cell (None: none, or stale)."""
    maps = view.maps
    if view.shared:
        ranges = {m: shared_range(maps, view.robust) for m in maps}
    else:
        ranges = {m: shared_range([z], view.robust) for m, z in maps.items()}
    take_clicks()
    cell = st.session_state.get(CELL)
    T = next(iter(exp.attention.values())).shape[2]
    if cell and (cell.get("modality") not in maps or cell["s1"] >= maps[cell["modality"]].shape[1]
                 or cell["token"] >= T):
        cell = None
    cols = st.columns(2)
    for i, m in enumerate(MODALITIES):
        with cols[i % 2]:
            if m not in maps:
                st.info(f"**{m}**: absent in this weld — no attention to show.")
                continue
            fig = figs.attention_heatmap(
                maps[m], positions_of(exp, m, B), title=map_title(m, view), zmin=ranges[m][0], zmax=ranges[m][1],
                colorscale=view.cscale, value_label=view.value_label,
                max_cols=None if view.full_res else figs.HEATMAP_MAX_COLS,
                selected=(cell["token"], cell["s0"]) if cell and cell["modality"] == m else None)
            drawn[f"heatmap_{m}"] = fig
            st.plotly_chart(fig, key=f"{K}_hm_{m}", on_select="rerun", selection_mode="points", **figs.CHART)
    return cell


def map_title(m: str, view: MapView) -> str:
    """The heatmap's title: the modality, and the head when one head of an assumed count is shown."""
    if view.head == "mean" or view.kind == "relevance" or not view.assumed:
        return m
    return f"{m} · head {view.head} ({widgets.ASSUMED_HEADS})"


def cell_detail(exp: Explanation, weld: Weld | None, cell: dict, assumed: bool = False) -> None:
    """The selected cell: its values per head, and the moment or region of the weld it covers."""
    m, tok, s0, s1 = cell["modality"], cell["token"], cell["s0"], cell["s1"]
    pos = positions_of(exp, m, B)
    where = describe_position(pos, s0, s1)
    st.markdown(f"#### Selected: {m}, token {tok} — {where}")
    st.session_state[f"{K}_cell_text"] = f"{m} token {tok} {where}"
    d = st.columns([1, 2])
    per_head = {"attention": exp.attention[m][B][:, tok, s0:s1 + 1].sum(-1),
                "value-weighted": exp.value_norms[m][B][:, tok, s0:s1 + 1].sum(-1)}
    d[0].plotly_chart(figs.head_values_figure(per_head, title="this cell, per head"
                                              + (f" ({widgets.ASSUMED_HEADS})" if assumed else "")), key=f"{K}_cell_heads",
                      **figs.CHART)
    with d[1]:
        if weld is None or pos is None:
            st.caption("No raw weld behind a feature file: only the numbers above.")
        elif m in ("video", "image"):
            cell_pictures(weld, m, pos, s0, s1)
        else:
            cell_signal(weld, m, pos, s0, s1)


def cell_pictures(weld: Weld, m: str, pos: pd.DataFrame, s0: int, s1: int) -> None:
    if m == "video" and weld.video is not None:
        rows = pos.iloc[s0:s1 + 1]
        st.plotly_chart(figs.frames_figure(weld.video, weld.video_times, int(rows["frame0"].min()),
                                           int(rows["frame1"].max()), rows.to_dict("records"),
                                           title="frames of this token's time bin, patch outlined"),
                        key=f"{K}_cell_raw", **figs.CHART)
    elif m == "image" and weld.images:
        rows = pos.iloc[s0:s1 + 1].copy()
        j = int(rows["image"].iloc[0])
        rows["image"] = 0
        regions = [dict(r, image=0) for r in (weld.truth or {}).get("regions", []) if r.get("image") == j]
        st.plotly_chart(figs.photos_figure([weld.images[j]], None, rows.reset_index(drop=True),
                                           image_sizes=weld.image_sizes[j:j + 1], regions=regions,
                                           highlight=(0, len(rows) - 1), labels=[f"photo {j + 1}"],
                                           title="the patch on the photo"),
                        key=f"{K}_cell_raw", **figs.CHART)


def cell_signal(weld: Weld, m: str, pos: pd.DataFrame, s0: int, s1: int) -> None:
    t0, t1 = float(pos["t0"].iloc[s0]), float(pos["t1"].iloc[s1])
    pad = max(0.5, 2 * (t1 - t0))
    rng = (max(0.0, t0 - pad), t1 + pad)
    if m == "audio" and weld.audio is not None:
        st.plotly_chart(figs.audio_figure(weld.audio, weld.sample_rate, view="spectrogram", t_range=rng,
                                          windows=[(t0, t1)], max_points=4000,
                                          title=f"audio around {t0:.2f}–{t1:.2f} s (span shaded)"),
                        key=f"{K}_cell_raw", **figs.CHART)
    elif m == "sensor" and weld.sensor is not None:
        st.plotly_chart(figs.sensor_figure(weld.sensor, t_range=rng, windows=[(t0, t1)], max_points=None,
                                           title=f"sensor around {t0:.2f}–{t1:.2f} s (span shaded)"),
                        key=f"{K}_cell_raw", **figs.CHART)
        inside = weld.sensor[(weld.sensor["t"] >= t0) & (weld.sensor["t"] < t1)]
        st.dataframe(inside, hide_index=True, height=150)


# --------------------------------------------------------------------------- raw weld

def raw_weld(exp: Explanation, wi: WeldInput, view: MapView, drawn: dict) -> None:
    weld = wi.weld
    st.subheader("Attention on the raw weld")
    band_label = "attention" if not view.maps else (
        f"{view.value_label}, " + ("mean of tokens" if view.token == "mean" else f"token {view.token}"))
    windows = (weld.truth or {}).get("windows") or []
    dur = float(max(weld.duration, 1e-3))
    rc = st.columns([2, 1])
    zoom = rc[0].slider("Time window (s)", 0.0, round(dur, 2), (0.0, round(dur, 2)), step=0.05,
                        key=f"{K}_zoom_{wi.key[:12]}", help="Narrow it to see the signals at full resolution.")
    audio_view = rc[1].radio("Audio", ["waveform", "spectrogram"], horizontal=True, key=f"{K}_audio_view")
    t_range = None if zoom == (0.0, round(dur, 2)) else (float(zoom[0]), float(zoom[1]))
    signal = dict(windows=windows, t_range=t_range, max_points=None if view.full_res else figs.SIGNAL_MAX_POINTS,
                  colorscale=view.cscale, band_label=band_label, robust=view.robust)
    r1 = st.columns(2)
    with r1[0]:
        if weld.sensor is not None:
            drawn["sensor"] = figs.sensor_figure(weld.sensor, view.weights("sensor"), positions_of(exp, "sensor", B),
                                                 title=f"sensor log · band: {band_label}", **signal)
            st.plotly_chart(drawn["sensor"], key=f"{K}_sensor", **figs.CHART)
        else:
            st.info("No sensor log in this weld.")
    with r1[1]:
        if weld.audio is not None:
            drawn["audio"] = figs.audio_figure(weld.audio, weld.sample_rate, view.weights("audio"),
                                               positions_of(exp, "audio", B), view=audio_view,
                                               title=f"audio {audio_view} · band: {band_label}", **signal)
            st.plotly_chart(drawn["audio"], key=f"{K}_audio", **figs.CHART)
        else:
            st.info("No audio in this weld.")
        raw_photos(exp, weld, view, drawn)
    vpos = positions_of(exp, "video", B)
    if weld.video is not None and vpos is not None:
        w = view.weights("video") if "video" in view.maps else np.zeros(len(vpos))
        drawn["video"] = figs.video_strip_figure(weld.video, w, vpos, colorscale=view.cscale,
                                                 value_label=view.value_label, px_width=1150,
                                                 title="video: one frame per time bin, attention per patch")
        st.plotly_chart(drawn["video"], key=f"{K}_video", **figs.CHART)


def raw_photos(exp: Explanation, weld: Weld, view: MapView, drawn: dict) -> None:
    if not weld.images:
        st.info("No photos in this weld.")
        return
    drawn["photos"] = figs.photos_figure(weld.images, view.weights("image"), positions_of(exp, "image", B),
                                         image_sizes=weld.image_sizes, regions=(weld.truth or {}).get("regions", []),
                                         colorscale=view.cscale, value_label=view.value_label, px_width=620,
                                         title="photos: attention per patch (truth regions dashed)")
    st.plotly_chart(drawn["photos"], key=f"{K}_photos", **figs.CHART)


# --------------------------------------------------------------------------- faithfulness

def faithfulness(ck: LoadedCheckpoint, wi: WeldInput, exp: Explanation, how: tuple[str, str], view: MapView,
                 drawn: dict) -> None:
    """Method agreement, and the same explanation (`how` = baseline, target) of a model
    with randomized weights beside the real one."""
    st.subheader("Faithfulness")
    st.caption("Do the methods rank the modalities alike, and do the explanations depend on the weights? "
               "Randomizing the weights (Adebayo et al. 2018) should change a faithful explanation; "
               "a map that stays the same explains nothing about this model.")
    fc = st.columns([2, 3])
    drawn["method_agreement"] = figs.agreement_figure(method_agreement(exp, B))
    fc[0].plotly_chart(drawn["method_agreement"], key=f"{K}_agreement", **figs.CHART)
    try:
        with st.spinner("Explaining with randomized weights…"):
            exp_r = services.explain_input(services.randomized_checkpoint(ck), wi, *how)
    except InputError as e:
        fc[1].error(str(e))
        return
    rt = randomization_test(exp, exp_r, B)
    drawn["randomization"] = figs.randomization_figure(rt.similarity, rt.contributions)
    fc[1].plotly_chart(drawn["randomization"], key=f"{K}_random", **figs.CHART)
    if view.maps:
        pick = st.columns(3)[0].selectbox("Map beside its randomized-weights twin", list(view.maps),
                                          key=f"{K}_random_modality")
        rand = exp_r.token_map(B, pick, view.head, view.kind)
        drawn["randomized_twin"] = figs.twin_heatmaps(view.maps[pick], rand, positions_of(exp, pick, B),
                                                      colorscale=view.cscale, value_label=view.value_label,
                                                      titles=(f"{pick}: real weights", f"{pick}: randomized weights"))
        st.plotly_chart(drawn["randomized_twin"], key=f"{K}_twin", **figs.CHART)


# --------------------------------------------------------------------------- export

def json_bytes(exp: Explanation, ck: LoadedCheckpoint, weld: Weld | None) -> bytes:
    payload = exp.to_json_dict()
    entry = payload["results"][B]
    entry["positions"] = {m: (p[B].to_dict(orient="records") if p and p[B] is not None else [])
                          for m, p in exp.positions.items()}
    entry["checkpoint"] = {"path": ck.info.path, "sha256": ck.info.sha256}
    if weld is not None:
        entry["weld"] = {"id": weld.weld_id, "digest": weld.digest, "truth": weld.truth}
    return json.dumps(payload, default=float).encode()


def contributions_csv(exp: Explanation) -> bytes:
    frames = [exp.contributions_frame().assign(kind="modality"),
              exp.token_contributions_frame().assign(kind="token", method="shapley")]
    return pd.concat(frames, ignore_index=True).to_csv(index=False).encode()


def attention_csv(exp: Explanation) -> bytes:
    frames = [exp.attention_frame(B, m).assign(modality=m) for m in exp.attention]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()).to_csv(index=False).encode()


def figures_zip(exp: Explanation, drawn: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, fig in drawn.items():
            z.writestr(f"{exp.ids[B]}_{name}.html", figs.figure_html(fig))
    return buf.getvalue()


def export(exp: Explanation, ck: LoadedCheckpoint, weld: Weld | None, drawn: dict) -> None:
    st.subheader("Export")
    stem = f"{exp.ids[B]}_{ck.info.sha256[:8]}"
    p = functools.partial
    e = widgets.control_row()
    e.download_button("Explanation (JSON)", p(json_bytes, exp, ck, weld), file_name=f"{stem}.json",
                      mime="application/json", on_click="ignore", key=f"{K}_dl_json")
    e.download_button("Contributions (CSV)", p(contributions_csv, exp), file_name=f"{stem}_contributions.csv",
                      mime="text/csv", on_click="ignore", key=f"{K}_dl_csv")
    e.download_button("Attention maps (CSV)", p(attention_csv, exp), file_name=f"{stem}_attention.csv",
                      mime="text/csv", on_click="ignore", key=f"{K}_dl_att")
    e.download_button("All figures (HTML, zip)", p(figures_zip, exp, drawn), file_name=f"{stem}_figures.zip",
                      mime="application/zip", on_click="ignore", key=f"{K}_dl_figs")
    fe = widgets.control_row()
    fig_name = fe.selectbox("Figure", list(drawn), key=f"{K}_fig_pick", label_visibility="collapsed",
                            width=widgets.CONTROL_WIDTH)
    fe.download_button("Figure as HTML", lambda: figs.figure_html(drawn[fig_name]).encode(),
                       file_name=f"{stem}_{fig_name}.html", mime="text/html", on_click="ignore", key=f"{K}_dl_fig")
    fe.caption("Standalone HTML with plotly.js inside: opens offline.")
