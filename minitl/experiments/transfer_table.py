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

The network is a parameter (`SourceModel`: how to load its cached source model, how to build
it, its head's name, its recipes). `--model vit` runs the pretrained ViT of lesson 9
(`minitl.pretrained_vit`) beside the CNN, both on the same target images, and the table and
figure show both, the rows tagged with their model; `--skip-cnn` leaves the CNN's rows out.
Measured tables (the ViT's among them), and how the recipes were tuned, are in
benchmarks/RESULTS.md; lesson 3 prints its own (one seed), and
`minitl/experiments/transfer_claims.py` puts the chapter's claims to these runs.

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

from dataclasses import dataclass, field

from .. import cpu_runtime, nn, transfer
from ..models import resnet_mini
from ..pretrained import SOURCE_CLASSES, TARGET_CLASSES, load_pretrained, task
from ..random import manual_seed
from ..report import save_figure

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


# The ViT's recipes: the CNN's, with the fine-tuning strategies' rate lowered to 3e-4, the usual
# practice for transformers (fine-tuning rates are smaller than pretraining's, 1e-3 here).
# NOT tuned on a validation split as the CNN's were; the same steps, Adam and cosine decay as
# every other run.
VIT_RECIPES = {**RECIPES, "finetune": {**RECIPES["finetune"], "lr": 3e-4},
               "finetune_frozen_lower": {**RECIPES["finetune_frozen_lower"], "lr": 3e-4},
               "gradual_unfreezing": {**RECIPES["gradual_unfreezing"], "lr": 1e-3}}


@dataclass(frozen=True)
class SourceModel:
    """A pretrained network the table can run: how to load its cached source model (a state
    {"weights", "config", "source_accuracy", ...}), how to build one from its config with a
    head for k classes, the name of its head, and its recipes per strategy. Its `blocks()`
    (input first, head last) say what "frozen lower" and gradual unfreezing mean."""
    name: str
    load_state: object  # (fast, progress) -> state
    build: object       # (config, num_classes) -> a model with random weights
    head: str
    recipes: dict = field(default_factory=dict)


def _build_resnet(config, num_classes):
    return resnet_mini(num_classes, **config)


def _load_vit(fast, progress):
    from ..pretrained_vit import load_pretrained_vit
    return load_pretrained_vit(fast=fast, progress=progress)


def _build_vit(config, num_classes):
    from ..pretrained_vit import build_vit
    return build_vit(config, num_classes)


MODELS = {
    # frozen_blocks 3: stem, layer1, layer2 of the CNN; patch embedding, layers 0 and 1 of the ViT
    "resnet-mini": SourceModel("resnet-mini", lambda fast, progress: load_pretrained(fast=fast, progress=progress),
                               _build_resnet, "fc", RECIPES),
    "vit": SourceModel("vit", _load_vit, _build_vit, "head", VIT_RECIPES),
}


def source_model(name):
    """The SourceModel called `name` ("resnet-mini" or "vit")."""
    if isinstance(name, SourceModel):
        return name
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name]


def sample_labels(y, n_labels, seed):
    """Indices of a class-balanced random subset of n_labels examples (seeded)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = [n_labels // len(classes) + (k < n_labels % len(classes)) for k in range(len(classes))]
    picks = [rng.choice(np.flatnonzero(y == c), size=m, replace=False) for c, m in zip(classes, per_class)]
    return rng.permutation(np.concatenate(picks))


def pretrained_model(state, num_classes, model="resnet-mini"):
    """The chapter's listing: the source model, its head replaced for the target task."""
    spec = source_model(model)
    net = spec.build(state["config"], len(SOURCE_CLASSES))
    net.load_state_dict(state["weights"])
    old = transfer.get_head(net, spec.head)
    transfer.set_head(net, nn.Linear(old.in_features, num_classes), spec.head)
    return net


def source_head_accuracy(net, state, x_source, y_source, model="resnet-mini"):
    """The source task's accuracy of `net`'s body (possibly changed by fine-tuning) read by the
    ORIGINAL source head: how much of the source task survives a strategy (forgetting)."""
    spec = source_model(model)
    old = transfer.get_head(net, spec.head)
    head = nn.Linear(old.in_features, len(SOURCE_CLASSES))
    head.load_state_dict({"weight": state["weights"][f"{spec.head}.weight"],
                          "bias": state["weights"][f"{spec.head}.bias"]})
    return transfer.accuracy(head, transfer.extract_features(net, x_source, head=spec.head), y_source)


def train_one(strategy, n_labels, seed, data, state, fast=False, min_epochs=MIN_EPOCHS, model="resnet-mini",
              **overrides):
    """Train one strategy on n_labels target images with the source model `model` (its recipe,
    updated by `overrides`); returns (trained network, seconds of training)."""
    spec = source_model(model)
    x, y = data[0], data[1]
    recipe = spec.recipes.get(strategy)
    if recipe is None:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    recipe = {**recipe, **overrides}
    idx = sample_labels(y, n_labels, seed)
    xs, ys = x[idx], y[idx]
    epochs, bs = epochs_for(n_labels, fast, min_epochs), batch_size_for(n_labels)
    num_classes = len(TARGET_CLASSES)
    manual_seed(seed)  # the new head, scratch weights and shuffling all follow the seed
    if strategy == "scratch":
        net = spec.build(state["config"], num_classes)
    else:
        net = pretrained_model(state, num_classes, spec)
    start = time.perf_counter()
    steps = epochs * math.ceil(n_labels / bs)
    head_epochs = head_epochs_for(n_labels, fast)
    head = {"head": spec.head}
    if strategy == "scratch":
        transfer.train_from_scratch(net, xs, ys, batch_size=bs, steps=steps, **recipe)
    elif strategy == "feature_extraction":
        transfer.feature_extraction(net, xs, ys, head_epochs, batch_size=bs, **head, **recipe)
    elif strategy == "finetune":
        transfer.finetune(net, xs, ys, batch_size=bs, steps=steps, head_epochs=head_epochs, **head, **recipe)
    elif strategy == "finetune_frozen_lower":
        transfer.finetune_frozen_lower(net, xs, ys, batch_size=bs, steps=steps, head_epochs=head_epochs, **head,
                                       **recipe)
    else:
        transfer.gradual_unfreezing(net, xs, ys, batch_size=bs, steps=steps, head_epochs=head_epochs, **head,
                                    **recipe)
    return net, time.perf_counter() - start


def evaluate(net, strategy, n_labels, seed, seconds, data, cache, state=None, source_data=None, model="resnet-mini"):
    """The JSON row of a trained network: target test accuracy (feature extraction's head reads
    the shared, cached test features) and, with `source_data`, the source accuracy through the
    original head (not for scratch, which has no source task)."""
    spec = source_model(model)
    x_test, y_test = data[2], data[3]
    if strategy == "feature_extraction":
        accuracy = transfer.accuracy(transfer.get_head(net, spec.head), cache.get("test", x_test), y_test)
    else:
        accuracy = transfer.accuracy(net, x_test, y_test)
    row = {"model": spec.name, "strategy": strategy, "n_labels": int(n_labels), "seed": int(seed),
           "accuracy": float(accuracy), "trainable_params": int(transfer.count_trainable(net)),
           "seconds": round(seconds, 2)}
    if source_data is not None and strategy != "scratch":
        row["source_accuracy"] = float(source_head_accuracy(net, state, *source_data, model=spec))
    return row


def run_one(strategy, n_labels, seed, data, state, cache, fast=False, min_epochs=MIN_EPOCHS, source_data=None,
            model="resnet-mini", **overrides):
    """Train one strategy on n_labels target images with the source model `model`; returns its
    JSON row (with "source_accuracy" when `source_data` = (x, y) of the source task is given)."""
    net, seconds = train_one(strategy, n_labels, seed, data, state, fast, min_epochs, model, **overrides)
    return evaluate(net, strategy, n_labels, seed, seconds, data, cache, state, source_data, model)


def load_target(fast=False):
    x, y = task(TARGET_CLASSES, "train")
    x_test, y_test = task(TARGET_CLASSES, "test")
    if fast:
        x_test, y_test = x_test[:FAST_TEST_IMAGES], y_test[:FAST_TEST_IMAGES]
    return x, y, x_test, y_test


def run(sizes=(100, 1000, 10000), seeds=3, strategies=STRATEGIES, fast=False, json_path=None, progress=True,
        min_epochs=MIN_EPOCHS, models=("resnet-mini",)):
    """Every strategy at every size and seed, for each source model in `models`; returns the
    rows (also written to json_path after each run, so an interrupted run keeps what it
    measured) and {model name: its source state}."""
    from tqdm.auto import tqdm

    specs = [source_model(m) for m in models]
    states = {spec.name: spec.load_state(fast, progress) for spec in specs}
    data = load_target(fast)
    caches = {spec.name: transfer.FeatureCache(pretrained_model(states[spec.name], len(TARGET_CLASSES), spec),
                                               head=spec.head) for spec in specs}
    rows = []
    # seed by seed, so an interrupted run still has every N, strategy and model for the first seeds
    jobs = [(n, s, strat, spec) for s in range(seeds) for n in sizes for spec in specs for strat in strategies]
    bar = tqdm(jobs, desc="transfer table", disable=not progress)
    for n, seed, strategy, spec in bar:
        bar.set_postfix(model=spec.name, n=n, seed=seed, strategy=strategy)
        row = run_one(strategy, n, seed, data, states[spec.name], caches[spec.name], fast, min_epochs, model=spec)
        rows.append(row)
        if progress:
            tqdm.write(json.dumps(row))
        if json_path:
            Path(json_path).write_text(json.dumps(rows, indent=1))
    return rows, states


def summarize(rows):
    """Table rows (model, approach, labels, mean +- std accuracy, trainable params, mean
    seconds), one per model, strategy and N, in the order of N, MODELS and STRATEGIES. Rows
    without a model (written before the ViT joined) are the CNN's."""
    table = []
    for n in sorted({r["n_labels"] for r in rows}):
        for model in MODELS:
            for strategy in STRATEGIES:
                group = [r for r in rows if r["strategy"] == strategy and r["n_labels"] == n
                         and r.get("model", "resnet-mini") == model]
                if not group:
                    continue
                acc = np.array([r["accuracy"] for r in group])
                table.append({"model": model, "approach": strategy, "labels": n, "mean": float(acc.mean()),
                              "std": float(acc.std()), "runs": len(group),
                              "trainable_params": group[0]["trainable_params"],
                              "seconds": float(np.mean([r["seconds"] for r in group]))})
    return table


def format_accuracy(t):
    """"0.706 ± 0.005 (n=3)" for several seeds; one seed has no spread to show: "0.706 (n=1)"."""
    if t["runs"] == 1:
        return f"{t['mean']:.3f} (n=1)"
    return f"{t['mean']:.3f} ± {t['std']:.3f} (n={t['runs']})"


def format_table(summary):
    lines = ["| model | approach | labels | accuracy | trainable params | seconds |",
             "|---|---|---:|---:|---:|---:|"]
    for t in summary:
        lines.append(f"| {t['model']} | {t['approach']} | {t['labels']:,} | {format_accuracy(t)} "
                     f"| {t['trainable_params']:,} | {t['seconds']:.1f} |")
    return "\n".join(lines)


def plot(summary, path=None):
    """Accuracy against the number of labels (log axis), one line per model and strategy (the
    CNN's solid, the ViT's dashed, a strategy's colour the same for both); returns the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    styles = {"resnet-mini": ("-", "o"), "vit": ("--", "s")}
    several_models = len({t["model"] for t in summary}) > 1
    for k, strategy in enumerate(STRATEGIES):
        for model, (line, marker) in styles.items():
            points = [t for t in summary if t["approach"] == strategy and t["model"] == model]
            if points:  # error bars only where several seeds give a spread
                several = all(t["runs"] > 1 for t in points)
                label = f"{model} {strategy}" if several_models else strategy
                ax.errorbar([t["labels"] for t in points], [t["mean"] for t in points],
                            yerr=[t["std"] for t in points] if several else None, marker=marker, linestyle=line,
                            capsize=3, color=f"C{k}", label=label if several else f"{label} (n=1)")
    ax.set_xscale("log")
    ax.set_xlabel("labelled target images N")
    ax.set_ylabel("target test accuracy")
    from ..data import FASHION_MNIST_CLASSES

    ax.set_title("Source: " + ", ".join(FASHION_MNIST_CLASSES[c] for c in SOURCE_CLASSES)
                 + "\ntarget: " + ", ".join(FASHION_MNIST_CLASSES[c] for c in TARGET_CLASSES), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6 if several else 8, ncol=2 if several else 1)
    fig.tight_layout()
    return save_figure(fig, path)


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
    parser.add_argument("--model", default="resnet-mini",
                        help="the pretrained network: resnet-mini (default), or vit, which runs the ViT beside the "
                             "CNN (both tables at once; --skip-cnn for the ViT's rows alone)")
    parser.add_argument("--skip-cnn", action="store_true", help="with --model vit: leave out the CNN's rows")
    args = parser.parse_args(argv)
    if args.model not in MODELS:
        parser.error(f"unknown model {args.model!r}; choose from {', '.join(MODELS)}")
    models = ["resnet-mini"] if args.model == "resnet-mini" else (
        [args.model] if args.skip_cnn else ["resnet-mini", args.model])
    cpu_runtime.tune()  # a training run: keep freed memory, let idle BLAS threads sleep
    sizes = [int(s) for s in (args.sizes or ("100" if args.fast else "100,1000,10000")).split(",")]
    seeds = args.seeds if args.seeds is not None else (1 if args.fast else 3)
    strategies = [s for s in args.strategies.split(",") if s]
    for s in strategies:
        if s not in STRATEGIES:
            parser.error(f"unknown strategy {s!r}; choose from {', '.join(STRATEGIES)}")
    start = time.perf_counter()
    rows, states = run(sizes, seeds, strategies, args.fast, args.json, progress=not args.no_progress,
                       min_epochs=args.min_epochs, models=models)
    summary = summarize(rows)
    print()
    for name, state in states.items():
        print(f"source model {name}: test accuracy {float(state['source_accuracy']):.4f} on classes "
              f"{','.join(map(str, SOURCE_CLASSES))}")
    print(format_table(summary))
    plot(summary, args.figure)
    print(f"figure: {args.figure}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(experiment_transfer_main())
