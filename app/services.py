"""Where the data is, and the caches: models by sha256, welds by path or upload hash,
explanations by checkpoint + weld hashes + baseline + target, batch results by file stamp.

Only Streamlit's cache wrappers around `fusion_core` calls, and the helpers that say where
things live; no widgets, no figures. Everything is bounded. Explanations are cached per
chunk of welds (`CHUNK`), so a page can show progress between chunks without Streamlit
recording the progress bar inside a cached function; switching head, method, token or
colour scale is a cache hit, never a model run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from fusion_core.errors import InputError
from fusion_core.explain import engine as core_engine
from fusion_core.explain import welds as core_welds
from fusion_core.explain.engine import Explanation
from fusion_core.explain.sanity import randomized_copy
from fusion_core.explain.views import reference_welds as good_welds
from fusion_core.io.containers import load_weld, load_weld_from_files, load_welds, load_welds_from_zip_bytes
from fusion_core.io.features import FeatureBatch, load_features
from fusion_core.io.layout import is_weld_folder
from fusion_core.io.torchload import file_sha256
from fusion_core.io.weld import Weld
from fusion_core.models.checkpoint import LoadedCheckpoint, load_checkpoint

if TYPE_CHECKING:
    from app.widgets import WeldInput

REPO = Path(__file__).resolve().parent.parent
DATA_ENV = "WELD_DASHBOARD_DATA"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt")
FEATURE_SUFFIXES = (".npz", ".safetensors", ".pt", ".pth")
CHUNK = 8
# Columns a batch results table must have for the Dataset page.
RESULT_COLUMNS = ("weld_id", "source", "checkpoint", "checkpoint_sha256", "class_name", "predicted", "correct",
                  "error", "top_modality", "present")


# --------------------------------------------------------------------------- where things are

def data_dir() -> Path:
    """`sample_data/` of this repository, or $WELD_DASHBOARD_DATA."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser().resolve() if env else REPO / "sample_data"


def checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def list_checkpoints() -> list[Path]:
    d = checkpoints_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)


def list_weld_folders(root: Path | None = None) -> list[Path]:
    """Weld folders directly under root (default: the data folder), sorted by name."""
    root = root or data_dir()
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and is_weld_folder(p)),
                  key=lambda p: p.name)


def display_path(path: Path) -> str:
    """Relative to the repository when inside it (what messages and captions show)."""
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return str(path)


def found_parquet(also: str | None = None) -> list[str]:
    """Results files in the data folder (top two levels), newest first, `also` (the last
    run's) in front."""
    root = data_dir()
    files = [p for pat in ("*.parquet", "*/*.parquet") for p in root.glob(pat) if p.is_file()]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    out = [str(p) for p in files]
    if also and also not in out:
        out.insert(0, also)
    return out


def _stamp(path: Path) -> tuple:
    """Changes when anything in a folder (two levels) changes: (name, mtime_ns, size) of each entry."""
    out = []
    try:
        for dirpath, dirnames, filenames in os.walk(path):
            if len(Path(dirpath).relative_to(path).parts) >= 2:
                dirnames[:] = []
            for fn in sorted(filenames):
                s = os.stat(os.path.join(dirpath, fn))
                out.append((fn, s.st_mtime_ns, s.st_size))
    except OSError:
        pass
    return tuple(out)


def _parquet_stamp(path: Path) -> tuple:
    """Changes when the results file or its chunk folder changes (a run still going)."""
    out = []
    for p in (path, path.with_name(path.name + ".d")):
        try:
            s = p.stat()
            out.append((s.st_mtime_ns, s.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _sha_of(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def sha_of_file(path: Path) -> str:
    s = path.stat()
    return _sha_of(str(path), s.st_mtime_ns, s.st_size)


def sha_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_upload(name: str, data: bytes, suffixes: tuple[str, ...], what: str) -> str:
    """The upload's suffix, after checking it is one of `suffixes` and the file is not empty."""
    suffix = Path(name).suffix.lower()
    if suffix not in suffixes:
        raise InputError(name, f"unsupported {what} type {suffix or '(none)'!r}; use {', '.join(suffixes)}")
    if not data:
        raise InputError(name, "file is empty")
    return suffix


# --------------------------------------------------------------------------- checkpoints

@st.cache_resource(max_entries=4, show_spinner=False)
def _checkpoint(sha: str, heads: int | None, _path: str, _name: str) -> LoadedCheckpoint:
    try:
        ck = load_checkpoint(_path, heads=heads)
    except InputError as e:
        raise InputError(_name, e.problem) from None
    ck.cache_key = f"{sha}:{ck.info.heads}"
    return ck


def _named(ck: LoadedCheckpoint, name: str) -> LoadedCheckpoint:
    """The cached model (shared) under the name this user gave it: the same weights may be
    uploaded as another file, and captions and messages should say the file they chose."""
    if ck.info.path == name:
        return ck
    out = dataclasses.replace(ck, info=dataclasses.replace(ck.info, path=name))
    out.cache_key = ck.cache_key
    return out


def checkpoint_from_path(path: Path, heads: int | None = None) -> LoadedCheckpoint:
    path = Path(path)
    if not path.is_file():
        raise InputError(path.name, "file not found")
    return _named(_checkpoint(sha_of_file(path), heads, str(path), display_path(path)), display_path(path))


def checkpoint_from_upload(name: str, data: bytes, heads: int | None = None) -> LoadedCheckpoint:
    """Bytes written to a temporary file (original suffix), loaded, deleted; errors name `name`."""
    suffix = check_upload(name, data, CHECKPOINT_SUFFIXES, "checkpoint")
    sha = sha_of_bytes(data)
    with tempfile.TemporaryDirectory(prefix="weld-upload-") as tmp:
        p = Path(tmp) / ("upload" + suffix)
        p.write_bytes(data)
        return _named(_checkpoint(sha, heads, str(p), name), name)


def ckpt_key(ck: LoadedCheckpoint) -> str:
    return getattr(ck, "cache_key", None) or f"{ck.info.sha256}:{ck.info.heads}"


@st.cache_resource(max_entries=2, show_spinner=False)
def _randomized(key: str, seed: int, _ck: LoadedCheckpoint) -> LoadedCheckpoint:
    clone = randomized_copy(_ck, seed)
    clone.cache_key = f"{key}:randomized:{seed}"
    return clone


def randomized_checkpoint(ck: LoadedCheckpoint, seed: int = 0) -> LoadedCheckpoint:
    return _randomized(ckpt_key(ck), seed, ck)


# --------------------------------------------------------------------------- welds

@st.cache_resource(max_entries=32, show_spinner=False)
def _weld_folder(path: str, stamp: tuple) -> Weld:
    return load_weld(path)


def weld_from_folder(path: Path) -> Weld:
    return _weld_folder(str(path), _stamp(Path(path)))


@st.cache_resource(max_entries=4, show_spinner=False)
def _weld_set(path: str, stamp: tuple) -> list[Weld]:
    return load_welds(path)


def welds_from_folder(path: Path) -> list[Weld]:
    """All welds under a folder (a weld folder or a folder of them)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(str(path), "no such folder")
    if path.is_dir():
        folders = list_weld_folders(path)
        if folders and not is_weld_folder(path) and len(folders) <= 24:
            # One cache entry per weld (the Explore page shares them); big sets are one entry.
            return [weld_from_folder(p) for p in folders]
    return _weld_set(str(path), _stamp(path) if path.is_dir() else (path.stat().st_mtime_ns,))


@st.cache_resource(max_entries=8, show_spinner=False)
def _zip_welds(sha: str, _data: bytes, name: str) -> list[Weld]:
    return load_welds_from_zip_bytes(_data, name)


def welds_from_zip(name: str, data: bytes) -> list[Weld]:
    if not data:
        raise InputError(name, "file is empty")
    welds = _zip_welds(sha_of_bytes(data), data, name)
    if not welds:
        raise InputError(name, "no weld found in the zip (expected folders with .avi/.flac/.csv/images)")
    return welds


@st.cache_resource(max_entries=8, show_spinner=False)
def _files_weld(key: str, _files: tuple) -> Weld:
    return load_weld_from_files(list(_files))


def weld_from_files(files: Sequence[tuple[str, bytes]]) -> Weld:
    key = hashlib.sha256()
    for name, data in sorted(files):
        key.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return _files_weld(key.hexdigest(), tuple(files))


@st.cache_resource(max_entries=4, show_spinner=False)
def _features(sha: str, _data: bytes, name: str) -> FeatureBatch:
    suffix = Path(name).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="weld-upload-") as tmp:
        p = Path(tmp) / ("features" + suffix)
        p.write_bytes(_data)
        try:
            fb = load_features(p)
        except InputError as e:
            raise InputError(name, e.problem) from None
    fb.source = name
    return fb


def features_from_upload(name: str, data: bytes) -> FeatureBatch:
    check_upload(name, data, FEATURE_SUFFIXES, "feature file")
    return _features(sha_of_bytes(data), data, name)


def reference_welds() -> list[Weld] | None:
    """Good welds (class 00) of the data folder: the reference set for `reference-mean` and
    `anomaly`. None when there are none."""
    try:
        good = good_welds(welds_from_folder(data_dir()))
    except InputError:
        return None
    return good or None


# --------------------------------------------------------------------------- explanations

@st.cache_data(max_entries=32, show_spinner=False)
def _explain_chunk(ck_key: str, digests: tuple, baseline: str, target: str, ref_digests: tuple,
                   _ck: LoadedCheckpoint, _welds: tuple, _reference: tuple | None) -> Explanation:
    return core_welds.explain_welds(_ck, list(_welds), baseline=baseline, target=target,
                                    reference=list(_reference) if _reference else None)


def needs_reference(baseline: str, target: str) -> bool:
    return baseline == "reference-mean" or target == "anomaly"


def explain_welds(ck: LoadedCheckpoint, welds: Sequence[Weld], *, baseline: str = "drop-attention",
                  target: str = "auto", progress: Callable[[int, int], None] | None = None,
                  chunk: int = CHUNK) -> Explanation:
    """Explain welds chunk by chunk (each chunk cached), calling progress(done, total)."""
    if not welds:
        raise InputError("", "no welds to explain")
    ref = tuple(reference_welds() or ()) if needs_reference(baseline, target) else ()
    if target == "anomaly" and not ref:
        raise InputError(str(data_dir()), "target 'anomaly' needs good welds (class 00) in the data folder")
    ref_digests = tuple(w.digest for w in ref)
    parts = []
    for i in range(0, len(welds), chunk):
        part = tuple(welds[i:i + chunk])
        parts.append(_explain_chunk(ckpt_key(ck), tuple(w.digest for w in part), baseline, target, ref_digests,
                                    ck, part, ref or None))
        if progress:
            progress(min(i + chunk, len(welds)), len(welds))
    return core_welds.concat_explanations(parts)


@st.cache_data(max_entries=32, show_spinner=False)
def _explain_features(ck_key: str, fb_key: str, row: int, baseline: str, target: str,
                      _ck: LoadedCheckpoint, _fb: FeatureBatch) -> Explanation:
    return core_engine.explain(_ck, _fb.select([row]), baseline=baseline, target=target)


def explain_features(ck: LoadedCheckpoint, fb: FeatureBatch, fb_key: str, row: int, *,
                     baseline: str = "drop-attention", target: str = "auto") -> Explanation:
    return _explain_features(ckpt_key(ck), fb_key, row, baseline, target, ck, fb)


def explain_input(ck: LoadedCheckpoint, wi: WeldInput, baseline: str, target: str) -> Explanation:
    """Explanation of what the weld picker chose: a weld, or one row of a feature file."""
    if wi.kind == "features":
        return explain_features(ck, wi.features, wi.key, wi.row, baseline=baseline, target=target)
    return explain_welds(ck, [wi.weld], baseline=baseline, target=target)


# --------------------------------------------------------------------------- batch results

def _checked(df: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(name, "not a batch results table (no column " + ", ".join(missing[:4]) +
                         (", …" if len(missing) > 4 else "") + ")")
    return df


@st.cache_resource(max_entries=4, show_spinner="Reading the results…")
def _results_from_path(path: str, stamp: tuple) -> pd.DataFrame:
    from fusion_core.batch.store import read_results
    return _checked(read_results(path), path)


def results_from_path(path: str) -> pd.DataFrame:
    p = Path(path).expanduser()
    if p.is_dir() and not p.name.endswith(".d"):
        raise InputError(str(p), "is a folder; give the results .parquet file")
    return _results_from_path(str(p), _parquet_stamp(p))


@st.cache_resource(max_entries=4, show_spinner="Reading the results…")
def _results_from_bytes(sha: str, _data: bytes, name: str) -> pd.DataFrame:
    from fusion_core.batch.store import read_results
    if not _data:
        raise InputError(name, "file is empty")
    with tempfile.TemporaryDirectory(prefix="weld-results-") as d:
        p = Path(d) / "upload.parquet"
        p.write_bytes(_data)
        try:
            df = read_results(p)
        except InputError as e:
            raise InputError(name, e.problem) from None
    df.attrs["maps_dir"] = None          # the chunk folder is not uploaded with the file
    return _checked(df, name)


def results_from_upload(name: str, data: bytes) -> pd.DataFrame:
    return _results_from_bytes(sha_of_bytes(data), data, name)
