"""Scaled dot-product attention, the heart of the Transformer (chapter: transformers as
foundation models; lesson 8, BERT and GPT).

A query q_i scores every key k_j by their dot product, scaled by 1/sqrt(E) so that the scores'
spread does not grow with the width E; the softmax of a row of scores says how much of each
value v_j the query takes:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(E) + M) V

M is the mask as an additive bias: 0 where query i may attend to key j, -inf where it may not
(a causal mask for GPT, padding for BERT), so that e^-inf = 0 takes the masked keys out of the
softmax. `scaled_dot_product` below is that line; `scaled_dot_product_attention` is PyTorch's
function around it (the mask kinds, checks, dropout, a scale of your own). Multi-head attention
splits the width E into H heads of E/H features (`split_heads`), attends in each head, and joins
the heads again (`merge_heads`); `minitl.nn.MultiheadAttention` puts the projections around it.

A row in which every key is masked has no distribution to take: softmax of -inf everywhere is
0/0. Here such a row gives zero weights and a zero output (and zero gradients), as PyTorch's
`F.scaled_dot_product_attention` does; see `attention_bias`.

With `tl.fastpath.enabled()`, the function runs `minitl/fastpath/attention.py`'s fused version
of the same formula (one graph node, a hand-written backward) when the weights are not asked
for; tests prove the two equal.
"""
from __future__ import annotations

import math

import numpy as np

from .. import fastpath
from ..backend import xp_of
from ..fastpath import attention as fast_attention
from ..tensor import Tensor
from . import dropout, softmax


def scaled_dot_product(query, key, value, bias=None, scale=1.0, dropout_p=0.0):
    """(softmax(query key^T * scale + bias) value, the weights): attention in one line of
    math. query (..., L, E), key (..., S, E), value (..., S, Ev); bias broadcasts to (..., L, S)."""
    # BEGIN EXERCISE attention.scaled_dot_product
    # hint: scores = query @ key^T (swap the last two axes) * scale, + bias if given; weights = dropout(softmax over the keys' axis, dropout_p); return weights @ value, weights
    scores = query @ key.transpose(-2, -1) * scale
    if bias is not None:
        scores = scores + bias
    weights = dropout(softmax(scores, dim=-1), dropout_p)
    return weights @ value, weights
    # END EXERCISE


def split_heads(x, num_heads):
    """(B, L, E) -> (B, H, L, E/H): head h sees features h*E/H up to (h+1)*E/H of each position."""
    batch, length, width = x.shape
    if width % num_heads:
        raise ValueError(f"split_heads: the width {width} does not split into {num_heads} heads")
    # BEGIN EXERCISE attention.split_heads
    # hint: reshape to (B, L, H, E // H), then swap axes 1 and 2 so that the heads come before the positions
    return x.reshape(batch, length, num_heads, width // num_heads).transpose(1, 2)
    # END EXERCISE


def merge_heads(x):
    """(B, H, L, d) -> (B, L, H*d): the inverse of `split_heads`."""
    batch, heads, length, head_dim = x.shape
    # BEGIN EXERCISE attention.merge_heads
    # hint: undo split_heads: swap axes 1 and 2 back to (B, L, H, d), then reshape to (B, L, H * d)
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)
    # END EXERCISE


def attention_bias(attn_mask, is_causal, query, key):
    """The mask as one additive bias over the scores, and the rows that mask blocks entirely.

    attn_mask: None, a boolean mask (True: the query takes part in attention to that key) or a
    float mask added to the scores, broadcastable to (..., L, S). is_causal: query i sees keys
    0..i only (the lower triangle, top-left aligned as in PyTorch). Returns (bias, blocked):
    bias a Tensor (0 / -inf for a boolean mask; a float mask as given, so a learned bias keeps
    its gradient) or None; blocked None, or a boolean array (..., L, 1) marking the rows whose
    every entry is -inf. Their bias is set to 0 (so the softmax stays finite) and the caller
    zeroes their weights and output.
    """
    length, source = query.shape[-2], key.shape[-2]
    xp = xp_of(query.data)
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: give either attn_mask or is_causal=True, "
                             "not both (is_causal builds the lower-triangular mask itself)")
        attn_mask = Tensor._wrap(xp.tri(length, source, 0, dtype=bool))
    if attn_mask is None:
        return None, None
    if not isinstance(attn_mask, Tensor):
        attn_mask = Tensor._wrap(xp.asarray(attn_mask))
    scores_shape = _scores_shape(query, key)
    try:
        full = np.broadcast_shapes(tuple(attn_mask.shape), scores_shape)
    except ValueError:
        full = None
    if full != scores_shape:
        raise ValueError(f"attention: a mask of shape {tuple(attn_mask.shape)} does not broadcast to the "
                         f"scores' shape {scores_shape} (..., L, S)")
    kind = attn_mask.dtype.kind
    if kind == "b":
        bias = xp.where(attn_mask.data, query.dtype.type(0), query.dtype.type(-np.inf))
        blocked = _blocked_rows(bias)
        if blocked is not None:
            bias = xp.where(blocked, query.dtype.type(0), bias)
        return Tensor._wrap(bias), blocked
    if kind != "f":
        raise TypeError(f"attention: attn_mask must be boolean or floating point, got {attn_mask.dtype}")
    if attn_mask.dtype != query.dtype:
        if attn_mask.requires_grad:
            raise TypeError(f"attention: a float attn_mask that requires grad must have the query's dtype "
                            f"{query.dtype}, got {attn_mask.dtype}")
        attn_mask = Tensor._wrap(attn_mask.data.astype(query.dtype))
    blocked = _blocked_rows(attn_mask.data)
    if blocked is not None:
        attn_mask = attn_mask.masked_fill(blocked, 0.0)
    return attn_mask, blocked


def _blocked_rows(bias):
    """(..., L, 1) True where a row of the bias is -inf throughout; None when no row is."""
    xp = xp_of(bias)
    blocked = xp.isneginf(bias).all(axis=-1, keepdims=True)
    return blocked if bool(blocked.any()) else None


def _scores_shape(query, key):
    batch = np.broadcast_shapes(tuple(query.shape[:-2]), tuple(key.shape[:-2]))
    return batch + (query.shape[-2], key.shape[-2])


def _check_inputs(query, key, value):
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention: {name} must be a Tensor, got {type(t).__name__}")
        if t.ndim < 2:
            raise ValueError(f"scaled_dot_product_attention: {name} needs at least 2 dimensions (..., length, "
                             f"features), got shape {tuple(t.shape)}")
        if t.dtype.kind != "f" or t.dtype != query.dtype:
            raise TypeError(f"scaled_dot_product_attention: query, key and value must share one floating-point "
                            f"dtype, got {query.dtype}, {key.dtype}, {value.dtype}")
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(f"scaled_dot_product_attention: query (..., L, E) {tuple(query.shape)} and key "
                         f"(..., S, E) {tuple(key.shape)} need the same feature size E")
    if value.shape[-2] != key.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: key (..., S, E) {tuple(key.shape)} and value "
                         f"(..., S, Ev) {tuple(value.shape)} need the same length S")
    try:
        np.broadcast_shapes(tuple(query.shape[:-2]), tuple(key.shape[:-2]), tuple(value.shape[:-2]))
    except ValueError:
        raise ValueError(f"scaled_dot_product_attention: the batch dimensions of query {tuple(query.shape)}, "
                         f"key {tuple(key.shape)} and value {tuple(value.shape)} do not broadcast") from None


def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
              need_weights=False):
    """`scaled_dot_product_attention` that also returns the weights softmax(...) (after
    dropout, as PyTorch's MultiheadAttention returns them) when `need_weights`, else None."""
    _check_inputs(query, key, value)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must lie in [0, 1], got {dropout_p}")
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    bias, blocked = attention_bias(attn_mask, is_causal, query, key)
    if fastpath.enabled() and not need_weights:
        return fast_attention.fused_attention(query, key, value, bias, blocked, scale, dropout_p), None
    out, weights = scaled_dot_product(query, key, value, bias, scale, dropout_p)
    if blocked is not None:  # rows with no key to attend to: zeros, not the uniform softmax of zeros
        weights = weights.masked_fill(blocked, 0.0)
        out = out.masked_fill(blocked, 0.0)
    return out, (weights if need_weights else None)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                                 scale=None):
    """softmax(query key^T * scale + mask) value, as PyTorch's F.scaled_dot_product_attention.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). attn_mask: boolean
    (True: take part in attention) or float (added to the scores), broadcastable to (..., L, S);
    is_causal: the lower-triangular mask instead (not both). scale defaults to 1/sqrt(E).
    dropout_p drops attention weights (applied whenever > 0, as in PyTorch: pass 0 to evaluate).
    A fully masked row gives zeros, as PyTorch's does.
    """
    out, _ = attention(query, key, value, attn_mask, dropout_p, is_causal, scale)
    return out
