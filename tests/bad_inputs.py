"""A corpus of hostile and broken inputs, built on the fly (no binaries in git).

`build_corpus(root, good_weld_dir, marker)` writes every case under `root` and returns
`Case`s: what kind of input it is (checkpoint, features, weld), its path, and a phrase
the error message must contain. Used by the CLI tests and the app tests alike.
Pickles that would run code all try to create `marker`; it must never appear.

`build_round2(root, good_weld_dir, dims)` (or `build_corpus(..., round2=True)`) adds the
cases of issue 11, "Hardening, round 2": allocations sized by a claim (a CSV row 23 h on, a
frame stamped at 86,000 s, an 11-minute video with audio, 199,999 CSV rows), decoders
without a budget (2 h of silent FLAC, 8 channels at 192 kHz, 30 min at 44.1 kHz, a 40 MB
line of commas, a million-column header, 64 photos of 60 Mpx), feature values that
overflow (1e20, 3e38, 2**63) and sizes inside the element limit (10**6 positions, 10,000
samples), photo modes Pillow decodes (a 16-bit PNG), names that are not printable
(newline, ESC[2J, \\r, a bidi override), truth.json that would break the JSON output (NaN,
1e999, deep nesting), and weld files that are not files (a FIFO, a link to /dev/zero).
Some are inputs the readers must now handle (`outcome="ok"`: exit 0, finite output,
bounded): the data supports a short weld, or only a bounded part is used.

A flaw confined to one file of a weld (a corrupt video, a CSV over its budget, a broken
truth.json) no longer refuses the weld: it is read without that file (`outcome="partial"`:
exit 0, and the explanation carries a note that starts with `note` and says `expect`, naming
the file; the modality it says is "treated as absent" is missing, with contribution 0). The
name cases keep their weld to the broken CSV alone, so that they stay errors.
They are sized for the default `Limits`; the biggest file is 40 MB (hard links keep 64
photos of 60 Mpx at the size of one).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


@dataclass
class Case:
    name: str
    kind: str          # checkpoint | features | weld
    path: Path
    expect: str        # phrase the one-line error must contain
    outcome: str = "error"      # "error": exit 2, one line; "ok": exit 0 and a finite result; "partial": below
    shows: str | None = None    # what the error must show of the path (default: its file or folder name)
    max_duration_s: float | None = None   # "ok" welds: the result's time spans end by then
    note: str | None = None     # "partial" welds: how the explanation's note on the flawed file starts


def absent(modality: str) -> str:
    """The start of the note of a modality whose file could not be read (fusion_core.explain.welds)."""
    return f"{modality} unreadable, treated as absent: "


PHOTO_SKIPPED = "image: unreadable photos skipped"
TRUTH_IGNORED = "truth.json unreadable, ignored: "


class _Reduce:
    """Pickles as `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def _evil_pickles(root: Path, sd: dict, marker: Path) -> list[Case]:
    import builtins
    import subprocess
    cmd = f"touch {marker}"
    out = []
    variants = {
        "pickle-os-system-config": ({"model_state_dict": sd, "config": _Reduce(os.system, (cmd,))}, "system"),
        "pickle-subprocess": ({"model_state_dict": sd, "epoch": _Reduce(subprocess.call, (["touch", str(marker)],))},
                              "subprocess"),
        "pickle-eval": ({"state_dict": sd, "x": _Reduce(builtins.eval, (f"open({str(marker)!r}, 'w')",))}, "eval"),
        "pickle-exec-in-optimizer": ({"model_state_dict": sd, "optimizer_state_dict":
                                      {"state": {0: _Reduce(builtins.exec, (f"open({str(marker)!r}, 'w')",))}}},
                                     "exec"),
        "pickle-system-as-tensor-value": ({**sd, "fusion_tokens": _Reduce(os.system, (cmd,))}, "system"),
    }
    for name, (obj, expect) in variants.items():
        p = root / f"{name}.pt"
        torch.save(obj, p)
        out.append(Case(name, "checkpoint", p, expect))
    # Legacy (non-zip) pickle, protocol 2, and a bare pickle stream with a .pth suffix.
    p = root / "pickle-legacy.pt"
    torch.save({"state_dict": sd, "cfg": _Reduce(os.system, (cmd,))}, p, _use_new_zipfile_serialization=False)
    out.append(Case("pickle-legacy", "checkpoint", p, "system"))
    p = root / "pickle-raw.pth"
    p.write_bytes(pickle.dumps(_Reduce(os.system, (cmd,)), protocol=2))
    out.append(Case("pickle-raw", "checkpoint", p, "system"))
    return out


def _checkpoints(root: Path, sd: dict, heads: int, marker: Path) -> list[Case]:
    cases = _evil_pickles(root, sd, marker)
    good = root / "good.safetensors"
    save_file(sd, str(good))
    blob = good.read_bytes()

    def write(name, data: bytes, expect, suffix=".safetensors"):
        p = root / f"{name}{suffix}"
        p.write_bytes(data)
        cases.append(Case(name, "checkpoint", p, expect))

    write("ckpt-zero-bytes", b"", "empty", ".pt")
    write("ckpt-zero-bytes-st", b"", "empty")
    write("ckpt-truncated-st", blob[: len(blob) // 2], "not a readable")
    tp = root / "tmp_full.pt"
    torch.save(sd, tp)
    write("ckpt-truncated-pt", tp.read_bytes()[: tp.stat().st_size // 2], "not a readable", ".pt")
    write("ckpt-text-renamed", b"epoch,loss\n1,0.5\n", "not a readable", ".pt")
    write("ckpt-png-renamed", b"\x89PNG\r\n\x1a\n" + os.urandom(512), "not a readable")
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3))
    write("ckpt-npz-renamed", buf.getvalue(), "not a readable", ".pt")
    write("ckpt-absurd-header", struct.pack("<Q", 2 ** 62) + b"{}", "not a readable")
    write("ckpt-unsupported-suffix", blob, "unsupported", ".onnx")
    other = {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}
    save_file(other, str(root / "ckpt-resnet.safetensors"))
    cases.append(Case("ckpt-other-architecture", "checkpoint", root / "ckpt-resnet.safetensors", "no fusion-module"))
    missing = {k: v for k, v in sd.items() if not k.startswith("audio_norm")}
    save_file(missing, str(root / "ckpt-missing-keys.safetensors"))
    cases.append(Case("ckpt-missing-keys", "checkpoint", root / "ckpt-missing-keys.safetensors", "missing keys"))
    shaped = dict(sd)
    shaped["aggregation.0.weight"] = torch.zeros(3, 3)
    save_file(shaped, str(root / "ckpt-wrong-shape.safetensors"))
    cases.append(Case("ckpt-wrong-shape", "checkpoint", root / "ckpt-wrong-shape.safetensors", "shape mismatches"))
    nan = dict(sd)
    nan["fusion_tokens"] = torch.full_like(sd["fusion_tokens"], float("nan"))
    save_file(nan, str(root / "ckpt-nan.safetensors"))
    cases.append(Case("ckpt-nan-weights", "checkpoint", root / "ckpt-nan.safetensors", "NaN"))
    ints = {k: (v * 100).to(torch.int32) for k, v in sd.items()}
    save_file(ints, str(root / "ckpt-int.safetensors"))
    cases.append(Case("ckpt-int-weights", "checkpoint", root / "ckpt-int.safetensors", "floating point"))
    torch.save({"model_state_dict": sd, "config": {"num_heads": heads + 1 if (sd["fusion_tokens"].shape[-1] % (heads + 1))
                                                   else heads + 2}}, root / "ckpt-heads.pt")
    cases.append(Case("ckpt-heads-not-dividing", "checkpoint", root / "ckpt-heads.pt", "not divisible"))
    (root / "ckpt-folder.pt").mkdir(exist_ok=True)
    cases.append(Case("ckpt-is-a-folder", "checkpoint", root / "ckpt-folder.pt", "folder"))
    cases.append(Case("ckpt-missing-file", "checkpoint", root / "no-such.safetensors", "not found"))
    return cases


def _npz_writer(root: Path, cases: list[Case]):
    """npz(name, expect, **arrays): write one feature-file case under root and list it."""
    def npz(name, expect, **arrays):
        p = root / f"{name}.npz"
        np.savez(p, **arrays)
        cases.append(Case(name, "features", p, expect))
    return npz


def _features(root: Path, dims: dict[str, int], marker: Path) -> list[Case]:
    rng = np.random.default_rng(0)
    good = {m: rng.normal(size=(3, d)).astype(np.float32) for m, d in dims.items()}
    cases: list[Case] = []
    npz = _npz_writer(root, cases)

    npz("feat-nan", "NaN", **{**good, "video": np.full_like(good["video"], np.nan)})
    npz("feat-inf", "NaN/Inf", **{**good, "sensor": np.full_like(good["sensor"], -np.inf)})
    npz("feat-rank4", "expected (S, D)", **{**good, "image": np.zeros((1, 2, 3, dims["image"]), np.float32)})
    npz("feat-rank1", "expected (S, D)", **{**good, "audio": np.zeros(dims["audio"], np.float32)})
    npz("feat-empty-sequence", "empty sequence", **{**good, "audio": np.zeros((0, dims["audio"]), np.float32)})
    npz("feat-zero-dim", "dimension 0", **{**good, "video": np.zeros((3, 0), np.float32)})
    npz("feat-wrong-dim", "expects", **{**good, "sensor": np.zeros((3, dims["sensor"] + 1), np.float32)})
    npz("feat-batch-mismatch", "batch size", **{**good, "video": np.zeros((2, 3, dims["video"]), np.float32),
                                                 "image": np.zeros((3, 3, dims["image"]), np.float32)})
    npz("feat-strings", "dtype", **{**good, "image": np.array([["a"] * dims["image"]] * 3)})
    npz("feat-mask-shape", "mask", **{**good, "video_mask": np.ones(7)})
    npz("feat-mask-values", "0/1", **{**good, "video_mask": np.full(3, 2)})
    npz("feat-no-modality", "no modality", weights=np.zeros(3))
    # Object arrays need pickle to load: refused without unpickling.
    p = root / "feat-object.npz"
    np.savez(p, video=np.array([_Reduce(os.system, (f"touch {marker}",))] * 3, dtype=object))
    cases.append(Case("feat-object-array", "features", p, "not a readable"))
    # A header that claims an absurd shape with no data behind it.
    hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }"
    hdr = hdr + b" " * (118 - len(hdr)) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr
    with zipfile.ZipFile(root / "feat-absurd.npz", "w") as z:
        z.writestr("video.npy", npy)
    cases.append(Case("feat-absurd-size", "features", root / "feat-absurd.npz", "not a readable"))
    (root / "feat-garbage.npz").write_bytes(os.urandom(300))
    cases.append(Case("feat-garbage", "features", root / "feat-garbage.npz", "not a readable"))
    (root / "feat-empty.npz").write_bytes(b"")
    cases.append(Case("feat-zero-bytes", "features", root / "feat-empty.npz", "empty"))
    torch.save({"video": _Reduce(os.system, (f"touch {marker}",))}, root / "feat-evil.pt")
    cases.append(Case("feat-evil-pickle", "features", root / "feat-evil.pt", "system"))
    return cases


def _zip(path: Path, entries: list[tuple[str, bytes]], *, symlink: str | None = None, level=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", level) as z:
        for name, data in entries:
            z.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            z.writestr(info, "/etc/passwd")
    return path


def _welds(root: Path, weld: Path) -> list[Case]:
    wid = weld.name
    files = {p.relative_to(weld).as_posix(): p.read_bytes() for p in sorted(weld.rglob("*")) if p.is_file()}
    good_entries = [(f"{wid}/{k}", v) for k, v in files.items()]
    cases = []

    def weld_dir(name, mutate) -> Path:
        d = root / name / wid
        shutil.copytree(weld, d)
        mutate(d)
        return d

    def add(name, path, expect, note=None):
        cases.append(Case(name, "weld", path, expect, "partial" if note else "error", note=note))

    add("zip-slip-dotdot", _zip(root / "slip.zip", good_entries + [("../../evil.txt", b"x")]), "..")
    add("zip-absolute-path", _zip(root / "abs.zip", good_entries + [("/tmp/evil.txt", b"x")]), "absolute")
    add("zip-symlink", _zip(root / "link.zip", good_entries, symlink=f"{wid}/images/link.jpg"), "symbolic link")
    add("zip-bomb-ratio", _zip(root / "bomb.zip", good_entries + [(f"{wid}/pad.bin", b"\0" * (64 << 20))]),
        "compression ratio")
    add("zip-too-many-entries", _zip(root / "many.zip", [(f"{wid}/x/{i}.txt", b"") for i in range(10_050)],
                                     level=zipfile.ZIP_STORED), "entries")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        for n, v in good_entries:
            z.writestr(n, v)
    add("zip-nested", _zip(root / "nested.zip", [("inner.zip", inner.getvalue())]), "nested zip")
    add("zip-truncated", root / "trunc.zip", "not a readable zip")
    (root / "trunc.zip").write_bytes(_zip(root / "tmp.zip", good_entries).read_bytes()[:5000])
    add("zip-garbage", root / "garbage.zip", "not a readable zip")
    (root / "garbage.zip").write_bytes(os.urandom(2048))

    def corrupt(suffix, data):
        def f(d):
            (d / f"{wid}{suffix}").write_bytes(data)
        return f
    avi = files[f"{wid}.avi"]
    flac = files[f"{wid}.flac"]
    add("avi-corrupt", weld_dir("avi-corrupt", corrupt(".avi", avi[:64] + os.urandom(len(avi) - 64))), ".avi",
        absent("video"))
    add("avi-empty", weld_dir("avi-empty", corrupt(".avi", b"")), "empty", absent("video"))
    add("avi-truncated", weld_dir("avi-trunc", corrupt(".avi", avi[: len(avi) // 3])), ".avi", absent("video"))
    add("flac-corrupt", weld_dir("flac-corrupt", corrupt(".flac", flac[:42] + os.urandom(4000))), ".flac",
        absent("audio"))
    add("flac-empty", weld_dir("flac-empty", corrupt(".flac", b"")), "empty", absent("audio"))
    jpg = sorted(k for k in files if k.startswith("images/"))[0]

    def bad_jpg(d):
        (d / jpg).write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(700))
    add("jpeg-corrupt", weld_dir("jpeg-corrupt", bad_jpg), "image", PHOTO_SKIPPED)
    csv = files[f"{wid}.csv"].decode()
    header, *rows = csv.splitlines()

    def csv_mut(text):
        def f(d):
            (d / f"{wid}.csv").write_text(text)
        return f
    cols = header.split(",")
    no_current = [",".join(c for i, c in enumerate(r.split(",")) if cols[i] != "Primary Weld Current")
                  for r in [header] + rows]
    add("csv-missing-channel", weld_dir("csv-missing", csv_mut("\n".join(no_current))), "Primary Weld Current",
        absent("sensor"))
    cur = cols.index("Primary Weld Current")
    bad_row = rows[5].split(",")
    bad_row[cur] = "n/a (sensor fault)"
    add("csv-text-cell", weld_dir("csv-text", csv_mut("\n".join([header] + rows[:5] + [",".join(bad_row)] + rows[6:]))),
        "row", absent("sensor"))
    nan_row = rows[7].split(",")
    nan_row[cols.index("Secondary Weld Voltage")] = ""
    add("csv-empty-cell", weld_dir("csv-nan", csv_mut("\n".join([header] + rows[:7] + [",".join(nan_row)] + rows[8:]))),
        "row", absent("sensor"))
    add("csv-header-only", weld_dir("csv-header", csv_mut(header + "\n")), ".csv", absent("sensor"))
    big = header + "\n" + "\n".join([rows[0]] * 250_001)
    add("csv-too-many-rows", weld_dir("csv-big", csv_mut(big)), "rows", absent("sensor"))
    add("csv-binary", weld_dir("csv-binary", lambda d: (d / f"{wid}.csv").write_bytes(os.urandom(3000))), ".csv",
        absent("sensor"))

    def only_stray(d):
        for p in list(d.iterdir()):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        (d / "notes.txt").write_text("operator notes")
    add("weld-no-modality", weld_dir("no-modality", only_stray), "no ")
    add("weld-missing-path", root / "no-such-weld", "no such file")
    return cases


# =========================================================================== round 2 (issue 11)

R2_SECONDS = 600.0   # the default time budget (fusion_core.io.limits.Limits.max_duration_s)


def _copy_weld(root: Path, name: str, weld: Path, mutate=None, folder: str | None = None) -> Path:
    """A copy of the good weld at root/name/<folder or weld id>, changed by `mutate(dir)`."""
    d = root / name / (folder or weld.name)
    shutil.copytree(weld, d)
    if mutate:
        mutate(d)
    return d


def _flac(path: Path, seconds: float, sr: int, channels: int = 1) -> Path:
    """Silence, written a minute at a time (FLAC of silence is tiny: 2 h at 8 kHz is ~180 KB)."""
    import soundfile as sf
    left = int(round(seconds * sr))
    with sf.SoundFile(path, "w", samplerate=sr, channels=channels, format="FLAC", subtype="PCM_16") as f:
        block = np.zeros((min(left, 60 * sr), channels), np.int16)
        while left > 0:
            f.write(block[:min(left, len(block))])
            left -= len(block)
    return path


def _flac_claiming(data: bytes, total_frames: int) -> bytes:
    """The same FLAC with STREAMINFO's total-samples field set to `total_frames` (0 = unknown)."""
    b = bytearray(data)
    assert b[:4] == b"fLaC" and b[4] & 0x7F == 0, "expected STREAMINFO first"
    bits = int.from_bytes(b[18:26], "big")     # 20 rate, 3 channels, 5 bits/sample, 36 total samples
    bits = (bits & ~((1 << 36) - 1)) | total_frames
    b[18:26] = bits.to_bytes(8, "big")
    return bytes(b)


def _video(path: Path, n: int, fps: int, *, fmt: str, size=(128, 96), last_pts: int | None = None,
           audio_s: float = 0.0) -> Path:
    """An mpeg4 video of `n` small intra frames (one encoded frame muxed n times when they are
    all alike); optionally the last frame's timestamp moved, and an audio stream."""
    import av
    with av.open(str(path), "w", format=fmt) as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.width, st.height, st.pix_fmt = size[0], size[1], "yuv420p"
        st.codec_context.gop_size = 1
        ast = c.add_stream("pcm_s16le", rate=8000) if audio_s else None
        if ast is not None:
            ast.layout = "mono"
            af = av.AudioFrame.from_ndarray(np.zeros((1, int(8000 * audio_s)), np.int16), format="s16", layout="mono")
            af.sample_rate, af.pts = 8000, 0
            for p in ast.encode(af):
                c.mux(p)
        for i in range(n):
            fr = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), (i * 7) % 200 + 20, np.uint8), format="rgb24")
            fr.pts = last_pts if (last_pts is not None and i == n - 1) else i
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
        if ast is not None:
            for p in ast.encode():
                c.mux(p)
    return path


def _round2_features(root: Path, dims: dict[str, int]) -> list[Case]:
    rng = np.random.default_rng(1)
    good = {m: rng.normal(size=(3, d)).astype(np.float32) for m, d in dims.items()}
    cases: list[Case] = []
    npz = _npz_writer(root, cases)

    npz("feat-values-1e20", "overflow", **{**good, "video": good["video"] * np.float32(1e20)})
    npz("feat-values-3e38-float32", "overflow", **{**good, "audio": np.full((3, dims["audio"]), 3e38, np.float32)})
    npz("feat-uint64-2to63", "overflow", **{**good, "sensor": np.full((3, dims["sensor"]), 2 ** 63, np.uint64)})
    npz("feat-1e6-positions", "positions", **{**good, "video": np.zeros((10 ** 6, 1), np.float32)})
    npz("feat-10000-samples", "samples", **{**good, "video": np.zeros((10_000, 4, dims["video"]), np.float32)})
    return cases


def _round2_names(root: Path, weld: Path) -> list[Case]:
    """Weld folders whose names would print a second line, clear the screen or overwrite the
    line; each holds a broken CSV and nothing else (a weld with another modality is read
    without the CSV), so the error names the folder."""
    from fusion_core.errors import printable
    wid = weld.name

    def broken_csv(d: Path):
        lines = (d / f"{wid}.csv").read_text().splitlines()
        cells = lines[3].split(",")
        cells[6] = "n/a"
        (d / f"{wid}.csv").write_text("\n".join(lines[:3] + [",".join(cells)] + lines[4:]) + "\n")
        for p in list(d.iterdir()):
            if p.name != f"{wid}.csv":
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    cases = []
    for name, folder in (("name-newline", "weld\nALL WELDS OK"), ("name-ansi-clear", "weld\x1b[2J\x1b[H ALL WELDS OK"),
                         ("name-carriage-return", "weld\rALL WELDS OK"), ("name-bidi-override", "weld\u202eKO SDLEW")):
        d = _copy_weld(root, name, weld, broken_csv, folder=folder)
        cases.append(Case(name, "weld", d, "not a number", shows=printable(folder)))
    entries = [(f"w\x1b]0;pwned\x07/{wid}.csv", b"Date,Time\n1,2\n")]
    z = _zip(root / "name-in-zip.zip", entries)
    cases.append(Case("name-zip-entry-escape", "weld", z, "missing column", shows=printable("w\x1b]0;pwned\x07")))
    return cases


def _round2_audio(root: Path, weld: Path) -> list[Case]:
    wid = weld.name
    cases = []

    def with_audio(name, data: bytes, expect, outcome="partial", suffix=".flac", max_s=None):
        def put(d):
            (d / f"{wid}.flac").unlink()
            (d / f"{wid}{suffix}").write_bytes(data)
        cases.append(Case(name, "weld", _copy_weld(root, name, weld, put), expect, outcome, max_duration_s=max_s,
                          note=absent("audio") if outcome == "partial" else None))

    tmp = root / "_audio"
    tmp.mkdir()
    two_h = _flac(tmp / "2h.flac", 2 * 3600, 8000).read_bytes()
    with_audio("flac-2h-silence", two_h, "limit of 600 s")
    with_audio("flac-2h-header-says-10s", _flac_claiming(two_h, 10 * 8000), "", "ok", max_s=10.5)
    with_audio("flac-unknown-length", _flac_claiming(two_h, 0), "unknown length")
    eight = _flac(tmp / "8ch.flac", 20, 192_000, 8).read_bytes()
    with_audio("flac-8ch-192k-20s", eight, "", "ok", max_s=20.5)
    with_audio("flac-8ch-192k-header-60s", _flac_claiming(eight, 60 * 192_000), "audio samples")
    with_audio("flac-30min-44k", _flac(tmp / "30min.flac", 1800, 44_100).read_bytes(), "limit of 600 s")
    with_audio("flac-9min-44k", _flac(tmp / "9min.flac", 540, 44_100).read_bytes(), "", "ok", max_s=540.5)
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, np.zeros((1600, 64), np.int16), 16000, format="WAV", subtype="PCM_16")
    with_audio("wav-64-channels", buf.getvalue(), "channels", suffix=".wav")
    shutil.rmtree(tmp)
    return cases


def _round2_csv(root: Path, weld: Path) -> list[Case]:
    wid = weld.name
    header, *rows = (weld / f"{wid}.csv").read_text().splitlines()
    cases = []

    def with_csv(name, text: str | bytes, expect, outcome="partial", max_s=None):
        data = text.encode() if isinstance(text, str) else text
        d = _copy_weld(root, name, weld, lambda d: (d / f"{wid}.csv").write_bytes(data))
        cases.append(Case(name, "weld", d, expect, outcome, max_duration_s=max_s,
                          note=absent("sensor") if outcome == "partial" else None))

    import datetime as dt
    first, last = rows[0].split(","), rows[-1].split(",")
    later = dt.datetime.fromisoformat(f"{first[0]} {first[1]}") + dt.timedelta(hours=23)
    last[0], last[1] = later.strftime("%Y-%m-%d"), later.strftime("%H:%M:%S.%f")[:-3]
    with_csv("csv-last-row-23h-later", "\n".join([header] + rows[:-1] + [",".join(last)]) + "\n", "", "ok", max_s=10.0)
    body = rows[5].split(",")
    with_csv("csv-199999-rows", header + "\n" + "\n".join(",".join(["", ""] + body[2:])
                                                          for _ in range(199_999)) + "\n", "more than 100000 rows")
    timed = [f"2024-11-01,{int(10 + k / 8.6 // 3600):02d}:{int(k / 8.6 % 3600 // 60):02d}:{k / 8.6 % 60:06.3f},"
             + ",".join(body[2:]) for k in range(6_000)]
    with_csv("csv-6000-rows-at-8.6hz", header + "\n" + "\n".join(timed) + "\n", "limit of 600 s")
    with_csv("csv-40MB-of-commas", header.encode() + b"\n" + b"," * (40 << 20), "bytes, more than")
    with_csv("csv-2MB-line-of-commas", header + "\n" + "," * (2 << 20) + "\n", "characters, more than")
    with_csv("csv-million-column-header", ",".join(["c"] * 10 ** 6) + "\n" + rows[0] + "\n", "characters, more than")
    with_csv("csv-5000-column-header", header + "," + ",".join(f"x{i}" for i in range(5000)) + "\n" + rows[0] + "\n",
             "columns")
    d = _copy_weld(root, "csv-is-dev-zero", weld, lambda d: ((d / f"{wid}.csv").unlink(),
                                                            (d / f"{wid}.csv").symlink_to("/dev/zero")))
    cases.append(Case("csv-is-dev-zero", "weld", d, "not a regular file", "partial", note=absent("sensor")))
    d = _copy_weld(root, "csv-is-a-fifo", weld, lambda d: ((d / f"{wid}.csv").unlink(), os.mkfifo(d / f"{wid}.csv")))
    cases.append(Case("csv-is-a-fifo", "weld", d, "not a regular file", "partial", note=absent("sensor")))
    for name, text, expect in (("truth-nan", b'{"class": NaN}', "NaN"), ("truth-1e999", b'{"class": 1e999}', "overflow"),
                               ("truth-deep-nesting", b"[" * 200_000 + b"]" * 200_000, "nested")):
        d = _copy_weld(root, name, weld, lambda d, text=text: (d / "truth.json").write_bytes(text))
        cases.append(Case(name, "weld", d, expect, "partial", note=TRUTH_IGNORED))
    return cases


def _round2_video(root: Path, weld: Path) -> list[Case]:
    wid = weld.name

    def with_video(d: Path, make, suffix):
        (d / f"{wid}.avi").unlink()
        make(d / f"{wid}{suffix}")

    d = _copy_weld(root, "video-11min-15fps-with-audio", weld,
                   lambda d: with_video(d, lambda p: _video(p, 9_900, 15, fmt="avi", size=(32, 24), audio_s=2.0), ".avi"))
    cases = [Case("video-11min-15fps-with-audio", "weld", d, "limit of 600 s", "partial", note=absent("video"))]
    d = _copy_weld(root, "video-frame-at-86000s", weld,
                   lambda d: with_video(d, lambda p: _video(p, 120, 15, fmt="matroska", last_pts=86_000 * 15), ".mkv"))
    cases.append(Case("video-frame-at-86000s", "weld", d, "", "ok", max_duration_s=10.0))
    return cases


def _round2_photos(root: Path, weld: Path) -> list[Case]:
    from PIL import Image
    wid = weld.name
    tmp = root / "_photos"
    tmp.mkdir()

    def photos(name: str, src: Path, count: int, expect: str, outcome="error", ext=".jpg", note=None):
        def put(d):
            shutil.rmtree(d / "images")
            (d / "images").mkdir()
            for k in range(count):   # hard links: 64 photos of 60 Mpx take the disk of one
                os.link(src, d / "images" / f"{wid}_{k + 1}{ext}")
        cases.append(Case(name, "weld", _copy_weld(root, name, weld, put), expect, outcome,
                          max_duration_s=10.0 if outcome == "ok" else None, note=note))

    cases: list[Case] = []
    big = tmp / "60mpx.jpg"
    Image.new("RGB", (7745, 7745), (120, 110, 100)).save(big, quality=85)
    photos("photos-64-of-60mpx-jpeg", big, 64, "", "ok")
    big_png = tmp / "60mpx.png"
    Image.new("L", (7745, 7745), 120).save(big_png)
    photos("photos-16-of-60mpx-png", big_png, 16, "pixels to decode", ext=".png")
    over = tmp / "64mpx.png"
    Image.new("1", (8000, 8000), 1).save(over)
    photos("photo-64mpx-over-limit", over, 1, "limit", "partial", ext=".png", note=absent("image"))
    small = tmp / "small.jpg"
    Image.new("RGB", (40, 18), (90, 90, 90)).save(small)
    photos("photos-65-too-many", small, 65, "photos, more than the limit")
    g16 = tmp / "gradient16.png"
    Image.fromarray(np.tile(np.linspace(0, 65535, 800), (360, 1)).astype(np.uint16)).save(g16)
    photos("photo-16bit-grayscale-png", g16, 5, "", "ok", ext=".png")
    return cases


def build_round2(root: Path, weld_dir: Path, dims: dict[str, int]) -> list[Case]:
    """The cases of issue 11 ("Hardening, round 2"), written under `root`; see the module notes."""
    for sub in ("feat", "names", "audio", "csv", "video", "photos"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cases = _round2_features(root / "feat", dims)
    cases += _round2_names(root / "names", weld_dir)
    cases += _round2_audio(root / "audio", weld_dir)
    cases += _round2_csv(root / "csv", weld_dir)
    cases += _round2_video(root / "video", weld_dir)
    cases += _round2_photos(root / "photos", weld_dir)
    return cases


def build_corpus(root: Path, fusion_state_dict: dict, heads: int, dims: dict[str, int], weld_dir: Path,
                 marker: Path, *, round2: bool = False) -> list[Case]:
    """Every case, written under `root` (which must exist and be empty); with `round2`, the
    cases of `build_round2` too."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ck").mkdir()
    (root / "feat").mkdir()
    (root / "weld").mkdir()
    cases = _checkpoints(root / "ck", fusion_state_dict, heads, marker)
    cases += _features(root / "feat", dims, marker)
    cases += _welds(root / "weld", weld_dir)
    if round2:
        cases += build_round2(root / "round2", weld_dir, dims)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


def setup_corpus(d: Path, *, round2: bool = True) -> dict:
    """Everything the CLI cases need, under `d`: a small fusion checkpoint for the feature cases,
    a demo weld model for the weld cases, the good weld, and the corpus built from them.
    {"cases", "good_ck", "weld_ck", "weld", "marker", "dims"} (the tests' fixtures do the same)."""
    from factories import random_module, small_config
    from fusion_core.models.encoders.demo import EncoderConfig
    from fusion_core.models.fusion import FusionConfig
    from fusion_core.training.synth import generate_weld
    from fusion_core.training.train import WeldModel, save_model
    from fusion_core.vocab import MODALITIES
    cfg = small_config(0, num_heads=2)
    sd = random_module(cfg, 0).state_dict()
    good_ck = d / "good.pt"
    torch.save({"model_state_dict": sd, "config": {"num_heads": 2}}, good_ck)
    weld = generate_weld("000102", 2, 0, d / "src")
    torch.manual_seed(0)
    enc = EncoderConfig()
    model = WeldModel(enc, FusionConfig(**{f"{m}_dim": enc.dim(m) for m in MODALITIES}, hidden_dim=16,
                                        num_fusion_tokens=2, num_heads=2), [0, 2, 3])
    weld_ck = d / "weld-model.safetensors"
    save_model(weld_ck, model.eval())
    dims = {m: cfg.input_dim(m) for m in MODALITIES}
    cases = build_corpus(d / "corpus", sd, 2, dims, weld, d / "MARKER", round2=round2)
    return {"cases": cases, "good_ck": good_ck, "weld_ck": weld_ck, "weld": weld, "marker": d / "MARKER",
            "dims": dims}


if __name__ == "__main__":   # write a corpus to look at: python tests/bad_inputs.py OUT_DIR
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from factories import random_module, small_config
    from fusion_core.training.synth import generate_weld
    out = Path(sys.argv[1])
    cfg = small_config(0, num_heads=2)
    w = generate_weld("000102", 2, 0, out / "_weld")
    cs = build_corpus(out / "corpus", random_module(cfg, 0).state_dict(), 2,
                      {m: cfg.input_dim(m) for m in ("video", "image", "audio", "sensor")}, w, out / "MARKER",
                      round2=True)
    print(json.dumps([{"name": c.name, "kind": c.kind, "path": str(c.path)} for c in cs], indent=1))
