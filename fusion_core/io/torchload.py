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


def safe_torch_load(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True and the numpy allow-list; refusals name the global."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as e:
        msg = str(e)
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        if found:
            raise InputError(path, f"refused: the file asks to load the Python global '{found.group(1)}', "
                                   "which is not a tensor or number (nothing was run)") from None
        raise InputError(path, f"refused: not a weights-only torch file ({msg.splitlines()[0][:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(path, f"not a readable torch checkpoint (truncated or corrupt?): {first}") from None
