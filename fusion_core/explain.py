"""The explanation engine: per-head attention, value-weighted norms, gradient relevance and
exact modality Shapley, for a batch of feature sequences.

Why this is cheap: modalities meet only in the aggregation MLP. Each modality's attended
block (B,T,H) is computed once with the modality present and once absent; a coalition
just picks present/absent blocks and re-runs the MLP. All 16 coalitions of the four
modalities go through the MLP as one batch, so exact Shapley costs about one forward.

Everything here runs the module's arithmetic directly (no dropout, whatever the module's
train/eval flag), never writes to the module, and never produces NaN for an absent or
fully padded modality: its attention row is all zeros and its block is what the
`drop-attention` baseline says an absent modality is, norm(queries + out_proj.bias).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .features import FeatureBatch
from .model import MODALITIES, CrossAttentionFusionModule, DummyCrossAttentionFusion, linear_of

BASELINES: dict[str, str] = {
    "drop-attention": "the modality's attention output removed: block = norm(queries + out_proj.bias)",
    "reference-mean": "the modality's features replaced by their mean over a reference set",
    "zeros": "the modality's features replaced by zeros",
}
TARGETS: dict[str, str] = {
    "auto": "class logit when the checkpoint has a classifier, else anomaly when a reference is given, else cosine",
    "logit": "logit of the predicted class (or `class:<name or index>` for a fixed class)",
    "anomaly": "mean distance of the fused embedding to its nearest reference ('good') embeddings",
    "cosine": "cosine similarity between a coalition's fused output and the full fused output",
}
CONTRIBUTION_METHODS: dict[str, str] = {
    "shapley": "exact Shapley value over the 16 modality coalitions",
    "leave_one_out": "v(all) − v(all without the modality)",
    "attention": "share of the attention output norm ‖Σ α·V·W_o‖ (what raw attention suggests)",
    "relevance": "share of gradient-weighted attention relevance mass",
}
N_MOD = len(MODALITIES)


# --------------------------------------------------------------------------- attention

@dataclass
class Attended:
    """One modality's cross-attention, per head, for a batch."""

    weights: torch.Tensor      # (B, heads, T, S) attention probabilities; 0 at padding
    value_norms: torch.Tensor  # (B, heads, T, S) ‖α · v_j W_o^h‖ (Kobayashi et al. 2020)
    output: torch.Tensor       # (B, T, H) attention output without out_proj bias
    block: torch.Tensor        # (B, T, H) norm(attention output + queries)


def _queries(fusion: CrossAttentionFusionModule, batch: int) -> torch.Tensor:
    return fusion.fusion_tokens.expand(batch, -1, -1)


def absent_block(fusion: CrossAttentionFusionModule, m: str, batch: int) -> torch.Tensor:
    """What a modality with no attention output contributes: norm(queries + out_proj.bias)."""
    q = _queries(fusion, batch)
    return fusion.norm(m)(q + fusion.cross_attn(m).out_proj.bias)


def attend(fusion: CrossAttentionFusionModule, m: str, x: torch.Tensor,
           valid: torch.Tensor | None = None, need_norms: bool = True,
           weights_leaf: bool = False, consts: dict | None = None) -> Attended:
    """Per-head cross-attention of the fusion tokens over modality `m`'s features x (B,S,D).

    Same arithmetic as nn.MultiheadAttention in eval mode, but per head and with a fully
    padded key set giving zero attention (not NaN). With `weights_leaf`, the attention
    weights become a leaf that requires grad, so ∂target/∂A is available even when the
    module's parameters are frozen (loaded models are), and nothing upstream is traced.
    """
    mha = fusion.cross_attn(m)
    B, S, _ = x.shape
    H = fusion.config.hidden_dim
    h = mha.num_heads
    d = H // h
    q_in = _queries(fusion, B)
    Wq, bq = mha.in_proj_weight[:H], mha.in_proj_bias[:H]
    T = q_in.shape[1]
    consts = constants(fusion) if consts is None else consts
    q = _constant(consts, ("queries", m), lambda: F.linear(fusion.fusion_tokens, Wq, bq))
    q = q.view(1, T, h, d).transpose(1, 2).expand(B, -1, -1, -1)  # (B,h,T,d)
    # Keys and values in one GEMM, as nn.MultiheadAttention does when key is value; when
    # the input is narrower than 2H, the modality projection is folded into it (fewer
    # multiply-adds per position: D·2H instead of D·H + H·2H).
    lin, W_kv, b_kv = linear_of(fusion.proj(m)), mha.in_proj_weight[H:], mha.in_proj_bias[H:]
    if lin.in_features < 2 * H:
        W_f, b_f = _constant(consts, ("kv folded", m), lambda: (W_kv @ lin.weight, W_kv @ lin.bias + b_kv))
        kv = F.linear(x, W_f, b_f)
    else:
        kv = F.linear(lin(x), W_kv, b_kv)
    kv = kv.view(B, S, 2, h, d)
    k = kv[:, :, 0].transpose(1, 2)                               # (B,h,S,d)
    v = kv[:, :, 1].transpose(1, 2)                               # (B,h,S,d)
    scores = (q / math.sqrt(d)) @ k.transpose(-1, -2)             # (B,h,T,S)
    if valid is None:
        valid = torch.ones(B, S, dtype=torch.bool)
    row_ok = valid.any(dim=1)
    # Padding gets -inf only in rows that have some data: a fully padded row keeps finite
    # scores (so softmax and its gradient stay finite) and is zeroed afterwards.
    pad = (~valid & row_ok[:, None])[:, None, None, :]
    weights = torch.softmax(scores.masked_fill(pad, float("-inf")), dim=-1)
    weights = weights * row_ok[:, None, None, None].to(weights.dtype)
    if weights_leaf:
        weights = weights.detach().requires_grad_(True)
    ctx = (weights @ v).transpose(1, 2).reshape(B, T, H)
    output = F.linear(ctx, mha.out_proj.weight)
    block = fusion.norm(m)(output + mha.out_proj.bias + q_in)
    if need_norms:
        Wo = mha.out_proj.weight.view(H, h, d).permute(1, 2, 0)      # (h, d, H): W_o^h transposed
        gram = Wo @ Wo.transpose(1, 2)                                # (h, d, d)
        sq = torch.einsum("bhsd,hde,bhse->bhs", v, gram, v).clamp_min(0)
        value_norms = weights * sq.sqrt()[:, :, None, :]
    else:
        value_norms = torch.zeros(0)
    return Attended(weights=weights, value_norms=value_norms, output=output, block=block)


def aggregate(fusion: CrossAttentionFusionModule, blocks: torch.Tensor) -> torch.Tensor:
    """(N, 4, T, H) → fused (N, H), skipping dropout (explanations are eval-mode)."""
    return aggregate_preactivation(fusion, fusion.aggregation[0](blocks.flatten(1)))


def aggregate_preactivation(fusion: CrossAttentionFusionModule, z: torch.Tensor) -> torch.Tensor:
    """The aggregation MLP after its first Linear: (N, 2H) → fused (N, H), no dropout."""
    agg = fusion.aggregation
    return linear_of(fusion.output_proj)(agg[4](agg[2](agg[1](z))))


# --------------------------------------------------------------------------- targets

@dataclass
class Target:
    """A scalar per sample, computed from fused outputs (N, H)."""

    name: str
    kind: str                                    # logit | anomaly | cosine
    fn: Any                                      # (fused (N,H), row index (N,)) -> (N,)
    grad_fn: Any                                 # same, but with a non-degenerate gradient


def _class_index(spec: str, class_names: list[str] | None, n_classes: int, source: str) -> int:
    key = spec.split(":", 1)[1].strip()
    if key.lstrip("-").isdigit():
        idx = int(key)
    elif class_names and key in class_names:
        idx = class_names.index(key)
    else:
        raise InputError(source, f"unknown class {key!r}; classes: {', '.join(class_names or map(str, range(n_classes)))}")
    if not 0 <= idx < n_classes:
        raise InputError(source, f"class index {idx} out of range 0..{n_classes - 1}")
    return idx


def make_target(spec: str, fused_full: torch.Tensor, classifier: nn.Module | None,
                class_names: list[str] | None, reference_embeddings: torch.Tensor | None,
                source: str = "") -> Target:
    spec = spec or "auto"
    if spec == "auto":
        spec = "logit" if classifier is not None else ("anomaly" if reference_embeddings is not None else "cosine")
    if spec == "logit" or spec.startswith("class:"):
        if classifier is None:
            raise InputError(source, "target 'logit' needs a checkpoint with a classifier head; use 'cosine' or 'anomaly'")
        with torch.no_grad():
            logits = classifier(fused_full)
        n = logits.shape[-1]
        if spec.startswith("class:"):
            cls = torch.full((fused_full.shape[0],), _class_index(spec, class_names, n, source), dtype=torch.long)
            name = f"logit[{(class_names or [str(i) for i in range(n)])[int(cls[0])]}]"
        else:
            cls = logits.argmax(-1)
            name = "logit[predicted class]"

        def fn(f, rows):
            return classifier(f).gather(1, cls[rows][:, None])[:, 0]
        return Target(name=name, kind="logit", fn=fn, grad_fn=fn)
    if spec == "anomaly":
        if reference_embeddings is None or len(reference_embeddings) == 0:
            raise InputError(source, "target 'anomaly' needs a reference set of good welds")
        ref = reference_embeddings.detach()
        k = min(5, ref.shape[0])

        def fn(f, rows):
            return torch.cdist(f, ref).topk(k, dim=1, largest=False).values.mean(1)
        return Target(name="anomaly", kind="anomaly", fn=fn, grad_fn=fn)
    if spec == "cosine":
        full = fused_full.detach()
        direction = full / full.norm(dim=-1, keepdim=True).clamp_min(1e-12)

        def fn(f, rows):
            return F.cosine_similarity(f, full[rows], dim=-1)

        def grad_fn(f, rows):
            # cos(f, f) is constant in f; its projection on its own direction is not.
            return (f * direction[rows]).sum(-1)
        return Target(name="cosine", kind="cosine", fn=fn, grad_fn=grad_fn)
    raise InputError(source, f"unknown target {spec!r}; choose from auto, logit, class:<name>, anomaly, cosine")


# --------------------------------------------------------------------------- Shapley

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


# --------------------------------------------------------------------------- result

@dataclass
class Explanation:
    """Everything explained for one batch, as numpy arrays; `*_frame()` give tidy tables."""

    ids: list[str]
    target: str
    target_kind: str
    baseline: str
    has_attention: bool
    present: np.ndarray                              # (B, 4) bool
    attention: dict[str, np.ndarray]                 # m -> (B, heads, T, S)
    value_norms: dict[str, np.ndarray]               # m -> (B, heads, T, S)
    relevance: dict[str, np.ndarray]                 # m -> (B, T, S)
    masks: dict[str, np.ndarray]                     # m -> (B, S) bool
    contributions: dict[str, np.ndarray]             # method -> (B, 4)
    token_shapley: np.ndarray                        # (B, T, 4) Shapley per fusion token
    coalition_values: np.ndarray                     # (B, 16) float64, bitmask order
    efficiency_gap: np.ndarray                       # (B,) Σφ − (v(all) − v(none))
    target_values: np.ndarray                        # (B,) v(all)
    fused: np.ndarray                                # (B, H)
    logits: np.ndarray | None = None                 # (B, C)
    class_names: list[str] | None = None
    positions: dict[str, list[pd.DataFrame | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return len(self.ids)

    @property
    def probabilities(self) -> np.ndarray | None:
        if self.logits is None:
            return None
        z = self.logits - self.logits.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    def predicted(self, b: int) -> str | None:
        if self.logits is None:
            return None
        i = int(self.logits[b].argmax())
        return self.class_names[i] if self.class_names else str(i)

    def missing(self, b: int) -> list[str]:
        return [m for j, m in enumerate(MODALITIES) if not self.present[b, j]]

    def top_modality(self, b: int, method: str = "shapley") -> str:
        return MODALITIES[int(np.argmax(self.contributions[method][b]))]

    def contributions_frame(self) -> pd.DataFrame:
        rows = []
        for method, vals in self.contributions.items():
            for b in range(self.batch_size):
                for j, m in enumerate(MODALITIES):
                    rows.append((b, self.ids[b], method, m, float(vals[b, j]), bool(self.present[b, j])))
        return pd.DataFrame(rows, columns=["sample", "weld", "method", "modality", "value", "present"])

    def token_contributions_frame(self) -> pd.DataFrame:
        B, T, _ = self.token_shapley.shape
        b, t, j = np.meshgrid(np.arange(B), np.arange(T), np.arange(N_MOD), indexing="ij")
        return pd.DataFrame({
            "sample": b.ravel(), "weld": np.asarray(self.ids, dtype=object)[b.ravel()],
            "token": t.ravel(), "modality": np.asarray(MODALITIES, dtype=object)[j.ravel()],
            "value": self.token_shapley.ravel(),
        })

    def attention_frame(self, sample: int, modality: str) -> pd.DataFrame:
        """One row per (head, token, position), head 'mean' included, with positions joined."""
        if modality not in self.attention:
            return pd.DataFrame(columns=["head", "token", "position", "attention", "value_norm", "relevance"])
        a = self.attention[modality][sample]
        vn = self.value_norms[modality][sample]
        rel = self.relevance[modality][sample]
        h, T, S = a.shape
        frames = []
        for head in list(range(h)) + ["mean"]:
            aw = a.mean(0) if head == "mean" else a[head]
            vw = vn.mean(0) if head == "mean" else vn[head]
            t, s = np.meshgrid(np.arange(T), np.arange(S), indexing="ij")
            frames.append(pd.DataFrame({
                "head": [str(head)] * (T * S), "token": t.ravel(), "position": s.ravel(),
                "attention": aw.ravel(), "value_norm": vw.ravel(),
                "relevance": rel.ravel() if head == "mean" else np.full(T * S, np.nan),
            }))
        df = pd.concat(frames, ignore_index=True)
        pos = self.positions.get(modality)
        if pos and pos[sample] is not None and len(pos[sample]) == S:
            df = df.join(pos[sample].reset_index(drop=True), on="position")
        return df

    def to_json_dict(self) -> dict:
        """The CLI's `results` entries, one per sample."""
        def r(x):
            return np.round(np.asarray(x, dtype=np.float64), 7).tolist()
        out = []
        probs = self.probabilities
        for b in range(self.batch_size):
            entry: dict[str, Any] = {
                "id": self.ids[b],
                "missing": self.missing(b),
                "attention": {m: r(a[b]) for m, a in self.attention.items()},
                "relevance": {m: r(a[b]) for m, a in self.relevance.items()},
                "value_norms": {m: r(a[b]) for m, a in self.value_norms.items()},
                "contributions": {k: {m: float(v[b, j]) for j, m in enumerate(MODALITIES)}
                                  for k, v in self.contributions.items()},
                "token_shapley": r(self.token_shapley[b]),
                "target_value": float(self.target_values[b]),
                "coalition_values": {
                    "+".join(m for j, m in enumerate(MODALITIES) if c >> j & 1) or "none": float(self.coalition_values[b, c])
                    for c in range(2 ** N_MOD)
                },
                "efficiency_gap": float(self.efficiency_gap[b]),
                "top_modality": self.top_modality(b),
            }
            if probs is not None:
                names = self.class_names or [str(i) for i in range(probs.shape[1])]
                entry["prediction"] = {"class": self.predicted(b),
                                       "probabilities": {n: float(p) for n, p in zip(names, probs[b])}}
            if not self.has_attention:
                entry["note"] = "this model has no attention (mean-pool fusion): contributions only"
            out.append(entry)
        return {"target": self.target, "baseline": self.baseline, "results": out}


# --------------------------------------------------------------------------- engine

def _unwrap(model) -> tuple[nn.Module, nn.Module | None, list[str] | None]:
    fusion = getattr(model, "fusion", model)
    return fusion, getattr(model, "classifier", None), getattr(model, "class_names", None)


def check_batch(fusion: nn.Module, batch: FeatureBatch) -> None:
    """Dims, ranks and values of `batch` against the fusion module; InputError otherwise."""
    src = batch.source or "features"
    if batch.batch_size == 0:
        raise InputError(src, "no samples")
    for m, x in batch.features.items():
        if x.ndim != 3:
            raise InputError(src, f"'{m}' has rank {x.ndim}, expected (B, S, D)")
        if isinstance(fusion, CrossAttentionFusionModule):
            want = fusion.config.input_dim(m)
            if x.shape[2] != want:
                raise InputError(src, f"'{m}' features have dimension {x.shape[2]} but the checkpoint's "
                                      f"{m}_proj expects {want}")
        if not torch.isfinite(x).all():
            raise InputError(src, f"'{m}' contains NaN or Inf")
    if isinstance(fusion, DummyCrossAttentionFusion):
        dims = {m: int(x.shape[2]) for m, x in batch.features.items()}
        if fusion.input_dims:
            for m, d in dims.items():
                if d != fusion.input_dims.get(m, d):
                    raise InputError(src, f"'{m}' features have dimension {d}, the checkpoint expects {fusion.input_dims[m]}")
        elif len(dims) < N_MOD:
            raise InputError(src, "a mean-pool (dummy) checkpoint whose config does not give per-modality dims "
                                  "needs all four modalities to split its input")
        total = sum(fusion.input_dims.values()) if fusion.input_dims else sum(dims.values())
        if total != fusion.total_input_dim:
            raise InputError(src, f"feature dims add up to {total} but the checkpoint expects {fusion.total_input_dim}")


def reference_means(batch: FeatureBatch) -> dict[str, torch.Tensor]:
    """Per-modality mean feature over all valid positions of a reference batch: m -> (D,)."""
    out = {}
    for m, x in batch.features.items():
        w = batch.mask(m).to(x.dtype)[..., None]
        n = w.sum()
        if n > 0:
            out[m] = (x * w).sum((0, 1)) / n
    return out


def fused_embeddings(model, batch: FeatureBatch) -> torch.Tensor:
    """Fused outputs (B, H) for a batch, eval-mode arithmetic, no gradient."""
    fusion, _, _ = _unwrap(model)
    with torch.no_grad():
        if isinstance(fusion, DummyCrossAttentionFusion):
            return fusion.fuse_pooled(_dummy_pooled(fusion, batch)[0])
        B = batch.batch_size
        blocks = []
        for m in MODALITIES:
            if m in batch.features:
                blocks.append(attend(fusion, m, batch.features[m], batch.mask(m), need_norms=False).block)
            else:
                blocks.append(absent_block(fusion, m, B))
        return aggregate(fusion, torch.stack(blocks, 1))


def explain(model, inputs: FeatureBatch, *, baseline: str = "drop-attention", target: str = "auto",
            reference: FeatureBatch | None = None, relevance: bool = True) -> Explanation:
    """Explain a batch. `model` is a LoadedCheckpoint (fusion + optional classifier) or a bare
    fusion module. `reference` is a set of good samples: it defines `reference-mean` and the
    `anomaly` target (without one, `reference-mean` uses the batch itself, and says so).
    """
    fusion, classifier, class_names = _unwrap(model)
    src = inputs.source or "features"
    if baseline not in BASELINES:
        raise InputError(src, f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    check_batch(fusion, inputs)
    if reference is not None:
        check_batch(fusion, reference)
    notes: list[str] = []
    ref_emb = fused_embeddings(model, reference) if reference is not None else None
    if baseline == "reference-mean":
        if reference is None:
            notes.append("reference-mean baseline: no reference set given, the mean over this batch is used")
        ref_mean = reference_means(reference if reference is not None else inputs)
    else:
        ref_mean = {}
    if isinstance(fusion, DummyCrossAttentionFusion):
        return _explain_dummy(fusion, classifier, class_names, inputs, baseline, target, ref_mean, ref_emb, notes)
    return _explain_attention(fusion, classifier, class_names, inputs, baseline, target, ref_mean, ref_emb,
                              notes, relevance)


# Input-independent blocks (the `zeros` baseline; the queries) per module, recomputed
# when any parameter changes in place (tensor version counters). Weak keys: a model
# that is dropped takes its entries with it. Nothing is ever written to the module.
_CONSTANTS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def constants(fusion: nn.Module) -> dict:
    """This module's cache of input-independent tensors, emptied if any weight changed."""
    entry = _CONSTANTS.get(fusion)
    # Parameters are updated in place (optimizers, load_state_dict), which bumps their
    # version counters; replacing a Parameter object outright is not tracked.
    if entry is not None and tuple(p._version for p in entry["params"]) == entry["version"]:
        return entry
    params = list(fusion.parameters())
    entry = {"params": params, "version": tuple(p._version for p in params)}
    _CONSTANTS[fusion] = entry
    return entry


def _constant(consts: dict, key: tuple, make) -> torch.Tensor:
    if key not in consts:
        with torch.no_grad():
            consts[key] = make()
    return consts[key]


def _baseline_block(fusion, m: str, baseline: str, B: int, ref_mean: dict, D: int) -> torch.Tensor:
    consts = constants(fusion)
    if baseline == "drop-attention" or (baseline == "reference-mean" and m not in ref_mean):
        return absent_block(fusion, m, B)
    if baseline == "zeros":
        one = _constant(consts, ("zeros", m),
                        lambda: attend(fusion, m, torch.zeros(1, 1, D), need_norms=False, consts=consts).block)
        return one.expand(B, -1, -1)
    return attend(fusion, m, ref_mean[m].expand(1, 1, D), need_norms=False, consts=consts).block.expand(B, -1, -1)


def _absent_blocks(fusion, inputs: FeatureBatch, present: np.ndarray, present_blocks: torch.Tensor,
                   baseline: str, ref_mean: dict) -> torch.Tensor:
    """(B,4,T,H) blocks standing for each modality's absence under `baseline`."""
    B = inputs.batch_size
    absent = []
    for j, m in enumerate(MODALITIES):
        D = inputs.features[m].shape[2] if m in inputs.features else fusion.config.input_dim(m)
        blk = _baseline_block(fusion, m, baseline, B, ref_mean, D)
        # A modality with no data cannot contribute: its absent block is its present block.
        keep = torch.as_tensor(~present[:, j])[:, None, None]
        absent.append(torch.where(keep, present_blocks[:, j], blk))
    return torch.stack(absent, 1)


def coalition_values(fusion, present_blocks: torch.Tensor, absent_blocks: torch.Tensor, tgt,
                     per_token: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Target values of all 16 modality coalitions, (B,16) float64 in bitmask order, and
    with `per_token` also of the per-token games, (B,T,16): modality j absent only at
    fusion token t.

    The MLP's first layer is linear in the blocks, so a coalition's pre-activation is a
    sum of per-(modality, token) partial products, computed once for present and absent
    blocks in one batched matmul (the cost of one pass over the 4TH×2H weight). Each
    coalition then costs only the rest of the MLP. `tgt` is a Target, or a function
    making one from the full fused output (so the weight is read once in all).
    """
    B, M, T, H = present_blocks.shape
    lin0 = fusion.aggregation[0]
    X = torch.cat([present_blocks, absent_blocks]).permute(1, 2, 0, 3).reshape(M * T, 2 * B, H)
    # The weight regrouped per (modality, token), contiguous (a strided bmm is ~2× slower).
    W = _constant(constants(fusion), ("W0 by block",),
                  lambda: lin0.weight.detach().view(-1, M * T, H).permute(1, 2, 0).contiguous())  # (4T,H,2H)
    parts = torch.bmm(X, W).view(M, T, 2 * B, -1).permute(2, 0, 1, 3)             # (2B,4,T,2H)
    part_p, part_a = parts[:B], parts[B:]
    C = coalition_masks().to(parts.dtype)                                         # (16,4)
    mod_p, mod_a = part_p.sum(2), part_a.sum(2)                                   # (B,4,2H)
    # Sum the chosen partials in one fixed order: a modality whose present and absent
    # partials are equal (no data) then changes no value by even one rounding step.
    chosen = mod_a[None] + C[:, None, :, None] * (mod_p - mod_a)[None]           # (16,B,4,2H)
    z_mod = lin0.bias + chosen.sum(2)
    if not isinstance(tgt, Target):
        tgt = tgt(aggregate_preactivation(fusion, z_mod[-1]))
    z = [z_mod.reshape(-1, z_mod.shape[-1])]
    if per_token:
        z_full = lin0.bias + mod_p.sum(1)                                         # (B,2H)
        z_tok = z_full[None, None] + torch.einsum("cm,bmto->tcbo", C - 1, part_p - part_a)  # (T,16,B,2H)
        z.append(z_tok.reshape(-1, z_tok.shape[-1]))
    n = 2 ** N_MOD
    rows = torch.arange(B).repeat(n * (1 + (T if per_token else 0)))
    vals = tgt.fn(aggregate_preactivation(fusion, torch.cat(z)), rows).detach().double().numpy()
    values = vals[: n * B].reshape(n, B).T
    tok_values = vals[n * B:].reshape(T, n, B).transpose(2, 0, 1) if per_token else None
    return values, tok_values


def modality_shapley(model, inputs: FeatureBatch, *, baseline: str = "drop-attention", target: str = "auto",
                     reference: FeatureBatch | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact modality Shapley values only: (phi (B,4), coalition values (B,16)).

    Same numbers as `explain(...).contributions["shapley"]`, without attention maps,
    norms or gradients: the cheapest way to the values (what the benchmark times).
    """
    fusion, classifier, class_names = _unwrap(model)
    if isinstance(fusion, DummyCrossAttentionFusion):
        exp = explain(model, inputs, baseline=baseline, target=target, reference=reference)
        return exp.contributions["shapley"], exp.coalition_values
    check_batch(fusion, inputs)
    B = inputs.batch_size
    ref_mean = reference_means(reference if reference is not None else inputs) if baseline == "reference-mean" else {}
    with torch.no_grad():
        blocks = [attend(fusion, m, inputs.features[m], inputs.mask(m), need_norms=False).block
                  if m in inputs.features else absent_block(fusion, m, B) for m in MODALITIES]
        present_blocks = torch.stack(blocks, 1)
        ref_emb = fused_embeddings(model, reference) if reference is not None else None
        absent_blocks = _absent_blocks(fusion, inputs, inputs.present(), present_blocks, baseline, ref_mean)
        values, _ = coalition_values(
            fusion, present_blocks, absent_blocks,
            lambda fused: make_target(target, fused, classifier, class_names, ref_emb, inputs.source))
    return shapley_from_values(values), values


def _explain_attention(fusion, classifier, class_names, inputs, baseline, target_spec, ref_mean, ref_emb,
                       notes, want_relevance) -> Explanation:
    B = inputs.batch_size
    present = inputs.present()
    T = fusion.config.num_fusion_tokens

    # Present blocks, with graph (attention weights are the leaves of the relevance gradient).
    att: dict[str, Attended] = {}
    with torch.enable_grad():
        blocks = []
        for m in MODALITIES:
            if m in inputs.features:
                att[m] = attend(fusion, m, inputs.features[m], inputs.mask(m), weights_leaf=want_relevance)
                blocks.append(att[m].block)
            else:
                blocks.append(absent_block(fusion, m, B))
        present_blocks = torch.stack(blocks, 1)                            # (B,4,T,H)
        fused = aggregate(fusion, present_blocks)
        tgt = make_target(target_spec, fused.detach(), classifier, class_names, ref_emb, inputs.source)
        relevance: dict[str, np.ndarray] = {}
        if want_relevance and att:
            rows = torch.arange(B)
            names = list(att)
            grads = torch.autograd.grad(tgt.grad_fn(fused, rows).sum(), [att[m].weights for m in names],
                                        allow_unused=True)
            for m, g in zip(names, grads):
                a = att[m].weights.detach()
                g = torch.zeros_like(a) if g is None else g
                relevance[m] = (g * a).clamp_min(0).mean(1).numpy()            # Chefer et al. 2021

    with torch.no_grad():
        present_blocks = present_blocks.detach()
        fused = fused.detach()
        absent_blocks = _absent_blocks(fusion, inputs, present, present_blocks, baseline, ref_mean)
        values, tok_values = coalition_values(fusion, present_blocks, absent_blocks, tgt, per_token=True)

        phi = shapley_from_values(values)
        token_phi = shapley_from_values(tok_values)
        full = 2 ** N_MOD - 1
        loo = np.stack([values[:, full] - values[:, full & ~(1 << j)] for j in range(N_MOD)], 1)
        gap = phi.sum(1) - (values[:, full] - values[:, 0])

        attn_norm = np.zeros((B, N_MOD))
        for j, m in enumerate(MODALITIES):
            if m in att:
                attn_norm[:, j] = att[m].output.detach().norm(dim=-1).mean(-1).numpy()
        rel_mass = np.zeros((B, N_MOD))
        for j, m in enumerate(MODALITIES):
            if m in relevance:
                rel_mass[:, j] = relevance[m].sum((1, 2))

        logits = classifier(fused).numpy() if classifier is not None else None

    def share(x):
        s = x.sum(1, keepdims=True)
        return np.divide(x, s, out=np.zeros_like(x), where=s > 0)

    S_of = {m: inputs.features[m].shape[1] for m in inputs.features}
    return Explanation(
        ids=list(inputs.ids) or [f"sample {i}" for i in range(B)],
        target=tgt.name, target_kind=tgt.kind, baseline=baseline, has_attention=True, present=present,
        attention={m: att[m].weights.detach().numpy() for m in att},
        value_norms={m: att[m].value_norms.detach().numpy() for m in att},
        relevance=relevance if want_relevance else {m: np.zeros((B, T, S_of[m]), np.float32) for m in att},
        masks={m: inputs.mask(m).numpy() for m in att},
        contributions={"shapley": phi, "leave_one_out": loo, "attention": share(attn_norm),
                       "relevance": share(rel_mass)},
        token_shapley=token_phi, coalition_values=values, efficiency_gap=gap,
        target_values=values[:, full], fused=fused.numpy(), logits=logits, class_names=class_names,
        positions=dict(inputs.positions), notes=notes,
    )


def _dummy_pooled(fusion: DummyCrossAttentionFusion, batch: FeatureBatch) -> tuple[torch.Tensor, list[slice]]:
    dims = fusion.input_dims or {m: int(batch.features[m].shape[2]) for m in MODALITIES}
    parts, slices, start = [], [], 0
    for m in MODALITIES:
        D = dims[m]
        if m in batch.features:
            parts.append(fusion.pool(batch.features[m], batch.mask(m)))
        else:
            parts.append(torch.zeros(batch.batch_size, D))
        slices.append(slice(start, start + D))
        start += D
    return torch.cat(parts, -1), slices


def _explain_dummy(fusion, classifier, class_names, inputs, baseline, target_spec, ref_mean, ref_emb,
                   notes) -> Explanation:
    B = inputs.batch_size
    present = inputs.present()
    with torch.no_grad():
        pooled, slices = _dummy_pooled(fusion, inputs)
        fused = fusion.fuse_pooled(pooled)
        tgt = make_target(target_spec, fused, classifier, class_names, ref_emb, inputs.source)
        absent = torch.zeros_like(pooled)        # drop-attention has no meaning here: zeros
        if baseline == "reference-mean":
            for j, m in enumerate(MODALITIES):
                if m in ref_mean:
                    absent[:, slices[j]] = ref_mean[m]
        for j in range(N_MOD):
            keep = torch.as_tensor(~present[:, j])[:, None]
            absent[:, slices[j]] = torch.where(keep, pooled[:, slices[j]], absent[:, slices[j]])
        C = coalition_masks()
        sel = torch.zeros(2 ** N_MOD, pooled.shape[1], dtype=torch.bool)
        for j in range(N_MOD):
            sel[:, slices[j]] = C[:, j:j + 1]
        coal = torch.where(sel[:, None], pooled[None], absent[None]).reshape(-1, pooled.shape[1])
        values = tgt.fn(fusion.fuse_pooled(coal), torch.arange(B).repeat(2 ** N_MOD)).double().numpy()
        values = values.reshape(2 ** N_MOD, B).T
        logits = classifier(fused).numpy() if classifier is not None else None
    phi = shapley_from_values(values)
    full = 2 ** N_MOD - 1
    loo = np.stack([values[:, full] - values[:, full & ~(1 << j)] for j in range(N_MOD)], 1)
    if baseline == "drop-attention":
        notes.append("mean-pool model: 'drop-attention' means the modality's pooled features are zeroed")
    notes.append("this model has no attention (mean-pool fusion): there are no attention maps to show")
    return Explanation(
        ids=list(inputs.ids) or [f"sample {i}" for i in range(B)], target=tgt.name, target_kind=tgt.kind,
        baseline=baseline, has_attention=False, present=present, attention={}, value_norms={}, relevance={},
        masks={m: inputs.mask(m).numpy() for m in inputs.features},
        contributions={"shapley": phi, "leave_one_out": loo},
        token_shapley=np.zeros((B, 0, N_MOD)), coalition_values=values,
        efficiency_gap=phi.sum(1) - (values[:, full] - values[:, 0]), target_values=values[:, full],
        fused=fused.numpy(), logits=logits, class_names=class_names, positions=dict(inputs.positions), notes=notes,
    )
