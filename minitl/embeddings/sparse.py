"""Row-sparse gradients and the optimizers that use them (section on word embeddings).

A mini-batch of word2vec touches a few thousand rows of a 30,000 x 100 embedding matrix.
A dense gradient would mean zeroing and adding 3 million numbers to change a few hundred
thousand, so the lookup's gradient is kept as it is born: a list of rows and their values,
``RowSparseGrad(indices, values, shape)``, the meaning of ``torch.nn.Embedding(sparse=True)``.

The one subtle step is duplicates: "the" may appear 50 times in a batch, and its row must get
the *sum* of the 50 gradients. ``W[idx] -= g`` would keep only the last one, so
:func:`segment_sum` first adds equal indices together (sort, then ``np.add.reduceat``),
after which each row is written once.
"""
from __future__ import annotations

import numpy as np

from ..optim.optimizer import Optimizer


def segment_sum(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add up the rows of ``values`` that share an index: ``(unique_indices, sums)``.

    Sorting puts equal indices next to each other; ``np.add.reduceat`` then sums each run.
    (``np.add.at`` does the same but is several times slower on rows.)
    """
    order = np.argsort(indices, kind="stable")
    sorted_idx = indices[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_idx[1:] != sorted_idx[:-1])))
    return sorted_idx[starts], np.add.reduceat(values[order], starts, axis=0)


class RowSparseGrad:
    """The gradient of a (V, d) matrix that is zero except in the rows ``indices``.

    ``indices`` may repeat (contributions add up); :meth:`coalesce` merges them. It has the
    ``shape``/``dtype``/``copy``/``astype``/``+`` that the autograd engine asks of a gradient.
    """

    __slots__ = ("indices", "values", "shape")

    def __init__(self, indices, values, shape):
        self.indices, self.values, self.shape = np.asarray(indices).reshape(-1), values, tuple(shape)
        self.values = self.values.reshape(len(self.indices), *self.shape[1:])

    @property
    def dtype(self):
        return self.values.dtype

    def astype(self, dtype):
        return RowSparseGrad(self.indices, self.values.astype(dtype), self.shape)

    def copy(self):
        return RowSparseGrad(self.indices.copy(), self.values.copy(), self.shape)

    def __add__(self, other):
        if isinstance(other, RowSparseGrad):
            return RowSparseGrad(np.concatenate([self.indices, other.indices]),
                                 np.concatenate([self.values, other.values]), self.shape)
        return self.to_dense() + other

    __radd__ = __add__

    def coalesce(self) -> "RowSparseGrad":
        """The same gradient with each row index once."""
        idx, vals = segment_sum(self.indices, self.values)
        return RowSparseGrad(idx, vals, self.shape)

    def to_dense(self) -> np.ndarray:
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        np.add.at(dense, self.indices, self.values)
        return dense

    def __repr__(self):
        return f"RowSparseGrad({len(self.indices)} rows of {self.shape})"


def _rows_and_values(grad):
    """(rows, values) of a gradient, dense or row-sparse; equal rows already summed."""
    if isinstance(grad, RowSparseGrad):
        grad = grad.coalesce()
        return grad.indices, grad.values
    return slice(None), grad


class SparseSGD(Optimizer):
    """Plain SGD, ``W[rows] -= lr * g[rows]``, that writes only the rows a gradient touches.

    word2vec's update rule (no momentum: word2vec.c and gensim use none). The learning rate is
    meant to be changed between steps (linear decay), so ``lr`` lives in ``param_groups``.
    """

    def __init__(self, params, lr=0.025):
        super().__init__(params, dict(lr=lr))

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows, values = _rows_and_values(p.grad)
                p.data[rows] -= group["lr"] * values


class SparseAdagrad(Optimizer):
    """AdaGrad (Duchi et al. 2011) on the rows touched: GloVe's optimizer (Pennington et al. 2014).

    Per element, ``G += g**2`` and ``W -= lr * g / sqrt(G)``: a rare word's rows keep large
    steps, a frequent word's shrink. GloVe's C code starts G at 1 (not 0), so the first step of
    a row is not a division by |g|; ``initial_accumulator_value`` is that 1.
    """

    def __init__(self, params, lr=0.05, initial_accumulator_value=1.0):
        super().__init__(params, dict(lr=lr, initial_accumulator_value=initial_accumulator_value))

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state_for(p)
                if "sum" not in state:
                    state["sum"] = np.full_like(p.data, group["initial_accumulator_value"])
                rows, values = _rows_and_values(p.grad)
                accumulated = state["sum"][rows] + values * values
                state["sum"][rows] = accumulated
                p.data[rows] -= group["lr"] * values / np.sqrt(accumulated)
