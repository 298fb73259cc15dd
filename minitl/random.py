"""One source of randomness for all of minitl.

`tl.manual_seed(n)` resets it, so a seeded run (initial weights, dropout masks, shuffling,
negative samples) repeats bit for bit. Like PyTorch, an unseeded program is also repeatable:
the generator starts from a fixed seed.
"""
from __future__ import annotations

import numpy as np

DEFAULT_SEED = 0
_rng = np.random.default_rng(DEFAULT_SEED)
_seed = DEFAULT_SEED


def manual_seed(seed: int) -> np.random.Generator:
    """Reset minitl's random generator; returns it (a `numpy.random.Generator`)."""
    global _rng, _seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed takes an integer, got {type(seed).__name__}")
    _seed = int(seed)
    _rng = np.random.default_rng(_seed)
    return _rng


def get_rng() -> np.random.Generator:
    """The generator every random draw in minitl comes from."""
    return _rng


def initial_seed() -> int:
    return _seed


def fork_rng() -> np.random.Generator:
    """A new generator seeded from the main one: for a component (a data loader, a sampler)
    that needs its own stream, still determined by `manual_seed`."""
    return np.random.default_rng(_rng.integers(0, 2**63 - 1))
