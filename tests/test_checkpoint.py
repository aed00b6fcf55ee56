"""Checkpoint loading: both published layouts, training dicts, safety, readable refusals."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fusion_core import InputError, load_checkpoint
from fusion_core.models.checkpoint import save_checkpoint
from fusion_core.models.dummy import DummyCrossAttentionFusion
from fusion_core.models.fusion import CrossAttentionFusionModule, FusionConfig, parameter_count

from factories import random_module, small_config

LATER = FusionConfig(video_dim=1024, image_dim=1280, audio_dim=768, sensor_dim=256, hidden_dim=384,
                     num_fusion_tokens=2, num_heads=4)


def test_seed_default_parameter_count():
    # The seed report's 4,234,240 does not match its own architecture.
    assert parameter_count(CrossAttentionFusionModule()) == 14_831_616


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_published_layout_keys_load_strictly(layout, tmp_path):
    cfg = small_config(1, layout=layout)
    m = random_module(cfg, 1)
    sd = m.state_dict()
    if layout == "v1":
        assert "video_proj.weight" in sd and "output_proj.weight" in sd
    else:
        assert "video_proj.1.weight" in sd and "output_proj.1.bias" in sd
    assert {"fusion_tokens", "audio_cross_attn.in_proj_weight", "aggregation.4.bias", "sensor_norm.weight"} <= set(sd)
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path))
    ck = load_checkpoint(path, heads=cfg.num_heads)
    assert ck.info.layout == layout and ck.info.heads_source == "caller (--heads)"
    assert ck.info.dims == {"video": cfg.video_dim, "image": cfg.image_dim, "audio": cfg.audio_dim,
                            "sensor": cfg.sensor_dim, "hidden": cfg.hidden_dim, "tokens": cfg.num_fusion_tokens}
    for k, v in sd.items():
        assert torch.equal(ck.fusion.state_dict()[k], v)
    assert not ck.fusion.training and not any(p.requires_grad for p in ck.fusion.parameters())


def test_training_checkpoint_with_prefixes_optimizer_and_numpy_metric(tmp_path):
    torch.manual_seed(0)
    m = CrossAttentionFusionModule(LATER)
    opt = torch.optim.AdamW(m.parameters())
    m(torch.randn(1, 3, 1024), torch.randn(1, 2, 1280), torch.randn(1, 4, 768), torch.randn(1, 5, 256)).sum().backward()
    opt.step()
    model_sd = {f"module.fusion.{k}": v for k, v in m.state_dict().items()}
    model_sd.update({"module.video_encoder.backbone.weight": torch.zeros(4, 4),
                     "module.image_encoder.blocks.0.weight": torch.zeros(2),
                     "module.classifier.weight": torch.randn(12, 384), "module.classifier.bias": torch.zeros(12)})
    path = tmp_path / "epoch_7.pth"
    torch.save({"epoch": 7, "global_step": 1234, "model_state_dict": model_sd,
                "optimizer_state_dict": opt.state_dict(), "scheduler_state_dict": {"last_epoch": 7},
                "best_metric": np.float64(0.8765), "config": {"fusion": {"hidden_dim": 384, "num_heads": 4}}}, path)
    ck = load_checkpoint(path)
    i = ck.info
    assert (i.heads, i.heads_source) == (4, "checkpoint (config.fusion.num_heads)")
    assert i.dims["image"] == 1280 and i.dims["hidden"] == 384 and i.dims["tokens"] == 2
    assert i.epoch == 7 and i.global_step == 1234 and i.metric == pytest.approx(0.8765)
    assert ck.classifier is not None and ck.classifier.out_features == 12
    assert "optimizer_state_dict" in i.ignored and "scheduler_state_dict" in i.ignored
    assert any(k.startswith("video_encoder") for k in i.ignored) and ck.encoders is None
    assert i.sha256 == __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    # Same numbers as the source module.
    x = [torch.randn(2, 3, 1024), torch.randn(2, 2, 1280), torch.randn(2, 4, 768), torch.randn(2, 5, 256)]
    m.eval()
    with torch.no_grad():
        assert torch.allclose(ck.fusion(*x), m(*x), atol=1e-6)


def test_head_count_sources(tmp_path):
    cfg = small_config(2, num_heads=2, hidden_dim=8)
    sd = random_module(cfg, 2).state_dict()
    p = tmp_path / "bare.pt"
    torch.save(sd, p)
    i = load_checkpoint(p).info
    assert (i.heads, i.heads_assumed) == (8, True) and i.heads_source.startswith("assumed: 8 (the seed's default")
    assert load_checkpoint(p, heads=2).info.heads == 2 and not load_checkpoint(p, heads=2).info.heads_assumed
    odd = tmp_path / "odd.pt"        # hidden 9: the seed's 8 does not divide it; 3 is assumed, and said
    torch.save(random_module(small_config(2, num_heads=3, hidden_dim=9), 2).state_dict(), odd)
    i = load_checkpoint(odd).info
    assert (i.heads, i.heads_assumed) == (3, True) and "does not divide 9" in i.heads_source
    with pytest.raises(InputError, match="not divisible by 2 heads"):
        load_checkpoint(odd, heads=2)
    meta = tmp_path / "meta.safetensors"
    save_checkpoint(meta, {f"fusion.{k}": v for k, v in sd.items()}, {"fusion_config": cfg.to_dict()})
    assert load_checkpoint(meta).info.heads_source == "checkpoint (fusion_config.num_heads)"
    # The caller wins, and the disagreement is kept as a note.
    ck = load_checkpoint(meta, heads=4)
    assert ck.info.heads == 4 and ck.info.notes == ["caller (--heads) gives 4 heads, but checkpoint "
                                                    "(fusion_config.num_heads) says 2"]


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    sd = random_module(small_config(3), 3).state_dict()
    torch.save({"model_state_dict": sd, "config": RunsCode(marker)}, path)
    with pytest.raises(InputError) as e:
        load_checkpoint(path)
    assert "system" in str(e.value) and str(path) in str(e.value)
    assert not marker.exists()
    # A raw (non-zip) pickle too.
    raw = tmp_path / "evil2.pth"
    raw.write_bytes(pickle.dumps({"x": RunsCode(marker)}))
    with pytest.raises(InputError):
        load_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize("case", ["empty", "truncated", "text", "missing", "other-arch", "wrong-shape", "nan"])
def test_unloadable_checkpoints_say_why(case, tmp_path):
    cfg = small_config(4)
    sd = random_module(cfg, 4).state_dict()
    path = tmp_path / "ck.safetensors"
    save_file(sd, str(path))
    expect = {"empty": "empty", "truncated": "not a readable", "text": "not a readable", "missing": "not found",
              "other-arch": "no fusion-module weights", "wrong-shape": "shape mismatches", "nan": "NaN"}[case]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif case == "text":
        path = tmp_path / "ck.pt"
        path.write_text("this is not a checkpoint")
    elif case == "missing":
        path = tmp_path / "nope.pt"
    elif case == "other-arch":
        save_file({"encoder.layer.0.weight": torch.zeros(3, 3)}, str(path))
    elif case == "wrong-shape":
        sd["aggregation.4.weight"] = torch.zeros(3, 3)
        save_file(sd, str(path))
    elif case == "nan":
        sd["fusion_tokens"] = sd["fusion_tokens"] * float("nan")
        save_file(sd, str(path))
    with pytest.raises(InputError) as e:
        load_checkpoint(path, heads=cfg.num_heads)
    msg = str(e.value)
    assert str(path) in msg and expect in msg and "\n" not in msg


def test_missing_keys_are_listed_readably(tmp_path):
    cfg = small_config(5)
    sd = random_module(cfg, 5).state_dict()
    del sd["audio_norm.weight"], sd["aggregation.1.bias"]
    path = tmp_path / "partial.pt"
    torch.save(sd, path)
    with pytest.raises(InputError, match=r"missing keys: aggregation\.1\.bias, audio_norm\.weight"):
        load_checkpoint(path, heads=cfg.num_heads)


def test_dummy_checkpoint_is_reported_without_attention(tmp_path):
    m = DummyCrossAttentionFusion(30, 16)
    path = tmp_path / "dummy.pt"
    torch.save({"state_dict": {f"fusion.{k}": v for k, v in m.state_dict().items()}}, path)
    ck = load_checkpoint(path)
    assert ck.info.architecture == "mean-pool" and ck.info.heads is None
    assert "no attention" in ck.info.heads_source


def test_nan_metric_is_reported_as_unknown(tmp_path):
    cfg = small_config(6)
    p = tmp_path / "nan_metric.pt"
    torch.save({"model_state_dict": random_module(cfg, 6).state_dict(), "best_metric": float("nan"),
                "epoch": torch.tensor(4)}, p)
    info = load_checkpoint(p, heads=cfg.num_heads).info
    assert info.metric is None and info.epoch == 4
