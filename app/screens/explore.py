"""Explore: one weld, one checkpoint — contributions, attention maps, the raw weld, faithfulness.

The sidebar picks the checkpoint, the weld and the target; the explanation is computed (or
taken from the cache) once per run. Everything below the contributions depends only on
that explanation and the display controls (head, map, token, colour scale, clicks, zoom),
so it is one fragment (`views`): changing a display control reruns that part alone. It sits
in a fragment of its own (`rest`, with the per-token Shapley bars).

A session's first look in a browser draws the first answer before the rest: the weld's title
and prediction alone (`first_answer`), then, once the browser has painted them, the whole page.
Where that cannot be (the sidebar does not start on a listed checkpoint and a sample weld), the
first run draws the sidebar, the prediction and the contributions, and `rest` waits for the paint.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.navigation.page import StreamlitPage

from fusion_core.errors import InputError
from fusion_core.explain.engine import BASELINES, MAP_KINDS, Explanation
from fusion_core.explain.sanity import method_agreement, randomization_test
from fusion_core.explain.targets import TARGETS
from fusion_core.explain.views import describe_position, positions_of, shared_range
from fusion_core.io.weld import Weld
from fusion_core.models.checkpoint import LoadedCheckpoint
from fusion_core.vocab import MODALITIES

from app import browser_events, services, state, widgets
from app import figures as figs
from app.screens import explore_encoders as encoders
from app.figures.contributions import target_unit
from app.screens.explore_common import B, CELL, K, MapView
from app.screens.explore_export import export
from app.screens.explore_raw import cell_pictures, cell_signal, cursor_time, raw_weld, raw_weld_figures
from app.widgets import WeldInput


FIRST_LOOK_WAIT = "Drawing the controls, the contributions and the attention maps…"
PAINTED = f"{K}_painted"          # this session's browser has painted the first answer
BASELINE = f"{K}_baseline"


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
    if first_answer():
        return
    ck, wi, target, link = sidebar()
    main_area(ck, wi, target)
    # Last, into its place in the sidebar: the link carries every choice of this run, and its
    # elements reach the browser after the first chart.
    state.copy_link(K, link)


def main_area(ck: LoadedCheckpoint | None, wi: WeldInput | None, target: str) -> None:
    problems, header, contrib = st.container(), st.container(), st.container()
    with problems:
        widgets.main_area_problems()
    # The baseline's selectbox sits under the header but is drawn after it, its value read
    # from its state first: each element that reaches the browser before the prediction chart
    # is one more render pass before the first chart shows.
    state.from_url(BASELINE, "baseline", list(BASELINES))
    got = explanation(header, ck, wi, st.session_state.get(BASELINE, next(iter(BASELINES))), target)
    drawn: dict = {}
    if got is not None:
        exp, ck, wi, baseline, target = got
        shown = f"{wi.key}:{services.ckpt_key(ck)}"
        if st.session_state.get(f"{K}_shown") != shown:      # another weld or model: the old cell means nothing
            st.session_state[f"{K}_shown"] = shown
            st.session_state.pop(CELL, None)
        with header:
            weld_header(exp, ck, wi.weld, drawn)
            note = encoders.cost_note(ck, wi, baseline, target)
            if note:
                st.caption(note)
            how_to_read(exp)
    with contrib:
        st.subheader("Modality contributions")
        bc = st.columns([2, 3])
        bc[0].selectbox("An absent modality means", list(BASELINES), key=BASELINE,
                        format_func=lambda b: f"{b}: {BASELINES[b]}")
    state.remember(K)
    state.write_url(K)
    if got is None:
        return
    with contrib:
        contributions(exp, bc[1], drawn)
    rest(ck, wi, exp, baseline, target, drawn)


def first_answer() -> bool:
    """A session's first look at Explore, in a browser: the weld's title and prediction alone,
    with a listener that reruns the whole page once the browser has painted them. Everything
    else (the sidebar's controls, the rest of the header, the contributions and the views) comes
    in that rerun, which draws the title and the chart where they already are, so the browser
    keeps them. Only when the sidebar would start on a checkpoint and a sample weld of the data
    folder, with built-in encoders and nothing to ask (`widgets.first_inputs`); False otherwise,
    and after the paint.

    Measured side by side in one browser (a bare one-chart page and this page, medians of 15
    loads each): the first chart came 1.62× the bare page's load when the sidebar's controls
    and the contribution bars were in the first batch, 1.08× with the prediction alone."""
    if st.session_state.get(PAINTED):
        return False
    got = widgets.first_inputs(K, default="demo-best", ckpt_query_param="checkpoint", weld_query_param="weld")
    if got is None or services.upstream_encoders(got[0]) is not None:
        return False
    ck, wi = got
    targets, baselines = widgets.target_options(ck), list(BASELINES)
    target = state.url_choice("target", targets) or targets[0]
    baseline = state.url_choice("baseline", baselines) or baselines[0]
    try:
        with st.spinner("Explaining…"):
            exp = services.explain_input(ck, services.weld_for(ck, wi), baseline, target)
    except InputError:
        return False                    # the pickers will say so
    _problems, header, contrib = st.container(), st.container(), st.container()   # as in main_area
    drawn: dict = {}
    with header:
        weld_header(exp, ck, wi.weld, drawn, brief=True)
    contrib.caption(FIRST_LOOK_WAIT)            # where the rerun puts the contributions
    _rerun_when_painted(f"{K}_first_answer", drawn)
    return True


def _rerun_when_painted(key: str, drawn: dict) -> None:
    """Once the browser has drawn the charts of this run (`drawn`), mark the session painted
    and rerun (the whole page, or the fragment this is called in)."""
    browser_events.after_first_paint(key, lambda: st.session_state.update({PAINTED: True}), charts=len(drawn))


# --------------------------------------------------------------------------- inputs

def sidebar() -> tuple[LoadedCheckpoint | None, WeldInput | None, str, DeltaGenerator]:
    """The checkpoint, the weld, the target, and a place for the "Link to this view" box."""
    with st.sidebar:
        st.subheader("Checkpoint")
        ck = widgets.checkpoint_picker(K, default="demo-best", query_param="checkpoint")
        st.subheader("Weld")
        wi = widgets.weld_picker(K, query_param="weld")
        st.subheader("Explanation")
        state.from_url(f"{K}_target", "target", widgets.target_options(ck))
        target = st.selectbox("Target", widgets.target_options(ck), key=f"{K}_target",
                              help="\n\n".join(f"**{k}**: {v}" for k, v in TARGETS.items()))
        link = st.container()
    return ck, wi, target, link


def explanation(header, ck, wi, baseline: str, target: str) -> tuple | None:
    """(explanation, checkpoint, weld input, baseline, target) of the inputs; after an error
    (shown in `header`) those of the last inputs that worked; None before any worked."""
    exp = None
    if ck is not None and wi is not None:
        try:
            wi = services.weld_for(ck, wi)
            with header:
                if not encoders.ready(ck, wi, baseline, target):
                    return None
                with st.spinner("Explaining…"):
                    exp = encoders.explain(ck, wi, baseline, target)
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

def weld_header(exp: Explanation, ck: LoadedCheckpoint, weld: Weld | None, drawn: dict, brief: bool = False) -> None:
    """The title, the prediction chart and the answer in words; unless `brief`, what was
    explained, the reference set, the truth windows, absent modalities and notes."""
    h = st.columns([3, 2])
    truth = ((weld.truth or {}).get("class_name") or weld.class_name) if weld is not None else None
    # The chart before the text beside it: each element reaching the browser is one more React
    # pass before the first chart is drawn.
    with h[1]:
        if exp.logits is not None:
            names = exp.class_names or [str(i) for i in range(exp.logits.shape[1])]
            drawn["prediction"] = figs.prediction_figure(names, exp.probabilities[B], truth)
            st.plotly_chart(drawn["prediction"], key=f"{K}_pred", **figs.CHART)
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
        if brief:
            return
        st.caption(f"Explained for target `{exp.target}`; an absent modality is `{exp.baseline}`. "
                   f"Checkpoint {ck.info.path} ({ck.info.sha256[:12]}).")
        if services.needs_reference(exp.baseline, exp.target):
            ref = [w.weld_id for w in services.reference_welds() or []]
            st.caption(f"Reference set ({'anomaly distance' if exp.target == 'anomaly' else 'reference mean'}): "
                       f"the {len(ref)} good welds (class 00) of the data folder {services.data_dir().name}/: "
                       + ", ".join(ref[:8]) + (" …" if len(ref) > 8 else "") + ".")
        if weld is not None and weld.truth and weld.truth.get("windows"):
            w_txt = ", ".join(f"{a:.2f}–{z:.2f} s" for a, z in weld.truth["windows"])
            st.caption(f"Planted defect in {', '.join(weld.truth.get('modalities', [])) or '—'} at {w_txt} "
                       "(shaded on the raw-weld views).")
        missing = exp.missing(B)
        if missing:
            st.warning(f"Absent in this weld: {', '.join(missing)}. Their contribution is 0 by construction.")
        for note in exp.notes:
            st.info(note)


def how_to_read(exp: Explanation) -> None:
    unit = target_unit(exp.target)
    with st.expander("How to read this page", icon=":material/help:"):
        st.markdown(f"""
- **Prediction**: the checkpoint's class probabilities for this weld; the truth comes from the part number
  (its class code) or the weld's `truth.json`.
- **Modality contributions**: how much each of video, photos, audio and sensor moves the explained target,
  here *{exp.target}*. **Exact Shapley** and **leave-one-out** are in the target's units ({unit}); they are
  measured by running the fusion with modalities made absent (the baseline chosen above). The
  **attention-only share** is what raw attention suggests (share of the attention output norm, sums to 1):
  compare it with Shapley before trusting a heatmap. The *efficiency gap* under the bars is how far the
  Shapley values miss summing to v(all) − v(none): it should be ~0.
- **Attention maps**: one row per learnable fusion token, one column per position of the modality's feature
  sequence (a video tubelet, a photo patch, an audio patch, a sensor step), per head or the mean of heads.
  *‖α·v‖* weighs each attention weight by the size of what it carries. Click a cell to see that moment or
  region of the weld.
- **On the raw weld**: the chosen map laid over the signals, frames and photos (a coloured band under the
  traces, a tint on each patch); planted or labelled defect windows are shaded.
- **Faithfulness**: whether the methods agree, and whether the explanation changes when the model's weights
  are randomized. An explanation that stays the same explains nothing about this model.
""")


def contributions(exp: Explanation, toggle_at, drawn: dict) -> None:
    """Bars per contribution method (relevance share on request)."""
    methods = [m for m in exp.contributions if m != "relevance"]
    if exp.has_attention and toggle_at.toggle("Also show the relevance share", key=f"{K}_relevance_share"):
        methods.append("relevance")
    drawn["contributions"] = figs.contribution_bars({k: v[B] for k, v in exp.contributions.items()},
                                                    exp.present[B], methods=methods, baseline=exp.baseline,
                                                    efficiency_gap=float(exp.efficiency_gap[B]),
                                                    unit=target_unit(exp.target))
    st.plotly_chart(drawn["contributions"], key=f"{K}_bars", **figs.CHART)


@st.fragment
def rest(ck: LoadedCheckpoint, wi: WeldInput, exp: Explanation, baseline: str, target: str, drawn: dict) -> None:
    """Everything below the modality contributions: Shapley per fusion token, then the maps
    and the other views (`views`, a fragment of its own inside this one).

    When a session's first run could not be `first_answer`'s (a weld handed over from another
    page, encoders that ask first), it still sends its first answer (the sidebar, the
    prediction and the contributions) before the rest: here only a placeholder and a listener,
    which reruns this fragment once the browser has drawn that answer; a fragment rerun, so
    the header and the sidebar are not sent again."""
    if not st.session_state.get(PAINTED):
        st.caption("Drawing the attention maps…")
        _rerun_when_painted(f"{K}_first_paint", drawn)
        return
    if exp.token_shapley.shape[1]:      # below, not beside: three panels need the full width at 1000 px
        drawn["token_contributions"] = figs.token_contribution_figure(exp.token_shapley[B], exp.present[B],
                                                                      unit=target_unit(exp.target))
        st.plotly_chart(drawn["token_contributions"], key=f"{K}_token_bars", **figs.CHART)
    views(ck, wi, exp, baseline, target, drawn)


# --------------------------------------------------------------------------- display-driven views

TABS = ("Attention maps", "On the raw weld", "Faithfulness", "Report & export")
FAITH_WIDTHS = (350, 540)        # px: both fit the main column at 1400 px (~940), each alone at 1000 px


@st.fragment
def views(ck: LoadedCheckpoint, wi: WeldInput, exp: Explanation, baseline: str, target: str, drawn: dict) -> None:
    """The display controls, then one tab at a time: attention maps with the clicked cell, the
    raw weld, faithfulness, report and export (`drawn`: the figures above, for the report).

    Tabs run lazily (`on_change="rerun"`): only the open one is computed and sent, so a
    display change redraws one tab's charts, and the randomized-weights explanation runs only
    when Faithfulness is opened (then it is cached)."""
    view = MapView()
    if exp.has_attention:
        st.subheader("Attention: fusion token × position")
        view = map_controls(exp, widgets.heads_assumed(ck))
    else:
        st.info("This checkpoint has no attention (mean-pool fusion): only the contributions above apply.")
    state.from_url(f"{K}_tab", "view", TABS)
    tabs = st.tabs(list(TABS), key=f"{K}_tab", on_change="rerun")
    with tabs[0]:
        if tabs[0].open:
            maps_tab(exp, wi, view)
    with tabs[1]:
        if tabs[1].open:
            raw_tab(exp, wi, view, {})
    with tabs[2]:
        if tabs[2].open:
            faithfulness(ck, wi, exp, (baseline, target), view, {})
    with tabs[3]:
        if tabs[3].open:
            export(exp, ck, wi.weld, lambda: report_figures(ck, wi, exp, (baseline, target), view, drawn))
    state.remember(K)               # a display change reruns this fragment alone: keep it and link it
    state.write_url(K)


def maps_tab(exp: Explanation, wi: WeldInput, view: MapView) -> None:
    if not exp.has_attention:
        return
    cell = heatmaps(exp, view, {})
    if cell:
        cell_detail(exp, wi.weld, cell, view.assumed)
    else:
        st.caption("Click a heatmap cell to see that moment or region of the weld here.")
    browser_events.listen_cell_clicks(f"{K}_cell_clicks", select_cell)


def raw_tab(exp: Explanation, wi: WeldInput, view: MapView, drawn: dict) -> None:
    if wi.weld is not None:
        raw_weld(exp, wi, view, drawn)
    else:
        st.caption("A feature file carries no raw weld: the raw-weld views need a weld folder, a zip or the "
                   "weld's files.")


def report_figures(ck: LoadedCheckpoint, wi: WeldInput, exp: Explanation, how: tuple[str, str], view: MapView,
                   drawn: dict) -> dict:
    """Every figure of the page for this weld and these display choices (for the report),
    built without drawing: those above, the heatmaps, the raw weld and faithfulness."""
    out = dict(drawn)
    for m in view.maps:
        out[f"heatmap_{m}"] = figs.add_time_cursor(heatmap_figure(exp, view, m, None), cursor_time(),
                                                   positions_of(exp, m, B))
    if wi.weld is not None:
        out.update(raw_weld_figures(exp, wi, view))
    out.update(faithfulness_figures(ck, wi, exp, how, view))
    return out


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


def select_cell(modality: str, cell: dict) -> None:
    """A heatmap cell was clicked (`browser_events.listen_cell_clicks`): show it. Runs before
    the rerun, so the clicked cell is outlined in that very run."""
    st.session_state[CELL] = {"modality": modality, **cell}


def heatmaps(exp: Explanation, view: MapView, drawn: dict) -> dict | None:
    """One clickable heatmap per modality; returns the selected cell (None: none, or stale)."""
    maps = view.maps
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
            drawn[f"heatmap_{m}"] = fig = heatmap_figure(exp, view, m, cell)
            figs.add_time_cursor(fig, cursor_time(), positions_of(exp, m, B))
            st.plotly_chart(fig, key=f"{K}_hm_{m}", **figs.CHART)
    return cell


def heatmap_figure(exp: Explanation, view: MapView, m: str, cell: dict | None):
    """Modality m's token × position map on the view's colour range (`cell`: outline it)."""
    maps = view.maps
    lo, hi = shared_range(maps if view.shared else [maps[m]], view.robust)
    return figs.attention_heatmap(
        maps[m], positions_of(exp, m, B), title=map_title(m, view), zmin=lo, zmax=hi,
        colorscale=view.cscale, value_label=view.value_label,
        max_cols=None if view.full_res else figs.HEATMAP_MAX_COLS, clickable=m,
        selected=(cell["token"], cell["s0"]) if cell and cell["modality"] == m else None)


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


# --------------------------------------------------------------------------- faithfulness

def faithfulness(ck: LoadedCheckpoint, wi: WeldInput, exp: Explanation, how: tuple[str, str], view: MapView,
                 drawn: dict) -> None:
    """Method agreement, and the same explanation (`how` = baseline, target) of a model
    with randomized weights beside the real one."""
    st.caption("Do the methods rank the modalities alike, and do the explanations depend on the weights? "
               "Randomizing the weights (Adebayo et al. 2018) should change a faithful explanation; "
               "a map that stays the same explains nothing about this model. Both maps below share one "
               "colour scale.")
    # Side by side where they fit (1400 px), one under the other where they do not (1000 px):
    # a wrapping row of fixed-width charts; in two columns at 1000 px their titles were cut.
    fc = st.container(horizontal=True, gap="medium")
    drawn["method_agreement"] = figs.agreement_figure(method_agreement(exp, B))
    fc.plotly_chart(drawn["method_agreement"], key=f"{K}_agreement", width=FAITH_WIDTHS[0], **figs.CHART)
    try:
        with st.spinner("Explaining this weld again with randomized weights…"):
            exp_r = services.explain_input(services.randomized_checkpoint(ck), wi, *how)
    except InputError as e:
        st.error(str(e))
        return
    rt = randomization_test(exp, exp_r, B)
    drawn["randomization"] = figs.randomization_figure(rt.similarity, rt.contributions)
    fc.plotly_chart(drawn["randomization"], key=f"{K}_random", width=FAITH_WIDTHS[1], **figs.CHART)
    if view.maps:
        pick = st.columns(3)[0].selectbox("Map beside its randomized-weights twin", list(view.maps),
                                          key=f"{K}_random_modality")
        drawn["randomized_twin"] = twin_figure(exp, exp_r, view, pick)
        st.plotly_chart(drawn["randomized_twin"], key=f"{K}_twin", **figs.CHART)


def twin_figure(exp: Explanation, exp_r: Explanation, view: MapView, m: str):
    rand = exp_r.token_map(B, m, view.head, view.kind)
    return figs.twin_heatmaps(view.maps[m], rand, positions_of(exp, m, B), colorscale=view.cscale,
                              value_label=view.value_label, robust=view.robust,
                              titles=(f"{m}: real weights", f"{m}: randomized weights"))


def faithfulness_figures(ck: LoadedCheckpoint, wi: WeldInput, exp: Explanation, how: tuple[str, str],
                         view: MapView) -> dict:
    """The Faithfulness tab's figures, without drawing (every modality's twin)."""
    out = {"method_agreement": figs.agreement_figure(method_agreement(exp, B))}
    try:
        exp_r = services.explain_input(services.randomized_checkpoint(ck), wi, *how)
    except InputError:
        return out
    rt = randomization_test(exp, exp_r, B)
    out["randomization"] = figs.randomization_figure(rt.similarity, rt.contributions)
    for m in view.maps:
        out[f"randomized_twin_{m}"] = twin_figure(exp, exp_r, view, m)
    return out
