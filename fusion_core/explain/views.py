"""Display data prep: the numbers a dashboard draws, from explanations, welds and batch
tables. Pure numpy/pandas (no plotting library, no web framework), so anything that shows
an explanation (the Streamlit app, a notebook, a report) prepares it the same way.

    downsampling       bin_edges, downsample_columns (maps), minmax_envelope (signals)
    time views         time_band (token weights over time), spectrogram
    colour             shared_range (one colour range over several maps)
    positions          positions_of, describe_position
    references         reference_welds (the good welds a reference baseline or anomaly target uses)
    tables             explanation_long (Explain-now), present_frame, batch_table, batch_long,
                       window_long (a batch run's Parquet summary columns)
    decisions          truth_names, confusion_matrix, per_class_accuracy, accuracy, welds_in_cell,
                       decision_table + filter_decisions (Compare: which checkpoint is right)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..io.weld import Weld
from ..vocab import CLASS_NAMES, MODALITIES, TIME_MODALITIES, weld_class

if TYPE_CHECKING:
    from .compare import Comparison
    from .engine import Explanation

SPEC_MAX_FRAMES = 600      # spectrogram frames (time columns) by default
SPEC_ROWS = 96             # spectrogram frequency rows


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


# --------------------------------------------------------------------------- downsampling

def bin_edges(n: int, max_bins: int | None) -> np.ndarray:
    """Integer edges (k+1,) splitting range(n) into k = min(n, max_bins) near-equal bins."""
    if n <= 0:
        return np.zeros(1, dtype=np.int64)
    k = n if not max_bins or n <= max_bins else int(max_bins)
    return np.unique(np.linspace(0, n, k + 1).round().astype(np.int64))


def downsample_columns(z: np.ndarray, max_cols: int | None, agg: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """(T, S) → ((T, k) float32, edges (k+1,)) with k ≤ max_cols.

    agg "sum" keeps each row's total mass, "max" keeps each row's peak, "mean" the level.
    """
    z = np.asarray(z, dtype=np.float64)
    edges = bin_edges(z.shape[1], max_cols)
    if len(edges) - 1 == z.shape[1]:
        return _f32(z), edges
    starts = edges[:-1]
    if agg == "sum":
        out = np.add.reduceat(z, starts, axis=1)
    elif agg == "max":
        out = np.maximum.reduceat(z, starts, axis=1)
    elif agg == "mean":
        out = np.add.reduceat(z, starts, axis=1) / np.diff(edges)[None, :]
    else:
        raise ValueError(f"unknown aggregation {agg!r}")
    return _f32(out), edges


def minmax_envelope(t: np.ndarray, y: np.ndarray, max_points: int | None,
                    t_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal (n,) or (n, c) → (t (k,), low (k, c), high (k, c)), k ≤ max_points, within t_range.

    Each bin keeps its minimum and maximum, so no spike disappears; with at most
    max_points samples in range the samples themselves come back (low == high).
    """
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if t_range is not None:
        i0, i1 = np.searchsorted(t, t_range[0], "left"), np.searchsorted(t, t_range[1], "right")
        t, y = t[i0:i1], y[i0:i1]
    edges = bin_edges(len(t), max_points)
    if len(t) == 0:
        return t, y, y
    if len(edges) - 1 == len(t):
        return t, y, y
    starts = edges[:-1]
    lo = np.minimum.reduceat(y, starts, axis=0)
    hi = np.maximum.reduceat(y, starts, axis=0)
    tc = 0.5 * (t[starts] + t[edges[1:] - 1])
    return tc, lo, hi


# --------------------------------------------------------------------------- colour and positions

def shared_range(maps: Mapping[str, np.ndarray] | Sequence[np.ndarray], robust: bool = False) -> tuple[float, float]:
    """One (min, max) over several maps, for a colour scale they share. `robust`: the 5th and
    95th percentiles instead, so a few extreme cells (edge tokens) do not flatten the rest."""
    arrays = list(maps.values()) if isinstance(maps, Mapping) else list(maps)
    arrays = [np.asarray(z, dtype=np.float64) for z in arrays if np.asarray(z).size and np.isfinite(z).any()]
    if not arrays:
        return 0.0, 1.0
    if robust:
        allv = np.concatenate([z[np.isfinite(z)].ravel() for z in arrays])
        lo, hi = (float(v) for v in np.percentile(allv, [5, 95]))
    else:
        lo = min(float(np.nanmin(z)) for z in arrays)
        hi = max(float(np.nanmax(z)) for z in arrays)
    return lo, (hi if hi > lo else lo + 1e-12)


def positions_of(exp: Explanation, modality: str, b: int) -> pd.DataFrame | None:
    """The positions table (t0/t1, frames, photo and patch box per position) of sample b, or None."""
    pos = exp.positions.get(modality)
    if not pos or b >= len(pos) or pos[b] is None:
        return None
    return pos[b]


def describe_position(positions: pd.DataFrame | None, s0: int, s1: int | None = None) -> str:
    """Plain words for positions s0..s1 (inclusive): time span, frames, photo and patch box."""
    s1 = s0 if s1 is None else s1
    head = f"position {s0}" if s0 == s1 else f"positions {s0}–{s1}"
    if positions is None or s1 >= len(positions):
        return head
    rows = positions.iloc[s0:s1 + 1]
    parts = [head]
    if {"t0", "t1"} <= set(rows.columns):
        parts.append(f"t {rows['t0'].min():.2f}–{rows['t1'].max():.2f} s")
    if {"frame0", "frame1"} <= set(rows.columns):
        parts.append(f"frames {int(rows['frame0'].min())}–{int(rows['frame1'].max())}")
    if "image" in rows.columns:
        parts.append(f"photo {int(rows['image'].iloc[0]) + 1}")
    if {"x0", "y0", "x1", "y1"} <= set(rows.columns) and s0 == s1:
        r = rows.iloc[0]
        parts.append(f"patch x {r['x0']:.0f}–{r['x1']:.0f}, y {r['y0']:.0f}–{r['y1']:.0f} px")
    return " · ".join(parts)


# --------------------------------------------------------------------------- time views

def time_band(positions: pd.DataFrame, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tokens with time spans → (edges (k+1,), values (k,)) over time, ordered by start.

    Tokens sharing a span (video patches of one time bin) add up, so the band shows how much
    the token attends to each moment."""
    t0 = positions["t0"].to_numpy(dtype=np.float64)
    t1 = positions["t1"].to_numpy(dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    spans, inv = np.unique(np.column_stack([t0, t1]), axis=0, return_inverse=True)
    vals = np.bincount(inv.ravel(), weights=w, minlength=len(spans))
    edges = np.r_[spans[:, 0], spans[-1, 1]]
    return edges, vals


def spectrogram(audio: np.ndarray, sample_rate: int, *, max_frames: int = SPEC_MAX_FRAMES, n_fft: int = 512,
                rows: int = SPEC_ROWS, t_range: tuple[float, float] | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame times (k,), frequencies (rows,), level dB (rows, k)) — Hann STFT whose hop gives
    at most max_frames frames; frequency bins averaged (in power) down to `rows`."""
    x = np.asarray(audio, dtype=np.float64)
    off = 0.0
    if t_range is not None:
        i0 = max(0, int(t_range[0] * sample_rate))
        i1 = min(len(x), int(math.ceil(t_range[1] * sample_rate)))
        x, off = x[i0:i1], i0 / sample_rate
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    hop = max(1, int(math.ceil((len(x) - n_fft) / max(1, max_frames - 1))))
    n_frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(n_fft)[None, :], axis=1)) ** 2     # (k, n_fft/2+1)
    fe = bin_edges(spec.shape[1], rows)
    power = np.add.reduceat(spec, fe[:-1], axis=1) / np.diff(fe)[None, :]
    freqs = (fe[:-1] + fe[1:] - 1) / 2 * sample_rate / n_fft
    db = 10 * np.log10(power.T + 1e-12)
    times = off + (np.arange(n_frames) * hop + n_fft / 2) / sample_rate
    return times, freqs, db


# --------------------------------------------------------------------------- references

def reference_welds(welds: Iterable[Weld]) -> list[Weld]:
    """The good welds (class 00, by truth.json or the part number) of a set: the reference
    for the `reference-mean` baseline and the `anomaly` target."""
    return [w for w in welds if weld_class(w.weld_id, w.truth if isinstance(w.truth, dict) else None) == 0]


# --------------------------------------------------------------------------- tables

LONG_COLUMNS = ["weld", "class", "modality", "value"]


def explanation_long(exp: Explanation, classes: Sequence[str], method: str) -> pd.DataFrame:
    """Long form (weld, class, modality, value) of one contribution method, present
    modalities only; `classes[b]` is sample b's class label."""
    rows = [{"weld": exp.ids[b], "class": classes[b], "modality": m, "value": float(exp.contributions[method][b, j])}
            for b in range(len(exp.ids)) for j, m in enumerate(MODALITIES) if exp.present[b, j]]
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def present_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Per modality, whether each row's weld had it (from a batch table's `present` column)."""
    pres = results["present"].fillna("").astype(str)
    return pd.DataFrame({m: pres.str.contains(rf"(?:^|,){m}(?:,|$)", regex=True).to_numpy() for m in MODALITIES},
                        index=results.index)


def batch_table(ok: pd.DataFrame) -> pd.DataFrame:
    """The per-weld table of a batch run's rows (no failed ones), with the columns that
    `summaries.weld_table` gives an explanation: weld, class, prediction, correct,
    [p(prediction)], φ per modality, top, in window per time modality, window share,
    missing, source."""
    has = present_frame(ok)
    t = pd.DataFrame({"weld": ok["weld_id"].astype(str), "class": ok["class_name"].fillna("unknown").astype(str),
                      "prediction": ok["predicted"], "correct": ok["correct"]})
    if "predicted_prob" in ok:
        t["p(prediction)"] = ok["predicted_prob"]
    for m in MODALITIES:
        t[f"φ {m}"] = ok.get(f"shapley_{m}", np.nan)
    t["top"] = ok["top_modality"]
    for m in TIME_MODALITIES:
        t[f"in window: {m}"] = ok.get(f"relevance_in_truth_{m}", np.nan)
    t["window share"] = ok.get("truth_window_share", np.nan)
    missing = pd.Series("", index=ok.index)
    for m in MODALITIES:
        missing = missing.where(has[m], missing + np.where(missing.eq(""), "", ", ") + m)
    t["missing"] = missing
    t["source"] = ok["source"]
    return t.reset_index(drop=True)


def batch_long(ok: pd.DataFrame, table: pd.DataFrame, method: str) -> pd.DataFrame:
    """Long form (weld, class, modality, value) of one method's `<method>_<modality>`
    columns, present modalities only (vectorised: thousands of rows stay fast)."""
    has = present_frame(ok)
    parts = []
    for m in MODALITIES:
        col = f"{method}_{m}"
        if col not in ok:
            continue
        keep = has[m].to_numpy() & ok[col].notna().to_numpy()
        parts.append(pd.DataFrame({"weld": table["weld"].to_numpy()[keep], "class": table["class"].to_numpy()[keep],
                                   "modality": m, "value": ok[col].to_numpy(dtype=float, na_value=np.nan)[keep]}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LONG_COLUMNS)


def window_long(table: pd.DataFrame) -> pd.DataFrame:
    """(weld, modality, chance, share) per weld and time modality, from a per-weld table."""
    parts = [pd.DataFrame({"weld": table["weld"], "modality": m, "chance": table["window share"],
                           "share": table[f"in window: {m}"]}) for m in TIME_MODALITIES if f"in window: {m}" in table]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["weld", "modality", "chance", "share"])


# --------------------------------------------------------------------------- decisions (truth vs prediction)

def _known(truth: Sequence, predicted: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """The (truth, prediction) pairs where both are known (neither None/NaN/"unknown")."""
    t = pd.Series(list(truth), dtype=object)
    p = pd.Series(list(predicted), dtype=object)
    ok = t.notna() & p.notna() & t.ne("unknown") & p.ne("unknown")
    return t[ok].astype(str).to_numpy(), p[ok].astype(str).to_numpy()


def class_order(*labels: Iterable) -> list[str]:
    """The class names in `labels`, in CLASS_NAMES order first, then any others sorted."""
    seen = {str(x) for group in labels for x in group if x is not None and x == x and str(x) != "unknown"}
    known = [n for n in CLASS_NAMES.values() if n in seen]
    return known + sorted(seen - set(known))


def confusion_matrix(truth: Sequence, predicted: Sequence, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Counts with rows = true class, columns = predicted class (welds with an unknown truth
    or prediction are left out). `classes` fixes the order (and shape) of both axes."""
    t, p = _known(truth, predicted)
    classes = list(classes) if classes is not None else class_order(t, p)
    out = pd.DataFrame(0, index=pd.Index(classes, name="truth"), columns=pd.Index(classes, name="predicted"))
    for a, b in zip(t, p):
        if a in out.index and b in out.columns:
            out.loc[a, b] += 1
    return out


def per_class_accuracy(truth: Sequence, predicted: Sequence, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per true class: welds, correct, accuracy (NaN for a class with no weld)."""
    t, p = _known(truth, predicted)
    classes = list(classes) if classes is not None else class_order(t)
    rows = []
    for c in classes:
        n = int((t == c).sum())
        k = int(((t == c) & (p == c)).sum())
        rows.append({"class": c, "welds": n, "correct": k, "accuracy": k / n if n else np.nan})
    return pd.DataFrame(rows, columns=["class", "welds", "correct", "accuracy"])


def accuracy(truth: Sequence, predicted: Sequence) -> float:
    """Share of correct predictions among welds with a known truth and prediction (NaN if none)."""
    t, p = _known(truth, predicted)
    return float((t == p).mean()) if len(t) else float("nan")


def truth_names(welds: Sequence[Weld]) -> list[str | None]:
    """Each weld's true class name (truth.json's class, else the part number), None if unknown."""
    out = []
    for w in welds:
        code = weld_class(w.weld_id, w.truth if isinstance(w.truth, dict) else None)
        out.append(CLASS_NAMES.get(code) if code is not None else None)
    return out


def welds_in_cell(table: pd.DataFrame, truth: str, predicted: str) -> pd.DataFrame:
    """The rows of a per-weld table (`class`, `prediction` columns) in one confusion-matrix cell."""
    return table[(table["class"].astype(str) == truth) & (table["prediction"].astype(str) == predicted)]


TOP_MARGIN = 0.10          # a top-modality disagreement counts when each side leads by this share of |φ|
DECISION_FILTERS = ("all welds", "where they disagree", "where A or B is wrong")


def top_lead(phi: np.ndarray, top: int, other: int) -> float:
    """How far modality `top` leads `other` in contributions `phi` (4,), as a share of Σ|φ|."""
    total = float(np.abs(phi).sum())
    return float(phi[top] - phi[other]) / total if total > 0 else 0.0


def _flag(pred_a, pred_b, top_a: str, top_b: str, phi_a: np.ndarray, phi_b: np.ndarray, margin: float) -> str:
    """Why a weld is flagged: "prediction", "top modality", both, or ""."""
    why = []
    if pred_a is not None and pred_b is not None and pred_a != pred_b:
        why.append("prediction")
    if top_a != top_b:
        ia, ib = MODALITIES.index(top_a), MODALITIES.index(top_b)
        if min(top_lead(phi_a, ia, ib), top_lead(phi_b, ib, ia)) >= margin:
            why.append("top modality")
    return " + ".join(why)


def _right(pred, truth) -> bool | None:
    return None if pred is None or truth is None else pred == truth


def decision_table(cmp: Comparison, truth: Sequence[str | None], margin: float = TOP_MARGIN) -> pd.DataFrame:
    """Per weld, what a reader needs to choose between checkpoints A and B: truth, each
    prediction and whether it is right, the flag (they disagree on the prediction, or on the
    top modality by Shapley with each leading by at least `margin` of Σ|φ|; the column says
    which), top modalities, rank agreement, mean JSD and the Shapley change B − A."""
    a, b = cmp.a, cmp.b
    rows = []
    for i, wid in enumerate(a.ids):
        pa, pb, t = a.predicted(i), b.predicted(i), truth[i] if i < len(truth) else None
        phi_a, phi_b = a.contributions["shapley"][i], b.contributions["shapley"][i]
        row = {"Weld": wid, "Flag": _flag(pa, pb, a.top_modality(i), b.top_modality(i), phi_a, phi_b, margin),
               "Truth": t or "unknown", "A predicts": pa, "A right": _right(pa, t),
               "B predicts": pb, "B right": _right(pb, t), "Top modality A": a.top_modality(i), "Top modality B": b.top_modality(i),
               "Rank agreement ρ": float(cmp.rank_agreement["shapley"][i]),
               "Mean JSD (bits)": float(np.nanmean(cmp.js[i])) if np.isfinite(cmp.js[i]).any() else np.nan}
        for j, m in enumerate(MODALITIES):
            row[f"Δφ {m} (B − A)"] = float(phi_b[j] - phi_a[j])
        rows.append(row)
    return pd.DataFrame(rows)


def filter_decisions(table: pd.DataFrame, which: str) -> pd.DataFrame:
    """The rows of a `decision_table` for one of DECISION_FILTERS."""
    if which == DECISION_FILTERS[1]:
        return table[table["Flag"].astype(str) != ""]
    if which == DECISION_FILTERS[2]:
        return table[table["A right"].eq(False) | table["B right"].eq(False)]
    return table
