"""Synthetic welds in exactly the dataset's layout, with defects planted where we say.

`generate_weld` writes one weld folder:

    <part_no>/<part_no>.avi     MPEG-4 part 2 in AVI, 128×96, 15 fps: a bright arc moving
                                left→right along a seam over a dark plate, fresh bead behind it
    <part_no>/<part_no>.flac    16 kHz mono 16-bit: arc hiss shaped by the current, 100/50 Hz
                                mains hum, droplet-transfer ticks
    <part_no>/<part_no>.csv     8.6 Hz log with the real header: pressure, CO2 flow, wire feed,
                                current, wire consumed (monotonic), voltage; Date/Time as text
    <part_no>/images/*.jpg      5 post-weld photos, 400×180 (the real 2000×900 aspect)
    <part_no>/truth.json        what was planted, where and when

The torch travels the seam at constant speed over the weld's duration, so a time t maps to
a place along the bead: x = x0 + (x1 - x0) · t / duration, in the video and in the photos.
A defect planted in a time window therefore shows in the photos at the matching stretch of
bead, and `regions` records that box per photo.

Planted defects (class code → modalities that carry it):

    00 good               –
    02 burnthrough        sensor (current spike, voltage dip), video (flash frames), image (hole)
    03 porosity           sensor (voltage jitter, CO2 flow drop), audio (crackle bursts), image (pores)
    05 undercut           image (groove along one toe of the bead)
    07 lack of fusion     sensor (low current and wire feed)
    09 spatter            video (sparks), audio (pops)
    11 crater cracks      image (cracks radiating from the end crater; window = end of the weld)

Every random choice comes from `numpy.random.default_rng(seed)`, and the encoders run
single-threaded at fixed quality, so one seed always gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..vocab import AUDIO_RATE_HZ, CLASS_NAMES, CSV_COLUMNS, SENSOR_RATE_HZ

GENERATOR = "fusion_core.synth"

# Which modalities carry each class's defect.
PLANTED: dict[int, tuple[str, ...]] = {
    0: (),
    2: ("video", "image", "sensor"),
    3: ("image", "audio", "sensor"),
    5: ("image",),
    7: ("sensor",),
    9: ("video", "audio"),
    11: ("image",),
}
SUPPORTED_CLASSES: tuple[int, ...] = tuple(sorted(PLANTED))

VIDEO_SIZE = (128, 96)     # width, height
VIDEO_FPS = 15
VIDEO_QUALITY = 5          # MPEG-4 quantiser, fixed (2 best … 31 worst)
IMAGE_SIZE = (400, 180)    # width, height
N_IMAGES = 5
JPEG_QUALITY = 80
WINDOW_S = (0.8, 1.5)      # planted window length range
EDGE_S = 1.0               # windows stay this far from the start and end of the weld


# --------------------------------------------------------------------------- public API


def generate_weld(part_no: str, class_code: int, seed: int, out_dir: str | Path,
                  duration_s: float = 8.0, *, fps: int = VIDEO_FPS,
                  video_size: tuple[int, int] = VIDEO_SIZE,
                  image_size: tuple[int, int] = IMAGE_SIZE, n_images: int = N_IMAGES) -> Path:
    """Write one weld folder `out_dir/part_no/` and return its path.

    `part_no` must end with the two digits of `class_code` (that is how the dataset, and
    `Weld.class_code`, tell the class). Same arguments → same bytes.
    """
    class_code = int(class_code)
    if class_code not in PLANTED:
        raise ValueError(f"class {class_code} not supported; choose from {list(SUPPORTED_CLASSES)}")
    part_no = str(part_no)
    if part_no[-2:] != f"{class_code:02d}":
        raise ValueError(f"part number {part_no!r} must end with the class code {class_code:02d}")
    if duration_s < 2 * EDGE_S + WINDOW_S[1] + 0.5:
        raise ValueError(f"duration_s must be at least {2 * EDGE_S + WINDOW_S[1] + 0.5} s")
    if video_size[0] % 2 or video_size[1] % 2:
        raise ValueError("video_size must be even (yuv420p)")

    rng = np.random.default_rng(seed)
    plan = _plan(class_code, duration_s, rng)
    sensor = _sensor(plan, rng)
    video = _video(plan, fps, video_size, rng)
    audio = _audio(plan, rng)
    photos, regions = _photos(plan, image_size, n_images, rng)

    folder = Path(out_dir) / part_no
    (folder / "images").mkdir(parents=True, exist_ok=True)
    _write_avi(folder / f"{part_no}.avi", video, fps)
    _write_flac(folder / f"{part_no}.flac", audio)
    _write_csv(folder / f"{part_no}.csv", part_no, sensor, plan["start"])
    names = [f"{part_no}_{k + 1}.jpg" for k in range(n_images)]
    for name, img in zip(names, photos):
        _write_jpeg(folder / "images" / name, img)
    truth = {
        "class": class_code,
        "class_name": CLASS_NAMES[class_code],
        "part_no": part_no,
        "modalities": [m for m in ("video", "image", "audio", "sensor") if m in PLANTED[class_code]],
        "windows": [[round(a, 3), round(b, 3)] for a, b in plan["windows"]],
        "regions": regions,
        "images": names,
        "duration_s": float(duration_s),
        "seed": int(seed),
        "generator": GENERATOR,
    }
    (folder / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return folder


def generate_dataset(out_dir: str | Path, count: int, seed: int,
                     classes: list[int] | tuple[int, ...] | None = None,
                     duration_s: float = 8.0) -> list[Path]:
    """Write `count` welds under `out_dir`, classes taken in turn (balanced), deterministic in `seed`.

    Part numbers are f"{i:04d}{class:02d}" for i = 1..count; each weld gets its own seed
    drawn from `seed`, recorded in its truth.json.
    """
    classes = tuple(SUPPORTED_CLASSES if classes is None else sorted({int(c) for c in classes}))
    for c in classes:
        if c not in PLANTED:
            raise ValueError(f"class {c} not supported; choose from {list(SUPPORTED_CLASSES)}")
    if count < 1:
        raise ValueError("count must be ≥ 1")
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(int(seed)).spawn(count)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        code = classes[i % len(classes)]
        paths.append(generate_weld(f"{i + 1:04d}{code:02d}", code, seeds[i], out, duration_s))
    return paths


def cli_synth(out: str | Path, count: int, seed: int, classes: list[int] | None = None) -> list[Path]:
    """`python -m fusion_core synth --out DIR --count N --seed S` (`classes`: a subset of
    SUPPORTED_CLASSES; the CLI does not offer it yet).

    Bad arguments raise `InputError` (the CLI prints it on one line and exits 2). Prints
    one summary line and returns the weld folders.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    if not isinstance(count, (int, np.integer)) or count < 1 or count > 100_000:
        raise InputError("--count", f"must be an integer from 1 to 100000, got {count!r}")
    if classes is not None:
        bad = [c for c in classes if int(c) not in PLANTED]
        if bad or not classes:
            raise InputError("--classes", f"unsupported class code(s) {bad}; "
                                          f"choose from {list(SUPPORTED_CLASSES)}")
    paths = generate_dataset(out, int(count), int(seed), classes)
    codes = sorted({int(p.name[-2:]) for p in paths})
    print(f"wrote {len(paths)} synthetic welds to {out} (classes {', '.join(f'{c:02d}' for c in codes)}; "
          f"seed {seed})")
    return paths


def x_at(t: float | np.ndarray, duration_s: float, x0: float, x1: float):
    """Where the torch is at time t, between x0 (start) and x1 (end)."""
    return x0 + (x1 - x0) * np.clip(np.asarray(t, dtype=np.float64) / duration_s, 0.0, 1.0)


# --------------------------------------------------------------------------- plan


def _plan(code: int, duration: float, rng: np.random.Generator) -> dict:
    windows: list[tuple[float, float]] = []
    if code == 11:
        windows = [(duration - 1.2, duration - 0.2)]  # cracks sit in the end crater
    elif code != 0:
        k = int(rng.integers(1, 3))
        for _ in range(100):
            lens = rng.uniform(*WINDOW_S, size=k)
            starts = np.sort(rng.uniform(EDGE_S, duration - EDGE_S - lens.max(), size=k))
            ws = [(float(s), float(s + l)) for s, l in zip(starts, lens)]
            if all(b[0] - a[1] >= 0.5 for a, b in zip(ws, ws[1:])):
                windows = ws
                break
        else:  # pragma: no cover (a short weld with two windows that never fit)
            l = float(rng.uniform(*WINDOW_S))
            windows = [(duration / 2 - l / 2, duration / 2 + l / 2)]
    day = datetime(2024, 1, 8) + timedelta(days=int(rng.integers(0, 300)),
                                           seconds=int(rng.integers(7 * 3600, 17 * 3600)),
                                           milliseconds=int(rng.integers(0, 1000)))
    return {"code": code, "duration": duration, "windows": windows,
            "modalities": PLANTED[code], "start": day}


def _in_windows(t: np.ndarray, windows, soft: float = 0.0) -> np.ndarray:
    """1 inside any window, 0 outside; `soft` seconds of linear edge inside the window."""
    m = np.zeros_like(t, dtype=np.float64)
    for a, b in windows:
        if soft > 0:
            v = np.clip(np.minimum(t - a, b - t) / soft, 0.0, 1.0)
        else:
            v = ((t >= a) & (t <= b)).astype(np.float64)
        m = np.maximum(m, v)
    return m


def _envelope(t: np.ndarray, duration: float, ramp: float = 0.3) -> np.ndarray:
    """Arc on: ramps up over the first `ramp` s, down over the last."""
    return np.clip(np.minimum(t / ramp, (duration - t) / ramp), 0.0, 1.0)


# --------------------------------------------------------------------------- sensor


def _sensor(plan: dict, rng: np.random.Generator) -> dict:
    D, code, W = plan["duration"], plan["code"], plan["windows"]
    n = int(round(D * SENSOR_RATE_HZ))
    t = np.arange(n) / SENSOR_RATE_HZ
    env = _envelope(t, D, ramp=0.3)
    win = _in_windows(t, W)
    i0 = rng.uniform(185, 215)
    v0 = rng.uniform(22.5, 25.5)
    f0 = rng.uniform(7600, 8400)
    current = i0 + 6 * np.sin(2 * np.pi * t / rng.uniform(1.4, 2.2) + rng.uniform(0, 6.3)) \
        + rng.normal(0, 2.5, n)
    voltage = v0 + 0.3 * np.sin(2 * np.pi * t / rng.uniform(2.5, 4.0) + rng.uniform(0, 6.3)) \
        + rng.normal(0, 0.12, n)
    feed = f0 + rng.normal(0, 15, n)
    co2 = rng.uniform(14.5, 15.5) + rng.normal(0, 0.15, n)
    pressure = rng.uniform(4.3, 4.7) + rng.normal(0, 0.01, n)
    if code == 2:    # burnthrough: too much heat — current spike, arc shortens (voltage dip)
        current += win * rng.uniform(70, 90)
        voltage -= win * rng.uniform(4.5, 6.0)
    elif code == 3:  # porosity: shielding gas lost — flow drops, arc voltage turns erratic
        co2 -= win * rng.uniform(8.0, 10.0)
        voltage += win * rng.normal(0, 2.2, n)
    elif code == 7:  # lack of fusion: cold — low current and wire feed
        current -= win * rng.uniform(60, 75)
        feed -= win * rng.uniform(1800, 2200)
        voltage += win * rng.uniform(0.8, 1.2)
    current = np.maximum(current * env, 0.0)
    voltage = np.maximum(voltage * np.minimum(1.0, 0.4 + env), 0.0)
    feed = np.maximum(feed * env, 0.0)
    consumed = np.cumsum(feed / 60.0 / SENSOR_RATE_HZ)  # mm: integral of mm/min
    return {
        "t": t,
        "Pressure": np.round(pressure, 2),
        "CO2 Weld Flow": np.round(np.maximum(co2, 0.0), 1),
        "Feed": np.round(feed, 0),
        "Primary Weld Current": np.round(current, 1),
        "Wire Consumed": np.round(consumed, 1),
        "Secondary Weld Voltage": np.round(voltage, 2),
    }


def _write_csv(path: Path, part_no: str, s: dict, start: datetime) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    fmt = {"Pressure": "{:.2f}", "CO2 Weld Flow": "{:.1f}", "Feed": "{:.0f}",
           "Primary Weld Current": "{:.1f}", "Wire Consumed": "{:.1f}",
           "Secondary Weld Voltage": "{:.2f}"}
    for k, t in enumerate(s["t"]):
        ts = start + timedelta(milliseconds=int(round(t * 1000)))
        w.writerow([ts.strftime("%Y-%m-%d"), ts.strftime("%H:%M:%S.") + f"{ts.microsecond // 1000:03d}",
                    part_no, *(fmt[c].format(s[c][k]) for c in CSV_COLUMNS[3:9]), ""])
    path.write_bytes(buf.getvalue().encode("utf-8"))


# --------------------------------------------------------------------------- video


def _smooth_noise(shape: tuple[int, int], rng: np.random.Generator, kx: int, ky: int) -> np.ndarray:
    """Gaussian noise box-blurred kx wide and ky tall (brushed-metal streaks when kx ≫ ky)."""
    z = rng.normal(0, 1, shape)
    for axis, k in ((1, kx), (0, ky)):
        if k > 1:
            pad = [(0, 0), (0, 0)]
            pad[axis] = (k // 2, k - 1 - k // 2)
            zp = np.pad(z, pad, mode="wrap")
            c = np.cumsum(zp, axis=axis)
            c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
            z = (np.take(c, np.arange(k, c.shape[axis]), axis=axis)
                 - np.take(c, np.arange(0, c.shape[axis] - k), axis=axis)) / k
    return z / (z.std() + 1e-9)


def _video(plan: dict, fps: int, size: tuple[int, int],
           rng: np.random.Generator) -> np.ndarray:
    D, code, W = plan["duration"], plan["code"], plan["windows"]
    w, h = size
    nf = int(round(D * fps))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    seam_y = h * 0.55 + rng.uniform(-3, 3)
    x0, x1 = 0.1 * w, 0.9 * w
    plate = 0.11 + 0.02 * _smooth_noise((h, w), rng, 9, 1).astype(np.float32)
    plate -= 0.05 * np.exp(-((yy - seam_y) / 0.9) ** 2)            # the joint line
    base = np.repeat(plate[..., None], 3, axis=2) * np.array([1.0, 1.0, 1.05], np.float32)
    bead_prof = np.exp(-((yy - seam_y) / 2.2) ** 2)                   # bead cross-section
    # Arc brightness flickers on its own; it is deliberately not tied to the logged current,
    # so a sensor-only defect (lack of fusion) leaves no trace in the video.
    flicker = 1.0 + 0.08 * np.sin(2 * np.pi * np.arange(nf) / fps / rng.uniform(0.7, 1.3))
    frames = np.empty((nf, h, w, 3), np.uint8)
    warm = np.array([1.0, 0.55, 0.15], np.float32)
    white = np.array([1.0, 0.97, 0.9], np.float32)
    for i in range(nf):
        t = i / fps
        on = float(_envelope(np.array([t]), D, 0.3)[0])
        xa = float(x_at(t, D, x0, x1))
        img = base.copy()
        # Fresh bead from the start to the arc; glowing orange near the arc, grey further back.
        behind = np.clip((xa - xx) / 1.0, 0, 1) * (xx >= x0 - 2)
        age = np.maximum(xa - xx, 0.0)
        img += (bead_prof * behind)[..., None] * 0.18
        img += (bead_prof * behind * np.exp(-age / 10.0))[..., None] * warm * 0.8
        # The arc: a saturated core and a warm halo; brightness follows the current.
        r2 = (xx - xa) ** 2 + (yy - seam_y + 1.5) ** 2
        level = on * flicker[i] * rng.uniform(0.9, 1.1)
        img += (np.exp(-r2 / (2 * 3.2 ** 2)) * 1.8 * level)[..., None] * white
        img += (np.exp(-r2 / (2 * 14.0 ** 2)) * 0.35 * level)[..., None] * warm
        n_sparks = rng.poisson(0.6) if on > 0.5 else 0
        if code == 2 and _in_windows(np.array([t]), W)[0] > 0:
            # burnthrough: the arc breaks through; the whole view flashes
            flash = rng.uniform(0.8, 1.1)
            img += (np.exp(-r2 / (2 * 30.0 ** 2)) * 1.6 * flash)[..., None] * white
            img += 0.25 * flash
        if code == 9 and _in_windows(np.array([t]), W)[0] > 0:
            n_sparks += int(rng.integers(18, 30))
        if n_sparks:
            _draw_sparks(img, xa, seam_y, n_sparks, rng)
        img += rng.normal(0, 0.006, img.shape).astype(np.float32)
        frames[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames


def _draw_sparks(img: np.ndarray, xa: float, ya: float, n: int, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    col = np.array([1.0, 0.9, 0.55], np.float32) * 1.5
    ang = rng.uniform(np.pi * 0.05, np.pi * 0.95, n) * -1.0       # mostly upwards and sideways
    ang = np.where(rng.random(n) < 0.25, -ang, ang)
    dist = rng.uniform(5, 34, n)
    ln = rng.uniform(2, 5, n)
    for a, d, l in zip(ang, dist, ln):
        for s in np.linspace(0, l, 4):
            x = int(round(xa + np.cos(a) * (d + s)))
            y = int(round(ya + np.sin(a) * (d + s)))
            if 0 <= x < w - 1 and 0 <= y < h - 1:
                img[y:y + 2, x:x + 2] += col


def _write_avi(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    n, h, w, _ = frames.shape
    with av.open(str(path), mode="w", format="avi") as c:
        st = c.add_stream("mpeg4", rate=fps,
                          options={"qmin": str(VIDEO_QUALITY), "qmax": str(VIDEO_QUALITY)})
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.codec_context.thread_count = 1  # determinism
        st.codec_context.gop_size = fps
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


# --------------------------------------------------------------------------- audio


def _shaped_noise(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Arc hiss: broadband noise, bandpassed 150 Hz–6 kHz with a gentle 1/√f tilt."""
    spec = np.fft.rfft(rng.normal(0, 1, n))
    f = np.fft.rfftfreq(n, 1 / sr)
    shape = (1 / np.sqrt(np.maximum(f, 150.0) / 150.0)) * (1 / (1 + (f / 6000.0) ** 4))
    shape *= 1 - np.exp(-(f / 150.0) ** 2)
    x = np.fft.irfft(spec * shape, n)
    return x / (x.std() + 1e-12)


def _add_events(y: np.ndarray, times: np.ndarray, kernel_fn, rng: np.random.Generator,
                sr: int) -> None:
    for t in times:
        k = kernel_fn(rng)
        i = int(t * sr)
        j = min(len(y), i + len(k))
        if 0 <= i < len(y):
            y[i:j] += k[: j - i]


def _audio(plan: dict, rng: np.random.Generator) -> np.ndarray:
    D, code, W = plan["duration"], plan["code"], plan["windows"]
    sr = AUDIO_RATE_HZ
    n = int(round(D * sr))
    t = np.arange(n) / sr
    env = _envelope(t, D, 0.15)
    # Hiss loudness wanders slowly on its own (not with the logged current, so that sensor
    # defects stay out of the audio and the truth's modality list stays honest).
    wander = 1.0 + 0.1 * np.sin(2 * np.pi * t / rng.uniform(1.5, 3.0) + rng.uniform(0, 6.3))
    hiss = _shaped_noise(n, rng, sr) * 0.05 * env * wander
    phase = rng.uniform(0, 2 * np.pi, 3)
    hum = (0.020 * np.sin(2 * np.pi * 100 * t + phase[0]) + 0.010 * np.sin(2 * np.pi * 50 * t + phase[1])
           + 0.006 * np.sin(2 * np.pi * 300 * t + phase[2]))
    y = hiss + hum * (0.3 + 0.7 * env)

    def tick(r):  # short-circuit droplet transfer: a tiny, quickly damped click
        m = int(r.integers(10, 24))
        return r.normal(0, 1, m) * np.exp(-np.arange(m) / 5.0) * r.uniform(0.03, 0.06)
    ticks = np.cumsum(rng.uniform(1 / 110, 1 / 60, int(D * 110)))
    ticks = ticks[(ticks < D - 0.15) & (ticks > 0.15)]
    _add_events(y, ticks, tick, rng, sr)

    if code == 3:  # porosity: gas pockets bursting — dense, loud crackle in bursts
        def crackle(r):
            m = int(r.integers(20, 60))
            return r.normal(0, 1, m) * np.exp(-np.arange(m) / 12.0) * r.uniform(0.15, 0.3)
        for a, b in W:  # events end inside the window: nothing leaks past it
            times = np.sort(rng.uniform(a, b - 0.005, int((b - a) * 320)))
            _add_events(y, times, crackle, rng, sr)
    if code == 9:  # spatter: droplets ejected — sparse, loud pops with a short metallic ring
        def pop(r):
            m = int(0.015 * sr)
            k = np.arange(m)
            f = r.uniform(1500, 3500)
            ring = np.sin(2 * np.pi * f * k / sr) * np.exp(-k / (0.003 * sr))
            ring[:8] += r.normal(0, 1.5, 8)
            return ring * r.uniform(0.35, 0.6)
        for a, b in W:
            times = np.sort(rng.uniform(a, b - 0.016, int((b - a) * 28)))
            _add_events(y, times, pop, rng, sr)
    return np.clip(y, -0.99, 0.99).astype(np.float32)


def _write_flac(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    sf.write(str(path), audio, AUDIO_RATE_HZ, subtype="PCM_16", format="FLAC")


# --------------------------------------------------------------------------- photos


@dataclass(frozen=True)
class _Canvas:
    """The photo canvas (a bit larger than a shot): pixel grids and the bead's geometry."""

    xx: np.ndarray
    yy: np.ndarray
    yc: float            # the seam's row
    bx0: float           # bead start and end
    bx1: float
    hw: float            # bead half width
    duration: float

    def x(self, t: float) -> float:
        """Where along the bead the torch was at time t."""
        return float(x_at(t, self.duration, self.bx0, self.bx1))


_DARK = np.array([0.06, 0.05, 0.05], np.float32)   # holes, pores, grooves, cracks


def _darken(img: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """`img` blended towards the dark of a defect by `alpha` (0…1 per pixel)."""
    return img * (1 - alpha[..., None]) + alpha[..., None] * _DARK


def _photos(plan: dict, size: tuple[int, int], n_images: int,
            rng: np.random.Generator) -> tuple[list[np.ndarray], list[dict]]:
    """Post-weld photos of the plate; each a slightly different shot of the same bead."""
    pad = 16
    cv, img = _plate(plan["duration"], size, pad, rng)
    img = _bead(img, cv)
    defect = _PHOTO_DEFECTS.get(plan["code"])
    boxes: list[tuple[float, float, float, float]] = []  # canvas coordinates
    if defect is not None:
        img = defect(img, cv, plan["windows"], boxes, rng)
    return _shots(img, size, pad, n_images, boxes, rng)


def _plate(duration: float, size: tuple[int, int], pad: int, rng: np.random.Generator) -> tuple[_Canvas, np.ndarray]:
    """The canvas and the bare plate: brushed steel, heat tint around the bead."""
    w, h = size
    cw, ch = w + 2 * pad, h + 2 * pad
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    yc = ch / 2 + rng.uniform(-4, 4)
    # bead start and end in the canvas; half width 9 px at 180 high
    cv = _Canvas(xx, yy, yc, pad + 0.06 * w, pad + 0.94 * w, 0.05 * h, duration)
    bx0, bx1, hw = cv.bx0, cv.bx1, cv.hw
    steel = 0.56 + 0.05 * _smooth_noise((ch, cw), rng, 41, 1) + 0.015 * _smooth_noise((ch, cw), rng, 3, 3)
    img = np.repeat(steel[..., None], 3, axis=2).astype(np.float32)
    along = ((xx > bx0 - 6) & (xx < bx1 + 6)).astype(np.float32)
    d = np.abs(yy - yc)
    straw = np.exp(-((d - hw - 6) / 6.0) ** 2) * along
    blue = np.exp(-((d - hw - 16) / 7.0) ** 2) * along
    img += straw[..., None] * np.array([0.07, 0.02, -0.07], np.float32)
    img += blue[..., None] * np.array([-0.06, -0.04, 0.05], np.float32)
    return cv, img


def _bead(img: np.ndarray, cv: _Canvas) -> np.ndarray:
    """The bead: convex, with ripples (chevrons pointing along the travel direction), and the
    end crater, a shallow dish at the end of the bead."""
    xx, yy, yc, bx0, bx1, hw = cv.xx, cv.yy, cv.yc, cv.bx0, cv.bx1, cv.hw
    d = np.abs(yy - yc)
    u = np.clip(1 - (d / hw) ** 2, 0, None)
    inside = (u > 0) & (xx >= bx0) & (xx <= bx1)
    ends = (((xx - bx0) ** 2 + (yy - yc) ** 2) < hw ** 2) | (((xx - bx1) ** 2 + (yy - yc) ** 2) < hw ** 2)
    bead = (inside | ends).astype(np.float32) * np.clip(u, 0.15, 1)
    ripple = 0.06 * np.cos(2 * np.pi * (xx + 0.08 * (yy - yc) ** 2) / 5.0)
    shade = 0.42 + 0.30 * u ** 3 + ripple * u
    img = img * (1 - bead[..., None]) + (shade * bead)[..., None] * np.array([1.0, 0.98, 0.95], np.float32)
    crater = np.exp(-(((xx - (bx1 - hw * 0.4)) ** 2 + (yy - yc) ** 2) / (2 * (hw * 0.6) ** 2)))
    img -= 0.12 * crater[..., None]
    return img


def _hole(img: np.ndarray, cv: _Canvas, windows, boxes: list, rng: np.random.Generator) -> np.ndarray:
    """Burnthrough: a hole through the plate at the middle of each window."""
    xx, yy, yc = cv.xx, cv.yy, cv.yc
    for a, b in windows:
        cx, rx, ry = cv.x((a + b) / 2), rng.uniform(9, 12), rng.uniform(7, 9)
        ang = np.arctan2(yy - yc, xx - cx)
        rr = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - yc) / ry) ** 2)
        ragged = 1 + 0.12 * np.sin(5 * ang + rng.uniform(0, 6)) + 0.08 * np.sin(9 * ang)
        hole = np.clip((ragged - rr) * 4, 0, 1)
        rim = np.exp(-((rr - ragged - 0.25) / 0.18) ** 2) * 0.5
        img = _darken(img, hole)
        img -= (rim * 0.25)[..., None]
        boxes.append((cx - rx * 1.5, yc - ry * 1.5, cx + rx * 1.5, yc + ry * 1.5))
    return img


def _pores(img: np.ndarray, cv: _Canvas, windows, boxes: list, rng: np.random.Generator) -> np.ndarray:
    """Porosity: pores across the bead within each window."""
    xx, yy, yc, hw = cv.xx, cv.yy, cv.yc, cv.hw
    for a, b in windows:
        xa, xb = cv.x(a), cv.x(b)
        for _ in range(int(rng.integers(7, 13))):
            px, py = rng.uniform(xa + 2, xb - 2), yc + rng.uniform(-0.6, 0.6) * hw
            r = rng.uniform(2.5, 4.0)
            rr = np.sqrt((xx - px) ** 2 + (yy - py) ** 2) / r
            pore = np.clip((1 - rr) * 3, 0, 1)
            lit = np.exp(-((rr - 1.1) / 0.25) ** 2) * np.clip((py - yy) / r, 0, 1) * 0.25
            img = _darken(img, pore)
            img += lit[..., None]
        boxes.append((xa - 1, yc - hw - 3, xb + 1, yc + hw + 3))
    return img


def _undercut(img: np.ndarray, cv: _Canvas, windows, boxes: list, rng: np.random.Generator) -> np.ndarray:
    """Undercut: a dark groove melted into the plate along one toe."""
    xx, yy, yc, hw = cv.xx, cv.yy, cv.yc, cv.hw
    side = 1 if rng.random() < 0.5 else -1
    for a, b in windows:
        xa, xb = cv.x(a), cv.x(b)
        gy = yc + side * (hw + 1.5)
        taper = np.clip(np.minimum(xx - xa, xb - xx) / 4.0, 0, 1)
        groove = np.exp(-((yy - gy) / 1.6) ** 2) * taper
        img = _darken(img, 0.85 * groove)
        edge = np.exp(-((yy - gy - side * 2.5) / 0.9) ** 2) * taper * 0.18
        img += edge[..., None]
        boxes.append((xa, gy - 5, xb, gy + 5))
    return img


def _cracks(img: np.ndarray, cv: _Canvas, windows, boxes: list, rng: np.random.Generator) -> np.ndarray:
    """Crater cracks: jagged lines radiating from the end crater (the window is the weld's end)."""
    xx, yy = cv.xx, cv.yy
    cx, cy = cv.bx1 - cv.hw * 0.4, cv.yc
    crack = np.zeros(xx.shape, np.float32)
    angles = [0.0] + list(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 6))))
    ext = 0.0
    for ang in angles:
        L = rng.uniform(10, 18)
        pts = [(cx, cy)]
        for s in range(1, 5):
            jitter = rng.uniform(-0.5, 0.5)
            pts.append((cx + np.cos(ang + jitter * 0.6) * L * s / 4,
                        cy + np.sin(ang + jitter * 0.6) * L * s / 4))
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            crack = np.maximum(crack, _segment(xx, yy, ax, ay, bx, by, 0.9))
        ext = max(ext, L)
    img = _darken(img, crack)
    boxes.append((cx - ext - 2, cy - ext - 2, cx + ext + 2, cy + ext + 2))
    return img


# Class code → what it leaves in the photos (codes not listed leave nothing).
_PHOTO_DEFECTS = {2: _hole, 3: _pores, 5: _undercut, 11: _cracks}


def _shots(img: np.ndarray, size: tuple[int, int], pad: int, n_images: int, boxes: list,
           rng: np.random.Generator) -> tuple[list[np.ndarray], list[dict]]:
    """`n_images` shots of the canvas, each shifted, exposed and tinted a little differently,
    and the defect boxes as they fall in each shot (`regions` of truth.json)."""
    w, h = size
    photos, regions = [], []
    for k in range(n_images):
        dx, dy = int(rng.integers(-pad + 2, pad - 1)), int(rng.integers(-pad + 4, pad - 3))
        gain = rng.uniform(0.85, 1.12)
        tint = np.array([rng.uniform(0.97, 1.03), 1.0, rng.uniform(0.96, 1.04)], np.float32)
        shot = img[pad + dy: pad + dy + h, pad + dx: pad + dx + w] * gain * tint
        shot = shot + rng.normal(0, 0.012, shot.shape).astype(np.float32)
        photos.append(np.clip(shot * 255 + 0.5, 0, 255).astype(np.uint8))
        for (a, b, c, e) in boxes:
            ox, oy = pad + dx, pad + dy
            x0, y0 = max(0, int(np.floor(a - ox))), max(0, int(np.floor(b - oy)))
            x1, y1 = min(w, int(np.ceil(c - ox))), min(h, int(np.ceil(e - oy)))
            if x1 > x0 and y1 > y0:
                regions.append({"image": k, "x0": x0, "y0": y0, "x1": x1, "y1": y1})
    return photos, regions


def _segment(xx, yy, ax, ay, bx, by, width) -> np.ndarray:
    vx, vy = bx - ax, by - ay
    L2 = vx * vx + vy * vy + 1e-9
    s = np.clip(((xx - ax) * vx + (yy - ay) * vy) / L2, 0, 1)
    dist = np.hypot(xx - (ax + s * vx), yy - (ay + s * vy))
    return np.clip(1.5 - dist / width, 0, 1)


def _write_jpeg(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(img, "RGB").save(path, format="JPEG", quality=JPEG_QUALITY)


__all__ = ["PLANTED", "SUPPORTED_CLASSES", "GENERATOR", "generate_weld", "generate_dataset",
           "cli_synth", "x_at"]
