"""Faithfulness checks: do the explanation methods agree, and do they depend on the weights?

- `method_agreement`: per weld, Spearman rank correlation between the modality rankings
  of raw attention, value-weighted attention, gradient relevance, leave-one-out and Shapley.
- `randomized_copy` + `randomization_test`: the model-randomization sanity check of
  Adebayo et al. (2018). An explanation that barely changes when the weights are replaced
  by random ones does not explain the model.
(How much of a map's mass falls inside known defect windows is `summaries.mass_in_windows`.)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..vocab import MODALITIES
from .compare import spearman
from .engine import Explanation


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
        out["value_norms"] = vn / vn.sum() if vn.sum() > 0 else vn
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


