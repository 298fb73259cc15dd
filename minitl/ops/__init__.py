"""The differentiable ops, as functions over tensors.

The `Function` classes live in the submodules (elementwise, reduce, shape, linalg, nn_ops);
these thin wrappers turn numbers into constants, fill in defaults, and compose the ops that
need no backward of their own (min, var, stack, squeeze, ...).
"""
from __future__ import annotations

import builtins

import numpy as np

from .. import fastpath
from ..backend import xp_of
from ..tensor import Tensor
from .elementwise import (Abs, Add, Cast, Clamp, Clone, Div, Exp, Gelu, Log, LogSigmoid, Maximum,
                          Mul, Neg, Pow, Relu, Sigmoid, Silu, Softplus, Sqrt, Sub, Tanh,
                          as_tensor_like, binary_operands)
from .linalg import Linear, MatMul
from .nn_ops import CrossEntropy, Dropout, Embedding, LayerNorm, LogSoftmax, Normalize, Softmax
from .reduce import Max, Mean, Sum, normalize_axes
from .shape import Concat, Expand, GetItem, Pad, Permute, Reshape, Where
from .conv import adaptive_avg_pool2d, avg_pool2d, batch_norm, conv2d, max_pool2d  # noqa: F401  (vision)


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


# --- arithmetic -------------------------------------------------------------------------------

def add(a, b):
    return Add.apply(*binary_operands(a, b))


def sub(a, b):
    return Sub.apply(*binary_operands(a, b))


def mul(a, b):
    return Mul.apply(*binary_operands(a, b))


def div(a, b):
    return Div.apply(*binary_operands(a, b))


def neg(a):
    return Neg.apply(a)


def pow(a, exponent):
    return Pow.apply(*binary_operands(a, exponent))


def matmul(a, b):
    return MatMul.apply(*binary_operands(a, b))


# --- pointwise functions ----------------------------------------------------------------------

def exp(a):
    return Exp.apply(_tensor(a))


def log(a):
    return Log.apply(_tensor(a))


def sqrt(a):
    return Sqrt.apply(_tensor(a))


def abs(a):
    return Abs.apply(_tensor(a))


def tanh(a):
    return Tanh.apply(_tensor(a))


def sigmoid(a):
    return Sigmoid.apply(_tensor(a))


def relu(a):
    return (fastpath.elementwise.Relu if fastpath.enabled() else Relu).apply(_tensor(a))


def gelu(a, approximate="none"):
    if approximate == "none" and fastpath.enabled():
        from ..fastpath import gelu as fast_gelu
        return fast_gelu.Gelu.apply(_tensor(a))
    return Gelu.apply(_tensor(a), approximate=approximate)


def softplus(a, beta=1.0, threshold=20.0):
    """log(1 + e^(beta x)) / beta, linear where beta x > threshold (PyTorch's F.softplus)."""
    return Softplus.apply(_tensor(a), beta=beta, threshold=threshold)


def logsigmoid(a):
    """log sigma(x) = -softplus(-x), without overflow for large |x|."""
    return LogSigmoid.apply(_tensor(a))


def silu(a):
    """x * sigma(x) (also called swish)."""
    return Silu.apply(_tensor(a))


def clamp(a, min=None, max=None):
    """Values limited to [min, max]; the gradient is 1 inside, bounds included (as in
    PyTorch), and 0 outside."""
    return Clamp.apply(_tensor(a), low=min, high=max)


def maximum(a, b):
    """Elementwise max with broadcasting; on a tie each input gets half the gradient."""
    return Maximum.apply(*binary_operands(a, b))


def minimum(a, b):
    """Elementwise min, as min(a, b) = -max(-a, -b) (ties share the gradient too)."""
    a, b = binary_operands(a, b)
    return neg(maximum(neg(a), neg(b)))


def cast(a, dtype):
    """`a` in another floating-point dtype, differentiably (what `.to(dtype)` runs)."""
    return Cast.apply(a, np.dtype(dtype))


def clone(a):
    """A copy of `a`'s data that stays in the graph."""
    return Clone.apply(_tensor(a))


# --- reductions -------------------------------------------------------------------------------

def sum(a, dim=None, keepdim=False):
    return Sum.apply(_tensor(a), axis=dim, keepdims=keepdim)


def mean(a, dim=None, keepdim=False):
    return Mean.apply(_tensor(a), axis=dim, keepdims=keepdim)


def max(a, dim=None, keepdim=False):
    """The largest value, over all elements or along `dim` (values only). Tied maxima share
    the gradient equally, over all elements as in PyTorch's `x.max()`, and also along a dim,
    as PyTorch's `x.amax(dim)` does; PyTorch's `x.max(dim)` returns (values, indices) instead
    and sends the whole gradient to the one index it returns."""
    return Max.apply(_tensor(a), axis=dim, keepdims=keepdim)


def min(a, dim=None, keepdim=False):
    """The smallest value, as -max(-a): tied minima share the gradient equally, as in `max`."""
    return neg(max(neg(a), dim, keepdim))


def var(a, dim=None, keepdim=False, unbiased=True):
    """Variance; `unbiased` divides by n - 1 (Bessel's correction), as PyTorch does by default."""
    a = _tensor(a)
    axes = normalize_axes(dim, a.ndim)
    count = 1
    for ax in axes:
        count *= a.shape[ax]
    centered = a - mean(a, axes, keepdim=True)
    total = sum(centered * centered, axes, keepdim)
    return total / (count - 1 if unbiased else count)


def logsumexp(a, dim=-1, keepdim=False):
    shift = Tensor._wrap(a.data.max(axis=dim, keepdims=True))
    out = log(sum(exp(a - shift), dim, keepdim=True)) + shift
    return out if keepdim else squeeze(out, dim)


# --- shapes -----------------------------------------------------------------------------------

def reshape(a, shape):
    return Reshape.apply(a, tuple(shape))


def flatten(a, start_dim=0, end_dim=-1):
    nd = a.ndim
    start, end = start_dim % nd, end_dim % nd
    shape = a.shape[:start] + (-1,) + a.shape[end + 1:]
    return reshape(a, shape)


def permute(a, dims):
    return Permute.apply(a, tuple(dims))


def transpose(a, dim0=-2, dim1=-1):
    dims = list(range(a.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return permute(a, dims)


def expand(a, shape):
    return Expand.apply(a, tuple(shape))


def squeeze(a, dim=None):
    if dim is None:
        shape = tuple(n for n in a.shape if n != 1)
    else:
        dims = normalize_axes(dim, a.ndim)
        for d in dims:
            if a.shape[d] != 1:
                raise ValueError(f"squeeze: dimension {d} of shape {a.shape} has size {a.shape[d]}, not 1")
        shape = tuple(n for i, n in enumerate(a.shape) if i not in dims)
    return reshape(a, shape)


def unsqueeze(a, dim):
    dim = dim % (a.ndim + 1)
    return reshape(a, a.shape[:dim] + (1,) + a.shape[dim:])


def getitem(a, index):
    return GetItem.apply(a, index)


def split(a, split_size_or_sections, dim=0):
    """`a` cut along `dim` into a tuple of pieces (torch.split): pieces of
    `split_size_or_sections` elements (the last one may be shorter), or of the sizes in a list,
    which must add up to the size of `dim`. Each piece is a slice, so its gradient flows back
    into its place."""
    dim = normalize_axes(dim, a.ndim)[0]
    n = a.shape[dim]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size < 0 or (size == 0 and n > 0):
            raise ValueError(f"split: split_size must be a positive integer, got {size}")
        if size == 0:  # only for an empty dimension, as in PyTorch
            sizes = [0]
        else:
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != n or builtins.min(sizes, default=0) < 0:
            raise ValueError(f"split: sizes {sizes} must be non-negative and add up to {n}, the size of "
                             f"dimension {dim} of shape {tuple(a.shape)}")
    starts = np.cumsum([0] + sizes[:-1])
    lead = (slice(None),) * dim
    return tuple(getitem(a, lead + (slice(int(start), int(start) + size),)) for start, size in zip(starts, sizes))


def chunk(a, chunks, dim=0):
    """`a` cut along `dim` into `chunks` pieces of ceil(n / chunks) elements (torch.chunk):
    the last one may be shorter, and there may be fewer than `chunks` pieces."""
    if not isinstance(chunks, int) or chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive integer, got {chunks!r}")
    n = a.shape[normalize_axes(dim, a.ndim)[0]]
    return split(a, -(-n // chunks), dim)


def cat(tensors, dim=0):
    return Concat.apply(*[_tensor(t) for t in tensors], axis=dim)


concatenate = cat


def stack(tensors, dim=0):
    tensors = [_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def pad(a, pad_width, value=0.0):
    """Constant padding. `pad_width` is NumPy's per-axis ((before, after), ...), or PyTorch's
    flat (left, right, top, bottom, ...) counted from the last axis."""
    if pad_width and not isinstance(pad_width[0], (tuple, list)):
        flat = list(pad_width)
        if len(flat) % 2:
            raise ValueError(f"pad: a flat padding needs pairs, got {len(flat)} numbers")
        pairs = [(0, 0)] * a.ndim
        for i in range(len(flat) // 2):
            pairs[a.ndim - 1 - i] = (flat[2 * i], flat[2 * i + 1])
        pad_width = pairs
    if len(pad_width) != a.ndim:
        raise ValueError(f"pad: {len(pad_width)} (before, after) pairs for a tensor with {a.ndim} dimensions")
    return Pad.apply(a, tuple(tuple(p) for p in pad_width), value=value)


def _condition_array(condition):
    cond = condition.data if isinstance(condition, Tensor) else condition
    xp = xp_of(cond)
    cond = xp.asarray(cond)
    if cond.dtype != bool:
        raise TypeError(f"the condition/mask must be a boolean tensor, got {cond.dtype}")
    return cond


def where(condition, a, b):
    cond = _condition_array(condition)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError("where: at least one of a and b must be a tensor")
    a, b = binary_operands(a, b)
    return Where.apply(a, b, cond)


def masked_fill(a, mask, value):
    """A copy of `a` with `value` wherever `mask` is True (e.g. -inf above an attention diagonal)."""
    cond = _condition_array(mask)
    return Where.apply(as_tensor_like(value, a), a, cond)


def tril(a, diagonal=0):
    """The lower triangle of the last two axes: element (i, j) kept where j <= i + diagonal,
    zero above (attention's causal mask)."""
    return _keep_triangle(a, diagonal, lower=True)


def triu(a, diagonal=0):
    """The upper triangle of the last two axes: element (i, j) kept where j >= i + diagonal."""
    return _keep_triangle(a, diagonal, lower=False)


def _keep_triangle(a, diagonal, lower):
    if a.ndim < 2:
        raise ValueError(f"{'tril' if lower else 'triu'}: needs at least 2 dimensions, got shape {tuple(a.shape)}")
    rows, cols = a.shape[-2:]
    tri = xp_of(a.data).tri  # tri(n, m, k)[i, j] = j <= i + k
    keep = tri(rows, cols, diagonal, dtype=bool) if lower else ~tri(rows, cols, diagonal - 1, dtype=bool)
    return Where.apply(a, as_tensor_like(0, a), keep)


# --- network ops -----------------------------------------------------------------------------

def softmax(a, dim=-1):
    return Softmax.apply(a, axis=dim)


def log_softmax(a, dim=-1):
    return LogSoftmax.apply(a, axis=dim)


def normalize(a, p=2.0, dim=1, eps=1e-12):
    """a / max(||a||_p, eps) along `dim` (PyTorch's F.normalize); p >= 1."""
    if not (1 <= p < float("inf")):
        raise ValueError(f"normalize: p must be a finite number >= 1 (an L_p norm), got {p}")
    return Normalize.apply(a, p=p, axis=dim, eps=eps)


def linear(x, weight, bias=None):
    op = fastpath.linear.Linear if fastpath.enabled() else Linear
    if bias is None:
        return op.apply(x, weight)
    return op.apply(x, weight, bias)


def embedding(indices, weight, padding_idx=None):
    idx = indices.data if isinstance(indices, Tensor) else xp_of(weight.data).asarray(indices)
    return Embedding.apply(weight, idx, padding_idx=padding_idx)


def dropout(a, p=0.5, training=True):
    """Inverted dropout while training; the identity otherwise. p = 1 drops everything (zeros)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return a
    if p == 1.0:
        return mul(a, 0.0)
    return Dropout.apply(a, p)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    if tuple(x.shape[-len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"layer_norm: input of shape {tuple(x.shape)} does not end in normalized_shape {normalized_shape}")
    xp = xp_of(x.data)
    if weight is None:
        weight = Tensor._wrap(xp.ones(normalized_shape, dtype=x.dtype))
    if bias is None:
        bias = Tensor._wrap(xp.zeros(normalized_shape, dtype=x.dtype))
    if fastpath.enabled():
        from ..fastpath import layer_norm as fast_layer_norm
        if fast_layer_norm.handles(x.data, len(normalized_shape)):
            return fast_layer_norm.LayerNorm.apply(x, weight, bias, eps=eps)
    return LayerNorm.apply(x, weight, bias, ndim=len(normalized_shape), eps=eps)


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Softmax cross-entropy of integer class targets. logits (N, C) with target (N,), or
    (N, C, d1, ...) with target (N, d1, ...) as in PyTorch."""
    target_arr = target.data if isinstance(target, Tensor) else xp_of(logits.data).asarray(target)
    if target_arr.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, got dtype {target_arr.dtype}")
    if logits.ndim > 2:
        # class axis 1 to the end, then one row per position
        dims = (0,) + tuple(range(2, logits.ndim)) + (1,)
        logits = reshape(permute(logits, dims), (-1, logits.shape[1]))
        target_arr = target_arr.reshape(-1)
    if logits.ndim != 2 or target_arr.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: logits of shape {tuple(logits.shape)} need targets of shape "
                         f"({logits.shape[0]},), got {tuple(target_arr.shape)}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must lie in [0, 1], got {label_smoothing}")
    return CrossEntropy.apply(logits, target_arr, ignore_index=ignore_index,
                              label_smoothing=label_smoothing, reduction=reduction)


def nll_loss(log_probs, target, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of already log-softmaxed inputs."""
    target_arr = target.data if isinstance(target, Tensor) else xp_of(log_probs.data).asarray(target)
    valid = target_arr != ignore_index
    safe = xp_of(target_arr).where(valid, target_arr, 0)
    picked = getitem(log_probs, (xp_of(safe).arange(len(safe)), safe))
    mask = Tensor._wrap(valid.astype(log_probs.dtype))
    losses = -picked * mask
    if reduction == "none":
        return losses
    if reduction == "sum":
        return sum(losses)
    return sum(losses) / int(valid.sum())


def mse_loss(input, target, reduction="mean"):
    diff = input - target
    sq = diff * diff
    if reduction == "none":
        return sq
    return sum(sq) if reduction == "sum" else mean(sq)


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """-[y log s(x) + (1-y) log(1-s(x))] = softplus(x) - x y, with s the sigmoid: the stable
    form, as softplus never overflows (no threshold here: the loss stays exact for large x)."""
    target = as_tensor_like(target, logits)
    losses = softplus(logits, threshold=float("inf")) - logits * target
    if reduction == "none":
        return losses
    return sum(losses) if reduction == "sum" else mean(losses)
