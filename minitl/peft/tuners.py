"""What every PEFT method shares: finding the target modules by name, the wrapper that keeps
the frozen layer as `base_layer` beside named adapters (PEFT's layout, so the parameter names
`...linear1.base_layer.weight`, `...linear1.lora_A.default.weight` match), the wrapper that
trains a full copy of a module (`modules_to_save`), and the parameter count."""
from __future__ import annotations

import copy
import re

from .. import nn


def count_trainable_parameters(model):
    """(trainable, total): how many numbers the optimizer updates, and how many the model has.
    A parameter shared by two modules (a tied embedding) counts once."""
    params = list(model.parameters())
    # BEGIN EXERCISE peft.count_trainable
    # hint: total = sum of p.numel() over params; trainable = the same sum over the p with p.requires_grad
    trainable = sum(p.numel() for p in params if p.requires_grad)
    total = sum(p.numel() for p in params)
    # END EXERCISE
    return trainable, total


def trainable_line(trainable, total):
    """PEFT's print_trainable_parameters line."""
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def name_matches(name, targets):
    """PEFT's rule: a string is a regex that must match the whole name; a list matches a name
    equal to an entry or ending in "." + an entry."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def wrapped_inside(model):
    """Names of the modules inside a PEFT wrapper (its base layer, its adapters): never targets."""
    inside = set()
    for name, module in model.named_modules():
        if isinstance(module, (TunerLayer, ModulesToSaveWrapper)):
            inside.update(f"{name}.{sub}" if name else sub for sub, _ in module.named_modules() if sub)
    return inside


def find_targets(model, targets, what="target_modules"):
    """The names of `model`'s modules that `targets` picks; an error listing every module name
    when it picks none."""
    inside = wrapped_inside(model)
    names = [name for name, _ in model.named_modules() if name and name not in inside]
    found = [name for name in names if name_matches(name, targets)]
    if not found:
        raise ValueError(f"{what} {targets!r} not found in the base model. Its modules are: {', '.join(names)}")
    return found


class TunerLayer(nn.Module):
    """A frozen `base_layer` with adapters kept in ModuleDicts keyed by adapter name (the names
    of those dicts are `adapter_layer_names`). One adapter is active at a time; with
    `disable_adapters` the layer computes the base layer alone."""

    adapter_layer_names = ()

    def __init__(self, base_layer):
        super().__init__()
        self.base_layer = base_layer
        self.active_adapter = "default"
        self.disable_adapters = False
        self.merged_adapters = []

    @property
    def merged(self):
        return bool(self.merged_adapters)

    @property
    def adapter_names(self):
        return list(getattr(self, self.adapter_layer_names[0]).keys())

    def uses_adapter(self):
        """The active adapter's name when it should run in forward, else None."""
        if self.disable_adapters or self.merged or self.active_adapter not in self.adapter_names:
            return None
        return self.active_adapter

    def set_adapter(self, adapter_name):
        """Make `adapter_name` the active one: only its parameters train."""
        self.active_adapter = adapter_name
        for layer_name in self.adapter_layer_names:
            for key, module in getattr(self, layer_name).items():
                module.requires_grad_(key == adapter_name)

    def delete_adapter(self, adapter_name):
        for layer_name in self.adapter_layer_names:
            registry = getattr(self, layer_name)
            if adapter_name in registry:
                del registry[adapter_name]


class ModulesToSaveWrapper(nn.Module):
    """A module trained in full beside the adapters (a new head): `original_module` stays
    frozen, `modules_to_save[adapter]` is the trained copy the active adapter uses."""

    def __init__(self, module_to_save, adapter_name):
        super().__init__()
        self.original_module = module_to_save
        self.modules_to_save = nn.ModuleDict()
        self.active_adapter = adapter_name
        self.disable_adapters = False
        self.update(adapter_name)

    def update(self, adapter_name):
        if adapter_name not in self.modules_to_save:
            self.modules_to_save[adapter_name] = copy.deepcopy(self.original_module).requires_grad_(True)
        self.original_module.requires_grad_(False)

    def set_adapter(self, adapter_name):
        self.active_adapter = adapter_name
        for key, module in self.modules_to_save.items():
            module.requires_grad_(key == adapter_name)

    def active_module(self):
        if self.disable_adapters or self.active_adapter not in self.modules_to_save:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    def forward(self, *args, **kwargs):
        return self.active_module()(*args, **kwargs)


def wrap_modules_to_save(model, names, adapter_name):
    """Wrap (or extend) every module that `names` picks in a ModulesToSaveWrapper."""
    for name in find_targets(model, names, "modules_to_save"):
        module = model.get_submodule(name)
        if isinstance(module, ModulesToSaveWrapper):
            module.update(adapter_name)
            module.set_adapter(module.active_adapter)
        else:
            model.set_submodule(name, ModulesToSaveWrapper(module, adapter_name))
