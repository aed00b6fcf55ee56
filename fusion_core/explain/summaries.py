"""Per-weld summaries of an explanation: the truth-window maths and the rows that batch runs
and the Dataset page show. One definition each, so the two never drift apart.

`summary_row` is what a batch row says about the explanation (prediction, probabilities,
`<method>_<modality>` for every registered method, attention summaries); the batch adds
the weld's and checkpoint's ids (`fusion_core.batch.store`).

Truth windows are `truth.json`'s `windows` ([start, end] seconds, validated here); the
duration a window share is taken of is the decoded weld's (`Weld.duration`), never a
number copied from the truth file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..io.weld import Weld
from ..vocab import CLASS_NAMES, MODALITIES, TIME_MODALITIES, weld_class
from .engine import Explanation

# Per fusion token t and modality m, the batch table's `attn_t<t>_<m>_<stat>` columns.
ATTENTION_STATS: tuple[str, ...] = ("entropy", "peak", "peak_time", "mass_in_truth")


def truth_windows(truth: dict | None) -> list[tuple[float, float]]:
    """The valid (start, end) windows of a truth record; malformed entries are skipped."""
    out = []
    for w in (truth or {}).get("windows") or []:
        try:
            a, b = float(w[0]), float(w[1])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        if math.isfinite(a) and math.isfinite(b) and b > a:
            out.append((a, b))
    return out


def overlap_fraction(positions: pd.DataFrame, windows: Sequence[tuple[float, float]]) -> np.ndarray:
    """Per token, the fraction of its [t0, t1] span inside any window (0…1)."""
    t0, t1 = positions["t0"].to_numpy(float), positions["t1"].to_numpy(float)
    span = np.clip(t1 - t0, 1e-12, None)
    inside = np.zeros(len(positions))
    for a, z in windows:   # divided per window: the batch table's numbers, to the last bit
        inside += np.clip(np.minimum(t1, z) - np.maximum(t0, a), 0, None) / span
    return np.clip(inside, 0, 1)


def window_share(windows: Sequence[tuple[float, float]], duration: float) -> float:
    """The windows' share of the weld's duration: what a map gets inside them by chance."""
    covered = sum(max(0.0, min(z, duration) - max(a, 0.0)) for a, z in windows)
    return covered / duration if duration > 0 else float("nan")


def mass_in_windows(weights: np.ndarray, positions: pd.DataFrame, windows: list, duration: float) -> tuple[float, float]:
    """(mass share of `weights` (…, S) on tokens overlapping the windows, chance share).

    A token counts by the fraction of its [t0, t1] span that lies inside any window; the
    chance share is the windows' fraction of the weld's duration.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1, len(positions)).sum(0)
    total = w.sum()
    share = float((w * overlap_fraction(positions, windows)).sum() / total) if total > 0 else float("nan")
    return share, window_share(windows, duration)


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def attention_column(t: int, m: str, stat: str) -> str:
    """`attn_t<t>_<m>_<stat>`, stat one of ATTENTION_STATS."""
    return f"attn_t{t}_{m}_{stat}"


def probability_column(label: str) -> str:
    """`prob_<label>`: the class label lower-cased, each run of other characters one `_`."""
    return "prob_" + (re.sub(r"[^0-9a-z]+", "_", str(label).lower()).strip("_") or "class")


def _position(exp: Explanation, m: str, b: int) -> pd.DataFrame | None:
    pos = exp.positions.get(m)
    return pos[b] if pos and b < len(pos) else None


def attention_summaries(exp: Explanation, b: int, windows: list, duration: float) -> dict[str, float | int | None]:
    """Per fusion token t × modality m: `attn_t<t>_<m>_entropy` (nats, head-mean attention),
    `_peak` (token index), `_peak_time` (s, centre of the peak token), `_mass_in_truth`;
    per time modality: `relevance_in_truth_<m>` (all tokens' gradient relevance in the windows)."""
    out: dict = {}
    for m, att in exp.attention.items():
        a = att[b].astype(np.float64).mean(0)            # (T, S): mean over heads
        mask = exp.masks[m][b]
        pos = _position(exp, m, b)
        has_time = pos is not None and m in TIME_MODALITIES and "t0" in pos
        if has_time and windows and mask.any() and m in exp.relevance:
            rel = np.asarray(exp.relevance[m][b], dtype=np.float64).sum(0)     # (S,): over fusion tokens
            if rel.sum() > 0:
                out[f"relevance_in_truth_{m}"] = _finite(mass_in_windows(rel, pos, windows, duration)[0])
        for t in range(a.shape[0]):
            out.update(_token_summary(a[t], mask, pos if has_time else None, windows, duration, t, m))
    return out


def _token_summary(row: np.ndarray, mask: np.ndarray, pos: pd.DataFrame | None, windows: list, duration: float,
                   t: int, m: str) -> dict:
    """One fusion token's attention over modality m (`pos` None: not a time modality)."""
    if not mask.any() or not row.sum() > 0:
        return {}
    p = row[mask] / row[mask].sum()
    nz = p[p > 0]
    peak = int(np.argmax(row))
    out = {attention_column(t, m, "entropy"): _finite(-(nz * np.log(nz)).sum()),
           attention_column(t, m, "peak"): peak}
    if pos is not None:
        out[attention_column(t, m, "peak_time")] = _finite((pos["t0"].iloc[peak] + pos["t1"].iloc[peak]) / 2)
        if windows:
            out[attention_column(t, m, "mass_in_truth")] = _finite(mass_in_windows(row, pos, windows, duration)[0])
    return out


def summary_row(exp: Explanation, b: int, *, labels: Sequence[str], codes: Sequence[int] | None,
                class_code: int | None, windows: list, duration: float | None) -> dict:
    """What a batch row says about sample b of an explanation: target, prediction and
    `prob_<label>` (with a classifier; `labels`/`codes` are the checkpoint's classes),
    `correct` (when both the prediction and the weld's `class_code` are known),
    target_value, efficiency_gap, top_modality (by Shapley), `<method>_<modality>`,
    truth_window_share and `attention_summaries`. `windows` come from `truth_windows`;
    `duration` is the decoded weld's."""
    row: dict = {"target": exp.target}
    if exp.logits is not None:
        row.update(_prediction(exp, b, labels, codes, class_code))
    row["target_value"] = _finite(exp.target_values[b])
    row["efficiency_gap"] = _finite(exp.efficiency_gap[b])
    row["top_modality"] = exp.top_modality(b)
    for method, vals in exp.contributions.items():
        for j, m in enumerate(MODALITIES):
            row[f"{method}_{m}"] = _finite(vals[b, j])
    if windows and duration:
        row["truth_window_share"] = window_share(windows, duration)
    row.update(attention_summaries(exp, b, windows or [], duration or 0.0))
    return row


def _prediction(exp: Explanation, b: int, labels: Sequence[str], codes: Sequence[int] | None,
                class_code: int | None) -> dict:
    probs = exp.probabilities[b]
    i = int(np.argmax(exp.logits[b]))
    out = {"predicted": labels[i] if i < len(labels) else str(i),
           "predicted_code": codes[i] if codes and i < len(codes) else None,
           "predicted_prob": _finite(probs[i])}
    for label, p in zip(labels, probs):
        out[probability_column(label)] = _finite(p)
    if out["predicted_code"] is not None and class_code is not None:
        out["correct"] = out["predicted_code"] == class_code
    return out


def weld_table(exp: Explanation, welds: Sequence[Weld]) -> pd.DataFrame:
    """One row per weld (the Dataset page's "explain now" table): truth class, prediction,
    Shapley per modality, top modality and, when the truth gives defect windows, the share
    of gradient relevance inside them per time modality and the share by chance."""
    rows = []
    for b, w in enumerate(welds):
        code = weld_class(w.weld_id, w.truth if isinstance(w.truth, dict) else None)
        truth = CLASS_NAMES.get(code) if code is not None else None
        row = {"weld": w.weld_id, "class": truth or "unknown", "prediction": exp.predicted(b)}
        row["correct"] = (row["prediction"] == truth) if truth and row["prediction"] is not None else None
        for j, m in enumerate(MODALITIES):
            row[f"φ {m}"] = float(exp.contributions["shapley"][b, j])
        row["top"] = exp.top_modality(b)
        windows = truth_windows(w.truth if isinstance(w.truth, dict) else None)
        duration = float(w.duration)
        for m in TIME_MODALITIES:
            share = np.nan
            pos = _position(exp, m, b)
            if windows and m in exp.relevance and pos is not None and exp.present[b, MODALITIES.index(m)]:
                share = mass_in_windows(exp.relevance[m][b], pos, windows, duration)[0]
            row[f"in window: {m}"] = share
        row["window share"] = window_share(windows, duration) if windows else np.nan
        row["missing"] = ", ".join(exp.missing(b))
        rows.append(row)
    return pd.DataFrame(rows)
