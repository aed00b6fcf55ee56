"""Checkpoints as the upstream project (bluuueheart/Weld-Anomaly-Detection) saves them,
built here with the project's own code in upstream's formats:

- its `src/train.py` dict: epoch, global_step, model_state_dict, optimizer/scheduler
  state, best_metric (a numpy scalar) and its *training* config (no head count);
- `QuadModalSOTAModel` keys: video_encoder.model.*, image_encoder.backbone.*,
  audio_encoder.model.*, sensor_encoder.*, fusion.*, feature_norm.* (a LayerNorm);
- its newest fusion config: hidden 384, 2 fusion tokens, 4 heads; the dummy fusion
  Linear(ΣD, 2H) → ReLU → Dropout → Linear(2H, H).
"""
from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusion_core.cli import main
from fusion_core.errors import InputError
from fusion_core.explain.engine import explain
from fusion_core.io.features import FeatureBatch
from fusion_core.models.checkpoint import OUTPUT_EMBEDDING, OUTPUT_FUSED, load_checkpoint
from fusion_core.models.dummy import DummyCrossAttentionFusion
from fusion_core.models.fusion import CrossAttentionFusionModule, FusionConfig
from fusion_core.vocab import MODALITIES

REPO = Path(__file__).resolve().parent.parent
# Upstream's newest fusion: hidden 384, 2 tokens, 4 heads; its encoders' widths (video 1024,
# DINOv3 1280, AST 768, sensor 128) shrunk here to keep the test fast where they do not matter.
UPSTREAM = FusionConfig(video_dim=48, image_dim=40, audio_dim=32, sensor_dim=16, hidden_dim=384,
                        num_fusion_tokens=2, num_heads=4, dropout=0.2, layout="v1")
TRAINING_CONFIG = {"learning_rate": 1e-4, "batch_size": 32, "num_epochs": 100, "use_dummy": False,
                   "temperature": 0.07}        # what upstream's train.py saves: no model sizes, no heads


def trained_fusion(cfg: FusionConfig = UPSTREAM, seed: int = 0) -> CrossAttentionFusionModule:
    """A module whose attention is far from uniform, so a wrong head count shows."""
    torch.manual_seed(seed)
    m = CrossAttentionFusionModule(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        m.fusion_tokens.mul_(20)
    return m.eval()


def upstream_file(path: Path, fusion: nn.Module, *, ddp_duplicate: bool = False, feature_norm: bool = True,
                  extra: dict | None = None) -> Path:
    H = fusion.hidden_dim if isinstance(fusion, DummyCrossAttentionFusion) else fusion.config.hidden_dim
    sd = {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    if ddp_duplicate:
        sd.update({f"module.fusion.{k}": v.clone() for k, v in fusion.state_dict().items()})
    g = torch.Generator().manual_seed(1)
    if feature_norm:
        sd["feature_norm.weight"] = 1 + 0.3 * torch.randn(H, generator=g)
        sd["feature_norm.bias"] = 0.3 * torch.randn(H, generator=g)
    sd.update({"video_encoder.model.embeddings.patch_embeddings.proj.weight": torch.randn(8, 3, 2, 4, 4, generator=g),
               "image_encoder.backbone.embeddings.cls_token": torch.randn(1, 1, 8, generator=g),
               "audio_encoder.model.embeddings.cls_token": torch.randn(1, 1, 8, generator=g),
               "sensor_encoder.input_proj.weight": torch.randn(16, 6, generator=g),
               "sensor_encoder.transformer.layers.0.self_attn.in_proj_weight": torch.randn(48, 16, generator=g)})
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    obj = {"epoch": 41, "global_step": 5166, "model_state_dict": sd, "optimizer_state_dict": opt.state_dict(),
           "scheduler_state_dict": {"last_epoch": 41}, "best_metric": np.float64(0.912), "config": TRAINING_CONFIG}
    obj.update(extra or {})
    torch.save(obj, path)
    return path


def features(cfg: FusionConfig, B: int = 3, seed: int = 2) -> FeatureBatch:
    g = torch.Generator().manual_seed(seed)
    lengths = {"video": 9, "image": 6, "audio": 11, "sensor": 7}
    return FeatureBatch({m: torch.randn(B, lengths[m], cfg.input_dim(m), generator=g) for m in MODALITIES},
                        ids=[f"w{b}" for b in range(B)], source="feats")


# --------------------------------------------------------------------------- head count

def test_upstream_training_file_gets_the_published_head_count_and_matches_nn_multiheadattention(tmp_path):
    fusion = trained_fusion()
    path = upstream_file(tmp_path / "best_model.pth", fusion)
    ck = load_checkpoint(path)
    i = ck.info
    assert (i.heads, i.heads_assumed) == (4, False)
    assert i.heads_source.startswith("published configuration: bluuueheart/Weld-Anomaly-Detection")
    assert i.epoch == 41 and i.metric == pytest.approx(0.912)
    assert "optimizer_state_dict" in i.ignored and ck.encoders is None
    fb = features(UPSTREAM)
    exp = explain(ck, fb)
    # The independent reference: nn.MultiheadAttention with the checkpoint's own weights and 4 heads.
    for m in MODALITIES:
        mha = nn.MultiheadAttention(384, 4, batch_first=True)
        mha.load_state_dict(fusion.cross_attn(m).state_dict())
        mha.eval()
        keys = fusion.proj(m)(fb.features[m])
        q = fusion.fusion_tokens.expand(fb.batch_size, -1, -1)
        with torch.no_grad():
            _, w = mha(q, keys, keys, need_weights=True, average_attn_weights=False)
        np.testing.assert_allclose(exp.attention[m], w.numpy(), atol=2e-6)
    # The wrong count changes the answer, and is reported, not silent.
    wrong = load_checkpoint(path, heads=8)
    assert wrong.info.heads == 8 and wrong.info.heads_source == "caller (--heads)"
    assert any("says 4" in n for n in wrong.info.notes)
    exp8 = explain(wrong, fb)
    assert np.abs(exp8.attention["sensor"].mean(1) - exp.attention["sensor"].mean(1)).max() > 0.05


def test_an_unknown_head_count_is_assumed_out_loud(tmp_path, capsys):
    cfg = FusionConfig(video_dim=12, image_dim=10, audio_dim=8, sensor_dim=6, hidden_dim=64,
                       num_fusion_tokens=3, num_heads=4)
    path = upstream_file(tmp_path / "ckpt.pth", trained_fusion(cfg))
    ck = load_checkpoint(path)
    assert ck.info.heads == 8 and ck.info.heads_assumed and ck.info.heads_source.startswith("assumed")
    assert any("assumed" in n for n in ck.info.notes)
    feats = tmp_path / "f.npz"
    np.savez(feats, **{m: x.numpy() for m, x in features(cfg).features.items()})
    out = tmp_path / "out.json"
    assert main(["explain", "--checkpoint", str(path), "--features", str(feats), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "assumed" in err[0] and "--heads" in err[0]
    payload = json.loads(out.read_text())
    assert payload["checkpoint"]["heads_assumed"] is True
    assert any("assumed" in n for n in payload["notes"])
    # Given by the caller: no warning, no assumption.
    assert main(["explain", "--checkpoint", str(path), "--features", str(feats), "--heads", "4", "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert json.loads(out.read_text())["checkpoint"]["heads_source"] == "caller (--heads)"


@pytest.mark.parametrize("stored, ok", [("4", True), (4.0, True), (np.int64(4), True), ("abc", False),
                                        (float("nan"), False), (4.5, False), (True, False), (0, False)])
def test_head_count_in_metadata_is_read_or_refused_by_name(tmp_path, stored, ok):
    cfg = FusionConfig(video_dim=12, image_dim=10, audio_dim=8, sensor_dim=6, hidden_dim=64,
                       num_fusion_tokens=3, num_heads=4)
    path = upstream_file(tmp_path / "c.pth", trained_fusion(cfg), extra={"config": {"fusion": {"num_heads": stored}}})
    if ok:
        ck = load_checkpoint(path)
        assert (ck.info.heads, ck.info.heads_source) == (4, "checkpoint (config.fusion.num_heads)")
    else:
        with pytest.raises(InputError, match=r"config\.fusion\.num_heads is .*not a whole positive number") as e:
            load_checkpoint(path)
        assert str(path) in str(e.value)


def test_sidecar_and_config_file_give_the_head_count(tmp_path):
    cfg = FusionConfig(video_dim=12, image_dim=10, audio_dim=8, sensor_dim=6, hidden_dim=64,
                       num_fusion_tokens=3, num_heads=2)
    path = upstream_file(tmp_path / "run7.pth", trained_fusion(cfg))
    (tmp_path / "run7.json").write_text(json.dumps({"fusion": {"num_heads": 2}}))
    ck = load_checkpoint(path)
    assert (ck.info.heads, ck.info.heads_source) == (2, "sidecar run7.json (fusion.num_heads)")
    (tmp_path / "run7.json").unlink()
    # Upstream's own configs/model_config.py, read as literals (an expression is skipped, never run).
    py = tmp_path / "model_config.py"
    py.write_text(textwrap.dedent("""
        import os
        VIDEO_MODEL_PATH = os.environ["NEVER_EVALUATED"]
        SENSOR_ENCODER = {"input_dim": 6, "embed_dim": 128, "num_heads": 8}
        FUSION = {"hidden_dim": 64, "num_fusion_tokens": 3, "num_heads": 2, "l2_normalize": True}
    """))
    ck = load_checkpoint(path, config=py)
    assert (ck.info.heads, ck.info.heads_source) == (2, "config file model_config.py (FUSION.num_heads)")
    (tmp_path / "empty.json").write_text("{}")
    with pytest.raises(InputError, match="no fusion head count"):
        load_checkpoint(path, config=tmp_path / "empty.json")


def test_head_count_that_does_not_divide_hidden_is_an_error(tmp_path):
    path = upstream_file(tmp_path / "c.pth", trained_fusion())
    with pytest.raises(InputError, match="384 is not divisible by 5 heads"):
        load_checkpoint(path, heads=5)


# --------------------------------------------------------------------------- files

def test_same_weights_under_two_prefixes(tmp_path):
    fusion = trained_fusion()
    same = load_checkpoint(upstream_file(tmp_path / "same.pth", fusion, ddp_duplicate=True))
    assert any("appear twice" in n for n in same.info.notes)
    sd = {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    sd.update({f"module.fusion.{k}": v + 1 for k, v in fusion.state_dict().items()})
    torch.save({"model_state_dict": sd}, tmp_path / "differ.pth")
    with pytest.raises(InputError, match="ambiguous weights: 'fusion.fusion_tokens' and 'module.fusion.fusion_tokens'"):
        load_checkpoint(tmp_path / "differ.pth")


@pytest.mark.parametrize("shape, what", [((1, 0, 384), "0 fusion tokens"), ((1, 2, 0), "hidden size 0")])
def test_degenerate_fusion_is_refused_at_load(tmp_path, shape, what):
    sd = trained_fusion().state_dict()
    sd["fusion_tokens"] = torch.zeros(shape)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(InputError, match=what):
        load_checkpoint(tmp_path / "bad.pt")


def test_pickled_whole_module_is_refused_with_how_to_resave(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "whole.pt")
    with pytest.raises(InputError, match=r"nothing was run.*state_dict\(\)") as e:
        load_checkpoint(tmp_path / "whole.pt")
    assert "torch.nn.modules.linear.Linear" in str(e.value)


def test_big_training_file_is_read_lazily(tmp_path):
    """A training file dominated by frozen backbones loads with memory for the fusion only."""
    path = tmp_path / "big.pth"
    fusion = trained_fusion()
    sd = {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    sd["image_encoder.backbone.blob"] = torch.ones(160 * 1024 ** 2)          # 640 MB of "backbone"
    torch.save({"model_state_dict": sd, "config": TRAINING_CONFIG}, path)
    del sd
    # VmHWM, not ru_maxrss: Linux carries the parent's (pytest's) high-water mark across exec
    # into ru_maxrss, which would hide the child's own growth.
    code = textwrap.dedent(f"""
        import torch
        from fusion_core.models.checkpoint import load_checkpoint
        def hwm():
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        base = hwm()
        ck = load_checkpoint({str(path)!r})
        print(ck.info.heads, (hwm() - base) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    heads, grew_mb = map(int, out.split())
    assert heads == 4
    assert grew_mb < 200, f"loading grew the process by {grew_mb} MB for a 640 MB file"


# --------------------------------------------------------------------------- dummy fusion

def brute_force_shapley(value) -> np.ndarray:
    """Shapley by the permutation definition: 24 orders, marginal contribution of each player."""
    phi = np.zeros(4)
    for order in itertools.permutations(range(4)):
        have: set[int] = set()
        for p in order:
            phi[p] += value(have | {p}) - value(have)
            have.add(p)
    return phi / math.factorial(4)


def test_upstream_dummy_fusion_loads_and_its_shapley_matches_brute_force(tmp_path):
    dims = {"video": 12, "image": 10, "audio": 8, "sensor": 6}
    torch.manual_seed(3)
    up = nn.Sequential(nn.Linear(36, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 32)).eval()
    sd = {f"fusion.fusion_proj.{k}": v for k, v in up.state_dict().items()}
    torch.save({"model_state_dict": sd, "config": TRAINING_CONFIG}, tmp_path / "dummy.pth")
    ck = load_checkpoint(tmp_path / "dummy.pth")
    assert ck.info.architecture == "mean-pool" and ck.fusion.layout == "upstream"
    assert isinstance(ck.fusion.fusion_proj[1], nn.ReLU) and ck.info.heads is None
    g = torch.Generator().manual_seed(4)
    fb = FeatureBatch({m: torch.randn(2, 5, d, generator=g) for m, d in dims.items()}, ids=["a", "b"])
    exp = explain(ck, fb, target="cosine", baseline="zeros")
    pooled = torch.cat([fb.features[m].mean(1) for m in MODALITIES], -1)
    full = up(pooled)
    bounds = np.cumsum([0] + list(dims.values()))
    for b in range(2):
        def value(coalition, b=b):
            x = pooled[b].clone()
            for j in set(range(4)) - set(coalition):
                x[bounds[j]:bounds[j + 1]] = 0
            return float(F.cosine_similarity(up(x)[None], full[b][None]).item())
        np.testing.assert_allclose(exp.contributions["shapley"][b], brute_force_shapley(value), atol=1e-6)
        loo = [value(set(range(4))) - value(set(range(4)) - {j}) for j in range(4)]
        np.testing.assert_allclose(exp.contributions["leave_one_out"][b], loo, atol=1e-6)


def test_seed_dummy_layout_still_loads(tmp_path):
    torch.manual_seed(5)
    d = DummyCrossAttentionFusion(36, 32, layout="seed")
    torch.save(d.state_dict(), tmp_path / "seed_dummy.pt")
    ck = load_checkpoint(tmp_path / "seed_dummy.pt")
    assert ck.fusion.layout == "seed" and isinstance(ck.fusion.fusion_proj[1], nn.GELU)


# --------------------------------------------------------------------------- the real embedding

def test_cosine_and_anomaly_targets_use_upstreams_embedding(tmp_path):
    fusion = trained_fusion()
    ck = load_checkpoint(upstream_file(tmp_path / "c.pth", fusion))
    assert ck.info.output == OUTPUT_EMBEDDING and ck.embedding is not None
    bare = load_checkpoint(upstream_file(tmp_path / "n.pth", fusion, feature_norm=False))
    assert bare.info.output == OUTPUT_FUSED and bare.embedding is None
    sd = torch.load(tmp_path / "c.pth", weights_only=False)["model_state_dict"]
    fb, ref = features(UPSTREAM, B=3, seed=7), features(UPSTREAM, B=6, seed=8)

    def embedding(batch):  # independent: the module's own forward, then LayerNorm and L2 by hand
        with torch.no_grad():
            fused = fusion(*(batch.features[m] for m in MODALITIES))
            z = F.layer_norm(fused, (384,), sd["feature_norm.weight"], sd["feature_norm.bias"])
        return z / z.norm(dim=-1, keepdim=True)

    exp = explain(ck, fb, target="anomaly", reference=ref)
    want = torch.cdist(embedding(fb), embedding(ref)).topk(5, dim=1, largest=False).values.mean(1)
    np.testing.assert_allclose(exp.target_values, want.numpy(), rtol=1e-5)
    assert any("feature_norm" in n for n in exp.notes)
    # On the fused output instead, the numbers differ: the embedding matters.
    exp_bare = explain(bare, fb, target="anomaly", reference=ref)
    assert not np.allclose(exp_bare.target_values, exp.target_values, rtol=1e-3)
    cos = explain(ck, fb, target="cosine")
    assert np.allclose(cos.target_values, 1.0) and np.abs(cos.efficiency_gap).max() < 1e-9
