"""What every benchmark here shares: timing, and running minitl and its peer interleaved.

Both sides run in the same process on the same number of threads, alternating three rounds
so that drifting machine load hits both alike; each side's best round is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from minitl.training import training_step  # noqa: F401  (the scripts take it from here)


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


def compare(cases, threads, repeat, rounds=3):
    """cases: (name, minitl_fn, peer_fn, inner calls). Returns {name: {minitl_s, torch_s, ratio}}
    with BLAS, minitl's element-wise work and PyTorch all limited to `threads`."""
    import torch
    from threadpoolctl import threadpool_limits

    import minitl

    torch.set_num_threads(threads)
    minitl.parallel.set_num_threads(threads)
    results = {}
    with threadpool_limits(limits=threads):
        for name, ours, peer, inner in cases:
            t_ours, t_peer = [], []
            for _ in range(rounds):
                t_ours.append(timed(ours, repeat, inner))
                t_peer.append(timed(peer, repeat, inner))
            best_ours, best_peer = min(t_ours), min(t_peer)
            results[name] = {"minitl_s": best_ours, "torch_s": best_peer, "ratio": best_ours / best_peer}
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
