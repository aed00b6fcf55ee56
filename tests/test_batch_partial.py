"""`batch` over welds with one unreadable file: a row without that modality, saying why.

Three of the test data's welds (sample_data/ or its stand-in), copied: one good, one whose
.avi is corrupt, one whose sensor CSV is over its byte limit. Each is one row, none an error
row; the bad ones lack the modality (`present`), their `notes` say which file and why, and
their numbers are what the interactive path (`load_welds` + `explain_welds`) gives. Old
results tables and runs resumed from chunks written before `notes` existed still read.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fusion_core.batch.engines import run_batch
from fusion_core.batch.plan import decode_source, list_weld_sources, read_source, source_digest
from fusion_core.batch.store import ResultStore, parts_dir, read_results
from fusion_core.errors import InputError
from fusion_core.explain.welds import explain_welds
from fusion_core.io.containers import load_welds
from fusion_core.io.limits import Limits
from fusion_core.models.checkpoint import load_checkpoint
from fusion_core.vocab import MODALITIES

from test_app_support import data_root, weld_dirs
from test_partial_weld import CORRUPT_AVI, avi_of

VOLATILE = ["maps_file", "maps_index"]   # where a row's maps sit depends on chunking, not on numbers


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = data_root()
    welds = tmp_path_factory.mktemp("partial") / "welds"
    good, bad_avi, bad_csv = (Path(shutil.copytree(d, welds / d.name)) for d in weld_dirs(root)[:3])
    avi = avi_of(bad_avi)
    avi.write_bytes(CORRUPT_AVI["random-bytes"][0](avi.read_bytes()))     # "no video stream"
    # A limit every sensor CSV here fits, and one CSV padded past it (read whole, it would still parse).
    csvs = [d / f"{d.name}.csv" for d in (good, bad_avi, bad_csv)]
    limits = Limits(max_csv_bytes=2 * max(c.stat().st_size for c in csvs))
    csv = csvs[2]
    csv.write_bytes(csv.read_bytes() + b"\n" * limits.max_csv_bytes)
    return {"welds": welds, "ids": [good.name, bad_avi.name, bad_csv.name], "limits": limits,
            "ck": root / "checkpoints" / "demo-best.safetensors", "avi": avi, "csv": csv}


@pytest.fixture(scope="module")
def local_run(world):
    out = world["welds"].parent / "local" / "results.parquet"
    summary = run_batch([world["ck"]], world["welds"], out, workers=0, chunk_rows=1, limits=world["limits"])
    return out, summary


def _rel(world, path: Path) -> str:
    return path.relative_to(world["welds"]).as_posix()


def test_each_weld_is_a_row_without_its_unreadable_modality(world, local_run):
    out, summary = local_run
    assert (summary.welds, summary.errors, summary.total_rows) == (3, 0, 3)
    df = read_results(out).set_index("weld_id").loc[world["ids"]]
    assert df.error.isna().all()
    good, bad_avi, bad_csv = world["ids"]
    assert df.present.to_dict() == {good: "video,image,audio,sensor", bad_avi: "image,audio,sensor",
                                    bad_csv: "video,image,audio"}
    lim = world["limits"].max_csv_bytes
    assert df.notes.to_dict() == {
        good: "",
        bad_avi: f"video unreadable, treated as absent: {_rel(world, world['avi'])}: no video stream",
        bad_csv: f"sensor unreadable, treated as absent: {_rel(world, world['csv'])}: "
                 f"{world['csv'].stat().st_size:,} bytes, more than the limit of {lim:,} for a sensor CSV"}
    assert list(df.columns).index("notes") == list(df.columns).index("present") + 1
    for m in MODALITIES:
        absent = df.index[~df.present.str.split(",").apply(lambda p, m=m: m in p)]
        assert (df.loc[absent, f"shapley_{m}"] == 0.0).all(), m


def test_the_numbers_and_notes_are_the_interactive_paths(world, local_run):
    """Same weld digests, contributions (1e-6: a batch of 3 vs a padded 16) and notes, but for
    the file names, which rows give relative to --samples."""
    welds = load_welds(world["welds"], limits=world["limits"])
    ck = load_checkpoint(world["ck"])
    exp = explain_welds(ck, welds)
    df = read_results(local_run[0]).set_index("weld_id").loc[exp.ids]
    assert list(df.weld_digest) == [w.digest for w in welds]
    assert [p.split(",") for p in df.present] == [w.present for w in welds]
    for method, phi in exp.contributions.items():
        np.testing.assert_allclose(df[[f"{method}_{m}" for m in MODALITIES]].to_numpy(float), phi,
                                   rtol=0, atol=1e-6, err_msg=method)
    np.testing.assert_allclose(df.predicted_prob.to_numpy(float), exp.probabilities.max(1), rtol=1e-5)
    unread = [n for n in exp.notes if "unreadable" in n]
    assert [n.replace(f"{world['welds']}/", "") for n in unread] == [n for n in df.notes if n]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")   # Ray Data's own, about its own settings
def test_ray_engine_gives_the_same_rows(world, local_run, tmp_path):
    pytest.importorskip("ray.data")
    out = tmp_path / "ray" / "results.parquet"
    summary = run_batch([world["ck"]], world["welds"], out, engine="ray", workers=2, limits=world["limits"])
    assert (summary.errors, summary.total_rows) == (0, 3)
    pd.testing.assert_frame_equal(read_results(out).drop(columns=VOLATILE),
                                  read_results(local_run[0]).drop(columns=VOLATILE))


def test_old_tables_and_chunks_without_notes_still_read_and_resume(world, local_run, tmp_path):
    src, _ = local_run
    reference = read_results(src)
    # A results table written before `notes` existed: the column is there, null.
    old = tmp_path / "old.parquet"
    pq.write_table(pq.read_table(src).drop_columns(["notes"]), old)
    df = read_results(old)
    assert list(df.columns) == list(reference.columns) and df.notes.isna().all()
    pd.testing.assert_frame_equal(df.drop(columns="notes"), reference.drop(columns="notes"))
    # A run begun before it, resumed: the old chunks' rows stay (notes null), the lost one is redone.
    out = tmp_path / "resumed" / "results.parquet"
    shutil.copytree(parts_dir(src), parts_dir(out))
    parts = ResultStore(out).row_parts()
    assert len(parts) == 3                               # chunk_rows=1: one weld each
    for p in parts:
        pq.write_table(pq.read_table(p).drop_columns(["notes"]), p)
    lost = next(p for p in parts if pq.read_table(p, columns=["weld_id"])["weld_id"][0].as_py() == world["ids"][1])
    lost.unlink()
    again = run_batch([world["ck"]], world["welds"], out, workers=0, chunk_rows=1, limits=world["limits"])
    assert (again.skipped, again.errors, again.rows_written) == (2, 0, 1)
    assert "notes" in pq.read_schema(out).names
    df = read_results(out)
    notes = df.set_index("weld_id").notes
    assert notes.isna().sum() == 2 and notes[world["ids"][1]].startswith("video unreadable")
    pd.testing.assert_frame_equal(df.drop(columns=["notes"] + VOLATILE),
                                  reference.drop(columns=["notes"] + VOLATILE))


# --------------------------------------------------------------------------- reading, without the model

def _zip(world, tmp_path: Path, edit=None) -> Path:
    z = tmp_path / "welds.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(world["welds"].rglob("*")):
            if f.is_file():
                data = f.read_bytes()
                zf.writestr(f"top/{_rel(world, f)}", edit(f, data) if edit else data)
    return z


def _source(path: Path, weld_id: str, limits: Limits):
    return next(s for s in list_weld_sources(path, limits) if s.weld_id == weld_id)


def test_a_zip_reads_the_same_as_the_folder(world, tmp_path):
    lim, wid = world["limits"], world["ids"][2]
    src = _source(_zip(world, tmp_path), wid, lim)
    blobs, unread = read_source(src, lim)
    assert list(unread) == [f"{wid}.csv"] and unread[f"{wid}.csv"].source == f"top/{wid}/{wid}.csv"
    weld = decode_source(src, blobs, lim, unread)
    assert weld.missing == ["sensor"] and weld.unreadable["sensor"].startswith(f"top/{wid}/{wid}.csv: ")
    folder, = [w for w in load_welds(world["welds"], limits=lim) if w.weld_id == wid]
    assert source_digest(blobs, unread) == weld.digest == folder.digest


def test_a_corrupt_zip_entry_leaves_its_modality_out(world, tmp_path):
    """An entry whose data is damaged after it was written (its CRC fails): unread, like the
    readers do, not the weld refused."""
    wid = world["ids"][0]
    z = _zip(world, tmp_path)
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(f"top/{wid}/{wid}.flac")
    raw = bytearray(z.read_bytes())
    at = info.header_offset                             # the local header: 30 bytes, name, extra
    start = at + 30 + int.from_bytes(raw[at + 26:at + 28], "little") + int.from_bytes(raw[at + 28:at + 30], "little")
    raw[start + info.compress_size // 2] ^= 0xFF
    z.write_bytes(bytes(raw))
    src = _source(z, wid, Limits())
    blobs, unread = read_source(src)
    assert list(unread) == [f"{wid}.flac"] and "corrupt zip entry" in unread[f"{wid}.flac"].problem
    weld = decode_source(src, blobs, unread=unread)
    assert weld.missing == ["audio"] and weld.unreadable["audio"].startswith(f"top/{wid}/{wid}.flac: corrupt zip entry")
    loaded, = [w for w in load_welds(z) if w.weld_id == wid]
    assert loaded.missing == ["audio"] and loaded.digest == weld.digest


def test_a_csv_that_is_not_a_regular_file_is_left_out(world, tmp_path):
    d = Path(shutil.copytree(world["welds"] / world["ids"][0], tmp_path / world["ids"][0]))
    csv = d / f"{d.name}.csv"
    csv.unlink()
    os.mkfifo(csv)                                       # reading it would block
    src, = list_weld_sources(d)
    blobs, unread = read_source(src)
    assert {n: str(e) for n, e in unread.items()} == {csv.name: f"{csv.name}: not a regular file"}
    weld = decode_source(src, blobs, unread=unread)
    assert weld.missing == ["sensor"] and weld.digest == load_welds(d)[0].digest


def test_the_weld_budget_and_the_layout_still_refuse(world):
    src = _source(world["welds"], world["ids"][0], Limits())
    with pytest.raises(InputError, match="one weld's files may take"):
        read_source(src, Limits(max_weld_bytes=1000))
    with pytest.raises(InputError, match="ambiguous"):
        read_source(dataclasses.replace(src, problem="ambiguous sensor CSV"))
