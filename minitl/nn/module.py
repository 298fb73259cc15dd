"""`Module` and `Parameter`: PyTorch's way of organising a network.

A module registers every `Parameter` and sub-module assigned to it as an attribute, so that
`parameters()`, `state_dict()`, `train()`/`eval()` and `to(device)` can walk the whole tree.
Replacing a head is just assignment: `model.fc = nn.Linear(model.fc.in_features, k)`.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

from .. import backend
from ..tensor import Tensor, _as_array


class Parameter(Tensor):
    """A tensor that is a learnable weight of a module (requires_grad=True by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDictError(KeyError):
    """load_state_dict found keys or shapes that don't fit the model."""

    def __str__(self):  # KeyError would quote the whole message
        return self.args[0]


class Module:
    """Base class of every layer and model."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration on assignment ---------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self.__dict__.get("_buffer_names", ()):
            self._buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._modules, self._buffers):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """State that is saved and moved with the module but not trained (e.g. BatchNorm's
        running mean). Stored as a plain array."""
        names = self.__dict__.setdefault("_buffer_names", set())
        names.add(name)
        if isinstance(array, Tensor):
            array = array.data
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def register_parameter(self, name, param):
        setattr(self, name, param)

    def add_module(self, name, module):
        setattr(self, name, module)

    # --- calling ----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

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

    def named_buffers(self, prefix=""):
        for module_prefix, module in self.named_modules(prefix):
            for name, buf in module._buffers.items():
                if buf is not None:
                    yield (f"{module_prefix}.{name}" if module_prefix else name), buf

    def buffers(self):
        for _, buf in self.named_buffers():
            yield buf

    def apply(self, fn):
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # --- modes and gradients ----------------------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
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
        dtype; parameters stay the same objects, so optimizers built before still hold them."""
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
            for name, buf in list(module._buffers.items()):
                if buf is None:
                    continue
                if is_device:
                    buf = backend.to_device(buf, str(target))
                elif buf.dtype.kind == "f":
                    buf = buf.astype(target)
                module._buffers[name] = buf
                object.__setattr__(module, name, buf)
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
        """Name -> NumPy array of every parameter and buffer. Copies, unlike PyTorch's views,
        so a saved 'best so far' state is not changed by later training steps."""
        state = OrderedDict()
        for name, param in self.named_parameters():
            state[name] = backend.to_device(param.data, "cpu").copy()
        for name, buf in self.named_buffers():
            state[name] = backend.to_device(buf, "cpu").copy()
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from `state_dict` into this module's parameters and buffers.

        Mis-shaped entries are always an error. With `strict`, so are missing and unexpected
        keys; the error lists every problem at once. Returns (missing_keys, unexpected_keys).
        """
        own_params = dict(self.named_parameters())
        own_buffers = {}
        for module_prefix, module in self.named_modules():
            for name in module._buffers:
                own_buffers[f"{module_prefix}.{name}" if module_prefix else name] = (module, name)
        own_keys = set(own_params) | set(own_buffers)
        given = {k: (v.data if isinstance(v, Tensor) else v) for k, v in state_dict.items()}
        missing = sorted(own_keys - set(given))
        unexpected = sorted(set(given) - own_keys)
        mis_shaped = []
        for key in sorted(own_keys & set(given)):
            target = own_params[key].data if key in own_params else getattr(*own_buffers[key])
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
            if key in own_params:
                param = own_params[key]
                xp = backend.xp_of(param.data)
                param.data = xp.asarray(given[key], dtype=param.data.dtype).copy()
            else:
                module, name = own_buffers[key]
                old = getattr(module, name)
                xp = backend.xp_of(old)
                new = xp.asarray(given[key], dtype=old.dtype).copy()
                module._buffers[name] = new
                object.__setattr__(module, name, new)
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
