"""Upstream's pretrained backbones, rebuilt as `transformers` models from a checkpoint's own weights.

The architecture config comes from, in order: (1) a local model folder the user points at
(`--backbone-dir`: a folder with `config.json`, or a folder of such folders, as upstream's
users keep them under `models/`), picked by `model_type` and matched on the parameter
count; (2) the published configuration of a named model (`published.py`) matched on the
checkpoint's tensor shapes. Nothing is downloaded (`local_files_only=True`).

Weights: key names of files saved with transformers 4.5x (AST, DINOv2 and DINOv3 layers were
renamed in 5.x) are first brought to this version's names by an explicit table (`LEGACY_NAMES`),
so such files load directly too; a sub-state-dict that still differs from the model is written
with the config to a temporary folder and loaded with `from_pretrained`. Any missing,
unexpected or mis-shaped key is a one-line InputError naming the key as the checkpoint holds it.
`transformers` is imported here only, lazily: `import fusion_core` stays light.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ....errors import InputError
from .published import PUBLISHED

# modality → (checkpoint prefix, model_types it may hold)
PREFIXES = {"video": "video_encoder.model.", "image": "image_encoder.backbone.", "audio": "audio_encoder.model."}
MODEL_TYPES = {"video": ("vjepa2",), "image": ("dinov3_vit", "dinov2"), "audio": ("audio-spectrogram-transformer",)}
FAMILY = {"vjepa2": "V-JEPA 2", "dinov3_vit": "DINOv3", "dinov2": "DINOv2", "audio-spectrogram-transformer": "AST"}


@dataclass
class Backbone:
    """A loaded backbone and where its architecture came from, for the report."""

    model: torch.nn.Module
    model_type: str
    name: str              # the published model name, or the folder's name
    config_source: str     # "published configuration matched on shapes" | "config.json in <dir>"
    config: object         # the transformers config

    def describe(self) -> str:
        return f"{FAMILY[self.model_type]} {self.name} ({self.config_source})"


def _offline() -> None:
    """No hub, no telemetry: read before huggingface_hub is first imported (it reads them once)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_IMPLICIT_TOKEN"):
        os.environ.setdefault(var, "1")


def model_class(model_type: str):
    _offline()
    import transformers
    return {"vjepa2": transformers.VJEPA2Model, "dinov3_vit": transformers.DINOv3ViTModel,
            "dinov2": transformers.Dinov2Model, "audio-spectrogram-transformer": transformers.ASTModel}[model_type]


def config_class(model_type: str):
    _offline()
    import transformers
    return {"vjepa2": transformers.VJEPA2Config, "dinov3_vit": transformers.DINOv3ViTConfig,
            "dinov2": transformers.Dinov2Config, "audio-spectrogram-transformer": transformers.ASTConfig}[model_type]


def guess_model_type(modality: str, sd: dict[str, torch.Tensor]) -> str:
    """Which family a sub-state-dict is: DINOv2 has learned position embeddings, DINOv3 has RoPE."""
    if modality == "image":
        return "dinov2" if any(k.endswith("position_embeddings") for k in sd) else "dinov3_vit"
    return MODEL_TYPES[modality][0]


def numel(sd: dict[str, torch.Tensor]) -> int:
    return sum(int(t.numel()) for t in sd.values())


def expected_numel(model_type: str, cfg_dict: dict) -> int:
    """Parameter + persistent-buffer count of a model built from this config, without allocating."""
    cfg = config_class(model_type)(**cfg_dict)
    with torch.device("meta"):
        model = model_class(model_type)(cfg)
    return sum(int(t.numel()) for t in model.state_dict().values())


def _folder_configs(backbone_dir: Path) -> list[tuple[Path, dict]]:
    folders = [backbone_dir] + sorted(p for p in backbone_dir.iterdir() if p.is_dir())
    out = []
    for folder in folders:
        f = folder / "config.json"
        if f.is_file():
            try:
                obj = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise InputError(f, f"not a readable config.json ({e})") from None
            if isinstance(obj, dict):
                out.append((folder, obj))
    return out


def resolve_config(modality: str, sd: dict[str, torch.Tensor], backbone_dir: Path | None,
                   where: str) -> tuple[str, dict, str, str]:
    """(model_type, config dict, name, source) for a backbone's weights.

    The candidate whose parameter count equals the checkpoint's wins; failing that, the
    nearest one (within 5%) is taken so that loading names the missing or mis-shaped key."""
    n = numel(sd)
    cands: list[tuple[str, dict, str, str]] = []
    if backbone_dir is not None:
        if not backbone_dir.is_dir():
            raise InputError(backbone_dir, "--backbone-dir is not a folder")
        for folder, cfg in _folder_configs(backbone_dir):
            if cfg.get("model_type") in MODEL_TYPES[modality]:
                fields = {k: v for k, v in cfg.items() if k not in _NOT_FIELDS}
                cands.append((cfg["model_type"], fields, folder.name, f"config.json in {folder}"))
    mt = guess_model_type(modality, sd)
    if not cands:
        cands = [(mt, dict(cfg), name, "published configuration matched on shapes") for name, cfg in PUBLISHED[mt]]
    sizes = [_numel_or_none(c[0], c[1]) for c in cands]
    for c, size in zip(cands, sizes):
        if size == n:
            return c
    gaps = [(abs(size - n), i) for i, size in enumerate(sizes) if size is not None]
    if gaps and min(gaps)[0] <= 0.05 * n:
        return cands[min(gaps)[1]]
    tried = ", ".join(c[2] for c in cands)
    raise InputError(where, f"{PREFIXES[modality]}* holds {n:,} {FAMILY[mt]} weights: no configuration "
                            f"matches (tried {tried}); give --backbone-dir with the model's config.json")


_NOT_FIELDS = ("model_type", "architectures", "transformers_version")

# transformers 4.5x key → 5.x key, per model type (from 4.5x's modeling files); the first match wins.
_QKV = (("query", "q"), ("key", "k"), ("value", "v"))
LEGACY_NAMES: dict[str, list[tuple[str, str]]] = {
    "audio-spectrogram-transformer": [
        *[(rf"^encoder\.layer\.(\d+)\.attention\.attention\.{a}\.", rf"layers.\1.attention.{b}_proj.") for a, b in _QKV],
        (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attention.o_proj."),
        (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.mlp.fc1."),
        (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.mlp.fc2."),
        (r"^encoder\.layer\.(\d+)\.", r"layers.\1."),
    ],
    "dinov2": [
        *[(rf"^encoder\.layer\.(\d+)\.attention\.attention\.{a}\.", rf"encoder.layer.\1.attention.{b}_proj.")
          for a, b in _QKV],
        (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"encoder.layer.\1.attention.o_proj."),
        (r"^encoder\.layer\.(\d+)\.mlp\.weights_out\.", r"encoder.layer.\1.mlp.down_proj."),
    ],
    "dinov3_vit": [(r"^layer\.(\d+)\.", r"model.layer.\1.")],
    "vjepa2": [],
}
_SWIGLU_IN = re.compile(r"^(encoder\.layer\.\d+\.mlp)\.weights_in\.(weight|bias)$")


def modern_names(model_type: str, sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(the sub-state-dict under this transformers' names, {5.x name: the checkpoint's name}).
    DINOv2's fused 4.5x SwiGLU input (`weights_in` = [gate; up]) is split in two."""
    out: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    for k, v in sd.items():
        m = _SWIGLU_IN.match(k) if model_type == "dinov2" else None
        if m and v.shape[0] % 2 == 0:
            for part, t in zip(("gate_proj", "up_proj"), (t.clone() for t in v.chunk(2, dim=0))):
                new = f"{m.group(1)}.{part}.{m.group(2)}"
                out[new], names[new] = t, k
            continue
        new = next((re.sub(p, r, k, count=1) for p, r in LEGACY_NAMES[model_type] if re.match(p, k)), k)
        out[new], names[new] = v, k
    return out, names


def _numel_or_none(model_type: str, fields: dict) -> int | None:
    try:
        return expected_numel(model_type, fields)
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def load_backbone(modality: str, sd: dict[str, torch.Tensor], *, backbone_dir: Path | None,
                  where: str) -> Backbone:
    """The `transformers` model for one encoder, holding exactly the checkpoint's weights."""
    if not sd:
        raise InputError(where, f"no {PREFIXES[modality]}* weights in the checkpoint")
    mt, fields, name, source = resolve_config(modality, sd, backbone_dir, where)
    cls = model_class(mt)
    config = config_class(mt)(**fields)
    _quiet()
    sd, names = modern_names(mt, sd)
    model = _direct(cls, config, sd)
    if model is None:
        model = _via_folder(cls, config, sd, modality, where, names)
    model.eval().requires_grad_(False)
    return Backbone(model=model, model_type=mt, name=name, config_source=source, config=model.config)


def _direct(cls, config, sd: dict[str, torch.Tensor]):
    """When the file's key names are this transformers version's (files saved with 5.x; V-JEPA 2
    always), the checkpoint's tensors become the parameters as they are: memory-mapped, no copy."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:                      # pragma: no cover - another transformers layout
        return None
    with no_init_weights():
        model = cls(config)
    want = model.state_dict()
    if set(want) != set(sd) or any(tuple(want[k].shape) != tuple(sd[k].shape) for k in want):
        return None
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()},
                          strict=True, assign=True)
    return model


def _via_folder(cls, config, sd: dict[str, torch.Tensor], modality: str, where: str,
                names: dict[str, str] | None = None):
    """Older key names (transformers 4.5x): `from_pretrained` on a temporary folder converts them."""
    from safetensors.torch import save_file
    with tempfile.TemporaryDirectory(prefix="fusion_core_backbone_") as tmp:
        config.save_pretrained(tmp)
        save_file({k: v.detach().float().contiguous() for k, v in sd.items()}, str(Path(tmp) / "model.safetensors"))
        try:
            model, info = cls.from_pretrained(tmp, local_files_only=True, output_loading_info=True,
                                              dtype=torch.float32, ignore_mismatched_sizes=True)
        except (RuntimeError, ValueError, OSError) as e:
            raise InputError(where, f"{PREFIXES[modality]}*: {_first_line(e)}") from None
    _check_loading(info, modality, where, names)
    return model


def _quiet() -> None:
    """Problems are ours to report, in one line each: no load reports or progress bars."""
    from transformers.utils import logging
    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def _check_loading(info: dict, modality: str, where: str, names: dict[str, str] | None = None) -> None:
    p = PREFIXES[modality]
    names = names or {}
    for label, keys in (("missing encoder key", info.get("missing_keys")),
                        ("unexpected encoder key", info.get("unexpected_keys")),
                        ("mismatched encoder key", info.get("mismatched_keys"))):
        keys = sorted(names.get(k, k) for k in (k if isinstance(k, str) else k[0] for k in (keys or [])))
        if keys:
            more = f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""
            raise InputError(where, f"{label} {p}{keys[0]}{more}: the weights do not fit the {modality} "
                                    "backbone's configuration")
