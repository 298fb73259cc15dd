"""An LSTM language model's Adam step, minitl against PyTorch CPU, in one run, float32, on the
same number of threads; minitl twice, on its reference code (`tl.fastpath.use(False)`: a
graph of one cell node per step) and on its fast paths (one node per LSTM layer).

The model is the classic word-level LSTM LM (Zaremba et al.'s "medium" shape, smaller): an
embedding of 256, 2 LSTM layers of 256, a 10,000-way Linear decoder; a batch of 32 sequences
of 35 steps; cross-entropy over all 32 * 35 next-token predictions. One step = forward, loss,
backward (BPTT through the 35 steps), Adam update. Both sides start from the same weights and
are built by `training_step`, so the same lines are timed. `harness.compare` alternates the
three sides over three rounds (machine load drifts) and reports each side's best round.

    python benchmarks/bench_sequence.py [--threads N] [--repeat R] [--json PATH]

Goal (issue 11): the fast path at most 2.0x PyTorch's time.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # time this checkout's minitl

from harness import compare, header, parse_args, print_table, require_torch, training_step, write_json  # noqa: E402

VOCAB, EMBED, HIDDEN, LAYERS, BATCH, STEPS = 10_000, 256, 256, 2, 32, 35
GOALS = {"fast": 2.0}


def lm_weights(rng):
    """The model's weights as NumPy arrays, in PyTorch's parameter names."""
    bound = 1 / np.sqrt(HIDDEN)
    weights = {"embedding.weight": rng.standard_normal((VOCAB, EMBED))}
    for layer in range(LAYERS):
        inputs = EMBED if layer == 0 else HIDDEN
        for name, shape in (("weight_ih", (4 * HIDDEN, inputs)), ("weight_hh", (4 * HIDDEN, HIDDEN)),
                            ("bias_ih", (4 * HIDDEN,)), ("bias_hh", (4 * HIDDEN,))):
            weights[f"lstm.{name}_l{layer}"] = rng.uniform(-bound, bound, shape)
    weights["decoder.weight"] = rng.uniform(-bound, bound, (VOCAB, HIDDEN))
    weights["decoder.bias"] = rng.uniform(-bound, bound, VOCAB)
    return {k: v.astype(np.float32) for k, v in weights.items()}


def language_model(nn):
    """The same model class for either library (`nn` is tl.nn or torch.nn)."""

    class LanguageModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(VOCAB, EMBED)
            self.lstm = nn.LSTM(EMBED, HIDDEN, LAYERS)
            self.decoder = nn.Linear(HIDDEN, VOCAB)

        def forward(self, tokens):  # (T, B) -> next-token logits (T * B, V)
            out, _ = self.lstm(self.embedding(tokens))
            return self.decoder(out.reshape(-1, HIDDEN))

    return LanguageModel()


def minitl_step(weights, tokens, targets):
    import minitl as tl

    model = language_model(tl.nn)
    model.load_state_dict(weights)
    opt = tl.optim.Adam(model.parameters(), lr=1e-3)
    return training_step(model, opt, tl.nn.functional.cross_entropy, tl.tensor(tokens), tl.tensor(targets))


def torch_step(weights, tokens, targets):
    import torch

    model = language_model(torch.nn)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    return training_step(model, opt, torch.nn.functional.cross_entropy,
                         torch.from_numpy(tokens), torch.from_numpy(targets))


def main(argv=None):
    args = parse_args(__doc__, 3, argv)
    torch = require_torch("bench_sequence")
    rng = np.random.default_rng(0)
    weights = lm_weights(rng)
    tokens = rng.integers(0, VOCAB, (STEPS + 1, BATCH)).astype(np.int64)
    inputs, targets = tokens[:-1], tokens[1:].reshape(-1)  # predict every next token
    name = f"LSTM LM Adam step ({LAYERS}x{HIDDEN}, V={VOCAB:,}, B={BATCH}, T={STEPS})"
    results = compare([(name, minitl_step(weights, inputs, targets), torch_step(weights, inputs, targets), 2)],
                      args.threads, args.repeat)
    print(header(torch, args.threads))
    print_table(results, {name: GOALS}, width=len(name) + 2)
    write_json(args.json, args.threads, results)
    return results[name]


if __name__ == "__main__":
    main()
