"""Numerical gradient checking, the CS231n way, in float64.

The analytic gradient from `backward()` is compared with central differences
(f(x + h) - f(x - h)) / 2h, whose error is O(h^2). With h = 1e-6 in float64 the truncation
error is about 1e-12 and rounding about 1e-10 relative, so a correct backward agrees to a
relative error far below the bound used here, 1e-6; a wrong one is off by O(1).

A non-scalar output is reduced to a scalar by a fixed random projection, sum(out * R),
rather than a plain sum: the sum of a softmax is constant, so a plain sum would hide
every bug in softmax's backward. Its gradient with respect to `out` is R itself, so the
backward pass starts from `out.backward(R)`: no Mul or Sum node is added, and a check of one
op runs that op's backward and no other.

`gradcheck_op` checks one `Function` alone: its `backward(ctx, grad)` called directly on the
ctx its `forward` filled, against central differences of `forward` itself. No graph, no
engine: a backward rule can be checked before `Tensor.backward` exists.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor, no_grad

DEFAULT_BOUND = 1e-6


class GradcheckError(AssertionError):
    pass


def relative_error(analytic, numeric):
    """||a - n|| / (||a|| + ||n||), 0 when both are zero."""
    diff = np.linalg.norm(analytic - numeric)
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return 0.0 if scale == 0 else float(diff / scale)


def _as_float64_leaf(x):
    if isinstance(x, Tensor):
        if x.dtype.kind != "f":
            return x
        return Tensor(np.array(x.numpy(), dtype=np.float64), requires_grad=True, dtype=np.float64)
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return Tensor(np.array(x, dtype=np.float64), requires_grad=True, dtype=np.float64)
    return x


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar function f() with respect to every element of the
    array x, which f reads and which is perturbed in place."""
    grad = np.zeros_like(x)
    # .flat writes through to x whatever its memory layout (reshape(-1) would copy a
    # transposed array, and the perturbations would never reach f)
    flat_x, flat_g = x.flat, grad.flat
    for i in range(x.size):
        old = flat_x[i]
        flat_x[i] = old + eps
        plus = f()
        flat_x[i] = old - eps
        minus = f()
        flat_x[i] = old
        flat_g[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn, *inputs, eps=1e-6, bound=DEFAULT_BOUND, seed=0, raise_exception=True):
    """Check `fn(*inputs)`'s gradients with respect to every floating-point tensor input.

    Inputs are copied to float64 leaves. Returns True, or raises GradcheckError listing the
    relative error of each input (or returns False with raise_exception=False).
    """
    args = [_as_float64_leaf(x) for x in inputs]
    checked = [a for a in args if isinstance(a, Tensor) and a.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no floating-point tensor among the inputs")

    out = fn(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    projection = np.random.default_rng(seed).standard_normal(out.shape)

    def scalar_loss():
        with no_grad():
            return float((fn(*args).data * projection).sum())

    out.backward(projection)  # d sum(out * R) / d out = R
    analytic = [np.zeros_like(a.data) if a.grad is None else a.grad for a in checked]
    numeric = [numerical_gradient(scalar_loss, a.data, eps) for a in checked]
    return _verdict("gradcheck", analytic, numeric, bound, raise_exception)


def gradcheck_op(op, *inputs, kwargs=None, eps=1e-6, bound=DEFAULT_BOUND, seed=0,
                 raise_exception=True):
    """Check the backward of one Function subclass `op` alone, without the engine.

    `inputs` are `op.forward`'s positional arguments: each floating-point array is an input
    that gets a gradient (copied to float64, in order, as `Op.apply` would pass Tensors);
    anything else (integer targets, an index, None) is passed as it is. `kwargs` go to
    `forward`. Then, as `Op.apply` and `Tensor.backward` would do it by hand::

        ctx = op(); ctx.needs_input_grad = (True, ...); out = op.forward(ctx, *inputs)
        grads = op.backward(ctx, R)        # R: a fixed random array of out's shape

    and each gradient is compared with central differences of sum(op.forward(...) * R).
    Returns True, or raises GradcheckError (returns False with raise_exception=False).
    """
    kwargs = dict(kwargs or {})
    args = [np.array(x, dtype=np.float64) if _is_float_array(x) else x for x in inputs]
    checked = [i for i, x in enumerate(inputs) if _is_float_array(x)]
    if not checked:
        raise ValueError(f"gradcheck_op: no floating-point array among the inputs of {op.__name__}")

    def forward():
        ctx = op()
        ctx.needs_input_grad = (True,) * len(checked)
        return ctx, op.forward(ctx, *args, **kwargs)

    ctx, out = forward()
    projection = np.asarray(np.random.default_rng(seed).standard_normal(np.shape(out)))
    grads = op.backward(ctx, projection.copy())
    grads = grads if isinstance(grads, tuple) else (grads,)
    if len(grads) != len(checked):
        raise GradcheckError(f"gradcheck_op: {op.__name__}.backward returned {len(grads)} "
                             f"gradient(s) for {len(checked)} floating-point input(s)")
    analytic = []
    for i, g in zip(checked, grads):
        g = np.zeros_like(args[i]) if g is None else np.asarray(g)
        if g.shape != args[i].shape:
            raise GradcheckError(f"gradcheck_op: {op.__name__}.backward returned a gradient of "
                                 f"shape {g.shape} for an input of shape {args[i].shape}")
        analytic.append(g)

    def scalar_loss():
        return float((np.asarray(forward()[1]) * projection).sum())

    numeric = [numerical_gradient(scalar_loss, args[i], eps) for i in checked]
    return _verdict(f"gradcheck_op({op.__name__})", analytic, numeric, bound, raise_exception)


def _is_float_array(x):
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def _verdict(name, analytic, numeric, bound, raise_exception):
    """True when every input's relative error is below `bound`; else raise (or False)."""
    report, ok = [], True
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        err = relative_error(a, n)
        report.append(f"input {i} shape {a.shape}: relative error {err:.2e}")
        ok &= bool(err < bound)
    if not ok and raise_exception:
        raise GradcheckError(f"{name} failed (bound %.0e):\n  " % bound + "\n  ".join(report))
    return ok
