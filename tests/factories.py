"""Small builders shared by the core tests: random modules, features and checkpoint files."""

from __future__ import annotations

import torch

from fusion_core.io.features import FeatureBatch
from fusion_core.models.fusion import CrossAttentionFusionModule, FusionConfig
from fusion_core.vocab import MODALITIES


def small_config(seed: int = 0, layout: str = "v1", **kw) -> FusionConfig:
    g = torch.Generator().manual_seed(seed)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))  # noqa: E731
    heads = kw.pop("num_heads", r(1, 4))
    base = dict(video_dim=r(3, 40), image_dim=r(3, 40), audio_dim=r(3, 40), sensor_dim=r(3, 40),
                hidden_dim=heads * r(2, 8), num_fusion_tokens=r(1, 5), num_heads=heads, dropout=0.1, layout=layout)
    base.update(kw)
    return FusionConfig(**base)


def random_module(cfg: FusionConfig, seed: int = 0) -> CrossAttentionFusionModule:
    torch.manual_seed(seed)
    m = CrossAttentionFusionModule(cfg)
    # Default init leaves biases at zero and tokens tiny; perturb everything so a bug in
    # any term (bias, token, norm) shows up in the comparisons.
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return m.eval()


def random_batch(cfg: FusionConfig, B: int, lengths: dict[str, int], seed: int = 0,
                 pad: bool = False, drop: tuple[str, ...] = ()) -> FeatureBatch:
    g = torch.Generator().manual_seed(seed)
    feats, masks = {}, {}
    for m in MODALITIES:
        if m in drop:
            continue
        S = lengths[m]
        feats[m] = torch.randn(B, S, cfg.input_dim(m), generator=g)
        if pad:
            valid = torch.ones(B, S, dtype=torch.bool)
            for b in range(B):
                keep = int(torch.randint(0, S + 1, (1,), generator=g))
                valid[b, keep:] = False
            masks[m] = valid
    return FeatureBatch(features=feats, masks=masks, ids=[f"s{b}" for b in range(B)], source="test")
