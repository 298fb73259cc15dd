"""Mini-BERT: a bidirectional Transformer pretrained by masked language modelling (chapter:
transformers as foundation models, BERT; lesson 8).

Every token attends to every other, so the state of a position mixes its left and its right
context. That makes "predict the next word" a cheat (the word is in view), so BERT is trained
to fill in blanks instead (masked LM): 15% of the tokens are chosen, and of those

    80% are replaced by [MASK]      the model must guess them from the context
    10% by a random token           so it cannot trust a token just because it is not [MASK]
    10% are left unchanged          so the state of an ordinary token must predict it too

and the loss is the cross-entropy of the original token at the chosen positions only,
L = -(1/|M|) sum_(t in M) log p(w_t | x~). Special tokens ([CLS], [SEP]) and padding are never
chosen. `mlm_mask` draws that (the exercise `bert.mlm_mask`); `MiniBert.mlm_logits` runs the
head only at the chosen positions: a share of the positions needs the 8,000-way softmax, not
all. The rate is `mask_prob`: BERT's 15% by default; the pretraining recipe here masks 40%
(`minitl.models.pretraining`: more predictions per window for a small budget).

    model = tl.models.bert()                    # width 128, 4 layers, 4 heads, 64 positions
    hidden, cls = model.encode(batch["input_ids"], batch["attention_mask"])

Pretraining and the cached weights: `minitl.models.pretraining` (`minitl pretrain bert`).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from .text_transformer import TextTransformer

IGNORE_INDEX = -100  # cross_entropy's ignore_index: the label of a position that is not predicted
MASK_PROB, MASK_TOKEN_SHARE, RANDOM_TOKEN_SHARE = 0.15, 0.8, 0.1


def mlm_mask(input_ids, rng, mask_token_id=4, vocab_size=8000, special_ids=(0, 1, 2, 3, 4), mask_prob=MASK_PROB):
    """BERT's masking of a batch of token ids (B, L): returns (inputs, labels), both int64.

    Each token not in `special_ids` is chosen with probability mask_prob (0.15); a chosen one
    becomes [MASK] with probability 0.8, a random ordinary token (an id in [max(special_ids)+1,
    vocab_size)) with probability 0.1, and stays itself otherwise. labels holds the original
    id at the chosen positions and IGNORE_INDEX (-100) everywhere else. `rng` is a
    numpy Generator: one seed, one masking.
    """
    ids = np.asarray(input_ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"mlm_mask: input_ids must be integer token ids, got dtype {ids.dtype}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"mlm_mask: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    ids = ids.astype(np.int64)
    special = np.isin(ids, np.asarray(special_ids))
    first_ordinary = int(max(special_ids)) + 1
    random_tokens = rng.integers(first_ordinary, vocab_size, size=ids.shape)
    # BEGIN EXERCISE bert.mlm_mask
    # hint: chosen = (u1 < mask_prob) & ~special with u1, u2 = rng.random(ids.shape); u2 < 0.8: mask_token_id, 0.8 <= u2 < 0.9: random_tokens, else keep; labels = ids where chosen, else -100
    chosen = (rng.random(ids.shape) < mask_prob) & ~special
    u = rng.random(ids.shape)
    inputs = np.where(chosen & (u < MASK_TOKEN_SHARE), mask_token_id, ids)
    inputs = np.where(chosen & (u >= MASK_TOKEN_SHARE) & (u < MASK_TOKEN_SHARE + RANDOM_TOKEN_SHARE),
                      random_tokens, inputs)
    labels = np.where(chosen, ids, IGNORE_INDEX)
    # END EXERCISE
    return inputs, labels


class MaskedLMHead(nn.Module):
    """BERT's head: logits = LayerNorm(gelu(h W + b)) E^T + b_out, E the token embedding
    (tied: `decoder.weight` is the embedding's Parameter), b_out one bias per subword."""

    def __init__(self, d_model, token_embedding):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.activation = nn.GELU()
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, token_embedding.num_embeddings)
        self.decoder.weight = token_embedding.weight  # weight tying: one Parameter, two uses

    def forward(self, hidden):
        return self.decoder(self.norm(self.activation(self.dense(hidden))))


class MiniBert(TextTransformer):
    """BERT in miniature: post-norm encoder layers (the original Transformer's and BERT's), a
    LayerNorm on the embeddings, bidirectional attention with padding keys masked, the masked-LM
    head tied to the token embedding. Pooled feature: the [CLS] state (`encode(pooling=...)`)."""

    causal = False
    default_pooling = "cls"

    def __init__(self, vocab_size=8000, max_len=64, d_model=128, num_layers=4, num_heads=4, dim_feedforward=512,
                 dropout=0.1):
        super().__init__(vocab_size, max_len, d_model, num_layers, num_heads, dim_feedforward, dropout,
                         norm_first=False)

    def _make_lm_head(self, d_model):
        return MaskedLMHead(d_model, self.embeddings.token)

    def mlm_logits(self, input_ids, attention_mask=None, positions=None):
        """The masked-LM logits: (B, L, V) at every position, or (len(positions), V) at the flat
        positions `positions` (indices into the B*L positions, e.g. np.flatnonzero(labels != -100)),
        where the head then runs on those rows alone."""
        hidden = self(input_ids, attention_mask)
        if positions is None:
            return self.lm_logits(hidden)
        return self.lm_logits(hidden.reshape(-1, hidden.shape[-1])[np.asarray(positions)])


def bert(vocab_size=8000, max_len=64, d_model=128, num_layers=4, num_heads=4, dim_feedforward=512, dropout=0.1):
    """A mini-BERT (about 1.9 million parameters at the defaults, half of them the 8,000 x 128
    token embedding); see `MiniBert`."""
    return MiniBert(vocab_size, max_len, d_model, num_layers, num_heads, dim_feedforward, dropout)
