"""Fast row-sparse updates: the row scatter of word2vec's SparseSGD, GloVe's AdaGrad rows.

The reference, in `minitl.optim.sparse.add_rows`, is ``np.add.at(table, rows, values)``: add
each row of ``values`` into ``table[rows]``, a repeated row adding up. On a 2-D table NumPy
runs it through a generic loop, one element at a time. Since NumPy 1.25 ``np.add.at`` has a
fast loop for a 1-D array with a 1-D index, so :func:`scatter_add_rows` addresses a C-contiguous
table as one flat vector, element (r, k) being number r * d + k. Measured on 6,144 rows of 100
float32 (negatives drawn from GCIDE's noise distribution) into a 33,196 x 100 table, NumPy 2.4,
one idle core: 2-D ``np.add.at`` 4.8 ms, flat ``np.add.at`` 1.4 ms.

tests/test_word2vec.py proves it equal to the reference in float64 (repeated rows, odd widths,
tables that are views with strides).
"""
from __future__ import annotations

import numpy as np


def scatter_add_rows(table: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``np.add.at(table, rows, values)`` for a (V, d) table, through the 1-D fast loop.

    ``rows``: (n,) row numbers, repeats allowed; ``values``: (n, d). A table that is not
    C-contiguous (a strided view) has no flat view to write through: the reference runs.
    """
    if table.ndim != 2 or not table.flags.c_contiguous:
        np.add.at(table, rows, values)
        return
    d = table.shape[1]
    positions = (np.asarray(rows, dtype=np.int64).reshape(-1, 1) * d + np.arange(d)).reshape(-1)
    flat_values = np.asarray(values).reshape(-1).astype(table.dtype, copy=False)
    np.add.at(table.reshape(-1), positions, flat_values)


def adagrad_rows(param: np.ndarray, accumulator: np.ndarray, rows, grad: np.ndarray, lr: float) -> None:
    """``G[rows] += g*g; W[rows] -= lr * g / sqrt(G[rows])``, with one gathered copy of G's rows
    reused for the square root and the step instead of three temporaries: measured on 12,649
    rows of 100 float32, 9.0 ms against the reference's 10.8 (SparseAdagrad, GloVe's batches).

    ``rows``: distinct row numbers, an integer array (a slice would make the gathered copy a view
    of G, and the square root would overwrite G itself).
    """
    rows = np.asarray(rows)
    accumulated = accumulator[rows]
    accumulated += grad * grad
    accumulator[rows] = accumulated
    step = np.sqrt(accumulated, out=accumulated)
    np.divide(grad, step, out=step)
    step *= lr
    param[rows] -= step
