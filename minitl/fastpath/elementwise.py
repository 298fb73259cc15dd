"""The fast ReLU: `minitl.ops.elementwise.Relu`'s math with both passes split into row blocks
on all threads (`fastpath.parallel.rowwise`; NumPy releases the GIL inside its loops). The
results keep the input's memory layout, so NHWC memory after a fast conv stays NHWC."""
from __future__ import annotations

from ..backend import xp_of
from ..tensor import Function
from . import parallel


def relu_backward_rows(grad, relu_out, out):
    """out = grad where the ReLU's output is positive, else 0 (a row-block body)."""
    return xp_of(grad).multiply(grad, relu_out > 0, out=out)


class Relu(Function):
    """max(a, 0) on threads; backward passes the gradient where the output is positive."""

    @staticmethod
    def forward(ctx, a):
        xp = xp_of(a)
        out = parallel.rowwise(xp.maximum, xp.empty_like(a), a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return parallel.rowwise(relu_backward_rows, xp_of(grad).empty_like(out, dtype=grad.dtype), grad, out)
