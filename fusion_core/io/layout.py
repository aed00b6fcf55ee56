"""The weld-folder rules, in one place: which files make a weld, which weld they belong to,
which file of a kind is used, and the weld digest. Pure functions over relative posix paths
(no file is opened here), shared by the readers (`containers`), batch planning and the app.

Rules a user can rely on:

- A folder is a weld when it holds a video (.avi/.mp4/.mov/.mkv), an audio (.flac/.wav) or
  a .csv file, or an `images/` subfolder (any case) with photos (.jpg/.jpeg/.png, any
  case). Photos directly in a weld folder count when it has no `images/` folder. A folder
  above other welds that holds only a CSV (say labels.csv) is a container, not a weld.
- Within a weld, when there are several files of one kind, the one whose stem is the part
  number wins (for audio, `.flac` beside `.wav`); if none or several do, that is an error
  (ambiguous). Other files are ignored. Photos are taken in natural name order; a weld with
  more than `Limits.max_images` photos is refused, and only the first
  `Limits.max_photos_decoded` are used (read, hashed, decoded): the rest are skipped, and
  counted (`plan_weld`, `Weld.images_skipped`).
- The weld id is the folder name when a file is named after it; otherwise the stem the
  video/audio/csv files share; otherwise the folder (or zip / upload) name.
- Junk is skipped: hidden files and folders, `__MACOSX/`, Thumbs.db, desktop.ini.
- The weld digest is sha256 over the chosen files' (digest name, length, bytes), names
  sorted; a digest name is the file name, `images/<name>` for photos. Skipped photos are
  not part of it; a chosen file whose bytes could not be read is, by name and problem.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..errors import InputError
from .limits import Limits

VIDEO_EXTS = (".avi", ".mp4", ".mov", ".mkv")


AUDIO_EXTS = (".flac", ".wav")


CSV_EXTS = (".csv",)


IMAGE_EXTS = (".jpg", ".jpeg", ".png")


TRUTH_NAME = "truth.json"


_JUNK_NAMES = {"thumbs.db", "desktop.ini"}


def kind_of(name: str) -> str | None:
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


def is_junk(rel: str) -> bool:
    parts = rel.split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1].lower() in _JUNK_NAMES


def _rel(f) -> str:
    return f if isinstance(f, str) else f.rel


def group(files: Iterable) -> dict[str, list]:
    """Weld folder (posix, '' for the root) -> its candidate files (`_File`s or plain
    relative paths: the batch engine lists welds without reading them)."""
    by_dir: dict[str, list] = {}
    is_weld: set[str] = set()
    strong: set[str] = set()  # has a video, an audio or an images/ folder
    for f in files:
        if is_junk(_rel(f)):
            continue
        kind = kind_of(PurePosixPath(_rel(f)).name)
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


def folder_rels(root: Path, limits: Limits) -> list[str]:
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


def weld_id_of(d: str, files: list, default: str) -> str:
    folder = PurePosixPath(d).name if d else default
    stems = [PurePosixPath(_rel(f)).stem for f in files
             if kind_of(PurePosixPath(_rel(f)).name) in ("video", "audio", "sensor")]
    if folder and any(s.lower() == folder.lower() for s in stems):
        return folder
    if len(set(stems)) == 1:
        return stems[0]
    return folder


def natural(s: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def few(names: Iterable[str], n: int = 5) -> str:
    names = list(names)
    s = ", ".join(names[:n])
    return s + (f", … ({len(names)} in all)" if len(names) > n else "")


KIND_LABELS = {"video": "video", "audio": "audio", "sensor": "sensor CSV", "truth": "truth.json"}


def choose(rels: list[str], weld_id: str, limits: Limits) -> tuple[list[tuple[str, str]], str | None]:
    """The files a reader uses for one weld, as (digest name, rel) in reading order (video,
    audio, sensor, truth, then photos), or ([], problem) when the weld cannot be read as laid out."""
    chosen, _, problem = plan_weld(rels, weld_id, limits)
    return chosen, problem


def plan_weld(rels: list[str], weld_id: str,
              limits: Limits) -> tuple[list[tuple[str, str]], int, str | None]:
    """`choose`, and how many photos beyond `limits.max_photos_decoded` it skipped:
    (chosen, photos skipped, problem)."""
    by_kind: dict[str, list[str]] = {"video": [], "audio": [], "sensor": [], "image": [], "truth": []}
    image_dirs: set[str] = set()
    for r in rels:
        p = PurePosixPath(r)
        kind = kind_of(p.name)
        if kind is None:
            continue
        by_kind[kind].append(r)
        if kind == "image" and p.parent.name.lower() == "images":
            image_dirs.add(str(p.parent))
    chosen: list[tuple[str, str]] = []
    for kind in ("video", "audio", "sensor", "truth"):
        pick, problem = _pick_one(kind, by_kind[kind], weld_id)
        if problem:
            return [], 0, problem
        chosen += [(PurePosixPath(r).name, r) for r in pick]
    images = by_kind["image"]
    if image_dirs:
        if len(image_dirs) > 1:
            return [], 0, "several images folders: " + few(sorted(image_dirs))
        images = [r for r in images if str(PurePosixPath(r).parent) in image_dirs]
    images.sort(key=lambda r: natural(PurePosixPath(r).name))
    if len(images) > limits.max_images:
        return [], 0, f"{len(images)} photos, more than the limit of {limits.max_images}"
    used = images[:max(0, limits.max_photos_decoded)]
    chosen += [("images/" + PurePosixPath(r).name, r) for r in used]
    if not any(kind_of(PurePosixPath(r).name) != "truth" for _, r in chosen):
        return [], 0, "no modality found: expected a video, audio, sensor CSV or photos"
    return chosen, len(images) - len(used), None


def _pick_one(kind: str, cands: list[str], weld_id: str) -> tuple[list[str], str | None]:
    """The one file of a kind the weld uses ([] when it has none), or a problem when ambiguous."""
    if len(cands) <= 1:
        return cands, None
    pick = [c for c in cands if PurePosixPath(c).stem.lower() == weld_id.lower()]
    if kind == "audio" and len(pick) > 1:  # <id>.flac beside <id>.wav: the dataset's own format
        pick = [c for c in pick if c.lower().endswith(".flac")] or pick
    if len(pick) != 1:
        return [], (f"ambiguous {KIND_LABELS[kind]}: several files ({few(PurePosixPath(c).name for c in cands)}) "
                    f"and not exactly one named {weld_id}.*")
    return pick, None


def weld_digest(blobs: dict[str, bytes], unread: dict[str, str] | None = None) -> str:
    """sha256 over the chosen files, keyed by digest name (name, length, bytes; names sorted).

    `unread`: digest name -> problem, for chosen files whose bytes could not be read (over
    their kind's byte limit, not a regular file): they count by name and problem, so such a
    weld differs from the same weld without that file (caches key on the digest)."""
    h = hashlib.sha256()
    unread = unread or {}
    for name in sorted({*blobs, *unread}):
        if name in blobs:
            data = blobs[name]
            h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
            h.update(data)
        else:
            why = unread[name].encode("utf-8", "backslashreplace")
            h.update(name.encode() + b"\0unread\0" + str(len(why)).encode() + b"\0" + why)
    return h.hexdigest()


def is_weld_folder(path: Path) -> bool:
    """Does this folder itself hold a weld (by the rules above, files directly in it or in images/)?"""
    try:
        rels = [c.name for c in Path(path).iterdir() if c.is_file()]
        for sub in Path(path).iterdir():
            if sub.is_dir() and sub.name.lower() == "images":
                rels += [f"{sub.name}/{c.name}" for c in sub.iterdir() if c.is_file()]
    except OSError:
        return False
    return "" in group(rels)
