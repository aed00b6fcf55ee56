"""Upstream's four encoders, built lazily from a checkpoint's own weights; welds → a FeatureBatch.

Nothing is read from the file's encoder groups until a weld is encoded (explaining feature
files never pays for the backbones). Then every encoder is built (`backbones`, `sensor`),
moved to the chosen device, and run weld by weld, with a progress callback per encoder and
weld and the on-disk feature cache in front: a weld seen before costs no encoder at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ....errors import InputError
from ....io.checkpoint import read_checkpoint_file
from ....io.weld import Weld
from ....vocab import MODALITIES
from ..cache import FeatureCache
from ..demo import EncodedBatch
from . import preprocess as pre
from .adapters import (AudioAdapter, EncoderAdapter, ImageAdapter, SensorAdapter, VideoAdapter,
                       projection_of)
from .backbones import PREFIXES, load_backbone
from .sensor import build_sensor_encoder

# progress(stage, modality, done, total): stage "load" | "encode" | "cached"
Progress = Callable[[str, str, int, int], None]
ENCODER_PREFIXES = {**PREFIXES, "sensor": "sensor_encoder."}


def has_upstream_encoders(ignored_labels: Sequence[str]) -> bool:
    """Whether a checkpoint's skipped groups hold upstream's encoders (by their prefixes); a
    missing one is named when welds are encoded."""
    return any(any(str(k).startswith(f"{m}_encoder.") for k in ignored_labels) for m in MODALITIES)


def resolve_device(device: str | None) -> torch.device:
    want = (device or "auto").lower()
    if want not in ("auto", "cpu", "cuda"):
        raise InputError("", f"--device must be auto, cpu or cuda, not {device!r}")
    if want == "cuda" and not torch.cuda.is_available():
        raise InputError("", "--device cuda: no CUDA device is available here")
    return torch.device("cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu")


def encoder_digests(group: dict[str, torch.Tensor], source: str) -> dict[str, str]:
    """Per modality, sha256 over `source` and its `<m>_encoder.*` tensors (sorted names, dtype,
    shape, bytes): equal whichever file holds the same weights, under whatever wrapper prefix."""
    out = {}
    for m in MODALITIES:
        h = hashlib.sha256(f"{source}\0".encode())
        for k in sorted(k for k in group if k.startswith(f"{m}_encoder.")):
            t = group[k].detach().cpu().contiguous()
            h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())
        out[m] = h.hexdigest()
    return out


def _read_json(path: Path | None) -> dict | None:
    try:
        got = json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) and set(got) == set(MODALITIES) else None


def _write_json(path: Path | None, obj: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except OSError:
        return                    # only slower next time


class UpstreamEncoders:
    """`encode(welds)` → EncodedBatch, like the built-in encoders, for upstream-format checkpoints."""

    # How welds must be decoded for these encoders (`fusion_core.io.containers.load_welds`
    # options): upstream resizes the files' own pixels, so photos and frames stay at full
    # resolution, and its 32 frames are picked from all of the video's frames.
    READ_OPTIONS = {"max_frames": pre.VIDEO_FRAMES, "max_side": 8192, "image_max_side": 8192}

    def __init__(self, path: str | Path, dims: dict[str, int], sha256: str, *, backbone_dir: str | None = None,
                 device: str | None = None, cache: FeatureCache | None | bool = True):
        self.path, self.dims, self.sha256 = Path(path), dict(dims), sha256
        self.backbone_dir = Path(backbone_dir) if backbone_dir else None
        self.device = resolve_device(device)
        self.cache = FeatureCache() if cache is True else (cache or None)
        self.adapters: dict[str, EncoderAdapter] | None = None
        self.timings: dict[str, float] = {}          # seconds spent per encoder, this object's life
        self.notes: list[str] = [pre.SENSOR_NOTE]
        self._digests: dict[str, str] | None = None

    def configure(self, *, device: str | None = None, backbone_dir: str | None = None) -> None:
        if backbone_dir is not None and Path(backbone_dir) != self.backbone_dir:
            self.backbone_dir, self.adapters, self._digests = Path(backbone_dir), None, None
        if device is not None:
            self.device = resolve_device(device)
            if self.adapters:
                for a in self.adapters.values():
                    a.to(self.device)

    def weights_digest(self, m: str) -> str:
        return self.weights_digests()[m]

    def weights_digests(self) -> dict[str, str]:
        """Per modality, a digest of what its features depend on: the `<m>_encoder.*` tensors
        (names, dtypes, shapes, bytes) and where the architecture comes from. Two files whose
        encoders hold the same weights (epoch 3 and best of a frozen-backbone run) get the same
        digests, so they share cached features. Hashed once per file (from the tensors `load`
        reads anyway, or read for it) and kept beside the feature cache, keyed by the file's sha256."""
        if self._digests is None:
            memo = self._digest_memo()
            self._digests = _read_json(memo)
            if self._digests is None:
                group = read_checkpoint_file(self.path, with_encoders=True).groups.get("encoders", {})
                self._set_digests(group)
        return self._digests

    def _digest_source(self) -> str:
        return str(self.backbone_dir) if self.backbone_dir else "published"

    def _digest_memo(self) -> Path | None:
        if not self.cache:
            return None
        src = hashlib.sha256(self._digest_source().encode()).hexdigest()[:16]
        return self.cache.root / "weights" / f"{self.sha256}-{src}.json"

    def _set_digests(self, group: dict[str, torch.Tensor]) -> None:
        self._digests = encoder_digests(group, self._digest_source())
        _write_json(self._digest_memo(), self._digests)

    # ----------------------------------------------------------------------- building
    def load(self, progress: Progress | None = None) -> dict[str, EncoderAdapter]:
        if self.adapters is not None:
            return self.adapters
        cf = read_checkpoint_file(self.path, with_encoders=True)
        group = cf.groups.get("encoders", {})
        if self._digests is None:
            self._set_digests(group)
        where = str(self.path)
        adapters: dict[str, EncoderAdapter] = {}
        for i, m in enumerate(MODALITIES):
            if progress:
                progress("load", m, i, len(MODALITIES))
            t = time.perf_counter()
            adapters[m] = self._build(m, group, where).to(self.device)
            self.timings[f"load {m}"] = time.perf_counter() - t
        for m, a in adapters.items():
            if a.dim != self.dims.get(m, a.dim):
                raise InputError(where, f"{ENCODER_PREFIXES[m]}* gives {a.dim}-wide tokens but the fusion's "
                                        f"{m} projection takes {self.dims[m]}")
        self.adapters = adapters
        return adapters

    def _build(self, m: str, group: dict[str, torch.Tensor], where: str) -> EncoderAdapter:
        prefix = ENCODER_PREFIXES[m]
        sd = {k[len(prefix):]: v for k, v in group.items() if k.startswith(prefix)}
        if not sd:
            raise InputError(where, f"missing encoder key {prefix}*: the checkpoint has no {m} encoder weights")
        if m == "sensor":
            return SensorAdapter(build_sensor_encoder(sd, where))
        backbone = load_backbone(m, sd, backbone_dir=self.backbone_dir, where=where)
        cls = {"video": VideoAdapter, "image": ImageAdapter, "audio": AudioAdapter}[m]
        return cls(backbone, projection_of(group, m))

    def describe(self) -> dict[str, str]:
        return {m: a.description for m, a in (self.adapters or {}).items()}

    # ----------------------------------------------------------------------- running
    def cache_key(self, m: str, weld: Weld) -> str | None:
        if not self.cache:
            return None
        return self.cache.key(weld.digest, self.weights_digest(m), pre.PREPROCESS_VERSION, m)

    def cached(self, m: str, weld: Weld) -> tuple[np.ndarray, np.ndarray, object] | None:
        """What `encode_one` gives, when the feature cache has it (no encoder is built or run)."""
        key = self.cache_key(m, weld)
        return self.cache.get(key) if key is not None else None

    def encode_one(self, m: str, weld: Weld) -> tuple[np.ndarray, np.ndarray, object]:
        """(features (S, D), mask (S,), positions) of one weld by one encoder, cache first."""
        hit = self.cached(m, weld)
        return hit if hit is not None else self.compute_one(m, weld)

    @torch.no_grad()
    def compute_one(self, m: str, weld: Weld) -> tuple[np.ndarray, np.ndarray, object]:
        """`encode_one` without the cache lookup: the encoder runs, the cache keeps the result."""
        adapter = self.load()[m]
        key = self.cache_key(m, weld)
        prep = adapter.prepare(weld)
        mask = np.full(adapter.seq_len, prep.present, dtype=bool)
        if prep.present:
            t = time.perf_counter()
            x = torch.from_numpy(prep.inputs).unsqueeze(0).to(self.device)
            feats = adapter(x)[0].float().cpu().numpy()
            self.timings[m] = self.timings.get(m, 0.0) + time.perf_counter() - t
        else:
            feats = np.zeros((adapter.seq_len, adapter.dim), np.float32)
        if self.cache:
            self.cache.put(key, feats, mask, prep.positions)
        return feats, mask, prep.positions

    def encode(self, welds: Sequence[Weld], progress: Progress | None = None) -> EncodedBatch:
        welds = list(welds)
        self.load(progress)
        feats: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
        masks: dict[str, list[np.ndarray]] = {m: [] for m in MODALITIES}
        positions: dict[str, list] = {m: [] for m in MODALITIES}
        for m in MODALITIES:
            for i, w in enumerate(welds):
                if progress:
                    progress("encode", m, i, len(welds))
                f, k, p = self.encode_one(m, w)
                feats[m].append(f)
                masks[m].append(k)
                positions[m].append(p)
            if progress:
                progress("encode", m, len(welds), len(welds))
        return EncodedBatch(features={m: torch.from_numpy(np.stack(v)) for m, v in feats.items()},
                            masks={m: torch.from_numpy(np.stack(v)) for m, v in masks.items()},
                            positions=positions, ids=[w.weld_id for w in welds])
