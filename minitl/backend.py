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


# --- the two hot kernels: a seam where the GPU path plugs in its own CUDA kernels ---------------

def matmul(a, b):
    """a @ b with NumPy broadcasting rules; on the GPU the project's SGEMM kernel can serve it."""
    return a @ b
