"""Targets: the scalar per sample that contributions explain, computed from fused outputs (N, H).

`make_target(spec, …)` turns a name (auto, logit, class:<name>, anomaly, cosine) into a
`Target`, whose `fn` gives values and `grad_fn` a function with a useful gradient (the
cosine of an output with itself is constant; its projection on its own direction is not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


TARGETS: dict[str, str] = {
    "auto": "class logit when the checkpoint has a classifier, else anomaly when a reference is given, else cosine",
    "logit": "logit of the predicted class (or `class:<name or index>` for a fixed class)",
    "anomaly": "mean distance of the fused embedding to its nearest reference ('good') embeddings",
    "cosine": "cosine similarity between a coalition's fused output and the full fused output",
}


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
                source: str = "", embed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Target:
    """The target named by `spec` for a batch whose full fused outputs are `fused_full`.

    `reference_embeddings` are the reference set's fused outputs. `embed` is the model's
    output head after the fusion (upstream's l2_normalize(feature_norm(·))): the anomaly and
    cosine targets are then taken on that embedding, the one the model really outputs; a
    logit is always the classifier's, on the fused output."""
    spec = spec or "auto"
    if spec == "auto":
        spec = "logit" if classifier is not None else ("anomaly" if reference_embeddings is not None else "cosine")
    if spec == "logit" or spec.startswith("class:"):
        return _logit_target(spec, fused_full, classifier, class_names, source)
    if spec == "anomaly":
        return _anomaly_target(reference_embeddings, source, embed)
    if spec == "cosine":
        return _cosine_target(fused_full, embed)
    raise InputError(source, f"unknown target {spec!r}; choose from auto, logit, class:<name>, anomaly, cosine")


def _logit_target(spec: str, fused_full: torch.Tensor, classifier: nn.Module | None,
                  class_names: list[str] | None, source: str) -> Target:
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


def _anomaly_target(reference_embeddings: torch.Tensor | None, source: str, embed) -> Target:
    if reference_embeddings is None or len(reference_embeddings) == 0:
        raise InputError(source, "target 'anomaly' needs a reference set of good welds")
    ref = reference_embeddings.detach()
    if embed is not None:
        with torch.no_grad():
            ref = embed(ref)
    k = min(5, ref.shape[0])

    def fn(f, rows):
        e = f if embed is None else embed(f)
        return torch.cdist(e, ref).topk(k, dim=1, largest=False).values.mean(1)
    return Target(name="anomaly", kind="anomaly", fn=fn, grad_fn=fn)


def _cosine_target(fused_full: torch.Tensor, embed) -> Target:
    full = fused_full.detach()
    # The gradient is taken before any L2 normalisation of the embedding: a unit vector's
    # projection on its own direction is 1 whatever the input, so its gradient is 0 and
    # relevance would be rounding noise (upstream's l2_normalize(feature_norm(fused))).
    pre = getattr(embed, "unnormalized", None) or (lambda x: x)
    with torch.no_grad():
        pre_full = pre(full)
        if embed is not None:
            full = embed(full)
    direction = pre_full / pre_full.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def fn(f, rows):
        return F.cosine_similarity(f if embed is None else embed(f), full[rows], dim=-1)

    def grad_fn(f, rows):
        # cos(f, f) is constant in f; its projection on its own direction is not.
        return (pre(f) * direction[rows]).sum(-1)
    return Target(name="cosine", kind="cosine", fn=fn, grad_fn=grad_fn)
