"""Reductions: sum, mean, max (and min, var built from them).

The backward of a reduction spreads the gradient back over the axes it removed: sum copies it
to every element, mean copies it divided by the count, max routes it to the maxima.
"""
from __future__ import annotations

from ..backend import xp_of
from ..tensor import Function


def normalize_axes(axis, ndim):
    """`axis` as a sorted tuple of non-negative ints (None = every axis)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    out = []
    for ax in axis:
        if not -ndim <= ax < max(ndim, 1):
            raise IndexError(f"dimension {ax} is out of range for a tensor with {ndim} dimensions")
        out.append(ax % max(ndim, 1))
    return tuple(sorted(out))


def restore_reduced_axes(grad, axes, keepdims):
    """Put back, as length-1 axes, the axes a reduction removed, so `grad` broadcasts against
    the input again."""
    if keepdims:
        return grad
    xp = xp_of(grad)
    return xp.expand_dims(grad, axes) if axes else grad


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        axes = normalize_axes(axis, a.ndim)
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        return a.sum(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.sum_backward
        # hint: every summed element contributed with weight 1: restore the reduced axes (restore_reduced_axes) and broadcast the gradient to the input's shape
        grad = restore_reduced_axes(grad, ctx.axes, ctx.keepdims)
        return xp_of(grad).broadcast_to(grad, ctx.shape)
        # END EXERCISE


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        axes = normalize_axes(axis, a.ndim)
        ctx.shape, ctx.axes, ctx.keepdims = a.shape, axes, keepdims
        count = 1
        for ax in axes:
            count *= a.shape[ax]
        ctx.count = count
        return a.mean(axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, grad):
        grad = restore_reduced_axes(grad, ctx.axes, ctx.keepdims) / ctx.count
        return xp_of(grad).broadcast_to(grad, ctx.shape)


class Max(Function):
    """Max over axes; tied maxima share the gradient equally (so it stays a true subgradient
    and the numerical check agrees): d max / d a_i = [a_i == max] / (number of ties). PyTorch
    does the same for `x.max()` and `x.amax(dim)`; its `x.max(dim)`, which also returns
    indices, gives the whole gradient to the one index it returns."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        if a.size == 0:
            raise ValueError("max() of an empty tensor")
        axes = normalize_axes(axis, a.ndim)
        out = a.max(axis=axes, keepdims=True)
        ctx.save_for_backward(a, out)
        ctx.axes, ctx.keepdims = axes, keepdims
        return out if keepdims else out.squeeze(axis=axes) if axes else out.reshape(())

    @staticmethod
    def backward(ctx, grad):
        a, out = ctx.saved_tensors
        grad = restore_reduced_axes(grad, ctx.axes, ctx.keepdims)
        is_max = a == out
        return grad * is_max / is_max.sum(axis=ctx.axes, keepdims=True)
