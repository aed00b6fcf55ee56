"""Feature batches: the four token sequences the fusion module reads, from files or encoders.

A feature file (`.npz`, `.safetensors`, or `.pt` read weights-only) holds arrays named
`video`, `image`, `audio`, `sensor`, each (S, D) or (B, S, D), and optionally
`<modality>_mask` of shape (S,) or (B, S): 1/True where the position holds data,
0/False for padding (the Hugging Face `attention_mask` convention). Optional
`<modality>_t0` / `<modality>_t1` arrays (S,) or (B, S) give each token's time span in
seconds, so heatmaps can point back at the raw weld. A modality may be left out.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from ..vocab import MODALITIES
from .torchload import safe_torch_load

MAX_FEATURE_ELEMENTS = 256 * 1024 * 1024  # 1 GiB of float32 per file: beyond that, refuse
MAX_POSITIONS = 65_536       # tokens of one modality (the real encoders give a few hundred)
MAX_SAMPLES = 4_096          # samples in one feature file (explanations hold per-sample maps)
# Larger magnitudes overflow float32 in the attention scores (q·k over hundreds of dims) or
# in the squared value norms, and every contribution becomes NaN.
MAX_FEATURE_MAGNITUDE = 1e6


@dataclass
class FeatureBatch:
    """Token sequences for B samples. Modalities missing from `features` are absent for all rows."""

    features: dict[str, torch.Tensor]                  # m -> (B, S, D) float32
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # m -> (B, S) bool, True = data
    positions: dict[str, list[pd.DataFrame | None]] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def batch_size(self) -> int:
        for x in self.features.values():
            return int(x.shape[0])
        return 0

    def mask(self, m: str) -> torch.Tensor | None:
        """(B, S) bool, True where the position holds data; None when the modality is absent."""
        if m not in self.features:
            return None
        x = self.features[m]
        got = self.masks.get(m)
        return torch.ones(x.shape[:2], dtype=torch.bool) if got is None else got.bool()

    def present(self) -> np.ndarray:
        """(B, 4) bool: does row b have any data for modality m."""
        out = np.zeros((self.batch_size, len(MODALITIES)), dtype=bool)
        for j, m in enumerate(MODALITIES):
            mk = self.mask(m)
            if mk is not None:
                out[:, j] = mk.any(dim=1).numpy()
        return out

    def select(self, rows: list[int]) -> "FeatureBatch":
        idx = torch.as_tensor(rows, dtype=torch.long)
        return FeatureBatch(
            features={m: x[idx] for m, x in self.features.items()},
            masks={m: x[idx] for m, x in self.masks.items()},
            positions={m: [p[i] for i in rows] for m, p in self.positions.items()},
            ids=[self.ids[i] for i in rows] if self.ids else [],
            source=self.source,
        )


def _check_npz_headers(path: Path) -> None:
    """Refuse before allocating: each member's header must declare a sane shape whose bytes
    are really in the file (a crafted header can claim exabytes)."""
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if len(infos) > 64:
            raise ValueError(f"{len(infos)} arrays; a feature file has at most a few dozen")
        for info in infos:
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(f, max_header_size=10_000)
            n = int(np.prod(shape, dtype=object))
            if n > MAX_FEATURE_ELEMENTS:
                raise ValueError(f"'{info.filename}' declares shape {shape}, more than "
                                 f"{MAX_FEATURE_ELEMENTS:,} elements")
            if dtype.itemsize and n * dtype.itemsize > info.file_size:
                raise ValueError(f"'{info.filename}' declares shape {shape} but holds only {info.file_size} bytes")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            _check_npz_headers(path)
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise InputError(path, f"not a readable .npz feature file ({str(e)[:200]})") from None
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(path, f"not a readable .safetensors feature file ({e})") from None
    if suffix in (".pt", ".pth"):
        obj = safe_torch_load(path)
        if not isinstance(obj, dict):
            raise InputError(path, f"expected a dict of tensors, found {type(obj).__name__}")
        out = {}
        for k, v in obj.items():
            if isinstance(v, torch.Tensor):
                out[str(k)] = v.detach().cpu().numpy()
            elif isinstance(v, np.ndarray):
                out[str(k)] = v
        return out
    raise InputError(path, f"unsupported feature file type {suffix!r} (use .npz, .safetensors or .pt)")


def load_features(path: str | os.PathLike) -> FeatureBatch:
    """Read and validate a feature file. Raises InputError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, expected a feature file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    return features_from_arrays(_read_arrays(path), source=str(path))


def features_from_arrays(arrays: dict[str, np.ndarray], source: str = "") -> FeatureBatch:
    """Validate raw arrays (as in a feature file) into a FeatureBatch."""
    if not any(m in arrays for m in MODALITIES):
        hint = f" (found: {', '.join(sorted(arrays)) or 'nothing'})"
        raise InputError(source, f"no modality arrays; expected some of {', '.join(MODALITIES)}{hint}")
    feats: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    positions: dict[str, list[pd.DataFrame]] = {}
    batch = None
    for m in MODALITIES:
        if m not in arrays:
            continue
        a = _modality_array(arrays[m], m, source, batch)
        batch, S = a.shape[0], a.shape[1]
        feats[m] = torch.from_numpy(np.ascontiguousarray(a))
        if f"{m}_mask" in arrays:
            masks[m] = _mask(arrays[f"{m}_mask"], m, batch, S, source)
        if f"{m}_t0" in arrays and f"{m}_t1" in arrays:
            t0, t1 = (_span(arrays[f"{m}_{s}"], f"{m}_{s}", batch, S, source) for s in ("t0", "t1"))
            positions[m] = [pd.DataFrame({"t0": t0[b], "t1": t1[b]}) for b in range(batch)]
    return FeatureBatch(features=feats, masks=masks, positions=positions, ids=_ids(arrays, batch), source=source)


def _modality_array(raw, m: str, source: str, batch: int | None) -> np.ndarray:
    """One modality's (B, S, D) float32 features, every bound checked before use."""
    a = np.asarray(raw)
    if a.dtype.kind not in "fiu":
        raise InputError(source, f"'{m}' has dtype {a.dtype}, expected numbers")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(source, f"'{m}' has shape {tuple(a.shape)}, expected (S, D) or (B, S, D)")
    if a.size > MAX_FEATURE_ELEMENTS:
        raise InputError(source, f"'{m}' has {a.size:,} elements, more than the limit of {MAX_FEATURE_ELEMENTS:,}")
    B, S, D = a.shape
    if D == 0 or B == 0:
        raise InputError(source, f"'{m}' has {'feature dimension' if D == 0 else 'batch size'} 0")
    if S == 0:
        raise InputError(source, f"'{m}' is an empty sequence (S=0); leave the modality out, "
                                 f"or give '{m}_mask' zeros, to mark it absent")
    if S > MAX_POSITIONS:
        raise InputError(source, f"'{m}' has {S:,} positions, more than the limit of {MAX_POSITIONS:,} "
                                 "(pool or downsample the sequence first)")
    if B > MAX_SAMPLES:
        raise InputError(source, f"'{m}' has {B:,} samples, more than the limit of {MAX_SAMPLES:,} per file "
                                 "(split the file, or use `batch` on welds)")
    if batch is not None and B != batch:
        raise InputError(source, f"'{m}' has batch size {B} but other modalities have {batch}")
    big = np.abs(a).max(initial=0) if a.dtype.kind == "f" else max(abs(int(a.max())), abs(int(a.min())))
    if not np.isfinite(big):
        raise InputError(source, f"'{m}' contains {int((~np.isfinite(a)).sum())} NaN/Inf value(s)")
    if big > MAX_FEATURE_MAGNITUDE:
        raise InputError(source, f"'{m}' holds values up to {float(big):.3g}; features above "
                                 f"{MAX_FEATURE_MAGNITUDE:.0e} in magnitude overflow the attention arithmetic "
                                 "(are these raw, unnormalised values?)")
    return a.astype(np.float32, copy=False)


def _mask(raw, m: str, batch: int, S: int, source: str) -> torch.Tensor:
    mk = np.asarray(raw)
    if mk.ndim == 1:
        mk = np.broadcast_to(mk[None], (batch, mk.shape[0]))
    if mk.shape != (batch, S):
        raise InputError(source, f"'{m}_mask' has shape {tuple(mk.shape)}, expected ({batch}, {S})")
    if mk.dtype.kind not in "biuf" or not np.isin(mk, (0, 1)).all():
        raise InputError(source, f"'{m}_mask' must hold only 0/1 or booleans")
    return torch.from_numpy(mk.astype(bool).copy())


def _span(raw, name: str, batch: int, S: int, source: str) -> np.ndarray:
    t = np.asarray(raw, dtype=np.float64)
    if t.size not in (S, batch * S):
        raise InputError(source, f"'{name}' must have one value per position ({S})")
    return np.broadcast_to(t.reshape(-1, S), (batch, S))


def _ids(arrays: dict, batch: int) -> list[str]:
    raw = np.asarray(arrays["ids"]) if "ids" in arrays else None
    if raw is not None and raw.shape == (batch,) and raw.dtype.kind in "US":
        return [str(x) for x in raw]
    return [f"sample {i}" for i in range(batch)]


def save_features(path: str | os.PathLike, batch: FeatureBatch) -> None:
    """Write a FeatureBatch as .npz (the format load_features reads)."""
    arrays: dict[str, np.ndarray] = {}
    for m, x in batch.features.items():
        arrays[m] = x.detach().cpu().numpy().astype(np.float32)
        mk = batch.mask(m)
        arrays[f"{m}_mask"] = mk.numpy()
        pos = batch.positions.get(m)
        if pos and all(p is not None and {"t0", "t1"} <= set(p.columns) for p in pos):
            arrays[f"{m}_t0"] = np.stack([p["t0"].to_numpy(float) for p in pos])
            arrays[f"{m}_t1"] = np.stack([p["t1"].to_numpy(float) for p in pos])
    if batch.ids:
        arrays["ids"] = np.asarray(batch.ids, dtype=str)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    Path(path).write_bytes(buf.getvalue())
