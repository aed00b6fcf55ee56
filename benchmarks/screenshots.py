"""Screenshots of each dashboard page, made by the browser the tests use (headless Chromium).

    python benchmarks/screenshots.py [--out docs/screenshots] [--widths 1400 1000]

Starts `streamlit run app/main.py` on a free port (offline: Chromium resolves no host but
this one), opens Explore, Compare and Dataset with their defaults, waits until every chart
has drawn, and writes explore.png (its Attention maps tab), explore_raw.png (On the raw
weld), explore_faithfulness.png, compare.png, dataset.png (full page) at 1400 px and the
same with `_1000` at 1000 px (any width other than 1400 gets its `_<width>` suffix).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_page import CHROMIUM, CHROMIUM_ARGS, OFFLINE, _free_port, _start_streamlit  # beside this file

REPO = Path(__file__).resolve().parent.parent

_IDLE_JS = """n => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')) return false;
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return plots.length >= n && plots.every(el => el.querySelector('.main-svg'));
}"""

PAGES = (("explore", "/", 7), ("explore_raw", "/?view=On+the+raw+weld&weld=000303", 8),
         ("explore_faithfulness", "/?view=Faithfulness&weld=000303", 6),
         ("compare", "/compare", 9), ("dataset", "/dataset", 3))
DEFAULT_WIDTH = 1400


def settle(page, n_charts: int, timeout_ms: int = 180_000) -> None:
    page.wait_for_timeout(500)
    page.wait_for_function(_IDLE_JS, arg=n_charts, timeout=timeout_ms, polling=250)
    page.wait_for_timeout(1200)   # let Plotly finish transitions and fonts settle


def take(out: Path, width: int = DEFAULT_WIDTH, pages=PAGES) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    written = []
    with tempfile.NamedTemporaryFile("wb", prefix="screens_", suffix=".log", delete=False) as log:
        proc = _start_streamlit(REPO / "app" / "main.py", port, log)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + [OFFLINE])
                ctx = browser.new_context(viewport={"width": width, "height": 1000})
                page = ctx.new_page()
                for name, path, n in pages:
                    page.goto(f"http://127.0.0.1:{port}{path}")
                    settle(page, n)
                    # Streamlit scrolls inside its main container, not the document: grow the
                    # viewport to the content so the screenshot holds the whole page.
                    height = page.evaluate("""() => Math.max(...['stMain', 'stAppViewContainer', 'stSidebar']
                        .map(t => document.querySelector(`[data-testid="${t}"]`))
                        .filter(Boolean).map(el => el.scrollHeight), document.body.scrollHeight)""")
                    page.set_viewport_size({"width": width, "height": min(int(height) + 20, 12000)})
                    settle(page, n)
                    target = out / (f"{name}.png" if width == DEFAULT_WIDTH else f"{name}_{width}.png")
                    page.screenshot(path=str(target), full_page=True)
                    page.set_viewport_size({"width": width, "height": 1000})
                    written.append(target)
                    print(f"wrote {target}", flush=True)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    ap.add_argument("--widths", type=int, nargs="+", default=[DEFAULT_WIDTH, 1000])
    args = ap.parse_args()
    for width in args.widths:
        take(args.out, width)


if __name__ == "__main__":
    main()
