"""A Vision Transformer's Adam step: minitl's reference code, minitl's fast paths and PyTorch
CPU, in one run, all float32 on the same number of threads.

The model is issue 12's ViT, `tl.models.vit_mini(10)`: 28x28 images cut in 4x4 patches (49
tokens and CLS), width 128, 4 pre-norm encoder layers with 4 heads, an MLP of 512 with GELU,
a final LayerNorm, a linear head on the CLS token and cross-entropy, at batch 128. PyTorch
runs its twin `tl.models.vit.torch_vit(model)`, built from torch.nn layers (a stride-4 Conv2d
for the patches, nn.TransformerEncoder) with the same weights; both get the same data. One
step is forward, loss, backward and the Adam update. Cases: dropout 0 (the ViT setting), and
0.1 (PyTorch's default for nn.TransformerEncoderLayer) on attention weights, MLP and embeddings.

    python benchmarks/bench_transformer.py [--threads N] [--repeat R] [--json PATH]

Goal (issue 12): the ViT step at most 1.3x PyTorch's time, fast paths on.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's minitl

from harness import compare, header, parse_args, print_table, require_torch, training_step, write_json  # noqa: E402

BATCH, CLASSES = 128, 10
GOAL = 1.3


def vit_case(dropout, rng):
    """(minitl's ViT Adam step, PyTorch's twin's step) from the same weights and data."""
    import torch

    import minitl as tl
    from minitl.models.vit import torch_vit

    tl.manual_seed(0)
    model = tl.models.vit_mini(CLASSES, dropout=dropout)
    twin = torch_vit(model)
    x_np = rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32)
    y_np = rng.integers(0, CLASSES, BATCH).astype(np.int64)
    ours = training_step(model, tl.optim.Adam(model.parameters(), lr=1e-4), tl.nn.functional.cross_entropy,
                         tl.tensor(x_np), tl.tensor(y_np))
    theirs = training_step(twin, torch.optim.Adam(twin.parameters(), lr=1e-4), torch.nn.functional.cross_entropy,
                           torch.from_numpy(x_np), torch.from_numpy(y_np))
    return ours, theirs


def main(argv=None):
    args = parse_args(__doc__, 3, argv)
    torch = require_torch("bench_transformer")
    rng = np.random.default_rng(0)
    cases = [(f"ViT Adam step, dropout {dropout}", *vit_case(dropout, rng), 1) for dropout in (0.0, 0.1)]
    results = compare(cases, args.threads, args.repeat)
    print(header(torch, args.threads))
    print_table(results, {name: {"fast": GOAL} for name in results}, width=30)
    write_json(args.json, args.threads, results)
    return results


if __name__ == "__main__":
    main()
