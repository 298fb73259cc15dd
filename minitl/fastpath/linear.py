"""The fast linear layer: `minitl.ops.linalg.Linear` with another backward pass, which takes the
bias gradient, the column sums of g, as one matrix-vector product `ones @ g`: BLAS streams g
once, where NumPy's sum down axis 0 adds row after row (a (6400, 512) float32 g, as in the
ViT's MLP: 0.70 ms for `g.sum(axis=0)`, 0.34 ms for the product; benchmarks/RESULTS.md).
Proven equal to the reference in float64 by tests/test_fastpath.py.
"""
from __future__ import annotations

from .. import backend
from ..ops import linalg as reference
from ..tensor import Function
from .conv import column_sums


class Linear(Function):
    """y = x W^T + b with W of shape (out_features, in_features), the batch axes as rows."""

    fresh_gradients = True  # three new products, nothing kept: the engine may adopt them

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        # the reference's forward, which saves the rows and the weight: nothing there to speed up
        return reference.Linear.forward(ctx, x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        rows, weight = ctx.saved_tensors
        g = grad.reshape(-1, weight.shape[0])
        needs_x, needs_w = ctx.needs_input_grad[:2]
        grads = (backend.matmul(g, weight).reshape(ctx.x_shape) if needs_x else None,
                 backend.matmul(g.T, rows) if needs_w else None)
        if not ctx.has_bias:
            return grads
        return grads + (column_sums(g) if ctx.needs_input_grad[2] else None,)
