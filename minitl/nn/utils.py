"""Helpers for training loops."""
from __future__ import annotations

import math

from ..backend import xp_of


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale all gradients together so their joint norm is at most `max_norm`; returns the
    norm before clipping. Keeps one bad batch from throwing a model far off (RNNs, LMs)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = max(float(abs(g).max()) for g in grads)
    else:
        total = float(sum(float((xp_of(g).abs(g) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type))
    if not math.isfinite(total):
        raise FloatingPointError(f"clip_grad_norm_: the gradient norm is {total}; a loss or gradient became inf/nan")
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads:
            g *= g.dtype.type(scale)
    return total
