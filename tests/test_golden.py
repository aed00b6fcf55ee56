"""Behaviour pinned: the explain JSON equals files written before the architecture
restructure (issue 13). Each golden was made by the CLI from the repo root with exactly the
arguments below; regenerate one only for a change that is meant to alter numbers, and say
why in the commit.

Every key, string, integer and list length must be identical; floats must agree within
1e-4 relative (1e-5 absolute). Byte identity held on the machine that wrote the goldens, but
another CPU takes other SIMD paths through the same torch build and sums float32 products in
another order: on the next machine 53,624 of 282,643 numbers of one golden moved, by at most
2.4e-5 relative (23.9711533 → 23.9713306). A behaviour change moves them far more.
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from fusion_core.cli import main

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"

CASES = {
    "explain_demo_best": ["--checkpoint", "sample_data/checkpoints/demo-best.safetensors", "--samples", "sample_data"],
    "explain_demo_early_refmean_cosine": ["--checkpoint", "sample_data/checkpoints/demo-early.safetensors",
                                          "--samples", "sample_data", "--baseline", "reference-mean",
                                          "--target", "cosine"],
    "explain_dummy_seed_auto": ["--checkpoint", "tests/golden/dummy_seed.safetensors",
                                "--features", "tests/golden/features.npz"],
    "explain_fusion_v2_h4_auto": ["--checkpoint", "tests/golden/fusion_v2_h4.safetensors",
                                  "--features", "tests/golden/features.npz"],
}


ATOL, RTOL = 1e-5, 1e-4


def differences(got, want, path: str = "$", out: list | None = None) -> list[str]:
    """Where two parsed JSON documents differ beyond float rounding (first 10 places)."""
    out = [] if out is None else out
    if len(out) >= 10:
        return out
    if isinstance(want, float) or isinstance(got, float):
        ok = isinstance(got, (int, float)) and isinstance(want, (int, float)) and not isinstance(got, bool) and (
            math.isclose(got, want, rel_tol=RTOL, abs_tol=ATOL) or (math.isnan(got) and math.isnan(want)))
        if not ok:
            out.append(f"{path}: {got!r} vs golden {want!r}")
    elif isinstance(want, dict):
        if not isinstance(got, dict) or list(got) != list(want):
            out.append(f"{path}: keys {list(got)[:8] if isinstance(got, dict) else type(got).__name__} vs "
                       f"golden {list(want)[:8]}")
        else:
            for k in want:
                differences(got[k], want[k], f"{path}.{k}", out)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            out.append(f"{path}: {type(got).__name__} of {len(got) if isinstance(got, list) else '-'} vs "
                       f"golden list of {len(want)}")
        else:
            for i, (a, b) in enumerate(zip(got, want)):
                differences(a, b, f"{path}[{i}]", out)
    elif got != want or type(got) is not type(want):
        out.append(f"{path}: {got!r} vs golden {want!r}")
    return out


def test_the_comparison_catches_a_changed_number_key_or_string():
    base = {"a": [0.1234567, 2, "x"], "b": {"c": None}}
    assert differences(json.loads(json.dumps(base)), base) == []
    assert differences({"a": [0.1234597, 2, "x"], "b": {"c": None}}, base) == []      # summation order
    assert differences({"a": [0.1236, 2, "x"], "b": {"c": None}}, base)                # a real change
    assert differences({"a": [0.1234567, 3, "x"], "b": {"c": None}}, base)
    assert differences({"a": [0.1234567, 2, "y"], "b": {"c": None}}, base)
    assert differences({"a": [0.1234567, 2], "b": {"c": None}}, base)
    assert differences({"a": [0.1234567, 2, "x"], "b": {"d": None}}, base)


@pytest.mark.parametrize("name", sorted(CASES))
def test_explain_json_matches_golden(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)            # the JSON records the checkpoint path as given
    out = tmp_path / f"{name}.json"
    assert main(["explain", *CASES[name], "--out", str(out)]) == 0
    want = json.loads(gzip.decompress((GOLDEN / f"{name}.json.gz").read_bytes()))
    got = json.loads(out.read_bytes())
    diff = differences(got, want)
    if diff:
        pytest.fail(f"{name}: output differs from the golden file:\n" + "\n".join(diff))
