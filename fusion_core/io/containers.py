"""Read welds in the dataset's layout into `Weld`s: folders, folders of folders, zips, uploads.

A weld is a folder `<part_no>/` holding `<part_no>.avi`, `<part_no>.flac` (or `.wav`),
`<part_no>.csv`, `images/*.jpg` and optionally `truth.json` (see DESIGN.md). Every reader
goes through the same two steps:

1. *find*: list the files of a container (folder, zip, upload) without reading them, drop
   junk (`.DS_Store`, `__MACOSX/`, hidden files), and group what is left into welds;
2. *read*: per weld, read the chosen files' bytes (bounded) and decode them from memory
   (PyAV, soundfile, Pillow, pandas all read from `BytesIO`), so nothing is extracted to
   disk and a zip is never unpacked.

The weld-folder rules (what makes a weld, which file is used, the digest) are `layout`'s;
the decoders are `decode`'s. Here:

- Zips are read in memory. Refused: entries with absolute paths, `..`, or link bits; more
  than `Limits.max_entries` entries; more than `Limits.max_total_bytes` uncompressed (declared
  or actually read); an entry that expands more than `Limits.max_ratio` times; encrypted
  entries; duplicate names; and zips inside the zip (unzip them first) — each as an
  `InputError` naming the zip entry and the problem.
- One weld's files are read within the budget (`Limits.max_weld_bytes` in all, and per kind
  `Limits.file_bytes`), each checked by its size before it is read, and by the bytes read.
- Only the first `Limits.max_photos_decoded` photos are read (`layout.plan_weld`); the
  others are counted in `Weld.images_skipped`.
- A weld whose file for one modality cannot be read is read without it: that modality is
  absent and `Weld.unreadable` says why ("<file>: <problem>", the `InputError` message it
  would have been). This covers whatever `decode` refuses in one file (corrupt, truncated,
  wrong content, over that file's own budget: frames, samples, rows, pixels, duration), a
  sensor CSV or truth.json over its kind's byte limit, a file that is not a regular file
  or cannot be read, and a corrupt zip entry (`UnreadableFile`). A bad photo is skipped and
  the others are read (all bad: no image modality); a bad truth.json leaves the weld without
  truth. Still refused, as an `InputError`: the container (a bad or hostile zip, a folder
  too deep or too big), the layout (ambiguous files, too many photos), the weld's budgets
  (its bytes in all, its photos' pixels in all, its duration), and a weld none of whose
  modalities could be read (the message lists each file's problem; a weld of one file gets
  that file's own error). A call either returns every weld it was asked for or raises.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Mapping

from ..errors import InputError
from ..vocab import MODALITIES
from .decode import (decode_audio, decode_image, decode_video, image_decode_pixels, read_sensor_csv,
                     read_truth)
from .layout import few, folder_rels, group, is_junk, kind_of, natural, plan_weld, weld_digest, weld_id_of
from .limits import DEFAULT_LIMITS, Limits, seconds
from .weld import Weld

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnreadableFile(InputError):
    """A problem confined to one file, met while reading its bytes (not a regular file, an
    OS error, a corrupt zip entry, more bytes than the reader may take): the weld's other
    files can still be read. `size`: the file's size, when the problem is that it is too big."""

    def __init__(self, source, problem: str, size: int | None = None):
        super().__init__(source, problem)
        self.size = size


@dataclass(frozen=True)
class _File:
    """One file of a container, not read yet."""

    rel: str                            # posix path relative to the container root
    source: str                         # what error messages call it
    read: Callable[[int, str], bytes]   # read(most bytes, what that bound is): refuses past it


# --------------------------------------------------------------------------- public API


def load_weld(path: str | os.PathLike, *, max_frames: int = 48, max_side: int = 160,
              image_max_side: int = 400, limits: Limits = DEFAULT_LIMITS) -> Weld:
    """One weld from a weld folder (or a zip holding exactly one weld)."""
    welds = load_welds(path, max_frames=max_frames, max_side=max_side,
                       image_max_side=image_max_side, limits=limits)
    if len(welds) != 1:
        raise InputError(path, f"holds {len(welds)} welds ({few(w.weld_id for w in welds)}); "
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
        yield from _read_welds(files, default_id=p.resolve().name, container=str(p), **opts)
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
        kind = kind_of(base)
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
        entries.append(_File(rel, base, _bytes_reader(blob, base)))
    total = sum(len(d) for _, d in items)
    if total > limits.max_total_bytes:
        raise InputError("upload", f"{total} bytes in all, more than the "
                                   f"{limits.max_total_bytes}-byte limit")
    groups = group(entries)
    if not groups:
        raise InputError("upload", "no weld files among " + few(n for n, _ in items))
    return _read_one("", groups[""], default_id=weld_id or "upload", forced_id=weld_id,
                     container="upload", max_frames=max_frames, max_side=max_side,
                     image_max_side=image_max_side, limits=limits)


# --------------------------------------------------------------------------- finding files


def _folder_files(root: Path, limits: Limits) -> list[_File]:
    return [_File(rel, str(root / rel), _disk_reader(root / rel)) for rel in folder_rels(root, limits)]


def _too_big(source, size: int, what: str) -> UnreadableFile:
    return UnreadableFile(source, f"{size:,} bytes, more than {what}", size)


def read_disk_file(full: Path, most: int, what: str) -> bytes:
    """A regular file's bytes, refused by its size before reading when above `most` (`what`
    names that limit in the message); a FIFO would block and /dev/zero never end, so only
    regular files are read."""
    try:
        st = full.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile(full, "not a regular file")
        if st.st_size > most:
            raise _too_big(full, st.st_size, what)
        with open(full, "rb") as fh:
            data = fh.read(most + 1)     # a file that grew since: at most one byte past
    except OSError as e:
        raise UnreadableFile(full, f"cannot read: {e.strerror or e}") from None
    if len(data) > most:
        raise _too_big(full, len(data), what)
    return data


def _disk_reader(full: Path) -> Callable[[int, str], bytes]:
    return lambda most, what: read_disk_file(full, most, what)


def _bytes_reader(blob: bytes, source: str) -> Callable[[int, str], bytes]:
    def read(most: int, what: str) -> bytes:
        if len(blob) > most:
            raise _too_big(source, len(blob), what)
        return blob
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
                                 max_frames=max_frames, max_side=max_side,
                                 image_max_side=image_max_side, limits=limits))
    yield from welds




def zip_entry_rel(info: zipfile.ZipInfo, zip_name: str) -> str | None:
    """The entry's path relative to the zip root, None for folders; InputError for an entry that
    could escape its folder or mislead (NUL, absolute path, `..`, symbolic link)."""
    where = f"{zip_name}/{info.filename}"
    name = info.filename.replace("\\", "/")
    if "\x00" in name:
        raise InputError(where, "entry name contains a NUL character")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or _DRIVE.match(name):
        raise InputError(where, "entry has an absolute path (it would escape its folder)")
    if ".." in parts:
        raise InputError(where, "entry path contains '..' (it would escape its folder)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InputError(where, "entry is a symbolic link; links are not accepted")
    if info.is_dir() or not parts:
        return None
    return "/".join(parts)


def zip_members(zf: zipfile.ZipFile, zip_name: str, limits: Limits) -> dict[str, zipfile.ZipInfo]:
    """rel path -> entry of every file in a zip, junk included; refused up front: too many
    entries, entries that could escape their folder (`zip_entry_rel`), duplicate names."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise InputError(zip_name, f"{len(infos)} entries, more than the limit of {limits.max_entries}")
    out: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        rel = zip_entry_rel(info, zip_name)
        if rel is None:
            continue
        if rel in out:
            raise InputError(f"{zip_name}/{info.filename}", "duplicate entry name in the zip")
        out[rel] = info
    return out


def check_zip_entry(info: zipfile.ZipInfo, where: str, limits: Limits) -> None:
    """Refuse an entry before inflating it: encrypted, or declaring a zip-bomb ratio."""
    if info.flag_bits & 0x1:
        raise InputError(where, "entry is encrypted")
    if info.file_size > 1024 ** 2 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        raise InputError(where, f"compression ratio {ratio:.0f}:1 is above the limit of "
                                f"{limits.max_ratio:.0f}:1 (zip bomb?)")


def _zip_files(zf: zipfile.ZipFile, zip_name: str, limits: Limits) -> list[_File]:
    declared = 0
    files: list[_File] = []
    budget = {"left": limits.max_total_bytes}
    for rel, info in zip_members(zf, zip_name, limits).items():
        where = f"{zip_name}/{info.filename}"
        if is_junk(rel):
            continue
        if rel.lower().endswith(".zip"):
            raise InputError(where, "nested zip archive; unzip it first or upload it separately")
        check_zip_entry(info, where, limits)
        declared += info.file_size
        if declared > limits.max_total_bytes:
            raise InputError(zip_name, f"uncompressed size is more than the limit of "
                                       f"{limits.max_total_bytes} bytes")
        files.append(_File(rel, where, _zip_reader(zf, info, where, budget, limits)))
    return files


def _zip_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, budget: dict,
                limits: Limits) -> Callable[[int, str], bytes]:
    def read(most: int, what: str) -> bytes:
        if info.file_size > most:
            raise _too_big(where, info.file_size, what)
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
            raise UnreadableFile(where, f"corrupt zip entry ({e})") from None
        if got != info.file_size:
            raise UnreadableFile(where, f"corrupt zip entry ({got} bytes, {info.file_size} declared)")
        budget["left"] -= got
        return b"".join(chunks)
    return read


# --------------------------------------------------------------------------- welds


def _read_welds(files: list[_File], *, default_id: str, container: str, max_frames: int, max_side: int,
                image_max_side: int, limits: Limits) -> Iterator[Weld]:
    groups = group(files)
    if not groups:
        zips = sum(1 for f in files if f.rel.lower().endswith(".zip") and not is_junk(f.rel))
        raise InputError(container, "no weld found: expected a folder with <part_no>.avi, "
                                    "<part_no>.flac or .wav, <part_no>.csv or images/*.jpg"
                         + (f" ({zips} .zip file(s) here are not opened: load each zip itself)"
                            if zips else ""))
    plan = []
    for d, fs in groups.items():
        wid = weld_id_of(d, fs, default_id)
        plan.append((wid, d, fs))
    plan.sort(key=lambda x: (natural(x[0]), x[1]))
    for wid, d, fs in plan:
        # Choosing files needs no reading: resolve ambiguity for all welds first.
        _chosen(d, fs, wid, container, limits)
    for wid, d, fs in plan:
        yield _read_one(d, fs, default_id=wid, forced_id=wid, container=container,
                        max_frames=max_frames, max_side=max_side,
                        image_max_side=image_max_side, limits=limits)


def _chosen(d: str, files: list[_File], weld_id: str, container: str,
            limits: Limits) -> tuple[list[tuple[str, _File]], int]:
    """((digest name, file) of what `layout.plan_weld` picks, photos skipped); InputError naming
    the weld if it can't."""
    by_rel = {f.rel: f for f in files}
    picked, skipped, problem = plan_weld(list(by_rel), weld_id, limits)
    if problem:
        raise InputError(_join(container, d), problem)
    return [(name, by_rel[rel]) for name, rel in picked], skipped


_KIND_WORDS = {"sensor": "a sensor CSV", "truth": "truth.json"}


def read_limit_words(kind: str | None, own: int, left: int, limits: Limits) -> tuple[str, str]:
    """(the words for a file kind's own byte limit, the words for the limit a read of it is
    held to now: its own, or what is left of the weld's). Both go into messages, and the
    first into the weld digest of a file left unread, so every reader must use these."""
    own_words = f"the limit of {own:,} for {_KIND_WORDS.get(kind, 'one file')}"
    what = own_words if own < left else \
        f"what is left of the {limits.max_weld_bytes:,} bytes one weld's files may take"
    return own_words, what


def _kind(name: str) -> str | None:
    return kind_of(PurePosixPath(name).name)


def _read_blobs(picked: list[tuple[str, _File]],
                limits: Limits) -> tuple[dict[str, bytes], dict[str, InputError]]:
    """(the chosen files' bytes, why the others could not be read), both by digest name. Each
    file is refused by its size before it is read when it would pass its kind's limit or what
    is left of the weld's. A file over its kind's own limit (a sensor CSV, truth.json) or with
    a problem of its own (`UnreadableFile`) is left unread; over the weld's budget, the weld
    is refused."""
    blobs: dict[str, bytes] = {}
    unread: dict[str, InputError] = {}
    left = limits.max_weld_bytes
    for name, f in picked:
        kind = _kind(name)
        own = limits.file_bytes(kind)
        own_words, what = read_limit_words(kind, own, left, limits)
        try:
            data = f.read(min(own, left), what)
        except UnreadableFile as e:
            if e.size is None:
                unread[name] = e
                continue
            if e.size > own and own < limits.max_weld_bytes:   # its own limit, not the weld's
                unread[name] = InputError(e.source, f"{e.size:,} bytes, more than {own_words}")
                continue
            raise
        left -= len(data)
        blobs[name] = data
    return blobs, unread


def decode_weld(weld_id: str, where: str, files: list[tuple[str, str, bytes]], *, max_frames: int = 48,
                max_side: int = 160, image_max_side: int = 400, limits: Limits = DEFAULT_LIMITS,
                images_skipped: int = 0, unread: Mapping[str, InputError] | None = None) -> Weld:
    """A `Weld` from its chosen files' bytes: (digest name, source for messages, bytes) each,
    in `layout.choose` order. `unread`: digest name -> why, for chosen files whose bytes could
    not be read. The digest is `layout.weld_digest` of the same bytes (and `unread`).

    A file that does not decode leaves its modality absent, with its reason in
    `Weld.unreadable` (a bad photo: that photo is skipped); a weld none of whose modalities
    could be read is refused, naming each file's problem (one file: its own error). Photos beyond
    `limits.max_photos_decoded` are not decoded; they add to `images_skipped` (those the
    chooser already left out). The photos' decoding cost is checked against
    `limits.max_photo_pixels_total` from their headers before the first is decoded, and the
    weld's duration against `limits.max_duration_s` once all are: over either, the weld is refused.
    """
    unread = dict(unread or {})
    weld = Weld(weld_id=weld_id, source=where, digest=weld_digest({n: b for n, _, b in files},
                                                                  {n: e.problem for n, e in unread.items()}))
    failed: dict[str, list[InputError]] = {}
    for name, err in unread.items():
        failed.setdefault(_kind(name) or "", []).append(err)
    photos = [f for f in files if _kind(f[0]) == "image"]
    keep = max(0, limits.max_photos_decoded)
    weld.images_skipped = images_skipped + max(0, len(photos) - keep)
    photos = _photos_within_budget(photos[:keep], image_max_side, limits, failed)
    for name, source, data in [f for f in files if _kind(f[0]) != "image"] + photos:
        kind = _kind(name)
        try:
            _decode_into(weld, kind, name, source, data, max_frames=max_frames, max_side=max_side,
                         image_max_side=image_max_side, limits=limits)
        except InputError as e:
            failed.setdefault(kind or "", []).append(e)
    weld.unreadable = {k: "; ".join(str(e) for e in failed[k]) for k in (*MODALITIES, "truth") if k in failed}
    if not weld.present and weld.unreadable:
        errors = [e for errs in failed.values() for e in errs]
        if len(errors) == 1:     # a weld of one file: that file's own error, as it always was
            raise errors[0]
        raise InputError(where, "no modality could be read: " + "; ".join(weld.unreadable.values()))
    if weld.duration > limits.max_duration_s + 1e-3:   # each reader checked its own; rounding aside
        raise InputError(where, f"covers {seconds(weld.duration)}, more than the limit of {seconds(limits.max_duration_s)}")
    return weld


def _decode_into(weld: Weld, kind: str | None, name: str, source: str, data: bytes, *, max_frames: int,
                 max_side: int, image_max_side: int, limits: Limits) -> None:
    if kind == "video":
        weld.video, weld.video_times, weld.video_fps = decode_video(
            data, source, max_frames=max_frames, max_side=max_side, limits=limits)
    elif kind == "audio":
        weld.audio = decode_audio(data, source, limits=limits)
    elif kind == "sensor":
        weld.sensor = read_sensor_csv(data, source, limits=limits)
    elif kind == "truth":
        weld.truth = read_truth(data, source, limits=limits)
    elif kind == "image":
        arr, size = decode_image(data, source, max_side=image_max_side, limits=limits)
        weld.images.append(arr)
        weld.image_names.append(PurePosixPath(name).name)
        weld.image_sizes.append(size)


def _photos_within_budget(photos: list[tuple[str, str, bytes]], max_side: int, limits: Limits,
                          failed: dict[str, list[InputError]]) -> list[tuple[str, str, bytes]]:
    """The photos whose headers open (the others go to `failed["image"]`); refused, before any
    is decoded, when their decoding would take more pixels in all than the budget (from their
    headers; a big JPEG decodes at reduced scale)."""
    total = 0
    ok = []
    for name, source, data in photos:
        try:
            total += image_decode_pixels(data, source, max_side=max_side, limits=limits)
        except InputError as e:
            failed.setdefault("image", []).append(e)
            continue
        ok.append((name, source, data))
        if total > limits.max_photo_pixels_total:
            raise InputError(source, f"the weld's photos up to this one take {total:,} pixels to decode, "
                                     f"more than the limit of {limits.max_photo_pixels_total:,}")
    return ok


def _read_one(d: str, files: list[_File], *, default_id: str, forced_id: str | None,
              container: str, max_frames: int, max_side: int, image_max_side: int,
              limits: Limits) -> Weld:
    weld_id = forced_id or weld_id_of(d, files, default_id)
    picked, skipped = _chosen(d, files, weld_id, container, limits)
    where = _join(container, d)
    blobs, unread = _read_blobs(picked, limits)
    return decode_weld(weld_id, where, [(name, f.source, blobs[name]) for name, f in picked if name in blobs],
                       max_frames=max_frames, max_side=max_side, image_max_side=image_max_side,
                       limits=limits, images_skipped=skipped, unread=unread)


def _join(container: str, d: str) -> str:
    return f"{container}/{d}" if d else container
