"""A corpus of hostile and broken inputs, built on the fly (no binaries in git).

`build_corpus(root, good_weld_dir, marker)` writes every case under `root` and returns
`Case`s: what kind of input it is (checkpoint, features, weld), its path, and a phrase
the error message must contain. Used by the CLI tests and the app tests alike.
Pickles that would run code all try to create `marker`; it must never appear.
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


def _features(root: Path, dims: dict[str, int], marker: Path) -> list[Case]:
    rng = np.random.default_rng(0)
    good = {m: rng.normal(size=(3, d)).astype(np.float32) for m, d in dims.items()}
    cases = []

    def npz(name, expect, **arrays):
        p = root / f"{name}.npz"
        np.savez(p, **arrays)
        cases.append(Case(name, "features", p, expect))

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

    def add(name, path, expect):
        cases.append(Case(name, "weld", path, expect))

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
    add("avi-corrupt", weld_dir("avi-corrupt", corrupt(".avi", avi[:64] + os.urandom(len(avi) - 64))), ".avi")
    add("avi-empty", weld_dir("avi-empty", corrupt(".avi", b"")), "empty")
    add("avi-truncated", weld_dir("avi-trunc", corrupt(".avi", avi[: len(avi) // 3])), ".avi")
    add("flac-corrupt", weld_dir("flac-corrupt", corrupt(".flac", flac[:42] + os.urandom(4000))), ".flac")
    add("flac-empty", weld_dir("flac-empty", corrupt(".flac", b"")), "empty")
    jpg = sorted(k for k in files if k.startswith("images/"))[0]

    def bad_jpg(d):
        (d / jpg).write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(700))
    add("jpeg-corrupt", weld_dir("jpeg-corrupt", bad_jpg), "image")
    csv = files[f"{wid}.csv"].decode()
    header, *rows = csv.splitlines()

    def csv_mut(text):
        def f(d):
            (d / f"{wid}.csv").write_text(text)
        return f
    cols = header.split(",")
    no_current = [",".join(c for i, c in enumerate(r.split(",")) if cols[i] != "Primary Weld Current")
                  for r in [header] + rows]
    add("csv-missing-channel", weld_dir("csv-missing", csv_mut("\n".join(no_current))), "Primary Weld Current")
    cur = cols.index("Primary Weld Current")
    bad_row = rows[5].split(",")
    bad_row[cur] = "n/a (sensor fault)"
    add("csv-text-cell", weld_dir("csv-text", csv_mut("\n".join([header] + rows[:5] + [",".join(bad_row)] + rows[6:]))),
        "row")
    nan_row = rows[7].split(",")
    nan_row[cols.index("Secondary Weld Voltage")] = ""
    add("csv-empty-cell", weld_dir("csv-nan", csv_mut("\n".join([header] + rows[:7] + [",".join(nan_row)] + rows[8:]))),
        "row")
    add("csv-header-only", weld_dir("csv-header", csv_mut(header + "\n")), ".csv")
    big = header + "\n" + "\n".join([rows[0]] * 250_001)
    add("csv-too-many-rows", weld_dir("csv-big", csv_mut(big)), "rows")
    add("csv-binary", weld_dir("csv-binary", lambda d: (d / f"{wid}.csv").write_bytes(os.urandom(3000))), ".csv")

    def only_stray(d):
        for p in list(d.iterdir()):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        (d / "notes.txt").write_text("operator notes")
    add("weld-no-modality", weld_dir("no-modality", only_stray), "no ")
    add("weld-missing-path", root / "no-such-weld", "no such file")
    return cases


def build_corpus(root: Path, fusion_state_dict: dict, heads: int, dims: dict[str, int], weld_dir: Path,
                 marker: Path) -> list[Case]:
    """Every case, written under `root` (which must exist and be empty)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ck").mkdir()
    (root / "feat").mkdir()
    (root / "weld").mkdir()
    cases = _checkpoints(root / "ck", fusion_state_dict, heads, marker)
    cases += _features(root / "feat", dims, marker)
    cases += _welds(root / "weld", weld_dir)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


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
                      {m: cfg.input_dim(m) for m in ("video", "image", "audio", "sensor")}, w, out / "MARKER")
    print(json.dumps([{"name": c.name, "kind": c.kind, "path": str(c.path)} for c in cs], indent=1))
