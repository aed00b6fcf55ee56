"""Dataset: a checkpoint over a set of welds — a table per weld, contributions by class.

Two sources feed the same views: explain the welds now (small sets), or open the Parquet
table of a batch run (`python -m fusion_core batch`, or the run button here), which holds
one summary row per weld × checkpoint, so thousands of welds open in seconds. The batch
views use only the summary columns (no per-row loops, no maps).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fusion_core.errors import InputError
from fusion_core.explain.engine import BASELINES
from fusion_core.vocab import MODALITIES
from fusion_core.explain.sanity import mass_in_windows

from app import figures as F
from app import state, widgets
from app.ui import CHART, positions_of, request_explore, target_options

K = "dataset"
TIME_MODALITIES = ("video", "audio", "sensor")
EXPLAIN, BATCH = "Explain welds now", "Open batch results (.parquet)"
METHODS = ("shapley", "leave_one_out", "attention", "relevance")
NEEDED = ("weld_id", "source", "checkpoint", "checkpoint_sha256", "class_name", "predicted", "correct", "error",
          "top_modality", "present")


# --------------------------------------------------------------------------- batch results

def _parquet_stamp(path: Path) -> tuple:
    """Changes when the results file or its chunk folder changes (a run still going)."""
    out = []
    for p in (path, path.with_name(path.name + ".d")):
        try:
            s = p.stat()
            out.append((s.st_mtime_ns, s.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _check_columns(df: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise InputError(name, "not a batch results table (no column " + ", ".join(missing[:4]) +
                         (", …" if len(missing) > 4 else "") + ")")
    return df


@st.cache_resource(max_entries=4, show_spinner="Reading the results…")
def _results_from_path(path: str, stamp: tuple) -> pd.DataFrame:
    from fusion_core.batch.engines import read_results
    return _check_columns(read_results(path), path)


def results_from_path(path: str) -> pd.DataFrame:
    p = Path(path).expanduser()
    if p.is_dir() and not p.name.endswith(".d"):
        raise InputError(str(p), "is a folder; give the results .parquet file")
    return _results_from_path(str(p), _parquet_stamp(p))


@st.cache_resource(max_entries=4, show_spinner="Reading the results…")
def _results_from_bytes(sha: str, _data: bytes, name: str) -> pd.DataFrame:
    from fusion_core.batch.engines import read_results
    if not _data:
        raise InputError(name, "file is empty")
    with tempfile.TemporaryDirectory(prefix="weld-results-") as d:
        p = Path(d) / "upload.parquet"
        p.write_bytes(_data)
        try:
            df = read_results(p)
        except InputError as e:
            raise InputError(name, e.problem) from None
    df.attrs["maps_dir"] = None          # the chunk folder is not uploaded with the file
    return _check_columns(df, name)


def results_from_upload(name: str, data: bytes) -> pd.DataFrame:
    return _results_from_bytes(state.sha_of_bytes(data), data, name)


def found_parquet() -> list[str]:
    """Results files in the data folder (top two levels) and the last run's, newest first."""
    root = state.data_dir()
    files = [p for pat in ("*.parquet", "*/*.parquet") for p in root.glob(pat) if p.is_file()]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    out = [str(p) for p in files]
    last = st.session_state.get(f"{K}_last_run")
    if last and last["out"] not in out:
        out.insert(0, last["out"])
    return out


def _present(df: pd.DataFrame) -> pd.DataFrame:
    """Per modality, whether the weld had it (from the `present` column; vectorised)."""
    pres = df["present"].fillna("").astype(str)
    return pd.DataFrame({m: pres.str.contains(rf"(?:^|,){m}(?:,|$)", regex=True).to_numpy() for m in MODALITIES},
                        index=df.index)


def batch_table(ok: pd.DataFrame) -> pd.DataFrame:
    """The per-weld table of the explain path, from the summary columns."""
    has = _present(ok)
    t = pd.DataFrame({"weld": ok["weld_id"].astype(str), "class": ok["class_name"].fillna("unknown").astype(str),
                      "prediction": ok["predicted"], "correct": ok["correct"]})
    if "predicted_prob" in ok:
        t["p(prediction)"] = ok["predicted_prob"]
    for m in MODALITIES:
        t[f"φ {m}"] = ok.get(f"shapley_{m}", np.nan)
    t["top"] = ok["top_modality"]
    for m in TIME_MODALITIES:
        t[f"in window: {m}"] = ok.get(f"relevance_in_truth_{m}", np.nan)
    t["window share"] = ok.get("truth_window_share", np.nan)
    missing = pd.Series("", index=ok.index)
    for m in MODALITIES:
        missing = missing.where(has[m], missing + np.where(missing.eq(""), "", ", ") + m)
    t["missing"] = missing
    t["source"] = ok["source"]
    return t.reset_index(drop=True)


def batch_long(ok: pd.DataFrame, table: pd.DataFrame, method: str) -> pd.DataFrame:
    """Long form (weld, class, modality, value) of one method, present modalities only."""
    has = _present(ok)
    parts = []
    for m in MODALITIES:
        col = f"{method}_{m}"
        if col not in ok:
            continue
        keep = has[m].to_numpy() & ok[col].notna().to_numpy()
        parts.append(pd.DataFrame({"weld": table["weld"].to_numpy()[keep], "class": table["class"].to_numpy()[keep],
                                   "modality": m, "value": ok[col].to_numpy(dtype=float, na_value=np.nan)[keep]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["weld", "class", "modality", "value"])


def window_long(table: pd.DataFrame) -> pd.DataFrame:
    """(weld, modality, chance, share) for the relevance-in-window figure, from the table."""
    parts = [pd.DataFrame({"weld": table["weld"], "modality": m, "chance": table["window share"],
                           "share": table[f"in window: {m}"]}) for m in TIME_MODALITIES if f"in window: {m}" in table]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["weld", "modality", "chance", "share"])


def _batch_weld(row: pd.Series, label: str):
    """(weld_path in the data folder or None, Weld or None, where it was looked for) of a results row."""
    source = str(row.get("source") or "")
    last = st.session_state.get(f"{K}_last_run") or {}
    roots = []
    if last.get("out") == label and last.get("samples"):
        roots.append(Path(last["samples"]))
    roots.append(state.data_dir())
    if label and Path(label).expanduser().is_file():
        roots.append(Path(label).expanduser().resolve().parent)
    for root in dict.fromkeys(roots):
        if root.is_file() and root.suffix.lower() == ".zip":
            try:
                welds = state.welds_from_zip(root.name, root.read_bytes())
            except (InputError, OSError):
                continue
            hit = [w for w in welds if w.weld_id == row["weld_id"]]
            if hit:
                return None, hit[0], str(root)
            continue
        p = (root / source) if source not in ("", ".") else root
        if p.is_dir() and state.is_weld_folder(p):
            if p.parent.resolve() == state.data_dir().resolve():
                return p.name, None, str(p)
            return None, state.weld_from_folder(p), str(p)
    return None, None, " or ".join(str(r / source) for r in dict.fromkeys(roots))


def _batch_checkpoint(row: pd.Series):
    """(name in the data folder's checkpoints/, or a LoadedCheckpoint, or neither) of a results row."""
    sha = str(row.get("checkpoint_sha256") or "")
    for p in state.list_checkpoints():
        try:
            if state.sha_of_file(p) == sha:
                return p.name, None
        except OSError:
            continue
    p = Path(str(row.get("checkpoint") or ""))
    if p.is_file():
        try:
            ck = state.checkpoint_from_path(p)
            if ck.info.sha256 == sha:
                return None, ck
        except InputError:
            pass
    return None, None


def run_batch_now(ckpts: list[Path], samples: str, out: str, workers: int) -> None:
    """Run `fusion_core.batch.run_batch` here with a progress bar, then open its results."""
    from fusion_core.batch.engines import run_batch
    bar = st.progress(0.0, text="Starting the batch run…")

    def report(p, final=False):
        bar.progress(min(p.finished / max(p.total, 1), 1.0), text=p.line())
    try:
        s = run_batch([str(c) for c in ckpts], samples, out, workers=workers, progress=report)
    except InputError as e:
        bar.empty()
        st.error(str(e))
        return
    bar.empty()
    st.session_state[f"{K}_last_run"] = {"out": out, "samples": samples}
    st.session_state[f"{K}_pending_path"] = out
    st.session_state[f"{K}_run_summary"] = (f"Batch run: {s.welds} welds, {s.rows_written} rows written, "
                                            f"{s.skipped} already done, {s.errors} failed, "
                                            f"{s.seconds:.1f} s → {out}")
    st.rerun()


# --------------------------------------------------------------------------- sidebar

with st.sidebar:
    mode = st.radio("Source", [EXPLAIN, BATCH], key=f"{K}_source",
                    help="Explain a set of welds now, or open the Parquet table of a batch run "
                         "(`python -m fusion_core batch`), which opens thousands of welds in seconds.")
    if mode == EXPLAIN:
        st.subheader("Checkpoint")
        ck = widgets.checkpoint_picker(K, default="demo-best")
        st.subheader("Welds")
        got = widgets.weld_set_picker(K)
        st.subheader("Explanation")
        target = st.selectbox("Target", target_options(ck), key=f"{K}_target")
        baseline = st.selectbox("An absent modality means", list(BASELINES), key=f"{K}_baseline")
    else:
        st.subheader("Batch results")
        found = found_parquet()
        if f"{K}_pending_path" in st.session_state:
            st.session_state[f"{K}_parquet_path"] = st.session_state.pop(f"{K}_pending_path")
        elif f"{K}_parquet_path" not in st.session_state:
            st.session_state[f"{K}_parquet_path"] = found[0] if found else ""
        path = st.text_input("Results file (.parquet)", key=f"{K}_parquet_path",
                             help="Found: " + ", ".join(state.display_path(Path(f)) for f in found[:5])
                             if found else "No .parquet in the data folder yet: run a batch below.")
        up = st.file_uploader("…or upload a results .parquet", type=["parquet"], key=f"{K}_parquet_upload")
        with st.expander("Run a batch into Parquet", expanded=not path):
            ckpts = state.list_checkpoints()
            names = [p.name for p in ckpts]
            picked = st.multiselect("Checkpoints", names, default=[n for n in names if "demo-best" in n][:1],
                                    key=f"{K}_batch_ckpts")
            samples = st.text_input("Welds (folder or .zip)", value=str(state.data_dir()), key=f"{K}_batch_samples")
            out = st.text_input("Write to", value=str(state.data_dir() / "batch-results.parquet"),
                                key=f"{K}_batch_out", help="A rerun into the same file skips welds already done.")
            workers = st.number_input("Decoding processes (0 = in this process)", min_value=0, max_value=64,
                                      value=min(4, max(0, (os.cpu_count() or 1) - 1)), key=f"{K}_batch_workers")
            run = st.button("Run batch into Parquet", key=f"{K}_run_batch", disabled=not picked)

st.title("Dataset")


# --------------------------------------------------------------------------- shared views

def show_views(table: pd.DataFrame, methods: list[str], long_of, open_row, contributions_csv) -> None:
    """Metrics, the per-weld table (row → Explore), contributions by class, relevance in window."""
    known = table["correct"].dropna()
    m = st.columns(3)
    m[0].metric("Welds", f"{len(table):,}")
    if len(known):
        m[1].metric("Accuracy (where the class is known)", f"{known.astype(float).mean():.0%}")
    tops = table["top"].dropna()
    if len(tops):
        m[2].metric("Most frequent top modality", tops.mode().iloc[0])

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
    if "p(prediction)" in table:
        num["p(prediction)"] = st.column_config.NumberColumn(format="%.2f", help="probability of the predicted class")
    sel = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row", key=f"{K}_table",
                       column_config=num, height=min(460, 38 + 35 * len(table)))
    rows = sel.selection.rows if sel is not None else []
    if rows and int(rows[0]) < len(table):
        open_row(int(rows[0]))

    st.subheader("Contributions by class")
    mc = st.columns(3)[0].selectbox("Method", methods, format_func=lambda x: F.METHOD_LABELS.get(x, x),
                                    key=f"{K}_method")
    long = long_of(mc)
    fig = F.contributions_by_class_figure(long, title=f"{F.METHOD_LABELS.get(mc, mc)} by class")
    fig.update_yaxes(title_text=F.METHOD_LABELS.get(mc, mc))
    if len(table) > 1500:      # thousands of jittered points are slow to draw: boxes + outliers only
        fig.update_traces(boxpoints="outliers", selector=dict(type="box"))
    st.plotly_chart(fig, key=f"{K}_by_class", **CHART)

    st.subheader("Relevance in the defect windows vs chance")
    st.caption("One point per weld and time modality with planted defect windows; above the diagonal, the "
               "relevance sits on the defect more than a uniform map would.")
    wfig = F.window_share_figure(window_long(table))
    st.plotly_chart(wfig, key=f"{K}_window", **CHART)

    st.subheader("Export")
    e = st.columns(3)
    e[0].download_button("Table (CSV)", lambda: table.to_csv(index=False).encode(), file_name="welds.csv",
                         mime="text/csv", on_click="ignore", key=f"{K}_dl_csv")
    e[1].download_button("Contributions (CSV)", lambda: contributions_csv().encode(),
                         file_name="contributions.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_contrib")
    e[2].download_button("Figure as HTML", lambda: F.figure_html(fig).encode(), file_name="contributions_by_class.html",
                         mime="text/html", on_click="ignore", key=f"{K}_dl_fig")


# --------------------------------------------------------------------------- batch results

def batch_page() -> None:
    if run:
        run_batch_now([ckpts[names.index(n)] for n in picked], samples, out, int(workers))
    note = st.session_state.pop(f"{K}_run_summary", None)
    if note:
        st.success(note)
    seen = st.session_state.get(f"{K}_seen", {})
    cur = {"path": path, "upload": (up.name, up.size) if up is not None else None}
    choice = st.session_state.get(f"{K}_from", "upload" if up is not None else "path")
    if cur["upload"] is not None and cur["upload"] != seen.get("upload"):
        choice = "upload"
    elif cur["path"] != seen.get("path"):
        choice = "path"
    if choice == "upload" and up is None:
        choice = "path"
    st.session_state[f"{K}_seen"], st.session_state[f"{K}_from"] = cur, choice

    got = None
    try:
        if choice == "upload":
            got = (results_from_upload(up.name, up.getvalue()), up.name)
        elif path.strip():
            got = (results_from_path(path.strip()), path.strip())
    except InputError as e:
        st.error(str(e))
    if got is None:
        got = st.session_state.get(f"{K}_parquet_good")
        if got is not None:
            st.caption(f"Still showing {got[1]}.")
    else:
        st.session_state[f"{K}_parquet_good"] = got
    if got is None:
        st.info("Give a results .parquet (from `python -m fusion_core batch`), upload one, or run a batch "
                "in the sidebar.")
        st.stop()
    df, label = got

    cks = df[["checkpoint", "checkpoint_sha256"]].drop_duplicates("checkpoint_sha256")
    ck_labels = [f"{c} ({s[:12]})" for c, s in zip(cks["checkpoint"].astype(str), cks["checkpoint_sha256"].astype(str))]
    if len(cks) > 1:
        i = st.selectbox("Checkpoint", range(len(cks)), format_func=lambda i: ck_labels[i], key=f"{K}_batch_view_ckpt")
    else:
        i = 0
    sha = str(cks["checkpoint_sha256"].iloc[i]) if len(cks) else ""
    rows = df[df["checkpoint_sha256"].astype(str) == sha] if len(cks) else df
    failed = rows["error"].notna()
    ok, bad = rows[~failed], rows[failed]
    extra = ""
    if len(ok):
        first = ok.iloc[0]
        extra = f" · target `{first.get('target')}` · absent = `{first.get('baseline')}`"
    st.caption(f"{len(rows):,} welds from {label} · checkpoint {ck_labels[i] if ck_labels else '?'}{extra}"
               + (f" · {len(bad):,} failed (listed below)" if len(bad) else ""))

    table = batch_table(ok)
    methods = [m for m in METHODS if any(f"{m}_{x}" in ok for x in MODALITIES)] or ["shapley"]

    def long_of(method):
        return batch_long(ok, table, method)

    def open_row(r: int):
        row = ok.iloc[r]
        weld_path, weld, where = _batch_weld(row, label)
        if weld_path is None and weld is None:
            st.caption(f"{row['weld_id']}: its weld folder is not here (looked for {where}), so it cannot open "
                       "in Explore.")
            return
        if st.button(f"Open {row['weld_id']} in Explore", type="primary", key=f"{K}_open"):
            ckpt_name, ckpt = _batch_checkpoint(row)
            request_explore(weld_path=weld_path, weld=weld, ckpt_name=ckpt_name, ckpt=ckpt)
            st.switch_page("pages/explore.py")

    def contributions_csv():
        cols = ["weld_id", "class_name"] + [f"{m}_{x}" for m in METHODS for x in MODALITIES if f"{m}_{x}" in ok]
        return ok[cols].to_csv(index=False)

    if len(ok):
        show_views(table, methods, long_of, open_row, contributions_csv)
    else:
        st.warning("No weld of this table was explained without an error.")
    if len(bad):
        st.subheader(f"Welds that failed ({len(bad):,})")
        st.dataframe(bad[["weld_id", "source", "error"]].rename(columns={"weld_id": "weld"}).reset_index(drop=True),
                     hide_index=True, key=f"{K}_errors", height=min(320, 38 + 35 * len(bad)),
                     column_config={"error": st.column_config.TextColumn(width="large")})


if mode == BATCH:
    batch_page()
    st.stop()


# --------------------------------------------------------------------------- explain welds now

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


def explain_long(mc: str) -> pd.DataFrame:
    return pd.DataFrame([{"weld": w.weld_id, "class": table["class"].iloc[b], "modality": m_,
                          "value": float(exp.contributions[mc][b, j])}
                         for b, w in enumerate(welds) for j, m_ in enumerate(MODALITIES) if exp.present[b, j]])


def explain_open(r: int) -> None:
    w = welds[r]
    if st.button(f"Open {w.weld_id} in Explore", type="primary", key=f"{K}_open"):
        in_data = w.weld_id in {p.name for p in state.list_weld_folders()} and \
            str(state.data_dir()) in str(w.source)
        ckpt_name = next((p.name for p in state.list_checkpoints() if state.display_path(p) == ck.info.path), None)
        request_explore(weld_path=w.weld_id if in_data else None, weld=None if in_data else w,
                        ckpt_name=ckpt_name, ckpt=None if ckpt_name else ck)
        st.switch_page("pages/explore.py")


show_views(table, list(exp.contributions), explain_long, explain_open,
           lambda: exp.contributions_frame().to_csv(index=False))
