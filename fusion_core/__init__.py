"""fusion_core: attention maps and modality contributions for quad-modal weld fusion models.

    from fusion_core import load_checkpoint, load_features, explain, compare
    ck = load_checkpoint("model.safetensors")
    exp = explain(ck, load_features("features.npz"))
    exp.contributions["shapley"], exp.attention["sensor"], exp.contributions_frame()
"""

from .checkpoint import CheckpointInfo, LoadedCheckpoint, load_checkpoint, save_checkpoint
from .compare import Comparison, compare
from .errors import InputError
from .explain import BASELINES, TARGETS, Explanation, explain
from .features import FeatureBatch, load_features
from .model import MODALITIES, CrossAttentionFusionModule, DummyCrossAttentionFusion, FusionConfig

__all__ = [
    "MODALITIES", "BASELINES", "TARGETS", "CheckpointInfo", "Comparison", "CrossAttentionFusionModule",
    "DummyCrossAttentionFusion", "Explanation", "FeatureBatch", "FusionConfig", "InputError",
    "LoadedCheckpoint", "compare", "explain", "load_checkpoint", "load_features", "save_checkpoint",
]
