"""What upstream's trainer feeds each encoder, made from a decoded `Weld`, and where each token sits.

Upstream's dataset code (`bluuueheart/Weld-Anomaly-Detection`, `src/dataset.py`) is called
without frame-size or mel-bin arguments, so its defaults rule. Each quirk below is the
trained model's, kept on purpose: a model is only explained faithfully on the inputs it
was trained on.

    video   32 frames at 64×64 (OpenCV INTER_AREA), picked at round(i·(N−1)/31), padded with
            the last frame; RGB/255, no mean/std. The reader PREFERS the weld's images/ folder
            to its .avi: on the dataset's layout the "video" branch saw the 5 post-weld photos
            (padded to 32 frames), not the torch video. Only a weld without photos gives it
            the video.
    image   the first 5 photos (sorted), 224×224 INTER_AREA, RGB/255, no mean/std, padded with
            the last photo.
    audio   librosa-style mel: 64 bins, n_fft 2048, hop 512, Hann, centred (zero padding),
            power 2, Slaney mel scale and norm, power_to_db(ref=max, top_db=80); 256 frames
            (round-index pick when longer, padded with the minimum when shorter).
    sensor  the CSV's numeric columns, first 6: Part No (constant, so 0 after z-scoring),
            Pressure, CO2 Weld Flow, Feed, Primary Weld Current, Wire Consumed (Secondary
            Weld Voltage is dropped); linearly resampled over the row index to 256 steps,
            z-scored per weld (a constant channel → 0).

Everything here is numpy (+ OpenCV for INTER_AREA); no torch, no model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ....io.weld import Weld
from ....vocab import AUDIO_RATE_HZ, SENSOR_CHANNELS

# Bump when anything below changes a number: the feature cache keys on it.
PREPROCESS_VERSION = "upstream-2025-12-v1"

VIDEO_FRAMES, VIDEO_SIZE = 32, 64
NUM_PHOTOS, IMAGE_SIZE = 5, 224
N_MELS, N_FFT, HOP, AUDIO_FRAMES, TOP_DB = 64, 2048, 512, 256, 80.0
SENSOR_LEN = 256
# Upstream keeps the first 6 numeric CSV columns; on the dataset's CSV "Part No" is numeric.
SENSOR_INPUTS: tuple[str, ...] = ("Part No",) + SENSOR_CHANNELS[:5]
SENSOR_NOTE = ("sensor branch input: the CSV's first 6 numeric columns, as upstream's dataset code takes them: "
               "Part No (constant per weld, so 0 after z-scoring), " + ", ".join(SENSOR_CHANNELS[:5])
               + f"; {SENSOR_CHANNELS[5]} is not seen by the model")


def round_pick(total: int, n: int) -> list[int]:
    """Upstream's index rule: n indices round(i·(total−1)/(n−1)) (Python rounding, half to even)
    when total ≥ n, else every index then the last one repeated."""
    if total >= n:
        return [int(round(i * (total - 1) / (n - 1))) if n > 1 else 0 for i in range(n)]
    return list(range(total)) + [total - 1] * (n - total)


def area_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 → (size, size, 3) uint8 by OpenCV INTER_AREA, as upstream resizes."""
    import cv2
    return cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- video and photos

def video_input(weld: Weld) -> tuple[np.ndarray, str, list[int]]:
    """(32, 3, 64, 64) float32 in [0, 1], which input it is ("photos" | "video" | "none"), and
    for each of the 32 frames the index of the photo / kept video frame it came from."""
    if weld.images:
        source, frames = "photos", weld.images
    elif weld.video is not None and len(weld.video):
        source, frames = "video", list(weld.video)
    else:
        return np.zeros((VIDEO_FRAMES, 3, VIDEO_SIZE, VIDEO_SIZE), np.float32), "none", [0] * VIDEO_FRAMES
    small = [area_resize(f, VIDEO_SIZE) for f in frames]
    idx = round_pick(len(small), VIDEO_FRAMES)
    out = np.stack([small[i] for i in idx]).astype(np.float32) / 255.0
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), source, idx


def photo_input(weld: Weld) -> tuple[np.ndarray, list[int]]:
    """(5, 3, 224, 224) float32 in [0, 1] and the photo index of each (the last repeats)."""
    if not weld.images:
        return np.zeros((NUM_PHOTOS, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32), [0] * NUM_PHOTOS
    idx = list(range(min(len(weld.images), NUM_PHOTOS)))
    idx += [idx[-1]] * (NUM_PHOTOS - len(idx))
    out = np.stack([area_resize(weld.images[i], IMAGE_SIZE) for i in idx]).astype(np.float32) / 255.0
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), idx


# --------------------------------------------------------------------------- audio

def hz_to_mel(f) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    logstep = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, lin)


def mel_to_hz(m) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * (200.0 / 3))


def mel_edges_hz(sr: int = AUDIO_RATE_HZ, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels + 2,) Hz: lower edge, centres, upper edge of the triangular filters."""
    return mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))


def mel_filterbank(sr: int = AUDIO_RATE_HZ, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, n_fft//2+1) float32 triangular filters, Slaney-normalised (librosa.filters.mel defaults)."""
    fft_hz = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    edges = mel_edges_hz(sr, n_mels)
    fdiff = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_db(audio: np.ndarray, sr: int = AUDIO_RATE_HZ) -> np.ndarray:
    """(64, T) float32: power_to_db(melspectrogram(y), ref=max, top_db=80), T = 1 + len//512."""
    y = np.asarray(audio, dtype=np.float32)
    pad = N_FFT // 2
    y = np.pad(y, (pad, pad), mode="constant")
    n_frames = 1 + (len(y) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP][:n_frames]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)     # periodic Hann
    spec = np.fft.rfft(frames * window, axis=1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32).T          # (bins, T)
    mel = mel_filterbank(sr) @ power
    db = 10.0 * np.log10(np.maximum(1e-10, mel))             # float32 throughout, as librosa
    db -= 10.0 * np.log10(np.maximum(1e-10, mel.max()))
    return np.maximum(db, db.max() - TOP_DB).astype(np.float32)


def audio_input(weld: Weld) -> tuple[np.ndarray, int]:
    """(64, 256) float32 log-mel as upstream's dataset gives it, and how many of the 256 columns
    are real frames (the rest is padding with the minimum)."""
    if weld.audio is None or not len(weld.audio):
        return np.zeros((N_MELS, AUDIO_FRAMES), np.float32), 0
    db = mel_db(weld.audio, weld.sample_rate)
    T = db.shape[1]
    if T >= AUDIO_FRAMES:
        return np.ascontiguousarray(db[:, round_pick(T, AUDIO_FRAMES)]), AUDIO_FRAMES
    out = np.pad(db, ((0, 0), (0, AUDIO_FRAMES - T)), mode="constant", constant_values=float(db.min()))
    return out.astype(np.float32), T


def audio_column_edges(weld: Weld, real: int, duration: float) -> np.ndarray:
    """(257,) s: edges of the 256 spectrogram columns, tiling [0, duration]. A column stands for
    its frame (centred at frame·hop/sr); padding columns have zero width at the end."""
    if real == 0:
        return np.linspace(0.0, duration, AUDIO_FRAMES + 1)
    T = 1 + len(weld.audio) // HOP
    frames = np.asarray(round_pick(T, AUDIO_FRAMES)[:real] if T >= AUDIO_FRAMES else range(real), dtype=np.float64)
    centres = frames * HOP / weld.sample_rate
    inner = (centres[1:] + centres[:-1]) / 2
    edges = np.concatenate([[0.0], inner, np.full(AUDIO_FRAMES + 1 - real, duration)])
    return np.clip(edges, 0.0, duration)


# --------------------------------------------------------------------------- sensor

def sensor_matrix(weld: Weld) -> np.ndarray:
    """(rows, 6) float32: the columns upstream's reader keeps (Part No is constant per weld)."""
    df = weld.sensor
    part = np.zeros(len(df), np.float32)   # constant: any value gives 0 after the z-score
    cols = [df[c].to_numpy(np.float32) for c in SENSOR_CHANNELS[:5]]
    return np.stack([part] + cols, axis=1)


def sensor_input(weld: Weld) -> np.ndarray:
    """(256, 6) float32: resampled over the row index, z-scored per channel (std 0 → 1)."""
    if weld.sensor is None or not len(weld.sensor):
        return np.zeros((SENSOR_LEN, len(SENSOR_INPUTS)), np.float32)
    arr = sensor_matrix(weld)
    xp = np.linspace(0, 1, len(arr))
    x = np.linspace(0, 1, SENSOR_LEN)
    out = np.stack([np.interp(x, xp, arr[:, c]) for c in range(arr.shape[1])], axis=1)
    mean = out.mean(axis=0, keepdims=True)
    std = out.std(axis=0, keepdims=True)
    std[std == 0] = 1.0
    return ((out - mean) / std).astype(np.float32)


def sensor_positions(weld: Weld, duration: float) -> pd.DataFrame:
    """One row per step: t0, t1 (s), tiling [0, duration]; step j sits at row j·(rows−1)/255."""
    if weld.sensor is None or len(weld.sensor) < 2:
        edges = np.linspace(0.0, duration, SENSOR_LEN + 1)
    else:
        t = weld.sensor["t"].to_numpy(np.float64)
        t = t - t[0]
        at = np.interp(np.linspace(0, len(t) - 1, SENSOR_LEN), np.arange(len(t)), t)
        edges = np.clip(np.concatenate([[0.0], (at[1:] + at[:-1]) / 2, [duration]]), 0.0, duration)
    return pd.DataFrame({"t0": edges[:-1], "t1": edges[1:]})


def weld_duration(weld: Weld) -> float:
    d = float(weld.duration)
    return d if d > 0 else 1.0
