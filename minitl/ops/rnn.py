"""The LSTM: one cell step as a `Function`, and a layer that runs the cell over a sequence.

Chapter: "Transfer learning in NLP", the sequence models under ELMo and ULMFiT. One step of
the LSTM reads the input x_t and the previous state (h, c), and computes all four gates from
ONE pre-activation of shape (B, 4H), in PyTorch's gate order i, f, g, o (eq. LSTM):

    a = x W_ih^T + h W_hh^T + b_ih + b_hh,      a = [a_i | a_f | a_g | a_o]
    i = sigma(a_i)   f = sigma(a_f)   g = tanh(a_g)   o = sigma(a_o)
    c' = f * c + i * g
    h' = o * tanh(c')

The input gate i decides how much of the candidate g enters the cell, the forget gate f how
much of the old cell c stays, the output gate o how much of the cell is shown as h'. The cell
path c -> c' is a sum, not a product of squashing functions: that is why gradients survive
over many steps (backpropagation through time, BPTT), where a plain RNN's vanish.

Sequences of different lengths come padded to one length T with a `lengths` array (B,): at a
padded step the state is carried unchanged and the output is 0, so padding reaches neither the
outputs nor the final states, and the reverse direction starts at each sequence's own last real
step. (PyTorch packs such sequences into a PackedSequence; a mask does the same job here.)

This file is the reference, a graph of T cell nodes per layer. `lstm_layer` runs the version in
`minitl/fastpath/rnn.py` (the whole sequence in one node: one input projection for all steps,
BPTT inside one backward) while `tl.fastpath.enabled()`; tests prove the two equal.
"""
from __future__ import annotations

from .. import backend, fastpath
from ..backend import xp_of
from ..tensor import Function
from .elementwise import stable_sigmoid as sigmoid


def check_cell_inputs(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """Clear errors for a step whose arrays don't fit together (B rows, I inputs, H units, one
    floating-point dtype)."""
    if x.ndim != 2 or h.ndim != 2 or c.ndim != 2:
        raise ValueError(f"lstm cell: input, h and c must be 2-D (batch, features); got shapes "
                         f"{tuple(x.shape)}, {tuple(h.shape)}, {tuple(c.shape)}")
    arrays = {"input": x, "h": h, "c": c, "weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1 or x.dtype.kind != "f":
        raise TypeError("lstm: input, states and weights must share one floating-point dtype; got "
                        + ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
                        + " (convert with .to(dtype), or the module with .double() / .float())")
    hidden = w_hh.shape[1]
    expected = {"weight_ih": (4 * hidden, x.shape[1]), "weight_hh": (4 * hidden, hidden),
                "h": (x.shape[0], hidden), "c": (x.shape[0], hidden)}
    given = {"weight_ih": w_ih.shape, "weight_hh": w_hh.shape, "h": h.shape, "c": c.shape}
    if b_ih is not None:
        expected.update(bias_ih=(4 * hidden,), bias_hh=(4 * hidden,))
        given.update(bias_ih=b_ih.shape, bias_hh=b_hh.shape)
    wrong = [f"{name} {tuple(given[name])} (expected {shape})" for name, shape in expected.items()
             if tuple(given[name]) != shape]
    if wrong:
        raise ValueError(f"lstm cell: input of shape {tuple(x.shape)} with hidden size {hidden}: "
                         + ", ".join(wrong))


class LSTMCellFunction(Function):
    """One LSTM step (eq. LSTM above). A Function has one output, so h' and c' come back
    stacked as one (2, B, H) array; `lstm_cell` hands them out as two tensors.

    The backward pass gets dh' and dc' (c' reaches the loss through h' and through the next
    step) and runs the chain rule back through the equations:

        dc = dh' * o * (1 - tanh(c')^2) + dc'
        do = dh' * tanh(c'),  di = dc * g,  dg = dc * i,  df = dc * c,  dc_prev = dc * f
        da = [di * i(1 - i) | df * f(1 - f) | dg * (1 - g^2) | do * o(1 - o)]
        dx = da W_ih,  dh_prev = da W_hh,  dW_ih = da^T x,  dW_hh = da^T h,  db = sum of da's rows
    """

    @staticmethod
    def forward(ctx, x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
        check_cell_inputs(x, h, c, w_ih, w_hh, b_ih, b_hh)
        xp = xp_of(x)
        # BEGIN EXERCISE rnn.lstm_cell_forward
        # hint: a = x W_ih^T + h W_hh^T (+ b_ih + b_hh); split a in 4 along axis 1 into a_i, a_f, a_g, a_o;
        # hint: i, f, o = sigmoid, g = tanh; c' = f*c + i*g; h' = o*tanh(c')
        a = backend.matmul(x, w_ih.T) + backend.matmul(h, w_hh.T)
        if b_ih is not None:
            a = a + b_ih + b_hh
        a_i, a_f, a_g, a_o = xp.split(a, 4, axis=1)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), xp.tanh(a_g), sigmoid(a_o)
        c_next = f * c + i * g
        tanh_c = xp.tanh(c_next)
        h_next = o * tanh_c
        # END EXERCISE
        ctx.save_for_backward(x, h, c, w_ih, w_hh, i, f, g, o, tanh_c)
        ctx.has_bias = b_ih is not None
        return xp.stack([h_next, c_next])

    @staticmethod
    def backward(ctx, grad):
        x, h, c, w_ih, w_hh, i, f, g, o, tanh_c = ctx.saved_tensors
        xp = xp_of(grad)
        dh, dc_next = grad[0], grad[1]  # the gradients of h' and of c'
        # BEGIN EXERCISE rnn.lstm_cell_backward
        # hint: dc = dh o (1 - tanh^2 c') + dc'; da = [dc g, dc c, dc i, dh tanh c'] times the
        # hint: derivatives of gates i, f, g, o; dx = da W_ih, dh = da W_hh, dc f;
        # hint: dW_ih = da^T x, dW_hh = da^T h, db = sum da
        dc = dh * o * (1 - tanh_c * tanh_c) + dc_next
        do = dh * tanh_c
        di, dg, df = dc * g, dc * i, dc * c
        da = xp.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1)
        dx, dh_prev, dc_prev = backend.matmul(da, w_ih), backend.matmul(da, w_hh), dc * f
        dw_ih, dw_hh, db = backend.matmul(da.T, x), backend.matmul(da.T, h), da.sum(axis=0)
        # END EXERCISE
        if ctx.has_bias:
            return dx, dh_prev, dc_prev, dw_ih, dw_hh, db, db
        return dx, dh_prev, dc_prev, dw_ih, dw_hh


def lstm_cell(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step on tensors: returns (h', c'). Biases come both or not at all."""
    if (b_ih is None) != (b_hh is None):
        raise ValueError("lstm cell: give both biases (bias_ih and bias_hh) or neither")
    biases = () if b_ih is None else (b_ih, b_hh)
    hc = LSTMCellFunction.apply(x, h, c, w_ih, w_hh, *biases)
    return hc[0], hc[1]


def step_masks(lengths, steps, xp):
    """For each time step t, the (B, 1) boolean mask of the sequences that are still running
    (t < length), or None at a step where all of them are: there nothing needs masking."""
    if lengths is None:
        return [None] * steps
    running = xp.arange(steps)[:, None] < lengths[None, :]  # (T, B)
    return [None if bool(running[t].all()) else running[t][:, None] for t in range(steps)]


def check_lengths(lengths, steps, batch):
    """`lengths` as an integer array (B,) of values in [1, T], or a clear error."""
    if lengths is None:
        return None
    if lengths.ndim != 1 or lengths.shape[0] != batch or lengths.dtype.kind not in "iu":
        raise ValueError(f"lstm: lengths must be integers of shape ({batch},), one per sequence; got "
                         f"dtype {lengths.dtype} shape {tuple(lengths.shape)}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
        raise ValueError(f"lstm: every length must lie in [1, {steps}] (the padded sequence length); got "
                         f"values from {int(lengths.min())} to {int(lengths.max())}")
    return lengths


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False):
    """One LSTM layer in one direction over a padded sequence.

    x: (T, B, I) tensor; h0, c0: (B, H) tensors; lengths: None or an int array (B,) (see the
    module docstring). Returns (output (T, B, H), h_n (B, H), c_n (B, H)). `reverse=True` reads
    the sequence from its last real step back to the first.
    """
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"lstm: the input must be 3-D (steps, batch, features) with at least one step, "
                         f"got shape {tuple(x.shape)}")
    if (b_ih is None) != (b_hh is None):
        raise ValueError("lstm: give both biases (bias_ih and bias_hh) or neither")
    biases = () if b_ih is None else (b_ih.data, b_hh.data)
    check_cell_inputs(x.data[0], h0.data, c0.data, w_ih.data, w_hh.data, *biases)
    lengths = check_lengths(lengths, x.shape[0], x.shape[1])
    if fastpath.enabled():
        from ..fastpath import rnn as fast_rnn
        return fast_rnn.lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse)
    from . import getitem, stack, where  # the ops' wrappers (this module is imported by them)

    steps = x.shape[0]
    masks = step_masks(lengths, steps, xp_of(x.data))
    h, c = h0, c0
    outputs = [None] * steps
    for t in (reversed(range(steps)) if reverse else range(steps)):
        h_next, c_next = lstm_cell(getitem(x, t), h, c, w_ih, w_hh, b_ih, b_hh)
        if masks[t] is None:
            h, c, outputs[t] = h_next, c_next, h_next
        else:  # padded rows keep their state and output 0
            running = masks[t]
            h, c = where(running, h_next, h), where(running, c_next, c)
            outputs[t] = where(running, h_next, 0.0)
    return stack(outputs), h, c

