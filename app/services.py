"""Where the data is, which paths may be read, and the caches: models by sha256, welds by
path or upload hash, explanations by checkpoint + weld hashes + baseline + target, batch
results by file stamp.

Only cache wrappers around `fusion_core` calls (`app.caches`: bounded in bytes), and the
helpers that say where things live; no widgets, no figures. Explanations are cached per
chunk of welds (`CHUNK`), so a page can show progress between chunks; switching head,
method, token or colour scale is a cache hit, never a model run.

Every path the app opens because someone typed it (or a results table named it) goes
through `allowed_path`: it must lie, after resolving symlinks and "..", inside one of the
data roots, $WELD_DASHBOARD_DATA_ROOTS (folders separated by os.pathsep; by default the
data folder, the repository's sample_data and the working directory).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import os
import shutil
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

from app import caches

if TYPE_CHECKING:
    from app.widgets import WeldInput

REPO = Path(__file__).resolve().parent.parent
DATA_ENV = "WELD_DASHBOARD_DATA"
ROOTS_ENV = "WELD_DASHBOARD_DATA_ROOTS"
UPLOAD_LIMIT_ENV = "WELD_DASHBOARD_MAX_UPLOAD_MB"
BACKBONE_ENV = "WELD_DASHBOARD_BACKBONE_DIR"
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


def data_roots() -> list[Path]:
    """The folders the app may read typed paths from (resolved): $WELD_DASHBOARD_DATA_ROOTS,
    else the repository's sample_data and the working directory; the data folder always."""
    env = os.environ.get(ROOTS_ENV)
    if env and env.strip():
        roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    else:
        roots = [REPO / "sample_data", Path.cwd()]
    roots.append(data_dir())
    return list(dict.fromkeys(r.resolve() for r in roots))


def allowed_path(path: str | os.PathLike) -> Path:
    """`path` resolved (symlinks, "..", "~"), after checking it lies inside a data root;
    else an InputError naming the path and saying how to allow it."""
    raw = str(path)
    if not raw.strip():
        raise InputError("", "no path given")
    try:
        p = Path(raw).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as e:
        raise InputError(raw, f"cannot resolve the path ({e.__class__.__name__})") from None
    roots = data_roots()
    if not any(p == r or p.is_relative_to(r) for r in roots):
        raise InputError(raw, "outside the folders this dashboard may read ("
                         + os.pathsep.join(str(r) for r in roots) + "); to allow it, add its folder to "
                         f"${ROOTS_ENV} (folders separated by {os.pathsep!r}) and restart the dashboard")
    return p


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

def backbone_dir() -> Path | None:
    """Where upstream's encoders take their backbones' config.json from: $WELD_DASHBOARD_BACKBONE_DIR,
    else the data folder's `backbones/` when there is one, else None (the published
    configurations, matched on the checkpoint's tensor shapes)."""
    env = os.environ.get(BACKBONE_ENV)
    if env and env.strip():
        return Path(env).expanduser().resolve()
    here = data_dir() / "backbones"
    return here if here.is_dir() else None


def _load_checkpoint(sha: str, heads: int | None, path: str, name: str) -> LoadedCheckpoint:
    bdir = backbone_dir()
    try:
        ck = load_checkpoint(path, heads=heads, backbone_dir=str(bdir) if bdir else None)
    except InputError as e:
        raise InputError(name, e.problem) from None
    ck.cache_key = f"{sha}:{ck.info.heads}"
    return ck


def _checkpoint(sha: str, heads: int | None, path: str, name: str) -> LoadedCheckpoint:
    return caches.MODELS.get(("checkpoint", sha, heads, str(backbone_dir())),
                             lambda: _load_checkpoint(sha, heads, path, name))


def _kept_upload(data: bytes, sha: str, suffix: str) -> Path:
    """An uploaded checkpoint kept on disk for this server's life: upstream's encoders read
    their weights from the file when they first run, after the upload's own file is gone."""
    d = Path(tempfile.gettempdir()) / f"weld-dashboard-{os.getpid()}" / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{sha}{suffix}"
    if not p.exists():
        tmp = p.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        atexit.register(shutil.rmtree, d.parent, True)
    return p


def _named(ck: LoadedCheckpoint, name: str) -> LoadedCheckpoint:
    """The cached model (shared) under the name this user gave it: the same weights may be
    uploaded as another file, and captions and messages should say the file they chose."""
    if ck.info.path == name:
        return ck
    out = dataclasses.replace(ck, info=dataclasses.replace(ck.info, path=name))
    out.cache_key = ck.cache_key
    return out


def checkpoint_from_path(path: Path, heads: int | None = None) -> LoadedCheckpoint:
    """A checkpoint file inside the data roots (`allowed_path`)."""
    shown = display_path(Path(path))
    real = allowed_path(path)
    if not real.is_file():
        raise InputError(shown, "file not found")
    return _named(_checkpoint(sha_of_file(real), heads, str(real), shown), shown)


def upload_limit_bytes() -> int:
    """The app's own bound on one upload (and on the files of one weld together), in bytes:
    the server's `server.maxUploadSize` (.streamlit/config.toml) or, lower,
    $WELD_DASHBOARD_MAX_UPLOAD_MB. The server refuses bigger files before they arrive; this
    check holds wherever the page runs without that server (AppTest, another front end)."""
    try:
        mb = float(st.get_option("server.maxUploadSize"))
    except Exception:       # noqa: BLE001 - no config: Streamlit's default
        mb = 200.0
    env = os.environ.get(UPLOAD_LIMIT_ENV)
    if env:
        try:
            mb = min(mb, float(env))
        except ValueError:
            pass
    return int(mb * 1024 * 1024)


def checkpoint_from_upload(name: str, data: bytes, heads: int | None = None) -> LoadedCheckpoint:
    """Bytes written to this session's upload folder (original suffix), loaded, deleted;
    errors name `name`."""
    suffix = check_upload(name, data, CHECKPOINT_SUFFIXES, "checkpoint")
    sha = sha_of_bytes(data)

    def load() -> LoadedCheckpoint:
        with caches.upload_file(data, "upload" + suffix, upload_limit_bytes()) as p:
            ck = _load_checkpoint(sha, heads, str(p), name)
        if ck.upstream_encoders is not None and ck.encoders is None:
            ck = _load_checkpoint(sha, heads, str(_kept_upload(data, sha, suffix)), name)
        return ck
    return _named(caches.MODELS.get(("checkpoint", sha, heads, str(backbone_dir())), load), name)


def ckpt_key(ck: LoadedCheckpoint) -> str:
    return getattr(ck, "cache_key", None) or f"{ck.info.sha256}:{ck.info.heads}"


def _randomized(key: str, seed: int, ck: LoadedCheckpoint) -> LoadedCheckpoint:
    clone = randomized_copy(ck, seed)
    clone.cache_key = f"{key}:randomized:{seed}"
    return clone


def randomized_checkpoint(ck: LoadedCheckpoint, seed: int = 0) -> LoadedCheckpoint:
    key = ckpt_key(ck)
    return caches.MODELS.get(("randomized", key, seed), lambda: _randomized(key, seed, ck))


# --------------------------------------------------------------------------- welds

def _weld_folder(path: str, stamp: tuple, opts: tuple = ()) -> Weld:
    return caches.WELDS.get(("folder", path, stamp, opts), lambda: load_weld(path, **dict(opts)))


def weld_from_folder(path: Path, **read_options) -> Weld:
    """A weld folder inside the data roots (`read_options`: `load_weld`'s, e.g. the full
    resolution upstream's encoders read)."""
    real = allowed_path(path)
    return _weld_folder(str(real), _stamp(real), tuple(sorted(read_options.items())))


def welds_from_folder(path: Path) -> list[Weld]:
    """All welds under a folder inside the data roots (a weld folder or a folder of them)."""
    real = allowed_path(path)
    if not real.exists():
        raise InputError(str(path), "no such folder")
    if real.is_dir():
        folders = list_weld_folders(real)
        if folders and not is_weld_folder(real) and len(folders) <= 24:
            # One cache entry per weld (the Explore page shares them); big sets are one entry.
            return [weld_from_folder(p) for p in folders]
    stamp = _stamp(real) if real.is_dir() else (real.stat().st_mtime_ns,)
    return caches.WELDS.get(("set", str(real), stamp), lambda: load_welds(str(real)))


def welds_from_zip(name: str, data: bytes, **read_options) -> list[Weld]:
    """The welds of an uploaded zip (read in memory, never extracted to disk)."""
    if not data:
        raise InputError(name, "file is empty")
    opts = tuple(sorted(read_options.items()))
    welds = caches.UPLOADS.get(("zip", sha_of_bytes(data), name, opts),
                               lambda: load_welds_from_zip_bytes(data, name, **read_options))
    if not welds:
        raise InputError(name, "no weld found in the zip (expected folders with .avi/.flac/.csv/images)")
    return welds


def weld_from_files(files: Sequence[tuple[str, bytes]], **read_options) -> Weld:
    key = hashlib.sha256()
    for name, data in sorted(files):
        key.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return caches.UPLOADS.get(("files", key.hexdigest(), tuple(sorted(read_options.items()))),
                              lambda: load_weld_from_files(list(files), **read_options))


def _load_features(data: bytes, name: str) -> FeatureBatch:
    suffix = Path(name).suffix.lower()
    with caches.upload_file(data, "features" + suffix, upload_limit_bytes()) as p:
        try:
            fb = load_features(p)
        except InputError as e:
            raise InputError(name, e.problem) from None
    fb.source = name
    return fb


def features_from_upload(name: str, data: bytes) -> FeatureBatch:
    check_upload(name, data, FEATURE_SUFFIXES, "feature file")
    return caches.UPLOADS.get(("features", sha_of_bytes(data), name), lambda: _load_features(data, name))


def reference_welds(**read_options) -> list[Weld] | None:
    """Good welds (class 00) of the data folder: the reference set for `reference-mean` and
    `anomaly`. None when there are none."""
    try:
        good = good_welds(welds_from_folder(data_dir()))
    except InputError:
        return None
    if good and read_options:
        good = [weld_from_folder(Path(w.source), **read_options) if Path(w.source).is_dir() else w for w in good]
    return good or None


# --------------------------------------------------------------------------- upstream's encoders

def upstream_encoders(ck: LoadedCheckpoint):
    """The checkpoint's own (upstream) encoders when they are what reads its welds, else None."""
    return ck.upstream_encoders if ck.encoders is None else None


def weld_for(ck: LoadedCheckpoint, wi: WeldInput) -> WeldInput:
    """The weld input as this checkpoint's encoders must read it: upstream's read the files'
    own pixels and exactly its frame count (`read_options`), so the weld is read again from
    where it came from (`wi.extra["reread"]`); the built-in encoders take it as it is."""
    opts = core_welds.read_options(ck)
    reread = wi.extra.get("reread")
    if not opts or wi.kind != "weld" or reread is None:
        return wi
    weld = reread(opts)
    return dataclasses.replace(wi, weld=weld, extra={**wi.extra, "read_options": opts})


def encoders_to_run(ck: LoadedCheckpoint, welds: Sequence[Weld]) -> list[str]:
    """Modalities whose upstream encoder would run for these welds (not in the feature cache)."""
    enc = upstream_encoders(ck)
    if enc is None:
        return []
    return [m for m in dict.fromkeys(m for w in welds for m in w.present) if any(
        m in w.present and enc.cached(m, w) is None for w in welds)]


# --------------------------------------------------------------------------- explanations

def _explain_chunk(ck: LoadedCheckpoint, welds: tuple, baseline: str, target: str,
                   reference: tuple, encoder_progress: Callable | None = None) -> Explanation:
    key = ("welds", ckpt_key(ck), tuple(w.digest for w in welds), baseline, target,
           tuple(w.digest for w in reference))
    return caches.EXPLANATIONS.get(key, lambda: core_welds.explain_welds(
        ck, list(welds), baseline=baseline, target=target, reference=list(reference) or None,
        encoder_progress=encoder_progress))


def needs_reference(baseline: str, target: str) -> bool:
    return baseline == "reference-mean" or target == "anomaly"


def explain_welds(ck: LoadedCheckpoint, welds: Sequence[Weld], *, baseline: str = "drop-attention",
                  target: str = "auto", progress: Callable[[int, int], None] | None = None,
                  chunk: int = CHUNK, encoder_progress: Callable | None = None) -> Explanation:
    """Explain welds chunk by chunk (each chunk cached), calling progress(done, total), and
    `encoder_progress(stage, modality, done, total)` while upstream's encoders run."""
    if not welds:
        raise InputError("", "no welds to explain")
    ref = tuple(reference_welds(**core_welds.read_options(ck)) or ()) if needs_reference(baseline, target) else ()
    if target == "anomaly" and not ref:
        raise InputError(str(data_dir()), "target 'anomaly' needs good welds (class 00) in the data folder")
    parts = []
    for i in range(0, len(welds), chunk):
        parts.append(_explain_chunk(ck, tuple(welds[i:i + chunk]), baseline, target, ref, encoder_progress))
        if progress:
            progress(min(i + chunk, len(welds)), len(welds))
    return core_welds.concat_explanations(parts)


def explain_features(ck: LoadedCheckpoint, fb: FeatureBatch, fb_key: str, row: int, *,
                     baseline: str = "drop-attention", target: str = "auto") -> Explanation:
    key = ("features", ckpt_key(ck), fb_key, row, baseline, target)
    return caches.EXPLANATIONS.get(key, lambda: core_engine.explain(ck, fb.select([row]), baseline=baseline,
                                                                     target=target))


def explain_input(ck: LoadedCheckpoint, wi: WeldInput, baseline: str, target: str,
                  encoder_progress: Callable | None = None) -> Explanation:
    """Explanation of what the weld picker chose: a weld, or one row of a feature file."""
    if wi.kind == "features":
        return explain_features(ck, wi.features, wi.key, wi.row, baseline=baseline, target=target)
    return explain_welds(ck, [wi.weld], baseline=baseline, target=target, encoder_progress=encoder_progress)


# --------------------------------------------------------------------------- batch results

def _checked(df: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(name, "not a batch results table (no column " + ", ".join(missing[:4]) +
                         (", …" if len(missing) > 4 else "") + ")")
    return df


def _read_results(path: str | Path, name: str) -> pd.DataFrame:
    from fusion_core.batch.store import read_results
    try:
        return read_results(path)
    except InputError as e:
        raise InputError(name, e.problem) from None


def results_from_path(path: str) -> pd.DataFrame:
    """A results .parquet inside the data roots (re-read when it or its chunk folder changes)."""
    p = allowed_path(path)
    if p.is_dir() and not p.name.endswith(".d"):
        raise InputError(str(path), "is a folder; give the results .parquet file")
    return caches.UPLOADS.get(("results", str(p), _parquet_stamp(p)),
                              lambda: _checked(_read_results(p, str(path)), str(path)))


def _results_bytes(data: bytes, name: str) -> pd.DataFrame:
    if not data:
        raise InputError(name, "file is empty")
    with caches.upload_file(data, "upload.parquet", upload_limit_bytes()) as p:
        df = _read_results(p, name)
    df.attrs["maps_dir"] = None          # the chunk folder is not uploaded with the file
    return _checked(df, name)


def results_from_upload(name: str, data: bytes) -> pd.DataFrame:
    return caches.UPLOADS.get(("results-upload", sha_of_bytes(data), name), lambda: _results_bytes(data, name))
