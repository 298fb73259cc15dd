"""A Transformer encoder's Adam step: minitl's reference code, minitl's fast paths and PyTorch
CPU, in one run, all float32 on the same number of threads.

The model is the ViT of issue 12 without its patch embedding: 50 tokens (49 patches of a
28x28 image cut in 4x4, plus CLS) of width 128, 4 pre-norm encoder layers with 4 heads, an MLP
of 512 with GELU, a final LayerNorm, a linear head on the CLS token and cross-entropy, at
batch 128. One step is forward, loss, backward and the Adam update. The same weights and data
go to both libraries. Cases: attention dropout and MLP dropout 0 (the ViT setting), and 0.1
(PyTorch's default for nn.TransformerEncoderLayer).

    python benchmarks/bench_transformer.py [--threads N] [--repeat R] [--json PATH]

The second model is the mini-BERT of `minitl pretrain bert` (`bert_results`): 8,000 subwords,
64 positions, width 128, 4 post-norm layers with 4 heads, MLP 512, dropout 0.1, at batch 32;
one step of its masked-LM pretraining (the head, tied to the token embedding, on the 15%
masked positions only), the same masking on both sides.

Goal (issue 12): the ViT step and the mini-BERT step at most 1.3x PyTorch's time, fast paths on.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's minitl

from harness import compare, header, parse_args, require_torch, timed, training_step, write_json  # noqa: E402

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


def torch_mini_bert(config):
    """PyTorch's twin of minitl's MiniBert: the same module names, so one state_dict fits both,
    and its masked-LM objective: (ids, flat masked positions) -> logits at those positions."""
    import torch
    nn = torch.nn
    d, vocab = config["d_model"], config["vocab_size"]

    class Embeddings(nn.Module):
        def __init__(self):
            super().__init__()
            self.token, self.position = nn.Embedding(vocab, d), nn.Embedding(config["max_len"], d)
            self.norm, self.dropout = nn.LayerNorm(d), nn.Dropout(config["dropout"])

        def forward(self, ids):
            return self.dropout(self.norm(self.token(ids) + self.position(torch.arange(ids.shape[1]))))

    class Head(nn.Module):
        def __init__(self, token):
            super().__init__()
            self.dense, self.activation, self.norm = nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d)
            self.decoder = nn.Linear(d, vocab)
            self.decoder.weight = token.weight

        def forward(self, h):
            return self.decoder(self.norm(self.activation(self.dense(h))))

    class MaskedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = Embeddings()
            layer = nn.TransformerEncoderLayer(d, config["num_heads"], config["dim_feedforward"], config["dropout"],
                                               "gelu", batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, config["num_layers"], enable_nested_tensor=False)
            self.lm_head = Head(self.embeddings.token)

        def forward(self, batch):
            ids, positions = batch
            hidden = self.encoder(self.embeddings(ids))
            return self.lm_head(hidden.reshape(-1, d)[positions])

    return MaskedLM()


def bert_results(args, batch_size=32):
    """{case: times and ratios} for one masked-LM Adam step of the default mini-BERT."""
    import torch

    import minitl as tl
    from minitl.models.bert import mlm_mask
    from minitl.models.pretraining import DEFAULT_CONFIG, MaskedLM

    config = DEFAULT_CONFIG["bert"]["model"]
    rng = np.random.default_rng(0)
    windows = rng.integers(5, config["vocab_size"], size=(batch_size, config["max_len"]))
    windows[:, 0] = 2
    inputs, labels = mlm_mask(windows, rng, vocab_size=config["vocab_size"])
    positions = np.flatnonzero(labels != -100)
    targets = labels.reshape(-1)[positions]
    torch.manual_seed(0)
    theirs = torch_mini_bert(config)
    ours = MaskedLM(tl.models.bert(**config))
    keys = set(ours.bert.state_dict())  # the tied decoder weight is listed once, as the embedding
    ours.bert.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items() if k in keys})
    ours_step = training_step(ours, tl.optim.AdamW(ours.parameters(), lr=1e-4), tl.nn.functional.cross_entropy,
                              (inputs, positions), tl.tensor(targets))
    theirs_step = training_step(theirs, torch.optim.AdamW(theirs.parameters(), lr=1e-4),
                                torch.nn.functional.cross_entropy,
                                (torch.from_numpy(inputs), torch.from_numpy(positions)), torch.from_numpy(targets))
    name = f"mini-BERT masked-LM AdamW step, batch {batch_size}"
    return compare([(name, ours_step, theirs_step, 1)], args.threads, args.repeat)


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
    results.update(bert_results(args))

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
