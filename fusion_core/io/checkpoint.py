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
from dataclasses import dataclass, field
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


@dataclass
class CheckpointFile:
    """What a checkpoint file holds, split into groups; only the groups an explanation needs
    are loaded (from a memory map: a 5 GB training file costs little more than its fusion)."""

    path: Path
    file_format: str                                   # safetensors | torch
    meta: dict[str, Any]                               # metadata / the training dict's other entries
    groups: dict[str, dict[str, torch.Tensor]]         # fusion, classifier, encoders, feature_norm
    ignored: Counter = field(default_factory=Counter)  # group -> number of tensors / entries not used
    notes: list[str] = field(default_factory=list)
    n_tensors: int = 0


def read_checkpoint_file(path: Path, *, with_encoders: bool | None = None) -> CheckpointFile:
    """Read a checkpoint lazily. Encoder tensors are loaded only when `with_encoders`, or
    (None) when the metadata describes built-in encoders (`encoder_config`)."""
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path, with_encoders)
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path, with_encoders)
    raise InputError(path, f"unsupported checkpoint type {path.suffix!r} (use .safetensors, .pt, .pth or .ckpt)")


def _parse_meta(raw: dict[str, str]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            parsed[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            parsed[k] = v
    return parsed


def _read_safetensors(path: Path, with_encoders: bool | None) -> CheckpointFile:
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = _parse_meta(dict(f.metadata() or {}))
            keys = list(f.keys())
            want = _wanted(keys, meta, with_encoders)
            out = CheckpointFile(path, "safetensors", meta, {}, n_tensors=len(keys))
            _fill_groups(out, keys, want, f.get_tensor)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(path, f"not a readable safetensors file (truncated or corrupt?): {str(e)[:200]}") from None
    return out


def _state_dict_of(obj: dict, path: Path) -> dict:
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj.get(key), dict):
            return obj[key]
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise InputError(path, "no weights found: expected a state_dict, or a dict with 'model_state_dict' "
                           f"or 'state_dict' (keys: {', '.join(map(str, list(obj)[:8]))})")


def _read_torch(path: Path, with_encoders: bool | None) -> CheckpointFile:
    obj = safe_torch_load(path, mmap=True)
    if not isinstance(obj, dict):
        raise InputError(path, f"expected a state_dict or a training-checkpoint dict, found {type(obj).__name__}")
    sd = _state_dict_of(obj, path)
    meta: dict[str, Any] = {}
    ignored: Counter = Counter()
    if sd is not obj:
        for k, v in obj.items():
            if v is sd:
                continue
            if isinstance(v, dict) and k not in CONFIG_KEYS:
                ignored[str(k)] += 1          # optimizer / scheduler state: not needed to explain
            else:
                meta[str(k)] = v
    tensors = {str(k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    non_tensor = len(sd) - len(tensors)
    if non_tensor:
        ignored["non-tensor entries"] += non_tensor
    out = CheckpointFile(path, "torch", meta, {}, ignored, n_tensors=len(tensors))
    _fill_groups(out, list(tensors), _wanted(list(tensors), meta, with_encoders), tensors.__getitem__)
    return out


def _wanted(keys: list[str], meta: dict, with_encoders: bool | None) -> set[str]:
    if with_encoders is None:
        with_encoders = isinstance(meta.get("encoder_config"), dict)
    groups = {"fusion", "classifier", "feature_norm"} | ({"encoders"} if with_encoders else set())
    return {k for k in keys if group_of(strip_wrappers(k))[0] in groups}


def _fill_groups(out: CheckpointFile, keys: list[str], want: set[str], get) -> None:
    """Load the wanted keys into their groups; two raw keys that name the same weight must hold
    the same values (fusion.* beside module.fusion.*), else the file is ambiguous."""
    origin: dict[tuple[str, str], str] = {}
    for raw in keys:
        group, name = group_of(strip_wrappers(raw))
        if raw not in want:
            out.ignored[_ignored_label(group, name)] += 1
            continue
        t = get(raw)
        bucket = out.groups.setdefault(group, {})
        if name in bucket:
            first = origin[(group, name)]
            if bucket[name].shape != t.shape or bucket[name].dtype != t.dtype or not torch.equal(bucket[name], t):
                raise InputError(out.path, f"ambiguous weights: '{first}' and '{raw}' both give {group} weight "
                                           f"'{name}' with different values; keep one prefix")
            note = f"the same weights appear twice ('{first}' and '{raw}', identical values): one copy used"
            if not any(n.startswith("the same weights appear twice") for n in out.notes):
                out.notes.append(note)
            continue
        bucket[name] = t
        origin[(group, name)] = raw


def _ignored_label(group: str, name: str) -> str:
    if group == "encoders":
        return f"{name.split('.')[0]}.* (pretrained backbone, not shipped: explain feature files)"
    return name.split(".")[0] + ".*"


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


def group_of(key: str) -> tuple[str, str]:
    """(group, name within the group) of a key already stripped of wrapper prefixes."""
    if key.startswith("fusion.") and _FUSION_KEY.match(key[len("fusion."):]):
        return "fusion", key[len("fusion."):]
    if _FUSION_KEY.match(key):
        return "fusion", key
    if key.startswith("feature_norm."):
        return "feature_norm", key[len("feature_norm."):]
    if key.startswith(ENCODER_PREFIXES):
        return "encoders", key
    if key.startswith(CLASSIFIER_PREFIXES):
        return "classifier", key
    return "other", key


HEAD_KEYS = ("num_heads", "n_heads", "fusion_heads", "num_attention_heads", "nhead")


def whole_number(v: Any) -> int | None:
    """An integer given as 4, "4", 4.0 or np.int64(4); None for anything else (bools, 4.5, NaN, "abc")."""
    if isinstance(v, bool):
        return None
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
        return int(v)
    return None


def find_heads(meta: dict, source: str | Path, sections: tuple[str, ...] = CONFIG_KEYS) -> tuple[int | None, str]:
    """The fusion head count a config states, and where: (heads, "config.fusion.num_heads").

    Searched in `sections` of `meta` (any depth ≤ 4), a section named like "fusion" first,
    skipping encoder sections (an encoder's heads are not the fusion's). A value that is not
    a whole positive number is an InputError naming the key, never silently skipped."""
    def walk(obj, where, depth=0):
        if depth > 4 or not isinstance(obj, dict):
            return None
        for n in HEAD_KEYS:
            if n in obj:
                got = whole_number(obj[n])
                if got is None or got <= 0:
                    raise InputError(source, f"{where}.{n} is {obj[n]!r}: not a whole positive number of heads")
                return got, f"{where}.{n}"
        for k in sorted(obj, key=lambda k: "fusion" not in str(k).lower()):
            if "encoder" in str(k).lower():
                continue
            found = walk(obj[k], f"{where}.{k}", depth + 1)
            if found:
                return found
        return None

    for key in sections:
        if key in meta:
            found = walk(meta[key], key)
            if found:
                return found
    return None, ""


def read_config_file(path: Path) -> dict[str, Any]:
    """A config the user points at: JSON, or a Python config module such as upstream's
    `configs/model_config.py`, read as literals only (`NAME = {...}`; nothing is executed)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read config: {getattr(e, 'strerror', None) or e}") from None
    if path.suffix.lower() == ".py":
        return _python_literals(text, path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InputError(path, "expected a JSON object")
    return obj


def _python_literals(text: str, path: Path) -> dict[str, Any]:
    import ast
    try:
        tree = ast.parse(text, str(path))
    except SyntaxError as e:
        raise InputError(path, f"not a readable Python config ({e.msg}, line {e.lineno})") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue          # an expression, not a literal: skipped, never evaluated
    return out


def sidecar_of(path: Path) -> Path | None:
    """`<name>.json` next to a checkpoint (model.pth → model.json, or model.pth.json)."""
    for cand in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if cand != path and cand.is_file():
            return cand
    return None


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
