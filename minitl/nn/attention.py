"""Multi-head attention (chapter: transformers as foundation models; lesson 8, BERT and GPT).

Each of H heads projects the inputs to its own queries, keys and values of width d = E/H and
attends with them; the heads' outputs are joined and projected once more:

    head_h = Attention(X_q W_q^h, X_k W_k^h, X_v W_v^h)
    MultiHead(X_q, X_k, X_v) = concat(head_1, ..., head_H) W_o

All heads' W_q^h side by side are one E x E matrix, so the projections are three linear layers
and `split_heads` cuts their outputs into heads. The parameters carry PyTorch's names
(`in_proj_weight` = [W_q; W_k; W_v], `in_proj_bias`, `out_proj.weight`, `out_proj.bias`), so a
PyTorch state_dict loads as it is.

With `tl.fastpath.enabled()`, self-attention that asks for no weights takes the fast path's
`PackedSelfAttention`: one product with the whole in_proj_weight, the heads read as views of
its output (minitl/fastpath/attention.py; tests prove it equal to the path written out here).
"""
from __future__ import annotations

import numpy as np

from .. import fastpath, ops
from ..backend import xp_of
from ..fastpath import attention as fast_attention
from ..ops.attention import attention, merge_heads, split_heads
from ..tensor import Tensor
from . import init
from .layers import Linear
from .module import Module, Parameter


class MultiheadAttention(Module):
    """PyTorch's nn.MultiheadAttention: forward(query, key, value) -> (output, weights).

    Inputs are (L, N, E) (or (N, L, E) with batch_first=True, or unbatched (L, E)); key and
    value may have other widths (kdim, vdim). Masks follow PyTorch's MultiheadAttention, where
    True means "may NOT attend" (the opposite of scaled_dot_product_attention's boolean mask):

    * key_padding_mask (N, S): True at the padding keys of each sequence; or float, added.
    * attn_mask (L, S) or (N*num_heads, L, S): True where query i must not see key j; or float.
    * is_causal=True: the causal mask. PyTorch treats it as a hint and asks for attn_mask too;
      here, without an attn_mask it applies the causal mask itself, and with one the given mask
      applies (as in PyTorch's need_weights path).

    Returns the output in the input's layout and, with need_weights (the default), the
    attention weights (N, L, S) averaged over heads (or (N, num_heads, L, S) with
    average_attn_weights=False); weights are after dropout, as PyTorch returns them. A query
    whose keys are all masked gets zero weights and a zero attention output (PyTorch gives
    NaN in its need_weights path and zeros otherwise).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"MultiheadAttention: embed_dim and num_heads must be positive, got {embed_dim} "
                             f"and {num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError("MultiheadAttention: add_bias_kv and add_zero_attn are not implemented")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must lie in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim = embed_dim // num_heads
        self.batch_first = batch_first

        def weight(*shape):
            return Parameter(np.empty(shape, dtype=np.float32))

        if self._qkv_same_embed_dim:
            self.in_proj_weight = weight(3 * embed_dim, embed_dim)
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.q_proj_weight = weight(embed_dim, embed_dim)
            self.k_proj_weight = weight(embed_dim, self.kdim)
            self.v_proj_weight = weight(embed_dim, self.vdim)
            self.in_proj_weight = None
        self.in_proj_bias = weight(3 * embed_dim) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        self._reset_parameters()

    def _reset_parameters(self):
        """PyTorch's: Xavier-uniform projections, zero biases (out_proj.weight keeps Linear's)."""
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if w is not None:
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False, prefix_key_value=None):
        """prefix_key_value (not in PyTorch; prefix tuning's hook): None, or (P_k, P_v), each
        (P, E) or (N, P, E), keys and values already projected that every query may attend to,
        put in front of the projected keys and values of `key` and `value`."""
        batched = self._check_inputs(query, key, value)
        packed = (fastpath.enabled() and not need_weights and query is key and key is value
                  and self._qkv_same_embed_dim and prefix_key_value is None)
        if not batched:  # (L, E): a batch of one
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = _as_tensor(key_padding_mask).unsqueeze(0)
        elif not self.batch_first:  # (L, N, E) -> (N, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        batch, length, source = query.shape[0], query.shape[1], key.shape[1]
        mask = self._additive_mask(attn_mask, key_padding_mask, is_causal, batch, length, source, query)

        dropout_p = self.dropout if self.training else 0.0
        if packed:  # the fast path: q, k and v from one product, the heads as views (fastpath/attention.py)
            qkv = ops.linear(query, self.in_proj_weight, self.in_proj_bias)
            out = self.out_proj(fast_attention.packed_self_attention(qkv, self.num_heads, mask, dropout_p))
            weights = None  # (none asked for)
        else:
            q, k, v = self.in_projection(query, key, value)
            if prefix_key_value is not None:
                k, v, mask = self._with_prefix(prefix_key_value, k, v, mask)
            heads = [split_heads(t, self.num_heads) for t in (q, k, v)]  # (N, H, L or S, d)
            out, weights = attention(*heads, attn_mask=mask, dropout_p=dropout_p, need_weights=need_weights)
            out = self.out_proj(merge_heads(out))

        if not batched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        return out, (weights if batched else weights.squeeze(0))

    def in_projection(self, query, key, value):
        """q = query W_q^T + b_q, k = key W_k^T + b_k, v = value W_v^T + b_v, where
        in_proj_weight stacks [W_q; W_k; W_v] (and in_proj_bias [b_q; b_k; b_v])."""
        if self._qkv_same_embed_dim:
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        return ops.linear(query, w_q, b_q), ops.linear(key, w_k, b_k), ops.linear(value, w_v, b_v)

    def _with_prefix(self, prefix_key_value, k, v, mask):
        """Prefix tuning: k = [P_k; k], v = [P_v; v] along the sequence, and the mask widened by
        P columns of 0 on the left (no query is kept from the prefix, not even a causal one)."""
        if not (isinstance(prefix_key_value, (tuple, list)) and len(prefix_key_value) == 2):
            raise TypeError("MultiheadAttention: prefix_key_value must be a pair (prefix keys, prefix values)")
        batch = k.shape[0]
        prefixes = []
        for name, p in zip(("keys", "values"), prefix_key_value):
            if not isinstance(p, Tensor) or p.ndim not in (2, 3) or p.shape[-1] != self.embed_dim or (
                    p.ndim == 3 and p.shape[0] != batch):
                raise ValueError(f"MultiheadAttention: prefix {name} must be a Tensor (P, {self.embed_dim}) or "
                                 f"(N={batch}, P, {self.embed_dim}), got "
                                 f"{tuple(p.shape) if isinstance(p, Tensor) else type(p).__name__}")
            prefixes.append(p.expand(batch, *p.shape) if p.ndim == 2 else p)
        prefix_k, prefix_v = prefixes
        if prefix_k.shape[1] != prefix_v.shape[1]:
            raise ValueError(f"MultiheadAttention: {prefix_k.shape[1]} prefix keys but {prefix_v.shape[1]} prefix values")
        k, v = ops.cat([prefix_k.to(k.dtype), k], dim=1), ops.cat([prefix_v.to(v.dtype), v], dim=1)
        if mask is not None:
            zeros = Tensor._wrap(xp_of(mask.data).zeros((*mask.shape[:-1], prefix_k.shape[1]), dtype=mask.dtype))
            mask = ops.cat([zeros, mask], dim=mask.ndim - 1)
        return k, v, mask

    def _check_inputs(self, query, key, value):
        """True for batched inputs (3-D), False for unbatched (2-D); a clear error otherwise."""
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"MultiheadAttention: {name} must be a Tensor, got {type(t).__name__}")
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"MultiheadAttention: query, key and value must all be 3-D (batched) or all 2-D "
                             f"(unbatched), got shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        for name, t, width in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if t.shape[-1] != width:
                raise ValueError(f"MultiheadAttention: {name} of shape {tuple(t.shape)} should have {width} features")
        batched = query.ndim == 3
        batch_axis, length_axis = (0, 1) if (self.batch_first or not batched) else (1, 0)
        if batched and not query.shape[batch_axis] == key.shape[batch_axis] == value.shape[batch_axis]:
            raise ValueError(f"MultiheadAttention: query, key and value have different batch sizes: shapes "
                             f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)} (batch_first={self.batch_first})")
        if key.shape[length_axis] != value.shape[length_axis]:
            raise ValueError(f"MultiheadAttention: key {tuple(key.shape)} and value {tuple(value.shape)} must have "
                             f"the same length")
        return batched

    def _additive_mask(self, attn_mask, key_padding_mask, is_causal, batch, length, source, like):
        """attn_mask and key_padding_mask as one float mask added to the scores (-inf where
        PyTorch's boolean masks say True), broadcastable to (N, H, L, S); None without masks."""
        if is_causal and attn_mask is None:
            above_diagonal = ~xp_of(like.data).tri(length, source, 0, dtype=bool)
            attn_mask = Tensor._wrap(above_diagonal)
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, "attn_mask", like)
            if mask.ndim == 3 and tuple(mask.shape) == (batch * self.num_heads, length, source):
                mask = mask.reshape(batch, self.num_heads, length, source)
            elif tuple(mask.shape) != (length, source):
                raise ValueError(f"MultiheadAttention: attn_mask of shape {tuple(mask.shape)} should be (L, S) = "
                                 f"{(length, source)} or (N * num_heads, L, S) = "
                                 f"{(batch * self.num_heads, length, source)}")
        if key_padding_mask is not None:
            padding = _additive(key_padding_mask, "key_padding_mask", like)
            if tuple(padding.shape) != (batch, source):
                raise ValueError(f"MultiheadAttention: key_padding_mask of shape {tuple(padding.shape)} should be "
                                 f"(N, S) = {(batch, source)}")
            padding = padding.reshape(batch, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor._wrap(np.asarray(x))


def _additive(mask, name, like):
    """A PyTorch-style mask as a float Tensor of `like`'s dtype: a boolean True becomes -inf (the
    key is hidden), False 0; a float mask is kept (cast to the dtype)."""
    mask = _as_tensor(mask)
    kind = mask.dtype.kind
    if kind == "b":
        xp = xp_of(mask.data)
        return Tensor._wrap(xp.where(mask.data, like.dtype.type(-np.inf), like.dtype.type(0)))
    if kind != "f":
        raise TypeError(f"MultiheadAttention: {name} must be boolean or floating point, got {mask.dtype}")
    return mask if mask.dtype == like.dtype else mask.to(like.dtype)
