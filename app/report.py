"""One weld's report: a single offline HTML file, and the figures as PNG or SVG.

`report_html` writes the weld, the checkpoint (name, sha256), prediction and truth, target
and baseline, the contribution table in each method's unit, the notes and every figure into
ONE file that opens offline: plotly.js is inlined once (from the installed plotly package,
never a CDN) and each figure is a div that uses it. `figure_images` renders the figures
through kaleido driving the system Chromium (`CHROMIUM`), all of them in one browser session,
and never downloads a browser. Every exported figure is titled with its context
("<figure> · weld <id> · <checkpoint> (<sha8>) · pred <class>"), so a heatmap saved on its
own still says which weld and model it shows.

No Streamlit here: pure functions, so tests (and later a CLI) call them directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import importlib.metadata
import io
import os
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from fusion_core.explain.engine import BASELINES, Explanation
from fusion_core.explain.methods import METHODS
from fusion_core.io.weld import Weld
from fusion_core.models.checkpoint import LoadedCheckpoint
from fusion_core.vocab import MODALITIES

from app.figures.common import PLOT_CONFIG

PRODUCT = "Weld fusion attention dashboard"
DIST_NAME = "weld-fusion-dashboard"
CHROMIUM = "/usr/bin/chromium"
NO_CHROMIUM = "PNG/SVG export needs Chromium at {path}: run make browser"
IMAGE_FORMATS = ("png", "svg")
EXPORT_WIDTH = 1000             # px of an exported figure whose layout sets no width (the page's is fluid)
EXPORT_HEIGHT = 450
KALEIDO_TABS = 2                # browser tabs rendering at once, in one Chromium
KALEIDO_TIMEOUT_S = 90          # per figure
UNITS = {"target": "target units", "share": "share, sums to 1"}


class ExportError(RuntimeError):
    """A static export that could not be made; the message names the problem, for the UI."""


@dataclass(frozen=True)
class ReportContext:
    """What the report says about one weld explained by one checkpoint."""

    weld_id: str
    checkpoint_name: str
    checkpoint_path: str
    checkpoint_sha256: str
    target: str
    target_value: float
    baseline: str
    prediction: str | None            # class (None: the checkpoint has no classifier)
    probability: float | None
    truth: str | None                 # true class when known
    contributions: pd.DataFrame       # Explanation.contributions_frame() rows of this weld
    efficiency_gap: float
    heads: int | None
    heads_source: str
    notes: tuple[str, ...] = ()
    generated_at: str | None = None   # None: the moment the report is written

    @property
    def sha8(self) -> str:
        return self.checkpoint_sha256[:8]

    @property
    def right(self) -> bool | None:
        """Prediction equals truth (None when either is unknown)."""
        if self.prediction is None or self.truth is None:
            return None
        return self.prediction == self.truth


# --------------------------------------------------------------------------- context

def truth_of(weld: Weld | None) -> str | None:
    """The weld's true class: its truth.json, else the class code in its part number."""
    if weld is None:
        return None
    return (weld.truth or {}).get("class_name") or weld.class_name


def weld_notes(exp: Explanation, ck: LoadedCheckpoint, weld: Weld | None, b: int = 0) -> list[str]:
    """The checkpoint's and the explanation's notes (as the CLI's JSON has them), then what
    this weld lacks: absent modalities, photos not read."""
    notes = list(ck.info.notes) + list(exp.notes)
    if ck.info.heads_assumed and not any("assumed" in n for n in notes):
        notes.append(f"head count assumed ({ck.info.heads}): the file does not state it; per-head views depend on it")
    missing = exp.missing(b)
    if missing:
        notes.append(f"absent in this weld: {', '.join(missing)} (their contribution is 0 by construction)")
    if weld is not None and weld.images_skipped:
        notes.append(f"{weld.images_skipped} more photo(s) in this weld were not read (decode budget)")
    return list(dict.fromkeys(notes))


def report_context(exp: Explanation, ck: LoadedCheckpoint, weld: Weld | None = None, b: int = 0,
                   generated_at: str | None = None) -> ReportContext:
    """The report's context for sample `b` of `exp`, explained with `ck`."""
    probs = exp.probabilities
    frame = exp.contributions_frame()
    info = ck.info
    return ReportContext(
        weld_id=str(exp.ids[b]), checkpoint_name=Path(info.path).name, checkpoint_path=str(info.path),
        checkpoint_sha256=info.sha256, target=exp.target, target_value=float(exp.target_values[b]),
        baseline=exp.baseline, prediction=exp.predicted(b),
        probability=None if probs is None else float(probs[b].max()), truth=truth_of(weld),
        contributions=frame[frame["sample"] == b].reset_index(drop=True),
        efficiency_gap=float(exp.efficiency_gap[b]), heads=info.heads, heads_source=info.heads_source,
        notes=tuple(weld_notes(exp, ck, weld, b)), generated_at=generated_at)


def checkpoint_json(ck: LoadedCheckpoint) -> dict:
    """The checkpoint as the CLI's explain JSON describes it, plus its file name."""
    i = ck.info
    return {"path": i.path, "name": Path(i.path).name, "sha256": i.sha256, "architecture": i.architecture,
            "layout": i.layout, "dims": i.dims, "heads": i.heads, "heads_source": i.heads_source,
            "heads_assumed": i.heads_assumed, "parameters": i.parameters, "epoch": i.epoch, "metric": i.metric,
            "classes": i.classes, "output": i.output}


def product_line() -> str:
    try:
        version = importlib.metadata.version(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        version = "(version unknown)"
    return f"{PRODUCT} {version}"


def file_stem(ctx: ReportContext) -> str:
    """A file-name-safe `<weld>_<sha8>` (weld ids come from uploads)."""
    weld = re.sub(r"[^A-Za-z0-9._-]+", "_", ctx.weld_id).strip("._") or "weld"
    return f"{weld[:80]}_{ctx.sha8}"


# --------------------------------------------------------------------------- titles

def figure_label(name: str, own: str | None = None) -> str:
    """What a figure is: its export name ("heatmap_sensor" → "heatmap sensor"), with the
    figure's own title when that says more."""
    label = name.replace("_", " ")
    if not own or own.lower() in label.lower():
        return label
    if own.lower().startswith(label.lower()):
        return own
    first = own.split()[0].lower()
    return f"{label}: {own}" if first in label.lower().split() else own


def context_line(ctx: ReportContext) -> str:
    """"weld <id> · <checkpoint> (<sha8>) · pred <class>" (target value without a classifier)."""
    outcome = f"pred {ctx.prediction}" if ctx.prediction is not None else f"{ctx.target} = {ctx.target_value:.4g}"
    return f"weld {ctx.weld_id} · {ctx.checkpoint_name} ({ctx.sha8}) · {outcome}"


def context_title(name: str, ctx: ReportContext, own: str | None = None) -> str:
    """The exported figure's title as plain text: "<figure> · weld <id> · <ckpt> (<sha8>) · pred <class>"."""
    return f"{figure_label(name, own)} · {context_line(ctx)}"


def with_context_title(fig: go.Figure, name: str, ctx: ReportContext, width: int | None = None) -> go.Figure:
    """A copy of `fig` titled with its context; on two lines when one would not fit `width` px.
    User-derived text (weld id, file name) is escaped: Plotly reads tags in titles."""
    out = go.Figure(fig)
    own = out.layout.title.text
    head = figure_label(name, own)                      # the code's own names and titles
    line = html.escape(context_line(ctx), quote=False)
    px = width or out.layout.width or EXPORT_WIDTH
    two_lines = 7 * (len(context_title(name, ctx, own))) > px
    text = f"{head}<br><span style='font-size:11px'>{line}</span>" if two_lines else f"{head} · {line}"
    # The title sits at the top of the figure; the plot (and its subplot titles) moves down
    # by the title's height, less the height of the title it replaces.
    top = out.layout.margin.t if out.layout.margin.t is not None else 16
    top = max(16, top - 24) if own else top
    out.update_layout(title=dict(text=text, x=0.0, xanchor="left", xref="container", y=1.0, yanchor="top",
                                 yref="container", pad=dict(t=8, l=8), font=dict(size=13)),
                      margin=dict(t=top + (50 if two_lines else 32)))
    return out


# --------------------------------------------------------------------------- report

def contribution_table(ctx: ReportContext) -> pd.DataFrame:
    """One row per modality, one column per method (label and unit), `present` last."""
    frame = ctx.contributions
    table = pd.DataFrame({"modality": list(MODALITIES)})
    for method in dict.fromkeys(frame["method"]):
        m = METHODS.get(method)
        unit = UNITS.get(m.unit, m.unit) if m else "?"
        if m is not None and m.unit == "target":
            unit = f"{unit}: {ctx.target}"
        values = frame[frame["method"] == method].set_index("modality")["value"]
        table[f"{m.label if m else method} ({unit})"] = [float(values.get(mod, float("nan"))) for mod in MODALITIES]
    present = frame.drop_duplicates("modality").set_index("modality")["present"]
    table["present"] = ["yes" if present.get(mod, False) else "absent" for mod in MODALITIES]
    return table


def _table_html(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = []
    for _, row in table.iterrows():
        cells = "".join(f"<td class='num'>{v:.9g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>"
                        for v in row)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table id='contributions'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _summary_html(ctx: ReportContext) -> str:
    e = html.escape
    if ctx.prediction is not None:
        verdict = {True: " <span class='right'>(right)</span>", False: " <span class='wrong'>(wrong)</span>",
                   None: ""}[ctx.right]
        pred = f"{e(ctx.prediction)} (probability {ctx.probability:.4f}){verdict}"
    else:
        pred = "— (no classifier: the target below is explained)"
    heads = f"{ctx.heads} (from {e(ctx.heads_source)})" if ctx.heads is not None else "n/a (no attention)"
    rows = [("Weld", e(ctx.weld_id)),
            ("Checkpoint", f"{e(ctx.checkpoint_name)} <span class='dim'>({e(ctx.checkpoint_path)})</span>"),
            ("sha256", f"<code>{e(ctx.checkpoint_sha256)}</code>"),
            ("Prediction", pred),
            ("Truth", e(ctx.truth) if ctx.truth is not None else "unknown"),
            ("Target", f"<code>{e(ctx.target)}</code> = {ctx.target_value:.9g}"),
            ("Baseline", f"<code>{e(ctx.baseline)}</code>: {e(BASELINES.get(ctx.baseline, ''))}"),
            ("Efficiency gap", f"{ctx.efficiency_gap:.3g} (Σ Shapley − (v(all) − v(none)))"),
            ("Fusion heads", heads)]
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<dl id='summary'>{items}</dl>"


_STYLE = """
body{font-family:'Source Sans Pro','Source Sans 3',sans-serif;color:#31333F;margin:24px auto;max-width:1200px;padding:0 16px}
h1{margin-bottom:0} .meta,.dim{color:#777;font-size:13px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px} dt{font-weight:600}
table{border-collapse:collapse;margin:8px 0} th,td{border:1px solid #ddd;padding:4px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums} th{background:#f6f6f8}
.right{color:#1a7f37} .wrong{color:#cf222e} figure{margin:24px 0} code{font-size:12px}
"""


def report_html(context: ReportContext, figures: dict[str, go.Figure]) -> bytes:
    """ONE offline HTML file: the summary, notes, contribution table and every figure (titled
    with its context); plotly.js inlined once in the head, each figure a div using it."""
    e = html.escape
    ctx = context
    when = ctx.generated_at or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    notes = "".join(f"<li>{e(n)}</li>" for n in ctx.notes) or "<li>none</li>"
    divs = "".join(
        f"<figure id='fig-{e(name)}'>"
        + with_context_title(fig, name, ctx).to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG)
        + "</figure>" for name, fig in figures.items())
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Weld {e(ctx.weld_id)} · {e(ctx.checkpoint_name)} ({e(ctx.sha8)})</title>"
        f"<style>{_STYLE}</style><script type='text/javascript'>{plotly_js}</script></head><body>"
        f"<h1>Weld {e(ctx.weld_id)}</h1>"
        f"<p class='meta'>{e(product_line())} · generated {e(when)}</p>"
        f"{_summary_html(ctx)}<h2>Notes</h2><ul id='notes'>{notes}</ul>"
        f"<h2>Modality contributions</h2>{_table_html(contribution_table(ctx))}"
        f"<h2>Figures</h2>{divs}</body></html>")
    return page.encode("utf-8")


# --------------------------------------------------------------------------- static images

def static_export_problem() -> str | None:
    """Why PNG/SVG export cannot work here (None: it can): no Chromium, or no kaleido."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return NO_CHROMIUM.format(path=CHROMIUM)
    try:
        import kaleido  # noqa: F401  (imported lazily: it loads choreographer)
    except ImportError:
        return "PNG/SVG export needs the kaleido package: run make (pip install -r requirements.txt)"
    return None


def export_size(fig: go.Figure) -> tuple[int, int]:
    """(width, height) in px of a figure's static image: its layout's, else the defaults."""
    return int(fig.layout.width or EXPORT_WIDTH), int(fig.layout.height or EXPORT_HEIGHT)


def render_images(figures: list[go.Figure], fmt: str) -> list[bytes]:
    """Each figure as `fmt` bytes at `export_size`, all in one Chromium session (kaleido,
    `KALEIDO_TABS` tabs at once). Raises ExportError naming the problem."""
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; choose from {', '.join(IMAGE_FORMATS)}")
    problem = static_export_problem()
    if problem:
        raise ExportError(problem)
    import kaleido

    async def run() -> list[bytes]:
        # path= names the browser outright: choreographer's own search (a downloaded Chrome
        # first, then $BROWSER_PATH, then PATH) is skipped, and nothing is downloaded.
        # mathjax=False: its default is a CDN script; plotly.js comes from the plotly package.
        async with kaleido.Kaleido(n=max(1, min(KALEIDO_TABS, len(figures))), timeout=KALEIDO_TIMEOUT_S,
                                   path=CHROMIUM, mathjax=False) as k:
            jobs = [k.calc_fig(f, opts=dict(format=fmt, width=w, height=h, scale=1))
                    for f, (w, h) in ((f, export_size(f)) for f in figures)]
            return list(await asyncio.gather(*jobs))

    try:
        # A thread of its own: the caller may already run an event loop (Streamlit's server).
        with ThreadPoolExecutor(1, thread_name_prefix="kaleido") as pool:
            return pool.submit(lambda: asyncio.run(run())).result()
    except Exception as e:  # noqa: BLE001  every failure becomes one line the UI can show
        raise ExportError(f"{fmt.upper()} export failed: {type(e).__name__}: {e}") from e


def figure_images(figures: dict[str, go.Figure], fmt: str, context: ReportContext | None = None) -> bytes:
    """A zip of the figures as PNG or SVG (`fmt`), one `<name>.<fmt>` each, titled with the
    context when one is given, each at its `export_size` (made explicit in its layout)."""
    prepared = {}
    for name, fig in figures.items():
        f = with_context_title(fig, name, context, export_size(fig)[0]) if context is not None else go.Figure(fig)
        w, h = export_size(fig)
        prepared[name] = f.update_layout(width=w, height=h)
    images = render_images(list(prepared.values()), fmt)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in zip(prepared, images):
            z.writestr(f"{name}.{fmt}", data)
    return buf.getvalue()
