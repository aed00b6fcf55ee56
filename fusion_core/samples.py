"""Read welds in the dataset's layout into `Weld`s: folders, folders of folders, zips, uploads.

A weld is a folder `<part_no>/` holding `<part_no>.avi`, `<part_no>.flac` (or `.wav`),
`<part_no>.csv`, `images/*.jpg` and optionally `truth.json` (see DESIGN.md). Every reader
goes through the same two steps:

1. *find*: list the files of a container (folder, zip, upload) without reading them, drop
   junk (`.DS_Store`, `__MACOSX/`, hidden files), and group what is left into welds;
2. *read*: per weld, read the chosen files' bytes (bounded) and decode them from memory
   (PyAV, soundfile, Pillow, pandas all read from `BytesIO`), so nothing is extracted to
   disk and a zip is never unpacked.

Rules a user can rely on:

- A folder is a weld when it holds a video (.avi/.mp4/.mov/.mkv), an audio (.flac/.wav) or
  a .csv file, or an `images/` subfolder (any case) with photos (.jpg/.jpeg/.png, any
  case). Photos directly in a weld folder count when it has no `images/` folder.
- Within a weld, when there are several files of one kind, the one whose stem is the part
  number wins; if none or several do, that is an error (ambiguous). Other files are ignored.
- The weld id is the folder name when a file is named after it; otherwise the stem the
  video/audio/csv files share; otherwise the folder (or zip / upload) name.
- Zips are read in memory. Refused: entries with absolute paths, `..`, or link bits; more
  than `Limits.max_entries` entries; more than `Limits.max_total_bytes` uncompressed (declared
  or actually read); an entry that expands more than `Limits.max_ratio` times; encrypted
  entries; duplicate names; and zips inside the zip (unzip them first) — each as an
  `InputError` naming the zip entry and the problem.
- Any problem with a file is an `InputError(file, problem)`; a call either returns every
  weld it was asked for or raises: nothing half-loaded.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
import warnings
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from .errors import InputError
from .weld import AUDIO_RATE_HZ, CSV_COLUMNS, SENSOR_CHANNELS, SENSOR_RATE_HZ, Weld

VIDEO_EXTS = (".avi", ".mp4", ".mov", ".mkv")
AUDIO_EXTS = (".flac", ".wav")
CSV_EXTS = (".csv",)
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
TRUTH_NAME = "truth.json"
_JUNK_NAMES = {"thumbs.db", "desktop.ini"}

GiB = 1024 ** 3


@dataclass(frozen=True)
class Limits:
    """What the readers refuse, so that one upload cannot exhaust the machine."""

    max_total_bytes: int = 2 * GiB      # uncompressed bytes of a zip; bytes read per weld
    max_entries: int = 10_000           # entries in a zip
    max_ratio: float = 100.0            # uncompressed/compressed for a zip entry > 1 MiB
    max_files: int = 200_000            # files scanned under a folder
    max_depth: int = 8                  # folder levels scanned
    max_rows: int = 200_000             # sensor CSV data rows
    max_images: int = 64                # photos per weld
    max_audio_s: float = 4 * 3600.0     # audio duration
    max_video_frames: int = 500_000     # frames in a video stream
    max_image_pixels: int = 60_000_000  # pixels of one photo, before decoding


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class _File:
    """One file of a container, not read yet."""

    rel: str                       # posix path relative to the container root
    source: str                    # what error messages call it
    read: Callable[[], bytes]      # reads it, enforcing limits


# --------------------------------------------------------------------------- public API


def load_weld(path: str | os.PathLike, *, max_frames: int = 48, max_side: int = 160,
              image_max_side: int = 400, limits: Limits = DEFAULT_LIMITS) -> Weld:
    """One weld from a weld folder (or a zip holding exactly one weld)."""
    welds = load_welds(path, max_frames=max_frames, max_side=max_side,
                       image_max_side=image_max_side, limits=limits)
    if len(welds) != 1:
        raise InputError(path, f"holds {len(welds)} welds ({_few(w.weld_id for w in welds)}); "
                               "expected one weld folder (use load_welds for many)")
    return welds[0]


def load_welds(path: str | os.PathLike, *, max_frames: int = 48, max_side: int = 160,
               image_max_side: int = 400, limits: Limits = DEFAULT_LIMITS) -> list[Weld]:
    """All welds in a weld folder, a folder of weld folders, or a .zip; sorted by weld id."""
    return list(iter_welds(path, max_frames=max_frames, max_side=max_side,
                           image_max_side=image_max_side, limits=limits))


def iter_welds(path: str | os.PathLike, *, max_frames: int = 48, max_side: int = 160,
               image_max_side: int = 400, limits: Limits = DEFAULT_LIMITS) -> Iterator[Weld]:
    """Like `load_welds`, but decodes one weld at a time (for folders of thousands of welds).

    The layout is checked before the first weld is decoded, so a bad zip fails up front.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such file or folder")
    opts = dict(max_frames=max_frames, max_side=max_side, image_max_side=image_max_side,
                limits=limits)
    if p.is_dir():
        files = _folder_files(p, limits)
        yield from _read_welds(files, default_id=p.resolve().name, container=str(p),
                               per_weld_budget=True, **opts)
    elif p.suffix.lower() == ".zip":
        try:
            fh = open(p, "rb")
        except OSError as e:
            raise InputError(path, f"cannot open: {e.strerror or e}") from None
        with fh:
            yield from _zip_welds(fh, str(p), p.stem, **opts)
    else:
        raise InputError(path, "expected a weld folder, a folder of weld folders or a .zip")


def load_welds_from_zip_bytes(data: bytes, name: str = "upload.zip", *, max_frames: int = 48,
                              max_side: int = 160, image_max_side: int = 400,
                              limits: Limits = DEFAULT_LIMITS) -> list[Weld]:
    """Welds from the bytes of an uploaded zip (one weld or many, with or without a top folder)."""
    return list(_zip_welds(io.BytesIO(data), name, PurePosixPath(name).stem,
                           max_frames=max_frames, max_side=max_side,
                           image_max_side=image_max_side, limits=limits))


def load_weld_from_files(files: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
                         weld_id: str | None = None, *, max_frames: int = 48, max_side: int = 160,
                         image_max_side: int = 400, limits: Limits = DEFAULT_LIMITS) -> Weld:
    """One weld from files given one by one, as an upload gives them: {name: bytes}.

    The extension decides the kind (video, .flac/.wav, .csv, .jpg/.jpeg/.png photos,
    `truth.json`); any other file is refused, since the user picked it on purpose.
    """
    items = list(files.items()) if isinstance(files, Mapping) else list(files)
    if not items:
        raise InputError("upload", "no files given")
    seen: set[str] = set()
    entries: list[_File] = []
    for name, data in items:
        base = PurePosixPath(str(name).replace("\\", "/")).name
        if not base:
            raise InputError(str(name), "not a file name")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InputError(base, f"expected bytes, got {type(data).__name__}")
        kind = _kind(base)
        if base.lower().endswith(".zip"):
            raise InputError(base, "a zip among single files; upload the zip on its own")
        if kind is None:
            raise InputError(base, "unrecognised file type; expected .avi, .flac/.wav, .csv, "
                                   ".jpg/.jpeg/.png or truth.json")
        if base.lower() in seen:
            raise InputError(base, "given twice")
        seen.add(base.lower())
        blob = bytes(data)
        rel = f"images/{base}" if kind == "image" else base
        entries.append(_File(rel, base, lambda blob=blob: blob))
    total = sum(len(d) for _, d in items)
    if total > limits.max_total_bytes:
        raise InputError("upload", f"{total} bytes in all, more than the "
                                   f"{limits.max_total_bytes}-byte limit")
    groups = _group(entries)
    if not groups:
        raise InputError("upload", "no weld files among " + _few(n for n, _ in items))
    return _read_one("", groups[""], default_id=weld_id or "upload", forced_id=weld_id,
                     container="upload", max_frames=max_frames, max_side=max_side,
                     image_max_side=image_max_side, limits=limits)


# --------------------------------------------------------------------------- finding files


def _kind(name: str) -> str | None:
    low = name.lower()
    if low == TRUTH_NAME:
        return "truth"
    ext = os.path.splitext(low)[1]
    if ext in VIDEO_EXTS:
        return "video"
    if ext in AUDIO_EXTS:
        return "audio"
    if ext in CSV_EXTS:
        return "sensor"
    if ext in IMAGE_EXTS:
        return "image"
    return None


def _is_junk(rel: str) -> bool:
    parts = rel.split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1].lower() in _JUNK_NAMES


def _rel(f: "_File | str") -> str:
    return f if isinstance(f, str) else f.rel


def _group(files: Iterable[_File] | Iterable[str]) -> dict[str, list]:
    """Weld folder (posix, '' for the root) -> its candidate files (`_File`s or plain
    relative paths: the batch engine lists welds without reading them)."""
    by_dir: dict[str, list] = {}
    is_weld: set[str] = set()
    strong: set[str] = set()  # has a video, an audio or an images/ folder
    for f in files:
        if _is_junk(_rel(f)):
            continue
        kind = _kind(PurePosixPath(_rel(f)).name)
        if kind is None:
            continue
        parent = PurePosixPath(_rel(f)).parent
        d = "" if str(parent) == "." else str(parent)
        if kind == "image" and parent.name.lower() == "images":
            d = "" if str(parent.parent) == "." else str(parent.parent)
            is_weld.add(d)
            strong.add(d)
        elif kind in ("video", "audio", "sensor"):
            is_weld.add(d)
            if kind != "sensor":
                strong.add(d)
        by_dir.setdefault(d, []).append(f)
    # A folder above other welds that holds only a CSV (say labels.csv beside the weld
    # folders) is a container, not a weld.
    def has_weld_below(d: str) -> bool:
        return any(o != d and (d == "" or o.startswith(d + "/")) for o in is_weld)
    keep = {d for d in is_weld if d in strong or not has_weld_below(d)}
    return {d: fs for d, fs in by_dir.items() if d in keep}


def _folder_rels(root: Path, limits: Limits) -> list[str]:
    """Relative posix paths of the files under root, sorted, within the depth and count limits."""
    out: list[str] = []
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - root_depth
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        if depth >= limits.max_depth:
            dirnames[:] = []
        for fn in sorted(filenames):
            out.append((Path(dirpath) / fn).relative_to(root).as_posix())
            if len(out) > limits.max_files:
                raise InputError(root, f"more than {limits.max_files} files under this folder")
    return out


def _folder_files(root: Path, limits: Limits) -> list[_File]:
    return [_File(rel, str(root / rel), _disk_reader(root / rel)) for rel in _folder_rels(root, limits)]


def _disk_reader(full: Path) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            return full.read_bytes()
        except OSError as e:
            raise InputError(full, f"cannot read: {e.strerror or e}") from None
    return read


# --------------------------------------------------------------------------- zips


def _zip_welds(fileobj, zip_name: str, default_id: str, *, max_frames: int, max_side: int,
               image_max_side: int, limits: Limits) -> Iterator[Weld]:
    try:
        zf = zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise InputError(zip_name, f"not a readable zip archive ({e})") from None
    with zf:
        files = _zip_files(zf, zip_name, limits)
        # A zip is read whole before anything is returned: all or nothing.
        welds = list(_read_welds(files, default_id=default_id, container=zip_name,
                                 per_weld_budget=False, max_frames=max_frames, max_side=max_side,
                                 image_max_side=image_max_side, limits=limits))
    yield from welds


_DRIVE = re.compile(r"^[A-Za-z]:")


def _zip_files(zf: zipfile.ZipFile, zip_name: str, limits: Limits) -> list[_File]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise InputError(zip_name, f"{len(infos)} entries, more than the limit of {limits.max_entries}")
    declared = 0
    names: set[str] = set()
    files: list[_File] = []
    budget = {"left": limits.max_total_bytes}
    for info in infos:
        raw = info.filename
        where = f"{zip_name}/{raw}"
        name = raw.replace("\\", "/")
        if "\x00" in name:
            raise InputError(where, "entry name contains a NUL character")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or _DRIVE.match(name):
            raise InputError(where, "entry has an absolute path (it would escape its folder)")
        if ".." in parts:
            raise InputError(where, "entry path contains '..' (it would escape its folder)")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise InputError(where, "entry is a symbolic link; links are not accepted")
        if info.is_dir():
            continue
        rel = "/".join(parts)
        if not rel:
            continue
        if rel in names:
            raise InputError(where, "duplicate entry name in the zip")
        names.add(rel)
        if _is_junk(rel):
            continue
        if rel.lower().endswith(".zip"):
            raise InputError(where, "nested zip archive; unzip it first or upload it separately")
        if info.flag_bits & 0x1:
            raise InputError(where, "entry is encrypted")
        declared += info.file_size
        if declared > limits.max_total_bytes:
            raise InputError(zip_name, f"uncompressed size is more than the limit of "
                                       f"{limits.max_total_bytes} bytes")
        if info.file_size > 1024 ** 2 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise InputError(where, f"compression ratio {ratio:.0f}:1 is above the limit of "
                                    f"{limits.max_ratio:.0f}:1 (zip bomb?)")
        files.append(_File(rel, where, _zip_reader(zf, info, where, budget, limits)))
    return files


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, budget: dict,
                limits: Limits) -> Callable[[], bytes]:
    def read() -> bytes:
        # Count the bytes actually inflated: declared sizes can lie.
        cap = min(info.file_size, budget["left"])
        chunks: list[bytes] = []
        got = 0
        try:
            with zf.open(info) as fh:
                while True:
                    chunk = fh.read(1 << 20)
                    if not chunk:
                        break
                    got += len(chunk)
                    if got > cap:
                        if got > budget["left"]:
                            raise InputError(where, "uncompressed data exceeds the limit of "
                                                    f"{limits.max_total_bytes} bytes")
                        raise InputError(where, "inflates to more bytes than its declared size")
                    if got > 1024 ** 2 and got > limits.max_ratio * max(info.compress_size, 1):
                        raise InputError(where, "compression ratio is above the limit of "
                                                f"{limits.max_ratio:.0f}:1 (zip bomb?)")
                    chunks.append(chunk)
        except InputError:
            raise
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError,
                NotImplementedError, RuntimeError) as e:
            raise InputError(where, f"corrupt zip entry ({e})") from None
        if got != info.file_size:
            raise InputError(where, f"corrupt zip entry ({got} bytes, {info.file_size} declared)")
        budget["left"] -= got
        return b"".join(chunks)
    return read


# --------------------------------------------------------------------------- welds


def _read_welds(files: list[_File], *, default_id: str, container: str, per_weld_budget: bool,
                max_frames: int, max_side: int, image_max_side: int,
                limits: Limits) -> Iterator[Weld]:
    groups = _group(files)
    if not groups:
        zips = sum(1 for f in files if f.rel.lower().endswith(".zip") and not _is_junk(f.rel))
        raise InputError(container, "no weld found: expected a folder with <part_no>.avi, "
                                    "<part_no>.flac or .wav, <part_no>.csv or images/*.jpg"
                         + (f" ({zips} .zip file(s) here are not opened: load each zip itself)"
                            if zips else ""))
    plan = []
    for d, fs in groups.items():
        wid = _weld_id(d, fs, default_id)
        plan.append((wid, d, fs))
    plan.sort(key=lambda x: (_natural(x[0]), x[1]))
    for wid, d, fs in plan:
        # Choosing files needs no reading: resolve ambiguity for all welds first.
        _choose(d, fs, wid, container, limits)
    for wid, d, fs in plan:
        yield _read_one(d, fs, default_id=wid, forced_id=wid, container=container,
                        max_frames=max_frames, max_side=max_side,
                        image_max_side=image_max_side, limits=limits,
                        per_weld_budget=per_weld_budget)


def _weld_id(d: str, files: list, default: str) -> str:
    folder = PurePosixPath(d).name if d else default
    stems = [PurePosixPath(_rel(f)).stem for f in files
             if _kind(PurePosixPath(_rel(f)).name) in ("video", "audio", "sensor")]
    if folder and any(s.lower() == folder.lower() for s in stems):
        return folder
    if len(set(stems)) == 1:
        return stems[0]
    return folder


def _choose(d: str, files: list[_File], weld_id: str, container: str,
            limits: Limits) -> dict[str, list[_File] | _File | None]:
    where = _join(container, d)
    by_kind: dict[str, list[_File]] = {"video": [], "audio": [], "sensor": [], "image": [],
                                       "truth": []}
    image_dirs: set[str] = set()
    for f in files:
        kind = _kind(PurePosixPath(f.rel).name)
        if kind:
            by_kind[kind].append(f)
            if kind == "image" and PurePosixPath(f.rel).parent.name.lower() == "images":
                image_dirs.add(str(PurePosixPath(f.rel).parent))
    chosen: dict = {}
    for kind in ("video", "audio", "sensor", "truth"):
        chosen[kind] = _pick(kind, by_kind[kind], weld_id, where)
    images = by_kind["image"]
    if image_dirs:
        if len(image_dirs) > 1:
            raise InputError(where, "several images folders: " + _few(sorted(image_dirs)))
        images = [f for f in images if str(PurePosixPath(f.rel).parent) in image_dirs]
    images.sort(key=lambda f: _natural(PurePosixPath(f.rel).name))
    if len(images) > limits.max_images:
        raise InputError(where, f"{len(images)} photos, more than the limit of {limits.max_images}")
    chosen["image"] = images
    return chosen


def _pick(kind: str, cands: list[_File], weld_id: str, where: str) -> _File | None:
    if not cands:
        return None
    if len(cands) == 1:
        return cands[0]
    exact = [c for c in cands if PurePosixPath(c.rel).stem.lower() == weld_id.lower()]
    if kind == "audio" and len(exact) > 1:  # <id>.flac beside <id>.wav: the dataset's own format
        exact = [c for c in exact if c.rel.lower().endswith(".flac")] or exact
    if len(exact) == 1:
        return exact[0]
    label = {"video": "video", "audio": "audio", "sensor": "sensor CSV", "truth": "truth.json"}[kind]
    raise InputError(where, f"ambiguous {label}: several files ("
                            + _few(PurePosixPath(c.rel).name for c in cands)
                            + f") and not exactly one named {weld_id}.*")


def _read_one(d: str, files: list[_File], *, default_id: str, forced_id: str | None,
              container: str, max_frames: int, max_side: int, image_max_side: int,
              limits: Limits, per_weld_budget: bool = True) -> Weld:
    weld_id = forced_id or _weld_id(d, files, default_id)
    chosen = _choose(d, files, weld_id, container, limits)
    where = _join(container, d)
    picked: list[tuple[str, _File]] = []  # (digest name, file)
    for kind in ("video", "audio", "sensor", "truth"):
        f = chosen[kind]
        if f is not None:
            picked.append((PurePosixPath(f.rel).name, f))
    for f in chosen["image"]:
        picked.append(("images/" + PurePosixPath(f.rel).name, f))
    if not any(k != "truth" and chosen[k] for k in ("video", "audio", "sensor", "image")):
        raise InputError(where, "no modality found: expected a video, audio, sensor CSV or photos")

    blobs: dict[int, bytes] = {}
    total = 0
    for _, f in picked:
        data = f.read()
        total += len(data)
        if per_weld_budget and total > limits.max_total_bytes:
            raise InputError(where, f"weld files add up to more than {limits.max_total_bytes} bytes")
        blobs[id(f)] = data

    h = hashlib.sha256()
    for name, f in sorted(picked, key=lambda x: x[0]):
        data = blobs[id(f)]
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)

    weld = Weld(weld_id=weld_id, source=where, digest=h.hexdigest())
    if chosen["video"] is not None:
        f = chosen["video"]
        weld.video, weld.video_times, weld.video_fps = decode_video(
            blobs[id(f)], f.source, max_frames=max_frames, max_side=max_side, limits=limits)
    if chosen["audio"] is not None:
        f = chosen["audio"]
        weld.audio = decode_audio(blobs[id(f)], f.source, limits=limits)
        weld.sample_rate = AUDIO_RATE_HZ
    if chosen["sensor"] is not None:
        f = chosen["sensor"]
        weld.sensor = read_sensor_csv(blobs[id(f)], f.source, max_rows=limits.max_rows)
    for f in chosen["image"]:
        arr, size = decode_image(blobs[id(f)], f.source, max_side=image_max_side, limits=limits)
        weld.images.append(arr)
        weld.image_names.append(PurePosixPath(f.rel).name)
        weld.image_sizes.append(size)
    if chosen["truth"] is not None:
        f = chosen["truth"]
        weld.truth = read_truth(blobs[id(f)], f.source)
    return weld


def _join(container: str, d: str) -> str:
    return f"{container}/{d}" if d else container


def _natural(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def _few(names: Iterable[str], n: int = 5) -> str:
    names = list(names)
    s = ", ".join(names[:n])
    return s + (f", … ({len(names)} in all)" if len(names) > n else "")


# --------------------------------------------------------------------------- decoders


def decode_video(data: bytes, source: str, *, max_frames: int = 48, max_side: int = 160,
                 limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, np.ndarray, float]:
    """Video bytes → (frames (F,H,W,3) uint8 RGB, times (F,) s from the first frame, fps).

    At most `max_frames` frames, evenly spaced over the clip, each downscaled so its longer
    side is ≤ `max_side`. Only the kept frames are converted, so memory stays bounded.
    """
    import av

    if not data:
        raise InputError(source, "empty file")
    if max_frames < 1:
        raise ValueError("max_frames must be ≥ 1")
    try:
        # Pass 1: count frames from the packets (cheap: no decoding).
        with av.open(io.BytesIO(data), mode="r") as c:
            if not c.streams.video:
                raise InputError(source, "no video stream")
            st = c.streams.video[0]
            n = 0
            for pkt in c.demux(st):
                if pkt.size:
                    n += 1
                    if n > limits.max_video_frames:
                        raise InputError(source, f"more than {limits.max_video_frames} frames")
            declared = int(st.frames or 0)
        if n == 0:
            raise InputError(source, "no video frames")
        want = np.unique(np.linspace(0, n - 1, min(max_frames, n)).round().astype(np.int64))
        want_set = set(want.tolist())
        # Pass 2: decode, convert only the frames we keep.
        frames: list[np.ndarray] = []
        pts: list[float | None] = []
        first_time: float | None = None
        decoded = 0
        with av.open(io.BytesIO(data), mode="r") as c:
            st = c.streams.video[0]
            st.thread_type = "AUTO"
            rate = st.average_rate or st.guessed_rate or st.base_rate
            fps = float(rate) if rate else 0.0
            for frame in c.decode(st):
                if first_time is None:
                    first_time = frame.time
                if decoded in want_set:
                    fw, fh = frame.width, frame.height
                    if fw <= 0 or fh <= 0:
                        raise InputError(source, "video frames have no size")
                    scale = min(1.0, max_side / max(fw, fh))
                    tw, th = max(1, round(fw * scale)), max(1, round(fh * scale))
                    frames.append(frame.to_ndarray(format="rgb24", width=tw, height=th,
                                                   interpolation="AREA"))
                    pts.append(frame.time)
                decoded += 1
    except InputError:
        raise
    except (av.error.FFmpegError, ValueError, OSError, EOFError, IndexError, RuntimeError) as e:
        raise InputError(source, f"cannot decode video ({_short(e)})") from None
    if not frames:
        raise InputError(source, "no decodable video frames")
    if declared > 0 and decoded < 0.9 * declared - 1:
        raise InputError(source, f"truncated or corrupt video: {decoded} of {declared} frames decode")
    if not fps:
        fps = float(n) / max(1e-9, (pts[-1] or 0.0) - (first_time or 0.0)) if n > 1 else 0.0
    t0 = first_time or 0.0
    times = np.array([((p if p is not None else i / fps if fps else 0.0) - t0)
                      for i, p in zip(want[:len(pts)], pts)], dtype=np.float64)
    return np.stack(frames).astype(np.uint8, copy=False), times, float(fps)


def decode_audio(data: bytes, source: str, *, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """Audio bytes (FLAC/WAV, any rate, any channels) → mono float32 at 16 kHz in [-1, 1]."""
    import soundfile as sf

    if not data:
        raise InputError(source, "empty file")
    try:
        info = sf.info(io.BytesIO(data))
        if info.frames <= 0:
            raise InputError(source, "no audio samples")
        if not 1000 <= info.samplerate <= 768_000:
            raise InputError(source, f"implausible sample rate {info.samplerate} Hz")
        if info.frames / info.samplerate > limits.max_audio_s:
            raise InputError(source, f"audio is longer than {limits.max_audio_s:.0f} s")
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except InputError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as e:
        raise InputError(source, f"cannot decode audio ({_short(e)})") from None
    if x.shape[0] == 0:
        raise InputError(source, "no audio samples")
    mono = x.mean(axis=1, dtype=np.float64) if x.shape[1] > 1 else x[:, 0].astype(np.float64)
    mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)
    if sr != AUDIO_RATE_HZ:
        mono = resample_audio(mono, int(sr), AUDIO_RATE_HZ)
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def resample_audio(x: np.ndarray, sr_in: int, sr_out: int, half_width: int = 16,
                   beta: float = 8.6) -> np.ndarray:
    """Band-limited resampling (Kaiser-windowed sinc, evaluated at each output instant).

    The low-pass cutoff sits at 95% of the lower Nyquist frequency, so downsampling
    (44.1 kHz → 16 kHz) does not alias and upsampling does not image. Output length is
    round(len(x) * sr_out / sr_in). Runs in chunks to keep memory flat.
    """
    x = np.asarray(x, dtype=np.float64)
    if sr_in == sr_out or len(x) == 0:
        return x.astype(np.float32)
    n_out = max(1, int(round(len(x) * sr_out / sr_in)))
    step = sr_in / sr_out                       # input samples per output sample
    cutoff = 0.95 * min(1.0, sr_out / sr_in)    # in units of the input Nyquist
    reach = int(np.ceil(half_width / cutoff))
    offs = np.arange(-reach + 1, reach + 1)
    i0b = np.i0(beta)
    out = np.empty(n_out, dtype=np.float32)
    xp = np.concatenate([np.zeros(reach), x, np.zeros(reach + 1)])  # zero padding at the ends
    chunk = max(1, 1_000_000 // len(offs))
    for start in range(0, n_out, chunk):
        t = np.arange(start, min(n_out, start + chunk)) * step
        base = np.floor(t).astype(np.int64)
        d = (t - base)[:, None] - offs[None, :]           # distance from each tap, in samples
        u = np.clip(1.0 - (d / reach) ** 2, 0.0, None)
        w = cutoff * np.sinc(cutoff * d) * (np.i0(beta * np.sqrt(u)) / i0b)
        taps = xp[base[:, None] + offs[None, :] + reach]
        out[start:start + len(t)] = np.einsum("ij,ij->i", taps, w)
    return out


def decode_image(data: bytes, source: str, *, max_side: int = 400,
                 limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, tuple[int, int]]:
    """Photo bytes → ((H, W, 3) uint8 RGB with longer side ≤ max_side, (width, height) as stored).

    EXIF rotation is applied (a user expects the photo upright); the size returned is the
    upright size before downscaling, so boxes given in the file's pixels can be rescaled.
    """
    from PIL import Image, ImageOps

    if not data:
        raise InputError(source, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > limits.max_image_pixels:
                raise InputError(source, f"{img.width}×{img.height} pixels is more than the limit "
                                         f"of {limits.max_image_pixels}")
            if img.format not in ("JPEG", "PNG", "MPO"):
                raise InputError(source, f"{img.format} image; expected JPEG or PNG")
            img = ImageOps.exif_transpose(img)
            size = (img.width, img.height)
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
            img = img.convert("RGB")
            arr = np.asarray(img, dtype=np.uint8).copy()
    except InputError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, EOFError) as e:
        raise InputError(source, f"cannot decode image ({_short(e)})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise InputError(source, "image has no pixels")
    return arr, size


def read_sensor_csv(data: bytes, source: str, *, max_rows: int = 200_000) -> pd.DataFrame:
    """Sensor CSV bytes → DataFrame with `t` (s from the first row) + the six channels as float.

    The channels are the six columns between `Part No` and `Remarks`: by name when the
    header has them, else by position. `t` comes from Date+Time when every row parses and
    times strictly increase, else from the row index at 8.6 Hz.
    """
    if not data or not data.strip():
        raise InputError(source, "empty file")
    text = _decode_text(data)
    df, line_of = _parse_csv(text, source, max_rows)
    cols = _channel_columns(df, source)
    out = {}
    for canon, col in zip(SENSOR_CHANNELS, cols):
        raw = df[col]
        text_vals = raw.astype("string").str.strip()
        vals = pd.to_numeric(text_vals, errors="coerce").astype("float64").to_numpy()
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            cell = text_vals.iloc[i]
            what = "is empty" if cell is pd.NA or cell == "" else f"{str(cell)[:40]!r} is not a number"
            raise InputError(source, f"column {col!r}, row {i + 1} (line {line_of[i]}): {what}"
                                     + (f" ({int(bad.sum())} bad cells in this column)"
                                        if bad.sum() > 1 else ""))
        out[canon] = vals
    n = len(df)
    t = _times(df, n)
    return pd.DataFrame({"t": t, **out})


def _decode_text(data: bytes) -> str:
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1", errors="replace")  # pragma: no cover (latin-1 always decodes)


def _parse_csv(text: str, source: str, max_rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Cells as text; blank rows dropped; text with commas in the last column (Remarks) kept."""
    if "\x00" in text:
        raise InputError(source, "binary data, not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(source, "empty file") from None
    except csv.Error as e:
        raise InputError(source, f"not a readable CSV ({e})") from None
    header = [h.strip() for h in header]
    ncol = len(header)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue  # blank lines and rows of empty cells (spreadsheet exports)
            if len(row) > ncol:
                if header[-1].lower() == "remarks":  # unquoted commas in free text
                    row = row[:ncol - 1] + [",".join(row[ncol - 1:])]
                else:
                    raise InputError(source, f"line {reader.line_num}: {len(row)} cells, "
                                             f"the header has {ncol}")
            elif len(row) < ncol:
                row = row + [""] * (ncol - len(row))
            rows.append(row)
            lines.append(reader.line_num)
            if len(rows) > max_rows:
                raise InputError(source, f"more than {max_rows} rows")
    except csv.Error as e:
        raise InputError(source, f"line {reader.line_num}: not a readable CSV ({e})") from None
    if not rows:
        raise InputError(source, "no data rows")
    if len(set(header)) != len(header):
        dup = [h for h, k in Counter(header).items() if k > 1]
        raise InputError(source, "duplicate column(s) " + ", ".join(repr(h) for h in dup))
    return pd.DataFrame(rows, columns=header, dtype="string"), np.asarray(lines)


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def _channel_columns(df: pd.DataFrame, source: str) -> list[str]:
    by_norm = {_norm(c): c for c in df.columns}
    named = [by_norm.get(_norm(c)) for c in SENSOR_CHANNELS]
    if all(named):
        return named  # type: ignore[return-value]
    cols = list(df.columns)
    norms = [_norm(c) for c in cols]
    if "part no" in norms and "remarks" in norms:
        a, b = norms.index("part no"), norms.index("remarks")
        between = cols[a + 1:b]
        if len(between) == len(SENSOR_CHANNELS):
            return between
    missing = [c for c, n in zip(SENSOR_CHANNELS, named) if n is None]
    raise InputError(source, "missing column(s) " + ", ".join(repr(c) for c in missing)
                     + "; expected header " + ",".join(CSV_COLUMNS))


def _times(df: pd.DataFrame, n: int) -> np.ndarray:
    fallback = np.arange(n, dtype=np.float64) / SENSOR_RATE_HZ
    by_norm = {_norm(c): c for c in df.columns}
    date, time = by_norm.get("date"), by_norm.get("time")
    if time is None or n < 2:
        return fallback
    text = df[time].astype("string").str.strip()
    if date is not None:
        text = df[date].astype("string").str.strip() + " " + text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ts = pd.to_datetime(text, errors="coerce")
        except (ValueError, TypeError, OverflowError):
            return fallback
    if ts.isna().any():
        return fallback
    t = (ts - ts.iloc[0]).dt.total_seconds().to_numpy(dtype=np.float64)
    d = np.diff(t)
    # Coarse clocks (whole seconds at 8.6 Hz) give ties: the row index is then more honest.
    if (d <= 0).any() or t[-1] > 24 * 3600:
        return fallback
    return t


def read_truth(data: bytes, source: str) -> dict:
    try:
        obj = json.loads(_decode_text(data))
    except (json.JSONDecodeError, ValueError) as e:
        raise InputError(source, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise InputError(source, "expected a JSON object")
    return obj


def _short(e: BaseException) -> str:
    """The library's reason, without its noise (errno numbers, BytesIO reprs)."""
    s = getattr(e, "strerror", None) or getattr(e, "error_string", None) or str(e)
    s = re.sub(r"^Error opening <[^>]*>: ", "", str(s))
    s = " ".join(s.split()) or type(e).__name__
    return s[:200]


__all__ = [
    "Limits", "DEFAULT_LIMITS", "load_weld", "load_welds", "iter_welds", "load_weld_from_files",
    "load_welds_from_zip_bytes", "decode_video", "decode_audio", "decode_image",
    "read_sensor_csv", "read_truth", "resample_audio",
]
