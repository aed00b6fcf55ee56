"""Soak: N sequential explanations of N different uploads; the app's resident memory must level off.

    .venv/bin/python benchmarks/bench_soak.py [--steps 200] [--every 20] [--bound-mb 800]

Driven in-process through streamlit.testing (AppTest): one session on the Explore page
uploads, step after step, a zip of a sample weld whose CSV has a different Remarks cell
(so the weld digest differs and every step is a cache miss: a real decode, explanation and
randomized-weights explanation, and a full page of figures). The browser is too slow for
200 steps on two shared cores (about 4 s a step), so the "server" here is this process: the
Streamlit runtime, caches and page scripts are the same code `streamlit run` executes; only
the websocket/HTTP layer is missing. RSS is read from /proc/self/status (VmRSS), or psutil.

Prints soak_rss_mb_start / _peak / _end, soak_rss_mb_at_<n>= every --every steps, the
per-entry sizes of what the caches hold and the resulting byte bound, and exits 1 when the
peak is above --bound-mb or RSS kept growing over the second half.
"""
from __future__ import annotations

import argparse
import io
import os
import pickle
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))          # test_app_support: the test data and its stand-in


def rss_mb() -> float:
    try:
        import psutil  # type: ignore
        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def variant_zip(folder: Path, n: int) -> bytes:
    """The weld folder zipped, its CSV's first Remarks cell set to `soak-<n>`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if not p.is_file():
                continue
            data = p.read_bytes()
            if p.suffix.lower() == ".csv":
                head, first, rest = data.split(b"\n", 2)
                data = b"\n".join([head, first.rstrip(b"\r") + f"soak-{n}".encode(), rest])
            z.writestr(f"{folder.name}/{p.relative_to(folder).as_posix()}", data)
    return buf.getvalue()


def cache_bounds(weld, exp, ck) -> list[str]:
    """What each cache holds per entry (measured on this run's objects) × its max_entries."""
    import numpy as np

    def nbytes(obj, seen=None) -> int:
        seen = seen if seen is not None else set()
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            return obj.nbytes
        if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
            return obj.element_size() * obj.nelement()
        if isinstance(obj, (bytes, bytearray)):
            return len(obj)
        if isinstance(obj, dict):
            return sum(nbytes(v, seen) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(nbytes(v, seen) for v in obj)
        if hasattr(obj, "to_numpy") and hasattr(obj, "memory_usage"):
            return int(obj.memory_usage(deep=True).sum())
        if hasattr(obj, "__dict__"):
            return sum(nbytes(v, seen) for v in vars(obj).values())
        return 0

    w = nbytes(weld) / 2**20
    e = len(pickle.dumps(exp)) / 2**20
    c = sum(p.numel() * p.element_size() for part in (ck.fusion, ck.classifier, ck.encoders) if part is not None
            for p in part.parameters()) / 2**20
    rows = [("_weld_folder (sample welds)", 32, w), ("_zip_welds (uploaded zips, 1 weld each here)", 8, w),
            ("_files_weld (uploaded weld files)", 8, w), ("_weld_set (folders of welds)", 4, 14 * w),
            ("_explain_chunk (explanations, ≤8 welds a chunk)", 32, 8 * e),
            ("_explain_features", 32, e), ("_checkpoint", 4, c), ("_randomized", 2, c)]
    total = sum(n * s for _, n, s in rows)
    out = [f"cache {name}: ≤{n} entries × {s:.2f} MB = {n * s:.1f} MB" for name, n, s in rows]
    out.append(f"cache_bytes_bound_mb={total:.0f}  (weld {w:.2f} MB, one-weld explanation {e:.3f} MB, "
               f"checkpoint {c:.2f} MB; decoded welds are bounded by fusion_core.io.limits: "
               f"≤48 video frames of ≤160 px, photos ≤400 px)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--bound-mb", type=float, default=800.0,
                    help="fail above this peak RSS: start (~440 MB) + the caches' byte bound (~370 MB)")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="stop early after this long")
    args = ap.parse_args(argv)

    from test_app_support import MAIN, data_root, weld_dirs
    from streamlit.testing.v1 import AppTest

    root = data_root()
    if root != REPO / "sample_data":
        os.environ["WELD_DASHBOARD_DATA"] = str(root)
    folders = weld_dirs(root)
    from app import services

    # Count the model runs behind the page (the explanation functions as the services call them).
    explains = []
    for owner, name in ((services.core_welds, "explain_welds"), (services.core_engine, "explain")):
        real = getattr(owner, name)
        setattr(owner, name, lambda *a, _real=real, **k: explains.append(1) or _real(*a, **k))

    at = AppTest.from_file(MAIN, default_timeout=180).run()
    at.radio(key="explore_weld_source").set_value("Upload a zip").run()
    start = rss_mb()
    print(f"soak_rss_mb_start={start:.1f}", flush=True)
    curve, peak, t0 = [], start, time.monotonic()
    explains0 = len(explains)
    done = 0
    for n in range(1, args.steps + 1):
        folder = folders[n % len(folders)]
        at.file_uploader(key="explore_zip").set_value((f"soak-{n:03d}.zip", variant_zip(folder, n), "application/zip"))
        at.run()
        if at.exception or at.error:
            print(f"step {n}: {[str(e.value) for e in at.exception] or [str(e.value) for e in at.error]}")
            return 1
        assert at.title[0].value == f"Weld {folder.name}", at.title[0].value
        r = rss_mb()
        peak = max(peak, r)
        curve.append(r)
        done = n
        if n % args.every == 0:
            print(f"soak_rss_mb_at_{n}={r:.1f}  ({time.monotonic() - t0:.0f}s)", flush=True)
        if time.monotonic() - t0 > args.max_seconds:
            print(f"stopped after {n} steps: --max-seconds {args.max_seconds:.0f} reached")
            break
    end = curve[-1] if curve else start
    print(f"soak_steps={done}")
    print(f"soak_explanations={len(explains) - explains0}  (real + randomized-weights, all cache misses)")
    print(f"soak_seconds={time.monotonic() - t0:.0f}")
    print(f"soak_rss_mb_start={start:.1f}")
    print(f"soak_rss_mb_peak={peak:.1f}")
    print(f"soak_rss_mb_end={end:.1f}")
    half = curve[len(curve) // 2:]
    growth = (half[-1] - half[0]) if len(half) > 1 else 0.0
    print(f"soak_rss_mb_growth_second_half={growth:.1f}")

    ck, wi, _, _ = at.session_state["explore_good"]
    exp = services.explain_welds(ck, [wi.weld])
    for line in cache_bounds(wi.weld, exp, ck):
        print(line)
    ok = peak <= args.bound_mb and growth <= 0.1 * args.bound_mb
    print(f"soak_bound_mb={args.bound_mb:.0f} {'OK' if ok else 'EXCEEDED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
