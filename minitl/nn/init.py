"""Weight initialisation, drawing from minitl's seeded generator (so `tl.manual_seed` fixes
every initial weight). Each function fills a tensor in place and returns it, like torch.nn.init.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..random import get_rng


def _fill(tensor, values):
    values = np.asarray(values, dtype=tensor.data.dtype)
    tensor.data[...] = backend.to_device(values, tensor.device)
    return tensor


def fan_in_and_fan_out(tensor):
    """For a weight (out, in, *kernel): fan_in = in * kernel size, fan_out = out * kernel size."""
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"fan in/out need a weight with at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform_(tensor, a=0.0, b=1.0):
    return _fill(tensor, get_rng().uniform(a, b, size=tensor.shape))


def normal_(tensor, mean=0.0, std=1.0):
    return _fill(tensor, get_rng().normal(mean, std, size=tensor.shape))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Normal samples redrawn until they fall in [a, b] (ViT and BERT initialise this way)."""
    values = get_rng().normal(mean, std, size=tensor.shape)
    bad = (values < a) | (values > b)
    while bad.any():
        values[bad] = get_rng().normal(mean, std, size=int(bad.sum()))
        bad = (values < a) | (values > b)
    return _fill(tensor, values)


def zeros_(tensor):
    tensor.data[...] = 0
    return tensor


def ones_(tensor):
    tensor.data[...] = 1
    return tensor


def constant_(tensor, value):
    tensor.data[...] = value
    return tensor


def xavier_uniform_(tensor, gain=1.0):
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor, a=0.0, nonlinearity="leaky_relu"):
    """He initialisation: variance 2 / fan_in (adjusted by the slope `a` of a leaky ReLU)."""
    fan_in, _ = fan_in_and_fan_out(tensor)
    gain = math.sqrt(2.0 / (1 + a * a)) if nonlinearity in ("relu", "leaky_relu") else 1.0
    bound = gain * math.sqrt(3.0 / fan_in)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, nonlinearity="leaky_relu"):
    fan_in, _ = fan_in_and_fan_out(tensor)
    gain = math.sqrt(2.0 / (1 + a * a)) if nonlinearity in ("relu", "leaky_relu") else 1.0
    return normal_(tensor, 0.0, gain / math.sqrt(fan_in))
