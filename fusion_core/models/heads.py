"""The fusion head count: in no tensor shape, so never guessed silently.

Sources, in order; the first that answers wins, and `HeadCount.source` says which:

1. the caller (`--heads`, the dashboard's input);
2. the checkpoint's own metadata (`config.num_heads`, `fusion_config.num_heads`, …; an
   integer written as "4" or 4.0 counts, anything else is an error naming the key);
3. a JSON sidecar next to the checkpoint (`model.json` beside `model.pth`), or a config
   file the user passes (JSON, or a Python config such as upstream's
   `configs/model_config.py`, read as literals, never executed);
4. a published configuration matched on the exact shapes (`PUBLISHED`);
5. otherwise the count is *assumed* (the seed's 8, or the largest divisor of the hidden
   size below it): `assumed` is set, and every report says so.

A lower source that disagrees with the one used is kept as a note. A count that does
not divide the hidden size is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.checkpoint import find_heads, read_config_file, sidecar_of

SEED_DEFAULT_HEADS = 8


@dataclass(frozen=True)
class Published:
    hidden: int
    tokens: int
    heads: int
    label: str
    dims: tuple[int, int, int, int] | None = None      # video, image, audio, sensor, when they matter


PUBLISHED: tuple[Published, ...] = (
    Published(384, 2, 4, "bluuueheart/Weld-Anomaly-Detection configs/model_config.py FUSION "
                         "(hidden 384, 2 tokens, 4 heads)"),
    Published(512, 4, 8, "the seed's and upstream QuadModalSOTAModel's defaults (hidden 512, 4 tokens, 8 heads)",
              dims=(1024, 768, 768, 256)),
)


@dataclass
class HeadCount:
    heads: int
    source: str
    assumed: bool = False
    notes: list[str] = field(default_factory=list)


def _published(hidden: int, tokens: int, dims: dict[str, int]) -> Published | None:
    got = tuple(dims.get(m, -1) for m in ("video", "image", "audio", "sensor"))
    for p in PUBLISHED:
        if (p.hidden, p.tokens) == (hidden, tokens) and (p.dims is None or p.dims == got):
            return p
    return None


def _assumed(hidden: int) -> int:
    return max(d for d in range(1, SEED_DEFAULT_HEADS + 1) if hidden % d == 0)


def _candidates(hidden: int, tokens: int, dims: dict[str, int], *, caller: int | None, meta: dict,
                path: Path, config: Path | None) -> list[tuple[int, str]]:
    """(heads, source) from every source that answers, in priority order."""
    out: list[tuple[int, str]] = []
    if caller is not None:
        out.append((int(caller), "caller (--heads)"))
    heads, where = find_heads(meta, path)
    if heads is not None:
        out.append((heads, f"checkpoint ({where})"))
    for cfg, label in ((sidecar_of(path), "sidecar"), (config, "config file")):
        if cfg is not None:
            heads, where = find_heads({"config": read_config_file(Path(cfg))}, cfg, ("config",))
            if heads is not None:
                out.append((heads, f"{label} {Path(cfg).name} ({where.removeprefix('config.')})"))
            elif label == "config file":
                raise InputError(cfg, "no fusion head count in this config (looked for num_heads, n_heads, nhead, …)")
    pub = _published(hidden, tokens, dims)
    if pub is not None:
        out.append((pub.heads, f"published configuration: {pub.label}"))
    return out


def resolve_heads(hidden: int, tokens: int, dims: dict[str, int], *, caller: int | None, meta: dict,
                  path: Path, config: Path | None = None) -> HeadCount:
    """The head count to build the fusion module with, where it came from, and any doubts."""
    found = _candidates(hidden, tokens, dims, caller=caller, meta=meta, path=path, config=config)
    if found:
        heads, source = found[0]
        result = HeadCount(heads, source)
        for other, where in found[1:]:
            if other != heads:
                result.notes.append(f"{source} gives {heads} heads, but {where} says {other}")
    else:
        heads = _assumed(hidden)
        result = HeadCount(heads, f"assumed: {heads} (the seed's default{'' if heads == SEED_DEFAULT_HEADS else ' does not divide ' + str(hidden)}"
                                  "; no head count in the checkpoint, no sidecar, no published configuration "
                                  f"with hidden {hidden} and {tokens} tokens: pass --heads)", assumed=True)
        result.notes.append(f"head count assumed ({heads}); per-head views and every number depend on it: "
                            "pass --heads, or put {\"num_heads\": N} in a sidecar JSON next to the checkpoint")
    if heads <= 0 or hidden % heads:
        raise InputError(path, f"hidden size {hidden} is not divisible by {heads} heads (heads from {result.source}); "
                               "pass the right --heads")
    return result

