"""Benchmark minitl's kernels against the GPU's own libraries: ``python -m minitl.kernels.bench``.

Sections (each a function taking the parsed options and returning a list of row dicts):

* ``sgemm``: TFLOP/s of every rung of the matmul ladder and of cuBLAS FP32 (TF32 off,
  through ``cupy.matmul``) at 1024..8192 and at the shapes of minitl's models, with the
  ratio to cuBLAS and each result's error against cuBLAS (a fast wrong answer would
  otherwise look good).
* ``softmax``: GB/s (bytes read + written) of softmax forward and backward on several row
  lengths, against the bandwidth of a large device-to-device copy measured in the same
  run.

To add a section (say a training step of the ViT and the CNN against PyTorch CUDA),
write a function ``bench_<name>(opts) -> list[dict]`` and append it to ``SECTIONS``; the
table printing, ``--only`` and ``--json`` pick it up.

Timing: CUDA events around a run of back-to-back calls (enough of them to last about a
millisecond), after warm-up calls; the median over repeats, divided by the calls per run.
Back to back, the host's work for one call (argument checks, the launch) overlaps the GPU's
work for the one before, as in a training step; timing calls one at a time would add that
host overhead to every short kernel.  Run with ``--quick`` for small sizes (a smoke test,
not numbers to quote).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

# cuBLAS may use TF32 tensor cores for float32 products when CuPy is told to; we compare
# against true FP32, so make sure it is not (CuPy reads this when it is imported).
_CUPY_ALREADY_IMPORTED = "cupy" in sys.modules
os.environ["CUPY_TF32"] = "0"

from minitl import kernels  # noqa: E402  (imports no CuPy)


def _cupy_or_exit():
    if _CUPY_ALREADY_IMPORTED:
        sys.exit("CuPy was imported before CUPY_TF32=0 could be set; run `python -m minitl.kernels.bench`")
    try:
        import cupy as cp
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as err:  # no CuPy, no driver
        sys.exit(f"kernels.bench needs CuPy and a CUDA GPU ({type(err).__name__}: {err}); "
                 "on a machine without one, lesson 12 shows the kernels' source instead.")
    if count < 1:
        sys.exit("kernels.bench needs a CUDA GPU; none is visible.")
    return cp


def time_ms(cp, fn, warmup: int = 3, repeats: int = 10, target_ms: float = 1.0) -> float:
    """Milliseconds per call of fn() on the GPU: CUDA events around back-to-back calls."""
    for _ in range(warmup):
        fn()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    fn()
    stop.record()
    stop.synchronize()
    once = max(cp.cuda.get_elapsed_time(start, stop), 1e-3)
    calls = max(1, min(100, round(target_ms / once)))  # a run of calls lasts about target_ms
    times = []
    for _ in range(repeats):
        start.record()
        for _ in range(calls):
            fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / calls)
    return statistics.median(times)


# ----------------------------------------------------------------------------- sgemm

def sgemm_cases(quick: bool):
    """(label, batch, m, k, n): square sizes, then the products inside minitl's models."""
    squares = [256, 512] if quick else [1024, 2048, 4096, 8192]
    cases = [(f"{s}^3", 1, s, s, s) for s in squares]
    cases += [
        ("MLP 128x784 @ 784x512", 1, 128, 784, 512),      # Fashion-MNIST batch into a hidden layer
        ("MLP 128x512 @ 512x512", 1, 128, 512, 512),
        ("ViT tokens 4096x256 @ 256x256", 1, 4096, 256, 256),  # (batch*tokens) x d through a projection
        ("attn 32 x (256x64 @ 64x256)", 32, 256, 64, 256),     # scores Q @ K^T, per (batch, head)
    ]
    return cases


def bench_sgemm(opts) -> list[dict]:
    cp = opts.cp
    rows = []
    rng = cp.random.default_rng(0)
    for label, batch, m, k, n in sgemm_cases(opts.quick):
        lead = (batch,) if batch > 1 else ()
        a = rng.standard_normal(lead + (m, k), dtype=cp.float32)
        b = rng.standard_normal(lead + (k, n), dtype=cp.float32)
        out = cp.empty(lead + (m, n), dtype=cp.float32)
        flops = 2.0 * batch * m * n * k
        ref = cp.matmul(a, b)
        ms_cublas = time_ms(cp, lambda: cp.matmul(a, b, out=out))
        rows.append(dict(section="sgemm", case=label, kernel="cuBLAS FP32", ms=ms_cublas,
                         tflops=flops / ms_cublas / 1e9, vs_cublas=1.0, rel_err=0.0))
        # the ladder, and warptile compiled for two blocks per multiprocessor (-DWT_MIN_BLOCKS=2:
        # at most 128 registers, so twice the warps to hide latency, against some spills)
        variants = [(rung, rung, ()) for rung in kernels.MATMUL_KERNELS]
        variants.append(("warptile MIN_BLOCKS=2", "warptile", ("-DWT_MIN_BLOCKS=2",)))
        for name, rung, options in variants:
            if rung in ("naive", "tiled") and m * n * k > 4096**3 // (8 if opts.quick else 1):
                continue  # the slow rungs at 8192^3 would take most of the run
            run = lambda: kernels.matmul(a, b, out=out, kernel=rung, options=options)  # noqa: E731
            run()
            err = float(cp.abs(out - ref).max() / cp.abs(ref).max())
            ms = time_ms(cp, run, warmup=1 if rung == "naive" else 3, repeats=3 if rung == "naive" else 10)
            rows.append(dict(section="sgemm", case=label, kernel=name, ms=ms,
                             tflops=flops / ms / 1e9, vs_cublas=ms_cublas / ms, rel_err=err))
    return rows


# ----------------------------------------------------------------------------- softmax

def bench_softmax(opts) -> list[dict]:
    cp = opts.cp
    total = (1 << 20) if opts.quick else (1 << 26)  # floats per tensor: 4 MiB or 256 MiB
    src = cp.ones(total, dtype=cp.float32)
    dst = cp.empty_like(src)
    copy = lambda: dst.data.copy_from_device_async(src.data, src.nbytes)  # noqa: E731
    copy_gbs = 2 * src.nbytes / time_ms(cp, copy) / 1e6  # read + write, GB/s
    rows = [dict(section="softmax", case=f"device copy {src.nbytes >> 20} MiB", kernel="memcpy D2D",
                 gbs=copy_gbs, vs_copy=1.0)]
    rng = cp.random.default_rng(0)
    # 32 and 128: rows sharing a warp; 1024: a warp per row; 4096 and 32768: a block per row
    # in registers; 131072: streamed (read twice)
    for cols in (32, 128, 1024, 4096, 32768, 131072):
        shape = (total // cols, cols)
        x = rng.standard_normal(shape, dtype=cp.float32)
        y = kernels.softmax(x)
        dy = rng.standard_normal(shape, dtype=cp.float32)
        for name, fn, tensors, direction in (
            ("softmax fwd", lambda: kernels.softmax(x), 2, "forward"),               # read x, write y
            ("softmax bwd", lambda: kernels.softmax_backward(y, dy), 3, "backward"),  # read y, dy, write dx
            ("log_softmax fwd", lambda: kernels.log_softmax(x), 2, "forward"),
        ):
            gbs = tensors * x.nbytes / time_ms(cp, fn) / 1e6
            rows.append(dict(section="softmax", case=f"{shape[0]} x {cols}", kernel=name,
                             layout=kernels.softmax_launch(direction, *shape)[0], gbs=gbs, vs_copy=gbs / copy_gbs))
    return rows


# ----------------------------------------------------------------------------- training steps

def _models(tl, torch):
    """(name, minitl model, torch model, input shape) for each model benchmarked; the same
    architecture on both sides. Models of later chapters join this list as they land."""
    cases = [("MLP 784-512-512-10", tl.nn.Sequential(
        tl.nn.Linear(784, 512), tl.nn.ReLU(), tl.nn.Linear(512, 512), tl.nn.ReLU(), tl.nn.Linear(512, 10)),
        torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                            torch.nn.ReLU(), torch.nn.Linear(512, 10)), (128, 784))]
    if hasattr(tl.nn, "Conv2d"):
        def ours():
            return tl.nn.Sequential(
                tl.nn.Conv2d(1, 32, 3, padding=1), tl.nn.BatchNorm2d(32), tl.nn.ReLU(), tl.nn.MaxPool2d(2),
                tl.nn.Conv2d(32, 64, 3, padding=1), tl.nn.BatchNorm2d(64), tl.nn.ReLU(), tl.nn.MaxPool2d(2),
                tl.nn.Flatten(), tl.nn.Linear(64 * 7 * 7, 128), tl.nn.ReLU(), tl.nn.Linear(128, 10))
        theirs = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        cases.append(("CNN (issue 3)", ours(), theirs, (128, 1, 28, 28)))
    return cases


def bench_training(opts) -> list[dict]:
    """One Adam step (forward, cross-entropy, backward, update) on 'cuda': minitl with its
    own kernels, minitl on cuBLAS, and PyTorch CUDA (TF32 off)."""
    cp = opts.cp
    try:
        import torch
    except ImportError:
        print("training section skipped: PyTorch is not installed")
        return []
    import minitl as tl
    from minitl.training import training_step

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rows = []
    for name, ours, theirs, shape in _models(tl, torch):
        ours.to("cuda")
        theirs = theirs.cuda()
        x_np = cp.random.default_rng(0).standard_normal(shape, dtype=cp.float32)
        y_np = cp.random.default_rng(1).integers(0, 10, shape[0])
        x, y = tl.tensor(x_np), tl.tensor(y_np)
        step_ours = training_step(ours, tl.optim.Adam(ours.parameters(), lr=1e-3), tl.nn.functional.cross_entropy,
                                  x, y)
        tx, ty = torch.as_tensor(x_np, device="cuda"), torch.as_tensor(y_np, device="cuda")
        step_theirs = training_step(theirs, torch.optim.Adam(theirs.parameters(), lr=1e-3),
                                    torch.nn.functional.cross_entropy, tx, ty)

        ms_torch = time_ms(cp, step_theirs)
        ms_ours = time_ms(cp, step_ours)
        previous = tl.backend.use_gpu_kernels("cublas")
        ms_cublas = time_ms(cp, step_ours)
        tl.backend.use_gpu_kernels(previous)
        rows.append(dict(section="training", case=f"{name}, batch {shape[0]}", torch_ms=ms_torch,
                         minitl_ms=ms_ours, minitl_cublas_ms=ms_cublas, vs_torch=ms_torch / ms_ours))
    return rows


SECTIONS = {"sgemm": bench_sgemm, "softmax": bench_softmax, "training": bench_training}


def print_table(rows: list[dict]) -> None:
    by_section: dict[str, list[dict]] = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    for section, items in by_section.items():
        keys = [k for k in items[0] if k != "section"]
        for item in items:
            keys += [k for k in item if k not in keys and k != "section"]
        cells = [[_fmt(item.get(k)) for k in keys] for item in items]
        widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
        print(f"\n== {section}")
        print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
        for c in cells:
            print("  ".join(v.ljust(w) for v, w in zip(c, widths)))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v else f"{v:.2f}"
    return str(v)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minitl.kernels.bench", description="Benchmark minitl's kernels against cuBLAS and a device copy.")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="sections to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and the device as JSON")
    opts = parser.parse_args(argv)
    opts.cp = cp = _cupy_or_exit()
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    print(f"device: {device}   CuPy {cp.__version__}   CUPY_TF32={os.environ.get('CUPY_TF32')}")
    rows = []
    for name in opts.only or SECTIONS:
        section_rows = SECTIONS[name](opts)
        print_table(section_rows)
        rows += section_rows
    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump({"device": device, "cupy": cp.__version__, "quick": opts.quick, "rows": rows}, f, indent=1)
        print(f"\nwrote {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
