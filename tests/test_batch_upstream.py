"""`batch` with upstream's own encoders (issue 10): tiny V-JEPA 2 / DINOv3 / AST / sensor
Transformer checkpoints (built by tests/test_upstream_encoders.py) on three sample welds.

What must hold: one row per weld, equal to the one-weld `explain` of that weld; a second run
encodes nothing (feature cache); checkpoints with the same encoder weights share one
encoding and one config key, others do not; progress names each encoder; a checkpoint with
a missing encoder key is one line and exit 2.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")

from test_cli import run  # noqa: E402
from test_upstream_encoders import SAMPLES, build_upstream  # noqa: E402

from fusion_core.batch.engines import BatchCheckpoint, add_batch_parser, cmd_batch, run_batch  # noqa: E402
from fusion_core.batch.store import read_maps, read_results  # noqa: E402
from fusion_core.batch.upstream import RAY_FALLBACK  # noqa: E402
from fusion_core.errors import InputError  # noqa: E402
from fusion_core.explain.methods import METHODS  # noqa: E402
from fusion_core.explain.welds import explain_welds, read_options  # noqa: E402
from fusion_core.io.containers import load_welds  # noqa: E402
from fusion_core.models.checkpoint import load_checkpoint  # noqa: E402
from fusion_core.models.encoders.cache import ENV_DIR, FeatureCache  # noqa: E402
from fusion_core.models.encoders.upstream.encoders import UpstreamEncoders  # noqa: E402
from fusion_core.vocab import MODALITIES  # noqa: E402

WELDS = ("000100", "000507", "001003")
VOLATILE = ["maps_file", "maps_index"]


def _numbers(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=VOLATILE).reset_index(drop=True)


def _resave(src: Path, dst: Path, change: dict) -> Path:
    """A copy of an upstream training file with some tensors changed (another epoch, say)."""
    obj = torch.load(src, weights_only=False)      # our own file: numpy scalar inside
    sd = obj["model_state_dict"]
    for k, f in change.items():
        sd[k] = f(sd[k])
    torch.save(obj, dst)
    return dst


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch_upstream")
    welds = root / "welds"
    for w in WELDS:
        shutil.copytree(SAMPLES / w, welds / w)
    path, bdir, _ = build_upstream(root)
    # Same encoders, another fusion (a later epoch of a frozen-backbone run), with the DDP prefix.
    obj = torch.load(path, weights_only=False)
    obj["model_state_dict"] = {f"module.{k}": (v + 0.05 if k == "fusion.fusion_tokens" else v)
                               for k, v in obj["model_state_dict"].items()}
    twin = root / "epoch_13.pth"
    torch.save(obj, twin)
    other = _resave(path, root / "other_sensor.pth", {"sensor_encoder.norm.bias": lambda t: t + 0.1})
    return {"root": root, "welds": welds, "ck": path, "twin": twin, "other": other, "bdir": bdir}


class Calls:
    """Counts upstream's encoder runs and builds, through wrappers on the class."""

    def __init__(self, monkeypatch):
        self.compute: list[tuple[str, str]] = []
        self.loads = 0
        compute, load = UpstreamEncoders.compute_one, UpstreamEncoders.load

        def counted_compute(enc, m, weld):
            self.compute.append((m, weld.weld_id))
            return compute(enc, m, weld)

        def counted_load(enc, progress=None):
            self.loads += enc.adapters is None
            return load(enc, progress)
        monkeypatch.setattr(UpstreamEncoders, "compute_one", counted_compute)
        monkeypatch.setattr(UpstreamEncoders, "load", counted_load)


def _batch(world, out, checkpoints=None, **kw):
    notes: list[str] = []

    def report(p, final=False):
        notes[:] = p.notes
    kw.setdefault("workers", 0)
    summary = run_batch(checkpoints or [world["ck"]], world["welds"], out, backbone_dir=world["bdir"],
                        device="cpu", progress=report, **kw)
    return summary, notes


@pytest.fixture(scope="module")
def first_run(world):
    """One batch on a fresh feature cache: (out, summary, progress notes, cache dir)."""
    cache = world["root"] / "cache-first"
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_DIR, str(cache))
    try:
        out = world["root"] / "first" / "results.parquet"
        summary, notes = _batch(world, out)
    finally:
        mp.undo()
    return out, summary, notes, cache


def _cache_entries(cache: Path) -> list[str]:
    return sorted(p.name for _, _, p in FeatureCache(cache).entries())


# --------------------------------------------------------------------------- rows = one-weld explain

def test_one_row_per_weld_equal_to_the_one_weld_explain(world, first_run, monkeypatch, tmp_path):
    out, summary, _, _ = first_run
    assert (summary.welds, summary.rows_written, summary.errors, summary.engine) == (3, 3, 0, "local")
    df = read_results(out)
    assert list(df.weld_id) == list(WELDS) and df.error.isna().all()
    # The one-weld path, on a cache of its own, so that its encoders really run again.
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "cache-explain"))
    ck = load_checkpoint(world["ck"], backbone_dir=world["bdir"], device="cpu")
    for (_, row), weld in zip(df.iterrows(), load_welds(world["welds"], **read_options(ck))):
        exp = explain_welds(ck, [weld])
        assert row.weld_id == weld.weld_id and row.weld_digest == weld.digest and row.target == exp.target
        # Not `relevance`: on upstream's L2-normalised embedding the cosine target's gradient is
        # zero up to rounding (~1e-12), so its normalised mass is rounding noise that differs
        # between a batch of 1 and a padded batch of 16. Its maps (≈ 0) are compared below.
        for method in (k for k in METHODS if k != "relevance"):
            got = row[[f"{method}_{m}" for m in MODALITIES]].to_numpy(float)
            np.testing.assert_allclose(got, exp.contributions[method][0], atol=1e-5, err_msg=method)
        assert row.target_value == pytest.approx(float(exp.target_values[0]), abs=1e-5)
        assert abs(row.efficiency_gap) < 1e-5
        maps = read_maps(out, row)
        for m in MODALITIES:
            np.testing.assert_allclose(maps["attention"][m], exp.attention[m][0], atol=1e-5)
            np.testing.assert_allclose(maps["relevance"][m], exp.relevance[m][0], atol=1e-5)
            want = exp.positions[m][0].reset_index(drop=True)
            pd.testing.assert_frame_equal(maps["positions"][m][list(want.columns)].astype(str), want.astype(str))
        assert set(maps["positions"]["video"]["input"]) == {"photos"}     # upstream's reader quirk, kept


def test_progress_names_each_encoder_per_weld(first_run):
    *_, notes, _ = first_run
    start = notes[0]
    assert "upstream's encoders" in start and "weld by weld on cpu" in start and "40 s per weld" in start
    assert "feature cache" in start
    assert any("loading upstream's video encoder" in n for n in notes)
    for i, w in enumerate(WELDS, 1):
        for m in MODALITIES:
            assert any(n.startswith(f"batch: weld {i}/3 {w}: {m} encoder ") and n.endswith(" s") for n in notes), (w, m)
    assert all("\n" not in n for n in notes)


# --------------------------------------------------------------------------- the feature cache

def test_a_second_run_encodes_nothing(world, first_run, monkeypatch, tmp_path):
    out1, _, _, cache = first_run
    entries = _cache_entries(cache)
    assert len(entries) == len(WELDS) * len(MODALITIES)
    monkeypatch.setenv(ENV_DIR, str(cache))
    calls = Calls(monkeypatch)
    summary, notes = _batch(world, tmp_path / "again" / "results.parquet")     # another --out: rows redone
    assert summary.rows_written == 3 and calls.compute == [] and calls.loads == 0
    assert _cache_entries(cache) == entries
    assert sum("video, image, audio, sensor encoders from the feature cache" in n for n in notes) == 3
    pd.testing.assert_frame_equal(_numbers(read_results(tmp_path / "again" / "results.parquet")),
                                  _numbers(read_results(out1)))
    # The same --out: every weld is done already (resume), nothing is even looked up.
    again, _ = _batch(world, out1)
    assert (again.skipped, again.rows_written) == (3, 0) and calls.compute == [] and calls.loads == 0


def test_explain_earlier_makes_batch_cost_only_the_fusion(world, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "cache"))
    ck = load_checkpoint(world["ck"], backbone_dir=world["bdir"], device="cpu")
    explain_welds(ck, load_welds(world["welds"] / WELDS[1], **read_options(ck)))
    calls = Calls(monkeypatch)
    _batch(world, tmp_path / "r" / "results.parquet")
    assert sorted({w for _, w in calls.compute}) == [WELDS[0], WELDS[2]]     # the weld explain saw: cached
    assert len(calls.compute) == 2 * len(MODALITIES)


def test_a_decoding_worker_process_gives_the_same_rows(world, first_run, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(first_run[3]))
    out = tmp_path / "w" / "results.parquet"
    _batch(world, out, workers=1)
    pd.testing.assert_frame_equal(_numbers(read_results(out)), _numbers(read_results(first_run[0])))


# --------------------------------------------------------------------------- shared encodings

def test_same_encoder_weights_share_one_key_and_one_encoding(world, first_run, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "cache"))
    opts = dict(backbone_dir=str(world["bdir"]), device="cpu")
    a, twin, other = (BatchCheckpoint.load(str(world[k]), **opts) for k in ("ck", "twin", "other"))
    assert a.sha256 != twin.sha256 and a.config_key == twin.config_key != other.config_key
    calls = Calls(monkeypatch)
    out = tmp_path / "shared" / "results.parquet"
    summary, notes = _batch(world, out, checkpoints=[world["ck"], world["twin"]])
    assert summary.rows_written == 2 * len(WELDS)
    assert len(calls.compute) == len(WELDS) * len(MODALITIES) and calls.loads == 1      # once for both
    assert "same encoder weights" in notes[0] and "best_model.pth, epoch_13.pth" in notes[0]
    df = read_results(out)
    mine = _numbers(df[df.checkpoint_sha256 == a.sha256])
    pd.testing.assert_frame_equal(mine, _numbers(read_results(first_run[0])))
    theirs = df[df.checkpoint_sha256 == twin.sha256]
    assert not np.allclose(theirs.shapley_video.to_numpy(float), mine.shapley_video.to_numpy(float))   # its own fusion
    # Different sensor weights: a key of its own, encoded on its own (only the sensor misses the cache).
    calls.compute.clear()
    _batch(world, tmp_path / "other" / "results.parquet", checkpoints=[world["ck"], world["other"]])
    assert sorted(calls.compute) == sorted(("sensor", w) for w in WELDS)


def test_ray_engine_is_run_locally_and_says_so(world, first_run, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_DIR, str(first_run[3]))
    summary, notes = _batch(world, tmp_path / "ray" / "results.parquet", engine="ray")
    assert summary.engine == "local" and notes[0] == RAY_FALLBACK


# --------------------------------------------------------------------------- bad checkpoints

def test_a_missing_encoder_key_is_one_line_and_exit_2(world, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "cache"))
    bad = tmp_path / "bad"
    bad.mkdir()
    path, bdir, _ = build_upstream(bad, drop="sensor_encoder.input_proj.weight")
    r = run("batch", "--checkpoint", path, "--samples", world["welds"], "--out", tmp_path / "o.parquet",
            "--backbone-dir", bdir, "--device", "cpu", "--workers", "0")
    assert r.returncode == 2, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("error: ") and "sensor_encoder.input_proj.weight" in last and str(path) in last
    assert "Traceback" not in r.stderr
    assert "batch: weld 1/3 000100: video encoder" not in r.stderr      # stopped before any weld was encoded


def test_cli_options_reach_the_encoders(world, first_run, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(ENV_DIR, str(first_run[3]))
    import argparse
    p = argparse.ArgumentParser()
    add_batch_parser(p.add_subparsers())
    base = ["batch", "--checkpoint", str(world["ck"]), "--samples", str(world["welds"]),
            "--out", str(tmp_path / "o.parquet"), "--workers", "0"]
    with pytest.raises(InputError, match="--device"):
        cmd_batch(p.parse_args(base + ["--device", "tpu"]))
    # Without --backbone-dir the tiny weights match no published configuration: one line, naming the file.
    with pytest.raises(InputError, match="no configuration matches"):
        cmd_batch(p.parse_args(base + ["--device", "cpu", "--out", str(tmp_path / "n.parquet")]))
    assert cmd_batch(p.parse_args(base + ["--device", "cpu", "--backbone-dir", str(world["bdir"])])) == 0
    err = capsys.readouterr().err
    assert "from the feature cache" in err and "batch: 3/3 welds (100%)" in err
