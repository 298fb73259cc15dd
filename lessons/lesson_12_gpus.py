# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     name: python3
# ---

# %% [markdown]
# # Lesson 12 — GPUs: writing the matrix multiply that transfer learning runs on
#
# Fine-tuning BERT, training a ViT head, LoRA: almost all of their time goes into
# matrix products (every Linear layer, attention's `Q @ K^T` and `weights @ V`, and the
# backward passes `dx = dy @ W^T`, `dW = x^T @ dy`) and a little into softmax. This
# lesson builds a float32 matrix multiply (SGEMM) for an NVIDIA GPU in four rungs, each
# fixing what limited the one before, then looks at softmax.
#
# The CUDA code is in `kernels/matmul.cu` and `kernels/softmax.cu`; `kernels.matmul()`
# and `kernels.softmax()` call it on CuPy arrays. Without a GPU this lesson prints the
# kernels and the arithmetic and skips the timings (it says so where it does).
# Set `MINITL_FAST=1` for small sizes.

# %%
import os

from minitl import kernels

FAST = bool(os.environ.get("MINITL_FAST"))
os.environ.setdefault("CUPY_TF32", "0")  # cuBLAS in plain FP32, like our kernels (read when CuPy loads)


def gpu_module():
    """CuPy if it is installed and sees a GPU, else None."""
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


cp = gpu_module()
print("GPU found: timings will run." if cp is not None else
      "No GPU (or no CuPy) here: the lesson shows the kernels and the arithmetic, and skips the timings.")

# %% [markdown]
# ## How much work, how much data
#
# `C = A @ B` with `A` of shape M x K and `B` of shape K x N does M·N·K multiply-adds,
# `2·M·N·K` floating-point operations, on `4·(M·K + K·N + M·N)` bytes of float32 data.
# The ratio, FLOPs per byte, is the **arithmetic intensity**. A GPU can do far more
# arithmetic per second than it can move bytes from its memory (DRAM) per second; the
# machine's own ratio, peak FLOP/s over bandwidth, is its *ridge point*. Below it a
# kernel waits for memory, above it for arithmetic.
#
# The numbers below use the H100 SXM spec sheet (FP32: 67 TFLOP/s, HBM3: 3.35 TB/s);
# they are vendor figures, not measurements.

# %%
PEAK_FP32 = 67e12     # FLOP/s, H100 SXM spec sheet
BANDWIDTH = 3.35e12   # bytes/s, H100 SXM spec sheet
ridge = PEAK_FP32 / BANDWIDTH
print(f"ridge point: {ridge:.0f} FLOP per byte")

n = 4096
flops = 2 * n**3
bytes_min = 4 * 3 * n * n  # read A and B once, write C once
print(f"SGEMM {n}^3: {flops / 1e9:.0f} GFLOP on {bytes_min / 2**20:.0f} MiB -> "
      f"{flops / bytes_min:.0f} FLOP/byte at best")
print(f"  time if compute-bound: {flops / PEAK_FP32 * 1e3:.2f} ms; "
      f"time to move the bytes once: {bytes_min / BANDWIDTH * 1e3:.3f} ms")

# %% [markdown]
# Read once, a 4096³ product has plenty of arithmetic per byte (683 FLOP/byte, far
# past the ridge point): it *could* be compute-bound. Whether it is depends on how
# often a kernel goes back to memory for the same value.
#
# ## Rung 1: naive
#
# One thread per element of C; it walks its row of A and column of B in global memory.

# %%
print(kernels.source("matmul", "sgemm_naive"))

# %% [markdown]
# **Coalescing.** The 32 threads of a warp execute each load together. When they read
# 32 neighbouring floats, the hardware serves them with one 128-byte transaction; when
# they read 32 floats a row apart, it needs 32. Here `threadIdx.x` runs along a row of
# C, so a warp reads 32 neighbouring elements of B (coalesced) and one element of A
# (broadcast to all 32). Swap the roles of x and y and every B load becomes 32
# transactions.
#
# Each multiply-add still loads 2 floats (8 bytes) for 2 FLOPs: an intensity of
# 0.25 FLOP/byte, if every load went to DRAM. Caches catch many of them, but the
# kernel is bound by memory traffic.

# %%
def intensity_per_load(flops_per_step, floats_loaded_per_step):
    return flops_per_step / (4 * floats_loaded_per_step)


print(f"naive: {intensity_per_load(2, 2):.2f} FLOP per byte loaded")
print(f"  at {BANDWIDTH / 1e12:.2f} TB/s that caps it at "
      f"{intensity_per_load(2, 2) * BANDWIDTH / 1e12:.2f} TFLOP/s (of {PEAK_FP32 / 1e12:.0f})")

# %% [markdown]
# ## Rung 2: shared-memory tiling
#
# A block of 32 x 32 threads computes a 32 x 32 tile of C. It walks K in steps of 32:
# each thread copies one float of A and one of B into **shared memory** (on-chip, about
# as fast as L1 cache, shared by the block), the block waits at `__syncthreads()`, and
# then each thread reads 32 values of each from shared memory. Every float brought in
# from global memory is used 32 times.

# %%
print(kernels.source("matmul", "sgemm_tiled"))

# %%
TILE = 32
print(f"tiled: each global load feeds {TILE} multiply-adds -> "
      f"{intensity_per_load(2 * TILE, 2):.0f} FLOP per byte from global memory")
print("  but each multiply-add still needs 2 shared-memory reads: now shared memory is the limit")

# %% [markdown]
# ## Rung 3: register blocking
#
# Registers are the only storage faster than shared memory. Each of 256 threads now
# computes an 8 x 8 block of a 128 x 128 tile: per step along K it reads 8 values of A
# and 8 of B from shared memory into registers and does all 64 multiply-adds among
# them. That is 8 FLOPs (4 multiply-adds) per shared-memory read instead of 1, and from global memory a
# 128 x 128 tile reuses every float 128 times.

# %%
print(kernels.source("matmul", "sgemm_blocktile"))

# %%
for tm in (1, 4, 8):
    print(f"{tm} x {tm} outputs per thread: {2 * tm * tm / (2 * tm):.0f} FLOP per shared-memory read, "
          f"{tm * tm} accumulator registers")

# %% [markdown]
# The accumulators are why the block cannot grow forever: 8 x 8 is 64 registers of the
# at most 255 a thread may have, and the more registers a thread uses, the fewer
# threads fit on a multiprocessor to hide each other's waiting.
#
# ## Rung 4: warp tiling, float4 loads, double buffering
#
# The kernel `kernels.matmul()` uses keeps rung 3's shape and adds three things:
# loads of 16 bytes (`float4`) instead of 4; a layout where each warp owns a 64 x 32
# piece of the tile, so that for one k a warp reads 32 consecutive floats of A from
# shared memory (no two threads on the same memory bank); and a second shared buffer,
# so the next tile's global loads are in flight while the current one is multiplied.
# It is compiled in four variants, one per choice of transposed operands, so the
# backward pass `dy @ W^T` reads `W` where it lies.

# %%
print(kernels.source("matmul", "sgemm_warptile_body"))

# %% [markdown]
# ## The ladder, measured
#
# With a GPU, this cell times each rung against cuBLAS (NVIDIA's library, in plain FP32)
# with CUDA events. `python -m minitl.kernels.bench` does the same at 1024 to 8192 and at the
# shapes of minitl's models.

# %%
if cp is None:
    print("No GPU here: timings skipped. On a GPU machine run this lesson again, or "
          "`python -m minitl.kernels.bench`.")
else:
    from minitl.kernels.bench import time_ms

    size = 512 if FAST else 2048
    rng = cp.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=cp.float32)
    b = rng.standard_normal((size, size), dtype=cp.float32)
    out = cp.empty((size, size), dtype=cp.float32)
    ref = cp.matmul(a, b)
    ms_cublas = time_ms(cp, lambda: cp.matmul(a, b, out=out))
    print(f"{size}^3 SGEMM ({2 * size**3 / 1e9:.1f} GFLOP)")
    print(f"  {'cuBLAS':10s} {ms_cublas:8.3f} ms  {2 * size**3 / ms_cublas / 1e9:6.2f} TFLOP/s")
    for rung in kernels.MATMUL_KERNELS:
        ms = time_ms(cp, lambda: kernels.matmul(a, b, out=out, kernel=rung), warmup=1, repeats=3)
        err = float(cp.abs(out - ref).max() / cp.abs(ref).max())
        print(f"  {rung:10s} {ms:8.3f} ms  {2 * size**3 / ms / 1e9:6.2f} TFLOP/s  "
              f"{ms_cublas / ms:6.1%} of cuBLAS   max rel. error {err:.1e}")

# %% [markdown]
# ## Softmax: a memory-bound kernel
#
# Softmax does a handful of operations per element on 8 bytes (read x, write y): an
# intensity near 1 FLOP/byte, far below the ridge point. No amount of cleverness with
# arithmetic helps; the goal is to touch memory once each way, at the speed of a copy.
#
# The usual recipe reads a row three times (max, sum of exp, output). The **online**
# form gets the max and the sum in one sweep: keep a running max m and a running sum
# s of `exp(x - m)`; when a larger value arrives, rescale s by `exp(m_old - m_new)`.
# Partial results of two threads merge the same way.

# %%
import math


def online_max_sum(values):
    m, s = -math.inf, 0.0
    for x in values:
        m_new = max(m, x)
        s = s * (math.exp(m - m_new) if m > -math.inf else 0.0) + math.exp(x - m_new)
        m = m_new
    return m, s


row = [1.0, 3.0, -2.0, 5.0, 0.5]
m, s = online_max_sum(row)
print(f"one sweep: max {m}, sum {s:.6f}; two sweeps: max {max(row)}, "
      f"sum {sum(math.exp(x - max(row)) for x in row):.6f}")

# %%
print(kernels.source("softmax", "softmax_forward_block"))

# %% [markdown]
# Rows of up to 1024 values get one warp each and sit in registers (32 per lane), so
# the warp kernel reads the row once and never needs the online form; longer rows get a
# whole block and stream. `python -m minitl.kernels.bench` compares both with the bandwidth of
# a plain device-to-device copy.
#
# ## What to expect
#
# On a GPU, each rung should be several times faster than the one before it until the
# last, which should land within sight of cuBLAS at large sizes (the project's goal is
# 60% at 4096 on an H100; `kernels/NOTES.md` records what was measured and where).
# cuBLAS adds what this lesson leaves out: kernels tuned per shape and GPU, and
# hand-scheduled instructions.
