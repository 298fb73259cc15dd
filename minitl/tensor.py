"""The autograd engine: `Tensor`, `Function` and reverse-mode differentiation.

Every differentiable op is a `Function` subclass with a `forward(ctx, *arrays)` that computes on
plain arrays and a `backward(ctx, grad)` that returns one gradient per tensor input. Calling
`Op.apply(...)` runs forward and, when gradients are wanted, records the op as the output's
creator. `out.backward()` then walks the recorded graph in reverse topological order — built
iteratively, so the deep graphs of an LSTM unrolled over a long sequence can't overflow
Python's recursion limit — and adds each contribution into the inputs' gradients. As in
PyTorch, backward then frees what the graph saved, unless asked to `retain_graph`.

Chapter: the machinery under everything; lesson 1 builds it from a scalar up.
"""
from __future__ import annotations

import functools

import numpy as np

from . import backend

_grad_enabled = True


def is_grad_enabled() -> bool:
    return _grad_enabled


class _GradMode:
    """A context manager (and decorator) that sets graph recording to `self.enabled` inside a
    `with` block or a decorated function, and restores the previous setting afterwards."""

    enabled: bool

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = self.enabled

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Turns graph recording off: inference, optimizer updates and frozen backbones run
    without building a graph. `with tl.no_grad():` or `@tl.no_grad()`."""

    enabled = False


class enable_grad(_GradMode):
    """Turns graph recording back on, e.g. inside a `no_grad` block."""

    enabled = True


# ---------------------------------------------------------------------------------------------
# Function: one node of the graph
# ---------------------------------------------------------------------------------------------

class Function:
    """Base of every differentiable op; an instance is the `ctx` of one application.

    Subclasses write `forward(ctx, *args, **kwargs)` over arrays and `backward(ctx, grad)`
    returning a gradient (or None) for each Tensor argument, in order.
    """

    __slots__ = ("parents", "saved_tensors", "needs_input_grad", "__dict__")
    _released = False  # set by release(): what forward saved is gone
    # True on a Function whose backward returns only new arrays (or views of new arrays) that
    # it keeps no reference to, no two sharing memory: the engine may then sum into them and
    # hand them to leaves without a copy (`_GradientSums`). The fast paths' layers say so;
    # the reference ops, which students write, keep the safe default.
    fresh_gradients = False

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        ctx = cls()
        raw = []
        parents = []
        for a in args:
            if isinstance(a, Tensor):
                parents.append(a)
                raw.append(a.data)
            else:
                raw.append(a)
        record = _grad_enabled and any(p.requires_grad for p in parents)
        if record:
            ctx.needs_input_grad = tuple(p.requires_grad for p in parents)
            ctx.parents = parents
        out = cls.forward(ctx, *raw, **kwargs)
        result = Tensor.__new__(Tensor)
        result.data = out
        result.grad = None
        result.requires_grad = record
        result._ctx = ctx if record else None
        result._retains_grad = False
        return result

    def input_gradients(self, grad):
        """Run this node's backward: a tuple with one gradient (or None) per input, each
        checked against its input's shape."""
        if self._released:
            raise RuntimeError(
                f"backward through {type(self).__name__} a second time: the first backward() freed what "
                "the graph saved; call it as backward(retain_graph=True) to backward through it again")
        grads = type(self).backward(self, grad)
        grads = grads if isinstance(grads, tuple) else (grads,)
        for parent, g in zip(self.parents, grads):
            if g is not None and parent.requires_grad and g.shape != parent.data.shape:
                raise RuntimeError(f"{type(self).__name__}.backward returned a gradient of shape "
                                   f"{g.shape} for an input of shape {parent.data.shape}")
        return grads

    def release(self):
        """Free what forward saved for backward (after backward, unless the graph is retained)."""
        self.saved_tensors = None
        self.__dict__.clear()
        self._released = True

    def __repr__(self):
        return f"<{type(self).__name__}>"


def unbroadcast(grad, shape):
    """Sum `grad` back to `shape`: the adjoint of NumPy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of length 1, so the
    gradient of the input is the sum of the output gradient over exactly those axes.
    """
    # BEGIN EXERCISE autograd.unbroadcast
    # hint: first sum away the extra leading axes (grad.ndim - len(shape) of them), then sum with keepdims=True over every axis where shape has a 1 but grad does not
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad
    # END EXERCISE


# ---------------------------------------------------------------------------------------------
# Tensor
# ---------------------------------------------------------------------------------------------

float32 = np.dtype("float32")
float64 = np.dtype("float64")
int64 = np.dtype("int64")
int32 = np.dtype("int32")
bool_ = np.dtype("bool")


def _as_array(data, dtype=None):
    """An array from `data`: floats default to float32; integer and bool arrays keep their
    dtype (uint8 images stay uint8), and Python ints become int64 as NumPy makes them."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        dtype = np.dtype(dtype)
    xp = backend.xp_of(data)
    if xp is np:
        arr = np.asarray(data)
    else:
        arr = data
    if dtype is not None:
        return arr if arr.dtype == dtype else arr.astype(dtype)
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype != float32:
        return arr.astype(float32)
    if kind not in "fiub":
        raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")
    return arr


class Tensor:
    """An n-dimensional array that remembers how it was computed.

    `data` is the NumPy (or CuPy) array; `grad`, after `backward()`, is an array of the same
    shape holding d(output)/d(this tensor) for leaves with `requires_grad=True`.
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_retains_grad", "__weakref__")
    __array_priority__ = 100  # so ndarray + Tensor defers to Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self._ctx = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # --- basic facts ------------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return int(self.data.size)

    def dim(self):
        return self.data.ndim

    def __len__(self):
        return len(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.item()

    def numpy(self):
        """The data as a NumPy array (copied off the GPU when needed); no graph."""
        return backend.to_device(self.data, "cpu")

    def tolist(self):
        return self.numpy().tolist()

    def __repr__(self):
        body = np.array2string(self.numpy(), precision=4, separator=", ", prefix="tensor(")
        extras = ""
        if self.dtype != float32:
            extras += f", dtype={self.dtype}"
        if self.device != "cpu":
            extras += f", device='{self.device}'"
        if self._ctx is not None:
            extras += f", grad_fn={self._ctx!r}"
        elif self.requires_grad:
            extras += ", requires_grad=True"
        return f"tensor({body}{extras})"

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __hash__(self):
        return id(self)

    def __array__(self, dtype=None, copy=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    # --- gradient bookkeeping ---------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, this one is {self.dtype}")
        if not requires_grad and self._ctx is not None:
            raise RuntimeError("requires_grad can only be switched off on a leaf tensor; use detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        """Keep `.grad` on this intermediate tensor too (leaves keep theirs anyway)."""
        self._retains_grad = True
        return self

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def zero_(self):
        self.data[...] = 0
        return self

    @staticmethod
    def _wrap(array, requires_grad=False):
        t = Tensor.__new__(Tensor)
        t.data = array
        t.grad = None
        t.requires_grad = requires_grad
        t._ctx = None
        t._retains_grad = False
        return t

    def backward(self, gradient=None, retain_graph=False):
        """Back-propagate from this tensor: add d(self)/d(leaf) into every leaf's `.grad`.

        Nodes are visited in reverse topological order, so a node's gradient is complete (summed
        over every path through it) before its backward passes it on to its inputs. Afterwards
        the graph's saved arrays are freed, as in PyTorch, and a second backward through it is an
        error; `retain_graph=True` keeps them, and a second backward then accumulates again.
        """
        sums = _GradientSums()
        sums.add(self, self._initial_gradient(gradient), owned=False)
        for node in reversed(_topological_order(self)):
            g, owned = sums.pop(node)
            if g is None:
                continue
            ctx = node._ctx
            if ctx is None or node._retains_grad:
                _accumulate(node, g, adopt=owned and ctx is None)
            if ctx is None:
                continue
            for parent, parent_grad in zip(ctx.parents, ctx.input_gradients(g)):
                if parent_grad is not None and parent.requires_grad:
                    sums.add(parent, parent_grad, owned=ctx.fresh_gradients)
            if not retain_graph:
                ctx.release()

    def _initial_gradient(self, gradient):
        """d(self)/d(self): 1 for a scalar, else the caller's `gradient`, checked."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad: "
                               "no input of the computation had requires_grad=True")
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() of a non-scalar tensor (shape {self.shape}) needs an explicit "
                    "gradient of the same shape, e.g. y.backward(tl.ones(y.shape)) or reduce it first with .sum()")
            return backend.xp_of(self.data).ones_like(self.data)
        gradient = _as_array(gradient, self.dtype)
        if gradient.shape != self.shape:
            raise ValueError(f"backward(): gradient shape {gradient.shape} does not match tensor shape {self.shape}")
        return gradient

    # --- operators: each is one differentiable op from minitl.ops --------------------------
    def __add__(self, other):
        return ops.add(self, other)

    def __radd__(self, other):
        return ops.add(other, self)

    def __sub__(self, other):
        return ops.sub(self, other)

    def __rsub__(self, other):
        return ops.sub(other, self)

    def __mul__(self, other):
        return ops.mul(self, other)

    def __rmul__(self, other):
        return ops.mul(other, self)

    def __truediv__(self, other):
        return ops.div(self, other)

    def __rtruediv__(self, other):
        return ops.div(other, self)

    def __neg__(self):
        return ops.neg(self)

    def __pow__(self, exponent):
        return ops.pow(self, exponent)

    def __rpow__(self, base):
        return ops.pow(base, self)

    def __matmul__(self, other):
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        return ops.matmul(other, self)

    def __getitem__(self, index):
        return ops.getitem(self, index)

    # comparisons give boolean tensors, outside the graph
    def __lt__(self, other):
        return Tensor._wrap(self.data < _raw(other))

    def __le__(self, other):
        return Tensor._wrap(self.data <= _raw(other))

    def __gt__(self, other):
        return Tensor._wrap(self.data > _raw(other))

    def __ge__(self, other):
        return Tensor._wrap(self.data >= _raw(other))

    def __eq__(self, other):
        """Elementwise, as in PyTorch: `(pred == y).sum()` counts matches. (Tensors hash by
        identity, so they still work as dict keys.)"""
        if other is None:
            return False
        return Tensor._wrap(self.data == _raw(other))

    def __ne__(self, other):
        if other is None:
            return True
        return Tensor._wrap(self.data != _raw(other))

    eq = __eq__
    ne = __ne__

    def __setitem__(self, index, value):
        """In-place assignment into data that is not part of a graph (e.g. editing a mask)."""
        if self.requires_grad:
            raise RuntimeError("in-place assignment into a tensor that requires grad would be invisible "
                               "to backward; assign into a detached copy, or use tl.where / masked_fill")
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index) if isinstance(index, tuple) else _raw(index)
        self.data[index] = _raw(value)

    # --- methods mirroring PyTorch's -----------------------------------------------------------
    def sum(self, dim=None, keepdim=False):
        return ops.sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return ops.mean(self, dim, keepdim)

    def max(self, dim=None, keepdim=False):
        return ops.max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return ops.min(self, dim, keepdim)

    def var(self, dim=None, keepdim=False, unbiased=True):
        return ops.var(self, dim, keepdim, unbiased)

    def std(self, dim=None, keepdim=False, unbiased=True):
        return ops.sqrt(ops.var(self, dim, keepdim, unbiased))

    def argmax(self, dim=None, keepdim=False):
        return Tensor._wrap(_argreduce(self.data, "argmax", dim, keepdim))

    def argmin(self, dim=None, keepdim=False):
        return Tensor._wrap(_argreduce(self.data, "argmin", dim, keepdim))

    def exp(self):
        return ops.exp(self)

    def log(self):
        return ops.log(self)

    def sqrt(self):
        return ops.sqrt(self)

    def abs(self):
        return ops.abs(self)

    def tanh(self):
        return ops.tanh(self)

    def sigmoid(self):
        return ops.sigmoid(self)

    def relu(self):
        return ops.relu(self)

    def clamp(self, min=None, max=None):
        return ops.clamp(self, min, max)

    def maximum(self, other):
        return ops.maximum(self, other)

    def minimum(self, other):
        return ops.minimum(self, other)

    def softmax(self, dim=-1):
        return ops.softmax(self, dim)

    def log_softmax(self, dim=-1):
        return ops.log_softmax(self, dim)

    def matmul(self, other):
        return ops.matmul(self, other)

    def reshape(self, *shape):
        return ops.reshape(self, _shape_args(shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        return ops.flatten(self, start_dim, end_dim)

    def permute(self, *dims):
        return ops.permute(self, _shape_args(dims))

    def transpose(self, dim0=-2, dim1=-1):
        return ops.transpose(self, dim0, dim1)

    @property
    def T(self):
        return ops.permute(self, tuple(reversed(range(self.ndim))))

    def expand(self, *shape):
        return ops.expand(self, _shape_args(shape))

    def squeeze(self, dim=None):
        return ops.squeeze(self, dim)

    def unsqueeze(self, dim):
        return ops.unsqueeze(self, dim)

    def masked_fill(self, mask, value):
        return ops.masked_fill(self, mask, value)

    def split(self, split_size_or_sections, dim=0):
        return ops.split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        return ops.chunk(self, chunks, dim)

    def tril(self, diagonal=0):
        return ops.tril(self, diagonal)

    def triu(self, diagonal=0):
        return ops.triu(self, diagonal)

    def clone(self):
        return ops.clone(self)

    def contiguous(self):
        return self

    def to(self, target):
        """`to(tl.float64)` casts; `to("cuda")` / `to("cpu")` moves. Returns self when nothing
        changes.

        A cast between floating-point dtypes stays in the graph (its backward casts the
        gradient back), so `x.double()` of a parameter still trains it; a cast to an integer
        or bool dtype leaves the graph. A move between devices is NOT recorded: the result is
        a new leaf (requiring grad when this tensor does), so move leaves, or whole modules
        with `Module.to`, before computing with them.
        """
        if backend.is_device_name(target):
            arr = backend.to_device(self.data, str(target))
            return self if arr is self.data else Tensor._wrap(arr, self.requires_grad)
        dtype = np.dtype(target)
        if dtype == self.dtype:
            return self
        if dtype.kind == "f":
            return ops.cast(self, dtype)
        return Tensor._wrap(_as_array(self.data, dtype))

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.to(float32)

    def double(self):
        return self.to(float64)

    def long(self):
        return self.to(int64)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


def _shape_args(shape):
    """Accept both `x.reshape(2, 3)` and `x.reshape((2, 3))`."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _argreduce(array, name, dim, keepdim):
    out = getattr(array, name)(axis=dim)
    if keepdim and dim is not None:
        out = backend.xp_of(array).expand_dims(out, dim)
    return out.astype(int64)


def _topological_order(root):
    """Tensors reachable from `root` through recorded ops, each after all of its inputs.

    An explicit stack replaces recursion. A node is pushed twice: once to visit its inputs and
    once, marked done, to be emitted after them. Emitting on the second visit is what makes
    `b = a + a; c = b + b` right: `b` appears once, after `a`, so its two contributions to `a`
    are summed before `a`'s gradient is used.
    """
    # BEGIN EXERCISE autograd.topological_sort
    # hint: iterative depth-first search with a stack of (tensor, inputs_done) pairs and a set of visited ids; append a tensor to the order only when it is popped with inputs_done=True
    order = []
    visited = set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order
    # END EXERCISE


class _GradientSums:
    """The gradients arriving at each tensor during one backward, summed as they come: the
    engine's one copy-avoidance scheme.

    An array is *owned* when nothing outside this backward can see it: a sum made here, or what
    a Function with `fresh_gradients` returned. A sum adds into an owned array in place instead
    of allocating a new one, and a leaf's first gradient, when owned, becomes its `.grad`
    without `_accumulate`'s copy: PyTorch's gradient accumulation steals such tensors alike.
    Everything else (the caller's gradient, one array that `a + b` hands to both inputs, a
    view) is never written to, and is copied into a leaf."""

    def __init__(self):
        self.pending = {}  # id(tensor) -> (gradient so far, owned)

    def add(self, tensor, g, owned):
        key = id(tensor)
        if key not in self.pending:
            self.pending[key] = (g, owned)
            return
        total, total_owned = self.pending[key]
        if total_owned and _can_add_into(total, g):
            total += g
        elif owned and _can_add_into(g, total):
            g += total
            total = g
        else:
            total = total + g
        self.pending[key] = (total, backend.is_array(total))

    def pop(self, tensor):
        return self.pending.pop(id(tensor), (None, False))


def _can_add_into(target, other):
    """`target += other` gives what `target + other` would: same dtype, same shape, an array."""
    return backend.is_array(target) and getattr(other, "dtype", None) == target.dtype and other.shape == target.shape


def _accumulate(node, g, adopt=False):
    """Add `g` into `node.grad`. A first gradient is copied (in the leaf's dtype): `g` may be a
    view, the caller's array, or one array that an op handed to two inputs (`a + b` does), and
    an in-place update of one `.grad` must never change another. With `adopt` (an array the
    backward owns, see `_GradientSums`) a C-contiguous `g` of the leaf's dtype is taken as it is.
    (Only `copy`, `astype`, `+` and `dtype` are asked of `g`, so a row-sparse gradient object
    may stand in for an array.)"""
    same_dtype = g.dtype == node.data.dtype
    if node.grad is None:
        if adopt and same_dtype and backend.is_array(g) and g.flags.c_contiguous:
            node.grad = g
        else:
            node.grad = g.copy() if same_dtype else g.astype(node.data.dtype)
    else:
        node.grad = node.grad + (g if same_dtype else g.astype(node.data.dtype))


# --- constructors ---------------------------------------------------------------------------

def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new leaf tensor from a list, scalar or array (copied). Floats become float32 unless
    `dtype` says otherwise; integers int64."""
    if isinstance(data, Tensor):
        data = data.data
    xp = backend.xp_of(data)
    t = Tensor._wrap(_as_array(xp.array(data, copy=True), dtype))
    t.requires_grad_(requires_grad)
    return t if device is None else t.to(device)


def _filled(fill, shape, dtype, requires_grad, device):
    t = Tensor._wrap(fill(_shape_args(shape), dtype=np.dtype(dtype or float32)))
    t.requires_grad_(requires_grad)
    return t if device is None else t.to(device)


def zeros(*shape, dtype=None, requires_grad=False, device=None):
    return _filled(np.zeros, shape, dtype, requires_grad, device)


def ones(*shape, dtype=None, requires_grad=False, device=None):
    return _filled(np.ones, shape, dtype, requires_grad, device)


def full(shape, value, dtype=None, requires_grad=False, device=None):
    return _filled(lambda s, dtype: np.full(s, value, dtype=dtype), (shape,), dtype, requires_grad, device)


def zeros_like(t, dtype=None, requires_grad=False):
    return zeros(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad, device=t.device)


def ones_like(t, dtype=None, requires_grad=False):
    return ones(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad, device=t.device)


def randn(*shape, dtype=None, requires_grad=False, device=None):
    """Standard normal samples drawn from minitl's seeded generator."""
    from .random import get_rng
    t = Tensor._wrap(get_rng().standard_normal(_shape_args(shape)).astype(dtype or float32))
    t.requires_grad_(requires_grad)
    return t if device is None else t.to(device)


def rand(*shape, dtype=None, requires_grad=False, device=None):
    from .random import get_rng
    t = Tensor._wrap(get_rng().random(_shape_args(shape)).astype(dtype or float32))
    t.requires_grad_(requires_grad)
    return t if device is None else t.to(device)


def randint(low, high, shape, device=None):
    from .random import get_rng
    t = Tensor._wrap(get_rng().integers(low, high, size=_shape_args((shape,)), dtype=np.int64))
    return t if device is None else t.to(device)


def arange(start, stop=None, step=1, dtype=None, device=None):
    if stop is None:
        start, stop = 0, start
    t = Tensor._wrap(_as_array(np.arange(start, stop, step), dtype))
    return t if device is None else t.to(device)


from . import ops  # noqa: E402  (ops import Tensor and Function from this module)
