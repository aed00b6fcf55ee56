"""Batch runs with upstream's own encoders (V-JEPA 2 video, DINO photos, AST audio, sensor
Transformer, rebuilt from the checkpoint file by `fusion_core.models.encoders.upstream`).

- Which welds share work: a checkpoint's config key is its encoders' weights digests, the
  preprocessing version and the read options (`upstream_config`). Checkpoints whose encoders
  hold the same weights (epoch 3 and best of a frozen-backbone run) get the same key: each
  weld is decoded once and encoded once for all of them, by one loaded copy of the backbones.
- Where they run: here, on the model side, weld by weld and encoder by encoder, with the
  on-disk feature cache in front (`UpstreamEncoders.cached`): a weld encoded before, by an
  earlier batch or by `explain`, costs only the fusion. The decoding workers only decode
  (upstream's read options: full-resolution photos, its 32 frames).
- Which engine: local. A Ray actor holds its own copy of every checkpoint, and a full-size
  upstream file is ~5 GB, so `--engine ray` runs these checkpoints locally and says so.
- Progress: one line per encoder run with its seconds, one per weld served from the cache,
  and lines before the start saying what a weld costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..errors import printable
from ..io.features import FeatureBatch
from ..io.weld import Weld
from ..models.encoders.upstream.encoders import UpstreamEncoders
from ..models.encoders.upstream.preprocess import PREPROCESS_VERSION
from ..vocab import MODALITIES
from .plan import UPSTREAM

Note = Callable[[str], None]

# What a weld costs, measured (README, `make bench`: 42 s on this 2-core CPU, 118 s when busy).
CPU_COST = "full-size backbones take about 40 s per weld on a 2-core CPU (2 min when it is busy)"
RAY_FALLBACK = ("batch: --engine ray: every Ray actor would load its own copy of upstream's backbones (a full-size "
                "checkpoint is ~5 GB), so this run uses the local engine: one copy, in this process")


def upstream_config(enc: UpstreamEncoders) -> dict:
    """What decides how a weld is read and encoded for these encoders: the config key's source."""
    return {"kind": UPSTREAM, "read_options": dict(enc.READ_OPTIONS), "preprocess": PREPROCESS_VERSION,
            "weights": enc.weights_digests()}


@dataclass
class EncodedWeld:
    """One weld's tokens from upstream's four encoders (what `stack` batches for the fusion)."""

    weld_id: str
    features: dict[str, np.ndarray]       # m -> (S, D) float32
    masks: dict[str, np.ndarray]          # m -> (S,) bool
    positions: dict[str, pd.DataFrame]    # m -> one row per token


def stack(items: Sequence[EncodedWeld], source: str = "") -> FeatureBatch:
    """The FeatureBatch the one-weld path (`UpstreamEncoders.encode`) would give for these welds."""
    return FeatureBatch(features={m: torch.from_numpy(np.stack([it.features[m] for it in items])) for m in MODALITIES},
                        masks={m: torch.from_numpy(np.stack([it.masks[m] for it in items])) for m in MODALITIES},
                        positions={m: [it.positions[m] for it in items] for m in MODALITIES},
                        ids=[it.weld_id for it in items], source=source)


class UpstreamStep:
    """The model side's encoding step: per config key, one `UpstreamEncoders` (the first
    checkpoint's; the others with that key never load theirs) and the checkpoints it serves."""

    def __init__(self, groups: dict[str, tuple[UpstreamEncoders, list[str]]]):
        self.groups = groups

    def __bool__(self) -> bool:
        return bool(self.groups)

    def start_notes(self) -> list[str]:
        """What the user should know before the first weld: where encoders run, what a weld costs."""
        out = []
        for enc, names in self.groups.values():
            who = ", ".join(printable(n) for n in names)
            text = f"batch: {who}: upstream's encoders (video, image, audio, sensor) run weld by weld on {enc.device.type}"
            if enc.device.type == "cpu":
                text += f"; {CPU_COST}"
            if enc.cache:
                text += f"; welds already in the feature cache ({printable(enc.cache.root)}) cost only the fusion"
            if len(names) > 1:
                text += "; these checkpoints have the same encoder weights: each weld is encoded once for all"
            out.append(text)
        return out

    def missing(self, key: str, weld: Weld) -> tuple[dict, list[str]]:
        """(cached (features, mask, positions) per modality, modalities the cache lacks)."""
        enc = self.groups[key][0]
        hits = {m: enc.cached(m, weld) for m in MODALITIES}
        return hits, [m for m, h in hits.items() if h is None]

    def load(self, key: str, note: Note) -> None:
        """Build the encoders of this key, if not yet. An InputError here is the checkpoint's
        (a missing or mis-shaped encoder key), not a weld's: it ends the run."""
        enc, names = self.groups[key]
        if enc.adapters is not None:
            return
        name = printable(names[0])
        t = time.perf_counter()
        enc.load(lambda stage, m, i, n: note(f"batch: {name}: loading upstream's {m} encoder…"))
        for m, text in enc.describe().items():
            note(f"batch: {name}: {m} encoder: {text}")
        note(f"batch: {name}: encoders loaded in {time.perf_counter() - t:.1f} s")

    def encode(self, key: str, weld: Weld, hits: dict, label: str, note: Note) -> EncodedWeld:
        """One weld by every encoder of this key: cached ones as they are, the others run (each
        named with its seconds on a progress line) and kept in the cache."""
        enc, names = self.groups[key]
        which = f" ({printable(names[0])})" if len(self.groups) > 1 else ""
        out = EncodedWeld(weld.weld_id, {}, {}, {})
        for m in MODALITIES:
            got = hits[m]
            if got is None:
                t = time.perf_counter()
                got = enc.compute_one(m, weld)
                note(f"batch: {label}: {m} encoder{which} {time.perf_counter() - t:.1f} s")
            out.features[m], out.masks[m], out.positions[m] = got
        cached = [m for m in MODALITIES if hits[m] is not None]
        if cached:
            note(f"batch: {label}: {', '.join(cached)} encoder{'s' if len(cached) > 1 else ''}{which} "
                 "from the feature cache")
        return out
