"""Numerical gradient checking, the CS231n way, in float64.

The analytic gradient from `backward()` is compared with central differences
(f(x + h) - f(x - h)) / 2h, whose error is O(h^2). With h = 1e-6 in float64 the truncation
error is about 1e-12 and rounding about 1e-10 relative, so a correct backward agrees to a
relative error far below the bound used here, 1e-6; a wrong one is off by O(1).

A non-scalar output is reduced to a scalar by a fixed random projection, sum(out * R),
rather than a plain sum: the sum of a softmax is constant, so a plain sum would hide
every bug in softmax's backward.
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

    (out * Tensor(projection, dtype=np.float64)).sum().backward()
    report = []
    ok = True
    for i, a in enumerate(checked):
        analytic = np.zeros_like(a.data) if a.grad is None else a.grad
        numeric = numerical_gradient(scalar_loss, a.data, eps)
        err = relative_error(analytic, numeric)
        report.append(f"input {i} shape {a.shape}: relative error {err:.2e}")
        ok &= bool(err < bound)
    if not ok and raise_exception:
        raise GradcheckError("gradcheck failed (bound %.0e):\n  " % bound + "\n  ".join(report))
    return ok
