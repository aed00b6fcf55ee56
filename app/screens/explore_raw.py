"""Explore's raw-weld views: the weld's sensor traces, audio, video and photos with the
attention laid over them, and the raw data behind a clicked heatmap cell.

One time cursor ("Cursor (s)") is shared by the sensor log, the audio, the video strip (the
frame nearest it) and, through `cursor_time`, the time-based heatmaps; the values logged
at that moment are shown as a row of numbers. The time window zooms the signals and the
video strip alike. A good weld of the data folder can be drawn faintly underneath
(`reference_picker`), and a procedure's limits (`procedure_limits.json` in the data folder,
or an uploaded one) mark where a channel left its allowed range.

The controls give a `RawChoices`; the figures are built from it by `raw_figures`, which
`raw_weld_figures` also calls, without widgets, for the report (from the choices kept in
session state, so a closed tab still reports what was last shown).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from fusion_core.errors import InputError
from fusion_core.explain.engine import Explanation
from fusion_core.explain.views import positions_of
from fusion_core.io.procedure import FILE_NAME, ProcedureLimits, parse_procedure_limits, read_procedure_limits
from fusion_core.io.weld import Weld
from fusion_core.vocab import class_code_of

from app import figures as figs
from app import services
from app.screens.explore_common import B, K, MapView
from app.widgets import WeldInput, class_label

CURSOR = f"{K}_cursor"                 # the cursor's time (s): one key for every weld, clamped to it
PHOTO = f"{K}_photo"                   # the photo shown large (index)
AUDIO_VIEW = f"{K}_audio_view"
REF_ON, REF_PICK = f"{K}_ref_on", f"{K}_ref_pick"
LIMITS_ON, LIMITS_UPLOAD = f"{K}_limits_on", f"{K}_limits_upload"
UPLOADED = f"{K}_limits_uploaded"      # the last uploaded limits that parsed (kept while the tab is closed)
KEEP = "_raw_keep_"                    # widget values kept while the raw-weld tab is not drawn
CELL_ROWS = 12                         # logged samples listed under a clicked sensor cell
STRIP_PX = 940                         # the main column's width at 1400 px (sidebar open)


def zoom_key(weld_key: str) -> str:
    return f"{K}_zoom_{weld_key[:12]}"


def _restore(*keys: str) -> None:
    """Streamlit drops a widget's value in a run that does not draw it (another tab is open):
    put the kept one back before drawing."""
    for k in keys:
        if k not in st.session_state and KEEP + k in st.session_state:
            st.session_state[k] = st.session_state[KEEP + k]


def _remember(*keys: str) -> None:
    for k in keys:
        if k in st.session_state:
            st.session_state[KEEP + k] = st.session_state[k]


def _kept(key: str, default=None):
    """A raw-weld widget's value: drawn this run, else kept from the last run that drew it."""
    return st.session_state.get(key, st.session_state.get(KEEP + key, default))


@dataclass
class RawChoices:
    """What the raw-weld controls chose."""

    t_range: tuple[float, float] | None = None
    cursor: float | None = None
    audio_view: str = "waveform"
    reference: Weld | None = None
    limits: ProcedureLimits | None = None
    photo: int = 0

    @property
    def reference_label(self) -> str:
        return f"reference: {self.reference.weld_id}" if self.reference is not None else "reference"


# --------------------------------------------------------------------------- a clicked cell

PHOTOS_AS_VIDEO = ("upstream's video encoder read this weld's photos, not its video (its dataset code takes the "
                   "frames from images/ when the weld has that folder): the tiles are those photos")


def video_source(weld: Weld, vpos: pd.DataFrame | None) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """(frames, their times, a note) that the video tokens' frame0/frame1 index: the weld's
    video, or — when the positions say `input: photos` (upstream's reader) — its photos."""
    if vpos is not None and "input" in vpos.columns and (vpos["input"] == "photos").any() and weld.images:
        h, w = weld.images[0].shape[:2]
        frames = np.stack([im if im.shape[:2] == (h, w) else np.asarray(Image.fromarray(im).resize((w, h)))
                           for im in weld.images])
        return frames, None, PHOTOS_AS_VIDEO
    return weld.video, weld.video_times, None


def cell_pictures(weld: Weld, m: str, pos: pd.DataFrame, s0: int, s1: int) -> None:
    frames, times, note = video_source(weld, pos) if m == "video" else (None, None, None)
    if m == "video" and frames is not None:
        rows = pos.iloc[s0:s1 + 1]
        if note:
            st.caption(note)
        st.plotly_chart(figs.frames_figure(frames, times, int(rows["frame0"].min()),
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
                                          windows=[(t0, t1)], max_points=4000, window_label="this cell's span",
                                          title=f"audio around {t0:.2f}–{t1:.2f} s (span shaded)"),
                        key=f"{K}_cell_raw", **figs.CHART)
    elif m == "sensor" and weld.sensor is not None:
        st.plotly_chart(figs.sensor_figure(weld.sensor, t_range=rng, windows=[(t0, t1)], max_points=None,
                                           window_label="this cell's span",
                                           title=f"sensor around {t0:.2f}–{t1:.2f} s (span shaded)"),
                        key=f"{K}_cell_raw", **figs.CHART)
        inside = weld.sensor[(weld.sensor["t"] >= t0) & (weld.sensor["t"] < t1)]
        # A static table, not st.dataframe: mounting the data grid made a cell click ~25% slower
        # (A/B in one browser run: 0.97 s vs 1.30 s median); a span holds a few samples.
        st.table(samples_table(inside.head(CELL_ROWS)))
        if len(inside) > CELL_ROWS:
            st.caption(f"The first {CELL_ROWS} of the {len(inside)} samples logged in this span.")
        elif inside.empty:
            st.caption("No sample was logged inside this span (it is shorter than the log's step).")


def samples_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Logged samples as columns (`t = 1.74 s`), channels as rows, values to 4 significant
    digits: a span holds a few samples and the log has many channels, so this fits a half column."""
    vals = rows.drop(columns="t").T
    vals.columns = [f"t = {t:.2f} s" for t in rows["t"]]
    return vals.map(lambda v: f"{v:.4g}" if isinstance(v, (int, float)) else str(v)).rename_axis("channel")


# --------------------------------------------------------------------------- the time cursor

def cursor_time() -> float | None:
    """The time cursor's position (s), for the heatmaps, which are drawn before (or without)
    the cursor's slider: a widget's new value is in session state from the start of the run,
    and a kept one while the raw-weld tab is closed. None before that tab was first shown."""
    v = _kept(CURSOR)
    return float(v) if isinstance(v, (int, float)) else None


def cursor_slider(where, dur: float) -> float:
    """The "Cursor (s)" slider over the weld's duration; its value is kept from weld to weld
    (clamped), so the same moment of two welds is one click apart."""
    top = round(dur, 2)
    v = st.session_state.get(CURSOR)
    if not isinstance(v, (int, float)):
        st.session_state[CURSOR] = round(dur / 2, 2)
    elif not 0.0 <= v <= top:
        st.session_state[CURSOR] = float(min(max(v, 0.0), top))
    return float(where.slider("Cursor (s)", 0.0, top, step=0.01, key=CURSOR,
                              help="A line at this time on the sensor log, the audio and the time-based heatmaps; "
                                   "the video strip shows the frame nearest it. The values logged at that moment "
                                   "are listed below."))


def _nearest_row(sensor: pd.DataFrame, t: float) -> pd.Series:
    ts = sensor["t"].to_numpy(dtype=np.float64)
    return sensor.iloc[int(np.argmin(np.abs(ts - t)))]


def _check(v: float, t: float, c: str, limits: ProcedureLimits, t_log: np.ndarray) -> str:
    lim = limits.channels.get(c)
    if lim is None:
        return ""
    a, b = limits.checked_span(t_log)
    if not a <= t <= b:
        return "not checked"
    if lim.min is not None and v < lim.min:
        return "▼ below min"
    if lim.max is not None and v > lim.max:
        return "▲ above max"
    return "within"


def cursor_values(sensor: pd.DataFrame, t: float, reference: pd.DataFrame | None = None,
                  reference_label: str = "reference", limits: ProcedureLimits | None = None) -> pd.DataFrame:
    """The sensor sample nearest time `t`, one row per channel (name and unit, value as text
    so each keeps its own precision); beside it the reference weld's sample at the same time
    from its start, and the procedure's allowed range with the verdict, when given."""
    chans = [c for c in sensor.columns if c != "t"]
    row = _nearest_row(sensor, t)
    out = pd.DataFrame({"channel": [figs.channel_label(c) for c in chans],
                        "this weld": [f"{row[c]:.4g}" for c in chans]})
    out.attrs["at"] = [f"this weld at {row['t']:.2f} s"]
    if reference is not None and len(reference):
        ref = reference.assign(t=reference["t"] - float(reference["t"].iloc[0]) + float(sensor["t"].iloc[0]))
        r = _nearest_row(ref, t)
        out["reference"] = [f"{r[c]:.4g}" if c in ref.columns else "" for c in chans]
        out.attrs["at"].append(f"{reference_label} at {r['t']:.2f} s")
    if limits is not None:
        t_log = sensor["t"].to_numpy(dtype=np.float64)
        out["allowed"] = [limits.channels[c].text() if c in limits.channels else "—" for c in chans]
        out["check"] = [_check(float(row[c]), float(row["t"]), c, limits, t_log) for c in chans]
    return out


def show_cursor_values(sensor: pd.DataFrame, ch: RawChoices) -> None:
    ref = ch.reference.sensor if ch.reference is not None else None
    table = cursor_values(sensor, ch.cursor, ref, ch.reference_label, ch.limits)
    st.caption("Logged nearest the cursor: " + "; ".join(table.attrs["at"]) + ".")
    st.dataframe(table, hide_index=True, width="content")


# --------------------------------------------------------------------------- reference weld and limits

def good_weld_folders(exclude: str | None = None) -> list[Path]:
    """Weld folders of the data folder whose part number says class 00 (good), but `exclude`."""
    return [p for p in services.list_weld_folders() if class_code_of(p.name) == 0 and p.name != exclude]


def _reference(weld: Weld, on: bool, pick: str | None) -> tuple[Weld | None, list[str]]:
    """(the reference weld or None, the names offered)."""
    names = [p.name for p in good_weld_folders(exclude=weld.weld_id)] if on else []
    if not names:
        return None, names
    name = pick if pick in names else names[0]
    return services.weld_from_folder(services.data_dir() / name), names


def reference_picker(weld: Weld, where=None) -> Weld | None:
    """A toggle (off by default) and, when on, a pick among the data folder's good welds
    (the first by default): the weld to draw faintly under this one. None when off."""
    where = where or st.container()
    st.session_state.setdefault(REF_ON, False)
    on = where.toggle("Good weld beside", key=REF_ON,
                      help="Draw a good weld (class 00) of the data folder faintly under this one's sensor "
                           "traces and audio, aligned at the start, and its photo beside the large one.")
    if not on:
        return None
    names = [p.name for p in good_weld_folders(exclude=weld.weld_id)]
    if not names:
        where.caption(f"No good weld (class 00) in {services.display_path(services.data_dir())}.")
        return None
    if st.session_state.get(REF_PICK) not in names:
        st.session_state[REF_PICK] = names[0]
    pick = where.selectbox("Reference weld", names, key=REF_PICK, label_visibility="collapsed",
                           format_func=class_label)
    try:
        return _reference(weld, True, pick)[0]
    except InputError as e:
        where.error(str(e))
        return None


@functools.lru_cache(maxsize=8)
def _limits_file(path: str, mtime_ns: int, size: int) -> ProcedureLimits:
    return read_procedure_limits(path)


def data_folder_limits() -> ProcedureLimits | None:
    """`procedure_limits.json` of the data folder, None when there is none (re-read when it changes)."""
    p = services.data_dir() / FILE_NAME
    try:
        s = os.stat(p)
    except OSError:
        return None
    return _limits_file(str(p), s.st_mtime_ns, s.st_size)


def _uploaded_limits(where) -> ProcedureLimits | None:
    """The uploaded limits file, parsed; kept while the uploader is not drawn (tab closed),
    forgotten when the user removes the file."""
    drawn_before = LIMITS_UPLOAD in st.session_state
    up = where.file_uploader(f"Procedure limits ({FILE_NAME})", type=None, key=LIMITS_UPLOAD,
                             help="JSON: sensor channel → {\"min\", \"max\", \"unit\"}; optional \"procedure\", "
                                  "\"ignore_first_s\", \"ignore_last_s\". Replaces the data folder's file.")
    if up is None:
        if drawn_before:
            st.session_state.pop(UPLOADED, None)
        return st.session_state.get(UPLOADED)
    st.session_state.pop(UPLOADED, None)
    limits = parse_procedure_limits(up.getvalue(), up.name)
    st.session_state[UPLOADED] = limits
    return limits


def procedure_limits_picker(where=None) -> ProcedureLimits | None:
    """Which procedure limits to draw: an uploaded file, else the data folder's
    `procedure_limits.json`; a toggle turns them off. A bad file shows its error (naming the
    file and the key) and no limits. Usable in the sidebar or in the page."""
    where = where or st.container()
    try:
        limits = _uploaded_limits(where) or data_folder_limits()
    except InputError as e:
        where.error(str(e))
        return None
    if limits is None:
        where.caption(f"No {FILE_NAME} in {services.display_path(services.data_dir())}: no limits drawn.")
        return None
    st.session_state.setdefault(LIMITS_ON, True)
    if not where.toggle(f"Show limits: {limits.procedure or Path(limits.source).name}", key=LIMITS_ON):
        return None
    where.caption(f"From {services.display_path(Path(limits.source))}; not checked in the first "
                  f"{limits.ignore_first_s:g} s and last {limits.ignore_last_s:g} s (arc start, crater).")
    return limits


def kept_limits() -> ProcedureLimits | None:
    """The limits the raw-weld tab shows (for the report when the tab is closed)."""
    if not _kept(LIMITS_ON, True):
        return None
    try:
        return st.session_state.get(UPLOADED) or data_folder_limits()
    except InputError:
        return None


# --------------------------------------------------------------------------- the figures

def band_label(view: MapView) -> str:
    return "attention" if not view.maps else (
        f"{view.value_label}, " + ("mean of tokens" if view.token == "mean" else f"token {view.token}"))


def _signal_kw(weld: Weld, view: MapView, ch: RawChoices) -> dict:
    return dict(windows=(weld.truth or {}).get("windows") or [], t_range=ch.t_range, cursor=ch.cursor,
                max_points=None if view.full_res else figs.SIGNAL_MAX_POINTS, colorscale=view.cscale,
                band_label=band_label(view), robust=view.robust, reference_label=ch.reference_label)


def sensor_fig(exp: Explanation, weld: Weld, view: MapView, ch: RawChoices) -> go.Figure:
    ref = ch.reference.sensor if ch.reference is not None else None
    return figs.sensor_figure(weld.sensor, view.weights("sensor"), positions_of(exp, "sensor", B),
                              title=f"sensor log · band: {band_label(view)}", limits=ch.limits, reference=ref,
                              **_signal_kw(weld, view, ch))


def audio_fig(exp: Explanation, weld: Weld, view: MapView, ch: RawChoices) -> go.Figure:
    ref = ch.reference
    same_rate = ref is not None and ref.audio is not None and ref.sample_rate == weld.sample_rate
    return figs.audio_figure(weld.audio, weld.sample_rate, view.weights("audio"), positions_of(exp, "audio", B),
                             view=ch.audio_view, title=f"audio {ch.audio_view} · band: {band_label(view)}",
                             reference=ref.audio if same_rate else None, **_signal_kw(weld, view, ch))


def video_fig(exp: Explanation, weld: Weld, view: MapView, ch: RawChoices) -> go.Figure | None:
    vpos = positions_of(exp, "video", B)
    frames, times, note = video_source(weld, vpos)
    if frames is None or vpos is None:
        return None
    w = view.weights("video") if "video" in view.maps else np.zeros(len(vpos))
    where = "" if ch.t_range is None else f" in {ch.t_range[0]:.2f}–{ch.t_range[1]:.2f} s"
    what = "video input = the weld's photos (upstream's reader)" if note else "video"
    return figs.video_strip_figure(frames, w, vpos, colorscale=view.cscale, value_label=view.value_label,
                                   px_width=STRIP_PX, t_range=ch.t_range, frame_times=times,
                                   cursor=ch.cursor, title=f"{what}{where}: one frame per time bin, ▶ = at the cursor")


def photo_figs(exp: Explanation, weld: Weld, view: MapView, j: int,
               reference: Weld | None = None) -> dict[str, go.Figure]:
    """Photo j large and all photos small (the shown one framed), on one colour scale; with a
    reference weld that has photos, its photo j (or its last) as large beside it, plain."""
    n = len(weld.images)
    w, pos = view.weights("image"), positions_of(exp, "image", B)
    regions = (weld.truth or {}).get("regions", [])
    common = dict(image_sizes=weld.image_sizes, regions=regions, colorscale=view.cscale,
                  value_label=view.value_label, px_width=STRIP_PX)
    beside = reference is not None and bool(reference.images)       # two half-width columns: short titles
    title = (f"weld {weld.weld_id}: photo {j + 1} of {n}" if beside
             else f"photo {j + 1} of {n}: {view.value_label} per patch (truth regions dashed)")
    out = {"photo": figs.photo_figure(weld.images, j, w, pos, title=title,
                                      **dict(common, px_width=STRIP_PX // 2 if beside else STRIP_PX))}
    if beside:
        k = min(j, len(reference.images) - 1)
        ref = figs.photo_figure(reference.images, k, None, None, image_sizes=reference.image_sizes,
                                px_width=STRIP_PX // 2,
                                title=f"good weld {reference.weld_id}: photo {k + 1} of {len(reference.images)}")
        # Same height and margins as the weld's photo (whose colour bar sits below), so the two align.
        out["reference_photo"] = ref.update_layout(height=out["photo"].layout.height, margin=out["photo"].layout.margin)
    return {**out,
            "photos": figs.photos_figure(weld.images, w, pos, ncols=min(n, 8), outline=j, showscale=False,
                                         title="all photos on the same colour scale (the one shown above framed)",
                                         **common)}


def raw_figures(exp: Explanation, weld: Weld, view: MapView, ch: RawChoices) -> dict[str, go.Figure]:
    """Every raw-weld figure for these choices: sensor, audio, video, photo (large), photos."""
    out: dict[str, go.Figure] = {}
    if weld.sensor is not None and len(weld.sensor):
        out["sensor"] = sensor_fig(exp, weld, view, ch)
    if weld.audio is not None and len(weld.audio):
        out["audio"] = audio_fig(exp, weld, view, ch)
    video = video_fig(exp, weld, view, ch)
    if video is not None:
        out["video"] = video
    if weld.images:
        out.update(photo_figs(exp, weld, view, min(ch.photo, len(weld.images) - 1), ch.reference))
    return out


def kept_choices(wi: WeldInput) -> RawChoices:
    """The raw-weld choices last made (session state), without drawing a widget."""
    weld = wi.weld
    dur = round(float(max(weld.duration, 1e-3)), 2)
    zoom = _kept(zoom_key(wi.key), (0.0, dur))
    t_range = None if tuple(zoom) == (0.0, dur) else (float(zoom[0]), float(zoom[1]))
    cursor = cursor_time()
    try:
        ref = _reference(weld, bool(_kept(REF_ON, False)), _kept(REF_PICK))[0]
    except InputError:
        ref = None
    return RawChoices(t_range, None if cursor is None else min(max(cursor, 0.0), dur),
                      _kept(AUDIO_VIEW, "waveform"), ref, kept_limits(), int(_kept(PHOTO, 0) or 0))


def raw_weld_figures(exp: Explanation, wi: WeldInput, view: MapView) -> dict[str, go.Figure]:
    """The raw-weld figures as last shown, built without widgets (for the report)."""
    if wi.weld is None:
        return {}
    return raw_figures(exp, wi.weld, view, kept_choices(wi))


# --------------------------------------------------------------------------- the raw weld, drawn

def raw_controls(weld: Weld, weld_key: str) -> RawChoices:
    """Time window, audio view, cursor, reference weld and procedure limits."""
    dur = float(max(weld.duration, 1e-3))
    top = round(dur, 2)
    zk = zoom_key(weld_key)
    _restore(zk, CURSOR, AUDIO_VIEW, REF_ON, REF_PICK, LIMITS_ON, PHOTO)
    st.session_state.setdefault(zk, (0.0, top))
    st.session_state.setdefault(AUDIO_VIEW, "waveform")
    rc = st.columns([2, 1])
    zoom = rc[0].slider("Time window (s)", 0.0, top, step=0.05, key=zk,
                        help="Narrow it to see the signals at full resolution; the video strip keeps the "
                             "time bins inside it.")
    audio_view = rc[1].radio("Audio", ["waveform", "spectrogram"], horizontal=True, key=AUDIO_VIEW)
    cc = st.columns([2, 1])
    cursor = cursor_slider(cc[0], dur)
    with cc[1]:
        ref = reference_picker(weld)
        with st.expander("Procedure limits"):
            limits = procedure_limits_picker()
    t_range = None if tuple(zoom) == (0.0, top) else (float(zoom[0]), float(zoom[1]))
    if not (t_range is None or t_range[0] <= cursor <= t_range[1]):
        st.caption(f"The cursor ({cursor:.2f} s) is outside the time window.")
    return RawChoices(t_range, cursor, audio_view, ref, limits)


def raw_weld(exp: Explanation, wi: WeldInput, view: MapView, drawn: dict) -> None:
    weld = wi.weld
    st.subheader("Attention on the raw weld")
    ch = raw_controls(weld, wi.key)
    if weld.sensor is not None and len(weld.sensor):
        show_cursor_values(weld.sensor, ch)
    # Stacked at one width and one left margin, so one moment is one x position on all of them.
    if weld.sensor is not None and len(weld.sensor):
        drawn["sensor"] = sensor_fig(exp, weld, view, ch)
        st.plotly_chart(drawn["sensor"], key=f"{K}_sensor", **figs.CHART)
    else:
        st.info("No sensor log in this weld.")
    if weld.audio is not None and len(weld.audio):
        drawn["audio"] = audio_fig(exp, weld, view, ch)
        st.plotly_chart(drawn["audio"], key=f"{K}_audio", **figs.CHART)
        if ch.reference is not None and ch.audio_view == "spectrogram":
            st.caption("The reference weld's audio is drawn on the waveform view.")
    else:
        st.info("No audio in this weld.")
    video = video_fig(exp, weld, view, ch)
    if video is not None:
        drawn["video"] = video
        st.plotly_chart(video, key=f"{K}_video", **figs.CHART)
    photo_viewer(exp, weld, view, drawn, ch.reference)
    _remember(zoom_key(wi.key), CURSOR, AUDIO_VIEW, REF_ON, REF_PICK, LIMITS_ON, PHOTO)


# --------------------------------------------------------------------------- photos

def _step_photo(n: int, by: int) -> None:
    st.session_state[PHOTO] = (int(st.session_state.get(PHOTO, 0)) + by) % n


def photo_picker(n: int) -> int:
    """◀ [photo 1 … photo n] ▶: which photo is shown large. The buttons wrap around; ← and →
    press them when no text field has the focus."""
    if st.session_state.get(PHOTO) not in range(n):
        st.session_state[PHOTO] = 0
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
    row.button("◀", key=f"{K}_photo_prev", on_click=_step_photo, args=(n, -1), help="Previous photo",
               shortcut="Left")
    j = row.segmented_control("Photo", list(range(n)), format_func=lambda i: f"photo {i + 1}", key=PHOTO,
                              required=True)
    row.button("▶", key=f"{K}_photo_next", on_click=_step_photo, args=(n, 1), help="Next photo", shortcut="Right")
    return int(j if j is not None else 0)


def photo_viewer(exp: Explanation, weld: Weld, view: MapView, drawn: dict, reference: Weld | None = None) -> None:
    """One photo large (attention per patch, truth regions dashed) with a selector to step
    through them, and every photo small beneath as an overview (the shown one framed): the
    truth regions are specks on a small photo, but which photo the model looks at is seen
    best side by side. With a reference weld, its photo of the same index stands beside the
    large one, as the inspector compares a part with a good one."""
    if not weld.images:
        st.info("No photos in this weld.")
        return
    n = len(weld.images)
    j = photo_picker(n)
    got = photo_figs(exp, weld, view, j, reference)
    drawn.update(got)
    if "reference_photo" in got:
        pc = st.columns(2)
        pc[0].plotly_chart(got["photo"], key=f"{K}_photo_large", **figs.CHART)
        pc[1].plotly_chart(got["reference_photo"], key=f"{K}_photo_reference", **figs.CHART)
    else:
        st.plotly_chart(got["photo"], key=f"{K}_photo_large", **figs.CHART)
        if reference is not None:
            st.caption(f"The good weld {reference.weld_id} has no photos to show beside this one.")
    name = weld.image_names[j] if j < len(weld.image_names) else ""
    more = (f" · {weld.images_skipped} more photo{'s' if weld.images_skipped != 1 else ''} not shown (only the "
            f"first {n} are read)") if weld.images_skipped else ""
    st.caption(f"{name}{more}")
    st.plotly_chart(got["photos"], key=f"{K}_photos", **figs.CHART)
