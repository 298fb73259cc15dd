"""The ops networks are made of: softmax and log-softmax (numerically stable), L_p
normalisation, cross-entropy (integer targets, ignore_index, label smoothing), embedding
lookup, dropout and layer norm.

Each has a hand-derived backward instead of being composed from smaller ops: fewer graph
nodes, fewer temporaries, and the stable forms' gradients are simple closed expressions.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..backend import xp_of
from ..random import get_rng
from ..tensor import Function


def stable_log_softmax(a, axis):
    """log softmax(a) = a - max - log(sum(exp(a - max))): exp never sees a large argument."""
    return backend.log_softmax(a, axis)


class Softmax(Function):
    @staticmethod
    def forward(ctx, a, axis=-1):
        out = backend.softmax(a, axis)  # exp(a - max) / sum(exp(a - max)), or the GPU kernel
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        if backend.gpu_kernels_apply(out, grad):  # float32 on a GPU: the CUDA kernel of this formula
            return backend.softmax_backward(out, grad, ctx.axis)
        # BEGIN EXERCISE autograd.softmax_backward
        # hint: the Jacobian of softmax is diag(y) - y y^T, so dx = y * (dy - sum(dy * y)) with the sum over the softmax axis (keepdims)
        return out * (grad - (grad * out).sum(axis=ctx.axis, keepdims=True))
        # END EXERCISE


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, a, axis=-1):
        out = stable_log_softmax(a, axis)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return backend.log_softmax_backward(out, grad, ctx.axis)


class Normalize(Function):
    """y = x / max(||x||_p, eps) along `axis` (F.normalize): unit vectors, e.g. for cosine
    similarity. With d = max(||x||_p, eps) and d||x||_p/dx = sign(x) |x|^(p-1) / ||x||_p^(p-1):

        dx = g / d - sum(g * x) / d^2 * d||x||_p/dx      (the second term only where ||x||_p > eps)

    which for p = 2 is dx = (g - y * sum(g * y)) / d: the gradient loses its component along y.
    """

    @staticmethod
    def forward(ctx, x, p=2.0, axis=1, eps=1e-12):
        xp = xp_of(x)
        norm = (xp.abs(x) ** p).sum(axis=axis, keepdims=True) ** (1 / p)
        denom = xp.maximum(norm, eps)
        ctx.save_for_backward(x, norm, denom)
        ctx.p, ctx.axis, ctx.eps = p, axis, eps
        return x / denom

    @staticmethod
    def backward(ctx, grad):
        x, norm, denom = ctx.saved_tensors
        xp, p = xp_of(x), ctx.p
        above_eps = norm > ctx.eps
        d_norm = xp.sign(x) * xp.abs(x) ** (p - 1) / xp.where(above_eps, norm, 1) ** (p - 1)
        dot = (grad * x).sum(axis=ctx.axis, keepdims=True)
        return grad / denom - (dot / (denom * denom)) * (d_norm * above_eps)


class CrossEntropy(Function):
    """Mean (or sum, or per-row) negative log-likelihood of integer targets under softmax(logits).

    logits: (N, C); target: (N,) integers in [0, C) or `ignore_index`.
    With label smoothing eps, the target distribution is (1 - eps) one_hot + eps / C.
    """

    @staticmethod
    def forward(ctx, logits, target, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
        xp = xp_of(logits)
        n, num_classes = logits.shape
        valid = target != ignore_index
        safe_target = xp.where(valid, target, 0)
        if bool(((safe_target < 0) | (safe_target >= num_classes)).any()):
            bad = target[valid & ((target < 0) | (target >= num_classes))][:5]
            raise IndexError(f"cross_entropy: targets must lie in [0, {num_classes}) or equal "
                             f"ignore_index={ignore_index}; found {bad.tolist()}")
        # BEGIN EXERCISE autograd.cross_entropy_forward
        # hint: logp = stable_log_softmax(logits, axis=1); loss_n = -(1 - eps) logp[n, y_n] - eps mean_c logp[n, c], 0 on ignored rows; 'mean' divides the sum by the rows kept
        logp = stable_log_softmax(logits, axis=1)
        rows = xp.arange(n)
        losses = -logp[rows, safe_target]
        if label_smoothing:
            losses = (1 - label_smoothing) * losses - label_smoothing * logp.mean(axis=1)
        losses = losses * valid
        count = int(valid.sum())  # a Python int keeps float32 arithmetic in float32
        if reduction == "mean":
            out = losses.sum() / count
        elif reduction == "sum":
            out = losses.sum()
        elif reduction == "none":
            out = losses
        else:
            raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        # END EXERCISE
        ctx.save_for_backward(logp, safe_target, valid)
        ctx.label_smoothing, ctx.reduction, ctx.count = label_smoothing, reduction, count
        return out

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.cross_entropy_backward
        # hint: dlogits_n = grad_n (softmax(logits_n) - q_n) with q_n = (1 - eps) onehot(y_n) + eps / C; grad_n = grad / count for 'mean'; 0 on ignored rows
        logp, target, valid = ctx.saved_tensors
        xp = xp_of(logp)
        n, num_classes = logp.shape
        eps = ctx.label_smoothing
        dlogits = xp.exp(logp)
        dlogits[xp.arange(n), target] -= 1 - eps
        if eps:
            dlogits -= eps / num_classes
        if ctx.reduction == "none":
            scale = grad * valid
        elif ctx.reduction == "mean":
            scale = valid * (grad / ctx.count)
        else:
            scale = valid * grad
        return dlogits * scale.astype(dlogits.dtype)[:, None]
        # END EXERCISE


class Embedding(Function):
    """Row lookup weight[indices]; the gradient is scattered back into the rows used."""

    @staticmethod
    def forward(ctx, weight, indices, padding_idx=None):
        if indices.dtype.kind not in "iu":
            raise TypeError(f"embedding: indices must be integers, got {indices.dtype}")
        num = weight.shape[0]
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= num):
            raise IndexError(f"embedding: indices must lie in [0, {num}); found values from "
                             f"{int(indices.min())} to {int(indices.max())}")
        ctx.save_for_backward(indices)
        ctx.weight_shape, ctx.padding_idx = weight.shape, padding_idx
        return weight[indices]

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        xp = xp_of(grad)
        out = xp.zeros(ctx.weight_shape, dtype=grad.dtype)
        backend.scatter_add(out, indices.reshape(-1), grad.reshape(-1, ctx.weight_shape[1]))
        if ctx.padding_idx is not None:
            out[ctx.padding_idx] = 0
        return out


class Dropout(Function):
    """Inverted dropout: zero each element with probability p and scale the survivors by
    1/(1-p), so nothing needs rescaling at evaluation time."""

    @staticmethod
    def forward(ctx, a, p):
        keep = 1.0 - p
        mask = get_rng().random(a.shape, dtype=np.float32) < keep
        if xp_of(a) is not np:
            mask = xp_of(a).asarray(mask)
        scaled_mask = mask * a.dtype.type(1.0 / keep)
        ctx.save_for_backward(scaled_mask)
        return a * scaled_mask

    @staticmethod
    def backward(ctx, grad):
        (scaled_mask,) = ctx.saved_tensors
        return grad * scaled_mask


class LayerNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last `ndim` axes."""

    @staticmethod
    def forward(ctx, x, weight, bias, ndim=1, eps=1e-5):
        axes = tuple(range(x.ndim - ndim, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=axes, keepdims=True)
        rstd = 1.0 / xp_of(x).sqrt(var + eps)
        xhat = centered * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        ctx.axes = axes
        return xhat * weight + bias

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE nn.layer_norm_backward
        # hint: g = grad * weight; dx = rstd (g - mean(g) - xhat mean(g xhat)), means over the normalized axes; dweight = sum(grad xhat), dbias = sum(grad), sums over the batch axes
        xhat, rstd, weight = ctx.saved_tensors
        axes = ctx.axes
        batch_axes = tuple(range(xhat.ndim - len(axes)))
        g = grad * weight
        grad_x = rstd * (g - g.mean(axis=axes, keepdims=True)
                         - xhat * (g * xhat).mean(axis=axes, keepdims=True))
        grad_w = (grad * xhat).sum(axis=batch_axes)
        grad_b = grad.sum(axis=batch_axes)
        return grad_x, grad_w, grad_b
        # END EXERCISE
