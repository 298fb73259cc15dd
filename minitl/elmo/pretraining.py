"""Pretraining ELMo's biLM on GCIDE, its held-out perplexities, and the cached model.

Chapter: "Transfer learning in NLP", ELMo's pretraining. Both LMs train together on the sum of
their losses, with Adam, a warm-up then cosine decay of the learning rate, gradient clipping,
and a sampled softmax (`bilm.sampled_softmax_loss`). Perplexity, exp(mean NLL per predicted
token) with the full softmax, is measured for each direction on the held-out sentences.

    bilm, vocab = load_pretrained_elmo()      # trains once and caches, then loads in a second
    bilm.info["perplexity"]                   # {"forward": ..., "backward": ...}

The default sizes fit about 15 minutes of two idle cores (the budget, `DEFAULT_CONFIG`'s
comment says how it was measured); `fast=True` trains a tiny biLM on a slice of GCIDE in
seconds, for tests and the lessons' --fast mode. Saved with `tl.save` (an .npz written
atomically, read without pickle) under `cache_dir("weights")`.

Command line: `minitl pretrain elmo [--fast] [--force]` (or `python -m minitl.elmo.pretraining`).
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from .. import nn, optim
from ..data import cache_dir
from ..data.text import Vocab
from ..ops import stack
from ..random import fork_rng, manual_seed
from ..serialization import CheckpointError, load, save
from ..tensor import no_grad
from ..training import train_step
from .bilm import CandidateSampler, ELMoBiLM, prediction_targets
from .data import BOUNDARY_ID, UNK, capped_corpus, split_sentences

RECIPE = "v2"  # part of the cache file's name: a changed recipe never loads stale weights (v2: 1.4M tokens)

# Sized to the budget of 15 minutes on 2 idle cores, from CPU time measured with
# time.process_time on a slice of this very training (22 steps of the default model on GCIDE,
# `train_step` on `BiLMObjective`) on the shared 2-core machine at a load average of 24-27:
# 0.689 CPU-seconds per step of about 1,270 tokens, 1,845 tokens per CPU-second; the held-out
# perplexity took 2.5 CPU-seconds on a tenth of the held-out set (about 25 for all of it). A
# loaded machine inflates CPU time (an earlier measurement at a lower load gave 2,500 tokens
# per CPU-second), so an idle one should do better. At 1,845 tokens per CPU-second, 1.4 million
# tokens (about a third of GCIDE's 4.0 million) take 760 CPU-seconds, and with the
# perplexities and start-up the run stays under 800 CPU-seconds (13.3 minutes); on an idle
# machine the wall time is at most that (one process; BLAS may use the second core). The full
# default run (`minitl pretrain elmo`, 2026-11-30, load average 12-29) printed: 1,400,944 tokens
# (1,104 steps) in 637.4 s CPU (2,198 tokens per CPU-second), 3790.4 s wall; /usr/bin/time:
# 651.98 s user + 3.22 s system for the whole command; held-out perplexity forward 260.5,
# backward 280.6.
DEFAULT_CONFIG = dict(max_vocab=20_000, hidden_size=256, num_layers=2, max_len=48, tokens_per_batch=1280,
                      num_sampled=1024, lr=2e-3, warmup_steps=100, clip=1.0, train_tokens=1_400_000,
                      corpus_words=None, seed=0)
# --fast: a tiny biLM on an evenly spread 200,000-word slice of GCIDE (tests, lessons' --fast):
# 150 steps, 20 CPU-seconds measured at a load average of 15 (less on an idle machine)
FAST_CONFIG = dict(max_vocab=4000, hidden_size=64, num_layers=2, max_len=48, tokens_per_batch=1024,
                   num_sampled=256, lr=5e-3, warmup_steps=20, clip=1.0, train_tokens=150_000,
                   corpus_words=200_000, seed=0)


def weights_path(fast=False):
    return cache_dir("weights") / f"elmo_gcide_{RECIPE}{'_fast' if fast else ''}.npz"


def training_corpus(config):
    """GCIDE capped to `max_vocab` words (or an evenly spread slice of `corpus_words` words)."""
    from ..data.text import gcide_corpus
    from ..embeddings.corpus import sample_corpus
    corpus = gcide_corpus()
    if config["corpus_words"]:
        corpus = sample_corpus(corpus, config["corpus_words"])
    return capped_corpus(corpus, config["max_vocab"])


class BiLMObjective(nn.Module):
    """The "model" that `train_step` runs: a batch (ids, lengths) in, the two directions'
    losses out as one (2,) tensor [forward NLL, backward NLL] (`ELMoBiLM.loss`, with the
    sampled softmax of `sampler`); `sum_of_losses` makes them the biLM's objective."""

    def __init__(self, bilm, sampler):
        super().__init__()
        self.bilm, self.sampler = bilm, sampler

    def forward(self, batch):
        ids, lengths = batch
        return stack(list(self.bilm.loss(ids, lengths, self.sampler)))


def sum_of_losses(losses, _targets):
    """The biLM's objective: the forward LM's loss plus the backward LM's (nothing to compare
    with; the targets are inside the batch)."""
    return losses.sum()


def perplexity(bilm, sentences, tokens_per_batch=2048, progress=False):
    """Each direction's held-out perplexity with the full softmax: exp(mean NLL per predicted
    token), every token predicted once by each LM (the closing <s> included, <unk> a word).
    Returns {"forward": ppl, "backward": ppl, "tokens": predictions per direction}."""
    from tqdm.auto import tqdm
    from ..ops import cross_entropy, reshape
    was_training = bilm.training
    bilm.eval()
    totals, count = [0.0, 0.0], 0
    with no_grad():
        for rows in tqdm(sentences.batches(tokens_per_batch), desc="held-out perplexity", unit="batch",
                         disable=None if progress else True, leave=False):
            ids, lengths = sentences.batch(rows)
            _, forward_states, backward_states = bilm(ids, lengths)
            for k, (states, (targets, where)) in enumerate(zip((forward_states, backward_states),
                                                               prediction_targets(ids, lengths))):
                hidden = reshape(states[-1], (-1, bilm.hidden_size))[where]
                totals[k] += float(cross_entropy(bilm.decoder(hidden), targets, reduction="sum").item())
            count += len(targets)
    bilm.train(was_training)
    return {"forward": math.exp(totals[0] / count), "backward": math.exp(totals[1] / count), "tokens": count}


def pretrain(config=None, fast=False, progress=True):
    """Train a biLM as `config` says (default: `FAST_CONFIG` if fast else `DEFAULT_CONFIG`).
    Returns (bilm, vocab, record): the record holds the config, the held-out perplexities, the
    tokens trained on, the wall and CPU seconds of training and the loss curve."""
    from tqdm.auto import tqdm
    config = dict(FAST_CONFIG if fast else DEFAULT_CONFIG, **(config or {}))
    manual_seed(config["seed"])
    corpus = training_corpus(config)
    train = split_sentences(corpus, config["max_len"], held_out=False)
    held_out = split_sentences(corpus, config["max_len"], held_out=True)
    vocab = corpus.vocab
    bilm = ELMoBiLM(len(vocab), config["hidden_size"], config["num_layers"])
    # the sampled softmax draws words by their frequency in the training text (<unk> included)
    counts = np.bincount(train.ids, minlength=len(vocab))
    counts[BOUNDARY_ID] = len(train)  # each LM predicts one <s> per sentence
    sampler = CandidateSampler(counts, config["num_sampled"])
    rng = fork_rng()
    schedule = []  # batches until train_tokens is reached, epoch after epoch
    tokens = 0
    while tokens < config["train_tokens"]:
        for rows in train.batches(config["tokens_per_batch"], rng):
            schedule.append(rows)
            tokens += int((train.lengths[rows] + 2).sum())
            if tokens >= config["train_tokens"]:
                break
    optimizer = optim.Adam(bilm.parameters(), lr=config["lr"])
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, min(config["warmup_steps"], len(schedule)), len(schedule))
    objective = BiLMObjective(bilm, sampler)
    losses = []
    wall, cpu = time.perf_counter(), time.process_time()
    bar = tqdm(schedule, desc="pretraining the ELMo biLM", unit="batch", disable=None if progress else True)
    for step, rows in enumerate(bar):
        _, both = train_step(objective, optimizer, sum_of_losses, train.batch(rows), None, scheduler,
                             max_grad_norm=config["clip"])
        losses.append(tuple(float(v) for v in both.data))
        if not all(map(math.isfinite, losses[-1])):
            raise FloatingPointError(f"ELMo pretraining: the loss became {losses[-1]} at step {step}; "
                                     f"lower the learning rate")
        if step % 20 == 0:
            recent = np.mean(losses[-50:], axis=0)
            bar.set_postfix(sampled_loss_fwd=f"{recent[0]:.2f}", bwd=f"{recent[1]:.2f}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    ppl = perplexity(bilm, held_out, progress=progress)
    record = {"config": config, "perplexity": {"forward": ppl["forward"], "backward": ppl["backward"]},
              "held_out_tokens": ppl["tokens"], "held_out_unk_rate": float(np.mean(held_out.ids == vocab.unk_id)),
              "train_tokens": tokens, "train_steps": len(schedule), "train_seconds": wall,
              "train_cpu_seconds": cpu, "losses": np.asarray(losses, dtype=np.float32)}
    return bilm, vocab, record


def save_pretrained(bilm, vocab, record, path):
    """Weights, vocabulary and record in one .npz via `tl.save`: atomic, no pickle."""
    save({"weights": bilm.state_dict(), "model_config": bilm.config, "vocab": list(vocab.id_to_word),
          "counts": vocab.counts, "record": record}, path)


def read_pretrained(path):
    """(bilm, vocab) from a file of `save_pretrained`; `bilm.info` holds the record."""
    state = load(path)
    missing = {"weights", "model_config", "vocab", "counts", "record"} - set(state)
    if missing:
        raise CheckpointError(f"{path} is not a pretrained ELMo file (missing {sorted(missing)}); "
                              f"remake it with `minitl pretrain elmo --force`")
    config = state["model_config"]
    bilm = ELMoBiLM(config["vocab_size"], config["hidden_size"], config["num_layers"], config["dropout"])
    bilm.load_state_dict(state["weights"])
    bilm.info = dict(state["record"])
    return bilm, Vocab(state["vocab"], state["counts"], unk=UNK)


def load_pretrained_elmo(fast=False, train_if_missing=True, force=False, progress=True):
    """The cached biLM pretrained on GCIDE and its vocabulary: (bilm, vocab). Trains and saves
    it first when the cache has none (or `force`); `bilm.info` holds its perplexities and
    training time. `fast`: the tiny biLM of `FAST_CONFIG`."""
    path = weights_path(fast)
    if path.exists() and not force:
        return read_pretrained(path)
    if not train_if_missing:
        raise FileNotFoundError(f"no pretrained ELMo biLM at {path}; make it with "
                                f"`minitl pretrain elmo{' --fast' if fast else ''}`")
    bilm, vocab, record = pretrain(fast=fast, progress=progress)
    save_pretrained(bilm, vocab, record, path)
    return read_pretrained(path)


def pretrain_main(argv=None):
    """`minitl pretrain elmo`: pretrain (or load) the biLM and print its held-out perplexities."""
    parser = argparse.ArgumentParser(prog="minitl pretrain elmo",
                                     description="Pretrain ELMo's biLM on GCIDE and cache it.")
    parser.add_argument("--fast", action="store_true", help="a tiny biLM on a slice of GCIDE (seconds)")
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    bilm, vocab = load_pretrained_elmo(fast=args.fast, force=args.force)
    info = bilm.info
    config = info["config"]
    print(f"ELMo biLM: {weights_path(args.fast)}")
    print(f"  {config['num_layers']} LSTM layers of {config['hidden_size']} units per direction, vocabulary "
          f"{len(vocab):,} words, {bilm.num_parameters():,} parameters")
    print(f"  trained on {int(info['train_tokens']):,} tokens ({int(info['train_steps']):,} steps) in "
          f"{float(info['train_seconds']):.1f} s wall, {float(info['train_cpu_seconds']):.1f} s CPU "
          f"({int(info['train_tokens']) / float(info['train_cpu_seconds']):,.0f} tokens per CPU-second)")
    print(f"  held-out perplexity ({int(info['held_out_tokens']):,} tokens per direction, "
          f"{float(info['held_out_unk_rate']):.1%} of them <unk>): forward {float(info['perplexity']['forward']):.1f}, "
          f"backward {float(info['perplexity']['backward']):.1f}")
    print(f"  this call took {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(pretrain_main())
