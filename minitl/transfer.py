"""The transfer toolkit: freezing, head replacement, feature extraction, fine-tuning, gradual
unfreezing and discriminative learning rates.

Chapter: "Transfer learning in computer vision" (the strategies and their table) and the
ULMFiT section (gradual unfreezing, discriminative learning rates eta_l = eta_L / 2.6^(L-l)).

Why freezing saves work: a Function records a graph node only when one of its inputs requires
a gradient. With the lower layers' parameters frozen and the images not requiring gradients,
the frozen part of the forward pass builds no graph at all: no saved activations, no backward.
Feature extraction goes one step further and runs the backbone once, under `no_grad`, caching
its features; the head then trains on the cached arrays alone.

Nothing here is particular to one network. A model is a stack of blocks from the input up,
head last (its `blocks()`, else its children); `head` names the output layer ("fc" for the
vision models, "decoder" for a language model, a dotted path for a nested one); `loss_fn`
is the training loss; `norm_types` are the normalisation layers whose running statistics a
frozen block must not drift from; `features`, when given, maps inputs to what the head reads.
Every training loop runs the one step of `minitl.training.train_step`.

Every strategy takes a *pretrained* model whose head was already replaced for the target task,
plus training arrays, and returns the trained model; `tl.experiments.transfer_table` runs them
side by side.
"""
from __future__ import annotations

import numpy as np

from . import nn, optim
from .data import DataLoader
from .ops import cross_entropy
from .tensor import Tensor, no_grad
from .training import train_step

# Normalisation layers with running statistics: a frozen one stays in eval mode.
# (LayerNorm keeps none, so it behaves the same in both modes.)
NORM_TYPES = (nn.BatchNorm2d, nn.BatchNorm1d)


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
    """The model's stages from the input up, head last (a model's `blocks()`, else its
    children in the order they were assigned)."""
    return list(model.blocks()) if hasattr(model, "blocks") else list(model.children())


def freeze_lower(model, depth):
    """Freeze the lowest `depth` blocks of `model` and unfreeze the rest. A parameter shared
    by a lower and an upper block (a decoder tied to the embedding) trains with the upper one."""
    blocks = blocks_of(model)
    if not 0 <= depth <= len(blocks):
        raise ValueError(f"freeze_lower: depth must lie in [0, {len(blocks)}], got {depth}")
    freeze(blocks[:depth])
    unfreeze(blocks[depth:])


def unfreeze_top(model, count):
    """Unfreeze the top `count` blocks (the head counts as one) and freeze the others: stage
    `count` of gradual unfreezing."""
    freeze_lower(model, len(blocks_of(model)) - count)


def trainable_parameters(model):
    return [p for p in model.parameters() if p.requires_grad]


def count_trainable(model):
    return sum(p.numel() for p in trainable_parameters(model))


def keep_frozen_norms_in_eval(model, norm_types=NORM_TYPES):
    """Put every normalisation layer of `norm_types` whose parameters are all frozen into eval
    mode: a frozen layer should not drift either, so it normalises with the source task's
    running statistics. Call it after `model.train()`, which switches every module to training."""
    for module in model.modules():
        params = list(module.parameters()) if isinstance(module, norm_types) else []
        if params and not any(p.requires_grad for p in params):
            module.eval()


def set_norms_eval(model, norm_types=NORM_TYPES):
    """Every normalisation layer of `norm_types` in eval mode: it normalises with the source
    task's running statistics (its gamma and beta may still train). With a handful of target
    images per batch, batch statistics are noisy and the running ones would drift from the
    source's."""
    for module in model.modules():
        if isinstance(module, norm_types):
            module.eval()


# --- the head ---------------------------------------------------------------------------------

def get_head(model, head="fc"):
    """The module at `head`, a name ("fc", "decoder") or a dotted path ("classifier.out")."""
    module = model
    for name in head.split("."):
        child = getattr(module, name, None)
        if not isinstance(child, nn.Module):
            children = ", ".join(n for n, _ in module.named_children()) or "none"
            raise AttributeError(f"{type(model).__name__} has no module {head!r} to use as the head "
                                 f"(children of {type(module).__name__}: {children}); pass head=<its output layer>")
        module = child
    return module


def set_head(model, module, head="fc"):
    """Put `module` at `head` in place of the old one (torchvision's `model.fc = ...`)."""
    *path, name = head.split(".")
    owner = get_head(model, ".".join(path)) if path else model
    get_head(owner, name)  # the old head must exist: a typo should not add a new attribute
    setattr(owner, name, module)


def replace_head(model, num_classes, head="fc"):
    """A fresh, trainable Linear head for `num_classes` classes in place of `model.<head>`,
    reading the same features (the old head's `in_features`)."""
    old = get_head(model, head)
    if not hasattr(old, "in_features"):
        raise TypeError(f"replace_head: the head {head!r} is a {type(old).__name__} without in_features; "
                        f"build the new head yourself and use set_head(model, new_head, {head!r})")
    new = nn.Linear(old.in_features, num_classes)
    set_head(model, new, head)
    return new


def discriminative_param_groups(model, lr, decay=2.6):
    """One param group per block, the head at `lr` and each block below it at the rate of the
    block above divided by `decay` (ULMFiT's eta_{l-1} = eta_l / 2.6): lower layers hold more
    general features and should move less. Frozen blocks are left out; a parameter shared by
    two blocks (a decoder tied to the embedding) goes with the upper one."""
    groups, seen = [], set()
    for depth, block in enumerate(reversed(blocks_of(model))):
        params = [p for p in trainable_parameters(block) if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            # BEGIN EXERCISE ulmfit.discriminative_lr
            # hint: eta^(l-1) = eta^l / decay: the block `depth` steps below the head (depth 0) gets lr / decay^depth; append {"params": params, "lr": ...} to groups
            groups.append({"params": params, "lr": lr / decay ** depth})
            # END EXERCISE
    return groups


def add_new_param_groups(optimizer, groups):
    """Add to `optimizer` the groups' parameters it does not hold yet (the blocks a stage of
    gradual unfreezing has just unfrozen), keeping each group's learning rate. The parameters
    it holds keep their state (Adam's moments) and their groups."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for group in groups:
        params = [p for p in group["params"] if id(p) not in held]
        if params:
            optimizer.add_param_group({**group, "params": params})


# --- training helpers -------------------------------------------------------------------------

def train_steps(model, loader, optimizer, epochs=1, steps=None, progress=False, scheduler=None,
                norm_eval=False, loss_fn=cross_entropy, norm_types=NORM_TYPES, max_grad_norm=None,
                frozen_norms_eval=True):
    """Mini-batch training (`train_step` on each batch) for `epochs` passes over `loader`, or for
    exactly `steps` optimizer steps when given (the loader restarts as often as needed).
    Frozen normalisation layers stay in eval mode (all of them with `norm_eval`); with
    `frozen_norms_eval=False` they are left in train mode, the pitfall lesson 3 measures: they
    then normalise with batch statistics and their running statistics drift although nothing
    in them "trains". `scheduler.step()`, when given, follows every step. Leaves the model in
    eval mode."""
    from tqdm.auto import tqdm

    total = steps if steps is not None else epochs * len(loader)
    done = 0
    bar = tqdm(total=total, desc="train steps", leave=False, disable=not progress, mininterval=5)
    while done < total:
        model.train()
        if frozen_norms_eval:
            keep_frozen_norms_in_eval(model, norm_types)
        if norm_eval:
            set_norms_eval(model, norm_types)
        for x, y in loader:
            train_step(model, optimizer, loss_fn, x, y, scheduler, max_grad_norm)
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
    """Class predictions (argmax over the last axis) for the array `x`, in eval mode, without
    a graph."""
    model.eval()
    out = [model(Tensor(x[i:i + batch_size])).data.argmax(axis=-1) for i in range(0, len(x), batch_size)]
    return np.concatenate(out)


def accuracy(model, x, y, batch_size=500):
    return float((predict(model, x, batch_size) == y).mean())


def _identity(x):
    return x


def feature_function(model, head="fc", features=None):
    """x -> what the head reads: `features` when given, else the model's own `features`
    method, else the model run with its head passing its input through (everything but the
    head; the model's forward must end in a call of the head)."""
    if features is not None:
        return features
    if callable(getattr(model, "features", None)):
        return model.features
    head_module = get_head(model, head)

    def without_head(x):
        # the head's forward is shadowed for this call only, instead of swapping the module in
        # the tree, so the model's structure (children order, state_dict) never changes
        head_module.forward = _identity
        try:
            return model(x)
        finally:
            del head_module.forward

    return without_head


@no_grad()
def extract_features(model, x, batch_size=500, head="fc", features=None):
    """What the head reads (see `feature_function`) for an array of inputs, batch by batch,
    in eval mode and without a graph: computed once, then reused by the head."""
    model.eval()
    body = feature_function(model, head, features)
    return np.concatenate([body(Tensor(x[i:i + batch_size])).data for i in range(0, len(x), batch_size)])


class FeatureCache:
    """Features of named input sets, computed once per backbone: `cache.get("test", x)`."""

    def __init__(self, model, head="fc", features=None):
        self.model, self.head, self.features, self.store = model, head, features, {}

    def get(self, key, x):
        if key not in self.store:
            self.store[key] = extract_features(self.model, x, head=self.head, features=self.features)
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


def train_from_scratch(model, x, y, epochs=None, lr=1e-3, batch_size=64, steps=None, loss_fn=cross_entropy):
    """The baseline: every parameter trained from its random initialisation."""
    unfreeze(model)
    loader = make_loader(x, y, batch_size)
    total = _total_steps(loader, epochs, steps)
    optimizer = optim.Adam(model.parameters(), lr=lr)
    return train_steps(model, loader, optimizer, steps=total, scheduler=_cosine(optimizer, total), loss_fn=loss_fn)


def train_head(model, x, y, epochs, lr=1e-2, batch_size=64, cache=None, name=None, head="fc",
               loss_fn=cross_entropy, features=None):
    """Train the head alone on the frozen backbone's features of `x`, computed once (cached
    under `name` when a FeatureCache is given). Leaves the whole model frozen but the head."""
    head_module = get_head(model, head)
    freeze(model)
    unfreeze(head_module)
    if cache is not None and name is not None:
        feats = cache.get(name, x)
    else:
        feats = extract_features(model, x, head=head, features=features)
    loader = make_loader(feats, y, batch_size)
    optimizer = optim.Adam(head_module.parameters(), lr=lr)
    total = _total_steps(loader, epochs, None)
    train_steps(head_module, loader, optimizer, steps=total, scheduler=_cosine(optimizer, total), loss_fn=loss_fn)
    return model


def feature_extraction(model, x, y, epochs, lr=1e-2, batch_size=64, cache=None, name=None, head="fc",
                       loss_fn=cross_entropy, features=None):
    """Frozen backbone, linear head: the features are computed once (cached under `name` when a
    FeatureCache is given) and the head trains on them alone."""
    return train_head(model, x, y, epochs, lr, batch_size, cache, name, head, loss_fn, features)


def _finetune_body(model, loader, total, lr, body_lr_ratio, freeze_bn, head, loss_fn, norm_types,
                   frozen_norms_eval=True):
    head_params = list(get_head(model, head).parameters())
    head_ids = {id(p) for p in head_params}
    body = [p for p in trainable_parameters(model) if id(p) not in head_ids]
    groups = ([{"params": body, "lr": lr * body_lr_ratio}] if body else []) + [{"params": head_params}]
    optimizer = optim.Adam(groups, lr=lr)
    return train_steps(model, loader, optimizer, steps=total, scheduler=_cosine(optimizer, total),
                       norm_eval=freeze_bn, loss_fn=loss_fn, norm_types=norm_types,
                       frozen_norms_eval=frozen_norms_eval)


def finetune(model, x, y, epochs=None, lr=1e-3, body_lr_ratio=0.1, batch_size=64, steps=None,
             head_epochs=0, head_lr=1e-2, freeze_bn=False, head="fc", loss_fn=cross_entropy,
             norm_types=NORM_TYPES, features=None):
    """Everything trains; the pretrained body with a learning rate `body_lr_ratio` times the
    head's. With `head_epochs`, the head first trains alone on cached features (LP-FT);
    `freeze_bn` keeps every normalisation layer on the source's running statistics."""
    loader = make_loader(x, y, batch_size)
    total = _total_steps(loader, epochs, steps)
    if head_epochs:
        train_head(model, x, y, head_epochs, head_lr, batch_size, head=head, loss_fn=loss_fn, features=features)
    unfreeze(model)
    return _finetune_body(model, loader, total, lr, body_lr_ratio, freeze_bn, head, loss_fn, norm_types)


def finetune_frozen_lower(model, x, y, epochs=None, frozen_blocks=3, lr=1e-3, body_lr_ratio=0.1, batch_size=64,
                          steps=None, head_epochs=0, head_lr=1e-2, freeze_bn=False, head="fc",
                          loss_fn=cross_entropy, norm_types=NORM_TYPES, features=None, frozen_norms_eval=True):
    """The lowest `frozen_blocks` blocks stay frozen (general features: edges, textures); the
    upper blocks and the head fine-tune. The frozen part runs without a graph. With every
    block below the head frozen, only the head trains, through the network. `frozen_norms_eval`
    as in `train_steps`."""
    loader = make_loader(x, y, batch_size)
    total = _total_steps(loader, epochs, steps)
    if head_epochs:
        train_head(model, x, y, head_epochs, head_lr, batch_size, head=head, loss_fn=loss_fn, features=features)
    freeze_lower(model, frozen_blocks)
    return _finetune_body(model, loader, total, lr, body_lr_ratio, freeze_bn, head, loss_fn, norm_types,
                          frozen_norms_eval)


def gradual_unfreezing(model, x, y, epochs=None, lr=1e-3, decay=2.6, batch_size=64, stages=None, steps=None,
                       head_epochs=0, head_lr=1e-2, freeze_bn=False, head="fc", loss_fn=cross_entropy,
                       norm_types=NORM_TYPES, features=None, schedule=None):
    """ULMFiT's schedule: train the head alone, then unfreeze one block deeper per stage, with
    discriminative learning rates (each block `decay` times slower than the one above). The
    optimizer steps (`steps`, or those of `epochs` epochs) are shared equally by the stages, so
    the strategy costs no more steps than plain fine-tuning. With `head_epochs`, the head-only
    stage runs on cached features (as feature extraction) and the steps go to the later stages.

    One Adam and one schedule run across the stages: each stage adds the block it unfreezes as
    a new param group at its own rate, and the blocks already training keep their moments (a
    fresh optimizer per stage would restart them from zero). The schedule is `schedule(optimizer,
    total_steps)` (ULMFiT: `optim.lr_scheduler.slanted_triangular`), by default a cosine decay
    from lr at the first stage to 0 at the end of the last."""
    stages = stages or len(blocks_of(model))
    loader = make_loader(x, y, batch_size)
    total = max(stages, _total_steps(loader, epochs, steps))
    first = 1
    if head_epochs:
        train_head(model, x, y, head_epochs, head_lr, batch_size, head=head, loss_fn=loss_fn, features=features)
        first = 2
    count = stages - first + 1
    unfreeze_top(model, first)
    optimizer = optim.Adam(discriminative_param_groups(model, lr, decay), lr=lr)
    schedule = (schedule or _cosine)(optimizer, total)
    for k, stage in enumerate(range(first, stages + 1)):
        if stage > first:
            # BEGIN EXERCISE ulmfit.gradual_unfreezing
            # hint: unfreeze_top(model, stage); add the new block's discriminative group to the SAME optimizer (add_new_param_groups), then schedule.refresh() so it starts at the current rate
            unfreeze_top(model, stage)
            add_new_param_groups(optimizer, discriminative_param_groups(model, lr, decay))
            schedule.refresh()
            # END EXERCISE
        share = total * (k + 1) // count - total * k // count
        train_steps(model, loader, optimizer, steps=share, scheduler=schedule, norm_eval=freeze_bn,
                    loss_fn=loss_fn, norm_types=norm_types)
    return model
