# %% [markdown]
# # Lesson 1: autograd, from a scalar to tensors
#
# Every method in this course — fine-tuning a CNN, training word vectors, LoRA — is gradient
# descent on some loss. This lesson builds the machine that computes those gradients:
# reverse-mode automatic differentiation ("backprop").
#
# What you should see by the end:
# 1. the chain rule done by hand on scalars, and a tiny autograd that does it for you;
# 2. why a *recursive* backward goes wrong on `b = a + a; c = b + b`, and how a topological
#    order fixes it;
# 3. minitl's tensors: the same idea over arrays, with broadcasting undone by `unbroadcast`;
# 4. a numerical gradient check that proves a backward right (or wrong), and why it must run
#    in float64.
#
# Read alongside: `minitl/tensor.py` (the engine) and `minitl/ops/` (the ops).

# %%
import math

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minitl as tl  # noqa: E402
from minitl import report  # noqa: E402

out = report.output_dir("lesson_01_autograd")
print("figures go to", out)

# %% [markdown]
# ## 1. The chain rule by hand
#
# Take $f(x, y) = \tanh(x y + y)$. Written as steps: $u = x y$, $v = u + y$, $f = \tanh v$.
# Going backwards, each step multiplies by its local derivative:
#
# $\frac{\partial f}{\partial v} = 1 - \tanh^2 v$, $\;\frac{\partial f}{\partial u} = \frac{\partial f}{\partial v}$,
# $\;\frac{\partial f}{\partial x} = \frac{\partial f}{\partial u} y$,
# $\;\frac{\partial f}{\partial y} = \frac{\partial f}{\partial u} x + \frac{\partial f}{\partial v}$ (y is used twice: its contributions **add**).

# %%
x, y = 0.5, -1.5
u = x * y
v = u + y
f = math.tanh(v)
df_dv = 1 - f ** 2
df_du = df_dv
df_dx = df_du * y
df_dy = df_du * x + df_dv
print(f"f = {f:.6f}, df/dx = {df_dx:.6f}, df/dy = {df_dy:.6f}")

# %% [markdown]
# ## 2. A scalar autograd in 30 lines
#
# Each `Value` remembers its parents and the local derivative towards each. `backward()`
# visits the graph from the output back to the inputs, adding `grad * local` into each parent.
# The order of visits matters, as we are about to see.

# %%
class Value:
    def __init__(self, data, parents=()):
        self.data, self.grad, self.parents = data, 0.0, parents  # parents: (Value, local derivative)

    def __add__(self, other):
        return Value(self.data + other.data, ((self, 1.0), (other, 1.0)))

    def __mul__(self, other):
        return Value(self.data * other.data, ((self, other.data), (other, self.data)))

    def tanh(self):
        t = math.tanh(self.data)
        return Value(t, ((self, 1 - t * t),))


def backward_recursive(node):
    """The tempting version: push this node's gradient to its parents, then recurse into them."""
    for parent, local in node.parents:
        parent.grad += node.grad * local
        backward_recursive(parent)


def backward_topological(root):
    """Visit every node once, each only after everything that depends on it."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:  # an explicit stack: no recursion limit on deep graphs
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p, _ in node.parents)
    root.grad = 1.0
    for node in reversed(order):  # outputs first
        for parent, local in node.parents:
            parent.grad += node.grad * local


X, Y = Value(0.5), Value(-1.5)
F = (X * Y + Y).tanh()
backward_topological(F)
print(f"autograd: df/dx = {X.grad:.6f}, df/dy = {Y.grad:.6f}  (by hand: {df_dx:.6f}, {df_dy:.6f})")

# %% [markdown]
# ### The trap: `b = a + a; c = b + b`
#
# $c = 4a$, so $dc/da = 4$. The recursive version pushes `b`'s gradient to `a` as soon as it
# reaches `b` the first time — before `b` has received its second contribution from `c` —
# and then pushes it again, accumulated, when it reaches `b` the second time.

# %%
a = Value(3.0)
b = a + a
c = b + b
c.grad = 1.0
backward_recursive(c)
print("recursive backward:   dc/da =", a.grad)

a = Value(3.0)
b = a + a
c = b + b
backward_topological(c)
print("topological backward: dc/da =", a.grad)

# %% [markdown]
# The recursive answer is 6: `a` received 1 + 1 from the first visit of `b`, then 2 + 2 from
# the second, when `b` had accumulated both of its contributions. On bigger graphs it only gets
# worse, and the work grows exponentially with the number of shared nodes. In topological order a node is processed once, only after
# all of its users, so its gradient is complete when it is passed on. minitl's
# `Tensor.backward` (in `minitl/tensor.py`) does exactly this; writing `_topological_order`
# is the exercise `autograd.topological_sort`.
#
# ## 3. The same with minitl tensors

# %%
a = tl.tensor(3.0, requires_grad=True)
b = a + a
c = b + b
c.backward()
print("minitl: dc/da =", a.grad)

# a graph 10,000 ops deep: a recursive backward would exceed Python's recursion limit
z = tl.tensor(1.0, requires_grad=True)
w = z
for _ in range(10_000):
    w = w * 1.0001
w.backward()
print(f"10,000-op chain: dw/dz = {float(z.grad):.4f} (exact: {1.0001 ** 10_000:.4f})")

# %% [markdown]
# ### Tensors and broadcasting
#
# With arrays, an op like `x + b` with `x` of shape (4, 3) and `b` of shape (3,) *broadcasts*
# `b`: it is used once per row. So `b`'s gradient is the **sum** of the output gradient over
# the rows. `tl.unbroadcast(grad, shape)` is that sum, and every binary op's backward calls it.

# %%
x = tl.randn(4, 3, requires_grad=True)
bias = tl.zeros(3, requires_grad=True)
y = (x + bias).relu().sum()
y.backward()
print("x.grad shape:", x.grad.shape, " bias.grad shape:", bias.grad.shape)
print("bias.grad equals the column sums of x.grad:", np.allclose(bias.grad, x.grad.sum(0)))

W = tl.randn(3, 5, requires_grad=True)
h = x @ W
h.backward(np.ones(h.shape, np.float32))  # non-scalar: we must say what d(loss)/dh is
print("dW = x^T @ dh:", np.allclose(W.grad, x.data.T @ np.ones((4, 5))))

# %% [markdown]
# Broadcasting copies an input in two ways: along **new leading axes** (a bias of shape (3,)
# added to a batch of shape (2, 4, 3) is used 2 x 4 times), and along **axes of size 1** (a
# column of shape (4, 1) added to a (4, 3) matrix is used once per column). `unbroadcast`
# undoes both: it sums the extra leading axes away, then sums with `keepdims=True` over every
# axis where the input had size 1, so the gradient comes back with the input's exact shape.
# Below, an output gradient of shape (2, 4, 3) goes back to four input shapes; each line
# compares `unbroadcast` with the sum written out by hand.

# %%
g = np.arange(24, dtype=np.float64).reshape(2, 4, 3)
by_hand = {
    (3,): g.sum(axis=(0, 1)),                          # two new leading axes
    (4, 1): g.sum(axis=0).sum(axis=1, keepdims=True),  # one leading axis, then a size-1 axis
    (1, 3): g.sum(axis=0).sum(axis=0, keepdims=True),  # one leading axis, then a size-1 axis
    (2, 1, 3): g.sum(axis=1, keepdims=True),           # a size-1 axis only
}
for shape, expected in by_hand.items():
    got = tl.unbroadcast(g, shape)
    extra = g.ndim - len(shape)
    leading = tuple(range(extra))
    size_one = tuple(extra + i for i, n in enumerate(shape) if n == 1 and g.shape[extra + i] != 1)
    print(f"grad {g.shape} -> input {str(shape):9s}: sums its axes {leading} away, then its axes {size_one} "
          f"with keepdims; equals the sum by hand: {got.shape == shape and np.array_equal(got, expected)}")

column = tl.zeros(4, 1, requires_grad=True)  # a size-1 axis, broadcast along the columns of x
(x * column).sum().backward()
print("column.grad shape:", column.grad.shape, " equals the row sums of x:",
      np.allclose(column.grad, x.data.sum(1, keepdims=True)))

# %% [markdown]
# ## 4. Checking gradients numerically
#
# A backward can be checked without trusting it: nudge each input by $\pm h$ and look at
# the change of the output, $\frac{f(x + h) - f(x - h)}{2h}$. Two errors pull $h$ opposite
# ways. The *truncation* error of the formula shrinks like $h^2$ (the Taylor terms it drops).
# The *rounding* error grows like $\epsilon |f| / h$: $f(x + h)$ and $f(x - h)$ are each
# rounded to a relative precision $\epsilon$, and their difference, small when $h$ is, keeps
# the rounding of the big numbers while losing their leading digits. float32 has
# $\epsilon = 2^{-23}$, float64 $2^{-52}$. So at $h = 10^{-6}$ a float32 difference has lost
# most of its correct digits while float64 keeps most of them, and the best $h$ sits near
# $\epsilon^{1/3}$ (balance $h^2$ against $\epsilon / h$). The cell below measures both on
# $\tanh$ at $x = 0.5$; predict first where each error column bottoms out.

# %%
def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


steps = [10.0 ** -k for k in range(1, 10)]
exact = 1 - np.tanh(0.5) ** 2
rows = []
for h in steps:
    row = [f"{h:.0e}"]
    for dtype in (np.float32, np.float64):
        estimate = central_difference(np.tanh, dtype(0.5), dtype(h))
        row.append(f"{abs(float(estimate) - exact) / exact:.1e}")
    rows.append(row)
report.table(rows, ["h", "relative error, float32", "relative error, float64"],
             title="central difference of tanh at 0.5: truncation (large h) against rounding (small h)")
for dtype in (np.float32, np.float64):
    eps = np.finfo(dtype).eps
    print(f"{np.dtype(dtype).name}: machine epsilon {eps:.1e}, best h near eps^(1/3) = {eps ** (1 / 3):.0e}")
fig, ax = plt.subplots(figsize=(5, 3))
for column, label in ((1, "float32"), (2, "float64")):
    ax.loglog(steps, [max(float(r[column]), 1e-17) for r in rows], "o-", label=label)
ax.set_xlabel("step h")
ax.set_ylabel("relative error of the central difference")
ax.invert_xaxis()
ax.legend()
_ = report.figure(fig, "central_difference_error", "central-difference error against the step h, float32 and float64")

# %% [markdown]
# That is why `tl.gradcheck` copies every input to float64 and uses $h = 10^{-6}$: there the
# two estimates agree to a relative error far below any bug's, and a wrong backward shows an
# O(1) error. It does this for every element of every input.

# %%
xs = tl.randn(3, 4, dtype="float64")
ws = tl.randn(4, 5, dtype="float64")
print("softmax(x @ W) passes gradcheck:", tl.gradcheck(lambda p, q: (p @ q).softmax(-1), xs, ws))


class BadSquare(tl.Function):
    """x ** 2 with a deliberately wrong derivative (x instead of 2x)."""

    @staticmethod
    def forward(ctx, arr):
        ctx.save_for_backward(arr)
        return arr * arr

    @staticmethod
    def backward(ctx, grad):
        (arr,) = ctx.saved_tensors
        return grad * arr


print("a wrong backward fails it:", not tl.gradcheck(lambda p: BadSquare.apply(p), xs, raise_exception=False))

# %% [markdown]
# ## 5. Seeing a derivative
#
# Autograd differentiates whatever you compute. Here is tanh and its derivative, obtained by
# one backward pass over 200 points at once.

# %%
grid = tl.tensor(np.linspace(-4, 4, 200), requires_grad=True)
grid.tanh().sum().backward()
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(grid.data, np.tanh(grid.data), label="tanh(x)")
ax.plot(grid.data, grid.grad, label="d tanh / dx (autograd)")
ax.plot(grid.data, 1 - np.tanh(grid.data) ** 2, "k:", label="1 - tanh^2 (by hand)")
ax.legend()
ax.set_xlabel("x")
report.figure(fig, "tanh_and_derivative", "tanh and its derivative from one backward pass")
report.metric("dc/da for b = a + a; c = b + b", float(a.grad) if a.grad is not None else None)
report.note("Autograd: a topological-order backward sums every contribution before passing it on.")

# %% [markdown]
# ## Check yourself
#
# 1. What did the recursive backward return for dc/da on `b = a + a; c = b + b`, and what
#    did the topological one return?
# 2. Going back from a gradient of shape (2, 4, 3), over which axes did `unbroadcast` sum to
#    reach an input of shape (4, 1), and which of them did it keep with size 1?
# 3. In the central-difference table, at which h was float32's error smallest, and how large
#    was it at the h that gradcheck uses in float64?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 1`), make each one's tests pass:
#
# - `autograd.topological_sort`: `minitl exercises check autograd.topological_sort`
# - `autograd.unbroadcast`: `minitl exercises check autograd.unbroadcast`
# - `autograd.add_backward`: `minitl exercises check autograd.add_backward`
# - `autograd.mul_backward`: `minitl exercises check autograd.mul_backward`
# - `autograd.sum_backward`: `minitl exercises check autograd.sum_backward`
# - `autograd.matmul_backward`: `minitl exercises check autograd.matmul_backward`
# - `autograd.exp_backward`: `minitl exercises check autograd.exp_backward`
# - `autograd.log_backward`: `minitl exercises check autograd.log_backward`
# - `autograd.getitem_backward`: `minitl exercises check autograd.getitem_backward`
# - `autograd.softmax_backward`: `minitl exercises check autograd.softmax_backward`
