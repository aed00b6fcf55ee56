"""Explore with upstream's own encoders (V-JEPA 2, DINOv3/DINOv2, AST, the sensor Transformer,
rebuilt from the checkpoint's weights): say what it costs before running them, run them with
per-encoder progress and a Cancel, and say afterwards which ran and what each cost.

A second look at the same weld with the same encoder weights reads the features from the
on-disk feature cache (`fusion_core.models.encoders.cache`) and costs only the fusion, so
nothing is asked then.
"""

from __future__ import annotations

import time

import streamlit as st

from fusion_core.explain.welds import read_options
from fusion_core.models.checkpoint import LoadedCheckpoint
from fusion_core.vocab import MODALITIES

from app import services
from app.screens.explore_common import K
from app.widgets import WeldInput

RUN = f"{K}_encoders_run"          # (checkpoint key, weld digests) the user asked to encode
COST = f"{K}_encoders_cost"        # {that: [row per encoder]} of the last run
# Seconds per weld on the 2-core CPU `make bench` ran on, at the published sizes
# (benchmarks/bench_encoders.py; the README has the figures).
CPU_SECONDS = {"image": 33.0, "video": 5.5, "audio": 3.5, "sensor": 0.02}


def _ident(ck: LoadedCheckpoint, welds) -> tuple:
    return services.ckpt_key(ck), tuple(w.digest for w in welds)


def _ask(ident: tuple) -> None:
    st.session_state[RUN] = ident


def _cancel() -> None:
    st.session_state.pop(RUN, None)
    st.session_state[f"{K}_encoders_cancelled"] = True


def welds_to_encode(ck: LoadedCheckpoint, wi: WeldInput, baseline: str, target: str) -> list:
    """This weld, and the reference welds when the target or baseline needs them."""
    welds = [wi.weld]
    if services.needs_reference(baseline, target):
        welds += services.reference_welds(**read_options(ck)) or []
    return welds


def ready(ck: LoadedCheckpoint, wi: WeldInput, baseline: str, target: str) -> bool:
    """True when the explanation may be computed now: built-in encoders, a feature file, all
    features cached, or the user asked for this run. Otherwise shows the cost and a button."""
    if services.upstream_encoders(ck) is None or wi.kind != "weld":
        return True
    welds = welds_to_encode(ck, wi, baseline, target)
    with st.spinner("Checking the feature cache (the first time, the encoders' weights are hashed)…"):
        todo = services.encoders_to_run(ck, welds)
    ident = _ident(ck, welds)
    if not todo or st.session_state.get(RUN) == ident:
        return True
    enc = services.upstream_encoders(ck)
    est = sum(CPU_SECONDS.get(m, 0.0) for m in todo) * len(welds)
    cancelled = st.session_state.pop(f"{K}_encoders_cancelled", False)
    st.warning(
        f"**This checkpoint reads raw welds with upstream's own encoders**, rebuilt from its weights "
        f"({', '.join(todo)} to run, on {enc.device.type.upper()}). "
        + ("On a CPU this takes **minutes per weld**: about "
           f"{est:.0f} s for {len(welds)} weld{'s' if len(welds) > 1 else ''} at the published sizes on a 2-core "
           "CPU (DINOv3 is most of it); a GPU takes seconds. " if enc.device.type == "cpu" else "")
        + "The features are kept in the on-disk cache: the next look at this weld costs only the fusion."
        + (" \n\nThe last run was cancelled." if cancelled else ""), icon=":material/timer:")
    st.button("Run the encoders on this weld", on_click=_ask, args=(ident,), type="primary", key=f"{K}_enc_go")
    return False


class EncoderProgress:
    """The `encoder_progress(stage, modality, done, total)` callback: a status box with one
    line per encoder, a progress bar and a Cancel button, created at the first call (a
    cached explanation makes none)."""

    def __init__(self):
        self.box = None
        self.bar = None
        self.t: dict[tuple, float] = {}
        self.rows: dict[str, dict] = {}

    def __call__(self, stage: str, m: str, done: int, total: int) -> None:
        if self.box is None:
            self.box = st.status("Running upstream's encoders on this weld…", expanded=True)
            with self.box:
                st.button("Cancel", on_click=_cancel, key=f"{K}_enc_cancel",
                          help="Stops after the encoder now running (a running encoder cannot be interrupted).")
                self.bar = st.progress(0.0)
        now = time.perf_counter()
        row = self.rows.setdefault(m, {"encoder": m, "load_s": 0.0, "encode_s": 0.0})
        if stage == "load":
            self._close_load(now)
            self.t[("load", m)] = now
            text = f"Building the {m} encoder from the checkpoint ({done + 1} of {total})"
        else:
            self._close_load(now)
            if done == 0:
                self.t[("encode", m)] = now
            elif done == total and ("encode", m) in self.t:
                row["encode_s"] = now - self.t.pop(("encode", m))
            text = f"{m} encoder: weld {min(done + 1, total)} of {total}"
        i = MODALITIES.index(m)
        frac = (i + (done / max(total, 1))) / len(MODALITIES)
        self.bar.progress(min(1.0, frac / 2 + (0.5 if stage == "encode" else 0.0)), text=text)

    def _close_load(self, now: float) -> None:
        for key in [k for k in self.t if k[0] == "load"]:
            self.rows[key[1]]["load_s"] = now - self.t.pop(key)

    def finish(self) -> None:
        if self.box is not None:
            self.box.update(label="Upstream's encoders ran", state="complete", expanded=False)


def explain(ck: LoadedCheckpoint, wi: WeldInput, baseline: str, target: str):
    """`services.explain_input`, with progress and a record of the encoders' cost when
    upstream's encoders run."""
    enc = services.upstream_encoders(ck)
    if enc is None or wi.kind != "weld":
        return services.explain_input(ck, wi, baseline, target)
    welds = welds_to_encode(ck, wi, baseline, target)
    todo = services.encoders_to_run(ck, welds)
    progress = EncoderProgress()
    exp = services.explain_input(ck, wi, baseline, target, encoder_progress=progress)
    progress.finish()
    ident = _ident(ck, welds)
    costs = st.session_state.setdefault(COST, {})
    if progress.rows:
        costs[ident] = [dict(r, ran=r["encoder"] in todo, what=enc.describe().get(r["encoder"], ""))
                        for r in progress.rows.values()]
    st.session_state.pop(RUN, None)
    return exp


def cost_note(ck: LoadedCheckpoint, wi: WeldInput, baseline: str, target: str) -> str | None:
    """One line: which of upstream's encoders gave this weld's features, and what each cost."""
    if services.upstream_encoders(ck) is None or wi.kind != "weld":
        return None
    rows = st.session_state.get(COST, {}).get(_ident(ck, welds_to_encode(ck, wi, baseline, target)))
    if not rows:
        return ("Features from upstream's encoders, read from the on-disk feature cache "
                "(this look cost only the fusion).")
    parts = [f"{r['encoder']} ({r['what'] or 'encoder'}): " + (
        f"ran, {r['encode_s']:.1f} s + {r['load_s']:.1f} s to build" if r["ran"] else "feature cache")
        for r in rows]
    return "Upstream's encoders for this weld — " + "; ".join(parts) + "."
