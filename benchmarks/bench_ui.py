"""The dashboard's responsiveness, against a bare one-chart Streamlit page, in ONE browser run.

Both servers run side by side; one headless Chromium (offline) drives them in turn, so every
figure below shares the machine, browser and load of the moment, and only ratios are
reported as the figures that matter.

"Settled" = the Streamlit script run (or fragment run) has finished and nothing in the page
has changed for QUIET_MS; the time taken is up to the LAST change, so the quiet wait is not
counted. Page loads count from navigation start; interactions from just before the click.

Prints `name=value` lines:
  bare_page_s                     bare page: navigation → its one chart drawn and settled
  explore_first_chart_s           Explore (?weld=<id>): navigation → first chart drawn
  explore_full_s                  Explore: navigation → every chart drawn and settled
  head_change_s                   Explore loaded: choose another head → settled
  weld_change_cached_s            Explore: switch back to a weld seen before (cached) → settled
  cell_click_s                    Explore: click a sensor-heatmap cell → detail drawn, settled
  explore_first_chart_over_bare   (targets: ≤ 1.5)
  explore_full_over_bare          (≤ 3)
  head_change_over_bare           (≤ 1)
  weld_change_cached_over_bare    (≤ 1.5)
  cell_click_over_bare            (≤ 1)
Each is the median of REPS repetitions, after one warm-up (Plotly bundle compiled, models
and welds loaded, Python imports done).
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_page import CHROMIUM, CHROMIUM_ARGS, OFFLINE, _free_port, _start_streamlit  # beside this file

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from test_app_support import CELL_CENTRE_JS  # noqa: E402 - the tests' helper, shared with the browser test
REPS = 5
QUIET_MS = 400
TIMEOUT_MS = 180_000
WELD_A, WELD_B = "000507", "000100"

# Installed before any page script: records when the page last changed (outside Streamlit's
# own status widget), when the first chart drew, and every script-state transition.
_OBSERVER_JS = """
(() => {
  window.__bench = {last: 0, first: null, states: []};
  const ignore = el => el && el.closest && el.closest('[data-testid="stStatusWidget"],[data-testid="stToolbar"],'
                                                      + '[data-testid="stDecoration"]');
  // One `closest` per batch at most: a Plotly redraw is thousands of mutation records, and
  // testing each one cost the page ~100 ms of main thread per head change (CPU profile).
  new MutationObserver(muts => {
    const now = performance.now();
    let changed = false;
    for (const m of muts) {
      const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
      if (m.type === 'attributes' && m.attributeName === 'data-test-script-state') {
        window.__bench.states.push([now, el.getAttribute('data-test-script-state')]);
        continue;
      }
      if (!changed && !ignore(el)) changed = true;
    }
    if (changed) window.__bench.last = now;
    if (window.__bench.first === null && document.querySelector('.js-plotly-plot .main-svg'))
      window.__bench.first = now;
  }).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
})();
"""

# Settled since `t0`: a run started after t0 and finished, then QUIET_MS without change.
_SETTLED_JS = """([t0, quiet, n]) => {
  const b = window.__bench, app = document.querySelector('[data-testid="stApp"]');
  if (!b || !app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (t0 >= 0 && !b.states.some(([t, s]) => t > t0 && s === 'running')) return false;
  const charts = [...document.querySelectorAll('.js-plotly-plot')].filter(el => el.querySelector('.main-svg'));
  if (charts.length < n) return false;
  return performance.now() - b.last > quiet;
}"""


def _settle(page, t0: float, n_charts: int = 1) -> float:
    """Seconds from t0 (page ms; -1: navigation start) to the page's last change."""
    page.wait_for_function(_SETTLED_JS, arg=[t0, QUIET_MS, n_charts], polling=50, timeout=TIMEOUT_MS)
    last = page.evaluate("window.__bench.last")
    return (last - max(t0, 0.0)) / 1000.0


def _now(page) -> float:
    return page.evaluate("performance.now()")


def _choose(page, label: str, option: str, where: str = "stMain") -> float:
    """Pick `option` in the selectbox labelled `label`; returns the page time of the pick."""
    box = page.get_by_test_id(where).get_by_test_id("stSelectbox").filter(
        has=page.get_by_text(label, exact=True)).first
    box.locator("input").click()
    opt = page.get_by_role("option", name=option, exact=True)
    try:
        opt.wait_for(timeout=1500)
    except Exception:                      # noqa: BLE001 - focused but not opened: open it
        page.keyboard.press("ArrowDown")
        opt.wait_for()
    t0 = _now(page)
    opt.click()
    return t0


def _click_cell(page, title: str, col: int, token: int) -> float:
    xy = page.evaluate(CELL_CENTRE_JS, [title, col, token])
    page.mouse.move(xy[0], xy[1])
    page.wait_for_timeout(300)
    t0 = _now(page)
    page.mouse.click(xy[0], xy[1])
    return t0


def _load(page, url: str, n_charts: int) -> tuple[float, float]:
    page.goto(url, wait_until="commit")
    full = _settle(page, -1, n_charts)
    first = page.evaluate("window.__bench.first") / 1000.0
    return first, full


def _count_charts(page) -> int:
    return page.evaluate("[...document.querySelectorAll('.js-plotly-plot')].length")


def measure(bare_url: str, app_url: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    runs: dict[str, list[float]] = {k: [] for k in ("bare_page_s", "explore_first_chart_s", "explore_full_s",
                                                    "head_change_s", "weld_change_cached_s", "cell_click_s")}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + [OFFLINE])
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.add_init_script(_OBSERVER_JS)
        page = ctx.new_page()
        # warm-up: the app with both welds, the bare page
        _load(page, f"{app_url}?weld={WELD_B}", 1)
        _load(page, f"{app_url}?weld={WELD_A}", 1)
        n_charts = _count_charts(page)
        _load(page, bare_url, 1)
        for i in range(REPS):
            runs["bare_page_s"].append(_load(page, bare_url, 1)[1])
            first, full = _load(page, f"{app_url}?weld={WELD_A}", n_charts)
            runs["explore_first_chart_s"].append(first)
            runs["explore_full_s"].append(full)
            runs["head_change_s"].append(_settle(page, _choose(page, "Head", f"head {1 + i % 3}")))
            runs["cell_click_s"].append(_settle(page, _click_cell(page, "sensor", 10 + i, i % 2)))
            t0 = _choose(page, "Weld", _weld_label(WELD_B), where="stSidebar")
            _settle(page, t0)
            t0 = _choose(page, "Weld", _weld_label(WELD_A), where="stSidebar")
            runs["weld_change_cached_s"].append(_settle(page, t0))
            print(f"# rep {i + 1}: " + ", ".join(f"{k}={v[-1]:.2f}" for k, v in runs.items()), flush=True)
        ctx.close()
        browser.close()
    return {k: statistics.median(v) for k, v in runs.items()} | {"explore_charts": n_charts}


def _weld_label(weld_id: str) -> str:
    from app.widgets import class_label
    return class_label(weld_id)


def main() -> int:
    from app import services
    if not any(p.name == WELD_A for p in services.list_weld_folders()):
        print("# no sample welds: run `make sample-data`", flush=True)
        return 1
    with tempfile.NamedTemporaryFile("wb", suffix=".log", delete=False) as log_a, \
            tempfile.NamedTemporaryFile("wb", suffix=".log", delete=False) as log_b:
        pa, pb = _free_port(), _free_port()
        procs = [_start_streamlit(REPO / "benchmarks" / "bare_page.py", pa, log_a),
                 _start_streamlit(REPO / "app" / "main.py", pb, log_b)]
        try:
            t = measure(f"http://127.0.0.1:{pa}/", f"http://127.0.0.1:{pb}/")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except Exception:
                    p.kill()
    for k, v in t.items():
        print(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}", flush=True)
    bare = t["bare_page_s"]
    for k in ("explore_first_chart", "explore_full", "head_change", "weld_change_cached", "cell_click"):
        print(f"{k}_over_bare={t[k + '_s'] / bare:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    t_start = time.perf_counter()
    rc = main()
    print(f"# bench_ui took {time.perf_counter() - t_start:.0f} s", flush=True)
    sys.exit(rc)
