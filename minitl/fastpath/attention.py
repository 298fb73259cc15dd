"""The fused attention: `minitl.ops.attention`'s softmax(q k^T * scale + bias) v as one graph
node with a hand-written backward, run over slices of the batch that stay in cache.

The reference composes seven ops (transpose, matmul, scale, add the mask, softmax, dropout,
matmul); each makes a new (..., L, S) array of scores or weights, and several keep theirs for
backward. Here the batch is cut into slices along its first axis, a slice's scores (about
SLICE_ELEMENTS numbers) are scaled, masked and softmaxed in place while in cache, and only the
weights P (and the dropout mask) are kept. Backward is the chain rule written out once, slice by
slice too:

    dV = P'^T dO          dP' = dO V^T          dP = dP' * dropout_mask     (P' = P * dropout_mask)
    dS = P * (dP - sum_j(dP * P))               (softmax's Jacobian)
    dQ = scale dS K       dK = scale dS^T Q     dbias = dS summed to the bias's shape

The slices run side by side on minitl's threads (`parallel`), each writing its own rows; a
backward whose gradient sums over a broadcast batch axis (one key for the whole batch, say)
runs its slices in turn.

Where the project's GPU kernels take the arrays (float32 CuPy), the softmax and its backward
are `minitl.backend`'s, which run the kernels, over the whole batch at once. The dropout mask
is drawn exactly as `minitl.ops.nn_ops.Dropout` draws it, so one seed gives both versions the
same mask.
"""
from __future__ import annotations

import math

import numpy as np

from . import parallel
from .. import backend
from ..backend import xp_of
from ..random import get_rng
from ..tensor import Function, unbroadcast

SLICE_ELEMENTS = 65536  # scores in one slice: 256 KB of float32


def _swap_last(x):
    return x.swapaxes(-1, -2)


def fused_attention(query, key, value, bias, blocked, scale, dropout_p):
    """softmax(query key^T * scale + bias) value, with the rows in `blocked` zero (see
    `minitl.ops.attention.attention_bias` for bias and blocked)."""
    options = dict(scale=scale, dropout_p=dropout_p, blocked=blocked)
    if bias is None:
        return FusedAttention.apply(query, key, value, **options)
    return FusedAttention.apply(query, key, value, bias, **options)


class FusedAttention(Function):
    """out = dropout(softmax(q k^T * scale + bias)) v; bias is optional (a 4th input)."""

    @staticmethod
    def forward(ctx, q, k, v, bias=None, scale=1.0, dropout_p=0.0, blocked=None):
        xp = xp_of(q)
        shapes = [x.shape for x in (q, k, v)] + [None if bias is None else bias.shape]
        ndim = max(3, q.ndim, k.ndim, v.ndim)
        q, k, v, bias, blocked = (_aligned(x, ndim) for x in (q, k, v, bias, blocked))
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        weights = xp.empty(batch + (q.shape[-2], k.shape[-2]), dtype=q.dtype)
        out = xp.empty(batch + (q.shape[-2], v.shape[-1]), dtype=q.dtype)
        keep_scaled = _dropout_mask(weights, dropout_p)
        scale = q.dtype.type(scale)
        on_kernels = backend.gpu_kernels_apply(q)

        def attend(part):  # one slice of the batch: its own rows of weights and out
            scores = backend.matmul(_part(q, part), _swap_last(_part(k, part)))
            scores *= scale
            if bias is not None:
                scores += _part(bias, part)
            w = weights[part]
            _softmax(scores, w, on_kernels)
            if blocked is not None:
                w *= ~_part(blocked, part)
            dropped = w if keep_scaled is None else w * keep_scaled[part]
            out[part] = backend.matmul(dropped, _part(v, part))

        _for_each_slice(_slices(weights, on_kernels), attend, threads=not on_kernels)
        ctx.save_for_backward(q, k, v, weights, keep_scaled)
        ctx.scale, ctx.on_kernels, ctx.shapes = scale, on_kernels, shapes
        ctx.aligned_bias_shape = None if bias is None else bias.shape
        return out.reshape(np.broadcast_shapes(*(shape[:-2] for shape in shapes[:3])) + out.shape[-2:])

    @staticmethod
    def backward(ctx, grad):
        q, k, v, weights, keep_scaled = ctx.saved_tensors
        xp, scale = xp_of(q), ctx.scale
        needs = ctx.needs_input_grad
        has_bias = ctx.aligned_bias_shape is not None
        grad = grad.reshape(weights.shape[:-2] + grad.shape[-2:])
        grads = [xp.zeros(x.shape, dtype=q.dtype) if need else None for x, need in zip((q, k, v), needs)]
        grad_bias = xp.zeros(ctx.aligned_bias_shape, dtype=q.dtype) if has_bias and needs[3] else None
        def chain_rule(part):  # one slice of the batch, into its rows of the gradients
            g, w = grad[part], weights[part]
            d_weights = backend.matmul(g, _swap_last(_part(v, part)))
            dropped = w
            if keep_scaled is not None:
                d_weights *= keep_scaled[part]
                dropped = w * keep_scaled[part]
            if grads[2] is not None:
                _add_part(grads[2], part, backend.matmul(_swap_last(dropped), g))
            d_scores = _softmax_backward(w, d_weights, ctx.on_kernels)
            if grad_bias is not None:
                _add_part(grad_bias, part, d_scores)
            if grads[0] is not None:
                _add_part(grads[0], part, backend.matmul(d_scores, _part(k, part)) * scale)
            if grads[1] is not None:
                _add_part(grads[1], part, backend.matmul(_swap_last(d_scores), _part(q, part)) * scale)

        # slices may run at once only if each writes its own rows: no gradient summed over a
        # broadcast batch axis (a shared key, or a bias of one row for the whole batch)
        own_rows = all(x is None or x.shape[0] == weights.shape[0] for x in grads + [grad_bias])
        _for_each_slice(_slices(weights, ctx.on_kernels), chain_rule, threads=own_rows and not ctx.on_kernels)
        grads = [None if g is None else g.reshape(shape) for g, shape in zip(grads + [grad_bias], ctx.shapes)]
        return tuple(grads if has_bias else grads[:3])


def _aligned(x, ndim):
    """x with leading axes of length 1 up to `ndim` axes (a view); None stays None."""
    return None if x is None else x.reshape((1,) * (ndim - x.ndim) + x.shape)


def _slices(weights, whole):
    """Slices of the first (batch) axis whose scores hold about SLICE_ELEMENTS numbers; one
    slice of everything when `whole` (the GPU kernels take the whole batch at once)."""
    count = weights.shape[0]
    per_item = math.prod(weights.shape[1:])
    step = count if whole else max(1, SLICE_ELEMENTS // max(per_item, 1))
    return [slice(start, start + step) for start in range(0, count, step)]


def _for_each_slice(parts, body, threads):
    """body(part) for every slice; on minitl's threads (`parallel`) when `threads`: the slices'
    small products and softmaxes then run side by side, as PyTorch's batched kernels do."""
    def run(start, stop):
        for part in parts[start:stop]:
            body(part)

    # one slice per block; a slice stands for about SLICE_ELEMENTS scores of work
    parallel.parallel_for(len(parts), run, SLICE_ELEMENTS, enabled=threads, block_elements=SLICE_ELEMENTS)


def _part(x, part):
    """The rows of the slice, or all of x where its first axis is broadcast (length 1)."""
    return x if x.shape[0] == 1 else x[part]


def _add_part(total, part, value):
    """Add a slice's gradient into `total`, summing over the axes `total` broadcasts."""
    if total.shape[0] == 1:
        total += unbroadcast(value, total.shape)
    else:
        total[part] += unbroadcast(value, total[part].shape)


def _dropout_mask(weights, p):
    """keep / (1 - p) for each weight, drawn as ops.nn_ops.Dropout draws it; None for p = 0."""
    if p == 0.0:
        return None
    xp = xp_of(weights)
    if p == 1.0:  # everything dropped, no draw (as ops.dropout)
        return xp.zeros_like(weights)
    keep = 1.0 - p
    mask = get_rng().random(weights.shape, dtype=np.float32) < keep
    if xp is not np:
        mask = xp.asarray(mask)
    return mask * weights.dtype.type(1.0 / keep)


def _softmax(scores, out, on_kernels):
    """out = softmax(scores) over the last axis; scores is scratch."""
    if on_kernels:
        out[...] = backend.softmax(scores, axis=-1)
        return
    np.subtract(scores, scores.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)


def _softmax_backward(w, d_weights, on_kernels):
    """w * (d_weights - sum_j(d_weights * w)), in d_weights where it can."""
    if on_kernels:
        return backend.softmax_backward(w, d_weights, axis=-1)
    xp = xp_of(w)
    d_weights -= xp.einsum("...j,...j->...", d_weights, w)[..., None]
    d_weights *= w
    return d_weights
