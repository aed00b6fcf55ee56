"""The lightweight stand-in for the fusion module: mean-pool, concatenate, MLP. No attention.

Two published layouts, told apart by the first Linear's width (keys `fusion_proj.0.*`,
`fusion_proj.3.*` in both):

    upstream  Linear(ΣD, 2H) → ReLU → Dropout → Linear(2H, H)   (bluuueheart/Weld-Anomaly-Detection)
    seed      Linear(ΣD, H)  → GELU → Dropout → Linear(H, H)    (the seed document)
"""

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

    LAYOUTS = {"seed": (1, nn.GELU), "upstream": (2, nn.ReLU)}   # layout -> (inner width / H, activation)

    def __init__(self, total_input_dim: int, hidden_dim: int = 512, dropout: float = 0.1,
                 input_dims: dict[str, int] | None = None, layout: str = "seed"):
        super().__init__()
        if layout not in self.LAYOUTS:
            raise ValueError(f"unknown mean-pool layout {layout!r}; expected one of {', '.join(self.LAYOUTS)}")
        widen, act = self.LAYOUTS[layout]
        self.total_input_dim = total_input_dim
        self.hidden_dim = hidden_dim
        self.input_dims = input_dims
        self.layout = layout
        self.fusion_proj = nn.Sequential(
            nn.Linear(total_input_dim, widen * hidden_dim),
            act(),
            nn.Dropout(dropout),
            nn.Linear(widen * hidden_dim, hidden_dim),
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
