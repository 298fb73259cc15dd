"""Pretraining mini-BERT (masked LM) and mini-GPT (causal LM) on GCIDE, their held-out losses,
and the cached models (chapter: transformers as foundation models; lesson 8).

**The text.** GCIDE's paragraphs (`tl.data.gcide_corpus`), cut into subwords by the BPE
tokenizer (`tl.data.gcide_tokenizer(8000)`), each paragraph followed by [SEP], all of them one
stream of 4.85 million tokens. Every 100th paragraph is held out (GCIDE is alphabetical: a
stride spreads the held-out part over the whole dictionary): about 48,000 tokens on which the
losses are measured and never trained. The stream is cut into windows of `max_len` tokens
(GPT: `max_len + 1`, so that each of its `max_len` positions has a next token), each starting
with [CLS]: no padding is ever trained on (RoBERTa's and GPT-2's packing). Each epoch starts
the windows at a random offset and shuffles them. The part-of-speech task's definitions are
GCIDE text too, so pretraining has read its texts (never its labels), as a real BERT has read
the web its tasks come from.

**The objectives**, each one `minitl.training.train_step` per batch, with AdamW, a linear
warm-up then cosine decay of the learning rate, and gradient clipping:

    BERT   L = -(1/|M|) sum_(t in M) log p(w_t | x~)      M: the masked positions (`bert.mlm_mask`)
    GPT    L = -(1/T) sum_t log p(w_(t+1) | w_0..w_t)     every position of every window

BERT's recipe masks 40% of the tokens, not the original 15% (the recipe's `mask_prob`; the
80/10/10 rule is kept). Wettig et al. (2022, "Should You Mask 15% in Masked Language
Modeling?") found 40% better, most of all on small budgets, and here the budget is everything:
at 15% a window of 63 tokens yields 9.5 predictions, where GPT's yields 64. The first recipe
(v1: 15%, 1,800 steps) reached a held-out loss of 6.6705 against the unigram model's 7.00, and
its weights, fine-tuned, did worse on the part-of-speech task than the same model from scratch.
The default (v2: 40%, 2,000 steps) reached 6.5664 at 15% masking (6.5484 at 40%), as printed
by `minitl pretrain bert`; a probe of 600 steps at 40% reached 6.8762, where v1 had 6.8667
after 720 of its 1,800 steps: masking more helped a little, not much. Pre-norm layers and
dropout 0 changed little; a rate of 2e-3 with 3,000 steps (over the budget) reached 6.486, and
that model fine-tuned no better than v2 (benchmarks/RESULTS.md, "What else was tried on the
mini-BERT"). (BERT's loss and GPT's, 5.8730, answer different questions and do not compare
directly; per window BERT is trained on 25 predictions at 40%, GPT on 64.)

The held-out loss is that mean over the held-out windows (for BERT with a fixed masking seed,
so every evaluation masks the same tokens, and at 15% whatever the training rate, so that the
losses of every recipe compare; the record keeps the loss at the training rate too, as
`heldout_loss_train_rate`), and its perplexity exp(L): the number of subwords the model
hesitates between, uniformly, on average (a uniform guess over 8,000 subwords has perplexity
8,000, loss ln 8000 = 8.99).

**The budget.** Each default run fits 15 minutes on 2 idle cores. One training step of the
default models (batch 32, 64 tokens, forward, backward, AdamW), timed with `time.process_time`
on one thread (BLAS and minitl's threads limited to 1) on the shared 2-core machine, cost
281 ms for BERT at 15% masking (its head runs on the masked positions only) and 438 ms for GPT
(its 8,000-way softmax runs at every position). At 40% BERT's head runs on 2.7 times as many
positions; the default BERT run (v2: 2,000 steps, 4.1 million tokens) took 556.7 CPU-seconds
in all (`/usr/bin/time -v`, one thread, nice'd on the shared machine: 278 ms a step, data and
evaluations included), and 1,200 GPT steps (2.5 million tokens) take at most 8.8 minutes.
One process on an idle 2-core machine takes at most that in wall time; the data (5 s), the
held-out evaluations (5 of them, seconds each) and saving add under a minute. Measured alone on
the idle 2-core machine (2026-11-30, benchmarks/RESULTS.md): `minitl pretrain bert` 7 min 58 s
wall, `minitl pretrain gpt` 6 min 25 s. Each record keeps
the wall and CPU seconds its run took. On a machine shared by many processes, give each run one
thread (MINITL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1): threads that wait for a busy core cost
far more than they save.

    model = load_pretrained_bert()            # trains once (the budget above), then loads in a second
    model.info["heldout_loss"], model.info["heldout_perplexity"]

`fast=True` trains a tiny model (width 32, 2 layers) on a slice of GCIDE in seconds, for tests
and the lessons' --fast mode. Saved with `tl.save` (an .npz written atomically, read without
pickle) under `cache_dir("weights")`.

Command line: `minitl pretrain bert|gpt [--fast] [--force] [--steps N]`.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from .. import nn, optim
from ..data import cache_dir
from ..ops import cross_entropy
from ..random import manual_seed
from ..serialization import CheckpointError, load, save
from ..tensor import no_grad
from ..training import train_step
from .bert import IGNORE_INDEX, MASK_PROB, MiniBert, mlm_mask
from .gpt import MiniGPT

# part of the cache file's name, per model: a changed recipe never loads stale weights
RECIPE = {"bert": "v2", "gpt": "v1"}
FAST_RECIPE = {"bert": "v3", "gpt": "v2"}  # the same for the --fast models
KINDS = ("bert", "gpt")
HELD_OUT_EVERY = 100  # paragraph i is held out when i % HELD_OUT_EVERY == HELD_OUT_EVERY // 2
HELD_OUT_MASK_SEED = 12345  # the held-out windows' masking, the same at every evaluation
EVALUATIONS = 4  # held-out losses measured during training (and once more at the end)

_MODEL = dict(vocab_size=8000, max_len=64, d_model=128, num_layers=4, num_heads=4, dim_feedforward=512, dropout=0.1)
_TINY = dict(vocab_size=8000, max_len=32, d_model=32, num_layers=2, num_heads=2, dim_feedforward=64, dropout=0.1)
_TRAINING = dict(batch_size=32, lr=1e-3, warmup_steps=200, weight_decay=0.01, clip=1.0, paragraph_stride=1,
                 heldout_windows=None, seed=0)
# the sizes and their budget: see "The budget" above
BERT_MASK_PROB = 0.4  # BERT's recipe masks 40% (Wettig et al. 2022): 2.7x the predictions of 15% per step
DEFAULT_CONFIG = {"bert": dict(model=_MODEL, steps=2000, mask_prob=BERT_MASK_PROB, **_TRAINING),
                  "gpt": dict(model=_MODEL, steps=1200, **_TRAINING)}
# --fast: every 20th paragraph of GCIDE (about 240,000 tokens), 400 steps of 16 windows (GPT
# about 25 CPU-seconds, BERT 7: the tiny GPT then just beats the unigram model's held-out loss)
# held-out: 64 windows spread over GCIDE (about 2,000 tokens), so the evaluations stay cheap
_FAST_TRAINING = dict(_TRAINING, batch_size=16, lr=3e-3, warmup_steps=20, paragraph_stride=20, heldout_windows=64)
FAST_CONFIG = {"bert": dict(model=_TINY, steps=400, mask_prob=BERT_MASK_PROB, **_FAST_TRAINING),
               "gpt": dict(model=_TINY, steps=400, **_FAST_TRAINING)}

_CLASSES = {"bert": MiniBert, "gpt": MiniGPT}


def weights_path(kind, fast=False):
    _check_kind(kind)
    return cache_dir("weights") / (f"{kind}_gcide_{FAST_RECIPE[kind]}_fast.npz" if fast
                                   else f"{kind}_gcide_{RECIPE[kind]}.npz")


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


# --- the text -----------------------------------------------------------------------------------

def gcide_token_streams(tokenizer, paragraph_stride=1):
    """(training stream, held-out stream): GCIDE's paragraphs as subword ids, each followed by
    [SEP] (int64 arrays). paragraph_stride keeps every k-th paragraph (a slice for --fast)."""
    from ..data.text import gcide_corpus

    corpus = gcide_corpus()
    index = np.arange(len(corpus))
    held_out = index % HELD_OUT_EVERY == HELD_OUT_EVERY // 2
    kept = (index % paragraph_stride == 0) | held_out
    return (_encode_paragraphs(corpus, index[kept & ~held_out], tokenizer),
            _encode_paragraphs(corpus, index[held_out], tokenizer))


def _encode_paragraphs(corpus, paragraphs, tokenizer):
    """The paragraphs of `corpus` as one stream of subword ids, [SEP] after each. Each word
    type is spelt by the tokenizer once; numpy lays the pieces out for every occurrence."""
    starts, ends = corpus.offsets[paragraphs], corpus.offsets[paragraphs + 1]
    keep = ends > starts  # an empty paragraph would only add a second [SEP]
    starts, lengths = starts[keep], (ends - starts)[keep]
    words = corpus.ids[np.repeat(starts, lengths) + _ranges(lengths)]
    types, word_types = np.unique(words, return_inverse=True)
    spelt = [tokenizer.encode(corpus.vocab.id_to_word[t], add_special_tokens=False) for t in types]
    type_lengths = np.array([len(s) for s in spelt], dtype=np.int64)
    type_starts = np.concatenate([[0], np.cumsum(type_lengths)[:-1]]).astype(np.int64)
    pieces = np.fromiter((i for s in spelt for i in s), dtype=np.int64, count=int(type_lengths.sum()))
    per_word = type_lengths[word_types]
    tokens = pieces[np.repeat(type_starts[word_types], per_word) + _ranges(per_word)]
    # a [SEP] after each paragraph's last piece: there, the pieces counted so far
    pieces_before = np.concatenate([[0], np.cumsum(per_word)])
    return np.insert(tokens, pieces_before[np.cumsum(lengths)], tokenizer.sep_token_id)


def _ranges(lengths):
    """0..n-1 for each n of `lengths`, concatenated."""
    return np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def make_windows(stream, length, cls_id=2, offset=0):
    """(N, length) int64: [CLS] then length - 1 consecutive tokens of `stream`, from `offset`
    on; the remainder that does not fill a window is left out."""
    body = length - 1
    count = (len(stream) - offset) // body
    windows = np.empty((count, length), dtype=np.int64)
    windows[:, 0] = cls_id
    windows[:, 1:] = stream[offset:offset + count * body].reshape(count, body)
    return windows


def spread(windows, count=None):
    """`count` windows evenly spread over `windows` (all of them when count is None or larger)."""
    if count is None or count >= len(windows):
        return windows
    return windows[np.linspace(0, len(windows) - 1, count).round().astype(np.int64)]


# --- the objectives, as train_step calls them ---------------------------------------------------

class MaskedLM(nn.Module):
    """BERT's objective for `train_step`: model((inputs, positions)) -> the logits at the masked
    positions; the targets are the original tokens there."""

    def __init__(self, bert, mask_prob=MASK_PROB):
        super().__init__()
        self.bert = bert
        self.mask_prob = mask_prob

    def forward(self, batch):
        inputs, positions = batch
        return self.bert.mlm_logits(inputs, positions=positions)

    def batch(self, windows, rng, vocab_size):
        """((masked windows, masked positions), their original tokens) for train_step."""
        inputs, labels = mlm_mask(windows, rng, vocab_size=vocab_size, mask_prob=self.mask_prob)
        positions = np.flatnonzero(labels != IGNORE_INDEX)
        return (inputs, positions), labels.reshape(-1)[positions]


class CausalLM(nn.Module):
    """GPT's objective for `train_step`: model(window[:, :-1]) -> logits (B*T, V) of every
    next token; the targets are window[:, 1:]."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, input_ids):
        logits = self.gpt.lm_logits(self.gpt(input_ids))
        return logits.reshape(-1, logits.shape[-1])

    @staticmethod
    def batch(windows, rng=None, vocab_size=None):
        return windows[:, :-1], windows[:, 1:].reshape(-1)


def objective_for(model, mask_prob=MASK_PROB):
    return MaskedLM(model, mask_prob) if isinstance(model, MiniBert) else CausalLM(model)


@no_grad()
def heldout_loss(model, windows, batch_size=64, mask_prob=MASK_PROB):
    """(mean cross-entropy per predicted token, number of predictions) on held-out windows:
    BERT's masked tokens (masked with HELD_OUT_MASK_SEED, the same every time; BERT's 15% unless
    `mask_prob` says otherwise, whatever rate it trains at, so the losses stay comparable) or
    GPT's next tokens. Eval mode, no graph; the model's mode is put back."""
    was_training = model.training
    model.eval()
    objective = objective_for(model, mask_prob)
    rng = np.random.default_rng(HELD_OUT_MASK_SEED)
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        x, y = objective.batch(windows[start:start + batch_size], rng, model.config["vocab_size"])
        total += float(cross_entropy(objective(x), y, reduction="sum").item())
        count += len(y)
    model.train(was_training)
    return total / max(count, 1), count


# --- pretraining ----------------------------------------------------------------------------------

def pretrain(kind, config, progress=True):
    """Train a fresh BERT or GPT on GCIDE as `config` says; returns (model, record), the record
    holding the held-out loss and perplexity, the learning curve and the times."""
    from tqdm.auto import tqdm

    from ..data.text import gcide_tokenizer

    _check_kind(kind)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    manual_seed(config["seed"])
    rng = np.random.default_rng(config["seed"])
    tokenizer = gcide_tokenizer(config["model"]["vocab_size"])
    train_stream, heldout_stream = gcide_token_streams(tokenizer, config["paragraph_stride"])
    model = _CLASSES[kind](**config["model"])
    length = model.max_len + (1 if kind == "gpt" else 0)
    heldout = spread(make_windows(heldout_stream, length, tokenizer.cls_token_id), config.get("heldout_windows"))
    mask_prob = config.get("mask_prob", MASK_PROB)
    objective = objective_for(model, mask_prob)
    optimizer = optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    steps = config["steps"]
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, min(config["warmup_steps"], steps), steps)
    history = {"step": [], "train_loss": [], "heldout_step": [], "heldout_loss": []}
    evaluate_at = {round(steps * (k + 1) / (EVALUATIONS + 1)) for k in range(EVALUATIONS)}
    batches, recent = iter(()), []
    bar = tqdm(range(1, steps + 1), desc=f"pretrain {kind}", disable=not progress, mininterval=2)
    model.train()
    for step in bar:
        windows = next(batches, None)
        if windows is None:  # a new epoch: windows from a random offset, in random order
            epoch = make_windows(train_stream, length, tokenizer.cls_token_id, int(rng.integers(length)))
            epoch = epoch[rng.permutation(len(epoch))]
            batches = (epoch[i:i + config["batch_size"]] for i in range(0, len(epoch), config["batch_size"]))
            windows = next(batches)
        x, y = objective.batch(windows, rng, model.config["vocab_size"])
        loss, _ = train_step(objective, optimizer, cross_entropy, x, y, scheduler, max_grad_norm=config["clip"])
        loss = float(loss.item())
        if not math.isfinite(loss):
            raise FloatingPointError(f"pretrain {kind}: the loss became {loss} at step {step}; lower the learning rate")
        recent.append(loss)
        if step % 50 == 0 or step == steps:
            history["step"].append(step)
            history["train_loss"].append(float(np.mean(recent)))
            bar.set_postfix(loss=f"{np.mean(recent):.3f}")
            recent = []
        if step in evaluate_at:
            history["heldout_step"].append(step)
            history["heldout_loss"].append(heldout_loss(model, heldout)[0])
    loss, count = heldout_loss(model, heldout)
    history["heldout_step"].append(steps)
    history["heldout_loss"].append(loss)
    model.eval()
    record = {"config": dict(config["model"]), "training": {k: v for k, v in config.items() if k != "model"},
              "heldout_loss": loss, "heldout_perplexity": math.exp(loss), "heldout_predictions": count,
              "train_tokens": steps * config["batch_size"] * (length - (kind == "gpt")),
              "stream_tokens": int(len(train_stream)), "history": history,
              "seconds": time.perf_counter() - start_wall, "cpu_seconds": time.process_time() - start_cpu}
    if kind == "bert" and mask_prob != MASK_PROB:  # the loss at the rate it trained at, beside the 15% one
        record["heldout_loss_train_rate"] = heldout_loss(model, heldout, mask_prob=mask_prob)[0]
    return model, record


def load_pretrained(kind, fast=False, train_if_missing=True, force=False, steps=None, progress=True):
    """The cached pretrained BERT or GPT, in eval mode, with `model.info` = its record (held-out
    loss and perplexity, history, times, configs). Trains and saves it first when the cache has
    none (or `force`); `steps` overrides the recipe's number of steps for that training."""
    path = weights_path(kind, fast)
    if path.exists() and not force:
        try:
            return _from_record(kind, load(path))
        except (CheckpointError, KeyError) as exc:
            if not train_if_missing:
                raise
            print(f"retraining the pretrained {kind}: {exc}")
    if not train_if_missing:
        raise FileNotFoundError(f"no pretrained {kind} at {path}; run `minitl pretrain {kind}"
                                f"{' --fast' if fast else ''}`")
    config = dict((FAST_CONFIG if fast else DEFAULT_CONFIG)[kind])
    if steps is not None:
        config["steps"] = int(steps)
    model, record = pretrain(kind, config, progress=progress)
    save({"weights": model.state_dict(), **record}, path)
    return _from_record(kind, load(path))


def _from_record(kind, record):
    config = {k: (float(v) if k == "dropout" else int(v)) for k, v in record["config"].items()}
    model = _CLASSES[kind](**config)
    model.load_state_dict(record.pop("weights"))
    model.eval()
    model.info = dict(record)
    return model


def load_pretrained_bert(fast=False, train_if_missing=True, force=False, progress=True):
    """The pretrained mini-BERT (see `load_pretrained`)."""
    return load_pretrained("bert", fast, train_if_missing, force, progress=progress)


def load_pretrained_gpt(fast=False, train_if_missing=True, force=False, progress=True):
    """The pretrained mini-GPT (see `load_pretrained`)."""
    return load_pretrained("gpt", fast, train_if_missing, force, progress=progress)


# --- the command ----------------------------------------------------------------------------------

def pretrain_main(kind, argv=None):
    """`minitl pretrain bert|gpt`: train (or load) the model and report its held-out loss."""
    objective = "masked-LM" if kind == "bert" else "causal-LM"
    parser = argparse.ArgumentParser(prog=f"minitl pretrain {kind}",
                                     description=f"Pretrain mini-{kind.upper()} ({objective}) on GCIDE and cache it.")
    parser.add_argument("--fast", action="store_true", help="a tiny model on a slice of GCIDE, in seconds (tests)")
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"training steps (default {DEFAULT_CONFIG[kind]['steps']}; --fast {FAST_CONFIG[kind]['steps']})")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be positive, got {args.steps}")
    start = time.perf_counter()
    model = load_pretrained(kind, fast=args.fast, force=args.force or args.steps is not None, steps=args.steps,
                            progress=not args.no_progress)
    info = model.info
    print(f"mini-{kind.upper()} ({objective}): {weights_path(kind, args.fast)}")
    print(f"model: {_describe(model.config)}, {model.num_parameters():,} parameters")
    print(f"held-out {objective} loss {float(info['heldout_loss']):.4f}, perplexity "
          f"{float(info['heldout_perplexity']):.1f} ({int(info['heldout_predictions']):,} predicted tokens)")
    print(f"trained {int(info['training']['steps'])} steps on {int(info['train_tokens']):,} tokens in "
          f"{float(info['seconds']):.1f} s wall, {float(info['cpu_seconds']):.1f} s CPU; "
          f"this call took {time.perf_counter() - start:.1f} s")
    return 0


def _describe(config):
    return (f"width {config['d_model']}, {config['num_layers']} layers, {config['num_heads']} heads, "
            f"MLP {config['dim_feedforward']}, {config['max_len']} positions, {config['vocab_size']:,} subwords")


def pretrain_bert_main(argv=None):
    return pretrain_main("bert", argv)


def pretrain_gpt_main(argv=None):
    return pretrain_main("gpt", argv)


if __name__ == "__main__":
    import sys
    raise SystemExit(pretrain_main(sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 and sys.argv[1] in KINDS
                     else "usage: python -m minitl.models.pretraining bert|gpt [--fast] [--force] [--steps N]")
