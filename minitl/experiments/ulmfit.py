"""ULMFiT measured on a real task, against training from scratch and with each idea left out.

Chapter: "Transfer learning in NLP", ULMFiT: "fine-tuning a pretrained LM needs far fewer
labels; discriminative rates, slanted triangular rates and gradual unfreezing each help". The
task is `tl.data.gcide_pos`: a dictionary definition in (the headword masked as "[MASK]", the
first MAX_TOKENS tokens), its headword's part of speech out (noun, adjective, verb, adverb),
split by headword. For each label budget N in `sizes` and each seed, N training examples are
drawn (seeded, with the classes' shares kept) and each method trains on them:

    ulmfit                  the LM fine-tuned on the task's text, then the classifier with
                            discriminative rates, STLR and gradual unfreezing
    scratch                 the same classifier from random weights, every group at one rate,
                            with STLR (gradual unfreezing of random layers means nothing)
    no_discriminative       ulmfit with every group at the same rate
    no_stlr                 ulmfit with a constant rate instead of the slanted triangle
    no_gradual_unfreezing   ulmfit with every group training from the first step

The LM is fine-tuned ONCE per experiment (`tl.ulmfit.load_finetuned_lm`, cached): its text, the
task's unlabelled training definitions, depends on neither N nor the seed. Every classifier run
gets the same number of Adam steps (STEPS, batches of BATCH_SIZE[N]) whatever N, so a run costs
the same at N = 100 as with all labels; with all 93,428 labels a run sees only a few thousand
of them. Accuracy is measured on the first TEST_EXAMPLES definitions of the test split (the
split is ordered by a hash of the headword, so they are a random sample of test headwords),
the same ones for every run. The pretrained biLM read GCIDE, so it has read these definitions'
text (never their labels), as the LM fine-tuning did the training split's.

    minitl experiment ulmfit --sizes 100,1000,all --seeds 3 [--json PATH] [--fast]

It starts from the biLM of `minitl pretrain elmo` (about 15 minutes of its own, run first when
the cache has none); the default run's budget of 20 minutes counts from that cached biLM.

The rates are fastai's ULMFiT defaults (eta = 1e-2 for the head, each group below 2.6 times
slower), not tuned here; the scratch classifier, with no pretrained layer to protect, trains every
group at 3e-3.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .. import cpu_runtime, ulmfit
from ..data import cache_dir
from ..random import manual_seed
from ..report import save_figure

RECIPE = "v1"
METHODS = ("ulmfit", "scratch", "no_discriminative", "no_stlr", "no_gradual_unfreezing")
MAX_TOKENS = 32            # the first 32 tokens of a definition (78% of the training ones have no more)
# Sized to 20 minutes on 2 idle cores from CPU seconds (time.process_time of one process; on an
# idle machine its wall time is no longer) measured on the shared 2-core machine at the default's
# shapes (V = 20,001, H = 256, 2 layers): one run of 100 steps and its 2,000 test definitions
# costs 12-18 s at N = 100 (batches of 16) and 19-23 s from N = 1,000 on (batches of 32), the
# runs that train every group from the first step the dearest; the default's 45 runs (3 sizes x
# 3 seeds x 5 methods) about 840 s. The LM fine-tuning (ulmfit.LM_FINETUNE: 500 steps at 0.25 s,
# two held-out losses at 3.6 s) adds about 135 s, loading the task and the biLM about 20 s:
# about 17 minutes in all.
STEPS = 100                # Adam steps per classifier run, whatever N
TEST_EXAMPLES = 2000
FAST = dict(steps=40, test_examples=300)   # --fast: the LM fine-tuning of ulmfit.LM_FINETUNE_FAST

# lr is eta for the head; with discriminative rates each layer group below gets eta / 2.6 more
RECIPES = {
    "ulmfit": dict(lr=1e-2),
    "scratch": dict(lr=3e-3, discriminative=False, gradual=False),
    "no_discriminative": dict(lr=1e-2, discriminative=False),
    "no_stlr": dict(lr=1e-2, stlr=False),
    "no_gradual_unfreezing": dict(lr=1e-2, gradual=False),
}


def batch_size_for(n_labels):
    """Small batches for few labels (more distinct batches per epoch), larger ones for many."""
    return 16 if n_labels <= 100 else 32


def results_path():
    """Where a full default run (sizes 100, 1000, all; 3 seeds) keeps its results for lesson 7."""
    return cache_dir("results") / f"ulmfit_{RECIPE}.json"


def load_task(fast=False, test_examples=None):
    """(data, test ids, test labels): gcide_pos (its first entries with --fast) and the test subset."""
    import minitl as tl
    data = tl.data.gcide_pos(max_tokens=MAX_TOKENS, fast=fast)
    n = test_examples or (FAST["test_examples"] if fast else TEST_EXAMPLES)
    return data, data.test.texts[:n], data.test.labels[:n]


def parse_sizes(sizes, n_train):
    """Label budgets, each a number or "all": ["100", "1000", "all"] -> [100, 1000, n_train]."""
    out = []
    for part in sizes:
        part = str(part).strip()
        if part != "all" and not part.isdigit():
            raise ValueError(f"a label budget is a positive number or 'all', got {part!r}")
        size = n_train if part == "all" else int(part)
        if not 1 <= size <= n_train:
            raise ValueError(f"a label budget must lie in 1..{n_train:,} (the task's training examples) or be "
                             f"'all', got {part!r}")
        out.append(size)
    return out


def run_one(method, n_labels, seed, lm, vocab, train, test, num_classes, steps=STEPS):
    """Train one method on n_labels examples; returns its JSON row."""
    x, y = train
    x_test, y_test = test
    recipe = RECIPES.get(method)
    if recipe is None:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    idx = ulmfit.stratified_sample(y, n_labels, seed)
    manual_seed(seed)  # the head, scratch weights, dropout and shuffling all follow the seed
    if method == "scratch":
        model = ulmfit.scratch_classifier(len(vocab), lm.hidden_size, len(lm.layers), num_classes)
    else:
        model = ulmfit.classifier_from_lm(lm, num_classes)
    start = time.perf_counter()
    ulmfit.fine_tune_classifier(model, x[idx], y[idx], steps=steps, batch_size=batch_size_for(n_labels), **recipe)
    seconds = time.perf_counter() - start
    accuracy = ulmfit.accuracy(model, x_test, y_test)
    return {"method": method, "n_labels": int(n_labels), "seed": int(seed), "accuracy": accuracy,
            "steps": int(steps), "seconds": round(seconds, 2)}


def run(sizes=("100", "1000", "all"), seeds=3, methods=METHODS, fast=False, json_path=None, progress=True):
    """Every method at every size (a number of labels, or "all") and seed. Returns the results: {"rows", "lm", "task", ...}
    (also written to json_path after each run, so an interrupted run keeps what it measured)."""
    from tqdm.auto import tqdm

    data, test_texts, test_labels = load_task(fast)
    sizes = parse_sizes(sizes, len(data.train))   # before the LM: a wrong budget fails at once
    start = time.perf_counter()
    lm, vocab, record = ulmfit.load_finetuned_lm(data.train.texts, data.val.texts, fast=fast, progress=progress)
    lm_seconds = time.perf_counter() - start
    train = (ulmfit.encode(data.train.texts, vocab), data.train.labels)
    test = (ulmfit.encode(test_texts, vocab), np.asarray(test_labels))
    majority = float(np.mean(test[1] == data.majority_class()))
    results = {"task": data.name, "classes": list(data.classes), "n_train": len(data.train),
               "test_examples": len(test[1]), "majority_baseline": majority, "fast": bool(fast),
               "steps": FAST["steps"] if fast else STEPS, "lm": _lm_summary(record, lm_seconds), "rows": []}
    jobs = [(n, s, m) for s in range(seeds) for n in sizes for m in methods]
    bar = tqdm(jobs, desc="ulmfit table", disable=not progress)
    for n, seed, method in bar:
        bar.set_postfix(n=n, seed=seed, method=method)
        row = run_one(method, n, seed, lm, vocab, train, test, len(data.classes), steps=results["steps"])
        results["rows"].append(row)
        if progress:
            tqdm.write(json.dumps(row))
        if json_path:
            Path(json_path).write_text(json.dumps(results, indent=1))
    return results


def _lm_summary(record, seconds):
    """The fine-tuned LM's numbers for the JSON: held-out perplexities, tokens, time."""
    summary = {"pretrained_perplexity_gcide": record.get("pretrained_perplexity"),
               "fine_tuning_steps": int(record["config"]["steps"]), "train_tokens": int(record["train_tokens"]),
               "seconds_this_run": round(seconds, 1), "fine_tuning_seconds": round(float(record["seconds"]), 1),
               "fine_tuning_cpu_seconds": round(float(record["cpu_seconds"]), 1)}
    if "held_out_loss_before" in record:
        summary.update(task_perplexity_before=float(np.exp(record["held_out_loss_before"])),
                       task_perplexity_after=float(np.exp(record["held_out_loss_after"])),
                       held_out_tokens=int(record["held_out_tokens"]))
    return summary


def summarize(rows):
    """One entry per method and N: mean and std of the accuracy over the seeds, mean seconds."""
    table = []
    for n in sorted({r["n_labels"] for r in rows}):
        for method in METHODS:
            group = [r for r in rows if r["method"] == method and r["n_labels"] == n]
            if group:
                acc = np.array([r["accuracy"] for r in group])
                table.append({"method": method, "labels": n, "mean": float(acc.mean()), "std": float(acc.std()),
                              "runs": len(group), "seconds": float(np.mean([r["seconds"] for r in group]))})
    return table


def format_table(summary):
    """Methods as rows, label budgets as columns: mean ± std (n=seeds)."""
    sizes = sorted({t["labels"] for t in summary})
    lines = ["| method | " + " | ".join(f"N = {n:,}" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for method in METHODS:
        cells = {t["labels"]: t for t in summary if t["method"] == method}
        if cells:
            lines.append(f"| {method} | " + " | ".join(
                f"{cells[n]['mean']:.3f} ± {cells[n]['std']:.3f} (n={cells[n]['runs']})" if n in cells else "-"
                for n in sizes) + " |")
    return "\n".join(lines)


def plot(summary, majority=None, path=None):
    """Test accuracy against the number of labels (log axis), one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for method in METHODS:
        points = [t for t in summary if t["method"] == method]
        if points:
            ax.errorbar([t["labels"] for t in points], [t["mean"] for t in points], yerr=[t["std"] for t in points],
                        marker="o", capsize=3, label=method, linestyle="--" if method.startswith("no_") else "-")
    if majority is not None:
        ax.axhline(majority, color="grey", linewidth=0.8, label="majority class")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training definitions N")
    ax.set_ylabel("test accuracy")
    ax.set_title("ULMFiT on GCIDE part of speech")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def print_results(results):
    lm = results["lm"]
    print(f"\n{results['task']}: {results['n_train']:,} training definitions, {results['test_examples']:,} test "
          f"definitions, majority class {results['majority_baseline']:.3f}; {results['steps']} Adam steps per run")
    if "task_perplexity_before" in lm:
        print(f"LM fine-tuning: {lm['fine_tuning_steps']} steps, {lm['train_tokens']:,} tokens of the task's text "
              f"in {lm['fine_tuning_seconds']:.0f} s ({lm['fine_tuning_cpu_seconds']:.0f} s CPU); held-out "
              f"perplexity on the task's text {lm['task_perplexity_before']:.1f} -> {lm['task_perplexity_after']:.1f} "
              f"({lm['held_out_tokens']:,} tokens)")
    print(format_table(summarize(results["rows"])))


def experiment_ulmfit_main(argv=None):
    """`minitl experiment ulmfit`: run the table, print it, save the figure (and the JSON)."""
    parser = argparse.ArgumentParser(prog="minitl experiment ulmfit",
                                     description="ULMFiT vs the same classifier from scratch, and its ablations, on "
                                                 "GCIDE's part of speech. Uses the biLM of "
                                                 "`minitl pretrain elmo`, pretraining it first when not cached.")
    parser.add_argument("--sizes", default=None, help="comma-separated label budgets, 'all' for every training "
                                                      "example (default 100,1000,all; --fast 100)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default 3; --fast 1)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", default=None, help="write the results here as JSON")
    parser.add_argument("--figure", default="minitl_output/ulmfit/ulmfit_table.png")
    parser.add_argument("--fast", action="store_true", help="the tiny pretrained LM, GCIDE's first entries, few steps")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    cpu_runtime.tune()  # a training run: keep freed memory, let idle BLAS threads sleep
    sizes = (args.sizes or ("100" if args.fast else "100,1000,all")).split(",")
    seeds = args.seeds if args.seeds is not None else (1 if args.fast else 3)
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for size in sizes:
        if size != "all" and not (size.isdigit() and int(size) > 0):
            parser.error(f"--sizes: a label budget is a positive number or 'all', got {size!r}")
    start, cpu = time.perf_counter(), time.process_time()
    results = run(sizes, seeds, methods, args.fast, args.json, progress=not args.no_progress)
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["cpu_seconds"] = round(time.process_time() - cpu, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    default_run = not args.fast and seeds == 3 and sizes == ["100", "1000", "all"] and methods == list(METHODS)
    if default_run:  # lesson 7 shows this table without running it again
        results_path().write_text(json.dumps(results, indent=1))
    print_results(results)
    plot(summarize(results["rows"]), results["majority_baseline"], args.figure)
    print(f"figure: {args.figure}")
    print(f"total {results['seconds']:.0f} s wall, {results['cpu_seconds']:.0f} s CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(experiment_ulmfit_main())
