"""Browser render timings, measured in one run so their ratio is meaningful.

Prints `name=value` lines:
  bare_page_render_s   median seconds for benchmarks/bare_page.py (one Plotly chart) to be
                       drawn in headless Chromium, from navigation to script idle + SVG
                       (same tab reloaded: warm browser cache, new Streamlit session).
  explore_page_render_s  the same for the dashboard's Explore page choosing a sample weld
                       (`?weld=<id>`, the longest one), until every one of its charts has drawn
  explore_over_bare_ratio  the two above, divided
  explore_charts       how many charts that page draws
  largest_figure_payload_bytes  the largest figure JSON the Explore page sends, for the
                       sample weld with the longest sequence (audio samples)
  payload_bytes_sensor_100k     the sensor figure (6 channels + attention band) for a
                       100,000-step log, as sent (downsampled); `_full` without downsampling
  payload_bytes_heatmap_100k    a 4-token attention heatmap over 100,000 positions, as sent
Both render timings come from the same `measure_render`, so they share the machine, browser
and server settings.
"""
from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Offline without request interception: every host name but localhost fails to resolve.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"
TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_streamlit(script: Path, port: int, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "streamlit", "run", str(script),
           "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"streamlit did not start for {script} (log: {log.name})")
            time.sleep(0.25)


# Ready = script run finished and at least n charts matching the selector have drawn.
_READY_JS = """([sel, n]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  const drawn = [...document.querySelectorAll(sel)].filter(el => el.querySelector('.main-svg'));
  return drawn.length >= n;
}"""


def measure_render(script_path: str | Path, ready_selector: str = ".js-plotly-plot",
                   n_charts: int = 1, loads: int = 7, query: str = "") -> float:
    """Median seconds from navigation to `n_charts` elements matching `ready_selector`
    drawn (with the Streamlit script run finished), over `loads` page loads.

    Each load navigates the same tab again (a new Streamlit session, warm browser cache);
    one warm-up load first is not counted, so the Plotly bundle download and compile,
    Python imports and `st.cache_*` fills do not dominate. `query` (e.g. "?weld=...") is
    appended to the URL, for pages that choose their input from `st.query_params`.
    Chromium resolves no host but this one, so nothing can come from a CDN.
    """
    from playwright.sync_api import sync_playwright

    script = Path(script_path).resolve()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/{query}"
    with tempfile.NamedTemporaryFile("wb", prefix="bench_streamlit_", suffix=".log",
                                     delete=False) as log:
        proc = _start_streamlit(script, port, log)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS + [OFFLINE])
                # One page for all loads: after the warm-up, the Plotly chunk is in the
                # HTTP cache and compiled, as for a user switching welds in an open tab;
                # each goto is still a new Streamlit session. No page.route here: request
                # interception disables Chromium's HTTP cache and triples the times.
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()
                times = []
                for i in range(loads + 1):
                    t0 = time.perf_counter()
                    page.goto(url, wait_until="commit")
                    page.wait_for_function(_READY_JS, arg=[ready_selector, n_charts],
                                           polling="raf", timeout=TIMEOUT_MS)
                    dt = time.perf_counter() - t0
                    if i:  # load 0 is the warm-up
                        times.append(dt)
                ctx.close()
                browser.close()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return statistics.median(times)


def _sample_welds() -> list[Path]:
    from app import services
    return services.list_weld_folders()


def _longest_weld(folders: list[Path]) -> Path:
    """The sample weld with the most audio samples (the longest raw sequence)."""
    import soundfile as sf

    def n_samples(folder: Path) -> int:
        audio = [p for p in folder.iterdir() if p.suffix.lower() in (".flac", ".wav")]
        return sf.info(str(audio[0])).frames if audio else 0
    return max(folders, key=n_samples)


def explore_payloads(weld_id: str) -> list[int]:
    """Bytes of every figure the Explore page sends for this weld (spec + config), via AppTest."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_app_support import new_app

    at = new_app(timeout=300)             # the whole page (the first paint counted as reported)
    at.query_params["weld"] = weld_id
    at.run()
    if at.exception:
        raise RuntimeError(f"Explore failed for {weld_id}: {at.exception[0].value}")
    return [len(c.proto.spec.encode()) + len(c.proto.config.encode()) for c in at.get("plotly_chart")]


def synthetic_payloads() -> dict[str, int]:
    """Payloads of the figure builders for 100,000-step sequences."""
    import numpy as np
    import pandas as pd

    from app import figures as figs

    n = 100_000
    rng = np.random.default_rng(0)
    t = np.arange(n) / 8.6
    cols = ["Pressure", "CO2 Weld Flow", "Feed", "Primary Weld Current", "Wire Consumed", "Secondary Weld Voltage"]
    sensor = pd.DataFrame({"t": t, **{c: rng.normal(size=n).cumsum() for c in cols}})
    edges = np.linspace(0, t[-1], 65)
    pos = pd.DataFrame({"t0": edges[:-1], "t1": edges[1:]})
    w = rng.random(64)
    out = {
        "payload_bytes_sensor_100k": figs.payload_bytes(figs.sensor_figure(sensor, w, pos)),
        "payload_bytes_sensor_100k_full": figs.payload_bytes(figs.sensor_figure(sensor, w, pos, max_points=None)),
    }
    e = np.linspace(0, t[-1], n + 1)
    hpos = pd.DataFrame({"t0": e[:-1], "t1": e[1:]})
    out["payload_bytes_heatmap_100k"] = figs.payload_bytes(figs.attention_heatmap(rng.random((4, n)), hpos))
    return out


def main() -> None:
    bare = measure_render(REPO / "benchmarks" / "bare_page.py", ".js-plotly-plot", 1)
    print(f"bare_page_render_s={bare:.3f}", flush=True)
    folders = _sample_welds()
    if not folders:
        print("# no sample welds: Explore not measured (make sample-data)", flush=True)
    else:
        longest = _longest_weld(folders)
        payloads = explore_payloads(longest.name)
        n_charts = len(payloads)
        explore = measure_render(REPO / "app" / "main.py", ".js-plotly-plot", n_charts,
                                 query=f"?weld={longest.name}")
        print(f"explore_page_render_s={explore:.3f}", flush=True)
        print(f"explore_over_bare_ratio={explore / bare:.2f}", flush=True)
        print(f"explore_charts={n_charts}", flush=True)
        print(f"largest_figure_payload_bytes={max(payloads)}", flush=True)
        print(f"# longest sample weld: {longest.name}", flush=True)
    for name, value in synthetic_payloads().items():
        print(f"{name}={value}", flush=True)


if __name__ == "__main__":
    main()
