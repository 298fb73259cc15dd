"""Recurrent layers: `LSTMCell` (one step) and `LSTM` (stacked, optionally bidirectional layers
over a whole sequence), with PyTorch's signatures, parameter names, shapes and initialisation,
so a PyTorch LSTM's `state_dict()` loads into them as it is.

Chapter: "Transfer learning in NLP", the recurrent language models that ELMo (a bidirectional
LM whose layers are mixed per task) and ULMFiT (a fine-tuned LSTM LM) transfer. The math of a
step (eq. LSTM) and of the padding of variable-length sequences lives in `minitl.ops.rnn`.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import backend, ops
from ..backend import xp_of
from ..ops.rnn import lstm_cell, lstm_layer
from ..tensor import Tensor
from . import init
from .module import Module, Parameter


def _uniform_parameter(shape, bound):
    """A float32 parameter drawn uniform in [-bound, bound] (PyTorch's RNN initialisation)."""
    return init.uniform_(Parameter(np.empty(shape, dtype=np.float32)), -bound, bound)


def _zeros_like_state(x, batch, hidden):
    return Tensor._wrap(xp_of(x.data).zeros((batch, hidden), dtype=x.dtype))


class LSTMCell(Module):
    """One LSTM step: `(h', c') = cell(x, (h, c))`. x: (B, input_size) or (input_size,);
    (h, c) default to zeros. Parameters weight_ih (4H, I), weight_hh (4H, H), bias_ih and
    bias_hh (4H,), gates in PyTorch's order i, f, g, o, all uniform in +-1/sqrt(H)."""

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        _check_sizes("LSTMCell", input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = _uniform_parameter((4 * hidden_size, input_size), bound)
        self.weight_hh = _uniform_parameter((4 * hidden_size, hidden_size), bound)
        self.bias_ih = _uniform_parameter((4 * hidden_size,), bound) if bias else None
        self.bias_hh = _uniform_parameter((4 * hidden_size,), bound) if bias else None

    def forward(self, input, hx=None):
        unbatched = input.ndim == 1
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"LSTMCell: expected an input of shape (batch, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(input.shape)}")
        x = ops.unsqueeze(input, 0) if unbatched else input
        if hx is None:
            h = c = _zeros_like_state(x, x.shape[0], self.hidden_size)
        else:
            h, c = _state_pair("LSTMCell", hx)
            if unbatched:
                h, c = ops.unsqueeze(h, 0), ops.unsqueeze(c, 0)
        h, c = lstm_cell(x, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return (h[0], c[0]) if unbatched else (h, c)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")


class LSTM(Module):
    """A stack of `num_layers` LSTM layers over a whole sequence, as torch.nn.LSTM:

        output, (h_n, c_n) = lstm(x, hx=None, lengths=None)

    x is (T, B, input_size), or (B, T, input_size) with `batch_first`, or (T, input_size)
    unbatched. `output` holds the last layer's h at every step, (T, B, D * hidden_size) with
    D = 2 when `bidirectional` (forward and backward halves concatenated); h_n and c_n, each
    (num_layers * D, B, hidden_size), hold every layer's and direction's final state, ordered
    layer 0 forward, layer 0 reverse, layer 1 forward, ... `hx = (h_0, c_0)` of that shape sets
    the initial states (zeros when omitted). `dropout` drops the outputs of every layer but the
    last while training.

    `lengths` (an integer array or list of B values in [1, T]) marks padded sequences, which
    PyTorch packs into a PackedSequence instead: the outputs at padded steps are 0, h_n and c_n
    are the states at each sequence's last real step, and the reverse direction starts there.

    Each layer and direction runs `minitl.ops.rnn.lstm_layer` on the weights that
    `layer_weights(layer, suffix)` returns: a subclass may return changed weights there (a
    dropped-out W_hh, as AWD-LSTM's weight drop does) and keep everything else.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False):
        super().__init__()
        _check_sizes("LSTM", input_size, hidden_size)
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"LSTM: num_layers must be a positive integer, got {num_layers!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"LSTM: dropout must lie in [0, 1], got {dropout}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("LSTM: dropout acts between layers, so with num_layers=1 it does nothing "
                          f"(dropout={dropout})", UserWarning, stacklevel=2)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        bound = 1 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes():
                name = f"l{layer}{suffix}"
                setattr(self, f"weight_ih_{name}", _uniform_parameter((4 * hidden_size, layer_input), bound))
                setattr(self, f"weight_hh_{name}", _uniform_parameter((4 * hidden_size, hidden_size), bound))
                if bias:
                    setattr(self, f"bias_ih_{name}", _uniform_parameter((4 * hidden_size,), bound))
                    setattr(self, f"bias_hh_{name}", _uniform_parameter((4 * hidden_size,), bound))

    def _suffixes(self):
        return ("", "_reverse")[:self.num_directions]

    def layer_weights(self, layer, suffix=""):
        """(weight_ih, weight_hh, bias_ih, bias_hh) of one layer and direction (biases None
        without bias)."""
        name = f"l{layer}{suffix}"
        return tuple(getattr(self, f"{kind}_{name}", None) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def forward(self, input, hx=None, lengths=None):
        if input.ndim not in (2, 3) or input.shape[-1] != self.input_size:
            layout = "(batch, steps" if self.batch_first else "(steps, batch"
            raise ValueError(f"LSTM: expected an input of shape {layout}, {self.input_size}) or "
                             f"(steps, {self.input_size}), got {tuple(input.shape)}")
        unbatched = input.ndim == 2
        if unbatched:
            x = ops.unsqueeze(input, 1)
        else:
            x = ops.transpose(input, 0, 1) if self.batch_first else input
        steps, batch = x.shape[:2]
        states = self._initial_states(x, hx, unbatched)
        lengths = _lengths_array(lengths, x, unbatched)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = ops.dropout(x, self.dropout, self.training)
            outputs = []
            for direction, suffix in enumerate(self._suffixes()):
                h0, c0 = states[layer * self.num_directions + direction]
                out, h, c = lstm_layer(x, h0, c0, *self.layer_weights(layer, suffix), lengths=lengths,
                                       reverse=direction == 1)
                outputs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outputs[0] if len(outputs) == 1 else ops.cat(outputs, dim=2)
        h_n, c_n = ops.stack(h_n), ops.stack(c_n)
        if unbatched:
            return ops.squeeze(x, 1), (ops.squeeze(h_n, 1), ops.squeeze(c_n, 1))
        return (ops.transpose(x, 0, 1) if self.batch_first else x), (h_n, c_n)

    def _initial_states(self, x, hx, unbatched):
        """[(h0, c0)] for every layer and direction, each (B, H): zeros, or the rows of hx."""
        count, batch, hidden = self.num_layers * self.num_directions, x.shape[1], self.hidden_size
        if hx is None:
            zeros = _zeros_like_state(x, batch, hidden)
            return [(zeros, zeros)] * count
        h0, c0 = _state_pair("LSTM", hx)
        expected = (count, hidden) if unbatched else (count, batch, hidden)
        if tuple(h0.shape) != expected or tuple(c0.shape) != expected:
            raise ValueError(f"LSTM: h_0 and c_0 must have shape {expected} (num_layers * num_directions"
                             f"{'' if unbatched else ', batch'}, hidden_size), got {tuple(h0.shape)} and "
                             f"{tuple(c0.shape)}")
        if unbatched:
            h0, c0 = ops.unsqueeze(h0, 1), ops.unsqueeze(c0, 1)
        return [(h0[k], c0[k]) for k in range(count)]

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text


def _check_sizes(name, input_size, hidden_size):
    for what, size in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"{name}: {what} must be a positive integer, got {size!r}")


def _state_pair(name, hx):
    if not (isinstance(hx, (tuple, list)) and len(hx) == 2 and all(isinstance(s, Tensor) for s in hx)):
        raise TypeError(f"{name}: hx must be a pair of tensors (h, c), got {type(hx).__name__}")
    return hx


def _lengths_array(lengths, x, unbatched):
    """`lengths` (a list, an array or a tensor) as an integer array on x's device, or None."""
    if lengths is None:
        return None
    arr = lengths.data if isinstance(lengths, Tensor) else lengths
    if xp_of(arr) is np:  # a list, a NumPy array, or another library's CPU tensor
        arr = np.asarray(arr)
    arr = backend.to_device(arr, x.device)
    if unbatched and arr.ndim == 0:
        arr = arr.reshape(1)
    return arr
