"""The ViT source model: a small Vision Transformer pretrained on the five Fashion-MNIST source
classes, cached as .npz under `minitl.data.cache_dir("weights")`, and its attention maps.

Chapter: "Transformers as foundation models", the ViT section (lesson 9). The source and target
tasks are the CNN's (`minitl.pretrained`): classes 0, 1, 5, 7, 8 to learn from, classes 2, 3,
4, 6, 9 to transfer to, so the ViT's rows of the transfer table stand beside the CNN's.

    state = load_pretrained_vit()          # trains once, then loads in a second
    model = source_vit(state)              # the source model (5 classes), in eval mode
    model.features(images)                 # (N, D): the CLS feature, an image encoder's output
    model = pretrained_vit(num_classes=5)  # the chapter's listing: a fresh head at `model.head`

Command line: `minitl pretrain vit [--epochs E] [--fast] [--force] [--figure PATH]`
(or `python -m minitl.pretrained_vit`). It prints the source test accuracy and the training's
wall and CPU seconds, and draws the attention maps of a few test images.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from . import optim
from .data import FASHION_MNIST_CLASSES, DataLoader, cache_dir
from .models.vit import VisionTransformer, attention_rollout
from .pretrained import SOURCE_CLASSES, task
from .random import manual_seed
from .serialization import load, save

RECIPE = "v1"  # part of the cache file's name: a changed recipe never loads stale weights
FAST_RECIPE = "v2"  # the same for the --fast model

# 4x4 patches of a 28x28 image (a 7x7 grid, 49 tokens and CLS), width 64, 4 pre-norm layers of
# 4 heads, MLP 256: 205k parameters. The budget is 15 minutes on two idle cores. One training
# step at batch 64 cost 0.13-0.16 CPU-seconds (time.process_time, one BLAS thread, on the
# shared 2-core machine): about 470 steps an epoch, 70 CPU-seconds. Measured: `minitl pretrain
# vit --epochs 2` took 137.5 CPU-seconds in all (source test accuracy 0.9692), so the default
# five epochs cost about 345 CPU-seconds, under 6 minutes of one core; on an idle machine the
# wall time is at most that. `minitl pretrain vit` prints both times. (The width-128 ViT, the benchmark's, costs twice as much a
# step: it would make every run of the transfer table twice as long, for a source task this
# easy.)
DEFAULT_CONFIG = dict(img_size=28, patch_size=4, in_chans=1, embed_dim=64, depth=4, num_heads=4, mlp_dim=256)
SOURCE_EPOCHS = 5
# --fast (tests, lessons' --fast): a three-layer ViT of width 32 on 3,000 source images, 3
# epochs, a few CPU-seconds (three layers: the transfer table's finetune_frozen_lower freezes
# the patch embedding and two layers, and should still train one)
FAST_CONFIG = dict(img_size=28, patch_size=4, in_chans=1, embed_dim=32, depth=3, num_heads=2, mlp_dim=64)
FAST_EPOCHS = 3
FAST_SOURCE_IMAGES = 3000
LR, WEIGHT_DECAY, BATCH_SIZE = 1e-3, 0.05, 64


def weights_path(fast=False):
    return cache_dir("weights") / (f"vit_mini_source_{FAST_RECIPE}_fast.npz" if fast else
                                   f"vit_mini_source_{RECIPE}.npz")


def build_vit(config, num_classes):
    """A VisionTransformer of `config` (the constructor's keyword arguments) with a head for
    `num_classes` classes."""
    return VisionTransformer(num_classes=num_classes, **config)


def pretrain(epochs=None, seed=0, fast=False, progress=True):
    """Train the ViT on the source task with AdamW (weight decay 0.05) and a warm-up then
    cosine decay of the learning rate; returns (model, source test accuracy, epochs)."""
    from .transfer import accuracy, train_steps

    manual_seed(seed)
    x, y = task(SOURCE_CLASSES, "train")
    x_test, y_test = task(SOURCE_CLASSES, "test")
    if fast:
        x, y, x_test, y_test = x[:FAST_SOURCE_IMAGES], y[:FAST_SOURCE_IMAGES], x_test[:1000], y_test[:1000]
    epochs = epochs or (FAST_EPOCHS if fast else SOURCE_EPOCHS)
    model = build_vit(FAST_CONFIG if fast else DEFAULT_CONFIG, len(SOURCE_CLASSES))
    optimizer = optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loader = DataLoader((x, y), batch_size=BATCH_SIZE, shuffle=True)
    # transformers want a warm-up: large early steps through an untrained attention diverge
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, len(loader) // 2, epochs * len(loader))
    for _ in range(epochs):  # one progress bar per epoch, step by step
        train_steps(model, loader, optimizer, 1, progress=progress, scheduler=scheduler)
    return model, accuracy(model, x_test, y_test), epochs


def load_pretrained_vit(fast=False, train_if_missing=True, epochs=None, force=False, progress=True):
    """The cached source ViT: {"weights": state dict, "config": constructor kwargs,
    "source_accuracy", "epochs", "seconds", "cpu_seconds"}. Trains and saves it first when the
    cache has none (or `force`)."""
    path = weights_path(fast)
    if path.exists() and not force:
        return load(path)
    if not train_if_missing:
        raise FileNotFoundError(f"no pretrained ViT at {path}; run `minitl pretrain vit`")
    start, cpu_start = time.perf_counter(), time.process_time()
    model, acc, epochs = pretrain(epochs=epochs, fast=fast, progress=progress)
    record = {"weights": model.state_dict(), "config": FAST_CONFIG if fast else DEFAULT_CONFIG,
              "source_accuracy": acc, "epochs": epochs, "seconds": time.perf_counter() - start,
              "cpu_seconds": time.process_time() - cpu_start}
    save(record, path)
    return load(path)


def source_vit(state):
    """The pretrained source model itself (its 5-class head), in eval mode."""
    model = build_vit(state["config"], len(SOURCE_CLASSES))
    model.load_state_dict(state["weights"])
    return model.eval()


def pretrained_vit(num_classes, fast=False):
    """The chapter's listing for the ViT: the pretrained source model with a fresh head for
    `num_classes` target classes (`model.head`, nothing frozen yet)."""
    from . import nn

    model = source_vit(load_pretrained_vit(fast=fast))
    model.head = nn.Linear(model.head.in_features, num_classes)
    return model


# --- attention maps ---------------------------------------------------------------------------

def cls_attention(model, images, layer=-1):
    """Where the CLS token looks: (N, heads, h, w), row 0 of the attention weights of `layer`
    (the last by default) over the h x w patch grid, for each image and head (rows sum to 1
    with the CLS column, which is left out)."""
    maps = model.attention_maps(images)[layer]
    h, w = model.patch_embed.grid_size
    return maps[:, :, 0, 1:].reshape(len(images), maps.shape[1], h, w)


def plot_attention_maps(model, images, labels, class_names, path=None, layer=-1, guess_names=None):
    """One row per image: the image with its class name (and the model's guess when it is
    another, named from `guess_names`, by default `class_names`), then the CLS token's
    attention in each head of `layer` over the patch grid, drawn on the image, then the
    attention rollout through all layers. Returns the figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .tensor import Tensor, no_grad

    images = np.asarray(images)
    with no_grad():
        guesses = model.eval()(Tensor(images)).data.argmax(axis=-1)
    per_head = cls_attention(model, images, layer)
    rollout = attention_rollout(model.attention_maps(images))[:, 0, 1:].reshape(len(images), *per_head.shape[2:])
    heads = per_head.shape[1]
    size = images.shape[-2:]
    fig, axes = plt.subplots(len(images), heads + 2, figsize=(1.5 * (heads + 2), 1.6 * len(images)), squeeze=False)
    for row, image in enumerate(images):
        axes[row, 0].imshow(image[0], cmap="gray")
        true, guess = class_names[labels[row]], (guess_names or class_names)[guesses[row]]
        axes[row, 0].set_title(true if guess == true else f"{true} (says {guess})", fontsize=7)
        panels = [*per_head[row], rollout[row]]
        for col, grid in enumerate(panels, start=1):
            axes[row, col].imshow(image[0], cmap="gray")
            axes[row, col].imshow(grid, cmap="inferno", alpha=0.6, interpolation="nearest",
                                  extent=(-0.5, size[1] - 0.5, size[0] - 0.5, -0.5))
            if row == 0:
                axes[row, col].set_title(f"head {col}" if col <= heads else "rollout", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    layer_name = len(model.encoder.layers) + layer if layer < 0 else layer
    fig.suptitle(f"CLS attention over the 7x7 patches, layer {layer_name + 1} of {len(model.encoder.layers)}"
                 if size == (28, 28) and model.patch_embed.patch_size == 4 else
                 f"CLS attention over the patches, layer {layer_name + 1}", fontsize=8)
    fig.tight_layout()
    from .report import save_figure

    return save_figure(fig, path)


def attention_examples(classes, per_class=1, split="test"):
    """The first `per_class` test images of each class in `classes`: (images, labels relabelled
    0..len(classes)-1, class names)."""
    x, y = task(classes, split)
    picks = np.concatenate([np.flatnonzero(y == k)[:per_class] for k in range(len(classes))])
    return x[picks], y[picks], [FASHION_MNIST_CLASSES[c] for c in classes]


def pretrain_main(argv=None):
    """`minitl pretrain vit`: train (or load) the source ViT, report its accuracy, draw its
    attention maps."""
    parser = argparse.ArgumentParser(prog="minitl pretrain vit",
                                     description="Pretrain a small ViT on Fashion-MNIST classes 0,1,5,7,8 and cache it.")
    parser.add_argument("--epochs", type=int, default=None, help=f"source epochs (default {SOURCE_EPOCHS})")
    parser.add_argument("--fast", action="store_true", help="a tiny ViT on a small source set, for tests")
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument("--figure", default="minitl_output/vit/attention_maps.png",
                        help="where to draw the attention maps")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    state = load_pretrained_vit(fast=args.fast, epochs=args.epochs, force=args.force)
    model = source_vit(state)
    print(f"ViT source model: {weights_path(args.fast)}")
    print(f"config: {dict(state['config'])}, {model.num_parameters():,} parameters")
    print(f"source test accuracy (classes {','.join(map(str, SOURCE_CLASSES))}): {float(state['source_accuracy']):.4f}"
          f"  (trained {int(state['epochs'])} epochs in {float(state['seconds']):.1f} s wall, "
          f"{float(state['cpu_seconds']):.1f} s CPU; this call took {time.perf_counter() - start:.1f} s)")
    images, labels, names = attention_examples(SOURCE_CLASSES)
    plot_attention_maps(model, images, labels, names, args.figure)
    print(f"attention maps: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(pretrain_main())
