"""The fast paths: faster versions of a few reference ops, kept apart from the teaching code.

Everything a student reads in `minitl.ops`, `minitl.optim` and `minitl.embeddings` is the
chapter's math in plain NumPy. Where a training step gains from threads, another memory
layout, fused passes or scratch buffers (the NHWC convolution, batch norm and pooling on
threads, the in-place Adam update, the word2vec row scatter), that version lives here, and
tests prove it equal to its reference in float64 on odd shapes.

One switch chooses the path:

    import minitl as tl
    tl.fastpath.enabled()            # True by default: the fast versions run
    tl.fastpath.set_enabled(False)   # from now on, the reference code runs
    with tl.fastpath.use(False):     # or only inside a block
        ...

`MINITL_FASTPATH=0` (or 1) in the environment sets the starting value. A student copy made by
`minitl exercises export` has `ENABLED_BY_DEFAULT = False` below, so the code the student
writes is the code that trains in the lessons and the tests.

The ops choose their version where they are called, in plain sight, e.g. `minitl.ops.relu`:

    return (fastpath.elementwise.Relu if fastpath.enabled() else Relu).apply(a)

What lives here:

    parallel.py      element-wise work split across threads; set_num_threads / get_num_threads
    conv.py          convolution, batch norm and 2x2 max-pool in NHWC memory, on those threads
    elementwise.py   ReLU on those threads
    adam.py          the Adam update on all parameters at once, in cache-sized slices, in place
    blas.py          BLAS's y = a x + b y (axpby), which NumPy does not expose, for the Adam update
    aligned.py       arrays on cache-line boundaries, for the Adam update's moments and scratch
    sparse.py        word2vec's row scatter and AdaGrad's row update on a flat view of the table
    rnn.py           a whole LSTM layer as one Function: all input projections in one matmul,
                     the recurrence on preallocated buffers, backprop through time in one loop
    attention.py     scaled dot-product attention as one Function with a hand-written backward,
                     its batch slices on those threads
    gelu.py          a float32 GELU without SciPy's erf (float64 takes the exact one), on those threads
    layer_norm.py    layer norm over the last axis, in cache-sized slices of rows, on those threads
    linear.py        the linear layer, its bias gradient as one matrix-vector product

Each fast Function is its own class (not a subclass of its reference), so `out.grad_fn` says
which version recorded a node.
"""
from __future__ import annotations

import os

ENABLED_BY_DEFAULT = True


def _from_environment() -> bool:
    value = os.environ.get("MINITL_FASTPATH")
    if value is None or value == "":
        return ENABLED_BY_DEFAULT
    if value not in ("0", "1"):
        raise ValueError(f"MINITL_FASTPATH must be 0 (reference code) or 1 (fast paths), got {value!r}")
    return value == "1"


_enabled = _from_environment()


def enabled() -> bool:
    """True when the fast versions run, False when the reference code does."""
    return _enabled


def set_enabled(flag: bool) -> bool:
    """Turn the fast paths on (True) or off (False); returns the previous setting."""
    global _enabled
    if not isinstance(flag, bool):
        raise TypeError(f"set_enabled: expected True or False, got {flag!r}")
    previous, _enabled = _enabled, flag
    return previous


class use:
    """`with tl.fastpath.use(False):` runs a block on the reference code (True: fast paths),
    and restores the previous setting afterwards. Also a decorator."""

    def __init__(self, flag: bool):
        if not isinstance(flag, bool):
            raise TypeError(f"use: expected True or False, got {flag!r}")
        self.flag = flag

    def __enter__(self):
        self._previous = set_enabled(self.flag)
        return self

    def __exit__(self, *exc):
        set_enabled(self._previous)

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with use(self.flag):
                return fn(*args, **kwargs)

        return wrapper


def __getattr__(name):
    # fastpath.conv, fastpath.adam, ...: loaded on first use, which lets them import the
    # reference modules whose dispatch names them (minitl.ops.conv calls fastpath.conv.Conv2d)
    import importlib

    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


# the fast paths' threads (BLAS keeps its own setting; see parallel.py)
from .parallel import get_num_threads, set_num_threads  # noqa: E402,F401
