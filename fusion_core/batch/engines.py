"""Dataset-scale explanations: every weld × checkpoint into one Parquet table, resumable.

    python -m fusion_core batch --checkpoint A.safetensors [--checkpoint B ...] \\
        --samples DIR_OR_ZIP --out results.parquet [--engine local|ray] [--ray-address ADDR] [--workers N]

Engines (same rows, same numbers, bit for bit):
- `local` (default): weld folders are read, decoded and preprocessed in `--workers` spawned
  processes (default one per CPU, a bounded number of welds in flight), the model runs
  batched in this process. Spawned workers re-import the caller's main module, so a script
  that calls `run_batch` with workers > 0 needs an `if __name__ == "__main__":` guard.
- `ray`: Ray Data reads the weld list, `map_batches` preprocesses, and `map_batches` with
  an actor pool (each actor holds the loaded checkpoints) explains. Without
  `--ray-address` a local Ray (`--workers` CPUs, no dashboard) is started and stopped.
  On a cluster every node must see `--samples` at the same path.

Output, next to each other:

    results.parquet          one row per weld × checkpoint (the table `read_results` returns)
    results.parquet.d/       the run's chunks, the source of truth for resuming:
        run.json             settings the rows were made with (a rerun must match)
        rows-000000.parquet  rows of one chunk
        maps-000000.npz      full maps of the same chunk (see below)

Each chunk is written to a hidden temporary name and renamed, maps first, rows last, so a
killed run loses at most the chunk (and model batch) in progress. A rerun skips every
(weld digest, checkpoint sha256) that already has a row without error; welds that failed
are tried again. After each run the chunks are consolidated into `results.parquet`,
sorted by checkpoint and weld id; per (source, checkpoint) the newest row wins.

Columns (per row): ids and class (weld_id, source, weld_digest, checkpoint, checkpoint_sha256,
checkpoint_epoch, class_code, class_name, truth as JSON, duration_s, present), error,
target, baseline, predicted, predicted_code, predicted_prob, correct, target_value,
efficiency_gap, top_modality (by Shapley), truth_window_share, prob_<class>,
<method>_<modality> for shapley, leave_one_out, attention, relevance;
relevance_in_truth_<m> (time modalities), and per fusion token t and modality m
attn_t<t>_<m>_{entropy (nats, head-mean attention), peak (token index), peak_time (s, centre
of the peak token), mass_in_truth}; maps_file, maps_index. Empty where they do not apply.

Numbers do not depend on how welds are grouped: the model always runs on exactly
`MODEL_BATCH` rows (a partial batch is padded with copies of its last weld), so the
matrix kernels, and hence every rounding step, are the same for a weld wherever it lands.

Sidecar `maps-NNNNNN.npz` (a plain zip of .npy files, np.load reads it; written with fixed
timestamps, so identical runs give identical bytes). Arrays are stacked per checkpoint,
under the first 12 hex digits of its sha256; a row's `maps_file` and `maps_index` say
where its maps are (`read_maps` does the lookup):

    <sha12>/weld_digest            (n,) str      which weld each index is
    <sha12>/attention/<m>          (n, heads, T, S_m) float32, per head
    <sha12>/value_norms/<m>        (n, heads, T, S_m) float32 (Kobayashi et al.)
    <sha12>/relevance/<m>          (n, T, S_m) float32 (Chefer et al.)
    <sha12>/mask/<m>               (n, S_m) bool, True where a token holds data
    <sha12>/positions/<m>/<col>    (n, S_m) token positions (t0, t1, frame0, x0, … as in encoders)
    <sha12>/token_shapley          (n, T, 4) float64
    <sha12>/coalition_values       (n, 16) float64, bitmask order
    <sha12>/logits                 (n, C) float32 (when the checkpoint has a classifier)
    <sha12>/fused                  (n, H) float32
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import re
import sys
import time
import zipfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import InputError
from ..explain.engine import explain
from ..explain.sanity import mass_in_windows
from ..explain.welds import explain_welds
from ..io.containers import decode_weld, iter_welds, zip_entry_rel
from ..io.features import FeatureBatch
from ..io.layout import TRUTH_NAME, choose, few, folder_rels, group, is_junk, kind_of, natural, weld_digest, weld_id_of
from ..io.limits import DEFAULT_LIMITS, Limits
from ..models.checkpoint import load_checkpoint
from ..models.encoders.demo import EncoderConfig, preprocess
from ..vocab import CLASS_NAMES, MODALITIES, weld_class
# Weld-folder rules are the readers' own, applied to paths without reading the files.

FORMAT = "fusion-batch/1"
MODEL_BATCH = 16            # rows per model run, always (padded): see the module docstring
DEFAULT_CHUNK_ROWS = 64     # rows per chunk file
PREP_MEMORY = 512 * 1024 ** 2   # what Ray reserves per decoding task
METHODS = ("shapley", "leave_one_out", "attention", "relevance")
TIME_MODALITIES = ("video", "audio", "sensor")
ATTN_STATS = ("entropy", "peak", "peak_time", "mass_in_truth")
BATCH_BASELINES = ("drop-attention", "zeros")   # reference-mean would tie a weld's numbers to the others


# =========================================================================== weld sources

@dataclass(frozen=True)
class WeldSource:
    """One weld of a container, found without reading any file.

    `files` are the chosen files as (name in the weld digest, member): the member is a
    path relative to the container folder, or a zip entry name. `problem` is set when the
    weld cannot be read as laid out (ambiguous files, too many photos): it becomes an
    error row.
    """

    container: str
    folder: str                     # weld folder inside the container, posix; '' = the container
    weld_id: str
    files: tuple[tuple[str, str], ...]
    is_zip: bool = False
    problem: str | None = None

    @property
    def source(self) -> str:
        """What the results call this weld: its folder inside --samples ('.' for the container)."""
        return self.folder or "."

    @property
    def where(self) -> str:
        return f"{self.container}/{self.folder}" if self.folder else self.container








def _zip_members(path: Path, limits: Limits) -> dict[str, str]:
    """rel path -> zip entry name. Entries that could escape or mislead are refused up front."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise InputError(path, f"not a readable zip archive ({e})") from None
    with zf:
        infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise InputError(path, f"{len(infos)} entries, more than the limit of {limits.max_entries}")
    out: dict[str, str] = {}
    for info in infos:
        rel = zip_entry_rel(info, str(path))
        if rel is None:
            continue
        if rel in out:
            raise InputError(f"{path}/{info.filename}", "duplicate entry name in the zip")
        out[rel] = info.filename
    return out


def list_weld_sources(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> list[WeldSource]:
    """Every weld in a folder of weld folders (or one weld folder, or a .zip), sorted by weld id,
    without reading a file. Same grouping, ids and file choice as the readers (`fusion_core.io.layout`)."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such file or folder")
    if p.is_dir():
        rels = folder_rels(p, limits)
        members = {r: r for r in rels}
        default, is_zip = p.resolve().name, False
    elif p.suffix.lower() == ".zip":
        members = _zip_members(p, limits)
        default, is_zip = p.stem, True
        nested = [r for r in members if r.lower().endswith(".zip") and not is_junk(r)]
        if nested:
            raise InputError(f"{p}/{nested[0]}", "nested zip archive; unzip it first")
    else:
        raise InputError(path, "expected a weld folder, a folder of weld folders or a .zip")
    groups = group(members)
    if not groups:
        raise InputError(path, "no weld found: expected a folder with <part_no>.avi, <part_no>.flac or .wav, "
                               "<part_no>.csv or images/*.jpg")
    out = []
    for d, rels in groups.items():
        wid = weld_id_of(d, rels, default)
        chosen, problem = choose(rels, wid, limits)
        files = tuple((name, members[r]) for name, r in chosen)
        out.append(WeldSource(container=str(p), folder=d, weld_id=wid, files=files, is_zip=is_zip,
                              problem=problem))
    out.sort(key=lambda s: (natural(s.weld_id), s.folder))
    return out


# =========================================================================== reading (workers)

_ZIPS: dict[str, zipfile.ZipFile] = {}   # per process: one open handle per zip


def _read_member(src: WeldSource, member: str, budget: int, limits: Limits) -> bytes:
    if not src.is_zip:
        full = Path(src.container) / member
        try:
            size = full.stat().st_size
            if size > budget:
                raise InputError(src.where, f"weld files add up to more than {limits.max_total_bytes} bytes")
            return full.read_bytes()
        except OSError as e:
            raise InputError(full, f"cannot read: {e.strerror or e}") from None
    where = f"{src.container}/{member}"
    zf = _ZIPS.get(src.container)
    if zf is None:
        try:
            zf = _ZIPS[src.container] = zipfile.ZipFile(src.container)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise InputError(src.container, f"not a readable zip archive ({e})") from None
    try:
        info = zf.getinfo(member)
        if info.flag_bits & 0x1:
            raise InputError(where, "entry is encrypted")
        if info.file_size > budget:
            raise InputError(src.where, f"weld files add up to more than {limits.max_total_bytes} bytes")
        if info.file_size > 1024 ** 2 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise InputError(where, f"compression ratio above the limit of {limits.max_ratio:.0f}:1 (zip bomb?)")
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)   # inflate at most one byte past the declared size
    except InputError:
        raise
    except (KeyError, zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise InputError(where, f"corrupt zip entry ({e})") from None
    if len(data) != info.file_size:
        raise InputError(where, f"corrupt zip entry ({len(data)} bytes, {info.file_size} declared)")
    return data




def read_source(src: WeldSource, limits: Limits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """The bytes of a weld's chosen files, keyed by their digest names."""
    if src.problem:
        raise InputError(src.where, src.problem)
    blobs: dict[str, bytes] = {}
    left = limits.max_total_bytes
    for name, member in src.files:
        data = _read_member(src, member, left, limits)
        left -= len(data)
        blobs[name] = data
    return blobs


def decode_source(src: WeldSource, blobs: dict[str, bytes], limits: Limits = DEFAULT_LIMITS):
    """A `Weld` from bytes `read_source` gave (through the readers' own decoding)."""
    return decode_weld(src.weld_id, src.where,
                       [(name, PurePosixPath(name).name, data) for name, data in blobs.items()], limits=limits)




def _windows(truth: dict | None) -> list[tuple[float, float]]:
    out = []
    for w in (truth or {}).get("windows") or []:
        try:
            a, b = float(w[0]), float(w[1])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        if math.isfinite(a) and math.isfinite(b) and b > a:
            out.append((a, b))
    return out


@dataclass
class PrepState:
    """What a worker needs besides the weld: encoder configs and the keys already done."""

    configs: dict[str, dict]                  # config key -> EncoderConfig dict
    checkpoints: list[tuple[str, str]]        # (sha256, config key), in run order
    done: frozenset = frozenset()             # {(weld digest, checkpoint sha256)}
    limits: Limits = DEFAULT_LIMITS


def _weld_error(src: WeldSource, e: InputError) -> str:
    """The error, naming the file relative to --samples (the readers name it in several ways)."""
    name = e.source
    if name.startswith(src.container + "/"):
        name = name[len(src.container) + 1:]
    elif name in ("", "upload", src.container):
        name = src.source
    elif "/" not in name and src.folder:
        name = f"{src.folder}/{name}"
    return f"{name}: {e.problem}"


def _meta(src: WeldSource) -> dict:
    return {"weld_id": src.weld_id, "source": src.source, "weld_digest": None, "truth": None,
            "class_code": weld_class(src.weld_id, None), "duration_s": None, "present": None, "windows": []}


def prepare_source(src: WeldSource, state: PrepState, _cfg_cache: dict = {}) -> dict:  # noqa: B006
    """Read, hash, decode and preprocess one weld: what the model side needs, picklable.

    {"status": "skip" | "ok" | "error", "meta": {...}, "needs": [sha, ...], "items": {cfg key: item},
     "error": str}. Never raises for a bad weld.
    """
    meta = _meta(src)
    try:
        blobs = read_source(src, state.limits)
        digest = weld_digest(blobs)
        meta["weld_digest"] = digest
        needs = [sha for sha, _ in state.checkpoints if (digest, sha) not in state.done]
        if not needs:
            return {"status": "skip", "meta": meta, "needs": []}
        weld = decode_source(src, blobs, state.limits)
        del blobs
        truth = weld.truth if isinstance(weld.truth, dict) else None
        duration = float(weld.duration)
        meta.update(truth=json.dumps(truth, sort_keys=True, separators=(",", ":")) if truth is not None else None,
                    class_code=weld_class(weld.weld_id, truth), duration_s=duration if duration > 0 else 1.0,
                    present=",".join(weld.present), windows=_windows(truth))
        items = {}
        for key in dict.fromkeys(k for sha, k in state.checkpoints if sha in needs):
            if key not in _cfg_cache:
                _cfg_cache[key] = EncoderConfig.from_dict(state.configs[key])
            items[key] = preprocess(weld, _cfg_cache[key])
        return {"status": "ok", "meta": meta, "needs": needs, "items": items}
    except InputError as e:
        err = _weld_error(src, e)
    except MemoryError:
        err = "out of memory while reading this weld"
    except Exception as e:  # a weld that trips a bug must not stop a 4,000-weld run: record it
        err = f"internal error ({type(e).__name__}): {' '.join(str(e).split())[:300]}"
    needs = [sha for sha, _ in state.checkpoints
             if meta["weld_digest"] is None or (meta["weld_digest"], sha) not in state.done]
    return {"status": "error", "meta": meta, "needs": needs, "error": err}


_WORKER_STATE: PrepState | None = None


def _init_worker(state: PrepState) -> None:
    global _WORKER_STATE
    import torch
    torch.set_num_threads(1)
    _WORKER_STATE = state


def _worker_prepare(src: WeldSource) -> dict:
    assert _WORKER_STATE is not None
    return prepare_source(src, _WORKER_STATE)


# =========================================================================== rows

def _slug(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_") or "class"


BASE_COLUMNS: tuple[str, ...] = (
    "weld_id", "source", "weld_digest", "checkpoint", "checkpoint_sha256", "checkpoint_epoch",
    "class_code", "class_name", "truth", "duration_s", "present", "error", "target", "baseline",
    "predicted", "predicted_code", "predicted_prob", "correct", "target_value", "efficiency_gap",
    "top_modality", "truth_window_share",
)
TAIL_COLUMNS: tuple[str, ...] = ("maps_file", "maps_index")


def _column_types() -> dict:
    import pyarrow as pa
    t = {c: pa.string() for c in ("weld_id", "source", "weld_digest", "checkpoint", "checkpoint_sha256",
                                   "class_name", "truth", "present", "error", "target", "baseline",
                                   "predicted", "top_modality", "maps_file")}
    t.update({c: pa.int32() for c in ("checkpoint_epoch", "class_code", "predicted_code", "maps_index")})
    t.update({c: pa.float64() for c in ("duration_s", "predicted_prob", "target_value", "efficiency_gap",
                                        "truth_window_share")})
    t["correct"] = pa.bool_()
    return t


def _attn_column(t: int, m: str, stat: str) -> str:
    return f"attn_t{t}_{m}_{stat}"


_ATTN_RE = re.compile(r"^attn_t(\d+)_([a-z]+)_(entropy|peak_time|peak|mass_in_truth)$")


def column_rank(name: str) -> tuple:
    """Canonical column order: ids, prediction, probabilities, contributions, attention, maps."""
    if name in BASE_COLUMNS:
        return (0, BASE_COLUMNS.index(name))
    if name.startswith("prob_"):
        return (1, name)
    for i, method in enumerate(METHODS):
        for j, m in enumerate(MODALITIES):
            if name == f"{method}_{m}":
                return (2, i, j)
    if name.startswith("relevance_in_truth_"):
        m = name[len("relevance_in_truth_"):]
        return (2, len(METHODS), MODALITIES.index(m) if m in MODALITIES else 9)
    a = _ATTN_RE.match(name)
    if a:
        t, m, stat = int(a.group(1)), a.group(2), a.group(3)
        return (3, t, MODALITIES.index(m) if m in MODALITIES else 9, ATTN_STATS.index(stat))
    if name in TAIL_COLUMNS:
        return (5, TAIL_COLUMNS.index(name))
    return (4, name)


def _schema(checkpoints: Sequence) -> "pyarrow.Schema":  # noqa: F821
    import pyarrow as pa
    types = _column_types()
    names = list(BASE_COLUMNS) + list(TAIL_COLUMNS)
    for ck in checkpoints:
        for c in ck.class_labels:
            names.append(f"prob_{_slug(c)}")
        for t in range(ck.tokens):
            for m in MODALITIES:
                for stat in ATTN_STATS:
                    names.append(_attn_column(t, m, stat))
    names += [f"{method}_{m}" for method in METHODS for m in MODALITIES]
    names += [f"relevance_in_truth_{m}" for m in TIME_MODALITIES]
    names = sorted(dict.fromkeys(names), key=column_rank)
    fields = []
    for n in names:
        if n in types:
            fields.append(pa.field(n, types[n]))
        elif n.endswith("_peak") and n.startswith("attn_"):
            fields.append(pa.field(n, pa.int32()))
        else:
            fields.append(pa.field(n, pa.float64()))
    return pa.schema(fields)


@dataclass
class _Checkpoint:
    """A loaded checkpoint with what rows need of it."""

    path: str
    loaded: object                     # LoadedCheckpoint
    config_key: str
    name: str = ""
    sha256: str = ""
    sha12: str = ""
    epoch: int | None = None
    tokens: int = 0
    class_labels: list[str] = field(default_factory=list)
    class_codes: list[int] | None = None

    @classmethod
    def load(cls, path: str, heads: int | None = None, display_name: str | None = None) -> "_Checkpoint":
        ck = load_checkpoint(path, heads=heads)
        if ck.encoders is None:
            raise InputError(path, "this checkpoint has no built-in encoders (its backbones are not shipped), "
                                   "so it cannot read weld files")
        cfg = ck.encoders.config.to_dict()
        key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
        labels = []
        if ck.classifier is not None:
            n = ck.classifier.out_features
            labels = list(ck.class_names) if ck.class_names else [str(i) for i in range(n)]
        return cls(path=str(path), loaded=ck, config_key=key, name=display_name or Path(path).name,
                   sha256=ck.info.sha256, sha12=ck.info.sha256[:12], epoch=ck.info.epoch,
                   tokens=int(ck.info.dims.get("tokens", 0) or 0), class_labels=labels,
                   class_codes=list(ck.class_codes) if ck.class_codes else None)


def _float(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _attention_summaries(exp, b: int, meta: dict) -> dict:
    """Per fusion token × modality: entropy (nats), peak token, its centre time, mass in truth windows;
    per time modality: share of gradient relevance (all tokens) in the truth windows."""
    out: dict = {}
    windows = meta.get("windows") or []
    duration = meta.get("duration_s") or 0.0
    for m, att in exp.attention.items():
        a = att[b].astype(np.float64).mean(0)            # (T, S): mean over heads
        mask = exp.masks[m][b]
        pos = exp.positions.get(m, [None] * (b + 1))[b]
        has_time = pos is not None and m in TIME_MODALITIES and "t0" in pos
        if has_time and windows and mask.any() and m in exp.relevance:
            rel = np.asarray(exp.relevance[m][b], dtype=np.float64).sum(0)     # (S,): over fusion tokens
            if rel.sum() > 0:
                out[f"relevance_in_truth_{m}"] = _float(mass_in_windows(rel, pos, windows, duration)[0])
        for t in range(a.shape[0]):
            row = a[t]
            if not mask.any() or not row.sum() > 0:
                continue
            p = row[mask] / row[mask].sum()
            nz = p[p > 0]
            out[_attn_column(t, m, "entropy")] = _float(-(nz * np.log(nz)).sum())
            peak = int(np.argmax(row))
            out[_attn_column(t, m, "peak")] = peak
            if has_time:
                out[_attn_column(t, m, "peak_time")] = _float((pos["t0"].iloc[peak] + pos["t1"].iloc[peak]) / 2)
                if windows:
                    share, _ = mass_in_windows(row, pos, windows, duration)
                    out[_attn_column(t, m, "mass_in_truth")] = _float(share)
    return out


def _base_row(meta: dict, ck: _Checkpoint, settings: dict) -> dict:
    code = meta.get("class_code")
    return {"weld_id": meta["weld_id"], "source": meta["source"], "weld_digest": meta.get("weld_digest"),
            "checkpoint": ck.name, "checkpoint_sha256": ck.sha256, "checkpoint_epoch": ck.epoch,
            "class_code": code, "class_name": CLASS_NAMES.get(code) if code is not None else None,
            "truth": meta.get("truth"), "duration_s": meta.get("duration_s"), "present": meta.get("present"),
            "baseline": settings["baseline"]}


def _row(exp, b: int, meta: dict, ck: _Checkpoint, settings: dict) -> dict:
    row = _base_row(meta, ck, settings)
    row["target"] = exp.target
    if exp.logits is not None:
        probs = exp.probabilities[b]
        i = int(np.argmax(exp.logits[b]))
        row["predicted"] = ck.class_labels[i] if i < len(ck.class_labels) else str(i)
        row["predicted_code"] = ck.class_codes[i] if ck.class_codes and i < len(ck.class_codes) else None
        row["predicted_prob"] = _float(probs[i])
        for label, p in zip(ck.class_labels, probs):
            row[f"prob_{_slug(label)}"] = _float(p)
        if row["predicted_code"] is not None and row["class_code"] is not None:
            row["correct"] = row["predicted_code"] == row["class_code"]
    row["target_value"] = _float(exp.target_values[b])
    row["efficiency_gap"] = _float(exp.efficiency_gap[b])
    row["top_modality"] = exp.top_modality(b)
    for method, vals in exp.contributions.items():
        for j, m in enumerate(MODALITIES):
            row[f"{method}_{m}"] = _float(vals[b, j])
    windows, duration = meta.get("windows"), meta.get("duration_s")
    if windows and duration:
        covered = sum(max(0.0, min(z, duration) - max(a, 0.0)) for a, z in windows)
        row["truth_window_share"] = covered / duration
    row.update(_attention_summaries(exp, b, meta))
    return row


def _maps(exp, b: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for m in exp.attention:
        out[f"attention/{m}"] = exp.attention[m][b].astype(np.float32)
        out[f"value_norms/{m}"] = exp.value_norms[m][b].astype(np.float32)
        out[f"relevance/{m}"] = np.asarray(exp.relevance[m][b], dtype=np.float32)
    for m, mask in exp.masks.items():
        out[f"mask/{m}"] = np.asarray(mask[b], dtype=bool)
    for m, frames in exp.positions.items():
        pos = frames[b] if frames else None
        if pos is not None:
            for col in pos.columns:
                out[f"positions/{m}/{col}"] = pos[col].to_numpy()
    out["token_shapley"] = np.asarray(exp.token_shapley[b], dtype=np.float64)
    out["coalition_values"] = np.asarray(exp.coalition_values[b], dtype=np.float64)
    out["fused"] = np.asarray(exp.fused[b], dtype=np.float32)
    if exp.logits is not None:
        out["logits"] = np.asarray(exp.logits[b], dtype=np.float32)
    return out


class Explainer:
    """The model side of both engines: prepared welds → (row, maps) per checkpoint."""

    def __init__(self, checkpoints: Sequence[_Checkpoint], settings: dict):
        self.checkpoints = list(checkpoints)
        self.by_sha = {ck.sha256: ck for ck in self.checkpoints}
        self.settings = settings

    def error_rows(self, prep: dict) -> list[tuple[dict, None]]:
        rows = []
        for sha in prep["needs"]:
            row = _base_row(prep["meta"], self.by_sha[sha], self.settings)
            row["error"] = prep["error"]
            rows.append((row, None))
        return rows

    def _explain(self, ck: _Checkpoint, items: list[dict]):
        n = len(items)
        padded = list(items) + [items[-1]] * (MODEL_BATCH - n)
        import torch
        with torch.no_grad():
            enc = ck.loaded.encoders.encode(padded, batch_size=MODEL_BATCH)
        fb = FeatureBatch(features=dict(enc.features), masks=dict(enc.masks), positions=dict(enc.positions),
                          ids=list(enc.ids), source=ck.name)
        return explain(ck.loaded, fb, baseline=self.settings["baseline"], target=self.settings["target"])

    def run(self, sha: str, preps: list[dict]) -> list[tuple[dict, dict | None]]:
        """At most MODEL_BATCH prepared welds, one checkpoint: one (row, maps) per weld, in order."""
        ck = self.by_sha[sha]
        assert 0 < len(preps) <= MODEL_BATCH
        items = [p["items"][ck.config_key] for p in preps]
        try:
            exp = self._explain(ck, items)
        except InputError:
            raise                       # a bad --target or the like: the user's, for every weld
        except Exception:
            if len(preps) == 1:
                raise
            out = []                    # find the weld that breaks the batch, keep the others
            for p in preps:
                try:
                    out += self.run(sha, [p])
                except Exception as e:
                    row = _base_row(p["meta"], ck, self.settings)
                    row["error"] = f"internal error ({type(e).__name__}): {' '.join(str(e).split())[:300]}"
                    out.append((row, None))
            return out
        want_maps = self.settings.get("maps", True)
        return [(_row(exp, b, p["meta"], ck, self.settings), _maps(exp, b) if want_maps else None)
                for b, p in enumerate(preps)]


# =========================================================================== storage

def parts_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".d")


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez with fixed timestamps and sorted names, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arrays[name]), allow_pickle=False)


def _part_index(p: Path) -> int:
    return int(p.stem.split("-")[1])


class ResultStore:
    """The chunk folder next to the output file: run settings, row chunks, map chunks."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.dir = parts_dir(self.out)

    def open(self, settings: dict) -> None:
        if self.out.is_dir():
            raise InputError(self.out, "is a folder; --out is the Parquet file to write")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(self.dir, f"cannot create: {e.strerror or e}") from None
        for tmp in self.dir.glob(".*.tmp"):   # a killed run's half-written chunk
            tmp.unlink(missing_ok=True)
        run = self.dir / "run.json"
        want = {"format": FORMAT, "baseline": settings["baseline"], "target": settings["target"]}
        if run.exists():
            try:
                have = json.loads(run.read_text())
            except (OSError, json.JSONDecodeError):
                have = None
            if not isinstance(have, dict) or any(have.get(k) != v for k, v in want.items()):
                raise InputError(self.out, f"the results here were made with other settings ({have}); "
                                           f"rerun with those or choose another --out")
        else:
            tmp = self.dir / ".run.json.tmp"
            tmp.write_text(json.dumps(want, indent=1, sort_keys=True))
            os.replace(tmp, run)

    def row_parts(self) -> list[Path]:
        return sorted(self.dir.glob("rows-*.parquet"), key=_part_index) if self.dir.is_dir() else []

    def done_keys(self) -> frozenset:
        import pyarrow.parquet as pq
        done = set()
        for p in self.row_parts():
            t = pq.read_table(p, columns=["weld_digest", "checkpoint_sha256", "error"]).to_pydict()
            for d, s, e in zip(t["weld_digest"], t["checkpoint_sha256"], t["error"]):
                if d is not None and e is None:
                    done.add((d, s))
        return frozenset(done)

    def next_index(self) -> int:
        parts = self.row_parts()
        return _part_index(parts[-1]) + 1 if parts else 0

    def write_chunk(self, index: int, pairs: list[tuple[dict, dict | None]], schema) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        rows = [dict(r) for r, _ in pairs]
        groups: dict[str, list[int]] = {}
        for i, (r, m) in enumerate(pairs):
            if m is not None:
                groups.setdefault(r["checkpoint_sha256"][:12], []).append(i)
        if groups:
            arrays: dict[str, np.ndarray] = {}
            name = f"maps-{index:06d}.npz"
            for sha12, idx in groups.items():
                keys = sorted(set().union(*(pairs[i][1].keys() for i in idx)))
                for k in keys:
                    arrays[f"{sha12}/{k}"] = np.stack([pairs[i][1][k] for i in idx])
                arrays[f"{sha12}/weld_digest"] = np.array([rows[i]["weld_digest"] for i in idx], dtype=str)
                for j, i in enumerate(idx):
                    rows[i]["maps_file"], rows[i]["maps_index"] = name, j
            tmp = self.dir / f".{name}.tmp"
            _write_npz(tmp, arrays)
            os.replace(tmp, self.dir / name)
        table = pa.Table.from_pylist(rows, schema=schema)
        tmp = self.dir / f".rows-{index:06d}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / f"rows-{index:06d}.parquet")   # the commit point of a chunk

    def consolidated(self):
        """All chunks as one pyarrow Table: newest row per (source, checkpoint), sorted."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        parts = self.row_parts()
        if not parts:
            return None
        table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
        names = sorted(table.column_names, key=column_rank)
        table = table.select(names)
        cols = table.select(["source", "checkpoint_sha256", "checkpoint", "weld_id"]).to_pydict()
        latest: dict[tuple, int] = {}
        for i, key in enumerate(zip(cols["source"], cols["checkpoint_sha256"])):
            latest[key] = i
        keep = sorted(latest.values(), key=lambda i: (cols["checkpoint"][i], cols["checkpoint_sha256"][i],
                                                      natural(cols["weld_id"][i]), cols["source"][i]))
        return table.take(pa.array(keep, type=pa.int64()))

    def consolidate(self) -> int:
        import pyarrow.parquet as pq
        table = self.consolidated()
        if table is None:
            return 0
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.out)
        return table.num_rows


def _to_pandas(table):
    """Integers and booleans stay what they are where error rows leave gaps (pandas' <NA>)."""
    import pandas as pd
    import pyarrow as pa
    nullable = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=nullable.get)


def read_results(path: str | os.PathLike) -> "pandas.DataFrame":  # noqa: F821
    """The results table of `batch` as a DataFrame (what the Dataset page shows).

    Reads `results.parquet`; when its chunk folder holds newer chunks (a run still going,
    or one that was killed), the table is rebuilt from the chunks instead. Integer and
    boolean columns are pandas' nullable types (error rows leave them <NA>). `df.attrs`
    carries `maps_dir`, the folder `read_maps` looks in.
    """
    p = Path(path)
    if p.is_dir() and p.name.endswith(".d"):
        p = p.with_name(p.name[:-2])
    store = ResultStore(p)
    parts = store.row_parts()
    if p.is_file() and (not parts or p.stat().st_mtime_ns >= max(q.stat().st_mtime_ns for q in parts)):
        import pyarrow.parquet as pq
        try:
            df = _to_pandas(pq.read_table(p))
        except Exception as e:  # pyarrow raises several types for a file that is not Parquet
            raise InputError(p, f"not a readable Parquet file ({' '.join(str(e).split())[:200]})") from None
    elif parts:
        df = _to_pandas(store.consolidated())
    else:
        raise InputError(path, "no batch results here (no such file, and no chunk folder next to it)")
    df.attrs["maps_dir"] = str(store.dir)
    return df


def read_maps(results: str | os.PathLike, row) -> dict:
    """Full maps of one results row (a Series/dict with checkpoint_sha256, maps_file, maps_index).

    Returns {"attention": {m: (heads,T,S)}, "value_norms": {...}, "relevance": {m: (T,S)},
    "mask": {m: (S,)}, "positions": {m: DataFrame}, "token_shapley", "coalition_values",
    "fused", "logits"}. Raises InputError when the row has no maps (an error row, --no-maps).
    """
    import pandas as pd
    file, index = row.get("maps_file"), row.get("maps_index")
    if file is None or index is None or (isinstance(file, float) and math.isnan(file)) or pd.isna(index):
        raise InputError(str(results), f"weld {row.get('weld_id')}: no maps stored for this row")
    d = parts_dir(results) if not str(results).endswith(".d") else Path(results)
    sha12 = str(row["checkpoint_sha256"])[:12]
    out: dict = {"attention": {}, "value_norms": {}, "relevance": {}, "mask": {}, "positions": {}}
    pos_cols: dict[str, dict] = {}
    try:
        with np.load(d / str(file), allow_pickle=False) as z:
            for key in z.files:
                if not key.startswith(sha12 + "/"):
                    continue
                name = key[len(sha12) + 1:]
                value = z[key][int(index)]
                parts = name.split("/")
                if parts[0] == "positions":
                    pos_cols.setdefault(parts[1], {})[parts[2]] = value
                elif len(parts) == 2:
                    out[parts[0]][parts[1]] = value
                else:
                    out[name] = value
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise InputError(d / str(file), f"cannot read maps ({e})") from None
    out["positions"] = {m: pd.DataFrame(cols) for m, cols in pos_cols.items()}
    if out.get("weld_digest") != row.get("weld_digest"):
        raise InputError(d / str(file), f"maps index {index} is not weld {row.get('weld_id')}")
    return out


# =========================================================================== progress

@dataclass
class Progress:
    """Counts of a run; `line()` is what the CLI prints."""

    total: int
    done: int = 0            # welds finished in this run (rows written or queued)
    skipped: int = 0         # welds already in the results
    errors: int = 0          # welds that failed
    started: float = field(default_factory=time.perf_counter)

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.errors

    def line(self) -> str:
        el = time.perf_counter() - self.started
        worked = self.done + self.errors
        rate = worked / el if el > 0 else 0.0
        left = self.total - self.finished
        eta = _duration(left / rate) if rate > 0 and left else ("0s" if not left else "?")
        return (f"batch: {self.finished}/{self.total} welds ({100 * self.finished / max(self.total, 1):.0f}%), "
                f"{self.errors} failed, {self.skipped} already done, {rate:.2f} welds/s, "
                f"elapsed {_duration(el)}, ETA {eta}")


def _duration(s: float) -> str:
    s = int(round(s))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class _StderrProgress:
    """Progress on stderr: rewritten in place on a terminal, a line every 10 s otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = 0.0
        self.count = 0

    def __call__(self, p: Progress, final: bool = False) -> None:
        now = time.perf_counter()
        every = 0.5 if self.tty else 10.0
        if not final and self.count and now - self.last < every:
            return
        self.last, self.count = now, self.count + 1
        if self.tty:
            self.stream.write("\r" + p.line() + ("\n" if final else ""))
        else:
            self.stream.write(p.line() + "\n")
        self.stream.flush()


# =========================================================================== runs

@dataclass
class BatchSummary:
    out: str
    welds: int
    rows_written: int
    skipped: int
    errors: int
    seconds: float
    total_rows: int
    engine: str


class _ChunkWriter:
    def __init__(self, store: ResultStore, schema, chunk_rows: int):
        self.store, self.schema, self.chunk_rows = store, schema, chunk_rows
        self.buf: list[tuple[dict, dict | None]] = []
        self.index = store.next_index()
        self.written = 0

    def add(self, pairs: list[tuple[dict, dict | None]]) -> None:
        self.buf += pairs
        while len(self.buf) >= self.chunk_rows:
            self._flush(self.buf[:self.chunk_rows])
            self.buf = self.buf[self.chunk_rows:]

    def close(self) -> None:
        if self.buf:
            self._flush(self.buf)
            self.buf = []

    def _flush(self, pairs) -> None:
        self.store.write_chunk(self.index, pairs, self.schema)
        self.index += 1
        self.written += len(pairs)


def _default_workers() -> int:
    """One decoding process per CPU: decoding is ~90% of a weld's cost, the model side is light."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, n)


def run_batch(checkpoints: Sequence[str | os.PathLike], samples: str | os.PathLike, out: str | os.PathLike, *,
              engine: str = "local", workers: int | None = None, ray_address: str | None = None,
              baseline: str = "drop-attention", target: str = "auto", heads: int | None = None,
              chunk_rows: int = DEFAULT_CHUNK_ROWS, maps: bool = True, threads: int | None = None,
              progress: Callable[[Progress, bool], None] | None = None) -> BatchSummary:
    """Explain every weld under `samples` with every checkpoint into `out` (Parquet), resuming.

    `workers`: decoding processes (local; 0 = decode in this process) or CPUs of a locally
    started Ray. `threads`: torch threads of the model side (default 1; numbers do not depend
    on it). `progress(p, final)` is called as welds finish. Raises InputError for bad
    arguments or inputs; a bad weld becomes a row with `error` set.
    """
    if engine not in ("local", "ray"):
        raise InputError("--engine", f"unknown engine {engine!r}; choose local or ray")
    if ray_address and engine != "ray":
        raise InputError("--ray-address", "only makes sense with --engine ray")
    if baseline not in BATCH_BASELINES:
        raise InputError("--baseline", f"{baseline!r} is not available for batch runs; choose from "
                                       f"{', '.join(BATCH_BASELINES)} (reference-mean would make a weld's "
                                       "numbers depend on the other welds)")
    if target not in ("auto", "logit", "cosine") and not str(target).startswith("class:"):
        raise InputError("--target", f"{target!r} is not available for batch runs; choose auto, logit, "
                                     "class:<name> or cosine")
    if chunk_rows < 1:
        raise InputError("--chunk-rows", "must be positive")
    if not checkpoints:
        raise InputError("--checkpoint", "give at least one checkpoint")
    workers = _default_workers() if workers is None else int(workers)
    if workers < 0:
        raise InputError("--workers", f"{workers} is not a usable number of workers")
    if engine == "ray" and not ray_address:
        workers = max(2, workers)   # one CPU for the model actor, at least one for decoding

    cks: list[_Checkpoint] = []
    for path in checkpoints:
        ck = _Checkpoint.load(str(path), heads=heads)
        if ck.sha256 not in {c.sha256 for c in cks}:   # the same file twice: once is enough
            cks.append(ck)
    sources = list_weld_sources(samples)
    settings = {"baseline": baseline, "target": target, "maps": maps}
    store = ResultStore(out)
    store.open(settings)
    schema = _schema(cks)
    state = PrepState(configs={c.config_key: c.loaded.encoders.config.to_dict() for c in cks},
                      checkpoints=[(c.sha256, c.config_key) for c in cks], done=store.done_keys())
    prog = Progress(total=len(sources))
    writer = _ChunkWriter(store, schema, chunk_rows)
    explainer = Explainer(cks, settings)
    report = progress or (lambda p, final=False: None)
    import torch
    old_threads = torch.get_num_threads()
    # One intra-op thread by default: the decoders already fill the CPUs, and on a busy
    # machine torch's spinning threads can make a small model run many times slower.
    torch.set_num_threads(threads or 1)
    try:
        if engine == "local":
            _run_local(sources, state, explainer, writer, prog, report, workers)
        else:
            _run_ray(sources, state, cks, settings, writer, prog, report, workers, ray_address)
        writer.close()
    finally:
        torch.set_num_threads(old_threads)
    total_rows = store.consolidate()
    report(prog, True)
    return BatchSummary(out=str(out), welds=len(sources), rows_written=writer.written, skipped=prog.skipped,
                        errors=prog.errors, seconds=time.perf_counter() - prog.started, total_rows=total_rows,
                        engine=engine)


def _handle_prep(prep: dict, explainer: Explainer, pending: dict[str, list[dict]], writer: _ChunkWriter,
                 prog: Progress) -> None:
    """Route one prepared weld: skip, error rows now, or into each checkpoint's next model batch.

    A model batch runs when it has min(MODEL_BATCH, chunk rows) welds: with small chunks
    the model runs on padded partial batches (same numbers), so at most one chunk of work
    is ever held in memory.
    """
    fill = min(MODEL_BATCH, writer.chunk_rows)
    if prep["status"] == "skip":
        prog.skipped += 1
        return
    if prep["status"] == "error":
        prog.errors += 1
        writer.add(explainer.error_rows(prep))
        return
    prog.done += 1
    for sha in prep["needs"]:
        pending[sha].append(prep)
        if len(pending[sha]) >= fill:
            writer.add(explainer.run(sha, pending[sha]))
            pending[sha] = []


def _run_local(sources, state, explainer, writer, prog, report, workers) -> None:
    pending: dict[str, list[dict]] = {ck.sha256: [] for ck in explainer.checkpoints}
    if workers == 0:
        for src in sources:
            _handle_prep(prepare_source(src, state), explainer, pending, writer, prog)
            report(prog, False)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        ctx = mp.get_context("spawn")   # fork after torch has threads is unsafe
        max_inflight = 2 * workers + 2  # bounded memory: a few prepared welds per worker

        def new_pool():
            return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                       initargs=(state,))
        pool = new_pool()
        try:
            queue = deque(sources)
            suspects: deque = deque()   # in flight when a worker died: retried one at a time
            inflight: deque = deque()   # (source, future, retried alone)
            while queue or suspects or inflight:
                if suspects and not inflight:
                    src = suspects.popleft()
                    inflight.append((src, pool.submit(_worker_prepare, src), True))
                elif not suspects and not any(alone for *_, alone in inflight):
                    while queue and len(inflight) < max_inflight:
                        src = queue.popleft()
                        inflight.append((src, pool.submit(_worker_prepare, src), False))
                src, fut, alone = inflight.popleft()
                try:
                    prep = fut.result()
                except BrokenProcessPool:
                    # A worker died (a decoder crashed, or memory ran out) and took the pool
                    # with it. Retry what was in flight one weld at a time in a fresh pool; a
                    # weld that kills a worker on its own is recorded as failed.
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = new_pool()
                    if not alone:
                        suspects.extend([src] + [s_ for s_, *_ in inflight])
                        inflight.clear()
                        continue
                    prep = {"status": "error", "meta": _meta(src), "needs": [sha for sha, _ in state.checkpoints],
                            "error": f"{src.source}: the worker process died while reading this weld "
                                     "(a crash in a decoder, or out of memory)"}
                _handle_prep(prep, explainer, pending, writer, prog)
                report(prog, False)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for sha, preps in pending.items():
        if preps:
            writer.add(explainer.run(sha, preps))
            pending[sha] = []


# --------------------------------------------------------------------------- ray

def _ray_prepare(batch: dict, state: PrepState) -> dict:
    import torch
    torch.set_num_threads(1)
    return {"payload": np.array([pickle.dumps(prepare_source(pickle.loads(t), state), protocol=5)
                                 for t in batch["task"]], dtype=object)}


class _RayExplainer:
    """A Ray Data actor: holds the checkpoints, explains batches of prepared welds."""

    def __init__(self, blobs: list[tuple[str, bytes]], settings: dict, heads: list[int | None]):
        import tempfile

        import torch
        torch.set_num_threads(1)
        self._tmp = tempfile.TemporaryDirectory(prefix="fusion-batch-")
        cks = []
        for (name, data), h in zip(blobs, heads):
            p = Path(self._tmp.name) / f"{len(cks)}-{name}"
            p.write_bytes(data)
            cks.append(_Checkpoint.load(str(p), heads=h, display_name=name))
        self.explainer = Explainer(cks, settings)

    def __call__(self, batch: dict) -> dict:
        preps = [pickle.loads(x) for x in batch["payload"]]
        results: list[list] = [[] for _ in preps]
        for i, p in enumerate(preps):
            if p["status"] == "error":
                results[i] = self.explainer.error_rows(p)
        for ck in self.explainer.checkpoints:
            idx = [i for i, p in enumerate(preps) if p["status"] == "ok" and ck.sha256 in p["needs"]]
            for s in range(0, len(idx), MODEL_BATCH):
                part = idx[s:s + MODEL_BATCH]
                for i, pair in zip(part, self.explainer.run(ck.sha256, [preps[i] for i in part])):
                    results[i].append(pair)
        return {"payload": np.array([pickle.dumps({"status": p["status"], "pairs": r}, protocol=5)
                                     for p, r in zip(preps, results)], dtype=object)}


def _run_ray(sources, state, cks, settings, writer, prog, report, workers, address) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise InputError("--engine ray", "Ray is not installed: pip install 'ray[data]'") from None
    started = False
    if not ray.is_initialized():
        pkg = str(Path(__file__).resolve().parent)
        kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                  runtime_env={"py_modules": [pkg]} if address else
                  {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(Path(pkg).parent),
                                                                              os.environ.get("PYTHONPATH")]))}})
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                # address="local": a new private instance, never someone else's running cluster
                ray.init(address="local", num_cpus=workers, object_store_memory=256 * 1024 ** 2, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(address or "ray", f"cannot start or reach Ray: {' '.join(str(e).split())[:200]}") from None
        started = True
    import logging
    data_log = logging.getLogger("ray.data")
    old_level = data_log.level
    data_log.setLevel(logging.WARNING)   # our progress line says what its INFO lines would
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_stats_logs = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actors = max(1, min(cpus // 2, 8))
        blobs = [(ck.name, Path(ck.path).read_bytes()) for ck in cks]
        heads = [ck.loaded.info.heads if ck.loaded.info.heads_source.startswith("caller") else None for ck in cks]
        ds = ray.data.from_items([{"task": pickle.dumps(s, protocol=5)} for s in sources])
        # The memory request is what a decode needs; it also keeps Ray from fusing this step
        # into the model actors, so decoding scales with tasks and models stay few.
        ds = ds.map_batches(_ray_prepare, batch_size=1, fn_kwargs={"state": state}, num_cpus=1,
                            memory=PREP_MEMORY)
        ds = ds.map_batches(_RayExplainer, batch_size=MODEL_BATCH, num_cpus=1,
                            fn_constructor_kwargs={"blobs": blobs, "settings": settings, "heads": heads},
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors))
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for payload in batch["payload"]:
                res = pickle.loads(payload)
                if res["status"] == "skip":
                    prog.skipped += 1
                elif res["status"] == "error":
                    prog.errors += 1
                else:
                    prog.done += 1
                writer.add(res["pairs"])
                report(prog, False)
    finally:
        data_log.setLevel(old_level)
        if started:
            ray.shutdown()


# =========================================================================== naive baseline

def naive_run(checkpoints: Sequence[str | os.PathLike], samples: str | os.PathLike, *,
              baseline: str = "drop-attention", target: str = "auto") -> list[dict]:
    """The loop batch replaces, for the benchmark: per weld, load it, encode, explain, one at a time.

    Returns one summary row per weld × checkpoint (no files written)."""
    cks = [load_checkpoint(p) for p in checkpoints]
    rows = []
    for weld in iter_welds(samples):
        for ck in cks:
            exp = explain_welds(ck, [weld], baseline=baseline, target=target)
            rows.append({"weld_id": weld.weld_id, "checkpoint_sha256": ck.info.sha256,
                         **{f"shapley_{m}": float(exp.contributions["shapley"][0, j])
                            for j, m in enumerate(MODALITIES)}})
    return rows


# =========================================================================== CLI

def _whole(value, option: str, minimum: int = 0) -> int:
    try:
        v = int(str(value).strip())
    except ValueError:
        raise InputError(option, f"{value!r} is not a whole number") from None
    if v < minimum:
        raise InputError(option, f"must be at least {minimum}, got {v}")
    return v


def add_batch_parser(subparsers) -> argparse.ArgumentParser:
    """Add `batch` to the CLI's subcommands (called by fusion_core.cli.build_parser).

    Values are checked by `cmd_batch`, not argparse, so that a bad one is one line on
    stderr and exit 2 like every other input problem.
    """
    s = subparsers.add_parser("batch", help="explain every weld of a folder or zip with one or more checkpoints, "
                                            "into Parquet (resumable)")
    s.add_argument("--checkpoint", required=True, action="append",
                   help="checkpoint with built-in encoders; repeat for several")
    s.add_argument("--samples", required=True, help="folder of weld folders, one weld folder, or a .zip")
    s.add_argument("--out", required=True, help="results Parquet file (chunks go to OUT.d/ beside it)")
    s.add_argument("--engine", default="local", help="local (default) or ray")
    s.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    s.add_argument("--workers", help="decoding processes (local; 0 = in this process) or CPUs of a local Ray "
                                     "(default: one per CPU)")
    s.add_argument("--baseline", default="drop-attention", help=" | ".join(BATCH_BASELINES))
    s.add_argument("--target", default="auto", help="auto | logit | class:<name> | cosine")
    s.add_argument("--heads", help="head count when a checkpoint does not say")
    s.add_argument("--chunk-rows", default=str(DEFAULT_CHUNK_ROWS),
                   help=f"rows per chunk file (default {DEFAULT_CHUNK_ROWS}); a killed run loses at most one")
    s.add_argument("--no-maps", action="store_true", help="do not write the full-map sidecar")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_batch)
    return s


def cmd_batch(args) -> int:
    """`python -m fusion_core batch ...`; InputError propagates (the CLI prints it, exits 2)."""
    workers = None if args.workers is None else _whole(args.workers, "--workers")
    heads = None if args.heads is None else _whole(args.heads, "--heads", 1)
    summary = run_batch(args.checkpoint, args.samples, args.out, engine=args.engine, workers=workers,
                        ray_address=args.ray_address, baseline=args.baseline, target=args.target,
                        heads=heads, chunk_rows=_whole(args.chunk_rows, "--chunk-rows", 1),
                        maps=not args.no_maps, progress=None if args.quiet else _StderrProgress())
    print(f"batch ({summary.engine}): {summary.welds} welds, {summary.rows_written} rows written, "
          f"{summary.skipped} already done, {summary.errors} failed, {summary.seconds:.1f}s; "
          f"{summary.total_rows} rows in {summary.out}")
    return 0
