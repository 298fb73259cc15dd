#!/usr/bin/env bash
# gpu_check.sh [REPO]: one run on a lent GPU machine with CuPy (about 2 minutes on an H200):
# LOGS=DIR keeps the sanitizer logs there.
# the GPU tests; compute-sanitizer memcheck on small shapes (if installed); every kernel against
# float64 cuBLAS on awkward shapes (misaligned operands, K=0, batch > 65535, -inf rows); register
# counts; SGEMM ratios to cuBLAS (warptile with and without WT_MIN_BLOCKS=2 and split-K) and
# softmax bandwidth as a share of a device-to-device copy, for every softmax layout.
# Adapted from the project's shared gpu_check.sh to minitl.kernels (issue 15): the kernels import
# as minitl.kernels, the softmax kernels are named by layout, and timings are of back-to-back calls.
# tests/test_kernels.py::test_gpu_check_script_matches_the_kernels keeps the names below in step.
cd "${1:-.}" || exit 1; PYBIN=${PYBIN:-python3}; LOGS=${LOGS:-$(mktemp -d)}; export CUPY_TF32=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
PY=$(mktemp --suffix=.py); cat > "$PY" <<'EOF'
import math, os, time, numpy as np, cupy as cp
from minitl import kernels
from minitl.kernels import get_function
NAMES = {"matmul": ["sgemm_naive", "sgemm_tiled", "sgemm_blocktile", "sgemm_warptile_nn", "sgemm_warptile_nt", "sgemm_warptile_tn", "sgemm_warptile_tt"],
         "softmax": ["softmax_forward_warp8", "softmax_forward_warp16", "softmax_forward_warp", "softmax_forward_block8", "softmax_forward_block16",
                     "softmax_forward_block32", "softmax_forward_block", "softmax_backward_warp4", "softmax_backward_warp8", "softmax_backward_warp16",
                     "softmax_backward_warp", "softmax_backward_block8", "softmax_backward_block16", "softmax_backward_block"]}
SMALL, rng, bad = os.environ.get("SMALL") == "1", cp.random.default_rng(0), []
if SMALL: cp.cuda.set_allocator(None)  # no memory pool: each array its own cudaMalloc, so memcheck sees overruns
def rel(got, ref):
    got, ref = got.astype(cp.float64), ref.astype(cp.float64)  # NaN (unwritten, poisoned) fails; NaN where ref is NaN is right
    if got.shape != ref.shape or not bool((cp.isnan(got) == cp.isnan(ref)).all()): return math.inf
    ok = ~cp.isnan(ref); return float(cp.abs(got - ref)[ok].max()) / max(float(cp.abs(ref)[ok].max()), 1e-30) if bool(ok.any()) else 0.0
def off(shape, k, scale=1.0):  # C-contiguous; data pointer k floats past 16-byte alignment (pool blocks are 512 B aligned)
    n = math.prod(shape); x = cp.empty(n + 4, cp.float32)[k:k + n].reshape(shape)
    x[...] = rng.standard_normal(shape, dtype=cp.float32) * scale; return x
SH = [((), (), 1, 1, 1), ((), (), 127, 129, 131), ((), (), 129, 0, 33), ((), (), 2, 1000, 3), ((4,), (), 33, 17, 65), ((2, 1), (3,), 9, 8, 12), ((), (), 128, 784, 512)]
SH += [] if SMALL else [((), (), 257, 64, 256), ((70000,), (70000,), 2, 3, 5), ((), (), 1024, 4100, 1000)]
for kern, (ba, bb, m, k, n), ta, tb, o in [(q, s, ta, tb, o) for q in kernels.MATMUL_KERNELS for s in SH for ta in (0, 1) for tb in (0, 1) for o in ((0, 0, 0), (1, 2, 3))]:
    A, B = off(ba + ((k, m) if ta else (m, k)), o[0]), off(bb + ((n, k) if tb else (k, n)), o[1])
    ref = cp.matmul((A.swapaxes(-1, -2) if ta else A).astype(cp.float64), (B.swapaxes(-1, -2) if tb else B).astype(cp.float64))
    out = off(ref.shape, o[2]); out.fill(cp.nan)
    kernels.matmul(A, B, trans_a=bool(ta), trans_b=bool(tb), out=out, kernel=kern)
    if not rel(out, ref) < 1e-4: bad.append(("sgemm", kern, ba, bb, m, k, n, ta, tb, o, rel(out, ref)))
print("matmul cases checked, failures so far:", len(bad), flush=True)  # a sanitizer run cut short still says how far it got
def sm64(x): z = x.astype(cp.float64); e = cp.exp(z - z.max(-1, keepdims=True)); return e / e.sum(-1, keepdims=True)
for rows, cols in [(r, c) for r in (1, 37) for c in (1, 31, 33, 100, 128, 129, 1000, 1024, 1025, 4099, 8192, 16385, 32769)] + ([] if SMALL else [(70001, 128), (3, 32768), (3, 65536)]):
    for o, mask in ((0, False), (1, False), (0, True), (1, True)):
        x, dy = off((rows, cols), o, 4.0), off((rows, cols), 1 - o)
        if mask and cols > 1: x[:, ::3] = -cp.inf; x[:, -1] = 0.5
        p = sm64(x); lp = cp.log(p); got = {"fwd": (kernels.softmax(x), p), "bwd": (kernels.softmax_backward(p.astype(cp.float32), dy), p * (dy - (dy * p).sum(-1, keepdims=True)))}
        if not mask: got.update(log=(kernels.log_softmax(x), lp), logbwd=(kernels.log_softmax_backward(lp.astype(cp.float32), dy), dy - p * dy.sum(-1, keepdims=True)))
        bad += [("softmax", q, rows, cols, o, mask, rel(g, r)) for q, (g, r) in got.items() if not rel(g, r) < 1e-4]
print("softmax cases checked", flush=True); print("all -inf row -> NaN (documented):", bool(cp.isnan(kernels.softmax(cp.full((2, 40), -cp.inf, cp.float32))).all()), "\nFAILURES:", len(bad)); [print("  ", b) for b in bad[:30]]
if SMALL: raise SystemExit(1 if bad else 0)
for f, names in NAMES.items():
    for name in names: fn = get_function(f, name); print(f"{name}: {fn.num_regs} regs, {fn.local_size_bytes} B local (spills)")
fn2 = get_function("matmul", "sgemm_warptile_nn", options=("--std=c++14", "-DWT_MIN_BLOCKS=2")); print(f"sgemm_warptile_nn WT_MIN_BLOCKS=2: {fn2.num_regs} regs, {fn2.local_size_bytes} B local")
def t(fn, r=20):  # ms per call; r calls back to back, so the wrapper's host overhead overlaps GPU work
    fn(); cp.cuda.Device().synchronize(); s, e = cp.cuda.Event(), cp.cuda.Event(); s.record(); [fn() for _ in range(r)]; e.record(); e.synchronize(); return cp.cuda.get_elapsed_time(s, e) / r
no_split = lambda *a: 1  # noqa: E731
for m, k, n in ((4096,) * 3, (8192,) * 3, (128, 784, 512), (128, 512, 512), (4096, 256, 256), (512, 128, 784), (128, 8192, 512), (128, 32768, 128), (64, 65536, 64)):
    a, b, c = rng.standard_normal((m, k), dtype=cp.float32), rng.standard_normal((k, n), dtype=cp.float32), cp.empty((m, n), cp.float32)
    ref = t(lambda: cp.matmul(a, b, out=c)); r = {q: ref / t(lambda: kernels.matmul(a, b, out=c, kernel=q)) for q in ("tiled", "blocktile", "warptile")}
    r["warptile MIN_BLOCKS=2"] = ref / t(lambda: kernels.matmul(a, b, out=c, options=("-DWT_MIN_BLOCKS=2",)))
    splits, kernels._k_splits = kernels._k_splits, no_split
    r["warptile no split-K"] = ref / t(lambda: kernels.matmul(a, b, out=c)); kernels._k_splits = splits
    print(f"sgemm {m}x{k}x{n}: cuBLAS {2 * m * n * k / ref / 1e9:.1f} TFLOP/s; vs cuBLAS: " + ", ".join(f"{q} {v:.2f}" for q, v in r.items()) + ("" if r["warptile"] >= 0.6 else "  <-- < 0.60"))
N = 1 << 26; src = cp.ones(N, cp.float32); dst = cp.empty_like(src)
bw = 2 * src.nbytes / t(lambda: dst.data.copy_from_device_async(src.data, src.nbytes)) / 1e6; print(f"D2D copy {bw:.0f} GB/s")
for cols in (32, 128, 1024, 4096, 32768, 131072):
    x = rng.standard_normal((N // cols, cols), dtype=cp.float32); y = kernels.softmax(x)
    for name, fn, nt, d in (("fwd", lambda: kernels.softmax(x), 2, "forward"), ("bwd", lambda: kernels.softmax_backward(y, x), 3, "backward"), ("log fwd", lambda: kernels.log_softmax(x), 2, "forward")):
        g = nt * x.nbytes / t(fn) / 1e6; print(f"softmax {name} cols={cols} ({kernels.softmax_launch(d, N // cols, cols)[0]}): {g:.0f} GB/s = {g / bw:.2f} of copy" + ("" if g / bw >= 0.8 else "  <-- < 0.80"))
def host_us(fn, r=2000):  # wall time per call of a tiny launch: the wrapper's Python and CuPy's launch
    fn(); cp.cuda.Device().synchronize(); s = time.perf_counter(); [fn() for _ in range(r)]; cp.cuda.Device().synchronize(); return (time.perf_counter() - s) / r * 1e6
a8, c8 = rng.standard_normal((8, 8), dtype=cp.float32), cp.empty((8, 8), cp.float32)
print(f"host time per call, 8x8: kernels.matmul {host_us(lambda: kernels.matmul(a8, a8, out=c8)):.1f} us, cupy.matmul {host_us(lambda: cp.matmul(a8, a8, out=c8)):.1f} us, "
      f"kernels.softmax {host_us(lambda: kernels.softmax(a8)):.1f} us, kernels.softmax_backward {host_us(lambda: kernels.softmax_backward(a8, a8)):.1f} us")
ak, bk, ck = rng.standard_normal((8, 4096), dtype=cp.float32), rng.standard_normal((4096, 8), dtype=cp.float32), cp.empty((8, 8), cp.float32)
split_us = host_us(lambda: kernels.matmul(ak, bk, out=ck)); kernels._k_splits = no_split; one_us = host_us(lambda: kernels.matmul(ak, bk, out=ck)); kernels._k_splits = splits
print(f"wall time per call, back to back, 8x4096 @ 4096x8: split-K ({kernels._k_splits(4096, 1, kernels._multiprocessors(cp))} slices) {split_us:.1f} us, one pass {one_us:.1f} us")
EOF
# compute-sanitizer (tens of times slower) runs beside the tests, on other CPU cores, and is
# done before any timing starts; SANITIZE="memcheck racecheck" runs both, SANITIZE="" neither.
if command -v compute-sanitizer >/dev/null; then for tool in ${SANITIZE-memcheck}; do
  (SMALL=1 timeout "${SANITIZE_TIMEOUT:-300}" compute-sanitizer --tool "$tool" --error-exitcode 9 $PYBIN "$PY" > "$LOGS/gpu_check_$tool.log" 2>&1; echo $? > "$LOGS/rc_$tool") & done
else echo "compute-sanitizer not installed: sanitizer runs skipped"; fi
timeout 300 $PYBIN -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_gpu.py 2>&1 | tail -4
wait
pkill -f -- "$PY" 2>/dev/null  # a sanitized run cut off by its timeout can leave its Python running on the GPU
command -v compute-sanitizer >/dev/null && for tool in ${SANITIZE-memcheck}; do rc=$(cat "$LOGS/rc_$tool")
  echo "compute-sanitizer $tool: rc=$rc ($(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/gpu_check_$tool.log" | tail -1))"; [ "$rc" = 0 ] || tail -15 "$LOGS/gpu_check_$tool.log"; done
$PYBIN "$PY"; rc=$?; timeout 200 $PYBIN -m minitl.kernels.bench --only sgemm softmax | tail -60; exit $rc
