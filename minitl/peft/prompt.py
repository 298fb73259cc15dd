"""Prompt tuning and prefix tuning (chapter: parameter-efficient fine-tuning).

Both leave every weight of the model frozen and learn only vectors the model reads:

* Prompt tuning (Lester et al. 2021): P virtual tokens, learned vectors of the model's width,
  put in front of the sequence entering the first Transformer layer: X' = [P; X]. Their
  outputs are dropped again at the top, so the rest of the model sees its usual positions.
* Prefix tuning (Li and Liang 2021): P learned keys and values in front of the keys and values
  of *every* attention layer: head = softmax(q [P_k; K]^T / sqrt(d)) [P_v; V]. Optionally they
  are made by a small MLP from a P x d embedding (`prefix_projection`), which trains more
  stably; after training only its output is needed.

The parameters sit in `prompt_encoder[adapter_name]` of the PeftModel, with PEFT's names
(`prompt_encoder.default.embedding.weight`, `...transform.0.weight`).
"""
from __future__ import annotations

from .. import nn, ops
from ..backend import xp_of
from ..tensor import Tensor


def prepend_prompt(prompt, x):
    """[P; x]: the virtual tokens prompt (P, d) in front of every sequence of x (B, L, d)."""
    # BEGIN EXERCISE peft.prepend_prompt
    # hint: tl.cat([prompt expanded to (B, P, d), x], dim=1): the same P vectors in front of every sequence
    return ops.cat([prompt.expand(x.shape[0], *prompt.shape), x], dim=1)
    # END EXERCISE


class PromptEmbedding(nn.Module):
    """The P virtual tokens of prompt tuning: an Embedding (P, d), N(0, 1) as PEFT's RANDOM init."""

    def __init__(self, num_virtual_tokens, token_dim):
        super().__init__()
        self.embedding = nn.Embedding(num_virtual_tokens, token_dim)

    def forward(self):
        return self.embedding.weight


class PrefixEncoder(nn.Module):
    """The prefixes of all L attention layers: forward() -> (P, L * 2 * d), layer l's keys in
    columns 2ld..(2l+1)d and its values next. Without projection an Embedding of that width; with
    it Embedding(P, d) -> Linear(d, h) - tanh - Linear(h, L * 2 * d)."""

    def __init__(self, num_virtual_tokens, token_dim, num_layers, prefix_projection=False, encoder_hidden_size=None):
        super().__init__()
        self.token_dim, self.num_layers = token_dim, num_layers
        self.prefix_projection = prefix_projection
        width = num_layers * 2 * token_dim
        if prefix_projection:
            hidden = encoder_hidden_size or token_dim
            self.embedding = nn.Embedding(num_virtual_tokens, token_dim)
            self.transform = nn.Sequential(nn.Linear(token_dim, hidden), nn.Tanh(), nn.Linear(hidden, width))
        else:
            self.embedding = nn.Embedding(num_virtual_tokens, width)

    def forward(self):
        prefix = self.embedding.weight
        return self.transform(prefix) if self.prefix_projection else prefix

    def key_value(self, layer_index, prefixes=None):
        """(P_k, P_v), each (P, d), of attention layer `layer_index`."""
        prefixes = self() if prefixes is None else prefixes
        start = 2 * layer_index * self.token_dim
        return prefixes[:, start:start + self.token_dim], prefixes[:, start + self.token_dim:start + 2 * self.token_dim]


class _PromptLearningWrapper(nn.Module):
    """A frozen `base_layer` that asks its PeftModel (held without registering it, so it adds
    no parameter names) for the active prompt encoder; None when the adapters are off."""

    def __init__(self, base_layer, peft_model):
        super().__init__()
        self.base_layer = base_layer
        object.__setattr__(self, "_peft_model", peft_model)

    def active_encoder(self):
        return self._peft_model.active_prompt_encoder()


class PromptedEncoder(_PromptLearningWrapper):
    """Prompt tuning around an nn.TransformerEncoder (batch first): its input becomes [P; X], the
    padding mask gets P columns of "not padding", and the P outputs of the virtual tokens are
    dropped, so the model above reads (B, L, d) as before."""

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        encoder = self.active_encoder()
        if encoder is None:
            return self.base_layer(src, mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        if mask is not None:
            raise ValueError("prompt tuning: an explicit attention mask over the positions is not supported "
                             "(a padding mask and is_causal are)")
        prompt = encoder()
        count = prompt.shape[0]
        x = prepend_prompt(prompt.to(src.dtype), src)
        if src_key_padding_mask is not None:
            src_key_padding_mask = widen_padding_mask(src_key_padding_mask, count)
        out = self.base_layer(x, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        return out[:, count:]


def widen_padding_mask(padding, count):
    """A key padding mask (B, S), boolean (True: padding) or float (added), with `count` columns of
    "a real key" in front."""
    data = padding.data if isinstance(padding, Tensor) else padding
    xp = xp_of(data)
    data = xp.asarray(data)
    front = xp.zeros((data.shape[0], count), dtype=data.dtype)
    return xp.concatenate([front, data], axis=1)


class PrefixAttention(_PromptLearningWrapper):
    """Prefix tuning around an nn.MultiheadAttention: the layer's learned keys and values are put
    in front of the projected keys and values (MultiheadAttention's prefix_key_value)."""

    def __init__(self, base_layer, peft_model, layer_index):
        super().__init__(base_layer, peft_model)
        self.layer_index = layer_index

    def forward(self, query, key, value, **kwargs):
        encoder = self.active_encoder()
        if encoder is not None:
            prefix_k, prefix_v = encoder.key_value(self.layer_index)
            kwargs["prefix_key_value"] = (prefix_k.to(query.dtype), prefix_v.to(query.dtype))
        return self.base_layer(query, key, value, **kwargs)
