"""Behaviour pinned: the explain JSON is byte-identical to files written before the
architecture restructure (issue 13). Each golden was made by the CLI from the repo root
with exactly the arguments below; regenerate one only for a change that is meant to
alter numbers, and say why in the commit.
"""
from __future__ import annotations

import gzip
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


@pytest.mark.parametrize("name", sorted(CASES))
def test_explain_json_is_byte_identical_to_golden(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)            # the JSON records the checkpoint path as given
    out = tmp_path / f"{name}.json"
    assert main(["explain", *CASES[name], "--out", str(out)]) == 0
    want = gzip.decompress((GOLDEN / f"{name}.json.gz").read_bytes())
    got = out.read_bytes()
    if got != want:
        first = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b) if len(got) == len(want) else min(len(got), len(want))
        pytest.fail(f"{name}: output differs from the golden file at byte {first} "
                    f"(got {len(got)} bytes, golden {len(want)}): …{got[max(0, first - 80):first + 80]!r}")
