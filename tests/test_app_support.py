"""What the app tests share: the data the app runs on, and AppTest helpers.

The app reads `sample_data/` (welds + `checkpoints/demo-early|demo-best.safetensors`). When
that is not there yet (a fresh checkout before `make sample-data`), `data_root()` writes a
small stand-in once per test session — 8 synthetic welds and a 2-epoch model — and the
tests point the app at it through $WELD_DASHBOARD_DATA.
"""
from __future__ import annotations

import atexit
import functools
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parent.parent
MAIN = str(REPO / "app" / "main.py")
DATA_ENV = "WELD_DASHBOARD_DATA"
TIMEOUT = 120


def sample_data_ready(root: Path) -> bool:
    ck = root / "checkpoints"
    welds = [p for p in root.iterdir() if p.is_dir() and p.name != "checkpoints"] if root.is_dir() else []
    return (ck / "demo-best.safetensors").is_file() and (ck / "demo-early.safetensors").is_file() and len(welds) >= 2


@functools.lru_cache(maxsize=1)
def data_root() -> Path:
    """$WELD_DASHBOARD_DATA or sample_data/ when complete, else a stand-in generated once."""
    env = os.environ.get(DATA_ENV)
    if env and sample_data_ready(Path(env)):
        return Path(env).resolve()
    if sample_data_ready(REPO / "sample_data"):
        return REPO / "sample_data"
    from fusion_core.training.synth import generate_dataset
    from fusion_core.training.train import train

    tmp = Path(tempfile.mkdtemp(prefix="weld-app-tests-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    generate_dataset(tmp, 8, seed=3)
    train(tmp, tmp / "checkpoints", epochs=2, seed=0, log=lambda *a: None)
    return tmp


def use_data(monkeypatch) -> Path:
    """Point the app at the test data (no override when it is the repository's sample_data)."""
    root = data_root()
    if root == REPO / "sample_data":
        monkeypatch.delenv(DATA_ENV, raising=False)
    else:
        monkeypatch.setenv(DATA_ENV, str(root))
    return root


def weld_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name != "checkpoints" and not p.name.startswith("."))


def zip_weld(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"{folder.name}/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


def new_app(painted: bool = True, timeout: float = TIMEOUT) -> AppTest:
    """A fresh session. Explore's first run in a browser sends its first answer alone and draws
    the rest once the browser reports the paint (`browser_events.after_first_paint`), which
    AppTest never does: `painted` says that already happened."""
    from app.screens.explore import PAINTED

    at = AppTest.from_file(MAIN, default_timeout=timeout)
    if painted:
        at.session_state[PAINTED] = True
    return at


def started_app(url_path: str | None = None) -> AppTest:
    """A session that has run the app once (on the page at /<url_path> when given), without
    an exception."""
    at = new_app().run()
    if url_path:
        open_page(at, url_path).run()
    assert problems(at) == []
    return at


def open_page(at: AppTest, url_path: str) -> AppTest:
    """Switch to the page at /<url_path> ("compare", "dataset"; "explore" is the default at /)
    for the next run, as the sidebar navigation would.

    `AppTest.switch_page` only finds pages that are files; the dashboard's pages are
    functions (st.Page(callable)), registered by `st.navigation` under their url path.
    So this looks the page up in what the last run registered and requests its hash, the
    way `switch_page` does for a file page. Call `run()` once before."""
    hashes = {info.get("url_pathname"): h for h, info in at._registered_pages.items()}
    if url_path not in hashes:
        raise ValueError(f"no page at /{url_path}; the app registered {sorted(hashes)}")
    at._page_hash = hashes[url_path]
    return at


def count_calls(monkeypatch, owner, name: str) -> list:
    """Wrap `owner.name` (a fusion_core function as the app's services look it up) so that
    each call is recorded; returns the list of calls (one entry each)."""
    real = getattr(owner, name)
    calls: list = []

    def counted(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def problems(at: AppTest) -> list[str]:
    """Exceptions shown by the app (there must be none, whatever the input)."""
    return [str(e.value) for e in at.exception]


def errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def charts(at: AppTest) -> list:
    return list(at.get("plotly_chart"))


# --------------------------------------------------------------------------- tests of the above

def test_app_data_folder_defaults_to_sample_data_and_env_overrides(monkeypatch, tmp_path):
    from app import services

    monkeypatch.delenv(DATA_ENV, raising=False)
    assert services.data_dir() == REPO / "sample_data"
    assert services.checkpoints_dir() == REPO / "sample_data" / "checkpoints"
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert services.data_dir() == tmp_path.resolve()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "b.safetensors").write_bytes(b"x")
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    assert [p.name for p in services.list_checkpoints()] == ["b.safetensors"]
    weld = tmp_path / "000103"
    (weld / "images").mkdir(parents=True)
    (weld / "images" / "a.jpg").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    assert [p.name for p in services.list_weld_folders()] == ["000103"]


def test_os_environ_is_untouched_by_data_root():
    before = os.environ.get(DATA_ENV)
    root = data_root()
    assert os.environ.get(DATA_ENV) == before
    assert sample_data_ready(root)


# In the browser: the page coordinates of the centre of cell (col, token) of the heatmap whose
# title starts with `title` (scrolled into view), from Plotly's own axes.
CELL_CENTRE_JS = """([title, col, token]) => {
    const plot = [...document.querySelectorAll('.js-plotly-plot')].find(el => el.layout && el.layout.title
        && (el.layout.title.text || '').replace(/<[^>]+>/g, '').startsWith(title));
    plot.scrollIntoView();
    const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis;
    const r = plot.querySelector('.main-svg').getBoundingClientRect();
    return [r.left + xa._offset + xa.l2p(col), r.top + ya._offset + ya.l2p(token)];
}"""
