"""The chapter's first table: how many labels does a pretrained network save?

Chapter: "Transfer learning in computer vision", the table of strategies against the number of
labelled target images. For each N in `sizes` and each seed, N target images are drawn
(class-balanced, seeded), and each strategy trains on them:

    scratch                 resnet_mini from random weights, everything trained
    feature_extraction      pretrained backbone frozen, features cached, a linear head trained
    finetune                pretrained, the head first trained alone on cached features (LP-FT),
                            then everything trained
    finetune_frozen_lower   the same, with stem + layer1 + layer2 frozen: layer3 + head trained
    gradual_unfreezing      pretrained, head first (on cached features), then one block deeper
                            per stage (ULMFiT), with discriminative learning rates

Every run is evaluated on the full target test set (5,000 images). Rows are written as JSON
after every run: {"strategy", "n_labels", "seed", "accuracy", "trainable_params", "seconds"},
where seconds is the wall time of training (including the feature pass over the N training
images for feature extraction; the cached test-set features are shared by all runs).

    python -m minitl.experiments.transfer_table --sizes 100,1000,10000 --seeds 3 --json rows.json
    (wired to `minitl experiment transfer`)

Measured tables, and how the recipes were tuned, are in benchmarks/RESULTS.md; lesson 3 prints
its own (one seed), and `minitl/experiments/transfer_claims.py` puts the chapter's claims to
these runs.

Every run gets the same optimizer steps: about STEPS, and at least MIN_EPOCHS passes: 32, 6 and 2 epochs at
N = 100, 1,000 and 10,000 with batches of 16, 32 and 64, with Adam and a cosine decay of the
learning rate; gradual unfreezing shares the same steps among its stages; the linear heads
(feature extraction's, and the head-first stage of the fine-tuning recipes) train on cached
features, which costs next to nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from .. import cpu_runtime, nn, transfer
from ..models import resnet_mini
from ..pretrained import SOURCE_CLASSES, TARGET_CLASSES, load_pretrained, task
from ..random import manual_seed

STRATEGIES = ("scratch", "feature_extraction", "finetune", "finetune_frozen_lower", "gradual_unfreezing")
FAST_TEST_IMAGES = 500


STEPS = 200  # about this many optimizer steps per run at small N
MIN_EPOCHS = 2  # and at least this many passes over the N images (2 epochs at N = 10,000)


def batch_size_for(n_labels):
    """Small batches for few labels (more, noisier steps), larger ones for many."""
    return 16 if n_labels <= 100 else 32 if n_labels <= 1000 else 64


def epochs_for(n_labels, fast=False, min_epochs=MIN_EPOCHS):
    """Epochs giving about STEPS optimizer steps at this N, and at least `min_epochs` passes
    over the data: 32, 6 and 2 epochs at N = 100, 1,000 and 10,000 by default."""
    epochs = max(min_epochs, round(STEPS * batch_size_for(n_labels) / n_labels))
    return min(epochs, 5) if fast else epochs


def head_epochs_for(n_labels, fast=False):
    """A linear head on cached features is cheap: train it for longer (300, 30 and 10 epochs
    at N = 100, 1,000 and 10,000)."""
    epochs = int(min(300, max(10, 30000 // n_labels)))
    return min(epochs, 30) if fast else epochs


# The recipes, tuned on a validation split carved from the target's TRAINING images (2,000
# held out, N sampled from the rest; seeds 0 and 1 at N = 100 and 1,000), never the test set;
# the figures of that tuning are in benchmarks/RESULTS.md. The fine-tuning strategies start
# from a head trained on cached features (LP-FT), then train with the same steps, Adam and
# cosine decay as scratch.
RECIPES = {
    "scratch": {"lr": 1e-3},
    "feature_extraction": {"lr": 1e-2},
    "finetune": {"lr": 1e-3, "body_lr_ratio": 1.0},
    "finetune_frozen_lower": {"lr": 1e-3, "body_lr_ratio": 1.0, "frozen_blocks": 3},
    "gradual_unfreezing": {"lr": 3e-3, "decay": 2.6},
}


def sample_labels(y, n_labels, seed):
    """Indices of a class-balanced random subset of n_labels examples (seeded)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = [n_labels // len(classes) + (k < n_labels % len(classes)) for k in range(len(classes))]
    picks = [rng.choice(np.flatnonzero(y == c), size=m, replace=False) for c, m in zip(classes, per_class)]
    return rng.permutation(np.concatenate(picks))


def pretrained_model(state, num_classes):
    """The chapter's listing: the source model, its head replaced for the target task."""
    model = resnet_mini(len(SOURCE_CLASSES), **state["config"])
    model.load_state_dict(state["weights"])
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def source_head_accuracy(model, state, x_source, y_source):
    """The source task's accuracy of `model`'s body (possibly changed by fine-tuning) read by the
    ORIGINAL source head: how much of the source task survives a strategy (forgetting)."""
    head = nn.Linear(model.fc.in_features, len(SOURCE_CLASSES))
    head.load_state_dict({"weight": state["weights"]["fc.weight"], "bias": state["weights"]["fc.bias"]})
    return transfer.accuracy(head, transfer.extract_features(model, x_source), y_source)


def train_one(strategy, n_labels, seed, data, state, fast=False, min_epochs=MIN_EPOCHS, **overrides):
    """Train one strategy on n_labels target images (its RECIPES entry, updated by `overrides`);
    returns (trained model, seconds of training)."""
    x, y = data[0], data[1]
    recipe = RECIPES.get(strategy)
    if recipe is None:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    recipe = {**recipe, **overrides}
    idx = sample_labels(y, n_labels, seed)
    xs, ys = x[idx], y[idx]
    epochs, bs = epochs_for(n_labels, fast, min_epochs), batch_size_for(n_labels)
    num_classes = len(TARGET_CLASSES)
    manual_seed(seed)  # the new head, scratch weights and shuffling all follow the seed
    if strategy == "scratch":
        model = resnet_mini(num_classes, **state["config"])
    else:
        model = pretrained_model(state, num_classes)
    start = time.perf_counter()
    steps = epochs * math.ceil(n_labels / bs)
    head_epochs = head_epochs_for(n_labels, fast)
    if strategy == "scratch":
        transfer.train_from_scratch(model, xs, ys, batch_size=bs, steps=steps, **recipe)
    elif strategy == "feature_extraction":
        transfer.feature_extraction(model, xs, ys, head_epochs, batch_size=bs, **recipe)
    elif strategy == "finetune":
        transfer.finetune(model, xs, ys, batch_size=bs, steps=steps, head_epochs=head_epochs, **recipe)
    elif strategy == "finetune_frozen_lower":
        transfer.finetune_frozen_lower(model, xs, ys, batch_size=bs, steps=steps, head_epochs=head_epochs, **recipe)
    else:
        transfer.gradual_unfreezing(model, xs, ys, batch_size=bs, steps=steps, head_epochs=head_epochs, **recipe)
    return model, time.perf_counter() - start


def evaluate(model, strategy, n_labels, seed, seconds, data, cache, state=None, source_data=None):
    """The JSON row of a trained model: target test accuracy (feature extraction's head reads the
    shared, cached test features) and, with `source_data`, the source accuracy through the
    original head (not for scratch, which has no source task)."""
    x_test, y_test = data[2], data[3]
    if strategy == "feature_extraction":
        accuracy = transfer.accuracy(model.fc, cache.get("test", x_test), y_test)
    else:
        accuracy = transfer.accuracy(model, x_test, y_test)
    row = {"strategy": strategy, "n_labels": int(n_labels), "seed": int(seed), "accuracy": float(accuracy),
           "trainable_params": int(transfer.count_trainable(model)), "seconds": round(seconds, 2)}
    if source_data is not None and strategy != "scratch":
        row["source_accuracy"] = float(source_head_accuracy(model, state, *source_data))
    return row


def run_one(strategy, n_labels, seed, data, state, cache, fast=False, min_epochs=MIN_EPOCHS, source_data=None,
            **overrides):
    """Train one strategy on n_labels target images; returns its JSON row (with
    "source_accuracy" when `source_data` = (x, y) of the source task is given)."""
    model, seconds = train_one(strategy, n_labels, seed, data, state, fast, min_epochs, **overrides)
    return evaluate(model, strategy, n_labels, seed, seconds, data, cache, state, source_data)


def load_target(fast=False):
    x, y = task(TARGET_CLASSES, "train")
    x_test, y_test = task(TARGET_CLASSES, "test")
    if fast:
        x_test, y_test = x_test[:FAST_TEST_IMAGES], y_test[:FAST_TEST_IMAGES]
    return x, y, x_test, y_test


def run(sizes=(100, 1000, 10000), seeds=3, strategies=STRATEGIES, fast=False, json_path=None, progress=True,
        min_epochs=MIN_EPOCHS):
    """Every strategy at every size and seed; returns the rows (also written to json_path
    after each run, so an interrupted run keeps what it measured)."""
    from tqdm.auto import tqdm

    state = load_pretrained(fast=fast, progress=progress)
    data = load_target(fast)
    cache = transfer.FeatureCache(pretrained_model(state, len(TARGET_CLASSES)))
    rows = []
    # seed by seed, so an interrupted run still has every N and strategy for the first seeds
    jobs = [(n, s, strat) for s in range(seeds) for n in sizes for strat in strategies]
    bar = tqdm(jobs, desc="transfer table", disable=not progress)
    for n, seed, strategy in bar:
        bar.set_postfix(n=n, seed=seed, strategy=strategy)
        row = run_one(strategy, n, seed, data, state, cache, fast, min_epochs)
        rows.append(row)
        if progress:
            tqdm.write(json.dumps(row))
        if json_path:
            Path(json_path).write_text(json.dumps(rows, indent=1))
    return rows, state


def summarize(rows):
    """Table rows (approach, labels, mean +- std accuracy, trainable params, mean seconds),
    one per strategy and N, in the order of STRATEGIES and N."""
    table = []
    for n in sorted({r["n_labels"] for r in rows}):
        for strategy in STRATEGIES:
            group = [r for r in rows if r["strategy"] == strategy and r["n_labels"] == n]
            if not group:
                continue
            acc = np.array([r["accuracy"] for r in group])
            table.append({"approach": strategy, "labels": n, "mean": float(acc.mean()), "std": float(acc.std()),
                          "runs": len(group), "trainable_params": group[0]["trainable_params"],
                          "seconds": float(np.mean([r["seconds"] for r in group]))})
    return table


def format_accuracy(t):
    """"0.706 ± 0.005 (n=3)" for several seeds; one seed has no spread to show: "0.706 (n=1)"."""
    if t["runs"] == 1:
        return f"{t['mean']:.3f} (n=1)"
    return f"{t['mean']:.3f} ± {t['std']:.3f} (n={t['runs']})"


def format_table(summary):
    lines = ["| approach | labels | accuracy | trainable params | seconds |",
             "|---|---:|---:|---:|---:|"]
    for t in summary:
        lines.append(f"| {t['approach']} | {t['labels']:,} | {format_accuracy(t)} "
                     f"| {t['trainable_params']:,} | {t['seconds']:.1f} |")
    return "\n".join(lines)


def plot(summary, path=None):
    """Accuracy against the number of labels (log axis), one line per strategy; returns the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy in STRATEGIES:
        points = [t for t in summary if t["approach"] == strategy]
        if points:  # error bars only where several seeds give a spread
            several = all(t["runs"] > 1 for t in points)
            ax.errorbar([t["labels"] for t in points], [t["mean"] for t in points],
                        yerr=[t["std"] for t in points] if several else None, marker="o", capsize=3,
                        label=strategy if several else f"{strategy} (n=1)")
    ax.set_xscale("log")
    ax.set_xlabel("labelled target images N")
    ax.set_ylabel("target test accuracy")
    from ..data import FASHION_MNIST_CLASSES

    ax.set_title("Source: " + ", ".join(FASHION_MNIST_CLASSES[c] for c in SOURCE_CLASSES)
                 + "\ntarget: " + ", ".join(FASHION_MNIST_CLASSES[c] for c in TARGET_CLASSES), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def experiment_transfer_main(argv=None):
    """`minitl experiment transfer`: run the table, print it, save the figure (and JSON rows)."""
    parser = argparse.ArgumentParser(prog="minitl experiment transfer",
                                     description="Scratch vs feature extraction vs fine-tuning at several label counts.")
    parser.add_argument("--sizes", default=None, help="comma-separated label counts (default 100,1000,10000; --fast 100)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3; --fast 1)")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--json", default=None, help="write the rows here as JSON")
    parser.add_argument("--figure", default="minitl_output/transfer/transfer_table.png")
    parser.add_argument("--fast", action="store_true", help="small source model, few epochs, 500 test images")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--min-epochs", type=int, default=MIN_EPOCHS,
                        help="at least this many passes over the N images (default 2: 2 epochs at N = 10,000)")
    args = parser.parse_args(argv)
    cpu_runtime.tune()  # a training run: keep freed memory, let idle BLAS threads sleep
    sizes = [int(s) for s in (args.sizes or ("100" if args.fast else "100,1000,10000")).split(",")]
    seeds = args.seeds if args.seeds is not None else (1 if args.fast else 3)
    strategies = [s for s in args.strategies.split(",") if s]
    for s in strategies:
        if s not in STRATEGIES:
            parser.error(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
    start = time.perf_counter()
    rows, state = run(sizes, seeds, strategies, args.fast, args.json, progress=not args.no_progress,
                      min_epochs=args.min_epochs)
    summary = summarize(rows)
    print(f"\nsource model: test accuracy {float(state['source_accuracy']):.4f} on classes "
          f"{','.join(map(str, SOURCE_CLASSES))}")
    print(format_table(summary))
    plot(summary, args.figure)
    print(f"figure: {args.figure}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(experiment_transfer_main())
