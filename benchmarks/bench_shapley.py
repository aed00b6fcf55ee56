"""Exact modality Shapley at the seed's default sizes: this engine vs Captum vs 16 naive forwards.

All three use the same game: a modality is absent when its features are zeros (Captum's
baseline 0; the engine's `zeros` baseline — attention over S identical zero keys equals
attention over one), and the value is the cosine between the coalition's fused output
and the full one. Values must agree to 1e-4; timings are medians of interleaved runs in
one process, so the ratios are what to read, not the seconds.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fusion_core.explain.engine import explain, modality_shapley
from fusion_core.explain.shapley import shapley_from_values
from fusion_core.io.features import FeatureBatch
from fusion_core.models.fusion import CrossAttentionFusionModule
from fusion_core.vocab import MODALITIES

SEQ = {"video": 8, "image": 5, "audio": 12, "sensor": 256}   # the seed's test sizes
REPEATS = 7


def timed(fn, repeats=REPEATS):
    out, times = None, []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    model = CrossAttentionFusionModule().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    feats = {m: torch.randn(1, s, model.config.input_dim(m)) for m, s in SEQ.items()}
    args = [feats[m] for m in MODALITIES]
    batch = FeatureBatch(features=feats, ids=["bench"])
    with torch.no_grad():
        full = model(*args)

    def value(*xs):
        return torch.nn.functional.cosine_similarity(model(*xs), full.expand(xs[0].shape[0], -1), dim=-1)

    def engine():
        return modality_shapley(model, batch, baseline="zeros", target="cosine")[0][0]

    def naive():
        vals = np.zeros(16)
        with torch.no_grad():
            for c in range(16):
                xs = [a if c >> j & 1 else torch.zeros_like(a) for j, a in enumerate(args)]
                vals[c] = value(*xs).item()
        return shapley_from_values(vals)

    from captum.attr import ShapleyValues
    masks = tuple(torch.full((1, 1, 1), j, dtype=torch.long) for j in range(4))

    def captum():
        with torch.no_grad():
            attr = ShapleyValues(value).attribute(tuple(args), baselines=(0.0,) * 4, feature_mask=masks)
        return np.array([a.flatten()[0].item() for a in attr])

    def forward():
        with torch.no_grad():
            return model(*args)

    def full_explain():
        return explain(model, batch, target="cosine")

    # Warm up, then interleave so machine noise hits all alike.
    for fn in (engine, naive, captum, forward, full_explain):
        fn()
    results = {k: [] for k in ("engine", "naive", "captum", "forward", "full_explain")}
    values = {}
    for _ in range(REPEATS):
        for name, fn in (("engine", engine), ("naive", naive), ("captum", captum), ("forward", forward),
                         ("full_explain", full_explain)):
            t = time.perf_counter()
            values[name] = fn()
            results[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in results.items()}
    e, n, c = values["engine"], values["naive"], values["captum"]
    assert np.allclose(e, n, atol=1e-4), (e, n)
    assert np.allclose(e, c, atol=1e-4), (e, c)
    print(f"shapley_values={','.join(f'{m}:{v:.5f}' for m, v in zip(MODALITIES, e))}")
    print(f"shapley_max_abs_diff_vs_captum={np.abs(e - c).max():.2e}")
    print(f"shapley_max_abs_diff_vs_naive={np.abs(e - n).max():.2e}")
    print(f"engine_shapley_ms={med['engine'] * 1e3:.2f}")
    print(f"captum_shapley_ms={med['captum'] * 1e3:.2f}")
    print(f"naive16_shapley_ms={med['naive'] * 1e3:.2f}")
    print(f"forward_ms={med['forward'] * 1e3:.2f}")
    print(f"full_explain_ms={med['full_explain'] * 1e3:.2f}")
    print(f"shapley_speedup_vs_captum={med['captum'] / med['engine']:.1f}")
    print(f"shapley_speedup_vs_naive16={med['naive'] / med['engine']:.1f}")
    print(f"explain_over_forward={med['full_explain'] / med['forward']:.2f}")


if __name__ == "__main__":
    main()
