"""Command line: `python -m fusion_core {info,explain,compare,synth,train,make-sample-data}`.

Bad input prints one line naming the file and the problem on stderr and exits 2.
Set FUSION_CORE_DEBUG=1 to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from .batch.engines import add_batch_parser
from .errors import InputError, printable
from .explain.compare import compare
from .explain.engine import BASELINES, explain
from .explain.welds import explain_welds, read_options
from .io.containers import load_welds
from .io.features import load_features
from .models.checkpoint import LoadedCheckpoint, load_checkpoint
from .training.sampledata import make_sample_data
from .training.synth import cli_synth
from .training.train import cli_train

EXIT_INPUT = 2
HEADS_HELP = ("fusion head count; wins over every other source (checkpoint metadata, sidecar JSON, --config, "
              "published configurations), which are used when it is not given")
CONFIG_HELP = "config file stating the fusion head count: JSON, or a Python config such as configs/model_config.py"
DEVICE_HELP = ("where upstream's encoders run when weld files are explained: auto (CUDA when present), cpu or cuda; "
               "on a CPU a full-size weld takes minutes")
BACKBONE_HELP = ("folder with the backbones' config.json (a model folder, or a folder of them such as upstream's "
                 "models/); without it the published configuration matching the checkpoint's shapes is used")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def _checkpoint_json(ck) -> dict:
    i = ck.info
    return {"path": i.path, "sha256": i.sha256, "architecture": i.architecture, "layout": i.layout,
            "dims": i.dims, "heads": i.heads, "heads_source": i.heads_source, "heads_assumed": i.heads_assumed,
            "parameters": i.parameters, "epoch": i.epoch, "metric": i.metric, "classes": i.classes,
            "output": i.output}


def _load(args, path) -> "LoadedCheckpoint":
    """The checkpoint, with the one-line warning when its head count had to be assumed."""
    ck = load_checkpoint(path, heads=args.heads, config=getattr(args, "config", None),
                         backbone_dir=getattr(args, "backbone_dir", None), device=getattr(args, "device", None))
    if ck.info.heads_assumed:
        print(f"warning: {printable(path)}: fusion head count assumed to be {ck.info.heads} (not in the checkpoint, "
              "no sidecar JSON, no published configuration matches); pass --heads N or --config FILE",
              file=sys.stderr)
    return ck


def _write_json(path: str, obj: dict) -> None:
    out = Path(path)
    try:
        if out.parent and not out.parent.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        with open(tmp, "w") as f:   # streamed: a big result is never held as one string
            json.dump(obj, f, indent=None, separators=(",", ":"), allow_nan=False)
        tmp.replace(out)
    except OSError as e:
        raise InputError(path, f"cannot write output: {e.strerror or e}") from None


def _explain_payload(ckpt, args, reference):
    if args.features:
        fb = load_features(args.features)
        exp = explain(ckpt, fb, baseline=args.baseline, target=args.target, reference=reference)
        welds = None
    else:
        opts = read_options(ckpt)
        welds = load_welds(args.samples, **opts)
        ref_welds = load_welds(args.reference, **opts) if args.reference else None
        exp = explain_welds(ckpt, welds, baseline=args.baseline, target=args.target, reference=ref_welds,
                            device=getattr(args, "device", None), encoder_progress=_progress_line)
    payload = exp.to_json_dict()
    if welds is not None:
        for entry, w, b in zip(payload["results"], welds, range(len(welds))):
            entry["weld"] = w.weld_id
            entry["positions"] = {m: (p[b].to_dict(orient="records") if p[b] is not None else [])
                                  for m, p in exp.positions.items()}
            if w.truth is not None:
                entry["truth"] = w.truth
    return exp, payload


def _progress_line(stage: str, modality: str, done: int, total: int) -> None:
    """Upstream's encoders are slow on a CPU: one stderr line per encoder built and per weld."""
    if stage == "load":
        print(f"loading the {modality} encoder from the checkpoint…", file=sys.stderr, flush=True)
    elif done < total:
        print(f"{modality} encoder: weld {done + 1}/{total}", file=sys.stderr, flush=True)


def cmd_info(args) -> int:
    ck = _load(args, args.checkpoint)
    if args.json:
        print(json.dumps(ck.info.to_dict(), indent=2))
    else:
        print("\n".join(ck.info.summary_lines()))
    return 0


def _reference_features(args, ckpt):
    if not getattr(args, "reference", None) or args.samples:
        return None
    return load_features(args.reference)


def cmd_explain(args) -> int:
    ck = _load(args, args.checkpoint)
    exp, payload = _explain_payload(ck, args, _reference_features(args, ck))
    payload = {"checkpoint": _checkpoint_json(ck), **payload, "notes": list(dict.fromkeys(ck.info.notes + exp.notes))}
    _write_json(args.out, payload)
    gaps = [abs(r["efficiency_gap"]) for r in payload["results"]]
    print(f"explained {len(payload['results'])} sample(s) with target {exp.target}, baseline {exp.baseline}; "
          f"max |efficiency gap| {max(gaps):.2e}; wrote {args.out}")
    return 0


def cmd_compare(args) -> int:
    if len(args.checkpoint) != 2:
        raise InputError("", f"compare needs exactly two --checkpoint, got {len(args.checkpoint)}")
    cks = [_load(args, p) for p in args.checkpoint]
    exps = []
    for ck in cks:
        exp, _ = _explain_payload(ck, args, _reference_features(args, ck))
        exps.append(exp)
    comp = compare(*exps)
    payload = {"checkpoints": {"a": _checkpoint_json(cks[0]), "b": _checkpoint_json(cks[1])},
               "target": [exps[0].target, exps[1].target], "baseline": args.baseline, **comp.to_json_dict()}
    _write_json(args.out, payload)
    flagged = int((~comp.top_agree).sum())
    print(f"compared {exps[0].batch_size} sample(s); top modality differs on {flagged}; wrote {args.out}")
    return 0


def cmd_synth(args) -> int:
    cli_synth(Path(args.out), args.count, args.seed)
    return 0


def cmd_train(args) -> int:
    cli_train(args.samples, args.out, epochs=args.epochs, seed=args.seed)
    return 0


def cmd_make_sample_data(args) -> int:
    make_sample_data(Path(args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fusion_core",
                                description="Attention and modality contributions of quad-modal weld fusion models.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("info", help="what the loader finds in a checkpoint")
    s.add_argument("checkpoint")
    s.add_argument("--heads", type=_positive_int, help=HEADS_HELP)
    s.add_argument("--config", help=CONFIG_HELP)
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_info)

    for name, func, helptext in (("explain", cmd_explain, "explain one checkpoint on features or welds"),
                                 ("compare", cmd_compare, "compare two checkpoints on the same inputs")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--checkpoint", required=True, action="append" if name == "compare" else "store")
        src = s.add_mutually_exclusive_group(required=True)
        src.add_argument("--features", help=".npz/.safetensors/.pt with video/image/audio/sensor arrays")
        src.add_argument("--samples", "--sample", dest="samples", help="weld folder, folder of welds, or .zip "
                         "(--sample is the old spelling, still accepted)")
        s.add_argument("--heads", type=_positive_int, help=HEADS_HELP)
        s.add_argument("--config", help=CONFIG_HELP)
        s.add_argument("--baseline", default="drop-attention", choices=list(BASELINES))
        s.add_argument("--target", default="auto", help="auto | logit | class:<name> | anomaly | cosine")
        s.add_argument("--reference", help="reference set (good samples): feature file, or welds with --sample")
        s.add_argument("--out", required=True, help="output JSON path")
        s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help=DEVICE_HELP)
        s.add_argument("--backbone-dir", dest="backbone_dir", help=BACKBONE_HELP)
        s.set_defaults(func=func)

    s = sub.add_parser("synth", help="write synthetic welds in the dataset's layout")
    s.add_argument("--out", required=True)
    s.add_argument("--count", type=_positive_int, default=12)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train the demo model (encoders + fusion + classifier) on welds")
    s.add_argument("--samples", help="folder of training welds (default: generate them)")
    s.add_argument("--out", required=True, help="folder for the checkpoints")
    s.add_argument("--epochs", type=_positive_int, default=30)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("make-sample-data", help="regenerate sample_data/ (welds and demo checkpoints)")
    s.add_argument("--out", default="sample_data")
    s.set_defaults(func=cmd_make_sample_data)

    add_batch_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our output went away (`fusion-core info X | head`): not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # a bug of ours, not the user's input: say so on one line
        if os.environ.get("FUSION_CORE_DEBUG"):
            traceback.print_exc()
        print(f"internal error ({type(e).__name__}): {printable(' '.join(str(e).split()))[:500]} — rerun with "
              "FUSION_CORE_DEBUG=1 for details", file=sys.stderr)
        return 1
