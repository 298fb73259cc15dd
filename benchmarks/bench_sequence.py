"""An LSTM language model's Adam step, minitl against PyTorch CPU, in one run, float32, on the
same number of threads; minitl twice, on its reference code (`tl.fastpath.use(False)`: a
graph of one cell node per step) and on its fast paths (one node per LSTM layer).

The model is the classic word-level LSTM LM (Zaremba et al.'s "medium" shape, smaller): an
embedding of 256, 2 LSTM layers of 256, a 10,000-way Linear decoder; a batch of 32 sequences
of 35 steps; cross-entropy over all 32 * 35 next-token predictions. One step = forward, loss,
backward (BPTT through the 35 steps), Adam update. Both sides start from the same weights and
are built by `training_step`, so the same lines are timed. The three sides alternate over
three rounds (machine load drifts); each side's best round is reported.

    python benchmarks/bench_sequence.py [--threads N] [--repeat R] [--json PATH]

Goal (issue 11): the fast path at most 2.0x PyTorch's time.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # time this checkout's minitl

from harness import header, parse_args, require_torch, timed, training_step, write_json  # noqa: E402

VOCAB, EMBED, HIDDEN, LAYERS, BATCH, STEPS = 10_000, 256, 256, 2, 32, 35
SIDES = ("reference", "fast", "torch")
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


def on_path(fn, fast):
    """fn run with minitl's fast paths on (fast=True) or on the reference code."""
    import minitl

    def run():
        with minitl.fastpath.use(fast):
            fn()

    return run


def compare_sides(ours, peer, threads, repeat, inner=2, rounds=3):
    """Best-of-rounds seconds per step of the three sides, interleaved, all on `threads`."""
    import torch
    from threadpoolctl import threadpool_limits

    import minitl

    torch.set_num_threads(threads)
    set_threads = minitl.fastpath.set_num_threads
    set_threads(threads)
    sides = {"reference": on_path(ours, False), "fast": on_path(ours, True), "torch": peer}
    times = {side: [] for side in SIDES}
    with threadpool_limits(limits=threads):
        for _ in range(rounds):
            for side in SIDES:
                times[side].append(timed(sides[side], repeat, inner))
    best = {f"{side}_s": min(times[side]) for side in SIDES}
    best["reference_ratio"] = best["reference_s"] / best["torch_s"]
    best["fast_ratio"] = best["fast_s"] / best["torch_s"]
    return best


def main(argv=None):
    args = parse_args(__doc__, 3, argv)
    torch = require_torch("bench_sequence")
    import minitl

    tune = minitl.cpu_runtime.tune
    tune()
    rng = np.random.default_rng(0)
    weights = lm_weights(rng)
    tokens = rng.integers(0, VOCAB, (STEPS + 1, BATCH)).astype(np.int64)
    inputs, targets = tokens[:-1], tokens[1:].reshape(-1)  # predict every next token
    result = compare_sides(minitl_step(weights, inputs, targets), torch_step(weights, inputs, targets),
                           args.threads, args.repeat)

    name = f"LSTM LM Adam step ({LAYERS}x{HIDDEN}, V={VOCAB:,}, B={BATCH}, T={STEPS})"
    print(header(torch, args.threads))
    print(f"{'case':<{len(name) + 2}}{'reference':>12}{'fast':>12}{'PyTorch':>12}{'ref/PT':>8}{'fast/PT':>8}  goal")
    times = "".join(f"{result[f'{side}_s'] * 1e3:>9.1f} ms" for side in SIDES)
    print(f"{name:<{len(name) + 2}}{times}{result['reference_ratio']:>7.2f}x{result['fast_ratio']:>7.2f}x"
          f"  fast <= {GOALS['fast']}x")
    result["goals"] = GOALS
    write_json(args.json, args.threads, {name: result})
    return result


if __name__ == "__main__":
    main()
