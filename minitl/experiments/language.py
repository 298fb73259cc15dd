"""The chapter's adaptation strategies for a pretrained language model, measured: full
fine-tuning, linear probing and the same architecture trained from scratch, for mini-BERT and
mini-GPT, on GCIDE's part-of-speech task (chapter: transformers as foundation models, "linear
probing vs fine-tuning"; lesson 8).

    finetune       the pretrained model, its LM head replaced by a linear classifier on the
                   mean-pooled hidden states; every parameter trains
    linear_probe   the pretrained model frozen; only the classifier trains, on the pooled
                   features, computed once for every text (a few hundred parameters)
    scratch        the same architecture from its random initialisation; everything trains

**The task** (`tl.data.gcide_pos`): a definition, its headword masked, labelled noun, adjective,
verb or adverb (57.5% are nouns: the majority baseline). The texts are cut into subwords by the
models' tokenizer and truncated to MAX_LENGTH subwords (the start of a definition says most:
"To ...", "In a ... manner"). N training texts are drawn at random from the training split
(N = "all": the whole split, 93,000 texts); the accuracy is measured on TEST_EXAMPLES texts of
the test split (headwords never seen in training), the same ones for every run.

**The budget.** Fine-tuning and scratch get the same optimizer steps: EPOCHS passes over the N
texts, at least MIN_STEPS and at most MAX_STEPS steps of BATCH_SIZE texts, with Adam and a
cosine decay of the learning rate (so at N = "all" both see 4,800 of the 93,000 texts: the
budget, not the data, is the limit there). The probe's head trains for PROBE_EPOCHS passes
over cached features, at most PROBE_MAX_STEPS steps, which costs next to nothing; the features
of the whole training split are computed once per model and shared by every N and seed.
The learning rates: 1e-3 for scratch (the rate of the pretraining), 1e-2 for the probe's
linear head, and for fine-tuning 3e-4 for GPT (a pretrained model needs small steps) but 1e-3
for the mini-BERT, warmed up over the first 10% of the steps (as BERT's own fine-tuning
recipe does). The mini-BERT's rate was chosen on 1,000 texts of the *training* split held
out of the sample, never on the test texts; the sweep's figures, and the measured table, are
in benchmarks/RESULTS.md ("The language table").

**The cost** of the default (`--sizes 100,1000,all --seeds 3`, both models): per model 3 x 3
fine-tuning and 3 x 3 scratch runs of 60, 125 and 150 steps, the features of the 93,000
training and 1,000 test texts, 9 probes and 18 evaluations. Measured with `time.process_time`
on the shared 2-core machine, one thread: a training step (32 texts of at most 32 subwords)
costs 0.12 CPU-seconds, the features 1,300 texts per CPU-second (sorted by length), an
evaluation 870 texts per CPU-second; hence per model 3 x 2 x 335 x 0.12 + 94,000 / 1,300 +
18 x 1,000 / 870 = 240 + 72 + 21, about 340 CPU-seconds, and about 11.5 CPU-minutes for both
(one process on an idle 2-core machine: at most that in wall time). The command prints its
own wall and CPU time. `--fast` runs the tiny pretrained models (`minitl pretrain bert --fast`)
on `gcide_pos(fast=True)`, N = 100, one seed, half the steps, in seconds.

    minitl experiment language --sizes 100,1000,all --seeds 3 --json language.json
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from .. import cpu_runtime, nn, optim, transfer
from ..models import TextClassifier
from ..models.pretraining import load_pretrained
from ..data.text.gcide_tasks import POS_CLASSES
from ..random import manual_seed
from ..report import save_figure

KINDS = ("bert", "gpt")
STRATEGIES = ("finetune", "linear_probe", "scratch")
MAX_LENGTH = 32  # subwords per text, [CLS] and [SEP] included
TEST_EXAMPLES = 1000
BATCH_SIZE = 32
EPOCHS, MIN_STEPS, MAX_STEPS = 4, 60, 150
PROBE_EPOCHS, PROBE_MAX_STEPS, PROBE_BATCH_SIZE = 50, 1500, 64
POOLING = "mean"  # the mean over the real tokens: BERT's [CLS] was never trained to sum a text up
# fine-tuning's recipe per model (see "The learning rates"): GPT's pretrained weights need small
# steps; the mini-BERT's (post-norm, masked LM) take larger ones, after a warm-up over the first
# 10% of the steps (BERT's own fine-tuning recipe)
RECIPES = {"finetune": {"bert": {"lr": 1e-3, "warmup": 0.1}, "gpt": {"lr": 3e-4, "warmup": 0.0}},
           "scratch": {"lr": 1e-3, "warmup": 0.0}, "linear_probe": {"lr": 1e-2, "warmup": 0.0}}
FAST_TEST_EXAMPLES = 300


def steps_for(n_labels, fast=False):
    """The optimizer steps of fine-tuning and scratch at N texts: EPOCHS passes, clamped to
    [MIN_STEPS, MAX_STEPS] (60, 125 and 150 at N = 100, 1,000 and all); half in --fast."""
    steps = min(MAX_STEPS, max(MIN_STEPS, math.ceil(EPOCHS * n_labels / BATCH_SIZE)))
    return steps // 2 if fast else steps


def encode_task(tokenizer, fast=False):
    """(train ids, train labels, test ids, test labels): the part-of-speech texts as subword ids
    (N, MAX_LENGTH), padded with [PAD]; the test set cut to its first TEST_EXAMPLES texts (a
    random sample: the split is ordered by a hash of the headword)."""
    from ..data.text import gcide_pos

    data = gcide_pos(fast=fast)
    test_count = FAST_TEST_EXAMPLES if fast else TEST_EXAMPLES

    def ids(texts):
        return tokenizer(texts, max_length=MAX_LENGTH, truncation=True, padding="max_length")["input_ids"]

    return (ids(data.train.texts), np.asarray(data.train.labels), ids(data.test.texts[:test_count]),
            np.asarray(data.test.labels[:test_count]))


def sample(n_train, n_labels, seed):
    """Indices of n_labels texts drawn at random (seeded) from n_train; all of them for None."""
    if n_labels is None or n_labels >= n_train:
        return np.random.default_rng(seed).permutation(n_train)
    return np.random.default_rng(seed).choice(n_train, size=n_labels, replace=False)


def classifier(pretrained, num_classes, from_scratch=False):
    """A TextClassifier on a copy of the pretrained model, or on a fresh model of the same
    architecture (scratch)."""
    backbone = type(pretrained)(**pretrained.config)
    if not from_scratch:
        backbone.load_state_dict(pretrained.state_dict())
    return TextClassifier(backbone, num_classes, pooling=POOLING)


def pooled_features(model, ids, batch_size=256):
    """The frozen model's pooled features of every text, computed in batches of texts of about
    one length (sorted by length, so a batch carries little padding), returned in the input's
    order."""
    order = np.argsort((ids != 0).sum(axis=1), kind="stable")
    features = transfer.extract_features(model, ids[order], batch_size=batch_size)
    out = np.empty_like(features)
    out[order] = features
    return out


def probe(features, y, test_features, y_test, num_classes):
    """A linear head trained on frozen features; returns (test accuracy, trainable parameters)."""
    head = nn.Linear(features.shape[1], num_classes)
    head.weight.data[...] = 0  # a zero head: the first steps see the features, not a random map
    loader = transfer.make_loader(features, y, PROBE_BATCH_SIZE)
    steps = min(PROBE_MAX_STEPS, PROBE_EPOCHS * len(loader))
    optimizer = optim.Adam(head.parameters(), lr=recipe("linear_probe", None)["lr"])
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, 0, steps)
    transfer.train_steps(head, loader, optimizer, steps=steps, scheduler=scheduler)
    return transfer.accuracy(head, test_features, y_test), transfer.count_trainable(head)


def recipe(strategy, kind):
    """{"lr": rate, "warmup": share of the steps} of `strategy` for model `kind` ("bert" or
    "gpt"): RECIPES holds one recipe per strategy, or one per model."""
    return RECIPES[strategy].get(kind, RECIPES[strategy])


def train_network(model, x, y, steps, lr, warmup=0.0):
    """Fine-tuning or scratch: every parameter, `steps` Adam steps at rate `lr`, a linear
    warm-up over the first `warmup` share of them, then cosine decay."""
    transfer.unfreeze(model)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, round(warmup * steps), steps)
    loader = transfer.make_loader(x, y, BATCH_SIZE)
    transfer.train_steps(model, loader, optimizer, steps=steps, scheduler=scheduler, max_grad_norm=1.0)
    return transfer.count_trainable(model)


def run(sizes=(100, 1000, None), seeds=3, kinds=KINDS, strategies=STRATEGIES, fast=False, json_path=None,
        progress=True):
    """Every strategy for every model, size and seed; returns (rows, pretraining records). The
    rows are written to json_path after each run, so an interrupted run keeps what it measured."""
    from tqdm.auto import tqdm

    from ..data.text import gcide_tokenizer

    models = {kind: load_pretrained(kind, fast=fast, progress=progress) for kind in kinds}
    tokenizer = gcide_tokenizer(next(iter(models.values())).config["vocab_size"])
    x, y, x_test, y_test = encode_task(tokenizer, fast)
    num_classes = len(POS_CLASSES)
    rows = []
    jobs = [(kind, s, n, strategy) for kind in kinds for s in range(seeds) for n in sizes for strategy in strategies]
    bar = tqdm(jobs, desc="language experiment", disable=not progress)
    features = {}
    for kind, seed, n, strategy in bar:
        bar.set_postfix(model=kind, n=n or "all", seed=seed, strategy=strategy)
        idx = sample(len(x), n, seed)
        start = time.perf_counter()
        manual_seed(seed)
        if strategy == "linear_probe":
            if kind not in features:  # the frozen model's features, once per model, of every text a probe reads
                frozen = classifier(models[kind], num_classes)
                needed = np.unique(np.concatenate([sample(len(x), m, k) for m in sizes for k in range(seeds)]))
                train_features = np.zeros((len(x), frozen.classifier.in_features), dtype=np.float32)
                train_features[needed] = pooled_features(frozen, x[needed])
                features[kind] = (train_features, pooled_features(frozen, x_test))
            train_features, test_features = features[kind]
            accuracy, trainable = probe(train_features[idx], y[idx], test_features, y_test, num_classes)
        else:
            model = classifier(models[kind], num_classes, from_scratch=strategy == "scratch")
            trainable = train_network(model, x[idx], y[idx], steps_for(len(idx), fast), **recipe(strategy, kind))
            accuracy = transfer.accuracy(model, x_test, y_test, batch_size=250)
        row = {"model": kind, "strategy": strategy, "n_labels": int(len(idx)), "all": n is None, "seed": int(seed),
               "accuracy": float(accuracy), "trainable_params": int(trainable),
               "seconds": round(time.perf_counter() - start, 2)}
        rows.append(row)
        if progress:
            tqdm.write(json.dumps(row))
        if json_path:
            Path(json_path).write_text(json.dumps(rows, indent=1))
    baseline = float(np.mean(y_test == np.bincount(y, minlength=num_classes).argmax()))
    return rows, {kind: dict(models[kind].info) for kind in kinds}, baseline


def summarize(rows):
    """One table row per model, strategy and N: accuracy mean and std over the seeds."""
    table = []
    for kind in KINDS:
        for n in sorted({r["n_labels"] for r in rows}):
            for strategy in STRATEGIES:
                group = [r for r in rows if (r["model"], r["strategy"], r["n_labels"]) == (kind, strategy, n)]
                if not group:
                    continue
                acc = np.array([r["accuracy"] for r in group])
                table.append({"model": kind, "approach": strategy, "labels": n, "all": group[0]["all"],
                              "mean": float(acc.mean()), "std": float(acc.std()), "runs": len(group),
                              "trainable_params": group[0]["trainable_params"],
                              "seconds": float(np.mean([r["seconds"] for r in group]))})
    return table


def format_table(summary):
    lines = ["| model | approach | labels | accuracy (mean ± std) | trainable params | seconds |",
             "|---|---|---:|---:|---:|---:|"]
    for t in summary:
        labels = f"all ({t['labels']:,})" if t["all"] else f"{t['labels']:,}"
        lines.append(f"| {t['model']} | {t['approach']} | {labels} | {t['mean']:.3f} ± {t['std']:.3f} "
                     f"(n={t['runs']}) | {t['trainable_params']:,} | {t['seconds']:.1f} |")
    return "\n".join(lines)


def plot(summary, baseline=None, path=None):
    """Accuracy against N (log axis): one panel per model, one line per strategy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if any(t["model"] == k for t in summary)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 3.8), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for strategy in STRATEGIES:
            points = [t for t in summary if t["model"] == kind and t["approach"] == strategy]
            if points:
                ax.errorbar([t["labels"] for t in points], [t["mean"] for t in points],
                            yerr=[t["std"] for t in points], marker="o", capsize=3, label=strategy)
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle=":", label="majority class")
        ax.set_xscale("log")
        ax.set_xlabel("labelled training texts N")
        ax.set_title(f"mini-{kind.upper()} on GCIDE part of speech")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("test accuracy")
    fig.tight_layout()
    return save_figure(fig, path)


def parse_sizes(text):
    """"100,1000,all" -> [100, 1000, None] (None: the whole training split)."""
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            sizes.append(None)
        elif part.isdigit() and int(part) > 0:
            sizes.append(int(part))
        else:
            raise ValueError(f"--sizes takes positive counts or 'all', separated by commas; got {part!r}")
    return sizes


def experiment_language_main(argv=None):
    """`minitl experiment language`: run the table, print it, save the figure (and JSON rows)."""
    parser = argparse.ArgumentParser(prog="minitl experiment language",
                                     description="Fine-tuning vs linear probing vs scratch for mini-BERT and "
                                                 "mini-GPT on GCIDE's part-of-speech task.")
    parser.add_argument("--sizes", default=None, help="comma-separated label counts or 'all' "
                                                      "(default 100,1000,all; --fast 100)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3; --fast 1)")
    parser.add_argument("--models", default=",".join(KINDS), help="bert, gpt or both (default)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--json", default=None, help="write the rows here as JSON")
    parser.add_argument("--figure", default="minitl_output/language/language_table.png")
    parser.add_argument("--fast", action="store_true", help="tiny pretrained models, a slice of the task (tests)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        sizes = parse_sizes(args.sizes or ("100" if args.fast else "100,1000,all"))
    except ValueError as exc:
        parser.error(str(exc))
    seeds = args.seeds if args.seeds is not None else (1 if args.fast else 3)
    if seeds < 1:
        parser.error(f"--seeds must be positive, got {seeds}")
    kinds = [k for k in args.models.split(",") if k]
    strategies = [s for s in args.strategies.split(",") if s]
    for name, chosen, allowed in (("model", kinds, KINDS), ("strategy", strategies, STRATEGIES)):
        for value in chosen:
            if value not in allowed:
                parser.error(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")
    cpu_runtime.tune()  # a training run: keep freed memory, let idle BLAS threads sleep
    start, start_cpu = time.perf_counter(), time.process_time()
    rows, records, baseline = run(sizes, seeds, kinds, strategies, args.fast, args.json, progress=not args.no_progress)
    summary = summarize(rows)
    for kind, record in records.items():
        print(f"pretrained mini-{kind.upper()}: held-out loss {float(record['heldout_loss']):.3f} "
              f"(perplexity {float(record['heldout_perplexity']):.1f})")
    print(f"majority baseline (always noun) on these test texts: {baseline:.3f}")
    print(format_table(summary))
    plot(summary, baseline, args.figure)
    print(f"figure: {args.figure}")
    print(f"total {time.perf_counter() - start:.0f} s wall, {time.process_time() - start_cpu:.0f} s CPU")
    return {"rows": rows, "summary": summary, "baseline": baseline}


if __name__ == "__main__":
    experiment_language_main()
