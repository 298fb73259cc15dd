"""Stochastic gradient descent with momentum (heavy-ball or Nesterov) and weight decay,
with PyTorch's update rule."""
from __future__ import annotations

from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0 (got {lr}, {momentum}, {weight_decay})")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def step(self):
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                d_p = p.grad
                if wd:
                    d_p = d_p + wd * p.data
                # BEGIN EXERCISE optim.sgd_momentum
                # hint: the buffer starts as a copy of d_p, then buf = momentum * buf + (1 - dampening) * d_p; Nesterov steps along d_p + momentum * buf, plain momentum along buf
                if momentum:
                    state = self._state_for(p)
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d_p.copy()
                    else:
                        buf *= momentum
                        buf += (1 - group["dampening"]) * d_p
                    d_p = d_p + momentum * buf if group["nesterov"] else buf
                p.data -= lr * d_p
                # END EXERCISE
