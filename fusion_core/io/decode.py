"""Decoders: one file's bytes → arrays, from memory, bounded by `Limits`.

Video through PyAV (evenly spaced frames, downscaled), audio through soundfile (mono,
resampled to 16 kHz), photos through Pillow (EXIF-upright, downscaled), the sensor CSV by
the csv module (the dataset's header, by name or by position). Every problem is an
`InputError(file, problem)`.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from collections import Counter

import numpy as np
import pandas as pd

from ..errors import InputError
from ..vocab import AUDIO_RATE_HZ, CSV_COLUMNS, SENSOR_CHANNELS, SENSOR_RATE_HZ
from .limits import DEFAULT_LIMITS, Limits


def decode_video(data: bytes, source: str, *, max_frames: int = 48, max_side: int = 160,
                 limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, np.ndarray, float]:
    """Video bytes → (frames (F,H,W,3) uint8 RGB, times (F,) s from the first frame, fps).

    At most `max_frames` frames, evenly spaced over the clip, each downscaled so its longer
    side is ≤ `max_side`. Only the kept frames are converted, so memory stays bounded.
    """
    import av

    if not data:
        raise InputError(source, "empty file")
    if max_frames < 1:
        raise ValueError("max_frames must be ≥ 1")
    try:
        n, declared = _count_packets(data, source, limits)
        want = np.unique(np.linspace(0, n - 1, min(max_frames, n)).round().astype(np.int64))
        frames, pts, first_time, decoded, fps = _decode_frames(data, source, set(want.tolist()), max_side)
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, EOFError, IndexError, RuntimeError) as e:
        raise InputError(source, f"cannot decode video ({_short(e)})") from None
    if not frames:
        raise InputError(source, "no decodable video frames")
    if declared > 0 and decoded < 0.9 * declared - 1:
        raise InputError(source, f"truncated or corrupt video: {decoded} of {declared} frames decode")
    if not fps:
        fps = float(n) / max(1e-9, (pts[-1] or 0.0) - (first_time or 0.0)) if n > 1 else 0.0
    t0 = first_time or 0.0
    times = np.array([((p if p is not None else i / fps if fps else 0.0) - t0)
                      for i, p in zip(want[:len(pts)], pts)], dtype=np.float64)
    return np.stack(frames).astype(np.uint8, copy=False), times, float(fps)


def _count_packets(data: bytes, source: str, limits: Limits) -> tuple[int, int]:
    """Pass 1: (frames counted from the packets, frames the stream declares): cheap, no decoding."""
    import av
    with av.open(io.BytesIO(data), mode="r") as c:
        if not c.streams.video:
            raise InputError(source, "no video stream")
        st = c.streams.video[0]
        n = 0
        for pkt in c.demux(st):
            if pkt.size:
                n += 1
                if n > limits.max_video_frames:
                    raise InputError(source, f"more than {limits.max_video_frames} frames")
        declared = int(st.frames or 0)
    if n == 0:
        raise InputError(source, "no video frames")
    return n, declared


def _decode_frames(data: bytes, source: str, want: set[int], max_side: int):
    """Pass 2: decode everything, convert only the frames in `want`.
    Returns (frames, their times, first frame's time, frames decoded, fps from the stream)."""
    import av
    frames: list[np.ndarray] = []
    pts: list[float | None] = []
    first_time: float | None = None
    decoded = 0
    with av.open(io.BytesIO(data), mode="r") as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        rate = st.average_rate or st.guessed_rate or st.base_rate
        fps = float(rate) if rate else 0.0
        for frame in c.decode(st):
            if first_time is None:
                first_time = frame.time
            if decoded in want:
                fw, fh = frame.width, frame.height
                if fw <= 0 or fh <= 0:
                    raise InputError(source, "video frames have no size")
                scale = min(1.0, max_side / max(fw, fh))
                tw, th = max(1, round(fw * scale)), max(1, round(fh * scale))
                frames.append(frame.to_ndarray(format="rgb24", width=tw, height=th, interpolation="AREA"))
                pts.append(frame.time)
            decoded += 1
    return frames, pts, first_time, decoded, fps


def decode_audio(data: bytes, source: str, *, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Audio bytes (FLAC/WAV, any rate, any channels) → mono float32 at 16 kHz in [-1, 1]."""
    import soundfile as sf

    if not data:
        raise InputError(source, "empty file")
    try:
        info = sf.info(io.BytesIO(data))
        if info.frames <= 0:
            raise InputError(source, "no audio samples")
        if not 1000 <= info.samplerate <= 768_000:
            raise InputError(source, f"implausible sample rate {info.samplerate} Hz")
        if info.frames / info.samplerate > limits.max_audio_s:
            raise InputError(source, f"audio is longer than {limits.max_audio_s:.0f} s")
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except InputError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as e:
        raise InputError(source, f"cannot decode audio ({_short(e)})") from None
    if x.shape[0] == 0:
        raise InputError(source, "no audio samples")
    mono = x.mean(axis=1, dtype=np.float64) if x.shape[1] > 1 else x[:, 0].astype(np.float64)
    mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
    if sr != AUDIO_RATE_HZ:
        mono = resample_audio(mono, int(sr), AUDIO_RATE_HZ)
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def resample_audio(x: np.ndarray, sr_in: int, sr_out: int, half_width: int = 16,
                   beta: float = 8.6) -> np.ndarray:
    """Band-limited resampling (Kaiser-windowed sinc, evaluated at each output instant).

    The low-pass cutoff sits at 95% of the lower Nyquist frequency, so downsampling
    (44.1 kHz → 16 kHz) does not alias and upsampling does not image. Output length is
    round(len(x) * sr_out / sr_in). Runs in chunks to keep memory flat.
    """
    x = np.asarray(x, dtype=np.float64)
    if sr_in == sr_out or len(x) == 0:
        return x.astype(np.float32)
    n_out = max(1, int(round(len(x) * sr_out / sr_in)))
    step = sr_in / sr_out                       # input samples per output sample
    cutoff = 0.95 * min(1.0, sr_out / sr_in)    # in units of the input Nyquist
    reach = int(np.ceil(half_width / cutoff))
    offs = np.arange(-reach + 1, reach + 1)
    i0b = np.i0(beta)
    out = np.empty(n_out, dtype=np.float32)
    xp = np.concatenate([np.zeros(reach), x, np.zeros(reach + 1)])  # zero padding at the ends
    chunk = max(1, 1_000_000 // len(offs))
    for start in range(0, n_out, chunk):
        t = np.arange(start, min(n_out, start + chunk)) * step
        base = np.floor(t).astype(np.int64)
        d = (t - base)[:, None] - offs[None, :]           # distance from each tap, in samples
        u = np.clip(1.0 - (d / reach) ** 2, 0.0, None)
        w = cutoff * np.sinc(cutoff * d) * (np.i0(beta * np.sqrt(u)) / i0b)
        taps = xp[base[:, None] + offs[None, :] + reach]
        out[start:start + len(t)] = np.einsum("ij,ij->i", taps, w)
    return out


def decode_image(data: bytes, source: str, *, max_side: int = 400,
                 limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, tuple[int, int]]:
    """Photo bytes → ((H, W, 3) uint8 RGB with longer side ≤ max_side, (width, height) as stored).

    EXIF rotation is applied (a user expects the photo upright); the size returned is the
    upright size before downscaling, so boxes given in the file's pixels can be rescaled.
    """
    from PIL import Image, ImageOps

    if not data:
        raise InputError(source, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > limits.max_image_pixels:
                raise InputError(source, f"{img.width}×{img.height} pixels is more than the limit "
                                         f"of {limits.max_image_pixels}")
            if img.format not in ("JPEG", "PNG", "MPO"):
                raise InputError(source, f"{img.format} image; expected JPEG or PNG")
            img = ImageOps.exif_transpose(img)
            size = (img.width, img.height)
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
            img = img.convert("RGB")
            arr = np.asarray(img, dtype=np.uint8).copy()
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, EOFError) as e:
        raise InputError(source, f"cannot decode image ({_short(e)})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise InputError(source, "image has no pixels")
    return arr, size


def read_sensor_csv(data: bytes, source: str, *, max_rows: int = 200_000) -> pd.DataFrame:
    """Sensor CSV bytes → DataFrame with `t` (s from the first row) + the six channels as float.

    The channels are the six columns between `Part No` and `Remarks`: by name when the
    header has them, else by position. `t` comes from Date+Time when every row parses and
    times strictly increase, else from the row index at 8.6 Hz.
    """
    if not data or not data.strip():
        raise InputError(source, "empty file")
    text = _decode_text(data)
    df, line_of = _parse_csv(text, source, max_rows)
    cols = _channel_columns(df, source)
    out = {}
    for canon, col in zip(SENSOR_CHANNELS, cols):
        raw = df[col]
        text_vals = raw.astype("string").str.strip()
        vals = pd.to_numeric(text_vals, errors="coerce").astype("float64").to_numpy()
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = text_vals.iloc[i]
            what = "is empty" if cell is pd.NA or cell == "" else f"{str(cell)[:40]!r} is not a number"
            raise InputError(source, f"column {col!r}, row {i + 1} (line {line_of[i]}): {what}"
                                     + (f" ({int(bad.sum())} bad cells in this column)"
                                        if bad.sum() > 1 else ""))
        out[canon] = vals
    n = len(df)
    t = _times(df, n)
    return pd.DataFrame({"t": t, **out})


def _decode_text(data: bytes) -> str:
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1", errors="replace")  # pragma: no cover (latin-1 always decodes)


def _parse_csv(text: str, source: str, max_rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Cells as text; blank rows dropped; text with commas in the last column (Remarks) kept."""
    if "\x00" in text:
        raise InputError(source, "binary data, not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(source, "empty file") from None
    except csv.Error as e:
        raise InputError(source, f"not a readable CSV ({e})") from None
    header = [h.strip() for h in header]
    ncol = len(header)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue  # blank lines and rows of empty cells (spreadsheet exports)
            if len(row) > ncol:
                if header[-1].lower() == "remarks":  # unquoted commas in free text
                    row = row[:ncol - 1] + [",".join(row[ncol - 1:])]
                else:
                    raise InputError(source, f"line {reader.line_num}: {len(row)} cells, "
                                             f"the header has {ncol}")
            elif len(row) < ncol:
                row = row + [""] * (ncol - len(row))
            rows.append(row)
            lines.append(reader.line_num)
            if len(rows) > max_rows:
                raise InputError(source, f"more than {max_rows} rows")
    except csv.Error as e:
        raise InputError(source, f"line {reader.line_num}: not a readable CSV ({e})") from None
    if not rows:
        raise InputError(source, "no data rows")
    if len(set(header)) != len(header):
        dup = [h for h, k in Counter(header).items() if k > 1]
        raise InputError(source, "duplicate column(s) " + ", ".join(repr(h) for h in dup))
    return pd.DataFrame(rows, columns=header, dtype="string"), np.asarray(lines)


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def _channel_columns(df: pd.DataFrame, source: str) -> list[str]:
    by_norm = {_norm(c): c for c in df.columns}
    named = [by_norm.get(_norm(c)) for c in SENSOR_CHANNELS]
    if all(named):
        return named  # type: ignore[return-value]
    cols = list(df.columns)
    norms = [_norm(c) for c in cols]
    if "part no" in norms and "remarks" in norms:
        a, b = norms.index("part no"), norms.index("remarks")
        between = cols[a + 1:b]
        if len(between) == len(SENSOR_CHANNELS):
            return between
    missing = [c for c, n in zip(SENSOR_CHANNELS, named) if n is None]
    raise InputError(source, "missing column(s) " + ", ".join(repr(c) for c in missing)
                     + "; expected header " + ",".join(CSV_COLUMNS))


def _times(df: pd.DataFrame, n: int) -> np.ndarray:
    fallback = np.arange(n, dtype=np.float64) / SENSOR_RATE_HZ
    by_norm = {_norm(c): c for c in df.columns}
    date, time = by_norm.get("date"), by_norm.get("time")
    if time is None or n < 2:
        return fallback
    text = df[time].astype("string").str.strip()
    if date is not None:
        text = df[date].astype("string").str.strip() + " " + text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ts = pd.to_datetime(text, errors="coerce")
        except (ValueError, TypeError, OverflowError):
            return fallback
    if ts.isna().any():
        return fallback
    t = (ts - ts.iloc[0]).dt.total_seconds().to_numpy(dtype=np.float64)
    d = np.diff(t)
    # Coarse clocks (whole seconds at 8.6 Hz) give ties: the row index is then more honest.
    if (d <= 0).any() or t[-1] > 24 * 3600:
        return fallback
    return t


def read_truth(data: bytes, source: str) -> dict:
    try:
        obj = json.loads(_decode_text(data))
    except (json.JSONDecodeError, ValueError) as e:
        raise InputError(source, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InputError(source, "expected a JSON object")
    return obj


def _short(e: BaseException) -> str:
    """The library's reason, without its noise (errno numbers, BytesIO reprs)."""
    s = getattr(e, "strerror", None) or getattr(e, "error_string", None) or str(e)
    s = re.sub(r"^Error opening <[^>]*>: ", "", str(s))
    s = " ".join(s.split()) or type(e).__name__
    return s[:200]
