# %% [markdown]
# # Lesson 3: transfer learning in computer vision
#
# The chapter's opening claim: a network pretrained on one task needs far fewer labels for a
# new one than a network trained from scratch. This lesson builds the strategies, then puts
# each of the chapter's claims to a measurement: first you predict, then the run answers.
#
# - **Source task**: Fashion-MNIST classes 0, 1, 5, 7, 8 (T-shirt/top, Trouser, Sandal,
#   Sneaker, Bag), all 30,000 training images.
# - **Target task**: classes 2, 3, 4, 6, 9 (Pullover, Dress, Coat, Shirt, Ankle boot),
#   relabelled 0-4, with only N labelled images. Pullover, coat and shirt look alike: the
#   source never saw them, but it saw garments made of the same edges, seams and textures.
#
# Every number below is printed by this run (one seed: every accuracy is n=1, with no error
# bars; `minitl experiment transfer --seeds 3` gives spreads). How the recipes were tuned is
# in `benchmarks/RESULTS.md`. Read alongside: `minitl/ops/conv.py`,
# `minitl/models/resnet_mini.py`, `minitl/transfer.py`, `minitl/experiments/transfer_table.py`,
# `minitl/experiments/transfer_claims.py`.

# %%
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minitl as tl  # noqa: E402
from minitl import transfer  # noqa: E402
from minitl.data import FASHION_MNIST_CLASSES  # noqa: E402
from minitl.experiments import transfer_claims as claims  # noqa: E402
from minitl.experiments import transfer_table as table  # noqa: E402
from minitl.pretrained import SOURCE_CLASSES, TARGET_CLASSES, load_pretrained, task  # noqa: E402

from minitl import report

out = report.output_dir("lesson_03_cv_transfer")
print("figures go to", out)
FAST = report.fast_mode()
tl.manual_seed(0)

# %% [markdown]
# ## The two tasks

# %%
x_source, y_source = task(SOURCE_CLASSES, "train")
x_target, y_target = task(TARGET_CLASSES, "train")
print("source train", x_source.shape, " target train", x_target.shape)
fig, axes = plt.subplots(2, 5, figsize=(7, 3))
for row, (classes, x, y) in enumerate([(SOURCE_CLASSES, x_source, y_source), (TARGET_CLASSES, x_target, y_target)]):
    for k, c in enumerate(classes):
        axes[row, k].imshow(x[np.flatnonzero(y == k)[0], 0], cmap="gray")
        axes[row, k].set_title(FASHION_MNIST_CLASSES[c], fontsize=8)
        axes[row, k].axis("off")
report.figure(fig, "tasks", "top: the source task's classes; bottom: the target task's")

# %% [markdown]
# ## The pretrained source model
#
# `load_pretrained()` trains `tl.models.resnet_mini(5)` (a three-stage ResNet, 16-32-64
# channels) on the source task once and caches its weights as .npz under
# `~/.cache/minitl/weights`; the second call loads them instantly. (Fast mode uses a model
# trained on 3,000 images only.)

# %%
start = time.perf_counter()
state = load_pretrained(fast=FAST)
print(f"loaded in {time.perf_counter() - start:.1f} s")
report.metric("source_test_accuracy", round(float(state["source_accuracy"]), 4))
source_model = tl.models.resnet_mini(len(SOURCE_CLASSES), **state["config"])
source_model.load_state_dict(state["weights"])
source_model.eval()
print(source_model)
print(f"{source_model.num_parameters():,} parameters")

# %% [markdown]
# ## What the lower layers learn
#
# The stem's 16 filters are 3x3 weights over the grey input. The chapter says lower layers
# learn general features such as edge and blob detectors. Look for yourself: the top row is
# the trained stem, the bottom row the random initialisation it started from (the same seed
# draws it again). If training had turned them into edge detectors, the two rows would differ.

# %%
init = claims.initial_weights(state)
filters = source_model.stem[0].weight.data[:, 0]
fig, axes = plt.subplots(2, 16, figsize=(12, 1.9))
for row, (name, w) in enumerate([("trained", filters), ("random init", init["stem.0.weight"][:, 0])]):
    for k in range(16):
        axes[row, k].imshow(w[k], cmap="RdBu_r", vmin=-np.abs(w).max(), vmax=np.abs(w).max())
        axes[row, k].axis("off")
    axes[row, 0].set_title(name, fontsize=8, loc="left")
report.figure(fig, "first_layer_filters", "the 16 stem filters (3x3, red +, blue -): trained (top) and their "
              "random initialisation (bottom)")
moved = claims.weights_moved(state)
report.table([[name, f"{change:.3f}"] for name, change in moved], ["convolution", "||W - W_init|| / ||W_init||"],
             title="How far pretraining moved each convolution from its random start")
stem_change = dict(moved)["stem.0"]
least = min(moved, key=lambda m: m[1])[0]
rest = np.mean([c for n, c in moved if n != "stem.0"])
report.note(f"The stem moved {stem_change:.3f} of its initial norm ({'the least' if least == 'stem.0' else 'not the least'}"
            f" of the {len(moved)} convolutions; the others {rest:.3f} on average). "
            + ("Its trained filters stay close to their random start: if they look like edge detectors, so does "
               "the random initialisation, and the picture is no evidence that training made them."
               if stem_change < 0.5 else "Training moved the stem well away from its random start."))

# %% [markdown]
# A picture of 3x3 filters is weak evidence either way. What we *can* measure is whether the
# lower blocks are useful as they are for a new task: claim (a) below.
#
# The feature maps of a coat (a class the source never saw), with their class name:

# %%
coat = TARGET_CLASSES.index(4)  # Fashion-MNIST class 4 is "Coat"
image = x_target[np.flatnonzero(y_target == coat)[0]][None]
with tl.no_grad():
    stem_maps = source_model.stem(tl.tensor(image)).numpy()[0]
    deeper_maps = source_model.layer2(source_model.layer1(tl.tensor(stem_maps[None]))).numpy()[0]
fig, axes = plt.subplots(3, 8, figsize=(8, 3.4))
axes[0, 0].imshow(image[0, 0], cmap="gray")
axes[0, 0].set_title(FASHION_MNIST_CLASSES[TARGET_CLASSES[coat]], fontsize=8)
for k in range(1, 8):
    axes[0, k].imshow(stem_maps[k - 1], cmap="viridis")
for k in range(8):
    axes[1, k].imshow(stem_maps[k + 7], cmap="viridis")
    axes[2, k].imshow(deeper_maps[k], cmap="viridis")
for ax in axes.flat:
    ax.axis("off")
report.figure(fig, "feature_maps", f"a {FASHION_MNIST_CLASSES[TARGET_CLASSES[coat]]} (top left), stem feature "
              "maps (rows 1-2, 28x28) and layer2 maps (row 3, 14x14)")

# %% [markdown]
# ## The chapter's listing: freeze, replace the head, train only the head
#
# Setting `requires_grad = False` on every parameter does two things: the optimizer is given
# the head's parameters only, and — because no input of the frozen layers requires a gradient —
# the forward pass through them records no graph at all.

# %%
num_classes = len(TARGET_CLASSES)
pretrained = state["weights"]
model = tl.models.resnet_mini(len(SOURCE_CLASSES), **state["config"]); model.load_state_dict(pretrained)  # noqa: E702
for p in model.parameters(): p.requires_grad = False  # noqa: E701
model.fc = tl.nn.Linear(model.fc.in_features, num_classes)
optimizer = tl.optim.Adam(model.fc.parameters(), lr=1e-3)

features = model.features(tl.tensor(x_target[:4]))
print("features", features.shape, "graph recorded below the head:", features.grad_fn is not None)
print(f"trainable parameters: {transfer.count_trainable(model):,} of {model.num_parameters():,}")

# %% [markdown]
# ## The strategies, one by one, at N labels
#
# - **scratch**: the same ResNet from random weights.
# - **feature_extraction**: the frozen backbone runs once over the N images (cached features),
#   a linear head trains on them.
# - **finetune**: first the new head alone on the cached features (a "linear probe"), then
#   everything trains (LP-FT, Kumar et al. 2022). A random head's large early gradients would
#   otherwise flow into the pretrained body and wreck the very features we came for.
# - **finetune_frozen_lower**: the same, with stem, layer1 and layer2 frozen (general
#   features): only layer3 and the head are fine-tuned.
# - **gradual_unfreezing** (ULMFiT): the head alone first, then one block deeper per stage,
#   with discriminative learning rates (each block 2.6x slower than the one above).
#
# Every strategy that trains the network gets the same optimizer steps, the same Adam and the
# same cosine decay of the learning rate as scratch (`table.epochs_for` and
# `table.batch_size_for` print the budget below); the recipes were tuned on a validation split
# carved from the target's training images, never on the test set.
#
# `claims.Runs` trains each configuration once and keeps its row: the claims below reuse these
# runs (fine-tuning is also "0 blocks frozen" and "body at the head's rate"). Each row also
# holds the source task's accuracy through the original head, and how much the body moved.

# %%
data = table.load_target(FAST)
cache = transfer.FeatureCache(table.pretrained_model(state, num_classes))
runs = claims.Runs.for_lesson(state, data, cache, fast=FAST)
SIZES = claims.claim_sizes(FAST)  # the claims' label counts: 100 and 1,000 (fast mode: 50)
for n in SIZES:
    print(f"N = {n:,}: {table.epochs_for(n, FAST)} epochs in batches of {table.batch_size_for(n)}; "
          f"linear heads {table.head_epochs_for(n, FAST)} epochs on cached features")
for strategy in table.STRATEGIES:
    row = runs.get(strategy, SIZES[0])
    print(f"{strategy:<24} accuracy {row['accuracy']:.3f}  trainable {row['trainable_params']:>6,}  {row['seconds']:.1f} s")

# %% [markdown]
# ## Claim (a): lower layers learn general features
#
# If the lower blocks hold general features (strokes, textures), freezing them should cost the
# target task little, and freezing the upper, task-specific blocks should cost more.
#
# **Predict, then run.** Write down, for N = 100 and N = 1,000: which number of frozen blocks
# (0, 1, 2, 3 or all 4 below the head) gives the best target accuracy? Does freezing
# everything hurt more at 100 labels or at 1,000?

# %%
depth = claims.freeze_depth(runs, SIZES)
depth.show()

# %% [markdown]
# ## Claim (b): gradual unfreezing prevents catastrophic forgetting
#
# Fine-tuning changes the body; does the body still serve the *source* task? Put the source
# model's original head back on each fine-tuned body and measure the source task's test
# accuracy. Feature extraction never changes the body, so it forgets nothing by construction.
#
# **Predict, then run.** Rank feature extraction, full fine-tuning, fine-tuning with the lower
# blocks frozen, and gradual unfreezing by how much source accuracy they keep. Does gradual
# unfreezing forget less than full fine-tuning?

# %%
forgotten = claims.forgetting(runs, SIZES)
forgotten.show()

# %% [markdown]
# ## Claim (c): fine-tune with a small learning rate
#
# The chapter advises a small learning rate for the pretrained body, so that it does not move
# far from what it learned. Same steps, same head rate; only the body's rate changes.
#
# **Predict, then run.** Which body rate (the head's, a tenth, a hundredth) gives the best
# target accuracy at N = 100, and at N = 1,000? Which one keeps the most source accuracy?

# %%
body_lr = claims.body_learning_rate(runs, SIZES)
body_lr.show()

# %% [markdown]
# ## Claim (d): the batch-norm pitfall
#
# `requires_grad = False` freezes a BatchNorm's gamma and beta, but not its running mean and
# variance: in `train()` mode it normalises each batch by that batch's statistics and keeps
# updating its running statistics. Here every block below the head is frozen and only the head
# trains, through the network, once with the frozen BatchNorms kept in `eval()` (what
# `transfer.train_steps` does) and once left in `train()`.
#
# **Predict, then run.** In `train()` mode, how many frozen parameters change? Do the running
# statistics move? Which mode gives the better target accuracy, and what happens to the source
# task through its own head?

# %%
pitfall = claims.batchnorm_pitfall(runs, SIZES)
pitfall.show()

# %% [markdown]
# ## Claim (e): the chapter's table, "Approach | Data needed | Performance"
#
# The chapter's table says how much data each approach needs and how well it performs. Here
# "data needed" becomes a number: the labels each approach takes to reach a fixed accuracy,
# read off its measured curve of target accuracy against N (linear in log N between measured
# points). The goal is set from training from scratch on the whole target training set (its
# accuracy less a few points), so every approach chases the same number. (Fast mode measures
# one point per curve, N = 50: there the table shows the method, not the chapter's answer.)
#
# **Predict, then run.** Which approach needs the fewest labels to reach the goal? Does any
# approach never reach it?

# %%
curve_n, scratch_n = claims.curve_sizes(FAST, len(data[0]))
needed, agreement = claims.data_needed(runs, curve_n, scratch_extra=scratch_n)
needed.show()
agreement.show()
report.figure(claims.plot_data_needed(needed), "data_needed", "target test accuracy against labels (n=1); the "
              "dashed line is the goal, x where a curve reaches it")

# %% [markdown]
# ## All strategies side by side
#
# Every strategy at every N this lesson ran, with its trainable parameters and training time.

# %%
rows = [r for r in runs.all_rows() if not r["settings"]]
summary = table.summarize(rows)
report.table([[t["approach"], t["labels"], table.format_accuracy(t), t["trainable_params"], round(t["seconds"], 1)]
              for t in summary],
             headers=["approach", "labels", "accuracy", "trainable params", "seconds"],
             title=f"Target test accuracy (classes {', '.join(FASHION_MNIST_CLASSES[c] for c in TARGET_CLASSES)})")
report.figure(table.plot(summary), "transfer_table", "target test accuracy against the number of labels (n=1)")
for n in sorted({t["labels"] for t in summary}):
    at_n = [t for t in summary if t["labels"] == n]
    best = max(at_n, key=lambda t: t["mean"])
    scratch = next((t for t in at_n if t["approach"] == "scratch"), None)
    if scratch is not None and len(at_n) > 1:
        report.metric(f"best_minus_scratch_at_{n}", round(best["mean"] - scratch["mean"], 4))

# %% [markdown]
# ## Check yourself
#
# 1. In table (a), how many points does freezing every block below the head cost against
#    fine-tuning everything, at the smallest N? And at the largest?
# 2. In table (b), what is the source task's accuracy through its original head after full
#    fine-tuning, and after gradual unfreezing? Which of the chapter's claims does that test?
# 3. In table (d), how many frozen parameter arrays changed in `train()` mode, and how far did
#    the running means move?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 3`), make each one's tests pass:
#
# - `vision.conv2d_im2col`: `minitl exercises check vision.conv2d_im2col`
# - `vision.conv2d_backward`: `minitl exercises check vision.conv2d_backward`
# - `vision.maxpool_backward`: `minitl exercises check vision.maxpool_backward`
# - `vision.batchnorm_backward`: `minitl exercises check vision.batchnorm_backward`
# - `transfer.freeze`: `minitl exercises check transfer.freeze`
