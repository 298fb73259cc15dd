"""The fast Adam update: eq. Adam of `minitl/optim/adam.py` for all the parameters of a group at
once, in place, in cache-sized slices, on threads. Proven equal to `adam_update` in float64 by
tests/test_fastpath.py.

Why it is faster than the five NumPy expressions of the reference:

* No temporaries, and fewer passes. Each expression of the reference allocates a
  parameter-sized array, writes it and reads it back. Here every pass writes into the state
  arrays or into one scratch slice, and the three updates of the form y = a x + b y are one
  BLAS axpby each (`fastpath.blas`): seven passes where NumPy alone makes twelve.
* Cache-sized slices. The update makes seven passes; over slices of SLICE elements (1 MiB of
  float32) the five arrays of a slice stay in the core's L2 and L3 cache from the first pass to
  the last, where passes over whole parameters would stream each one through memory seven times.
* Bias corrections folded into two scalars, which saves two passes:
      lr * m_hat / (sqrt(v_hat) + eps) = step_size * m / (sqrt(v) + eps_hat),
      step_size = lr * sqrt(1 - b2^t) / (1 - b1^t),   eps_hat = eps * sqrt(1 - b2^t).
* Threads, for large parameters. The slices of all parameters are one list of jobs, split
  across `fastpath.parallel`'s threads (NumPy releases the GIL inside each pass), when there
  are enough long ones; models made of small parameters update on one thread (PARALLEL_ELEMENTS
  says why). On a GPU each parameter is one job on whole arrays.

benchmarks/RESULTS.md has what this is worth.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..backend import xp_of
from . import parallel
from .blas import axpby

SLICE = 1 << 18
# A job makes seven calls, and at each one two threads hand Python's lock to each other: a
# second core only pays when the calls are long, so threads run only when the slices of at
# least SLICE / 2 elements add up to PARALLEL_ELEMENTS. On the 2-core machine, alone, one
# thread against two: the MLP's 0.67M parameters (a 401k and a 262k weight) 1.06 against
# 0.87 ms; 4M in two, 7.7 against 4.2 ms; the ViT's 0.80M in 52 parameters of at most 65k,
# 1.6 against 1.9 ms (twelve NumPy passes then). Inside a training step the MLP's update is
# faster on one thread all the same (1.14-1.21 against 1.21-1.26 ms): it starts right after the
# backward's last matrix product, while OpenBLAS's idle threads still spin on the second core
# (`cpu_runtime.BLAS_SPIN_EXPONENT`), hence a threshold above the MLP.
PARALLEL_ELEMENTS = 1 << 20

_scratch = threading.local()  # each thread's spare slice, one per dtype


def _scratch_for(dtype, size):
    buffers = _scratch.__dict__.setdefault("buffers", {})
    buffer = buffers.get(dtype)
    if buffer is None or buffer.size < size:
        buffer = buffers[dtype] = np.empty(max(size, SLICE), dtype=dtype)
    return buffer[:size]


def adam_update_(p, g, m, v, t, beta1, beta2, step_size, eps_hat):
    """Eq. Adam in place on equally long 1-D arrays, with `t` as scratch; the bias corrections
    are folded into `step_size` and `eps_hat` (see the module docstring)."""
    xp = xp_of(p)
    axpby(1 - beta1, g, beta1, m)  # m = b1 m + (1 - b1) g
    xp.multiply(g, g, out=t)
    axpby(1 - beta2, t, beta2, v)  # v = b2 v + (1 - b2) g^2
    xp.sqrt(v, out=t)  # p -= step_size * m / (sqrt(v) + eps_hat)
    t += eps_hat
    xp.divide(m, t, out=t)
    axpby(-step_size, t, 1.0, p)


def _contiguous_state(p, state):
    """The parameter and its moments as C-contiguous arrays (made so in place when they are not),
    whose flat views the slices are cut from."""
    xp = xp_of(p.data)
    if not p.data.flags.c_contiguous:
        p.data = xp.ascontiguousarray(p.data)
    for key in ("exp_avg", "exp_avg_sq"):
        if not state[key].flags.c_contiguous:
            state[key] = xp.ascontiguousarray(state[key])
    return p.data, state["exp_avg"], state["exp_avg_sq"]


def adam_update_all(updates, lr, beta1, beta2, eps):
    """One Adam step for every (parameter, gradient, state) in `updates`, the state holding
    `step` (already counted) and the moments `exp_avg` and `exp_avg_sq`."""
    jobs = []  # (p, g, m, v, step_size, eps_hat) slices
    for p, grad, state in updates:
        param, m, v = _contiguous_state(p, state)
        flat = [param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1)]
        root_bc2 = math.sqrt(1 - beta2 ** state["step"])
        scalars = (lr * root_bc2 / (1 - beta1 ** state["step"]), eps * root_bc2)
        n = flat[0].size
        if xp_of(param) is not np:  # a GPU: one job on whole arrays
            adam_update_(*flat, xp_of(param).empty_like(flat[0]), beta1, beta2, *scalars)
            continue
        for start in range(0, n, SLICE):
            jobs.append(tuple(a[start:start + SLICE] for a in flat) + scalars)

    def run(first, last):
        for k in range(first, last):
            p, g, m, v, step_size, eps_hat = jobs[k]
            adam_update_(p, g, m, v, _scratch_for(p.dtype, p.size), beta1, beta2, step_size, eps_hat)

    long_elements = sum(job[0].size for job in jobs if job[0].size >= SLICE // 2)
    parallel.parallel_for(len(jobs), run, SLICE, enabled=long_elements >= PARALLEL_ELEMENTS, block_elements=SLICE)
