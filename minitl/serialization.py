"""`tl.save` / `tl.load`: state dicts in NumPy's .npz format, no pickle anywhere.

A state dict may nest (an optimizer's does): nested keys are joined with '/', arrays and
Tensors (their data) become npz entries, and plain values (numbers, strings, lists of them) go
into one JSON entry. Loading gives back nested dicts in the saved key order, with NumPy arrays
(dtype and shape kept) where arrays or Tensors were saved. The
file is written to a temporary name in the same folder, flushed to disk and renamed over the
target, so a crash mid-save never leaves a half-written checkpoint in place of a good one.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections import OrderedDict

import numpy as np

from .backend import to_device
from .tensor import Tensor

_META_KEY = "__minitl_meta__"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read as one minitl wrote."""


def _flatten(obj, prefix, arrays, meta):
    if isinstance(obj, dict):
        meta_entry = {}
        for key, value in obj.items():
            key = str(key)
            if "/" in key:
                raise ValueError(f"save: key {key!r} may not contain '/'")
            path = f"{prefix}/{key}" if prefix else key
            if isinstance(value, (dict, Tensor, np.ndarray)) or hasattr(value, "__cuda_array_interface__"):
                _flatten(value, path, arrays, meta)
            else:
                meta_entry[key] = value
        meta[prefix] = {"keys": [str(k) for k in obj.keys()], "values": meta_entry}
    else:
        data = obj.data if isinstance(obj, Tensor) else obj
        arrays[prefix] = np.ascontiguousarray(to_device(data, "cpu"))


def save(obj, path):
    """Save a (possibly nested) dict of arrays, Tensors and plain values to `path` (.npz).
    A Tensor is saved as its data (copied to the CPU); no graph or requires_grad is kept."""
    if not isinstance(obj, dict):
        raise TypeError(f"save expects a dict (e.g. model.state_dict()), got {type(obj).__name__}")
    arrays, meta = {}, {}
    _flatten(obj, "", arrays, meta)
    try:
        meta_bytes = json.dumps(meta).encode("utf-8")
    except TypeError as exc:
        raise TypeError(f"save: values must be arrays, tensors, numbers, strings or lists of them ({exc})") from None
    arrays[_META_KEY] = np.frombuffer(meta_bytes, dtype=np.uint8)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _unflatten(prefix, arrays, meta):
    entry = meta.get(prefix, {"keys": [], "values": {}})
    out = OrderedDict()
    for key in entry["keys"]:
        path = f"{prefix}/{key}" if prefix else key
        if key in entry["values"]:
            out[key] = entry["values"][key]
        elif path in arrays:
            out[key] = arrays[path]
        else:
            out[key] = _unflatten(path, arrays, meta)
    return out


def load(path):
    """Read a file written by `save`: the same nesting of dicts, with a NumPy array wherever
    an array or a Tensor was saved (wrap one with `tl.tensor` to compute with it), and plain
    values as they were."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path} is not a readable minitl checkpoint (corrupt or truncated .npz): {exc}") from None
    if _META_KEY not in arrays:
        # a plain npz of arrays (np.savez) loads as a flat dict
        return OrderedDict(sorted(arrays.items()))
    try:
        meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's metadata is corrupt: {exc}") from None
    return _unflatten("", arrays, meta)
