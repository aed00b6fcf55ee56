"""Welding-procedure limits: the allowed range of each sensor channel, read from a small
JSON file, and where a logged trace leaves that range.

The file (`procedure_limits.json`, beside the welds in the data folder, or uploaded):

    {
      "procedure": "WPS-017 fillet, 1.2 mm wire",          optional: a name to show
      "ignore_first_s": 0.5, "ignore_last_s": 0.5,          optional: arc start / crater fill
      "Primary Weld Current": {"min": 160, "max": 240, "unit": "A"},
      "Secondary Weld Voltage": {"min": 21, "max": 27, "unit": "V"}
    }

Every other key is a sensor channel of the log (`vocab.SENSOR_CHANNELS`). The file is read
strictly, because a limit that is silently dropped looks exactly like a channel within its
limits: an unknown channel (a typo such as "Primary Weld Curent"), an unknown field, a
value that is not a finite JSON number, `min` ≥ `max`, a unit other than the log's (no
conversion is made), a duplicated key or a file over `MAX_BYTES` is an `InputError` naming
the file and the key. Torch-free; imports only the vocabulary and the errors.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import stat
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..vocab import SENSOR_CHANNELS, SENSOR_UNITS

FILE_NAME = "procedure_limits.json"
MAX_BYTES = 64 * 1024            # a limits file is a few hundred bytes
META_KEYS = ("procedure", "ignore_first_s", "ignore_last_s")
LIMIT_FIELDS = ("min", "max", "unit")


@dataclass(frozen=True)
class ChannelLimits:
    """The allowed range of one channel; None: no bound on that side."""

    channel: str
    min: float | None
    max: float | None
    unit: str

    def text(self) -> str:
        """"160–240 A", "≥ 12 L/min", "≤ 5 bar"."""
        u = f" {self.unit}" if self.unit else ""
        if self.min is not None and self.max is not None:
            return f"{self.min:g}–{self.max:g}{u}"
        return f"≥ {self.min:g}{u}" if self.min is not None else f"≤ {self.max:g}{u}"


@dataclass(frozen=True)
class ProcedureLimits:
    """A procedure's limits per channel, and the seconds at each end of a weld they skip."""

    channels: dict[str, ChannelLimits]
    procedure: str | None = None
    ignore_first_s: float = 0.0
    ignore_last_s: float = 0.0
    source: str = ""

    def checked_span(self, t: np.ndarray) -> tuple[float, float]:
        """The times of a log (`t`, seconds) the limits apply to."""
        t = np.asarray(t, dtype=np.float64)
        if not len(t):
            return 0.0, 0.0
        return float(t[0]) + self.ignore_first_s, float(t[-1]) - self.ignore_last_s


def read_procedure_limits(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> ProcedureLimits:
    """The limits file at `path` (a regular file of at most `max_bytes`)."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(name, "not a regular file")
        if st.st_size > max_bytes:
            raise InputError(name, f"file is {st.st_size} bytes; a limits file may have at most {max_bytes}")
        with open(name, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InputError(name, f"cannot read the limits file ({e.strerror or e.__class__.__name__})") from None
    return parse_procedure_limits(data, name, max_bytes=max_bytes)


def parse_procedure_limits(data: bytes | str, source: str, *, max_bytes: int = MAX_BYTES) -> ProcedureLimits:
    """Limits from the bytes of a limits file (an upload); errors name `source` and the key."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise InputError(source, f"file is over {max_bytes} bytes; a limits file is a few hundred")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(source, "not UTF-8 text; a limits file is JSON") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except _Duplicate as e:
        raise InputError(source, f"key {e.key!r} appears twice") from None
    except json.JSONDecodeError as e:
        raise InputError(source, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(doc, dict):
        raise InputError(source, "must be a JSON object mapping sensor channels to {\"min\", \"max\", \"unit\"}")
    channels = {k: _channel(source, k, v) for k, v in doc.items() if k not in META_KEYS}
    if not channels:
        raise InputError(source, "names no channel; give limits for one or more of " + ", ".join(SENSOR_CHANNELS))
    procedure = doc.get("procedure")
    if procedure is not None and not isinstance(procedure, str):
        raise InputError(source, "key 'procedure': must be a text (the procedure's name)")
    first = _number(source, "ignore_first_s", doc.get("ignore_first_s", 0.0))
    last = _number(source, "ignore_last_s", doc.get("ignore_last_s", 0.0))
    for key, v in (("ignore_first_s", first), ("ignore_last_s", last)):
        if v < 0:
            raise InputError(source, f"key {key!r}: must be 0 or more seconds, not {v:g}")
    return ProcedureLimits(dict(sorted(channels.items(), key=lambda kv: SENSOR_CHANNELS.index(kv[0]))),
                           procedure, first, last, source)


class _Duplicate(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def _number(source: str, key: str, v) -> float:
    """A finite JSON number (not a string, not true/false, not NaN/Infinity)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InputError(source, f"key {key!r}: must be a number, not {json.dumps(v)[:40]}")
    if not math.isfinite(v):
        raise InputError(source, f"key {key!r}: must be a finite number, not {v}")
    return float(v)


def _channel(source: str, key: str, spec) -> ChannelLimits:
    if key not in SENSOR_CHANNELS:
        near = difflib.get_close_matches(key, SENSOR_CHANNELS, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise InputError(source, f"key {key!r}: not a sensor channel; {hint}channels are "
                         + ", ".join(SENSOR_CHANNELS) + "; other keys: " + ", ".join(META_KEYS))
    if not isinstance(spec, dict):
        raise InputError(source, f"key {key!r}: must be an object such as {{\"min\": 1, \"max\": 2}}")
    extra = [f for f in spec if f not in LIMIT_FIELDS]
    if extra:
        raise InputError(source, f"key {key!r}: unknown field {extra[0]!r}; fields are min, max, unit")
    lo = None if spec.get("min") is None else _number(source, f"{key}.min", spec["min"])
    hi = None if spec.get("max") is None else _number(source, f"{key}.max", spec["max"])
    if lo is None and hi is None:
        raise InputError(source, f"key {key!r}: give a min, a max or both")
    if lo is not None and hi is not None and lo >= hi:
        raise InputError(source, f"key {key!r}: min ({lo:g}) must be below max ({hi:g})")
    unit = spec.get("unit", SENSOR_UNITS.get(key, ""))
    if not isinstance(unit, str) or unit != SENSOR_UNITS.get(key, unit):
        raise InputError(source, f"key '{key}.unit': the log records {key} in {SENSOR_UNITS[key]}, not "
                         f"{json.dumps(unit)[:20]}; give the limits in {SENSOR_UNITS[key]} (no conversion is made)")
    return ChannelLimits(key, lo, hi, unit)


def out_of_range_spans(t: np.ndarray, y: np.ndarray, lo: float | None, hi: float | None, *,
                       within: tuple[float, float] | None = None) -> list[tuple[float, float]]:
    """Where a logged channel is outside [lo, hi]: (start, end) in seconds per run of samples.

    A logger holds a value until its next sample, so sample i stands for [t[i], t[i+1]) and
    the last one for one median step. Only samples with t inside `within` (inclusive) count,
    and a span is clipped to it. A NaN sample is not counted (nothing was measured)."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(t) == 0:
        return []
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    ends = np.r_[t[1:], t[-1] + step]
    with np.errstate(invalid="ignore"):
        bad = np.zeros(len(y), bool)
        if lo is not None:
            bad |= y < lo
        if hi is not None:
            bad |= y > hi
    if within is not None:
        bad &= (t >= within[0]) & (t <= within[1])
    edges = np.diff(np.r_[0, bad.astype(np.int8), 0])
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    spans = [(float(t[a]), float(ends[b])) for a, b in zip(starts, stops)]
    if within is not None:
        spans = [(max(a, within[0]), min(b, within[1])) for a, b in spans]
    return spans
