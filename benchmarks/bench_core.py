"""minitl against PyTorch CPU, in one run, both float32 on the same number of threads.

1. autograd overhead: one tiny op forward + backward, c = (a * b).sum(); c.backward(),
   on 4-element tensors, so the time is the engine's bookkeeping, not arithmetic;
2. one Adam training step of an MLP 784-512-512-10 at batch 128 (forward, cross-entropy,
   backward, update).

    python benchmarks/bench_core.py [--threads N] [--repeat R] [--json PATH]

Goals (issue 2): MLP step at most 1.3x PyTorch's time; tiny-op overhead at most 3x.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def timed(fn, repeat, inner):
    """Median over `repeat` runs of the mean time of `inner` calls, in seconds."""
    for _ in range(max(3, inner // 10)):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def minitl_cases(x_np, y_np, w_np):
    import minitl as tl

    a = tl.tensor(np.ones(4, np.float32), requires_grad=True)
    b = tl.tensor(np.full(4, 2.0, np.float32), requires_grad=True)

    def tiny():
        c = (a * b).sum()
        c.backward()

    tl.manual_seed(0)
    model = tl.nn.Sequential(tl.nn.Linear(784, 512), tl.nn.ReLU(), tl.nn.Linear(512, 512), tl.nn.ReLU(),
                             tl.nn.Linear(512, 10))
    for p, w in zip(model.parameters(), w_np):
        p.data[...] = w
    opt = tl.optim.Adam(model.parameters(), lr=1e-3)
    x, y = tl.tensor(x_np), tl.tensor(y_np)

    def step():
        loss = tl.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return tiny, step


def torch_cases(x_np, y_np, w_np):
    import torch

    a = torch.ones(4, requires_grad=True)
    b = torch.full((4,), 2.0, requires_grad=True)

    def tiny():
        c = (a * b).sum()
        c.backward()

    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 10))
    with torch.no_grad():
        for p, w in zip(model.parameters(), w_np):
            p.copy_(torch.from_numpy(w))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return tiny, step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    try:
        import torch
    except ImportError:
        sys.exit("bench_core needs PyTorch as the peer: pip install -e .[oracle]")
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((128, 784)).astype(np.float32)
    y_np = rng.integers(0, 10, 128).astype(np.int64)
    shapes = [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]
    w_np = [(rng.standard_normal(s) * 0.03).astype(np.float32) for s in shapes]

    results = {}
    with threadpool_limits(limits=args.threads):
        ours_tiny, ours_step = minitl_cases(x_np, y_np, w_np)
        peer_tiny, peer_step = torch_cases(x_np, y_np, w_np)
        # interleave the two sides so drifting machine load hits both alike
        for name, ours, peer, inner in [("tiny op fwd+bwd", ours_tiny, peer_tiny, 2000),
                                        ("MLP Adam step", ours_step, peer_step, 20)]:
            t_ours, t_peer = [], []
            for _ in range(3):
                t_ours.append(timed(ours, args.repeat, inner))
                t_peer.append(timed(peer, args.repeat, inner))
            results[name] = {"minitl_s": min(t_ours), "torch_s": min(t_peer)}

    print(f"minitl vs PyTorch {torch.__version__} CPU, float32, {args.threads} thread(s), numpy {np.__version__}")
    print(f"{'case':<18}{'minitl':>12}{'PyTorch':>12}{'ratio':>8}{'goal':>8}")
    goals = {"tiny op fwd+bwd": 3.0, "MLP Adam step": 1.3}
    for name, r in results.items():
        r["ratio"] = r["minitl_s"] / r["torch_s"]
        r["goal"] = goals[name]
        unit, scale = ("us", 1e6) if r["torch_s"] < 1e-3 else ("ms", 1e3)
        print(f"{name:<18}{r['minitl_s'] * scale:>9.1f} {unit}{r['torch_s'] * scale:>9.1f} {unit}"
              f"{r['ratio']:>7.2f}x{'<=' + str(r['goal']) + 'x':>8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
