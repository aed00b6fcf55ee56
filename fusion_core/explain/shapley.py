"""Exact Shapley values over the four modalities, from the 16 coalition values.

Coalition c contains modality i iff bit i of c is set (MODALITIES order). How the
coalition values themselves are made cheaply is in `engine.coalition_values`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..vocab import MODALITIES

N_MOD = len(MODALITIES)


def coalition_masks() -> torch.Tensor:
    """(16, 4) bool: coalition c contains modality i iff bit i of c is set."""
    c = torch.arange(2 ** N_MOD)
    return ((c[:, None] >> torch.arange(N_MOD)[None]) & 1).bool()


def _shapley_terms(n: int = N_MOD) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per player i: coalitions without i, the same with i, and their Shapley weights."""
    terms = []
    for i in range(n):
        without = np.array([c for c in range(2 ** n) if not c >> i & 1])
        sizes = np.array([bin(c).count("1") for c in without])
        w = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in sizes])
        terms.append((without, without | (1 << i), w))
    return terms


_SHAPLEY_TERMS = _shapley_terms()


def shapley_from_values(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values (..., 4) from coalition values (..., 16) indexed by bitmask.

    Marginal differences are taken pairwise, so a player that never changes a value
    gets exactly 0.
    """
    v = np.asarray(values, dtype=np.float64)
    return np.stack([((v[..., w1] - v[..., w0]) * w).sum(-1) for w0, w1, w in _SHAPLEY_TERMS], -1)
