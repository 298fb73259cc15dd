"""The fast GELU: `minitl.ops.elementwise.Gelu`'s x * Phi(x) without a second erf in backward,
and, on float32 NumPy arrays, without SciPy's erf at all.

The reference computes Phi(x) = (1 + erf(x / sqrt 2)) / 2 with `scipy.special.erf` (about 20 ns an
element; `math.erf` one element at a time where SciPy is missing, 100 times slower) in forward,
and again in backward. Here forward makes the slope dGELU/dx = Phi(x) + x phi(x), with
phi(x) = e^(-x^2/2) / sqrt(2 pi), beside the value and keeps it for backward; and on float32
CPU arrays Phi comes from

    Phi(x) ~= 1/2 + tanh(x P(x^2)) / 2,

GELU's well-known tanh form (P(z) ~= sqrt(2/pi) (1 + 0.044715 z)) carried to a degree-6 P: a few
NumPy passes (tanh is fast in NumPy) instead of erf. The coefficients are a weighted minimax fit
(least squares reweighted by the error, Lawson's method) of atanh(2 Phi(x) - 1) / x on [0, 5.5]
in float64; beyond 5.5, Phi is 1 (or below 2e-8) in float32, and so is the fit without any
clipping: P(z) >= 0.79 for every z >= 0, so |x P(x^2)| >= 9.08 once |x| >= 5.5, and tanh of that
is +-1 in float32 (an overflow to inf included). Evaluated in float32 the absolute error of Phi
is below 1e-7, as small as the reference's own float32 rounding (6e-8), which
tests/test_attention.py checks on a dense grid. float64 inputs and CuPy arrays take the exact erf.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from . import parallel
from ..backend import xp_of
from ..ops.elementwise import erf
from ..tensor import Function

FIT_RANGE = 5.5  # the fit's interval [0, FIT_RANGE]; tanh saturates beyond it (see above)
# P(z) = sum_i PHI_TANH_COEFFS[i] z^i; the first two are sqrt(2/pi) and 0.044715 sqrt(2/pi), nearly
PHI_TANH_COEFFS = (0.7978849415106063, 0.036333084302229236, -3.2594609982477065e-05, -5.530638055366482e-05,
                   3.964786174033887e-06, -1.3226742046833642e-07, 1.7563121312037177e-09)
_COEFFS32 = tuple(np.float32(c) for c in PHI_TANH_COEFFS)
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


# Elements per slice of the float32 evaluation, small enough that its dozen passes stay in
# cache. Each pass is a NumPy call that lets go of Python's lock and takes it back; with
# smaller slices two threads spend much of their time waiting for each other there (a
# 6400 x 512 input on 2 threads: 65,536 per slice 13.8 ms, 131,072 10.7 ms; benchmarks/RESULTS.md).
BLOCK = 1 << 17


def normal_cdf(x):
    """Phi(x), the standard normal CDF: the tanh fit on float32 NumPy arrays, else via erf."""
    if type(x) is not np.ndarray or x.dtype != np.float32:
        return 0.5 * (1 + erf(x * _INV_SQRT_2))
    flat = np.ascontiguousarray(x).reshape(-1)
    cdf = np.empty_like(flat)
    (square,) = _scratch(flat.size, 1)
    for start in range(0, flat.size, BLOCK):
        part = slice(start, start + BLOCK)
        _normal_cdf_float32(flat[part], cdf[part], square)
    return cdf.reshape(x.shape)


def gelu_and_derivative(x, derivative=True):
    """(GELU(x) = x Phi(x), and GELU'(x) = Phi(x) + x phi(x) when `derivative`, else None).
    On float32 NumPy arrays slice by slice, so that a slice's dozen passes run in cache, and the
    slices on all of minitl's threads (`parallel`): each element's value depends on it alone."""
    if type(x) is not np.ndarray or x.dtype != np.float32:
        cdf = normal_cdf(x)
        return x * cdf, (cdf + x * _normal_pdf(x) if derivative else None)
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    slope = np.empty_like(flat) if derivative else None

    def body(start, stop):
        xs = flat[start:stop]
        c, square = _thread_scratch(xs.size)
        _normal_cdf_float32(xs, c, square)
        np.multiply(xs, c, out=out[start:stop])
        if derivative:  # phi(x) from the x^2 that Phi left in `square`
            pdf = _normal_pdf_of_square(square, out=square)
            pdf *= xs
            np.add(pdf, c, out=slope[start:stop])

    parallel.parallel_for(flat.size, body, 1, block_elements=BLOCK)
    return out.reshape(x.shape), (slope.reshape(x.shape) if derivative else None)


def _scratch(size, count):
    return [np.empty(min(BLOCK, size), np.float32) for _ in range(count)]


_local = threading.local()  # each thread's scratch slices, made once and reused


def _thread_scratch(size):
    """Two float32 scratch slices of `size` (at most BLOCK) elements, this thread's own."""
    scratch = getattr(_local, "scratch", None)
    if scratch is None or scratch[0].size < size:
        scratch = _local.scratch = _scratch(size, 2)
    return [s[:size] for s in scratch]


def _normal_pdf(x, out=None):
    """phi(x) = e^(-x^2/2) / sqrt(2 pi)."""
    return _normal_pdf_of_square(xp_of(x).multiply(x, x, out=out), out=out)


def _normal_pdf_of_square(square, out=None):
    """phi(x) = e^(-x^2/2) / sqrt(2 pi), given x^2."""
    xp = xp_of(square)
    pdf = xp.multiply(square, square.dtype.type(-0.5), out=out)
    xp.exp(pdf, out=pdf)
    pdf *= square.dtype.type(_INV_SQRT_2PI)
    return pdf


def _normal_cdf_float32(x, out, square):
    """out = 1/2 + tanh(x P(x^2)) / 2, in place; x^2 is left in `square` (scratch). Beyond
    |x| ~ 8.7e3 the polynomial overflows to +-inf, whose tanh is +-1 as it should be."""
    z = square[:x.size]
    with np.errstate(over="ignore"):
        np.multiply(x, x, out=z)
        np.multiply(z, _COEFFS32[-1], out=out)
        for coeff in _COEFFS32[-2:0:-1]:  # Horner
            out += coeff
            out *= z
        out += _COEFFS32[0]
        out *= x
    np.tanh(out, out=out)
    out *= np.float32(0.5)
    out += np.float32(0.5)


class Gelu(Function):
    """GELU(x) = x Phi(x). Its slope Phi(x) + x phi(x) is made in forward, beside the value
    (when a gradient will be asked for), so backward is one product: grad * slope."""

    fresh_gradients = True  # the product is a new array: the engine may sum into it

    @staticmethod
    def forward(ctx, a):
        wants_grad = getattr(ctx, "needs_input_grad", (False,))[0]
        out, slope = gelu_and_derivative(a, derivative=wants_grad)
        ctx.save_for_backward(slope)
        return out

    @staticmethod
    def backward(ctx, grad):
        (slope,) = ctx.saved_tensors
        if type(grad) is np.ndarray and grad.shape == slope.shape:  # the product on all threads
            return parallel.rowwise(np.multiply, np.empty_like(grad), grad, slope)
        return grad * slope
