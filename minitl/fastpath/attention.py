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

Multi-head self-attention (`minitl.nn.MultiheadAttention` with query, key and value one
tensor) takes `PackedSelfAttention` instead: the same attention read from the packed
in-projection x [W_q; W_k; W_v]^T + b through strided views, so that the projection is one
matrix product (and one for each gradient) instead of three, and splitting and merging the
heads copies nothing (PyTorch's self-attention packs it the same way).

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
from ..tensor import Function, Tensor, unbroadcast

SLICE_ELEMENTS = 1 << 18  # scores in one slice: 1 MB of float32 (why not less: see layer_norm.ROWS)


def _swap_last(x):
    return x.swapaxes(-1, -2)


def fused_attention(query, key, value, bias, blocked, scale, dropout_p):
    """softmax(query key^T * scale + bias) value, with the rows in `blocked` zero (see
    `minitl.ops.attention.attention_bias` for bias and blocked)."""
    options = dict(scale=scale, dropout_p=dropout_p, blocked=blocked)
    if bias is None:
        return FusedAttention.apply(query, key, value, **options)
    return FusedAttention.apply(query, key, value, bias, **options)


def packed_self_attention(qkv, num_heads, attn_mask, dropout_p):
    """Multi-head self-attention from the packed projection qkv (N, L, 3E) (the Tensor
    x [W_q; W_k; W_v]^T + b) to the heads' outputs side by side (N, L, E), before the output
    projection; attn_mask as `minitl.ops.attention.attention` takes it."""
    from ..ops.attention import attention_bias  # (that module imports this one)

    heads = _heads(qkv.data, num_heads, groups=3)[0]
    like = Tensor._wrap(heads)  # the shape, dtype and array module the mask is checked against
    bias, blocked = attention_bias(attn_mask, False, like, like)
    options = dict(num_heads=num_heads, scale=1.0 / math.sqrt(heads.shape[-1]), dropout_p=dropout_p, blocked=blocked)
    if bias is None:
        return PackedSelfAttention.apply(qkv, **options)
    return PackedSelfAttention.apply(qkv, bias, **options)


class FusedAttention(Function):
    """out = dropout(softmax(q k^T * scale + bias)) v; bias is optional (a 4th input)."""

    @staticmethod
    def forward(ctx, q, k, v, bias=None, scale=1.0, dropout_p=0.0, blocked=None):
        xp = xp_of(q)
        shapes = [x.shape for x in (q, k, v)] + [None if bias is None else bias.shape]
        ndim = max(3, q.ndim, k.ndim, v.ndim)
        q, k, v, bias, blocked = (_aligned(x, ndim) for x in (q, k, v, bias, blocked))
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        out = xp.empty(batch + (q.shape[-2], v.shape[-1]), dtype=q.dtype)
        _attend(ctx, q, k, v, bias, blocked, q.dtype.type(scale), dropout_p, out)
        ctx.shapes = shapes
        return out.reshape(np.broadcast_shapes(*(shape[:-2] for shape in shapes[:3])) + out.shape[-2:])

    @staticmethod
    def backward(ctx, grad):
        q, k, v, weights = ctx.saved_tensors[:4]
        grads = [_gradient_buffer(xp_of(q), x.shape, weights.shape[0], q.dtype) if need else None
                 for x, need in zip((q, k, v), ctx.needs_input_grad)]
        grad_bias = _chain_rule(ctx, grad.reshape(weights.shape[:-2] + grad.shape[-2:]), grads)
        grads = [None if g is None else g.reshape(shape) for g, shape in zip(grads + [grad_bias], ctx.shapes)]
        return tuple(grads if ctx.aligned_bias_shape is not None else grads[:3])


class PackedSelfAttention(Function):
    """Multi-head self-attention from the packed in-projection qkv = x [W_q; W_k; W_v]^T + b,
    (N, L, 3E), to the heads' outputs side by side, (N, L, E); bias is optional (a 2nd input).

    The same attention as FusedAttention, read and written through strided views: the heads'
    q, k and v are views of qkv, each head's output goes straight to its columns of the
    result, and backward writes dq, dk and dv into one gradient of qkv. So the in-projection
    is one product with the (3E, E) weight (one for dW, one for dx in backward) instead of
    three, and splitting and merging the heads copies nothing.
    """

    @staticmethod
    def forward(ctx, qkv, bias=None, num_heads=1, scale=1.0, dropout_p=0.0, blocked=None):
        batch, length, width = qkv.shape
        out = xp_of(qkv).empty((batch, length, width // 3), dtype=qkv.dtype)
        q, k, v = _heads(qkv, num_heads, groups=3)
        bias, blocked = _aligned(bias, 4), _aligned(blocked, 4)
        _attend(ctx, q, k, v, bias, blocked, qkv.dtype.type(scale), dropout_p, _heads(out, num_heads)[0])
        ctx.qkv_shape, ctx.num_heads = qkv.shape, num_heads
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_qkv = xp_of(grad).empty(ctx.qkv_shape, dtype=grad.dtype)  # every slice writes its rows of q, k and v
        grad_bias = _chain_rule(ctx, _heads(grad, ctx.num_heads)[0], _heads(grad_qkv, ctx.num_heads, groups=3))
        return (grad_qkv, grad_bias) if ctx.aligned_bias_shape is not None else grad_qkv


def _heads(packed, num_heads, groups=1):
    """Views (N, H, L, d) of the `groups` column groups of `packed`, (N, L, groups * H * d):
    q, k and v of a packed projection (groups=3), or the heads of one output (groups=1)."""
    batch, length, width = packed.shape
    split = packed.reshape(batch, length, groups, num_heads, width // (groups * num_heads))
    return [split[:, :, g].swapaxes(1, 2) for g in range(groups)]


def _attend(ctx, q, k, v, bias, blocked, scale, dropout_p, out):
    """out[...] = dropout(softmax(q k^T * scale + bias)) v, slice by slice of the batch axis
    (q, k, v, bias and blocked aligned to out's number of axes); keeps in ctx what backward needs."""
    xp = xp_of(q)
    weights = xp.empty(out.shape[:-2] + (q.shape[-2], k.shape[-2]), dtype=q.dtype)
    keep_scaled = _dropout_mask(weights, dropout_p)
    on_kernels = backend.gpu_kernels_apply(q)

    def attend(part):  # one slice of the batch: its own rows of weights and out
        scores = backend.matmul(_part(q, part), _transposed_copy(_part(k, part)))
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
    ctx.scale, ctx.on_kernels = scale, on_kernels
    ctx.aligned_bias_shape = None if bias is None else bias.shape


def _transposed_copy(x):
    """x^T as a contiguous (..., d, S) array, for k^T and v^T: OpenBLAS multiplies an (L, d)
    matrix by it faster than by the transposed view of x (whose rows are strided inside the
    packed projection), copy included (26 x 4 heads of 50 x 32: q k^T 174 + 55 us against
    296 us; dO v^T 151 + 50 us against 257 us)."""
    return xp_of(x).ascontiguousarray(_swap_last(x))


def _chain_rule(ctx, grad, grads):
    """Backward of `_attend`: dq, dk, dv into grads (arrays from `_gradient_buffer`, or None
    where not needed), slice by slice; returns dbias (None without a bias or when not needed)."""
    q, k, v, weights, keep_scaled = ctx.saved_tensors
    scale = ctx.scale
    batch = weights.shape[0]
    needs_bias = ctx.aligned_bias_shape is not None and ctx.needs_input_grad[-1]
    grad_bias = xp_of(q).zeros(ctx.aligned_bias_shape, dtype=q.dtype) if needs_bias else None

    def chain_rule(part):  # one slice of the batch, into its rows of the gradients
        g, w = grad[part], weights[part]
        d_weights = backend.matmul(g, _transposed_copy(_part(v, part)))
        dropped = w
        if keep_scaled is not None:
            d_weights *= keep_scaled[part]
            dropped = w * keep_scaled[part]
        if grads[2] is not None:
            _put_part(grads[2], part, backend.matmul(_swap_last(dropped), g), batch)
        d_scores = _softmax_backward(w, d_weights, ctx.on_kernels)
        if grad_bias is not None:
            _add_part(grad_bias, part, d_scores)
        d_scores *= scale  # once here, not on dQ and dK
        if grads[0] is not None:
            _put_part(grads[0], part, backend.matmul(d_scores, _part(k, part)), batch)
        if grads[1] is not None:
            _put_part(grads[1], part, backend.matmul(_swap_last(d_scores), _part(q, part)), batch)

    # slices may run at once only if each writes its own rows: no gradient summed over a
    # broadcast batch axis (a shared key, or a bias of one row for the whole batch)
    own_rows = all(x is None or x.shape[0] == batch for x in grads + [grad_bias])
    _for_each_slice(_slices(weights, ctx.on_kernels), chain_rule, threads=own_rows and not ctx.on_kernels)
    return grad_bias


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


def _gradient_buffer(xp, shape, batch, dtype):
    """The array a gradient is gathered in: left uninitialised where each slice writes its own
    rows of it (`_put_part`), zeros where the slices add into it (a broadcast batch axis)."""
    return xp.empty(shape, dtype=dtype) if shape[0] == batch else xp.zeros(shape, dtype=dtype)


def _put_part(total, part, value, batch):
    """A slice's gradient into its rows of `total` (see `_gradient_buffer`), summed over the
    axes `total` broadcasts."""
    if total.shape[0] == batch:
        total[part] = unbroadcast(value, total[part].shape)
    else:
        _add_part(total, part, value)


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


# A row whose exponentials sum to less than this, shifted by the slice's max, is too far below
# that max: its largest terms may have underflowed. Above it, a row's largest term is at least
# SHIFT_TINY / S, and whatever underflowed was below 2^-126 / (SHIFT_TINY / S), far below the
# row's float32 precision.
SHIFT_TINY = 2.0 ** -60


def _softmax(scores, out, on_kernels):
    """out = softmax(scores) over the last axis; scores is scratch.

    Any shift c gives the same softmax, exp(s - c) / sum exp(s - c), as long as the exponentials
    neither overflow nor underflow. The usual c is each row's max, but NumPy's max over short
    rows is slow (200 us of a 600 us softmax of 2^18 scores in rows of 50), and so is a
    subtraction broadcast along rows. Here one c serves the whole slice, its max, and only a
    slice with a row that lies far below it (checked on the row sums) is redone row by row.
    (exp(s - c) errs by about ulp(|s - c|), relatively: in float32 a few 1e-7 more for a far c,
    the order of the rounding already in the scores q k^T.)"""
    if on_kernels:
        out[...] = backend.softmax(scores, axis=-1)
        return
    ones = np.ones((out.shape[-1], 1), dtype=out.dtype)
    np.subtract(scores, scores.max(), out=out)
    np.exp(out, out=out)
    sums = out @ ones  # the row sums: BLAS beats sum() on short rows
    if not (sums >= SHIFT_TINY).all():  # NaN, too: -inf or inf among the scores
        np.subtract(scores, scores.max(axis=-1, keepdims=True), out=out)
        np.exp(out, out=out)
        sums = out @ ones
    out *= 1 / sums  # a multiply broadcast along rows is faster than a divide


def _softmax_backward(w, d_weights, on_kernels):
    """w * (d_weights - sum_j(d_weights * w)), in d_weights where it can."""
    if on_kernels:
        return backend.softmax_backward(w, d_weights, axis=-1)
    xp = xp_of(w)
    d_weights -= xp.einsum("...j,...j->...", d_weights, w)[..., None]
    d_weights *= w
    return d_weights
