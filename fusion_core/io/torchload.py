"""Reading torch.save files without running anything: the leaf every torch-file reader uses.

`.pt/.pth/.ckpt` files are read with torch's weights-only unpickler plus an explicit
allow-list (numpy scalars and dtypes, which training loops put in `best_metric`); any other
global is refused and named.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError

_NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
                 np.uint8, np.bool_, np.longlong, np.ulonglong]
# What a training loop legitimately leaves in a checkpoint beside tensors: numpy scalars
# (np.float64(0.93) as best_metric) need `scalar` and the dtype and its class.
SAFE_GLOBALS: list[Any] = [np._core.multiarray.scalar, np.dtype] + [type(np.dtype(t)) for t in _NUMPY_DTYPES]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Eagerly reading a legacy (non-zip) torch file loads all of it; above this, refuse.
MAX_EAGER_BYTES = 4 * 1024 ** 3
RESAVE_HINT = ("if it is a whole pickled model (torch.save(model)), re-save its weights where the model's code "
               "is importable: torch.save({'model_state_dict': model.state_dict()}, 'model.pth')")


def safe_torch_load(path: str | os.PathLike, *, mmap: bool = False) -> Any:
    """torch.load with weights_only=True and the numpy allow-list; refusals name the global.

    With `mmap`, tensors stay in the file (memory-mapped) until touched, so a 5 GB training
    file costs only what is read from it; legacy non-zip files cannot be mapped and are
    read whole (up to MAX_EAGER_BYTES)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as e:
                if not (mmap and "mmap" in str(e)):
                    raise
            if path.stat().st_size > MAX_EAGER_BYTES:
                raise InputError(path, f"a legacy (non-zip) torch file of {path.stat().st_size / 1e9:.1f} GB cannot be "
                                       "memory-mapped; re-save it with a current torch.save")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as e:
        raise _refusal(path, str(e)) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as e:
        if isinstance(e, InputError):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(path, f"not a readable torch checkpoint (truncated or corrupt?): {first}") from None


def _refusal(path: Path, msg: str) -> InputError:
    found = re.search(r"GLOBAL ([\w.]+)", msg)
    if not found:
        return InputError(path, f"refused: not a weights-only torch file ({msg.splitlines()[0][:200]})")
    name = found.group(1)
    hint = ""
    if not name.startswith(("numpy.", "builtins.", "collections.", "_codecs.")):
        hint = f"; {RESAVE_HINT}"
    return InputError(path, f"refused: the file asks to load the Python global '{name}', "
                            f"which is not a tensor or number (nothing was run){hint}")
