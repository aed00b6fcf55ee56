"""Welds in, explanations out: decode → built-in encoders → explain, in batches.

This is the path both the CLI (`explain --sample`) and the dashboard use, so that what
the dashboard shows is exactly what the CLI writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..io.features import FeatureBatch
from ..io.weld import Weld
from ..models.checkpoint import LoadedCheckpoint
from .engine import Explanation, explain

DEFAULT_BATCH = 16


# encoder_progress(stage, modality, done, total): stage "load" (building an encoder from the
# checkpoint) or "encode" (weld `done` of `total` by that encoder); upstream encoders only.
EncoderProgress = Callable[[str, str, int, int], None]


def read_options(ckpt: LoadedCheckpoint) -> dict:
    """The `load_welds` options this checkpoint's encoders need (the built-in ones read the
    readers' defaults; upstream's want full-resolution photos and exactly its 32 frames)."""
    return dict(getattr(getattr(ckpt, "weld_encoders", None), "READ_OPTIONS", None) or {})


def encode_welds(ckpt: LoadedCheckpoint, welds: Sequence[Weld], *, device: str | None = None,
                 encoder_progress: EncoderProgress | None = None) -> FeatureBatch:
    """Token sequences (with positions) for welds, by the checkpoint's built-in encoders, or by
    upstream's own encoders rebuilt from the file (`device`: auto | cpu | cuda for those)."""
    encoders = getattr(ckpt, "weld_encoders", ckpt.encoders)
    if encoders is None:
        raise InputError(ckpt.info.path, "this checkpoint has no built-in encoders (its backbones are not "
                                         "shipped), so it cannot read weld files: give a feature file instead")
    if not welds:
        raise InputError("", "no welds to explain")
    with torch.no_grad():
        if encoders is ckpt.encoders:
            enc = encoders.encode(list(welds))
        else:
            if device is not None:
                encoders.configure(device=device)
            enc = encoders.encode(list(welds), progress=encoder_progress)
    return FeatureBatch(features=dict(enc.features), masks=dict(enc.masks), positions=dict(enc.positions),
                        ids=list(enc.weld_ids), source=", ".join(w.source for w in welds[:3]))


def unreadable_notes(welds: Sequence[Weld]) -> list[str]:
    """One note per modality of these welds that the readers could not read (`Weld.unreadable`),
    saying what was done without it and why: "video unreadable, treated as absent: <file>:
    <problem>". A good weld gives none."""
    notes = []
    for w in welds:
        for what, why in w.unreadable.items():
            if what == "truth":
                notes.append(f"truth.json unreadable, ignored: {why}")
            elif what == "image" and "image" in w.present:   # some photos read, the bad ones skipped
                notes.append(f"image: unreadable photos skipped, {len(w.images)} read: {why}")
            else:
                notes.append(f"{what} unreadable, treated as absent: {why}")
    return list(dict.fromkeys(notes))


def concat_explanations(parts: Sequence[Explanation]) -> Explanation:
    """One Explanation from per-batch ones of the same model (same sequence lengths)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]

    def cat(get):
        return np.concatenate([get(p) for p in parts], axis=0)

    positions = {m: sum((p.positions.get(m, [None] * p.batch_size) for p in parts), [])
                 for m in first.positions}
    return Explanation(
        ids=sum((p.ids for p in parts), []), target=first.target, target_kind=first.target_kind,
        baseline=first.baseline, has_attention=first.has_attention, present=cat(lambda p: p.present),
        attention={m: cat(lambda p, m=m: p.attention[m]) for m in first.attention},
        value_norms={m: cat(lambda p, m=m: p.value_norms[m]) for m in first.value_norms},
        relevance={m: cat(lambda p, m=m: p.relevance[m]) for m in first.relevance},
        masks={m: cat(lambda p, m=m: p.masks[m]) for m in first.masks},
        contributions={k: cat(lambda p, k=k: p.contributions[k]) for k in first.contributions},
        token_shapley=cat(lambda p: p.token_shapley), coalition_values=cat(lambda p: p.coalition_values),
        efficiency_gap=cat(lambda p: p.efficiency_gap), target_values=cat(lambda p: p.target_values),
        fused=cat(lambda p: p.fused), logits=None if first.logits is None else cat(lambda p: p.logits),
        class_names=first.class_names, positions=positions,
        notes=list(dict.fromkeys(n for p in parts for n in p.notes)),
    )


def explain_welds(ckpt: LoadedCheckpoint, welds: Sequence[Weld], *, baseline: str = "drop-attention",
                  target: str = "auto", reference: Sequence[Weld] | None = None, batch_size: int = DEFAULT_BATCH,
                  progress: Callable[[int, int], None] | None = None, device: str | None = None,
                  encoder_progress: EncoderProgress | None = None) -> Explanation:
    """Explain many welds with one loaded model, `batch_size` welds per model run.

    Batching changes no number beyond float rounding (matrix kernels pick different
    blocking for different row counts, so last bits can differ from a one-weld run; for
    bit-identical reruns keep `batch_size`). `progress(done, total)` is called after each batch;
    `encoder_progress` per encoder and weld (upstream encoders: minutes per weld on a CPU).
    """
    def enc(ws):
        return encode_welds(ckpt, ws, device=device, encoder_progress=encoder_progress)

    ref = enc(reference) if reference else None
    chunks = [enc(welds[i:i + batch_size]) for i in range(0, len(welds), batch_size)]
    if ref is None and baseline == "reference-mean" and len(chunks) > 1:
        # Without a reference set the mean is over all welds given, not per batch, so a
        # weld's numbers do not depend on which batch it landed in.
        ref = FeatureBatch(
            features={m: torch.cat([c.features[m] for c in chunks]) for m in chunks[0].features},
            masks={m: torch.cat([c.mask(m) for c in chunks]) for m in chunks[0].features},
            source="all welds given")
    parts = []
    for i, fb in enumerate(chunks):
        exp = explain(ckpt, fb, baseline=baseline, target=target, reference=ref)
        # What the readers left out is part of what this explanation says (CLI JSON, dashboard).
        exp.notes.extend(n for n in unreadable_notes(welds[i * batch_size:(i + 1) * batch_size])
                         if n not in exp.notes)
        parts.append(exp)
        if progress:
            progress(min((i + 1) * batch_size, len(welds)), len(welds))
    return concat_explanations(parts)
