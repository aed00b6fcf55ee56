"""Explore's raw-weld views: the weld's sensor traces, audio, photos and video with the
attention laid over them, and the raw data behind a clicked heatmap cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from fusion_core.explain.engine import Explanation
from fusion_core.explain.views import positions_of
from fusion_core.io.weld import Weld

from app import figures as figs
from app.screens.explore_common import B, K, MapView
from app.widgets import WeldInput


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
