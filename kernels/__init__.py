"""minitl's own CUDA kernels: float32 matmul (SGEMM) and row softmax, with thin wrappers.

The chapter's models spend nearly all their GPU time in two places: matrix products
(every Linear layer, attention's ``Q @ K^T`` and ``weights @ V``, and their backward
passes ``dx = dy @ W^T``, ``dW = x^T @ dy``) and softmax (attention weights, and the
log-softmax inside cross-entropy).  This package writes both from scratch in CUDA C
(``matmul.cu``, ``softmax.cu``) and calls them on CuPy arrays:

    import cupy as cp, kernels
    c = kernels.matmul(a, b)                    # a @ b
    c = kernels.matmul(dy, w, trans_b=True)     # dy @ w.T, no transposed copy
    y = kernels.softmax(scores)                 # along the last axis
    dx = kernels.softmax_backward(y, dy)

Importing this package does not import CuPy; the wrappers do, when first called.  On a
machine without a GPU, ``kernels.source(name)`` still shows the CUDA code (lesson 12
prints it), ``kernels.cu_files()`` lists the sources, and inside
``kernels.emulation.emulate()`` the same wrappers run the same CUDA code on the CPU, on
NumPy arrays (see ``emulation/``).  Lesson 12 walks through the matmul ladder;
``python -m minitl.kernels.bench`` measures it against cuBLAS.
"""
from __future__ import annotations

import functools
import math

import numpy

from . import emulation
from ._loader import cu_files, get_function, source

__all__ = [
    "matmul", "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "source", "cu_files", "MATMUL_KERNELS",
]

# The rungs of the SGEMM ladder, slowest first: name -> (tile rows, tile cols, block shape).
# "warptile" is the one matmul() uses unless told otherwise.
MATMUL_KERNELS = {
    "naive": (8, 32, (32, 8, 1)),
    "tiled": (32, 32, (32, 32, 1)),
    "blocktile": (128, 128, (256, 1, 1)),
    "warptile": (128, 128, (256, 1, 1)),
}
_MAX_GRID_YZ = 65535        # CUDA's limit on gridDim.y and gridDim.z
_MAX_INT = 2**31 - 1        # the kernels take sizes as int
# Split-K (warptile only): a product whose C has fewer tiles than half the GPU's
# multiprocessors, and whose K is at least _SPLIT_K_MIN_K, is cut along K into slices of at
# least _SPLIT_K_MIN_SLICE values.  On an H200 (benchmarks/RESULTS.md, 2026-11-30) the split
# lost at every K up to 784 (128x784x512: 0.12 of cuBLAS against 0.22 in one pass; 4096x256x256
# 0.18 against 0.50): its extra launches and the sum of the slices cost more than the few
# busy multiprocessors of one pass.  From K = 4096 on it won (128x8192x512: 0.33 against 0.04;
# 64x65536x64: 0.27 against 0.00).  2048 lies between; it was not measured.
_SPLIT_K_MIN_K = 2048
_SPLIT_K_MIN_SLICE = 64
_WARPTILE_BK = 8            # WT_BK in matmul.cu: slices of K are multiples of it
_EMULATED_MULTIPROCESSORS = 132  # what the CPU emulation reports (an H100 / H200)


def _cupy():
    if emulation.active():  # the CPU emulation: NumPy arrays stand in for device memory
        return numpy
    try:
        import cupy
    except ImportError as err:  # pragma: no cover - depends on the machine
        raise RuntimeError(
            "kernels needs CuPy and an NVIDIA GPU: pip install -e .[gpu] "
            "(kernels.source() shows the CUDA code without one)") from err
    return cupy


def _check_float32(fn: str, **arrays) -> None:
    for name, x in arrays.items():
        if x.dtype != "float32":
            raise TypeError(f"{fn}: {name} must be float32, got {x.dtype} (shape {tuple(x.shape)})")


def _row_major(cp, x, trans: bool):
    """x as a C-contiguous array, and the transpose flag that goes with it.

    A transposed view (``w.T`` of a contiguous ``w``) is not C-contiguous, but its last
    two axes swapped back are: pass that memory with the flag flipped instead of copying.
    """
    if x.flags.c_contiguous:
        return x, trans
    swapped = x.swapaxes(-1, -2)
    if swapped.flags.c_contiguous:
        return swapped, not trans
    return cp.ascontiguousarray(x), trans


def _batch_operand(cp, x, batch_shape: tuple[int, ...]):
    """(array, stride between its matrices) for a batch of shape batch_shape.

    Either every matrix is the same one (stride 0: broadcasting costs nothing), or x
    has the whole batch (stride rows * cols); a partial broadcast, like (4, 1, m, k)
    against a batch of (4, 3), is expanded into a copy.
    """
    lead = (1,) * (len(batch_shape) - (x.ndim - 2)) + tuple(x.shape[:-2])
    rows, cols = x.shape[-2:]
    if math.prod(lead) == 1:
        return x, 0
    if lead == tuple(batch_shape):
        return x, rows * cols
    full = cp.ascontiguousarray(cp.broadcast_to(x, tuple(batch_shape) + (rows, cols)))
    return full, rows * cols


def matmul(a, b, trans_a: bool = False, trans_b: bool = False, out=None, kernel: str = "warptile",
           options: tuple = ()):
    """``op(a) @ op(b)`` on the GPU with minitl's SGEMM kernel; op transposes the last two axes when asked.

    a, b: float32 CuPy arrays with at least 2 dimensions.  Leading (batch) dimensions
    broadcast as in ``numpy.matmul``.  ``trans_a=True`` multiplies by ``a``'s transpose
    (a is then stored ``k x m``) without making a transposed copy; likewise ``trans_b``.
    out: optional C-contiguous float32 array of the result's shape to write into; it
    must not overlap ``a`` or ``b``.  kernel: a rung of the ladder, one of
    ``MATMUL_KERNELS`` ("naive", "tiled", "blocktile", "warptile").  options: extra
    compiler options, such as ``("-DWT_MIN_BLOCKS=2",)`` (what the benchmark compares).
    """
    cp = _cupy()
    if kernel not in MATMUL_KERNELS:
        raise ValueError(f"matmul: kernel must be one of {list(MATMUL_KERNELS)}, got {kernel!r}")
    shape_a, shape_b = tuple(a.shape), tuple(b.shape)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"matmul: operands need at least 2 dimensions, got shapes {shape_a} and "
                         f"{shape_b} (reshape a vector to (1, n) or (n, 1))")
    _check_float32("matmul", a=a, b=b)
    m, k = (shape_a[-1], shape_a[-2]) if trans_a else shape_a[-2:]
    k_b, n = (shape_b[-1], shape_b[-2]) if trans_b else shape_b[-2:]
    if k != k_b:
        raise ValueError(
            f"matmul: shapes {shape_a} and {shape_b} do not align (trans_a={trans_a}, "
            f"trans_b={trans_b}): op(a) is {m} x {k}, op(b) is {k_b} x {n}, and {k} != {k_b}")
    try:
        batch_shape = tuple(numpy.broadcast_shapes(shape_a[:-2], shape_b[:-2]))
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of shapes {shape_a} and {shape_b} "
                         f"do not broadcast: {shape_a[:-2]} vs {shape_b[:-2]}") from None
    result_shape = batch_shape + (m, n)

    if out is None:
        out = cp.empty(result_shape, dtype=cp.float32)
    else:
        _check_float32("matmul", out=out)
        if tuple(out.shape) != result_shape or not out.flags.c_contiguous:
            raise ValueError(f"matmul: out must be a C-contiguous array of shape {result_shape} "
                             f"for shapes {shape_a} and {shape_b}, got shape {tuple(out.shape)}"
                             f"{'' if out.flags.c_contiguous else ' (not C-contiguous)'}")
    batch = math.prod(batch_shape)
    if out.size == 0:
        return out
    if max(m, n, k) > _MAX_INT or batch > _MAX_INT:
        raise ValueError(f"matmul: sizes must be below 2**31 for the kernels' int arguments, "
                         f"got op(a) {m} x {k}, op(b) {k} x {n}, batch {batch}")

    a, trans_a = _row_major(cp, a, bool(trans_a))
    b, trans_b = _row_major(cp, b, bool(trans_b))
    a, stride_a = _batch_operand(cp, a, batch_shape)
    b, stride_b = _batch_operand(cp, b, batch_shape)
    tile_m, tile_n, block = MATMUL_KERNELS[kernel]
    name = kernel
    if kernel == "warptile":  # one compiled variant per pair of flags, see matmul.cu
        name = "warptile_" + ("t" if trans_a else "n") + ("t" if trans_b else "n")
    fn = get_function("matmul", "sgemm_" + name, options=("--std=c++14", *options))
    launch = _SgemmLaunch(fn, a, b, trans_a, trans_b, tile_m, tile_n, block)
    tiles = -(-m // tile_m) * -(-n // tile_n)
    splits = _k_splits(k, tiles, _multiprocessors(cp)) if kernel == "warptile" and batch == 1 else 1
    if splits > 1:
        _matmul_split_k(cp, launch, out, m, n, k, splits)
        return out
    # gridDim.y counts row tiles and may not pass 65535 (8.4M rows for warptile, which
    # im2col reaches): launch the rows in slices of that many tiles, the pointers moved on.
    rows_per_launch = _MAX_GRID_YZ * tile_m
    for row0 in range(0, m, rows_per_launch):
        rows = min(rows_per_launch, m - row0)
        launch(_rows(a, trans_a, row0, rows, m), b, _rows(out, False, row0, rows, m), rows, n, k,
               stride_a, stride_b, m * n, batch)
    return out


def _rows(x, trans: bool, start: int, count: int, total: int):
    """Rows start.. of op(x) (columns of x, when transposed): a view, for its data pointer; x
    itself when that is all `total` rows, as nearly always (a view costs microseconds of host time)."""
    if count == total:
        return x
    return x[..., :, start:start + count] if trans else x[..., start:start + count, :]


def _k_slice(x, trans: bool, is_a: bool, start: int):
    """op(x) from index start of its K axis on: columns of op(a), rows of op(b)."""
    k_is_last = is_a != trans  # a stored M x K, or b stored transposed (N x K)
    return x[..., :, start:] if k_is_last else x[..., start:, :]


class _SgemmLaunch:
    """One SGEMM kernel with its operands' layout; called with the pointers and sizes of a part."""

    def __init__(self, fn, a, b, trans_a, trans_b, tile_m, tile_n, block):
        self.fn, self.a, self.b, self.trans_a, self.trans_b = fn, a, b, trans_a, trans_b
        self.lda, self.ldb = a.shape[-1], b.shape[-1]
        self.tile_m, self.tile_n, self.block = tile_m, tile_n, block

    def __call__(self, a, b, c, m, n, k, stride_a, stride_b, stride_c, batch):
        i32, i64 = _int_types()
        grid = (-(-n // self.tile_n), -(-m // self.tile_m), min(batch, _MAX_GRID_YZ))
        self.fn(grid, self.block, (a, b, c, i32(m), i32(n), i32(k), i32(self.lda), i32(self.ldb), i32(n),
                                   i32(self.trans_a), i32(self.trans_b),
                                   i64(stride_a), i64(stride_b), i64(stride_c), i32(batch)))


def _multiprocessors(cp) -> int:
    if cp is numpy:
        return _EMULATED_MULTIPROCESSORS
    return _device_multiprocessors(cp.cuda.runtime.getDevice())


@functools.lru_cache(maxsize=None)
def _device_multiprocessors(device_id: int) -> int:
    # Asked once per device: CuPy's Device.attributes reads every attribute the driver has.
    import cupy

    return cupy.cuda.Device(device_id).attributes["MultiProcessorCount"]


def _k_splits(k: int, tiles: int, multiprocessors: int) -> int:
    """Into how many slices of K to cut a product whose C has `tiles` tiles (1: no split).

    A product such as 128x8192 @ 8192x512 has 4 tiles of 128 x 128: 4 busy multiprocessors
    out of 132, each looping over all of K.  Cut K into s slices, each a product of its own,
    and s * tiles blocks run at once; the slices' results are then summed.  Short K is left
    whole: there the extra launches cost more than the idle multiprocessors.
    """
    if tiles * 2 > multiprocessors or k < _SPLIT_K_MIN_K:
        return 1
    return max(1, min(-(-multiprocessors // tiles), k // _SPLIT_K_MIN_SLICE))


def _matmul_split_k(cp, launch: _SgemmLaunch, out, m: int, n: int, k: int, splits: int) -> None:
    """out = sum over slices s of op(a)[:, K_s] @ op(b)[K_s, :], the slices as a batch.

    The slices have one length (a multiple of the kernel's K step, so their offsets keep
    float4 alignment), except the last, which gets its own launch.
    """
    slice_k = -(-k // splits)
    slice_k = -(-slice_k // _WARPTILE_BK) * _WARPTILE_BK  # rounded up to a whole K step
    splits = -(-k // slice_k)
    partial = cp.empty((splits, m, n), dtype=cp.float32)
    a, b = launch.a, launch.b
    # one slice further along K: a column of a stored M x K, a row of a stored K x M; for b
    # the other way round
    step_a = slice_k * (launch.lda if launch.trans_a else 1)
    step_b = slice_k * (1 if launch.trans_b else launch.ldb)
    if splits > 1:
        launch(a, b, partial, m, n, slice_k, step_a, step_b, m * n, splits - 1)
    last = (splits - 1) * slice_k
    launch(_k_slice(a, launch.trans_a, True, last), _k_slice(b, launch.trans_b, False, last),
           partial[splits - 1:], m, n, k - last, 0, 0, m * n, 1)
    cp.sum(partial, axis=0, out=out.reshape(m, n))


def _int_types():
    # Kernel scalars must match the C parameter types exactly (int, long long), so they
    # are passed as NumPy scalars, never as Python ints.
    return numpy.int32, numpy.int64


def _rows_view(cp, x, axis: int):
    """x with `axis` moved last, C-contiguous, as (array, rows, cols)."""
    moved = cp.ascontiguousarray(x if axis == x.ndim - 1 else cp.moveaxis(x, axis, -1))
    cols = moved.shape[-1] if moved.ndim else 1
    return moved, (moved.size // cols if cols else 0), cols


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


# values per thread of the kernels that keep a row in registers (softmax.cu)
_BLOCK_VALUES = {"forward": (8, 16, 32), "backward": (8, 16)}


def softmax_launch(direction: str, rows: int, cols: int):
    """(kernel name, grid, block, lanes) softmax.cu's layouts prescribe for rows of `cols` values.

    direction: "forward" or "backward".  lanes is the extra argument of the *_warp kernels
    (lanes per row), None for the *_block ones.
    """
    if cols <= 128:   # rows share a warp: as few lanes as hold the row, 8 values per lane
        # forward, 4 backward (which loads two arrays): the same loads in flight per thread
        values = 8 if direction == "forward" else 4
        lanes = _pow2_at_least(-(-cols // values))
        return f"softmax_{direction}_warp{values}", (-(-rows // (128 // lanes)),), (128,), lanes
    if cols <= 1024:  # a warp per row, as many values per lane as the row needs
        values = next(v for v in (8, 16, 32) if cols <= 32 * v)
        return f"softmax_{direction}_warp{values if values < 32 else ''}", (-(-rows // 4),), (128,), 32
    for values in _BLOCK_VALUES[direction]:  # a block per row, kept in registers
        if cols <= 1024 * values:
            threads = min(1024, -(-cols // (32 * values)) * 32)  # whole warps, enough for the row
            return f"softmax_{direction}_block{values}", (rows,), (threads,), None
    return f"softmax_{direction}_block", (rows,), (1024,), None  # streamed, read twice


def _launch_rows(direction: str, inputs, out, rows: int, cols: int, log_flag: int) -> None:
    if rows > _MAX_INT or cols > _MAX_INT:
        raise ValueError(f"softmax: {rows} rows of {cols} values; the kernels take both as int (< 2**31)")
    i32, _ = _int_types()
    name, grid, block, lanes = softmax_launch(direction, rows, cols)
    fn = get_function("softmax", name)
    extra = () if lanes is None else (i32(lanes),)
    fn(grid, block, (*inputs, out, i32(rows), i32(cols), i32(log_flag), *extra))


def _axis(axis: int, ndim: int, fn_name: str) -> int:
    if not -ndim <= axis < ndim:
        raise getattr(numpy, "exceptions", numpy).AxisError(axis, ndim, fn_name)
    return axis % ndim


def _forward(x, axis: int, log: bool, fn_name: str):
    cp = _cupy()
    _check_float32(fn_name, x=x)
    if x.ndim == 0:
        raise ValueError(f"{fn_name}: x must have at least 1 dimension, got a scalar")
    axis = _axis(axis, x.ndim, fn_name)
    moved, rows, cols = _rows_view(cp, x, axis)
    y = cp.empty_like(moved)
    if y.size:
        _launch_rows("forward", (moved,), y, rows, cols, int(log))
    return cp.ascontiguousarray(cp.moveaxis(y, -1, axis)) if axis != x.ndim - 1 else y


def _backward(y, dy, axis: int, log: bool, fn_name: str):
    cp = _cupy()
    _check_float32(fn_name, y=y, dy=dy)
    if tuple(y.shape) != tuple(dy.shape):
        raise ValueError(f"{fn_name}: y and dy must have the same shape, got {tuple(y.shape)} "
                         f"and {tuple(dy.shape)}")
    if y.ndim == 0:
        raise ValueError(f"{fn_name}: y must have at least 1 dimension, got a scalar")
    axis = _axis(axis, y.ndim, fn_name)
    y_rows, rows, cols = _rows_view(cp, y, axis)
    dy_rows, _, _ = _rows_view(cp, dy, axis)
    dx = cp.empty_like(y_rows)
    if dx.size:
        _launch_rows("backward", (y_rows, dy_rows), dx, rows, cols, int(log))
    return cp.ascontiguousarray(cp.moveaxis(dx, -1, axis)) if axis != y.ndim - 1 else dx


def softmax(x, axis: int = -1):
    """``exp(x - max) / sum(exp(x - max))`` along ``axis`` of a float32 CuPy array."""
    return _forward(x, axis, False, "softmax")


def log_softmax(x, axis: int = -1):
    """``x - max - log(sum(exp(x - max)))`` along ``axis``: the log-probabilities cross-entropy needs."""
    return _forward(x, axis, True, "log_softmax")


def softmax_backward(y, dy, axis: int = -1):
    """Gradient at x of ``y = softmax(x)``, given y and the gradient dy at y: ``y * (dy - sum(dy * y))``."""
    return _backward(y, dy, axis, False, "softmax_backward")


def log_softmax_backward(y, dy, axis: int = -1):
    """Gradient at x of ``y = log_softmax(x)``, given y and dy: ``dy - exp(y) * sum(dy)``."""
    return _backward(y, dy, axis, True, "log_softmax_backward")
