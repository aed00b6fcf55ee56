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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..io.checkpoint import CLASSIFIER_PREFIXES, CheckpointFile, read_checkpoint_file, scalar
from ..io.torchload import file_sha256
from ..vocab import MODALITIES
from .dummy import DummyCrossAttentionFusion
from .encoders.demo import EncoderConfig, WeldEncoders
from .encoders.upstream.encoders import UpstreamEncoders, has_upstream_encoders
from .fusion import CrossAttentionFusionModule, FusionConfig, parameter_count
from .heads import SEED_DEFAULT_HEADS, HeadCount, resolve_heads  # noqa: F401  (SEED_DEFAULT_HEADS: the app's default)

OUTPUT_FUSED = "fused"
OUTPUT_EMBEDDING = "l2_normalize(feature_norm(fused))"


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
    heads_assumed: bool = False           # no source stated the head count: every number depends on a guess
    output: str = "fused"                 # which output the cosine/anomaly targets explain (OUTPUT_*)
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
            f"output        {self.output}",
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
    embedding: nn.Module | None = None    # upstream's feature_norm + L2: the model's real output
    # upstream's own encoders (V-JEPA 2, DINO, AST, sensor Transformer), rebuilt from this
    # file's weights on first use: only when weld files are explained
    upstream_encoders: UpstreamEncoders | None = None

    @property
    def weld_encoders(self):
        """What turns welds into tokens: the built-in encoders, else upstream's, else None."""
        return self.encoders if self.encoders is not None else self.upstream_encoders


class Embedding(nn.Module):
    """Upstream QuadModalSOTAModel's output head: l2_normalize(feature_norm(fused)).

    Its k-NN anomaly scores and contrastive training use this embedding, not the fused
    vector; `l2_normalize` is upstream's default (its FUSION config, not in the checkpoint)."""

    def __init__(self, hidden: int, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.feature_norm = nn.LayerNorm(hidden)
        self.feature_norm.load_state_dict(weights, strict=True)

    def unnormalized(self, fused: torch.Tensor) -> torch.Tensor:
        """The embedding before its L2 normalisation (what gradients are taken on)."""
        return self.feature_norm(fused)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.unnormalized(fused), p=2, dim=-1)


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


def _build_dummy(fk: dict[str, torch.Tensor], meta: dict, path: Path) -> tuple[nn.Module, dict]:
    w0, w3 = fk["fusion_proj.0.weight"], fk.get("fusion_proj.3.weight")
    if w3 is None or w0.ndim != 2 or w3.ndim != 2:
        raise InputError(path, "mean-pool (dummy) fusion is incomplete: need fusion_proj.0.weight and fusion_proj.3.weight")
    inner, total, hidden = int(w0.shape[0]), int(w0.shape[1]), int(w3.shape[0])
    if min(inner, total, hidden) == 0:
        raise InputError(path, f"mean-pool fusion has a zero size (input {total}, hidden {hidden}): degenerate weights")
    layouts = {"upstream": 2 * hidden, "seed": hidden}
    layout = next((name for name, width in layouts.items() if inner == width and w3.shape[1] == width), None)
    if layout is None:
        raise InputError(path, f"mean-pool fusion_proj is {total}→{inner}→{hidden}: neither upstream's "
                               f"ΣD→2H→H nor the seed's ΣD→H→H")
    cfg = meta.get("fusion_config") or meta.get("config") or {}
    dims = {m: int(cfg[f"{m}_dim"]) for m in MODALITIES if isinstance(cfg, dict) and f"{m}_dim" in cfg}
    module = DummyCrossAttentionFusion(total, hidden, input_dims=dims if len(dims) == 4 else None, layout=layout)
    _load_strict(module, fk, path, f"the mean-pool fusion ({layout} layout)")
    return module, {"input_total": total, "hidden": hidden, **dims}


def _load_strict(module: nn.Module, sd: dict[str, torch.Tensor], path: Path, what: str) -> None:
    msg = _readable_mismatch(module, sd)
    if msg:
        raise InputError(path, f"does not match {what}: {msg}")
    module.load_state_dict(sd, strict=True)


def _shapes(fk: dict[str, torch.Tensor], path: Path) -> tuple[str, dict[str, int], int, int]:
    """(layout, input dims, hidden, tokens) of a cross-attention fusion, from its tensors."""
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
    if H == 0 or T == 0:
        raise InputError(path, f"fusion_tokens has shape {tuple(tokens.shape)}: "
                               f"{'0 fusion tokens' if T == 0 else 'hidden size 0'}, nothing to attend with")
    if min(dims.values()) == 0:
        raise InputError(path, "a modality projection has input size 0: " + ", ".join(f"{m}={d}" for m, d in dims.items()))
    return layout, dims, H, T


def _build_cross_attention(fk: dict[str, torch.Tensor], meta: dict, path: Path, heads: int | None,
                           config: Path | None) -> tuple[nn.Module, dict, HeadCount]:
    layout, dims, H, T = _shapes(fk, path)
    hc = resolve_heads(H, T, dims, caller=heads, meta=meta, path=path, config=config)
    cfg = FusionConfig(video_dim=dims["video"], image_dim=dims["image"], audio_dim=dims["audio"],
                       sensor_dim=dims["sensor"], hidden_dim=H, num_fusion_tokens=T, num_heads=hc.heads,
                       dropout=0.1, layout=layout)
    module = CrossAttentionFusionModule(cfg)
    _load_strict(module, fk, path, f"the cross-attention fusion (layout {layout})")
    return module, {**dims, "hidden": H, "tokens": T}, hc


def _freeze(m: nn.Module | None) -> None:
    if m is not None:
        m.eval()
        m.requires_grad_(False)


def _checked_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, expected a checkpoint file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")


def _float_weights(group: dict[str, torch.Tensor], path: Path, what: str) -> dict[str, torch.Tensor]:
    bad = [k for k, t in group.items() if not t.is_floating_point()]
    if bad:
        raise InputError(path, f"{what} weights must be floating point; {bad[0]} is {group[bad[0]].dtype}")
    out = {k: t.float() for k, t in group.items()}
    for k, t in out.items():
        if not torch.isfinite(t).all():
            raise InputError(path, f"weight {k} contains NaN or Inf")
    return out


def _classifier(ck: dict[str, torch.Tensor], H: int, meta: dict, cf: CheckpointFile) -> tuple[nn.Linear | None, list | None]:
    """A single Linear(H → C) under a known prefix, and the class names that fit it."""
    names = meta.get("class_names") if isinstance(meta.get("class_names"), list) else None
    if not ck:
        return None, names
    prefix = next(p for p in CLASSIFIER_PREFIXES if any(k.startswith(p) for k in ck))
    w, b = ck.get(prefix + "weight"), ck.get(prefix + "bias")
    if w is None or w.ndim != 2 or w.shape[1] != H or len(ck) > 2:
        cf.ignored[prefix + "* (not a single Linear on the fused output)"] += len(ck)
        return None, names
    classifier = nn.Linear(H, int(w.shape[0]), bias=b is not None)
    classifier.load_state_dict({k[len(prefix):]: v.float() for k, v in ck.items()}, strict=True)
    if names and len(names) != w.shape[0]:
        cf.notes.append(f"{len(names)} class names for {w.shape[0]} logits: names dropped")
        names = None
    return classifier, names


def _embedding(fn: dict[str, torch.Tensor], H: int, cf: CheckpointFile) -> Embedding | None:
    """Upstream's output head, when its `feature_norm.*` is in the file: LayerNorm(H), then L2."""
    if not fn:
        return None
    w, b = fn.get("weight"), fn.get("bias")
    if w is None or b is None or tuple(w.shape) != (H,) or tuple(b.shape) != (H,) or len(fn) != 2:
        raise InputError(cf.path, f"feature_norm.* is not a LayerNorm({H}) on the fused output "
                                  f"(found {', '.join(f'{k} {tuple(v.shape)}' for k, v in fn.items())})")
    return Embedding(H, _float_weights(fn, cf.path, "feature_norm"))


def _encoders(ek: dict[str, torch.Tensor], meta: dict, path: Path) -> WeldEncoders | None:
    enc_cfg = meta.get("encoder_config")
    if not (ek and isinstance(enc_cfg, dict)):
        return None
    encoders = WeldEncoders(EncoderConfig.from_dict(enc_cfg))
    _load_strict(encoders, ek, path, "its encoder_config's built-in encoders")
    return encoders


def load_checkpoint(path: str | os.PathLike, heads: int | None = None, *,
                    config: str | os.PathLike | None = None, backbone_dir: str | os.PathLike | None = None,
                    device: str | None = None) -> LoadedCheckpoint:
    """Load a checkpoint of either published layout, from any of the supported containers.

    `heads`: the fusion head count, when the caller knows it (see `fusion_core.models.heads`
    for every other source); `config`: a config file stating it. Raises InputError (naming
    the file and the reason) for anything that cannot load. Upstream's encoders, when the file
    holds them, are only read when welds are encoded (`backbone_dir`: local model folders
    with their config.json; `device`: auto | cpu | cuda for them).
    """
    path = Path(path)
    _checked_file(path)
    cf = read_checkpoint_file(path)
    if not cf.n_tensors:
        raise InputError(path, "contains no tensors")
    fk = cf.groups.get("fusion", {})
    if not fk:
        raise InputError(path, "no fusion-module weights found (expected keys like fusion_tokens, "
                               "video_cross_attn.*, optionally prefixed by 'fusion.' or 'module.')")
    fk = _float_weights(fk, path, "fusion")
    if "fusion_proj.0.weight" in fk:
        fusion, dims = _build_dummy(fk, cf.meta, path)
        hc = None
    else:
        fusion, dims, hc = _build_cross_attention(fk, cf.meta, path, heads, Path(config) if config else None)
    classifier, class_names = _classifier(cf.groups.get("classifier", {}), dims["hidden"], cf.meta, cf)
    embedding = _embedding(cf.groups.get("feature_norm", {}), dims["hidden"], cf)
    encoders = _encoders(cf.groups.get("encoders", {}), cf.meta, path)
    for m in (fusion, classifier, encoders, embedding):
        _freeze(m)
    info = _info(cf, fusion, dims, hc, classifier, class_names, encoders, embedding)
    upstream = None
    if encoders is None and has_upstream_encoders(list(cf.ignored)):
        upstream = UpstreamEncoders(path, dims, info.sha256, backbone_dir=str(backbone_dir) if backbone_dir else None,
                                    device=device)
        _report_upstream(info)
    codes = cf.meta.get("class_codes") if isinstance(cf.meta.get("class_codes"), list) else None
    return LoadedCheckpoint(fusion=fusion, info=info, classifier=classifier, encoders=encoders,
                            class_names=class_names if classifier is not None else None,
                            class_codes=codes if classifier is not None else None,
                            encoder_config=cf.meta.get("encoder_config") if encoders is not None else None,
                            embedding=embedding, upstream_encoders=upstream)


def _report_upstream(info: CheckpointInfo) -> None:
    """The encoder groups are no longer 'not shipped': say they are read when welds are explained."""
    renamed = {}
    for label, n in info.ignored.items():
        if "(pretrained backbone" in label:
            label = label.split(" (")[0] + " (upstream encoder: loaded when weld files are explained)"
        renamed[label] = n
    info.ignored = renamed
    info.notes.append("encoders: upstream's own (V-JEPA 2 video, DINO photos, AST audio, sensor Transformer), rebuilt "
                      "from this file's weights when weld files are explained; the video branch gets the weld's "
                      "photos when it has an images/ folder, as upstream's dataset reader does")


def _info(cf: CheckpointFile, fusion, dims, hc: HeadCount | None, classifier, class_names, encoders,
          embedding) -> CheckpointInfo:
    meta = cf.meta
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    metric = scalar(meta.get("best_metric", cfg.get("best_metric") if cfg else None))
    epoch, step = scalar(meta.get("epoch")), scalar(meta.get("global_step"))
    return CheckpointInfo(
        path=str(cf.path), sha256=file_sha256(cf.path), file_format=cf.file_format,
        architecture="mean-pool" if hc is None else "cross-attention",
        layout=getattr(getattr(fusion, "config", None), "layout", None), dims=dims,
        heads=None if hc is None else hc.heads,
        heads_source="n/a: mean-pool fusion has no attention" if hc is None else hc.source,
        heads_assumed=bool(hc and hc.assumed), parameters=parameter_count(fusion),
        epoch=int(epoch) if epoch is not None else None, global_step=int(step) if step is not None else None,
        metric=metric, val_accuracy=scalar(meta.get("val_accuracy")),
        classes=class_names if classifier is not None else None, has_encoders=encoders is not None,
        output=OUTPUT_EMBEDDING if embedding is not None else OUTPUT_FUSED,
        ignored=dict(cf.ignored), notes=cf.notes + (hc.notes if hc else []),
    )


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write safetensors with JSON-encoded metadata values (what load_checkpoint reads back)."""
    from safetensors.torch import save_file
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=meta)
