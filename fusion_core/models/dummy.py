"""The seed's lightweight stand-in for the fusion module: mean-pool, concatenate, MLP. No attention."""

from __future__ import annotations

import torch
from torch import nn

from ..vocab import MODALITIES


class DummyCrossAttentionFusion(nn.Module):
    """The seed's lightweight stand-in: mean-pool each modality, concatenate, MLP.

    It has no attention at all, so there are no attention maps to show; modality
    contributions are still measurable. Only the sum of the input dims is in the
    weights; the split comes from the checkpoint's config or the features given.
    """

    def __init__(self, total_input_dim: int, hidden_dim: int = 512, dropout: float = 0.1,
                 input_dims: dict[str, int] | None = None):
        super().__init__()
        self.total_input_dim = total_input_dim
        self.hidden_dim = hidden_dim
        self.input_dims = input_dims
        self.fusion_proj = nn.Sequential(
            nn.Linear(total_input_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
        )

    def pool(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            return x.mean(dim=1)
        w = mask.to(x.dtype).unsqueeze(-1)
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)

    def fuse_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """(N, sum D) concatenated pooled features → fused (N, H)."""
        return self.fusion_proj(pooled)

    def forward(self, video, image, audio, sensor, masks: dict | None = None):
        feats = dict(video=video, image=image, audio=audio, sensor=sensor)
        masks = masks or {}
        pooled = [self.pool(feats[m], masks.get(m)) for m in MODALITIES]
        return self.fuse_pooled(torch.cat(pooled, dim=-1))
