"""The hostile-input corpus (tests/bad_inputs.py, both rounds) through the CLI, one process per
case (tests/hostile_runner.py): how many cases, the largest peak RSS and the longest wall time
of any one of them, and how many the judge fails (0 expected).

Prints hostile_cases=, hostile_max_rss_mb=, hostile_max_s=, hostile_failed=, and the three
slowest and three largest cases as comment lines.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from bad_inputs import setup_corpus  # noqa: E402
from hostile_runner import argv_for, judge, run_cli_cases  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t0 = time.perf_counter()
        setup = setup_corpus(d, round2=True)
        cases = setup["cases"]
        print(f"# built {len(cases)} cases in {time.perf_counter() - t0:.1f} s", flush=True)
        outs = {c.name: d / "out" / f"{c.name}.json" for c in cases}
        jobs = [{"name": c.name, "argv": argv_for(c, setup["good_ck"], setup["weld_ck"], outs[c.name])}
                for c in cases]
        results, children_mb = run_cli_cases(jobs)
        failed = [f for f in (judge(c, results[c.name], outs[c.name]) for c in cases) if f]
        if setup["marker"].exists():
            failed.append("a pickle in the corpus ran code")
    for f in failed:
        print(f"# FAILED {f}")
    rows = sorted(results.values(), key=lambda r: r["seconds"], reverse=True)
    for r in rows[:3]:
        print(f"# slowest: {r['name']} {r['seconds']:.2f} s, {r['max_rss_mb']:.0f} MB")
    for r in sorted(results.values(), key=lambda r: r["max_rss_mb"], reverse=True)[:3]:
        print(f"# largest: {r['name']} {r['max_rss_mb']:.0f} MB, {r['seconds']:.2f} s")
    print(f"hostile_cases={len(cases)}")
    print(f"hostile_max_rss_mb={max(children_mb, max(r['max_rss_mb'] for r in rows)):.0f}")
    print(f"hostile_max_s={rows[0]['seconds']:.2f}")
    print(f"hostile_failed={len(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
