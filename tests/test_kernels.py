"""Tests of the CUDA kernels in kernels/ (issue 5).

Three layers, each running wherever it can:

* compile: every .cu file compiles with nvcc for sm_90 (H100) and sm_80 (A100), and
  ptxas reports no register spills.  Runs on any machine with nvcc, GPU or not, so a
  syntax error fails CI.
* wrapper: the Python wrappers' shape, stride and transpose bookkeeping, checked on the
  CPU by running them with NumPy in CuPy's place and a NumPy model of each kernel's
  documented parameter contract.  No GPU needed.
* gpu: the kernels themselves against CuPy (float64 references) on awkward shapes;
  skipped without CuPy and a GPU.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from minitl import kernels

NVCC = shutil.which("nvcc")
ARCHS = ("sm_90", "sm_80")
REL_TOL = 1e-4


# ----------------------------------------------------------------------------- compile

@pytest.fixture(scope="module")
def nvcc_results():
    """{(file name, arch): CompletedProcess}, all compiled in parallel into a temp dir."""
    if NVCC is None:
        pytest.skip("nvcc not found on PATH")
    jobs = [(path, arch) for path in kernels.cu_files() for arch in ARCHS]
    with tempfile.TemporaryDirectory() as tmp:
        def compile_one(job):
            path, arch = job
            cubin = Path(tmp) / f"{path.stem}_{arch}.cubin"
            cmd = [NVCC, "--cubin", f"-arch={arch}", "-Xptxas", "-v", "-o", str(cubin), str(path)]
            return job, subprocess.run(cmd, capture_output=True, text=True, timeout=300)

        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            return {(path.name, arch): proc for (path, arch), proc in pool.map(compile_one, jobs)}


def ptxas_report(stderr: str) -> dict[str, dict[str, int]]:
    """Per kernel: registers and spill bytes, parsed from `ptxas -v` output."""
    report, current = {}, None
    for line in stderr.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)'", line):
            current = report.setdefault(m.group(1), {})
        elif current is not None and (m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)):
            current["spill_stores"], current["spill_loads"] = int(m.group(1)), int(m.group(2))
        elif current is not None and (m := re.search(r"Used (\d+) registers", line)):
            current["registers"] = int(m.group(1))
    return report


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cu", [p.name for p in kernels.cu_files()])
def test_cu_compiles_without_spills(nvcc_results, cu, arch):
    proc = nvcc_results[(cu, arch)]
    assert proc.returncode == 0, f"nvcc failed on {cu} for {arch}:\n{proc.stderr}"
    report = ptxas_report(proc.stderr)
    assert report, f"no ptxas report for {cu}:\n{proc.stderr}"
    spills = {name: r for name, r in report.items() if r.get("spill_stores") or r.get("spill_loads")}
    assert not spills, f"register spills in {cu} for {arch}: {spills}\n{proc.stderr}"


def test_every_matmul_rung_is_in_the_source():
    text = kernels.source("matmul")
    for rung in kernels.MATMUL_KERNELS:
        names = [f"sgemm_{rung}"] if rung != "warptile" else [f"sgemm_warptile_{t}" for t in ("nn", "nt", "tn", "tt")]
        for name in names:
            assert re.search(rf"\b{name}\b", text), name


def test_source_sections():
    tiled = kernels.source("matmul", "sgemm_tiled")
    assert tiled.lstrip().startswith("//") and "__syncthreads" in tiled and tiled.rstrip().endswith("}")
    assert "sgemm_naive" not in tiled and "sgemm_blocktile" not in tiled.split("sgemm_tiled", 1)[1]
    assert "softmax_forward_warp" in kernels.source("softmax", "softmax_forward_warp")
    with pytest.raises(ValueError, match="no kernel source"):
        kernels.source("conv")
    with pytest.raises(ValueError, match="no kernel or function"):
        kernels.source("matmul", "sgemm_magic")


def test_import_does_not_import_cupy():
    code = "import sys; from minitl import kernels; kernels.source('matmul'); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(kernels.__file__).parent.parent, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- wrapper

def _matrix(X, ld, rows, cols):
    """A row-major rows x cols matrix with pitch ld, read from a flat buffer."""
    return np.lib.stride_tricks.as_strided(X, (rows, cols), (ld * 4, 4))


class _FakeSgemm:
    """The parameter contract written at the top of matmul.cu, in NumPy."""

    def __init__(self, name):
        self.name = name

    def __call__(self, grid, block, args):
        A, B, C, M, N, K, lda, ldb, ldc, ta, tb, sa, sb, sc, batch = args
        if self.name.startswith("sgemm_warptile_"):  # the name decides, not the flags
            ta, tb = (self.name[-2] == "t"), (self.name[-1] == "t")
        A, B, C = A.reshape(-1), B.reshape(-1), C.reshape(-1)
        for b in range(int(batch)):
            a = _matrix(A[b * sa:], lda, *((K, M) if ta else (M, K)))
            bm = _matrix(B[b * sb:], ldb, *((N, K) if tb else (K, N)))
            _matrix(C[b * sc:], ldc, M, N)[...] = (a.T if ta else a) @ (bm.T if tb else bm)


class _FakeSoftmax:
    def __init__(self, name):
        self.backward = "backward" in name

    def __call__(self, grid, block, args):
        *ins, out, rows, cols, log = args
        rows_of = [x.reshape(int(rows), int(cols)) for x in ins]
        o = out.reshape(int(rows), int(cols))
        if not self.backward:
            (x,) = rows_of
            z = x - x.max(axis=1, keepdims=True)
            o[...] = z - np.log(np.exp(z).sum(1, keepdims=True)) if log else np.exp(z) / np.exp(z).sum(1, keepdims=True)
        else:
            y, dy = rows_of
            o[...] = dy - np.exp(y) * dy.sum(1, keepdims=True) if log else y * (dy - (dy * y).sum(1, keepdims=True))


@pytest.fixture
def numpy_as_cupy(monkeypatch):
    """Run the wrappers with NumPy as the array module and the kernel contracts in NumPy."""
    monkeypatch.setattr(kernels, "_cupy", lambda: np)
    monkeypatch.setattr(kernels, "get_function",
                        lambda file, name: _FakeSgemm(name) if file == "matmul" else _FakeSoftmax(name))


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("shape_a,shape_b", [((5, 7), (7, 3)), ((2, 5, 7), (7, 3)), ((5, 7), (4, 7, 3)),
                                             ((4, 1, 5, 7), (3, 7, 3)), ((2, 3, 1, 7), (2, 3, 7, 1))])
def test_matmul_wrapper_bookkeeping(numpy_as_cupy, shape_a, shape_b, trans_a, trans_b):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    # a transposed a is stored transposed (a contiguous copy); a transposed b is passed
    # as a view of b, which the wrapper hands over as b's memory with the flag flipped
    a_in = np.ascontiguousarray(np.swapaxes(a, -1, -2)) if trans_a else a
    b_in = np.swapaxes(b, -1, -2) if trans_b else b
    ref = np.matmul(a.astype(np.float64), b.astype(np.float64))
    got = kernels.matmul(a_in, b_in, trans_a=trans_a, trans_b=trans_b)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_matmul_wrapper_transposed_view_and_strided_input(numpy_as_cupy):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((6, 9)).astype(np.float32)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    np.testing.assert_allclose(kernels.matmul(x, w), x @ w, rtol=1e-5)
    np.testing.assert_allclose(kernels.matmul(w.T, x.T), w.T @ x.T, rtol=1e-5)          # F-order views
    np.testing.assert_allclose(kernels.matmul(x[:, ::2], w[::2]), x[:, ::2] @ w[::2], rtol=1e-5)  # strided
    out = np.full((4, 9), np.nan, dtype=np.float32)
    assert kernels.matmul(x, w, out=out) is out
    np.testing.assert_allclose(out, x @ w, rtol=1e-5)


def test_matmul_wrapper_errors(numpy_as_cupy):
    a, b = np.zeros((3, 4), np.float32), np.zeros((5, 6), np.float32)
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(5, 6\)"):
        kernels.matmul(a, b)
    with pytest.raises(TypeError, match="float32"):
        kernels.matmul(a.astype(np.float64), b)
    with pytest.raises(ValueError, match="broadcast"):
        kernels.matmul(np.zeros((2, 3, 4), np.float32), np.zeros((3, 4, 6), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        kernels.matmul(a, np.zeros((4, 6), np.float32), out=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="kernel must be"):
        kernels.matmul(a, np.zeros((4, 6), np.float32), kernel="fast")
    assert kernels.matmul(np.zeros((0, 4), np.float32), np.zeros((4, 6), np.float32)).shape == (0, 6)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_wrapper_axes(numpy_as_cupy, axis):
    x = np.random.default_rng(2).standard_normal((3, 5, 4)).astype(np.float32)
    z = x - x.max(axis=axis, keepdims=True)
    ref = np.exp(z) / np.exp(z).sum(axis=axis, keepdims=True)
    y = kernels.softmax(x, axis=axis)
    assert y.shape == x.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, ref, rtol=1e-5)
    np.testing.assert_allclose(kernels.log_softmax(x, axis=axis), np.log(ref), rtol=1e-4, atol=1e-5)
    dy = np.ones_like(x)
    np.testing.assert_allclose(kernels.softmax_backward(y, dy, axis=axis), 0, atol=1e-6)  # rows of y sum to 1
    with pytest.raises(ValueError, match="same shape"):
        kernels.softmax_backward(y, dy[:1])


# ----------------------------------------------------------------------------- gpu

def _gpu():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no CuPy, no driver, no device: all mean "skip"
        return None
    return cupy


cp = _gpu()
gpu = pytest.mark.skipif(cp is None, reason="needs CuPy and a CUDA GPU")


def rel_error(got, ref) -> float:
    """max |got - ref| / max |ref|, NaN-aware: an unwritten (NaN-poisoned) element fails."""
    got, ref = cp.asarray(got, dtype=cp.float64), cp.asarray(ref, dtype=cp.float64)
    if got.shape != ref.shape or bool(cp.isnan(got).any()):
        return float("inf")
    scale = float(cp.abs(ref).max()) if ref.size else 1.0
    return float(cp.abs(got - ref).max()) / max(scale, 1e-30) if ref.size else 0.0


MATMUL_SHAPES = [  # (batch_a, batch_b, m, k, n)
    ((), (), 1, 1, 1), ((), (), 17, 17, 17), ((), (), 129, 129, 129), ((), (), 1000, 1000, 1000),
    ((), (), 1, 1000, 17), ((), (), 129, 17, 1000), ((), (), 128, 784, 512), ((), (), 33, 5, 130),
    ((3,), (3,), 17, 129, 33), ((5,), (), 129, 64, 17), ((), (4,), 17, 33, 129), ((2, 3), (3,), 65, 31, 47),
]


@gpu
@pytest.mark.parametrize("kernel", list(kernels.MATMUL_KERNELS))
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("batch_a,batch_b,m,k,n", MATMUL_SHAPES)
def test_matmul_gpu(kernel, trans_a, trans_b, batch_a, batch_b, m, k, n):
    if kernel == "naive" and m * n * k >= 10**8:
        pytest.skip("naive rung on 1000^3: slow and already covered by smaller shapes")
    rng = cp.random.default_rng(m * 7 + n * 3 + k)
    op_a = rng.standard_normal(batch_a + (m, k), dtype=cp.float32)
    op_b = rng.standard_normal(batch_b + (k, n), dtype=cp.float32)
    a = cp.ascontiguousarray(cp.swapaxes(op_a, -1, -2)) if trans_a else op_a
    b = cp.ascontiguousarray(cp.swapaxes(op_b, -1, -2)) if trans_b else op_b
    ref = cp.matmul(op_a.astype(cp.float64), op_b.astype(cp.float64))
    out = cp.full(ref.shape, cp.nan, dtype=cp.float32)  # poison: unwritten elements fail
    kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out, kernel=kernel)
    cp.cuda.Device().synchronize()
    err = rel_error(out, ref)
    assert err < REL_TOL, f"{kernel} {batch_a}{(m, k)} @ {batch_b}{(k, n)} ta={trans_a} tb={trans_b}: rel error {err}"


@gpu
def test_matmul_gpu_unaligned_views():
    """Offsets that break 16-byte alignment must take the scalar path, not fault."""
    base = cp.random.default_rng(0).standard_normal((130, 131), dtype=cp.float32)
    a, b = base[1:, 1:], base[:-1, 2:].T  # odd offsets, odd pitch
    ref = cp.matmul(a.astype(cp.float64), b.astype(cp.float64))
    err = rel_error(kernels.matmul(a, b), ref)
    assert err < REL_TOL, err


ROW_LENGTHS = [1, 7, 32, 33, 1000, 1024, 1025, 5000]


def _softmax64(x):
    z = x.astype(cp.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return cp.exp(z) / cp.exp(z).sum(axis=-1, keepdims=True)


@gpu
@pytest.mark.parametrize("cols", ROW_LENGTHS)
@pytest.mark.parametrize("rows", [1, 37])
def test_softmax_gpu(rows, cols):
    rng = cp.random.default_rng(cols)
    x = rng.standard_normal((rows, cols), dtype=cp.float32) * 4
    dy = rng.standard_normal((rows, cols), dtype=cp.float32)
    ref = _softmax64(x)
    y = kernels.softmax(x)
    assert rel_error(y, ref) < REL_TOL
    log_ref = cp.log(ref)
    log_y = kernels.log_softmax(x)
    assert rel_error(log_y, log_ref) < REL_TOL
    # backward from the float64 forward, so only the backward kernel's error is measured
    y64 = ref
    dx_ref = y64 * (dy - (dy * y64).sum(axis=-1, keepdims=True))
    assert rel_error(kernels.softmax_backward(y64.astype(cp.float32), dy), dx_ref) < REL_TOL
    dlog_ref = dy - cp.exp(log_ref) * dy.sum(axis=-1, keepdims=True)
    assert rel_error(kernels.log_softmax_backward(log_ref.astype(cp.float32), dy), dlog_ref) < REL_TOL


@gpu
def test_softmax_gpu_poisoned_outputs_and_masks():
    """Write into NaN-poisoned buffers through the raw kernels; -inf (masked) entries give 0."""
    for cols in ROW_LENGTHS:
        x = cp.random.default_rng(1).standard_normal((5, cols), dtype=cp.float32)
        x[:, ::3] = -cp.inf
        x[:, -1] = 0.5  # at least one finite entry per row
        y = cp.full_like(x, cp.nan)
        kernels._launch_rows("softmax_forward", (x,), y, 5, cols, 0)
        assert rel_error(y, _softmax64(x)) < REL_TOL, cols
        assert bool((y[x == -cp.inf] == 0).all()), cols


@gpu
def test_softmax_gpu_odd_offset_rows_use_scalar_path():
    base = cp.random.default_rng(3).standard_normal((4 * 4096 + 1,), dtype=cp.float32)
    x = base[1:].reshape(4, 4096)  # contiguous, so passed as is, but 4 bytes off alignment
    assert rel_error(kernels.softmax(x), _softmax64(x)) < REL_TOL
    dy = base[:-1].reshape(4, 4096)  # aligned, while y below is not
    log_y = cp.log(_softmax64(x)).astype(cp.float32)
    y_off = cp.empty(4 * 4096 + 1, dtype=cp.float32)[1:].reshape(4, 4096)
    y_off[...] = log_y
    ref = dy - cp.exp(log_y.astype(cp.float64)) * dy.sum(axis=-1, keepdims=True)
    assert rel_error(kernels.log_softmax_backward(y_off, dy), ref) < REL_TOL
