"""The differentiable ops, as functions over tensors.

The `Function` classes live in the submodules (elementwise, reduce, shape, linalg, nn_ops);
these thin wrappers turn numbers into constants, fill in defaults, and compose the ops that
need no backward of their own (min, var, stack, squeeze, ...).
"""
from __future__ import annotations

from .. import fastpath
from ..backend import xp_of
from ..tensor import Tensor
from .elementwise import (Abs, Add, Clamp, Div, Exp, Gelu, Log, Mul, Neg, Pow, Relu, Sigmoid,
                          Sqrt, Sub, Tanh, as_tensor_like, binary_operands)
from .linalg import Linear, MatMul
from .nn_ops import CrossEntropy, Dropout, Embedding, LayerNorm, LogSoftmax, Softmax
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
    return Gelu.apply(_tensor(a), approximate=approximate)


def clamp(a, min=None, max=None):
    return Clamp.apply(_tensor(a), low=min, high=max)


# --- reductions -------------------------------------------------------------------------------

def sum(a, dim=None, keepdim=False):
    return Sum.apply(_tensor(a), axis=dim, keepdims=keepdim)


def mean(a, dim=None, keepdim=False):
    return Mean.apply(_tensor(a), axis=dim, keepdims=keepdim)


def max(a, dim=None, keepdim=False):
    return Max.apply(_tensor(a), axis=dim, keepdims=keepdim)


def min(a, dim=None, keepdim=False):
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


# --- network ops -----------------------------------------------------------------------------

def softmax(a, dim=-1):
    return Softmax.apply(a, axis=dim)


def log_softmax(a, dim=-1):
    return LogSoftmax.apply(a, axis=dim)


def linear(x, weight, bias=None):
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)


def embedding(indices, weight, padding_idx=None):
    idx = indices.data if isinstance(indices, Tensor) else xp_of(weight.data).asarray(indices)
    return Embedding.apply(weight, idx, padding_idx=padding_idx)


def dropout(a, p=0.5, training=True):
    if not 0.0 <= p < 1.0:
        if p == 1.0:
            return mul(a, 0.0)
        raise ValueError(f"dropout probability must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return a
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
    """-[y log s(x) + (1-y) log(1-s(x))] in the stable form max(x,0) - x y + log(1 + e^-|x|)."""
    target = as_tensor_like(target, logits)
    losses = relu(logits) - logits * target + log(1 + exp(-abs(logits)))
    if reduction == "none":
        return losses
    return sum(losses) if reduction == "sum" else mean(losses)
