"""The seed's quad-modal cross-attention fusion module, in one file.

    video  (B,Sv,Dv) ─ video_proj  ─┐
    image  (B,Si,Di) ─ image_proj  ─┤   fusion_tokens (1,T,H) = queries
    audio  (B,Sa,Da) ─ audio_proj  ─┤   per modality m: A_m = softmax(Q K_mᵀ/√d)  (B,heads,T,S_m)
    sensor (B,Ss,Ds) ─ sensor_proj ─┘   block_m = norm_m(MHA_m(Q, P_m, P_m) + Q)   (B,T,H)
    concat (B,4T,H) → flatten → aggregation MLP → output_proj → fused (B,H)

Two published parameter layouts exist: v1 has plain Linear projections, v2 wraps them as
Sequential(Dropout, Linear) (keys `video_proj.1.weight`). Both load with strict=True.

The forward pass here is the reference one (it uses nn.MultiheadAttention as the seed
does). Explanations do not go through it: `fusion_core.explain` recomputes the same
arithmetic per head, in eval mode, without the NaN of a fully masked key set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

MODALITIES: tuple[str, ...] = ("video", "image", "audio", "sensor")


@dataclass
class FusionConfig:
    """Sizes of the fusion module. Defaults are the seed's."""

    video_dim: int = 1024   # V-JEPA
    image_dim: int = 768    # DINOv2
    audio_dim: int = 768    # AST
    sensor_dim: int = 256   # sensor transformer
    hidden_dim: int = 512
    num_fusion_tokens: int = 4
    num_heads: int = 8
    dropout: float = 0.1
    layout: str = "v1"      # "v1": Linear projections; "v2": Sequential(Dropout, Linear)

    def input_dim(self, modality: str) -> int:
        return int(getattr(self, f"{modality}_dim"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FusionConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _projection(in_dim: int, out_dim: int, layout: str, dropout: float) -> nn.Module:
    if layout == "v1":
        return nn.Linear(in_dim, out_dim)
    if layout == "v2":
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, out_dim))
    raise ValueError(f"unknown layout {layout!r} (expected 'v1' or 'v2')")


def linear_of(module: nn.Module) -> nn.Linear:
    """The Linear inside a projection of either layout."""
    return module if isinstance(module, nn.Linear) else module[-1]


class CrossAttentionFusionModule(nn.Module):
    """Learnable fusion tokens attend to each modality separately; an MLP mixes the results."""

    def __init__(self, config: FusionConfig | None = None, **overrides):
        super().__init__()
        cfg = config or FusionConfig()
        if overrides:
            cfg = FusionConfig(**{**cfg.to_dict(), **overrides})
        if cfg.hidden_dim % cfg.num_heads:
            raise ValueError(f"hidden_dim {cfg.hidden_dim} is not divisible by {cfg.num_heads} heads")
        self.config = cfg
        H, T = cfg.hidden_dim, cfg.num_fusion_tokens

        for m in MODALITIES:
            self.add_module(f"{m}_proj", _projection(cfg.input_dim(m), H, cfg.layout, cfg.dropout))
        self.fusion_tokens = nn.Parameter(torch.randn(1, T, H) * 0.02)
        for m in MODALITIES:
            self.add_module(f"{m}_cross_attn",
                            nn.MultiheadAttention(H, cfg.num_heads, dropout=cfg.dropout, batch_first=True))
            self.add_module(f"{m}_norm", nn.LayerNorm(H))
        self.aggregation = nn.Sequential(
            nn.Linear(len(MODALITIES) * T * H, 2 * H),
            nn.LayerNorm(2 * H),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(2 * H, H),
        )
        self.output_proj = _projection(H, H, cfg.layout, cfg.dropout)

    def proj(self, m: str) -> nn.Module:
        return getattr(self, f"{m}_proj")

    def cross_attn(self, m: str) -> nn.MultiheadAttention:
        return getattr(self, f"{m}_cross_attn")

    def norm(self, m: str) -> nn.LayerNorm:
        return getattr(self, f"{m}_norm")

    def fuse_blocks(self, blocks: torch.Tensor) -> torch.Tensor:
        """(N, 4, T, H) attended blocks → fused (N, H). The only place modalities meet."""
        return self.output_proj(self.aggregation(blocks.flatten(1)))

    def forward(self, video, image, audio, sensor, masks: dict | None = None,
                return_attention: bool = False):
        """Reference forward. `masks[m]` is (B,S) bool, True where a position holds data."""
        feats = dict(video=video, image=image, audio=audio, sensor=sensor)
        B = video.shape[0]
        queries = self.fusion_tokens.expand(B, -1, -1)
        blocks, attn = [], {}
        for m in MODALITIES:
            keys = self.proj(m)(feats[m])
            pad = None if masks is None or masks.get(m) is None else ~masks[m].bool()
            out, w = self.cross_attn(m)(queries, keys, keys, key_padding_mask=pad,
                                        need_weights=return_attention)
            blocks.append(self.norm(m)(out + queries))
            attn[m] = w
        fused = self.fuse_blocks(torch.stack(blocks, dim=1))
        return (fused, attn) if return_attention else fused


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


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
