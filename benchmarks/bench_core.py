"""minitl against PyTorch CPU, in one run, both float32 on the same number of threads; minitl
twice, on its reference code and on its fast paths (see benchmarks/harness.py).

1. autograd overhead: one tiny op forward + backward, c = (a * b).sum(); c.backward(),
   on 4-element tensors, so the time is the engine's bookkeeping, not arithmetic;
2. one Adam training step of an MLP 784-512-512-10 at batch 128 (forward, cross-entropy,
   backward, update).

    python benchmarks/bench_core.py [--threads N] [--repeat R] [--json PATH]

Goals: tiny-op overhead at most 3x PyTorch's time (issue 2); the MLP step on the fast paths at
most 1.2x (issue 9). Measured figures, with date and machine: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import numpy as np
from harness import compare, header, parse_args, print_table, require_torch, training_step, write_json


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
    return tiny, training_step(model, opt, tl.nn.functional.cross_entropy, tl.tensor(x_np), tl.tensor(y_np))


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
    return tiny, training_step(model, opt, torch.nn.functional.cross_entropy,
                               torch.from_numpy(x_np), torch.from_numpy(y_np))


def main(argv=None):
    args = parse_args(__doc__, 7, argv)

    torch = require_torch("bench_core")
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((128, 784)).astype(np.float32)
    y_np = rng.integers(0, 10, 128).astype(np.int64)
    shapes = [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]
    w_np = [(rng.standard_normal(s) * 0.03).astype(np.float32) for s in shapes]
    ours_tiny, ours_step = minitl_cases(x_np, y_np, w_np)
    peer_tiny, peer_step = torch_cases(x_np, y_np, w_np)
    results = compare([("tiny op fwd+bwd", ours_tiny, peer_tiny, 2000),
                       ("MLP Adam step", ours_step, peer_step, 20)], args.threads, args.repeat)

    print(header(torch, args.threads))
    print_table(results, {"tiny op fwd+bwd": {"fast": 3.0}, "MLP Adam step": {"fast": 1.2}}, width=18)
    write_json(args.json, args.threads, results)
    return results


if __name__ == "__main__":
    main()
