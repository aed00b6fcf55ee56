"""Built-in encoders: fixed shapes, positions that tile the weld and point at the right data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fusion_core.models.encoders.demo import EncoderConfig, WeldEncoders, collate, mel_filterbank, preprocess
from fusion_core.vocab import MODALITIES
from fusion_core.io.weld import Weld
from fusion_core.vocab import SENSOR_CHANNELS

SMALL = dict(video_dim=16, image_dim=16, audio_dim=16, sensor_dim=16, sensor_len=24, audio_len=20,
             n_mels=16, audio_mean=[-4.0] * 16, audio_std=[2.0] * 16, video_segments=6,
             video_size=[32, 48], image_size=[32, 64], max_images=3, sensor_heads=2)


def make_weld(seed: int = 0, duration: float = 3.0, fps: float = 10.0, frame_hw=(60, 80),
              image_hw=(90, 200), n_images: int = 3, code: int = 2, missing=(), sensor_t0: float = 0.0) -> Weld:
    r = np.random.default_rng(seed)
    n_frames = int(round(duration * fps))
    video = r.integers(20, 60, (n_frames, *frame_hw, 3), dtype=np.uint8)
    t = sensor_t0 + np.arange(int(duration * 8.6)) / 8.6
    sensor = pd.DataFrame({"t": t, **{c: 100.0 + r.normal(0, 1, len(t)) for c in SENSOR_CHANNELS}})
    w = Weld(weld_id=f"45{seed:04d}{code:02d}", source="memory", video=video,
             video_times=np.arange(n_frames) / fps, video_fps=fps,
             audio=(r.normal(0, 0.01, int(duration * 16000))).astype(np.float32), sensor=sensor,
             images=[r.integers(20, 60, (*image_hw, 3), dtype=np.uint8) for _ in range(n_images)],
             image_names=[f"{i}.jpg" for i in range(n_images)])
    for m in missing:
        if m == "image":
            w.images, w.image_names = [], []
        else:
            setattr(w, m, None)
    return w


@pytest.fixture(scope="module")
def cfg() -> EncoderConfig:
    return EncoderConfig(**SMALL)


def test_config_json_round_trip(cfg):
    d = json.loads(json.dumps(cfg.to_dict()))
    assert EncoderConfig.from_dict(d) == cfg
    assert EncoderConfig.from_dict({**d, "unknown": 1}) == cfg
    old = {k: v for k, v in d.items() if k != "sensor_context"}   # written before local attention
    assert EncoderConfig.from_dict(old).sensor_context == -1
    default = EncoderConfig()
    assert {m: default.seq_len(m) for m in MODALITIES} == {"video": 192, "image": 180, "audio": 64, "sensor": 64}


@pytest.mark.parametrize("duration,fps,hw", [(3.0, 10.0, (60, 80)), (7.3, 25.0, (45, 64)), (0.8, 30.0, (20, 30))])
def test_fixed_shapes_and_time_tiling(cfg, duration, fps, hw):
    w = make_weld(duration=duration, fps=fps, frame_hw=hw)
    p = preprocess(w, cfg)
    assert p["inputs"]["video"].shape == (cfg.video_segments, 6, *cfg.video_size)
    assert p["inputs"]["image"].shape == (cfg.max_images, 6, *cfg.image_size)
    assert p["inputs"]["audio"].shape == (cfg.audio_len, cfg.audio_frames_per_token * cfg.n_mels)
    assert p["inputs"]["sensor"].shape == (cfg.sensor_len, 3 * len(SENSOR_CHANNELS))
    for m in MODALITIES:
        assert len(p["positions"][m]) == cfg.seq_len(m) == len(p["masks"][m])
    for m in ("video", "audio", "sensor"):
        pos = p["positions"][m]
        spans = pos[["t0", "t1"]].drop_duplicates().to_numpy()
        assert spans[0, 0] == 0.0 and spans[-1, 1] == pytest.approx(w.duration)
        assert np.array_equal(spans[1:, 0], spans[:-1, 1]), f"{m}: gaps or overlaps"
        assert (spans[:, 1] > spans[:, 0]).all()


def test_video_positions_map_to_frames_and_boxes(cfg):
    w = make_weld(duration=3.0, fps=10.0, frame_hw=(60, 80))
    # one bright square in frames 14-15 (t = 1.4-1.5 s), lower right quadrant
    w.video[14:16, 40:56, 56:76] = 255
    p = preprocess(w, cfg)
    pos = p["positions"]["video"]
    # frame ranges: every frame in exactly the bin its time falls in
    for _, row in pos.drop_duplicates(["t0"]).iterrows():
        inside = np.flatnonzero((w.video_times >= row.t0) & (w.video_times < row.t1))
        if len(inside):
            assert (row.frame0, row.frame1) == (inside[0], inside[-1])
    assert pos.frame0.min() == 0 and pos.frame1.max() == len(w.video) - 1
    # boxes tile the decoded frame
    first = pos[pos.t0 == 0]
    assert first.x0.min() == 0 and first.y0.min() == 0 and first.x1.max() == 80 and first.y1.max() == 60
    assert ((first.x1 - first.x0) * (first.y1 - first.y0)).sum() == pytest.approx(80 * 60)
    # the brightest token (max channel) is the bin with frame 14 and the box holding the square
    x = torch.from_numpy(p["inputs"]["video"]).float()  # (L, 6, h, w)
    gh, gw = cfg.video_grid
    P = cfg.video_patch
    patches = x[:, 3:].unfold(2, P, P).unfold(3, P, P).mean((1, 4, 5))  # (L, gh, gw)
    tok = int(patches.flatten().argmax())
    row = pos.iloc[tok]
    assert row.frame0 <= 14 <= row.frame1
    assert row.x0 <= 66 <= row.x1 and row.y0 <= 48 <= row.y1


def test_image_positions_in_file_pixels(cfg):
    w = make_weld(n_images=3, image_hw=(90, 200))
    w.images[1][10:30, 150:190] = 255         # a bright mark in photo 1, top right
    w.image_sizes = [(2000, 900)] * 3         # as stored on disk, before downscaling
    p = preprocess(w, cfg)
    pos = p["positions"]["image"]
    gh, gw = cfg.image_grid
    assert list(pos.columns) == ["image", "x0", "y0", "x1", "y1"]
    assert pos.image.tolist() == sorted(pos.image.tolist())
    one = pos[pos.image == 1]
    assert one.x1.max() == 2000 and one.y1.max() == 900 and len(one) == gh * gw
    x = torch.from_numpy(p["inputs"]["image"]).float()
    P = cfg.image_patch
    patches = x.unfold(2, P, P).unfold(3, P, P).mean((1, 4, 5))  # (N, gh, gw)
    row = pos.iloc[int(patches.flatten().argmax())]
    assert row.image == 1
    assert row.x0 <= 1700 <= row.x1 and row.y0 <= 200 <= row.y1   # (170, 20) decoded × 10


def test_sensor_and_audio_events_land_in_their_time_bins(cfg):
    w = make_weld(duration=3.0, sensor_t0=1000.0)   # absolute timestamps start at 0 on the weld
    t = w.sensor["t"].to_numpy()
    i = int(np.argmin(np.abs(t - 1000.0 - 2.2)))
    w.sensor.loc[i, "Primary Weld Current"] = 400.0
    n = len(w.audio)
    w.audio[int(0.9 * 16000):int(1.0 * 16000)] = 0.8 * np.sin(np.arange(1600) * 0.7)
    p = preprocess(w, cfg)
    C = len(SENSOR_CHANNELS)
    cur = SENSOR_CHANNELS.index("Primary Weld Current")
    s_pos = p["positions"]["sensor"]
    k = int(np.argmax(p["inputs"]["sensor"][:, 2 * C + cur]))
    assert s_pos.t0[k] <= t[i] - 1000.0 < s_pos.t1[k]
    a_pos = p["positions"]["audio"]
    energy = p["inputs"]["audio"].max(1)        # log10 mel power
    k = int(np.argmax(energy))
    assert a_pos.t0[k] <= 0.95 < a_pos.t1[k]
    far = ((a_pos.t1 < 0.85) | (a_pos.t0 > 1.05)).to_numpy()
    assert energy[far].max() < energy[k] - 3     # 1000× quieter away from the burst (STFT window leaks ±16 ms)
    assert n == len(w.audio)


def test_missing_modalities_and_fewer_photos(cfg):
    enc = WeldEncoders(cfg)
    full = make_weld(seed=1)
    part = make_weld(seed=2, missing=("audio", "video"), n_images=2)
    out = enc.encode([full, part])
    assert out.weld_ids == [full.weld_id, part.weld_id]
    for m in MODALITIES:
        assert out.features[m].shape == (2, cfg.seq_len(m), cfg.dim(m))
        assert out.masks[m].dtype == torch.bool and out.masks[m][0].all()
        assert torch.isfinite(out.features[m]).all()
    for m in ("audio", "video"):
        assert not out.masks[m][1].any() and (out.features[m][1] == 0).all()
        assert len(out.positions[m][1]) == cfg.seq_len(m)   # positions still tile the weld
    P = cfg.image_grid[0] * cfg.image_grid[1]
    assert out.masks["image"][1].tolist() == [True] * (2 * P) + [False] * P
    assert (out.features["image"][1, 2 * P:] == 0).all()
    assert out.present().tolist() == [[True] * 4, [False, True, False, True]]


def test_preprocess_and_encode_are_deterministic(cfg):
    w = make_weld(seed=3)
    a, b = preprocess(w, cfg), preprocess(w, cfg)
    for m in MODALITIES:
        assert np.array_equal(a["inputs"][m], b["inputs"][m])
        pd.testing.assert_frame_equal(a["positions"][m], b["positions"][m])
    torch.manual_seed(0)
    e1 = WeldEncoders(cfg)
    torch.manual_seed(0)
    e2 = WeldEncoders(cfg)
    x1, x2 = e1.encode([w]), e2.encode([a])   # a Weld or its preprocess result
    for m in MODALITIES:
        assert torch.equal(x1.features[m], x2.features[m])
    batch = collate([a, b])
    assert batch["inputs"]["video"].dtype == torch.uint8 and batch["inputs"]["video"].shape[0] == 2


def test_state_dict_prefixes(cfg):
    keys = WeldEncoders(cfg).state_dict().keys()
    assert {k.split(".")[0] for k in keys} == {f"{m}_encoder" for m in MODALITIES}


def test_mel_filterbank():
    fb = mel_filterbank(16000, 512, 32, 20.0, 8000.0)
    assert fb.shape == (32, 257) and (fb >= 0).all() and (fb.sum(1) > 0).all()
    peaks = fb.argmax(1)
    assert (np.diff(peaks) >= 0).all()  # filters go up in frequency


def test_fit_normalisation_standardises(cfg):
    items = [preprocess(make_weld(seed=s), cfg) for s in range(3)]
    fitted = cfg.fit_normalisation(items)
    assert fitted.sensor_mean[0] == pytest.approx(100.0, abs=0.5)
    out = WeldEncoders(fitted).sensor_encoder.mean
    assert out.shape == (3 * len(SENSOR_CHANNELS),)


def test_encoders_are_local(cfg):
    """Changing one bin or patch changes only its own token (sensor: ±sensor_context bins)."""
    torch.manual_seed(0)
    enc = WeldEncoders(cfg).eval()
    batch = collate([preprocess(make_weld(seed=4), cfg)])
    x, mk = batch["inputs"], batch["masks"]
    with torch.no_grad():
        base = enc(x, mk)
        for m, j, changed in (("sensor", 10, range(10 - cfg.sensor_context, 11 + cfg.sensor_context)),
                              ("audio", 7, [7])):
            y = {k: v.clone() for k, v in x.items()}
            y[m][0, j] += 3.0
            diff = (enc(y, mk)[m] - base[m]).abs().sum(-1)[0]
            assert set(torch.nonzero(diff > 1e-6).flatten().tolist()) == set(changed), m
        # video: one time bin, one patch; image: one photo, one patch
        P = cfg.video_patch
        y = {k: v.clone() for k, v in x.items()}
        y["video"][0, 2, :, P:2 * P, 0:P] = 255
        diff = (enc(y, mk)["video"] - base["video"]).abs().sum(-1)[0]
        gw = cfg.video_grid[1]
        assert torch.nonzero(diff > 1e-6).flatten().tolist() == [2 * cfg.video_grid[0] * gw + 1 * gw + 0]
        P = cfg.image_patch
        y = {k: v.clone() for k, v in x.items()}
        y["image"][0, 1, :, 0:P, P:2 * P] = 0
        diff = (enc(y, mk)["image"] - base["image"]).abs().sum(-1)[0]
        gh, gw = cfg.image_grid
        assert torch.nonzero(diff > 1e-6).flatten().tolist() == [1 * gh * gw + 0 * gw + 1]
