"""The fused attention: `minitl.ops.attention`'s softmax(q k^T * scale + bias) v as one graph
node with a hand-written backward.

The reference composes six ops (transpose, matmul, scale, add the mask, softmax, dropout,
matmul), and each keeps its own copy of the (..., L, S) scores and sends its gradient through
`unbroadcast`. Here the scores are scaled and masked in place, only the weights (and the
dropout mask) are kept, and the backward is the chain rule written out once:

    dV = P'^T dO          dP' = dO V^T          dP = dP' * dropout_mask
    dS = P * (dP - sum_j(dP * P))               (softmax's Jacobian; the GPU kernel on CUDA)
    dQ = scale dS K       dK = scale dS^T Q     dbias = dS summed to the bias's shape

The softmax and its backward go through `minitl.backend` as the reference's do, so float32
CuPy arrays run on the project's softmax kernel, and the dropout mask is drawn exactly as
`minitl.ops.nn_ops.Dropout` draws it, so one seed gives both versions the same mask.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..backend import xp_of
from ..random import get_rng
from ..tensor import Function, unbroadcast


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
        scores = backend.matmul(q, _swap_last(k))
        scores *= scores.dtype.type(scale)
        if bias is not None:
            scores += bias
        weights = backend.softmax(scores, axis=-1)
        del scores
        if blocked is not None:
            weights *= ~blocked
        keep_scaled = None
        if dropout_p == 1.0:  # everything dropped: no draw, as ops.dropout
            keep_scaled = xp.zeros_like(weights)
            dropped = keep_scaled
        elif dropout_p > 0.0:
            keep = 1.0 - dropout_p
            mask = get_rng().random(weights.shape, dtype=np.float32) < keep  # as ops.nn_ops.Dropout
            if xp is not np:
                mask = xp.asarray(mask)
            keep_scaled = mask * weights.dtype.type(1.0 / keep)
            dropped = weights * keep_scaled
        else:
            dropped = weights
        ctx.save_for_backward(q, k, v, weights, dropped, keep_scaled)
        ctx.scale, ctx.has_bias = scale, bias is not None
        ctx.bias_shape = None if bias is None else bias.shape
        return backend.matmul(dropped, v)

    @staticmethod
    def backward(ctx, grad):
        q, k, v, weights, dropped, keep_scaled = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_v = unbroadcast(backend.matmul(_swap_last(dropped), grad), v.shape) if needs[2] else None
        d_weights = backend.matmul(grad, _swap_last(v))
        if keep_scaled is not None:
            d_weights *= keep_scaled
        d_scores = backend.softmax_backward(weights, d_weights, axis=-1)
        grad_bias = None
        if ctx.has_bias and needs[3]:
            grad_bias = unbroadcast(d_scores, ctx.bias_shape)
        scale = d_scores.dtype.type(ctx.scale)  # applied to dQ and dK, smaller than dS (which dbias may be)
        grad_q = unbroadcast(backend.matmul(d_scores, k) * scale, q.shape) if needs[0] else None
        grad_k = unbroadcast(backend.matmul(_swap_last(d_scores), q) * scale, k.shape) if needs[1] else None
        if ctx.has_bias:
            return grad_q, grad_k, grad_v, grad_bias
        return grad_q, grad_k, grad_v
