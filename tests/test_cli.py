"""The CLI as a user runs it: a subprocess, JSON out, exit 2 and one line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from factories import random_module, small_config

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fusion_core", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    cfg = small_config(7, num_heads=2)
    m = random_module(cfg, 7)
    ck = d / "model.pt"
    torch.save({"epoch": 2, "model_state_dict": {f"fusion.{k}": v for k, v in m.state_dict().items()},
                "config": {"num_heads": 2}, "best_metric": np.float32(0.5)}, ck)
    ck2 = d / "model_b.safetensors"
    save_file(random_module(cfg, 8).state_dict(), str(ck2))
    rng = np.random.default_rng(0)
    arrays = {m_: rng.normal(size=(2, s, cfg.input_dim(m_))).astype(np.float32)
              for m_, s in (("video", 4), ("image", 5), ("audio", 6), ("sensor", 9))}
    arrays["sensor_mask"] = np.array([[1] * 9, [1] * 5 + [0] * 4], dtype=np.uint8)
    feats = d / "feats.npz"
    np.savez(feats, **arrays)
    return d, cfg, ck, ck2, feats, arrays


def test_info(setup):
    d, cfg, ck, *_ = setup
    r = run("info", ck)
    assert r.returncode == 0, r.stderr
    assert "heads         2 (from checkpoint (config.num_heads))" in r.stdout
    assert "epoch         2" in r.stdout
    j = json.loads(run("info", ck, "--json").stdout)
    assert j["dims"]["hidden"] == cfg.hidden_dim and j["layout"] == "v1"


def test_explain_json_schema(setup):
    d, cfg, ck, ck2, feats, arrays = setup
    out = d / "out.json"
    r = run("explain", "--checkpoint", ck, "--features", feats, "--out", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    assert set(j["checkpoint"]) >= {"sha256", "layout", "dims", "heads", "heads_source"}
    assert j["target"] == "cosine" and j["baseline"] == "drop-attention"
    assert len(j["results"]) == 2
    r0 = j["results"][1]
    a = np.array(r0["attention"]["sensor"])
    assert a.shape == (2, cfg.num_fusion_tokens, 9)
    np.testing.assert_allclose(a.sum(-1), 1, atol=1e-5)
    assert np.all(a[..., 5:] == 0)                      # padded positions
    assert np.array(r0["relevance"]["video"]).shape == (cfg.num_fusion_tokens, 4)
    assert np.array(r0["value_norms"]["audio"]).shape == (2, cfg.num_fusion_tokens, 6)
    assert {"shapley", "leave_one_out"} <= set(r0["contributions"])
    assert set(r0["contributions"]["shapley"]) == {"video", "image", "audio", "sensor"}
    assert abs(r0["efficiency_gap"]) < 1e-6
    phi = sum(r0["contributions"]["shapley"].values())
    assert phi == pytest.approx(r0["coalition_values"]["video+image+audio+sensor"] - r0["coalition_values"]["none"],
                                abs=1e-6)


def test_compare_json(setup):
    d, cfg, ck, ck2, feats, _ = setup
    out = d / "cmp.json"
    r = run("compare", "--checkpoint", ck, "--checkpoint", ck2, "--features", feats, "--heads", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    j = json.loads(out.read_text())
    js = j["results"][0]["js_divergence"]["sensor"]
    assert len(js) == cfg.num_fusion_tokens and all(0 < v <= 1 for v in js)
    assert set(j["results"][0]["delta_contributions"]["shapley"]) == {"video", "image", "audio", "sensor"}


def bad_inputs(d, cfg, arrays):
    cases = {}
    def npz(name, **arr):
        p = d / name
        np.savez(p, **arr)
        return p
    cases["nan"] = ("features", npz("nan.npz", **{**arrays, "video": np.full_like(arrays["video"], np.nan)}), "NaN")
    cases["inf"] = ("features", npz("inf.npz", **{**arrays, "audio": np.full_like(arrays["audio"], np.inf)}), "NaN/Inf")
    cases["rank"] = ("features", npz("rank.npz", **{**arrays, "image": np.zeros((2, 2, 3, 4), np.float32)}), "shape")
    wrong = {k: v for k, v in arrays.items()}
    wrong["video"] = np.zeros((2, 4, cfg.video_dim + 1), np.float32)
    cases["dims"] = ("features", npz("dims.npz", **wrong), "expects")
    cases["none"] = ("features", npz("none.npz", foo=np.zeros(3)), "no modality")
    cases["missing"] = ("features", d / "does_not_exist.npz", "not found")
    (d / "garbage.npz").write_bytes(b"garbage")
    cases["garbage"] = ("features", d / "garbage.npz", "not a readable")
    (d / "feat.csv").write_text("a,b")
    cases["suffix"] = ("features", d / "feat.csv", "unsupported")
    return cases


@pytest.mark.parametrize("case", ["nan", "inf", "rank", "dims", "none", "missing", "garbage", "suffix"])
def test_bad_features_exit_2_with_one_line(setup, case):
    d, cfg, ck, ck2, feats, arrays = setup
    kind, path, expect = bad_inputs(d, cfg, arrays)[case]
    r = run("explain", "--checkpoint", ck, "--features", path, "--out", d / "x.json")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert str(path) in r.stderr and expect in r.stderr


def test_bad_checkpoint_and_arguments_exit_2(setup, tmp_path):
    d, cfg, ck, ck2, feats, _ = setup
    (tmp_path / "z.pt").write_bytes(b"")
    for args, expect in [
        (("info", tmp_path / "z.pt"), "empty"),
        (("info", tmp_path / "nope.safetensors"), "not found"),
        (("explain", "--checkpoint", ck, "--features", feats, "--target", "logit", "--out", tmp_path / "o.json"),
         "classifier"),
        (("explain", "--checkpoint", ck, "--features", feats, "--baseline", "nonsense", "--out", tmp_path / "o.json"),
         "invalid choice"),
        (("info", ck, "--heads", "0"), "must be positive"),
    ]:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert expect in r.stderr and "Traceback" not in r.stderr


def test_weld_explanations_are_bit_identical_across_processes(tmp_path):
    """Same checkpoint and welds → byte-identical JSON from two separate processes."""
    from fusion_core.models.encoders.demo import EncoderConfig
    from fusion_core.models.fusion import FusionConfig
    from fusion_core.vocab import MODALITIES
    from fusion_core.training.synth import generate_dataset
    from fusion_core.training.train import WeldModel, save_model
    torch.manual_seed(3)
    enc = EncoderConfig()
    model = WeldModel(enc, FusionConfig(**{f"{m}_dim": enc.dim(m) for m in MODALITIES}, hidden_dim=16,
                                        num_fusion_tokens=2, num_heads=2), [0, 2, 3, 9])
    ck = tmp_path / "m.safetensors"
    save_model(ck, model.eval())
    generate_dataset(tmp_path / "welds", 3, seed=4)
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}.json"
        r = run("explain", "--checkpoint", ck, "--sample", tmp_path / "welds", "--out", out)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    res = json.loads(outs[0])["results"]
    assert [r["weld"] for r in res] == sorted(r["weld"] for r in res) and len(res) == 3
    assert all(r["prediction"]["class"] for r in res)


def test_output_cut_short_by_the_reader_is_not_an_error():
    # `fusion-core info CKPT | head -1`: the pipe closes early; no "internal error", exit 0.
    ck = ROOT / "sample_data" / "checkpoints" / "demo-best.safetensors"
    r = subprocess.run(f"{sys.executable} -m fusion_core info {ck} | head -1; echo \"status=${{PIPESTATUS[0]}}\"",
                       shell=True, executable="/bin/bash", capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.splitlines()[0].startswith("file") and "status=0" in r.stdout
    assert r.stderr == ""
