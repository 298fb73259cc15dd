"""minitl's vision layers against PyTorch CPU, in one run, both float32 on the same threads;
minitl twice, on its reference code and on its fast paths (see benchmarks/harness.py).

1. conv2d forward + backward (input, weight and bias gradients) on layer shapes of the
   chapter's networks;
2. one Adam training step at batch 128 on 1x28x28 of the issue's CNN:
   conv(1->32, 3x3, pad 1)-BN-ReLU-maxpool2, conv(32->64, 3x3, pad 1)-BN-ReLU-maxpool2,
   Linear(64*7*7->128)-ReLU-Linear(128->10)  (forward, cross-entropy, backward, update).

    python benchmarks/bench_vision.py [--threads N] [--repeat R] [--json PATH]

Goals (issue 9): the CNN step at most 1.5x PyTorch's time on the fast paths and at most 3x on
the reference code. Measured figures, with date and machine: benchmarks/RESULTS.md. The
16-channel conv is the worst case for im2col: its patch matrix is 9x the input, where
PyTorch's direct convolution reads the input once.
"""
from __future__ import annotations

import numpy as np
from harness import compare, header, parse_args, print_table, require_torch, training_step, write_json

CONV_SHAPES = [  # (batch, in_channels, size, out_channels, kernel, stride, padding)
    (128, 1, 28, 32, 3, 1, 1),
    (128, 32, 14, 64, 3, 1, 1),
    (64, 16, 28, 16, 3, 1, 1),
    (64, 32, 14, 64, 3, 2, 1),
]


def conv_cases(shape, rng):
    import torch

    import minitl as tl

    n, c, size, o, k, s, p = shape
    x_np = rng.standard_normal((n, c, size, size)).astype(np.float32)
    w_np = (rng.standard_normal((o, c, k, k)) * 0.1).astype(np.float32)
    b_np = rng.standard_normal(o).astype(np.float32)
    x, w, b = (tl.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x_np, w_np, b_np))
    out_shape = tl.nn.functional.conv2d(x, w, b, s, p).shape
    g_np = rng.standard_normal(out_shape).astype(np.float32)
    tg = torch.from_numpy(g_np)

    def ours():
        x.grad = w.grad = b.grad = None
        tl.nn.functional.conv2d(x, w, b, s, p).backward(g_np)

    def peer():
        tx.grad = tw.grad = tb.grad = None
        torch.nn.functional.conv2d(tx, tw, tb, s, p).backward(tg)

    return ours, peer


def cnn_cases(rng):
    import torch

    import minitl as tl

    x_np = rng.standard_normal((128, 1, 28, 28)).astype(np.float32)
    y_np = rng.integers(0, 10, 128).astype(np.int64)
    tl.manual_seed(0)
    model = tl.models.small_cnn(10)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=False)
    ours = training_step(model, tl.optim.Adam(model.parameters(), lr=1e-3), tl.nn.functional.cross_entropy,
                         tl.tensor(x_np), tl.tensor(y_np))
    peer = training_step(ref, torch.optim.Adam(ref.parameters(), lr=1e-3), torch.nn.functional.cross_entropy,
                         torch.from_numpy(x_np), torch.from_numpy(y_np))
    return ours, peer


def main(argv=None):
    args = parse_args(__doc__, 5, argv)
    torch = require_torch("bench_vision")
    rng = np.random.default_rng(0)
    cases = []
    for shape in CONV_SHAPES:
        n, c, size, o, k, s, p = shape
        cases.append((f"conv {c}->{o} {k}x{k} s{s} {size}x{size} b{n}", *conv_cases(shape, rng), 3))
    cases.append(("CNN Adam step b128", *cnn_cases(rng), 3))

    results = compare(cases, args.threads, args.repeat)

    print(header(torch, args.threads))
    print("(conv cases: forward + backward)")
    print_table(results, {"CNN Adam step b128": {"reference": 3.0, "fast": 1.5}})
    write_json(args.json, args.threads, results)
    return results


if __name__ == "__main__":
    main()
