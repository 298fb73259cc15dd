"""The optimizer base: parameter groups, zero_grad, and saving/loading optimizer state.

Every optimizer takes either an iterable of parameters or a list of *parameter groups*,
dicts like `{"params": model.fc.parameters(), "lr": 1e-3}`. Each group can override any
hyper-parameter; this is how discriminative learning rates (ULMFiT) and "small lr for the
backbone, larger for the head" fine-tuning are written.
"""
from __future__ import annotations

from ..backend import to_device, xp_of
from ..tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}  # id(param) -> dict of per-parameter state (momentum buffers, ...)
        self.param_groups = []
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize tensors, got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("a parameter appears in more than one parameter group")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def step(self):
        raise NotImplementedError

    def _state_for(self, p):
        return self.state.setdefault(id(p), {})

    # --- checkpoints: parameters are named by their position across the groups -------------
    def state_dict(self):
        index = {}
        groups = []
        for group in self.param_groups:
            entry = {k: v for k, v in group.items() if k != "params"}
            entry["params"] = []
            for p in group["params"]:
                index[id(p)] = len(index)
                entry["params"].append(index[id(p)])
            groups.append(entry)
        state = {}
        for pid, values in self.state.items():
            if pid in index:
                state[str(index[pid])] = {k: (to_device(v, "cpu").copy() if hasattr(v, "shape") else v)
                                          for k, v in values.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"optimizer state has {len(groups)} parameter groups, this optimizer {len(self.param_groups)}")
        params = [p for g in self.param_groups for p in g["params"]]
        for saved, group in zip(groups, self.param_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError("optimizer state and optimizer disagree on the size of a parameter group")
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for key, values in state_dict["state"].items():
            p = params[int(key)]
            xp = xp_of(p.data)
            self.state[id(p)] = {k: (xp.asarray(v).copy() if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0 else
                                     (v.item() if hasattr(v, "item") else v))
                                 for k, v in values.items()}

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} tensors, {settings}")
        return "\n".join(lines + [")"])
