"""Run hostile-input cases through the CLI, each in its own process, and judge them.

Each case runs as `fusion_core.cli.main(argv)`, which is what `python -m fusion_core` runs,
in a process of its own, and is measured: exit code, stderr, wall time, peak RSS. Starting
the interpreter and importing torch takes several seconds on a loaded CI machine, so the
runner (`python tests/hostile_runner.py JOBS.json`) imports the CLI once and forks one child
per case; a job marked "fresh" runs `python -m fusion_core ...` itself instead, to check that
both measure the same. Each child is reaped with `os.wait4`, which gives its own peak RSS
(pages it shares with the runner count, as a fresh interpreter's own imports would). The
runner prints one JSON line per case, then its `resource.getrusage(RUSAGE_CHILDREN)`: the
largest child's peak RSS.

Why measure in a small runner, not in pytest: a child started by `subprocess` (vfork, then
exec) is charged the peak RSS of the process that started it, so a child of a big pytest
process would report pytest's peak, not its own.

`judge(case, result, out)` says what is wrong with a result, or None.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_RSS_MB = 1536            # 1.5 GB: no case may take more
CASE_TIMEOUT_S = 180


def argv_for(case, checkpoint_for_features: Path, checkpoint_for_welds: Path, out: Path) -> list[str]:
    """The CLI arguments that feed a corpus case to the CLI."""
    if case.kind == "checkpoint":
        return ["info", str(case.path)]
    if case.kind == "features":
        return ["explain", "--checkpoint", str(checkpoint_for_features), "--features", str(case.path),
                "--out", str(out)]
    return ["explain", "--checkpoint", str(checkpoint_for_welds), "--sample", str(case.path), "--out", str(out)]


def run_cli_cases(jobs: list[dict], timeout_s: float = CASE_TIMEOUT_S) -> tuple[dict[str, dict], float]:
    """({name: {"code", "stderr", "seconds", "max_rss_mb"}}, the runner's RUSAGE_CHILDREN peak in MB)
    for jobs [{"name", "argv", "fresh": optional bool}], each run in its own process (see the
    module notes)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "jobs.json"
        spec.write_text(json.dumps({"jobs": jobs, "timeout_s": timeout_s}))
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(spec)], cwd=REPO,
                           capture_output=True, text=True, timeout=timeout_s * len(jobs) + 300)
    if r.returncode != 0:
        raise RuntimeError(f"hostile runner failed (exit {r.returncode}): {r.stderr[-2000:]}")
    results, children_mb = {}, float("nan")
    for line in r.stdout.splitlines():
        if line.startswith('{"name"'):
            row = json.loads(line)
            results[row["name"]] = row
        elif line.startswith('{"runner_children_max_rss_mb"'):
            children_mb = json.loads(line)["runner_children_max_rss_mb"]
    return results, children_mb


def judge(case, result: dict, out: Path) -> str | None:
    """What is wrong with a case's result, or None. An "error" case: exit 2, exactly one stderr
    line that shows the file and the expected phrase, no traceback, no output written. An "ok"
    case: exit 0, a finite JSON output whose time spans end by `case.max_duration_s`. A
    "partial" case: exit 0 and a note on the flawed file (`judge_partial`). All: peak RSS
    under 1.5 GB."""
    err = result["stderr"]
    problems = []
    if result["max_rss_mb"] >= MAX_RSS_MB:
        problems.append(f"peak RSS {result['max_rss_mb']:.0f} MB")
    if "Traceback" in err:
        problems.append("traceback")
    if case.outcome == "ok":
        problems += _judge_ok(case, result, out)
    elif case.outcome == "partial":
        problems += judge_partial(case, result["code"], out)
    else:
        shows = case.shows if case.shows is not None else None
        named = (shows in err) if shows is not None else (case.path.name in err or case.path.parent.name in err)
        if result["code"] != 2:
            problems.append(f"exit {result['code']}")
        if err.count("\n") != 1 or not err.endswith("\n"):
            problems.append(f"{err.count(chr(10))} stderr lines")
        if not named:
            problems.append("does not name the file")
        if case.expect.lower() not in err.lower():
            problems.append(f"no {case.expect!r}")
        if out.exists():
            problems.append("wrote an output")
    return f"{case.name}: {', '.join(problems)}; stderr {err!r}"[:1500] if problems else None


def judge_partial(case, code: int, out: Path) -> list[str]:
    """A weld read without its flawed file: exit 0, and the output's notes hold one that starts
    with `case.note`, says `case.expect` and shows the file (as an error would); a modality the
    note says is "treated as absent" is missing in every result, with every contribution 0."""
    if code != 0:
        return [f"exit {code}"]
    if not out.exists():
        return ["no output"]
    payload = json.loads(out.read_text())
    shows = [case.shows] if case.shows is not None else [case.path.name, case.path.parent.name]
    notes = [n for n in payload.get("notes", []) if n.startswith(case.note)]
    if not any(case.expect.lower() in n.lower() and any(s in n for s in shows) for n in notes):
        return [f"no note {case.note!r}… saying {case.expect!r}: {payload.get('notes')}"]
    if "treated as absent" in case.note:
        m = case.note.split()[0]
        for r in payload["results"]:
            if m not in r["missing"] or any(c[m] != 0 for c in r["contributions"].values()):
                return [f"{m} is not absent: missing {r['missing']}, contributions {r['contributions']}"]
    return []


def _judge_ok(case, result: dict, out: Path) -> list[str]:
    if result["code"] != 0:
        return [f"exit {result['code']}"]
    if not out.exists():
        return ["no output"]

    def no_constant(name):
        raise ValueError(f"{name} in the output")
    try:
        payload = json.loads(out.read_text(), parse_constant=no_constant)
    except ValueError as e:
        return [f"output is not finite JSON ({e})"]
    if case.max_duration_s is None:
        return []
    ends = [p.get("t1", 0.0) for r in payload.get("results", []) for ps in r.get("positions", {}).values() for p in ps]
    if not ends or max(ends) > case.max_duration_s + 1e-6:
        return [f"time spans end at {max(ends, default=None)} s, expected ≤ {case.max_duration_s}"]
    return []


# =========================================================================== the runner process


def _reap(pid: int, deadline: float) -> tuple[int, int]:
    """(exit code, peak RSS in KB) of a child, killed at the deadline (code -9)."""
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        if got:
            code = os.waitstatus_to_exitcode(status)
            return code, usage.ru_maxrss
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            return -9, usage.ru_maxrss
        time.sleep(0.02)


def _child(argv: list[str], err_path: str) -> None:
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    code = 1
    try:
        from fusion_core.cli import main
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:   # noqa: BLE001 (a child must always exit; the traceback is the finding)
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _runner(spec_path: str) -> None:
    import av  # noqa: F401  (imported once here, not in every child)
    import PIL.Image  # noqa: F401
    import soundfile  # noqa: F401
    import fusion_core.cli  # noqa: F401
    spec = json.loads(Path(spec_path).read_text())
    err_path = str(Path(spec_path).with_suffix(".err"))
    for job in spec["jobs"]:
        t0 = time.perf_counter()
        proc = None
        if job.get("fresh"):
            with open(err_path, "wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", "fusion_core", *job["argv"]], cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=err)
            pid = proc.pid
        else:
            pid = os.fork()
            if pid == 0:
                _child(job["argv"], err_path)
        code, rss_kb = _reap(pid, t0 + spec["timeout_s"])
        if proc is not None:
            proc.returncode = code     # reaped here, so that Popen does not wait for it again
        seconds = time.perf_counter() - t0
        stderr = Path(err_path).read_bytes().decode("utf-8", "replace")
        print(json.dumps({"name": job["name"], "code": code, "stderr": stderr, "seconds": round(seconds, 3),
                          "max_rss_mb": round(rss_kb / 1024, 1)}), flush=True)
    print(json.dumps({"runner_children_max_rss_mb":
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    _runner(sys.argv[1])
