# %% [markdown]
# # Lesson 2: training from scratch
#
# The chapter starts from the baseline every transfer method is measured against: a network
# trained from random weights on the labelled data of the task alone. Here that is a
# multi-layer perceptron (MLP) on Fashion-MNIST: 60,000 training images of 28x28 grey
# clothes in 10 classes, 10,000 test images.
#
# What you should see: the training loss falls every epoch; the validation accuracy climbs
# fast, then slowly, while the training accuracy keeps climbing past it. The gap between the
# two is overfitting, and it is why labelled data is precious, which is what transfer learning
# is about. The run prints how large the gap is and whether validation accuracy was still
# rising at the end.
#
# The data is split three ways. The model learns from the *training* split; every choice made
# while training (the epochs, the learning rate, which checkpoint to keep) looks only at a
# *validation* split carved out of the 60,000 training images; the *test* set is touched once,
# at the very end, to report the number that stands for the lesson. A test set looked at every
# epoch becomes a second validation set, and its accuracy an optimistic guess.
#
# Read alongside: `minitl/nn/layers.py` (Linear), `minitl/optim/adam.py`, `minitl/training.py`.

# %%
import time

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minitl as tl  # noqa: E402
from minitl import nn, report  # noqa: E402
from minitl.data import FASHION_MNIST_CLASSES, DataLoader, fashion_mnist  # noqa: E402

out = report.output_dir("lesson_02_from_scratch")
print("figures go to", out)
FAST = report.fast_mode()
tl.manual_seed(0)

# %% [markdown]
# ## The data
#
# `fashion_mnist` looks in `$MINITL_DATA`, `~/.cache/minitl`, the Debian package
# `dataset-fashion-mnist`, then downloads; it returns uint8 images and int64 labels.

# %%
train_images, train_labels = fashion_mnist("train")
test_images, test_labels = fashion_mnist("test")
if FAST:  # a small slice, so the lesson runs in seconds in the test suite
    train_images, train_labels = train_images[:6000], train_labels[:6000]
    test_images, test_labels = test_images[:2000], test_labels[:2000]
# the validation split: a fixed random twelfth of the training images, never trained on
order = np.random.default_rng(0).permutation(len(train_images))
held_out, kept = order[:len(order) // 12], order[len(order) // 12:]
val_images, val_labels = train_images[held_out], train_labels[held_out]
train_images, train_labels = train_images[kept], train_labels[kept]
print("train", train_images.shape, train_images.dtype, " validation", val_images.shape,
      " test", test_images.shape)
print("classes:", ", ".join(FASHION_MNIST_CLASSES))

fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
for k in range(10):
    for row in range(2):
        image = train_images[np.flatnonzero(train_labels == k)[row]]
        axes[row, k].imshow(image, cmap="gray")
        axes[row, k].axis("off")
    axes[0, k].set_title(FASHION_MNIST_CLASSES[k], fontsize=7)
_ = report.figure(fig, "samples", "two training images of each class")

# %% [markdown]
# ## Inputs
#
# Pixels are scaled to [0, 1] and then standardised with the training set's mean and
# standard deviation, so the first layer sees inputs of mean 0 and variance 1 — the scale
# its initialisation assumes. The same numbers are used for the validation and test sets.

# %%
MEAN = float(train_images.mean() / 255)
STD = float(train_images.std() / 255)
print(f"pixel mean {MEAN:.4f}, std {STD:.4f}")


def to_inputs(images, labels):
    x = (images.reshape(len(images), -1).astype(np.float32) / 255 - MEAN) / STD
    return x, labels


train_loader = DataLoader((train_images, train_labels), batch_size=128, shuffle=True, transform=to_inputs)
val_loader = DataLoader((val_images, val_labels), batch_size=1000, transform=to_inputs)

# %% [markdown]
# ## The model
#
# Two hidden layers of 512 units with ReLU and a little dropout; a final linear layer gives
# one score (logit) per class, and `cross_entropy` turns the scores into a loss.

# %%
model = nn.Sequential(
    nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
    nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2),
    nn.Linear(512, 10),
)
print(model)
print("parameters:", model.num_parameters())

# %% [markdown]
# ## Training
#
# Adam with a learning rate that decays along a cosine over the run. `tl.fit` runs the
# epochs with a progress bar and returns the history of loss and accuracy, on the training
# batches and on the validation split.

# %%
EPOCHS = 2 if FAST else 15
optimizer = tl.optim.Adam(model.parameters(), lr=1e-3)
schedule = tl.optim.warmup_cosine(optimizer, warmup_steps=len(train_loader) // 2,
                                  total_steps=EPOCHS * len(train_loader), min_ratio=0.05)
start = time.perf_counter()
history = tl.fit(model, train_loader, optimizer, epochs=EPOCHS, val_loader=val_loader, scheduler=schedule)
seconds = time.perf_counter() - start
val_acc = history["val_acc"]
print(f"validation accuracy {val_acc[-1]:.4f} after {EPOCHS} epochs ({seconds:.0f} s of training)")

# %% [markdown]
# ## Learning curves

# %%
epochs = history["epoch"]
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
ax_loss.plot(epochs, history["train_loss"], "o-", label="train")
ax_loss.plot(epochs, history["val_loss"], "o-", label="validation")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("cross-entropy")
ax_loss.legend()
ax_acc.plot(epochs, history["train_acc"], "o-", label="train")
ax_acc.plot(epochs, history["val_acc"], "o-", label="validation")
ax_acc.set_xlabel("epoch")
ax_acc.set_ylabel("accuracy")
ax_acc.legend()
fig.tight_layout()
report.figure(fig, "learning_curve", "MLP on Fashion-MNIST: loss and accuracy per epoch")

report.table([[e["epoch"], f"{e['train_loss']:.4f}", f"{e['train_acc']:.4f}", f"{e['val_loss']:.4f}",
               f"{e['val_acc']:.4f}", f"{e['seconds']:.1f}"] for e in history.epochs],
             headers=["epoch", "train loss", "train acc", "val loss", "val acc", "seconds"],
             title="MLP 784-512-512-10 trained from scratch (n=1)")
report.metric("MLP validation accuracy", round(val_acc[-1], 4))
report.metric("training seconds", round(seconds, 1))
gap = history["train_acc"][-1] - val_acc[-1]
still_rising = len(val_acc) > 1 and val_acc[-1] > val_acc[-2]
report.note(f"After epoch {EPOCHS}: training accuracy {history['train_acc'][-1]:.4f}, validation "
            f"{val_acc[-1]:.4f}, a gap of {gap:+.4f}; validation accuracy was "
            + ("still rising at the last epoch." if still_rising else "no longer rising at the last epoch."))

# %% [markdown]
# ## The test set, once
#
# Training is over and nothing will be chosen any more: now, and only now, the model meets
# the test set. Its accuracy and the confusion matrix below both come from this single pass.
# The confusion matrix shows which classes the network mixes up. Lesson 3 splits the ten
# classes into a source task and a target task; the last lines say where the hardest classes
# fall.

# %%
from minitl.pretrained import SOURCE_CLASSES, TARGET_CLASSES  # noqa: E402

with tl.no_grad():
    model.eval()
    x_test, y_test = to_inputs(test_images, test_labels)
    predictions = model(tl.tensor(x_test)).argmax(-1).numpy()
test_acc = float((predictions == y_test).mean())
print(f"test accuracy {test_acc:.4f} (validation: {val_acc[-1]:.4f})")
report.metric("MLP test accuracy", round(test_acc, 4))
confusion = np.zeros((10, 10), dtype=np.int64)
np.add.at(confusion, (y_test, predictions), 1)
fig, ax = plt.subplots(figsize=(5.5, 5))
ax.imshow(confusion, cmap="Blues")
ax.set_xticks(range(10), FASHION_MNIST_CLASSES, rotation=90, fontsize=7)
ax.set_yticks(range(10), FASHION_MNIST_CLASSES, fontsize=7)
ax.set_xlabel("predicted")
ax.set_ylabel("true")
for i in range(10):
    for j in range(10):
        ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=6)
fig.tight_layout()
report.figure(fig, "confusion", "confusion matrix on the test set")
per_class = np.diag(confusion) / confusion.sum(1)
worst = np.argsort(per_class)[:4]
for k in worst:
    task_name = "lesson 3's target task" if k in TARGET_CLASSES else "lesson 3's source task"
    print(f"hard class: {FASHION_MNIST_CLASSES[k]:12s} test accuracy {per_class[k]:.3f}  ({task_name})")
print("lesson 3's source task:", ", ".join(FASHION_MNIST_CLASSES[k] for k in SOURCE_CLASSES))
print("lesson 3's target task:", ", ".join(FASHION_MNIST_CLASSES[k] for k in TARGET_CLASSES))

# %% [markdown]
# ## Check yourself
#
# 1. At the last epoch, how far apart were training and validation accuracy, and was
#    validation accuracy still rising?
# 2. How many images did the validation split take from the training set, and on which split
#    were the accuracies of the learning-curve table measured?
# 3. Which four classes were hardest on the test set, and which of them belong to lesson 3's
#    target task?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 2`), make each one's tests pass:
#
# - `nn.linear_forward`: `minitl exercises check nn.linear_forward`
# - `nn.linear_backward`: `minitl exercises check nn.linear_backward`
# - `autograd.cross_entropy_forward`: `minitl exercises check autograd.cross_entropy_forward`
# - `autograd.cross_entropy_backward`: `minitl exercises check autograd.cross_entropy_backward`
# - `nn.layer_norm_backward`: `minitl exercises check nn.layer_norm_backward`
# - `optim.sgd_momentum`: `minitl exercises check optim.sgd_momentum`
# - `optim.adam`: `minitl exercises check optim.adam`
