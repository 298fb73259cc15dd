"""The CUDA kernels of minitl.kernels, run on the CPU through kernels/emulation (issue 15).

The unchanged .cu files are compiled with g++ after a header that supplies the CUDA they use,
and the Python wrappers launch them with the grid, block and arguments CuPy would get (see
kernels/emulation/__init__.py).  Against NumPy in float64:

* every SGEMM rung with all four transpose pairs, on sizes that are no multiple of the tiles,
  1x1x1, K = 0, batched and broadcast batches, pointers 4, 8 and 12 bytes off 16-byte
  alignment, NaN-poisoned outputs; tall matrices launched in slices of rows (W1); split-K;
* softmax, log-softmax and both backwards, on row lengths that reach every kernel of
  softmax.cu, misaligned rows, rows with -inf entries and rows of -inf only, empty inputs;
* the emulation itself: argument types checked against the C signature, CUDA's launch limits,
  deadlocks reported instead of hanging, the exercise stubs, rebuilds after an edit;
* the lesson's exercises (gpu.sgemm_tiled, gpu.softmax_warp_sum), and bugs planted in the
  .cu files, which the checks above must catch.

MINITL_EMU_SUBSET=sanitize selects the smaller set that test_kernels_under_sanitizers runs
again in a subprocess built with AddressSanitizer and UBSan.  Skipped without g++.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minitl import kernels
from minitl.kernels import _loader, emulation
from minitl.kernels.emulation import EmulationError, LaunchError

ROOT = Path(__file__).resolve().parent.parent
SANITIZE_PASS = os.environ.get("MINITL_EMU_SUBSET") == "sanitize"
REL_TOL = 1e-5
TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]

pytestmark = pytest.mark.skipif(not emulation.available(), reason="the CUDA emulation needs g++ (or $CXX)")
not_in_sanitize_pass = pytest.mark.skipif(SANITIZE_PASS, reason="not part of the sanitized pass")


@pytest.fixture(scope="module", autouse=True)
def _built():
    if emulation.available():
        emulation.prebuild()  # both .cu files at once


@pytest.fixture
def emu():
    with emulation.emulate():
        yield


_PAGE = mmap.PAGESIZE


def _fenced(nbytes: int) -> np.ndarray | None:
    """nbytes of memory (uint8) right below an inaccessible page, or None where that fails.

    A kernel that reads or writes past the end of such an array faults, and the emulation
    reports an invalid memory access for the thread that did it, where a plain allocation
    would let it corrupt the heap (the sanitized pass sees the same through ASan instead)."""
    size = -(-nbytes // _PAGE) * _PAGE
    try:
        region = mmap.mmap(-1, size + _PAGE)
        whole = np.frombuffer(region, np.uint8)
        guard = whole.ctypes.data + size
        if _libc.mprotect(ctypes.c_void_p(guard), ctypes.c_size_t(_PAGE), 0) != 0:
            return None
    except (OSError, AttributeError, ValueError):
        return None
    return whole[size - nbytes:size]


_libc = ctypes.CDLL(None, use_errno=True)


def placed(shape, offset: int = 0, values=None) -> np.ndarray:
    """A C-contiguous float32 array whose data starts `offset` floats past a 16-byte boundary
    and ends at most 12 bytes before an inaccessible page (in the sanitized pass: where its
    allocation ends, so AddressSanitizer sees any access past it)."""
    n = math.prod(shape)
    memory = None if SANITIZE_PASS else _fenced(4 * (n + offset) + 16)
    if memory is not None:
        end = memory.ctypes.data + memory.size  # page-aligned
        start = (end - 4 * n - 4 * offset) // 16 * 16 + 4 * offset
        x = memory[start - memory.ctypes.data:][:4 * n].view(np.float32).reshape(shape)
    else:
        base = np.empty(offset + n, np.float32)
        if base.ctypes.data % 16:  # an allocator without 16-byte alignment: pad instead
            base = np.empty(offset + n + 3, np.float32)
            start = (-base.ctypes.data % 16) // 4 + offset
            base = base[start - offset:start + n]
        x = base[offset:].reshape(shape)
    assert n == 0 or x.ctypes.data % 16 == 4 * offset
    if values is not None:
        x[...] = values
    return x


def rel_error(got, ref) -> float:
    """max |got - ref| / max |ref| over the finite entries of ref; NaN where ref has none is
    an error (an unwritten, NaN-poisoned output), and where ref is NaN got must be too."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape or not np.array_equal(np.isnan(got), np.isnan(ref)):
        return math.inf
    finite = np.isfinite(ref)
    if not np.array_equal(got[~finite], ref[~finite], equal_nan=True):
        return math.inf
    if not finite.any():
        return 0.0
    return float(np.abs(got[finite] - ref[finite]).max() / max(np.abs(ref[finite]).max(), 1e-30))


# ----------------------------------------------------------------------------- SGEMM

MATMUL_SHAPES = [  # (batch_a, batch_b, m, k, n)
    ((), (), 1, 1, 1), ((), (), 17, 17, 17), ((), (), 129, 129, 129), ((), (), 33, 5, 130),
    ((), (), 2, 300, 3), ((), (), 129, 0, 33), ((3,), (3,), 17, 40, 33), ((5,), (), 65, 24, 17),
    ((), (4,), 17, 33, 129), ((2, 3), (3,), 9, 8, 12),
]
OFFSETS = [(0, 0, 0), (1, 2, 3)]  # floats past 16-byte alignment of a, b and out
if SANITIZE_PASS:
    MATMUL_SHAPES = [((), (), 1, 1, 1), ((), (), 130, 17, 131), ((), (), 9, 0, 5), ((2, 1), (3,), 9, 8, 12)]


def run_matmul(rng, kernel, trans_a, trans_b, batch_a, batch_b, m, k, n, offsets=(0, 0, 0)):
    """(kernels.matmul's result, the float64 reference) on operands stored as the flags say."""
    op_a = rng.standard_normal(batch_a + (m, k)).astype(np.float32)
    op_b = rng.standard_normal(batch_b + (k, n)).astype(np.float32)
    a = np.swapaxes(op_a, -1, -2) if trans_a else op_a
    b = np.swapaxes(op_b, -1, -2) if trans_b else op_b
    a, b = placed(a.shape, offsets[0], a), placed(b.shape, offsets[1], b)
    ref = np.matmul(op_a.astype(np.float64), op_b.astype(np.float64))
    out = placed(ref.shape, offsets[2], np.nan)  # poisoned: an unwritten element fails
    assert kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out, kernel=kernel) is out
    return out, ref


@pytest.mark.parametrize("offsets", OFFSETS, ids=["aligned", "misaligned"])
@pytest.mark.parametrize("batch_a,batch_b,m,k,n", MATMUL_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=["nn", "nt", "tn", "tt"])
@pytest.mark.parametrize("kernel", list(kernels.MATMUL_KERNELS))
def test_matmul(emu, kernel, trans_a, trans_b, batch_a, batch_b, m, k, n, offsets):
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    out, ref = run_matmul(rng, kernel, trans_a, trans_b, batch_a, batch_b, m, k, n, offsets)
    err = rel_error(out, ref)
    assert err < REL_TOL, f"{kernel} {batch_a}{(m, k)} @ {batch_b}{(k, n)} ta={trans_a} tb={trans_b}: {err}"


SPLIT_K_SHAPES = [(128, 784, 512), (131, 301, 77), (64, 200, 64)]
UNSPLIT_SHAPES = [(129, 129, 129), (2, 300, 3), (257, 300, 131)]
if SANITIZE_PASS:
    SPLIT_K_SHAPES, UNSPLIT_SHAPES = [(131, 301, 77)], [(2, 300, 3)]


@pytest.mark.parametrize("m,k,n", SPLIT_K_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=["nn", "nt", "tn", "tt"])
def test_matmul_split_k(emu, monkeypatch, m, k, n, trans_a, trans_b):
    """Products of few tiles are cut along K (a batch of slices plus the last one), then summed.
    On a GPU only from K = 2048 on; here on shorter K, which takes the emulation seconds, not minutes."""
    monkeypatch.setattr(kernels, "_SPLIT_K_MIN_K", 64)
    assert kernels._k_splits(k, -(-m // 128) * -(-n // 128), kernels._EMULATED_MULTIPROCESSORS) > 1
    out, ref = run_matmul(np.random.default_rng(k), "warptile", trans_a, trans_b, (), (), m, k, n, (1, 3, 2))
    assert rel_error(out, ref) < REL_TOL


@pytest.mark.parametrize("m,k,n", UNSPLIT_SHAPES)
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=["nn", "nt", "tn", "tt"])
def test_matmul_warptile_without_split_k(emu, monkeypatch, m, k, n, trans_a, trans_b):
    """The shapes test_matmul sends through split-K, in one piece (as a GPU with few
    multiprocessors would run them): the kernel's own K loop over many tiles."""
    monkeypatch.setattr(kernels, "_EMULATED_MULTIPROCESSORS", 1)
    out, ref = run_matmul(np.random.default_rng(n), "warptile", trans_a, trans_b, (), (), m, k, n, (3, 1, 0))
    assert rel_error(out, ref) < REL_TOL


def test_k_splits_only_for_products_that_leave_the_gpu_idle():
    assert kernels._k_splits(8192, 4, 132) == 33         # 128x8192x512: 4 tiles, 33 slices of 256
    assert kernels._k_splits(65536, 1, 132) == 132       # 64x65536x64: one tile
    assert kernels._k_splits(2048, 4, 132) == 32         # K = 2048 is cut, slices of 64
    assert kernels._k_splits(2047, 4, 132) == 1          # shorter K is not (measured slower below 784)
    assert kernels._k_splits(784, 4, 132) == 1           # 128x784x512: one pass
    assert kernels._k_splits(4096, 32 * 32, 132) == 1    # 4096^3: 1024 tiles
    assert kernels._k_splits(4096, 70, 132) == 1         # half the GPU busy already


@not_in_sanitize_pass
@pytest.mark.parametrize("kernel", list(kernels.MATMUL_KERNELS))
def test_matmul_rows_and_batches_past_the_grid_limit(emu, monkeypatch, kernel):
    """W1: gridDim.y may not pass 65535 row tiles, nor gridDim.z 65535 batch entries.  With the
    limit lowered to 2, a product of 7 row tiles runs in 4 launches and a batch of 5 in a
    grid-stride loop over 2 z-blocks."""
    monkeypatch.setattr(kernels, "_MAX_GRID_YZ", 2)
    tile_m = kernels.MATMUL_KERNELS[kernel][0]
    rng = np.random.default_rng(5)
    for ta, tb in TRANSPOSES:
        out, ref = run_matmul(rng, kernel, ta, tb, (5,), (), 7 * tile_m - 3, 9, 19, (1, 0, 2))
        assert rel_error(out, ref) < REL_TOL, (ta, tb)


@pytest.mark.parametrize("m,k,n", [(33, 13, 18), (130, 7, 129)])
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=["nn", "nt", "tn", "tt"])
@pytest.mark.parametrize("kernel", list(kernels.MATMUL_KERNELS))
def test_matmul_kernels_with_padded_pitches(emu, kernel, trans_a, trans_b, m, k, n):
    """The kernels' contract allows a row pitch past the row (lda >= K, ...).  Pitches a
    multiple of 4 with rows that are not let the float4 paths run up to a row's end and no
    further: the padding holds NaN, which would show in C if it were read."""
    rng = np.random.default_rng(k)
    name = f"sgemm_warptile_{'t' if trans_a else 'n'}{'t' if trans_b else 'n'}" if kernel == "warptile" else f"sgemm_{kernel}"
    fn = kernels.get_function("matmul", name)
    op_a, op_b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)

    def pitched(x):  # x stored in rows padded with NaN up to the next multiple of 4, plus 4
        rows, cols = x.shape
        padded = placed((rows, (cols + 3) // 4 * 4 + 4), 0, np.nan)
        padded[:, :cols] = x
        return padded

    a = pitched(op_a.T if trans_a else op_a)
    b = pitched(op_b.T if trans_b else op_b)
    c = placed((m, (n + 3) // 4 * 4 + 4), 0, np.nan)
    tile_m, tile_n, block = kernels.MATMUL_KERNELS[kernel]
    i32, i64 = np.int32, np.int64
    fn((-(-n // tile_n), -(-m // tile_m), 1), block,
       (a, b, c, i32(m), i32(n), i32(k), i32(a.shape[1]), i32(b.shape[1]), i32(c.shape[1]),
        i32(trans_a), i32(trans_b), i64(0), i64(0), i64(0), i32(1)))
    assert rel_error(c[:, :n], op_a.astype(np.float64) @ op_b) < REL_TOL
    assert np.isnan(c[:, n:]).all()  # nothing written past the rows' end


def test_launch_past_the_grid_limit_is_refused(emu):
    """What W1 was: CUDA refuses gridDim.y = 65536, and so does the emulation."""
    fn = kernels.get_function("matmul", "sgemm_naive")
    a = np.zeros((1, 1), np.float32)
    i32, i64 = np.int32, np.int64
    args = (a, a, a, i32(1), i32(1), i32(1), i32(1), i32(1), i32(1), i32(0), i32(0), i64(0), i64(0), i64(1), i32(1))
    with pytest.raises(LaunchError, match="grid dimension y = 65536"):
        fn((1, 65536, 1), (32, 8, 1), args)
    fn((1, 1, 1), (32, 8, 1), args)


@not_in_sanitize_pass
def test_matmul_views_transposed_strided_and_broadcast(emu):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 9)).astype(np.float32)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    for got, ref in [(kernels.matmul(x, w), x @ w), (kernels.matmul(w.T, x.T), w.T @ x.T),  # F-order views
                     (kernels.matmul(x[:, ::2], w[::2]), x[:, ::2] @ w[::2]),              # strided
                     (kernels.matmul(x[None, None], np.stack([w, 2 * w])), x[None, None] @ np.stack([w, 2 * w]))]:
        assert rel_error(got, ref.astype(np.float64)) < REL_TOL


@not_in_sanitize_pass
def test_warptile_with_two_blocks_per_multiprocessor(emu):
    """-DWT_MIN_BLOCKS=2 (the variant bench.py measures) reaches the compiler and computes the same."""
    fn = kernels.get_function("matmul", "sgemm_warptile_nn", options=("--std=c++14", "-DWT_MIN_BLOCKS=2"))
    rng = np.random.default_rng(2)
    m, k, n = 130, 33, 129
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    c = np.full((m, n), np.nan, np.float32)
    i32, i64 = np.int32, np.int64
    fn((2, 2, 1), (256,), (a, b, c, i32(m), i32(n), i32(k), i32(k), i32(n), i32(n), i32(0), i32(0),
                           i64(0), i64(0), i64(m * n), i32(1)))
    assert rel_error(c, a.astype(np.float64) @ b) < REL_TOL
    assert Path(fn.module.path) != Path(kernels.get_function("matmul", "sgemm_warptile_nn").module.path)


# ----------------------------------------------------------------------------- softmax

SOFTMAX_COLS = [1, 3, 4, 5, 31, 32, 33, 64, 100, 128, 129, 256, 257, 1000, 1024, 1025, 4099, 8192, 8193,
                16384, 16385, 32768, 32769]
if SANITIZE_PASS:
    SOFTMAX_COLS = [3, 32, 33, 129, 257, 500, 1000, 1025, 8192, 16384, 32768, 32769]


def rows_for(cols: int) -> int:
    """Enough rows for several row groups and a partial last block, fewer for long rows."""
    return 133 if cols <= 128 else 37 if cols <= 1024 else 3


def softmax64(x, axis=-1):
    z = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        z = np.exp(z - z.max(axis=axis, keepdims=True))
        return z / z.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize("masked", [False, True], ids=["plain", "masked"])
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
@pytest.mark.parametrize("cols", SOFTMAX_COLS)
def test_softmax(emu, cols, offset, masked):
    """Forward and backward, softmax and log-softmax, against float64 NumPy.  Masked: every
    third entry -inf (an attention mask), and row 0 -inf everywhere, which gives NaN, as in
    PyTorch."""
    rows = rows_for(cols)
    rng = np.random.default_rng(cols)
    x = rng.standard_normal((rows, cols)).astype(np.float32) * 4
    if masked:
        x[:, ::3] = -np.inf
        x[:, -1] = 0.5 if cols > 1 else x[:, -1]
        x[0] = -np.inf
    x = placed(x.shape, offset, x)
    p = softmax64(x)
    with np.errstate(divide="ignore"):
        log_p = np.log(p)
    assert rel_error(kernels.softmax(x), p) < REL_TOL
    assert rel_error(kernels.log_softmax(x), log_p) < REL_TOL

    # backward from the float64 forward, so only the backward kernel's error is measured;
    # without the all -inf row, whose y is NaN
    keep = slice(1, None) if masked else slice(None)
    y, log_y = p[keep], log_p[keep]
    dy = placed(y.shape, 1 - offset, rng.standard_normal(y.shape))
    with np.errstate(invalid="ignore"):
        dx = y * (dy - (dy * y).sum(-1, keepdims=True))
        dx_log = dy - np.exp(log_y) * dy.sum(-1, keepdims=True)
    assert rel_error(kernels.softmax_backward(placed(y.shape, offset, y), dy), dx) < REL_TOL
    assert rel_error(kernels.log_softmax_backward(placed(y.shape, offset, log_y), dy), dx_log) < REL_TOL


def test_every_kernel_is_reached():
    """The launch plans of the shapes above use every kernel in both .cu files."""
    softmax_names = {kernels.softmax_launch(d, 1, c)[0] for d in ("forward", "backward") for c in SOFTMAX_COLS}
    matmul_names = {f"sgemm_{r}" for r in kernels.MATMUL_KERNELS if r != "warptile"}
    matmul_names |= {f"sgemm_warptile_{t}" for t in ("nn", "nt", "tn", "tt")}
    with emulation.emulate():
        assert softmax_names == set(emulation.load(_loader._path("softmax")).kernels)
        assert matmul_names == set(emulation.load(_loader._path("matmul")).kernels)


@not_in_sanitize_pass
def test_softmax_launch_plans():
    assert kernels.softmax_launch("forward", 1000, 7) == ("softmax_forward_warp8", (8,), (128,), 1)
    assert kernels.softmax_launch("backward", 1000, 7) == ("softmax_backward_warp4", (16,), (128,), 2)
    assert kernels.softmax_launch("forward", 10, 128) == ("softmax_forward_warp8", (2,), (128,), 16)
    assert kernels.softmax_launch("backward", 10, 128) == ("softmax_backward_warp4", (3,), (128,), 32)
    assert kernels.softmax_launch("forward", 10, 129) == ("softmax_forward_warp8", (3,), (128,), 32)
    assert kernels.softmax_launch("backward", 10, 129) == ("softmax_backward_warp8", (3,), (128,), 32)
    assert kernels.softmax_launch("forward", 10, 1024) == ("softmax_forward_warp", (3,), (128,), 32)
    assert kernels.softmax_launch("forward", 10, 1025) == ("softmax_forward_block8", (10,), (160,), None)
    assert kernels.softmax_launch("forward", 10, 32768) == ("softmax_forward_block32", (10,), (1024,), None)
    assert kernels.softmax_launch("backward", 10, 16385) == ("softmax_backward_block", (10,), (1024,), None)


@not_in_sanitize_pass
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_axes(emu, axis):
    x = np.random.default_rng(2).standard_normal((3, 5, 4)).astype(np.float32)
    ref = softmax64(x, axis)
    y = kernels.softmax(x, axis=axis)
    assert y.shape == x.shape and y.flags.c_contiguous
    assert rel_error(y, ref) < REL_TOL
    assert rel_error(kernels.log_softmax(x, axis=axis), np.log(ref)) < REL_TOL
    dy = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    ref_dx = ref * (dy - (dy * ref).sum(axis, keepdims=True))
    assert rel_error(kernels.softmax_backward(ref.astype(np.float32), dy, axis=axis), ref_dx) < REL_TOL


@not_in_sanitize_pass
@pytest.mark.parametrize("shape,axis", [((0, 5), -1), ((5, 0), -1), ((2, 0, 3), 0), ((0,), 0)])
def test_softmax_empty(emu, shape, axis):
    x = np.zeros(shape, np.float32)
    for fn in (kernels.softmax, kernels.log_softmax):
        assert fn(x, axis=axis).shape == shape
    for fn in (kernels.softmax_backward, kernels.log_softmax_backward):
        assert fn(x, x, axis=axis).shape == shape


# ----------------------------------------------------------------------------- the emulation itself

PROBE = r"""
extern "C" __global__ void __launch_bounds__(64)
probe(const float* x, float* y, int n, long long scale, int mode)
{
    __shared__ float s[64];
    const int t = threadIdx.x;
    if (mode == 0) {          // a rotation through shared memory
        s[t] = x[t];
        __syncthreads();
        y[t] = s[(t + 1) % blockDim.x] * scale;
    } else if (mode == 1) {   // a barrier one thread never reaches
        if (t == 5) return;
        __syncthreads();
    } else if (mode == 2) {   // shared memory nobody wrote
        y[t] = s[t];
    } else if (mode == 3) {   // a shuffle with a lane missing
        float v = x[t];
        if (t % 32 == 7) return;
        y[t] = v + __shfl_xor_sync(0xffffffffu, v, 1);
    } else if (mode == 4) {
        __trap();
    } else if (mode == 5) {   // the four shuffles, as CUDA defines them
        const float v = x[t];
        y[t] = __shfl_sync(0xffffffffu, v, 3) + 10.0f * __shfl_up_sync(0xffffffffu, v, 2)
             + 100.0f * __shfl_down_sync(0xffffffffu, v, 5, 16) + 1000.0f * __shfl_xor_sync(0xffffffffu, v, 6, 8);
    } else if (mode == 6) {
        MINITL_EXERCISE_STUB("exercise demo.stub: a hint");
    } else if (mode == 7) {   // a wild write
        *(volatile float*)(y - (1LL << 40)) = 1.0f;
    }
}
"""


@not_in_sanitize_pass
def test_the_header_leaves_the_standard_library_alone(tmp_path):
    """cuda_emu.h defines CUDA's qualifiers as macros; none may clash with a name libstdc++
    uses after it (a __noinline__ macro broke GCC 13's <deque>, on the lent GPU machine)."""
    headers = ["algorithm", "atomic", "condition_variable", "deque", "functional", "memory", "mutex",
               "string", "thread", "unordered_map", "vector"]
    unit = tmp_path / "unit.cpp"
    unit.write_text('#include "cuda_emu.h"\n' + "".join(f"#include <{h}>\n" for h in headers))
    proc = subprocess.run([emulation.compiler(), "-std=c++17", "-fsyntax-only", f"-I{Path(emulation.__file__).parent}",
                           str(unit)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    path = tmp_path_factory.mktemp("probe") / "probe.cu"
    path.write_text(PROBE)
    return emulation.load(path).get_function("probe")


def run_probe(probe, mode, block=64):
    x = np.arange(64, dtype=np.float32)
    y = np.full(64, -1.0, np.float32)
    probe(1, block, (x, y, np.int32(64), np.int64(2), np.int32(mode)))
    return x, y


@not_in_sanitize_pass
def test_probe_barriers_and_shuffles(probe):
    x, y = run_probe(probe, 0)
    assert np.array_equal(y, np.roll(x, -1) * 2)
    assert probe.signature == "probe(const float*, float*, int, long long, int)"
    assert probe.max_threads_per_block == 64
    _, y = run_probe(probe, 2)
    assert np.isnan(y).all()  # __shared__ memory is poisoned before each block
    x, y = run_probe(probe, 5)
    lane, ref = np.arange(64) % 32, np.zeros(64)
    for t in range(64):
        w, l = t - lane[t], lane[t]
        up = l - 2 if l >= 2 else l
        down = l + 5 if (l % 16) + 5 < 16 else l
        xor = l ^ 6 if (l ^ 6) // 8 <= l // 8 else l
        ref[t] = x[w + 3] + 10 * x[w + up] + 100 * x[w + down] + 1000 * x[w + xor]
    assert np.array_equal(y, ref)


@not_in_sanitize_pass
def test_probe_failures_are_reported_not_hung(probe):
    with pytest.raises(LaunchError, match=r"deadlock.*__syncthreads: 0-4, 6-63.*returned: 5"):
        run_probe(probe, 1)
    with pytest.raises(LaunchError, match=r"deadlock.*returned: 7, 39.*warp 0, lanes 0-6, 8-31, wait at __shfl_xor_sync"):
        run_probe(probe, 3)
    with pytest.raises(LaunchError, match=r"__trap\(\) called in block \(0, 0, 0\), thread \(0, 0, 0\)"):
        run_probe(probe, 4)
    with pytest.raises(NotImplementedError, match="^exercise demo.stub: a hint$"):
        run_probe(probe, 6)
    with pytest.raises(LaunchError, match="invalid memory access"):
        run_probe(probe, 7)
    run_probe(probe, 0)  # the emulation is still sound after all of that


@not_in_sanitize_pass
def test_arguments_are_checked_against_the_c_signature(probe):
    x, y = np.zeros(64, np.float32), np.zeros(64, np.float32)
    with pytest.raises(TypeError, match=r"argument 2 \(int\) must be numpy.int32, got numpy.int64"):
        probe(1, 64, (x, y, np.int64(64), np.int64(2), np.int32(0)))
    with pytest.raises(TypeError, match=r"argument 3 \(long long\) must be a NumPy scalar.*CuPy passes Python ints"):
        probe(1, 64, (x, y, np.int32(64), 2, np.int32(0)))
    with pytest.raises(TypeError, match=r"argument 0 \(const float\*\) must point to float32, got an array of float64"):
        probe(1, 64, (x.astype(np.float64), y, np.int32(64), np.int64(2), np.int32(0)))
    y.flags.writeable = False
    with pytest.raises(TypeError, match="read-only"):
        probe(1, 64, (x, y, np.int32(64), np.int64(2), np.int32(0)))
    with pytest.raises(TypeError, match="takes 5 arguments, got 4"):
        probe(1, 64, (x, x, np.int32(64), np.int64(2)))


@not_in_sanitize_pass
def test_launch_configuration_is_checked(probe):
    x, y = np.zeros(64, np.float32), np.zeros(64, np.float32)
    args = (x, y, np.int32(64), np.int64(2), np.int32(0))
    with pytest.raises(LaunchError, match="__launch_bounds__"):
        probe(1, 128, args)
    with pytest.raises(LaunchError, match="block dimension z = 65"):
        probe(1, (1, 1, 65), args)
    with pytest.raises(LaunchError, match="grid dimension x = 0"):
        probe(0, 64, args)
    with pytest.raises(LaunchError, match="dynamic shared memory"):
        probe(1, 64, args, shared_mem=16)


@not_in_sanitize_pass
def test_builds_are_cached_by_source_and_errors_name_the_line(tmp_path):
    path = tmp_path / "edit.cu"
    path.write_text(PROBE)
    first = emulation.build(path)
    assert emulation.build(path) == first
    path.write_text(PROBE.replace("* scale", "* scale * 3"))
    second = emulation.load(path)
    assert second.path != first
    x, y = np.arange(64, dtype=np.float32), np.zeros(64, np.float32)
    second.get_function("probe")(1, 64, (x, y, np.int32(64), np.int64(2), np.int32(0)))
    assert np.array_equal(y, np.roll(x, -1) * 6)  # the edit took effect
    path.write_text(PROBE.replace("s[t] = x[t];", "s[t] = x[t]"))
    with pytest.raises(EmulationError, match=r"edit.cu:\d+"):
        emulation.build(path)


# ----------------------------------------------------------------------------- lesson 12's exercises

@pytest.mark.exercise("gpu.sgemm_tiled")
@pytest.mark.parametrize("trans_a,trans_b", TRANSPOSES, ids=["nn", "nt", "tn", "tt"])
def test_exercise_sgemm_tiled(emu, trans_a, trans_b):
    """The shared-memory tile loop of rung 2 (kernels/matmul.cu, sgemm_tiled)."""
    rng = np.random.default_rng(3)
    for shape in [(1, 1, 1), (33, 70, 47), (64, 64, 64)]:
        out, ref = run_matmul(rng, "tiled", trans_a, trans_b, (), (), *shape)
        assert rel_error(out, ref) < REL_TOL, shape


@pytest.mark.exercise("gpu.softmax_warp_sum")
@pytest.mark.parametrize("cols", [1, 7, 100, 1000, 3000])
def test_exercise_softmax_warp_sum(emu, cols):
    """The warp-shuffle sum of kernels/softmax.cu (group_sum), through every kernel using it."""
    x = np.random.default_rng(cols).standard_normal((9, cols)).astype(np.float32)
    p = softmax64(x)
    assert rel_error(kernels.softmax(x), p) < REL_TOL
    assert rel_error(kernels.log_softmax(x), np.log(p)) < REL_TOL
    dy = np.ones_like(x)  # rows of p sum to 1, so dx = p * (1 - 1) = 0
    assert np.abs(kernels.softmax_backward(p.astype(np.float32), dy)).max() < 1e-6


# ----------------------------------------------------------------------------- stubs and planted bugs

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)// BEGIN EXERCISE (?P<id>\S+)\n(?P<hints>(?:[ \t]*// hint:[^\n]*\n)+)"
                    r"(?P<code>.*?)^[ \t]*// END EXERCISE", re.MULTILINE | re.DOTALL)


def cu_exercises() -> list[tuple[str, str]]:
    """(file stem, exercise id) of every exercise region in the .cu files."""
    return [(p.stem, m.group("id")) for p in kernels.cu_files() for m in _BEGIN.finditer(p.read_text())]


def stubbed(text: str, ex_id: str) -> tuple[str, str]:
    """The source with exercise ex_id's code replaced by its stub line, as a student copy has it;
    and the stub's message."""
    m = next(m for m in _BEGIN.finditer(text) if m.group("id") == ex_id)
    hint = " ".join(re.sub(r"^\s*// hint:\s?", "", h).strip() for h in m.group("hints").splitlines())
    message = f"exercise {ex_id}: {hint}"
    stub = f'{m.group("indent")}MINITL_EXERCISE_STUB("{message}");\n'
    return text[:m.start("code")] + stub + text[m.end("code"):], message


def test_the_cu_files_hold_the_lesson_exercises():
    assert sorted(cu_exercises()) == [("matmul", "gpu.sgemm_tiled"), ("softmax", "gpu.softmax_warp_sum")]


STUB_REACH = {  # exercise -> (a kernel that reaches the stub, one that does not)
    "gpu.sgemm_tiled": ("sgemm_tiled", "sgemm_warptile_nn"),
    "gpu.softmax_warp_sum": ("softmax_forward_warp8", "softmax_forward_block"),
}


@not_in_sanitize_pass
@pytest.mark.parametrize("name,ex_id", cu_exercises())
def test_stubbed_exercise_raises_its_message(tmp_path, name, ex_id):
    """In a student copy the stub makes the wrapper raise NotImplementedError("exercise id: hint"):
    through the emulation when the kernel reaches it, before compiling on a GPU."""
    text, message = stubbed(_loader._path(name).read_text(), ex_id)
    (tmp_path / f"{name}.cu").write_text(text)
    reaches, misses = STUB_REACH[ex_id]
    assert _loader.exercise_stubs(name, reaches, text) == [message]
    assert _loader.exercise_stubs(name, misses, text) == []
    with emulation.emulate(sources=tmp_path):
        with pytest.raises(NotImplementedError) as err:
            if name == "matmul":
                kernels.matmul(np.ones((40, 40), np.float32), np.ones((40, 40), np.float32), kernel="tiled")
            else:
                kernels.softmax(np.ones((3, 7), np.float32))
        assert str(err.value) == message


# Bugs planted in the sources, each one that the kernel checks above must catch with wrong
# values or a reported failure; tests/plant_cuda_bugs.py runs a longer list, sanitizers included.
PLANTED = {
    "matmul": ("            __syncthreads();  // next buffer complete; this one no longer being read\n", ""),
    "softmax": ("for (int o = lanes / 2; o > 0; o /= 2) v = fmaxf(", "for (int o = lanes / 2; o > 1; o /= 2) v = fmaxf("),
}


@not_in_sanitize_pass
@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_planted_bug_is_caught(tmp_path, name):
    old, new = PLANTED[name]
    text = _loader._path(name).read_text()
    assert text.count(old) == 1
    (tmp_path / f"{name}.cu").write_text(text.replace(old, new))
    rng = np.random.default_rng(0)
    with emulation.emulate(sources=tmp_path):
        if name == "matmul":
            out, ref = run_matmul(rng, "warptile", False, False, (), (), 129, 129, 129)
            assert rel_error(out, ref) > 1e-3
        else:
            x = rng.standard_normal((37, 100)).astype(np.float32)
            assert rel_error(kernels.softmax(x), softmax64(x)) > 1e-3


# ----------------------------------------------------------------------------- sanitizers

@not_in_sanitize_pass
def test_kernels_under_sanitizers():
    """This file's kernel checks (MINITL_EMU_SUBSET=sanitize: fewer shapes) again, built with
    AddressSanitizer and UBSan, in a process with the ASan runtime preloaded: an out-of-bounds
    or misaligned access or undefined behaviour anywhere ends it with a report."""
    try:
        env = emulation.sanitizer_env()
    except EmulationError as err:
        pytest.skip(str(err))
    env.update(MINITL_EMU_SUBSET="sanitize", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    # -s: a sanitizer's report goes to stderr as the process ends; pytest's capture would lose it
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-s", "-p", "no:cacheprovider", __file__],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    assert proc.returncode == 0, f"the sanitized pass failed:\n{tail}"
    assert re.search(r"\d+ passed", proc.stdout) and " failed" not in proc.stdout, tail
