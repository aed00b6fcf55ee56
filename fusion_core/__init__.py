"""fusion_core: attention maps and modality contributions for quad-modal weld fusion models.

    from fusion_core import load_checkpoint, load_weld, load_features, explain, compare
    ck = load_checkpoint("model.safetensors")
    exp = explain(ck, load_features("features.npz"))
    exp.contributions["shapley"], exp.attention["sensor"], exp.contributions_frame()

Layers, each importing only from the ones before it (tests/test_architecture.py checks):

    vocab, errors        the words of the domain; InputError
    io/                  files → tensors, arrays, `Weld`s (no model code)
    models/              fusion module + THE attention forward, dummy, encoders, checkpoint → modules
    explain/             engine, targets, Shapley, methods registry, summaries, compare, sanity
    batch/, training/    dataset-scale runs; synthetic data and the demo model
    cli                  the command line (app/ is the dashboard, on top of all of it)

The public names below are imported lazily (PEP 562): `import fusion_core` costs nothing,
and `fusion_core.vocab` never pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC: dict[str, str] = {
    "MODALITIES": "vocab",
    "CLASS_NAMES": "vocab",
    "InputError": "errors",
    "Weld": "io.weld",
    "load_weld": "io.containers",
    "load_welds": "io.containers",
    "FeatureBatch": "io.features",
    "load_features": "io.features",
    "FusionConfig": "models.fusion",
    "CrossAttentionFusionModule": "models.fusion",
    "DummyCrossAttentionFusion": "models.dummy",
    "CheckpointInfo": "models.checkpoint",
    "LoadedCheckpoint": "models.checkpoint",
    "load_checkpoint": "models.checkpoint",
    "save_checkpoint": "models.checkpoint",
    "BASELINES": "explain.engine",
    "TARGETS": "explain.targets",
    "Explanation": "explain.engine",
    "explain": "explain.engine",
    "explain_welds": "explain.welds",
    "Comparison": "explain.compare",
    "compare": "explain.compare",
    "run_batch": "batch.engines",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from .batch.engines import run_batch  # noqa: F401
    from .errors import InputError  # noqa: F401
    from .explain.compare import Comparison, compare  # noqa: F401
    from .explain.engine import BASELINES, Explanation, explain  # noqa: F401
    from .explain.targets import TARGETS  # noqa: F401
    from .explain.welds import explain_welds  # noqa: F401
    from .io.containers import load_weld, load_welds  # noqa: F401
    from .io.features import FeatureBatch, load_features  # noqa: F401
    from .models.checkpoint import CheckpointInfo, LoadedCheckpoint, load_checkpoint, save_checkpoint  # noqa: F401
    from .models.dummy import DummyCrossAttentionFusion  # noqa: F401
    from .models.fusion import CrossAttentionFusionModule, FusionConfig  # noqa: F401
    from .vocab import CLASS_NAMES, MODALITIES  # noqa: F401
