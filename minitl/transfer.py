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

def train_steps(model, loader, optimizer, epochs=1, steps=None, progress=False, scheduler=None,
                batchnorm_eval=False):
    """Plain mini-batch training with cross-entropy for `epochs` passes over `loader`, or for
    exactly `steps` optimizer steps when given (the loader restarts as often as needed).
    Frozen BatchNorms stay in eval mode (all of them with `batchnorm_eval`). `scheduler.step()`,
    when given, follows every step."""
    from tqdm.auto import tqdm

    total = steps if steps is not None else epochs * len(loader)
    done = 0
    bar = tqdm(total=total, desc="train steps", leave=False, disable=not progress, mininterval=5)
    while done < total:
        model.train()
        keep_frozen_batchnorm_in_eval(model)
        if batchnorm_eval:
            set_batchnorm_eval(model)
        for x, y in loader:
            loss = cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
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
#
# The budget: every strategy that trains the network gets the same number of optimizer steps
# on it (`steps`, or `epochs` passes over the data), with the same Adam and the same cosine
# decay of the learning rate. What differs is what trains, and at which rate. A linear head on
# cached features costs next to nothing (no network pass), so feature extraction trains its
# head longer, and the fine-tuning recipes start from such a trained head ("LP-FT": linear
# probe, then fine-tune; Kumar et al. 2022): a random head's large early gradients would
# otherwise flow into, and wreck, the pretrained features.

def _total_steps(loader, epochs, steps):
    return steps if steps is not None else max(1, (epochs or 1) * len(loader))


def _cosine(optimizer, total):
    """The same schedule for every strategy: lr decays along half a cosine to zero."""
    return optim.lr_scheduler.warmup_cosine(optimizer, 0, max(1, total))


def set_batchnorm_eval(model):
    """Every BatchNorm of `model` in eval mode: it normalises with the source task's running
    statistics (its gamma and beta may still train). With a handful of target images per
    batch, batch statistics are noisy and the running ones would drift from the source's."""
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.eval()


def train_from_scratch(model, x, y, epochs=None, lr=1e-3, batch_size=64, steps=None):
    """The baseline: every parameter trained from its random initialisation."""
    unfreeze(model)
    loader = make_loader(x, y, batch_size)
    total = _total_steps(loader, epochs, steps)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    return train_steps(model, loader, optimizer, steps=total, scheduler=_cosine(optimizer, total))


def train_head(model, x, y, epochs, lr=1e-2, batch_size=64, cache=None, name=None):
    """Train `model.fc` alone on the frozen backbone's features of `x`, computed once (cached
    under `name` when a FeatureCache is given). Leaves the whole model frozen but the head."""
    freeze(model)
    unfreeze(model.fc)
    feats = cache.get(name, x) if cache is not None and name is not None else extract_features(model, x)
    head = model.fc
    loader = make_loader(feats, y, batch_size)
    optimizer = optim.Adam(head.parameters(), lr=lr)
    total = _total_steps(loader, epochs, None)
    train_steps(head, loader, optimizer, steps=total, scheduler=_cosine(optimizer, total))
    return model


def feature_extraction(model, x, y, epochs, lr=1e-2, batch_size=64, cache=None, name=None):
    """Frozen backbone, linear head: the features are computed once (cached under `name` when a
    FeatureCache is given) and the head `model.fc` trains on them alone."""
    return train_head(model, x, y, epochs, lr, batch_size, cache, name)


def _finetune_body(model, loader, total, lr, body_lr_ratio, freeze_bn):
    head_ids = {id(p) for p in model.fc.parameters()}
    body = [p for p in trainable_parameters(model) if id(p) not in head_ids]
    optimizer = optim.Adam([{"params": body, "lr": lr * body_lr_ratio}, {"params": model.fc.parameters()}], lr=lr)
    return train_steps(model, loader, optimizer, steps=total, scheduler=_cosine(optimizer, total),
                       batchnorm_eval=freeze_bn)


def finetune(model, x, y, epochs=None, lr=1e-3, body_lr_ratio=0.1, batch_size=64, steps=None,
             head_epochs=0, head_lr=1e-2, freeze_bn=False):
    """Everything trains; the pretrained body with a learning rate `body_lr_ratio` times the
    head's. With `head_epochs`, the head first trains alone on cached features (LP-FT);
    `freeze_bn` keeps every BatchNorm on the source's running statistics."""
    loader = make_loader(x, y, batch_size)
    total = _total_steps(loader, epochs, steps)
    if head_epochs:
        train_head(model, x, y, head_epochs, head_lr, batch_size)
    unfreeze(model)
    return _finetune_body(model, loader, total, lr, body_lr_ratio, freeze_bn)


def finetune_frozen_lower(model, x, y, epochs=None, frozen_blocks=3, lr=1e-3, body_lr_ratio=0.1, batch_size=64,
                          steps=None, head_epochs=0, head_lr=1e-2, freeze_bn=False):
    """The lowest `frozen_blocks` blocks stay frozen (general features: edges, textures); the
    upper blocks and the head fine-tune. The frozen part runs without a graph."""
    loader = make_loader(x, y, batch_size)
    total = _total_steps(loader, epochs, steps)
    if head_epochs:
        train_head(model, x, y, head_epochs, head_lr, batch_size)
    freeze_lower(model, frozen_blocks)
    return _finetune_body(model, loader, total, lr, body_lr_ratio, freeze_bn)


def gradual_unfreezing(model, x, y, epochs=None, lr=1e-3, decay=2.6, batch_size=64, stages=None, steps=None,
                       head_epochs=0, head_lr=1e-2, freeze_bn=False):
    """ULMFiT's schedule: train the head alone, then unfreeze one block deeper per stage, with
    discriminative learning rates (each block `decay` times slower than the one above). The
    optimizer steps (`steps`, or those of `epochs` epochs) are shared equally by the stages, so
    the strategy costs no more steps than plain fine-tuning. With `head_epochs`, the head-only
    stage runs on cached features (as feature extraction) and the steps go to the later stages."""
    stages = stages or len(blocks_of(model))
    loader = make_loader(x, y, batch_size)
    total = max(stages, _total_steps(loader, epochs, steps))
    first = 1
    if head_epochs:
        train_head(model, x, y, head_epochs, head_lr, batch_size)
        first = 2
    count = stages - first + 1
    for k, stage in enumerate(range(first, stages + 1)):
        unfreeze_top(model, stage)
        optimizer = optim.Adam(discriminative_param_groups(model, lr, decay), lr=lr)
        share = total * (k + 1) // count - total * k // count
        # the rate decays across the stages as one cosine, from lr at the start to 0 at the end
        start = total * k // count
        schedule = optim.lr_scheduler.LambdaLR(
            optimizer, lambda step, start=start: optim.lr_scheduler.warmup_cosine_factor(start + step, 0, total))
        train_steps(model, loader, optimizer, steps=share, scheduler=schedule, batchnorm_eval=freeze_bn)
    return model
