"""The server's shared caches, bounded in bytes, and each session's private upload folder.

Streamlit's `st.cache_*` bound a cache by its number of entries only, and one entry may be
a weld of 30 MB or one of 3 GB. The caches here (`WELDS`, `EXPLANATIONS`, `UPLOADS`,
`MODELS`) measure what they keep (`nbytes`: numpy and torch buffers, DataFrames, bytes,
recursively through dataclasses, dicts and lists) and evict the least recently used entries
until the total is within the cache's share of the budget:

    WELD_DASHBOARD_CACHE_MB   all four caches together (default 2048 MB):
                              welds 35 %, explanations 25 %, uploads 15 %, models 25 %

An entry bigger than its cache's share is returned but not kept. A cache is shared by all
sessions of the server (the same weld opened by two engineers is decoded once); a value
returned from it must not be modified. Two sessions asking for the same missing entry at
once compute it once (a lock per key).

Uploads reach the disk only inside one folder per session (`session_dir`), under the
system's temporary folder: a file is written there only for a reader that needs a path,
and removed as soon as it has been read; the folder goes when its session ends (or the
server stops), and is emptied when it would grow past the upload limit.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

CACHE_ENV = "WELD_DASHBOARD_CACHE_MB"
DEFAULT_CACHE_MB = 2048.0


def budget_bytes() -> int:
    """All caches together, in bytes: $WELD_DASHBOARD_CACHE_MB (default 2048)."""
    try:
        mb = float(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_MB)
    except ValueError:
        mb = DEFAULT_CACHE_MB
    return int(max(mb, 0.0) * 1024 * 1024)


# --------------------------------------------------------------------------- measuring

def _leaf_bytes(obj) -> int | None:
    """Bytes of an object that holds a buffer itself; None for a container to walk."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return len(obj)
    if isinstance(obj, str):
        return len(obj)
    if isinstance(obj, (pd.DataFrame, pd.Series, pd.Index)):
        usage = obj.memory_usage(deep=True, index=True) if not isinstance(obj, pd.Index) else obj.memory_usage(deep=True)
        return int(np.sum(usage))
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):      # a torch tensor
        try:
            return int(obj.element_size() * obj.nelement())
        except (TypeError, RuntimeError):
            return 0
    if isinstance(obj, (int, float, bool, complex, type(None), Path)):
        return sys.getsizeof(obj)
    return None


def _children(obj) -> list:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [getattr(obj, f.name, None) for f in dataclasses.fields(obj)] + list(getattr(obj, "__dict__", {}).values())
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and not callable(obj):
        return list(vars(obj).values())
    if hasattr(obj, "_parameters") or hasattr(obj, "state_dict"):          # a torch module
        return list(vars(obj).values())
    return []


def nbytes(obj, limit: int = 200_000) -> int:
    """Bytes held by `obj`: buffers counted once each however often they are referenced;
    at most `limit` objects are visited (the rest of a huge list is estimated)."""
    seen: set[int] = set()
    total, stack, visited = 0, [obj], 0
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        visited += 1
        leaf = _leaf_bytes(o)
        if leaf is not None:
            total += leaf
        else:
            total += 64
            stack.extend(_children(o))
        if visited >= limit:
            total += 64 * len(stack)
            break
    return total


# --------------------------------------------------------------------------- the caches

class ByteCache:
    """A least-recently-used cache bounded by the bytes of what it keeps."""

    def __init__(self, name: str, share: float, max_entries: int = 256):
        self.name, self.share, self.max_entries = name, share, max_entries
        self._items: OrderedDict[Hashable, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[Hashable, threading.Lock] = {}
        self.total = 0

    def budget(self) -> int:
        return int(budget_bytes() * self.share)

    def _hit(self, key: Hashable):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return True, self._items[key][0]
            return False, self._making.setdefault(key, threading.Lock())

    def get(self, key: Hashable, make: Callable[[], object]):
        """The cached value of `key`, or make() kept (when it fits). An exception is not kept."""
        found, got = self._hit(key)
        if found:
            return got
        with got:                               # one maker per key; the others wait for it
            found, value = self._hit(key)
            if found:
                return value
            try:
                value = make()
                self.put(key, value)
            finally:
                with self._lock:
                    self._making.pop(key, None)
            return value

    def put(self, key: Hashable, value) -> None:
        size, budget = nbytes(value), self.budget()
        with self._lock:
            if key in self._items:
                self.total -= self._items.pop(key)[1]
            if size > budget:
                return
            self._items[key] = (value, size)
            self.total += size
            while self._items and (self.total > budget or len(self._items) > self.max_entries):
                self.total -= self._items.popitem(last=False)[1][1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.total = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items


WELDS = ByteCache("welds", 0.35)
EXPLANATIONS = ByteCache("explanations", 0.25)
UPLOADS = ByteCache("uploads", 0.15)
MODELS = ByteCache("models", 0.25, max_entries=8)
ALL = (WELDS, EXPLANATIONS, UPLOADS, MODELS)


def clear_all() -> None:
    for c in ALL:
        c.clear()


def usage() -> dict[str, tuple[int, int, int]]:
    """name → (entries, bytes kept, budget in bytes)."""
    return {c.name: (len(c), c.total, c.budget()) for c in ALL}


# --------------------------------------------------------------------------- per-session upload folder

SESSION_PREFIX = "weld-session-"
_LIVE: set[str] = set()


class _SessionDir:
    """Owns one session's folder; the folder is removed when this object is collected (its
    session's state is dropped), or at exit."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX))
        _LIVE.add(str(self.path))
        weakref.finalize(self, _remove, str(self.path))


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    _LIVE.discard(path)


@atexit.register
def _remove_all() -> None:
    for p in list(_LIVE):
        _remove(p)


def session_dir() -> Path:
    """This session's private folder (created on first use, kept in its session state)."""
    holder = st.session_state.get("_upload_dir")
    if holder is None or not holder.path.is_dir():
        holder = _SessionDir()
        st.session_state["_upload_dir"] = holder
    return holder.path


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextmanager
def upload_file(data: bytes, name: str, limit: int):
    """`data` as a file called `name` inside this session's folder, for a reader that needs
    a path; removed when the block ends. The folder is emptied first when the file would
    take it past `limit` bytes (a file left by an interrupted run)."""
    d = session_dir()
    if _folder_bytes(d) + len(data) > limit:
        for p in d.iterdir():
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    sub = Path(tempfile.mkdtemp(dir=d))
    try:
        p = sub / name
        p.write_bytes(data)
        yield p
    finally:
        shutil.rmtree(sub, ignore_errors=True)
