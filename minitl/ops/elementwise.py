"""Elementwise ops: arithmetic with broadcasting, and the pointwise nonlinearities.

Each backward is the derivative of its forward times the incoming gradient (the chain rule),
and binary ops pass the result through `unbroadcast` because an input that NumPy broadcast
was, in effect, used many times.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import xp_of
from ..tensor import Function, Tensor, unbroadcast


def as_tensor_like(x, like):
    """Wrap a Python number or array as a constant tensor of `like`'s dtype and device."""
    if isinstance(x, Tensor):
        return x
    xp = xp_of(like.data)
    dtype = like.data.dtype
    arr = xp.asarray(x)
    if arr.dtype != dtype and (dtype.kind == "f" or arr.dtype.kind in "iub"):
        arr = arr.astype(dtype)
    return Tensor._wrap(arr)


def binary_operands(a, b):
    if not isinstance(a, Tensor):
        a = as_tensor_like(a, b)
    elif not isinstance(b, Tensor):
        b = as_tensor_like(b, a)
    return a, b


def check_broadcast(name, a, b):
    """Raise a clear error naming both shapes when `a` and `b` can't broadcast together."""
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{name}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together") from None


def _binary(name, compute, a, b):
    try:
        return compute(a, b)
    except ValueError:
        check_broadcast(name, a, b)
        raise


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return _binary("add", np.add, a, b)

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.add_backward
        # hint: d(a+b)/da = d(a+b)/db = 1, so each input receives the incoming gradient, summed back to its own shape with unbroadcast
        shape_a, shape_b = ctx.shapes
        return unbroadcast(grad, shape_a), unbroadcast(grad, shape_b)
        # END EXERCISE


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (a.shape, b.shape)
        return _binary("sub", np.subtract, a, b)

    @staticmethod
    def backward(ctx, grad):
        shape_a, shape_b = ctx.shapes
        return unbroadcast(grad, shape_a), unbroadcast(-grad, shape_b)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _binary("mul", np.multiply, a, b)

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.mul_backward
        # hint: d(a*b)/da = b and d(a*b)/db = a; multiply by grad, then unbroadcast to each input's shape (skip work for an input that needs no gradient)
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        grad_a = unbroadcast(grad * b, a.shape) if need_a else None
        grad_b = unbroadcast(grad * a, b.shape) if need_b else None
        return grad_a, grad_b
        # END EXERCISE


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _binary("div", np.true_divide, a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        grad_a = unbroadcast(grad / b, a.shape) if need_a else None
        grad_b = unbroadcast(-grad * a / (b * b), b.shape) if need_b else None
        return grad_a, grad_b


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Pow(Function):
    """a ** b, differentiable in both (b is usually a constant exponent)."""

    @staticmethod
    def forward(ctx, a, b):
        out = _binary("pow", np.power, a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        xp = xp_of(a)
        grad_a = unbroadcast(grad * b * a ** (b - 1), a.shape) if need_a else None
        grad_b = None
        if need_b:
            # d(a^b)/db = a^b ln a; defined as 0 where a == 0 (the limit for b > 0)
            log_a = xp.log(xp.where(a > 0, a, 1))
            grad_b = unbroadcast(grad * out * log_a, b.shape)
        return grad_a, grad_b


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.exp_backward
        # hint: the derivative of exp is exp itself, which forward already computed and saved
        (out,) = ctx.saved_tensors
        return grad * out
        # END EXERCISE


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, grad):
        # BEGIN EXERCISE autograd.log_backward
        # hint: d(log a)/da = 1/a
        (a,) = ctx.saved_tensors
        return grad / a
        # END EXERCISE


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad / (2 * out)


class Abs(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.abs(a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * np.sign(a)


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (1 - out * out)


def stable_sigmoid(a):
    """sigma(a) = 1 / (1 + e^-a) on an array. For a < -88 (float32) e^-a overflows to inf and
    the quotient is the right limit, 0: only NumPy's overflow warning is silenced."""
    xp = xp_of(a)
    with np.errstate(over="ignore"):
        return 1 / (1 + xp.exp(-a))


def stable_softplus(a):
    """softplus(a) = log(1 + e^a) = -log sigma(-a) on an array, as max(a, 0) + log(1 + e^-|a|):
    e^-|a| is at most 1, so nothing overflows."""
    xp = xp_of(a)
    return xp.maximum(a, 0) + xp.log1p(xp.exp(-xp.abs(a)))


class Sigmoid(Function):
    @staticmethod
    def forward(ctx, a):
        out = stable_sigmoid(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * out * (1 - out)


class Softplus(Function):
    """softplus(x) = log(1 + e^(beta x)) / beta, and x itself where beta x > threshold (where
    the two agree to float precision), as in PyTorch. d/dx = sigma(beta x), 1 above the threshold."""

    @staticmethod
    def forward(ctx, a, beta=1.0, threshold=20.0):
        z = a * beta
        linear = z > threshold
        ctx.save_for_backward(z, linear)
        return xp_of(a).where(linear, a, stable_softplus(z) / beta)

    @staticmethod
    def backward(ctx, grad):
        z, linear = ctx.saved_tensors
        return grad * xp_of(z).where(linear, 1, stable_sigmoid(z))


class LogSigmoid(Function):
    """log sigma(x) = -softplus(-x); d/dx = 1 - sigma(x) = sigma(-x)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return -stable_softplus(-a)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * stable_sigmoid(-a)


class Silu(Function):
    """SiLU (swish): x * sigma(x); d/dx = sigma(x) (1 + x (1 - sigma(x)))."""

    @staticmethod
    def forward(ctx, a):
        s = stable_sigmoid(a)
        ctx.save_for_backward(a, s)
        return a * s

    @staticmethod
    def backward(ctx, grad):
        a, s = ctx.saved_tensors
        return grad * s * (1 + a * (1 - s))


class Relu(Function):
    """relu(a) = max(a, 0); its derivative is 1 where a > 0 and 0 elsewhere, so the gradient
    passes where the input was positive: da = grad * (a > 0)."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp_of(a).maximum(a, 0)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * (a > 0)


def erf(x):
    """The error function, elementwise (SciPy's when present, else math.erf per element)."""
    xp = xp_of(x)
    if xp is not np:
        from cupyx.scipy.special import erf as cupy_erf
        return cupy_erf(x)
    try:
        from scipy.special import erf as scipy_erf
    except ImportError:
        return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)
    return scipy_erf(x).astype(x.dtype, copy=False)


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class Gelu(Function):
    """GELU(x) = x * Phi(x); `approximate="tanh"` is the form GPT-2 used."""

    @staticmethod
    def forward(ctx, a, approximate="none"):
        ctx.save_for_backward(a)
        ctx.approximate = approximate
        if approximate == "tanh":
            inner = _SQRT_2_OVER_PI * (a + 0.044715 * a ** 3)
            return 0.5 * a * (1 + np.tanh(inner))
        if approximate != "none":
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return 0.5 * a * (1 + erf(a * (1 / math.sqrt(2))))

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        if ctx.approximate == "tanh":
            t = np.tanh(_SQRT_2_OVER_PI * (a + 0.044715 * a ** 3))
            d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * a * a)
            return grad * (0.5 * (1 + t) + 0.5 * a * (1 - t * t) * d_inner)
        cdf = 0.5 * (1 + erf(a * (1 / math.sqrt(2))))
        pdf = np.exp(-0.5 * a * a) * (1 / math.sqrt(2 * math.pi))
        return grad * (cdf + a * pdf)


class Clamp(Function):
    @staticmethod
    def forward(ctx, a, low=None, high=None):
        if low is None and high is None:
            raise ValueError("clamp: give at least one of min and max")
        out = np.clip(a, low, high)
        ctx.save_for_backward(a)
        ctx.bounds = (low, high)
        return out

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        low, high = ctx.bounds
        inside = xp_of(a).ones(a.shape, dtype=bool) if low is None else (a >= low)
        if high is not None:
            inside = inside & (a <= high)
        return grad * inside


class Maximum(Function):
    """Elementwise max(a, b) with broadcasting. The gradient goes to the larger input; on a
    tie each input gets half of it, as in PyTorch."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _binary("maximum", np.maximum, a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        half_on_ties = 0.5 * grad * (a == b)
        grad_a = grad * (a > b) + half_on_ties
        grad_b = grad * (a < b) + half_on_ties
        return unbroadcast(grad_a, a.shape), unbroadcast(grad_b, b.shape)


class Cast(Function):
    """A copy in another floating-point dtype; the gradient is cast back to the input's."""

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.input_dtype = a.dtype
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.astype(ctx.input_dtype)


class Clone(Function):
    """A copy of the data that stays in the graph (the identity: the gradient passes as is)."""

    @staticmethod
    def forward(ctx, a):
        return a.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad
