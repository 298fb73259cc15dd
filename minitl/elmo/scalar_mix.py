"""ELMo's scalar mix: one task-specific weighted sum of the biLM's layers (Peters et al. 2018, eq. 1).

Chapter: "Transfer learning in NLP", ELMo. The biLM gives every token L + 1 representations
h_0 (the token embedding) .. h_L (the top LSTM layer). A downstream task does not pick one: it
learns how much of each to take,

    ELMo_task = gamma * sum_l softmax(s)_l * h_l

with L + 1 scalars s (starting at 0: an equal mix) and one scale gamma (starting at 1), both
trained with the task while the biLM stays frozen. The softmax keeps the weights positive and
summing to 1; gamma rescales the whole vector to suit the task's model.

`ScalarMix` follows AllenNLP's `allennlp.modules.scalar_mix.ScalarMix` (same arguments, same
initial values); with `do_layer_norm=True` each layer is first normalised over all of its
unmasked elements together, as AllenNLP does.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..nn import Module, Parameter
from ..tensor import Tensor


def scalar_mix(layers, s, gamma):
    """gamma * sum_l softmax(s)_l * h_l for a list of L + 1 tensors h_l of one shape, the
    mixing scalars s (L + 1,) and the scale gamma (1,)."""
    # BEGIN EXERCISE elmo.scalar_mix
    # hint: w = softmax(s, dim=0); return gamma * (w[0] * h_0 + w[1] * h_1 + ...) for the layers h_l
    weights = ops.softmax(s, dim=0)
    mixed = weights[0] * layers[0]
    for l in range(1, len(layers)):
        mixed = mixed + weights[l] * layers[l]
    return gamma * mixed
    # END EXERCISE


class ScalarMix(Module):
    """`mix(layers, mask=None)`: gamma * sum_l softmax(s)_l * h_l over `mixture_size` layers.

    Parameters `scalar_parameters` (s, zeros unless `initial_scalar_parameters` is given) and
    `gamma` (1). `do_layer_norm=True` normalises each layer first (AllenNLP's option), over the
    elements that `mask` (B, T), 1 for real tokens, marks.
    """

    def __init__(self, mixture_size, do_layer_norm=False, initial_scalar_parameters=None, trainable=True):
        super().__init__()
        if not isinstance(mixture_size, (int, np.integer)) or mixture_size < 1:
            raise ValueError(f"ScalarMix: mixture_size must be a positive integer, got {mixture_size!r}")
        initial = np.zeros(mixture_size) if initial_scalar_parameters is None else np.asarray(initial_scalar_parameters)
        if initial.shape != (mixture_size,):
            raise ValueError(f"ScalarMix: initial_scalar_parameters must hold {mixture_size} values, "
                             f"got shape {initial.shape}")
        self.mixture_size, self.do_layer_norm = int(mixture_size), bool(do_layer_norm)
        self.scalar_parameters = Parameter(initial.astype(np.float32), requires_grad=trainable)
        self.gamma = Parameter(np.ones(1, dtype=np.float32), requires_grad=trainable)

    def forward(self, tensors, mask=None):
        tensors = list(tensors)
        if len(tensors) != self.mixture_size:
            raise ValueError(f"ScalarMix: {len(tensors)} tensors given, but this mix has "
                             f"mixture_size={self.mixture_size}")
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1:
            raise ValueError(f"ScalarMix: the layers must share one shape, got {sorted(shapes)}")
        if self.do_layer_norm:
            tensors = [masked_layer_norm(t, mask) for t in tensors]
        s, gamma = self.scalar_parameters, self.gamma
        if s.dtype != tensors[0].dtype:  # mixing float64 layers (a gradient check) in float64
            s, gamma = ops.cast(s, tensors[0].dtype), ops.cast(gamma, tensors[0].dtype)
        return scalar_mix(tensors, s, gamma)

    def weights(self):
        """softmax(s) as a NumPy array: how much of each layer the mix takes."""
        s = self.scalar_parameters.data.astype(np.float64)
        e = np.exp(s - s.max())
        return e / e.sum()

    def extra_repr(self):
        return f"mixture_size={self.mixture_size}" + (", do_layer_norm=True" if self.do_layer_norm else "")


def masked_layer_norm(tensor, mask=None, eps=1e-12):
    """(h - mean) / sqrt(var + eps) with ONE mean and variance over all unmasked elements of h
    (B, T, D) (AllenNLP's `_do_layer_norm`); mask (B, T) of 0/1, None for all."""
    if mask is None:
        mask_array = np.ones(tensor.shape[:-1], dtype=tensor.dtype)
    else:
        mask_array = np.asarray(mask.data if isinstance(mask, Tensor) else mask).astype(tensor.dtype)
        if mask_array.shape != tuple(tensor.shape[:-1]):
            raise ValueError(f"ScalarMix: a mask of shape {tuple(tensor.shape[:-1])} is needed for layers "
                             f"of shape {tuple(tensor.shape)}, got {mask_array.shape}")
    broadcast = Tensor(mask_array[..., None], dtype=tensor.dtype)
    count = float(mask_array.sum()) * tensor.shape[-1]
    mean = ops.sum(tensor * broadcast) / count
    variance = ops.sum(((tensor - mean) * broadcast) ** 2) / count
    return (tensor - mean) / ops.sqrt(variance + eps)
