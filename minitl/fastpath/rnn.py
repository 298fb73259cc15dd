"""The fast LSTM layer: the reference `minitl.ops.rnn.lstm_layer` as ONE graph node per layer
and direction, instead of a cell node (and its slicing, masking and stacking nodes) per step.

Same math as the reference cell (eq. LSTM there), organised for the machine:

* the input projection of all T steps is one matrix product, x W_ih^T + b for the (T*B, I)
  matrix of every step's input, written into a gate buffer (T, B, 4H) that the recurrence
  then completes in place, step by step, with h W_hh^T and the gate nonlinearities;
* the backward pass is BPTT inside one Function: the per-step work is only what the recurrence
  forces (dh W_hh and the gate derivatives); the gate gradients of all steps are collected in
  one (T, B, 4H) buffer, so dW_ih = dA^T X, dW_hh = dA^T H_prev, db and dX are each ONE
  product or sum over all steps.

Padded sequences (`lengths`) are handled as in the reference: a padded step keeps the state
and outputs 0. tests/test_rnn.py proves this layer equal to the reference in float64.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import backend
from ..backend import xp_of
from ..tensor import Function

_blas_threads = None  # threadpoolctl's controller, found once
# Per-step products up to this many multiply-adds (B * H * 4H) run on one BLAS thread: the LM of
# benchmarks/bench_sequence.py has 2^23 (B = 32, H = 256); far larger ones gain from threads.
SMALL_PRODUCT = 1 << 25


def blas_threads_for(xp, batch, hidden):
    """A context in which NumPy's BLAS runs on one thread while the recurrence's products are
    small (on a GPU, or for large products, nothing changes).

    The recurrence's products, (B, H) @ (H, 4H) per step, come one after the other. Waking and
    syncing BLAS's threads costs more than such a product: on the busy 2-core machine one
    (32, 256) @ (256, 1024) took 0.7 ms on one thread and 15-60 ms on two. The big products
    over all steps (x W_ih^T, dX, dW) still run on every thread.
    """
    global _blas_threads
    if xp is not np or batch * hidden * 4 * hidden > SMALL_PRODUCT:
        return contextlib.nullcontext()
    if _blas_threads is None:
        from threadpoolctl import ThreadpoolController
        _blas_threads = ThreadpoolController()
    return _blas_threads.limit(limits=1, user_api="blas")


def sigmoid_(a):
    """a = 1 / (1 + e^-a), in place (e^-a overflowing to inf gives the right limit, 0)."""
    xp = xp_of(a)
    xp.negative(a, out=a)
    xp.exp(a, out=a)
    a += 1
    xp.reciprocal(a, out=a)


def run_steps(order, gates, h, c, w_hh_t, running, result, h_prev, c_prev, tanh_c):
    """The forward recurrence, with w_hh_t = W_hh^T (H, 4H). gates[t] holds x_t W_ih^T + b on
    entry and the activations i, f, g, o on exit; result[t] receives the output, h_prev[t] and
    c_prev[t] the state the step starts from, tanh_c[t] = tanh(c_t). Returns the final (h, c)."""
    xp = xp_of(gates)
    hidden = h_prev.shape[2]
    for t in order:
        h_prev[t], c_prev[t] = h, c
        a = gates[t]
        a += backend.matmul(h, w_hh_t)
        sigmoid_(a[:, :2 * hidden])      # i, f
        sigmoid_(a[:, 3 * hidden:])      # o
        g = a[:, 2 * hidden:3 * hidden]
        xp.tanh(g, out=g)
        i, f, o = a[:, :hidden], a[:, hidden:2 * hidden], a[:, 3 * hidden:]
        c_next = f * c
        c_next += i * g
        xp.tanh(c_next, out=tanh_c[t])
        out = result[t]
        xp.multiply(o, tanh_c[t], out=out)
        if running is None:
            h, c = out, c_next
        else:  # padded rows keep their state and output 0
            m = running[t]
            h, c = xp.where(m, out, h), xp.where(m, c_next, c)
            out *= m
    return h, c


def bptt(order, d_out, dh, dc, d_gates, gates, tanh_c, c_prev, running, w_hh):
    """Backpropagation through time, last step first: writes each step's gate gradient dA_t
    into d_gates[t] and returns the gradients of the initial (h, c)."""
    xp = xp_of(gates)
    hidden = tanh_c.shape[2]
    for t in reversed(order):
        a = gates[t]
        i, f, g, o = a[:, :hidden], a[:, hidden:2 * hidden], a[:, 2 * hidden:3 * hidden], a[:, 3 * hidden:]
        th = tanh_c[t]
        dh_new = d_out[t] + dh
        dc_new = dc
        if running is not None:  # a padded row passes its state's gradient straight back
            m = running[t]
            dh_new, dc_new = dh_new * m, dc * m
            dh_keep, dc_keep = dh * ~m, dc * ~m
        dcell = dh_new * o
        dcell *= 1 - th * th
        dcell += dc_new
        da = d_gates[t]
        da_i, da_f, da_g, da_o = (da[:, :hidden], da[:, hidden:2 * hidden],
                                  da[:, 2 * hidden:3 * hidden], da[:, 3 * hidden:])
        # d(gate) times the gate's derivative: sigma' = s (1 - s), tanh' = 1 - g^2
        xp.multiply(dcell, g, out=da_i)
        da_i *= i
        da_i *= 1 - i
        xp.multiply(dcell, c_prev[t], out=da_f)
        da_f *= f
        da_f *= 1 - f
        xp.multiply(dcell, i, out=da_g)
        da_g *= 1 - g * g
        xp.multiply(dh_new, th, out=da_o)
        da_o *= o
        da_o *= 1 - o
        dh = backend.matmul(da, w_hh)
        dc = dcell * f
        if running is not None:
            dh += dh_keep
            dc += dc_keep
    return dh, dc


class LSTMLayer(Function):
    """A whole LSTM layer in one direction. x: (T, B, I); h0, c0: (B, H). Returns the outputs
    (T, B, H) with h_n and c_n appended as rows T and T + 1: one (T + 2, B, H) array, since a
    Function has one output (`lstm_layer` slices it)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False):
        xp = xp_of(x)
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        # every step's input projection in one product; the recurrence adds h W_hh^T in place
        x_rows = x.reshape(steps * batch, -1)  # a copy only when x is a strided view (batch_first)
        gates = backend.matmul(x_rows, w_ih.T)
        if b_ih is not None:
            gates += b_ih + b_hh
        gates = gates.reshape(steps, batch, 4 * hidden)
        result = xp.empty((steps + 2, batch, hidden), dtype=gates.dtype)
        h_prev = xp.empty((steps, batch, hidden), dtype=gates.dtype)
        c_prev, tanh_c = xp.empty_like(h_prev), xp.empty_like(h_prev)
        running = None if lengths is None else xp.arange(steps)[:, None, None] < lengths[None, :, None]
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        # W_hh^T copied into contiguous memory once: on one thread the per-step (32, 256) @ (256, 1024)
        # took 0.5 ms instead of 0.75 ms with the transposed view
        w_hh_t = xp.ascontiguousarray(w_hh.T)
        with np.errstate(over="ignore"), blas_threads_for(xp, batch, hidden):
            h, c = run_steps(order, gates, h0, c0, w_hh_t, running, result, h_prev, c_prev, tanh_c)
        result[steps], result[steps + 1] = h, c
        ctx.save_for_backward(x_rows, w_ih, w_hh, gates, h_prev, c_prev, tanh_c, running)
        ctx.order, ctx.has_bias = order, b_ih is not None
        return result

    @staticmethod
    def backward(ctx, grad):
        x_rows, w_ih, w_hh, gates, h_prev, c_prev, tanh_c, running = ctx.saved_tensors
        xp = xp_of(grad)
        steps, batch, hidden = h_prev.shape
        d_gates = xp.empty_like(gates)  # the gate buffer stays intact for another backward
        with blas_threads_for(xp, batch, hidden):
            dh, dc = bptt(ctx.order, grad[:steps], grad[steps], grad[steps + 1], d_gates, gates, tanh_c,
                          c_prev, running, w_hh)
        # the products over all steps at once: dX = dA W_ih, dW_ih = dA^T X, dW_hh = dA^T H_prev
        needs = ctx.needs_input_grad
        rows = d_gates.reshape(steps * batch, -1)
        dx = backend.matmul(rows, w_ih).reshape(steps, batch, -1) if needs[0] else None
        dw_ih = backend.matmul(rows.T, x_rows) if needs[3] else None
        dw_hh = backend.matmul(rows.T, h_prev.reshape(steps * batch, -1)) if needs[4] else None
        grads = (dx, dh if needs[1] else None, dc if needs[2] else None, dw_ih, dw_hh)
        if not ctx.has_bias:
            return grads
        db = rows.sum(axis=0) if needs[5] or needs[6] else None
        return grads + (db, db)


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False):
    """`minitl.ops.rnn.lstm_layer` as one node: returns (output (T, B, H), h_n, c_n)."""
    biases = () if b_ih is None else (b_ih, b_hh)
    packed = LSTMLayer.apply(x, h0, c0, w_ih, w_hh, *biases, lengths=lengths, reverse=reverse)
    steps = x.shape[0]
    return packed[:steps], packed[steps], packed[steps + 1]
