# %% [markdown]
# # Lesson 2: training from scratch
#
# The chapter starts from the baseline every transfer method is measured against: a network
# trained from random weights on the labelled data of the task alone. Here that is a
# multi-layer perceptron (MLP) on Fashion-MNIST: 60,000 training images of 28x28 grey
# clothes in 10 classes, 10,000 test images.
#
# What you should see: the training loss falls every epoch; the test accuracy climbs to about
# 88-89% and then flattens while training accuracy keeps rising — the gap is overfitting, and
# it is the reason labelled data is precious, which is what transfer learning is about.
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
print("train", train_images.shape, train_images.dtype, " test", test_images.shape)
print("classes:", ", ".join(FASHION_MNIST_CLASSES))

fig, axes = plt.subplots(2, 10, figsize=(10, 2.3))
for k in range(10):
    for row in range(2):
        image = train_images[np.flatnonzero(train_labels == k)[row]]
        axes[row, k].imshow(image, cmap="gray")
        axes[row, k].axis("off")
    axes[0, k].set_title(FASHION_MNIST_CLASSES[k], fontsize=7)
report.figure(fig, "samples", "two training images of each class")

# %% [markdown]
# ## Inputs
#
# Pixels are scaled to [0, 1] and then standardised with the training set's mean and
# standard deviation, so the first layer sees inputs of mean 0 and variance 1 — the scale
# its initialisation assumes. The same numbers are used for the test set.

# %%
MEAN = float(train_images.mean() / 255)
STD = float(train_images.std() / 255)
print(f"pixel mean {MEAN:.4f}, std {STD:.4f}")


def to_inputs(images, labels):
    x = (images.reshape(len(images), -1).astype(np.float32) / 255 - MEAN) / STD
    return x, labels


train_loader = DataLoader((train_images, train_labels), batch_size=128, shuffle=True, transform=to_inputs)
test_loader = DataLoader((test_images, test_labels), batch_size=1000, transform=to_inputs)

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
# epochs with a progress bar and returns the history of loss and accuracy.

# %%
EPOCHS = 2 if FAST else 15
optimizer = tl.optim.Adam(model.parameters(), lr=1e-3)
schedule = tl.optim.warmup_cosine(optimizer, warmup_steps=len(train_loader) // 2,
                                  total_steps=EPOCHS * len(train_loader), min_ratio=0.05)
start = time.perf_counter()
history = tl.fit(model, train_loader, optimizer, epochs=EPOCHS, val_loader=test_loader, scheduler=schedule)
seconds = time.perf_counter() - start
test_loss, test_acc = tl.evaluate(model, test_loader)
print(f"test accuracy {test_acc:.4f} after {EPOCHS} epochs ({seconds:.0f} s)")

# %% [markdown]
# ## Learning curves

# %%
epochs = history["epoch"]
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
ax_loss.plot(epochs, history["train_loss"], "o-", label="train")
ax_loss.plot(epochs, history["val_loss"], "o-", label="test")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("cross-entropy")
ax_loss.legend()
ax_acc.plot(epochs, history["train_acc"], "o-", label="train")
ax_acc.plot(epochs, history["val_acc"], "o-", label="test")
ax_acc.set_xlabel("epoch")
ax_acc.set_ylabel("accuracy")
ax_acc.legend()
fig.tight_layout()
report.figure(fig, "learning_curve", "MLP on Fashion-MNIST: loss and accuracy per epoch")

report.table([[e["epoch"], f"{e['train_loss']:.4f}", f"{e['train_acc']:.4f}", f"{e['val_loss']:.4f}",
               f"{e['val_acc']:.4f}", f"{e['seconds']:.1f}"] for e in history.epochs],
             headers=["epoch", "train loss", "train acc", "test loss", "test acc", "seconds"],
             title="MLP 784-512-512-10 trained from scratch")
report.metric("MLP test accuracy", round(test_acc, 4))
report.metric("training seconds", round(seconds, 1))

# %% [markdown]
# ## Where it goes wrong
#
# The confusion matrix shows which classes the network mixes up: shirts, T-shirts,
# pullovers and coats look alike at 28x28. Those are exactly the classes the transfer
# experiment of lesson 3 uses as its hard target task.

# %%
with tl.no_grad():
    model.eval()
    x_test, y_test = to_inputs(test_images, test_labels)
    predictions = model(tl.tensor(x_test)).argmax(-1).numpy()
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
worst = np.argsort(np.diag(confusion) / confusion.sum(1))[:3]
print("hardest classes:", [FASHION_MNIST_CLASSES[k] for k in worst])

# %% [markdown]
# ## Exercises
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
