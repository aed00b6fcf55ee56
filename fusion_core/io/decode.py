"""Decoders: one file's bytes → arrays, from memory, bounded by `Limits`.

Video through PyAV (evenly spaced frames, downscaled), audio through soundfile (read in
blocks, each mixed to mono and resampled to 16 kHz as it comes), photos through Pillow
(EXIF-upright, downscaled, every mode to 8-bit RGB), the sensor CSV by the csv module, line
by line (the dataset's header, by name or by position). Every problem is an
`InputError(file, problem)`, and every budget of `Limits` is checked against what is read,
before allocating for it.

Times: each reader gives the span its data supports, and refuses one longer than
`Limits.max_duration_s`:

- audio: the samples actually decoded / the sample rate. The header's length may refuse
  early; a header that claims less than the file holds is read only as far as it claims.
- video: each kept frame's timestamp, from the first frame's, when the timestamps are
  finite, non-decreasing and end within 1.5 × frames / fps + 1 s; otherwise (a frame
  stamped at 86,000 s, say) the frame's index / fps. Frames are counted before decoding.
- sensor CSV: Date+Time from the first row when every row parses, times strictly increase,
  the median step is a plausible rate (0.1 Hz to 1 kHz) and the whole span is at most twice
  what the row count at that step covers, plus 1 s; otherwise (a last row 23 h after the
  first, a clock of whole seconds) the row index at 8.6 Hz.

Photos, by Pillow mode: 16-bit grayscale (I;16) maps 0..65535 onto 0..255; 32-bit integer
(I) and float (F) map their actual range (min..max) onto 0..255 (a constant photo keeps its
value, clipped); transparency (RGBA, LA, PA, P with a transparent colour) is composited on
white, as a page shows it; 1-bit and palette photos are converted before downscaling (so
they are not resized by nearest neighbour); CMYK, YCbCr and the rest go through Pillow's
conversion to RGB.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import warnings
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd

from ..errors import InputError
from ..vocab import AUDIO_RATE_HZ, CSV_COLUMNS, SENSOR_CHANNELS, SENSOR_RATE_HZ
from .limits import DEFAULT_LIMITS, Limits, seconds

# --------------------------------------------------------------------------- video


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
        n, declared, fps = _count_packets(data, source, limits)
        want = np.unique(np.linspace(0, n - 1, min(max_frames, n)).round().astype(np.int64))
        frames, pts, first_time, decoded = _decode_frames(data, source, set(want.tolist()), max_side, limits)
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, EOFError, IndexError, RuntimeError) as e:
        raise InputError(source, f"cannot decode video ({_short(e)})") from None
    if not frames:
        raise InputError(source, "no decodable video frames")
    if declared > 0 and decoded < 0.9 * declared - 1:
        raise InputError(source, f"truncated or corrupt video: {decoded} of {declared} frames decode")
    times, fps = _frame_times(want[:len(pts)], pts, first_time, n, fps)
    span = float(times[-1]) + (1.0 / fps if fps else 0.0)
    if span > limits.max_duration_s:
        raise InputError(source, f"video covers {seconds(span)}, more than the limit of {seconds(limits.max_duration_s)}")
    return np.stack(frames).astype(np.uint8, copy=False), times, float(fps)


def _count_packets(data: bytes, source: str, limits: Limits) -> tuple[int, int, float]:
    """Pass 1, no decoding: (frames counted from the packets, frames the stream declares, fps
    from the stream header or 0). Refused as soon as the count passes the frame or time budget."""
    import av
    with av.open(io.BytesIO(data), mode="r") as c:
        if not c.streams.video:
            raise InputError(source, "no video stream")
        st = c.streams.video[0]
        rate = st.average_rate or st.guessed_rate or st.base_rate
        fps = float(rate) if rate else 0.0
        _check_frame_size(st.codec_context.width or 0, st.codec_context.height or 0, source, limits)
        n = 0
        for pkt in c.demux(st):
            if pkt.size:
                n += 1
                if n > limits.max_video_frames:
                    raise InputError(source, f"more than {limits.max_video_frames} frames")
                if fps and n / fps > limits.max_duration_s:
                    raise InputError(source, f"video is longer than the limit of {seconds(limits.max_duration_s)} "
                                             f"(more than {n - 1:,} frames at {fps:g} fps)")
        declared = int(st.frames or 0)
    if n == 0:
        raise InputError(source, "no video frames")
    return n, declared, fps


def _check_frame_size(w: int, h: int, source: str, limits: Limits) -> None:
    if w * h > limits.max_image_pixels:
        raise InputError(source, f"video frames of {w}×{h} pixels, more than the limit of {limits.max_image_pixels:,}")


def _decode_frames(data: bytes, source: str, want: set[int], max_side: int, limits: Limits):
    """Pass 2: decode everything, convert only the frames in `want`.
    Returns (frames, their times, first frame's time, frames decoded)."""
    import av
    frames: list[np.ndarray] = []
    pts: list[float | None] = []
    first_time: float | None = None
    decoded = 0
    with av.open(io.BytesIO(data), mode="r") as c:
        st = c.streams.video[0]
        st.thread_type = "AUTO"
        for frame in c.decode(st):
            if first_time is None:
                first_time = frame.time
            if decoded in want:
                fw, fh = frame.width, frame.height
                if fw <= 0 or fh <= 0:
                    raise InputError(source, "video frames have no size")
                _check_frame_size(fw, fh, source, limits)
                scale = min(1.0, max_side / max(fw, fh))
                tw, th = max(1, round(fw * scale)), max(1, round(fh * scale))
                frames.append(frame.to_ndarray(format="rgb24", width=tw, height=th, interpolation="AREA"))
                pts.append(frame.time)
            decoded += 1
    return frames, pts, first_time, decoded


def _frame_times(idx: np.ndarray, pts: list, first_time: float | None, n: int,
                 fps: float) -> tuple[np.ndarray, float]:
    """(seconds of each kept frame from the first frame, fps): the timestamps when they are
    consistent with the frame count, else index / fps (see the module notes)."""
    t0 = first_time or 0.0
    if not fps and n > 1:  # no rate in the header: from the timestamps
        fps = float(n) / max(1e-9, (pts[-1] or 0.0) - t0)
    stamped = np.array([np.nan if p is None else p - t0 for p in pts], dtype=np.float64)
    nominal = idx.astype(np.float64) / fps if fps else np.zeros(len(idx))
    limit = 1.5 * n / fps + 1.0 if fps else math.inf
    ok = (np.isfinite(stamped).all() and (stamped >= 0).all() and (np.diff(stamped) >= 0).all()
          and stamped[-1] <= limit)
    return (stamped if ok else nominal), fps


# --------------------------------------------------------------------------- audio

_UNKNOWN_LENGTH = 2 ** 62   # libsndfile's frame count for a stream without a stated length


def decode_audio(data: bytes, source: str, *, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Audio bytes (FLAC/WAV, any rate, any channels) → mono float32 at 16 kHz in [-1, 1].

    Read in blocks of about 4 MB, each mixed to mono and resampled as it comes, so memory
    holds the 16 kHz result and one block. Refused over the time, sample or channel budget,
    by the header first and again by the samples actually read.
    """
    import soundfile as sf

    if not data:
        raise InputError(source, "empty file")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            _check_audio_header(int(f.frames), int(f.samplerate), int(f.channels), source, limits)
            return _read_mono(f, source, limits)
    except InputError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as e:
        raise InputError(source, f"cannot decode audio ({_short(e)})") from None


def _check_audio_header(frames: int, sr: int, channels: int, source: str, limits: Limits) -> None:
    if frames >= _UNKNOWN_LENGTH:
        raise InputError(source, "audio of unknown length (a stream without its total length); re-encode it")
    if frames <= 0:
        raise InputError(source, "no audio samples")
    if not 1000 <= sr <= 768_000:
        raise InputError(source, f"implausible sample rate {sr} Hz")
    if channels > limits.max_audio_channels:
        raise InputError(source, f"{channels} audio channels, more than the limit of {limits.max_audio_channels}")
    if frames / sr > limits.max_duration_s:
        raise InputError(source, f"audio is {seconds(frames / sr)} long, more than the limit of "
                                 f"{seconds(limits.max_duration_s)}")
    if frames * channels > limits.max_audio_samples:
        raise InputError(source, f"{frames:,} frames × {channels} channels is more than the limit of "
                                 f"{limits.max_audio_samples:,} audio samples")


def _read_mono(f, source: str, limits: Limits) -> np.ndarray:
    """Blocks → mono → 16 kHz, counting what is read against the budget as it goes."""
    sr, ch = int(f.samplerate), int(f.channels)
    rs = StreamResampler(sr, AUDIO_RATE_HZ) if sr != AUDIO_RATE_HZ else None
    block = max(4096, (1 << 20) // ch)          # ≤ 4 MB of float32 per read
    parts: list[np.ndarray] = []
    got = 0
    while True:
        x = f.read(frames=block, dtype="float32", always_2d=True)
        if not len(x):
            break
        got += len(x)
        if got / sr > limits.max_duration_s:
            raise InputError(source, f"audio decodes to more than the limit of {seconds(limits.max_duration_s)} "
                                     f"(its header said {seconds(f.frames / sr)})")
        if got * ch > limits.max_audio_samples:
            raise InputError(source, f"audio decodes to more than the limit of {limits.max_audio_samples:,} samples")
        mono = x.mean(axis=1, dtype=np.float64) if ch > 1 else x[:, 0].astype(np.float64)
        mono = np.nan_to_num(mono, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        parts.append(rs.push(mono) if rs else mono.astype(np.float32))
    if got == 0:
        raise InputError(source, "no audio samples")
    if rs:
        parts.append(rs.finish())
    return np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32, copy=False)


def resample_audio(x: np.ndarray, sr_in: int, sr_out: int, half_width: int = 16,
                   beta: float = 8.6) -> np.ndarray:
    """Band-limited resampling of a whole signal (see `StreamResampler`, which this feeds in blocks).

    Output length is round(len(x) * sr_out / sr_in); float32.
    """
    x = np.asarray(x, dtype=np.float64)
    if sr_in == sr_out or len(x) == 0:
        return x.astype(np.float32)
    rs = StreamResampler(sr_in, sr_out, half_width, beta)
    step = 1 << 20
    parts = [rs.push(x[i:i + step]) for i in range(0, len(x), step)]
    return np.concatenate(parts + [rs.finish()])


class StreamResampler:
    """Polyphase resampling by sr_out/sr_in = L/M, fed in blocks: `push` returns the output
    samples the input so far determines, `finish` the rest (the signal is zero beyond its ends).

    The filter is a Kaiser-windowed sinc (half width `half_width` zero crossings) with its
    cutoff at 95% of the lower Nyquist frequency, so downsampling (44.1 kHz → 16 kHz) does not
    alias and upsampling does not image. Its L phases are computed once (at most 4,096: a
    rate with a larger L, say 44,101 Hz, has its phases rounded to 1/4,096 of a sample). Memory
    holds one block and the filter; the output is the same however the input is split.
    """

    MAX_PHASES = 4096

    def __init__(self, sr_in: int, sr_out: int, half_width: int = 16, beta: float = 8.6):
        g = math.gcd(int(sr_in), int(sr_out))
        self.sr_in, self.sr_out = int(sr_in), int(sr_out)
        self.L, self.M = self.sr_out // g, self.sr_in // g
        cutoff = 0.95 * min(1.0, sr_out / sr_in)   # in units of the input Nyquist
        self.reach = int(np.ceil(half_width / cutoff))
        self.offs = np.arange(-self.reach + 1, self.reach + 1)
        self.P = min(self.L, self.MAX_PHASES)
        self.bank = _kaiser_bank(self.P, self.offs, cutoff, self.reach, beta)
        self.buf = np.zeros(self.reach - 1)          # input samples from index `start` on
        self.start = -(self.reach - 1)               # (zeros before the signal)
        self.n_in = 0                                # input samples pushed
        self.n_next = 0                              # next output sample

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        self.buf = np.concatenate([self.buf, x])
        self.n_in += len(x)
        last = self.start + len(self.buf) - 1 - self.reach   # the last input index an output may sit at
        ready = -(-(last + 1) * self.L // self.M) if last >= 0 else 0
        return self._emit(max(self.n_next, ready))

    def finish(self) -> np.ndarray:
        if self.n_in == 0:
            return np.zeros(0, np.float32)
        total = max(1, int(round(self.n_in * self.sr_out / self.sr_in)))
        need = ((total - 1) * self.M) // self.L + self.reach + 1   # one past the last tap used
        pad = need - (self.start + len(self.buf))
        if pad > 0:
            self.buf = np.concatenate([self.buf, np.zeros(pad)])
        return self._emit(max(self.n_next, total))

    def _emit(self, n_stop: int) -> np.ndarray:
        """Outputs n_next..n_stop-1; outputs L apart share a phase, so each phase is one
        matrix-vector product over strided windows of the buffer."""
        n_first = self.n_next
        out = np.empty(max(0, n_stop - n_first), dtype=np.float32)
        if not len(out):
            return out
        windows = np.lib.stride_tricks.sliding_window_view(self.buf, len(self.offs))
        chunk = max(64 * self.L, (1 << 22) // len(self.offs))
        for c0 in range(n_first, n_stop, chunk):
            c1 = min(n_stop, c0 + chunk)
            for n0 in range(c0, min(c1, c0 + self.L)):
                pos = n0 * self.M
                first = pos // self.L - self.reach + 1 - self.start
                count = (c1 - n0 + self.L - 1) // self.L
                rows = windows[first::self.M][:count]
                out[n0 - n_first:c1 - n_first:self.L] = rows @ self.bank[(pos % self.L) * self.P // self.L]
        self.n_next = max(self.n_next, n_stop)
        keep = (self.n_next * self.M) // self.L - self.reach + 1 - self.start
        if keep > 0:
            self.buf = self.buf[keep:]
            self.start += keep
        return out


def _kaiser_bank(phases: int, offs: np.ndarray, cutoff: float, reach: int, beta: float) -> np.ndarray:
    """(phases, taps) weights: row q for an output q/phases of an input sample past its base sample."""
    out = np.empty((phases, len(offs)))
    i0b = np.i0(beta)
    for a in range(0, phases, 256):
        d = (np.arange(a, min(phases, a + 256), dtype=np.float64) / phases)[:, None] - offs[None, :]
        u = np.clip(1.0 - (d / reach) ** 2, 0.0, None)
        out[a:a + len(d)] = cutoff * np.sinc(cutoff * d) * (np.i0(beta * np.sqrt(u)) / i0b)
    return out


# --------------------------------------------------------------------------- photos

_IMAGE_FORMATS = ("JPEG", "PNG", "MPO")
_ORIENTATION = 0x0112   # EXIF tag
_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
              6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def decode_image(data: bytes, source: str, *, max_side: int = 400,
                 limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, tuple[int, int]]:
    """Photo bytes → ((H, W, 3) uint8 RGB with longer side ≤ max_side, (width, height) as stored).

    EXIF rotation is applied (a user expects the photo upright); the size returned is the
    upright size before downscaling, so boxes given in the file's pixels can be rescaled.
    Every Pillow mode becomes 8-bit RGB over its real range (see the module notes).
    """
    from PIL import Image

    img = _open_image(data, source, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            orientation = img.getexif().get(_ORIENTATION, 1)
            w, h = img.size
            arr = _photo_rgb(img, orientation, max_side)
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, EOFError) as e:
        raise InputError(source, f"cannot decode image ({_short(e)})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise InputError(source, "image has no pixels")
    return arr, ((h, w) if orientation in (5, 6, 7, 8) else (w, h))


def image_decode_pixels(data: bytes, source: str, *, max_side: int = 400,
                        limits: Limits = DEFAULT_LIMITS) -> int:
    """Pixels `decode_image` will decode for this photo, from its header (nothing decoded):
    width × height, except that a JPEG much bigger than `max_side` decodes at 1/2 to 1/8 scale."""
    img = _open_image(data, source, limits)
    w, h = img.size
    if max(w, h) <= max_side or img.format not in ("JPEG", "MPO"):
        return w * h
    scale = min(w // (3 * max_side), h // (3 * max_side))      # what Pillow's JPEG draft picks
    r = next((k for k in (8, 4, 2) if scale >= k), 1)
    return ((w + r - 1) // r) * ((h + r - 1) // r)


def _open_image(data: bytes, source: str, limits: Limits):
    """The photo opened from its header only (nothing decoded), its format and size checked.
    Pillow's own decompression-bomb bound is set to the same pixel budget."""
    from PIL import Image

    if not data:
        raise InputError(source, "empty file")
    Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(source, f"more pixels than the limit of {limits.max_image_pixels:,} ({_short(e)})") from None
    except (OSError, ValueError, SyntaxError, TypeError, EOFError) as e:
        raise InputError(source, f"cannot decode image ({_short(e)})") from None
    if img.width * img.height > limits.max_image_pixels:
        raise InputError(source, f"{img.width}×{img.height} pixels is more than the limit of {limits.max_image_pixels}")
    if img.format not in _IMAGE_FORMATS:
        raise InputError(source, f"{img.format} image; expected JPEG or PNG")
    return img


def _photo_rgb(img, orientation: int, max_side: int) -> np.ndarray:
    """Downscaled (JPEG: reduced decoding of big photos), 8-bit RGB, upright."""
    from PIL import Image

    if img.mode == "1":                      # resize would use nearest neighbour on these
        img = img.convert("L")
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    img = image_to_rgb(img)
    if orientation in _TRANSPOSE:
        img = img.transpose(getattr(Image.Transpose, _TRANSPOSE[orientation]))
    return np.asarray(img, dtype=np.uint8).copy()


def image_to_rgb(img):
    """Any mode → RGB over its real value range (see the module notes)."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16"):
        a = np.asarray(img).astype(np.float32) / 257.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        a = np.where(np.isfinite(a), a, 0.0)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.clip(a, 0.0, 255.0)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8)).convert("RGB")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


# --------------------------------------------------------------------------- sensor CSV


def read_sensor_csv(data: bytes, source: str, *, max_rows: int | None = None,
                    limits: Limits = DEFAULT_LIMITS) -> pd.DataFrame:
    """Sensor CSV bytes → DataFrame with `t` (s from the first row) + the six channels as float.

    The channels are the six columns between `Part No` and `Remarks`: by name when the
    header has them, else by position. `t` is from Date+Time when consistent, else from the
    row index at 8.6 Hz (see the module notes). Bounded by the budget's bytes, line length,
    columns, rows (`max_rows`, when given, wins over `limits.max_rows`) and duration, each
    checked as the file is read.
    """
    if len(data) > limits.max_csv_bytes:
        raise InputError(source, f"{len(data):,} bytes, more than the limit of {limits.max_csv_bytes:,} for a sensor CSV")
    if not data or not data.strip():
        raise InputError(source, "empty file")
    text = _decode_text(data)
    df, line_of = _parse_csv(text, source, limits if max_rows is None else replace(limits, max_rows=max_rows))
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
    _check_span(t, source, limits)
    return pd.DataFrame({"t": t, **out})


def _decode_text(data: bytes) -> str:
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1", errors="replace")  # pragma: no cover (latin-1 always decodes)


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)?")


def _bounded_lines(text: str, source: str, limit: int):
    """The lines of `text`, endings kept (as the csv module wants them); a line longer than
    `limit` characters is refused before it is copied or parsed."""
    for k, m in enumerate(_LINE.finditer(text), start=1):
        if m.end() == m.start():
            return
        if m.end() - m.start() > limit:
            raise InputError(source, f"line {k}: {m.end() - m.start():,} characters, more than the limit of {limit:,}")
        yield m.group()


def _parse_csv(text: str, source: str, limits: Limits) -> tuple[pd.DataFrame, np.ndarray]:
    """Cells as text; blank rows dropped; text with commas in the last column (Remarks) kept."""
    if "\x00" in text:
        raise InputError(source, "binary data, not a CSV file")
    reader = csv.reader(_bounded_lines(text, source, limits.max_csv_line))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(source, "empty file") from None
    except csv.Error as e:
        raise InputError(source, f"not a readable CSV ({e})") from None
    if len(header) > limits.max_csv_columns:
        raise InputError(source, f"the header has {len(header):,} columns, more than the limit of {limits.max_csv_columns:,}")
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
            if len(rows) > limits.max_rows:
                raise InputError(source, f"more than {limits.max_rows} rows")
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
    """Seconds of each row from the first: Date+Time when consistent, else the row index at
    8.6 Hz (see the module notes)."""
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
    step = float(np.median(d))
    # A step of an implausible rate, or a span the rows cannot fill (a last row 23 h on): the
    # timestamps are not what the rows were sampled at.
    if not 1e-3 <= step <= 10.0 or t[-1] > 2.0 * (n - 1) * step + 1.0:
        return fallback
    return t


def _check_span(t: np.ndarray, source: str, limits: Limits) -> None:
    """The log's span as `Weld.duration` counts it (last - first + one median step) within the budget."""
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / SENSOR_RATE_HZ
    span = float(t[-1] - t[0]) + step
    if span > limits.max_duration_s:
        raise InputError(source, f"{len(t):,} rows cover {seconds(span)}, more than the limit of "
                                 f"{seconds(limits.max_duration_s)}")


# --------------------------------------------------------------------------- truth.json


def read_truth(data: bytes, source: str, *, limits: Limits = DEFAULT_LIMITS) -> dict:
    """truth.json → dict; refused: too big, not JSON, not an object, NaN or infinite numbers,
    nesting too deep to parse."""
    if len(data) > limits.max_truth_bytes:
        raise InputError(source, f"{len(data):,} bytes, more than the limit of {limits.max_truth_bytes:,} for truth.json")
    try:
        obj = json.loads(_decode_text(data), parse_constant=_no_constant, parse_float=_finite_float)
    except (json.JSONDecodeError, ValueError) as e:
        raise InputError(source, f"not valid JSON ({_short(e)})") from None
    except RecursionError:
        raise InputError(source, "not valid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise InputError(source, "expected a JSON object")
    return obj


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text[:20]} overflows a float")
    return v


def _short(e: BaseException) -> str:
    """The library's reason, without its noise (errno numbers, BytesIO reprs)."""
    s = getattr(e, "strerror", None) or getattr(e, "error_string", None) or str(e)
    s = re.sub(r"^Error opening <[^>]*>: ", "", str(s))
    s = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", s)   # Pillow's: an address differs per run
    s = " ".join(s.split()) or type(e).__name__
    return s[:200]
