"""Small helpers the pages share (no figures, no caching: see figures.py and state.py)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from fusion_core.models.checkpoint import LoadedCheckpoint
from fusion_core.explain.engine import Explanation

from app import state
from app.widgets import SAMPLE, WeldInput

PLOT_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
# Keyword arguments for every st.plotly_chart: the figures carry their own template
# (figures.TEMPLATE); Streamlit's chart theme would restyle them in the browser, which costs
# about a third of the drawing time on a page of fifteen charts.
CHART = {"config": PLOT_CONFIG, "theme": None}


def target_options(ck: LoadedCheckpoint | None) -> list[str]:
    opts = ["auto"]
    if ck is not None and ck.classifier is not None:
        opts.append("logit")
        opts += [f"class:{n}" for n in (ck.class_names or [])]
    return opts + ["cosine", "anomaly"]


def explain_input(ck: LoadedCheckpoint, wi: WeldInput, baseline: str, target: str) -> Explanation:
    """Explanation of the picked weld (or feature-file row); cached by hashes, see state.py."""
    if wi.kind == "features":
        return state.explain_features(ck, wi.features, wi.key, wi.row, baseline=baseline, target=target)
    return state.explain_welds(ck, [wi.weld], baseline=baseline, target=target)


def positions_of(exp: Explanation, m: str, b: int) -> pd.DataFrame | None:
    pos = exp.positions.get(m)
    if not pos or b >= len(pos) or pos[b] is None:
        return None
    return pos[b]


def request_explore(*, weld_path: str | None = None, weld=None, ckpt_name: str | None = None, ckpt=None) -> None:
    """Ask the Explore page (next run) to show this weld with this checkpoint."""
    st.session_state["explore_request"] = {"weld_path": weld_path, "weld": weld, "ckpt_name": ckpt_name,
                                           "ckpt": ckpt}


def apply_request(key: str) -> None:
    """Before any widget of the page exists, turn a pending request into widget state."""
    req = st.session_state.pop(f"{key}_request", None)
    if not req:
        return
    if req.get("weld_path"):
        st.session_state[f"{key}_weld_source"] = SAMPLE
        st.session_state[f"{key}_sample"] = req["weld_path"].rstrip("/").split("/")[-1]
    elif req.get("weld") is not None:
        label = f"From the Dataset page: {req['weld'].weld_id}"
        st.session_state[f"{key}_external_weld"] = (label, req["weld"])
        st.session_state[f"{key}_weld_source"] = label
    names = [p.name for p in state.list_checkpoints()]
    if req.get("ckpt_name") in names:
        st.session_state[f"{key}_ckpt"] = req["ckpt_name"]
    elif req.get("ckpt") is not None:
        label = f"{req['ckpt'].info.path} (from the Dataset page)"
        st.session_state[f"{key}_external"] = (label, req["ckpt"])
        st.session_state[f"{key}_ckpt"] = label
    st.session_state.pop(f"{key}_cell", None)
