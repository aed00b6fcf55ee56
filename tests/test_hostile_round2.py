"""Issue 11 ("Hardening, round 2") in the readers, in this process and small: the budget
(`fusion_core.io.limits.Limits`) checked against what is read, audio decoded in blocks,
durations the data supports, CSV budgets, photo modes by value range, photos used only, and
error lines that stay one printable line. Budgets are lowered with a custom `Limits` where
the real sizes would be slow; the code paths are the ones the defaults take.
(The same classes at full size, through the CLI in processes of their own, are in
tests/test_bad_inputs.py.)
"""
from __future__ import annotations

import io
import json
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageOps

from fusion_core.errors import InputError
from fusion_core.io.containers import decode_weld, load_weld, load_weld_from_files, load_welds_from_zip_bytes
from fusion_core.io.decode import (StreamResampler, decode_audio, decode_image, decode_video, image_to_rgb,
                                   read_sensor_csv, read_truth, resample_audio)
from fusion_core.io.layout import plan_weld, weld_digest
from fusion_core.io.limits import DEFAULT_LIMITS, Limits
from fusion_core.training.synth import generate_weld
from fusion_core.vocab import CSV_COLUMNS

# --------------------------------------------------------------------------- builders


def flac(seconds: float, sr: int, channels: int = 1, tone_hz: float | None = None) -> bytes:
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = 0.5 * np.sin(2 * np.pi * tone_hz * t) if tone_hz else np.zeros(n)
    buf = io.BytesIO()
    sf.write(buf, np.repeat(x[:, None], channels, 1), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def claiming(data: bytes, frames: int) -> bytes:
    """The FLAC with STREAMINFO's total-samples field set to `frames`."""
    b = bytearray(data)
    bits = int.from_bytes(b[18:26], "big")
    b[18:26] = ((bits & ~((1 << 36) - 1)) | frames).to_bytes(8, "big")
    return bytes(b)


def video(n: int, fps: int = 15, fmt: str = "avi", last_pts: int | None = None, size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), (i * 9) % 250, np.uint8), format="rgb24")
            fr.pts = last_pts if (last_pts is not None and i == n - 1) else i
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return buf.getvalue()


def csv_rows(n: int, rate_hz: float = 8.6, *, clock=True, jump_last_s: float = 0.0, gap_at=None) -> bytes:
    lines = [",".join(CSV_COLUMNS)]
    for k in range(n):
        t = k / rate_hz + (jump_last_s if k == n - 1 else 0.0) + (3.0 if gap_at is not None and k >= gap_at else 0.0)
        stamp = f"2024-03-05,{int(10 + t // 3600):02d}:{int(t % 3600 // 60):02d}:{t % 60:06.3f}" if clock else ","
        lines.append(f"{stamp},000105,4.5,15.0,8000,{200 + k % 7},{k},24.0,")
    return ("\n".join(lines) + "\n").encode()


def png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def refused(fn, *args, match: str, name: str = "x", **kw) -> str:
    with pytest.raises(InputError) as ei:
        fn(*args, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and name in msg and match.lower() in msg.lower(), msg
    return msg


# --------------------------------------------------------------------------- the budget


def test_the_defaults_fit_a_real_weld_with_room(tmp_path):
    """A weld the size of the Intel dataset's longest (60 s: 516 CSV rows at 8.6 Hz, 16 kHz
    FLAC, 30 fps video, 5 photos of 2000×900) reads whole under the default budget."""
    folder = generate_weld("000100", 0, 0, tmp_path, duration_s=60.0, fps=30, image_size=(2000, 900))
    w = load_weld(folder)
    assert w.present == ["video", "image", "audio", "sensor"] and w.duration == pytest.approx(60.0, abs=0.2)
    assert len(w.sensor) == 516 and w.audio.shape == (960_000,) and w.images_skipped == 0
    assert w.image_sizes == [(2000, 900)] * 5
    d = DEFAULT_LIMITS
    assert d.max_duration_s >= 10 * 60 and d.max_rows >= 100 * 516 and d.max_photos_decoded >= 3 * 5
    assert d.max_image_pixels >= 10 * 2000 * 900 and d.max_audio_samples >= 60 * 960_000


def test_limits_are_configurable_and_frozen():
    lim = Limits(max_duration_s=3600)
    assert lim.max_duration_s == 3600 and lim.max_rows == DEFAULT_LIMITS.max_rows
    with pytest.raises(AttributeError):
        lim.max_rows = 1  # type: ignore[misc]
    assert lim.file_bytes("sensor") == lim.max_csv_bytes and lim.file_bytes("video") == lim.max_weld_bytes


# --------------------------------------------------------------------------- audio


def test_audio_refused_by_its_header_over_the_time_and_sample_budget():
    data = flac(12, 8000)
    refused(decode_audio, data, "x.flac", limits=Limits(max_duration_s=10), match="12 s long", name="x.flac")
    refused(decode_audio, flac(1, 8000, 4), "x.flac", limits=Limits(max_audio_samples=20_000), match="audio samples")
    refused(decode_audio, flac(0.1, 8000, 3), "x.flac", limits=Limits(max_audio_channels=2), match="3 audio channels")
    refused(decode_audio, claiming(data, 0), "x.flac", match="unknown length")


def test_a_header_that_claims_less_is_read_only_as_far_as_it_claims():
    """A FLAC header can lie: 12 s of audio claiming 1 s decodes to 1 s, not 12."""
    x = decode_audio(claiming(flac(12, 8000, tone_hz=440), 8000), "x.flac", limits=Limits(max_duration_s=10))
    assert x.shape == (16_000,) and x.dtype == np.float32


def test_audio_is_decoded_in_blocks_never_whole():
    """8 channels at 192 kHz for 10 s: 15.4 M samples, 61 MB as float32 at once. Block by block
    (mono mix and resampling included) the decoder's own allocations stay a small fraction of it."""
    data = flac(10, 192_000, 8, tone_hz=1000)
    tracemalloc.start()
    try:
        x = decode_audio(data, "x.flac")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (160_000,)
    assert peak < 25e6, f"{peak / 1e6:.0f} MB"
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.fft.rfftfreq(len(x), 1 / 16000)[spec.argmax()] - 1000) < 2
    assert np.abs(x).max() == pytest.approx(0.5, abs=0.02)


def test_stream_resampler_is_the_same_however_the_input_is_split():
    rng = np.random.default_rng(3)
    for sr in (8000, 11025, 44100, 48000, 192_000, 44_101):
        x = rng.normal(size=sr // 2) * 0.2
        whole = resample_audio(x, sr, 16000)
        assert whole.shape == (round(len(x) * 16000 / sr),)
        rs = StreamResampler(sr, 16000)
        parts, i = [], 0
        while i < len(x):
            k = int(rng.integers(1, 3000))
            parts.append(rs.push(x[i:i + k]))
            i += k
        np.testing.assert_array_equal(np.concatenate(parts + [rs.finish()]), whole)


def test_stream_resampler_matches_the_windowed_sinc_at_each_output():
    """The polyphase filter is the Kaiser-windowed sinc evaluated at each output instant."""
    sr_in, sr_out, hw, beta = 44100, 16000, 16, 8.6
    x = np.random.default_rng(4).normal(size=3000)
    got = resample_audio(x, sr_in, sr_out)
    cutoff = 0.95 * sr_out / sr_in
    reach = int(np.ceil(hw / cutoff))
    for n in (0, 1, 7, 500, 1087):
        t = n * sr_in / sr_out
        k = np.arange(int(np.floor(t)) - reach + 1, int(np.floor(t)) + reach + 1)
        d = t - k
        w = cutoff * np.sinc(cutoff * d) * np.i0(beta * np.sqrt(np.clip(1 - (d / reach) ** 2, 0, None))) / np.i0(beta)
        xs = np.where((k >= 0) & (k < len(x)), x[np.clip(k, 0, len(x) - 1)], 0.0)
        assert got[n] == pytest.approx(float(xs @ w), abs=1e-5)


# --------------------------------------------------------------------------- video


def test_video_refused_while_counting_frames_over_the_time_budget():
    """The small version of 490k packets at 15 fps: refused as the count passes the budget."""
    data = video(100, fps=15)
    refused(decode_video, data, "x.avi", limits=Limits(max_duration_s=5), match="longer than the limit of 5 s",
            name="x.avi")
    refused(decode_video, data, "x.avi", limits=Limits(max_video_frames=50), match="more than 50 frames")
    frames, times, fps = decode_video(data, "x.avi", limits=Limits(max_duration_s=7))
    assert fps == 15 and times[-1] == pytest.approx(99 / 15)


def test_video_frames_over_the_pixel_budget_are_refused_before_decoding():
    refused(decode_video, video(5), "x.avi", limits=Limits(max_image_pixels=500), match="32×24 pixels", name="x.avi")


def test_a_frame_stamped_at_86000_s_does_not_stretch_the_video():
    frames, times, fps = decode_video(video(30, 15, "matroska", last_pts=86_000 * 15), "x.mkv", max_frames=30)
    assert len(frames) == 30 and fps == 15
    np.testing.assert_allclose(times, np.arange(30) / 15)     # frame index / fps: the stamps are inconsistent


def test_consistent_timestamps_are_kept():
    frames, times, fps = decode_video(video(30, 10, "matroska"), "x.mkv", max_frames=30)
    np.testing.assert_allclose(times, np.arange(30) / 10, atol=1e-3)


# --------------------------------------------------------------------------- sensor CSV


def test_csv_times_follow_the_rows_when_the_clock_is_not_credible():
    # last row 23 h after the first: the row index at 8.6 Hz
    df = read_sensor_csv(csv_rows(300, jump_last_s=23 * 3600), "x.csv")
    np.testing.assert_allclose(df["t"], np.arange(300) / 8.6)
    # a clock of one row per 5 min (implausible for a weld): the row index
    df = read_sensor_csv(csv_rows(50, rate_hz=1 / 300), "x.csv")
    np.testing.assert_allclose(df["t"], np.arange(50) / 8.6)
    # a pause of 3 s in the log, and a 100 Hz logger: the clock is believed
    df = read_sensor_csv(csv_rows(300, gap_at=150), "x.csv")
    assert df["t"].iloc[-1] == pytest.approx(299 / 8.6 + 3, abs=2e-3)
    df = read_sensor_csv(csv_rows(1000, rate_hz=100), "x.csv")
    assert df["t"].iloc[-1] == pytest.approx(9.99, abs=2e-3)


def test_csv_refused_over_the_time_budget_by_what_the_rows_cover():
    """The small version of 199,999 rows at 8.6 Hz."""
    refused(read_sensor_csv, csv_rows(60, clock=False), "x.csv", limits=Limits(max_duration_s=5),
            match="60 rows cover 6.98 s, more than the limit of 5 s", name="x.csv")
    refused(read_sensor_csv, csv_rows(60), "x.csv", limits=Limits(max_duration_s=5), match="limit of 5 s")
    assert len(read_sensor_csv(csv_rows(40), "x.csv", limits=Limits(max_duration_s=5))) == 40


@pytest.mark.parametrize("text,limits,match", [
    (csv_rows(5) + b"," * 5000 + b"\n", Limits(max_csv_line=4096), "line 7: 5,001 characters, more than the limit"),
    (b",".join([b"c"] * 3000) + b"\n1\n", Limits(max_csv_line=4096), "line 1"),
    (b",".join(f"c{i}".encode() for i in range(300)) + b"\n1\n", Limits(max_csv_columns=100), "300 columns"),
    (csv_rows(50), Limits(max_rows=40), "more than 40 rows"),
    (csv_rows(50), Limits(max_csv_bytes=1000), "bytes, more than the limit of 1,000"),
])
def test_csv_budgets_are_checked_while_reading(text, limits, match):
    refused(read_sensor_csv, text, "x.csv", limits=limits, match=match, name="x.csv")


def test_a_long_line_is_refused_before_it_is_parsed():
    """A 20 MB line of commas would be 20 M cells; it is refused by its length, cheaply."""
    data = b",".join(CSV_COLUMNS[i].encode() for i in range(10)) + b"\n" + b"," * (20 << 20)
    tracemalloc.start()
    try:
        refused(read_sensor_csv, data, "x.csv", match="characters", name="x.csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"{peak / 1e6:.0f} MB"


def test_csv_with_carriage_returns_and_quoted_newlines_still_reads():
    text = (",".join(CSV_COLUMNS) + "\r\n" + "2024-03-05,10:00:00.000,1,4.5,15,8000,200,0,24,\"two\nlines\"\r\n"
            + "2024-03-05,10:00:00.116,1,4.5,15,8000,201,1,24,ok\r\n")
    df = read_sensor_csv(text.encode(), "x.csv")
    assert list(df["Primary Weld Current"]) == [200, 201]


# --------------------------------------------------------------------------- truth.json


@pytest.mark.parametrize("data,match", [
    (b'{"class": NaN}', "NaN"), (b'{"class": -Infinity}', "Infinity"), (b'{"x": 1e999}', "overflow"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"), (b'{"x": "' + b"a" * 2_000_000 + b'"}', "bytes, more than"),
])
def test_truth_json_that_would_break_the_output_is_refused(data, match):
    refused(read_truth, data, "truth.json", match=match, name="truth.json")


def test_plain_truth_json_reads():
    assert read_truth(b'{"class": 3, "windows": [[1.5, 2.0]]}', "truth.json") == {"class": 3, "windows": [[1.5, 2.0]]}


# --------------------------------------------------------------------------- photos: modes


def decoded(img: Image.Image, fmt="PNG", **kw) -> np.ndarray:
    arr, _ = decode_image(png(img, **kw) if fmt == "PNG" else jpeg(img, **kw), "x.png", max_side=256)
    return arr


def gradient(dtype, hi, w=512, h=32) -> np.ndarray:
    return np.tile(np.linspace(0, hi, w), (h, 1)).astype(dtype)


def test_16bit_grayscale_png_maps_its_full_range():
    img = Image.fromarray(gradient(np.uint16, 65535))
    assert Image.open(io.BytesIO(png(img))).mode.startswith("I;16")
    a = decoded(img)
    assert a.min() <= 2 and a.max() >= 253 and (a >= 250).mean() < 0.05       # a gradient, not 99 % white
    np.testing.assert_allclose(a[:, :, 0].mean(), 127.5, atol=3)
    # a 12-bit camera's values in a 16-bit PNG are dark, as stored
    assert decoded(Image.fromarray(gradient(np.uint16, 4095))).max() <= 17


@pytest.mark.parametrize("mode,dtype,lo,hi", [("I", np.int32, -1000, 300_000), ("F", np.float32, -0.5, 2.5),
                                              ("F", np.float32, 0.0, 1e-3)])
def test_32bit_integer_and_float_photos_map_their_actual_range(mode, dtype, lo, hi):
    img = Image.fromarray((lo + gradient(np.float64, 1.0) * (hi - lo)).astype(dtype))
    assert img.mode == mode
    a = np.asarray(image_to_rgb(img))
    assert a.min() == 0 and a.max() == 255 and abs(a.mean() - 127.5) < 3
    flat = np.asarray(image_to_rgb(Image.fromarray(np.full((4, 4), 7.0, np.float32))))
    assert (flat == 7).all()


def test_transparency_is_composited_on_white():
    assert (decoded(Image.new("RGBA", (64, 32), (10, 20, 30, 0))) == 255).all()
    half = decoded(Image.new("RGBA", (64, 32), (0, 0, 0, 128)))
    assert abs(int(half.mean()) - 127) <= 2
    la = Image.merge("LA", [Image.new("L", (64, 32), 0), Image.new("L", (64, 32), 0)])
    assert (decoded(la) == 255).all()
    p = Image.new("P", (64, 32), 1)
    p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    assert (decoded(p, transparency=1) == 255).all()
    assert (decoded(p) == (200, 10, 10)).all()           # the same palette photo without transparency


def test_cmyk_and_one_bit_photos():
    cyan = decoded(Image.new("CMYK", (64, 32), (255, 0, 0, 0)), fmt="JPEG", quality=95)
    assert cyan[..., 0].max() < 10 and cyan[..., 1:].min() > 245
    one = Image.fromarray(np.tile(np.arange(512) >= 256, (32, 1))).convert("1")
    a = decoded(one)
    assert a.min() == 0 and a.max() == 255 and abs(a.mean() - 127.5) < 3


def test_rgb_jpeg_of_the_dataset_size_decodes_as_pillow_does():
    """The real photos (2000×900 JPEG) take the same path as before: the pixels are Pillow's
    own upright, LANCZOS-downscaled RGB."""
    rng = np.random.default_rng(0)
    data = jpeg(Image.fromarray((rng.random((900, 2000, 3)) * 255).astype(np.uint8)), quality=90)
    got, size = decode_image(data, "x.jpg")
    ref = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    ref.thumbnail((400, 400), Image.Resampling.LANCZOS, reducing_gap=3.0)
    np.testing.assert_array_equal(got, np.asarray(ref.convert("RGB")))
    assert size == (2000, 900)


def test_pillow_bomb_bound_is_the_budget():
    from PIL import Image as PILImage
    decode_image(png(Image.new("L", (50, 40))), "x.png", limits=Limits(max_image_pixels=3000))
    assert PILImage.MAX_IMAGE_PIXELS == 3000
    refused(decode_image, png(Image.new("L", (60, 60))), "x.png", limits=Limits(max_image_pixels=3000),
            match="limit of 3,000", name="x.png")
    decode_image(png(Image.new("L", (4, 4))), "x.png")
    assert PILImage.MAX_IMAGE_PIXELS == DEFAULT_LIMITS.max_image_pixels


# --------------------------------------------------------------------------- photos: only those used


def photo_weld(folder: Path, n: int, img=None) -> Path:
    (folder / "images").mkdir(parents=True)
    (folder / f"{folder.name}.csv").write_bytes(csv_rows(20))
    blob = jpeg(img or Image.new("RGB", (60, 27), (100, 90, 80)))
    for k in range(n):
        (folder / "images" / f"p{k + 1}.jpg").write_bytes(blob)
    return folder


def test_only_the_first_photos_are_read_and_the_rest_counted(tmp_path):
    folder = photo_weld(tmp_path / "000105", 20)
    (folder / "images" / "p20.jpg").write_bytes(b"not a photo at all")   # never read
    w = load_weld(folder, limits=Limits(max_photos_decoded=3))
    assert w.image_names == ["p1.jpg", "p2.jpg", "p3.jpg"] and w.images_skipped == 17
    blobs = {f"images/p{k}.jpg": (folder / "images" / f"p{k}.jpg").read_bytes() for k in (1, 2, 3)}
    blobs["000105.csv"] = (folder / "000105.csv").read_bytes()
    assert w.digest == weld_digest(blobs)
    # natural order: p2 before p10
    chosen, skipped, problem = plan_weld([f"images/p{k}.jpg" for k in (10, 2, 1)], "x", Limits(max_photos_decoded=2))
    assert [r for _, r in chosen] == ["images/p1.jpg", "images/p2.jpg"] and skipped == 1 and problem is None
    assert load_weld(photo_weld(tmp_path / "000205", 5)).images_skipped == 0


def test_decode_weld_given_more_photos_decodes_only_the_budget():
    blob = jpeg(Image.new("RGB", (30, 20)))
    files = [(f"images/p{k}.jpg", f"p{k}.jpg", blob) for k in range(6)]
    w = decode_weld("000100", "here", files, limits=Limits(max_photos_decoded=4))
    assert len(w.images) == 4 and w.images_skipped == 2


def test_photo_pixels_are_refused_from_the_headers_before_decoding(tmp_path):
    folder = photo_weld(tmp_path / "000105", 6, Image.new("RGB", (100, 100)))
    refused(load_weld, folder, limits=Limits(max_photo_pixels_total=45_000), match="50,000 pixels to decode",
            name="p5.jpg")
    # A photo whose header does not open is skipped (its pixels do not count); the others still do.
    (folder / "images" / "p1.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    refused(load_weld, folder, limits=Limits(max_photo_pixels_total=45_000), match="50,000 pixels to decode",
            name="p6.jpg")
    w = load_weld(folder, limits=Limits(max_photo_pixels_total=50_000))
    assert len(w.images) == 5 and w.unreadable["image"].startswith(str(folder / "images" / "p1.jpg"))


# --------------------------------------------------------------------------- bytes and names


def unread_csv(w) -> str:
    """The reason a weld read without its sensor CSV gives (the photos were read)."""
    assert w.present == ["image"] and list(w.unreadable) == ["sensor"], (w.present, w.unreadable)
    return w.unreadable["sensor"]


def test_a_weld_file_over_its_bytes_budget_is_refused_by_its_size(tmp_path):
    # Over its kind's own limit: that file is not read, the weld is read without it.
    folder = photo_weld(tmp_path / "000105", 2)
    why = unread_csv(load_weld(folder, limits=Limits(max_csv_bytes=100)))
    assert why.startswith(str(folder / "000105.csv")) and "for a sensor CSV" in why
    # Over the weld's budget: the weld is refused.
    refused(load_weld, folder, limits=Limits(max_weld_bytes=600), match="one weld's files may take",
            name="000105")
    files = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    why = unread_csv(load_weld_from_files(files, limits=Limits(max_csv_bytes=100)))
    assert why.startswith("000105.csv: ") and "sensor CSV" in why
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, "000105/" + p.relative_to(folder).as_posix())
    w, = load_welds_from_zip_bytes(buf.getvalue(), "w.zip", limits=Limits(max_csv_bytes=100))
    assert unread_csv(w).startswith("w.zip/000105/000105.csv: ") and "sensor CSV" in unread_csv(w)


@pytest.mark.parametrize("make", ["fifo", "dev-zero"])
def test_a_weld_file_that_is_not_a_regular_file_is_refused_without_reading(tmp_path, make):
    folder = photo_weld(tmp_path / "000105", 1)
    (folder / "000105.csv").unlink()
    if make == "fifo":
        import os
        os.mkfifo(folder / "000105.csv")     # opening it to read would block forever
    else:
        (folder / "000105.csv").symlink_to("/dev/zero")   # reading it would never end
    why = unread_csv(load_weld(folder))
    assert why == f"{folder / '000105.csv'}: not a regular file"


@pytest.mark.parametrize("name", ["ok\nALL WELDS OK", "x\x1b[2J\x1b[H", "a\rALL WELDS OK", "b\u202edlrow"])
def test_unprintable_folder_names_stay_one_printable_line(tmp_path, name):
    folder = photo_weld(tmp_path / name, 1)
    (folder / f"{name}.csv").write_bytes(b"Date,Time\n1,2\n")
    why = unread_csv(load_weld(folder))            # with a photo: read without the CSV, saying why
    assert "missing column" in why and why.isprintable() and "\u202e" not in why
    (folder / "images" / "p1.jpg").unlink()        # the CSV alone: refused
    msg = refused(load_weld, folder, match="missing column", name="")
    assert msg.isprintable() and "\x1b" not in msg and "\r" not in msg and "\u202e" not in msg


# --------------------------------------------------------------------------- whole welds


def test_weld_duration_stays_within_the_budget_whatever_the_claims(tmp_path):
    folder = tmp_path / "000105"
    folder.mkdir()
    (folder / "000105.csv").write_bytes(csv_rows(69, jump_last_s=23 * 3600))
    (folder / "000105.mkv").write_bytes(video(120, 15, "matroska", last_pts=86_000 * 15))
    (folder / "000105.flac").write_bytes(claiming(flac(30, 8000), 8 * 8000))
    w = load_weld(folder)
    assert w.duration == pytest.approx(8.0, abs=0.05)
    lim = Limits(max_duration_s=6)
    refused(load_weld, folder, limits=lim, match="limit of 6 s", name="000105")


def test_decode_weld_refuses_over_the_time_budget():
    x = flac(3, 16000)
    w = decode_weld("000100", "here", [("000100.flac", "a.flac", x)], limits=Limits(max_duration_s=3))
    assert w.duration == pytest.approx(3.0)
    refused(decode_weld, "000100", "here", [("000100.flac", "a.flac", x)], limits=Limits(max_duration_s=2.5),
            match="limit", name="a.flac")


def test_sample_weld_reads_the_same(tmp_path):
    """A bundled sample weld: the same arrays as plain soundfile/pandas give (the golden JSON
    pins the rest)."""
    src = Path(__file__).resolve().parents[1] / "sample_data" / "000100"
    if not src.exists():
        pytest.skip("no sample_data")
    w = load_weld(shutil.copytree(src, tmp_path / "000100"))
    ref, sr = sf.read(src / "000100.flac", dtype="float32")
    np.testing.assert_array_equal(w.audio, np.clip(ref, -1, 1))
    assert sr == 16000 and w.images_skipped == 0 and len(w.images) == 5
    assert json.loads((src / "truth.json").read_text()) == w.truth
