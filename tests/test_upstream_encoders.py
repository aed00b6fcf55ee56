"""Upstream's four encoders rebuilt from a checkpoint's own weights (issue 10).

Tiny configurations of each backbone (V-JEPA 2, DINOv3, DINOv2, AST) with random weights,
saved in upstream's key layout inside an upstream-style training dict; their config.json
files sit in a `--backbone-dir` style folder, since the published configs are the big ones.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from fusion_core.errors import InputError  # noqa: E402
from fusion_core.explain.welds import encode_welds, explain_welds  # noqa: E402
from fusion_core.io.containers import load_welds  # noqa: E402
from fusion_core.models.checkpoint import load_checkpoint  # noqa: E402
from fusion_core.models.encoders.cache import FeatureCache  # noqa: E402
from fusion_core.models.encoders.upstream import preprocess as pre  # noqa: E402
from fusion_core.models.encoders.upstream.published import PUBLISHED  # noqa: E402
from fusion_core.models.encoders.upstream.sensor import sinusoidal_table  # noqa: E402
from fusion_core.models.fusion import CrossAttentionFusionModule, FusionConfig  # noqa: E402
from fusion_core.vocab import MODALITIES, TIME_MODALITIES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_data"
TINY = {
    "vjepa2": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, pred_hidden_size=16,
                   pred_num_hidden_layers=1, pred_num_attention_heads=2, pred_num_mask_tokens=2),
    "dinov3_vit": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       num_register_tokens=4, use_gated_mlp=True, hidden_act="silu"),
    "dinov2": dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=2, image_size=518),
    "audio-spectrogram-transformer": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, frequency_stride=14, time_stride=14),
}
CLASSES = {"vjepa2": "VJEPA2", "dinov3_vit": "DINOv3ViT", "dinov2": "Dinov2",
           "audio-spectrogram-transformer": "AST"}
SENSOR_D, VIDEO_OUT = 16, 24       # the video backbone gets a projection 32 → 24, as upstream saves one


def tiny_model(model_type: str, seed: int):
    torch.manual_seed(seed)
    name = CLASSES[model_type]
    cfg = getattr(transformers, f"{name}Config")(**TINY[model_type])
    model = getattr(transformers, f"{name}Model")(cfg).eval()
    with torch.no_grad():            # far from init, so a wrong wiring shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def sensor_weights(seed: int = 5) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(SENSOR_D, 8, 32, batch_first=True)
    enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    sd = {"input_proj.weight": torch.randn(SENSOR_D, 6) * 0.3, "input_proj.bias": torch.randn(SENSOR_D) * 0.1,
          "pos_encoder.pe": sinusoidal_table(512, SENSOR_D), "norm.weight": torch.ones(SENSOR_D),
          "norm.bias": torch.zeros(SENSOR_D)}
    sd.update({f"transformer.{k}": v for k, v in enc.state_dict().items()})
    return sd


def build_upstream(tmp: Path, image_type: str = "dinov3_vit", drop: str | None = None,
                   replace: dict | None = None) -> tuple[Path, Path, dict]:
    """(checkpoint path, backbone dir, the models) for an upstream-style training file."""
    models = {"video": tiny_model("vjepa2", 1), "image": tiny_model(image_type, 2),
              "audio": tiny_model("audio-spectrogram-transformer", 3)}
    bdir = tmp / "models"
    for m, model in models.items():
        (bdir / m).mkdir(parents=True, exist_ok=True)
        (bdir / m / "config.json").write_text(model.config.to_json_string())
    torch.manual_seed(4)
    proj = torch.nn.Linear(32, VIDEO_OUT)
    dims = {"video": VIDEO_OUT, "image": models["image"].config.hidden_size, "audio": 32, "sensor": SENSOR_D}
    fusion = CrossAttentionFusionModule(FusionConfig(video_dim=dims["video"], image_dim=dims["image"],
                                                     audio_dim=32, sensor_dim=SENSOR_D, hidden_dim=48,
                                                     num_fusion_tokens=2, num_heads=4, dropout=0.2, layout="v1"))
    sd = {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    sd.update({f"video_encoder.model.{k}": v for k, v in models["video"].state_dict().items()})
    sd.update({"video_encoder.projection.1.weight": proj.weight.detach(),
               "video_encoder.projection.1.bias": proj.bias.detach()})
    sd.update({f"image_encoder.backbone.{k}": v for k, v in models["image"].state_dict().items()})
    sd.update({f"audio_encoder.model.{k}": v for k, v in models["audio"].state_dict().items()})
    sd.update({f"sensor_encoder.{k}": v for k, v in sensor_weights().items()})
    sd.update({"feature_norm.weight": torch.ones(48), "feature_norm.bias": torch.zeros(48)})
    if drop:
        del sd[drop]
    sd.update(replace or {})
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))])
    path = tmp / "best_model.pth"
    torch.save({"epoch": 12, "global_step": 345, "model_state_dict": sd, "optimizer_state_dict": opt.state_dict(),
                "best_metric": np.float64(0.87), "config": {"learning_rate": 1e-4, "batch_size": 8}}, path)
    models["projection"] = proj.eval()
    return path, bdir, models


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("upstream")
    return build_upstream(tmp)


@pytest.fixture(scope="module")
def welds():
    return load_welds(SAMPLES)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSION_CORE_FEATURE_CACHE", str(tmp_path / "cache"))


def loaded(upstream, **kw):
    path, bdir, _ = upstream
    return load_checkpoint(path, backbone_dir=bdir, device="cpu", **kw)


# --------------------------------------------------------------------------- features = direct call

def test_features_equal_a_direct_transformers_call(upstream, welds):
    _, _, models = upstream
    ck = loaded(upstream)
    enc = ck.upstream_encoders
    assert ck.encoders is None and enc is not None and enc.adapters is None      # lazy: nothing read yet
    weld = welds[0]
    fb = encode_welds(ck, [weld])
    a = enc.adapters
    with torch.no_grad():
        v = torch.from_numpy(a["video"].prepare(weld).inputs)[None]
        want_v = models["projection"](models["video"](pixel_values_videos=v, skip_predictor=True).last_hidden_state)
        im = torch.from_numpy(a["image"].prepare(weld).inputs)
        want_i = models["image"](pixel_values=im).last_hidden_state.mean(0, keepdim=True)
        au = torch.from_numpy(a["audio"].prepare(weld).inputs)[None, None]
        au = F.interpolate(au, size=(128, 1024), mode="bilinear", align_corners=False)[:, 0]
        want_a = models["audio"](au).last_hidden_state
    for m, want in (("video", want_v), ("image", want_i), ("audio", want_a)):
        assert fb.features[m].shape == want.shape, m
        np.testing.assert_allclose(fb.features[m].numpy(), want.numpy(), atol=1e-5, err_msg=m)
    assert fb.features["video"].shape[1] == 256 and fb.features["image"].shape[1] == 1 + 4 + 196
    assert fb.features["audio"].shape[1] == 2 + 73 * 9          # AST 14-14 strides on the transposed input
    assert all(fb.mask(m).all() for m in MODALITIES)
    assert "config.json in" in enc.describe()["video"]


def test_sensor_encoder_matches_upstreams_module_layout(upstream, welds):
    ck = loaded(upstream)
    fb = encode_welds(ck, [welds[1]])
    sd = sensor_weights()
    layer = torch.nn.TransformerEncoderLayer(SENSOR_D, 8, 32, dropout=0.0, batch_first=True)
    ref = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    ref.load_state_dict({k[len("transformer."):]: v for k, v in sd.items() if k.startswith("transformer.")})
    x = torch.from_numpy(pre.sensor_input(welds[1]))[None]
    with torch.no_grad():
        h = x @ sd["input_proj.weight"].T + sd["input_proj.bias"] + sd["pos_encoder.pe"][:, :256]
        want = F.layer_norm(ref(h), (SENSOR_D,))
    np.testing.assert_allclose(fb.features["sensor"].numpy(), want.numpy(), atol=1e-5)


def test_dinov2_photos_and_published_config_matching(tmp_path, welds):
    path, bdir, models = build_upstream(tmp_path, image_type="dinov2")
    ck = load_checkpoint(path, backbone_dir=bdir, device="cpu")
    fb = encode_welds(ck, [welds[2]])
    assert fb.features["image"].shape == (1, 1 + 16 * 16, 24)       # 224 px at patch 14, no registers
    # Without --backbone-dir the tiny weights match no published configuration: said plainly.
    ck2 = load_checkpoint(path, device="cpu")
    with pytest.raises(InputError, match="no configuration matches") as e:
        encode_welds(ck2, [welds[2]])
    assert "\n" not in str(e.value)


def test_published_configs_have_the_published_sizes():
    from fusion_core.models.encoders.upstream.backbones import expected_numel
    sizes = {name: expected_numel(mt, cfg) for mt, cands in PUBLISHED.items() for name, cfg in cands[:1]}
    assert 300e6 < sizes["facebook/vjepa2-vitl-fpc64-256"] < 340e6          # ViT-L encoder + predictor
    assert 830e6 < sizes["facebook/dinov3-vith16plus-pretrain-lvd1689m"] < 850e6
    assert 85e6 < sizes["MIT/ast-finetuned-audioset-14-14-0.443"] < 88e6
    assert 85e6 < sizes["facebook/dinov2-base"] < 88e6


# --------------------------------------------------------------------------- positions

def _tiles(p, duration):
    spans = np.unique(p[["t0", "t1"]].to_numpy(float), axis=0)
    spans = spans[spans[:, 1] > spans[:, 0]]
    assert spans[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert spans[-1, 1] == pytest.approx(duration, rel=1e-9)
    np.testing.assert_allclose(spans[1:, 0], spans[:-1, 1], atol=1e-9)     # no gap, no overlap


def test_positions_tile_each_welds_duration_and_say_what_they_are(upstream, welds):
    ck = loaded(upstream)
    fb = encode_welds(ck, welds[:3])
    for b, w in enumerate(welds[:3]):
        for m in TIME_MODALITIES:
            p = fb.positions[m][b]
            assert len(p) == fb.features[m].shape[1]
            _tiles(p, w.duration)
        v = fb.positions["video"][b]
        assert set(v["input"]) == {"photos"} and v["frame1"].max() == len(w.images) - 1
        i = fb.positions["image"][b]
        assert list(i["token"][:5]) == ["CLS", "register 1", "register 2", "register 3", "register 4"]
        assert i["photos"].iloc[0].startswith("all 5 photos")
        assert i["x1"].max() == pytest.approx(w.image_sizes[0][0])
        a = fb.positions["audio"][b]
        assert a["token"].iloc[0].startswith("CLS") and (a["t1"] - a["t0"]).iloc[0] == 0


def test_preprocessing_follows_upstreams_dataset_code(welds):
    w = welds[0]
    assert pre.round_pick(5, 32) == [0, 1, 2, 3, 4] + [4] * 27
    assert pre.round_pick(300, 4) == [0, 100, 199, 299]
    x, source, idx = pre.video_input(w)
    assert x.shape == (32, 3, 64, 64) and source == "photos" and x.max() <= 1.0
    s = pre.sensor_input(w)
    assert s.shape == (256, 6) and np.all(s[:, 0] == 0)              # Part No: constant → 0
    np.testing.assert_allclose(s[:, 1:].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(s[:, 1:].std(0), 1, atol=1e-4)
    a, real = pre.audio_input(w)
    assert a.shape == (64, 256) and real == 1 + len(w.audio) // 512
    assert a.max() == 0.0 and a.min() >= -80.0                       # power_to_db(ref=max, top_db=80)
    assert np.all(a[:, real:] == a[:, :real].min())                   # padded with the minimum


def test_mel_matches_librosa_when_installed(welds):
    librosa = pytest.importorskip("librosa")
    y = welds[0].audio
    want = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_mels=64), ref=np.max)
    np.testing.assert_allclose(pre.mel_db(y), want, atol=2e-3)
    np.testing.assert_allclose(pre.mel_filterbank(), librosa.filters.mel(sr=16000, n_fft=2048, n_mels=64),
                               rtol=1e-5, atol=1e-8)


def test_area_resize_is_opencvs_inter_area(welds):
    cv2 = pytest.importorskip("cv2")
    img = welds[0].images[0]
    np.testing.assert_array_equal(pre.area_resize(img, 224),
                                  cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA))


# --------------------------------------------------------------------------- explain, cache, errors

def test_explain_on_the_sample_welds_is_complete_and_finite(upstream, welds):
    ck = loaded(upstream)
    seen = []
    exp = explain_welds(ck, welds, encoder_progress=lambda *a: seen.append(a))
    assert exp.batch_size == len(welds) == 14
    for m in MODALITIES:
        assert np.isfinite(exp.attention[m]).all() and len(exp.positions[m]) == 14
    assert np.isfinite(exp.token_shapley).all() and np.abs(exp.efficiency_gap).max() < 1e-4
    assert {a[1] for a in seen} == set(MODALITIES) and ("encode", "sensor", 14, 14) in seen
    # A second look costs no encoder: every weld comes from the cache.
    cache = ck.upstream_encoders.cache
    before = cache.hits
    again = explain_welds(ck, welds[:2])
    assert cache.hits - before == 2 * len(MODALITIES)
    np.testing.assert_allclose(again.attention["audio"], exp.attention["audio"][:2], atol=1e-6)


def test_relevance_on_the_l2_normalised_embedding_is_signal_not_rounding(upstream, welds):
    """Upstream's output is l2_normalize(feature_norm(fused)); the cosine target's gradient is
    taken before the L2 step, where it is not identically 0: relevance has real mass, and a
    weld's relevance share does not depend on which other welds share its batch."""
    ck = loaded(upstream)
    assert ck.classifier is None and ck.embedding is not None
    both = explain_welds(ck, welds[:2], target="cosine")
    one = explain_welds(ck, welds[:1], target="cosine")
    mass = sum(float(np.abs(both.relevance[m][0]).sum()) for m in MODALITIES)
    assert mass > 1e-6
    np.testing.assert_allclose(one.contributions["relevance"][0], both.contributions["relevance"][0], atol=1e-4)


def test_cache_evicts_least_recently_used(tmp_path):
    c = FeatureCache(tmp_path / "c", max_bytes=10_000)
    import pandas as pd
    pos = pd.DataFrame({"t0": [0.0], "t1": [1.0], "token": ["patch"]})
    keys = [c.key(f"w{i}", "wd", "v1", "audio") for i in range(6)]
    for i, k in enumerate(keys):
        c.put(k, np.full((4, 256), i, np.float32), np.ones(4, bool), pos)
    assert c.size() <= 10_000 and c.get(keys[0]) is None
    f, m, p = c.get(keys[-1])
    assert f[0, 0] == 5 and list(p["token"]) == ["patch"]
    assert c.key("", "wd", "v1", "audio") is None


@pytest.mark.parametrize("drop, replace, named", [
    ("audio_encoder.model.layers.1.attention.q_proj.weight", None, "audio_encoder.model.layers.1.attention.q_proj"),
    (None, {"sensor_encoder.norm.weight": torch.ones(15)}, "sensor_encoder.norm.weight"),
    ("sensor_encoder.input_proj.weight", None, "sensor_encoder.input_proj.weight"),
    (None, {"video_encoder.model.encoder.layer.0.mlp.fc1.weight": torch.zeros(64, 16)},
     "video_encoder.model.encoder.layer.0.mlp.fc1.weight"),
])
def test_a_missing_or_mismatched_encoder_key_is_one_line_naming_it(tmp_path, welds, drop, replace, named):
    path, bdir, _ = build_upstream(tmp_path, drop=drop, replace=replace)
    ck = load_checkpoint(path, backbone_dir=bdir, device="cpu")
    with pytest.raises(InputError) as e:
        encode_welds(ck, welds[:1])
    assert named in str(e.value) and "\n" not in str(e.value)


def test_upstream_file_info_says_the_encoders_are_read_on_demand(upstream):
    ck = loaded(upstream)
    assert any("upstream encoder: loaded when weld files are explained" in k for k in ck.info.ignored)
    assert any("video branch gets the weld's photos" in n for n in ck.info.notes)
    assert json.dumps(ck.info.to_dict())


def test_cli_explains_raw_welds_with_upstream_encoders(upstream, tmp_path, capsys):
    from fusion_core.cli import main
    path, bdir, _ = upstream
    out = tmp_path / "exp.json"
    rc = main(["explain", "--checkpoint", str(path), "--samples", str(SAMPLES / "000100"), "--device", "cpu",
               "--backbone-dir", str(bdir), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "loading the video encoder" in err and "audio encoder: weld 1/1" in err
    payload = json.loads(out.read_text())
    (entry,) = payload["results"]
    assert entry["weld"] == "000100" and entry["positions"]["video"][0]["input"] == "photos"
    assert main(["explain", "--checkpoint", str(path), "--samples", str(SAMPLES / "000100"), "--device", "cuda",
                 "--out", str(out)]) == (2 if not torch.cuda.is_available() else 0)


def test_from_pretrained_folder_path_gives_the_same_model(upstream):
    """Files from transformers 4.5x carry older key names: they go through `from_pretrained` on a
    temporary folder (which converts them). That path must give the very same numbers."""
    from fusion_core.models.encoders.upstream.backbones import _via_folder  # noqa: PLC2701 (testing the fallback)
    _, _, models = upstream
    model = models["audio"]
    again = _via_folder(type(model), model.config, model.state_dict(), "audio", "test").eval()
    x = torch.randn(1, 1024, 128)
    with torch.no_grad():
        np.testing.assert_array_equal(again(x).last_hidden_state.numpy(), model(x).last_hidden_state.numpy())


def test_inputs_equal_upstreams_own_reader_on_the_files(welds):
    """Upstream's reader, redone here from the files with its own tools (cv2.imread, pandas
    select_dtypes, librosa when installed), gives the same arrays as ours from the decoded weld."""
    cv2 = pytest.importorskip("cv2")
    import pandas as pd
    w = welds[3]
    d = SAMPLES / w.weld_id
    names = sorted(p.name for p in (d / "images").iterdir())

    def read(n, size):
        return cv2.resize(cv2.cvtColor(cv2.imread(str(d / "images" / n)), cv2.COLOR_BGR2RGB), (size, size),
                          interpolation=cv2.INTER_AREA)
    photos = np.stack([read(n, 224) for n in names[:5]]).astype(np.float32).transpose(0, 3, 1, 2) / 255
    np.testing.assert_array_equal(pre.photo_input(w)[0], photos)
    small = [read(n, 64) for n in names]
    frames = np.stack([small[i] for i in pre.round_pick(len(small), 32)]).astype(np.float32) / 255
    np.testing.assert_array_equal(pre.video_input(w)[0], frames.transpose(0, 3, 1, 2))
    num = pd.read_csv(d / f"{w.weld_id}.csv").select_dtypes(include=["number"])
    assert list(num.columns[:6]) == list(pre.SENSOR_INPUTS)
    arr = num.to_numpy(dtype=np.float32)[:, :6]
    out = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(arr)), arr[:, c]) for c in range(6)], 1)
    std = out.std(0, keepdims=True)
    std[std == 0] = 1
    np.testing.assert_allclose(pre.sensor_input(w), (out - out.mean(0, keepdims=True)) / std, atol=1e-6)
    try:
        import librosa
    except ImportError:
        return
    y, sr = librosa.load(d / f"{w.weld_id}.flac", sr=16000)
    spec = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=64), ref=np.max)
    spec = np.pad(spec, ((0, 0), (0, 256 - spec.shape[1])), constant_values=spec.min())
    np.testing.assert_allclose(pre.audio_input(w)[0], spec, atol=1e-4)


def test_welds_are_read_at_full_resolution_for_upstreams_encoders(upstream, tmp_path):
    """Upstream resizes the files' own pixels (photos to 224, frames to 64): the readers must
    not shrink them first, and must keep exactly the 32 frames upstream picks."""
    from PIL import Image

    from fusion_core.explain.welds import read_options
    from fusion_core.io.containers import load_weld
    weld = tmp_path / "000103"
    shutil.copytree(REPO / "sample_data" / "000303", weld)
    (weld / "000303.csv").rename(weld / "000103.csv")
    for p in (weld / "images").iterdir():
        Image.new("RGB", (2000, 900), (90, 90, 90)).save(p)        # the dataset's photo size
    ck = loaded(upstream)
    opts = read_options(ck)
    w = load_weld(weld, **opts)
    assert w.images[0].shape[:2] == (900, 2000)
    assert len(w.video) == 32
    assert load_weld(weld).images[0].shape[1] <= 400              # the readers' default stays small
    assert read_options(load_checkpoint(REPO / "sample_data/checkpoints/demo-best.safetensors")) == {}
