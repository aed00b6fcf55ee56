"""Soak: N sequential explanations of N different uploads; the app's resident memory must level off.

    .venv/bin/python benchmarks/bench_soak.py [--steps 200] [--every 20] [--bound-mb 800]

Driven in-process through streamlit.testing (AppTest): one session on the Explore page
uploads, step after step, a zip of a sample weld whose CSV has a different Remarks cell
(so the weld digest differs and every step is a cache miss: a real decode, explanation and
randomized-weights explanation, and a full page of figures). The browser is too slow for
200 steps on two shared cores (about 4 s a step), so the "server" here is this process: the
Streamlit runtime, caches and page scripts are the same code `streamlit run` executes; only
the websocket/HTTP layer is missing. RSS is read from /proc/self/status (VmRSS), or psutil.

Prints soak_rss_mb_start / _peak / _end, soak_rss_mb_at_<n>= every --every steps, what the
app's byte-bounded caches hold against their budget (run with --cache-mb, default 256 MB, so
that the uploads must evict), and exits 1 when the peak is above start + cache budget + slack
or RSS kept growing over the second half.
"""
from __future__ import annotations

import argparse
import io
import os
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


def cache_usage() -> list[str]:
    """What the app's byte-bounded caches (app/caches.py) hold now, against their budgets."""
    from app import caches
    out = [f"cache {name}: {n} entries, {kept / 2**20:.1f} MB of {budget / 2**20:.0f} MB"
           for name, (n, kept, budget) in caches.usage().items()]
    out.append(f"cache_budget_mb={caches.budget_bytes() / 2**20:.0f}  (${caches.CACHE_ENV})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--cache-mb", type=float, default=256.0,
                    help="the app's cache budget for this run ($WELD_DASHBOARD_CACHE_MB; the server's default "
                         "is 2048): small, so 200 distinct uploads must evict")
    ap.add_argument("--slack-mb", type=float, default=250.0,
                    help="allowed above start + cache budget: what a page run and one explanation hold")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="stop early after this long")
    args = ap.parse_args(argv)

    os.environ["WELD_DASHBOARD_CACHE_MB"] = str(args.cache_mb)      # before app.caches reads it
    from test_app_support import data_root, new_app, weld_dirs

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

    at = new_app(timeout=180).run()       # the whole page each run (the first paint counted as reported)
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
    print(f"soak_explanations={len(explains) - explains0}  (model runs behind the page, all cache misses)")
    print(f"soak_seconds={time.monotonic() - t0:.0f}")
    print(f"soak_rss_mb_start={start:.1f}")
    print(f"soak_rss_mb_peak={peak:.1f}")
    print(f"soak_rss_mb_end={end:.1f}")
    half = curve[len(curve) // 2:]
    growth = (half[-1] - half[0]) if len(half) > 1 else 0.0
    print(f"soak_rss_mb_growth_second_half={growth:.1f}")

    for line in cache_usage():
        print(line)
    # Resident memory may exceed the start by the caches' budget and one page's working set, and
    # must level off (the caches evict): a second half that grows is a leak outside the caches.
    bound = start + args.cache_mb + args.slack_mb
    ok = peak <= bound and growth <= 0.1 * (args.cache_mb + args.slack_mb)
    print(f"soak_bound_mb={bound:.0f} {'OK' if ok else 'EXCEEDED'}  (start + cache budget + slack)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
