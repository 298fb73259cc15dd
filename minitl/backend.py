"""The array module behind a tensor: NumPy on the CPU, CuPy on a GPU.

Every op asks `xp_of(array)` for the module that owns its input instead of calling `numpy`
directly, so one implementation serves both devices. CuPy is imported only when a tensor is
moved to "cuda": the CPU path never needs it installed.
"""
from __future__ import annotations

import numpy as np

_cupy = None  # the cupy module once loaded


class DeviceError(RuntimeError):
    """Asked for a device this machine cannot provide."""


def cupy_module():
    """Import CuPy and check that a GPU answers; a clear error otherwise."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as exc:
            raise DeviceError(
                "device 'cuda' needs CuPy, which is not installed; install it with "
                "`pip install -e .[gpu]` on a machine with an NVIDIA GPU"
            ) from exc
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # the driver is missing or refuses to start
            raise DeviceError(f"device 'cuda' asked for, but CuPy finds no usable GPU: {exc}") from exc
        if count == 0:
            raise DeviceError("device 'cuda' asked for, but CuPy finds no GPU on this machine")
        _cupy = cupy
    return _cupy


def xp_of(array):
    """The array module (numpy or cupy) that owns `array`."""
    if type(array) is np.ndarray or _cupy is None:
        return np
    return _cupy.get_array_module(array)


def is_array(a) -> bool:
    """True for a NumPy or CuPy array (not a NumPy scalar, not a row-sparse gradient object)."""
    return type(a) is np.ndarray or (_cupy is not None and isinstance(a, _cupy.ndarray))


def device_of(array) -> str:
    return "cpu" if xp_of(array) is np else "cuda"


def normalize_device(device) -> str:
    """Accept 'cpu', 'cuda', 'cuda:0' or a `tl.device`; return 'cpu' or 'cuda'."""
    name = str(device)
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        return "cuda"
    raise ValueError(f"unknown device {device!r}: use 'cpu' or 'cuda'")


def is_device_name(target) -> bool:
    """True for 'cpu', 'cuda', 'cuda:N' and `tl.device`s (as opposed to dtype names)."""
    if isinstance(target, device):
        return True
    return isinstance(target, str) and (target == "cpu" or target == "cuda" or target.startswith("cuda:"))


def to_device(array, device: str):
    """Copy `array` to `device` ('cpu' or 'cuda'); no copy when it already lives there."""
    device = normalize_device(device)
    if device == device_of(array):
        return array
    if device == "cpu":
        return array.get()
    return cupy_module().asarray(array)


def scatter_add(target, index, values):
    """target[index] += values, adding up repeated indices (np.add.at; cupyx.scatter_add on
    the GPU, where plain `+=` with repeated indices would keep only one of them)."""
    if type(target) is np.ndarray:
        np.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


def is_cuda_available() -> bool:
    try:
        cupy_module()
    except DeviceError:
        return False
    return True


class device:
    """`tl.device("cuda")`: a name for a device, accepted wherever a device string is."""

    def __init__(self, name):
        self.type = normalize_device(name)

    def __str__(self):
        return self.type

    def __repr__(self):
        return f"device(type='{self.type}')"

    def __eq__(self, other):
        return str(self) == str(other)

    def __hash__(self):
        return hash(self.type)


# --- the two hot kernels -----------------------------------------------------------------------
#
# On the CPU these are NumPy (OpenBLAS does the matmul). On the GPU they run the project's own
# CUDA kernels from `kernels/` (SGEMM with warp tiling; a softmax with one warp per short row)
# for float32; `use_gpu_kernels("cublas")` switches to CuPy's cuBLAS path for comparison, and
# `MINITL_GPU_KERNELS=cublas` does so from the environment.

import os as _os

_gpu_kernels = _os.environ.get("MINITL_GPU_KERNELS", "minitl")


def use_gpu_kernels(name: str) -> str:
    """'minitl' (our kernels, the default) or 'cublas' (CuPy's library path); returns the
    previous choice so a benchmark can switch back."""
    global _gpu_kernels
    if name not in ("minitl", "cublas"):
        raise ValueError(f"use_gpu_kernels: 'minitl' or 'cublas', got {name!r}")
    previous, _gpu_kernels = _gpu_kernels, name
    return previous


def gpu_kernels_apply(*arrays) -> bool:
    """True when the project's CUDA kernels take these arrays: float32 CuPy arrays, unless
    `use_gpu_kernels("cublas")` chose CuPy's own path."""
    return (_gpu_kernels == "minitl" and type(arrays[0]) is not np.ndarray
            and all(a.dtype == np.float32 for a in arrays))


def matmul(a, b):
    """a @ b with NumPy broadcasting rules (both at least 2-D)."""
    if gpu_kernels_apply(a, b):
        from . import kernels
        return kernels.matmul(a, b)
    return a @ b


def softmax(a, axis=-1):
    if gpu_kernels_apply(a):
        from . import kernels
        return kernels.softmax(a, axis=axis)
    e = xp_of(a).exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(y, dy, axis=-1):
    """dx = y * (dy - sum(dy * y)): the softmax Jacobian applied to dy. `Softmax.backward`
    calls this only where the GPU kernel applies; its CPU path is the exercise
    autograd.softmax_backward, the same formula."""
    if gpu_kernels_apply(y, dy):
        from . import kernels
        return kernels.softmax_backward(y, dy, axis=axis)
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax(a, axis=-1):
    """a - max - log(sum(exp(a - max))): exp never sees a large argument."""
    if gpu_kernels_apply(a):
        from . import kernels
        return kernels.log_softmax(a, axis=axis)
    shifted = a - a.max(axis=axis, keepdims=True)
    xp = xp_of(a)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward(y, dy, axis=-1):
    """dx = dy - exp(y) * sum(dy) for y = log_softmax(x)."""
    if gpu_kernels_apply(y, dy):
        from . import kernels
        return kernels.log_softmax_backward(y, dy, axis=axis)
    return dy - xp_of(y).exp(y) * dy.sum(axis=axis, keepdims=True)
