"""A feature cache on disk: one weld's token features for one encoder, so a second look costs
only the fusion.

Key: the weld's digest (sha256 of its raw input bytes), the encoder's weights digest and
the preprocessing version, so any change to the input, the weights or the preprocessing
misses. Entries are `.npz` files (features, mask and the positions table, no pickles);
reading one refreshes its time, and writing beyond the byte budget evicts the least
recently used entries. Safe for several processes: files are written whole, then renamed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_BUDGET = 2 * 1024 ** 3
ENV_DIR, ENV_BUDGET = "FUSION_CORE_FEATURE_CACHE", "FUSION_CORE_FEATURE_CACHE_BYTES"


def default_cache_dir() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fusion_core" / "features"


class FeatureCache:
    """`get(key)` → (features (S, D) float32, mask (S,) bool, positions) or None; `put(key, ...)`."""

    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        env = os.environ.get(ENV_BUDGET)
        self.max_bytes = int(max_bytes if max_bytes is not None else (env or DEFAULT_BUDGET))
        self.hits = self.misses = 0

    @staticmethod
    def key(weld_digest: str, weights_digest: str, preprocess_version: str, modality: str) -> str | None:
        if not weld_digest:
            return None          # a weld not read from bytes has no identity to cache under
        raw = "\0".join((weld_digest, weights_digest, preprocess_version, modality))
        return hashlib.sha256(raw.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def get(self, key: str | None) -> tuple[np.ndarray, np.ndarray, pd.DataFrame] | None:
        if key is None:
            return None
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            os.utime(path)
        except (OSError, ValueError, EOFError, KeyError):
            self.misses += 1
            return None
        self.hits += 1
        cols = [str(c) for c in arrays.pop("__columns__")]
        positions = pd.DataFrame({c: arrays[f"pos:{c}"] for c in cols})
        return arrays["features"], arrays["mask"], positions

    def put(self, key: str | None, features: np.ndarray, mask: np.ndarray, positions: pd.DataFrame) -> None:
        if key is None or self.max_bytes <= 0:
            return
        path = self._path(key)
        arrays = {"features": np.ascontiguousarray(features, dtype=np.float32), "mask": np.asarray(mask, bool),
                  "__columns__": np.array([str(c) for c in positions.columns])}
        for c in positions.columns:
            col = positions[c].to_numpy()
            arrays[f"pos:{c}"] = col.astype(str) if col.dtype == object or str(positions[c].dtype) in ("string", "str") else col
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except OSError:
            return                # a cache that cannot write is only slower, never wrong
        self.evict()

    def entries(self) -> list[tuple[float, int, Path]]:
        out = []
        for p in self.root.glob("*/*.npz"):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((st.st_mtime, st.st_size, p))
        return sorted(out)

    def size(self) -> int:
        return sum(s for _, s, _ in self.entries())

    def evict(self) -> int:
        """Delete least recently used entries until the cache fits its budget; returns how many."""
        entries = self.entries()
        total = sum(s for _, s, _ in entries)
        gone = 0
        for _, size, p in entries:
            if total <= self.max_bytes:
                break
            try:
                p.unlink()
            except OSError:
                continue
            total -= size
            gone += 1
        return gone
