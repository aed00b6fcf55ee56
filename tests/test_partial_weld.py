"""A partially bad weld: one unreadable file leaves its modality absent, with its reason, and
the rest of the weld is read and explained; the explanation says what was left out.

The welds are the test data's own (sample_data/ or the stand-in `test_app_support.data_root`
writes: real .avi, .flac, .csv, .jpg and truth.json), copied and then broken the way
tests/bad_inputs.py breaks them. The model is the demo checkpoint the dashboard shows.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fusion_core.cli import main
from fusion_core.errors import InputError
from fusion_core.explain.welds import explain_welds, unreadable_notes
from fusion_core.io.containers import load_weld, load_weld_from_files, load_welds_from_zip_bytes
from fusion_core.io.limits import Limits
from fusion_core.models.checkpoint import load_checkpoint
from fusion_core.vocab import MODALITIES

from test_app_support import data_root, weld_dirs, zip_weld

VIDEO = MODALITIES.index("video")
IMAGE = MODALITIES.index("image")


@pytest.fixture(scope="module")
def root() -> Path:
    return data_root()


@pytest.fixture(scope="module")
def ck(root):
    return load_checkpoint(root / "checkpoints" / "demo-best.safetensors")


@pytest.fixture
def weld(root, tmp_path) -> Path:
    """A copy of a good weld with every modality, its folder named after it."""
    src = weld_dirs(root)[0]
    d = Path(shutil.copytree(src, tmp_path / src.name))
    assert len(list((d / "images").iterdir())) >= 2 and (d / "truth.json").exists()
    return d


def junk(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def avi_of(folder: Path) -> Path:
    return folder / f"{folder.name}.avi"


def photos_of(folder: Path) -> list[Path]:
    return sorted((folder / "images").iterdir())


def without(folder: Path, tmp_path: Path, *names: str) -> Path:
    """The same weld with some of its files removed (what "absent" must equal)."""
    d = Path(shutil.copytree(folder, tmp_path / "without" / folder.name))
    for n in names:
        (d / n).unlink()
    return d


def same_signals(a, b) -> None:
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.sensor.to_numpy(), b.sensor.to_numpy())
    assert a.image_names == b.image_names and a.image_sizes == b.image_sizes
    for x, y in zip(a.images, b.images):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- one corrupt video

CORRUPT_AVI = {
    "random-bytes": (lambda b: b[:64] + junk(len(b) - 64), "no video stream"),
    "truncated": (lambda b: b[: len(b) // 3], "truncated or corrupt video"),
    "empty": (lambda b: b"", "empty file"),
}


@pytest.mark.parametrize("how", sorted(CORRUPT_AVI))
def test_a_corrupt_avi_leaves_video_absent_and_reads_the_rest(weld, tmp_path, how):
    break_it, problem = CORRUPT_AVI[how]
    avi = avi_of(weld)
    good = load_weld(weld)
    avi.write_bytes(break_it(avi.read_bytes()))
    w = load_weld(weld)
    assert w.missing == ["video"] and w.present == ["image", "audio", "sensor"]
    assert w.video is None and w.video_times is None
    assert list(w.unreadable) == ["video"]
    assert w.unreadable["video"].startswith(f"{avi}: {problem}"), w.unreadable
    same_signals(w, good)
    assert w.truth == good.truth and w.weld_id == good.weld_id
    # the same as a weld that has no video at all, but not the same weld
    plain = load_weld(without(weld, tmp_path, avi.name))
    same_signals(w, plain)
    assert plain.unreadable == {} and len({w.digest, good.digest, plain.digest}) == 3


def test_the_explanation_notes_the_unreadable_video_and_gives_it_nothing(weld, tmp_path, ck):
    avi = avi_of(weld)
    avi.write_bytes(avi.read_bytes()[:64] + junk(5000))
    w = load_weld(weld)
    exp = explain_welds(ck, [w])
    note = f"video unreadable, treated as absent: {avi}: no video stream"
    assert note in exp.notes and unreadable_notes([w]) == [note]
    assert exp.present[0].tolist() == [False, True, True, True]
    for method, phi in exp.contributions.items():
        assert phi[0, VIDEO] == 0.0, method
    assert np.abs(exp.contributions["shapley"][0]).sum() > 0
    # exactly what the same weld without its video file gives, apart from the note
    plain = explain_welds(ck, [load_weld(without(weld, tmp_path, avi.name))])
    for method in exp.contributions:
        np.testing.assert_allclose(exp.contributions[method], plain.contributions[method], rtol=0, atol=1e-6)
    assert [n for n in exp.notes if n != note] == plain.notes


def test_a_good_weld_gets_no_note(weld, ck):
    w = load_weld(weld)
    assert w.unreadable == {} and unreadable_notes([w]) == []
    assert not any("unreadable" in n for n in explain_welds(ck, [w]).notes)


def test_in_a_batch_the_note_is_about_the_bad_weld_only(weld, tmp_path, root, ck):
    other = Path(shutil.copytree(weld_dirs(root)[1], tmp_path / "second" / weld_dirs(root)[1].name))
    avi = avi_of(other)
    avi.write_bytes(b"")
    welds = [load_weld(weld), load_weld(other)]
    exp = explain_welds(ck, welds, batch_size=1)
    assert [n for n in exp.notes if "unreadable" in n] == [f"video unreadable, treated as absent: {avi}: empty file"]
    assert exp.present[:, VIDEO].tolist() == [True, False] and exp.contributions["shapley"][1, VIDEO] == 0.0


def test_the_cli_json_says_it(weld, tmp_path, root):
    avi = avi_of(weld)
    avi.write_bytes(avi.read_bytes()[: avi.stat().st_size // 3])
    out = tmp_path / "out.json"
    assert main(["explain", "--checkpoint", str(root / "checkpoints" / "demo-best.safetensors"),
                 "--sample", str(weld), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    r, = payload["results"]
    assert r["missing"] == ["video"] and all(c["video"] == 0.0 for c in r["contributions"].values())
    assert any(n.startswith(f"video unreadable, treated as absent: {avi}: truncated or corrupt video")
               for n in payload["notes"]), payload["notes"]


# --------------------------------------------------------------------------- nothing readable

def test_a_weld_whose_every_file_is_corrupt_is_refused_naming_each(weld):
    files = [avi_of(weld), weld / f"{weld.name}.flac", weld / f"{weld.name}.csv", weld / "truth.json",
             *photos_of(weld)]
    for k, f in enumerate(files):
        f.write_bytes(junk(300, seed=k))
    with pytest.raises(InputError) as ei:
        load_weld(weld)
    msg = str(ei.value)
    assert ei.value.source == str(weld) and msg.startswith(f"{weld}: no modality could be read: ")
    assert "\n" not in msg
    for f in files:
        assert f"{f}: " in msg, f
    assert "cannot decode audio" in msg and "cannot decode image" in msg and "not valid JSON" in msg


# --------------------------------------------------------------------------- photos

def test_one_bad_photo_among_two_is_skipped(weld, ck):
    first, second, *rest = photos_of(weld)
    for p in rest:
        p.unlink()
    good = load_weld(weld)
    second.write_bytes(junk(500))
    w = load_weld(weld)
    why = f"{second}: cannot decode image (cannot identify image file)"
    assert w.unreadable == {"image": why} and w.missing == []
    assert w.image_names == [first.name] and len(w.images) == 1 and w.image_sizes == good.image_sizes[:1]
    np.testing.assert_array_equal(w.images[0], good.images[0])
    exp = explain_welds(ck, [w])
    assert f"image: unreadable photos skipped, 1 read: {why}" in exp.notes
    assert exp.present[0, IMAGE] and exp.contributions["shapley"][0, IMAGE] != 0.0


def test_all_photos_bad_leaves_image_absent(weld, ck):
    photos = photos_of(weld)
    for k, p in enumerate(photos):
        p.write_bytes(b"\xff\xd8\xff\xe0" + junk(700, seed=k))    # a JPEG's start, then noise
    w = load_weld(weld)
    assert w.missing == ["image"] and w.images == [] and list(w.unreadable) == ["image"]
    reasons = w.unreadable["image"].split("; ")
    assert [r.split(": ")[0] for r in reasons] == [str(p) for p in photos]
    assert all("image" in r for r in reasons)
    exp = explain_welds(ck, [w])
    assert f"image unreadable, treated as absent: {w.unreadable['image']}" in exp.notes
    assert all(phi[0, IMAGE] == 0.0 for phi in exp.contributions.values())


def test_the_photo_pixel_budget_still_refuses_the_weld(weld):
    with pytest.raises(InputError, match="pixels to decode, more than the limit of 1,000"):
        load_weld(weld, limits=Limits(max_photo_pixels_total=1_000))


# --------------------------------------------------------------------------- zips and uploads

def test_a_zip_upload_behaves_the_same(weld):
    avi = avi_of(weld)
    avi.write_bytes(avi.read_bytes()[:64] + junk(5000))
    folder = load_weld(weld)
    z, = load_welds_from_zip_bytes(zip_weld(weld), "upload.zip")
    assert z.missing == ["video"]
    assert z.unreadable == {"video": f"upload.zip/{weld.name}/{avi.name}: no video stream"}
    same_signals(z, folder)
    assert z.digest == folder.digest
    files = {p.name: p.read_bytes() for p in weld.rglob("*") if p.is_file()}
    u = load_weld_from_files(files, weld.name)
    assert u.unreadable == {"video": f"{avi.name}: no video stream"} and u.missing == ["video"]
    same_signals(u, folder)


def test_a_zip_with_every_file_corrupt_is_refused_naming_each(weld):
    files = [p for p in weld.rglob("*") if p.is_file()]
    for k, f in enumerate(files):
        f.write_bytes(junk(200, seed=k))
    with pytest.raises(InputError) as ei:
        load_welds_from_zip_bytes(zip_weld(weld), "upload.zip")
    msg = str(ei.value)
    assert msg.startswith(f"upload.zip/{weld.name}: no modality could be read: ")
    for f in files:
        assert f"upload.zip/{weld.name}/{f.relative_to(weld).as_posix()}: " in msg, f


# --------------------------------------------------------------------------- truth.json and budgets

def test_a_broken_truth_json_is_ignored_saying_why(weld, tmp_path, ck):
    truth = weld / "truth.json"
    truth.write_text('{"class": NaN}')
    good = load_weld(without(weld, tmp_path, "truth.json"))
    w = load_weld(weld)
    assert w.truth is None and w.missing == [] and list(w.unreadable) == ["truth"]
    assert w.unreadable["truth"].startswith(f"{truth}: not valid JSON (NaN is not a number JSON allows")
    same_signals(w, good)
    assert f"truth.json unreadable, ignored: {w.unreadable['truth']}" in explain_welds(ck, [w]).notes


def test_a_csv_over_its_own_byte_limit_is_left_out_the_weld_budget_still_refuses(weld, tmp_path):
    csv = weld / f"{weld.name}.csv"
    lim = Limits(max_csv_bytes=100)
    w = load_weld(weld, limits=lim)
    assert w.missing == ["sensor"]
    assert w.unreadable == {"sensor": f"{csv}: {csv.stat().st_size:,} bytes, more than the limit of 100 "
                                      "for a sensor CSV"}
    plain = load_weld(without(weld, tmp_path, csv.name), limits=lim)
    assert plain.missing == ["sensor"] and plain.digest != w.digest
    with pytest.raises(InputError, match="one weld's files may take"):
        load_weld(weld, limits=Limits(max_weld_bytes=1000))
