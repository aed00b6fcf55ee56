"""Weld sources of a batch run: which welds a folder or zip holds, found without reading a
file, and each one read, hashed, decoded and preprocessed into what the model side needs.

Grouping, weld ids, file choice and the zip-entry safety rule are the readers' own
(`fusion_core.io.layout`, `fusion_core.io.containers`), applied to paths; the bytes are
decoded by the readers' `decode_weld`. A weld is read by the readers' rule too: a file with a
problem of its own (not a regular file, unreadable, a corrupt zip entry, over its kind's byte
limit: a sensor CSV, truth.json) is left unread and handed to `decode_weld(unread=...)`, so
its modality is absent with the reason in `Weld.unreadable` (and in the row's `notes`); the
weld's own budget, a bad layout and a weld with nothing readable still make an error row.

`prepare_source` runs in the decoding worker processes (`init_worker` + `worker_prepare` for
the local engine, `ray_prepare` for Ray): this module imports no more than they need, since
every spawned worker imports it.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import InputError
from ..explain.summaries import truth_windows
from ..explain.welds import unreadable_notes
from ..io.containers import (UnreadableFile, check_zip_entry, decode_weld, read_disk_file, read_limit_words,
                             zip_members)
from ..io.layout import folder_rels, group, is_junk, kind_of, natural, plan_weld, weld_digest, weld_id_of
from ..io.limits import DEFAULT_LIMITS, Limits
from ..io.weld import Weld
from ..models.encoders.demo import EncoderConfig, preprocess
from ..vocab import weld_class

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
    images_skipped: int = 0         # photos beyond Limits.max_photos_decoded, not read

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
        return {rel: info.filename for rel, info in zip_members(zf, str(path), limits).items()}


def _members(p: Path, limits: Limits) -> tuple[dict[str, str], str, bool]:
    """(rel path -> member, default weld id, is a zip) of a folder or a .zip."""
    if p.is_dir():
        return {r: r for r in folder_rels(p, limits)}, p.resolve().name, False
    if p.suffix.lower() == ".zip":
        members = _zip_members(p, limits)
        nested = [r for r in members if r.lower().endswith(".zip") and not is_junk(r)]
        if nested:
            raise InputError(f"{p}/{nested[0]}", "nested zip archive; unzip it first")
        return members, p.stem, True
    raise InputError(p, "expected a weld folder, a folder of weld folders or a .zip")


def list_weld_sources(path: str | os.PathLike, limits: Limits = DEFAULT_LIMITS) -> list[WeldSource]:
    """Every weld in a folder of weld folders (or one weld folder, or a .zip), sorted by weld id,
    without reading a file. Same grouping, ids and file choice as the readers (`fusion_core.io.layout`)."""
    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such file or folder")
    members, default, is_zip = _members(p, limits)
    groups = group(members)
    if not groups:
        raise InputError(path, "no weld found: expected a folder with <part_no>.avi, <part_no>.flac or .wav, "
                               "<part_no>.csv or images/*.jpg")
    out = []
    for d, rels in groups.items():
        wid = weld_id_of(d, rels, default)
        chosen, skipped, problem = plan_weld(rels, wid, limits)
        files = tuple((name, members[r]) for name, r in chosen)
        out.append(WeldSource(container=str(p), folder=d, weld_id=wid, files=files, is_zip=is_zip,
                              problem=problem, images_skipped=skipped))
    out.sort(key=lambda s: (natural(s.weld_id), s.folder))
    return out


# =========================================================================== reading (workers)

_ZIPS: dict[str, zipfile.ZipFile] = {}   # per process: one open handle per zip


def _read_file(src: WeldSource, member: str, most: int, what: str, limits: Limits) -> bytes:
    return read_disk_file(Path(src.container) / member, most, what)


def _open_zip(container: str) -> zipfile.ZipFile:
    zf = _ZIPS.get(container)
    if zf is None:
        try:
            zf = _ZIPS[container] = zipfile.ZipFile(container)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise InputError(container, f"not a readable zip archive ({e})") from None
    return zf


def _read_entry(src: WeldSource, member: str, most: int, what: str, limits: Limits) -> bytes:
    """A zip entry's bytes, as the readers read it: a problem of the entry's own (corrupt, over
    `most`) is an `UnreadableFile`; an entry that is hostile (encrypted, a zip-bomb ratio,
    inflating past its declared size) refuses the weld."""
    where = f"{src.container}/{member}"
    zf = _open_zip(src.container)
    try:
        info = zf.getinfo(member)
    except KeyError as e:
        raise UnreadableFile(where, f"corrupt zip entry ({e})") from None
    check_zip_entry(info, where, limits)
    if info.file_size > most:
        raise UnreadableFile(where, f"{info.file_size:,} bytes, more than {what}", info.file_size)
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size + 1)   # inflate at most one byte past the declared size
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise UnreadableFile(where, f"corrupt zip entry ({e})") from None
    if len(data) > info.file_size:
        raise InputError(where, "inflates to more bytes than its declared size")
    if len(data) != info.file_size:
        raise UnreadableFile(where, f"corrupt zip entry ({len(data)} bytes, {info.file_size} declared)")
    return data


# What the readers call a kind's own byte limit (`Limits.file_bytes`) in their messages: the
# text is part of the weld digest of a weld with such a file (`layout.weld_digest`), so it is
# the readers' word for word.
def read_source(src: WeldSource, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, bytes], dict[str, InputError]]:
    """(the bytes of a weld's chosen files, why the others could not be read), both keyed by
    digest name; the readers' rule (`fusion_core.io.containers`): each file is refused by its
    size before it is read when it would pass its kind's limit or what is left of the weld's.
    A file over its kind's own limit, or with a problem of its own (`UnreadableFile`), is left
    unread (its reason names it relative to the container, as rows do); over the weld's budget,
    or a bad layout, the weld is refused (InputError)."""
    if src.problem:
        raise InputError(src.where, src.problem)
    read = _read_entry if src.is_zip else _read_file
    blobs: dict[str, bytes] = {}
    unread: dict[str, InputError] = {}
    left = limits.max_weld_bytes
    for name, member in src.files:
        kind = kind_of(PurePosixPath(name).name)
        own = limits.file_bytes(kind)
        own_words, what = read_limit_words(kind, own, left, limits)
        try:
            data = read(src, member, min(own, left), what, limits)
        except UnreadableFile as e:
            # Named relative to --samples, as the rows name files (`_weld_error`).
            if e.size is None:
                unread[name] = InputError(member, e.problem)
                continue
            if e.size > own and own < limits.max_weld_bytes:   # its own limit, not the weld's
                unread[name] = InputError(member, f"{e.size:,} bytes, more than {own_words}")
                continue
            raise
        left -= len(data)
        blobs[name] = data
    return blobs, unread


def source_digest(blobs: dict[str, bytes], unread: dict[str, InputError]) -> str:
    """The weld digest of what `read_source` gave: the readers' (`Weld.digest`), unread files included."""
    return weld_digest(blobs, {name: e.problem for name, e in unread.items()})


def decode_source(src: WeldSource, blobs: dict[str, bytes], limits: Limits = DEFAULT_LIMITS,
                  unread: dict[str, InputError] | None = None, **read_options) -> Weld:
    """A `Weld` from what `read_source` gave (through the readers' own decoding): the files left
    unread are absent with their reasons (`Weld.unreadable`, files named relative to the
    container, as rows name them); `read_options`: `max_frames`, `max_side`, `image_max_side`
    as `load_welds` takes them."""
    members = dict(src.files)
    return decode_weld(src.weld_id, src.where,
                       [(name, members.get(name, PurePosixPath(name).name), data) for name, data in blobs.items()],
                       limits=limits, images_skipped=src.images_skipped, unread=unread, **read_options)


# =========================================================================== preparing (workers)

@dataclass
class PrepState:
    """What a worker needs besides the weld: encoder configs and the keys already done."""

    configs: dict[str, dict]                  # config key -> EncoderConfig dict, or an UPSTREAM one
    checkpoints: list[tuple[str, str]]        # (sha256, config key), in run order
    done: frozenset = frozenset()             # {(weld digest, checkpoint sha256)}
    limits: Limits = DEFAULT_LIMITS


_CONFIGS: dict[str, EncoderConfig] = {}   # per process: config key -> EncoderConfig

# A config of upstream's own encoders: {"kind": UPSTREAM, "read_options": {...}, ...}. Its welds
# are decoded with those options and handed to the model side as `Weld`s: the encoders (and
# the feature cache in front of them) run there, once per weld, not in every decoding worker.
UPSTREAM = "upstream"


def is_upstream(config: dict) -> bool:
    return config.get("kind") == UPSTREAM


def internal_error(e: Exception) -> str:
    """The error text of a weld that tripped a bug (recorded, so that a long run goes on)."""
    return f"internal error ({type(e).__name__}): {' '.join(str(e).split())[:300]}"


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


def source_meta(src: WeldSource) -> dict:
    """What rows say about a weld before it is read (the rest is filled in as it is)."""
    return {"weld_id": src.weld_id, "source": src.source, "weld_digest": None, "truth": None,
            "class_code": weld_class(src.weld_id, None), "duration_s": None, "present": None, "notes": None,
            "windows": []}


def error_prep(meta: dict, state: PrepState, error: str) -> dict:
    """A weld that failed: an error row for every checkpoint that has no good row for it yet."""
    digest = meta["weld_digest"]
    needs = [sha for sha, _ in state.checkpoints if digest is None or (digest, sha) not in state.done]
    return {"status": "error", "meta": meta, "needs": needs, "error": error}


def prepare_source(src: WeldSource, state: PrepState) -> dict:
    """Read, hash, decode and preprocess one weld: what the model side needs, picklable.

    {"status": "skip" | "ok" | "error", "meta": {...}, "needs": [sha, ...], "items": {cfg key: item},
     "error": str}; an item is the built-in encoders' input, or for upstream's encoders the
    decoded `Weld` (the model side encodes it). Never raises for a bad weld.
    """
    meta = source_meta(src)
    try:
        return _prepare(src, state, meta)
    except InputError as e:
        err = _weld_error(src, e)
    except MemoryError:
        err = "out of memory while reading this weld"
    except Exception as e:  # a weld that trips a bug must not stop a 4,000-weld run: record it
        err = internal_error(e)
    return error_prep(meta, state, err)


def _prepare(src: WeldSource, state: PrepState, meta: dict) -> dict:
    """`prepare_source` for a weld that reads; fills `meta` in as it goes (an error keeps what is known)."""
    blobs, unread = read_source(src, state.limits)
    digest = meta["weld_digest"] = source_digest(blobs, unread)
    needs = [sha for sha, _ in state.checkpoints if (digest, sha) not in state.done]
    if not needs:
        return {"status": "skip", "meta": meta, "needs": []}
    keys = list(dict.fromkeys(k for sha, k in state.checkpoints if sha in needs))
    items = _items(src, blobs, unread, state, keys, meta)
    return {"status": "ok", "meta": meta, "needs": needs, "items": items}


def _read_options(config: dict) -> dict:
    return dict(config.get("read_options") or {}) if is_upstream(config) else {}


def _items(src: WeldSource, blobs: dict[str, bytes], unread: dict[str, InputError], state: PrepState,
           keys: list[str], meta: dict) -> dict:
    """Per config key, what the model side needs of the weld: the built-in encoders' inputs, or
    (upstream's encoders) the weld itself, decoded as those encoders read it. A weld is decoded
    once per set of read options; `meta` comes from the first decode."""
    decoded: dict[str, Weld] = {}
    items = {}
    for key in keys:
        config = state.configs[key]
        opts = _read_options(config)
        tag = json.dumps(opts, sort_keys=True)
        if tag not in decoded:
            decoded[tag] = decode_source(src, blobs, state.limits, unread, **opts)
            if len(decoded) == 1:
                _weld_meta(decoded[tag], meta)
        if is_upstream(config):
            items[key] = decoded[tag]
            continue
        if key not in _CONFIGS:
            _CONFIGS[key] = EncoderConfig.from_dict(config)
        items[key] = preprocess(decoded[tag], _CONFIGS[key])
    return items


def _weld_meta(weld: Weld, meta: dict) -> None:
    truth = weld.truth if isinstance(weld.truth, dict) else None
    duration = float(weld.duration)
    meta.update(truth=json.dumps(truth, sort_keys=True, separators=(",", ":")) if truth is not None else None,
                class_code=weld_class(weld.weld_id, truth), duration_s=duration if duration > 0 else 1.0,
                present=",".join(weld.present), windows=truth_windows(truth),
                notes="; ".join(unreadable_notes([weld])))


# =========================================================================== worker glue

_WORKER_STATE: PrepState | None = None


def init_worker(state: PrepState) -> None:
    """Initializer of a local decoding process."""
    global _WORKER_STATE
    torch.set_num_threads(1)
    _WORKER_STATE = state


def worker_prepare(src: WeldSource) -> dict:
    """`prepare_source` in a local decoding process (`init_worker` gave it the state)."""
    assert _WORKER_STATE is not None
    return prepare_source(src, _WORKER_STATE)


def ray_prepare(batch: dict, state: PrepState) -> dict:
    """Ray Data `map_batches` step: pickled `WeldSource`s in, pickled `prepare_source` results out."""
    torch.set_num_threads(1)
    return {"payload": np.array([pickle.dumps(prepare_source(pickle.loads(t), state), protocol=5)
                                 for t in batch["task"]], dtype=object)}
