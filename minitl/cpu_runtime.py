"""Two process-wide settings that make CPU training steps faster: opt-in, via `tune()`.

`import minitl` changes nothing outside minitl. A program that trains on the CPU (the `minitl`
command, the experiments, the benchmarks) calls

    minitl.cpu_runtime.tune()   # returns what took, e.g. {"keep_freed_memory": True, ...}

once at its start; MINITL_CPU_TUNING=0 in the environment turns the call into a no-op. Both
settings concern the whole process, which is why a library must not make them on import:
they would change the memory use and the BLAS of every other library in the program.

1. Keep freed memory for reuse instead of handing it back to the operating system.

   A training step allocates and frees the same large arrays every time: an im2col patch
   matrix (tens of MB for the second conv of the benchmark CNN), its gradient, batch-norm and
   ReLU outputs of several MB each. glibc's malloc serves blocks above `M_MMAP_THRESHOLD` with a
   fresh `mmap` and returns them with `munmap` when freed, and it also trims the top of the
   heap back to the OS once more than `M_TRIM_THRESHOLD` is free there. Either way the next
   step's arrays land on pages the kernel must fault in and zero again, a sizeable part of a
   CNN step's time. PyTorch users get the same effect by preloading jemalloc or tcmalloc
   (Intel's CPU performance guide recommends it for this reason). We ask glibc with `mallopt`:
   blocks up to 1 GiB come from the heap, and up to 1 GiB of free memory stays in the process.
   The process keeps its peak working set instead of shrinking between steps.

2. Don't let idle BLAS threads spin.

   After each matrix product, OpenBLAS's worker threads busy-wait for the next one for 2^28
   cycles (about 0.1 s). A training step runs element-wise passes between its products, on
   `minitl.fastpath`'s threads, and a spinning BLAS thread takes a core away from them.
   OpenBLAS reads the spin time from OPENBLAS_THREAD_TIMEOUT (a power of two, 4..30) when it
   starts its threads, so we set it (unless the user did), have OpenBLAS read its environment
   again and shut its threads down; the next product starts them anew with the short timeout.
   Those two functions are exported by OpenBLAS but are not documented API: where they are
   missing (another BLAS, another build) nothing changes.

Elsewhere than glibc (macOS, musl) the first does nothing. benchmarks/RESULTS.md has what
each setting was worth, measured.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # the `param` numbers of glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30
# 2^20 cycles (about half a millisecond): back-to-back products still find their threads awake,
# and a longer element-wise phase between two products gets its cores back. Shorter made the
# MLP step wait for sleeping threads, longer left the CNN's element-wise phases sharing cores
# (the measurements are in benchmarks/RESULTS.md)
BLAS_SPIN_EXPONENT = 20

_tuned = None  # None: not tried yet; then a dict of what was applied


def keep_freed_memory(limit_bytes: int = KEEP_BYTES) -> bool:
    """Ask glibc to reuse freed blocks of up to `limit_bytes` instead of returning them to the
    OS. Returns True when glibc accepted both settings, False where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; both are needed (setting either one switches off glibc's
    # own dynamic adjustment of the thresholds)
    return bool(mallopt(M_MMAP_THRESHOLD, limit_bytes)) and bool(mallopt(M_TRIM_THRESHOLD, limit_bytes))


def _openblas_libraries():
    """The OpenBLAS builds NumPy has loaded (threadpoolctl finds them by their symbols)."""
    from threadpoolctl import threadpool_info

    return [info["filepath"] for info in threadpool_info() if info.get("internal_api") == "openblas"]


def stop_blas_spinning(exponent: int = BLAS_SPIN_EXPONENT) -> bool:
    """Make OpenBLAS's idle threads sleep after 2^exponent cycles instead of 2^28. Returns
    True when an OpenBLAS took the setting. A value already in OPENBLAS_THREAD_TIMEOUT (the
    user's choice) is kept."""
    import numpy  # noqa: F401  (loads the BLAS that we tune)

    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(exponent))
    applied = False
    for path in _openblas_libraries():
        try:
            lib = ctypes.CDLL(path)
            read_env, shutdown = lib.openblas_read_env, lib.blas_thread_shutdown_
        except (OSError, AttributeError):
            continue
        read_env()
        shutdown()  # the next product restarts the threads with the new timeout
        applied = True
    return applied


def tune() -> dict:
    """Apply both settings once per process (later calls return the first call's result).
    Returns what took: {"keep_freed_memory": bool, "stop_blas_spinning": bool}, or {} when
    MINITL_CPU_TUNING=0 turned tuning off."""
    global _tuned
    if _tuned is None:
        if os.environ.get("MINITL_CPU_TUNING", "1") == "0":
            _tuned = {}
        else:
            _tuned = {"keep_freed_memory": keep_freed_memory(), "stop_blas_spinning": stop_blas_spinning()}
    return dict(_tuned)


def tuned() -> dict | None:
    """What `tune()` applied in this process, or None when it has not been called."""
    return None if _tuned is None else dict(_tuned)
