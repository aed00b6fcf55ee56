"""Where each upstream token sits in the raw weld: one DataFrame row per token.

    video   t0, t1 (s), frame0, frame1, x0, y0, x1, y1, input. A tubelet of V-JEPA 2 covers
            `tubelet` of the 32 frames; `input` says what those frames are: "photos" (then
            frame0/frame1 index weld.images and the box is in the photo file's pixels) or
            "video" (weld.video and its pixels). Tubelets tile [0, duration] in equal spans.
    image   token (CLS | register k | patch), image, photos, x0, y0, x1, y1. Upstream
            averages each token over the 5 photos, so a patch token stands for the same patch
            position in all of them: `photos` says so plainly; `image` is 0 (the photo its box is
            drawn on) and the box is in that photo's pixels. CLS/register boxes are the whole photo.
    audio   token (CLS | distillation | patch), t0, t1 (s), mel0, mel1 (bins of the 64-bin mel,
            fractional), f0_hz, f1_hz. Upstream hands AST the spectrogram as (mel, time) where AST
            expects (time, mel), so AST's "frequency" rows are time: a patch row is a time span.
            CLS and distillation tokens pool the whole clip: zero-width span at 0. Padding
            columns past the audio's end have zero width at the end.
    sensor  t0, t1 (s).
Time spans of the patch / step tokens tile [0, duration] with no gap and no overlap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ....io.weld import Weld
from .preprocess import AUDIO_FRAMES, IMAGE_SIZE, N_MELS, NUM_PHOTOS, VIDEO_FRAMES, VIDEO_SIZE, mel_edges_hz


def _grid_boxes(g: int, width: float, height: float) -> dict[str, np.ndarray]:
    r, c = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    r, c = r.ravel(), c.ravel()
    xs, ys = np.linspace(0.0, width, g + 1), np.linspace(0.0, height, g + 1)
    return {"x0": xs[c], "y0": ys[r], "x1": xs[c + 1], "y1": ys[r + 1]}


def photo_size(weld: Weld, i: int) -> tuple[float, float]:
    """(width, height) of photo i in the file's pixels (decoded pixels when unknown)."""
    if i < len(weld.image_sizes):
        return float(weld.image_sizes[i][0]), float(weld.image_sizes[i][1])
    if i < len(weld.images):
        h, w = weld.images[i].shape[:2]
        return float(w), float(h)
    return float(IMAGE_SIZE), float(IMAGE_SIZE)


def video_positions(weld: Weld, source: str, idx: list[int], duration: float, tubelet: int,
                    patch: int) -> pd.DataFrame:
    n_t, g = VIDEO_FRAMES // tubelet, VIDEO_SIZE // patch
    edges = np.linspace(0.0, duration, n_t + 1)
    rows = []
    for k in range(n_t):
        f0, f1 = idx[k * tubelet], idx[k * tubelet + tubelet - 1]
        if source == "photos":
            w, h = photo_size(weld, f0)
        elif source == "video":
            h, w = (float(s) for s in weld.video.shape[1:3])
        else:
            w = h = float(VIDEO_SIZE)
        boxes = _grid_boxes(g, w, h)
        rows.append(pd.DataFrame({"t0": edges[k], "t1": edges[k + 1], "frame0": f0, "frame1": f1, **boxes,
                                  "input": source}))
    return pd.concat(rows, ignore_index=True)


def image_positions(weld: Weld, n_registers: int, patch: int) -> pd.DataFrame:
    g = IMAGE_SIZE // patch
    w, h = photo_size(weld, 0)
    n = min(len(weld.images), NUM_PHOTOS)
    said = f"all {n} photos (token averaged over them)" if n > 1 else ("photo 1" if n else "no photos")
    head = ["CLS"] + [f"register {i + 1}" for i in range(n_registers)]
    whole = {"x0": np.zeros(len(head)), "y0": np.zeros(len(head)), "x1": np.full(len(head), w),
             "y1": np.full(len(head), h)}
    top = pd.DataFrame({"token": head, **whole})
    patches = pd.DataFrame({"token": "patch", **_grid_boxes(g, w, h)})
    out = pd.concat([top, patches], ignore_index=True)
    out.insert(1, "image", 0)
    out.insert(2, "photos", said)
    return out


def audio_positions(col_edges: np.ndarray, *, num_mel_bins: int, max_length: int, stride_rows: int,
                    stride_cols: int, patch: int) -> pd.DataFrame:
    """Tokens of AST on upstream's transposed input: rows run along time (max_length resized
    frames, stride `stride_rows`), columns along mel (num_mel_bins, stride `stride_cols`)."""
    n_rows = (max_length - patch) // stride_rows + 1
    n_cols = (num_mel_bins - patch) // stride_cols + 1
    u = np.arange(n_rows + 1, dtype=np.float64) * stride_rows
    u[-1] = max_length                         # the last row reaches the end: spans tile
    t = np.interp(u * AUDIO_FRAMES / max_length, np.arange(AUDIO_FRAMES + 1), col_edges)
    m0 = np.arange(n_cols) * stride_cols * N_MELS / num_mel_bins
    m1 = (np.arange(n_cols) * stride_cols + patch) * N_MELS / num_mel_bins
    hz = mel_edges_hz()[1:-1]                  # centre of each of the 64 bands
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    r, c = r.ravel(), c.ravel()
    patches = pd.DataFrame({"token": "patch", "t0": t[r], "t1": t[r + 1], "mel0": m0[c], "mel1": m1[c],
                            "f0_hz": np.interp(m0[c], np.arange(N_MELS), hz),
                            "f1_hz": np.interp(m1[c] - 1, np.arange(N_MELS), hz)})
    head = pd.DataFrame({"token": ["CLS (whole clip)", "distillation (whole clip)"], "t0": 0.0, "t1": 0.0,
                         "mel0": 0.0, "mel1": float(N_MELS), "f0_hz": float(hz[0]), "f1_hz": float(hz[-1])})
    return pd.concat([head, patches], ignore_index=True)
