"""A Transformer encoder's Adam step: minitl's reference code, minitl's fast paths and PyTorch
CPU, in one run, all float32 on the same number of threads.

The model is the ViT of issue 12 without its patch embedding: 50 tokens (49 patches of a
28x28 image cut in 4x4, plus CLS) of width 128, 4 pre-norm encoder layers with 4 heads, an MLP
of 512 with GELU, a final LayerNorm, a linear head on the CLS token and cross-entropy, at
batch 128. One step is forward, loss, backward and the Adam update. The same weights and data
go to both libraries. Cases: attention dropout and MLP dropout 0 (the ViT setting), and 0.1
(PyTorch's default for nn.TransformerEncoderLayer).

    python benchmarks/bench_transformer.py [--threads N] [--repeat R] [--json PATH]

Goal (issue 12): the ViT step at most 1.3x PyTorch's time, fast paths on.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's minitl

from harness import header, parse_args, require_torch, timed, training_step, write_json  # noqa: E402

WIDTH, HEADS, MLP, LAYERS, TOKENS, BATCH, CLASSES = 128, 4, 512, 4, 50, 128, 10
SIDES = ("reference", "fast", "torch")
GOAL = 1.3


def build(lib, dropout):
    """The encoder, final norm and CLS head, with the library's own classes."""
    nn = lib.nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(WIDTH, HEADS, MLP, dropout, "gelu", batch_first=True,
                                               norm_first=True)
            extra = {"enable_nested_tensor": False} if lib.__name__ == "torch" else {}
            self.encoder = nn.TransformerEncoder(layer, LAYERS, **extra)
            self.norm = nn.LayerNorm(WIDTH)
            self.head = nn.Linear(WIDTH, CLASSES)

        def forward(self, x):
            return self.head(self.norm(self.encoder(x))[:, 0])

    return Encoder()


def steps(dropout, x_np, y_np):
    """{side: one Adam step} for the three sides, from the same weights and data."""
    import torch

    import minitl as tl

    torch.manual_seed(0)
    theirs = build(torch, dropout)
    ours = build(tl, dropout)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours_step = training_step(ours, tl.optim.Adam(ours.parameters(), lr=1e-4), tl.nn.functional.cross_entropy,
                              tl.tensor(x_np), tl.tensor(y_np))
    theirs_step = training_step(theirs, torch.optim.Adam(theirs.parameters(), lr=1e-4),
                                torch.nn.functional.cross_entropy, torch.from_numpy(x_np), torch.from_numpy(y_np))

    def on_path(fast):
        def run():
            with tl.fastpath.use(fast):
                ours_step()
        return run

    return {"reference": on_path(False), "fast": on_path(True), "torch": theirs_step}


def main(argv=None):
    args = parse_args(__doc__, 3, argv)
    torch = require_torch("bench_transformer")
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((BATCH, TOKENS, WIDTH)).astype(np.float32)
    y_np = rng.integers(0, CLASSES, BATCH).astype(np.int64)
    results = {}
    with threadpool_limits(limits=args.threads):
        for dropout in (0.0, 0.1):
            name = f"ViT encoder Adam step, dropout {dropout}"
            sides = steps(dropout, x_np, y_np)
            times = {side: [] for side in SIDES}
            for _ in range(3):  # the sides alternate, so drifting load hits all alike
                for side in SIDES:
                    times[side].append(timed(sides[side], args.repeat, 1))
            best = {f"{side}_s": min(times[side]) for side in SIDES}
            best["reference_ratio"] = best["reference_s"] / best["torch_s"]
            best["fast_ratio"] = best["fast_s"] / best["torch_s"]
            results[name] = best

    print(header(torch, args.threads))
    print(f"{'case':<38}{'reference':>12}{'fast':>12}{'PyTorch':>12}{'ref/PT':>8}{'fast/PT':>8}  goal")
    for name, r in results.items():
        r["goal"] = {"fast": GOAL}
        times = "".join(f"{r[f'{side}_s'] * 1e3:>9.0f} ms" for side in SIDES)
        print(f"{name:<38}{times}{r['reference_ratio']:>7.2f}x{r['fast_ratio']:>7.2f}x  fast <= {GOAL}x")
    write_json(args.json, args.threads, results)
    return results


if __name__ == "__main__":
    main()
