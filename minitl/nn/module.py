"""`Module` and `Parameter`: PyTorch's way of organising a network.

A module registers every `Parameter` and sub-module assigned to it as an attribute, so that
`parameters()`, `state_dict()`, `train()`/`eval()` and `to(device)` can walk the whole tree.
Replacing a head is just assignment: `model.fc = nn.Linear(model.fc.in_features, k)`, or, by
dotted name, `model.set_submodule("layer3.0.conv1", new_conv)` (how PEFT swaps in LoRA layers).
Forward hooks watch or change what a module computes (feature extraction, probing).
"""
from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple

from .. import backend
from ..tensor import Tensor, _as_array


class Parameter(Tensor):
    """A tensor that is a learnable weight of a module (requires_grad=True by default). Made
    from a Tensor, it shares that tensor's data and keeps its dtype; from an array or a list,
    floats become float32 as in `tl.tensor`."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        if isinstance(data, Tensor):
            super().__init__(data.data, requires_grad=requires_grad, dtype=data.dtype)
        else:
            super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(KeyError):
    """load_state_dict found keys or shapes that don't fit the model."""

    def __str__(self):  # KeyError would quote the whole message
        return self.args[0]


class RemovableHandle:
    """What `register_forward_hook` and `register_forward_pre_hook` return: `remove()` takes
    the hook off again (also on leaving a `with handle:` block)."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self.hooks, self.id = hooks, next(RemovableHandle._ids)

    def remove(self):
        self.hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _as_buffer(name, value):
    """A buffer is a Tensor (or None); a NumPy/CuPy array is wrapped, sharing its data."""
    if value is None or isinstance(value, Tensor):
        return value
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return Tensor._wrap(backend.xp_of(value).asarray(value))
    raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' (a Tensor, an array or None expected)")


class Module:
    """Base class of every layer and model."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration on assignment ---------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        if isinstance(value, Parameter):
            registry = self._parameters
        elif isinstance(value, Module):
            registry = self._modules
        elif name in self._buffers:  # assigning to a buffer's name keeps it a buffer, as in PyTorch
            registry, value = self._buffers, _as_buffer(name, value)
        else:
            registry = None
        self._unregister(name, keep=registry)
        if registry is not None:
            registry[name] = value  # a replaced entry keeps its place (Sequential's order)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._unregister(name)
        object.__delattr__(self, name)

    def _unregister(self, name, keep=None):
        for registry in (self._parameters, self._modules, self._buffers):
            if registry is not keep:
                registry.pop(name, None)
        if keep is not self._buffers:
            self._non_persistent_buffers.discard(name)

    def register_buffer(self, name, tensor, persistent=True):
        """State that moves and casts with the module but is not trained (e.g. BatchNorm's
        running mean), held as a Tensor (an array given here is wrapped, not copied).
        Persistent buffers are saved in `state_dict()`; `persistent=False` ones are not
        (e.g. a causal mask that is cheaper to rebuild than to store)."""
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"buffer name must be a non-empty string without '.', got {name!r}")
        if name in self.__dict__ and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        self._unregister(name)
        self._buffers[name] = _as_buffer(name, tensor)
        if not persistent:
            self._non_persistent_buffers.add(name)
        object.__setattr__(self, name, self._buffers[name])

    def register_parameter(self, name, param):
        setattr(self, name, param)

    def add_module(self, name, module):
        setattr(self, name, module)

    def get_submodule(self, target):
        """The sub-module at a dotted path such as "layer3.0.conv1" ("" is this module)."""
        module = self
        for depth, name in enumerate(target.split(".") if target else []):
            child = module._modules.get(name)
            if child is None:
                where = ".".join(target.split(".")[:depth]) or "the root"
                raise AttributeError(f"get_submodule('{target}'): {type(module).__name__} at {where} "
                                     f"has no sub-module '{name}'")
            module = child
        return module

    def set_submodule(self, target, module, strict=False):
        """Put `module` at a dotted path such as "layer3.0.conv1", replacing what is there.
        The parent must exist; with `strict=True` the sub-module itself must exist too."""
        if not target:
            raise ValueError("set_submodule: the target name is empty")
        if not isinstance(module, Module):
            raise ValueError(f"set_submodule: expected an nn.Module, got {type(module).__name__}")
        parent_path, _, name = target.rpartition(".")
        parent = self.get_submodule(parent_path)
        if name in parent.__dict__ and name not in parent._modules:
            raise AttributeError(f"set_submodule('{target}'): '{name}' is not an nn.Module")
        if strict and name not in parent._modules:
            raise AttributeError(f"set_submodule('{target}'): {type(parent).__name__} has no sub-module '{name}'")
        setattr(parent, name, module)

    # --- calling ----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        """forward(), with the hooks around it: each pre-hook may replace the positional
        arguments, each forward hook the output."""
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_pre_hook(self, hook):
        """Call `hook(module, args)` before every forward; a return value other than None
        replaces the positional arguments (a single value counts as a 1-tuple). Returns a
        handle whose `remove()` takes the hook off."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def register_forward_hook(self, hook):
        """Call `hook(module, args, output)` after every forward; a return value other than
        None replaces the output. Returns a handle whose `remove()` takes the hook off."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    # --- walking the tree -------------------------------------------------------------------
    def named_modules(self, prefix="", memo=None):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        for name, child in self._modules.items():
            if child is not None:
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, parameter) pairs; a parameter shared by two modules appears once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_prefix}.{name}" if module_prefix else name), param

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True):
        """(dotted name, Tensor) pairs of every buffer, persistent or not."""
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, buf in module._buffers.items():
                if buf is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), buf

    def buffers(self, recurse=True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def _named_persistent_buffers(self):
        for module_prefix, module in self.named_modules():
            for name, buf in module._buffers.items():
                if buf is not None and name not in module._non_persistent_buffers:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), buf

    def apply(self, fn):
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # --- modes and gradients ----------------------------------------------------------------
    def train(self, mode=True):
        """Training mode (True) or evaluation mode (False) for this module, then for each child
        through the child's own `train`, so a layer that overrides it (say, to keep a frozen
        BatchNorm in eval) is obeyed."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): mode must be True or False, got {mode!r}")
        object.__setattr__(self, "training", mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze (True) every parameter of this module."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad[...] = 0

    def num_parameters(self, trainable_only=False):
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # --- moving -----------------------------------------------------------------------------
    def to(self, target):
        """Move every parameter and buffer to a device ('cpu', 'cuda') or cast floats to a
        dtype; parameters and buffers stay the same Tensor objects (their data is replaced),
        so optimizers built before still hold them."""
        is_device = backend.is_device_name(target)
        for module in self.modules():
            for param in module._parameters.values():
                if param is None:
                    continue
                if is_device:
                    param.data = backend.to_device(param.data, str(target))
                    if param.grad is not None:
                        param.grad = backend.to_device(param.grad, str(target))
                elif param.data.dtype.kind == "f":
                    param.data = _as_array(param.data, target)
                    param.grad = None
            for buf in module._buffers.values():
                if buf is None:
                    continue
                if is_device:
                    buf.data = backend.to_device(buf.data, str(target))
                elif buf.data.dtype.kind == "f":
                    buf.data = _as_array(buf.data, target)
        return self

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    # --- saving and loading -----------------------------------------------------------------
    def state_dict(self):
        """Name -> NumPy array of every parameter and persistent buffer. Copies, unlike
        PyTorch's views, so a saved 'best so far' state is not changed by later training steps."""
        state = OrderedDict()
        for name, tensor in itertools.chain(self.named_parameters(), self._named_persistent_buffers()):
            state[name] = backend.to_device(tensor.data, "cpu").copy()
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from `state_dict` into this module's parameters and persistent buffers.

        Mis-shaped entries are always an error. With `strict`, so are missing and unexpected
        keys; the error lists every problem at once. Returns (missing_keys, unexpected_keys).
        """
        own = dict(itertools.chain(self.named_parameters(), self._named_persistent_buffers()))
        own_keys = set(own)
        given = {k: (v.data if isinstance(v, Tensor) else v) for k, v in state_dict.items()}
        missing = sorted(own_keys - set(given))
        unexpected = sorted(set(given) - own_keys)
        mis_shaped = []
        for key in sorted(own_keys & set(given)):
            target = own[key].data
            if tuple(target.shape) != tuple(given[key].shape):
                mis_shaped.append(f"{key}: checkpoint {tuple(given[key].shape)} vs model {tuple(target.shape)}")
        problems = []
        if mis_shaped:
            problems.append("mis-shaped keys: " + "; ".join(mis_shaped))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise StateDictError(f"error loading state dict into {type(self).__name__}:\n  " + "\n  ".join(problems))
        for key in own_keys & set(given):
            tensor = own[key]
            tensor.data = backend.xp_of(tensor.data).array(given[key], dtype=tensor.data.dtype)
        return IncompatibleKeys(missing, unexpected)

    # --- printing ---------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + "\n)"
