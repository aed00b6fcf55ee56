"""Train the demo model end to end: built-in encoders + the seed's fusion module + a linear head.

Small on purpose (a few hundred thousand parameters, CPU, minutes on 2 cores) and
deterministic in the seed. What makes its explanations meaningful:

- modality dropout: whole modalities are masked at random during training, so the model
  reads each modality's evidence where it is, and "modality absent" (what exact Shapley
  compares against) is a state the model has seen. An absent modality's fusion block is
  norm(queries + out_proj.bias), as in `fusion_core.explain`.
- local encoders (see `fusion_core.models.encoders.demo`): a token only carries its own moment or patch.
- per-modality auxiliary heads on each attended block (deep supervision, dropped after
  training) and fusion tokens initialised at std 3 instead of the seed's 0.02: without
  them, cross-attention over ~200 tokens stays near uniform (a mean pool) for hundreds of
  steps, and a defect that covers a few photo patches is never found.

Checkpoints are safetensors in the layout `load_checkpoint` reads: `fusion.*`,
`classifier.*`, `{video,image,audio,sensor}_encoder.*`, with JSON metadata.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..explain.engine import Explanation, explain
from ..explain.summaries import overlap_fraction
from ..io.containers import iter_welds, load_weld
from ..io.weld import Weld
from ..models.checkpoint import load_checkpoint
from ..models.encoders.demo import EncoderConfig, WeldEncoders, collate, preprocess
from ..models.fusion import CrossAttentionFusionModule, FusionConfig, parameter_count
from ..vocab import CLASS_NAMES, MODALITIES, TIME_MODALITIES, weld_class
from .synth import generate_dataset

FORMAT = "weld-fusion/1"


# --------------------------------------------------------------------------- model

class WeldModel(nn.Module):
    """Encoders → fusion → classifier. Attribute names match what `explain` expects."""

    def __init__(self, enc_cfg: EncoderConfig, fusion_cfg: FusionConfig, class_codes: list[int]):
        super().__init__()
        self.encoders = WeldEncoders(enc_cfg)
        self.fusion = CrossAttentionFusionModule(fusion_cfg)
        self.classifier = nn.Linear(fusion_cfg.hidden_dim, len(class_codes))
        self.class_codes = [int(c) for c in class_codes]
        self.class_names = [CLASS_NAMES.get(c, str(c)) for c in self.class_codes]

    def blocks(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """Attended blocks (B, 4, T, H), through the fusion module's own forward (with dropout in
        training). A row with no data for a modality gets the absent block, never NaN."""
        return self.fusion.blocks(feats, masks)

    def fuse(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fused (B, H)."""
        return self.fusion.fuse_blocks(self.blocks(feats, masks))

    def forward(self, inputs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = self.encoders(inputs, masks)
        return self.classifier(self.fuse(feats, masks))

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """The saved layout: fusion.*, classifier.*, and the encoders' own prefixes."""
        out = {f"fusion.{k}": v for k, v in self.fusion.state_dict().items()}
        out.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        out.update(self.encoders.state_dict())  # keys already video_encoder.*, image_encoder.*, ...
        return {k: v.detach().clone().contiguous() for k, v in out.items()}


def save_model(path: str | os.PathLike, model: WeldModel, **meta) -> None:
    from safetensors.torch import save_file
    metadata = {
        "format": FORMAT,
        "fusion_config": json.dumps(model.fusion.config.to_dict()),
        "encoder_config": json.dumps(model.encoders.config.to_dict()),
        "class_codes": json.dumps(model.class_codes),
        "class_names": json.dumps(model.class_names),
        "created_by": "fusion_core.train",
    }
    metadata.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    tmp = Path(str(path) + ".tmp")
    save_file(model.checkpoint_tensors(), str(tmp), metadata=metadata)
    os.chmod(tmp, 0o644)  # safetensors creates 0600; a shipped demo file is for everyone to read
    os.replace(tmp, path)


def load_model(path: str | os.PathLike) -> WeldModel:
    """Rebuild a WeldModel from a file `save_model` wrote (for training-side checks)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model = WeldModel(EncoderConfig.from_dict(json.loads(meta["encoder_config"])),
                      FusionConfig.from_dict(json.loads(meta["fusion_config"])),
                      json.loads(meta["class_codes"]))
    model.load_state_dict({("encoders." + k if k.split(".")[0].endswith("_encoder") else k): v
                           for k, v in tensors.items()}, strict=True)
    return model.eval()


# --------------------------------------------------------------------------- data

def _load(src) -> Iterable[Weld]:
    """Welds one at a time from a folder (decoded frames are dropped once preprocessed)."""
    if isinstance(src, (str, os.PathLike)):
        return iter_welds(src)
    return list(src)


def prepare(welds: Iterable[Weld], cfg: EncoderConfig) -> list[dict]:
    """`preprocess` every weld once (≈20 ms each); the tensors are cached for all epochs.

    Kept in-process: a forked pool is slower here (torch's thread pool does not survive
    fork well), and `preprocess` is cheap next to decoding.
    """
    items = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: a second thread only spins, and on a busy machine it stalls
    try:
        for w in welds:
            # a dict is already preprocessed (with its label_code)
            items.append(w if isinstance(w, dict) else labelled_item(w, cfg))
    finally:
        torch.set_num_threads(threads)
    return items


def labelled_item(weld: Weld, cfg: EncoderConfig) -> dict:
    """`preprocess` of one weld, with its class code as `label_code` (None: unknown)."""
    item = preprocess(weld, cfg)
    item["label_code"] = weld_class(weld.weld_id, weld.truth)
    return item


def _stack(items: list[dict], idx) -> tuple[dict, dict]:
    b = collate([items[i] for i in idx])
    return b["inputs"], b["masks"]


def _drop_modalities(masks: dict[str, torch.Tensor], p: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Mask whole modalities at random (each with probability p); at least one present one survives."""
    B = next(iter(masks.values())).shape[0]
    present = torch.stack([masks[m].any(1) for m in MODALITIES], 1)            # (B,4)
    keep = torch.rand(B, len(MODALITIES), generator=gen) >= p
    keep &= present
    empty = ~keep.any(1) & present.any(1)
    if empty.any():  # revive one random present modality
        score = torch.rand(B, len(MODALITIES), generator=gen) * present
        pick = F.one_hot(score.argmax(1), len(MODALITIES)).bool()
        keep = torch.where(empty[:, None], pick, keep)
    return {m: masks[m] & keep[:, j:j + 1] for j, m in enumerate(MODALITIES)}


@torch.no_grad()
def _evaluate(model: WeldModel, items: list[dict], labels: torch.Tensor, batch: int = 64) -> tuple[float, float]:
    model.eval()
    logits = []
    for s in range(0, len(items), batch):
        inp, mk = _stack(items, range(s, min(s + batch, len(items))))
        logits.append(model(inp, mk))
    z = torch.cat(logits)
    return float((z.argmax(1) == labels).float().mean()), float(F.cross_entropy(z, labels))


# --------------------------------------------------------------------------- training

@dataclass
class TrainSettings:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.02
    modality_dropout: float = 0.3
    label_smoothing: float = 0.05
    aux_weight: float = 0.5        # per-modality heads on each attended block (training only)
    token_init_std: float = 3.0    # fusion-token init: the seed's 0.02 leaves attention uniform for long
    hidden_dim: int = 64
    num_fusion_tokens: int = 4
    num_heads: int = 4
    dropout: float = 0.1
    val_fraction: float = 0.2


def train(train_dir_or_welds, out_dir: str | os.PathLike, *, epochs: int = 30, seed: int = 0,
          val_dir=None, encoder_config: EncoderConfig | None = None,
          threads: int = 2, log=print, **settings) -> dict:
    """Train encoders + fusion + classifier on welds; write demo-early/demo-best checkpoints.

    `train_dir_or_welds` (and `val_dir`) is a folder of weld folders (read with
    `fusion_core.io.containers`), or a list of `Weld`s or of their `prepare` results; welds
    without a known class (truth.json, else part number) are skipped. Without `val_dir`, a
    stratified `val_fraction` of the training welds is held out. `settings` override
    TrainSettings. Returns the history (also written to `out_dir/train-history.json`).
    """
    st = TrainSettings(epochs=epochs, **settings)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(train_dir_or_welds, Path(out_dir), st, seed, val_dir, encoder_config, log)
    finally:
        torch.set_num_threads(threads_before)


def _train(train_src, out: Path, st: TrainSettings, seed: int, val_src, encoder_config, log) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    base_cfg = encoder_config or EncoderConfig()
    items, val_items = _datasets(train_src, val_src, base_cfg, st.val_fraction, rng)
    t_prep = time.perf_counter() - t_start

    codes = sorted({it["label_code"] for it in items} | {it["label_code"] for it in val_items})
    model, aux = _build_model(base_cfg.fit_normalisation(items), codes, st, seed)
    log(f"train: {len(items)} welds, val: {len(val_items)}, classes {codes}, "
        f"{parameter_count(model):,} parameters, preprocessing {t_prep:.1f}s")
    history: dict = {"settings": st.__dict__, "seed": seed, "classes": codes, "epochs": [],
                     "parameters": parameter_count(model), "train_welds": len(items), "val_welds": len(val_items)}
    _fit(model, aux, _Data(items, val_items, codes), st, gen, out, seed, history, log)
    history["train_seconds"] = time.perf_counter() - t_start
    history["preprocess_seconds"] = t_prep
    (out / "train-history.json").write_text(json.dumps(history, indent=1))
    return history


def _datasets(train_src, val_src, cfg: EncoderConfig, val_fraction: float,
              rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """(training items, validation items) with a known class; without `val_src`, a stratified
    seeded `val_fraction` of the training welds is held out."""
    items = [it for it in prepare(_load(train_src), cfg) if it["label_code"] is not None]
    if val_src is not None:
        val_items = [it for it in prepare(_load(val_src), cfg) if it["label_code"] is not None]
    else:
        by_class: dict[int, list[int]] = {}
        for i, it in enumerate(items):
            by_class.setdefault(it["label_code"], []).append(i)
        val_idx = set()
        for idx in by_class.values():
            k = max(1, int(round(len(idx) * val_fraction))) if len(idx) > 1 else 0
            val_idx.update(rng.permutation(idx)[:k].tolist())
        val_items = [it for i, it in enumerate(items) if i in val_idx]
        items = [it for i, it in enumerate(items) if i not in val_idx]
    if not items:
        raise ValueError("no training welds with a known class")
    return items, val_items


def _build_model(enc_cfg: EncoderConfig, codes: list[int], st: TrainSettings,
                 seed: int) -> tuple[WeldModel, nn.ModuleList]:
    """The model and its per-modality auxiliary heads, initialised from `seed`."""
    fusion_cfg = FusionConfig(video_dim=enc_cfg.video_dim, image_dim=enc_cfg.image_dim,
                              audio_dim=enc_cfg.audio_dim, sensor_dim=enc_cfg.sensor_dim,
                              hidden_dim=st.hidden_dim, num_fusion_tokens=st.num_fusion_tokens,
                              num_heads=st.num_heads, dropout=st.dropout, layout="v1")
    torch.manual_seed(seed)
    model = WeldModel(enc_cfg, fusion_cfg, codes)
    with torch.no_grad():
        model.fusion.fusion_tokens.normal_(0.0, st.token_init_std)
    # Deep supervision: each modality's block must predict the class on its own, so every
    # modality's attention gets a direct learning signal (not drowned by the modality that is
    # easiest to read). Discarded after training.
    T, H = fusion_cfg.num_fusion_tokens, fusion_cfg.hidden_dim
    aux = nn.ModuleList([nn.Linear(T * H, len(codes)) for _ in MODALITIES])
    return model, aux


@dataclass
class _Data:
    """Preprocessed welds and their labels (indices into `codes`)."""

    items: list[dict]
    val_items: list[dict]
    codes: list[int]
    labels: torch.Tensor = field(init=False)
    val_labels: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.labels = torch.tensor([self.codes.index(it["label_code"]) for it in self.items])
        self.val_labels = torch.tensor([self.codes.index(it["label_code"]) for it in self.val_items])


def _fit(model: WeldModel, aux: nn.ModuleList, data: _Data, st: TrainSettings, gen: torch.Generator, out: Path,
         seed: int, history: dict, log) -> None:
    """The epochs: train, validate, log, save demo-early (epoch 1) and demo-best."""
    opt = torch.optim.AdamW(list(model.parameters()) + list(aux.parameters()), lr=st.lr,
                            weight_decay=st.weight_decay)
    steps_per_epoch = math.ceil(len(data.items) / st.batch_size)
    total = steps_per_epoch * st.epochs
    warm = min(steps_per_epoch, total // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    best = (-1.0, float("inf"))
    step = 0
    for epoch in range(1, st.epochs + 1):
        t0 = time.perf_counter()
        steps, tot_loss, tot_ok = _train_epoch(model, aux, data, st, opt, sched, gen)
        step += steps
        has_val = bool(data.val_items)
        val_acc, val_loss = _evaluate(model, data.val_items, data.val_labels) if has_val else (math.nan, math.nan)
        rec = {"epoch": epoch, "global_step": step, "train_loss": tot_loss / len(data.items),
               "train_accuracy": tot_ok / len(data.items),
               "val_accuracy": val_acc if has_val else None, "val_loss": val_loss if has_val else None,
               "seconds": time.perf_counter() - t0}
        history["epochs"].append(rec)
        log(f"epoch {epoch:3d}  loss {rec['train_loss']:.3f}  train acc {rec['train_accuracy']:.3f}  "
            f"val acc {val_acc:.3f}  val loss {val_loss:.3f}  ({rec['seconds']:.1f}s)")
        # without a validation set there is no val accuracy: "null", never NaN (not valid JSON)
        acc_text = f"{val_acc:.6f}" if has_val else "null"
        meta = {"epoch": str(epoch), "global_step": str(step), "val_accuracy": acc_text,
                "best_metric": acc_text, "train_seed": str(seed)}
        if epoch == 1:
            save_model(out / "demo-early.safetensors", model, **meta)
        # best = highest val accuracy, then lowest val loss; without a val set, the last epoch
        key = (val_acc, val_loss) if has_val else (float(epoch), 0.0)
        if key[0] > best[0] or (key[0] == best[0] and key[1] < best[1]):
            best = key
            save_model(out / "demo-best.safetensors", model, **meta)
            history["best_epoch"] = epoch
            history["best_val_accuracy"] = rec["val_accuracy"]


def _train_epoch(model: WeldModel, aux: nn.ModuleList, data: _Data, st: TrainSettings,
                 opt: torch.optim.Optimizer, sched, gen: torch.Generator) -> tuple[int, float, int]:
    """One pass over the training welds in a seeded order: (steps, summed loss, correct predictions)."""
    model.train()
    order = torch.randperm(len(data.items), generator=gen)
    steps, tot_loss, tot_ok = 0, 0.0, 0
    for s in range(0, len(data.items), st.batch_size):
        idx = order[s:s + st.batch_size].tolist()
        inp, mk = _stack(data.items, idx)
        mk = _drop_modalities(mk, st.modality_dropout, gen)
        y = data.labels[idx]
        loss, logits = _loss(model, aux, inp, mk, y, st)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        steps += 1
        tot_loss += loss.item() * len(idx)
        tot_ok += int((logits.argmax(1) == y).sum())
    return steps, tot_loss, tot_ok


def _loss(model: WeldModel, aux: nn.ModuleList, inp: dict, mk: dict, y: torch.Tensor,
          st: TrainSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(classification loss + the auxiliary heads' share, logits) of one training batch."""
    feats = model.encoders(inp, mk)
    blocks = model.blocks(feats, mk)
    logits = model.classifier(model.fusion.fuse_blocks(blocks))
    loss = F.cross_entropy(logits, y, label_smoothing=st.label_smoothing)
    if st.aux_weight:
        for j, m in enumerate(MODALITIES):
            rows = mk[m].any(1)
            if rows.any():
                z = aux[j](blocks[rows, j].flatten(1))
                loss = loss + st.aux_weight / len(MODALITIES) * F.cross_entropy(
                    z, y[rows], label_smoothing=st.label_smoothing)
    return loss, logits


# --------------------------------------------------------------------------- quality

def evaluate_quality(checkpoint_path: str | os.PathLike, welds: list[Weld], batch_size: int = 32) -> dict:
    """The demo-checkpoint figures on welds with truth.json, through the explanation engine.

    - accuracy: predicted class == truth class;
    - shapley_top_is_planted: over defect welds (planted modalities listed), the fraction
      whose top modality by exact Shapley (target: predicted-class logit) is a planted one;
    - relevance/attention localisation: over defect welds with time windows and each planted
      time modality, mass inside the windows divided by the windows' share of the weld
      ("chance share"); the mean of per-weld ratios and the ratio of means. Attention is
      the raw weights averaged over heads and fusion tokens. A token counts by the fraction
      of its time span inside a window. Figures with nothing to count are None.
    """
    ck = load_checkpoint(checkpoint_path)
    if ck.encoders is None:
        raise ValueError(f"{checkpoint_path}: has no built-in encoders")
    tally = _Quality(codes=ck.class_codes or list(range(len(ck.class_names or []))))
    for s in range(0, len(welds), batch_size):
        chunk = welds[s:s + batch_size]
        batch = ck.encoders.encode(chunk)
        ex = explain(ck, batch, target="logit")
        pred = ex.logits.argmax(1)
        for b, w in enumerate(chunk):
            tally.add(ex, batch.positions, b, w, int(pred[b]))
    return tally.figures()


@dataclass
class _Quality:
    """What `evaluate_quality` counts, weld by weld."""

    codes: list[int]                  # class code of each classifier output
    welds: int = 0
    correct: int = 0
    defect_welds: int = 0
    top_is_planted: int = 0
    loc: dict[str, list] = field(default_factory=lambda: {"relevance": [], "attention": []})   # (mass in, chance)
    per_modality: dict[str, list] = field(default_factory=lambda: {m: [] for m in TIME_MODALITIES})

    def add(self, ex: Explanation, positions: dict, b: int, w: Weld, predicted: int) -> None:
        """Sample b of `ex` (weld `w`, `predicted` the classifier's top output)."""
        code = weld_class(w.weld_id, w.truth)
        truth = w.truth or {}
        if code is not None:
            self.welds += 1
            self.correct += int(self.codes[predicted] == code)
        planted = [m for m in truth.get("modalities", []) if m in MODALITIES]
        if code is None or code == 0 or not planted:
            return
        self.defect_welds += 1
        self.top_is_planted += int(ex.top_modality(b, "shapley") in planted)
        windows = truth.get("windows") or []
        if windows:
            self._localisation(ex, positions, b, planted, windows)

    def _localisation(self, ex: Explanation, positions: dict, b: int, planted: list[str], windows: list) -> None:
        """Relevance and attention mass in the truth windows, per planted time modality with data."""
        for m in planted:
            if m not in TIME_MODALITIES or not ex.masks[m][b].any():
                continue
            frac = overlap_fraction(positions[m][b], windows)
            chance = float(frac.mean())
            if chance <= 0 or chance >= 1:
                continue
            for name, arr in (("relevance", ex.relevance[m][b].sum(0)),
                              ("attention", ex.attention[m][b].mean((0, 1)))):
                tot = float(arr.sum())
                if tot > 0:
                    self.loc[name].append((float((arr * frac).sum()) / tot, chance))
                    if name == "relevance":
                        self.per_modality[m].append(self.loc[name][-1][0] / chance)

    def figures(self) -> dict:
        n, top_total = self.welds, self.defect_welds
        return {
            "welds": n, "accuracy": self.correct / n if n else None,
            "defect_welds": top_total,
            "shapley_top_is_planted": self.top_is_planted / top_total if top_total else None,
            "relevance": _ratios(self.loc["relevance"]),
            "attention": _ratios(self.loc["attention"]),
            "relevance_ratio_by_modality": {m: float(np.mean(v)) if v else None
                                            for m, v in self.per_modality.items()},
        }


def _ratios(pairs: list[tuple[float, float]]) -> dict:
    """Summary of (mass in windows, chance share) pairs."""
    if not pairs:
        return {"n": 0, "mean_ratio": None, "ratio_of_means": None, "mass_in_window": None,
                "chance_share": None}
    a = np.asarray(pairs)
    return {"n": len(a), "mean_ratio": float((a[:, 0] / a[:, 1]).mean()),
            "ratio_of_means": float(a[:, 0].mean() / a[:, 1].mean()),
            "mass_in_window": float(a[:, 0].mean()), "chance_share": float(a[:, 1].mean())}


# --------------------------------------------------------------------------- entry points

def _worker_init() -> None:
    torch.set_num_threads(1)


def _generate_part(args) -> list[str]:
    out, count, seed = args
    return [str(p) for p in generate_dataset(out, count, seed)]


def _read_and_preprocess(args) -> dict:
    path, cfg = args
    return labelled_item(load_weld(path), EncoderConfig.from_dict(cfg))


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: a forked child inherits torch's thread pool in a broken state
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)


def generate_prepared(out_dir: str | os.PathLike, count: int, seed: int, cfg: EncoderConfig,
                      workers: int = 2) -> list[dict]:
    """Generate `count` synthetic welds (in `workers` parts, part k seeded seed*100+k) and
    read + preprocess them, in worker processes. Deterministic in (count, seed, workers)."""
    out = Path(out_dir)
    workers = max(1, workers)
    sizes = [count // workers + (k < count % workers) for k in range(workers)]
    jobs = [(str(out / f"part{k}"), n, seed * 100 + k) for k, n in enumerate(sizes) if n]
    with _pool(workers) as pool:
        paths = [p for part in pool.map(_generate_part, jobs) for p in part]
        return list(pool.map(_read_and_preprocess, [(p, cfg.to_dict()) for p in paths], chunksize=8))


def cli_train(samples_dir: str | os.PathLike | None, out_dir: str | os.PathLike, epochs: int = 30,
              seed: int = 0, val_dir: str | os.PathLike | None = None) -> dict:
    """`python -m fusion_core train`: train on a folder of welds (a stratified fifth held out
    for validation unless `val_dir` is given); without a folder, on freshly generated welds."""
    if samples_dir is None:
        return make_demo_checkpoints(out_dir, epochs=epochs, seed=seed)
    return train(samples_dir, out_dir, epochs=epochs, seed=seed, val_dir=val_dir)


def make_demo_checkpoints(out_dir: str | os.PathLike, *, count: int = 420, val_count: int = 140,
                          epochs: int = 30, seed: int = 7, workers: int = 2, log=print) -> dict:
    """Generate a training set and a validation set (different seeds) in a temporary folder,
    train, and write demo-early/demo-best (+ train-history.json) into out_dir.

    Welds are generated, decoded and preprocessed in `workers` processes; training itself
    uses 2 threads. About 5 minutes on 2 cores.
    """
    cfg = EncoderConfig()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="weld-train-") as tmp:
        train_items = generate_prepared(Path(tmp) / "train", count, seed, cfg, workers)
        val_items = generate_prepared(Path(tmp) / "val", val_count, seed + 1, cfg, workers)
    log(f"generated and preprocessed {count} + {val_count} welds in {time.perf_counter() - t0:.0f}s")
    hist = train(train_items, out_dir, epochs=epochs, seed=seed, val_dir=val_items, encoder_config=cfg, log=log)
    hist["data"] = {"generator": "fusion_core.synth", "train_count": count, "train_seed": seed,
                    "val_count": val_count, "val_seed": seed + 1, "workers": workers,
                    "seconds_generating": time.perf_counter() - t0 - hist["train_seconds"]}
    Path(out_dir, "train-history.json").write_text(json.dumps(hist, indent=1))
    return hist
