"""The fast Adam update: eq. Adam of `minitl/optim/adam.py` for all the parameters of a group at
once, in place, in cache-sized slices, on threads. Proven equal to `adam_update` in float64 by
tests/test_fastpath.py.

Why it is faster than the five NumPy expressions of the reference:

* No temporaries, and fewer passes. Each expression of the reference allocates a
  parameter-sized array, writes it and reads it back. Here every pass writes into the state
  arrays or into one scratch slice, and the three updates of the form y = a x + b y are one
  BLAS axpby each (`fastpath.blas`, given each slice's address, computed once per parameter):
  seven passes where NumPy alone makes twelve.
* Cache-sized slices. The update makes seven passes; over slices of SLICE elements (256 KiB of
  float32) the five arrays of a slice stay in the core's L2 cache from the first pass to the
  last, where passes over whole parameters would stream each one through memory seven times.
* Aligned memory. The moments of parameters long enough for BLAS and the scratch slice, which
  the passes write, start on a cache-line boundary (`fastpath.aligned`); the moments are moved
  there on their first step.
* Bias corrections folded into two scalars, which saves two passes:
      lr * m_hat / (sqrt(v_hat) + eps) = step_size * m / (sqrt(v) + eps_hat),
      step_size = lr * sqrt(1 - b2^t) / (1 - b1^t),   eps_hat = eps * sqrt(1 - b2^t).
* Threads, for large parameters. The slices of all parameters are one list of jobs, split
  across `fastpath.parallel`'s threads (NumPy releases the GIL inside each pass), in longer
  slices of THREADED_SLICE, when there are enough long ones; models made of small parameters
  update on one thread (PARALLEL_ELEMENTS says why). On a GPU each parameter is one job on
  whole arrays.

benchmarks/RESULTS.md has what this is worth.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..backend import xp_of
from . import aligned, parallel
from .blas import MIN_SIZE, address, axpby

SLICE = 1 << 16  # on one thread: the five arrays of a float32 slice, 1.25 MiB, fit a 2 MiB L2
THREADED_SLICE = 1 << 18  # on threads: fewer, longer calls (see below)
# A job makes seven calls, and at each one two threads hand Python's lock to each other: a
# second core pays only when the calls are long, hence longer slices there. Threads run when
# the parameters of at least THREADED_SLICE / 2 elements add up to PARALLEL_ELEMENTS. On the
# 2-core machine, alone, one thread against two: 4M parameters in two, 8.5-9.3 against
# 3.8-4.9 ms; the MLP's 0.67M (a 401k and a 262k weight), 1.22-1.28 against 1.14-1.17 ms.
# Inside the MLP's training step one thread is faster all the same (1.34-1.43 against
# 1.42-1.46 ms): the update starts right after the backward's last matrix product, while
# OpenBLAS's idle threads still spin on the second core (`cpu_runtime.BLAS_SPIN_EXPONENT`),
# hence a threshold above the MLP.
PARALLEL_ELEMENTS = 1 << 20

_scratch = threading.local()  # each thread's spare slice and its address, one per dtype


def _scratch_for(dtype, size):
    """This thread's scratch slice of `size` elements, and its address."""
    buffers = _scratch.__dict__.setdefault("buffers", {})
    buffer, start = buffers.get(dtype, (None, None))
    if buffer is None or buffer.size < size:
        buffer = aligned.empty(max(size, SLICE), dtype)
        start = address(buffer)
        buffers[dtype] = (buffer, start)
    return buffer[:size], start


def adam_update_(p, g, m, v, t, beta1, beta2, step_size, eps_hat, addresses=(None,) * 5):
    """Eq. Adam in place on equally long 1-D arrays, with `t` as scratch; the bias corrections
    are folded into `step_size` and `eps_hat` (see the module docstring). `addresses`: those of
    p, g, m, v and t for the BLAS calls, where the caller knows them."""
    xp = xp_of(p)
    at_p, at_g, at_m, at_v, at_t = addresses
    axpby(1 - beta1, g, beta1, m, at_g, at_m)  # m = b1 m + (1 - b1) g
    xp.multiply(g, g, out=t)
    axpby(1 - beta2, t, beta2, v, at_t, at_v)  # v = b2 v + (1 - b2) g^2
    xp.sqrt(v, out=t)  # p -= step_size * m / (sqrt(v) + eps_hat)
    t += eps_hat
    xp.divide(m, t, out=t)
    axpby(-step_size, t, 1.0, p, at_t, at_p)


def _contiguous_state(p, state):
    """The parameter and its moments as C-contiguous arrays (made so in place when they are not),
    whose flat views the slices are cut from; NumPy moments long enough for BLAS also cache-line
    aligned."""
    xp = xp_of(p.data)
    if not p.data.flags.c_contiguous:
        p.data = xp.ascontiguousarray(p.data)
    for key in ("exp_avg", "exp_avg_sq"):
        moment = state[key]
        if xp is np and moment.size >= MIN_SIZE and not (moment.flags.c_contiguous and aligned.is_aligned(moment)):
            state[key] = aligned.empty(moment.shape, moment.dtype)
            state[key][...] = moment
        elif not moment.flags.c_contiguous:
            state[key] = xp.ascontiguousarray(moment)
    return p.data, state["exp_avg"], state["exp_avg_sq"]


def adam_update_all(updates, lr, beta1, beta2, eps):
    """One Adam step for every (parameter, gradient, state) in `updates`, the state holding
    `step` (already counted) and the moments `exp_avg` and `exp_avg_sq`."""
    long_elements = sum(p.data.size for p, _, _ in updates if p.data.size >= THREADED_SLICE // 2)
    threaded = long_elements >= PARALLEL_ELEMENTS
    size = THREADED_SLICE if threaded else SLICE
    jobs = []  # ((p, g, m, v) slices, their addresses, (step_size, eps_hat))
    for p, grad, state in updates:
        param, m, v = _contiguous_state(p, state)
        flat = [param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1)]
        root_bc2 = math.sqrt(1 - beta2 ** state["step"])
        scalars = (lr * root_bc2 / (1 - beta1 ** state["step"]), eps * root_bc2)
        n = flat[0].size
        if xp_of(param) is not np:  # a GPU: one job on whole arrays
            adam_update_(*flat, xp_of(param).empty_like(flat[0]), beta1, beta2, *scalars)
            continue
        # a slice's address is its array's plus the offset (axpby uses them only where the
        # arrays are contiguous, the one case in which that sum is right); parameters too short
        # for BLAS (blas.MIN_SIZE) update with NumPy alone and need none
        bases = [(address(a), a.itemsize) if n >= MIN_SIZE else (None, 0) for a in flat]
        for start in range(0, n, size):
            jobs.append((tuple(a[start:start + size] for a in flat),
                         tuple(None if base is None else base + start * itemsize for base, itemsize in bases),
                         scalars))

    def run(first, last):
        for k in range(first, last):
            (p, g, m, v), addresses, (step_size, eps_hat) = jobs[k]
            t, at_t = _scratch_for(p.dtype, p.size)
            adam_update_(p, g, m, v, t, beta1, beta2, step_size, eps_hat, addresses + (at_t,))

    parallel.parallel_for(len(jobs), run, size, enabled=threaded, block_elements=size)
