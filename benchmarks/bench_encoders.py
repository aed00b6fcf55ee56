"""Upstream's encoders at their real sizes, random weights of the real shapes, on this machine.

Prints `name=value` lines:
  upstream_checkpoint_gb          size of the generated upstream-style training file (V-JEPA 2 ViT-L
                                  with predictor, DINOv3 ViT-H/16+, AST 14-14, sensor Transformer,
                                  fusion), written to a temp folder and deleted afterwards
  encoders_load_s                 building all four encoders from that file (memory-mapped weights)
  enc_<m>_s_per_weld              seconds per weld per encoder, uncached, on `device`
  enc_welds_measured              how many welds those figures average over (1 on a 2-core CPU:
                                  DINOv3 ViT-H/16+ on 5 photos at 224 px takes tens of seconds)
  enc_total_s_per_weld            all four encoders, one weld, uncached
  enc_cached_s_per_weld           the same weld again: every encoder's features from the disk cache
  enc_uncached_over_cached_ratio  the two above, divided
  peak_rss_gb_all_encoders        peak resident memory of the process that loaded the file,
                                  built all encoders and encoded one weld
  device                          cpu | cuda
Set BENCH_ENCODER_WELDS=N to average over N welds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent


def random_state(model_type: str, name: str) -> dict[str, torch.Tensor]:
    """Random weights with the published model's shapes, without initialising the model."""
    from fusion_core.models.encoders.upstream.backbones import config_class, model_class
    from fusion_core.models.encoders.upstream.published import PUBLISHED
    cfg = dict(dict(PUBLISHED[model_type])[name])
    with torch.device("meta"):
        model = model_class(model_type)(config_class(model_type)(**cfg))
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(v.shape, generator=g) * 0.02 if v.is_floating_point() else torch.zeros(v.shape, dtype=v.dtype))
            for k, v in model.state_dict().items()}


def write_checkpoint(path: Path) -> None:
    from fusion_core.models.encoders.upstream.sensor import sinusoidal_table
    from fusion_core.models.fusion import CrossAttentionFusionModule, FusionConfig
    fusion = CrossAttentionFusionModule(FusionConfig(video_dim=1024, image_dim=1280, audio_dim=768, sensor_dim=128,
                                                     hidden_dim=384, num_fusion_tokens=2, num_heads=4, layout="v1"))
    sd = {f"fusion.{k}": v for k, v in fusion.state_dict().items()}
    sd["feature_norm.weight"], sd["feature_norm.bias"] = torch.ones(384), torch.zeros(384)
    for prefix, (mt, name) in {"video_encoder.model.": ("vjepa2", "facebook/vjepa2-vitl-fpc64-256"),
                               "image_encoder.backbone.": ("dinov3_vit", "facebook/dinov3-vith16plus-pretrain-lvd1689m"),
                               "audio_encoder.model.": ("audio-spectrogram-transformer",
                                                        "MIT/ast-finetuned-audioset-14-14-0.443")}.items():
        sd.update({prefix + k: v for k, v in random_state(mt, name).items()})
    layer = torch.nn.TransformerEncoderLayer(128, 8, 512, batch_first=True)
    enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    sd.update({f"sensor_encoder.transformer.{k}": v for k, v in enc.state_dict().items()})
    sd.update({"sensor_encoder.input_proj.weight": torch.randn(128, 6) * 0.1, "sensor_encoder.input_proj.bias": torch.zeros(128),
               "sensor_encoder.pos_encoder.pe": sinusoidal_table(512, 128),
               "sensor_encoder.norm.weight": torch.ones(128), "sensor_encoder.norm.bias": torch.zeros(128)})
    torch.save({"epoch": 1, "global_step": 1, "model_state_dict": sd, "optimizer_state_dict": {},
                "best_metric": np.float64(0.5), "config": {"learning_rate": 1e-4}}, path)


def child(path: str, cache_dir: str, n_welds: int) -> None:
    """Runs in its own process so its peak RSS is only this."""
    os.environ["FUSION_CORE_FEATURE_CACHE"] = cache_dir
    from fusion_core.io.containers import load_welds
    from fusion_core.models.checkpoint import load_checkpoint
    from fusion_core.vocab import MODALITIES
    welds = load_welds(REPO / "sample_data")[:n_welds]
    ck = load_checkpoint(path)
    enc = ck.upstream_encoders
    t = time.perf_counter()
    enc.load()
    print(f"encoders_load_s={time.perf_counter() - t:.2f}")
    print(f"device={enc.device.type}")
    t = time.perf_counter()
    enc.encode(welds)
    total = (time.perf_counter() - t) / n_welds
    for m in MODALITIES:
        print(f"enc_{m}_s_per_weld={enc.timings.get(m, 0.0) / n_welds:.3f}")
    print(f"enc_welds_measured={n_welds}")
    print(f"enc_total_s_per_weld={total:.2f}")
    t = time.perf_counter()
    enc.encode(welds)
    cached = (time.perf_counter() - t) / n_welds
    print(f"enc_cached_s_per_weld={cached:.4f}")
    print(f"enc_uncached_over_cached_ratio={total / max(cached, 1e-9):.0f}")
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark (it wrote the 5 GB
    # file) across exec into ru_maxrss.
    hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(f"peak_rss_gb_all_encoders={hwm_kb / 1024 ** 2:.2f}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench_encoders_"))
    try:
        path = tmp / "upstream_full.pth"
        t = time.perf_counter()
        write_checkpoint(path)
        print(f"# wrote the checkpoint in {time.perf_counter() - t:.0f}s", flush=True)
        print(f"upstream_checkpoint_gb={path.stat().st_size / 1e9:.2f}", flush=True)
        n = int(os.environ.get("BENCH_ENCODER_WELDS", "1"))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        proc = subprocess.run([sys.executable, __file__, "--child", str(path), str(tmp / "cache"), str(n)],
                              cwd=REPO, env=env, text=True, stdout=subprocess.PIPE)
        print(proc.stdout, end="")
        return proc.returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
