"""Light built-in encoders: a decoded `Weld` → four token sequences, each token tied to the raw data.

    sensor  resample to `sensor_len` time bins (mean/min/max per channel) → MLP + sinusoidal
            position → small TransformerEncoder (local: each bin sees ±sensor_context bins)
    audio   log-mel (torch STFT, numpy mel filterbank) → `audio_len` time bins of
            `audio_frames_per_token` mel frames each → MLP + sinusoidal position
    video   `video_segments` time bins; per bin the mean and max of its frames, resized to
            video_size → conv patch stem (video_patch px) → + time and patch embeddings
    image   up to `max_images` photos resized to image_size, as mean and min (dark marks)
            per cell → conv patch stem (ViT-style) + patch and image-index embeddings

Encoders are deliberately local (a token sees only its own bin or patch; the sensor's
transformer layer only its neighbours), so attention over tokens reads as attention over
moments and regions. Sensor and audio normalisation lives in the config (fitted by
training) and is applied in the modules, so `preprocess` does not depend on it.

Time-based tokens tile [0, weld.duration] without gaps, so a heatmap cell points at a
moment of the weld. Positions (one DataFrame row per token):
    sensor, audio  t0, t1 (s)
    video          t0, t1, frame0, frame1 (first and last index into weld.video, inclusive;
                   a bin no frame starts in borrows the nearest frame), x0, y0, x1, y1
                   (patch box in weld.video's pixel coordinates)
    image          image (index into weld.images), x0, y0, x1, y1 (patch box in the photo
                   file's pixels, weld.image_sizes, like truth.json regions; decoded pixels
                   when the size as stored is unknown)
Token order: video (time bin, patch row, patch col); image (photo, patch row, patch col).

`preprocess(weld, config)` is pure numpy/torch without gradients and deterministic, so a
batch pipeline can run it in worker processes; every sequence length is fixed by the config.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ...io.features import FeatureBatch
from ...io.weld import Weld
from ...vocab import AUDIO_RATE_HZ, MODALITIES, SENSOR_CHANNELS

# Rough scales of a weld log, used until training fits them (EncoderConfig.fit_normalisation).
_SENSOR_MEAN = [2.0, 15.0, 6000.0, 200.0, 200.0, 22.0]
_SENSOR_STD = [0.5, 3.0, 1500.0, 50.0, 150.0, 4.0]


@dataclass
class EncoderConfig:
    """Sizes and preprocessing of the built-in encoders. JSON-serialisable (to_dict/from_dict)."""

    video_dim: int = 64
    image_dim: int = 64
    audio_dim: int = 64
    sensor_dim: int = 64
    # sensor: time bins over the weld, per channel mean/min/max of the samples in a bin
    sensor_len: int = 64
    sensor_layers: int = 1
    sensor_heads: int = 4
    sensor_context: int = 2    # the transformer's self-attention reaches ±this many bins (-1: all)
    sensor_mean: list = field(default_factory=lambda: list(_SENSOR_MEAN))
    sensor_std: list = field(default_factory=lambda: list(_SENSOR_STD))
    # audio: log-mel at 16 kHz, pooled (in power) to audio_len * audio_frames_per_token frames
    sample_rate: int = AUDIO_RATE_HZ
    n_fft: int = 512
    hop: int = 160
    n_mels: int = 32
    fmin: float = 20.0
    fmax: float = 8000.0
    audio_len: int = 64
    audio_frames_per_token: int = 4
    audio_mean: list = field(default_factory=lambda: [-6.0] * 32)
    audio_std: list = field(default_factory=lambda: [2.0] * 32)
    # video: time bins; per bin mean and max frame, resized to (H, W), patches of video_patch px
    video_segments: int = 16
    video_size: list = field(default_factory=lambda: [48, 64])
    video_patch: int = 16
    # photos: first max_images (sorted by name by the reader), resized to (H, W)
    max_images: int = 5
    image_size: list = field(default_factory=lambda: [64, 144])
    image_patch: int = 16
    dropout: float = 0.1

    def __post_init__(self):
        for name in ("video_size", "image_size", "sensor_mean", "sensor_std", "audio_mean", "audio_std"):
            setattr(self, name, [float(v) if "mean" in name or "std" in name else int(v)
                                 for v in getattr(self, name)])
        if len(self.audio_mean) != self.n_mels or len(self.audio_std) != self.n_mels:
            raise ValueError("audio_mean/audio_std need one value per mel band")
        if len(self.sensor_mean) != len(SENSOR_CHANNELS) or len(self.sensor_std) != len(SENSOR_CHANNELS):
            raise ValueError("sensor_mean/sensor_std need one value per sensor channel")
        for name, size, p in (("video", self.video_size, self.video_patch),
                              ("image", self.image_size, self.image_patch)):
            if size[0] % p or size[1] % p or p % 4:
                raise ValueError(f"{name}_size {size} must be a multiple of {name}_patch {p} (itself a multiple of 4)")

    # sequence lengths, fixed by the config
    @property
    def video_grid(self) -> tuple[int, int]:
        return self.video_size[0] // self.video_patch, self.video_size[1] // self.video_patch

    @property
    def image_grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.image_patch, self.image_size[1] // self.image_patch

    def seq_len(self, m: str) -> int:
        if m == "video":
            gh, gw = self.video_grid
            return self.video_segments * gh * gw
        if m == "image":
            gh, gw = self.image_grid
            return self.max_images * gh * gw
        if m == "audio":
            return self.audio_len
        if m == "sensor":
            return self.sensor_len
        raise KeyError(m)

    def dim(self, m: str) -> int:
        return int(getattr(self, f"{m}_dim"))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        if d and "sensor_context" not in d:
            d["sensor_context"] = -1  # configs written before local sensor attention: global
        return cls(**d)

    def fit_normalisation(self, items: list[dict]) -> "EncoderConfig":
        """A copy whose sensor/audio normalisation is fitted to these `preprocess` results."""
        C = len(SENSOR_CHANNELS)
        sens = [it["inputs"]["sensor"][:, :C] for it in items if it["masks"]["sensor"].any()]
        mels = [it["inputs"]["audio"].reshape(-1, self.n_mels) for it in items if it["masks"]["audio"].any()]
        d = self.to_dict()
        if sens:
            s = np.concatenate(sens).astype(np.float64)
            d["sensor_mean"] = [round(float(v), 4) for v in s.mean(0)]
            d["sensor_std"] = [round(float(max(v, 1e-3)), 4) for v in s.std(0)]
        if mels:
            a = np.concatenate(mels).astype(np.float64)
            d["audio_mean"] = [round(float(v), 4) for v in a.mean(0)]
            d["audio_std"] = [round(float(max(v, 1e-2)), 4) for v in a.std(0)]
        return EncoderConfig.from_dict(d)


# ---------------------------------------------------------------- preprocessing (no grad)

def _tiles(duration: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n equal spans tiling [0, duration]; t1[i] == t0[i+1] exactly."""
    edges = np.linspace(0.0, duration, n + 1)
    return edges[:-1].copy(), edges[1:].copy()


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular HTK-mel filters, Slaney-normalised (no torchaudio here)."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)

    fmax = min(fmax, sample_rate / 2)
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    pts = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = np.clip(np.minimum(up, down), 0.0, None)
    fb *= (2.0 / (hi - lo))  # equal area per filter
    return fb.astype(np.float32)


_MEL_CACHE: dict[tuple, torch.Tensor] = {}


def _mel_power(audio: np.ndarray, cfg: EncoderConfig) -> torch.Tensor:
    """(n_mels, frames) mel power of a mono 16 kHz signal; frames centred, hop cfg.hop."""
    key = (cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torch.from_numpy(mel_filterbank(*key))
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if x.numel() < cfg.n_fft:
        x = F.pad(x, (0, cfg.n_fft - x.numel()))
    spec = torch.stft(x, cfg.n_fft, hop_length=cfg.hop, window=torch.hann_window(cfg.n_fft),
                      center=True, pad_mode="constant", return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2
    return _MEL_CACHE[key] @ power


def _resize(x: np.ndarray, size: list[int]) -> np.ndarray:
    """(N, H, W, C) float → (N, C, h, w) float32, antialiased bilinear."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
    return F.interpolate(t, size=tuple(size), mode="bilinear", antialias=True, align_corners=False).numpy()


def _min_pool(x: np.ndarray, size: list[int]) -> np.ndarray:
    """(N, H, W, C) → (N, C, h, w) float32: darkest pixel of each output cell.

    Thin dark marks (cracks, grooves, pores) vanish in an average over a cell; its minimum keeps them.
    """
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
    return (-F.adaptive_max_pool2d(-t, tuple(size))).numpy()


def _boxes(gh: int, gw: int, height: int, width: int) -> dict[str, np.ndarray]:
    """Patch boxes (row-major over the grid) in original pixel coordinates."""
    ys = np.linspace(0.0, height, gh + 1)
    xs = np.linspace(0.0, width, gw + 1)
    r, c = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    r, c = r.ravel(), c.ravel()
    return {"x0": xs[c], "y0": ys[r], "x1": xs[c + 1], "y1": ys[r + 1]}


def _sensor_tokens(weld: Weld, cfg: EncoderConfig, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """(L, 3*channels): mean, min, max of each channel over each time bin, in the log's units."""
    df = weld.sensor
    t = df["t"].to_numpy(np.float64)
    t = t - t[0]
    v = df[list(SENSOR_CHANNELS)].to_numpy(np.float64)
    L, C = len(t0), v.shape[1]
    out = np.empty((L, 3 * C), dtype=np.float64)
    # bin of each sample by its time; empty bins fall back to interpolation at the bin centre
    idx = np.clip(np.searchsorted(t1, t, side="right"), 0, L - 1)
    centres = (t0 + t1) / 2
    interp = np.stack([np.interp(centres, t, v[:, c]) for c in range(C)], axis=1)
    for i in range(L):
        rows = v[idx == i]
        if len(rows):
            out[i, :C], out[i, C:2 * C], out[i, 2 * C:] = rows.mean(0), rows.min(0), rows.max(0)
        else:
            out[i, :C] = out[i, C:2 * C] = out[i, 2 * C:] = interp[i]
    return out.astype(np.float32)


def _audio_tokens(weld: Weld, cfg: EncoderConfig, duration: float) -> np.ndarray:
    """(L, frames_per_token * n_mels): log10 mel power, pooled in power to fixed frames."""
    n = max(int(round(duration * cfg.sample_rate)), 1)
    a = np.zeros(n, dtype=np.float32)
    k = min(n, len(weld.audio))
    a[:k] = weld.audio[:k]  # pad with silence / crop to the weld's duration so bins line up
    power = _mel_power(a, cfg)  # (n_mels, frames)
    frames = cfg.audio_len * cfg.audio_frames_per_token
    pooled = F.adaptive_avg_pool1d(power[None], frames)[0]
    z = torch.log10(pooled + 1e-8)  # (n_mels, frames); a token is its frames' mel vectors in a row
    z = z.T.reshape(cfg.audio_len, cfg.audio_frames_per_token * cfg.n_mels)
    return z.numpy().astype(np.float32)


def _video_tokens(weld: Weld, cfg: EncoderConfig, t0: np.ndarray, t1: np.ndarray):
    """(segments, 6, h, w) uint8 [mean RGB, max RGB] per time bin, and frame ranges."""
    video = weld.video
    times = np.asarray(weld.video_times, dtype=np.float64) if weld.video_times is not None else None
    if times is None or len(times) != len(video):
        fps = weld.video_fps or 30.0
        times = np.arange(len(video)) / fps
    L = len(t0)
    seg = np.clip(np.searchsorted(t1, times, side="right"), 0, L - 1)
    out = np.empty((L, 6, *cfg.video_size), dtype=np.uint8)
    f0 = np.empty(L, dtype=np.int64)
    f1 = np.empty(L, dtype=np.int64)
    small_cache: dict[int, np.ndarray] = {}
    for i in range(L):
        members = np.flatnonzero(seg == i)
        if len(members) == 0:  # no frame starts in this bin: nearest frame stands in
            members = np.array([int(np.argmin(np.abs(times - (t0[i] + t1[i]) / 2)))])
        f0[i], f1[i] = members[0], members[-1]
        frames = video[members[0]:members[-1] + 1]
        key = (int(members[0]), int(members[-1]))
        if key not in small_cache:
            mean = frames.mean(axis=0, dtype=np.float32)
            mx = frames.max(axis=0).astype(np.float32)
            small_cache[key] = _resize(np.stack([mean, mx]), cfg.video_size)
        pair = small_cache[key]
        out[i, :3] = np.clip(np.rint(pair[0]), 0, 255)
        out[i, 3:] = np.clip(np.rint(pair[1]), 0, 255)
    return out, f0, f1


def preprocess(weld: Weld, config: EncoderConfig | None = None) -> dict:
    """Deterministic numpy/torch preprocessing of one weld into fixed-size arrays + positions.

    Returns {"weld_id", "inputs": {m: np.ndarray}, "masks": {m: (S_m,) bool},
    "positions": {m: DataFrame, one row per token}}. Absent modalities get zero inputs,
    an all-False mask, and positions all the same (time spans still tile the weld).
    """
    cfg = config or EncoderConfig()
    present = set(weld.present)
    duration = float(weld.duration)
    if not duration > 0:
        duration = 1.0
    parts = {"sensor": _prep_sensor(weld, cfg, duration, "sensor" in present),
             "audio": _prep_audio(weld, cfg, duration, "audio" in present),
             "video": _prep_video(weld, cfg, duration, "video" in present),
             "image": _prep_images(weld, cfg)}
    return {"weld_id": weld.weld_id, "inputs": {m: p[0] for m, p in parts.items()},
            "masks": {m: p[1] for m, p in parts.items()}, "positions": {m: p[2] for m, p in parts.items()}}


def _prep_sensor(weld: Weld, cfg: EncoderConfig, duration: float, here: bool):
    t0, t1 = _tiles(duration, cfg.sensor_len)
    x = (_sensor_tokens(weld, cfg, t0, t1) if here
         else np.zeros((cfg.sensor_len, 3 * len(SENSOR_CHANNELS)), np.float32))
    return x, np.full(cfg.sensor_len, here), pd.DataFrame({"t0": t0, "t1": t1})


def _prep_audio(weld: Weld, cfg: EncoderConfig, duration: float, here: bool):
    t0, t1 = _tiles(duration, cfg.audio_len)
    x = (_audio_tokens(weld, cfg, duration) if here
         else np.zeros((cfg.audio_len, cfg.audio_frames_per_token * cfg.n_mels), np.float32))
    return x, np.full(cfg.audio_len, here), pd.DataFrame({"t0": t0, "t1": t1})


def _prep_video(weld: Weld, cfg: EncoderConfig, duration: float, here: bool):
    """Token order is (segment, patch row, patch col)."""
    gh, gw = cfg.video_grid
    P = gh * gw
    t0, t1 = _tiles(duration, cfg.video_segments)
    if here:
        x, f0, f1 = _video_tokens(weld, cfg, t0, t1)
        H, W = weld.video.shape[1:3]
    else:
        x = np.zeros((cfg.video_segments, 6, *cfg.video_size), np.uint8)
        f0 = f1 = np.full(cfg.video_segments, -1)
        H, W = cfg.video_size
    box = _boxes(gh, gw, H, W)
    pos = pd.DataFrame({
        "t0": np.repeat(t0, P), "t1": np.repeat(t1, P),
        "frame0": np.repeat(f0, P), "frame1": np.repeat(f1, P),
        **{k: np.tile(v, cfg.video_segments) for k, v in box.items()},
    })
    return x, np.full(cfg.seq_len("video"), here), pos


def _prep_images(weld: Weld, cfg: EncoderConfig):
    """Token order is (image, patch row, patch col); boxes in the file's pixels, like truth.json regions."""
    gh, gw = cfg.image_grid
    P = gh * gw
    imgs = np.zeros((cfg.max_images, 6, *cfg.image_size), np.uint8)
    img_mask = np.zeros(cfg.seq_len("image"), bool)
    rows = []
    for j in range(cfg.max_images):
        if j < len(weld.images):
            im = np.asarray(weld.images[j])
            if im.ndim == 2:
                im = np.repeat(im[..., None], 3, axis=2)
            im = im[..., :3]
            imgs[j, :3] = np.clip(np.rint(_resize(im[None], cfg.image_size)[0]), 0, 255)
            imgs[j, 3:] = _min_pool(im[None], cfg.image_size)[0]
            img_mask[j * P:(j + 1) * P] = True
            h, w = im.shape[:2]
            if j < len(weld.image_sizes) and weld.image_sizes[j]:
                w, h = weld.image_sizes[j]
        else:
            h, w = cfg.image_size
        rows.append(pd.DataFrame({"image": np.full(P, j), **_boxes(gh, gw, h, w)}))
    return imgs, img_mask, pd.concat(rows, ignore_index=True)


def collate(items: list[dict]) -> dict:
    """Stack preprocessed welds: {"inputs": {m: Tensor (B, ...)}, "masks": {m: (B,S)}, ...}."""
    return {
        "weld_ids": [it["weld_id"] for it in items],
        "inputs": {m: torch.from_numpy(np.stack([it["inputs"][m] for it in items])) for m in MODALITIES},
        "masks": {m: torch.from_numpy(np.stack([it["masks"][m] for it in items])) for m in MODALITIES},
        "positions": {m: [it["positions"][m] for it in items] for m in MODALITIES},
    }


# ---------------------------------------------------------------- modules

def sinusoidal(n: int, dim: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    i = torch.arange(0, dim, 2, dtype=torch.float32)
    ang = pos / (10000.0 ** (i / dim))
    pe = torch.zeros(n, dim)
    pe[:, 0::2] = torch.sin(ang)
    pe[:, 1::2] = torch.cos(ang[:, : dim // 2])
    return pe


class SensorEncoder(nn.Module):
    """Per-bin MLP + sinusoidal position + a small TransformerEncoder (as in the training code)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        D = cfg.sensor_dim
        self.embed = nn.Sequential(nn.Linear(3 * len(SENSOR_CHANNELS), D), nn.GELU(), nn.Linear(D, D))
        # normalisation comes from the config (fitted at training time), not from the weights
        self.register_buffer("mean", torch.tensor(cfg.sensor_mean * 3), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.sensor_std * 3), persistent=False)
        self.register_buffer("pos", sinusoidal(cfg.sensor_len, D) * 0.1, persistent=False)
        layer = nn.TransformerEncoderLayer(D, cfg.sensor_heads, 2 * D, cfg.dropout, batch_first=True,
                                           activation="gelu", norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, cfg.sensor_layers, enable_nested_tensor=False) \
            if cfg.sensor_layers else None
        # Local self-attention: a token mixes in only its neighbours, so it still stands for its
        # own moment (attention on it can be read as attention on that time span).
        idx = torch.arange(cfg.sensor_len)
        far = (idx[:, None] - idx[None, :]).abs() > cfg.sensor_context
        self.register_buffer("far", far if cfg.sensor_context >= 0 else torch.zeros_like(far), persistent=False)
        self.norm = nn.LayerNorm(D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, 18) in the log's units
        z = ((x - self.mean) / self.std).clamp(-20, 20)
        h = self.embed(z) + self.pos
        if self.transformer is not None:
            h = self.transformer(h, mask=self.far)
        return self.norm(h)


class AudioEncoder(nn.Module):
    """Per-window MLP over log-mel frames + sinusoidal position."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        D = cfg.audio_dim
        self.embed = nn.Sequential(nn.Linear(cfg.audio_frames_per_token * cfg.n_mels, D), nn.GELU(),
                                   nn.Linear(D, D))
        k = cfg.audio_frames_per_token
        self.register_buffer("mean", torch.tensor(cfg.audio_mean * k), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.audio_std * k), persistent=False)
        self.register_buffer("pos", sinusoidal(cfg.audio_len, D) * 0.1, persistent=False)
        self.norm = nn.LayerNorm(D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, k*n_mels) log10 mel power
        z = ((x - self.mean) / self.std).clamp(-10, 10)
        return self.norm(self.embed(z) + self.pos)


def _patch_stem(in_ch: int, dim: int, patch: int) -> nn.Sequential:
    """Two strided convs (patch/4, then 4): a small nonlinearity inside each patch, none across."""
    mid = max(dim // 4, 16)
    return nn.Sequential(nn.Conv2d(in_ch, mid, patch // 4, stride=patch // 4), nn.GELU(),
                         nn.Conv2d(mid, dim, 4, stride=4))


class _PatchEncoder(nn.Module):
    """Conv patch stem over groups of 6-channel pictures (mean+max or mean+min), + patch and
    group embeddings (time bin for video, photo index for images), LayerNorm."""

    def __init__(self, dim: int, grid: tuple[int, int], patch: int):
        super().__init__()
        self.stem = _patch_stem(6, dim, patch)
        self.patch_pos = nn.Parameter(torch.zeros(grid[0] * grid[1], dim))
        self.norm = nn.LayerNorm(dim)

    def embed(self, x: torch.Tensor, group_pos: torch.Tensor) -> torch.Tensor:  # (B, G, 6, h, w) uint8
        B, G = x.shape[:2]
        z = (x.flatten(0, 1).float() / 255.0 - 0.5) / 0.25
        h = self.stem(z).flatten(2).transpose(1, 2) + self.patch_pos  # (B*G, P, D)
        h = h.reshape(B, G, -1, h.shape[-1]) + group_pos[None, :, None]
        return self.norm(h.flatten(1, 2))


class VideoEncoder(_PatchEncoder):
    """Tubelets: per time bin, mean+max frame → conv patch stem; + time and patch embeddings."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg.video_dim, cfg.video_grid, cfg.video_patch)
        self.register_buffer("time_pos", sinusoidal(cfg.video_segments, cfg.video_dim) * 0.1, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, 6, h, w) uint8
        return self.embed(x, self.time_pos)


class ImageEncoder(_PatchEncoder):
    """ViT-style patch embedding per photo; + patch and image-index embeddings."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg.image_dim, cfg.image_grid, cfg.image_patch)
        self.image_pos = nn.Parameter(torch.zeros(cfg.max_images, cfg.image_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, 6, h, w) uint8
        return self.embed(x, self.image_pos)


@dataclass
class EncodedBatch(FeatureBatch):
    """A FeatureBatch made by the built-in encoders: every row has positions for every modality."""

    @property
    def weld_ids(self) -> list[str]:
        return self.ids


class WeldEncoders(nn.Module):
    """The four built-in encoders. Submodule names are the checkpoint's key prefixes."""

    def __init__(self, config: EncoderConfig | None = None):
        super().__init__()
        self.config = config or EncoderConfig()
        self.video_encoder = VideoEncoder(self.config)
        self.image_encoder = ImageEncoder(self.config)
        self.audio_encoder = AudioEncoder(self.config)
        self.sensor_encoder = SensorEncoder(self.config)

    def encoder(self, m: str) -> nn.Module:
        return getattr(self, f"{m}_encoder")

    def preprocess(self, weld: Weld) -> dict:
        return preprocess(weld, self.config)

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Collated inputs → {m: (B, S_m, D_m)}; positions without data are zeroed."""
        out = {}
        for m in MODALITIES:
            h = self.encoder(m)(inputs[m])
            out[m] = h * masks[m].unsqueeze(-1).to(h.dtype)
        return out

    @torch.no_grad()
    def encode(self, welds: list[Weld] | list[dict], batch_size: int = 32) -> EncodedBatch:
        """Welds (or their `preprocess` results) → token features, masks and positions, in eval mode."""
        items = [w if isinstance(w, dict) else self.preprocess(w) for w in welds]
        was = self.training
        self.eval()
        try:
            feats: dict[str, list[torch.Tensor]] = {m: [] for m in MODALITIES}
            for s in range(0, len(items), batch_size):
                batch = collate(items[s:s + batch_size])
                for m, x in self.forward(batch["inputs"], batch["masks"]).items():
                    feats[m].append(x)
        finally:
            self.train(was)
        if not items:
            return EncodedBatch(features={m: torch.zeros(0, self.config.seq_len(m), self.config.dim(m))
                                          for m in MODALITIES})
        return EncodedBatch(
            features={m: torch.cat(v) for m, v in feats.items()},
            masks={m: torch.from_numpy(np.stack([it["masks"][m] for it in items])) for m in MODALITIES},
            positions={m: [it["positions"][m] for it in items] for m in MODALITIES},
            ids=[it["weld_id"] for it in items],
        )


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
