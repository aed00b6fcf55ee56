"""The seed's quad-modal cross-attention fusion module, in one file.

    video  (B,Sv,Dv) ─ video_proj  ─┐
    image  (B,Si,Di) ─ image_proj  ─┤   fusion_tokens (1,T,H) = queries
    audio  (B,Sa,Da) ─ audio_proj  ─┤   per modality m: A_m = softmax(Q K_mᵀ/√d)  (B,heads,T,S_m)
    sensor (B,Ss,Ds) ─ sensor_proj ─┘   block_m = norm_m(MHA_m(Q, P_m, P_m) + Q)   (B,T,H)
    concat (B,4T,H) → flatten → aggregation MLP → output_proj → fused (B,H)

Two published parameter layouts exist: v1 has plain Linear projections, v2 wraps them as
Sequential(Dropout, Linear) (keys `video_proj.1.weight`). Both load with strict=True.

`attend` below is THE attention forward: the module's own `forward` (training included),
the explanation engine and the demo model's training all run it. It is the arithmetic of
nn.MultiheadAttention (the seed's layer, whose weights the module holds), written per head
so that every head's weights, value norms and gradients can be read, and with a fully
masked key set giving zero attention where nn.MultiheadAttention gives NaN. The tests check
it against nn.MultiheadAttention's own output.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..vocab import MODALITIES


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

    def blocks(self, feats: dict[str, torch.Tensor], masks: dict | None = None) -> torch.Tensor:
        """Attended blocks (B, 4, T, H); a modality missing from `feats` gets its absent block."""
        return attended_blocks(self, feats, masks or {}, need_norms=False, train=self.training)[0]

    def forward(self, video, image, audio, sensor, masks: dict | None = None,
                return_attention: bool = False):
        """fused (B, H); with `return_attention` also {m: head-averaged weights (B, T, S)}, as
        nn.MultiheadAttention returns them. `masks[m]` is (B,S) bool, True where a position
        holds data. In training mode attention weights, projections and the MLP use dropout."""
        feats = dict(video=video, image=image, audio=audio, sensor=sensor)
        blocks, att = attended_blocks(self, feats, masks or {}, need_norms=False, train=self.training)
        fused = self.fuse_blocks(blocks)
        if return_attention:
            return fused, {m: a.weights.mean(1) for m, a in att.items()}
        return fused


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- the attention forward

@dataclass
class Attended:
    """One modality's cross-attention, per head, for a batch."""

    weights: torch.Tensor      # (B, heads, T, S) attention probabilities; 0 at padding
    value_norms: torch.Tensor  # (B, heads, T, S) ‖α · v_j W_o^h‖ (Kobayashi et al. 2020)
    output: torch.Tensor       # (B, T, H) attention output without out_proj bias
    block: torch.Tensor        # (B, T, H) norm(attention output + queries)


def _queries(fusion: CrossAttentionFusionModule, batch: int) -> torch.Tensor:
    return fusion.fusion_tokens.expand(batch, -1, -1)


def absent_block(fusion: CrossAttentionFusionModule, m: str, batch: int) -> torch.Tensor:
    """What a modality with no attention output contributes: norm(queries + out_proj.bias)."""
    q = _queries(fusion, batch)
    return fusion.norm(m)(q + fusion.cross_attn(m).out_proj.bias)


def attend(fusion: CrossAttentionFusionModule, m: str, x: torch.Tensor,
           valid: torch.Tensor | None = None, need_norms: bool = True,
           weights_leaf: bool = False, train: bool = False) -> Attended:
    """Per-head cross-attention of the fusion tokens over modality `m`'s features x (B,S,D).

    Same arithmetic as nn.MultiheadAttention in eval mode, but per head and with a fully
    padded key set giving zero attention (not NaN). With `weights_leaf`, the attention
    weights become a leaf that requires grad, so ∂target/∂A is available even when the
    module's parameters are frozen (loaded models are), and nothing upstream is traced.
    With `train` (the module's forward passes its training flag; explanations never do)
    the projection's and the attention weights' dropout apply, as in nn.MultiheadAttention.
    """
    mha = fusion.cross_attn(m)
    B, S, _ = x.shape
    H = fusion.config.hidden_dim
    h = mha.num_heads
    d = H // h
    q_in = _queries(fusion, B)
    Wq, bq = mha.in_proj_weight[:H], mha.in_proj_bias[:H]
    T = q_in.shape[1]
    # Input-independent products are cached per module, except while they need a gradient.
    live = train or (torch.is_grad_enabled() and fusion.fusion_tokens.requires_grad)
    consts = None if live else constants(fusion)
    q = cached(consts, ("queries", m), lambda: F.linear(fusion.fusion_tokens, Wq, bq))
    q = q.view(1, T, h, d).transpose(1, 2).expand(B, -1, -1, -1)  # (B,h,T,d)
    # Keys and values in one GEMM, as nn.MultiheadAttention does when key is value; when
    # the input is narrower than 2H, the modality projection is folded into it (fewer
    # multiply-adds per position: D·2H instead of D·H + H·2H).
    lin, W_kv, b_kv = linear_of(fusion.proj(m)), mha.in_proj_weight[H:], mha.in_proj_bias[H:]
    if train:
        kv = F.linear(fusion.proj(m)(x), W_kv, b_kv)
    elif lin.in_features < 2 * H:
        W_f, b_f = cached(consts, ("kv folded", m), lambda: (W_kv @ lin.weight, W_kv @ lin.bias + b_kv))
        kv = F.linear(x, W_f, b_f)
    else:
        kv = F.linear(lin(x), W_kv, b_kv)
    kv = kv.view(B, S, 2, h, d)
    k = kv[:, :, 0].transpose(1, 2)                               # (B,h,S,d)
    v = kv[:, :, 1].transpose(1, 2)                               # (B,h,S,d)
    scores = (q / math.sqrt(d)) @ k.transpose(-1, -2)             # (B,h,T,S)
    if valid is None:
        valid = torch.ones(B, S, dtype=torch.bool)
    row_ok = valid.any(dim=1)
    # Padding gets -inf only in rows that have some data: a fully padded row keeps finite
    # scores (so softmax and its gradient stay finite) and is zeroed afterwards.
    pad = (~valid & row_ok[:, None])[:, None, None, :]
    weights = torch.softmax(scores.masked_fill(pad, float("-inf")), dim=-1)
    weights = weights * row_ok[:, None, None, None].to(weights.dtype)
    if weights_leaf:
        weights = weights.detach().requires_grad_(True)
    mixed = F.dropout(weights, mha.dropout, training=True) if train and mha.dropout else weights
    ctx = (mixed @ v).transpose(1, 2).reshape(B, T, H)
    output = F.linear(ctx, mha.out_proj.weight)
    block = fusion.norm(m)(output + mha.out_proj.bias + q_in)
    value_norms = _value_norms(mha.out_proj.weight, weights, v) if need_norms else torch.zeros(0)
    return Attended(weights=weights, value_norms=value_norms, output=output, block=block)


def _value_norms(W_out: torch.Tensor, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """‖α_ij · v_j W_o^h‖ per head (Kobayashi et al. 2020), (B, h, T, S), without forming α·v·W_o."""
    h, d = v.shape[1], v.shape[3]
    Wo = W_out.view(W_out.shape[0], h, d).permute(1, 2, 0)      # (h, d, H): W_o^h transposed
    gram = Wo @ Wo.transpose(1, 2)                              # (h, d, d)
    sq = torch.einsum("bhsd,hde,bhse->bhs", v, gram, v).clamp_min(0)
    return weights * sq.sqrt()[:, :, None, :]


def aggregate(fusion: CrossAttentionFusionModule, blocks: torch.Tensor) -> torch.Tensor:
    """(N, 4, T, H) → fused (N, H), skipping dropout (explanations are eval-mode)."""
    return aggregate_preactivation(fusion, fusion.aggregation[0](blocks.flatten(1)))


def aggregate_preactivation(fusion: CrossAttentionFusionModule, z: torch.Tensor) -> torch.Tensor:
    """The aggregation MLP after its first Linear: (N, 2H) → fused (N, H), no dropout."""
    agg = fusion.aggregation
    return linear_of(fusion.output_proj)(agg[4](agg[2](agg[1](z))))


def attended_blocks(fusion: CrossAttentionFusionModule, feats: dict[str, torch.Tensor], masks: dict,
                    **attend_kw) -> tuple[torch.Tensor, dict[str, Attended]]:
    """(B, 4, T, H) blocks of all modalities and the `Attended` of those in `feats`; a
    modality missing from `feats` gets `absent_block`. `attend_kw` go to `attend`."""
    B = next(iter(feats.values())).shape[0]
    att: dict[str, Attended] = {}
    blocks = []
    for m in MODALITIES:
        if m in feats:
            mask = masks.get(m)
            att[m] = attend(fusion, m, feats[m], None if mask is None else mask.bool(), **attend_kw)
            blocks.append(att[m].block)
        else:
            blocks.append(absent_block(fusion, m, B))
    return torch.stack(blocks, 1), att


# Input-independent tensors (the queries, folded projections, the `zeros` baseline's
# blocks) per module, recomputed when any parameter changes in place (tensor version
# counters). Weak keys: a model that is dropped takes its entries with it. Nothing is ever
# written to the module. Streamlit serves sessions from threads that share loaded models,
# so filling the cache holds a lock (reentrant: one constant may be made from others).
_CONSTANTS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_CONSTANTS_LOCK = threading.RLock()


def constants(fusion: nn.Module) -> dict:
    """This module's cache of input-independent tensors, emptied if any weight changed."""
    with _CONSTANTS_LOCK:
        entry = _CONSTANTS.get(fusion)
        # Parameters are updated in place (optimizers, load_state_dict), which bumps their
        # version counters; replacing a Parameter object outright is not tracked.
        if entry is not None and tuple(p._version for p in entry["params"]) == entry["version"]:
            return entry
        params = list(fusion.parameters())
        entry = {"params": params, "version": tuple(p._version for p in params)}
        _CONSTANTS[fusion] = entry
        return entry


def cached(consts: dict | None, key: tuple, make):
    """consts[key], made once (without gradient) under the lock; `make()` itself when consts is None."""
    if consts is None:
        return make()
    with _CONSTANTS_LOCK:
        if key not in consts:
            with torch.no_grad():
                consts[key] = make()
        return consts[key]
