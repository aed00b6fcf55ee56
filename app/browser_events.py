"""What only the browser knows, sent back to the script: a click on a heatmap cell, and that
the first part of a page has been painted. Both are script-only components
(`st.components.v2`: no iframe, no build step, served by Streamlit itself).

Clicks on heatmap cells (`listen_cell_clicks`). Streamlit's `st.plotly_chart(on_select=...)`
reports selections, and Plotly heatmaps have no selectable points, so the first version laid
an invisible scatter point over every cell: ~2,000 SVG nodes on the Explore page, half its
DOM, and most of what the browser spent on a redraw. Instead, a component listens for
Plotly's own `plotly_click` on the heatmaps marked clickable (`layout.meta`,
`figs.CLICKABLE`) and sends the clicked cell's customdata back as a trigger value.

The listener binds lazily: a capturing `pointerdown` on the document attaches the handler to
the chart under the pointer if Plotly has (re)created its event emitter since, so charts
drawn later, or redrawn by `Plotly.newPlot`, need no polling and no mutation observer.

The first paint (`after_first_paint`): a trigger fired once the browser has painted, so a
page can draw its first answer alone and the heavy rest in the rerun it causes.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from app import figures as figs

_CELL_JS = """
export default function (component) {
  const { setTriggerValue } = component;
  const KEY = %(key)s;
  window.__weldCellClick = setTriggerValue;            // the mounted instance reports the clicks
  if (!window.__weldCellListening) {
    window.__weldCellListening = true;
    document.addEventListener('pointerdown', (ev) => {
      const gd = ev.target && ev.target.closest ? ev.target.closest('.js-plotly-plot') : null;
      const meta = gd && gd.layout && gd.layout.meta;
      if (!gd || !gd.on || !meta || typeof meta[KEY] !== 'string' || gd.__weldCellOn === gd.on) return;
      gd.__weldCellOn = gd.on;                         // Plotly.newPlot makes a new emitter: bind again
      gd.on('plotly_click', (e) => {
        const p = (e.points || []).find((q) => q.data && q.data.type === 'heatmap');
        const name = gd.layout && gd.layout.meta && gd.layout.meta[KEY];
        if (!p || !p.customdata || typeof name !== 'string' || !window.__weldCellClick) return;
        window.__weldCellClick('cell', { map: name, customdata: Array.from(p.customdata).slice(0, 3) });
      });
    }, true);
  }
  return () => { if (window.__weldCellClick === setTriggerValue) window.__weldCellClick = null; };
}
""" % {"key": repr(figs.CLICKABLE)}

_cell_clicks = st.components.v2.component("weld_dashboard.cell_clicks", js=_CELL_JS)


def listen_cell_clicks(key: str, on_click: Callable[[str, dict], None]) -> None:
    """Mount the listener (once per page run; it takes no space). A click on a cell of a
    heatmap marked `clickable=name` calls `on_click(name, {"token", "s0", "s1"})` before the
    script (or fragment) reruns; a malformed report is ignored."""

    def changed() -> None:
        state = st.session_state.get(key)
        try:
            click = state["cell"] if state is not None else None
        except (KeyError, TypeError):
            click = None
        got = figs.cell_from_click(click)
        if got is not None:
            on_click(*got)

    _cell_clicks(key=key, on_cell_change=changed, width="stretch", height="content")


# --------------------------------------------------------------------------- first paint

_PAINT_JS = """
export default function (component) {
  const { setTriggerValue } = component;
  const want = Number((component.data || {}).charts) || 0, start = performance.now();
  let live = true, frame = 0;
  // Once per frame until the run's charts are drawn (Streamlit loads its Plotly code lazily,
  // so they can come after this mounts) or WAIT_MS have passed; then requestAnimationFrame
  // runs just before the next paint, and the timeout just after it.
  const check = () => {
    const drawn = document.querySelectorAll('.js-plotly-plot .main-svg').length;
    frame = (drawn >= want || performance.now() - start > %(wait)d)
      ? requestAnimationFrame(() => setTimeout(() => { if (live) setTriggerValue('painted', true); }, 0))
      : requestAnimationFrame(check);
  };
  check();
  return () => { live = false; cancelAnimationFrame(frame); };
}
"""

WAIT_MS = 3000        # the longest the rest waits for the first charts

_first_paint = st.components.v2.component("weld_dashboard.first_paint", js=_PAINT_JS % {"wait": WAIT_MS})


def after_first_paint(key: str, on_painted: Callable[[], None], charts: int = 0) -> None:
    """Call `on_painted()` and rerun (the fragment this is in, or the script) as soon as the
    browser has painted what the run drew so far, its first `charts` Plotly charts included
    (or WAIT_MS have passed): a page can send its first answer alone and draw the rest in the
    rerun. Without the wait, the rerun's elements sometimes reached the browser before its lazily
    loaded Plotly code had drawn the first chart, and the chart then waited for all of them
    (bimodal first-chart times, 0.35 or 0.95 s). Only a browser fires it (AppTest never does);
    a page opened in a background tab fires it when shown (requestAnimationFrame waits until
    the page is visible)."""
    _first_paint(key=key, data={"charts": int(charts)}, on_painted_change=on_painted, width="stretch",
                 height="content")
