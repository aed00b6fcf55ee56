"""Faithfulness checks: do the explanation methods agree, and do they depend on the weights?

- `method_agreement`: per weld, Spearman rank correlation between the modality rankings
  of raw attention, value-weighted attention, gradient relevance, leave-one-out and Shapley.
- `randomized_copy` + `randomization_test`: the model-randomization sanity check of
  Adebayo et al. (2018). An explanation that barely changes when the weights are replaced
  by random ones does not explain the model.
- `mass_in_windows`: how much of a map's mass falls inside known defect windows, against
  the share those windows would get by chance (their share of the weld's duration).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .compare import spearman
from .explain import Explanation
from .model import MODALITIES


def modality_scores(exp: Explanation, b: int) -> dict[str, np.ndarray]:
    """One score per modality and method, all oriented 'bigger = more important'."""
    out = {"shapley": exp.contributions["shapley"][b], "leave_one_out": exp.contributions["leave_one_out"][b]}
    if exp.has_attention:
        out["attention"] = exp.contributions["attention"][b]
        out["relevance"] = exp.contributions["relevance"][b]
        vn = np.zeros(len(MODALITIES))
        for j, m in enumerate(MODALITIES):
            if m in exp.value_norms:
                vn[j] = exp.value_norms[m][b].sum(-1).mean()
        out["value_weighted"] = vn / vn.sum() if vn.sum() > 0 else vn
    return out


def method_agreement(exp: Explanation, b: int) -> pd.DataFrame:
    """Square table of Spearman ρ between methods' modality rankings for sample b."""
    scores = modality_scores(exp, b)
    names = list(scores)
    mat = [[spearman(scores[x], scores[y]) if x != y else 1.0 for y in names] for x in names]
    return pd.DataFrame(mat, index=names, columns=names)


def randomized_copy(model, seed: int = 0):
    """A deep copy whose fusion weights (and classifier, if any) are re-drawn at random.

    Cascading from the top (Adebayo et al.) matters less here than in deep nets: the
    fusion module is shallow, so all of it is re-initialised at once. The original is
    never touched.
    """
    clone = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    fusion = getattr(clone, "fusion", clone)
    modules = [fusion] + ([clone.classifier] if getattr(clone, "classifier", None) is not None else [])
    with torch.no_grad():
        for mod in modules:
            for name, p in mod.named_parameters():
                if "norm" in name and name.endswith("weight") or name.startswith("aggregation.1.weight"):
                    p.copy_(torch.ones_like(p))
                elif p.ndim >= 2 or name == "fusion_tokens":
                    std = 0.02 if name == "fusion_tokens" else (1.0 / max(1, p.shape[-1])) ** 0.5
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
                else:
                    p.zero_()
    return clone


@dataclass
class RandomizationResult:
    similarity: pd.DataFrame      # modality × measure: Spearman ρ of maps, real vs randomized
    contributions: pd.DataFrame   # modality, method, real, randomized


def randomization_test(exp_real: Explanation, exp_random: Explanation, b: int = 0) -> RandomizationResult:
    """Compare one sample's explanations for the real and the randomized model."""
    rows = []
    for m in MODALITIES:
        if m not in exp_real.attention or m not in exp_random.attention:
            continue
        for measure, get in (("attention", lambda e: e.attention[m][b].mean(0)),
                             ("relevance", lambda e: e.relevance[m][b])):
            x, y = get(exp_real).ravel(), get(exp_random).ravel()
            rows.append({"modality": m, "measure": measure, "spearman": spearman(x, y)})
    sim = pd.DataFrame(rows, columns=["modality", "measure", "spearman"])
    crow = []
    for method in ("shapley", "leave_one_out", "attention", "relevance"):
        if method in exp_real.contributions and method in exp_random.contributions:
            for j, m in enumerate(MODALITIES):
                crow.append({"modality": m, "method": method, "real": float(exp_real.contributions[method][b, j]),
                             "randomized": float(exp_random.contributions[method][b, j])})
    return RandomizationResult(similarity=sim, contributions=pd.DataFrame(crow))


def mass_in_windows(weights: np.ndarray, positions: pd.DataFrame, windows: list, duration: float) -> tuple[float, float]:
    """(mass share of `weights` (…, S) on tokens overlapping the windows, chance share).

    A token counts by the fraction of its [t0, t1] span that lies inside any window; the
    chance share is the windows' fraction of the weld's duration.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1, len(positions)).sum(0)
    t0, t1 = positions["t0"].to_numpy(float), positions["t1"].to_numpy(float)
    span = np.clip(t1 - t0, 1e-12, None)
    inside = np.zeros(len(positions))
    covered = 0.0
    for a, z in windows:
        inside += np.clip(np.minimum(t1, z) - np.maximum(t0, a), 0, None) / span
        covered += max(0.0, min(z, duration) - max(a, 0.0))
    inside = np.clip(inside, 0, 1)
    total = w.sum()
    share = float((w * inside).sum() / total) if total > 0 else float("nan")
    return share, (covered / duration if duration > 0 else float("nan"))
