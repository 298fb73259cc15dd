"""The fast linear layer: `minitl.ops.linalg.Linear`'s y = x W^T + b, whose backward takes the
bias gradient, the column sums of g, as one matrix-vector product `ones @ g`: BLAS streams g
once, where NumPy's sum down axis 0 adds row after row (a (6400, 512) float32 g, as in the
ViT's MLP: 0.70 ms for `g.sum(axis=0)`, 0.34 ms for the product; benchmarks/RESULTS.md).
Proven equal to the reference in float64 by tests/test_fastpath.py.
"""
from __future__ import annotations

from .. import backend
from ..tensor import Function
from .conv import column_sums


class Linear(Function):
    """y = x W^T + b with W of shape (out_features, in_features), the batch axes as rows."""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(f"linear: input of shape {tuple(x.shape)} has {x.shape[-1]} features but the "
                             f"weight of shape {tuple(weight.shape)} expects {weight.shape[1]}")
        rows = x.reshape(-1, x.shape[-1])
        out = backend.matmul(rows, weight.T)
        if bias is not None:
            out += bias
        ctx.save_for_backward(rows, weight)
        ctx.x_shape = x.shape
        ctx.has_bias = bias is not None
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, grad):
        rows, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        g = grad.reshape(-1, weight.shape[0])
        grad_x = backend.matmul(g, weight).reshape(ctx.x_shape) if needs[0] else None
        grad_w = backend.matmul(g.T, rows) if needs[1] else None
        if not ctx.has_bias:
            return grad_x, grad_w
        return grad_x, grad_w, (column_sums(g) if needs[2] else None)
