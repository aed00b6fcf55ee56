"""What every figure shares: the look (font, template, colours), float32 payloads, the
Streamlit chart keywords, standalone HTML, and the labels of contribution methods."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

from fusion_core.explain.methods import METHODS

MODALITY_COLORS = {"video": "#4C78A8", "image": "#F58518", "audio": "#54A24B", "sensor": "#B279A2"}
COLORSCALES = ("Viridis", "Cividis", "Inferno", "Blues", "YlOrRd", "Turbo")
FONT = dict(size=12, family="'Source Sans Pro', 'Source Sans 3', sans-serif", color="#31333F")


def _slim_template(base: str = "plotly_white") -> str:
    """`base` cut to what these figures use, registered as the default template.

    Plotly deep-copies the template into every figure it builds and sends it with each one:
    plotly_white's 7.2 KB (polar, ternary, geo, 3-D scenes, 24 trace types) cost ~15 ms per
    figure to copy and validate, and its bytes in every chart. Cut to 2.5 KB: ~4 ms. The
    look is plotly_white's, unchanged for these trace types."""
    full = pio.templates[base].to_plotly_json()
    lay = {k: v for k, v in full["layout"].items() if k not in ("polar", "ternary", "scene", "geo")}
    # Every axis grows its margin to fit its labels (so no tick label or category name is
    # clipped in a narrow column): set once here, it applies to every x and y axis of every
    # figure; `update_xaxes` in each figure searched all its axes (~5 ms for nine rows).
    for ax in ("xaxis", "yaxis"):
        lay[ax] = {**lay.get(ax, {}), "automargin": True}
    data = {k: v for k, v in full["data"].items() if k in ("scatter", "scattergl", "bar", "heatmap", "box", "image")}
    name = f"{base}_weld"
    pio.templates[name] = go.layout.Template(layout=lay, data=data)
    pio.templates.default = name         # what go.Figure() copies first, before `layout` sets it again
    return name


TEMPLATE = _slim_template()
PLOT_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
# Keyword arguments for every st.plotly_chart: the figures carry their own template
# (TEMPLATE); Streamlit's chart theme would restyle them in the browser, which costs
# about a third of the drawing time on a page of fifteen charts.
CHART = {"config": PLOT_CONFIG, "theme": None}


def method_label(name: str) -> str:
    """The short label of a contribution method (fusion_core.explain.methods.METHODS)."""
    return METHODS[name].label if name in METHODS else name.replace("_", " ")


def f32(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


def wrap_label(text: str, width: int = 14) -> str:
    """`text` broken at spaces into lines of about `width` characters (`<br>`), so a long
    category or subplot title stays narrow on a 1000 px screen."""
    lines, line = [], ""
    for word in str(text).split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "<br>".join(lines)


def axis_suffix(row: int) -> str:
    """Plotly's name suffix of the axes of subplot row `row` (1-based): "" for the first,
    then "2", "3", …: `xaxis{suffix}` in the layout, `x{suffix}` on a trace or shape."""
    return "" if row == 1 else str(row)


def layout_dict(title: str | None = None, height: int | None = None, **kw) -> dict:
    """The shared look as a layout dict, for a figure built in one `go.Figure(data, layout)`
    call: each `update_layout` on a built figure goes through Plotly's relayout machinery
    (~3 ms a call; nearly half of a heatmap-cell click's server time went there)."""
    kw.setdefault("margin", dict(l=60, r=20, t=40 if title else 16, b=40))
    return dict(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)) if title else None,
                height=height, font=FONT, **kw)         # template: the default (TEMPLATE)


def layout(fig: go.Figure, title: str | None = None, height: int | None = None, **kw) -> go.Figure:
    """The shared look; axes grow their margins to fit their labels (automargin, from the
    template), so no tick label or category name is clipped in a narrow column."""
    fig.update_layout(layout_dict(title, height, **kw))
    return fig


def payload_bytes(fig: go.Figure) -> int:
    """Bytes Streamlit sends for this figure (it serialises with `plotly.io.to_json`)."""
    return len(pio.to_json(fig, validate=False).encode())


def figure_html(fig: go.Figure, page_title: str | None = None) -> str:
    """Standalone HTML with plotly.js embedded: opens offline, no CDN. `page_title` (plain
    text, escaped here) names the browser tab; give the figure a context title for its own."""
    out = fig.to_html(include_plotlyjs=True, full_html=True, config=PLOT_CONFIG)
    if page_title:
        out = out.replace("<head>", f"<head><title>{html.escape(page_title)}</title>", 1)
    return out


def empty_figure(message: str, height: int = 200) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=13, color="#666"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return layout(fig, height=height)
