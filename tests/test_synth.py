"""Synthetic welds: real layout, deterministic in the seed, defects planted where truth.json says
(and nowhere else)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fusion_core.errors import InputError
from fusion_core.io.containers import load_weld, load_welds
from fusion_core.training.synth import PLANTED, SUPPORTED_CLASSES, cli_synth, generate_dataset, generate_weld
from fusion_core.vocab import CLASS_NAMES, CSV_COLUMNS, MODALITIES

SEEDS = 2  # welds per class in the planted-defect checks


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("synth")
    paths = generate_dataset(root, SEEDS * len(SUPPORTED_CLASSES), seed=123)
    return root, paths


@pytest.fixture(scope="module")
def welds(generated):
    return {w.weld_id: w for w in load_welds(generated[0])}


def _files(folder: Path) -> dict[str, str]:
    return {f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}


# --------------------------------------------------------------------------- layout


def test_layout_and_truth(generated):
    root, paths = generated
    assert [p.name[-2:] for p in paths[:len(SUPPORTED_CLASSES)]] == \
        [f"{c:02d}" for c in SUPPORTED_CLASSES]
    assert len(SUPPORTED_CLASSES) >= 6
    for p in paths:
        pn = p.name
        names = sorted(_files(p))
        assert names == sorted([f"{pn}.avi", f"{pn}.flac", f"{pn}.csv", "truth.json"]
                               + [f"images/{pn}_{k}.jpg" for k in range(1, 6)])
        header = (p / f"{pn}.csv").read_text().splitlines()[0]
        assert header == ",".join(CSV_COLUMNS)
        truth = json.loads((p / "truth.json").read_text())
        code = int(pn[-2:])
        assert truth["class"] == code and truth["class_name"] == CLASS_NAMES[code]
        assert truth["generator"] == "fusion_core.synth" and isinstance(truth["seed"], int)
        assert truth["modalities"] == [m for m in MODALITIES if m in PLANTED[code]]
        assert set(truth["modalities"]) <= set(MODALITIES)
        if code == 0:
            assert truth["windows"] == [] and truth["regions"] == []
            continue
        assert 1 <= len(truth["windows"]) <= 2
        for a, b in truth["windows"]:
            assert 0 < a < b <= 8.0 and 0.75 <= b - a <= 1.55
        if "image" in truth["modalities"]:
            assert {r["image"] for r in truth["regions"]} == set(range(5))
            for r in truth["regions"]:
                assert 0 <= r["x0"] < r["x1"] <= 400 and 0 <= r["y0"] < r["y1"] <= 180
        else:
            assert truth["regions"] == []


def test_small_enough_for_sample_data(generated):
    _, paths = generated
    sizes = [sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in paths]
    assert max(sizes) < 1_000_000, sizes


def test_deterministic_in_the_seed(tmp_path: Path):
    a = generate_weld("000909", 9, 42, tmp_path / "a")
    b = generate_weld("000909", 9, 42, tmp_path / "b")
    c = generate_weld("000909", 9, 43, tmp_path / "c")
    fa, fb, fc = _files(a), _files(b), _files(c)
    assert fa == fb
    changed = [k for k in fa if k != "truth.json" and fa[k] != fc[k]]
    assert len(changed) == len(fa) - 1  # every media file differs with another seed
    assert load_weld(a).digest == load_weld(b).digest != load_weld(c).digest
    d1, d2 = generate_dataset(tmp_path / "d1", 3, 7), generate_dataset(tmp_path / "d2", 3, 7)
    assert [_files(p) for p in d1] == [_files(p) for p in d2]


def test_validation(tmp_path: Path):
    with pytest.raises(ValueError, match="class"):
        generate_weld("000104", 4, 0, tmp_path)  # not a supported class (yet)
    with pytest.raises(ValueError, match="end with"):
        generate_weld("000102", 3, 0, tmp_path)
    with pytest.raises(InputError, match="--count"):
        cli_synth(tmp_path / "x", 0, 1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        cli_synth(tmp_path / "file", 1, 1)


def test_cli_synth(tmp_path: Path, capsys):
    paths = cli_synth(tmp_path / "out", 2, 9)
    assert [p.name for p in paths] == ["000100", "000202"]
    assert "wrote 2 synthetic welds" in capsys.readouterr().out
    assert [w.weld_id for w in load_welds(tmp_path / "out")] == ["000100", "000202"]


# --------------------------------------------------------------------------- plausible signals


def test_signals_look_like_a_weld(welds):
    for w in welds.values():
        s, t = w.sensor, w.sensor["t"].to_numpy()
        steady = (t > 0.5) & (t < 7.5)
        clean = steady & ~_mask(t, w.truth["windows"])
        assert np.all(np.diff(s["Wire Consumed"]) >= 0)              # wire only goes in
        assert s["Wire Consumed"].iloc[-1] > 500                     # ~130 mm/s for 8 s
        cur = s["Primary Weld Current"][clean]
        assert 170 < cur.mean() < 230 and cur.std() < 12
        assert 21 < s["Secondary Weld Voltage"][clean].mean() < 27
        assert 13 < s["CO2 Weld Flow"][clean].mean() < 17
        assert s["Pressure"][steady].std() < 0.05
        # audio: an arc, not silence and not clipping; with a 100 Hz mains hum in it
        a = w.audio[16000:-16000]
        assert 0.02 < np.sqrt(np.mean(a ** 2)) < 0.3
        spec = np.abs(np.fft.rfft(a))
        f = np.fft.rfftfreq(len(a), 1 / 16000)
        hum = spec[(f > 99) & (f < 101)].max()
        assert hum > 5 * np.median(spec[(f > 80) & (f < 120)])
        # video: a dark plate with one bright arc that moves left to right
        v = w.video.astype(np.float32).mean(axis=3)
        clean = np.flatnonzero(~_mask(w.video_times, w.truth["windows"])
                               & (w.video_times > 0.5) & (w.video_times < 7.5))
        xs = [int(v[i].sum(axis=0).argmax()) for i in clean]  # brightest column
        slope, icpt = np.polyfit(w.video_times[clean], xs, 1)
        assert 10 < slope < 16  # 80% of 128 px in 8 s: 12.8 px/s
        assert np.std(xs - (slope * w.video_times[clean] + icpt)) < 4
        assert np.median(v) < 60


def _mask(t, windows):
    m = np.zeros(len(t), bool)
    for a, b in windows:
        m |= (t >= a) & (t <= b)
    return m


def _region_darkness(w, margin=0) -> tuple[float, float]:
    """Darkest 2% of pixels inside the truth regions vs. the same along the bead elsewhere."""
    inside, outside = [], []
    for k, im in enumerate(w.images):
        g = im.astype(np.float32).mean(axis=2)
        m = np.zeros(g.shape, bool)
        for r in w.truth["regions"]:
            if r["image"] == k:
                m[r["y0"]:r["y1"], r["x0"]:r["x1"]] = True
        inside.append(g[m])
        rows = np.flatnonzero(m.any(axis=1))
        band = np.zeros(g.shape, bool)
        band[rows.min():rows.max() + 1, 40:360] = True
        outside.append(g[band & ~m])
    return (float(np.percentile(np.concatenate(inside), 2)),
            float(np.percentile(np.concatenate(outside), 2)))


def _frame_brightness(w):
    v = w.video.astype(np.float32)
    return v.mean(axis=(1, 2, 3)), _mask(w.video_times, w.truth["windows"])


def _audio_peaks(w):
    a = np.abs(w.audio)
    t = np.arange(len(a)) / 16000
    m = _mask(t, w.truth["windows"])
    core = (t > 0.5) & (t < 7.5)
    return a[m].max(), a[core & ~m].max(), np.sqrt(np.mean(w.audio[m] ** 2)), \
        np.sqrt(np.mean(w.audio[core & ~m] ** 2))


def _sensor_in_out(w, col):
    s, t = w.sensor, w.sensor["t"].to_numpy()
    m = _mask(t, w.truth["windows"])
    core = (t > 0.5) & (t < 7.5) & ~m
    return s[col][m].to_numpy(), s[col][core].to_numpy()


@pytest.mark.parametrize("code", SUPPORTED_CLASSES)
def test_planted_defects_are_where_truth_says(welds, code):
    group = [w for w in welds.values() if w.class_code == code]
    assert len(group) == SEEDS
    for w in group:
        planted = set(w.truth["modalities"])
        assert planted == set(PLANTED[code])
        # sensor
        cur_in, cur_out = _sensor_in_out(w, "Primary Weld Current")
        v_in, v_out = _sensor_in_out(w, "Secondary Weld Voltage")
        if code == 2:
            assert cur_in.mean() > cur_out.mean() + 50 and v_in.mean() < v_out.mean() - 3
        elif code == 7:
            assert cur_in.mean() < cur_out.mean() - 40
        elif code == 3:
            assert np.abs(np.diff(v_in)).mean() > 4 * np.abs(np.diff(v_out)).mean()
            co2_in, co2_out = _sensor_in_out(w, "CO2 Weld Flow")
            assert co2_in.mean() < co2_out.mean() - 5
        elif code != 0:  # 'sensor' not planted: the window looks like the rest
            assert abs(cur_in.mean() - cur_out.mean()) < 15
            assert np.abs(np.diff(v_in)).std() < 1.0
        # video
        bright, m = _frame_brightness(w)
        if code == 2:
            assert bright[m].min() > 2 * bright[~m].max()
        elif m.any():
            assert bright[m].max() < 1.5 * np.median(bright[~m]) + 3
        if code == 9:
            v = w.video.astype(np.float32).mean(axis=3)
            hot = (v > 200).sum(axis=(1, 2))  # the arc core plus sparks
            assert np.median(hot[m]) > np.median(hot[~m]) + 15
        # audio
        if m.any() or code != 0:
            p_in, p_out, r_in, r_out = _audio_peaks(w)
            if "audio" in planted:
                assert p_in > 2 * p_out and r_in > 1.4 * r_out
            else:
                assert p_in < 1.5 * p_out and 0.75 < r_in / r_out < 1.3
        # photos
        if "image" in planted:
            dark_in, dark_out = _region_darkness(w)
            assert dark_in < dark_out - 40, (dark_in, dark_out)
        else:
            assert w.truth["regions"] == []


def test_good_welds_are_clean(welds):
    for w in (w for w in welds.values() if w.class_code == 0):
        s = w.sensor[(w.sensor.t > 0.5) & (w.sensor.t < 7.5)]
        assert s["Primary Weld Current"].max() - s["Primary Weld Current"].min() < 35
        assert np.abs(np.diff(s["Secondary Weld Voltage"])).max() < 1.5
        assert np.abs(w.audio[8000:-8000]).max() < 0.45
        b = w.video.astype(np.float32).mean(axis=(1, 2, 3))[3:-3]
        assert b.max() < 1.5 * np.median(b)
