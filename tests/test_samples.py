"""Readers: generated welds round-trip, quirky real-world folders work, malformed input fails
with an InputError that names the file."""
from __future__ import annotations

import csv
import io
import json
import shutil
import stat
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from fusion_core.errors import InputError
from fusion_core.io.containers import load_weld, load_weld_from_files, load_welds, load_welds_from_zip_bytes
from fusion_core.io.decode import decode_audio, read_sensor_csv, resample_audio
from fusion_core.io.limits import Limits
from fusion_core.training.synth import generate_dataset
from fusion_core.vocab import CSV_COLUMNS, SENSOR_CHANNELS

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("welds")
    generate_dataset(root, 3, seed=5, classes=[0, 3, 9])
    return root


@pytest.fixture(scope="module")
def weld_dir(dataset) -> Path:
    return dataset / "000203"


def zip_folder(folder: Path, dest: Path, top: str | None = "keep", extra=()) -> Path:
    """Zip `folder` with its name as top folder ("keep"), another name, or none (None)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                rel = f.relative_to(folder).as_posix()
                arc = rel if top is None else f"{folder.name if top == 'keep' else top}/{rel}"
                zf.write(f, arc)
        for name, data in extra:
            zf.writestr(name, data)
    return dest


def tiny_avi(n: int = 10, size=(32, 24), fps: int = 10) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="avi") as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n):
            a = np.full((size[1], size[0], 3), 20 * i % 256, np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return buf.getvalue()


def wav_bytes(x: np.ndarray, sr: int, fmt="WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def jpg_bytes(w=60, h=27, color=(120, 110, 100), fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format=fmt)
    return buf.getvalue()


def csv_text(rows: int = 20, remarks: str = "", date="2024-03-05", bad=None) -> str:
    lines = [",".join(CSV_COLUMNS)]
    for k in range(rows):
        vals = [4.5, 15.0, 8000, 200 + k, 10.0 * k, 24.0]
        if bad and bad[0] == k:
            vals[bad[1]] = bad[2]
        ms = int(round(k / 8.6 * 1000))
        lines.append(f"{date},10:00:{ms // 1000:02d}.{ms % 1000:03d},000105,"
                     + ",".join(str(v) for v in vals) + f",{remarks}")
    return "\n".join(lines) + "\n"


def write_weld(folder: Path, stem: str | None = None, *, video=True, audio=True, sensor=True,
               images=2, image_dir="images", image_ext=".jpg") -> Path:
    stem = stem or folder.name
    folder.mkdir(parents=True, exist_ok=True)
    if video:
        (folder / f"{stem}.avi").write_bytes(tiny_avi())
    if audio:
        (folder / f"{stem}.flac").write_bytes(wav_bytes(np.zeros(1600), 16000, "FLAC"))
    if sensor:
        (folder / f"{stem}.csv").write_text(csv_text())
    if images:
        (folder / image_dir).mkdir(exist_ok=True)
        for k in range(images):
            (folder / image_dir / f"p{k + 1}{image_ext}").write_bytes(
                jpg_bytes(fmt="PNG" if image_ext.lower() == ".png" else "JPEG"))
    return folder


def raises_naming(name: str, fn, *args, match: str | None = None, **kw) -> InputError:
    with pytest.raises(InputError) as ei:
        fn(*args, **kw)
    msg = str(ei.value)
    assert name in msg, msg
    assert "\n" not in msg
    if match:
        assert match.lower() in msg.lower(), msg
    return ei.value


# --------------------------------------------------------------------------- generated welds


def test_generated_weld_round_trips(weld_dir: Path):
    w = load_weld(weld_dir)
    assert w.weld_id == "000203" and w.class_code == 3 and w.class_name == "porosity"
    assert w.present == ["video", "image", "audio", "sensor"] and w.missing == []
    # video: 8 s at 15 fps = 120 frames, 48 kept evenly, 128×96 fits in 160
    assert w.video.shape == (48, 96, 128, 3) and w.video.dtype == np.uint8
    assert w.video_fps == pytest.approx(15.0)
    kept = np.linspace(0, 119, 48).round()
    np.testing.assert_allclose(w.video_times, kept / 15.0, atol=1e-6)
    # audio: duration × 16 kHz, mono float32
    assert w.audio.dtype == np.float32 and w.audio.shape == (8 * 16000,)
    ref, sr = sf.read(weld_dir / "000203.flac", dtype="float32")
    assert sr == 16000
    np.testing.assert_array_equal(w.audio, ref)
    # sensor: exactly the values written, t from Date+Time
    assert list(w.sensor.columns) == ["t", *SENSOR_CHANNELS]
    with open(weld_dir / "000203.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(w.sensor) == len(rows) == round(8 * 8.6)
    for c in SENSOR_CHANNELS:
        np.testing.assert_array_equal(w.sensor[c].to_numpy(), [float(r[c]) for r in rows])
    np.testing.assert_allclose(w.sensor["t"], np.arange(len(rows)) / 8.6, atol=1.5e-3)
    # photos: 5, the real aspect, names kept, sizes as stored
    assert len(w.images) == 5 and all(im.shape == (180, 400, 3) for im in w.images)
    assert w.image_names == [f"000203_{k}.jpg" for k in range(1, 6)]
    assert w.image_sizes == [(400, 180)] * 5
    assert w.truth == json.loads((weld_dir / "truth.json").read_text())
    assert len(w.digest) == 64
    assert w.duration == pytest.approx(8.0, abs=0.05)


def test_decode_options_bound_memory(weld_dir: Path):
    w = load_weld(weld_dir, max_frames=6, max_side=64, image_max_side=100)
    assert w.video.shape == (6, 48, 64, 3)
    np.testing.assert_allclose(w.video_times, np.linspace(0, 119, 6).round() / 15.0)
    assert all(im.shape == (45, 100, 3) for im in w.images)
    assert w.image_sizes == [(400, 180)] * 5


def test_folder_of_welds_sorted_and_ids(dataset: Path):
    welds = load_welds(dataset)
    assert [w.weld_id for w in welds] == ["000100", "000203", "000309"]
    assert [w.class_code for w in welds] == [0, 3, 9]
    raises_naming(str(dataset), load_weld, dataset, match="3 welds")


def test_stray_files_beside_weld_folders(dataset: Path, tmp_path: Path):
    root = tmp_path / "batch"
    shutil.copytree(dataset, root)
    (root / "labels.csv").write_text("part,class\n000100,0\n")
    (root / "overview.png").write_bytes(jpg_bytes(fmt="PNG"))
    (root / "old.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    assert [w.weld_id for w in load_welds(root)] == ["000100", "000203", "000309"]
    only_zips = tmp_path / "zips"
    only_zips.mkdir()
    (only_zips / "a.zip").write_bytes(b"PK")
    raises_naming("zips", load_welds, only_zips, match="load each zip itself")


def test_same_weld_same_digest_from_folder_zip_and_upload(weld_dir: Path, tmp_path: Path):
    a = load_weld(weld_dir)
    b = load_weld(weld_dir)
    z_top = load_welds(zip_folder(weld_dir, tmp_path / "top.zip"))
    z_flat = load_welds(zip_folder(weld_dir, tmp_path / "000203.zip", top=None))
    files = {f.name: f.read_bytes() for f in weld_dir.rglob("*") if f.is_file()}
    up = load_weld_from_files(files)
    up_list = load_weld_from_files(list(files.items()))
    data = (tmp_path / "top.zip").read_bytes()
    z_bytes = load_welds_from_zip_bytes(data, "upload.zip")
    for other in [b, z_top[0], z_flat[0], up, up_list, z_bytes[0]]:
        assert other.weld_id == "000203"
        assert other.digest == a.digest
        np.testing.assert_array_equal(other.sensor.to_numpy(), a.sensor.to_numpy())
        assert other.truth == a.truth
    assert z_top[0].source.endswith("top.zip/000203")
    # a different weld hashes differently
    assert load_weld(weld_dir.parent / "000100").digest != a.digest


def test_zip_of_many_welds_with_and_without_top_folder(dataset: Path, tmp_path: Path):
    top = tmp_path / "batch.zip"
    with zipfile.ZipFile(top, "w") as zf:
        for f in sorted(dataset.rglob("*")):
            if f.is_file():
                zf.write(f, "batch/" + f.relative_to(dataset).as_posix())
        zf.writestr("batch/README.txt", "stray")
        zf.writestr("__MACOSX/batch/000100/._000100.avi", b"\x00\x05junk")
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        for f in sorted(dataset.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(dataset).as_posix())
    ref = {w.weld_id: w.digest for w in load_welds(dataset)}
    for z in (top, flat):
        welds = load_welds(z)
        assert {w.weld_id: w.digest for w in welds} == ref
        assert [w.weld_id for w in welds] == sorted(ref)


# --------------------------------------------------------------------------- quirky folders


def test_quirky_weld_folder(tmp_path: Path):
    folder = tmp_path / "000105"
    folder.mkdir()
    # 44.1 kHz stereo WAV: 1 kHz in both channels plus an 11 kHz tone that must not alias in
    sr, dur = 44100, 1.5
    t = np.arange(int(sr * dur)) / sr
    left = 0.5 * np.sin(2 * np.pi * 1000 * t) + 0.2 * np.sin(2 * np.pi * 11000 * t)
    right = 0.5 * np.sin(2 * np.pi * 1000 * t) - 0.2 * np.sin(2 * np.pi * 11000 * t) * 0
    (folder / "recording.WAV").write_bytes(wav_bytes(np.stack([left, right], 1), sr))
    # stems differ from the folder, but each kind is unambiguous
    (folder / "cam.avi").write_bytes(tiny_avi(12))
    # text in Remarks (with unquoted commas), dates that don't parse
    (folder / "log.csv").write_text(csv_text(30, remarks="operator note, re-tacked, ok",
                                             date="not a date"))
    (folder / "Images").mkdir()
    (folder / "Images" / "B.JPG").write_bytes(jpg_bytes())
    (folder / "Images" / "a.PNG").write_bytes(jpg_bytes(fmt="PNG"))
    (folder / "Images" / "notes.txt").write_text("stray")
    (folder / "Images" / "._B.JPG").write_bytes(b"\x00\x05\x16\x07 junk")  # AppleDouble
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "readme.md").write_text("stray")
    (folder / "Thumbs.db").write_bytes(b"junk")

    w = load_weld(folder)
    assert w.weld_id == "000105" and w.class_code == 5
    assert w.present == ["video", "image", "audio", "sensor"]
    assert w.audio.shape == (round(dur * 16000),) and w.audio.dtype == np.float32
    spec = np.abs(np.fft.rfft(w.audio * np.hanning(len(w.audio))))
    f = np.fft.rfftfreq(len(w.audio), 1 / 16000)
    assert abs(f[spec.argmax()] - 1000) < 5
    amp = 2 * spec.max() / np.hanning(len(w.audio)).sum()
    assert amp == pytest.approx(0.5, abs=0.02)
    # 11 kHz would alias to 5 kHz at 16 kHz; the anti-alias filter removes it
    alias = spec[(f > 4900) & (f < 5100)].max()
    assert alias < 1e-3 * spec.max()
    np.testing.assert_allclose(w.sensor["t"], np.arange(30) / 8.6)
    np.testing.assert_array_equal(w.sensor["Primary Weld Current"], 200 + np.arange(30))
    assert w.image_names == ["a.PNG", "B.JPG"]
    assert w.video.shape[0] == 12


def test_resample_rates_and_lengths():
    for sr in (8000, 22050, 44100, 48000):
        x = np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
        y = resample_audio(x, sr, 16000)
        assert y.shape == (16000,)
        ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
        assert np.abs(y[200:-200] - ref[200:-200]).max() < 0.01


def test_missing_modalities_are_reported(tmp_path: Path):
    w = load_weld(write_weld(tmp_path / "000207", video=False, audio=False))
    assert w.present == ["image", "sensor"] and w.missing == ["video", "audio"]
    assert w.video is None and w.audio is None


def test_coarse_clock_falls_back_to_row_index():
    text = ",".join(CSV_COLUMNS) + "\n" + "".join(
        f"2024-03-05,10:00:{k // 9:02d},1,4.5,15,8000,200,{k},24,\n" for k in range(27))
    df = read_sensor_csv(text.encode(), "x.csv")
    np.testing.assert_allclose(df["t"], np.arange(27) / 8.6)


def test_channels_found_by_position_between_part_no_and_remarks():
    header = "Date,Time,Part No,P (bar),Flow,Feed,I (A),Wire,U (V),Remarks"
    text = header + "\n2024-03-05,10:00:00.000,1,4.5,15,8000,200,0,24,hi\n"
    df = read_sensor_csv(text.encode(), "x.csv")
    assert list(df.columns) == ["t", *SENSOR_CHANNELS]
    assert df["Primary Weld Current"].iloc[0] == 200


def test_upload_files(tmp_path: Path):
    files = {"000209.avi": tiny_avi(), "000209.csv": csv_text().encode(),
             "x.JPG": jpg_bytes(), "y.jpeg": jpg_bytes()}
    w = load_weld_from_files(files)
    assert w.weld_id == "000209" and w.present == ["video", "image", "sensor"]
    assert load_weld_from_files(files, weld_id="777711").weld_id == "777711"
    raises_naming("notes.docx", load_weld_from_files, {**files, "notes.docx": b"x"},
                  match="unrecognised")
    raises_naming("more.zip", load_weld_from_files, {**files, "more.zip": b"PK"})
    raises_naming("upload", load_weld_from_files, {})
    raises_naming("b.avi", load_weld_from_files, {**files, "b.avi": tiny_avi()},
                  match="ambiguous")


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize("name,data,match,absent", [
    ("000100.avi", b"\x00garbage" * 100, "video", "video"),
    ("000100.avi", b"", "empty", "video"),
    ("000100.flac", b"", "empty", "audio"),
    ("000100.flac", b"fLaC" + b"\x00" * 50, "audio", "audio"),
    ("images/000100_1.jpg", b"\xff\xd8\xff\xe0 truncated", "image", "image"),
    ("000100.csv", b"", "empty", "sensor"),
    ("truth.json", b"{not json", "json", "truth"),
])
def test_corrupt_media(weld_dir: Path, tmp_path: Path, name, data, match, absent):
    """A corrupt file leaves its modality out (a photo among others: that photo, a truth.json:
    the truth), with a reason naming the file; the rest of the weld is read."""
    folder = tmp_path / "000100"
    shutil.copytree(weld_dir, folder)
    target = folder / name
    for f in folder.rglob("000203*"):
        f.rename(f.with_name(f.name.replace("000203", "000100")))
    target.write_bytes(data)
    w = load_weld(folder)
    why = w.unreadable.get(absent, "")
    assert list(w.unreadable) == [absent] and why.startswith(f"{target}: ") and match in why.lower(), w.unreadable
    if absent == "image":
        assert w.missing == [] and w.images and target.name not in w.image_names
    elif absent == "truth":
        assert w.missing == [] and w.truth is None
    else:
        assert w.missing == [absent]


def test_truncated_video(tmp_path: Path, weld_dir: Path):
    folder = tmp_path / "000203"
    shutil.copytree(weld_dir, folder)
    avi = folder / "000203.avi"
    data = avi.read_bytes()
    avi.write_bytes(data[: len(data) // 2])
    w = load_weld(folder)
    assert w.missing == ["video"] and w.unreadable["video"].startswith(f"{avi}: "), w.unreadable


@pytest.mark.parametrize("text,match", [
    ("Date,Time,Part No,Pressure,Feed,Remarks\n1,2,3,4,5,6\n", "'CO2 Weld Flow'"),
    (",".join(CSV_COLUMNS) + "\n", "no data rows"),
    (csv_text(10, bad=(6, 3, "abc")), "column 'Primary Weld Current', row 7 (line 8): 'abc'"),
    (csv_text(10, bad=(2, 0, "")), "column 'Pressure', row 3 (line 4): is empty"),
    (csv_text(10, bad=(4, 5, "nan")), "column 'Secondary Weld Voltage', row 5"),
    (csv_text(10, bad=(4, 4, "inf")), "column 'Wire Consumed', row 5"),
])
def test_bad_sensor_csv(tmp_path: Path, text, match):
    folder = write_weld(tmp_path / "000100", video=False, audio=False, images=0)
    (folder / "000100.csv").write_text(text)
    raises_naming("000100.csv", load_weld, folder, match=match)


def test_csv_row_limit():
    text = csv_text(50).encode()
    with pytest.raises(InputError, match="x.csv: more than 40 rows"):
        read_sensor_csv(text, "x.csv", max_rows=40)


def test_no_modality_and_no_weld(tmp_path: Path):
    empty = tmp_path / "000100"
    (empty / "images").mkdir(parents=True)
    (empty / "truth.json").write_text("{}")
    (empty / "notes.txt").write_text("x")
    raises_naming("000100", load_weld, empty, match="no weld found")
    raises_naming("nope", load_weld, tmp_path / "nope", match="no such")
    (tmp_path / "file.txt").write_text("x")
    raises_naming("file.txt", load_welds, tmp_path / "file.txt")


def test_ambiguous_files(tmp_path: Path):
    folder = write_weld(tmp_path / "000100", stem="a")
    (folder / "b.avi").write_bytes(tiny_avi())
    raises_naming("000100", load_weld, folder, match="ambiguous video")
    (folder / "000100.avi").write_bytes(tiny_avi(4))
    assert load_weld(folder).video.shape[0] == 4  # the one named after the part wins


def _zip_bytes(entries) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for e in entries:
            if isinstance(e, zipfile.ZipInfo):
                zf.writestr(e, b"../../etc/passwd")
            else:
                zf.writestr(*e)
    return buf.getvalue()


def _good_entries(prefix="000100/"):
    return [(prefix + "000100.csv", csv_text()), (prefix + "images/p.jpg", jpg_bytes())]


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("extra,entry,match", [
    (("../evil.csv", "x"), "../evil.csv", "'..'"),
    (("000100/../../evil.csv", "x"), "evil.csv", "'..'"),
    (("/etc/evil.csv", "x"), "/etc/evil.csv", "absolute"),
    (("C:/evil.csv", "x"), "C:/evil.csv", "absolute"),
    (("000100\\..\\..\\evil.csv", "x"), "evil.csv", "'..'"),
    (_symlink_info("000100/link.csv"), "link.csv", "link"),
    (("000100/inner.zip", b"PK\x05\x06" + b"\x00" * 18), "inner.zip", "nested zip"),
])
def test_zip_entries_that_escape_or_nest(extra, entry, match):
    data = _zip_bytes(_good_entries() + [extra])
    raises_naming(entry, load_welds_from_zip_bytes, data, "up.zip", match=match)
    raises_naming("up.zip", load_welds_from_zip_bytes, data, "up.zip")


def test_zip_bounds(tmp_path: Path):
    data = _zip_bytes(_good_entries())
    assert len(load_welds_from_zip_bytes(data, "ok.zip")) == 1
    raises_naming("ok.zip", load_welds_from_zip_bytes, data, "ok.zip",
                  limits=Limits(max_total_bytes=1000), match="uncompressed size")
    many = _zip_bytes(_good_entries() + [(f"000100/x{i}.txt", "") for i in range(20)])
    raises_naming("many.zip", load_welds_from_zip_bytes, many, "many.zip",
                  limits=Limits(max_entries=10), match="entries")
    bomb = _zip_bytes(_good_entries() + [("000100/zeros.txt", b"\x00" * (8 << 20))])
    raises_naming("zeros.txt", load_welds_from_zip_bytes, bomb, "bomb.zip", match="ratio")
    # the default entry-count limit, for real
    big = _zip_bytes(_good_entries() + [(f"000100/s{i}", "") for i in range(10_001)])
    raises_naming("big.zip", load_welds_from_zip_bytes, big, "big.zip", match="10000")
    # a path works the same as bytes
    (tmp_path / "many.zip").write_bytes(many)
    raises_naming("many.zip", load_welds, tmp_path / "many.zip",
                  limits=Limits(max_entries=10), match="entries")


def test_zip_that_lies_about_sizes():
    payload = csv_text(40).encode()
    data = bytearray(_zip_bytes([("000100/000100.csv", payload)]))
    small = (100).to_bytes(4, "little")
    cd = data.index(b"PK\x01\x02")
    data[cd + 24: cd + 28] = small       # central directory: uncompressed size
    data[22:26] = small                  # local header: uncompressed size
    raises_naming("000100.csv", load_welds_from_zip_bytes, bytes(data), "lie.zip")


def test_not_a_zip_and_encrypted(tmp_path: Path):
    raises_naming("x.zip", load_welds_from_zip_bytes, b"not a zip at all", "x.zip",
                  match="zip")
    data = bytearray(_zip_bytes(_good_entries()))
    # set the "encrypted" flag bit on the first entry, in both headers
    data[6] |= 1
    cd = data.index(b"PK\x01\x02")
    data[cd + 8] |= 1
    raises_naming("000100.csv", load_welds_from_zip_bytes, bytes(data), "enc.zip",
                  match="encrypted")


def test_nothing_half_loaded(tmp_path: Path, weld_dir: Path):
    # one good weld and one bad one in a zip: the call fails as a whole, naming the bad file
    data = _zip_bytes(_good_entries("000100/") + [("000207/000207.avi", b"\x00junk" * 40)])
    raises_naming("000207.avi", load_welds_from_zip_bytes, data, "two.zip")


def test_decode_audio_rejects_silly_input():
    raises_naming("a.wav", decode_audio, b"RIFF\x00\x00", "a.wav")
    raises_naming("a.wav", decode_audio, wav_bytes(np.zeros(0), 16000), "a.wav",
                  match="no audio")
