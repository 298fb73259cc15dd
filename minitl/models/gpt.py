"""Mini-GPT: a causal Transformer pretrained to predict the next token, and text sampling
(chapter: transformers as foundation models, GPT; lesson 8).

Position t attends to positions 0..t only (the causal mask, -inf above the diagonal of the
scores), so its state has never seen token t+1 and can be trained to predict it, at every
position of every text at once:

    L = -(1/T) sum_t log p(w_(t+1) | w_0..w_t)

A model that predicts the next token writes text: feed it a prompt, draw a token from
p(. | prompt), append it, repeat (`MiniGPT.generate`). Two knobs shape the draw: a temperature
T divides the logits before the softmax (T < 1 sharpens the distribution towards the most
likely tokens, T > 1 flattens it), and top-k keeps only the k most likely tokens (top_k=1 is
greedy decoding).

    model = tl.models.gpt()                     # width 128, 4 layers, 4 heads, 64 positions
    ids = model.generate(tokenizer.encode("a small", add_special_tokens=False), 20, top_k=40, seed=0)

Pretraining and the cached weights: `minitl.models.pretraining` (`minitl pretrain gpt`).
"""
from __future__ import annotations

import numpy as np

from .. import nn
from ..random import get_rng
from ..tensor import Tensor, no_grad
from .text_transformer import TextTransformer


class MiniGPT(TextTransformer):
    """GPT in miniature (GPT-2's layout): pre-norm encoder layers under a causal mask, a final
    LayerNorm, and a bias-free LM head tied to the token embedding. Pooled feature: the state of
    the last real token, the one that has read the whole text (CLIP's text encoder pools so)."""

    causal = True
    default_pooling = "last"

    def __init__(self, vocab_size=8000, max_len=64, d_model=128, num_layers=4, num_heads=4, dim_feedforward=512,
                 dropout=0.1):
        super().__init__(vocab_size, max_len, d_model, num_layers, num_heads, dim_feedforward, dropout,
                         norm_first=True)

    def _make_lm_head(self, d_model):
        head = nn.Linear(d_model, self.embeddings.token.num_embeddings, bias=False)
        head.weight = self.embeddings.token.weight  # weight tying: logits = h E^T
        return head

    @no_grad()
    def generate(self, input_ids, max_new_tokens, temperature=1.0, top_k=None, rng=None, seed=None,
                 eos_token_id=None):
        """Continue each prompt by `max_new_tokens` tokens drawn one at a time from
        softmax(logits / temperature) over the top_k most likely tokens (all when None).

        input_ids: a prompt (L,) or a batch of prompts of one length (B, L), without padding.
        temperature 0 picks the most likely token (as top_k=1 does). The draws come from `rng`
        (a numpy Generator), else from np.random.default_rng(seed) when a seed is given, else
        from minitl's generator (`tl.manual_seed`). With eos_token_id, a row that has produced
        it is padded with it from then on, and generation stops once every row has. Returns the
        prompts followed by the new tokens, shaped as the input (an int64 array). The context
        is the last max_len tokens; the model runs in eval mode (no dropout) and is put back.
        """
        ids = np.asarray(input_ids.data if isinstance(input_ids, Tensor) else input_ids)
        single = ids.ndim == 1
        ids = ids[None] if single else ids
        if ids.ndim != 2 or ids.shape[1] == 0 or ids.dtype.kind not in "iu":
            raise ValueError(f"generate: input_ids must be a non-empty prompt (L,) or (B, L) of integer ids, "
                             f"got shape {ids.shape} and dtype {ids.dtype}")
        if temperature < 0:
            raise ValueError(f"generate: temperature must be >= 0, got {temperature}")
        if top_k is not None and not 1 <= top_k:
            raise ValueError(f"generate: top_k must be a positive int or None, got {top_k}")
        generator = rng if rng is not None else np.random.default_rng(seed) if seed is not None else get_rng()
        was_training = self.training
        self.eval()
        ids = ids.astype(np.int64)
        done = np.zeros(len(ids), dtype=bool)
        try:
            for _ in range(max_new_tokens):
                context = ids[:, -self.max_len:]
                hidden = self(context, attention_mask=np.ones(context.shape, dtype=bool))
                logits = self.lm_logits(hidden[:, -1]).data  # only the last position predicts
                token = sample_next(logits, temperature, top_k, generator)
                if eos_token_id is not None:
                    token = np.where(done, eos_token_id, token)
                    done |= token == eos_token_id
                ids = np.concatenate([ids, token[:, None]], axis=1)
                if eos_token_id is not None and done.all():
                    break
        finally:
            self.train(was_training)
        return ids[0] if single else ids


def sample_next(logits, temperature=1.0, top_k=None, rng=None):
    """One token id per row of logits (B, V): a draw from softmax(logits / temperature),
    restricted to the top_k largest logits when top_k is given; the argmax at temperature 0."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return logits.argmax(axis=-1)
    scores = logits / temperature
    if top_k is not None and top_k < scores.shape[-1]:
        kth_largest = np.partition(scores, -top_k, axis=-1)[:, -top_k][:, None]
        scores = np.where(scores < kth_largest, -np.inf, scores)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    # inverse-CDF sampling, all rows at once: the first token whose cumulative p passes u
    cdf = probs.cumsum(axis=-1)
    u = (rng if rng is not None else get_rng()).random((len(probs), 1)) * cdf[:, -1:]  # u < total: never past the end
    return (cdf <= u).sum(axis=-1)


def gpt(vocab_size=8000, max_len=64, d_model=128, num_layers=4, num_heads=4, dim_feedforward=512, dropout=0.1):
    """A mini-GPT (about 1.8 million parameters at the defaults, more than half of them the
    8,000 x 128 token embedding); see `MiniGPT`."""
    return MiniGPT(vocab_size, max_len, d_model, num_layers, num_heads, dim_feedforward, dropout)
