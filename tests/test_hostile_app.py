"""The hostile-input corpus (tests/bad_inputs.py) through the dashboard (AppTest, Explore page).

Every checkpoint and feature-file case is uploaded through its uploader, and every weld case
through the zip uploader (weld-folder cases are zipped on the fly). Each must give an
`st.error` naming the uploaded file and the problem, no exception element, and leave the page
showing what the last valid upload showed; except a weld with one flawed file ("partial"),
which is shown without that file, with a note on the page saying why. No pickle in the corpus may run code (the marker
file never appears), uploads above the size limit are refused with the limit in the message,
and uploaded bytes never land in the repository or stay in the temporary folder (uploads
reach the disk only inside their session's folder, and only while they are read).

One AppTest session per kind, reused across that kind's cases (about 0.6 s a case).
"""
from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest

from fusion_core.vocab import MODALITIES

from bad_inputs import build_corpus
from factories import random_module, small_config
from test_app_support import REPO, count_calls, errors, new_app, problems, use_data, weld_dirs, zip_weld

# Cases that name a path that cannot be uploaded (a missing file, a folder, a missing weld).
NOT_UPLOADABLE = {"ckpt-missing-file", "ckpt-is-a-folder", "weld-missing-path"}
# Suffixes the checkpoint uploader accepts (its `type=`). Streamlit itself refuses other
# suffixes before the page runs (the browser's picker hides them, drag-and-drop is refused
# under the widget, AppTest raises): those cases go to the app's own check directly.
CKPT_UPLOAD_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")


@pytest.fixture(scope="module")
def data():
    mp = pytest.MonkeyPatch()
    root = use_data(mp)
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data):
    from fusion_core.models.checkpoint import load_checkpoint

    d = tmp_path_factory.mktemp("hostile-app")
    marker = d / "MARKER"
    cfg = small_config(0, num_heads=2)
    sd = random_module(cfg, 0).state_dict()
    # Feature cases are built for the dimensions of the model the page shows (demo-best), so
    # every flaw is the one the case plants, not a dimension mismatch.
    dims = load_checkpoint(data / "checkpoints" / "demo-best.safetensors").info.dims
    cases = build_corpus(d / "corpus", sd, 2, {m: dims[m] for m in MODALITIES}, weld_dirs(data)[0], marker)
    return {"cases": cases, "marker": marker, "dir": d}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """The app's temporary files go to a folder of this test alone, checked empty afterwards."""
    t = tmp_path / "tmpdir"
    t.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(t))
    return t


def _files(tmp: Path) -> list[Path]:
    """Files under the temporary folder: uploads are written only inside their session's
    folder (app.caches.session_dir), which may outlive a run while the session lives, and
    are removed as soon as they are read."""
    from app import caches

    assert all(p.name.startswith(caches.SESSION_PREFIX) for p in tmp.iterdir()), list(tmp.iterdir())
    return [p for p in tmp.rglob("*") if p.is_file()]


def _repo_files() -> set[Path]:
    skip = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache"}
    return {p for p in REPO.rglob("*") if not skip & set(p.relative_to(REPO).parts)}


def _shown(at) -> tuple:
    """What the page shows of the current explanation: title, prediction line, export file name."""
    pred = [m.value for m in at.markdown if m.value.startswith("**Prediction:**") or m.value.startswith("**Target:**")]
    return at.title[0].value, tuple(pred)


def _check(at, upload_name: str, case, before: tuple, failures: list[str]) -> None:
    probs = problems(at)
    errs = errors(at)
    hit = [e for e in errs if upload_name in e]
    if probs:
        failures.append(f"{case.name}: exception {probs[0][:200]!r}")
    elif not hit:
        failures.append(f"{case.name}: no error naming {upload_name!r}; errors {errs!r}")
    elif not any(case.expect.lower() in e.lower() for e in hit):
        failures.append(f"{case.name}: error does not say {case.expect!r}: {hit!r}")
    elif _shown(at) != before:
        failures.append(f"{case.name}: the page changed: {_shown(at)!r} != {before!r}")


def _check_partial(at, upload_name: str, case, failures: list[str]) -> None:
    """A weld with one flawed file: explained without it, no error, the note on the page."""
    infos = [i.value for i in at.info]
    if problems(at):
        failures.append(f"{case.name}: exception {problems(at)[0][:200]!r}")
    elif [e for e in errors(at) if upload_name in e]:
        failures.append(f"{case.name}: refused: {errors(at)!r}")
    elif not any(i.startswith(case.note) and case.expect.lower() in i.lower() for i in infos):
        failures.append(f"{case.name}: no note {case.note!r}… saying {case.expect!r}: {infos!r}")


def _upload(at, key: str, name: str, data: bytes) -> None:
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream"))
    at.run()


def _of_kind(corpus, kind: str):
    return [c for c in corpus["cases"] if c.kind == kind and c.name not in NOT_UPLOADABLE]


def test_corpus_through_the_app_has_at_least_50_uploadable_cases(corpus):
    assert sum(c.name not in NOT_UPLOADABLE for c in corpus["cases"]) >= 50


def test_every_bad_checkpoint_upload(corpus, data, private_tmp):
    repo_before = _repo_files()
    at = new_app().run()
    at.selectbox(key="explore_ckpt").set_value("Upload a checkpoint…").run()
    _upload(at, "explore_ckpt_upload", "good-upload.safetensors",
            (data / "checkpoints" / "demo-early.safetensors").read_bytes())
    assert problems(at) == [] and errors(at) == []
    assert any("good-upload.safetensors" in c.value for c in at.caption)
    before = _shown(at)
    failures: list[str] = []
    cases = _of_kind(corpus, "checkpoint")
    for case in cases:
        if case.path.suffix.lower() not in CKPT_UPLOAD_SUFFIXES:
            _direct_checkpoint_check(case, failures)
            continue
        _upload(at, "explore_ckpt_upload", case.path.name, case.path.read_bytes())
        _check(at, case.path.name, case, before, failures)
        if not any("Still showing good-upload.safetensors" in c.value for c in at.caption):
            failures.append(f"{case.name}: the sidebar no longer keeps good-upload.safetensors")
    assert not failures, "\n".join(failures)
    assert len(cases) >= 20
    assert not corpus["marker"].exists(), "a pickle uploaded to the app ran code"
    assert _files(private_tmp) == [], "temporary upload files left behind"
    assert _repo_files() - repo_before == set(), "an upload landed in the repository"


def _direct_checkpoint_check(case, failures: list[str]) -> None:
    from app import services
    from fusion_core.errors import InputError

    try:
        services.checkpoint_from_upload(case.path.name, case.path.read_bytes())
    except InputError as e:
        msg = str(e)
        if case.path.name not in msg or case.expect.lower() not in msg.lower():
            failures.append(f"{case.name}: {msg!r}")
    else:
        failures.append(f"{case.name}: accepted")


def test_every_bad_feature_file_upload(corpus, data, private_tmp):
    from fusion_core.models.checkpoint import load_checkpoint
    from fusion_core.io.features import save_features
    from fusion_core.explain.welds import encode_welds
    from fusion_core.io.containers import load_weld

    ck = load_checkpoint(data / "checkpoints" / "demo-best.safetensors")
    fb = encode_welds(ck, [load_weld(weld_dirs(data)[1])])
    good = corpus["dir"] / "good-features.npz"
    save_features(good, fb)
    at = new_app().run()
    at.radio(key="explore_weld_source").set_value("Upload a feature file").run()
    _upload(at, "explore_features", "good-features.npz", good.read_bytes())
    assert problems(at) == [] and errors(at) == []
    assert at.title[0].value == f"Weld {fb.ids[0]}"
    before = _shown(at)
    failures: list[str] = []
    cases = _of_kind(corpus, "features")
    for case in cases:
        _upload(at, "explore_features", case.path.name, case.path.read_bytes())
        _check(at, case.path.name, case, before, failures)
    assert not failures, "\n".join(failures)
    assert len(cases) >= 15
    assert not corpus["marker"].exists()
    assert _files(private_tmp) == []


def _zip_folder_case(path: Path) -> bytes:
    """A weld-folder case as the zip a user would upload (top folder = the weld id)."""
    return zip_weld(path)


def test_every_bad_weld_zip_upload(corpus, data, private_tmp):
    repo_before = _repo_files()
    good = weld_dirs(data)[2]
    at = new_app().run()
    at.radio(key="explore_weld_source").set_value("Upload a zip").run()
    _upload(at, "explore_zip", f"{good.name}.zip", zip_weld(good))
    assert problems(at) == [] and errors(at) == []
    assert at.title[0].value == f"Weld {good.name}"
    before = _shown(at)
    failures: list[str] = []
    cases = _of_kind(corpus, "weld")
    for case in cases:
        if case.path.is_dir():
            name, blob = f"{case.name}.zip", _zip_folder_case(case.path)
        else:
            name, blob = case.path.name, case.path.read_bytes()
        _upload(at, "explore_zip", name, blob)
        if case.outcome == "partial":
            _check_partial(at, name, case, failures)
            _upload(at, "explore_zip", f"{good.name}.zip", zip_weld(good))   # back to the good weld
            if _shown(at) != before:
                failures.append(f"{case.name}: the good weld did not show again: {_shown(at)!r}")
            continue
        _check(at, name, case, before, failures)
        if not any(f"Showing {good.name}" in c.value for c in at.caption):
            failures.append(f"{case.name}: no caption that {good.name} is still shown")
    assert not failures, "\n".join(failures)
    assert len(cases) >= 20
    assert not Path("/tmp/evil.txt").exists()
    assert not (corpus["dir"] / "corpus" / "evil.txt").exists() and not (corpus["dir"] / "evil.txt").exists()
    assert _files(private_tmp) == []
    assert _repo_files() - repo_before == set(), "a zip entry landed in the repository"


# --------------------------------------------------------------------------- size limit

def test_server_upload_limit_is_set_and_the_app_enforces_it_too():
    from app import widgets

    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["maxUploadSize"] == 200
    # The app's own bound defaults to the server's, so both say the same limit.
    assert widgets.upload_limit_bytes() == 200 * 1024 * 1024


def test_uploads_beyond_the_size_limit_are_refused_with_a_clear_error(data, monkeypatch, private_tmp):
    """AppTest has no HTTP server, so `server.maxUploadSize` does not apply: the app's own
    bound (widgets.upload_bytes) must, for every uploader."""
    from app import services, widgets

    monkeypatch.setenv(widgets.UPLOAD_LIMIT_ENV, "1")
    big = b"\0" * (1024 * 1024 + 512 * 1024)             # 1.5 MB, over a 1 MB limit
    at = new_app().run()
    before = _shown(at)
    # after the page's own first loads: the readers behind the uploaders, as services call them
    loads = {name: count_calls(monkeypatch, services, name)
             for name in ("load_checkpoint", "load_welds_from_zip_bytes", "load_features", "load_weld_from_files")}
    at.selectbox(key="explore_ckpt").set_value("Upload a checkpoint…").run()
    _upload(at, "explore_ckpt_upload", "huge.safetensors", big)
    at.radio(key="explore_weld_source").set_value("Upload a zip").run()
    _upload(at, "explore_zip", "huge.zip", big)
    assert problems(at) == []
    errs = errors(at)
    for name in ("huge.safetensors", "huge.zip"):
        assert any(e.startswith(f"{name}:") and "above the upload limit of 1.0 MB" in e and "1.5 MB" in e
                   for e in errs), errs
    assert _shown(at) == before
    at.radio(key="explore_weld_source").set_value("Upload a feature file").run()
    _upload(at, "explore_features", "huge.npz", big)
    assert any(e.startswith("huge.npz:") and "upload limit" in e for e in errors(at))
    at.radio(key="explore_weld_source").set_value("Upload weld files").run()
    up = at.file_uploader(key="explore_files")
    up.upload("000999.csv", b"a" * 700_000)
    up.upload("000999.flac", b"b" * 700_000)
    at.run()
    assert problems(at) == []
    assert any("together" in e and "upload limit" in e for e in errors(at)), errors(at)
    assert _shown(at) == before
    # refused before any parsing or caching
    for name, calls in loads.items():
        assert calls == [], name
    assert _files(private_tmp) == []


def test_zip_of_a_valid_weld_inside_the_limit_still_works(data, monkeypatch):
    from app import widgets

    folder = weld_dirs(data)[3]
    blob = zip_weld(folder)
    monkeypatch.setenv(widgets.UPLOAD_LIMIT_ENV, str(len(blob) / 1024 / 1024 + 0.01))
    at = new_app().run()
    at.radio(key="explore_weld_source").set_value("Upload a zip").run()
    _upload(at, "explore_zip", f"{folder.name}.zip", blob)
    assert problems(at) == [] and errors(at) == []
    assert at.title[0].value == f"Weld {folder.name}"
