"""Batching: `DataLoader` cuts arrays into mini-batches, reshuffled every epoch from a
generator seeded by `tl.manual_seed`, and hands them out as tensors."""
from __future__ import annotations

import math

import numpy as np

from ..random import fork_rng
from ..tensor import Tensor


class ArrayDataset:
    """Several arrays with the same first dimension, indexed together (like TensorDataset)."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("ArrayDataset needs at least one array")
        arrays = tuple(a.numpy() if isinstance(a, Tensor) else np.asarray(a) for a in arrays)
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(f"ArrayDataset: arrays have different lengths {[len(a) for a in arrays]}")
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


class DataLoader:
    """Iterate over mini-batches of `dataset` (an ArrayDataset or a tuple of arrays).

    `transform(*batch_arrays)` may turn raw arrays (e.g. uint8 images) into model inputs;
    each batch comes out as a tuple of Tensors.
    """

    def __init__(self, dataset, batch_size=64, shuffle=False, drop_last=False, transform=None, device=None):
        if isinstance(dataset, (tuple, list)):
            dataset = ArrayDataset(*dataset)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.drop_last, self.transform, self.device = drop_last, transform, device
        self._rng = fork_rng() if shuffle else None

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if not self.shuffle:
                idx = slice(int(idx[0]), int(idx[-1]) + 1)  # a view, no gather needed
            batch = self.dataset[idx]
            if self.transform is not None:
                batch = self.transform(*batch)
                if not isinstance(batch, tuple):
                    batch = (batch,)
            out = tuple(x if isinstance(x, Tensor) else Tensor(x) for x in batch)
            if self.device is not None:
                out = tuple(x.to(self.device) for x in out)
            yield out
