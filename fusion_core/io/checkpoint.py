"""Checkpoint files → tensors and metadata: the container formats, key prefixes and groups.

What is read: `.safetensors` (metadata values JSON-decoded where they parse), or a
`torch.save` file (weights-only, see `torchload`) holding a bare state_dict or a training
dict (`model_state_dict` / `state_dict` beside `epoch`, `config`, optimizer state…).
Keys are split into groups (fusion, classifier, encoders, ignored) after stripping
wrapper prefixes (`module.`, `_orig_mod.`, `model.`). Building modules from the tensors is
`fusion_core.models.checkpoint`'s job.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..vocab import MODALITIES
from .torchload import safe_torch_load

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
MAX_CHECKPOINT_BYTES = 4 * 1024 ** 3
ENCODER_PREFIXES = tuple(f"{m}_encoder." for m in MODALITIES)
CLASSIFIER_PREFIXES = ("classifier.", "head.", "cls_head.", "fc.")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")   # DDP, torch.compile, Lightning
CONFIG_KEYS = ("config", "fusion_config", "hparams", "hyper_parameters", "args")


def read_checkpoint_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], str, Counter]:
    """(tensors, metadata, format, ignored groups) from either file kind."""
    ignored: Counter = Counter()
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise InputError(path, f"not a readable safetensors file (truncated or corrupt?): {str(e)[:200]}") from None
        parsed: dict[str, Any] = {}
        for k, v in meta.items():
            try:
                parsed[k] = json.loads(v)
            except (json.JSONDecodeError, TypeError):
                parsed[k] = v
        return tensors, parsed, "safetensors", ignored
    if path.suffix.lower() in TORCH_SUFFIXES:
        obj = safe_torch_load(path)
        if not isinstance(obj, dict):
            raise InputError(path, f"expected a state_dict or a training-checkpoint dict, found {type(obj).__name__}")
        sd = None
        for key in ("model_state_dict", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                sd = obj[key]
                break
        if sd is None:
            if any(isinstance(v, torch.Tensor) for v in obj.values()):
                sd = obj
            else:
                raise InputError(path, "no weights found: expected a state_dict, or a dict with 'model_state_dict' "
                                       f"or 'state_dict' (keys: {', '.join(map(str, list(obj)[:8]))})")
        meta: dict[str, Any] = {}
        if sd is not obj:
            for k, v in obj.items():
                if v is sd:
                    continue
                if isinstance(v, dict) and k not in CONFIG_KEYS:
                    ignored[str(k)] += 1          # optimizer / scheduler state: not needed to explain
                else:
                    meta[str(k)] = v
        tensors = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        non_tensor = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
        if non_tensor:
            ignored["non-tensor entries"] += len(non_tensor)
        return tensors, meta, "torch", ignored
    raise InputError(path, f"unsupported checkpoint type {path.suffix!r} (use .safetensors, .pt, .pth or .ckpt)")


def strip_wrappers(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


_FUSION_KEY = re.compile(
    r"^(fusion_tokens|(video|image|audio|sensor)_(proj|cross_attn|norm)\.|aggregation\.|output_proj\.|fusion_proj\.)")


def split_groups(tensors: dict[str, torch.Tensor]) -> tuple[dict, dict, dict, Counter]:
    fusion, classifier, encoders, ignored = {}, {}, {}, Counter()
    for raw, t in tensors.items():
        k = strip_wrappers(raw)
        if k.startswith("fusion.") and _FUSION_KEY.match(k[len("fusion."):]):
            fusion[k[len("fusion."):]] = t
        elif _FUSION_KEY.match(k):
            fusion[k] = t
        elif k.startswith(ENCODER_PREFIXES):
            encoders[k] = t
        elif k.startswith(CLASSIFIER_PREFIXES):
            classifier[k] = t
        else:
            ignored[k.split(".")[0] + ".*"] += 1
    return fusion, classifier, encoders, ignored


def find_heads(meta: dict) -> tuple[int | None, str]:
    """Search checkpoint config/metadata for a head count; return (heads, where)."""
    names = ("num_heads", "n_heads", "fusion_heads", "num_attention_heads", "nhead")

    def walk(obj, path, depth=0):
        if depth > 4 or not isinstance(obj, dict):
            return None
        for n in names:
            if n in obj and isinstance(obj[n], (int, np.integer)) and not isinstance(obj[n], bool):
                return int(obj[n]), f"{path}.{n}"
        # prefer a fusion-ish section, then anything else
        for k in sorted(obj, key=lambda k: "fusion" not in str(k).lower()):
            if "encoder" in str(k).lower():
                continue   # an encoder's heads are not the fusion's
            got = walk(obj[k], f"{path}.{k}", depth + 1)
            if got:
                return got
        return None

    for key in CONFIG_KEYS:
        if key in meta:
            got = walk(meta[key], key)
            if got:
                return got
    return None, ""


def scalar(v) -> float | None:
    """A finite number from a tensor, numpy scalar, number or numeric string; else None
    (a NaN best_metric would make the JSON reports invalid)."""
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return None
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return float(v) if np.isfinite(v) else None
    return None
