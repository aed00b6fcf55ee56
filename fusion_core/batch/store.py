"""The results of a batch run on disk: the table's columns, the chunk folder, reading it back.

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
checkpoint_epoch, class_code, class_name, truth as JSON, duration_s, present), notes, error,
target, baseline, predicted, predicted_code, predicted_prob, correct, target_value,
efficiency_gap, top_modality (by Shapley), truth_window_share, prob_<class>,
<method>_<modality> for every method of `fusion_core.explain.methods.METHODS` (shapley,
leave_one_out, attention, relevance); relevance_in_truth_<m> (time modalities), and per
fusion token t and modality m attn_t<t>_<m>_{entropy (nats, head-mean attention), peak
(token index), peak_time (s, centre of the peak token), mass_in_truth}; maps_file,
maps_index. Empty where they do not apply. `notes`: what the readers left out of the weld
and why, "; "-joined (`fusion_core.explain.welds.unreadable_notes`: "video unreadable,
treated as absent: <file>: <problem>", files named relative to --samples); "" for a weld read
whole, null where the weld was never decoded (most error rows) and in rows written before
the column existed (`read_results` gives such tables the column, null; a resumed run keeps
their rows, and only its new rows say). What the columns after the ids say about an
explanation is `fusion_core.explain.summaries.summary_row`.

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

import json
import math
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..explain.engine import Explanation
from ..explain.methods import METHODS
from ..explain.summaries import ATTENTION_STATS, attention_column, probability_column
from ..io.layout import natural
from ..vocab import CLASS_NAMES, MODALITIES, TIME_MODALITIES

FORMAT = "fusion-batch/1"
DEFAULT_CHUNK_ROWS = 64     # rows per chunk file

Pair = tuple[dict, dict | None]   # a row and its maps (`weld_maps`; None: none stored)


# =========================================================================== columns

BASE_COLUMNS: tuple[str, ...] = (
    "weld_id", "source", "weld_digest", "checkpoint", "checkpoint_sha256", "checkpoint_epoch",
    "class_code", "class_name", "truth", "duration_s", "present", "notes", "error", "target", "baseline",
    "predicted", "predicted_code", "predicted_prob", "correct", "target_value", "efficiency_gap",
    "top_modality", "truth_window_share",
)
TAIL_COLUMNS: tuple[str, ...] = ("maps_file", "maps_index")


def _column_types() -> dict:
    t = {c: pa.string() for c in ("weld_id", "source", "weld_digest", "checkpoint", "checkpoint_sha256",
                                   "class_name", "truth", "present", "notes", "error", "target", "baseline",
                                   "predicted", "top_modality", "maps_file")}
    t.update({c: pa.int32() for c in ("checkpoint_epoch", "class_code", "predicted_code", "maps_index")})
    t.update({c: pa.float64() for c in ("duration_s", "predicted_prob", "target_value", "efficiency_gap",
                                        "truth_window_share")})
    t["correct"] = pa.bool_()
    return t


_ATTN_RE = re.compile(rf"^attn_t(\d+)_([a-z]+)_({'|'.join(ATTENTION_STATS)})$")


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
        return (3, t, MODALITIES.index(m) if m in MODALITIES else 9, ATTENTION_STATS.index(stat))
    if name in TAIL_COLUMNS:
        return (5, TAIL_COLUMNS.index(name))
    return (4, name)


def table_schema(class_labels: Iterable[str], tokens: int) -> pa.Schema:
    """The rows' schema for checkpoints with these class labels and up to `tokens` fusion tokens."""
    types = _column_types()
    names = list(BASE_COLUMNS) + list(TAIL_COLUMNS)
    names += [probability_column(c) for c in class_labels]
    names += [attention_column(t, m, stat) for t in range(tokens) for m in MODALITIES for stat in ATTENTION_STATS]
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


# =========================================================================== rows

def id_row(meta: dict, ck, baseline: str) -> dict:
    """The columns every row has, error rows too: the weld's (`meta` of `plan.prepare_source`),
    the checkpoint's (`ck`: name, sha256, epoch) and the baseline."""
    code = meta.get("class_code")
    return {"weld_id": meta["weld_id"], "source": meta["source"], "weld_digest": meta.get("weld_digest"),
            "checkpoint": ck.name, "checkpoint_sha256": ck.sha256, "checkpoint_epoch": ck.epoch,
            "class_code": code, "class_name": CLASS_NAMES.get(code) if code is not None else None,
            "truth": meta.get("truth"), "duration_s": meta.get("duration_s"), "present": meta.get("present"),
            "notes": meta.get("notes"), "baseline": baseline}


def weld_maps(exp: Explanation, b: int) -> dict[str, np.ndarray]:
    """Sample b's full maps, named as in the sidecar (without the checkpoint prefix)."""
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
                values = pos[col].to_numpy()
                # Text columns (upstream's token kinds, "input: photos") as fixed-width strings:
                # the sidecar holds no pickles.
                out[f"positions/{m}/{col}"] = values.astype(str) if values.dtype == object else values
    out["token_shapley"] = np.asarray(exp.token_shapley[b], dtype=np.float64)
    out["coalition_values"] = np.asarray(exp.coalition_values[b], dtype=np.float64)
    out["fused"] = np.asarray(exp.fused[b], dtype=np.float32)
    if exp.logits is not None:
        out["logits"] = np.asarray(exp.logits[b], dtype=np.float32)
    return out


# =========================================================================== chunks

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

    def write_chunk(self, index: int, pairs: list[Pair], schema: pa.Schema) -> None:
        rows = [dict(r) for r, _ in pairs]
        groups: dict[str, list[int]] = {}
        for i, (r, m) in enumerate(pairs):
            if m is not None:
                groups.setdefault(r["checkpoint_sha256"][:12], []).append(i)
        if groups:
            self._write_maps(f"maps-{index:06d}.npz", pairs, rows, groups)
        table = pa.Table.from_pylist(rows, schema=schema)
        tmp = self.dir / f".rows-{index:06d}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / f"rows-{index:06d}.parquet")   # the commit point of a chunk

    def _write_maps(self, name: str, pairs: list[Pair], rows: list[dict], groups: dict[str, list[int]]) -> None:
        """The chunk's maps, stacked per checkpoint; sets each row's maps_file and maps_index."""
        arrays: dict[str, np.ndarray] = {}
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

    def consolidated(self) -> pa.Table | None:
        """All chunks as one pyarrow Table: newest row per (source, checkpoint), sorted; every
        column of the current format (a chunk written before one was added: null there)."""
        parts = self.row_parts()
        if not parts:
            return None
        # Chunks of an earlier version lack the columns added since: null there (`with_added_columns`).
        table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
        table = with_added_columns(table.select(sorted(table.column_names, key=column_rank)))
        cols = table.select(["source", "checkpoint_sha256", "checkpoint", "weld_id"]).to_pydict()
        latest: dict[tuple, int] = {}
        for i, key in enumerate(zip(cols["source"], cols["checkpoint_sha256"])):
            latest[key] = i
        keep = sorted(latest.values(), key=lambda i: (cols["checkpoint"][i], cols["checkpoint_sha256"][i],
                                                      natural(cols["weld_id"][i]), cols["source"][i]))
        return table.take(pa.array(keep, type=pa.int64()))

    def consolidate(self) -> int:
        table = self.consolidated()
        if table is None:
            return 0
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.out)
        return table.num_rows


class ChunkWriter:
    """Collects (row, maps) pairs and writes them `chunk_rows` at a time."""

    def __init__(self, store: ResultStore, schema: pa.Schema, chunk_rows: int):
        self.store, self.schema, self.chunk_rows = store, schema, chunk_rows
        self.buf: list[Pair] = []
        self.index = store.next_index()
        self.written = 0

    def add(self, pairs: list[Pair]) -> None:
        self.buf += pairs
        while len(self.buf) >= self.chunk_rows:
            self._flush(self.buf[:self.chunk_rows])
            self.buf = self.buf[self.chunk_rows:]

    def close(self) -> None:
        if self.buf:
            self._flush(self.buf)
            self.buf = []

    def _flush(self, pairs: list[Pair]) -> None:
        self.store.write_chunk(self.index, pairs, self.schema)
        self.index += 1
        self.written += len(pairs)


# =========================================================================== reading

# Columns added to the format since its first tables: (name, type). A table written before
# one of them gets it, null (its rows did not say), where `column_rank` puts it.
ADDED_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (("notes", pa.string()),)


def with_added_columns(table: pa.Table) -> pa.Table:
    """The table with every `ADDED_COLUMNS` column it lacks, null, where `column_rank` puts it
    (the other columns stay where they are)."""
    for n, t in ADDED_COLUMNS:
        if n not in table.column_names:
            at = sum(column_rank(c) < column_rank(n) for c in table.column_names)
            table = table.add_column(at, pa.field(n, t), pa.nulls(table.num_rows, type=t))
    return table


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Integers and booleans stay what they are where error rows leave gaps (pandas' <NA>)."""
    nullable = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return with_added_columns(table).to_pandas(types_mapper=nullable.get)


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    """The results table of `batch` as a DataFrame (what the Dataset page shows).

    Reads `results.parquet`; when its chunk folder holds newer chunks (a run still going,
    or one that was killed), the table is rebuilt from the chunks instead. Integer and
    boolean columns are pandas' nullable types (error rows leave them <NA>). A table written
    before a column was added (`ADDED_COLUMNS`: `notes`) has it, null. `df.attrs`
    carries `maps_dir`, the folder `read_maps` looks in.
    """
    p = Path(path)
    if p.is_dir() and p.name.endswith(".d"):
        p = p.with_name(p.name[:-2])
    store = ResultStore(p)
    parts = store.row_parts()
    if p.is_file() and (not parts or p.stat().st_mtime_ns >= max(q.stat().st_mtime_ns for q in parts)):
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
