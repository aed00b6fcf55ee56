"""Upstream's sensor Transformer, rebuilt from a checkpoint's `sensor_encoder.*` weights.

    x (B, 256, 6) → input_proj → + sinusoidal table (first 256 of its 512 rows)
      → TransformerEncoder (post-norm layers, ReLU, batch_first) → norm → (B, 256, D)

Every size comes from the tensors (D from input_proj, layers from `transformer.layers.N`,
feed-forward width from linear1, the table's length from `pos_encoder.pe` when saved, else
512). The head count is in no tensor shape: it is upstream's SENSOR_ENCODER config value, 8,
an assumption stated in every report, as the fusion's head count is.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from ....errors import InputError

SENSOR_HEADS = 8
SENSOR_HEADS_SOURCE = "upstream's SENSOR_ENCODER config (num_heads 8): in no tensor shape, assumed"
PE_LENGTH = 512


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim): sin on even features, cos on odd, wavelengths 10000^(2i/dim)."""
    position = torch.arange(length).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * div)
    pe[:, 1::2] = torch.cos(position * div)
    return pe.unsqueeze(0)


class UpstreamSensorEncoder(nn.Module):
    """Submodule names are the checkpoint's (`input_proj`, `transformer.layers.N`, `norm`)."""

    def __init__(self, in_dim: int, dim: int, layers: int, ff: int, heads: int = SENSOR_HEADS,
                 pe_length: int = PE_LENGTH):
        super().__init__()
        self.input_proj = nn.Linear(in_dim, dim)
        self.register_buffer("pe", sinusoidal_table(pe_length, dim), persistent=False)
        layer = nn.TransformerEncoderLayer(dim, heads, ff, dropout=0.0, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input_proj(x)
        h = h + self.pe[:, :h.shape[1]].to(h.dtype)
        return self.norm(self.transformer(h))


def build_sensor_encoder(sd: dict[str, torch.Tensor], where: str) -> UpstreamSensorEncoder:
    """The module, with the checkpoint's weights loaded strictly (a missing or mis-shaped key is
    one InputError naming `sensor_encoder.<key>`)."""
    w = sd.get("input_proj.weight")
    if w is None or w.ndim != 2:
        raise InputError(where, "missing encoder key sensor_encoder.input_proj.weight")
    dim, in_dim = int(w.shape[0]), int(w.shape[1])
    idx = {int(m.group(1)) for k in sd if (m := re.match(r"transformer\.layers\.(\d+)\.", k))}
    if not idx:
        raise InputError(where, "missing encoder key sensor_encoder.transformer.layers.0.*")
    ff = sd.get("transformer.layers.0.linear1.weight")
    if ff is None:
        raise InputError(where, "missing encoder key sensor_encoder.transformer.layers.0.linear1.weight")
    if dim % SENSOR_HEADS:
        raise InputError(where, f"sensor width {dim} is not divisible by {SENSOR_HEADS} heads ({SENSOR_HEADS_SOURCE})")
    pe = sd.get("pos_encoder.pe")
    module = UpstreamSensorEncoder(in_dim, dim, max(idx) + 1, int(ff.shape[0]),
                                   pe_length=int(pe.shape[1]) if pe is not None and pe.ndim == 3 else PE_LENGTH)
    weights = {k: v.float() for k, v in sd.items() if k != "pos_encoder.pe"}
    _load_named(module, weights, where)
    if pe is not None:
        if tuple(pe.shape) != tuple(module.pe.shape):
            raise InputError(where, f"mismatched encoder key sensor_encoder.pos_encoder.pe: {tuple(pe.shape)}, "
                                    f"expected {tuple(module.pe.shape)}")
        module.pe.copy_(pe.float())
    return module.eval().requires_grad_(False)


def _load_named(module: nn.Module, sd: dict[str, torch.Tensor], where: str) -> None:
    want = module.state_dict()
    for k in sorted(want):
        if k not in sd:
            raise InputError(where, f"missing encoder key sensor_encoder.{k}")
        if tuple(sd[k].shape) != tuple(want[k].shape):
            raise InputError(where, f"mismatched encoder key sensor_encoder.{k}: {tuple(sd[k].shape)}, "
                                    f"expected {tuple(want[k].shape)}")
    extra = sorted(set(sd) - set(want))
    if extra:
        raise InputError(where, f"unexpected encoder key sensor_encoder.{extra[0]}")
    module.load_state_dict(sd, strict=True)
