"""`batch`: every weld × checkpoint into Parquet, resumable, local and Ray, bit for bit.

One small world for the module: five synthetic welds, two broken ones (an undecodable
sensor log, an ambiguous pair of logs), and two tiny checkpoints trained here (small
encoder config, so a run takes seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fusion_core.batch.engines import add_batch_parser, cmd_batch, run_batch
from fusion_core.batch.plan import list_weld_sources, read_source, source_digest
from fusion_core.batch.store import ResultStore, parts_dir, read_maps, read_results
from fusion_core.models.encoders.demo import EncoderConfig
from fusion_core.errors import InputError
from fusion_core.vocab import MODALITIES
from fusion_core.io.containers import load_welds
from fusion_core.training.synth import generate_dataset, generate_weld
from fusion_core.training.train import train

REPO = Path(__file__).resolve().parent.parent
SMALL = dict(video_dim=16, image_dim=16, audio_dim=16, sensor_dim=16, sensor_len=24, audio_len=20,
             n_mels=16, audio_mean=[-4.0] * 16, audio_std=[2.0] * 16, video_segments=6,
             video_size=[32, 48], image_size=[32, 64], max_images=3, sensor_heads=2)
GOOD = 5
BAD_CSV, AMBIGUOUS = "009900", "009800"
VOLATILE = ["maps_file", "maps_index"]   # where a row's maps sit depends on chunking, not on numbers


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    welds_dir = root / "welds"
    generate_dataset(welds_dir, GOOD, seed=11, duration_s=4.0)   # the shortest the generator allows
    good = load_welds(welds_dir)
    ck_dir = root / "ck"
    train(good, ck_dir, epochs=1, seed=3, encoder_config=EncoderConfig(**SMALL), log=lambda *_: None,
          hidden_dim=16, num_heads=2, num_fusion_tokens=2, batch_size=4, threads=1)
    ck_a = ck_dir / "demo-best.safetensors"
    # A second checkpoint that differs: same model with a nudged classifier (no second training).
    with safe_open(str(ck_a), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["classifier.bias"] = tensors["classifier.bias"] + torch.linspace(-0.5, 0.5, len(tensors["classifier.bias"]))
    ck_b = ck_dir / "other.safetensors"
    save_file(tensors, str(ck_b), metadata={**meta, "epoch": "7"})
    # Broken welds: a sensor log with text in a number column; two logs, neither named after the weld.
    generate_weld(BAD_CSV, 0, 5, welds_dir, duration_s=4.0)
    csv = welds_dir / BAD_CSV / f"{BAD_CSV}.csv"
    lines = csv.read_text().splitlines()
    lines[3] = ",".join(c if i != 5 else "lots" for i, c in enumerate(lines[3].split(",")))
    csv.write_text("\n".join(lines) + "\n")
    for f in list((welds_dir / BAD_CSV).iterdir()):    # the CSV alone: with other files, it is read without it
        if f != csv:
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    generate_weld(AMBIGUOUS, 0, 6, welds_dir, duration_s=4.0)
    (welds_dir / AMBIGUOUS / f"{AMBIGUOUS}.csv").rename(welds_dir / AMBIGUOUS / "a.csv")
    shutil.copy(welds_dir / AMBIGUOUS / "a.csv", welds_dir / AMBIGUOUS / "b.csv")
    return {"root": root, "welds": welds_dir, "good": good, "ck": [str(ck_a), str(ck_b)]}


@pytest.fixture(scope="module")
def first_run(world):
    out = world["root"] / "run1" / "results.parquet"
    seen = []
    summary = run_batch(world["ck"], world["welds"], out, workers=0, chunk_rows=5,
                        progress=lambda p, final=False: seen.append(p.line()))
    return out, summary, seen


def _numbers(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=VOLATILE).reset_index(drop=True)


def test_weld_sources_match_the_readers(world, first_run, tmp_path):
    good_ids = [w.weld_id for w in world["good"]]
    digests = {w.weld_id: w.digest for w in world["good"]}
    srcs = list_weld_sources(world["welds"])
    assert [s.weld_id for s in srcs] == good_ids + [AMBIGUOUS, BAD_CSV]
    amb = next(s for s in srcs if s.weld_id == AMBIGUOUS)
    assert "ambiguous sensor CSV" in amb.problem
    for s in srcs[:GOOD]:
        assert s.problem is None and source_digest(*read_source(s)) == digests[s.weld_id]
    # The same welds in a zip with a top folder, junk beside them; and one weld folder alone.
    zpath = tmp_path / "welds.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for w in world["good"][:2]:
            for f in sorted((world["welds"] / w.weld_id).rglob("*")):
                if f.is_file():
                    zf.write(f, f"top/{f.relative_to(world['welds']).as_posix()}")
        zf.writestr("__MACOSX/top/._x.csv", b"junk")
    zsrc = list_weld_sources(zpath)
    assert [s.weld_id for s in zsrc] == [w.weld_id for w in load_welds(zpath)] == good_ids[:2]
    assert [source_digest(*read_source(s)) for s in zsrc] == [digests[i] for i in good_ids[:2]]
    zout = tmp_path / "zip" / "results.parquet"
    run_batch(world["ck"], zpath, zout, workers=0)          # read from the zip: same rows, same numbers
    from_zip, from_folder = read_results(zout), read_results(first_run[0])
    from_folder = from_folder[from_folder.weld_id.isin(good_ids[:2])]
    assert list(from_zip.source) == [f"top/{i}" for i in good_ids[:2]] * 2
    pd.testing.assert_frame_equal(_numbers(from_zip).drop(columns="source"),
                                  _numbers(from_folder).drop(columns="source"))
    one = list_weld_sources(world["welds"] / good_ids[0])
    assert [(s.weld_id, s.source) for s in one] == [(good_ids[0], ".")]
    with pytest.raises(InputError, match="no such file"):
        list_weld_sources(tmp_path / "missing")
    with pytest.raises(InputError, match="no weld found"):
        list_weld_sources(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    (d / "notes.txt").write_text("nothing here")
    return d


def test_rows_schema_values_and_error_rows(world, first_run):
    out, summary, seen = first_run
    assert (summary.welds, summary.errors, summary.skipped) == (GOOD + 2, 2, 0)
    assert summary.rows_written == summary.total_rows == 2 * (GOOD + 2)
    assert any("ETA" in line for line in seen) and seen[-1].startswith(f"batch: {GOOD + 2}/{GOOD + 2} welds")
    df = read_results(out)
    assert len(df) == 2 * (GOOD + 2) and not df.duplicated(["source", "checkpoint_sha256"]).any()
    for col in ["weld_id", "weld_digest", "checkpoint_sha256", "class_code", "class_name", "truth", "notes",
                "predicted", "predicted_prob", "efficiency_gap", "top_modality", "error", "maps_file", "maps_index",
                "attn_t1_sensor_entropy", "attn_t0_video_peak", "attn_t0_audio_peak_time",
                "attn_t1_sensor_mass_in_truth"] + [f"{k}_{m}" for k in ("shapley", "leave_one_out", "attention",
                                                                       "relevance") for m in MODALITIES]:
        assert col in df.columns, col
    bad = df[df.error.notna()]
    assert sorted(bad.weld_id.unique()) == [AMBIGUOUS, BAD_CSV] and len(bad) == 4
    # Errors name the file relative to --samples, as the readers would inside the folder.
    assert bad[bad.weld_id == BAD_CSV].error.str.startswith(f"{BAD_CSV}/{BAD_CSV}.csv: column").all()
    assert bad[bad.weld_id == BAD_CSV].error.str.contains("not a number").all()
    assert bad[bad.weld_id == AMBIGUOUS].error.str.startswith(f"{AMBIGUOUS}: ambiguous sensor CSV").all()
    assert bad[bad.weld_id == BAD_CSV].weld_digest.notna().all()      # read fine, failed to decode
    assert bad[bad.weld_id == AMBIGUOUS].error.str.contains("ambiguous").all()
    assert bad.shapley_video.isna().all() and bad.maps_file.isna().all()
    assert bad.notes.isna().all()      # never decoded: nothing known about what was left out

    ok = df[df.error.isna()]
    assert (ok.notes == "").all()      # every file read
    probs = ok[[c for c in df.columns if c.startswith("prob_")]].to_numpy(float)
    assert np.allclose(np.nansum(probs, 1), 1.0)
    assert (ok.efficiency_gap.abs() < 1e-6).all()
    shap = ok[[f"shapley_{m}" for m in MODALITIES]].to_numpy(float)
    assert (ok.top_modality.to_numpy() == np.asarray(MODALITIES)[shap.argmax(1)]).all()
    assert set(ok.checkpoint_epoch) == {1, 7}
    truth = [json.loads(t) for t in ok.truth]
    assert [t["class"] for t in truth] == list(ok.class_code)
    assert ((ok.predicted_code == ok.class_code) == ok.correct).all()
    ent = ok[[f"attn_t{t}_{m}_entropy" for t in range(2) for m in MODALITIES]].to_numpy(float)
    assert np.isfinite(ent).all() and (ent >= 0).all()
    assert ok.attn_t0_image_peak_time.isna().all() and ok.attn_t0_sensor_peak_time.notna().all()
    defect = ok[ok.class_code != 0]
    mass = defect[[f"attn_t{t}_{m}_mass_in_truth" for t in range(2) for m in ("video", "audio", "sensor")]]
    assert ((mass >= 0) & (mass <= 1)).all().all() and ok[ok.class_code == 0].attn_t0_sensor_mass_in_truth.isna().all()
    rel = defect[[f"relevance_in_truth_{m}" for m in ("video", "audio", "sensor")]]
    # Undefined (NaN) only where the modality got no positive relevance at all.
    no_mass = defect[[f"relevance_{m}" for m in ("video", "audio", "sensor")]].to_numpy(float) == 0
    assert (rel.notna().to_numpy() | no_mass).all() and ((rel.fillna(0) >= 0) & (rel.fillna(0) <= 1)).all().all()
    assert ok[ok.class_code == 0].relevance_in_truth_sensor.isna().all()

    # Same numbers as the pipeline's own explain of the same welds (batch of 5 vs padded 16:
    # different matrix kernels, so equal to rounding).
    from fusion_core.models.checkpoint import load_checkpoint
    from fusion_core.explain.welds import explain_welds
    ck = load_checkpoint(world["ck"][0])
    exp = explain_welds(ck, world["good"])
    mine = ok[ok.checkpoint_sha256 == ck.info.sha256].set_index("weld_id").loc[exp.ids]
    for method in ("shapley", "leave_one_out", "attention", "relevance"):
        np.testing.assert_allclose(mine[[f"{method}_{m}" for m in MODALITIES]].to_numpy(float),
                                   exp.contributions[method], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine.predicted_prob.to_numpy(float), exp.probabilities.max(1), rtol=1e-5)

    # Maps: full per-head attention, positions, and the weld they belong to.
    row = mine.reset_index().iloc[2]
    maps = read_maps(out, row)
    heads = ck.info.heads
    for m in MODALITIES:
        a = maps["attention"][m]
        assert a.shape == (heads, 2, ck.encoders.config.seq_len(m)) and maps["mask"][m].shape == a.shape[-1:]
        np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
        assert len(maps["positions"][m]) == a.shape[-1]
    np.testing.assert_allclose(maps["attention"]["sensor"], exp.attention["sensor"][2], rtol=1e-5, atol=1e-7)
    assert maps["coalition_values"].shape == (16,) and maps["token_shapley"].shape == (2, 4)
    with pytest.raises(InputError, match="no maps"):
        read_maps(out, bad.iloc[0])


def test_rerun_in_worker_processes_is_bit_identical(world, first_run, tmp_path):
    out1, *_ = first_run
    out2 = tmp_path / "again" / "results.parquet"
    run_batch(world["ck"], world["welds"], out2, workers=1, chunk_rows=5)   # a spawned decoding worker
    assert out1.read_bytes() == out2.read_bytes()
    maps1 = sorted(p.name for p in parts_dir(out1).glob("maps-*.npz"))
    assert maps1 == sorted(p.name for p in parts_dir(out2).glob("maps-*.npz")) and maps1
    for name in maps1:
        assert (parts_dir(out1) / name).read_bytes() == (parts_dir(out2) / name).read_bytes()


def test_resume_skips_done_retries_failed_and_recovers_lost_chunks(world, first_run, tmp_path):
    src, *_ = first_run
    out = tmp_path / "r" / "results.parquet"
    shutil.copytree(parts_dir(src), parts_dir(out))
    reference = _numbers(read_results(src))
    again = run_batch(world["ck"], world["welds"], out, workers=0, chunk_rows=5)
    assert (again.skipped, again.errors, again.rows_written) == (GOOD, 2, 4)   # only the failed welds rerun
    pd.testing.assert_frame_equal(_numbers(read_results(out)), reference)
    # Lose the last two chunks (as a kill would, or worse): the rerun recomputes just those rows.
    store = ResultStore(out)
    for p in store.row_parts()[-2:]:
        p.unlink()
    done_before = len(store.done_keys())
    again = run_batch(world["ck"], world["welds"], out, workers=0, chunk_rows=5)
    assert again.rows_written == 2 * GOOD + 4 - done_before
    pd.testing.assert_frame_equal(_numbers(read_results(out)), reference)
    # Other settings into the same results: refused, one line.
    with pytest.raises(InputError, match="other settings"):
        run_batch(world["ck"], world["welds"], out, workers=0, baseline="zeros")


def _cli() -> list[str]:
    return [sys.executable, "-m", "fusion_core", "batch"]


def test_killed_run_loses_at_most_a_chunk(world, first_run, tmp_path, capfd):
    out = tmp_path / "k" / "results.parquet"
    cmd = _cli() + ["--samples", str(world["welds"]), "--out", str(out), "--workers", "0", "--chunk-rows", "2"]
    for ck in world["ck"]:
        cmd += ["--checkpoint", ck]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (parts_dir(out) / "rows-000000.parquet").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no chunk written in 60 s"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert "ETA" in err
    kept = len(ResultStore(out).done_keys())
    assert 0 < kept < 2 * GOOD
    again = run_batch(world["ck"], world["welds"], out, workers=0, chunk_rows=2)
    assert again.rows_written == 2 * GOOD + 4 - kept
    assert not list(parts_dir(out).glob(".*.tmp"))
    pd.testing.assert_frame_equal(_numbers(read_results(out)), _numbers(read_results(first_run[0])))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # Ray Data's own, about its own settings
def test_ray_engine_gives_identical_numbers(world, first_run, tmp_path):
    pytest.importorskip("ray.data")
    import ray
    out = tmp_path / "ray" / "results.parquet"
    summary = run_batch(world["ck"], world["welds"], out, engine="ray", workers=2)
    assert not ray.is_initialized()          # the local Ray it started is gone
    assert (summary.errors, summary.total_rows) == (2, 2 * (GOOD + 2))
    local, remote = read_results(first_run[0]), read_results(out)
    pd.testing.assert_frame_equal(_numbers(remote), _numbers(local))
    for i in (0, GOOD + 2):   # first good weld of each checkpoint
        a, b = read_maps(first_run[0], local.iloc[i]), read_maps(out, remote.iloc[i])
        for m in MODALITIES:
            np.testing.assert_array_equal(a["attention"][m], b["attention"][m])
            np.testing.assert_array_equal(a["relevance"][m], b["relevance"][m])
        np.testing.assert_array_equal(a["coalition_values"], b["coalition_values"])


def test_bad_input_is_one_line_and_exit_2(world, tmp_path):
    r = subprocess.run(_cli() + ["--checkpoint", world["ck"][0], "--samples", str(tmp_path / "nope"),
                                 "--out", str(tmp_path / "o.parquet"), "--workers", "0"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such file" in r.stderr, r.stderr
    p = argparse.ArgumentParser()
    add_batch_parser(p.add_subparsers())
    base = ["batch", "--checkpoint", world["ck"][0], "--samples", str(world["welds"]),
            "--out", str(tmp_path / "o.parquet")]
    for extra, msg in ((["--workers", "two"], "not a whole number"), (["--engine", "spark"], "unknown engine"),
                       (["--baseline", "reference-mean"], "not available"), (["--target", "anomaly"], "not available"),
                       (["--ray-address", "x:1"], "only makes sense")):
        with pytest.raises(InputError, match=msg):
            cmd_batch(p.parse_args(base + extra))
    fusion_only = tmp_path / "fusion.safetensors"
    with safe_open(world["ck"][0], framework="pt") as f:
        save_file({k: f.get_tensor(k) for k in f.keys() if k.startswith("fusion.")}, str(fusion_only))
    with pytest.raises(InputError, match="no built-in encoders"):
        run_batch([fusion_only], world["welds"], tmp_path / "o.parquet", workers=0)
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        run_batch(world["ck"][:1], world["welds"], tmp_path / "dir.parquet", workers=0)
