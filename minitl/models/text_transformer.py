"""What mini-BERT and mini-GPT share (chapter: transformers as foundation models; lesson 8).

Both are the same machine: a token and a position embedding, a stack of Transformer encoder
layers (`tl.nn.TransformerEncoderLayer`) and a language-model head whose output matrix *is* the
token embedding (weight tying: one Parameter, E, read at the input and written at the output):

    x_0 = E[w_t] + P[t]                          token + position embeddings   (B, L, d)
    x_l = Layer_l(x_(l-1))                       l = 1..N, attention + MLP
    logits_t = head(x_N,t) E^T (+ b)             a distribution over the V subwords

What differs is which tokens a position may attend to, and so what it is trained to predict:

* BERT (`bert.py`): every token sees every other (bidirectional), padding keys masked out;
  trained to predict tokens hidden behind [MASK] (masked LM). Post-norm layers, a LayerNorm
  on the embeddings, BERT's head transform (dense, GELU, LayerNorm) before the tied decoder.
* GPT (`gpt.py`): token t sees tokens 0..t only (causal mask); trained to predict token t+1
  (causal LM), so it can write text. Pre-norm layers and a final LayerNorm (GPT-2).

The interface, which the adaptation methods (LoRA, adapters, prompt and prefix tuning) and
CLIP's text encoder build on:

    hidden = model(input_ids, attention_mask)        ids (B, L) and 1/0 padding mask in, (B, L, d) out
    x = model.embed(input_ids)                       the embedding step alone: E[w_t], (B, L, d)
    hidden = model(inputs_embeds=x, attention_mask=m)  the rest: + P[t], the encoder
    hidden, pooled = model.encode(input_ids, attention_mask)   per-token and per-text features

`embed` is the token lookup only; the position embedding is added by `forward`, so prompt
tuning can prepend virtual tokens to `embed(ids)` (and ones to the mask) and every position,
virtual or not, gets its P[t]. The layers are the list `model.encoder.layers`, each with
PyTorch's names (`self_attn`, `linear1`, `linear2`, `norm1`, `norm2`); `model.embeddings`
holds `.token` (E) and `.position` (P). `TextClassifier` puts a linear head on the pooled feature.
"""
from __future__ import annotations

import numpy as np

from .. import nn, ops
from ..backend import xp_of
from ..tensor import Tensor

PAD_ID = 0  # the tokenizer's [PAD] (minitl.data.text.subword): padding, never attended to
INIT_STD = 0.02  # BERT's and GPT-2's initialisation: N(0, 0.02^2) for every weight matrix
POOLINGS = ("cls", "mean", "last")


class TextEmbeddings(nn.Module):
    """x_t = E[w_t] + P[t], then (BERT) LayerNorm, then dropout. `token` is E (V, d), `position`
    is P (max_len, d), both learned."""

    def __init__(self, vocab_size, d_model, max_len, dropout=0.1, layer_norm=False):
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.norm = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.max_len = max_len

    def forward(self, input_ids=None, inputs_embeds=None):
        x = self.token(input_ids) if inputs_embeds is None else inputs_embeds
        length = x.shape[1]
        if length > self.max_len:
            raise ValueError(f"a sequence of {length} tokens is longer than the model's {self.max_len} positions; "
                             f"truncate it (the tokenizer's max_length) or build the model with a larger max_len")
        positions = xp_of(x.data).arange(length)
        return self.dropout(self.norm(x + self.position(positions)))


class TextTransformer(nn.Module):
    """Embeddings, a TransformerEncoder and a tied LM head; BERT and GPT are its two settings.

    forward(input_ids, attention_mask=None, inputs_embeds=None) -> hidden states (B, L, d), the
    per-token features. attention_mask (B, L) is 1 (True) on real tokens, 0 on padding, as the
    tokenizer returns it; without one, every [PAD] (id 0) of input_ids counts as padding.
    """

    causal = False          # GPT: position t attends to 0..t only
    default_pooling = "cls"

    def __init__(self, vocab_size=8000, max_len=64, d_model=128, num_layers=4, num_heads=4,
                 dim_feedforward=512, dropout=0.1, norm_first=False):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("max_len", max_len), ("d_model", d_model),
                            ("num_layers", num_layers), ("num_heads", num_heads),
                            ("dim_feedforward", dim_feedforward)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {value!r}")
        self.config = dict(vocab_size=int(vocab_size), max_len=int(max_len), d_model=int(d_model),
                           num_layers=int(num_layers), num_heads=int(num_heads),
                           dim_feedforward=int(dim_feedforward), dropout=float(dropout))
        self.embeddings = TextEmbeddings(vocab_size, d_model, max_len, dropout, layer_norm=not norm_first)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward, dropout, activation="gelu",
                                           batch_first=True, norm_first=norm_first)
        # pre-norm leaves the last layer's sum unnormalised: GPT-2's final LayerNorm does it
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model) if norm_first else None)
        self.lm_head = self._make_lm_head(d_model)
        self._init_weights()

    def _make_lm_head(self, d_model):
        raise NotImplementedError

    def _init_weights(self):
        """N(0, 0.02^2) for every weight matrix and embedding, zero biases, LayerNorm (1, 0), as
        BERT and GPT-2 do; each layer draws its own weights (TransformerEncoder's copies start
        equal)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=INIT_STD)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.MultiheadAttention):
                nn.init.normal_(module.in_proj_weight, std=INIT_STD)
                nn.init.zeros_(module.in_proj_bias)

    # --- the pieces the chapter's adaptation methods reach for -------------------------------
    def embed(self, input_ids):
        """The embedding step alone: token ids (B, L) -> E[w_t] (B, L, d), no positions yet
        (`forward(inputs_embeds=...)` adds them and runs the encoder)."""
        return self.embeddings.token(_as_ids(input_ids, type(self).__name__))

    def get_input_embeddings(self):
        """The token embedding E (an Embedding (V, d)); the LM head's decoder shares its weight."""
        return self.embeddings.token

    def blocks(self):
        """From the input up, head last (what `tl.transfer.freeze_lower` counts): the
        embeddings, each layer, then the top: the final norm (GPT) with the LM head."""
        return [self.embeddings, *self.encoder.layers, self.top_block(self.lm_head)]

    def top_block(self, head):
        """The final norm (GPT's; BERT has none) and `head` as one block."""
        parts = [m for m in (self.encoder.norm, head) if m is not None]
        return parts[0] if len(parts) == 1 else nn.ModuleList(parts)

    # --- forward -----------------------------------------------------------------------------
    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(f"{type(self).__name__}: give exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            input_ids = _as_ids(input_ids, type(self).__name__)
        padding = self.padding_mask(input_ids, attention_mask, inputs_embeds)
        x = self.embeddings(input_ids, inputs_embeds)
        # PyTorch's key padding mask: True where a key is padding and must not be attended to
        return self.encoder(x, src_key_padding_mask=padding, is_causal=self.causal)

    def padding_mask(self, input_ids, attention_mask, inputs_embeds=None):
        """(B, L) boolean, True at padding, or None when nothing is padded."""
        reference = inputs_embeds.shape[:2] if input_ids is None else tuple(input_ids.shape)
        if attention_mask is None:
            if input_ids is None:
                return None
            padding = input_ids.data == PAD_ID
        else:
            mask = attention_mask.data if isinstance(attention_mask, Tensor) else np.asarray(attention_mask)
            if tuple(mask.shape) != tuple(reference):
                raise ValueError(f"attention_mask of shape {tuple(mask.shape)} should match the input's (B, L) = "
                                 f"{tuple(reference)}")
            padding = mask == 0
        return padding if bool(padding.any()) else None

    def lm_logits(self, hidden):
        """The language-model head on hidden states (..., d) -> logits (..., V)."""
        if self.lm_head is None:
            raise RuntimeError(f"this {type(self).__name__} has no LM head (a TextClassifier took it off)")
        return self.lm_head(hidden)

    def encode(self, input_ids=None, attention_mask=None, inputs_embeds=None, pooling=None):
        """(per-token features (B, L, d), one pooled feature per text (B, d)). pooling: "cls"
        (the first token's state), "mean" (the mean over real tokens) or "last" (the state of
        the last real token: in a causal model the only one that has read the whole text);
        the model's default when None (BERT "cls", GPT "last")."""
        hidden = self(input_ids, attention_mask, inputs_embeds)
        if attention_mask is None and input_ids is not None:
            attention_mask = _as_ids(input_ids, type(self).__name__).data != PAD_ID
        return hidden, pool(hidden, attention_mask, pooling or self.default_pooling)

    @property
    def max_len(self):
        return self.config["max_len"]


def pool(hidden, attention_mask=None, pooling="cls"):
    """One vector per sequence from hidden states (B, L, d): the first position ("cls"), the mean
    over real tokens ("mean") or the last real token ("last"); attention_mask (B, L) marks the
    real tokens (None: all are)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    batch, length = hidden.shape[:2]
    mask = np.ones((batch, length), dtype=bool) if attention_mask is None else (
        np.asarray(attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask) != 0)
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)  # the last True of each row
        return hidden[np.arange(batch), last]
    weights = Tensor._wrap(xp_of(hidden.data).asarray(mask / np.maximum(mask.sum(1, keepdims=True), 1),
                                                       dtype=hidden.dtype))
    return ops.sum(hidden * weights.unsqueeze(-1), dim=1)


def trim_padding(input_ids):
    """The batch without its trailing columns of [PAD] only: the same features (padding is never
    attended to nor pooled), less work for a batch of short texts padded to a long max_length."""
    ids = _as_ids(input_ids, "trim_padding")
    real = (ids.data != PAD_ID).any(axis=0)
    width = max(1, int(real.nonzero()[0][-1]) + 1) if bool(real.any()) else 1
    return ids if width == ids.shape[1] else ids[:, :width]


def _as_ids(ids, who):
    ids = ids if isinstance(ids, Tensor) else Tensor._wrap(np.asarray(ids))
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"{who}: input_ids must be a (batch, length) array of integer token ids, got shape "
                         f"{tuple(ids.shape)} and dtype {ids.dtype}")
    return ids


class TextClassifier(nn.Module):
    """A text classifier on a pretrained (or fresh) BERT or GPT: logits = classifier(pool(h)).
    The backbone's LM head is taken off (set to None).

    forward(input_ids) -> (B, num_classes); the padding is read from input_ids ([PAD] = 0), so a
    batch is one integer array, as the transfer toolkit hands it out. `features(input_ids)` is
    what the head reads (the pooled feature), so `tl.transfer` can cache it for linear probing.
    """

    def __init__(self, backbone, num_classes, pooling="mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        # a classifier predicts no words: the LM head goes (its decoder's weight, the token
        # embedding, stays), so it neither trains nor counts among the parameters
        backbone.lm_head = None
        self.backbone = backbone
        self.pooling = pooling
        self.classifier = nn.Linear(backbone.config["d_model"], num_classes)
        # BERT's initialisation for the new head too: near-zero logits at first, so the first
        # steps' gradients, which also reach a fine-tuned backbone, are not a random head's
        nn.init.normal_(self.classifier.weight, std=INIT_STD)
        nn.init.zeros_(self.classifier.bias)

    def blocks(self):
        """The backbone's embeddings and layers, then its final norm (GPT) with the classifier."""
        return [*self.backbone.blocks()[:-1], self.backbone.top_block(self.classifier)]

    def features(self, input_ids):
        return self.backbone.encode(trim_padding(input_ids), pooling=self.pooling)[1]

    def forward(self, input_ids):
        return self.classifier(self.features(input_ids))
