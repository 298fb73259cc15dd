"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), with PyTorch's update rule.

Chapter: the optimizer of every fine-tuning recipe (BERT, ViT, ULMFiT's successors).

Adam keeps running means of the gradient (m) and of its square (v), corrects their bias toward
zero in the early steps, and steps each weight by its own scale:

    m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
    m_hat = m / (1 - b1^t)           v_hat = v / (1 - b2^t)
    p = p - lr * m_hat / (sqrt(v_hat) + eps)                                      (eq. Adam)

Adam's weight decay adds wd * p to the gradient (an L2 penalty); AdamW instead decays the
weights directly, p = p * (1 - lr * wd), which is what fine-tuning recipes use. `adam_update`
below is eq. Adam as written; with `tl.fastpath.enabled()` the step runs the same update in
`minitl/fastpath/adam.py` (in place, in cache-sized slices, on threads).
"""
from __future__ import annotations

from .. import fastpath
from ..backend import xp_of
from .optimizer import Optimizer


def adam_update(p, g, m, v, t, lr, beta1, beta2, eps):
    """Eq. Adam for one parameter at step t (1, 2, ...), in place on the arrays p, m and v."""
    xp = xp_of(p)
    # BEGIN EXERCISE optim.adam
    # hint: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2 (in place: m[...] = ...); m_hat = m / (1 - b1**t), v_hat likewise; p -= lr * m_hat / (sqrt(v_hat) + eps)
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    p -= lr * m_hat / (xp.sqrt(v_hat) + eps)
    # END EXERCISE


class Adam(Optimizer):
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: lr, eps and weight_decay must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def step(self):
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            updates = []  # (parameter, gradient, state) of each parameter that has a gradient
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                grad = p.grad
                if wd and self.decoupled_weight_decay:
                    p.data *= 1 - lr * wd  # AdamW: decay the weights themselves
                elif wd:
                    grad = grad + wd * p.data  # Adam: an L2 penalty's gradient
                state = self._state_for(p)
                if not state:
                    xp = xp_of(p.data)
                    state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
                state["step"] += 1
                updates.append((p, grad, state))
            if fastpath.enabled():
                fastpath.adam.adam_update_all(updates, lr, beta1, beta2, eps)
            else:
                for p, grad, state in updates:
                    adam_update(p.data, grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                                lr, beta1, beta2, eps)


class AdamW(Adam):
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
