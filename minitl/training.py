"""Training: `train_step`, the one step of gradient descent every loop here runs; `fit`, which
runs epochs of it with a tqdm progress bar and records a history of loss and accuracy; and
`evaluate`, which measures a model on a loader without building a graph."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .nn.utils import clip_grad_norm_
from .ops import cross_entropy
from .tensor import no_grad


@dataclass
class History:
    """Per-epoch numbers: train_loss, train_acc, val_loss, val_acc, seconds."""
    epochs: list = field(default_factory=list)

    def append(self, **record):
        self.epochs.append(record)

    def __getitem__(self, key):
        return [e.get(key) for e in self.epochs]

    def __len__(self):
        return len(self.epochs)

    def last(self):
        return self.epochs[-1] if self.epochs else {}


def train_step(model, optimizer, loss_fn, x, y, scheduler=None, max_grad_norm=None):
    """One step of mini-batch gradient descent on the batch (x, y), the loop every trainer
    here runs (`fit`, `transfer.train_steps`, the benchmarks' `training_step`):

        logits = model(x);  loss = loss_fn(logits, y)      forward
        g = dloss/dtheta                                   zero_grad, backward
        g <- g * min(1, max_grad_norm / ||g||)             optional clipping (RNNs, LMs)
        theta <- optimizer's update(theta, g)              step
        lr <- schedule(t + 1)                              scheduler.step(), per step

    Returns (loss, logits), cut from the graph; `loss.item()` is the loss as a number. Only
    PyTorch's surface is used without clipping, so a torch model and optimizer run it too."""
    logits = model(x)
    loss = loss_fn(logits, y)
    optimizer.zero_grad()
    loss.backward()
    if max_grad_norm is not None:
        clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach(), logits.detach()


def training_step(model, optimizer, loss_fn, x, y):
    """`train_step` on a fixed batch as a closure without arguments: the benchmarks build
    minitl's step and PyTorch's with this same function and time the same lines."""
    def step():
        train_step(model, optimizer, loss_fn, x, y)

    return step


def _correct(logits, target):
    return int((logits.data.argmax(axis=-1) == target.data).sum())


def evaluate(model, loader, loss_fn=cross_entropy):
    """(mean loss, accuracy) of `model` over `loader`, in eval mode, without a graph."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with no_grad():
        for x, y in loader:
            logits = model(x)
            total_loss += float(loss_fn(logits, y).item()) * len(y)
            correct += _correct(logits, y)
            count += len(y)
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate: the loader yielded no examples")
    return total_loss / count, correct / count


def fit(model, train_loader, optimizer, epochs=1, loss_fn=cross_entropy, val_loader=None,
        scheduler=None, progress=True, desc="train", max_grad_norm=None):
    """Train `model` for `epochs`; returns a History. `scheduler.step()` runs after every
    optimizer step (schedules here are per step, as transformers and ULMFiT use them)."""
    from tqdm.auto import tqdm

    history = History()
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        total_loss, correct, count = 0.0, 0, 0
        bar = tqdm(train_loader, desc=f"{desc} epoch {epoch}/{epochs}", leave=False,
                   disable=None if progress else True)  # None: no bar when output is not a terminal
        for x, y in bar:
            loss, logits = train_step(model, optimizer, loss_fn, x, y, scheduler, max_grad_norm)
            loss_value = float(loss.item())
            if not np.isfinite(loss_value):
                raise FloatingPointError(f"fit: the loss became {loss_value} in epoch {epoch}; lower the learning rate")
            total_loss += loss_value * len(y)
            correct += _correct(logits, y)
            count += len(y)
            bar.set_postfix(loss=f"{total_loss / count:.4f}", acc=f"{correct / count:.3f}")
        record = dict(epoch=epoch, train_loss=total_loss / count, train_acc=correct / count)
        if val_loader is not None:
            record["val_loss"], record["val_acc"] = evaluate(model, val_loader, loss_fn)
        record["seconds"] = time.perf_counter() - start
        history.append(**record)
        if progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch")
            tqdm.write(f"{desc} epoch {epoch}/{epochs}: {shown}")
    return history
