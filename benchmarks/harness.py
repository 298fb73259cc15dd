"""What every benchmark here shares: timing, and running minitl and its peer interleaved.

Each case runs three sides in the same process on the same number of threads: minitl's
reference code (`tl.fastpath.use(False)`, what the lessons and exercises show), minitl's fast
paths (`tl.fastpath.use(True)`), and the peer (PyTorch). The sides alternate over three rounds,
so that drifting machine load hits all alike; each side's best round is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# Time the minitl of this checkout (the one beside benchmarks/), not an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minitl.training import training_step  # noqa: E402,F401  (the scripts take it from here)

SIDES = ("reference", "fast", "torch")


def timed(fn, repeat, inner):
    """Median over `repeat` runs of the mean time of `inner` calls, in seconds (after warm-up)."""
    for _ in range(max(1, inner // 10)):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def on_path(fn, fast):
    """fn run with minitl's fast paths on (fast=True) or on the reference code."""
    import minitl

    def run():
        with minitl.fastpath.use(fast):
            fn()

    return run


def compare(cases, threads, repeat, rounds=3):
    """cases: (name, minitl_fn, peer_fn, inner calls). Returns {name: {reference_s, fast_s,
    torch_s, reference_ratio, fast_ratio}} with BLAS, minitl's threads and PyTorch all limited
    to `threads`, after `minitl.cpu_runtime.tune()` (what a training program does)."""
    import torch
    from threadpoolctl import threadpool_limits

    import minitl

    minitl.cpu_runtime.tune()
    torch.set_num_threads(threads)
    minitl.fastpath.set_num_threads(threads)
    results = {}
    with threadpool_limits(limits=threads):
        for name, ours, peer, inner in cases:
            sides = {"reference": on_path(ours, False), "fast": on_path(ours, True), "torch": peer}
            times = {side: [] for side in SIDES}
            for _ in range(rounds):
                for side in SIDES:
                    times[side].append(timed(sides[side], repeat, inner))
            best = {f"{side}_s": min(times[side]) for side in SIDES}
            best["reference_ratio"] = best["reference_s"] / best["torch_s"]
            best["fast_ratio"] = best["fast_s"] / best["torch_s"]
            results[name] = best
    return results


def parse_args(doc, repeat, argv=None):
    """The options every minitl-vs-PyTorch script takes: --threads, --repeat, --json."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--json", help="write the results here")
    return parser.parse_args(argv)


def header(torch, threads):
    """The line that says what was compared."""
    return f"minitl vs PyTorch {torch.__version__} CPU, float32, {threads} thread(s), numpy {np.__version__}"


def print_table(results, goals=None, width=34):
    """One row per case: the three times, the two ratios to PyTorch, and the goals (a dict
    {case: {"reference": x, "fast": y}})."""
    goals = goals or {}
    print(f"{'case':<{width}}{'reference':>12}{'fast':>12}{'PyTorch':>12}{'ref/PT':>8}{'fast/PT':>8}  goals")
    for name, r in results.items():
        unit, scale = ("us", 1e6) if r["torch_s"] < 1e-3 else ("ms", 1e3)
        times = "".join(f"{r[f'{side}_s'] * scale:>9.1f} {unit}" for side in SIDES)
        goal = goals.get(name, {})
        r["goals"] = goal
        goal_text = ", ".join(f"{side} <= {limit}x" for side, limit in goal.items())
        print(f"{name:<{width}}{times}{r['reference_ratio']:>7.2f}x{r['fast_ratio']:>7.2f}x  {goal_text}")


def write_json(path, threads, results):
    if path:
        with open(path, "w") as f:
            json.dump({"threads": threads, "results": results}, f, indent=2)


def require_torch(script):
    try:
        import torch
    except ImportError:
        raise SystemExit(f"{script} needs PyTorch as the peer: pip install -e .[oracle]") from None
    return torch
