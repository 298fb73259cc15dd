"""The source model of the vision sections: a `resnet_mini` pretrained on five Fashion-MNIST
classes, cached as .npz under `minitl.data.cache_dir("weights")`.

Chapter: "Transfer learning in computer vision". Source task: classes 0, 1, 5, 7, 8 (T-shirt/top,
Trouser, Sandal, Sneaker, Bag). Target task: classes 2, 3, 4, 6, 9 (Pullover, Dress, Coat, Shirt,
Ankle boot), relabelled 0-4. The target's look-alike garments (pullover, coat, shirt) make it a
fair test: the source never saw them, but it saw the strokes and textures they are made of.

    state = load_pretrained()          # trains once (a few minutes), then loads instantly
    model = tl.models.resnet_mini(**state["config"]); model.load_state_dict(state["weights"])

Command line: `python -m minitl.pretrained [--epochs E] [--fast] [--force]`
(wired to `minitl pretrain resnet-mini`).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from . import optim
from .data import DataLoader, cache_dir, fashion_mnist
from .models import resnet_mini
from .random import manual_seed
from .serialization import load, save

SOURCE_CLASSES = (0, 1, 5, 7, 8)
TARGET_CLASSES = (2, 3, 4, 6, 9)
# Fashion-MNIST's pixel mean and standard deviation (of x / 255 over the training set)
MEAN, STD = 0.2860, 0.3530
DEFAULT_CONFIG = {"widths": [16, 32, 64], "depth": [1, 1, 1]}
FAST_SOURCE_IMAGES = 3000  # the --fast source set: enough for a model that beats chance well


def normalize(images):
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), zero mean and unit variance on average."""
    x = images.astype(np.float32)[:, None] * np.float32(1 / 255)
    return (x - np.float32(MEAN)) * np.float32(1 / STD)


def task(classes, split):
    """The images of `classes` in a Fashion-MNIST split, normalised, with labels relabelled
    0..len(classes)-1 in the order given."""
    images, labels = fashion_mnist(split)
    keep = np.isin(labels, classes)
    relabel = np.full(10, -1, dtype=np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    return normalize(images[keep]), relabel[labels[keep]]


def weights_path(fast=False):
    return cache_dir("weights") / (f"resnet_mini_source_{RECIPE}_fast.npz" if fast else f"resnet_mini_source_{RECIPE}.npz")


SOURCE_EPOCHS = 4  # a 1-epoch source model (0.973) transferred poorly; 4 epochs with a cosine decay
RECIPE = "v2"      # part of the cache file's name: a changed recipe never loads stale weights


def pretrain(epochs=SOURCE_EPOCHS, seed=0, fast=False, lr=2e-3, batch_size=64, progress=True):
    """Train resnet_mini on the source task with Adam and a cosine-decayed learning rate;
    returns (model, source test accuracy)."""
    from .transfer import accuracy, train_steps

    manual_seed(seed)
    x, y = task(SOURCE_CLASSES, "train")
    x_test, y_test = task(SOURCE_CLASSES, "test")
    if fast:
        x, y, x_test, y_test = x[:FAST_SOURCE_IMAGES], y[:FAST_SOURCE_IMAGES], x_test[:1000], y_test[:1000]
    model = resnet_mini(len(SOURCE_CLASSES), **DEFAULT_CONFIG)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader((x, y), batch_size=batch_size, shuffle=True)
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, len(loader) // 10, epochs * len(loader))
    for epoch in range(epochs):  # one progress bar per epoch, step by step
        train_steps(model, loader, optimizer, 1, progress=progress, scheduler=scheduler)
    return model, accuracy(model, x_test, y_test)


def load_pretrained(fast=False, train_if_missing=True, epochs=None, force=False, progress=True):
    """The cached source model: {"weights": state dict, "config": constructor kwargs,
    "source_accuracy": float, "epochs": int, "seconds": float}. Trains and saves it first when
    the cache has none (or `force`)."""
    path = weights_path(fast)
    if path.exists() and not force:
        return load(path)
    if not train_if_missing:
        raise FileNotFoundError(f"no pretrained resnet-mini at {path}; run `minitl pretrain resnet-mini`")
    epochs = epochs or SOURCE_EPOCHS
    start = time.perf_counter()
    model, acc = pretrain(epochs=epochs, fast=fast, progress=progress)
    record = {"weights": model.state_dict(), "config": DEFAULT_CONFIG, "source_accuracy": acc,
              "epochs": epochs, "seconds": time.perf_counter() - start}
    save(record, path)
    return load(path)


def pretrained_resnet_mini(num_classes, fast=False):
    """The chapter's listing in one call: the pretrained source model with a fresh head for
    `num_classes` target classes (nothing frozen yet)."""
    from . import nn

    state = load_pretrained(fast=fast)
    model = resnet_mini(len(SOURCE_CLASSES), **state["config"])
    model.load_state_dict(state["weights"])
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def pretrain_main(argv=None):
    """`minitl pretrain resnet-mini`: train (or load) the source model and report its accuracy."""
    parser = argparse.ArgumentParser(prog="minitl pretrain resnet-mini",
                                     description="Pretrain resnet_mini on Fashion-MNIST classes 0,1,5,7,8 and cache it.")
    parser.add_argument("--epochs", type=int, default=None, help=f"source epochs (default {SOURCE_EPOCHS})")
    parser.add_argument("--fast", action="store_true", help="a small source set, for tests")
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    state = load_pretrained(fast=args.fast, epochs=args.epochs, force=args.force)
    print(f"resnet-mini source model: {weights_path(args.fast)}")
    print(f"source test accuracy (classes {','.join(map(str, SOURCE_CLASSES))}): {float(state['source_accuracy']):.4f}"
          f"  (trained {int(state['epochs'])} epochs in {float(state['seconds']):.1f} s; "
          f"this call took {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(pretrain_main())
