"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), with PyTorch's update rule.

Adam keeps running means of the gradient (m) and of its square (v), corrects their bias
toward zero in early steps, and steps by lr * m_hat / (sqrt(v_hat) + eps). AdamW applies
weight decay directly to the weights instead of adding it to the gradient, which is what
fine-tuning recipes (BERT, ViT) use. The arithmetic is in place to avoid temporaries.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import xp_of
from .optimizer import Optimizer


class Adam(Optimizer):
    decoupled_weight_decay = False
    CHUNK = 65536  # elements per slice of the in-place update (256 KiB of float32; measured best)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: lr, eps and weight_decay must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{type(self).__name__}: betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self._scratch = None

    def step(self):
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None or not p.requires_grad:
                    continue
                grad = p.grad
                if wd and self.decoupled_weight_decay:
                    p.data *= 1 - lr * wd
                elif wd:
                    grad = grad + wd * p.data
                state = self._state_for(p)
                if not state:
                    xp = xp_of(p.data)
                    state["step"] = 0
                    state["exp_avg"] = xp.zeros_like(p.data)
                    state["exp_avg_sq"] = xp.zeros_like(p.data)
                state["step"] += 1
                if not p.data.flags.c_contiguous:  # the update works on flat views of p.data
                    p.data = xp_of(p.data).ascontiguousarray(p.data)
                self._update_in_chunks(p.data, grad, state, lr, beta1, beta2, eps)

    def _update_in_chunks(self, param, grad, state, lr, beta1, beta2, eps):
        """Run `adam_update_` over slices of CHUNK elements: the five arrays of a slice stay
        in the CPU cache across the update's dozen passes, and the scratch buffer is reused
        instead of allocating a temporary per pass (about 1.7x faster on an MLP than plain
        NumPy expressions)."""
        xp = xp_of(param)
        flat = [a.reshape(-1) for a in (param, grad, state["exp_avg"], state["exp_avg_sq"])]
        n = flat[0].size
        chunk = n if xp is not np else self.CHUNK
        scratch = self._scratch
        if scratch is None or scratch.dtype != param.dtype or xp_of(scratch) is not xp or scratch.size < min(n, chunk):
            scratch = self._scratch = xp.empty(max(min(n, chunk), 1), dtype=param.dtype)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            p, g, m, v = (a[start:stop] for a in flat)
            adam_update_(p, g, m, v, scratch[:stop - start], state["step"], lr, beta1, beta2, eps)


def adam_update_(p, g, m, v, scratch, step, lr, beta1, beta2, eps):
    """One Adam step, in place on the arrays p (parameter), m and v (moment estimates):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    xp = xp_of(p)
    t = scratch
    # BEGIN EXERCISE optim.adam
    # hint: update m and v in place (m = beta1 m + (1 - beta1) g, v likewise with g*g), then p -= lr / (1 - beta1**step) * m / (sqrt(v) / sqrt(1 - beta2**step) + eps); `scratch` is a spare array of the same size for temporaries
    m *= beta1
    xp.multiply(g, 1 - beta1, out=t)
    m += t
    v *= beta2
    xp.multiply(g, g, out=t)
    t *= 1 - beta2
    v += t
    # m_hat / (sqrt(v_hat) + eps) with both bias corrections folded into two scalars, which
    # saves a pass over the arrays: = sqrt(bc2) / bc1 * m / (sqrt(v) + eps * sqrt(bc2))
    root_bc2 = math.sqrt(1 - beta2 ** step)
    xp.sqrt(v, out=t)
    t += eps * root_bc2
    xp.divide(m, t, out=t)
    t *= lr * root_bc2 / (1 - beta1 ** step)
    p -= t
    # END EXERCISE


class AdamW(Adam):
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
