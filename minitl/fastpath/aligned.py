"""Arrays whose data starts on a cache-line boundary, for the long-lived buffers of the fast paths.

NumPy takes an array's memory from malloc, and glibc's malloc aligns blocks to 16 bytes only,
so a large array usually starts 16, 32 or 48 bytes past a 64-byte cache line. A vectorised
loop then writes every 64-byte vector across two cache lines, and the pass takes longer:
`np.multiply(a, b, out=c)` on 65,536 float32 in the core's cache, 7.4 us into an aligned `c`
against 13.6 us into one 16 bytes off. PyTorch's CPU allocator aligns every tensor to 64 bytes
for this reason.

The Adam moments (of parameters long enough for BLAS) and its scratch slice, written by seven
passes every step and kept from step to step, are allocated here: inside the MLP benchmark's
step, its update took 1.31 ms with them aligned against 1.42 ms without (medians of 7
alternating rounds). Arrays that a step allocates afresh are not. The MLP's ReLU outputs,
aligned, made its step slower (they missed the blocks that malloc had just freed and still held
in cache), and aligning the CNN's outputs of 1 MiB and more changed its step by less than the
noise. benchmarks/RESULTS.md has the measurements.
"""
from __future__ import annotations

import math

import numpy as np

from .blas import address

ALIGNMENT = 64  # bytes: one cache line, and one AVX-512 vector


def is_aligned(a) -> bool:
    return address(a) % ALIGNMENT == 0


def empty(shape, dtype=np.float32):
    """An uninitialised C-contiguous NumPy array whose data starts on an ALIGNMENT-byte boundary:
    a view into a byte buffer a little longer than needed, which it keeps alive."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -address(raw) % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)
