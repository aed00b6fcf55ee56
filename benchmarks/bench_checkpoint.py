"""Peak memory of `info` and `explain` on a 5 GB upstream-style training checkpoint.

The file is what upstream's train.py writes for a full QuadModalSOTAModel with frozen
backbones: a training dict whose model_state_dict holds ~5 GB of encoder weights beside the
fusion (hidden 384, 2 tokens, 4 heads) and feature_norm. Only the fusion is needed to
explain feature files, so the loader memory-maps the file and keeps only that. Each command
runs in its own process; peak RSS is that process's VmHWM (/proc/self/status), which starts
afresh at exec (ru_maxrss does not: Linux carries the parent's high-water mark across
exec, so it would report the bench's own memory). Also reported: a process importing the
CLI and doing nothing (the floor every command pays).

Set BENCH_CHECKPOINT_GB to change the file size (default 5.0); the file is written to a
temporary folder and deleted afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fusion_core.vocab import MODALITIES

GB = float(os.environ.get("BENCH_CHECKPOINT_GB", "5.0"))
DIMS = {"video": 1024, "image": 1280, "audio": 768, "sensor": 128}       # upstream's encoder widths
BACKBONES = {"video_encoder.model": 0.24, "image_encoder.backbone": 0.67, "audio_encoder.model": 0.07,
             "sensor_encoder": 0.02}          # shares of the file, as V-JEPA 2 L / DINOv3 H+ / AST / sensor


def write_checkpoint(path: Path) -> None:
    import numpy as np
    import torch

    from fusion_core.models.fusion import CrossAttentionFusionModule, FusionConfig
    torch.manual_seed(0)
    fusion = CrossAttentionFusionModule(FusionConfig(**{f"{m}_dim": d for m, d in DIMS.items()}, hidden_dim=384,
                                                     num_fusion_tokens=2, num_heads=4, dropout=0.2))
    sd = {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    sd["feature_norm.weight"], sd["feature_norm.bias"] = torch.ones(384), torch.zeros(384)
    chunk = 64 * 1024 ** 2 // 4                 # 64 MB tensors, like transformer layers
    for prefix, share in BACKBONES.items():
        n = max(1, round(GB * 1e9 * share / (chunk * 4)))
        for i in range(n):
            sd[f"{prefix}.layer.{i}.weight"] = torch.full((chunk,), 0.01 * (i % 7))
    torch.save({"epoch": 99, "global_step": 12345, "model_state_dict": sd, "optimizer_state_dict": {},
                "best_metric": np.float64(0.9), "config": {"learning_rate": 1e-4}}, path)


VMHWM = ("def vmhwm_kb():\n    for line in open('/proc/self/status'):\n"
         "        if line.startswith('VmHWM:'):\n            return int(line.split()[1])\n")


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one command in a fresh process."""
    code = ("import runpy, sys; sys.argv = ['fusion_core'] + sys.argv[1:];\n"
            "try:\n    runpy.run_module('fusion_core', run_name='__main__')\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print('RSS', vmhwm_kb(), file=sys.stderr)")
    code = VMHWM + code
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    rss = [line for line in proc.stderr.splitlines() if line.startswith("RSS ")]
    if proc.returncode or not rss:
        raise SystemExit(f"{args[0]} failed: {proc.stderr[-2000:]}")
    return int(rss[-1].split()[1]) / 1024, seconds


def write_features(path: Path) -> None:
    """Four welds at upstream's real token counts (V-JEPA 256, DINOv3 201, AST 1214, sensor 256)."""
    import numpy as np
    rng = np.random.default_rng(0)
    lengths = {"video": 256, "image": 201, "audio": 1214, "sensor": 256}
    np.savez(path, **{m: rng.normal(size=(4, lengths[m], DIMS[m])).astype(np.float32) for m in MODALITIES})


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        path = Path(tmp) / "best_model.pth"
        t = time.perf_counter()
        # Written by a child: this process stays small, so nothing of it shows in the measurements.
        subprocess.run([sys.executable, __file__, "--write", str(path)], check=True)
        size_gb = path.stat().st_size / 1e9
        print(f"# wrote {size_gb:.2f} GB in {time.perf_counter() - t:.0f} s", flush=True)
        feats = Path(tmp) / "features.npz"
        write_features(feats)
        floor = subprocess.run([sys.executable, "-c", "import resource, torch, fusion_core.cli; "
                                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                               capture_output=True, text=True, check=True)
        info_mb, info_s = peak_rss_mb(["info", str(path)])
        out = Path(tmp) / "out.json"
        explain_mb, explain_s = peak_rss_mb(["explain", "--checkpoint", str(path), "--features", str(feats),
                                             "--out", str(out)])
    print(f"checkpoint_file_gb={size_gb:.2f}")
    print(f"import_floor_rss_mb={int(floor.stdout.strip()) / 1024:.0f}")
    print(f"peak_rss_mb_5gb_checkpoint={max(info_mb, explain_mb):.0f}")
    print(f"peak_rss_mb_info_5gb={info_mb:.0f}")
    print(f"peak_rss_mb_explain_5gb={explain_mb:.0f}")
    print(f"info_seconds_5gb={info_s:.1f}")
    print(f"explain_seconds_5gb={explain_s:.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        write_checkpoint(Path(sys.argv[2]))
    else:
        main()
