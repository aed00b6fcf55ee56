"""The contribution methods: one registry, one call shape (Captum's habit).

Every method turns the same `Evidence` about a batch into one number per sample and
modality, (B, 4). A new method is one `register(...)` here: the engine computes it for
every explanation, and the JSON, the batch table (`<method>_<modality>` columns), the
Dataset page and the contribution bars list it from `METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..vocab import MODALITIES
from .shapley import N_MOD, shapley_from_values

FULL = 2 ** N_MOD - 1          # bitmask of the coalition with every modality


@dataclass(frozen=True)
class Evidence:
    """What the engine measured for a batch, from which every method is computed."""

    coalition_values: np.ndarray            # (B, 16) float64, target value per coalition (bitmask order)
    attention_norm: np.ndarray | None       # (B, 4) mean ‖attention output‖ per modality (None: no attention)
    relevance_mass: np.ndarray | None       # (B, 4) total gradient-weighted relevance per modality


@dataclass(frozen=True)
class Method:
    name: str                               # key in Explanation.contributions, JSON, batch columns
    label: str                              # short label for figures
    description: str                        # one line for tooltips and docs
    unit: str                               # "target" (the explained target's units) or "share" (sums to 1)
    needs_attention: bool                   # computed only for models with attention
    compute: Callable[[Evidence], np.ndarray]


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def share(x: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1 (rows of zeros stay zero)."""
    s = x.sum(1, keepdims=True)
    return np.divide(x, s, out=np.zeros_like(x), where=s > 0)


def leave_one_out(values: np.ndarray) -> np.ndarray:
    return np.stack([values[:, FULL] - values[:, FULL & ~(1 << j)] for j in range(N_MOD)], 1)


register(Method("shapley", "exact Shapley", "exact Shapley value over the 16 modality coalitions",
                "target", False, lambda ev: shapley_from_values(ev.coalition_values)))
register(Method("leave_one_out", "leave-one-out", "v(all) − v(all without the modality)",
                "target", False, lambda ev: leave_one_out(ev.coalition_values)))
register(Method("attention", "attention-only share",
                "share of the attention output norm ‖Σ α·V·W_o‖ (what raw attention suggests)",
                "share", True, lambda ev: share(ev.attention_norm)))
register(Method("relevance", "relevance share", "share of gradient-weighted attention relevance mass",
                "share", True, lambda ev: share(ev.relevance_mass)))


def contributions(evidence: Evidence, has_attention: bool) -> dict[str, np.ndarray]:
    """Every registered method that applies, in registry order: name -> (B, 4)."""
    return {name: m.compute(evidence) for name, m in METHODS.items() if has_attention or not m.needs_attention}


def method_names(has_attention: bool = True) -> list[str]:
    return [n for n, m in METHODS.items() if has_attention or not m.needs_attention]


__all__ = ["METHODS", "MODALITIES", "Evidence", "Method", "contributions", "method_names", "register", "share"]
