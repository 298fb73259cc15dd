"""The fast linear layer: `minitl.ops.linalg.Linear` with two changes, proven equal to it in
float64 by tests/test_fastpath.py.

* Column-major batches. For a 2-D NumPy input whose layer is at least as wide as the batch is
  long (or whose input is column-major already), forward computes W x^T, (out_features, batch)
  in memory, and returns its transpose, a column-major view of y: OpenBLAS multiplies in that
  orientation faster (a batch of 128 by W of 512 x 784: 372 against 441 us; 512 x 512: 256
  against 298 us). The element-wise ops after it keep the layout, so the next layer's input is
  column-major too and the whole MLP runs so, as a CNN runs NHWC after the fast conv; backward
  returns dx in x's own layout, so that it meets the saved arrays of the ops before it in theirs.
  Long batches (a ViT's 6400 rows) keep the reference's orientation, which is faster there.
* The bias gradient, the column sums of g, as one matrix-vector product `ones @ g`: BLAS
  streams g once, where NumPy's sum down axis 0 adds row after row (a (6400, 512) float32 g,
  as in the ViT's MLP: 0.70 ms for `g.sum(axis=0)`, 0.34 ms for the product).

benchmarks/RESULTS.md has the measurements.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..ops import linalg as reference
from ..tensor import Function
from .conv import column_sums


def _is_column_major(a):
    """True for a 2-D array laid out column by column (and not also row by row)."""
    return a.T.flags.c_contiguous and not a.flags.c_contiguous


def column_major(x, out_features):
    """True where forward computes (W x^T)^T: a 2-D NumPy x that is column-major already, or
    whose batch is no longer than the layer is wide."""
    if type(x) is not np.ndarray or x.ndim != 2:
        return False
    return _is_column_major(x) or out_features >= x.shape[0]


class Linear(Function):
    """y = x W^T + b with W of shape (out_features, in_features), the batch axes as rows."""

    fresh_gradients = True  # three new products, nothing kept: the engine may adopt them

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.column_major = column_major(x, weight.shape[0])
        if not ctx.column_major:
            return reference.Linear.forward(ctx, x, weight, bias)
        reference.check_linear_input(x, weight)
        out = backend.matmul(weight, x.T).T  # (batch, out_features), column-major
        if bias is not None:
            out += bias
        ctx.save_for_backward(x, weight)
        ctx.x_shape = x.shape
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        rows, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.shape[0])
        needs_x, needs_w = ctx.needs_input_grad[:2]
        grad_x = None
        if needs_x:  # dx in x's layout, where it meets what the ops before this layer saved
            if ctx.column_major and _is_column_major(rows):
                grad_x = backend.matmul(weight.T, g.T).T
            else:
                grad_x = backend.matmul(g, weight).reshape(ctx.x_shape)
        grads = (grad_x, backend.matmul(g.T, rows) if needs_w else None)
        if not ctx.has_bias:
            return grads
        return grads + (column_sums(g) if ctx.needs_input_grad[2] else None,)
