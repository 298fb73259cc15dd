"""The transfer toolkit: freezing, head replacement, feature extraction, fine-tuning, gradual
unfreezing and discriminative learning rates.

Chapter: "Transfer learning in computer vision" (the strategies and their table) and the
ULMFiT section (gradual unfreezing, discriminative learning rates eta_l = eta_L / 2.6^(L-l)).

Why freezing saves work: a Function records a graph node only when one of its inputs requires
a gradient. With the lower layers' parameters frozen and the images not requiring gradients,
the frozen part of the forward pass builds no graph at all: no saved activations, no backward.
Feature extraction goes one step further and runs the backbone once, under `no_grad`, caching
its features; the head then trains on the cached arrays alone.

Every strategy takes a *pretrained* model whose head `fc` was already replaced for the target
task, plus training arrays, and returns the trained model; `tl.experiments.transfer_table`
runs them side by side.
"""
from __future__ import annotations

import numpy as np

from . import nn, optim
from .data import DataLoader
from .nn.conv import BatchNorm2d
from .ops import cross_entropy
from .tensor import Tensor, no_grad


# --- freezing ---------------------------------------------------------------------------------

def _modules(modules):
    return [modules] if isinstance(modules, nn.Module) else list(modules)


def freeze(modules):
    """Stop training every parameter of `modules` (a Module or a list of them): their
    `requires_grad` becomes False, so optimizers skip them and no graph is built through them."""
    # BEGIN EXERCISE transfer.freeze
    # hint: for every module in _modules(modules), set requires_grad = False on each of its parameters()
    for module in _modules(modules):
        for p in module.parameters():
            p.requires_grad = False
    # END EXERCISE


def unfreeze(modules):
    """Train the parameters of `modules` again."""
    for module in _modules(modules):
        for p in module.parameters():
            p.requires_grad = True


def blocks_of(model):
    """The model's stages from the input up, head last (a model's `blocks()`, else its children)."""
    return list(model.blocks()) if hasattr(model, "blocks") else list(model.children())


def freeze_lower(model, depth):
    """Freeze the lowest `depth` blocks of `model` and unfreeze the rest."""
    blocks = blocks_of(model)
    if not 0 <= depth <= len(blocks):
        raise ValueError(f"freeze_lower: depth must lie in [0, {len(blocks)}], got {depth}")
    unfreeze(blocks[depth:])
    freeze(blocks[:depth])


def unfreeze_top(model, count):
    """Unfreeze the top `count` blocks (the head counts as one) and freeze the others: stage
    `count` of gradual unfreezing."""
    freeze_lower(model, len(blocks_of(model)) - count)


def trainable_parameters(model):
    return [p for p in model.parameters() if p.requires_grad]


def count_trainable(model):
    return sum(p.numel() for p in trainable_parameters(model))


def keep_frozen_batchnorm_in_eval(model):
    """Put every BatchNorm whose parameters are frozen into eval mode: a frozen layer should
    not drift either, so it normalises with the source task's running statistics. Call it
    after `model.train()`, which switches every module to training."""
    for module in model.modules():
        if isinstance(module, BatchNorm2d) and module.weight is not None and not module.weight.requires_grad:
            module.eval()


def replace_head(model, num_classes, name="fc"):
    """A fresh, trainable Linear head for `num_classes` classes in place of `model.<name>`."""
    old = getattr(model, name)
    head = nn.Linear(old.in_features, num_classes)
    setattr(model, name, head)
    return head


def discriminative_param_groups(model, lr, decay=2.6):
    """One param group per block, the head at `lr` and each block below it at the rate of the
    block above divided by `decay` (ULMFiT's eta_{l-1} = eta_l / 2.6): lower layers hold more
    general features and should move less. Frozen blocks are left out."""
    groups = []
    for depth, block in enumerate(reversed(blocks_of(model))):
        params = trainable_parameters(block)
        if params:
            groups.append({"params": params, "lr": lr / decay ** depth})
    return groups


# --- training helpers -------------------------------------------------------------------------

def train_steps(model, loader, optimizer, epochs=1, steps=None, progress=False):
    """Plain mini-batch training with cross-entropy for `epochs` passes over `loader`, or for
    exactly `steps` optimizer steps when given (the loader restarts as often as needed).
    Frozen BatchNorms stay in eval mode."""
    from tqdm.auto import tqdm

    total = steps if steps is not None else epochs * len(loader)
    done = 0
    bar = tqdm(total=total, desc="train steps", leave=False, disable=not progress, mininterval=5)
    while done < total:
        model.train()
        keep_frozen_batchnorm_in_eval(model)
        for x, y in loader:
            loss = cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            bar.update()
            if done == total:
                break
    bar.close()
    model.eval()
    return model


def make_loader(x, y, batch_size, shuffle=True):
    return DataLoader((x, y), batch_size=batch_size, shuffle=shuffle)


@no_grad()
def predict(model, x, batch_size=500):
    """Class predictions for the array `x`, in eval mode, without a graph."""
    model.eval()
    out = [model(Tensor(x[i:i + batch_size])).data.argmax(axis=1) for i in range(0, len(x), batch_size)]
    return np.concatenate(out)


def accuracy(model, x, y, batch_size=500):
    return float((predict(model, x, batch_size) == y).mean())


@no_grad()
def extract_features(model, x, batch_size=500):
    """The backbone's features `model.features(x)` of an array of images, batch by batch,
    in eval mode and without a graph: computed once, then reused by the linear head."""
    model.eval()
    return np.concatenate([model.features(Tensor(x[i:i + batch_size])).data for i in range(0, len(x), batch_size)])


class FeatureCache:
    """Features of named image sets, computed once per backbone: `cache.get("test", x)`."""

    def __init__(self, model):
        self.model, self.store = model, {}

    def get(self, key, x):
        if key not in self.store:
            self.store[key] = extract_features(self.model, x)
        return self.store[key]


# --- the strategies ---------------------------------------------------------------------------
# Each returns the trained model. `model` is pretrained, its head already replaced.

def train_from_scratch(model, x, y, epochs, lr=1e-3, batch_size=64):
    """The baseline: every parameter trained from its random initialisation."""
    unfreeze(model)
    return train_steps(model, make_loader(x, y, batch_size), optim.Adam(model.parameters(), lr=lr), epochs)


def feature_extraction(model, x, y, epochs, lr=1e-2, batch_size=64, cache=None, name=None):
    """Frozen backbone, linear head: the features are computed once (cached under `name` when a
    FeatureCache is given) and the head `model.fc` trains on them alone."""
    freeze(model)
    unfreeze(model.fc)
    feats = cache.get(name, x) if cache is not None and name is not None else extract_features(model, x)
    head = model.fc
    optimizer = optim.Adam(head.parameters(), lr=lr)
    train_steps(head, make_loader(feats, y, batch_size), optimizer, epochs)
    return model


def finetune(model, x, y, epochs, lr=1e-3, body_lr_ratio=0.1, batch_size=64):
    """Everything trains; the pretrained body with a learning rate `body_lr_ratio` times the
    new head's, so that the head's large early errors do not wreck the pretrained weights."""
    unfreeze(model)
    head_ids = {id(p) for p in model.fc.parameters()}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    optimizer = optim.Adam([{"params": body, "lr": lr * body_lr_ratio}, {"params": model.fc.parameters()}], lr=lr)
    return train_steps(model, make_loader(x, y, batch_size), optimizer, epochs)


def finetune_frozen_lower(model, x, y, epochs, frozen_blocks=3, lr=1e-3, body_lr_ratio=0.1, batch_size=64):
    """The lowest `frozen_blocks` blocks stay frozen (general features: edges, textures); the
    upper blocks and the head fine-tune. The frozen part runs without a graph."""
    freeze_lower(model, frozen_blocks)
    head_ids = {id(p) for p in model.fc.parameters()}
    body = [p for p in trainable_parameters(model) if id(p) not in head_ids]
    optimizer = optim.Adam([{"params": body, "lr": lr * body_lr_ratio}, {"params": model.fc.parameters()}], lr=lr)
    return train_steps(model, make_loader(x, y, batch_size), optimizer, epochs)


def gradual_unfreezing(model, x, y, epochs, lr=1e-3, decay=2.6, batch_size=64, stages=None):
    """ULMFiT's schedule: train the head alone, then unfreeze one block deeper per stage, with
    discriminative learning rates (each block `decay` times slower than the one above). The
    optimizer steps of `epochs` epochs are shared equally by the stages, so the strategy costs
    no more steps than plain fine-tuning."""
    stages = stages or len(blocks_of(model))
    loader = make_loader(x, y, batch_size)
    steps = max(stages, epochs * len(loader))
    for stage in range(1, stages + 1):
        unfreeze_top(model, stage)
        optimizer = optim.Adam(discriminative_param_groups(model, lr, decay), lr=lr)
        share = steps * stage // stages - steps * (stage - 1) // stages
        train_steps(model, loader, optimizer, steps=share)
    return model
