"""The fast layer norm: `minitl.ops.nn_ops.LayerNorm`'s math over the last axis, in slices of
rows that stay in cache, with fewer passes and temporaries.

    xhat = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps),  y = xhat * weight + bias
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * weight
    dweight = sum over rows of dy * xhat,  dbias = sum over rows of dy

The reference makes a new array for every step of these lines over the whole input; here each
slice of ROWS rows goes through all of them while it is in cache, the row sums of products
(var, mean(g * xhat), dweight) are `einsum`s that make no product array, and the rest is done
in place. Rows are independent, so the slices run on all of minitl's threads (`parallel`);
dweight adds the slices' sums in a fixed order, so it does not depend on the thread count.
Normalising over more than the last axis takes the reference.
"""
from __future__ import annotations

import numpy as np

from . import parallel
from ..tensor import Function

ROWS = 512  # rows of a slice: 512 x 128 float32 is 256 KB


def handles(x, ndim):
    """True for what this version covers: one normalised axis of a NumPy array."""
    return ndim == 1 and type(x) is np.ndarray


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        width = x.shape[-1]
        rows = np.ascontiguousarray(x).reshape(-1, width)
        xhat = np.empty_like(rows)
        out = np.empty_like(rows)
        rstd = np.empty((len(rows), 1), dtype=x.dtype)

        def normalise(start, stop):
            part = slice(start, stop)
            xh = xhat[part]
            np.subtract(rows[part], rows[part].mean(axis=1, keepdims=True), out=xh)
            var = np.einsum("ij,ij->i", xh, xh)[:, None] / x.dtype.type(width)
            np.sqrt(var + x.dtype.type(eps), out=rstd[part])
            np.divide(1, rstd[part], out=rstd[part])
            xh *= rstd[part]
            np.multiply(xh, weight, out=out[part])
            out[part] += bias

        parallel.parallel_for(len(rows), normalise, width, block_elements=ROWS * width)
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.x_shape = x.shape
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        xhat, rstd, weight = ctx.saved_tensors
        width = xhat.shape[1]
        dy = np.ascontiguousarray(grad).reshape(-1, width)
        dx = np.empty_like(xhat)

        def input_grad(start, stop):
            part = slice(start, stop)
            g, xh = dx[part], xhat[part]
            np.multiply(dy[part], weight, out=g)
            mean_g = g.mean(axis=1, keepdims=True)
            mean_gx = np.einsum("ij,ij->i", g, xh)[:, None] / xhat.dtype.type(width)
            g -= mean_g
            g -= xh * mean_gx
            g *= rstd[part]

        parallel.parallel_for(len(dy), input_grad, width, block_elements=ROWS * width)
        grad_w = parallel.column_dots(dy, xhat)
        grad_b = dy.sum(axis=0)
        return dx.reshape(ctx.x_shape), grad_w, grad_b
