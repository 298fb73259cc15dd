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
prints it), and ``kernels.cu_files()`` lists the sources.  Lesson 12 walks through the
matmul ladder; ``python -m minitl.kernels.bench`` measures it against cuBLAS.
"""
from __future__ import annotations

import math

import numpy

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
_WARP_ROW_LIMIT = 1024      # softmax rows up to this length get a warp each (softmax.cu)


def _cupy():
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


def matmul(a, b, trans_a: bool = False, trans_b: bool = False, out=None, kernel: str = "warptile"):
    """``op(a) @ op(b)`` on the GPU with minitl's SGEMM kernel; op transposes the last two axes when asked.

    a, b: float32 CuPy arrays with at least 2 dimensions.  Leading (batch) dimensions
    broadcast as in ``numpy.matmul``.  ``trans_a=True`` multiplies by ``a``'s transpose
    (a is then stored ``k x m``) without making a transposed copy; likewise ``trans_b``.
    out: optional C-contiguous float32 array of the result's shape to write into; it
    must not overlap ``a`` or ``b``.  kernel: a rung of the ladder, one of
    ``MATMUL_KERNELS`` ("naive", "tiled", "blocktile", "warptile").
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

    a, trans_a = _row_major(cp, a, bool(trans_a))
    b, trans_b = _row_major(cp, b, bool(trans_b))
    a, stride_a = _batch_operand(cp, a, batch_shape)
    b, stride_b = _batch_operand(cp, b, batch_shape)
    tile_m, tile_n, block = MATMUL_KERNELS[kernel]
    grid = ((n + tile_n - 1) // tile_n, (m + tile_m - 1) // tile_m, min(batch, _MAX_GRID_YZ))
    if grid[1] > _MAX_GRID_YZ:
        raise ValueError(f"matmul: {m} rows need {grid[1]} row tiles with kernel {kernel!r}, "
                         f"more than one launch allows ({_MAX_GRID_YZ})")
    name = kernel
    if kernel == "warptile":  # one compiled variant per pair of flags, see matmul.cu
        name = "warptile_" + ("t" if trans_a else "n") + ("t" if trans_b else "n")
    fn = get_function("matmul", "sgemm_" + name)
    i32, i64 = _int_types()
    fn(grid, block, (a, b, out, i32(m), i32(n), i32(k),
                     i32(a.shape[-1]), i32(b.shape[-1]), i32(n),
                     i32(trans_a), i32(trans_b),
                     i64(stride_a), i64(stride_b), i64(m * n), i32(batch)))
    return out


def _int_types():
    # Kernel scalars must match the C parameter types exactly (int, long long), so they
    # are passed as NumPy scalars, never as Python ints.
    return numpy.int32, numpy.int64


def _rows_view(cp, x, axis: int):
    """x with `axis` moved last, C-contiguous, as (array, rows, cols)."""
    moved = cp.ascontiguousarray(cp.moveaxis(x, axis, -1))
    cols = moved.shape[-1] if moved.ndim else 1
    return moved, (moved.size // cols if cols else 0), cols


def _launch_rows(prefix: str, inputs, out, rows: int, cols: int, log_flag: int) -> None:
    i32, _ = _int_types()
    if cols <= _WARP_ROW_LIMIT:
        rows_per_block = 4  # 128 threads, one warp per row
        fn = get_function("softmax", prefix + "_warp")
        grid, block = ((rows + rows_per_block - 1) // rows_per_block,), (32 * rows_per_block,)
    else:
        fn = get_function("softmax", prefix + "_block")
        grid, block = (rows,), (256,)
    fn(grid, block, (*inputs, out, i32(rows), i32(cols), i32(log_flag)))


def _forward(x, axis: int, log: bool, fn_name: str):
    cp = _cupy()
    _check_float32(fn_name, x=x)
    if x.ndim == 0:
        raise ValueError(f"{fn_name}: x must have at least 1 dimension, got a scalar")
    axis = axis % x.ndim
    moved, rows, cols = _rows_view(cp, x, axis)
    y = cp.empty_like(moved)
    if y.size:
        _launch_rows("softmax_forward", (moved,), y, rows, cols, int(log))
    return cp.ascontiguousarray(cp.moveaxis(y, -1, axis)) if axis != x.ndim - 1 else y


def _backward(y, dy, axis: int, log: bool, fn_name: str):
    cp = _cupy()
    _check_float32(fn_name, y=y, dy=dy)
    if tuple(y.shape) != tuple(dy.shape):
        raise ValueError(f"{fn_name}: y and dy must have the same shape, got {tuple(y.shape)} "
                         f"and {tuple(dy.shape)}")
    if y.ndim == 0:
        raise ValueError(f"{fn_name}: y must have at least 1 dimension, got a scalar")
    axis = axis % y.ndim
    y_rows, rows, cols = _rows_view(cp, y, axis)
    dy_rows, _, _ = _rows_view(cp, dy, axis)
    dx = cp.empty_like(y_rows)
    if dx.size:
        _launch_rows("softmax_backward", (y_rows, dy_rows), dx, rows, cols, int(log))
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
