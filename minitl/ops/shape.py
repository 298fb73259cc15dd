"""Ops that move elements without changing them: reshape, permute, expand, indexing,
concatenation, padding, and `where` (which picks elements from two tensors).

Their backwards move the gradient the opposite way: reshape back, the inverse permutation,
a sum over the expanded axes, a scatter-add into the indexed positions, a split, a crop.
"""
from __future__ import annotations

import numpy as np

from ..backend import scatter_add, xp_of
from ..tensor import Function, Tensor, unbroadcast


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {a.shape} "
                             f"({a.size} elements) into shape {tuple(shape)}") from None

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, dims):
        if sorted(d % max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
            raise ValueError(f"permute: {tuple(dims)} is not a permutation of the {a.ndim} dimensions of shape {a.shape}")
        ctx.dims = dims
        return a.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        inverse = np.argsort([d % grad.ndim for d in ctx.dims])
        return grad.transpose(tuple(int(i) for i in inverse))


class Expand(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.shape = a.shape
        # -1 keeps the existing size, as in PyTorch
        offset = len(shape) - a.ndim
        shape = tuple(a.shape[i - offset] if s == -1 else s for i, s in enumerate(shape))
        try:
            return xp_of(a).broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"expand: shape {a.shape} cannot be expanded to {shape}") from None

    @staticmethod
    def backward(ctx, grad):
        return unbroadcast(grad, ctx.shape)


def _index_arrays(index, xp):
    """The index with Tensors and lists replaced by arrays of module `xp`; and whether it
    uses integer arrays (advanced indexing, which may pick an element twice)."""
    if not isinstance(index, tuple):
        index = (index,)
    clean, advanced = [], False
    for item in index:
        if isinstance(item, Tensor):
            item = item.data
        if isinstance(item, (list, np.ndarray)) or (hasattr(item, "dtype") and getattr(item, "ndim", 0) > 0):
            item = xp.asarray(item)
        if hasattr(item, "dtype") and getattr(item, "ndim", 0) > 0 and item.dtype.kind in "iu":
            advanced = True
        clean.append(item)
    return tuple(clean), advanced


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        index, advanced = _index_arrays(index, xp_of(a))
        ctx.shape, ctx.dtype, ctx.index, ctx.advanced = a.shape, a.dtype, index, advanced
        try:
            return a[index]
        except IndexError as exc:
            raise IndexError(f"index into a tensor of shape {a.shape}: {exc}") from None

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.getitem_backward
        # hint: dx = zeros like x; dx[index] += grad, and an element that an integer-array index picks twice gets both: scatter_add(dx, index, grad), not assignment
        xp = xp_of(grad)
        out = xp.zeros(ctx.shape, dtype=grad.dtype)
        if ctx.advanced:
            scatter_add(out, ctx.index, grad)
        else:
            out[ctx.index] = grad
        return out
        # END EXERCISE


class Concat(Function):
    @staticmethod
    def forward(ctx, *arrays, axis=0):
        if not arrays:
            raise ValueError("cat: needs at least one tensor")
        ndim = arrays[0].ndim
        axis = axis % max(ndim, 1)
        for arr in arrays:
            if arr.ndim != ndim or arr.shape[:axis] + arr.shape[axis + 1:] != arrays[0].shape[:axis] + arrays[0].shape[axis + 1:]:
                shapes = ", ".join(str(tuple(x.shape)) for x in arrays)
                raise ValueError(f"cat: shapes {shapes} must match except along dimension {axis}")
        ctx.axis = axis
        ctx.splits = np.cumsum([arr.shape[axis] for arr in arrays])[:-1]
        return xp_of(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        return tuple(xp_of(grad).split(grad, ctx.splits, axis=ctx.axis))


class Pad(Function):
    """Constant padding; `pad_width` is NumPy's ((before, after), ...) per axis."""

    @staticmethod
    def forward(ctx, a, pad_width, value=0.0):
        ctx.crop = tuple(slice(before, before + n) for (before, _), n in zip(pad_width, a.shape))
        return xp_of(a).pad(a, pad_width, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.crop]


class Where(Function):
    """where(condition, a, b): a where condition holds, else b. The condition is a constant."""

    @staticmethod
    def forward(ctx, a, b, condition):
        ctx.condition = condition
        ctx.shapes = (a.shape, b.shape)
        xp = xp_of(a)
        try:
            return xp.where(condition, a, b)
        except ValueError:
            raise ValueError(f"where: condition {condition.shape}, a {a.shape} and b {b.shape} "
                             "cannot be broadcast together") from None

    @staticmethod
    def backward(ctx, grad):
        zero = grad.dtype.type(0)
        xp = xp_of(grad)
        grad_a = unbroadcast(xp.where(ctx.condition, grad, zero), ctx.shapes[0])
        grad_b = unbroadcast(xp.where(ctx.condition, zero, grad), ctx.shapes[1])
        return grad_a, grad_b
