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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import InputError
from ..io.features import FeatureBatch
from ..models.dummy import DummyCrossAttentionFusion
from ..models.fusion import (Attended, CrossAttentionFusionModule, absent_block, aggregate, aggregate_preactivation,
                             attend, attended_blocks, cached, constants)
from ..vocab import MODALITIES
from .methods import FULL, Evidence, contributions
from .shapley import N_MOD, coalition_masks, shapley_from_values
from .targets import Target, make_target

BASELINES: dict[str, str] = {
    "drop-attention": "the modality's attention output removed: block = norm(queries + out_proj.bias)",
    "reference-mean": "the modality's features replaced by their mean over a reference set",
    "zeros": "the modality's features replaced by zeros",
}
# The per-token maps an Explanation holds, by their one name each (JSON keys, figure choices).
MAP_KINDS: dict[str, str] = {
    "attention": "raw attention",
    "value_norms": "value-weighted attention ‖α·v·W_o‖ (Kobayashi et al. 2020)",
    "relevance": "gradient-weighted relevance (Chefer et al. 2021)",
}
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

    def token_map(self, b: int, modality: str, head: str | int = "mean", kind: str = "attention") -> np.ndarray:
        """(T, S) float32 map of sample b for one modality: one of MAP_KINDS, head-averaged
        ("mean") or one head. Relevance is already averaged over heads: `head` does not apply."""
        if kind not in MAP_KINDS:
            raise ValueError(f"unknown map {kind!r}; choose from {', '.join(MAP_KINDS)}")
        if kind == "relevance":
            return np.asarray(self.relevance[modality][b], dtype=np.float32)
        a = np.asarray((self.attention if kind == "attention" else self.value_norms)[modality][b])
        return np.asarray(a.mean(0) if head == "mean" else a[int(head)], dtype=np.float32)

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

@dataclass(frozen=True)
class _Parts:
    """What explaining needs of a model: a LoadedCheckpoint's parts, or a bare fusion module."""

    fusion: nn.Module
    classifier: nn.Module | None
    class_names: list[str] | None
    embed: nn.Module | None            # the output head after the fusion (upstream's feature_norm + L2)

    def target(self, spec: str, fused: torch.Tensor, ref_emb: torch.Tensor | None, source: str) -> Target:
        return make_target(spec, fused, self.classifier, self.class_names, ref_emb, source, embed=self.embed)


def _unwrap(model) -> _Parts:
    return _Parts(getattr(model, "fusion", model), getattr(model, "classifier", None),
                  getattr(model, "class_names", None), getattr(model, "embedding", None))


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
    fusion = _unwrap(model).fusion
    with torch.no_grad():
        if isinstance(fusion, DummyCrossAttentionFusion):
            return fusion.fuse_pooled(_dummy_pooled(fusion, batch)[0])
        return aggregate(fusion, present_blocks(fusion, batch, need_norms=False)[0])


def present_blocks(fusion, batch: FeatureBatch, **attend_kw) -> tuple[torch.Tensor, dict[str, Attended]]:
    """(B, 4, T, H) attended blocks of a batch, and each present modality's `Attended`."""
    return attended_blocks(fusion, batch.features, {m: batch.mask(m) for m in batch.features}, **attend_kw)


def explain(model, inputs: FeatureBatch, *, baseline: str = "drop-attention", target: str = "auto",
            reference: FeatureBatch | None = None, relevance: bool = True) -> Explanation:
    """Explain a batch. `model` is a LoadedCheckpoint (fusion + optional classifier) or a bare
    fusion module. `reference` is a set of good samples: it defines `reference-mean` and the
    `anomaly` target (without one, `reference-mean` uses the batch itself, and says so).
    """
    parts = _unwrap(model)
    fusion = parts.fusion
    src = inputs.source or "features"
    if baseline not in BASELINES:
        raise InputError(src, f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    check_batch(fusion, inputs)
    if reference is not None:
        check_batch(fusion, reference)
    notes: list[str] = []
    if parts.embed is not None:
        notes.append("the model's output is l2_normalize(feature_norm(fused)), its embedding: the cosine and "
                     "anomaly targets are taken on it")
    ref_emb = fused_embeddings(model, reference) if reference is not None else None
    if baseline == "reference-mean":
        if reference is None:
            notes.append("reference-mean baseline: no reference set given, the mean over this batch is used")
        ref_mean = reference_means(reference if reference is not None else inputs)
    else:
        ref_mean = {}
    if isinstance(fusion, DummyCrossAttentionFusion):
        exp = _explain_dummy(parts, inputs, baseline, target, ref_mean, ref_emb, notes)
    else:
        exp = _explain_attention(parts, inputs, baseline, target, ref_mean, ref_emb, notes, relevance)
    return _finite(exp, src)


def _finite(exp: Explanation, source: str) -> Explanation:
    """No NaN or Inf leaves the engine: values that overflow are an error naming the input."""
    arrays = {"contributions": list(exp.contributions.values()), "coalition values": [exp.coalition_values],
              "token Shapley": [exp.token_shapley], "attention": list(exp.attention.values()),
              "relevance": list(exp.relevance.values()), "value norms": list(exp.value_norms.values())}
    for what, items in arrays.items():
        for a in items:
            if not np.isfinite(a).all():
                raise InputError(source, f"the explanation's {what} overflowed to NaN/Inf: the features are too "
                                         "large for float32 arithmetic (rescale them)")
    return exp








def _baseline_block(fusion, m: str, baseline: str, B: int, ref_mean: dict, D: int) -> torch.Tensor:
    consts = constants(fusion)
    if baseline == "drop-attention" or (baseline == "reference-mean" and m not in ref_mean):
        return absent_block(fusion, m, B)
    if baseline == "zeros":
        one = cached(consts, ("zeros", m),
                        lambda: attend(fusion, m, torch.zeros(1, 1, D), need_norms=False).block)
        return one.expand(B, -1, -1)
    return attend(fusion, m, ref_mean[m].expand(1, 1, D), need_norms=False).block.expand(B, -1, -1)


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
    W = cached(constants(fusion), ("W0 by block",),
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
    parts = _unwrap(model)
    fusion = parts.fusion
    if isinstance(fusion, DummyCrossAttentionFusion):
        exp = explain(model, inputs, baseline=baseline, target=target, reference=reference)
        return exp.contributions["shapley"], exp.coalition_values
    check_batch(fusion, inputs)
    ref_mean = reference_means(reference if reference is not None else inputs) if baseline == "reference-mean" else {}
    with torch.no_grad():
        present, _ = present_blocks(fusion, inputs, need_norms=False)
        ref_emb = fused_embeddings(model, reference) if reference is not None else None
        absent = _absent_blocks(fusion, inputs, inputs.present(), present, baseline, ref_mean)
        values, _ = coalition_values(
            fusion, present, absent,
            lambda fused: parts.target(target, fused, ref_emb, inputs.source))
    return shapley_from_values(values), values


def _relevance(tgt: Target, fused: torch.Tensor, att: dict[str, Attended]) -> dict[str, np.ndarray]:
    """Chefer et al. 2021 per modality, (B, T, S): mean over heads of clamp(∂target/∂A ⊙ A, 0)."""
    if not att:
        return {}
    names = list(att)
    rows = torch.arange(fused.shape[0])
    grads = torch.autograd.grad(tgt.grad_fn(fused, rows).sum(), [att[m].weights for m in names], allow_unused=True)
    out = {}
    for m, g in zip(names, grads):
        a = att[m].weights.detach()
        g = torch.zeros_like(a) if g is None else g
        out[m] = (g * a).clamp_min(0).mean(1).numpy()
    return out


def _per_modality(att: dict[str, Attended], relevance: dict[str, np.ndarray], B: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, 4) mean attention-output norm and (B, 4) relevance mass; zeros for absent modalities."""
    attn_norm, rel_mass = np.zeros((B, N_MOD)), np.zeros((B, N_MOD))
    for j, m in enumerate(MODALITIES):
        if m in att:
            attn_norm[:, j] = att[m].output.detach().norm(dim=-1).mean(-1).numpy()
        if m in relevance:
            rel_mass[:, j] = relevance[m].sum((1, 2))
    return attn_norm, rel_mass


def _explain_attention(parts: _Parts, inputs, baseline, target_spec, ref_mean, ref_emb,
                       notes, want_relevance) -> Explanation:
    fusion = parts.fusion
    B = inputs.batch_size
    present = inputs.present()
    T = fusion.config.num_fusion_tokens
    # Present blocks, with graph (attention weights are the leaves of the relevance gradient).
    with torch.enable_grad():
        blocks, att = present_blocks(fusion, inputs, weights_leaf=want_relevance)
        fused = aggregate(fusion, blocks)
        tgt = parts.target(target_spec, fused.detach(), ref_emb, inputs.source)
        relevance = _relevance(tgt, fused, att) if want_relevance else {}
    with torch.no_grad():
        blocks, fused = blocks.detach(), fused.detach()
        absent = _absent_blocks(fusion, inputs, present, blocks, baseline, ref_mean)
        values, tok_values = coalition_values(fusion, blocks, absent, tgt, per_token=True)
        attn_norm, rel_mass = _per_modality(att, relevance, B)
        logits = parts.classifier(fused).numpy() if parts.classifier is not None else None
    contrib = contributions(Evidence(values, attn_norm, rel_mass), has_attention=True)
    S_of = {m: inputs.features[m].shape[1] for m in inputs.features}
    return Explanation(
        ids=list(inputs.ids) or [f"sample {i}" for i in range(B)],
        target=tgt.name, target_kind=tgt.kind, baseline=baseline, has_attention=True, present=present,
        attention={m: att[m].weights.detach().numpy() for m in att},
        value_norms={m: att[m].value_norms.detach().numpy() for m in att},
        relevance=relevance if want_relevance else {m: np.zeros((B, T, S_of[m]), np.float32) for m in att},
        masks={m: inputs.mask(m).numpy() for m in att}, contributions=contrib,
        token_shapley=shapley_from_values(tok_values), coalition_values=values,
        efficiency_gap=contrib["shapley"].sum(1) - (values[:, FULL] - values[:, 0]),
        target_values=values[:, FULL], fused=fused.numpy(), logits=logits, class_names=parts.class_names,
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


def _explain_dummy(parts: _Parts, inputs, baseline, target_spec, ref_mean, ref_emb,
                   notes) -> Explanation:
    fusion = parts.fusion
    B = inputs.batch_size
    present = inputs.present()
    with torch.no_grad():
        pooled, slices = _dummy_pooled(fusion, inputs)
        fused = fusion.fuse_pooled(pooled)
        tgt = parts.target(target_spec, fused, ref_emb, inputs.source)
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
        logits = parts.classifier(fused).numpy() if parts.classifier is not None else None
    contrib = contributions(Evidence(values, None, None), has_attention=False)
    if baseline == "drop-attention":
        notes.append("mean-pool model: 'drop-attention' means the modality's pooled features are zeroed")
    notes.append("this model has no attention (mean-pool fusion): there are no attention maps to show")
    return Explanation(
        ids=list(inputs.ids) or [f"sample {i}" for i in range(B)], target=tgt.name, target_kind=tgt.kind,
        baseline=baseline, has_attention=False, present=present, attention={}, value_norms={}, relevance={},
        masks={m: inputs.mask(m).numpy() for m in inputs.features},
        contributions=contrib, token_shapley=np.zeros((B, 0, N_MOD)), coalition_values=values,
        efficiency_gap=contrib["shapley"].sum(1) - (values[:, FULL] - values[:, 0]), target_values=values[:, FULL],
        fused=fused.numpy(), logits=logits, class_names=parts.class_names, positions=dict(inputs.positions), notes=notes,
    )
