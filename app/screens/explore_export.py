"""Explore's export: the explanation as JSON and CSV, the one-weld report (HTML), and the
figures as PNG/SVG (zip) or one as HTML. Every download is made when it is clicked."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from fusion_core.explain.engine import Explanation
from fusion_core.io.weld import Weld
from fusion_core.models.checkpoint import LoadedCheckpoint

from app import figures as figs
from app import report, widgets
from app.screens.explore_common import B, K

# Session key of the last static export that failed: a download runs outside the page's
# script, so its error is shown on the next run of this section.
FAILED = f"{K}_export_failed"


def json_bytes(exp: Explanation, ck: LoadedCheckpoint, weld: Weld | None) -> bytes:
    """The CLI's explain JSON for this weld: `checkpoint`, `target`, `baseline`, `notes` and
    `results` (with `weld`, `positions` and `truth` as the CLI writes them, plus `weld_digest`)."""
    payload = exp.to_json_dict()
    entry = payload["results"][B]
    entry["positions"] = {m: (p[B].to_dict(orient="records") if p and p[B] is not None else [])
                          for m, p in exp.positions.items()}
    if weld is not None:
        entry["weld"] = weld.weld_id
        entry["weld_digest"] = weld.digest
        if weld.truth is not None:
            entry["truth"] = weld.truth
    payload = {"checkpoint": report.checkpoint_json(ck), **payload, "notes": report.weld_notes(exp, ck, weld, B)}
    return json.dumps(payload, default=float).encode()


def contributions_csv(exp: Explanation) -> bytes:
    frames = [exp.contributions_frame().assign(kind="modality"),
              exp.token_contributions_frame().assign(kind="token", method="shapley")]
    return pd.concat(frames, ignore_index=True).to_csv(index=False).encode()


def attention_csv(exp: Explanation) -> bytes:
    frames = [exp.attention_frame(B, m).assign(modality=m) for m in exp.attention]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()).to_csv(index=False).encode()


def report_bytes(ctx: report.ReportContext, drawn: dict) -> bytes:
    return report.report_html(ctx, drawn)


def images_bytes(ctx: report.ReportContext, drawn: dict, fmt: str, failed: dict) -> bytes:
    """The figures as a zip of `fmt` images; a failure is kept in `failed` for the page."""
    try:
        return report.figure_images(drawn, fmt, ctx)
    except report.ExportError as e:
        failed["message"] = str(e)
        raise


def figure_bytes(ctx: report.ReportContext, drawn: dict, name: str) -> bytes:
    titled = report.with_context_title(drawn[name], name, ctx)
    page_title = report.context_title(name, ctx, drawn[name].layout.title.text)
    return figs.figure_html(titled, page_title=page_title).encode()


def export(exp: Explanation, ck: LoadedCheckpoint, weld: Weld | None,
           figures: dict[str, go.Figure] | Callable[[], dict[str, go.Figure]]) -> None:
    """The export section. `figures`: the page's figures by name, or a function that builds
    them (called once here, in the page's run: the downloads run later, outside it)."""
    st.subheader("Export")
    drawn = figures() if callable(figures) else figures
    ctx = report.report_context(exp, ck, weld, B)
    stem = report.file_stem(ctx)
    p = functools.partial
    e = widgets.control_row()
    e.download_button("Report (HTML)", p(report_bytes, ctx, drawn), file_name=f"{stem}_report.html",
                      mime="text/html", on_click="ignore", key=f"{K}_dl_report",
                      help="One file that opens offline: the weld, checkpoint, prediction, contribution table, "
                           "notes and every figure (plotly.js inside once).")
    e.download_button("Explanation (JSON)", p(json_bytes, exp, ck, weld), file_name=f"{stem}.json",
                      mime="application/json", on_click="ignore", key=f"{K}_dl_json")
    e.download_button("Contributions (CSV)", p(contributions_csv, exp), file_name=f"{stem}_contributions.csv",
                      mime="text/csv", on_click="ignore", key=f"{K}_dl_csv")
    e.download_button("Attention maps (CSV)", p(attention_csv, exp), file_name=f"{stem}_attention.csv",
                      mime="text/csv", on_click="ignore", key=f"{K}_dl_att")
    image_buttons(ctx, drawn, stem)
    if not drawn:
        return
    fe = widgets.control_row()
    fig_name = fe.selectbox("Figure", list(drawn), key=f"{K}_fig_pick", label_visibility="collapsed",
                            width=widgets.CONTROL_WIDTH)
    fe.download_button("Figure as HTML", p(figure_bytes, ctx, drawn, fig_name),
                       file_name=f"{stem}_{fig_name}.html", mime="text/html", on_click="ignore", key=f"{K}_dl_fig")
    fe.caption("Standalone HTML with plotly.js inside: opens offline.")


def image_buttons(ctx: report.ReportContext, drawn: dict, stem: str) -> None:
    """PNG and SVG zips (kaleido and the system Chromium); disabled, with the reason shown,
    where they cannot work; the reason of the last failed one shown once."""
    failed = st.session_state.setdefault(FAILED, {})
    if failed.get("message"):
        st.error(f"The last figure export failed: {failed.pop('message')}")
    problem = report.static_export_problem()
    if problem:
        st.error(problem)
    r = widgets.control_row()
    for fmt in report.IMAGE_FORMATS:
        r.download_button(f"Figures ({fmt.upper()}, zip)", functools.partial(images_bytes, ctx, drawn, fmt, failed),
                          file_name=f"{stem}_figures_{fmt}.zip", mime="application/zip", on_click="ignore",
                          key=f"{K}_dl_{fmt}", disabled=problem is not None,
                          help=f"Every figure above as {fmt.upper()}, titled with the weld, checkpoint and "
                               "prediction. Takes a few seconds (a headless Chromium draws them).")
