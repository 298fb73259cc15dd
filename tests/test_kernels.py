"""Tests of the CUDA kernels in kernels/ (issues 5 and 15).

Four layers, each running wherever it can:

* compile: every .cu file compiles with nvcc for sm_90 (H100) and sm_80 (A100), and
  ptxas reports no register spills.  Runs on any machine with nvcc, GPU or not, so a
  syntax error fails CI.
* wrapper errors: bad shapes, dtypes, axes and kernel names are refused before anything
  launches; checked on the CPU with NumPy arrays (inside ``emulation.emulate()``).
* emulated: the kernels themselves, run on the CPU by kernels/emulation, against NumPy:
  tests/test_cuda_emulation.py.
* gpu: the kernels against CuPy (float64 references) on awkward shapes; skipped without
  CuPy and a GPU.
"""
from __future__ import annotations

import ast
import math
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
from minitl.kernels import emulation

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
    rung2 = kernels.source("matmul", "load_tiles")  # the rung's comment block, TILE and the loads
    assert "// Rung 2: shared-memory tiling" in rung2.split("\n")[1] and "#define TILE 32" in rung2 and rung2.rstrip().endswith("}")
    tiled = kernels.source("matmul", "sgemm_tiled")
    assert tiled.startswith('extern "C"') and "__syncthreads" in tiled and tiled.rstrip().endswith("}")
    assert "sgemm_naive" not in tiled and "sgemm_blocktile" not in tiled
    assert "softmax_forward_rows" in kernels.source("softmax", "softmax_forward_rows")
    with pytest.raises(ValueError, match="no kernel source"):
        kernels.source("conv")
    with pytest.raises(ValueError, match="no kernel or function"):
        kernels.source("matmul", "sgemm_magic")


def test_gpu_check_script_matches_the_kernels():
    """.ci/gpu_check.sh (run by hand on a lent GPU) cannot run here; its Python part must still
    parse, name exactly the kernels the .cu files define, and call what minitl.kernels has."""
    text = (Path(__file__).resolve().parent.parent / ".ci" / "gpu_check.sh").read_text()
    code = text.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    tree = ast.parse(code)
    names = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NAMES")
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "kernels"}
    assert used and all(hasattr(kernels, name) for name in used), used - set(dir(kernels))
    assert "-m minitl.kernels.bench --only sgemm softmax" in text
    if not emulation.available():
        pytest.skip("listing the kernels of the .cu files needs g++")
    for file, listed in names.items():
        assert sorted(listed) == sorted(emulation.load(kernels.cu_files()[0].parent / f"{file}.cu").kernels)


def test_import_does_not_import_cupy():
    code = "import sys; from minitl import kernels; kernels.source('matmul'); print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(kernels.__file__).parent.parent, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- wrapper errors

@pytest.fixture
def numpy_arrays():
    """The wrappers with NumPy arrays as device memory; nothing here gets as far as a launch."""
    with emulation.emulate():
        yield


def test_matmul_wrapper_errors(numpy_arrays):
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
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        kernels.matmul(np.zeros(4, np.float32), np.zeros((4, 6), np.float32))
    assert kernels.matmul(np.zeros((0, 4), np.float32), np.zeros((4, 6), np.float32)).shape == (0, 6)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward"])
def test_softmax_wrapper_refuses_an_axis_out_of_range(numpy_arrays, fn):
    """W3: the axis was taken modulo ndim, so axis=2 of a matrix meant axis 0; NumPy (the CPU
    path) raises, and so do the wrappers now."""
    x = np.zeros((3, 4), np.float32)
    args = (x,) if "backward" not in fn else (x, x)
    for axis in (2, -3):
        with pytest.raises(np.exceptions.AxisError, match=f"{fn}: axis {axis} is out of bounds"):
            getattr(kernels, fn)(*args, axis=axis)


def test_softmax_wrapper_errors(numpy_arrays):
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        kernels.softmax_backward(x, x[:1])
    with pytest.raises(TypeError, match="float32"):
        kernels.softmax(x.astype(np.float64))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        kernels.log_softmax(np.float32(1.0).reshape(()))


def test_matmul_errors_keep_their_message_through_tl_matmul(monkeypatch):
    """W2: tl.matmul relabelled every ValueError of the GPU matmul as "batch dimensions cannot
    be broadcast"; now only a real broadcast problem says so, and other errors pass as they are."""
    import minitl as tl
    from minitl import backend

    def refuse(a, b):
        raise ValueError("matmul: 8400000 rows need 65626 row tiles")

    with pytest.raises(ValueError, match="cannot be broadcast"):
        tl.matmul(tl.zeros(2, 3, 4), tl.zeros(3, 4, 5))
    monkeypatch.setattr(backend, "matmul", refuse)
    with pytest.raises(ValueError, match="65626 row tiles"):
        tl.matmul(tl.zeros(3, 4), tl.zeros(4, 5))


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
    ((), (), 33, 2100, 65),  # K past _SPLIT_K_MIN_K: warptile cuts it into slices
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


def _off(shape, offset: int, rng):
    """A C-contiguous array whose data pointer is `offset` floats past 16-byte alignment
    (CuPy's pool hands out 512-byte aligned blocks)."""
    n = math.prod(shape)
    x = cp.empty(n + 4, dtype=cp.float32)[offset:offset + n].reshape(shape)
    x[...] = rng.standard_normal(shape, dtype=cp.float32)
    assert x.data.ptr % 16 == 4 * offset
    return x


@gpu
@pytest.mark.parametrize("kernel", list(kernels.MATMUL_KERNELS))
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_matmul_gpu_misaligned_pointers(kernel, trans_a, trans_b):
    """Operands and output 4, 8 and 12 bytes off 16-byte alignment, passed as they are (they
    are contiguous, so the wrapper copies nothing): the float4 paths must step aside."""
    rng = cp.random.default_rng(0)
    m, k, n = 130, 67, 129
    a = _off((k, m) if trans_a else (m, k), 1, rng)
    b = _off((n, k) if trans_b else (k, n), 2, rng)
    ref = cp.matmul((a.T if trans_a else a).astype(cp.float64), (b.T if trans_b else b).astype(cp.float64))
    out = _off(ref.shape, 3, rng)
    out.fill(cp.nan)
    kernels.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=out, kernel=kernel)
    assert rel_error(out, ref) < REL_TOL


@gpu
@pytest.mark.parametrize("trans_a", [False, True])
def test_matmul_gpu_rows_past_the_grid_limit(trans_a):
    """W1: more row tiles than gridDim.y allows (65535): the naive rung's 8-row tiles pass it
    at 524,288 rows; the wrapper launches the rows in slices."""
    rng = cp.random.default_rng(4)
    m, k, n = 65535 * 8 + 13, 3, 5
    op_a = rng.standard_normal((m, k), dtype=cp.float32)
    a = cp.ascontiguousarray(op_a.T) if trans_a else op_a
    b = rng.standard_normal((k, n), dtype=cp.float32)
    out = cp.full((m, n), cp.nan, dtype=cp.float32)
    kernels.matmul(a, b, trans_a=trans_a, out=out, kernel="naive")
    assert rel_error(out, op_a.astype(cp.float64) @ b.astype(cp.float64)) < REL_TOL


ROW_LENGTHS = [1, 7, 32, 33, 100, 128, 129, 1000, 1024, 1025, 5000, 16385, 32769]


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
        kernels._launch_rows("forward", (x,), y, 5, cols, 0)
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
