"""Run every benchmarks/bench_*.py in name order, each in its own process from the repo
root, and print a summary of their `name=value` lines. Exit status is non-zero if any
benchmark failed; the others still run.

Usage: python benchmarks/run_all.py [substring ...]   (only benchmarks whose file name
contains one of the substrings)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULT = re.compile(r"^[A-Za-z_][\w.\-]*=\S+$")


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(a in s.name for a in argv)]
    env = dict(os.environ)
    # Scripts run by path get their own folder on sys.path; add the repo root for fusion_core.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    results: list[str] = []
    failed: list[str] = []
    for script in scripts:
        print(f"# {script.name}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:  # stream, so long benchmarks show progress
            print(line, end="", flush=True)
            if RESULT.match(line.strip()):
                results.append(line.strip())
        rc = proc.wait()
        print(f"# {script.name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} "
              f"in {time.perf_counter() - t0:.1f}s", flush=True)
        if rc:
            failed.append(script.name)
    print("# summary")
    for line in results:
        print(line)
    if failed:
        print(f"# failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
