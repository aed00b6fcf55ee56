"""Training: the checkpoint layout load_checkpoint reads, round trips, determinism, demo quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from fusion_core.models.encoders.demo import EncoderConfig
from fusion_core.models.fusion import CrossAttentionFusionModule, FusionConfig
from fusion_core.vocab import MODALITIES
from fusion_core.training.train import WeldModel, _drop_modalities, load_model, train
from test_encoders import SMALL, make_weld  # tests/ is on sys.path (rootdir-less test modules)

REPO = Path(__file__).resolve().parent.parent
DEMO_BEST = REPO / "sample_data" / "checkpoints" / "demo-best.safetensors"
TINY = dict(hidden_dim=16, num_heads=2, num_fusion_tokens=2, batch_size=4)


def tiny_welds(n: int = 12) -> list:
    codes = [0, 2, 7]
    welds = []
    for i in range(n):
        w = make_weld(seed=i, duration=1.5, fps=8.0, frame_hw=(24, 32), image_hw=(32, 64), n_images=2,
                      code=codes[i % 3], missing=("audio",) if i == 4 else ())
        w.truth = {"class": codes[i % 3], "modalities": ["sensor"], "windows": [[0.5, 0.8]], "regions": []}
        welds.append(w)
    return welds


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    welds = tiny_welds()
    hist = train(welds, out, epochs=2, seed=7, encoder_config=EncoderConfig(**SMALL), log=lambda *_: None, **TINY)
    return out, welds, hist


def test_checkpoint_layout_and_metadata(trained):
    out, _, hist = trained
    assert (out / "demo-early.safetensors").is_file() and (out / "demo-best.safetensors").is_file()
    saved = json.loads((out / "train-history.json").read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2] and saved == json.loads(json.dumps(hist))
    with safe_open(str(out / "demo-early.safetensors"), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
        shapes = {k: tuple(f.get_tensor(k).shape) for k in keys}
    assert set(meta) >= {"format", "fusion_config", "encoder_config", "class_codes", "class_names", "epoch",
                         "global_step", "val_accuracy", "best_metric", "train_seed", "created_by"}
    assert all(isinstance(v, str) for v in meta.values())
    assert meta["format"] == "weld-fusion/1" and meta["created_by"] == "fusion_core.train"
    assert meta["epoch"] == "1" and meta["train_seed"] == "7" and int(meta["global_step"]) > 0
    fcfg = FusionConfig.from_dict(json.loads(meta["fusion_config"]))
    assert fcfg.num_heads == 2 and fcfg.layout == "v1" and fcfg.hidden_dim == 16 and fcfg.video_dim == 16
    assert json.loads(meta["class_codes"]) == [0, 2, 7]
    assert json.loads(meta["class_names"]) == ["good", "burnthrough", "lack of fusion"]
    assert EncoderConfig.from_dict(json.loads(meta["encoder_config"])).sensor_len == SMALL["sensor_len"]
    fusion_keys = {"fusion." + k for k in CrossAttentionFusionModule(fcfg).state_dict()}
    enc_keys = {k for k in keys if k.split(".")[0] in {f"{m}_encoder" for m in MODALITIES}}
    assert keys == fusion_keys | {"classifier.weight", "classifier.bias"} | enc_keys
    assert {k.split(".")[0] for k in enc_keys} == {f"{m}_encoder" for m in MODALITIES}
    assert shapes["classifier.weight"] == (3, 16) and shapes["classifier.bias"] == (3,)


def test_reloaded_modules_give_identical_outputs(trained):
    from fusion_core.models.checkpoint import load_checkpoint
    from fusion_core.explain.engine import explain, fused_embeddings

    out, welds, _ = trained
    path = out / "demo-best.safetensors"
    model = load_model(path)
    ck = load_checkpoint(path)
    assert ck.encoders is not None and ck.classifier is not None and ck.info.heads == 2
    assert ck.class_names == ["good", "burnthrough", "lack of fusion"]
    batch = ck.encoders.encode(welds)
    with torch.no_grad():
        mine = model.classifier(model.fuse(batch.features, batch.masks))
        theirs = ck.classifier(fused_embeddings(ck, batch))
    assert torch.allclose(mine, theirs, atol=1e-5)
    # the same weights in a fresh model give bit-identical outputs
    again = load_model(path)
    b2 = again.encoders.encode(welds)
    for m in MODALITIES:
        assert torch.equal(batch.features[m], b2.features[m])
    ex = explain(ck, batch)
    assert abs(ex.efficiency_gap).max() < 1e-4
    assert not batch.masks["audio"][4].any()  # the weld without audio


def test_training_is_deterministic(trained, tmp_path):
    out, welds, hist = trained
    hist2 = train(welds, tmp_path, epochs=2, seed=7, encoder_config=EncoderConfig(**SMALL),
                  log=lambda *_: None, **TINY)
    assert [e["train_loss"] for e in hist2["epochs"]] == [e["train_loss"] for e in hist["epochs"]]
    with safe_open(str(out / "demo-best.safetensors"), framework="pt") as a, \
            safe_open(str(tmp_path / "demo-best.safetensors"), framework="pt") as b:
        assert set(a.keys()) == set(b.keys())
        for k in a.keys():
            assert torch.equal(a.get_tensor(k), b.get_tensor(k)), k


def test_fully_masked_modality_is_the_absent_block_not_nan():
    from fusion_core.explain.engine import fused_embeddings
    from fusion_core.io.features import FeatureBatch

    torch.manual_seed(0)
    cfg = EncoderConfig(**SMALL)
    model = WeldModel(cfg, FusionConfig(16, 16, 16, 16, hidden_dim=16, num_fusion_tokens=2, num_heads=2), [0, 1]).eval()
    feats = {m: torch.randn(3, cfg.seq_len(m), 16) for m in MODALITIES}
    masks = {m: torch.ones(3, cfg.seq_len(m), dtype=torch.bool) for m in MODALITIES}
    masks["audio"][1] = False
    masks["video"][2, 5:] = False
    with torch.no_grad():
        fused = model.fuse(feats, masks)
    assert torch.isfinite(fused).all()
    ref = fused_embeddings(model.fusion, FeatureBatch(features=feats, masks=masks))
    assert torch.allclose(fused, ref, atol=1e-5)


def test_modality_dropout_keeps_one_present_modality():
    gen = torch.Generator().manual_seed(0)
    masks = {m: torch.ones(200, 5, dtype=torch.bool) for m in MODALITIES}
    masks["image"][:100] = False
    dropped = _drop_modalities(masks, 0.9, gen)
    kept = torch.stack([dropped[m].any(1) for m in MODALITIES], 1)
    assert kept.any(1).all()
    assert not kept[:100, 1].any()  # never revives a missing modality
    assert 0 < kept.float().mean() < 0.5


@pytest.mark.skipif(not DEMO_BEST.is_file(), reason="sample_data/checkpoints/demo-best.safetensors not built")
def test_demo_best_quality_on_fresh_welds(tmp_path):
    """The issue's planted-defect figures, on a small set the demo never saw (thresholds below target)."""
    synth = pytest.importorskip("fusion_core.training.synth")
    from fusion_core.io.containers import load_welds
    from fusion_core.training.train import evaluate_quality

    synth.generate_dataset(tmp_path, 24, 987_654)
    q = evaluate_quality(DEMO_BEST, load_welds(tmp_path))
    # targets (issue 3): planted modality first by Shapley in ≥ 80% of defect welds, relevance
    # ≥ 3× its chance share in the planted windows. demo-best gives 1.0 / 1.0 / 3.7 on this set.
    assert q["accuracy"] >= 0.8
    assert q["shapley_top_is_planted"] >= 0.7
    assert q["relevance"]["ratio_of_means"] >= 2.5
    assert q["attention"]["n"] == q["relevance"]["n"] > 0
