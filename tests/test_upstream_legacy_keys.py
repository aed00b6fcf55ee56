"""Upstream checkpoints whose backbones were saved with transformers 4.5x (older key names).

`backbones._via_folder` relies on `from_pretrained` converting the key names of 4.5x files.
In transformers 5.24 that conversion lives in `conversion_mapping.py`:

* AST (`ASTModel` → the "ViTModel" list): `encoder.layer.` → `layers.`, `attention.attention.query|key|value`
  → `attention.q_proj|k_proj|v_proj`, `attention.output.dense` → `attention.o_proj`,
  `intermediate.dense` → `mlp.fc1`, `output.dense` → `mlp.fc2`;
* DINOv2 (`Dinov2Model`): `attention.attention.query|key|value` → `attention.q_proj|k_proj|v_proj`,
  `attention.output.dense` → `attention.o_proj`, SwiGLU `mlp.weights_in` → chunked into
  `mlp.gate_proj` / `mlp.up_proj`, `mlp.weights_out` → `mlp.down_proj`;
* DINOv3 ViT (`dinov3_vit`): the top-level `layer.N.` → `model.layer.N.`;
* V-JEPA 2: nothing (its 4.5x names are the 5.x names: `_direct` loads them).

The 4.5x names below are written out by hand from transformers 4.5x's own modeling files
(`ASTSelfAttention.query`, `ASTSelfOutput.dense`, `ASTIntermediate.dense`, `ASTOutput.dense`,
`ASTEncoder.layer`; `Dinov2SelfAttention.query`, `Dinov2SwiGLUFFN.weights_in/weights_out`, whose
forward is `x1, x2 = weights_in(x).chunk(2); silu(x1) * x2`; `DINOv3ViTModel.layer`), not
derived from transformers' conversion, so the test says whether that conversion really
gives back the same model. `load_backbone` renames with its own table first
(`backbones.LEGACY_NAMES`), so such files load without a temporary copy and an error names
the key as the file holds it; both paths are checked here.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from test_upstream_encoders import CLASSES, TINY, build_upstream, tiny_model  # noqa: E402

from fusion_core.errors import InputError  # noqa: E402
from fusion_core.models.checkpoint import load_checkpoint  # noqa: E402
from fusion_core.models.encoders.upstream import backbones  # noqa: E402

# --------------------------------------------------------------------------- 5.x name → 4.5x name

# Per model type: (pattern on the 5.x key, the 4.5x key); the first pattern that matches is used.
LEGACY_NAMES = {
    "audio-spectrogram-transformer": [
        (r"^layers\.(\d+)\.attention\.q_proj\.", r"encoder.layer.\1.attention.attention.query."),
        (r"^layers\.(\d+)\.attention\.k_proj\.", r"encoder.layer.\1.attention.attention.key."),
        (r"^layers\.(\d+)\.attention\.v_proj\.", r"encoder.layer.\1.attention.attention.value."),
        (r"^layers\.(\d+)\.attention\.o_proj\.", r"encoder.layer.\1.attention.output.dense."),
        (r"^layers\.(\d+)\.mlp\.fc1\.", r"encoder.layer.\1.intermediate.dense."),
        (r"^layers\.(\d+)\.mlp\.fc2\.", r"encoder.layer.\1.output.dense."),
        (r"^layers\.(\d+)\.", r"encoder.layer.\1."),                       # layernorm_before / _after
    ],
    "dinov2": [
        (r"^encoder\.layer\.(\d+)\.attention\.q_proj\.", r"encoder.layer.\1.attention.attention.query."),
        (r"^encoder\.layer\.(\d+)\.attention\.k_proj\.", r"encoder.layer.\1.attention.attention.key."),
        (r"^encoder\.layer\.(\d+)\.attention\.v_proj\.", r"encoder.layer.\1.attention.attention.value."),
        (r"^encoder\.layer\.(\d+)\.attention\.o_proj\.", r"encoder.layer.\1.attention.output.dense."),
        (r"^encoder\.layer\.(\d+)\.mlp\.down_proj\.", r"encoder.layer.\1.mlp.weights_out."),
        # gate_proj + up_proj → weights_in: done by `legacy_state_dict` (a concatenation, not a rename)
    ],
    "dinov3_vit": [
        (r"^model\.layer\.(\d+)\.", r"layer.\1."),
    ],
    "vjepa2": [],
}

# Names that 4.5x files hold, checked verbatim against the tables (no regex of ours in between).
SPOT_CHECKS = {
    "audio-spectrogram-transformer": {
        "layers.1.attention.q_proj.weight": "encoder.layer.1.attention.attention.query.weight",
        "layers.1.attention.o_proj.bias": "encoder.layer.1.attention.output.dense.bias",
        "layers.1.mlp.fc1.weight": "encoder.layer.1.intermediate.dense.weight",
        "layers.1.mlp.fc2.bias": "encoder.layer.1.output.dense.bias",
        "layers.1.layernorm_after.weight": "encoder.layer.1.layernorm_after.weight",
        "layernorm.weight": "layernorm.weight",
        "embeddings.patch_embeddings.projection.weight": "embeddings.patch_embeddings.projection.weight",
    },
    "dinov2": {
        "encoder.layer.1.attention.k_proj.weight": "encoder.layer.1.attention.attention.key.weight",
        "encoder.layer.1.attention.o_proj.weight": "encoder.layer.1.attention.output.dense.weight",
        "encoder.layer.1.layer_scale1.lambda1": "encoder.layer.1.layer_scale1.lambda1",
        "encoder.layer.1.mlp.fc1.weight": "encoder.layer.1.mlp.fc1.weight",
    },
    "dinov3_vit": {
        "model.layer.1.attention.q_proj.weight": "layer.1.attention.q_proj.weight",
        "model.layer.1.layer_scale2.lambda1": "layer.1.layer_scale2.lambda1",
        "model.layer.1.mlp.gate_proj.weight": "layer.1.mlp.gate_proj.weight",
        "norm.weight": "norm.weight",
        "embeddings.register_tokens": "embeddings.register_tokens",
    },
}

MODALITY = {"audio-spectrogram-transformer": "audio", "dinov2": "image", "dinov3_vit": "image", "vjepa2": "video"}
PREFIX = backbones.PREFIXES


def legacy_name(model_type: str, key: str) -> str:
    for pattern, old in LEGACY_NAMES[model_type]:
        if re.match(pattern, key):
            return re.sub(pattern, old, key, count=1)
    return key


def legacy_state_dict(model_type: str, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict as transformers 4.5x would have saved the same model."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        m = re.match(r"^(encoder\.layer\.\d+\.mlp)\.(gate|up)_proj\.(weight|bias)$", k)
        if model_type == "dinov2" and m:
            if m.group(2) == "gate":     # 4.5x SwiGLU: weights_in = [gate rows; up rows], silu on the first half
                up = sd[f"{m.group(1)}.up_proj.{m.group(3)}"]
                out[f"{m.group(1)}.weights_in.{m.group(3)}"] = torch.cat([v, up], dim=0)
            continue
        out[legacy_name(model_type, k)] = v
    assert len(set(out)) == len(out)
    return out


def variant(model_type: str, **extra):
    """A tiny model (as in test_upstream_encoders) with some config fields changed."""
    torch.manual_seed(7)
    name = CLASSES[model_type]
    cfg = getattr(transformers, f"{name}Config")(**{**TINY[model_type], **extra})
    model = getattr(transformers, f"{name}Model")(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def random_input(model_type: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    if model_type == "audio-spectrogram-transformer":
        return {"input_values": torch.randn(1, 1024, 128, generator=g)}
    if model_type == "vjepa2":
        return {"pixel_values_videos": torch.randn(1, 2, 3, 32, 32, generator=g), "skip_predictor": True}
    return {"pixel_values": torch.randn(1, 3, 56, 56, generator=g)}


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, model_type: str) -> None:
    x = random_input(model_type)
    with torch.no_grad():
        np.testing.assert_array_equal(a.eval()(**x).last_hidden_state.numpy(),
                                      b.eval()(**x).last_hidden_state.numpy())


CASES = {
    "ast": ("audio-spectrogram-transformer", {}),
    "dinov2": ("dinov2", {}),
    "dinov2-swiglu": ("dinov2", {"use_swiglu_ffn": True}),
    "dinov3": ("dinov3_vit", {}),
    "dinov3-plain-mlp": ("dinov3_vit", {"use_gated_mlp": False, "hidden_act": "gelu"}),
}


# --------------------------------------------------------------------------- the tables themselves

@pytest.mark.parametrize("model_type", sorted(SPOT_CHECKS))
def test_the_legacy_tables_give_the_4_5x_names(model_type):
    for new, old in SPOT_CHECKS[model_type].items():
        assert legacy_name(model_type, new) == old
    m = tiny_model(model_type, 0)
    old = legacy_state_dict(model_type, m.state_dict())
    assert set(SPOT_CHECKS[model_type].values()) <= set(old)
    assert len(old) == len(m.state_dict())
    assert not [k for k in old if re.search(FIVE_X_ONLY[model_type], k)]


FIVE_X_ONLY = {   # names a 4.5x file of this model type cannot hold
    "audio-spectrogram-transformer": r"^layers\.|_proj\.|mlp\.",
    "dinov2": r"\.(q|k|v|o|gate|up|down)_proj\.",
    "dinov3_vit": r"^model\.",
}


def test_dinov2_swiglu_legacy_layout_is_the_fused_4_5x_one():
    m = variant("dinov2", use_swiglu_ffn=True)
    sd = m.state_dict()
    old = legacy_state_dict("dinov2", sd)
    w = old["encoder.layer.0.mlp.weights_in.weight"]
    hidden = sd["encoder.layer.0.mlp.gate_proj.weight"].shape[0]
    assert w.shape == (2 * hidden, 24) and "encoder.layer.0.mlp.weights_out.bias" in old
    assert not any("gate_proj" in k or "up_proj" in k or "down_proj" in k for k in old)


# --------------------------------------------------------------------------- _via_folder converts

@pytest.mark.parametrize("case", sorted(CASES))
def test_via_folder_turns_4_5x_names_into_the_same_model(case):
    model_type, extra = CASES[case]
    model = variant(model_type, **extra)
    sd = model.state_dict()
    old = legacy_state_dict(model_type, sd)
    assert set(old) != set(sd)                                   # really the old layout …
    cls = type(model)
    assert backbones._direct(cls, model.config, old) is None     # … so the direct load declines it
    backbones._quiet()
    again = backbones._via_folder(cls, model.config, old, MODALITY[model_type], "test")
    got = again.state_dict()
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert torch.equal(got[k], v), k
    same_outputs(again, model, model_type)


def test_vjepa2_has_no_4_5x_names_to_convert():
    """V-JEPA 2's 4.5x names (`encoder.layer.N.attention.query|key|value|proj`, `predictor.proj`,
    `predictor.embeddings.mask_tokens`) are today's: such a file loads directly, no folder."""
    model = tiny_model("vjepa2", 1)
    sd = model.state_dict()
    for k in ("encoder.layer.0.attention.query.weight", "encoder.layer.0.attention.proj.bias",
              "encoder.embeddings.patch_embeddings.proj.weight", "predictor.embeddings.mask_tokens",
              "predictor.proj.weight", "encoder.layernorm.weight"):
        assert k in sd, k
    again = backbones._direct(type(model), model.config, dict(sd))
    assert again is not None
    same_outputs(again, model, "vjepa2")


# --------------------------------------------------------------------------- the public loader

def legacy_checkpoint(path, image_type: str) -> None:
    """Rewrite an upstream-style training file so its image and audio backbones carry 4.5x names."""
    obj = torch.load(path, weights_only=False)
    sd = obj["model_state_dict"]
    for model_type, p in ((image_type, PREFIX["image"]), ("audio-spectrogram-transformer", PREFIX["audio"])):
        sub = {k[len(p):]: sd.pop(k) for k in [k for k in sd if k.startswith(p)]}
        sd.update({p + k: v for k, v in legacy_state_dict(model_type, sub).items()})
    torch.save(obj, path)


@pytest.mark.parametrize("image_type", ["dinov3_vit", "dinov2"])
def test_a_4_5x_upstream_file_loads_through_the_checkpoint_loader(tmp_path, image_type, monkeypatch):
    monkeypatch.setenv("FUSION_CORE_FEATURE_CACHE", str(tmp_path / "cache"))
    path, bdir, models = build_upstream(tmp_path, image_type=image_type)
    legacy_checkpoint(path, image_type)
    keys = torch.load(path, weights_only=False)["model_state_dict"]
    assert "audio_encoder.model.encoder.layer.0.attention.attention.query.weight" in keys
    assert ("image_encoder.backbone.layer.0.norm1.weight" if image_type == "dinov3_vit"
            else "image_encoder.backbone.encoder.layer.0.attention.attention.query.weight") in keys
    ck = load_checkpoint(path, backbone_dir=bdir, device="cpu")
    adapters = ck.upstream_encoders.load()
    for m, model_type in (("image", image_type), ("audio", "audio-spectrogram-transformer"), ("video", "vjepa2")):
        same_outputs(adapters[m].backbone, models[m], model_type)


# --------------------------------------------------------------------------- unknown old-style keys

UNKNOWN = {   # an old-style key that neither 4.5x nor 5.x has, as the file holds it (below the prefix)
    "audio": ("audio-spectrogram-transformer", "encoder.layer.1.attention.attention.relative_position_bias_table",
              torch.zeros(4)),
    "image": ("dinov3_vit", "layer.1.attention.qkv.bias", torch.zeros(4)),
}


def _unknown_key_error(tmp_path, modality: str) -> tuple[str, str]:
    model_type, key, tensor = UNKNOWN[modality]
    model = tiny_model(model_type, 0)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(model.config.to_json_string())
    sd = legacy_state_dict(model_type, model.state_dict())
    sd[key] = tensor
    with pytest.raises(InputError) as e:
        backbones.load_backbone(modality, sd, backbone_dir=tmp_path / "cfg", where="ckpt.pth")
    return str(e.value), PREFIX[modality] + key


@pytest.mark.parametrize("modality", sorted(UNKNOWN))
def test_an_unknown_old_style_key_is_one_line_naming_it(tmp_path, modality):
    msg, _ = _unknown_key_error(tmp_path, modality)
    leaf = UNKNOWN[modality][1].split(".", 2)[-1]           # e.g. "attention.attention.relative_position_bias_table"
    assert "\n" not in msg and "unexpected encoder key" in msg
    assert PREFIX[modality] in msg and leaf in msg


@pytest.mark.parametrize("modality", sorted(UNKNOWN))
def test_an_unknown_old_style_key_is_named_as_the_file_holds_it(tmp_path, modality):
    msg, file_key = _unknown_key_error(tmp_path, modality)
    assert file_key in msg, msg


def test_a_mis_shaped_old_style_key_is_named_as_the_file_holds_it(tmp_path):
    model = tiny_model("audio-spectrogram-transformer", 0)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(model.config.to_json_string())
    sd = legacy_state_dict("audio-spectrogram-transformer", model.state_dict())
    key = "encoder.layer.0.attention.attention.query.weight"
    sd[key] = torch.zeros(64, 16)                 # same count (the config still matches), wrong shape
    with pytest.raises(InputError, match="mismatched encoder key") as e:
        backbones.load_backbone("audio", sd, backbone_dir=tmp_path / "cfg", where="ckpt.pth")
    assert "\n" not in str(e.value)
    assert PREFIX["audio"] + key in str(e.value), str(e.value)
