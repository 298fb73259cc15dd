"""BLAS's y = a x + b y (axpby) for the fast paths: one pass over two vectors where NumPy takes
three (y *= b, a scratch a x, y += it), from the OpenBLAS that NumPy itself has loaded.

NumPy calls BLAS for matrix products but exposes none of its vector routines. OpenBLAS exports
`cblas_saxpby` and `cblas_daxpby` (in NumPy's wheels as `scipy_cblas_saxpby64_`, ...); we call
them through ctypes, which lets go of Python's lock for the length of the call, so threads run
them side by side (OpenBLAS runs axpby on the calling thread only). The first use checks each
routine against NumPy on a small vector. Where no routine is found or the check fails (another
BLAS, a CuPy array, a strided view), `axpby` makes the same update with NumPy passes.
"""
from __future__ import annotations

import ctypes
import threading

import numpy as np

# Below this many elements the NumPy passes are quicker: a ctypes call and its pointers cost a
# few microseconds (a ViT's 52 parameters, many of 128 elements: 1.62 ms with NumPy alone, 1.80
# with BLAS for every one)
MIN_SIZE = 1 << 14
_routines = None  # {dtype: ctypes function}, filled on first use
_lock = threading.Lock()
_SCALARS = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}


def _symbols(letter):
    """The names OpenBLAS builds give cblas_?axpby: NumPy's wheels prefix and suffix them."""
    return [f"{prefix}cblas_{letter}axpby{suffix}" for prefix in ("scipy_", "") for suffix in ("64_", "")]


def _find(lib, letter, scalar):
    for name in _symbols(letter):
        fn = getattr(lib, name, None)
        if fn is not None:
            # integers as 64 bits: the values fit in 32, and on x86-64 and arm64 every argument
            # travels in a register (or an 8-byte stack slot), so a 32-bit build reads them right too
            fn.argtypes = [ctypes.c_int64, scalar, ctypes.c_void_p, ctypes.c_int64, scalar, ctypes.c_void_p, ctypes.c_int64]
            fn.restype = None
            return fn
    return None


def address(a):
    """The address of a NumPy array's first element, what a BLAS routine takes for the array."""
    return a.ctypes.data


def _works(fn, dtype):
    x = np.arange(1, 6, dtype=dtype)
    y = np.full(5, 2.0, dtype=dtype)
    fn(x.size, 0.5, address(x), 1, 3.0, address(y), 1)
    return np.array_equal(y, 0.5 * np.arange(1, 6, dtype=dtype) + 6.0)


def _load():
    from threadpoolctl import threadpool_info

    routines = {}
    for info in threadpool_info():
        if info.get("internal_api") != "openblas":
            continue
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for dtype, (letter, scalar) in _SCALARS.items():
            if dtype in routines:
                continue
            fn = _find(lib, letter, scalar)
            if fn is not None and _works(fn, dtype):
                routines[dtype] = fn
    return routines


def routine(dtype):
    """The BLAS axpby for `dtype` (float32 or float64), or None where there is none."""
    global _routines
    if _routines is None:
        with _lock:
            if _routines is None:
                _routines = _load()
    return _routines.get(np.dtype(dtype))


def axpby(a, x, b, y, x_address=None, y_address=None):
    """y = a x + b y in place, for 1-D arrays of one dtype; returns y. A caller that makes many
    calls on slices of a few arrays passes their addresses (base + offset): looking one up costs
    about a microsecond, as long as the BLAS call itself on 2^14 floats."""
    fn = routine(y.dtype) if type(y) is np.ndarray and type(x) is np.ndarray and y.size >= MIN_SIZE else None
    if fn is not None and x.dtype == y.dtype and x.size == y.size and x.flags.c_contiguous and y.flags.c_contiguous:
        fn(y.size, a, address(x) if x_address is None else x_address, 1,
           b, address(y) if y_address is None else y_address, 1)
        return y
    if b != 1:
        y *= b
    y += a * x
    return y
