"""Checkpoint loading: safetensors and torch.save files, safely, with every size inferred.

Nothing in a checkpoint runs (`fusion_core.io.checkpoint` reads the file, weights-only).
Dimensions, token count
and layout come from tensor shapes. The head count is in no shape: it comes from the
checkpoint's own config/metadata, else the caller, else the seed default (8), and the
report says which.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..io.checkpoint import (CLASSIFIER_PREFIXES, MAX_CHECKPOINT_BYTES, find_heads, read_checkpoint_file, scalar,
                             split_groups)
from ..io.torchload import file_sha256
from ..vocab import MODALITIES
from .dummy import DummyCrossAttentionFusion
from .encoders.demo import EncoderConfig, WeldEncoders
from .fusion import CrossAttentionFusionModule, FusionConfig, parameter_count

SEED_DEFAULT_HEADS = 8


# --------------------------------------------------------------------------- report

@dataclass
class CheckpointInfo:
    path: str
    sha256: str
    file_format: str                      # safetensors | torch
    architecture: str                     # cross-attention | mean-pool
    layout: str | None                    # v1 | v2 (cross-attention only)
    dims: dict[str, int]                  # video/image/audio/sensor/hidden/tokens
    heads: int | None
    heads_source: str
    parameters: int
    epoch: int | None = None
    global_step: int | None = None
    metric: float | None = None
    val_accuracy: float | None = None
    classes: list[str] | None = None
    has_encoders: bool = False
    ignored: dict[str, int] = field(default_factory=dict)   # group -> number of tensors / entries
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    def summary_lines(self) -> list[str]:
        d = self.dims
        lines = [
            f"file          {self.path}",
            f"sha256        {self.sha256}",
            f"format        {self.file_format}",
            f"architecture  {self.architecture}" + (f" (layout {self.layout})" if self.layout else ""),
            "dims          " + ", ".join(f"{k}={v}" for k, v in d.items()),
            f"heads         {self.heads if self.heads is not None else 'n/a'} (from {self.heads_source})",
            f"parameters    {self.parameters:,} (fusion module)",
        ]
        for key in ("epoch", "global_step", "metric", "val_accuracy"):
            if getattr(self, key) is not None:
                lines.append(f"{key:<14}{getattr(self, key)}")
        if self.classes:
            lines.append(f"classes       {', '.join(self.classes)}")
        lines.append(f"encoders      {'built-in (weld files can be explained)' if self.has_encoders else 'none (explain feature files)'}")
        if self.ignored:
            lines.append("ignored       " + ", ".join(f"{k} ({v})" for k, v in sorted(self.ignored.items())))
        lines += [f"note          {n}" for n in self.notes]
        return lines


@dataclass
class LoadedCheckpoint:
    """A loaded model: fusion module, optional classifier head and built-in encoders, all eval and frozen."""

    fusion: nn.Module
    info: CheckpointInfo
    classifier: nn.Linear | None = None
    encoders: nn.Module | None = None
    class_names: list[str] | None = None
    class_codes: list[int] | None = None
    encoder_config: dict | None = None


# --------------------------------------------------------------------------- reading

def _readable_mismatch(module: nn.Module, sd: dict[str, torch.Tensor]) -> str | None:
    want = module.state_dict()
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    shapes = [f"{k} {tuple(sd[k].shape)} vs expected {tuple(want[k].shape)}"
              for k in sorted(set(want) & set(sd)) if sd[k].shape != want[k].shape]
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f" … (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{label}: {', '.join(items[:5])}{more}")
    return "; ".join(parts) or None


def _build_fusion(fk: dict[str, torch.Tensor], meta: dict, heads_arg: int | None, path: Path):
    """Infer the architecture from shapes, build it, load strictly. Returns (module, info parts)."""
    if "fusion_proj.0.weight" in fk:
        w0, w3 = fk["fusion_proj.0.weight"], fk.get("fusion_proj.3.weight")
        if w3 is None or w0.ndim != 2 or w3.ndim != 2:
            raise InputError(path, "mean-pool (dummy) fusion is incomplete: need fusion_proj.0.weight and fusion_proj.3.weight")
        cfg = meta.get("fusion_config") or meta.get("config") or {}
        dims = {m: int(cfg[f"{m}_dim"]) for m in MODALITIES if isinstance(cfg, dict) and f"{m}_dim" in cfg}
        module = DummyCrossAttentionFusion(int(w0.shape[1]), int(w3.shape[0]), input_dims=dims if len(dims) == 4 else None)
        msg = _readable_mismatch(module, fk)
        if msg:
            raise InputError(path, f"does not match the mean-pool fusion: {msg}")
        module.load_state_dict(fk, strict=True)
        d = {"input_total": int(w0.shape[1]), "hidden": int(w3.shape[0])}
        d.update({f"{m}": v for m, v in dims.items()})
        return module, "mean-pool", None, d, None, "n/a: mean-pool fusion has no attention"

    need = ["fusion_tokens", "video_cross_attn.in_proj_weight"]
    if not all(k in fk for k in need):
        found = ", ".join(sorted({k.split('.')[0] for k in fk})[:8]) or "none"
        raise InputError(path, f"no cross-attention fusion weights found (need fusion_tokens and "
                               f"<modality>_cross_attn.*; fusion-like groups found: {found})")
    layout = "v2" if "video_proj.1.weight" in fk else "v1"
    wkey = "{}_proj.1.weight" if layout == "v2" else "{}_proj.weight"
    dims = {}
    for m in MODALITIES:
        w = fk.get(wkey.format(m))
        if w is None or w.ndim != 2:
            raise InputError(path, f"missing or malformed {wkey.format(m)} (layout {layout})")
        dims[m] = int(w.shape[1])
    tokens = fk["fusion_tokens"]
    if tokens.ndim != 3:
        raise InputError(path, f"fusion_tokens has shape {tuple(tokens.shape)}, expected (1, T, H)")
    H, T = int(tokens.shape[2]), int(tokens.shape[1])

    heads, where = find_heads(meta)
    if heads is not None:
        source = f"checkpoint ({where})"
    elif heads_arg is not None:
        heads, source = int(heads_arg), "caller (--heads)"
    else:
        heads, source = SEED_DEFAULT_HEADS, "seed default (not in the checkpoint; pass --heads to change)"
    if heads <= 0 or H % heads:
        raise InputError(path, f"hidden size {H} is not divisible by {heads} heads (heads from {source}); "
                               "pass the right --heads")
    dropout = 0.1
    cfg = FusionConfig(video_dim=dims["video"], image_dim=dims["image"], audio_dim=dims["audio"],
                       sensor_dim=dims["sensor"], hidden_dim=H, num_fusion_tokens=T, num_heads=heads,
                       dropout=dropout, layout=layout)
    module = CrossAttentionFusionModule(cfg)
    msg = _readable_mismatch(module, fk)
    if msg:
        raise InputError(path, f"does not match the cross-attention fusion (layout {layout}): {msg}")
    module.load_state_dict(fk, strict=True)
    return module, "cross-attention", layout, {**dims, "hidden": H, "tokens": T}, heads, source


def _freeze(m: nn.Module | None) -> None:
    if m is not None:
        m.eval()
        m.requires_grad_(False)


def load_checkpoint(path: str | os.PathLike, heads: int | None = None) -> LoadedCheckpoint:
    """Load a checkpoint of either published layout, from any of the supported containers.

    Raises InputError (naming the file and the reason) for anything that cannot load.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, expected a checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "file is empty")
    if size > MAX_CHECKPOINT_BYTES:
        raise InputError(path, f"file is {size / 1e9:.1f} GB, above the {MAX_CHECKPOINT_BYTES / 1e9:.0f} GB limit")
    tensors, meta, fmt, ignored = read_checkpoint_file(path)
    if not tensors:
        raise InputError(path, "contains no tensors")
    fk, ck, ek, more_ignored = split_groups(tensors)
    ignored.update(more_ignored)
    if not fk:
        raise InputError(path, "no fusion-module weights found (expected keys like fusion_tokens, "
                               "video_cross_attn.*, optionally prefixed by 'fusion.' or 'module.')")
    floats = [k for k, t in fk.items() if not t.is_floating_point()]
    if floats:
        raise InputError(path, f"fusion weights must be floating point; {floats[0]} is {fk[floats[0]].dtype}")
    fk = {k: t.float() for k, t in fk.items()}
    for k, t in fk.items():
        if not torch.isfinite(t).all():
            raise InputError(path, f"weight {k} contains NaN or Inf")
    fusion, arch, layout, dims, n_heads, heads_source = _build_fusion(fk, meta, heads, path)
    notes: list[str] = []
    if heads is not None and n_heads is not None and heads != n_heads:
        notes.append(f"--heads {heads} ignored: the checkpoint says {n_heads}")
    H = dims["hidden"]

    # Classifier head: a single Linear(H → C) under a known prefix.
    classifier = None
    class_names = meta.get("class_names") if isinstance(meta.get("class_names"), list) else None
    class_codes = meta.get("class_codes") if isinstance(meta.get("class_codes"), list) else None
    if ck:
        prefix = next(p for p in CLASSIFIER_PREFIXES if any(k.startswith(p) for k in ck))
        w, b = ck.get(prefix + "weight"), ck.get(prefix + "bias")
        if w is not None and w.ndim == 2 and w.shape[1] == H and len(ck) <= 2:
            classifier = nn.Linear(H, int(w.shape[0]), bias=b is not None)
            classifier.load_state_dict({k[len(prefix):]: v.float() for k, v in ck.items()}, strict=True)
            if class_names and len(class_names) != w.shape[0]:
                notes.append(f"{len(class_names)} class names for {w.shape[0]} logits: names dropped")
                class_names = None
        else:
            ignored[prefix + "* (not a single Linear on the fused output)"] += len(ck)

    # Built-in encoders: only when the checkpoint describes them (our own training output).
    encoders, enc_cfg = None, meta.get("encoder_config")
    if ek and isinstance(enc_cfg, dict):
        encoders = WeldEncoders(EncoderConfig.from_dict(enc_cfg))
        msg = _readable_mismatch(encoders, ek)
        if msg:
            raise InputError(path, f"built-in encoder weights do not match its encoder_config: {msg}")
        encoders.load_state_dict(ek, strict=True)
    elif ek:
        groups = Counter(k.split(".")[0] for k in ek)
        for g, n in groups.items():
            ignored[f"{g}.* (pretrained backbone, not shipped: explain feature files)"] += n

    for m in (fusion, classifier, encoders):
        _freeze(m)

    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    metric = scalar(meta.get("best_metric", cfg.get("best_metric") if cfg else None))
    epoch = scalar(meta.get("epoch"))
    step = scalar(meta.get("global_step"))
    info = CheckpointInfo(
        path=str(path), sha256=file_sha256(path), file_format=fmt, architecture=arch, layout=layout, dims=dims,
        heads=n_heads, heads_source=heads_source, parameters=parameter_count(fusion),
        epoch=int(epoch) if epoch is not None else None, global_step=int(step) if step is not None else None,
        metric=metric, val_accuracy=scalar(meta.get("val_accuracy")),
        classes=class_names if classifier is not None else None, has_encoders=encoders is not None,
        ignored=dict(ignored), notes=notes,
    )
    return LoadedCheckpoint(fusion=fusion, info=info, classifier=classifier, encoders=encoders,
                            class_names=class_names if classifier is not None else None,
                            class_codes=class_codes if classifier is not None else None,
                            encoder_config=enc_cfg if encoders is not None else None)


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write safetensors with JSON-encoded metadata values (what load_checkpoint reads back)."""
    from safetensors.torch import save_file
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=meta)
