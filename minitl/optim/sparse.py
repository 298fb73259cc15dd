"""Row-sparse gradients and the optimizers that write only the rows they touch.

Section on word embeddings. A mini-batch of word2vec touches a few thousand rows of a
30,000 x 100 embedding matrix. A dense gradient would mean zeroing and adding 3 million numbers
to change a few hundred thousand, so the lookup's gradient is kept as it is born: a list of
rows and their values, ``RowSparseGrad(indices, values, shape)``, the meaning of
``torch.nn.Embedding(sparse=True)``.

The one subtle step is duplicates: "the" may appear 50 times in a batch, and its row must get
the *sum* of the 50 gradients. ``W[rows] += g`` keeps only the last one, so

- :func:`add_rows` is ``np.add.at(W, rows, g)``, which adds every row into place, repeated
  rows included: enough for SGD, whose update is linear in the gradient;
- :func:`segment_sum` first adds up the rows of equal index, after which each row is written
  once: AdaGrad needs it, as it squares the *summed* gradient of a row.

``SparseSGD`` is word2vec's optimizer, ``SparseAdagrad`` GloVe's.
"""
from __future__ import annotations

import numpy as np

from .. import fastpath
from ..fastpath import sparse as fast_sparse
from .optimizer import Optimizer


def add_rows(table: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``table[rows] += values``, in place, a row that appears n times in ``rows`` getting all n."""
    if fastpath.enabled():
        fast_sparse.scatter_add_rows(table, rows, values)     # same sums, through NumPy's 1-D fast loop
    else:
        np.add.at(table, rows, values)


def segment_sum(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add up the rows of ``values`` that share an index: ``(unique_indices, sums)``, sorted."""
    unique, slot = np.unique(indices, return_inverse=True)
    sums = np.zeros((len(unique),) + values.shape[1:], dtype=values.dtype)
    add_rows(sums, slot.reshape(-1), values)
    return unique, sums


class RowSparseGrad:
    """The gradient of a (V, d) matrix that is zero except in the rows ``indices``.

    ``indices`` may repeat (contributions add up); :meth:`coalesce` merges them. It has the
    ``shape``/``dtype``/``copy``/``astype``/``+`` that the autograd engine asks of a gradient.
    """

    __slots__ = ("indices", "values", "shape")

    def __init__(self, indices, values, shape):
        self.indices, self.shape = np.asarray(indices).reshape(-1), tuple(shape)
        self.values = values.reshape(len(self.indices), *self.shape[1:])

    @property
    def dtype(self):
        return self.values.dtype

    def astype(self, dtype):
        return RowSparseGrad(self.indices, self.values.astype(dtype), self.shape)

    def copy(self):
        """A new gradient object sharing the arrays. The engine copies a gradient before keeping
        it so that an in-place update of one parameter's ``.grad`` cannot reach another's;
        nothing updates a RowSparseGrad in place (every method returns a new one), so sharing is
        safe, and it saves copying a batch's gradient rows on every step."""
        return RowSparseGrad(self.indices, self.values, self.shape)

    def __add__(self, other):
        if isinstance(other, RowSparseGrad):
            return RowSparseGrad(np.concatenate([self.indices, other.indices]),
                                 np.concatenate([self.values, other.values]), self.shape)
        return self.to_dense() + other

    __radd__ = __add__

    def coalesce(self) -> "RowSparseGrad":
        """The same gradient with each row index once."""
        return RowSparseGrad(*segment_sum(self.indices, self.values), self.shape)

    def to_dense(self) -> np.ndarray:
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        add_rows(dense, self.indices, self.values)
        return dense

    def __repr__(self):
        return f"RowSparseGrad({len(self.indices)} rows of {self.shape})"


def rows_and_values(grad):
    """(rows, values) of a gradient, dense (all rows) or row-sparse (equal rows summed)."""
    if isinstance(grad, RowSparseGrad):
        grad = grad.coalesce()
        return grad.indices, grad.values
    return slice(None), grad


class SparseSGD(Optimizer):
    """Plain SGD, ``W[rows] -= lr * g``, that writes only the rows a gradient touches.

    word2vec's update rule (no momentum: word2vec.c and gensim use none). The learning rate is
    meant to be changed between steps (linear decay), so ``lr`` lives in ``param_groups``.
    The update is linear in the gradient, so a repeated row needs no merging first: each of its
    gradients is added into place (:func:`add_rows`).
    """

    def __init__(self, params, lr=0.025):
        if lr < 0:
            raise ValueError(f"SparseSGD: lr must be >= 0, got {lr}")
        super().__init__(params, dict(lr=lr))

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if isinstance(p.grad, RowSparseGrad):
                    add_rows(p.data, p.grad.indices, -group["lr"] * p.grad.values)
                else:
                    p.data -= group["lr"] * p.grad


class SparseAdagrad(Optimizer):
    """AdaGrad (Duchi et al. 2011) on the rows touched: GloVe's optimizer (Pennington et al. 2014).

    Per element, ``G += g**2`` and ``W -= lr * g / sqrt(G)``: a rare word's rows keep large
    steps, a frequent word's shrink. GloVe's C code starts G at 1 (not 0), so the first step of
    a row is not a division by |g|; ``initial_accumulator_value`` is that 1.
    """

    def __init__(self, params, lr=0.05, initial_accumulator_value=1.0):
        if lr < 0 or initial_accumulator_value <= 0:
            raise ValueError("SparseAdagrad: lr must be >= 0 and initial_accumulator_value > 0 "
                             f"(got {lr}, {initial_accumulator_value})")
        super().__init__(params, dict(lr=lr, initial_accumulator_value=initial_accumulator_value))

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state_for(p)
                if "sum" not in state:
                    state["sum"] = np.full_like(p.data, group["initial_accumulator_value"])
                rows, g = rows_and_values(p.grad)
                G, lr = state["sum"], group["lr"]
                if fastpath.enabled() and isinstance(p.grad, RowSparseGrad):
                    fast_sparse.adagrad_rows(p.data, G, rows, g, lr)     # the same, fewer temporaries
                    continue
                G[rows] += g * g
                p.data[rows] -= lr * g / np.sqrt(G[rows])
