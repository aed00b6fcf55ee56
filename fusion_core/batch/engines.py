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

Numbers do not depend on how welds are grouped: the model always runs on exactly
`MODEL_BATCH` rows (a partial batch is padded with copies of its last weld), so the
matrix kernels, and hence every rounding step, are the same for a weld wherever it lands.

Checkpoints with upstream's own encoders (V-JEPA 2, DINO, AST, sensor Transformer) run too:
their welds are encoded here, weld by weld, feature cache first, and checkpoints with the
same encoder weights share one encoding (`upstream`'s docstring). They run on the local
engine (with `--engine ray` too, said on stderr), with one decoding worker unless
`--workers` says otherwise (a weld decoded at full resolution is large, and encoding, not
decoding, is what takes time), and the encoders get all CPUs (`threads`).

The parts: `plan` finds the welds and prepares each one (the decoding workers' side);
`store` is the output (files, columns, chunks, `read_results`, `read_maps`: its docstring
describes the format); `upstream` encodes welds with upstream's encoders; this module runs
the model side, the two engines, the progress lines and the `batch` subcommand.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import pickle
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, printable
from ..explain.engine import Explanation, explain
from ..explain.summaries import summary_row
from ..explain.welds import explain_welds
from ..io.containers import iter_welds
from ..io.features import FeatureBatch
from ..io.limits import DEFAULT_LIMITS, Limits
from ..io.weld import Weld
from ..models.checkpoint import LoadedCheckpoint, load_checkpoint
from ..vocab import MODALITIES
from .plan import (PrepState, WeldSource, error_prep, init_worker, internal_error, list_weld_sources, prepare_source,
                   ray_prepare, source_meta, worker_prepare)
from .store import DEFAULT_CHUNK_ROWS, ChunkWriter, Pair, ResultStore, id_row, table_schema, weld_maps
from .upstream import RAY_FALLBACK, EncodedWeld, UpstreamStep, stack, upstream_config

MODEL_BATCH = 16            # rows per model run, always (padded): see the module docstring
PREP_MEMORY = 512 * 1024 ** 2   # what Ray reserves per decoding task
BATCH_BASELINES = ("drop-attention", "zeros")   # reference-mean would tie a weld's numbers to the others

__all__ = ["BATCH_BASELINES", "MODEL_BATCH", "BatchSummary", "Progress", "add_batch_parser", "cmd_batch",
           "naive_run", "run_batch"]


# =========================================================================== the model side

@dataclass
class BatchCheckpoint:
    """A loaded checkpoint with what rows need of it."""

    path: str
    loaded: LoadedCheckpoint
    # Which welds' preparation it shares: sha256 of `prep_config`, the built-in encoders'
    # config, or for upstream's encoders their weights digests + preprocessing version +
    # read options (`upstream.upstream_config`): same backbone weights, same key.
    config_key: str
    name: str = ""
    sha256: str = ""
    epoch: int | None = None
    tokens: int = 0
    class_labels: list[str] = field(default_factory=list)
    class_codes: list[int] | None = None
    prep_config: dict = field(default_factory=dict)   # what the decoding workers get (PrepState.configs)

    @property
    def upstream(self) -> bool:
        return self.loaded.encoders is None and self.loaded.upstream_encoders is not None

    @classmethod
    def load(cls, path: str, heads: int | None = None, display_name: str | None = None, *,
             config: str | None = None, backbone_dir: str | None = None, device: str | None = None) -> BatchCheckpoint:
        """`config`, `backbone_dir`, `device` as `load_checkpoint` takes them (the last two for
        upstream's encoders)."""
        ck = load_checkpoint(path, heads=heads, config=config, backbone_dir=backbone_dir, device=device)
        if ck.encoders is not None:
            prep = ck.encoders.config.to_dict()
        elif ck.upstream_encoders is not None:
            prep = upstream_config(ck.upstream_encoders)
        else:
            raise InputError(path, "this checkpoint has no built-in encoders and no upstream encoder weights "
                                   "(its backbones are not shipped), so it cannot read weld files")
        key = hashlib.sha256(json.dumps(prep, sort_keys=True).encode()).hexdigest()[:16]
        labels = []
        if ck.classifier is not None:
            n = ck.classifier.out_features
            labels = list(ck.class_names) if ck.class_names else [str(i) for i in range(n)]
        return cls(path=str(path), loaded=ck, config_key=key, name=display_name or Path(path).name,
                   sha256=ck.info.sha256, epoch=ck.info.epoch, tokens=int(ck.info.dims.get("tokens", 0) or 0),
                   class_labels=labels, class_codes=list(ck.class_codes) if ck.class_codes else None,
                   prep_config=prep)


def upstream_step(checkpoints: Sequence[BatchCheckpoint]) -> UpstreamStep:
    """One set of upstream encoders per config key (the first checkpoint's), with the names it serves."""
    groups: dict[str, tuple] = {}
    for ck in checkpoints:
        if ck.upstream:
            groups.setdefault(ck.config_key, (ck.loaded.upstream_encoders, []))[1].append(ck.name)
    return UpstreamStep(groups)


class Explainer:
    """The model side of both engines: prepared welds → (row, maps) per checkpoint."""

    def __init__(self, checkpoints: Sequence[BatchCheckpoint], settings: dict, encode_threads: int = 1):
        self.checkpoints = list(checkpoints)
        self.by_sha = {ck.sha256: ck for ck in self.checkpoints}
        self.settings = settings
        self.upstream = upstream_step(self.checkpoints)
        self.encode_threads = encode_threads      # torch threads of upstream's encoders

    def encode(self, prep: dict, label: str, note: Callable[[str], None]) -> list[Pair]:
        """Encode a prepared weld's upstream items in place (`Weld` → `EncodedWeld`, cache first).

        A weld these encoders cannot take becomes error rows for the checkpoints of that config
        key (returned; they leave `needs`); a checkpoint whose encoders cannot be built raises."""
        errors: list[Pair] = []
        for key, item in list(prep["items"].items()):
            if not isinstance(item, Weld):
                continue
            hits, missing = self.upstream.missing(key, item)
            with _torch_threads(self.encode_threads):
                if missing:
                    self.upstream.load(key, note)     # outside the weld's try: the checkpoint's problem
                try:
                    prep["items"][key] = self.upstream.encode(key, item, hits, label, note)
                    continue
                except InputError as e:
                    err = f"{prep['meta']['source']}: {e.problem}"
                except MemoryError:
                    err = "out of memory while encoding this weld"
                except Exception as e:  # a weld that trips a bug must not stop a long run
                    err = internal_error(e)
            shas = [sha for sha in prep["needs"] if self.by_sha[sha].config_key == key]
            errors += [self._error_row(prep["meta"], self.by_sha[sha], err) for sha in shas]
            prep["needs"] = [sha for sha in prep["needs"] if sha not in shas]
            del prep["items"][key]
        return errors

    def error_rows(self, prep: dict) -> list[Pair]:
        return [self._error_row(prep["meta"], self.by_sha[sha], prep["error"]) for sha in prep["needs"]]

    def _error_row(self, meta: dict, ck: BatchCheckpoint, error: str) -> Pair:
        row = id_row(meta, ck, self.settings["baseline"])
        row["error"] = error
        return row, None

    def _explain(self, ck: BatchCheckpoint, items: list[dict]) -> Explanation:
        n = len(items)
        padded = list(items) + [items[-1]] * (MODEL_BATCH - n)
        if isinstance(items[0], EncodedWeld):
            fb = stack(padded, source=ck.name)        # upstream's encoders ran in `encode`
        else:
            with torch.no_grad():
                enc = ck.loaded.encoders.encode(padded, batch_size=MODEL_BATCH)
            fb = FeatureBatch(features=dict(enc.features), masks=dict(enc.masks), positions=dict(enc.positions),
                              ids=list(enc.ids), source=ck.name)
        return explain(ck.loaded, fb, baseline=self.settings["baseline"], target=self.settings["target"])

    def _row(self, exp: Explanation, b: int, meta: dict, ck: BatchCheckpoint) -> dict:
        row = id_row(meta, ck, self.settings["baseline"])
        row.update(summary_row(exp, b, labels=ck.class_labels, codes=ck.class_codes, class_code=row["class_code"],
                               windows=meta.get("windows"), duration=meta.get("duration_s")))
        return row

    def run(self, sha: str, preps: list[dict]) -> list[Pair]:
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
                    out.append(self._error_row(p["meta"], ck, internal_error(e)))
            return out
        want_maps = self.settings.get("maps", True)
        return [(self._row(exp, b, p["meta"], ck), weld_maps(exp, b) if want_maps else None)
                for b, p in enumerate(preps)]


# =========================================================================== progress

@dataclass
class Progress:
    """Counts of a run; `line()` is what the CLI prints. `notes`: lines to show once each, in
    order (upstream's encoders: what runs where, each encoder's seconds per weld)."""

    total: int
    done: int = 0            # welds finished in this run (rows written or queued)
    skipped: int = 0         # welds already in the results
    errors: int = 0          # welds that failed
    started: float = field(default_factory=time.perf_counter)
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.errors

    def count(self, status: str) -> None:
        """One more weld finished with this `prepare_source` status."""
        if status == "skip":
            self.skipped += 1
        elif status == "error":
            self.errors += 1
        else:
            self.done += 1

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


class StderrProgress:
    """Progress on stderr: rewritten in place on a terminal, a line every 10 s otherwise; each
    of the run's notes on a line of its own as it comes."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.last = 0.0
        self.count = 0
        self.run: Progress | None = None
        self.shown = 0           # notes of `run` printed so far

    def _notes(self, p: Progress) -> bool:
        if p is not self.run:
            self.run, self.shown = p, 0
        fresh = p.notes[self.shown:]
        self.shown = len(p.notes)
        for text in fresh:
            self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        return bool(fresh)

    def __call__(self, p: Progress, final: bool = False) -> None:
        now = time.perf_counter()
        every = 0.5 if self.tty else 10.0
        noted = self._notes(p)
        if not final and self.count and now - self.last < every and not (noted and self.tty):
            if noted:
                self.stream.flush()
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


Report = Callable[[Progress, bool], None]


def _default_workers() -> int:
    """One decoding process per CPU: decoding is ~90% of a weld's cost, the model side is light."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, n)


def _check_settings(engine: str, ray_address: str | None, baseline: str, target: str, chunk_rows: int,
                    checkpoints: Sequence, device: str | None = None) -> None:
    if device is not None and device not in ("auto", "cpu", "cuda"):
        raise InputError("--device", f"{device!r} is not a device here; choose auto, cpu or cuda")
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


def _workers(workers: int | None, engine: str, ray_address: str | None) -> int:
    workers = _default_workers() if workers is None else int(workers)
    if workers < 0:
        raise InputError("--workers", f"{workers} is not a usable number of workers")
    if engine == "ray" and not ray_address:
        workers = max(2, workers)   # one CPU for the model actor, at least one for decoding
    return workers


def _load_checkpoints(paths: Sequence[str | os.PathLike], heads: int | None, **options) -> list[BatchCheckpoint]:
    cks: list[BatchCheckpoint] = []
    for path in paths:
        ck = BatchCheckpoint.load(str(path), heads=heads, **options)
        if ck.sha256 not in {c.sha256 for c in cks}:   # the same file twice: once is enough
            cks.append(ck)
    return cks


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_batch(checkpoints: Sequence[str | os.PathLike], samples: str | os.PathLike, out: str | os.PathLike, *,
              engine: str = "local", workers: int | None = None, ray_address: str | None = None,
              baseline: str = "drop-attention", target: str = "auto", heads: int | None = None,
              chunk_rows: int = DEFAULT_CHUNK_ROWS, maps: bool = True, threads: int | None = None,
              progress: Report | None = None, config: str | os.PathLike | None = None,
              backbone_dir: str | os.PathLike | None = None, device: str | None = None,
              limits: Limits = DEFAULT_LIMITS) -> BatchSummary:
    """Explain every weld under `samples` with every checkpoint into `out` (Parquet), resuming.

    `workers`: decoding processes (local; 0 = decode in this process) or CPUs of a locally
    started Ray. `threads`: torch threads of the model side (default 1; numbers do not depend
    on it; upstream's encoders get all CPUs by default). `progress(p, final)` is called as welds
    finish and as `p.notes` grow. `config` (head count), `backbone_dir` and `device` (upstream's
    encoders) as `load_checkpoint` takes them. `limits`: the readers' budget, as `load_welds`
    takes it. Raises InputError for bad arguments or inputs (a checkpoint whose encoders cannot
    be built, too); a bad weld becomes a row with `error` set, and a weld with one unreadable
    file a row without that modality whose `notes` say which file and why.
    """
    _check_settings(engine, ray_address, baseline, target, chunk_rows, checkpoints, device)
    given = workers
    workers = _workers(workers, engine, ray_address)
    cks = _load_checkpoints(checkpoints, heads, config=_opt_str(config), backbone_dir=_opt_str(backbone_dir),
                            device=device)
    sources = list_weld_sources(samples, limits)
    settings = {"baseline": baseline, "target": target, "maps": maps}
    store = ResultStore(out)
    store.open(settings)
    schema = table_schema([label for c in cks for label in c.class_labels], max(c.tokens for c in cks))
    state = PrepState(configs={c.config_key: c.prep_config for c in cks},
                      checkpoints=[(c.sha256, c.config_key) for c in cks], done=store.done_keys(), limits=limits)
    prog = Progress(total=len(sources))
    writer = ChunkWriter(store, schema, chunk_rows)
    report = progress or (lambda p, final=False: None)
    explainer = Explainer(cks, settings, encode_threads=threads or _default_workers())
    if explainer.upstream:
        engine, workers = _upstream_engine(engine, workers, given, prog)
        prog.notes += explainer.upstream.start_notes()
        report(prog, False)
    # One intra-op thread by default: the decoders already fill the CPUs, and on a busy
    # machine torch's spinning threads can make a small model run many times slower.
    with _torch_threads(threads or 1):
        if engine == "local":
            _run_local(sources, state, explainer, writer, prog, report, workers)
        else:
            _run_ray(sources, state, cks, settings, writer, prog, report, workers, ray_address)
        writer.close()
    total_rows = store.consolidate()
    report(prog, True)
    return BatchSummary(out=str(out), welds=len(sources), rows_written=writer.written, skipped=prog.skipped,
                        errors=prog.errors, seconds=time.perf_counter() - prog.started, total_rows=total_rows,
                        engine=engine)


def _opt_str(p: str | os.PathLike | None) -> str | None:
    return None if p is None else os.fspath(p)


def _upstream_engine(engine: str, workers: int, given: int | None, prog: Progress) -> tuple[str, int]:
    """(engine, decoding workers) of a run with upstream's encoders: local (said, when Ray was
    asked for); one decoding worker unless --workers says otherwise."""
    if engine == "ray":
        prog.notes.append(RAY_FALLBACK)
        engine, workers = "local", _workers(given, "local", None)
    return engine, (min(workers, 1) if given is None else workers)


def _note(prog: Progress, report: Report, text: str) -> None:
    prog.notes.append(text)
    report(prog, False)


# --------------------------------------------------------------------------- local

def _handle_prep(prep: dict, explainer: Explainer, pending: dict[str, list[dict]], writer: ChunkWriter,
                 prog: Progress, report: Report) -> None:
    """Route one prepared weld: skip, error rows now, or (encoded by upstream's encoders first,
    where a checkpoint has them) into each checkpoint's next model batch.

    A model batch runs when it has min(MODEL_BATCH, chunk rows) welds: with small chunks
    the model runs on padded partial batches (same numbers), so at most one chunk of work
    is ever held in memory.
    """
    fill = min(MODEL_BATCH, writer.chunk_rows)
    if prep["status"] == "ok" and explainer.upstream:
        label = f"weld {prog.finished + 1}/{prog.total} {printable(prep['meta']['weld_id'])}"
        failed = explainer.encode(prep, label, lambda text: _note(prog, report, text))
        writer.add(failed)
        if failed and not prep["needs"]:
            prep["status"] = "error"     # its error rows are written; `error_rows` finds no needs left
    prog.count(prep["status"])
    if prep["status"] == "error":
        writer.add(explainer.error_rows(prep))
    elif prep["status"] == "ok":
        for sha in prep["needs"]:
            pending[sha].append(prep)
            if len(pending[sha]) >= fill:
                writer.add(explainer.run(sha, pending[sha]))
                pending[sha] = []


def _run_local(sources: list[WeldSource], state: PrepState, explainer: Explainer, writer: ChunkWriter,
               prog: Progress, report: Report, workers: int) -> None:
    pending: dict[str, list[dict]] = {ck.sha256: [] for ck in explainer.checkpoints}
    preps = (prepare_source(src, state) for src in sources) if workers == 0 else \
        _prepare_in_pool(sources, state, workers)
    with contextlib.closing(preps):   # a failure here shuts the pool down at once
        for prep in preps:
            _handle_prep(prep, explainer, pending, writer, prog, report)
            report(prog, False)
    for sha, left in pending.items():
        if left:
            writer.add(explainer.run(sha, left))
            pending[sha] = []


def _prepare_in_pool(sources: list[WeldSource], state: PrepState, workers: int) -> Iterator[dict]:
    """`prepare_source` of every weld in `workers` spawned processes, a bounded number in flight."""
    ctx = mp.get_context("spawn")   # fork after torch has threads is unsafe
    max_inflight = 2 * workers + 2  # bounded memory: a few prepared welds per worker

    def new_pool():
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker, initargs=(state,))
    pool = new_pool()
    try:
        queue = deque(sources)
        suspects: deque = deque()   # in flight when a worker died: retried one at a time
        inflight: deque = deque()   # (source, future, retried alone)
        while queue or suspects or inflight:
            if suspects and not inflight:
                src = suspects.popleft()
                inflight.append((src, pool.submit(worker_prepare, src), True))
            elif not suspects and not any(alone for *_, alone in inflight):
                while queue and len(inflight) < max_inflight:
                    src = queue.popleft()
                    inflight.append((src, pool.submit(worker_prepare, src), False))
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
                prep = error_prep(source_meta(src), state, f"{src.source}: the worker process died while reading "
                                                           "this weld (a crash in a decoder, or out of memory)")
            yield prep
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- ray

class _RayExplainer:
    """A Ray Data actor: holds the checkpoints, explains batches of prepared welds."""

    def __init__(self, blobs: list[tuple[str, bytes]], settings: dict, heads: list[int | None]):
        torch.set_num_threads(1)
        self._tmp = tempfile.TemporaryDirectory(prefix="fusion-batch-")
        cks = []
        for (name, data), h in zip(blobs, heads):
            p = Path(self._tmp.name) / f"{len(cks)}-{name}"
            p.write_bytes(data)
            cks.append(BatchCheckpoint.load(str(p), heads=h, display_name=name))
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


def _start_ray(ray, address: str | None, workers: int) -> bool:
    """Start or join Ray unless it is running here already; True when this call started it."""
    if ray.is_initialized():
        return False
    pkg = str(Path(__file__).resolve().parents[1])   # the fusion_core package, for Ray's workers
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
    return True


def _ray_dataset(ray, sources: list[WeldSource], state: PrepState, cks: list[BatchCheckpoint], settings: dict):
    """The pipeline: weld list → decoding tasks → model actors (results as pickled payloads)."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.verbose_stats_logs = False
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = max(1, min(cpus // 2, 8))
    blobs = [(ck.name, Path(ck.path).read_bytes()) for ck in cks]
    # The head count a caller chose (--heads, or a --config file the actors do not get) travels as a number.
    heads = [ck.loaded.info.heads if ck.loaded.info.heads_source.startswith(("caller", "config file")) else None
             for ck in cks]
    ds = ray.data.from_items([{"task": pickle.dumps(s, protocol=5)} for s in sources])
    # The memory request is what a decode needs; it also keeps Ray from fusing this step
    # into the model actors, so decoding scales with tasks and models stay few.
    ds = ds.map_batches(ray_prepare, batch_size=1, fn_kwargs={"state": state}, num_cpus=1, memory=PREP_MEMORY)
    return ds.map_batches(_RayExplainer, batch_size=MODEL_BATCH, num_cpus=1,
                          fn_constructor_kwargs={"blobs": blobs, "settings": settings, "heads": heads},
                          compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors))


def _run_ray(sources: list[WeldSource], state: PrepState, cks: list[BatchCheckpoint], settings: dict,
             writer: ChunkWriter, prog: Progress, report: Report, workers: int, address: str | None) -> None:
    try:
        import ray   # optional: only this engine needs it
        import ray.data
    except ImportError:
        raise InputError("--engine ray", "Ray is not installed: pip install 'ray[data]'") from None
    started = _start_ray(ray, address, workers)
    data_log = logging.getLogger("ray.data")
    old_level = data_log.level
    data_log.setLevel(logging.WARNING)   # our progress line says what its INFO lines would
    try:
        for batch in _ray_dataset(ray, sources, state, cks, settings).iter_batches(batch_size=None,
                                                                                   batch_format="numpy"):
            for payload in batch["payload"]:
                res = pickle.loads(payload)
                prog.count(res["status"])
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
                   help="checkpoint with built-in encoders or upstream's encoder weights; repeat for several")
    s.add_argument("--samples", required=True, help="folder of weld folders, one weld folder, or a .zip")
    s.add_argument("--out", required=True, help="results Parquet file (chunks go to OUT.d/ beside it)")
    s.add_argument("--engine", default="local", help="local (default) or ray")
    s.add_argument("--ray-address", help="address of a running Ray cluster (default: start a local one)")
    s.add_argument("--workers", help="decoding processes (local; 0 = in this process) or CPUs of a local Ray "
                                     "(default: one per CPU)")
    s.add_argument("--baseline", default="drop-attention", help=" | ".join(BATCH_BASELINES))
    s.add_argument("--target", default="auto", help="auto | logit | class:<name> | cosine")
    s.add_argument("--heads", help="head count when a checkpoint does not say")
    s.add_argument("--config", help="config file stating the fusion head count: JSON, or a Python config such as "
                                    "configs/model_config.py")
    s.add_argument("--device", default="auto", help="where upstream's encoders run: auto (CUDA when present), cpu "
                                                    "or cuda; on a CPU a full-size weld takes 40 s or more")
    s.add_argument("--backbone-dir", dest="backbone_dir",
                   help="folder with upstream's backbones' config.json (a model folder, or a folder of them such as "
                        "upstream's models/); without it the published configuration matching the shapes is used")
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
                        maps=not args.no_maps, progress=None if args.quiet else StderrProgress(),
                        config=args.config, backbone_dir=args.backbone_dir, device=args.device)
    print(f"batch ({summary.engine}): {summary.welds} welds, {summary.rows_written} rows written, "
          f"{summary.skipped} already done, {summary.errors} failed, {summary.seconds:.1f}s; "
          f"{summary.total_rows} rows in {summary.out}")
    return 0
