"""Intra-op parallelism for the fast paths: one large element-wise job split across CPU threads,
the way PyTorch's `at::parallel_for` splits its kernels with OpenMP.

Why it works in Python. BLAS already runs every matrix product on all cores, but NumPy runs an
element-wise pass (a ufunc, a copy, a slice-add) on one thread. NumPy does release the GIL
while it loops over a large array, though, so two Python threads that each take half of the
rows really do run at the same time. Memory bandwidth, not the core count, is the limit
(benchmarks/RESULTS.md has the measured gain).

Why in blocks. The rows are cut into blocks of about BLOCK_ELEMENTS (1 MB of float32), and
each thread takes the next block when it is done with one. A body that makes several passes
over its rows (multiply, then add) finds the block still in the core's cache on the second
pass, where the same passes over whole arrays would stream everything through memory twice.
Not much smaller, though: each NumPy call gives up Python's lock and has to take it back, and
with small blocks the threads spend their time waiting for each other there.

    parallel_for(n_rows, body, row_size)   # calls body(start, stop) on disjoint row ranges

Bodies must write disjoint parts of their outputs (rows start:stop) and must not depend on
the order in which blocks run. Work on CuPy arrays is never split (the GPU is parallel
already): callers pass `xp_of(array) is numpy` as `enabled`.

Threads: MINITL_NUM_THREADS, else the cores this process may use; `tl.fastpath.set_num_threads(n)`
at run time (the benchmarks set minitl, BLAS and PyTorch to the same count). Jobs below
MIN_ELEMENTS_PER_THREAD per thread run on the calling thread alone: handing work to another
thread costs tens of microseconds, and about 100 on the 2-core VM of benchmarks/RESULTS.md
(there a lone multiply gains from a second thread from about a million float32 on, yet inside
the CNN's training step this threshold, 2^17 per thread, beat 2^19, 2^20 and 2^21). The
reference code (minitl.ops, minitl.optim) never uses these threads.
"""
from __future__ import annotations

import functools
import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import xp_of

BLOCK_ELEMENTS = 1 << 18
MIN_ELEMENTS_PER_THREAD = 1 << 17


def _default_threads() -> int:
    env = os.environ.get("MINITL_NUM_THREADS")
    if env:
        try:
            count = int(env)
        except ValueError:
            raise ValueError(f"MINITL_NUM_THREADS must be a positive integer, got {env!r}") from None
        if count < 1:
            raise ValueError(f"MINITL_NUM_THREADS must be a positive integer, got {env!r}")
        return count
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


_num_threads = _default_threads()
_pool = None
_pool_lock = threading.Lock()
_inside = threading.local()  # set while a thread runs a body: nested jobs run serially


def get_num_threads() -> int:
    """How many threads minitl's element-wise work may use (BLAS has its own setting)."""
    return _num_threads


def set_num_threads(count: int) -> None:
    """Use `count` threads for element-wise work from now on (1 turns the splitting off)."""
    global _num_threads, _pool
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive integer, got {count!r}")
    with _pool_lock:
        if count != _num_threads and _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None
        _num_threads = count


def _forget_pool():
    """In a forked child the parent's worker threads do not exist: start a fresh pool there."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


_fork_hook_registered = False  # registered with the first pool, so that importing changes nothing


def _worker_pool():
    global _pool, _fork_hook_registered
    with _pool_lock:
        if _pool is None:
            if not _fork_hook_registered and hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_forget_pool)
                _fork_hook_registered = True
            # the calling thread takes a share itself, so the pool needs one thread fewer
            _pool = ThreadPoolExecutor(max_workers=_num_threads - 1, thread_name_prefix="minitl")
        return _pool


def _run_blocks(body, blocks, block_rows, n_rows):
    """Take the next block from `blocks` (an iterator shared by the threads of one job) and
    run it, until none is left."""
    was_inside = getattr(_inside, "active", False)
    _inside.active = True
    try:
        for k in blocks:
            body(k * block_rows, min((k + 1) * block_rows, n_rows))
    finally:
        _inside.active = was_inside


def _plan(n_rows, row_size, block_elements=None, min_elements_per_thread=None):
    """(rows per block, blocks, threads) of a job of n_rows rows of row_size elements: blocks of
    about `block_elements`, shared by as many threads as have `min_elements_per_thread` each,
    and by one thread inside a running body (nested jobs run serially)."""
    row_size = max(int(row_size), 1)
    block_rows = max(1, (block_elements or BLOCK_ELEMENTS) // row_size)
    n_blocks = -(-n_rows // block_rows)
    threads = min(_num_threads, n_blocks, (n_rows * row_size) // (min_elements_per_thread or MIN_ELEMENTS_PER_THREAD))
    if getattr(_inside, "active", False):
        threads = 1
    return block_rows, n_blocks, threads


def parallel_for(n_rows: int, body, row_size: int = 1, enabled: bool = True,
                 block_elements: int | None = None, min_elements_per_thread: int | None = None) -> None:
    """Call body(start, stop) over the blocks that cover range(n_rows), each thread taking the
    next block when it is free. `row_size` is the number of elements one row stands for: it
    decides how many rows make a block and whether splitting pays at all (at least
    `min_elements_per_thread` per thread, MIN_ELEMENTS_PER_THREAD unless given). The block grid
    does not depend on the number of threads, so neither do results summed block by block.
    enabled=False makes it one call body(0, n_rows) on the calling thread: CuPy arrays, or work
    the caller knows is not worth splitting."""
    if n_rows <= 0:
        return
    if not enabled:  # CuPy arrays: the GPU is parallel already, one call does it all
        body(0, n_rows)
        return
    block_rows, n_blocks, threads = _plan(n_rows, row_size, block_elements, min_elements_per_thread)
    if threads <= 1:  # small, or nested in a running body
        _run_blocks(body, iter(range(n_blocks)), block_rows, n_rows)
        return
    # Blocks go to whichever thread is free (next() on a shared iterator is atomic under the
    # GIL): a worker that starts late, or shares its core with a BLAS thread still spinning
    # after a product, takes fewer blocks instead of keeping the others waiting.
    blocks = iter(range(n_blocks))
    pool = _worker_pool()
    futures = [pool.submit(_run_blocks, body, blocks, block_rows, n_rows) for _ in range(1, threads)]
    try:
        _run_blocks(body, blocks, block_rows, n_rows)
    finally:
        for future in futures:
            future.result()  # re-raises a worker's exception here


def _rows_of(operand, n_rows, ndim, start, stop):
    """The rows start:stop of an operand that runs along the output's axis 0; scalars and
    operands that broadcast along axis 0 are the same for every block."""
    if getattr(operand, "ndim", 0) == ndim and operand.shape[0] == n_rows:
        return operand[start:stop]
    return operand


def rowwise(fn, out, *operands):
    """out = fn(*operands, out=out), computed block by block along axis 0 on all threads.
    `fn` is a ufunc (np.maximum, np.multiply, ...) or any function with the same `out=`
    convention that treats rows independently. Returns `out`."""
    n = out.shape[0] if out.ndim else 0
    # A job no second thread would share (a ReLU over a batch of 128 by 512) is one call: in a
    # training step, just after a matrix product has swept the caches, the Python that cuts
    # blocks costs 10-20 us, as much as the pass itself.
    if not n or not _splittable(out) or _plan(n, out.size // n)[2] <= 1:
        fn(*operands, out=out)
        return out

    def body(start, stop):
        fn(*(_rows_of(op, n, out.ndim, start, stop) for op in operands), out=out[start:stop])

    parallel_for(n, body, out.size // n)
    return out


def copyto(dst, src):
    """dst[...] = src (same shape) with the copy split along axis 0 across threads."""
    if dst.ndim == 0:
        dst[...] = src
        return dst

    def body(start, stop):
        dst[start:stop] = src[start:stop]

    parallel_for(dst.shape[0], body, dst.size // max(dst.shape[0], 1), enabled=_splittable(dst))
    return dst


def column_dots(a, b):
    """sum_i a[i, j] * b[i, j] for each column j of two (rows, C) arrays: one einsum per block,
    without the (rows, C) product array that `(a * b).sum(axis=0)` would write and read back.
    Partial sums are added in block order, so the result does not depend on thread timing."""
    xp = xp_of(a)
    partials = {}

    def body(start, stop):
        partials[start] = xp.einsum("ij,ij->j", a[start:stop], b[start:stop])

    parallel_for(a.shape[0], body, a.shape[1], enabled=_splittable(a))
    return sum_in_block_order(partials)


def sum_in_block_order(partials):
    """{first row of a block: that block's partial sum} added in the order of the rows, so the
    total does not depend on which thread ran which block, or on the thread count."""
    return functools.reduce(operator.add, (partials[k] for k in sorted(partials)))


def _splittable(array) -> bool:
    return type(array) is np.ndarray
