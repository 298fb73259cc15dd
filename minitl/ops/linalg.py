"""Matrix products: `matmul` (batched, broadcasting, 1-D operands as in NumPy) and the fused
`linear` layer y = x W^T + b that every network here is made of.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..tensor import Function, unbroadcast


def _swap_last(x):
    return x.swapaxes(-1, -2)


def check_matmul_shapes(a_shape, b_shape):
    if len(a_shape) == 0 or len(b_shape) == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes {a_shape} and {b_shape}")
    k_a = a_shape[-1]
    k_b = b_shape[-2] if len(b_shape) > 1 else b_shape[0]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {tuple(a_shape)} and {tuple(b_shape)} don't align "
                         f"(inner dimensions {k_a} != {k_b})")
    try:
        np.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2]))
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of shapes {tuple(a_shape)} and {tuple(b_shape)} "
                         "cannot be broadcast together") from None


class MatMul(Function):
    @staticmethod
    def forward(ctx, a, b):
        check_matmul_shapes(a.shape, b.shape)
        # NumPy's rules for 1-D operands: a vector on the left is a row, on the right a column;
        # the added axis is removed from the result. Promote here, undo in backward.
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        ctx.save_for_backward(a2, b2)
        ctx.shapes = (a.shape, b.shape)
        # Shapes were checked above: any other error of the product (a GPU kernel's limits,
        # say) keeps its own message.
        out = backend.matmul(a2, b2)
        ctx.out_shape = out.shape
        if a.ndim == 1:
            out = out[..., 0, :]
        if b.ndim == 1:
            out = out[..., 0]
        return out

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.matmul_backward
        # hint: for C = A @ B: dA = dC @ B^T and dB = A^T @ dC (swap the last two axes for ^T); batch axes that were broadcast are summed away with unbroadcast
        a, b = ctx.saved_tensors
        shape_a, shape_b = ctx.shapes
        need_a, need_b = ctx.needs_input_grad
        grad = grad.reshape(ctx.out_shape)
        grad_a = grad_b = None
        if need_a:
            grad_a = unbroadcast(backend.matmul(grad, _swap_last(b)), a.shape).reshape(shape_a)
        if need_b:
            if b.ndim == 2 and a.ndim > 2:
                # a weight shared by a whole batch: fold the batch into rows, one 2-D product
                rows = a.reshape(-1, a.shape[-1])
                grad_b = backend.matmul(rows.T, grad.reshape(-1, grad.shape[-1]))
            else:
                grad_b = unbroadcast(backend.matmul(_swap_last(a), grad), b.shape)
            grad_b = grad_b.reshape(shape_b)
        return grad_a, grad_b
        # END EXERCISE


def check_linear_input(x, weight):
    """The error both versions of the linear layer give when x's features don't fit the weight."""
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {tuple(x.shape)} has {x.shape[-1]} features but the "
                         f"weight of shape {tuple(weight.shape)} expects {weight.shape[1]}")


class Linear(Function):
    """y = x W^T + b with W of shape (out_features, in_features), as in PyTorch.

    Fused into one op: one graph node instead of three, and the batch axes are folded into
    rows so each product is a single 2-D matrix multiply.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        check_linear_input(x, weight)
        # BEGIN EXERCISE nn.linear_forward
        # hint: flatten x to rows (-1, in_features), multiply by weight.T, add bias when given, reshape back to x's leading shape plus out_features
        rows = x.reshape(-1, x.shape[-1])
        out = backend.matmul(rows, weight.T)
        if bias is not None:
            out += bias
        # END EXERCISE
        ctx.save_for_backward(rows, weight)
        ctx.x_shape = x.shape
        ctx.has_bias = bias is not None
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE nn.linear_backward
        # hint: with g the gradient as rows (-1, out_features): dx = g @ W (reshaped to x's shape), dW = g^T @ x_rows, db = g summed over rows
        rows, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        g = grad.reshape(-1, weight.shape[0])
        grad_x = backend.matmul(g, weight).reshape(ctx.x_shape) if needs[0] else None
        grad_w = backend.matmul(g.T, rows) if needs[1] else None
        if not ctx.has_bias:
            return grad_x, grad_w
        grad_b = g.sum(axis=0) if needs[2] else None
        return grad_x, grad_w, grad_b
        # END EXERCISE
