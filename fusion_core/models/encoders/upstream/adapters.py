"""One interface for upstream's four encoders: a decoded `Weld` in, tokens and their positions out.

    adapter.prepare(weld) → Prepared(inputs, present, positions)   numpy, no model
    adapter(inputs)        → (B, S, D) tokens                       the backbone (+ projection)

Each adapter computes exactly what upstream's encoder module computes in eval mode
(dropout off): V-JEPA 2's `last_hidden_state` (predictor skipped: same values), DINO's
`last_hidden_state` of every photo projected then averaged over the 5 photos, AST's
`last_hidden_state` on the bilinearly resized, transposed spectrogram, and the sensor
Transformer. A projection (`<m>_encoder.projection.1.*`, a Linear) is applied when saved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ....io.weld import Weld
from . import positions as pos
from . import preprocess as pre
from .backbones import Backbone
from .sensor import SENSOR_HEADS_SOURCE, UpstreamSensorEncoder


@dataclass
class Prepared:
    inputs: np.ndarray          # one weld's model input, float32
    present: bool               # does the weld have this modality's data
    positions: pd.DataFrame     # one row per token


class EncoderAdapter(nn.Module):
    """Base: `modality`, `dim`, `seq_len`, `description`; subclasses give prepare/encode."""

    modality = ""

    def __init__(self, projection: nn.Linear | None):
        super().__init__()
        self.projection = projection

    def project(self, h: torch.Tensor) -> torch.Tensor:
        return self.projection(h) if self.projection is not None else h

    def prepare(self, weld: Weld) -> Prepared:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.encode(x))


class _BackboneAdapter(EncoderAdapter):
    """An adapter around a `transformers` backbone: its module, width and description."""

    def __init__(self, backbone: Backbone, projection: nn.Linear | None):
        super().__init__(projection)
        self.backbone = backbone.model
        self.dim = projection.out_features if projection is not None else int(backbone.config.hidden_size)
        self.description = backbone.describe()


class VideoAdapter(_BackboneAdapter):
    modality = "video"

    def __init__(self, backbone: Backbone, projection: nn.Linear | None = None):
        super().__init__(backbone, projection)
        cfg = backbone.config
        self.tubelet, self.patch = int(cfg.tubelet_size), int(cfg.patch_size)
        self.seq_len = (pre.VIDEO_FRAMES // self.tubelet) * (pre.VIDEO_SIZE // self.patch) ** 2

    def prepare(self, weld: Weld) -> Prepared:
        x, source, idx = pre.video_input(weld)
        p = pos.video_positions(weld, source, idx, pre.weld_duration(weld), self.tubelet, self.patch)
        return Prepared(x, source != "none", p)

    def encode(self, x: torch.Tensor) -> torch.Tensor:      # (B, 32, 3, 64, 64)
        return self.backbone(pixel_values_videos=x, skip_predictor=True).last_hidden_state


class ImageAdapter(_BackboneAdapter):
    modality = "image"

    def __init__(self, backbone: Backbone, projection: nn.Linear | None = None):
        super().__init__(backbone, projection)
        cfg = backbone.config
        self.patch = int(cfg.patch_size)
        self.registers = int(getattr(cfg, "num_register_tokens", 0) or 0)
        self.seq_len = 1 + self.registers + (pre.IMAGE_SIZE // self.patch) ** 2

    def prepare(self, weld: Weld) -> Prepared:
        x, _ = pre.photo_input(weld)
        return Prepared(x, bool(weld.images), pos.image_positions(weld, self.registers, self.patch))

    def encode(self, x: torch.Tensor) -> torch.Tensor:      # (B, 5, 3, 224, 224)
        B, N = x.shape[:2]
        return self.backbone(pixel_values=x.flatten(0, 1)).last_hidden_state.unflatten(0, (B, N))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.encode(x)).mean(dim=1)    # projected, then averaged over photos


class AudioAdapter(_BackboneAdapter):
    modality = "audio"

    def __init__(self, backbone: Backbone, projection: nn.Linear | None = None):
        super().__init__(backbone, projection)
        cfg = backbone.config
        self.mels, self.length, self.patch = int(cfg.num_mel_bins), int(cfg.max_length), int(cfg.patch_size)
        self.strides = int(cfg.frequency_stride), int(cfg.time_stride)
        rows = (self.length - self.patch) // self.strides[0] + 1
        cols = (self.mels - self.patch) // self.strides[1] + 1
        self.seq_len = 2 + rows * cols

    def prepare(self, weld: Weld) -> Prepared:
        x, real = pre.audio_input(weld)
        edges = pre.audio_column_edges(weld, real, pre.weld_duration(weld))
        p = pos.audio_positions(edges, num_mel_bins=self.mels, max_length=self.length,
                                stride_rows=self.strides[0], stride_cols=self.strides[1], patch=self.patch)
        return Prepared(x, real > 0, p)

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 64, 256) → (B, num_mel_bins, max_length): upstream's bilinear resize. It is then
        handed to AST as is, i.e. as (B, time, mel) with mel and time swapped."""
        return F.interpolate(x.unsqueeze(1), size=(self.mels, self.length), mode="bilinear",
                             align_corners=False).squeeze(1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_values=self.model_input(x)).last_hidden_state


class SensorAdapter(EncoderAdapter):
    modality = "sensor"

    def __init__(self, module: UpstreamSensorEncoder):
        super().__init__(None)
        self.module = module
        self.dim = module.norm.normalized_shape[0]
        self.seq_len = pre.SENSOR_LEN
        heads = module.transformer.layers[0].self_attn.num_heads
        self.description = (f"upstream sensor Transformer ({len(module.transformer.layers)} layers, width {self.dim}, "
                            f"{heads} heads from {SENSOR_HEADS_SOURCE})")

    def prepare(self, weld: Weld) -> Prepared:
        present = weld.sensor is not None and len(weld.sensor) > 0
        return Prepared(pre.sensor_input(weld), present, pre.sensor_positions(weld, pre.weld_duration(weld)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def projection_of(group: dict[str, torch.Tensor], modality: str) -> nn.Linear | None:
    """`<m>_encoder.projection.1` (Dropout, Linear) when upstream saved one: backbone width ≠ embed size."""
    w = group.get(f"{modality}_encoder.projection.1.weight")
    if w is None:
        return None
    b = group.get(f"{modality}_encoder.projection.1.bias")
    lin = nn.Linear(int(w.shape[1]), int(w.shape[0]), bias=b is not None)
    lin.load_state_dict({"weight": w.float(), **({"bias": b.float()} if b is not None else {})})
    return lin.eval().requires_grad_(False)
