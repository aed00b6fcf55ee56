"""Running the dashboard for a team (issue 11, "Deployment safety"): typed paths stay inside
the data roots, the shared caches are bounded in bytes, uploads touch the disk only in a
per-session folder that goes away, and every class of bad upload of the second hardening
round gives an error while the page stays usable (a following good input works)."""
from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from test_app_support import REPO, errors, new_app, problems, started_app, use_data, weld_dirs, zip_weld

ROOTS = "WELD_DASHBOARD_DATA_ROOTS"


@pytest.fixture
def outside(tmp_path_factory):
    """A folder outside every default data root, with a copy of one sample weld in it."""
    d = tmp_path_factory.mktemp("outside-roots")
    return d


# --------------------------------------------------------------------------- the path rule

def test_default_roots_are_sample_data_the_working_directory_and_the_data_folder(monkeypatch, data):
    from app import services

    monkeypatch.delenv(ROOTS, raising=False)
    roots = services.data_roots()
    assert (REPO / "sample_data").resolve() in roots and Path.cwd().resolve() in roots
    assert services.data_dir().resolve() in roots
    assert services.allowed_path(REPO / "sample_data") == (REPO / "sample_data").resolve()


def test_paths_outside_the_roots_are_refused_after_resolving(monkeypatch, data, outside):
    from app import services
    from fusion_core.errors import InputError

    monkeypatch.setenv(ROOTS, str(REPO / "sample_data"))
    inside = REPO / "sample_data"
    for bad in ("/etc/passwd", str(inside / ".." / "README.md"), str(outside)):
        with pytest.raises(InputError) as e:
            services.allowed_path(bad)
        msg = str(e.value)
        assert msg.startswith(f"{bad}:") and ROOTS in msg and "outside" in msg
    link = outside / "escape"
    os.symlink("/etc", link)
    monkeypatch.setenv(ROOTS, os.pathsep.join([str(REPO / "sample_data"), str(outside)]))
    assert services.allowed_path(outside) == outside.resolve()
    with pytest.raises(InputError):
        services.allowed_path(link / "passwd")          # a symlink inside a root pointing out of it
    with pytest.raises(InputError, match="no path"):
        services.allowed_path("  ")


def test_dataset_and_compare_folders_outside_the_roots_are_refused_and_the_page_stays(data, outside, monkeypatch):
    monkeypatch.delenv(ROOTS, raising=False)
    for page, key, table in (("dataset", "dataset_folder", "dataset_table"), ("compare", "compare_folder", None)):
        at = started_app(page)
        before = len(at.dataframe)
        at.text_input(key=key).set_value(str(outside)).run()
        assert problems(at) == []
        errs = [e for e in errors(at) if e.startswith(f"{outside}:")]
        assert errs and ROOTS in errs[0], errors(at)
        assert len(at.dataframe) == before                          # the last good result stays
        at.text_input(key=key).set_value(str(data)).run()          # a good input works again
        assert problems(at) == [] and errors(at) == []


def test_parquet_and_batch_paths_outside_the_roots_are_refused(data, outside, monkeypatch):
    monkeypatch.delenv(ROOTS, raising=False)
    at = started_app("dataset")
    at.radio(key="dataset_source").set_value("Open batch results (.parquet)").run()
    at.text_input(key="dataset_parquet_path").set_value(str(outside / "r.parquet")).run()
    assert problems(at) == []
    assert any(e.startswith(str(outside / "r.parquet")) and ROOTS in e for e in errors(at)), errors(at)
    at.text_input(key="dataset_batch_out").set_value(str(outside / "out.parquet"))
    at.number_input(key="dataset_batch_workers").set_value(0)
    at.button(key="dataset_run_batch").click().run()
    assert problems(at) == []
    assert any(e.startswith(str(outside / "out.parquet")) and ROOTS in e for e in errors(at)), errors(at)
    assert list(outside.iterdir()) == []                           # nothing written there


def test_a_checkpoint_symlinked_from_outside_the_roots_is_refused(tmp_path, outside, monkeypatch):
    real = use_data(pytest.MonkeyPatch())
    data = tmp_path / "data"
    (data / "checkpoints").mkdir(parents=True)
    for w in weld_dirs(real)[:2]:
        os.symlink(w, data / w.name)
    os.symlink(real / "checkpoints" / "demo-best.safetensors", data / "checkpoints" / "demo-best.safetensors")
    (outside / "evil.safetensors").write_bytes((real / "checkpoints" / "demo-early.safetensors").read_bytes())
    os.symlink(outside / "evil.safetensors", data / "checkpoints" / "evil.safetensors")
    monkeypatch.setenv("WELD_DASHBOARD_DATA", str(data))
    monkeypatch.setenv(ROOTS, os.pathsep.join([str(data), str(real)]))        # not `outside`
    at = new_app().run()
    assert problems(at) == [] and errors(at) == []
    at.selectbox(key="explore_ckpt").set_value("evil.safetensors").run()
    assert problems(at) == []
    assert any("evil.safetensors" in e and ROOTS in e for e in errors(at)), errors(at)
    assert any("Still showing demo-best.safetensors" in c.value for c in at.sidebar.caption)


# --------------------------------------------------------------------------- caches in bytes

def test_caches_are_bounded_in_bytes_and_evict_the_least_recent(monkeypatch):
    from app import caches

    monkeypatch.setenv(caches.CACHE_ENV, "10")                     # 10 MB in all
    c = caches.ByteCache("t", 0.5)                                 # 5 MB
    mb = np.zeros(1024 * 1024, np.uint8)
    for i in range(8):
        c.get(i, lambda: {"a": mb.copy(), "b": pd.DataFrame({"x": np.zeros(1000)})})
        assert c.total <= c.budget()
    assert 0 not in c and 7 in c and len(c) == 4
    c.get(4, lambda: pytest.fail("a kept entry is made again"))
    c.get(99, lambda: np.zeros(6 * 1024 * 1024, np.uint8))        # bigger than the cache: returned, not kept
    assert 99 not in c and 4 in c
    calls = []
    with pytest.raises(ValueError):
        c.get("bad", lambda: calls.append(1) or (_ for _ in ()).throw(ValueError("x")))
    assert "bad" not in c


def test_nbytes_measures_welds_and_explanations(data):
    from app import caches, services

    w = services.weld_from_folder(weld_dirs(data)[0])
    arrays = sum(a.nbytes for a in (w.video, w.audio) if a is not None) + sum(i.nbytes for i in w.images)
    assert arrays <= caches.nbytes(w) <= arrays * 1.5 + 10_000_000
    shared = np.zeros(1000)
    assert caches.nbytes([shared, shared, {"k": shared}]) < 2 * shared.nbytes


# --------------------------------------------------------------------------- the session's upload folder

def test_uploads_stay_in_a_per_session_folder_that_is_removed(data, tmp_path, monkeypatch):
    from app import caches

    t = tmp_path / "tmp"
    t.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(t))
    seen: list[Path] = []
    real_upload_file = caches.upload_file

    def spy(blob, name, limit):
        cm = real_upload_file(blob, name, limit)
        path = cm.__enter__()
        seen.append(path)
        assert path.read_bytes() == blob

        class _CM:
            def __enter__(self):
                return path

            def __exit__(self, *exc):
                return cm.__exit__(*exc)
        return _CM()

    monkeypatch.setattr(caches, "upload_file", spy)
    caches.clear_all()        # an earlier test may have cached this model: the upload must be read here
    at = new_app().run()
    at.selectbox(key="explore_ckpt").set_value("Upload a checkpoint…").run()
    blob = (data / "checkpoints" / "demo-early.safetensors").read_bytes()
    at.file_uploader(key="explore_ckpt_upload").set_value(("mine.safetensors", blob, "application/octet-stream"))
    at.run()
    assert problems(at) == [] and errors(at) == []
    assert seen and all(p.parent.parent.name.startswith(caches.SESSION_PREFIX) and p.is_relative_to(t)
                        for p in seen)
    assert not any(p.exists() for p in seen)                       # removed once read
    session_dirs = [p for p in t.iterdir()]
    assert [p.name[:len(caches.SESSION_PREFIX)] for p in session_dirs] == [caches.SESSION_PREFIX]
    assert [f for f in session_dirs[0].rglob("*") if f.is_file()] == []
    del at
    gc.collect()
    assert list(t.iterdir()) == [], "the session's folder outlived its session"


def test_the_session_folder_is_emptied_when_it_would_pass_the_limit(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def script():
        from app import caches
        d = caches.session_dir()
        (d / "left-over").write_bytes(b"x" * 900)
        with caches.upload_file(b"y" * 200, "new.bin", 1000) as p:
            assert p.read_bytes() == b"y" * 200
            assert not (d / "left-over").exists()

    at = AppTest.from_function(script).run()
    assert not at.exception


# --------------------------------------------------------------------------- round-2 bad uploads

@pytest.fixture(scope="module")
def round2(tmp_path_factory):
    """A few cases of each class of tests/bad_inputs.py's second round."""
    import bad_inputs as bi
    from fusion_core.models.checkpoint import load_checkpoint
    from fusion_core.vocab import MODALITIES

    mp = pytest.MonkeyPatch()
    root = use_data(mp)
    d = tmp_path_factory.mktemp("round2")
    weld = weld_dirs(root)[0]
    dims = load_checkpoint(root / "checkpoints" / "demo-best.safetensors").info.dims
    cases = {}
    for sub, make in (("feat", lambda p: bi._round2_features(p, {m: dims[m] for m in MODALITIES})),
                      ("names", lambda p: bi._round2_names(p, weld)), ("csv", lambda p: bi._round2_csv(p, weld)),
                      ("audio", lambda p: bi._round2_audio(p, weld)), ("video", lambda p: bi._round2_video(p, weld)),
                      ("photos", lambda p: bi._round2_photos(p, weld))):
        (d / sub).mkdir()
        cases.update({c.name: c for c in make(d / sub)})
    yield root, cases
    mp.undo()


CLASSES = {
    "claims": ["csv-last-row-23h-later", "video-frame-at-86000s", "flac-8ch-192k-header-60s"],
    "decoder bombs": ["flac-2h-silence", "csv-2MB-line-of-commas", "photo-64mpx-over-limit", "csv-199999-rows"],
    "16-bit png": ["photo-16bit-grayscale-png"],
    "names": ["name-newline", "name-ansi-clear", "name-zip-entry-escape"],
}


def _one_line(e: str) -> bool:
    return "\n" not in e and "\r" not in e and "\x1b" not in e and "\u202e" not in e


@pytest.mark.parametrize("klass", list(CLASSES))
def test_each_class_of_bad_weld_upload_errors_and_the_page_stays_usable(round2, klass):
    root, cases = round2
    good = weld_dirs(root)[2]
    at = new_app().run()
    at.radio(key="explore_weld_source").set_value("Upload a zip").run()
    failures = []
    for name in CLASSES[klass]:
        case = cases[name]
        blob = zip_weld(case.path) if case.path.is_dir() else case.path.read_bytes()
        at.file_uploader(key="explore_zip").set_value((f"{name}.zip", blob, "application/zip"))
        at.run()
        errs = errors(at)
        if problems(at):
            failures.append(f"{name}: exception {problems(at)[0][:200]}")
        elif case.outcome != "error" and errs:
            failures.append(f"{name}: should load, got {errs}")
        elif case.outcome == "partial" and not any(i.value.startswith(case.note) for i in at.info):
            failures.append(f"{name}: no note {case.note!r}: {[i.value for i in at.info]}")
        elif case.outcome == "error" and not any(case.expect.lower() in e.lower() and f"{name}.zip" in e for e in errs):
            failures.append(f"{name}: no error saying {case.expect!r}: {errs}")
        elif not all(_one_line(e) for e in errs):
            failures.append(f"{name}: an error is not one printable line: {errs}")
        at.file_uploader(key="explore_zip").set_value((f"{good.name}.zip", zip_weld(good), "application/zip"))
        at.run()
        if problems(at) or errors(at) or at.title[0].value != f"Weld {good.name}":
            failures.append(f"{name}: the next good upload did not show: {errors(at)} {problems(at)}")
    assert not failures, "\n".join(failures)


def test_nan_producing_features_error_and_a_good_file_follows(round2):
    from fusion_core.explain.welds import encode_welds
    from fusion_core.io.containers import load_weld
    from fusion_core.io.features import save_features
    from fusion_core.models.checkpoint import load_checkpoint

    root, cases = round2
    ck = load_checkpoint(root / "checkpoints" / "demo-best.safetensors")
    fb = encode_welds(ck, [load_weld(weld_dirs(root)[1])])
    good = Path(tempfile.mkdtemp()) / "good.npz"
    save_features(good, fb)
    at = new_app().run()
    at.radio(key="explore_weld_source").set_value("Upload a feature file").run()
    for name in ("feat-values-1e20", "feat-values-3e38-float32", "feat-uint64-2to63", "feat-1e6-positions"):
        case = cases[name]
        at.file_uploader(key="explore_features").set_value((case.path.name, case.path.read_bytes(), "x"))
        at.run()
        assert problems(at) == [], name
        assert any(case.path.name in e and case.expect in e.lower() for e in errors(at)), (name, errors(at))
        assert not any("nan" in m.value.lower() for m in at.markdown if "Prediction" in m.value)
        at.file_uploader(key="explore_features").set_value(("good.npz", good.read_bytes(), "x"))
        at.run()
        assert problems(at) == [] and errors(at) == [] and at.title[0].value == f"Weld {fb.ids[0]}"


def test_an_upload_name_with_control_characters_is_shown_on_one_line(data):
    at = new_app().run()
    at.radio(key="explore_weld_source").set_value("Upload a zip").run()
    at.file_uploader(key="explore_zip").set_value(("w\x1b[2J\nALL OK\r.zip", b"not a zip", "application/zip"))
    at.run()
    assert problems(at) == []
    errs = errors(at)
    assert errs and all(_one_line(e) for e in errs) and any("\\x1b[2J\\nALL OK" in e for e in errs), errs
