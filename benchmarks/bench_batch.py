"""`batch` at dataset scale on this machine: local vs a naive per-weld loop, Ray vs local, memory, growth.

Prints `name=value` lines:
    batch_welds_per_s, naive_welds_per_s, batch_speedup_vs_naive   (same 100 welds, same checkpoint)
    ray_init_s, ray_over_local, ray_over_local_incl_init          (Ray Data on this one machine)
    peak_rss_{naive,local,ray_driver}_mb, peak_rss_local_children_mb (resource.getrusage, self; children)
    batch_s_{N} for each size, batch_growth_{A}_to_{B}             (time ratio; linear would be B/A)
    batch_marginal_welds_per_s, batch_marginal_speedup_vs_naive, batch_fixed_s
                                                                   (steady state, from smallest to largest run)

Sizes: 100 and 300 welds; BENCH_BATCH_LARGE=1 adds 1,000 (generating them takes ~5 min and
~330 MB, once: welds are cached under .bench/batch/). Each measurement runs in its own
process, so peak memory is that run's alone. The checkpoint is sample_data's demo-best when
present, else one trained here for one epoch at the demo's sizes (the numbers measured are
about throughput, not quality). Seconds include loading the checkpoint and starting workers.
Welds/s count welds, each explained by one checkpoint.

Environment: BENCH_BATCH_SIZES="100,300" to change the sizes, BENCH_BATCH_WORKERS (default:
one per CPU) for the local engine's decoding processes; a local Ray gets as many CPUs.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CACHE = REPO / ".bench" / "batch"
SEED = 2024


def _pool(n: int) -> Path:
    """A folder holding the first n synthetic welds of one fixed sequence (generated once)."""
    import numpy as np

    from fusion_core.training.synth import SUPPORTED_CLASSES, generate_weld
    pool = CACHE / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(SEED).spawn(n)]
    t, made = time.perf_counter(), 0
    for i in range(n):
        code = SUPPORTED_CLASSES[i % len(SUPPORTED_CLASSES)]
        name = f"{i + 1:04d}{code:02d}"
        if not (pool / name / "truth.json").exists():   # truth.json is written last
            shutil.rmtree(pool / name, ignore_errors=True)
            generate_weld(name, code, seeds[i], pool)
            made += 1
    if made:
        print(f"# generated {made} synthetic welds in {time.perf_counter() - t:.0f}s", flush=True)
    return pool


def welds(n: int) -> Path:
    """`.bench/batch/welds-N`: hard links to the pool's first N welds (no copies)."""
    pool = _pool(n)
    out = CACHE / f"welds-{n}"
    names = sorted(p.name for p in pool.iterdir() if p.is_dir())[:n]
    if out.exists() and sorted(p.name for p in out.iterdir()) == names:
        return out
    shutil.rmtree(out, ignore_errors=True)
    for name in names:
        for f in (pool / name).rglob("*"):
            if f.is_file():
                dst = out / f.relative_to(pool)
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(f, dst)
                except OSError:
                    shutil.copy2(f, dst)
    return out


def checkpoint() -> Path:
    demo = REPO / "sample_data" / "checkpoints" / "demo-best.safetensors"
    if demo.exists():
        return demo
    ck = CACHE / "ck" / "demo-best.safetensors"
    if ck.exists():
        from fusion_core.models.checkpoint import load_checkpoint
        from fusion_core.errors import InputError
        try:
            load_checkpoint(ck)
        except InputError:           # trained before the encoders changed: train again
            ck.unlink()
    if not ck.exists():
        from fusion_core.io.containers import load_welds
        from fusion_core.training.train import train
        print("# no sample_data checkpoint: training one epoch at the demo's sizes", flush=True)
        train(load_welds(welds(24)), ck.parent, epochs=1, seed=0, log=lambda *_: None, threads=1)
    return ck


# --------------------------------------------------------------------------- one job per process

def job(kind: str, samples: str, ck: str, out: str, workers: int) -> dict:
    t0 = time.perf_counter()
    extra = {}
    if kind == "naive":
        import torch

        from fusion_core.batch.engines import naive_run
        # One thread, as batch's model side uses: on a busy machine torch's default
        # threads can be many times slower, which would flatter batch.
        torch.set_num_threads(1)
        n = len({r["weld_id"] for r in naive_run([ck], samples)})
    else:
        from fusion_core.batch.engines import run_batch
        if kind == "ray":
            import ray
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     object_store_memory=256 * 1024 ** 2,
                     runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
            extra["init_s"] = time.perf_counter() - t0
        try:
            s = run_batch([ck], samples, out, engine=kind, workers=workers)
        finally:
            if kind == "ray":
                ray.shutdown()
        n = s.welds
        assert s.errors == 0 and s.total_rows == n, s
    seconds = time.perf_counter() - t0
    kb = 1024  # ru_maxrss is in KiB on Linux
    return {"seconds": seconds, "welds": n, **extra,
            "rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb,
            "rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb}


def run_job(kind: str, samples: Path, ck: Path, workers: int) -> dict:
    out = CACHE / "out" / f"{kind}-{samples.name}" / "results.parquet"
    shutil.rmtree(out.parent, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, __file__, "--job", kind, str(samples), str(ck), str(out), str(workers)],
                       cwd=REPO, env=env, capture_output=True, text=True)
    if r.returncode:
        sys.stderr.write(r.stderr[-4000:])
        raise SystemExit(f"{kind} job failed (exit {r.returncode})")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"# {kind:5s} {res['welds']:5d} welds  {res['seconds']:7.1f}s  "
          f"rss self {res['rss_self_mb']:.0f} MB, children {res['rss_children_mb']:.0f} MB", flush=True)
    return res


def setup(sizes: list[int]) -> dict:
    """Welds and checkpoint, in a process of their own: the driver stays small, so what its
    children report as peak memory is theirs (Linux carries a parent's high-water mark into
    a forked child)."""
    ck = checkpoint()
    return {"checkpoint": str(ck), "welds": {str(n): str(welds(n)) for n in sizes}}


def main() -> None:
    sizes = [int(s) for s in os.environ.get("BENCH_BATCH_SIZES", "100,300").split(",") if s.strip()]
    if os.environ.get("BENCH_BATCH_LARGE") == "1" and 1000 not in sizes:
        sizes.append(1000)
    sizes = sorted(set(sizes))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = int(os.environ.get("BENCH_BATCH_WORKERS", cpus))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, __file__, "--setup", ",".join(map(str, sizes))], cwd=REPO, env=env,
                       stdout=subprocess.PIPE, text=True)
    if r.returncode:
        raise SystemExit(f"setup failed (exit {r.returncode})")
    lines = r.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line, flush=True)
    got = json.loads(lines[-1])
    ck, dirs = Path(got["checkpoint"]), {int(k): Path(v) for k, v in got["welds"].items()}
    print(f"# load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {cpus} CPUs before the runs "
          "(other work on the machine slows every figure)", flush=True)
    print(f"# checkpoint {ck.relative_to(REPO)}; {cpus} CPUs; local: {workers} decoding workers + the model "
          f"in the main process; ray: {workers} CPUs (decoding tasks + one model actor)", flush=True)

    n0 = sizes[0]
    naive = run_job("naive", dirs[n0], ck, 0)
    local = {n0: run_job("local", dirs[n0], ck, workers)}
    ray_res = None
    try:
        import importlib.util
        if importlib.util.find_spec("ray") is None:
            raise ImportError
        ray_res = run_job("ray", dirs[n0], ck, workers)
    except ImportError:
        print("# ray is not installed: skipping the Ray figures", flush=True)
    for n in sizes[1:]:
        local[n] = run_job("local", dirs[n], ck, workers)

    print(f"# load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} after the runs", flush=True)
    lr = local[n0]
    print(f"batch_welds={n0}")
    print(f"batch_welds_per_s={n0 / lr['seconds']:.3f}")
    print(f"naive_welds_per_s={n0 / naive['seconds']:.3f}")
    print(f"batch_speedup_vs_naive={naive['seconds'] / lr['seconds']:.2f}")
    if ray_res:
        run_s = ray_res["seconds"] - ray_res["init_s"]
        print(f"ray_init_s={ray_res['init_s']:.1f}")
        print(f"ray_over_local={run_s / lr['seconds']:.2f}")
        print(f"ray_over_local_incl_init={ray_res['seconds'] / lr['seconds']:.2f}")
        print(f"peak_rss_ray_driver_mb={ray_res['rss_self_mb']:.0f}")
    print(f"peak_rss_naive_mb={naive['rss_self_mb']:.0f}")
    print(f"peak_rss_local_mb={max(r['rss_self_mb'] for r in local.values()):.0f}")
    print(f"peak_rss_local_children_mb={max(r['rss_children_mb'] for r in local.values()):.0f}")
    for n in sizes:
        print(f"batch_s_{n}={local[n]['seconds']:.1f}")
    for a, b in zip(sizes, sizes[1:]):
        print(f"batch_growth_{a}_to_{b}={local[b]['seconds'] / local[a]['seconds']:.2f}")
    if len(sizes) > 1:
        # Steady state: welds/s between the smallest and the largest run, which cancels the
        # fixed cost (starting workers that import torch, loading the checkpoint, consolidating).
        a, b = sizes[0], sizes[-1]
        marginal = (b - a) / max(local[b]["seconds"] - local[a]["seconds"], 1e-9)
        print(f"batch_marginal_welds_per_s={marginal:.3f}")
        print(f"batch_marginal_speedup_vs_naive={marginal / (n0 / naive['seconds']):.2f}")
        print(f"batch_fixed_s={max(0.0, local[a]['seconds'] - a / marginal):.1f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--job":
        kind, samples, ck, out, workers = sys.argv[2:7]
        print(json.dumps(job(kind, samples, ck, out, int(workers))))
    elif len(sys.argv) > 1 and sys.argv[1] == "--setup":
        print(json.dumps(setup([int(s) for s in sys.argv[2].split(",")])))
    else:
        main()
