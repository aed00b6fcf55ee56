"""Comparing two explanations of the same inputs (two checkpoints, same welds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import InputError
from ..vocab import MODALITIES
from .engine import Explanation


def js_divergence(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """Jensen–Shannon divergence in bits (0 = identical, 1 = disjoint) along `axis`.

    Inputs are renormalised; a pair where either side has no mass gives NaN.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    ps, qs = p.sum(axis, keepdims=True), q.sum(axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p, q = p / ps, q / qs
        mid = 0.5 * (p + q)

        def kl(a, b):
            return np.where(a > 0, a * np.log2(np.where(a > 0, a, 1) / np.where(b > 0, b, 1)), 0.0).sum(axis)
        out = 0.5 * kl(p, mid) + 0.5 * kl(q, mid)
    empty = (np.squeeze(ps, axis) <= 0) | (np.squeeze(qs, axis) <= 0)
    return np.where(empty, np.nan, np.clip(out, 0.0, 1.0))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two vectors (ties get average ranks)."""
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class Comparison:
    a: Explanation
    b: Explanation
    js: np.ndarray                 # (B, T, 4) JSD of head-mean attention per token × modality
    delta: dict[str, np.ndarray]   # method -> (B, 4) contributions B − A
    rank_agreement: dict[str, np.ndarray]  # method -> (B,) Spearman ρ of modality contributions
    top_agree: np.ndarray          # (B,) same top modality by Shapley
    prediction_agree: np.ndarray | None    # (B,) same predicted class

    def per_weld_frame(self) -> pd.DataFrame:
        rows = []
        for i, wid in enumerate(self.a.ids):
            row = {"weld": wid, "top_a": self.a.top_modality(i), "top_b": self.b.top_modality(i),
                   "top_agree": bool(self.top_agree[i]),
                   "rank_rho_shapley": float(self.rank_agreement["shapley"][i]),
                   "mean_js": float(np.nanmean(self.js[i])) if np.isfinite(self.js[i]).any() else np.nan}
            if self.prediction_agree is not None:
                row.update(pred_a=self.a.predicted(i), pred_b=self.b.predicted(i),
                           prediction_agree=bool(self.prediction_agree[i]))
            for j, m in enumerate(MODALITIES):
                row[f"delta_shapley_{m}"] = float(self.delta["shapley"][i, j])
            row["flag"] = (not row["top_agree"]) or (self.prediction_agree is not None and not row["prediction_agree"])
            rows.append(row)
        return pd.DataFrame(rows)

    def js_frame(self) -> pd.DataFrame:
        B, T, _ = self.js.shape
        b, t, j = np.meshgrid(np.arange(B), np.arange(T), np.arange(len(MODALITIES)), indexing="ij")
        return pd.DataFrame({"weld": np.asarray(self.a.ids, dtype=object)[b.ravel()], "token": t.ravel(),
                             "modality": np.asarray(MODALITIES, dtype=object)[j.ravel()], "js": self.js.ravel()})

    def to_json_dict(self) -> dict:
        out = []
        for i, wid in enumerate(self.a.ids):
            entry = {
                "id": wid,
                "js_divergence": {m: [None if not np.isfinite(v) else float(v) for v in self.js[i, :, j]]
                                  for j, m in enumerate(MODALITIES)},
                "delta_contributions": {k: {m: float(v[i, j]) for j, m in enumerate(MODALITIES)}
                                        for k, v in self.delta.items()},
                "rank_agreement": {k: (None if not np.isfinite(v[i]) else float(v[i]))
                                   for k, v in self.rank_agreement.items()},
                "top_modality": {"a": self.a.top_modality(i), "b": self.b.top_modality(i),
                                 "agree": bool(self.top_agree[i])},
            }
            if self.prediction_agree is not None:
                entry["prediction"] = {"a": self.a.predicted(i), "b": self.b.predicted(i),
                                       "agree": bool(self.prediction_agree[i])}
            out.append(entry)
        return {"results": out}


def compare(a: Explanation, b: Explanation) -> Comparison:
    """Compare explanations of the same inputs by two models."""
    if a.batch_size != b.batch_size:
        raise InputError("compare", f"explanations cover {a.batch_size} and {b.batch_size} samples; compare needs the same inputs")
    B = a.batch_size
    T = min(a.token_shapley.shape[1], b.token_shapley.shape[1])
    js = np.full((B, max(T, 1), len(MODALITIES)), np.nan)
    for j, m in enumerate(MODALITIES):
        if m in a.attention and m in b.attention:
            pa, pb = a.attention[m].mean(1), b.attention[m].mean(1)      # (B, T, S)
            if pa.shape[1:] == pb.shape[1:]:
                js[:, :, j] = js_divergence(pa, pb)
    methods = [k for k in a.contributions if k in b.contributions]
    delta = {k: b.contributions[k] - a.contributions[k] for k in methods}
    rank = {k: np.array([spearman(a.contributions[k][i], b.contributions[k][i]) for i in range(B)]) for k in methods}
    top = np.array([a.top_modality(i) == b.top_modality(i) for i in range(B)])
    pred = None
    if a.logits is not None and b.logits is not None:
        pred = np.array([a.predicted(i) == b.predicted(i) for i in range(B)])
    return Comparison(a=a, b=b, js=js, delta=delta, rank_agreement=rank, top_agree=top, prediction_agree=pred)
