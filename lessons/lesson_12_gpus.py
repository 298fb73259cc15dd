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
# and `kernels.softmax()` call it on CuPy arrays. **No GPU is needed to follow along:**
# `minitl.kernels.emulation` compiles the same `.cu` files with the C++ compiler of your
# laptop (g++) and runs every CUDA thread on the CPU, so the kernels below really run and
# are checked against NumPy. The emulation says nothing about speed; the timing cells
# need a GPU and say so where they skip.
#
# Set `MINITL_FAST=1` for small sizes.

# %%
import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from minitl import kernels, report  # noqa: E402
from minitl.kernels import emulation  # noqa: E402

out = report.output_dir("lesson_12_gpus")
FAST = report.fast_mode()
os.environ.setdefault("CUPY_TF32", "0")  # cuBLAS in plain FP32, like our kernels (read when CuPy loads)


def gpu_module():
    """CuPy if it is installed and sees a GPU, else None."""
    try:
        import cupy
        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:
        return None


cp = gpu_module()
EMULATE = emulation.available()
print("GPU found: timings will run." if cp is not None else
      "No GPU (or no CuPy) here: the timing cells skip.")
print("g++ found: the kernels also run on the CPU, through the emulation." if EMULATE else
      "No g++ here: install it (apt-get install g++) to run the kernels on the CPU.")

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
# The numbers below use the H200 SXM spec sheet (FP32: 67 TFLOP/s, HBM3e: 4.8 TB/s);
# they are vendor figures, not measurements.

# %%
PEAK_FP32 = 67e12     # FLOP/s, H200 SXM spec sheet (the same FP32 units as an H100)
BANDWIDTH = 4.8e12    # bytes/s, H200 SXM spec sheet
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
# ## The roofline
#
# Put both limits in one picture: a kernel of intensity I (FLOP per byte it moves to or
# from DRAM) can do at most `min(peak, I x bandwidth)` FLOP/s. The slanted roof is memory,
# the flat one arithmetic. Below are the intensities of this lesson's kernels, each
# counted from what the kernel loads from global memory per FLOP (worked out in the
# sections below), and of two whole products read once. They are ceilings worked out on
# paper, not measurements: where a kernel really lands under its roof takes a GPU
# (`python -m minitl.kernels.bench`).

# %%
def product_intensity(m, k, n):
    """FLOP per byte of C = A @ B when A, B and C each cross DRAM once."""
    return 2 * m * n * k / (4 * (m * k + k * n + m * n))


INTENSITIES = {  # FLOP per byte loaded from global memory
    "naive (1 FMA per 2 loads)": 2 / 8,
    "tiled, 32 x 32 tiles": 2 * 32 / 8,
    "blocktile / warptile, 128 x 128 tiles": 2 * 128 * 128 / (4 * (128 + 128)),
    "softmax forward (~5 FLOP per 8 bytes)": 5 / 8,
    "MLP product 128x784 @ 784x512, read once": product_intensity(128, 784, 512),
    "SGEMM 4096^3, read once": product_intensity(4096, 4096, 4096),
}
intensity = np.logspace(-2, 3.2, 200)
fig, ax = plt.subplots(figsize=(7, 4.2))
ax.loglog(intensity, np.minimum(PEAK_FP32, intensity * BANDWIDTH) / 1e12, color="black", lw=2)
ax.axvline(ridge, color="grey", ls=":", lw=1)
ax.text(ridge * 1.15, 0.1, f"ridge point:\n{ridge:.0f} FLOP/B", color="grey", fontsize=8)
for (label, value), marker in zip(INTENSITIES.items(), "osD^vP"):
    ceiling = min(PEAK_FP32, value * BANDWIDTH) / 1e12
    ax.loglog([value], [ceiling], marker, ms=8, label=f"{label}: {value:.3g} FLOP/B")
    print(f"{label:45s} {value:8.3g} FLOP/byte -> at most {ceiling:6.2f} TFLOP/s")
ax.set_xlabel("arithmetic intensity (FLOP per byte of DRAM traffic)")
ax.set_ylabel("attainable TFLOP/s (FP32)")
ax.set_title("Roofline of an H200-class GPU (spec-sheet peaks), with this lesson's kernels")
ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
ax.grid(True, which="both", alpha=0.3)
_ = report.figure(fig, "roofline", "roofline of an H200-class GPU from its spec sheet; the points are ceilings, not timings")

# %% [markdown]
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
print(kernels.source("matmul", "load_tiles"))
print(kernels.source("matmul", "sgemm_tiled"))

# %% [markdown]
# The two `__syncthreads()` are the heart of it. The first makes every thread wait until
# the whole block has written its tiles; without it a fast thread would multiply values
# nobody has loaded yet. The second keeps a fast thread from loading the *next* tiles
# over values its neighbours are still reading. The tile loop between the two `EXERCISE`
# markers is an exercise (`gpu.sgemm_tiled`, see the end of the lesson).

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
# ## Running the kernels without a GPU
#
# Inside `emulation.emulate()`, `kernels.matmul` takes NumPy arrays and launches the same
# kernel with the same grid and block it would hand to the GPU; each CUDA thread is a
# small coroutine on the CPU, `__syncthreads()` makes it wait for the rest of its block,
# and a warp shuffle waits for the lanes it names. Every rung should match NumPy to about
# 1e-7 (float32 rounding); the first call compiles the `.cu` file (a few seconds).

# %%
if EMULATE:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((100, 70)).astype(np.float32)
    b = rng.standard_normal((70, 130)).astype(np.float32)
    reference = a.astype(np.float64) @ b
    with emulation.emulate():
        for rung in kernels.MATMUL_KERNELS:
            try:
                c = kernels.matmul(a, b, kernel=rung)
            except NotImplementedError as err:  # a student copy, before the exercise is done
                print(f"{rung:10s} {err}")
                continue
            print(f"{rung:10s} max relative error vs NumPy: {np.abs(c - reference).max() / np.abs(reference).max():.1e}")
else:
    print("No g++: skipped (apt-get install g++).")

# %% [markdown]
# What the emulation is for: catching mistakes. Take the second `__syncthreads()` out of
# rung 2 and run it again. On a GPU the result would be wrong only sometimes, depending on
# which warps happen to run first; the emulation runs each thread as far as it can before
# the next, which turns such a race into a wrong answer every time.

# %%
if EMULATE:
    import tempfile
    from pathlib import Path

    barrier = "            __syncthreads();  // everyone is done reading before the next tiles overwrite them\n"
    with tempfile.TemporaryDirectory() as folder:
        for name in ("matmul", "softmax"):
            text = kernels.source(name)
            Path(folder, f"{name}.cu").write_text(text.replace(barrier, "") if name == "matmul" else text)
        try:
            with emulation.emulate(sources=folder):
                c = kernels.matmul(a, b, kernel="tiled")
            print(f"tiled without its second barrier: max relative error "
                  f"{np.abs(c - reference).max() / np.abs(reference).max():.2f}")
        except NotImplementedError as err:
            print(err)

# %% [markdown]
# ## The ladder, measured
#
# With a GPU, this cell times each rung against cuBLAS (NVIDIA's library, in plain FP32)
# with CUDA events, and the table it prints is the only speed figure this lesson gives: without
# a GPU it prints none, and no timing is quoted anywhere in the text.
# `python -m minitl.kernels.bench` does the same at 1024 to 8192 and at the shapes of
# minitl's models.

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
    print(f"{size}^3 SGEMM ({2 * size**3 / 1e9:.1f} GFLOP) on {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}")
    ladder = [("cuBLAS", round(ms_cublas, 3), round(2 * size**3 / ms_cublas / 1e9, 2), "100%", "-")]
    for rung in kernels.MATMUL_KERNELS:
        ms = time_ms(cp, lambda: kernels.matmul(a, b, out=out, kernel=rung), warmup=1, repeats=3)
        err = float(cp.abs(out - ref).max() / cp.abs(ref).max())
        ladder.append((rung, round(ms, 3), round(2 * size**3 / ms / 1e9, 2), f"{ms_cublas / ms:.1%}", f"{err:.1e}"))
    _ = report.table(ladder, ["kernel", "ms", "TFLOP/s", "of cuBLAS", "max rel. error"],
                     title=f"the SGEMM ladder at {size}^3, measured with CUDA events")

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

# %% [markdown]
# Rows of up to 1024 values are held in registers, so the row is read once and the
# online form is not needed: a group of lanes takes one row, and its lanes combine their
# partial max and sum with **warp shuffles**, `__shfl_xor_sync(mask, v, o)`, which hands
# each lane the value of the lane whose index differs from its own in bit `o`. After
# log2(lanes) such exchanges every lane holds the total: a butterfly.

# %%
print(kernels.source("softmax", "group_max"))
print(kernels.source("softmax", "softmax_forward_rows"))

# %% [markdown]
# The layout follows the row length: rows of 128 or fewer share a warp (4 values per lane,
# as few lanes as hold the row), longer rows up to 1024 take a warp with as many values per
# lane as they need, rows up to 32768 take a block and stay in its registers, and only
# longer rows stream through twice with the online form. `python -m minitl.kernels.bench`
# compares each with the bandwidth of a plain device-to-device copy.

# %%
for cols in (7, 100, 1000, 5000, 50000):
    name, grid, block, lanes = kernels.softmax_launch("forward", 4096, cols)
    print(f"rows of {cols:6d}: {name:24s} grid {grid}, block {block}" + (f", {lanes} lanes per row" if lanes else ""))
if EMULATE:
    x = np.random.default_rng(1).standard_normal((37, 1000)).astype(np.float32) * 4
    z = np.exp(x - x.max(axis=1, keepdims=True))
    try:
        with emulation.emulate():
            y = kernels.softmax(x)
        print(f"softmax on the CPU emulation: max error vs NumPy {np.abs(y - z / z.sum(axis=1, keepdims=True)).max():.1e}")
    except NotImplementedError as err:
        print(err)

# %% [markdown]
# ## Your turn: two exercises in CUDA
#
# Two regions of the CUDA sources are exercises, between `// BEGIN EXERCISE` and
# `// END EXERCISE`:
#
# * `gpu.sgemm_tiled`: the shared-memory tile loop of rung 2 (load, wait, multiply, wait);
# * `gpu.softmax_warp_sum`: the butterfly sum of the softmax (`group_sum`), like
#   `group_max` above with `+` for `fmaxf`.
#
# `minitl exercises export ~/my-minitl --lesson 12` writes a copy where they are stubbed;
# there the check commands listed at the end of the lesson compile your CUDA with g++, run it
# through the emulation and compare it with NumPy, on a laptop. A missing barrier shows up as
# a wrong answer, and a barrier some threads never reach as an error naming the waiting
# threads, where a GPU would simply hang.
#
# ## What to expect on a GPU
#
# The roofline says each rung *may* be faster than the one before it, and that the last may
# come within sight of cuBLAS at large sizes; whether it does is a measurement. On an H200
# (`kernels/NOTES.md`, "Speed on an H200", has the figures) each step of the ladder paid at
# 4096³, and warptile came within sight of cuBLAS in FP32. At the size of the MLP's products
# the order vanished: the Python and the launch of each call outweigh a product that small,
# for every rung alike. The softmax kernels ran close to the bandwidth of a plain copy,
# except where a row is too long to keep on chip and is read twice. cuBLAS adds what
# this lesson leaves out: kernels tuned per shape and GPU, and hand-scheduled instructions.

# %% [markdown]
# ## Check yourself
#
# 1. What ridge point do the spec-sheet figures give, and which of the roofline's kernels
#    sit below it, bound by memory?
# 2. How many FLOP per shared-memory read does a thread computing an 8 x 8 block do, against
#    one computing a single output?
# 3. Which softmax kernel, grid and block does a row of 5000 values get?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 12`), make each one's tests pass:
#
# - `gpu.sgemm_tiled`: `minitl exercises check gpu.sgemm_tiled`
# - `gpu.softmax_warp_sum`: `minitl exercises check gpu.softmax_warp_sum`
