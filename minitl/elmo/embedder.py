"""ELMo's token representations: every layer of the frozen biLM, for every token of a sentence.

Chapter: "Transfer learning in NLP", ELMo. For token k the biLM offers L + 1 vectors

    layer 0:       [x_k ; x_k]            the token embedding, duplicated to the LSTM width 2H
    layer l >= 1:  [h_fwd_k^l ; h_bwd_k^l] the two directions' states at layer l

The forward state at k has read the sentence up to and including t_k, the backward state from
t_k to the end: together they see the whole sentence, so the same word gets a different vector
in every context, except at layer 0, which sees the word alone (as word2vec does). A task mixes
the layers with a `ScalarMix`.

AllenNLP's `ElmoEmbedder` names the calls: `embed_sentence(tokens)` gives an array
(L + 1, n, 2H), `embed_batch(sentences)` a list of them.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..nn import Module
from ..tensor import Tensor, no_grad
from .data import Sentences, encode_sentences


class ELMo(Module):
    """The representations of every layer of a biLM (`ELMoBiLM`) over sentences of words,
    looked up in `vocab` (unknown words are <unk>). The biLM is frozen (no gradient)."""

    def __init__(self, bilm, vocab):
        super().__init__()
        self.bilm = bilm.requires_grad_(False)
        self.bilm.eval()
        self.vocab = vocab

    @property
    def num_layers(self):
        """L + 1 representations per token: the embedding and L LSTM layers."""
        return self.bilm.num_layers + 1

    @property
    def output_dim(self):
        return 2 * self.bilm.hidden_size

    def batch_to_ids(self, sentences):
        """Sentences (lists of words) -> (ids (B, T + 2), lengths (B,)), each row `<s> words <s>`."""
        if not sentences or any(len(s) == 0 for s in sentences):
            raise ValueError("ELMo: every sentence needs at least one token")
        encoded = encode_sentences(sentences, self.vocab)
        return encoded.batch(np.arange(len(encoded)))

    def forward(self, ids, lengths):
        """(layers, mask): L + 1 tensors (B, T, 2H) for the T = ids.shape[1] - 2 token positions
        (the boundaries dropped; positions past a sentence's end are 0), and mask (B, T) of 0/1."""
        x, forward_states, backward_states = self.bilm(ids, lengths)
        steps = x.shape[0]
        inside = np.arange(1, steps - 1)[:, None] < (np.asarray(lengths)[None, :] - 1)   # (T, B)
        mask = Tensor(inside.T, dtype=x.dtype)
        layers = [ops.cat([x, x], dim=2)]
        layers += [ops.cat([f, b], dim=2) for f, b in zip(forward_states, backward_states)]
        keep = Tensor(inside[:, :, None], dtype=x.dtype)
        return [ops.transpose(layer[1:steps - 1] * keep, 0, 1) for layer in layers], mask

    def embed_batch(self, sentences):
        """A list of arrays (L + 1, n_i, 2H), one per sentence (AllenNLP's `embed_batch`)."""
        ids, lengths = self.batch_to_ids(sentences)
        with no_grad():
            layers, _ = self(ids, lengths)
        stacked = np.stack([layer.data for layer in layers])       # (L + 1, B, T, 2H)
        return [stacked[:, i, :n] for i, n in enumerate(lengths - 2)]

    def embed_sentence(self, tokens):
        """An array (L + 1, n, 2H) for one sentence of n words."""
        return self.embed_batch([list(tokens)])[0]

    def mean_pooled(self, sentences, tokens_per_batch=4096, progress=False, desc="ELMo features"):
        """Each sentence's layers averaged over its tokens: an array (N, L + 1, 2H), float32.

        Sentences of equal length are batched together; order is kept."""
        from tqdm.auto import tqdm
        encoded = encode_sentences(sentences, self.vocab) if not isinstance(sentences, Sentences) else sentences
        if (encoded.lengths == 0).any():
            raise ValueError("ELMo: every sentence needs at least one token")
        out = np.empty((len(encoded), self.num_layers, self.output_dim), dtype=np.float32)
        groups = encoded.batches(tokens_per_batch)
        with no_grad():
            for rows in tqdm(groups, desc=desc, unit="batch", disable=None if progress else True, leave=False):
                ids, lengths = encoded.batch(rows)
                layers, _ = self(ids, lengths)
                counts = (lengths - 2).astype(np.float32)[:, None]
                for l, layer in enumerate(layers):
                    out[rows, l] = layer.data.sum(axis=1) / counts
        return out
