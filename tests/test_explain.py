"""The explanation engine against independent computations: nn.MultiheadAttention's own
weights, brute-force Shapley over full forwards, explicit per-head value norms, and an
autograd pass through a separately written forward for relevance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusion_core.explain.compare import compare, js_divergence
from fusion_core.explain.engine import explain
from fusion_core.models.fusion import attend
from fusion_core.io.features import FeatureBatch
from fusion_core.models.dummy import DummyCrossAttentionFusion
from fusion_core.vocab import MODALITIES

from factories import random_batch, random_module, small_config

LENGTHS = {"video": 7, "image": 5, "audio": 11, "sensor": 23}


def stock_attention(fusion, m, x, valid):
    """Per-head weights and output from the module's own nn.MultiheadAttention (eval)."""
    mha = fusion.cross_attn(m)
    keys = fusion.proj(m)(x)
    q = fusion.fusion_tokens.expand(x.shape[0], -1, -1)
    pad = None if valid is None else ~valid
    with torch.no_grad():
        out, w = mha(q, keys, keys, key_padding_mask=pad, need_weights=True, average_attn_weights=False)
    return out, w


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_attention_equals_multihead_attention_per_head(seed, layout):
    cfg = small_config(seed, layout=layout)
    fusion = random_module(cfg, seed)
    batch = random_batch(cfg, 3, LENGTHS, seed, pad=True)
    # Make sure every row keeps at least one key so the stock module has no NaN to compare.
    for m in batch.masks:
        batch.masks[m][:, 0] = True
    exp = explain(fusion, batch)
    for m in MODALITIES:
        _, w = stock_attention(fusion, m, batch.features[m], batch.masks[m])
        np.testing.assert_allclose(exp.attention[m], w.numpy(), atol=1e-6)
        rows = exp.attention[m].sum(-1)
        np.testing.assert_allclose(rows, 1.0, atol=1e-5)
        pad = ~batch.masks[m].numpy()
        assert np.all(exp.attention[m].transpose(0, 3, 1, 2)[pad] == 0)


def test_fully_masked_and_absent_modalities_give_no_nan():
    cfg = small_config(3)
    fusion = random_module(cfg, 3)
    batch = random_batch(cfg, 2, LENGTHS, 3, drop=("image",))
    batch.masks["audio"] = torch.zeros(2, LENGTHS["audio"], dtype=torch.bool)
    batch.masks["sensor"] = torch.ones(2, LENGTHS["sensor"], dtype=torch.bool)
    batch.masks["sensor"][1] = False
    # The stock module gives NaN for the fully masked key set: that is the bug we avoid.
    _, w = stock_attention(fusion, "audio", batch.features["audio"], batch.masks["audio"])
    assert torch.isnan(w).any()
    exp = explain(fusion, batch)
    for arr in [*exp.attention.values(), *exp.relevance.values(), *exp.value_norms.values(),
                *exp.contributions.values(), exp.token_shapley, exp.coalition_values, exp.fused]:
        assert np.isfinite(arr).all()
    assert np.all(exp.attention["audio"] == 0) and np.all(exp.attention["sensor"][1] == 0)
    # A modality with no data contributes nothing, in every method.
    for method in ("shapley", "leave_one_out", "attention", "relevance"):
        assert exp.contributions[method][:, MODALITIES.index("image")].tolist() == [0.0, 0.0]
        assert exp.contributions[method][:, MODALITIES.index("audio")].tolist() == [0.0, 0.0]
        assert exp.contributions[method][1, MODALITIES.index("sensor")] == 0.0
    assert exp.missing(1) == ["image", "audio", "sensor"]


def brute_force_values(fusion, batch, classifier=None, cls=None):
    """v(S) for all 16 coalitions by full forwards through the stock modules.

    Absent = drop-attention: the attention output is replaced by out_proj.bias alone.
    Target: cosine to the full output, or the given class logit.
    """
    B = batch.batch_size
    q = fusion.fusion_tokens.expand(B, -1, -1)
    outs = {}
    for coalition in itertools.product([False, True], repeat=4):
        blocks = []
        for on, m in zip(coalition, MODALITIES):
            mha = fusion.cross_attn(m)
            if on:
                out, _ = stock_attention(fusion, m, batch.features[m], batch.masks.get(m))
            else:
                out = mha.out_proj.bias.expand_as(q)
            blocks.append(fusion.norm(m)(out + q))
        with torch.no_grad():
            fused = fusion.output_proj(fusion.aggregation(torch.cat(blocks, 1).flatten(1)))
        outs[coalition] = fused.double()
    full = outs[(True,) * 4]
    if classifier is None:
        val = {c: torch.nn.functional.cosine_similarity(f, full, dim=-1) for c, f in outs.items()}
    else:
        w, b = classifier.weight.detach().double(), classifier.bias.detach().double()
        val = {c: (f @ w.T + b)[torch.arange(B), cls] for c, f in outs.items()}
    return val


def permutation_shapley(val, B):
    """Shapley by averaging marginal contributions over all 24 orderings (another formula)."""
    phi = torch.zeros(B, 4, dtype=torch.float64)
    perms = list(itertools.permutations(range(4)))
    for order in perms:
        have = [False] * 4
        for i in order:
            before = val[tuple(have)]
            have[i] = True
            phi[:, i] += val[tuple(have)] - before
    return phi / len(perms)


@pytest.mark.parametrize("seed", range(4))
def test_shapley_equals_brute_force(seed):
    cfg = small_config(seed + 10)
    fusion = random_module(cfg, seed)
    batch = random_batch(cfg, 4, LENGTHS, seed)
    exp = explain(fusion, batch, target="cosine")
    val = brute_force_values(fusion, batch)
    phi = permutation_shapley(val, 4).numpy()
    np.testing.assert_allclose(exp.contributions["shapley"], phi, atol=1e-5)
    assert np.abs(exp.efficiency_gap).max() < 1e-6
    full, none = val[(True,) * 4].numpy(), val[(False,) * 4].numpy()
    np.testing.assert_allclose(exp.contributions["shapley"].sum(1), full - none, atol=1e-5)
    for j in range(4):
        without = tuple(k != j for k in range(4))
        np.testing.assert_allclose(exp.contributions["leave_one_out"][:, j], full - val[without].numpy(), atol=1e-5)


def test_shapley_on_class_logit_matches_brute_force():
    cfg = small_config(21)
    fusion = random_module(cfg, 21)
    torch.manual_seed(1)
    head = torch.nn.Linear(cfg.hidden_dim, 5).eval()
    batch = random_batch(cfg, 3, LENGTHS, 21)

    class Model:
        pass
    model = Model()
    model.fusion, model.classifier, model.class_names = fusion, head, list("abcde")
    exp = explain(model, batch)
    assert exp.target == "logit[predicted class]"
    cls = torch.from_numpy(exp.logits.argmax(1))
    val = brute_force_values(fusion, batch, head, cls)
    np.testing.assert_allclose(exp.contributions["shapley"], permutation_shapley(val, 3).numpy(), atol=1e-4)
    fixed = explain(model, batch, target="class:c")
    assert fixed.target == "logit[c]"
    val_c = brute_force_values(fusion, batch, head, torch.full((3,), 2))
    np.testing.assert_allclose(fixed.contributions["shapley"], permutation_shapley(val_c, 3).numpy(), atol=1e-4)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 16), seed=st.integers(0, 10_000),
       lens=st.lists(st.integers(1, 4096), min_size=4, max_size=4))
def test_property_rows_efficiency_and_finiteness(B, seed, lens):
    cfg = small_config(seed)
    fusion = random_module(cfg, seed)
    batch = random_batch(cfg, B, dict(zip(MODALITIES, lens)), seed, pad=True)
    exp = explain(fusion, batch)
    for m in MODALITIES:
        rows = exp.attention[m].sum(-1)                     # (B,h,T)
        has = batch.masks[m].any(1).numpy()
        np.testing.assert_allclose(rows[has], 1.0, atol=1e-4)
        assert np.all(rows[~has] == 0)
        assert np.isfinite(exp.relevance[m]).all() and (exp.relevance[m] >= 0).all()
    assert np.abs(exp.efficiency_gap).max() < 1e-5
    # Cosine target: v(all) is exactly 1 up to float error.
    np.testing.assert_allclose(exp.target_values, 1.0, atol=1e-5)


def test_value_norms_equal_explicit_per_head_product():
    cfg = small_config(5, num_heads=3)
    fusion = random_module(cfg, 5)
    batch = random_batch(cfg, 2, LENGTHS, 5)
    exp = explain(fusion, batch)
    H, h = cfg.hidden_dim, cfg.num_heads
    d = H // h
    for m in MODALITIES:
        mha = fusion.cross_attn(m)
        keys = fusion.proj(m)(batch.features[m]).detach()
        v = keys @ mha.in_proj_weight[2 * H:].T + mha.in_proj_bias[2 * H:]          # (B,S,H)
        A = torch.from_numpy(exp.attention[m])
        want = torch.zeros_like(A)
        for head in range(h):
            vh = v[..., head * d:(head + 1) * d]                                      # (B,S,d)
            f = vh @ mha.out_proj.weight[:, head * d:(head + 1) * d].T                # (B,S,H)
            contrib = A[:, head, :, :, None] * f[:, None, :, :]                       # (B,T,S,H)
            want[:, head] = contrib.norm(dim=-1)
        np.testing.assert_allclose(exp.value_norms[m], want.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_relevance_equals_gradient_through_independent_forward():
    cfg = small_config(8)
    fusion = random_module(cfg, 8)
    batch = random_batch(cfg, 2, LENGTHS, 8)
    exp = explain(fusion, batch, target="cosine")
    B = 2
    H, h = cfg.hidden_dim, cfg.num_heads
    q = fusion.fusion_tokens.detach().expand(B, -1, -1)
    leaves, blocks = {}, []
    for m in MODALITIES:
        mha = fusion.cross_attn(m)
        _, w = stock_attention(fusion, m, batch.features[m], None)
        A = w.clone().requires_grad_(True)
        leaves[m] = A
        keys = fusion.proj(m)(batch.features[m]).detach()
        v = (keys @ mha.in_proj_weight[2 * H:].T + mha.in_proj_bias[2 * H:]).detach()
        vh = v.view(B, -1, h, H // h).transpose(1, 2)                                # (B,h,S,d)
        out = (A @ vh).transpose(1, 2).reshape(B, -1, H) @ mha.out_proj.weight.detach().T + mha.out_proj.bias.detach()
        blocks.append(fusion.norm(m)(out + q))
    fused = fusion.output_proj(fusion.aggregation(torch.cat(blocks, 1).flatten(1)))
    direction = (fused / fused.norm(dim=-1, keepdim=True)).detach()
    grads = torch.autograd.grad((fused * direction).sum(), [leaves[m] for m in MODALITIES])
    for m, g in zip(MODALITIES, grads):
        want = (g * leaves[m]).clamp_min(0).mean(1).detach().numpy()
        np.testing.assert_allclose(exp.relevance[m], want, rtol=1e-4, atol=1e-7)
    assert any(exp.relevance[m].max() > 0 for m in MODALITIES)


def test_train_mode_and_dropout_do_not_change_explanations():
    cfg = small_config(9, layout="v2", dropout=0.5)
    fusion = random_module(cfg, 9)
    batch = random_batch(cfg, 2, LENGTHS, 9)
    a = explain(fusion, batch)
    fusion.train()
    b = explain(fusion, batch)
    for m in MODALITIES:
        assert np.array_equal(a.attention[m], b.attention[m])
    assert np.array_equal(a.contributions["shapley"], b.contributions["shapley"])
    assert not any(p.grad is not None for p in fusion.parameters())


def test_explanations_are_bit_identical_across_runs():
    cfg = small_config(12)
    fusion = random_module(cfg, 12)
    batch = random_batch(cfg, 3, LENGTHS, 12, pad=True)
    a, b = explain(fusion, batch), explain(fusion, batch)
    for m in MODALITIES:
        assert np.array_equal(a.attention[m], b.attention[m])
        assert np.array_equal(a.relevance[m], b.relevance[m])
    for k in a.contributions:
        assert np.array_equal(a.contributions[k], b.contributions[k])


def test_reference_mean_baseline_uses_mean_feature_as_single_key():
    cfg = small_config(14)
    fusion = random_module(cfg, 14)
    batch = random_batch(cfg, 2, LENGTHS, 14)
    ref = random_batch(cfg, 5, LENGTHS, 99)
    exp = explain(fusion, batch, baseline="reference-mean", reference=ref, target="cosine")
    # v(none) by hand: every modality sees only its reference-mean feature vector.
    B = 2
    q = fusion.fusion_tokens.expand(B, -1, -1)
    blocks = []
    for m in MODALITIES:
        mean = ref.features[m].mean((0, 1))
        out, _ = stock_attention(fusion, m, mean.expand(B, 1, -1), None)
        blocks.append(fusion.norm(m)(out + q))
    with torch.no_grad():
        none = fusion.output_proj(fusion.aggregation(torch.cat(blocks, 1).flatten(1)))
    full = torch.from_numpy(exp.fused)
    want = torch.nn.functional.cosine_similarity(none, full, dim=-1).numpy()
    np.testing.assert_allclose(exp.coalition_values[:, 0], want, atol=1e-5)
    assert exp.baseline == "reference-mean"


def test_token_shapley_is_a_game_per_token():
    cfg = small_config(15, num_fusion_tokens=3)
    fusion = random_module(cfg, 15)
    exp = explain(fusion, random_batch(cfg, 2, LENGTHS, 15))
    assert exp.token_shapley.shape == (2, 3, 4)
    # Each token's game has v(all) = cos(full, full) = 1 and efficiency holds per token.
    df = exp.token_contributions_frame()
    assert len(df) == 2 * 3 * 4 and np.isfinite(df["value"]).all()
    assert not np.allclose(exp.token_shapley[:, 0], exp.token_shapley[:, 1])


def test_anomaly_target_needs_reference_and_measures_distance():
    cfg = small_config(16)
    fusion = random_module(cfg, 16)
    batch = random_batch(cfg, 2, LENGTHS, 16)
    ref = random_batch(cfg, 6, LENGTHS, 17)
    exp = explain(fusion, batch, target="auto", reference=ref)
    assert exp.target == "anomaly"
    from fusion_core.explain.engine import fused_embeddings
    emb, refs = fused_embeddings(fusion, batch), fused_embeddings(fusion, ref)
    want = torch.cdist(emb, refs).topk(5, largest=False).values.mean(1).numpy()
    np.testing.assert_allclose(exp.target_values, want, rtol=1e-5)


def test_dummy_fusion_has_no_attention_but_exact_contributions():
    torch.manual_seed(0)
    dims = {"video": 6, "image": 5, "audio": 4, "sensor": 3}
    fusion = DummyCrossAttentionFusion(sum(dims.values()), 8, input_dims=dims).eval()
    g = torch.Generator().manual_seed(1)
    feats = {m: torch.randn(2, 4, d, generator=g) for m, d in dims.items()}
    exp = explain(fusion, FeatureBatch(features=feats))
    assert not exp.has_attention and exp.attention == {}
    assert any("no attention" in n for n in exp.notes)
    with torch.no_grad():
        full = fusion(**feats).double()
    val = {}
    for c in itertools.product([False, True], repeat=4):
        parts = [feats[m].mean(1) if on else torch.zeros(2, dims[m]) for on, m in zip(c, MODALITIES)]
        with torch.no_grad():
            out = fusion.fusion_proj(torch.cat(parts, -1)).double()
        val[c] = torch.nn.functional.cosine_similarity(out, full, dim=-1)
    np.testing.assert_allclose(exp.contributions["shapley"], permutation_shapley(val, 2).numpy(), atol=1e-5)


def test_compare_identical_is_zero_and_differs_for_other_weights():
    cfg = small_config(18)
    a_mod, b_mod = random_module(cfg, 18), random_module(cfg, 19)
    batch = random_batch(cfg, 2, LENGTHS, 18)
    ea, eb = explain(a_mod, batch), explain(b_mod, batch)
    same = compare(ea, explain(a_mod, batch))
    np.testing.assert_allclose(same.js, 0.0, atol=1e-9)
    assert same.top_agree.all()
    diff = compare(ea, eb)
    assert (diff.js > 1e-4).all() and (diff.js <= 1).all()
    np.testing.assert_allclose(diff.delta["shapley"], eb.contributions["shapley"] - ea.contributions["shapley"])
    # JSD against a direct formula on one cell.
    p, q = ea.attention["sensor"][0].mean(0)[0], eb.attention["sensor"][0].mean(0)[0]
    mid = (p + q) / 2
    want = 0.5 * np.sum(p * np.log2(p / mid)) + 0.5 * np.sum(q * np.log2(q / mid))
    assert math.isclose(diff.js[0, 0, MODALITIES.index("sensor")], want, rel_tol=1e-6)
    assert js_divergence(np.array([1.0, 0]), np.array([0, 1.0])) == pytest.approx(1.0)
    frame = diff.per_weld_frame()
    assert list(frame["weld"]) == ["s0", "s1"] and "delta_shapley_sensor" in frame


def test_tidy_frames_match_arrays():
    cfg = small_config(20)
    fusion = random_module(cfg, 20)
    exp = explain(fusion, random_batch(cfg, 2, LENGTHS, 20))
    c = exp.contributions_frame()
    row = c[(c["sample"] == 1) & (c["method"] == "shapley") & (c["modality"] == "audio")]
    assert row["value"].item() == pytest.approx(exp.contributions["shapley"][1, 2])
    a = exp.attention_frame(1, "sensor")
    cell = a[(a["head"] == "0") & (a.token == 0) & (a.position == 3)]
    assert cell["attention"].item() == pytest.approx(exp.attention["sensor"][1, 0, 0, 3])
    mean = a[(a["head"] == "mean") & (a.token == 0) & (a.position == 3)]
    assert mean["relevance"].item() == pytest.approx(exp.relevance["sensor"][1, 0, 3])
