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
    rng = np.random.default_rng(0)
    cases = [(f"ViT Adam step, dropout {dropout}", *vit_case(dropout, rng), 1) for dropout in (0.0, 0.1)]
    results = compare(cases, args.threads, args.repeat)
    results.update(bert_results(args))
    print(header(torch, args.threads))
    print_table(results, {name: {"fast": GOAL} for name in results}, width=30)
    write_json(args.json, args.threads, results)
    return results


if __name__ == "__main__":
    main()
