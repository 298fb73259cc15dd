"""The chapter's claims about transfer in vision, each put to a measurement (lesson 3).

Chapter: "Transfer learning in computer vision" and the ULMFiT section. Each function below
takes the runs of one seed (a `Runs`, which trains every configuration once and shares it
between the tables) and returns a `Claim`: a table plus sentences computed from its numbers.

    (a) freeze_depth        "lower layers learn general features": target accuracy with the
                            lowest 0, 1, 2, 3 and all 4 blocks frozen
    (b) forgetting          "gradual unfreezing prevents catastrophic forgetting": the source
                            task's accuracy through the ORIGINAL head after each strategy
    (c) body_learning_rate  "fine-tune with a small learning rate": the body at 1, 1/10 and
                            1/100 of the head's rate, in the same optimizer steps
    (d) batchnorm_pitfall   frozen blocks left in train() mode: their BatchNorm running
                            statistics drift although no parameter trains
    (e) data_needed         the chapter's table "Approach | Data needed | Performance": the
                            labels each approach needs to reach a fixed accuracy, read off the
                            measured curves (scratch run to the whole target training set)

The runs use the recipes of `transfer_table` (same steps, Adam, cosine decay); only what a
claim varies is changed. One seed: every accuracy is n=1.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import report
from ..pretrained import SOURCE_CLASSES, TARGET_CLASSES, task
from . import transfer_table as table

BLOCK_NAMES = ("stem", "layer1", "layer2", "layer3")  # the body of resnet_mini, from the input up
FREEZE_DEPTHS = (0, 1, 2, 3, 4)                       # 4: every block below the head
BODY_LR_RATIOS = (1.0, 0.1, 0.01)                     # body rate / head rate
PRETRAINED = ("feature_extraction", "finetune", "finetune_frozen_lower", "gradual_unfreezing")
TOLERANCE = 0.01     # accuracies closer than this (one point) count as a tie: one seed, n=1
GOAL_BELOW_WHOLE_SET = 0.05  # (e): the goal is scratch's whole-set accuracy minus this, to 0.01
SOURCE_TEST_IMAGES = 2000    # source test images for the forgetting measurements (fast: 250)

# The chapter's table, row by row: approach -> (its name there, data needed, performance).
CHAPTER_TABLE = {
    "feature_extraction": ("Feature extraction", "Small", "Good"),
    "finetune": ("Fine-tuning", "Medium", "Best"),
    "scratch": ("Training from scratch", "Large", "Depends on the data"),
}


@dataclass
class Claim:
    """One measured claim: a table (for `report.table`) and the sentences its numbers give."""

    title: str
    headers: list
    rows: list
    findings: list = field(default_factory=list)
    data: dict = field(default_factory=dict)  # the numbers behind the findings, for tests

    def show(self):
        """Print and record the table and the findings (into the tour's report)."""
        report.table(self.rows, self.headers, self.title)
        for line in self.findings:
            report.note(line)


def fmt(accuracy):
    return "—" if accuracy is None else f"{accuracy:.3f}"


def points(delta):
    return f"{100 * delta:+.1f} points"


# --- the runs ---------------------------------------------------------------------------------

def running_stats_change(model, state):
    """How far the body moved from the source model: the relative change of the BatchNorm
    running means and variances (||new - old|| / ||old||, over all layers), and how many
    parameter arrays below the head changed at all."""
    now, source = model.state_dict(), state["weights"]

    def relative(suffix):
        keys = [k for k in source if k.endswith(suffix)]
        old = np.concatenate([np.ravel(source[k]) for k in keys])
        new = np.concatenate([np.ravel(now[k]) for k in keys])
        return float(np.linalg.norm(new - old) / np.linalg.norm(old))

    params = [k for k in source if not k.startswith("fc.") and "running_" not in k and "num_batches" not in k]
    changed = sum(not np.array_equal(np.asarray(now[k]), np.asarray(source[k])) for k in params)
    return {"mean_drift": relative("running_mean"), "var_drift": relative("running_var"),
            "params_changed": int(changed), "params_total": len(params)}


def checkpoint_id(state):
    """A short fingerprint of the source model's weights: stored rows of another checkpoint
    are never reused."""
    digest = hashlib.sha1()
    for name in sorted(state["weights"]):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(state["weights"][name]).tobytes())
    return digest.hexdigest()[:16]


class Runs:
    """Every configuration the claims need, each trained once (one seed) and shared: the table's
    fine-tuning run is also freeze depth 0 and body rate 1/1, and so on. `get` returns a row of
    `transfer_table.evaluate`, with the source accuracy through the original head and the
    movement of the body (`running_stats_change`) for the pretrained strategies.

    With `store` (a .jsonl file; the lesson takes `$MINITL_RUN_STORE`), each row is appended
    there as it is measured, and rows already there for the same configuration, seed, mode and
    source checkpoint are read instead of retrained: an interrupted full run resumes, and
    `python -m minitl.experiments.transfer_claims fill --worker K/W` spreads the runs over W
    processes."""

    def __init__(self, state, data, cache, source_data=None, seed=0, fast=False, progress=True, store=None):
        self.state, self.data, self.cache, self.seed, self.fast = state, data, cache, seed, fast
        self.source_data = source_data
        self.progress = progress
        self.rows = {}
        self.store, self.stored = (Path(store) if store else None), {}
        if self.store is not None and self.store.is_file():
            checkpoint = checkpoint_id(state)
            for line in self.store.read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else None
                if record and record["checkpoint"] == checkpoint:
                    self.stored[record["key"]] = record["row"]

    @classmethod
    def for_lesson(cls, state, data, cache, fast=False, seed=0, store=None):
        x, y = task(SOURCE_CLASSES, "test")
        count = 250 if fast else SOURCE_TEST_IMAGES
        store = store or os.environ.get("MINITL_RUN_STORE") or None
        return cls(state, data, cache, (x[:count], y[:count]), seed, fast, store=store)

    def key(self, strategy, n_labels, overrides):
        return json.dumps([strategy, int(n_labels), self.seed, self.fast, sorted(overrides.items())])

    def get(self, strategy, n_labels, **overrides):
        key = self.key(strategy, n_labels, overrides)
        if key not in self.rows and key in self.stored:
            self.rows[key] = self.stored[key]
            if self.progress:
                print(f"  read {strategy} {overrides or ''} at N = {n_labels:,} from {self.store}", flush=True)
        if key not in self.rows:
            model, seconds = table.train_one(strategy, n_labels, self.seed, self.data, self.state, self.fast,
                                             **overrides)
            row = table.evaluate(model, strategy, n_labels, self.seed, seconds, self.data, self.cache,
                                 self.state, self.source_data)
            if strategy != "scratch":
                row.update(running_stats_change(model, self.state))
            row["settings"] = dict(overrides)
            self.rows[key] = row
            if self.store is not None:  # one line per row, appended: safe for several writers
                with open(self.store, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, "checkpoint": checkpoint_id(self.state), "row": row}) + "\n")
            if self.progress:
                extra = f" {dict(overrides)}" if overrides else ""
                print(f"  ran {strategy}{extra} at N = {n_labels:,}: accuracy {row['accuracy']:.3f} "
                      f"({row['seconds']:.1f} s)", flush=True)
        return self.rows[key]

    def source_before(self):
        """The source model's own accuracy on the source images used here."""
        if "before" not in self.rows:
            model = table.pretrained_model(self.state, len(TARGET_CLASSES))
            self.rows["before"] = table.source_head_accuracy(model, self.state, *self.source_data)
        return self.rows["before"]

    def all_rows(self):
        """The rows measured so far (JSON-ready), for a record of the whole run."""
        return [r for k, r in self.rows.items() if k != "before"]


def depth_run(runs, depth, n_labels):
    """Fine-tuning with the lowest `depth` blocks frozen (LP-FT, the table's recipe). Depth 0 is
    the table's `finetune`, depth 3 its `finetune_frozen_lower`: the same runs, not retrained."""
    if depth == 0:
        return runs.get("finetune", n_labels)
    if depth == table.RECIPES["finetune_frozen_lower"]["frozen_blocks"]:
        return runs.get("finetune_frozen_lower", n_labels)
    return runs.get("finetune_frozen_lower", n_labels, frozen_blocks=depth)


def depth_label(depth):
    if depth == 0:
        return "0 (fine-tune everything)"
    if depth == len(BLOCK_NAMES):
        return f"all {depth} (only the head trains)"
    return f"{depth} ({', '.join(BLOCK_NAMES[:depth])})"


# --- (a) freeze depth -------------------------------------------------------------------------

def freeze_depth(runs, sizes, depths=FREEZE_DEPTHS):
    """(a) Target accuracy with the lowest k blocks frozen, for each k and N. If the lower
    layers are general, freezing them costs little, and freezing the upper ones costs more."""
    acc = {(d, n): depth_run(runs, d, n)["accuracy"] for d in depths for n in sizes}
    trainable = {d: depth_run(runs, d, sizes[0])["trainable_params"] for d in depths}
    rows = [[depth_label(d), f"{trainable[d]:,}"] + [fmt(acc[d, n]) for n in sizes] for d in depths]
    headers = ["blocks frozen", "trainable params"] + [f"N = {n:,}" for n in sizes]
    findings = []
    top = max(depths)
    for n in sizes:
        best = max(depths, key=lambda d: acc[d, n])
        lower = [d for d in depths if 0 < d < top]
        cheap = [d for d in lower if acc[d, n] >= acc[0, n] - TOLERANCE]
        findings.append(
            f"N = {n:,}: the best depth is {depth_label(best)} ({acc[best, n]:.3f}); freezing "
            + "; ".join(f"{d} block{'s' * (d > 1)} {points(acc[d, n] - acc[0, n])}" for d in lower)
            + f" and everything {points(acc[top, n] - acc[0, n])} against fine-tuning everything "
            f"({acc[0, n]:.3f}). Freezing costs at most {TOLERANCE:.2f} for "
            f"{len(cheap)} of the {len(lower)} partial depths"
            + ("; freezing everything costs more than any partial depth." if all(
                acc[top, n] < acc[d, n] for d in lower) else "."))
    return Claim("(a) Freeze depth: target test accuracy (n=1)", headers, rows, findings,
                 {"accuracy": {f"{d}@{n}": acc[d, n] for d in depths for n in sizes}})


# --- (b) forgetting ---------------------------------------------------------------------------

def forgetting(runs, sizes, strategies=PRETRAINED):
    """(b) The source task's accuracy through the original head after each strategy: what the
    body forgot. Feature extraction leaves the body as it was."""
    before = runs.source_before()
    src = {(s, n): runs.get(s, n)["source_accuracy"] for s in strategies for n in sizes}
    tgt = {(s, n): runs.get(s, n)["accuracy"] for s in strategies for n in sizes}
    rows = [["source model, before any transfer"] + [f"{before:.3f} / —" for _ in sizes]]
    rows += [[s] + [f"{src[s, n]:.3f} / {tgt[s, n]:.3f}" for n in sizes] for s in strategies]
    headers = ["strategy"] + [f"N = {n:,}: source / target" for n in sizes]
    findings = []
    if "finetune" in strategies and "gradual_unfreezing" in strategies:
        for n in sizes:
            ft, gu = src["finetune", n], src["gradual_unfreezing", n]
            verdict = ("forgets less than" if gu > ft + TOLERANCE else
                       "forgets more than" if gu < ft - TOLERANCE else "forgets about as much as")
            findings.append(f"N = {n:,}: the source accuracy falls from {before:.3f} to {ft:.3f} after full "
                            f"fine-tuning and to {gu:.3f} after gradual unfreezing: gradual unfreezing "
                            f"{verdict} full fine-tuning (target {tgt['gradual_unfreezing', n]:.3f} against "
                            f"{tgt['finetune', n]:.3f}).")
    return Claim(f"(b) Forgetting: source test accuracy through the original head / target test accuracy "
                 f"({len(runs.source_data[1]):,} source test images, n=1)", headers, rows, findings,
                 {"before": before, "source": {f"{s}@{n}": src[s, n] for s in strategies for n in sizes}})


# --- (c) the body's learning rate -------------------------------------------------------------

def body_learning_rate(runs, sizes, ratios=BODY_LR_RATIOS):
    """(c) Fine-tuning with the body at `ratio` times the head's rate, in the same steps."""
    head_lr = table.RECIPES["finetune"]["lr"]

    def run(ratio, n):
        return runs.get("finetune", n) if ratio == table.RECIPES["finetune"]["body_lr_ratio"] else \
            runs.get("finetune", n, body_lr_ratio=ratio)

    cell = {(r, n): run(r, n) for r in ratios for n in sizes}
    rows = [[f"{r:g}", f"{head_lr * r:g}"] + [f"{cell[r, n]['accuracy']:.3f} / {cell[r, n]['source_accuracy']:.3f}"
                                             for n in sizes] for r in ratios]
    headers = ["body rate / head rate", "body rate"] + [f"N = {n:,}: target / source" for n in sizes]
    findings = []
    for n in sizes:
        best = max(ratios, key=lambda r: cell[r, n]["accuracy"])
        keeps = max(ratios, key=lambda r: cell[r, n]["source_accuracy"])
        where = ("at the head's own rate" if best == 1.0 else
                 f"at {best:g} of the head's rate, against {cell[1.0, n]['accuracy']:.3f} at the same rate")
        findings.append(f"N = {n:,}: the best target accuracy ({cell[best, n]['accuracy']:.3f}) comes with the body "
                        f"{where}; "
                        f"the source task survives best at {keeps:g} ({cell[keeps, n]['source_accuracy']:.3f}).")
    return Claim(f"(c) Body learning rate, head at {head_lr:g}, same steps: target / source test accuracy (n=1)",
                 headers, rows, findings,
                 {"accuracy": {f"{r:g}@{n}": cell[r, n]["accuracy"] for r in ratios for n in sizes}})


# --- (d) the batch-norm pitfall ---------------------------------------------------------------

def batchnorm_pitfall(runs, sizes):
    """(d) Every block below the head frozen, the head trained through the network: frozen
    BatchNorms kept in eval() (the source's running statistics) or left in train() (batch
    statistics, and running statistics that drift towards the target's)."""
    frozen = len(BLOCK_NAMES)
    rows, findings, data = [], [], {}
    for n in sizes:
        for mode, eval_mode in (("eval()", True), ("train()", False)):
            r = depth_run(runs, frozen, n) if eval_mode else \
                runs.get("finetune_frozen_lower", n, frozen_blocks=frozen, frozen_norms_eval=False)
            data[f"{mode}@{n}"] = r
            rows.append([f"{n:,}", mode, f"{r['params_changed']} of {r['params_total']}",
                         f"{r['mean_drift']:.3f}", f"{r['var_drift']:.3f}", f"{r['accuracy']:.3f}",
                         f"{r['source_accuracy']:.3f}"])
        ev, tr = data[f"eval()@{n}"], data[f"train()@{n}"]
        changed = "no" if tr["params_changed"] == 0 else f"{tr['params_changed']} of {tr['params_total']}"
        findings.append(f"N = {n:,}: in train() {changed} frozen parameter arrays changed, yet the "
                        f"running means moved by {100 * tr['mean_drift']:.1f}% and the variances by "
                        f"{100 * tr['var_drift']:.1f}%; target accuracy {tr['accuracy']:.3f} against "
                        f"{ev['accuracy']:.3f} in eval(), and the source task through its own head "
                        f"{tr['source_accuracy']:.3f} against {ev['source_accuracy']:.3f}.")
    headers = ["N", "frozen BatchNorms in", "frozen parameter arrays changed", "running mean drift",
               "running var drift", "target accuracy", "source accuracy"]
    return Claim("(d) Batch-norm pitfall: all blocks frozen, the head trained through the network (n=1; drift: "
                 "||new - source|| / ||source||)", headers, rows, findings, data)


# --- (e) the chapter's table ------------------------------------------------------------------

def labels_to_reach(curve, goal):
    """The labels a measured curve [(N, accuracy), ...] needs to reach `goal`: (value, text).
    Between the last point below the goal and the first at or above it, read linearly in log N;
    (N0, "≤ N0") when the first point already reaches it; (inf, "> N_max") when none does."""
    curve = sorted(curve)
    if not curve:
        raise ValueError("labels_to_reach: the curve has no points")
    for k, (n, acc) in enumerate(curve):
        if acc >= goal:
            if k == 0:
                return float(n), f"≤ {n:,}"
            (n0, a0) = curve[k - 1]
            log_n = math.log(n0) + (goal - a0) / (acc - a0) * (math.log(n) - math.log(n0))
            value = math.exp(log_n)
            return value, f"≈ {value:,.0f}"
    return math.inf, f"> {curve[-1][0]:,} (not reached)"


def curve_sizes(fast, whole_set):
    """(N of every approach's curve, the further N of scratch's): 100, 1,000 and 10,000, and
    scratch also at the whole target training set; fast mode N = 50 only (a curve of one point:
    the table shows the method, not the answer)."""
    return ((50,), ()) if fast else ((100, 1000, 10000), (whole_set,))


def data_needed(runs, sizes, scratch_extra=(), approaches=table.STRATEGIES):
    """(e) The chapter's table measured. Each approach's curve (target accuracy against N);
    the goal is the accuracy training from scratch reaches with the most labels, less
    GOAL_BELOW_WHOLE_SET; "data needed" is where each curve reaches it; "performance" is
    the accuracy at the smallest and the largest N every approach ran at."""
    curves = {a: [(n, runs.get(a, n)["accuracy"]) for n in sizes] for a in approaches}
    curves["scratch"] += [(n, runs.get("scratch", n)["accuracy"]) for n in scratch_extra]
    whole_n, whole_acc = max(curves["scratch"])
    goal = math.floor((whole_acc - GOAL_BELOW_WHOLE_SET) * 100) / 100
    needed = {a: labels_to_reach(curves[a], goal) for a in approaches}
    low, high = min(sizes), max(sizes)
    perf = {a: (dict(curves[a])[low], dict(curves[a])[high]) for a in approaches}

    rows = []
    for a in approaches:
        name, chapter_data, chapter_perf = CHAPTER_TABLE.get(a, (a, "(not in the table)", "(not in the table)"))
        rows.append([name if a in CHAPTER_TABLE else a, chapter_data, needed[a][1], chapter_perf,
                     f"{perf[a][0]:.3f} / {perf[a][1]:.3f}"])
    headers = ["approach", "data needed (chapter)", f"labels to reach {goal:.2f} (measured)",
               "performance (chapter)", f"accuracy at N = {low:,} / {high:,} (measured)"]

    def fewer(a, b):
        """a needs fewer labels than b: True, False, or None when the curves cannot tell (both
        reach the goal at their first point, or neither reaches it)."""
        (va, ta), (vb, tb) = needed[a], needed[b]
        if ta == tb and (ta.startswith("≤") or math.isinf(va)):
            return None
        return va < vb

    perf_high = {a: perf[a][1] for a in approaches}
    checks = [
        ("feature extraction needs fewer labels than fine-tuning (Small < Medium)",
         fewer("feature_extraction", "finetune")),
        ("fine-tuning needs fewer labels than training from scratch (Medium < Large)", fewer("finetune", "scratch")),
        ("feature extraction needs fewer labels than training from scratch (Small < Large)",
         fewer("feature_extraction", "scratch")),
        (f"fine-tuning performs best (highest accuracy at N = {high:,})",
         perf_high["finetune"] >= max(perf_high.values()) - TOLERANCE),
        (f"feature extraction performs well with few labels (beats scratch at N = {low:,})",
         perf["feature_extraction"][0] > perf["scratch"][0]),
        ("scratch depends on the data: behind fine-tuning at the fewest labels, closer with the most",
         None if low == high else
         perf["finetune"][0] - perf["scratch"][0] > perf["finetune"][1] - perf["scratch"][1] > -TOLERANCE),
    ]
    agreement = Claim("(e) Where the measurements agree with the chapter's table",
                      ["the chapter's table says", "measured", "agrees"],
                      [[claim, _evidence(k, needed, perf, low, high),
                        "can't tell" if ok is None else "yes" if ok else "no"]
                       for k, (claim, ok) in enumerate(checks)])
    findings = [f"Goal: {goal:.2f}, training from scratch's accuracy with its most labels, N = {whole_n:,} "
                f"({whole_acc:.3f}), less {GOAL_BELOW_WHOLE_SET:.2f}, rounded down. The measurements agree "
                f"with {sum(ok is True for _, ok in checks)} of the chapter's {len(checks)} statements, disagree "
                f"with {sum(ok is False for _, ok in checks)}, and cannot tell {sum(ok is None for _, ok in checks)}."]
    main = Claim("(e) The chapter's table: Approach | Data needed | Performance (n=1)", headers, rows, findings,
                 {"goal": goal, "needed": {a: needed[a][0] for a in approaches}, "curves": curves,
                  "checks": {c: ok for c, ok in checks}})
    return main, agreement


def _evidence(k, needed, perf, low, high):
    """The measured numbers behind check k of `data_needed`, as a short text."""
    n = {a: needed[a][1] for a in needed}
    if k == 0:
        return f"feature extraction {n['feature_extraction']}, fine-tuning {n['finetune']}"
    if k == 1:
        return f"fine-tuning {n['finetune']}, scratch {n['scratch']}"
    if k == 2:
        return f"feature extraction {n['feature_extraction']}, scratch {n['scratch']}"
    if k == 3:
        best = max(perf, key=lambda a: perf[a][1])
        return f"best at N = {high:,}: {best} {perf[best][1]:.3f}; fine-tuning {perf['finetune'][1]:.3f}"
    if k == 4:
        return f"{perf['feature_extraction'][0]:.3f} against {perf['scratch'][0]:.3f}"
    return (f"fine-tuning minus scratch: {points(perf['finetune'][0] - perf['scratch'][0])} at N = {low:,}, "
            f"{points(perf['finetune'][1] - perf['scratch'][1])} at N = {high:,}")


def plot_data_needed(claim, path=None):
    """The curves of (e) with the goal as a line and where each curve reaches it; returns the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    goal, curves, needed = claim.data["goal"], claim.data["curves"], claim.data["needed"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for a, curve in curves.items():
        ns, accs = zip(*sorted(curve))
        line, = ax.plot(ns, accs, marker="o", label=f"{a} (n=1)")
        if math.isfinite(needed[a]):
            ax.plot([needed[a]], [goal], marker="x", markersize=10, color=line.get_color())
    ax.axhline(goal, color="grey", linestyle="--", linewidth=1, label=f"goal {goal:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("labelled target images N")
    ax.set_ylabel("target test accuracy")
    ax.set_title("Labels needed to reach the goal (x: where a curve crosses it)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# --- what pretraining changed -----------------------------------------------------------------

def initial_weights(state, seed=0):
    """The weights the source model started from: `pretrain` draws them with `manual_seed(seed)`
    (seed 0 by default) before anything else, so the same draw gives them back."""
    from ..models import resnet_mini
    from ..random import manual_seed

    manual_seed(seed)
    return resnet_mini(len(SOURCE_CLASSES), **state["config"]).state_dict()


def weights_moved(state, seed=0):
    """[(convolution, ||W_trained - W_init|| / ||W_init||)] for every convolution of the body,
    from the input up: how far pretraining moved each layer from its random start."""
    init = initial_weights(state, seed)
    return [(k[:-len(".weight")], float(np.linalg.norm(v - init[k]) / np.linalg.norm(init[k])))
            for k, v in state["weights"].items() if k.endswith(".weight") and np.ndim(v) == 4]


# --- the lesson's runs, and spreading them over processes --------------------------------------

def claim_sizes(fast):
    """The N of claims (a)-(d): 100 and 1,000 labels (fast mode: 50)."""
    return (50,) if fast else (100, 1000)


def lesson_claims(runs, fast, whole_set):
    """Every claim of lesson 3 in the lesson's order, as the lesson computes them."""
    sizes = claim_sizes(fast)
    curve_n, scratch_n = curve_sizes(fast, whole_set)
    return [freeze_depth(runs, sizes), forgetting(runs, sizes), body_learning_rate(runs, sizes),
            batchnorm_pitfall(runs, sizes), *data_needed(runs, curve_n, scratch_extra=scratch_n)]


class _Planner:
    """A stand-in for Runs that trains nothing and records which configurations are asked for."""

    source_data = ((), ())

    def __init__(self):
        self.asked = []

    def get(self, strategy, n_labels, **overrides):
        if (strategy, n_labels, overrides) not in self.asked:
            self.asked.append((strategy, n_labels, overrides))
        return {"accuracy": 0.5, "source_accuracy": 0.5, "trainable_params": 1, "seconds": 0.0,
                "params_changed": 0, "params_total": 1, "mean_drift": 0.0, "var_drift": 0.0}

    def source_before(self):
        return 0.5


def lesson_plan(fast, whole_set):
    """[(strategy, N, overrides)] of every run the lesson's claims ask for, in their order."""
    planner = _Planner()
    lesson_claims(planner, fast, whole_set)
    return planner.asked


def fill_main(argv=None):
    """`python -m minitl.experiments.transfer_claims fill --worker K/W [--fast] --store PATH`: train
    every W-th run of the lesson's plan, from the K-th (K = 1..W), into the store that
    `minitl lesson 3` reads with MINITL_RUN_STORE=PATH."""
    import argparse

    from .. import cpu_runtime
    from .. import transfer
    from ..pretrained import load_pretrained

    parser = argparse.ArgumentParser(prog="python -m minitl.experiments.transfer_claims fill")
    parser.add_argument("command", choices=["fill", "plan"])
    parser.add_argument("--worker", default="1/1", help="K/W: this process takes runs K, K+W, K+2W, ...")
    parser.add_argument("--store", default=os.environ.get("MINITL_RUN_STORE"))
    parser.add_argument("--fast", action="store_true")
    args = parser.parse_args(argv)
    k, w = (int(v) for v in args.worker.split("/"))
    if not 1 <= k <= w:
        parser.error(f"--worker K/W needs 1 <= K <= W, got {args.worker}")
    data = table.load_target(args.fast)
    plan = lesson_plan(args.fast, len(data[0]))
    if args.command == "plan":
        for item in plan:
            print(*item)
        return 0
    if not args.store:
        parser.error("fill needs --store PATH (or MINITL_RUN_STORE)")
    cpu_runtime.tune()
    state = load_pretrained(fast=args.fast)
    cache = transfer.FeatureCache(table.pretrained_model(state, len(TARGET_CLASSES)))
    runs = Runs.for_lesson(state, data, cache, fast=args.fast, store=args.store)
    share = share_out(plan, w, args.fast)[k - 1]
    for strategy, n, overrides in sorted(share, key=lambda item: run_cost(item, args.fast)):  # cheap first
        runs.get(strategy, n, **overrides)
    return 0


def share_out(plan, workers, fast=False):
    """The plan split into `workers` lists of about equal cost (images passed through the network
    in training, the largest runs placed first, each on the least loaded worker)."""
    shares, loads = [[] for _ in range(workers)], [0] * workers
    for item in sorted(plan, key=lambda item: run_cost(item, fast), reverse=True):
        k = loads.index(min(loads))
        shares[k].append(item)
        loads[k] += run_cost(item, fast)
    return shares


def run_cost(item, fast=False):
    """Images a run passes through the network in training (feature extraction: one pass)."""
    strategy, n, _ = item
    return n if strategy == "feature_extraction" else table.epochs_for(n, fast) * n


if __name__ == "__main__":
    raise SystemExit(fill_main())
