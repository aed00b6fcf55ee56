"""Explore's export: the explanation as JSON and CSV, and its figures."""

from __future__ import annotations

import functools
import io
import json
import zipfile

import pandas as pd
import streamlit as st

from fusion_core.explain.engine import Explanation
from fusion_core.io.weld import Weld
from fusion_core.models.checkpoint import LoadedCheckpoint

from app import figures as figs
from app import widgets
from app.screens.explore_common import B, K


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
