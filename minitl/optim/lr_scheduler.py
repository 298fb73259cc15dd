"""Learning-rate schedules. A scheduler sets each group's `lr` from its initial value and the
step count; call `scheduler.step()` once per optimizer step.

- `LambdaLR`: lr = initial_lr * f(step), any f (one per group if you like); a group added to
  the optimizer later (gradual unfreezing) joins a single f's schedule at the current step;
- `warmup_cosine`: linear warm-up, then half a cosine down to `min_ratio` (transformers);
- `slanted_triangular`: ULMFiT's short linear rise and long linear decay (Howard & Ruder 2018).
"""
from __future__ import annotations

import math


class LambdaLR:
    def __init__(self, optimizer, lr_lambda):
        self.optimizer = optimizer
        groups = optimizer.param_groups
        lambdas = lr_lambda if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * len(groups)
        if len(lambdas) != len(groups):
            raise ValueError(f"LambdaLR: {len(lambdas)} schedules for {len(groups)} parameter groups")
        self._shared_lambda = None if isinstance(lr_lambda, (list, tuple)) else lr_lambda
        self.lr_lambdas = list(lambdas)
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in groups]
        self.last_step = 0
        self.refresh()

    def refresh(self):
        """Set every group's lr for the current step. A group added to the optimizer since
        (gradual unfreezing adds one per stage) joins the schedule here, its lr as its
        initial_lr, with the same multiplier as the others. `step()` calls it; call it right
        after `optimizer.add_param_group` so the new group's first step follows the schedule."""
        for group in self.optimizer.param_groups[len(self.base_lrs):]:
            if self._shared_lambda is None:
                raise ValueError("LambdaLR: a parameter group was added after the schedule was made with one "
                                 "function per group; give a single function to schedule groups added later")
            group.setdefault("initial_lr", group["lr"])
            self.base_lrs.append(group["initial_lr"])
            self.lr_lambdas.append(self._shared_lambda)
        for group, base, fn in zip(self.optimizer.param_groups, self.base_lrs, self.lr_lambdas):
            group["lr"] = base * fn(self.last_step)

    def step(self):
        self.last_step += 1
        self.refresh()

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_step = int(state["last_step"])
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        if self._shared_lambda is not None:  # groups added after construction were saved too
            self.lr_lambdas = [self._shared_lambda] * len(self.base_lrs)
        self.refresh()


def warmup_cosine_factor(step, warmup_steps, total_steps, min_ratio=0.0):
    """The multiplier at `step`: rises linearly 0 -> 1 over warm-up, then follows half a
    cosine from 1 down to `min_ratio` at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer, warmup_steps, total_steps, min_ratio=0.0):
    if total_steps <= 0 or warmup_steps < 0 or warmup_steps > total_steps:
        raise ValueError(f"warmup_cosine: need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps})")
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps, min_ratio))


def slanted_triangular_factor(step, total_steps, cut_frac=0.1, ratio=32):
    """ULMFiT's STLR (Howard & Ruder 2018, eq. 3) as a fraction of the peak rate:
    cut = T * cut_frac; p = t / cut before it, 1 - (t - cut) / (cut (1/cut_frac - 1)) after;
    lr = lr_max (1 + p (ratio - 1)) / ratio."""
    # BEGIN EXERCISE ulmfit.slanted_triangular
    # hint: cut = max(1, floor(T cut_frac)); p = t / cut if t < cut, else 1 - (t - cut) / (cut (1/cut_frac - 1)), not below 0; return (1 + p (ratio - 1)) / ratio
    cut = max(1, math.floor(total_steps * cut_frac))
    if step < cut:
        p = step / cut
    else:
        p = max(0.0, 1 - (step - cut) / (cut * (1 / cut_frac - 1)))
    return (1 + p * (ratio - 1)) / ratio
    # END EXERCISE


def slanted_triangular(optimizer, total_steps, cut_frac=0.1, ratio=32):
    if not 0 < cut_frac < 1:
        raise ValueError(f"slanted_triangular: cut_frac must lie in (0, 1), got {cut_frac}")
    return LambdaLR(optimizer, lambda step: slanted_triangular_factor(step, total_steps, cut_frac, ratio))
