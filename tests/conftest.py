"""Fixtures for the real-browser tests.

`streamlit_server` runs `streamlit run app/main.py` on a free port for the whole session;
`browser` is Debian's Chromium driven by Playwright; `page` is a fresh page per test whose
every request to anything but this machine is aborted and recorded, so a test that passes
also proves the app works offline (no CDN, no telemetry).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
SERVER_START_TIMEOUT_S = 90
APP_TIMEOUT_MS = 60_000

_BROWSER_FIXTURES = {"streamlit_server", "browser", "page", "page_log"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Any test that touches the browser fixtures is a browser test: `-m "not browser"`
    # then gives a fast run without Chromium.
    for item in items:
        if _BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)


def _python() -> str:
    venv_python = REPO / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def streamlit_server(tmp_path_factory: pytest.TempPathFactory):
    """Base URL (http://127.0.0.1:PORT) of `streamlit run app/main.py`, up for the session."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    cmd = [
        _python(), "-m", "streamlit", "run", "app/main.py",  # -m: repo root on sys.path
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not _healthy(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    what = (f"exited with {proc.returncode}" if proc.poll() is not None
                            else f"not healthy after {SERVER_START_TIMEOUT_S}s")
                    tail = log_path.read_text(errors="replace")[-4000:]
                    pytest.fail(f"streamlit server {what}:\n{tail}", pytrace=False)
                time.sleep(0.25)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium. Skipped when it is missing, except under CI=true."""
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} missing (apt-get install chromium); `make browser` installs it as root"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class PageLog:
    """What a page did that a test may want to assert on."""
    blocked_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser, streamlit_server, page_log: PageLog):
    """A fresh page (own context: no shared cookies, cache or session) at the app's URL.

    Requests leaving this machine are aborted and listed in `page_log.blocked_requests`;
    the test fails at teardown if there were any, or any console error or Plotly warning
    (`page_log.console_errors`) or uncaught page error (`page_log.page_errors`).
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  base_url=streamlit_server, service_workers="block")

    def only_local(route):
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            page_log.blocked_requests.append(url)
            route.abort("blockedbyclient")

    context.route("**/*", only_local)
    pg = context.new_page()
    pg.set_default_timeout(APP_TIMEOUT_MS)
    pg.on("console", lambda m: _console(page_log, m))
    pg.on("pageerror", lambda e: page_log.page_errors.append(str(e)))
    try:
        yield pg
    finally:
        context.close()
    if page_log.blocked_requests:
        pytest.fail("the page tried to reach the network:\n  "
                    + "\n  ".join(page_log.blocked_requests), pytrace=False)
    if page_log.console_errors or page_log.page_errors:
        pytest.fail("the browser console reported errors:\n  "
                    + "\n  ".join(page_log.console_errors + page_log.page_errors), pytrace=False)


def _console(log: PageLog, msg) -> None:
    """Console errors, and Plotly's warnings (printed as "WARN: …", e.g. "Invalid color
    specifier"), count as errors: the page fixture fails the test on any."""
    if msg.type == "error" or msg.text.startswith("WARN:"):
        log.console_errors.append(f"{msg.type}: {msg.text}")


def wait_for_app(page, timeout_ms: int = APP_TIMEOUT_MS) -> None:
    """Wait until Streamlit is connected and its script run has finished, then assert that
    no exception box is shown.

    Streamlit's root carries `data-test-script-state` ("initial" before the first run,
    "running", then "notRunning") and `data-test-connection-state`; a short settle lets a
    rerun that a widget just triggered flip the state to "running" before we look.
    """
    page.wait_for_timeout(200)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
        '[data-test-script-state="notRunning"]',
        state="attached", timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stMain"]', state="attached", timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]',
                           state="detached", timeout=timeout_ms)
    exceptions = page.locator('[data-testid="stException"]')
    if exceptions.count():
        texts = "\n---\n".join(exceptions.all_inner_texts())
        raise AssertionError(f"the app shows {exceptions.count()} exception(s):\n{texts}")


def wait_for_plotly(page, n: int = 1, timeout_ms: int = APP_TIMEOUT_MS) -> None:
    """Wait until at least `n` Plotly charts have drawn their SVG."""
    page.wait_for_function(
        "n => [...document.querySelectorAll('.js-plotly-plot')]"
        ".filter(el => el.querySelector('.main-svg')).length >= n",
        arg=n, timeout=timeout_ms)


@pytest.fixture
def data(monkeypatch) -> Path:
    """The data folder the dashboard reads in this test (test_app_support.use_data); a
    module that starts its own server or needs a wider scope defines its own `data`."""
    from test_app_support import use_data

    return use_data(monkeypatch)


@pytest.fixture
def app_ready():
    """`wait_for_app` as a fixture, for tests that prefer not to import conftest."""
    return wait_for_app
