"""`make sample-data`: the bundled synthetic welds and the two demo checkpoints.

The shipped welds use a seed the demo model never trained or validated on, so the
dashboard's first screen shows the model on welds it has not seen.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .synth import generate_dataset
from .train import make_demo_checkpoints

SAMPLE_SEED = 2026
SAMPLE_COUNT = 14          # two of each of the 7 synthetic classes


def make_sample_data(out: Path, *, count: int = SAMPLE_COUNT, seed: int = SAMPLE_SEED, log=print) -> None:
    """Regenerate `out/` (welds) and `out/checkpoints/` (demo-early, demo-best)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_dir() and (old / "truth.json").exists():
            shutil.rmtree(old)
    generate_dataset(out, count, seed)
    log(f"wrote {count} welds to {out}")
    make_demo_checkpoints(out / "checkpoints", log=log)
