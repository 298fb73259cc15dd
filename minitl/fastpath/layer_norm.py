"""The fast layer norm: `minitl.ops.nn_ops.LayerNorm`'s math over the last axis, in slices of
rows that stay in cache, with fewer passes and temporaries.

    xhat = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps),  y = xhat * weight + bias
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * weight
    dweight = sum over rows of dy * xhat,  dbias = sum over rows of dy

The reference makes a new array for every step of these lines over the whole input; here each
slice of ROWS rows goes through all of them while it is in cache, the row means are products
with a column of 1/width (BLAS, four times faster than NumPy's `mean` over short rows), the
row sums of products (var, mean(g * xhat), dweight) are `einsum`s that make no product array,
and the rest is done in place. Rows are independent, so the slices run on all of minitl's
threads (`parallel`); dweight and dbias add the slices' sums in a fixed order, so they do not
depend on the thread count. Normalising over more than the last axis takes the reference.
"""
from __future__ import annotations

import numpy as np

from . import parallel
from ..tensor import Function

# rows of a slice: 2048 x 128 float32 is 1 MB. Each NumPy call lets go of Python's lock and
# takes it back; with smaller slices two threads spend their time waiting for each other there
# (ViT-sized inputs on 2 threads: 512 rows 1.7 ms forward, 2048 rows 1.2 ms; benchmarks/RESULTS.md)
ROWS = 2048


def handles(x, ndim):
    """True for what this version covers: one normalised axis of a NumPy array."""
    return ndim == 1 and type(x) is np.ndarray


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis."""

    fresh_gradients = True  # dx, dweight and dbias are new arrays: the engine may sum into them

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
            np.subtract(rows[part], _row_means(rows[part]), out=xh)
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
        scratch = np.empty_like(xhat)  # xhat * mean(g * xhat), slice by slice
        sums_w, sums_b = {}, {}  # each slice's part of dweight and dbias, by its first row

        def input_grad(start, stop):
            part = slice(start, stop)
            g, xh = dx[part], xhat[part]
            sums_w[start] = np.einsum("ij,ij->j", dy[part], xh)  # while the slice is in cache
            sums_b[start] = dy[part].sum(axis=0)
            np.multiply(dy[part], weight, out=g)
            mean_g = _row_means(g)
            mean_gx = np.einsum("ij,ij->i", g, xh)[:, None] / xhat.dtype.type(width)
            g -= mean_g
            g -= np.multiply(xh, mean_gx, out=scratch[part])
            g *= rstd[part]

        parallel.parallel_for(len(dy), input_grad, width, block_elements=ROWS * width)
        return dx.reshape(ctx.x_shape), parallel.sum_in_block_order(sums_w), parallel.sum_in_block_order(sums_b)



def _row_means(rows):
    """The mean of each row, (n, 1): one matrix-vector product with a column of 1/width."""
    width = rows.shape[1]
    return (rows @ np.full((width, 1), 1 / width, dtype=rows.dtype))
