"""Dataset: a checkpoint over a set of welds — a table per weld, contributions by class.

Two sources feed the same views: explain the welds now (small sets), or open the Parquet
table of a batch run (`python -m fusion_core batch`, or the run button here), which holds
one summary row per weld × checkpoint, so thousands of welds open in seconds. The batch
views use only the summary columns (no per-row loops, no maps). The tables come from
`fusion_core.explain.summaries.weld_table` and `fusion_core.explain.views`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit.navigation.page import StreamlitPage

from fusion_core.errors import InputError
from fusion_core.explain.engine import BASELINES
from fusion_core.explain.methods import METHODS
from fusion_core.explain.summaries import weld_table
from fusion_core.explain import views
from fusion_core.explain.views import batch_long, batch_table, explanation_long, window_long
from fusion_core.io.layout import is_weld_folder
from fusion_core.io.weld import Weld
from fusion_core.models.checkpoint import LoadedCheckpoint
from fusion_core.vocab import MODALITIES

from app import figures as figs
from app import services, state, widgets
from app.screens.explore import open_in_explore

K = "dataset"
EXPLAIN, BATCH = "Explain welds now", "Open batch results (.parquet)"


def page() -> StreamlitPage:
    return st.Page(dataset_page, title="Dataset", url_path="dataset")


def dataset_page() -> None:
    state.restore(K)
    if f"{K}_parquet_path" not in st.session_state and st.query_params.get("parquet"):
        st.session_state[f"{K}_source"] = BATCH                   # a link to an opened results file
        st.session_state[f"{K}_parquet_path"] = st.query_params["parquet"]
    with st.sidebar:
        mode = st.radio("Source", [EXPLAIN, BATCH], key=f"{K}_source",
                        help="Explain a set of welds now, or open the Parquet table of a batch run "
                             "(`python -m fusion_core batch`), which opens thousands of welds in seconds.")
        inputs = explain_sidebar() if mode == EXPLAIN else batch_sidebar()
        state.copy_link(K)
    state.remember(K)
    state.write_url(K)
    st.title("Dataset")
    widgets.main_area_problems()
    if mode == BATCH:
        batch_view(inputs)
    else:
        explain_view(*inputs)


# --------------------------------------------------------------------------- shared views

def show_views(table: pd.DataFrame, methods: list[str], long_of: Callable[[str], pd.DataFrame],
               open_row: Callable[[int], None], contributions_csv: Callable[[], str]) -> None:
    """Metrics, the per-weld table (row → Explore), contributions by class, relevance in window."""
    known = table["correct"].dropna()
    m = st.columns(3)
    m[0].metric("Welds", f"{len(table):,}")
    if len(known):
        m[1].metric("Accuracy", f"{known.astype(float).mean():.0%}", help="Over the welds whose class is known.")
    tops = table["top"].dropna()
    if len(tops):
        m[2].metric("Most frequent top modality", tops.mode().iloc[0])
    shown = decisions(table)
    per_weld(table, shown, open_row)
    by_class(table, methods, long_of, contributions_csv)


SHOW = ("all welds", "misclassified only", "one matrix cell")


def take_cell_click() -> None:
    """A click on a confusion-matrix cell (its selection, when it changed since the last run)
    → show that cell's welds. Read before the widgets below the matrix are drawn."""
    sel = st.session_state.get(f"{K}_cm")
    try:
        points = list(sel["selection"]["points"]) if sel else []
    except (KeyError, TypeError):
        points = []
    sig = repr(points)
    if sig == st.session_state.get(f"{K}_cm_seen", "[]"):
        return
    st.session_state[f"{K}_cm_seen"] = sig
    cell = figs.cell_of(points[0]) if points else None
    if cell:
        st.session_state[f"{K}_show"] = SHOW[2]
        st.session_state[f"{K}_cell"] = cell


def decisions(table: pd.DataFrame) -> pd.DataFrame:
    """Confusion matrix (click a cell for its welds) and per-class accuracy; the filter of
    the per-weld table. Returns the rows to show."""
    known = table[(table["class"].astype(str) != "unknown") & table["prediction"].notna()]
    if not len(known):
        return table
    st.subheader("Truth vs prediction")
    take_cell_click()
    classes = views.class_order(known["class"], known["prediction"])
    cm = views.confusion_matrix(known["class"], known["prediction"], classes)
    c = st.columns([1, 1])
    c[0].plotly_chart(figs.confusion_figure(cm, None), key=f"{K}_cm", on_select="rerun", selection_mode="points",
                      **figs.CHART)
    c[0].caption("Rows: true class; columns: predicted class; numbers are welds. Click a cell to list its welds.")
    acc = views.per_class_accuracy(known["class"], known["prediction"], classes)
    acc = acc[acc["welds"] > 0].rename(columns={"class": "True class", "welds": "Welds", "correct": "Correct",
                                                  "accuracy": "Accuracy"})
    c[1].dataframe(acc, hide_index=True, key=f"{K}_class_acc", height=min(460, 38 + 35 * len(acc)),
                   column_config={"Accuracy": st.column_config.NumberColumn(format="percent")})
    f = st.columns([3, 2])
    show = f[0].radio("Show", SHOW, horizontal=True, key=f"{K}_show")
    cells = [(str(r), str(p)) for r in cm.index for p in cm.columns if cm.loc[r, p] > 0]
    if st.session_state.get(f"{K}_cell") not in cells:
        st.session_state[f"{K}_cell"] = next((x for x in cells if x[0] != x[1]), cells[0])
    cell = f[1].selectbox("Matrix cell", cells, key=f"{K}_cell", disabled=show != SHOW[2],
                          format_func=lambda x: f"{x[0]} → {x[1]} ({cm.loc[x[0], x[1]]})")
    if show == SHOW[1]:
        return table[table["correct"].eq(False)]
    if show == SHOW[2]:
        return views.welds_in_cell(table, *cell)
    return table


def per_weld(table: pd.DataFrame, shown: pd.DataFrame, open_row: Callable[[int], None]) -> None:
    """The per-weld table (`shown`: rows of `table`, which has a RangeIndex); a selected row
    opens in Explore by its position in `table`."""
    st.subheader(f"Per weld ({len(shown):,} of {len(table):,})" if len(shown) != len(table) else "Per weld")
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
    sel = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="single-row",
                       key=f"{K}_table" if len(shown) == len(table) else f"{K}_table_{hash(tuple(shown.index))}",
                       column_config=num,
                       height=min(460, 38 + 35 * max(len(shown), 1)))
    rows = sel.selection.rows if sel is not None else []
    if rows and int(rows[0]) < len(shown):
        open_row(int(shown.index[int(rows[0])]))


@st.fragment
def by_class(table: pd.DataFrame, methods: list[str], long_of: Callable[[str], pd.DataFrame],
             contributions_csv: Callable[[], str]) -> None:
    """Contributions by class (method chosen here), relevance in window, export. A fragment:
    choosing the method reruns this part alone."""
    st.subheader("Contributions by class")
    mc = st.columns(3)[0].selectbox("Method", methods, format_func=figs.method_label, key=f"{K}_method")
    fig = figs.contributions_by_class_figure(long_of(mc), title=f"{figs.method_label(mc)} by class")
    fig.update_yaxes(title_text=figs.method_label(mc))
    if len(table) > 1500:      # thousands of jittered points are slow to draw: boxes + outliers only
        fig.update_traces(boxpoints="outliers", selector=dict(type="box"))
    st.plotly_chart(fig, key=f"{K}_by_class", **figs.CHART)

    st.subheader("Relevance in the defect windows vs chance")
    st.caption("One point per weld and time modality with planted defect windows; above the diagonal, the "
               "relevance sits on the defect more than a uniform map would.")
    st.plotly_chart(figs.window_share_figure(window_long(table)), key=f"{K}_window", **figs.CHART)

    st.subheader("Export")
    e = st.columns(3)
    e[0].download_button("Table (CSV)", lambda: table.to_csv(index=False).encode(), file_name="welds.csv",
                         mime="text/csv", on_click="ignore", key=f"{K}_dl_csv")
    e[1].download_button("Contributions (CSV)", lambda: contributions_csv().encode(),
                         file_name="contributions.csv", mime="text/csv", on_click="ignore", key=f"{K}_dl_contrib")
    e[2].download_button("Figure as HTML", lambda: figs.figure_html(fig).encode(), file_name="contributions_by_class.html",
                         mime="text/html", on_click="ignore", key=f"{K}_dl_fig")


# --------------------------------------------------------------------------- explain welds now

def explain_sidebar() -> tuple:
    st.subheader("Checkpoint")
    ck = widgets.checkpoint_picker(K, default="demo-best")
    st.subheader("Welds")
    got = widgets.weld_set_picker(K)
    st.subheader("Explanation")
    target = st.selectbox("Target", widgets.target_options(ck), key=f"{K}_target")
    baseline = st.selectbox("An absent modality means", list(BASELINES), key=f"{K}_baseline")
    return ck, got, baseline, target


def explain_set(ck, got, baseline: str, target: str) -> tuple | None:
    """(explanation, checkpoint, (welds, label)); after an error, those of the last run that
    worked; None before any worked."""
    if ck is not None and got is not None:
        welds, label = got
        bar = st.progress(0.0, text=f"Explaining {len(welds)} welds…")
        try:
            exp = services.explain_welds(ck, welds, baseline=baseline, target=target,
                                         progress=lambda d, t: bar.progress(d / t, text=f"{d}/{t} welds explained"))
            st.session_state[f"{K}_good"] = (ck, got, baseline, target)
            return exp, ck, got
        except InputError as e:
            st.error(str(e))
        finally:
            bar.empty()
    if st.session_state.get(f"{K}_good"):
        ck, got, baseline, target = st.session_state[f"{K}_good"]
        st.caption("Showing the last run that worked.")
        return services.explain_welds(ck, got[0], baseline=baseline, target=target), ck, got
    return None


def explain_view(ck, got, baseline: str, target: str) -> None:
    done = explain_set(ck, got, baseline, target)
    if done is None:
        st.info("Choose a checkpoint and a folder or zip of welds in the sidebar.")
        return
    exp, ck, (welds, label) = done
    st.caption(f"{len(welds)} welds from {label} · checkpoint {ck.info.path} ({ck.info.sha256[:12]}) · "
               f"target `{exp.target}` · absent = `{exp.baseline}`")
    table = weld_table(exp, welds)
    show_views(table, list(exp.contributions), functools.partial(explanation_long, exp, list(table["class"])),
               functools.partial(explain_open, welds, ck), lambda: exp.contributions_frame().to_csv(index=False))


def explain_open(welds: list[Weld], ck: LoadedCheckpoint, r: int) -> None:
    w = welds[r]
    if st.button(f"Open {w.weld_id} in Explore", type="primary", key=f"{K}_open"):
        in_data = (w.weld_id in {p.name for p in services.list_weld_folders()}
                   and str(services.data_dir()) in str(w.source))
        ckpt_name = next((p.name for p in services.list_checkpoints() if services.display_path(p) == ck.info.path),
                         None)
        open_in_explore(weld_path=w.weld_id if in_data else None, weld=None if in_data else w,
                        ckpt_name=ckpt_name, ckpt=None if ckpt_name else ck)


# --------------------------------------------------------------------------- batch results

@dataclass
class BatchInputs:
    path: str
    upload: object | None               # the uploaded .parquet (Streamlit's UploadedFile) or None
    run: bool                           # the run button was pressed
    checkpoints: list[Path]
    samples: str
    out: str
    workers: int


def batch_sidebar() -> BatchInputs:
    st.subheader("Batch results")
    found = services.found_parquet((st.session_state.get(f"{K}_last_run") or {}).get("out"))
    if f"{K}_pending_path" in st.session_state:
        st.session_state[f"{K}_parquet_path"] = st.session_state.pop(f"{K}_pending_path")
    elif f"{K}_parquet_path" not in st.session_state:
        st.session_state[f"{K}_parquet_path"] = found[0] if found else ""
    path = st.text_input("Results file (.parquet)", key=f"{K}_parquet_path",
                         help="Found: " + ", ".join(services.display_path(Path(f)) for f in found[:5])
                         if found else "No .parquet in the data folder yet: run a batch below.")
    up = st.file_uploader("…or upload a results .parquet", key=f"{K}_parquet_upload")
    with st.expander("Run a batch into Parquet", expanded=not path):
        ckpts = services.list_checkpoints()
        names = [p.name for p in ckpts]
        picked = st.multiselect("Checkpoints", names, default=[n for n in names if "demo-best" in n][:1],
                                key=f"{K}_batch_ckpts")
        samples = st.text_input("Welds (folder or .zip)", value=str(services.data_dir()), key=f"{K}_batch_samples")
        out = st.text_input("Write to", value=str(services.data_dir() / "batch-results.parquet"),
                            key=f"{K}_batch_out", help="A rerun into the same file skips welds already done.")
        workers = st.number_input("Decoding processes (0 = in this process)", min_value=0, max_value=64,
                                  value=min(4, max(0, (os.cpu_count() or 1) - 1)), key=f"{K}_batch_workers")
        run = st.button("Run batch into Parquet", key=f"{K}_run_batch", disabled=not picked)
    return BatchInputs(path, up, run, [ckpts[names.index(n)] for n in picked], samples, out, int(workers))


def run_batch_now(ckpts: list[Path], samples: str, out: str, workers: int) -> None:
    """Run `fusion_core.batch.run_batch` here with a progress bar, then open its results."""
    from fusion_core.batch.engines import run_batch
    try:                                       # every path inside the data roots, before anything runs
        ckpts = [services.allowed_path(c) for c in ckpts]
        samples, out = str(services.allowed_path(samples)), str(services.allowed_path(out))
    except InputError as e:
        st.error(str(e))
        return
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


def results_table(path: str, up) -> tuple[pd.DataFrame, str] | None:
    """(results, label) of the upload or the path, whichever changed last; after an error,
    the last that worked; None before any worked."""
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
            got = (services.results_from_upload(up.name, widgets.upload_bytes(up, ["parquet"])), up.name)
        elif path.strip():
            got = (services.results_from_path(path.strip()), path.strip())
    except InputError as e:
        st.error(str(e))
    if got is None:
        got = st.session_state.get(f"{K}_parquet_good")
        if got is not None:
            st.caption(f"Still showing {got[1]}.")
    else:
        st.session_state[f"{K}_parquet_good"] = got
    return got


def checkpoint_rows(df: pd.DataFrame, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows explained, rows that failed) of the checkpoint chosen here (when the table has several)."""
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
    return ok, bad


def batch_view(inputs: BatchInputs) -> None:
    if inputs.run:
        run_batch_now(inputs.checkpoints, inputs.samples, inputs.out, inputs.workers)
    note = st.session_state.pop(f"{K}_run_summary", None)
    if note:
        st.success(note)
    got = results_table(inputs.path, inputs.upload)
    if got is None:
        st.info("Give a results .parquet (from `python -m fusion_core batch`), upload one, or run a batch "
                "in the sidebar.")
        return
    df, label = got
    ok, bad = checkpoint_rows(df, label)
    table = batch_table(ok)
    methods = [m for m in METHODS if any(f"{m}_{x}" in ok for x in MODALITIES)] or ["shapley"]
    columns = ["weld_id", "class_name"] + [f"{m}_{x}" for m in METHODS for x in MODALITIES if f"{m}_{x}" in ok]
    if len(ok):
        show_views(table, methods, functools.partial(batch_long, ok, table), functools.partial(batch_open, ok, label),
                   lambda: ok[columns].to_csv(index=False))
    else:
        st.warning("No weld of this table was explained without an error.")
    if len(bad):
        st.subheader(f"Welds that failed ({len(bad):,})")
        st.dataframe(bad[["weld_id", "source", "error"]].rename(columns={"weld_id": "weld"}).reset_index(drop=True),
                     hide_index=True, key=f"{K}_errors", height=min(320, 38 + 35 * len(bad)),
                     column_config={"error": st.column_config.TextColumn(width="large")})


def batch_open(ok: pd.DataFrame, label: str, r: int) -> None:
    row = ok.iloc[r]
    weld_path, weld, where = batch_weld(row, label)
    if weld_path is None and weld is None:
        st.caption(f"{row['weld_id']}: its weld folder is not here (looked for {where}), so it cannot open "
                   "in Explore.")
        return
    if st.button(f"Open {row['weld_id']} in Explore", type="primary", key=f"{K}_open"):
        ckpt_name, ckpt = batch_checkpoint(row)
        open_in_explore(weld_path=weld_path, weld=weld, ckpt_name=ckpt_name, ckpt=ckpt)


def batch_weld(row: pd.Series, label: str) -> tuple[str | None, Weld | None, str]:
    """(weld_path in the data folder or None, Weld or None, where it was looked for) of a results row."""
    source = str(row.get("source") or "")
    last = st.session_state.get(f"{K}_last_run") or {}
    roots = []
    if last.get("out") == label and last.get("samples"):
        roots.append(Path(last["samples"]))
    roots.append(services.data_dir())
    if label and readable(label) and Path(label).expanduser().is_file():
        roots.append(Path(label).expanduser().resolve().parent)
    for root in dict.fromkeys(roots):
        if not readable(root) or (source not in ("", ".") and not readable(root / source)):
            continue
        if root.is_file() and root.suffix.lower() == ".zip":
            try:
                welds = services.welds_from_zip(root.name, root.read_bytes())
            except (InputError, OSError):
                continue
            hit = [w for w in welds if w.weld_id == row["weld_id"]]
            if hit:
                return None, hit[0], str(root)
            continue
        p = (root / source) if source not in ("", ".") else root
        if p.is_dir() and is_weld_folder(p):
            if p.parent.resolve() == services.data_dir().resolve():
                return p.name, None, str(p)
            return None, services.weld_from_folder(p), str(p)
    return None, None, " or ".join(str(r / source) for r in dict.fromkeys(roots))


def readable(path) -> bool:
    """Inside the data roots (services.allowed_path)."""
    try:
        services.allowed_path(path)
        return True
    except InputError:
        return False


def batch_checkpoint(row: pd.Series) -> tuple[str | None, LoadedCheckpoint | None]:
    """(name in the data folder's checkpoints/, or a LoadedCheckpoint, or neither) of a results row."""
    sha = str(row.get("checkpoint_sha256") or "")
    for p in services.list_checkpoints():
        try:
            if services.sha_of_file(p) == sha:
                return p.name, None
        except OSError:
            continue
    p = Path(str(row.get("checkpoint") or ""))
    if p.is_file():
        try:
            ck = services.checkpoint_from_path(p)
            if ck.info.sha256 == sha:
                return None, ck
        except InputError:
            pass
    return None, None
