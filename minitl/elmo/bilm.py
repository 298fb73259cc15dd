"""The bidirectional language model under ELMo (Peters et al. 2018, section 3.1).

Chapter: "Transfer learning in NLP", ELMo. A forward LM reads a sentence left to right and
predicts each next token; a backward LM reads it right to left and predicts each previous one:

    forward:   sum_k log p(t_k | t_1 .. t_{k-1})
    backward:  sum_k log p(t_k | t_{k+1} .. t_N)

ELMo trains both at once, maximising the sum of the two log-likelihoods, with the token
embedding (Theta_x) and the softmax layer (Theta_s) shared between the directions and
separate LSTMs for each. The two LSTM stacks must stay apart: in a multi-layer
*bidirectional* LSTM (`tl.nn.LSTM(bidirectional=True)`) the second layer reads both directions
of the first, so the "forward" state would already have seen the words it must predict. Here
each layer of each LM is a one-direction `lstm_layer`, the backward LM's with `reverse=True`.

Layout: ids (B, T) of sentences padded at the end, with `lengths` (B,). Inside, time comes
first, (T, B, H), the layout of `minitl.ops.rnn`.

The softmax over a vocabulary of V words costs V dot products per token, the most expensive
part of training. ELMo trained with a *sampled softmax* (Jean et al. 2015), as
:func:`sampled_softmax_loss` does; perplexities are measured with the full softmax.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..nn import LSTM, Embedding, Linear, Module, ModuleList
from ..ops.rnn import lstm_layer
from ..tensor import Tensor


class LanguageModel(Module):
    """One direction of the biLM: embedding -> `num_layers` LSTM layers -> decoder (the softmax).

    `reverse=False` reads left to right (a forward LM: the state at step k has seen tokens
    1..k and predicts token k+1); `reverse=True` reads right to left (the state at k has seen
    tokens k..N and predicts token k-1). Each layer is a one-layer `tl.nn.LSTM` (PyTorch's
    parameter names), run in this LM's direction; from the second layer on, a residual
    connection adds the layer's input to its output, as ELMo's LSTMs do.

    On its own this is a plain LSTM language model (ULMFiT starts from one):

        logits = lm(ids, lengths)          # (B, T, V): at step k, scores for the next token
        states = lm.hidden_states(ids)     # [x, h^1, ..., h^L], each (T, B, H), time first
    """

    def __init__(self, embedding, decoder, num_layers=2, reverse=False, dropout=0.0):
        super().__init__()
        hidden = embedding.embedding_dim
        if decoder.in_features != hidden:
            raise ValueError(f"LanguageModel: the decoder reads {decoder.in_features} features but the "
                             f"embedding has {hidden}; ELMo's layers all have the embedding's width")
        self.embedding = embedding
        self.layers = ModuleList([LSTM(hidden, hidden) for _ in range(num_layers)])
        self.decoder = decoder
        self.reverse, self.dropout = reverse, float(dropout)

    @property
    def hidden_size(self):
        return self.embedding.embedding_dim

    def hidden_states(self, ids, lengths=None):
        """[x, h^1, ..., h^L]: the token embeddings and each layer's states, each (T, B, H).

        ids: (B, T) integer array or tensor; lengths: None or (B,) integers (padding at the end).
        """
        ids = _ids_array(ids)
        x = self.embedding(ids.T)  # (T, B, H): time first, as lstm_layer takes it
        return [x] + self.run_layers(x, lengths)

    def run_layers(self, x, lengths=None):
        """The LSTM layers' states [h^1, ..., h^L] over embedded tokens x (T, B, H)."""
        batch = x.shape[1]
        zeros = Tensor._wrap(np.zeros((batch, self.hidden_size), dtype=x.dtype))
        lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
        states, inputs = [], x
        for k, layer in enumerate(self.layers):
            inputs = ops.dropout(inputs, self.dropout, self.training)
            h, _, _ = lstm_layer(inputs, zeros, zeros, *layer.layer_weights(0), lengths=lengths,
                                 reverse=self.reverse)
            if k > 0:  # residual connection between LSTM layers (ELMo's)
                h = h + inputs
            states.append(h)
            inputs = h
        return states

    def forward(self, ids, lengths=None):
        """Scores (B, T, V) over the whole vocabulary: row k predicts the next token (forward)
        or the previous one (backward)."""
        top = self.hidden_states(ids, lengths)[-1]
        top = ops.dropout(top, self.dropout, self.training)
        return ops.transpose(self.decoder(top), 0, 1)

    def extra_repr(self):
        return f"reverse={self.reverse}"


class ELMoBiLM(Module):
    """Forward and backward LMs sharing one token embedding and one softmax (ELMo's biLM).

    `embedding` (V, H) and `decoder` (the softmax, H -> V) are single modules held by both
    `forward_lm` and `backward_lm`: one parameter each, whose gradient sums both directions.
    """

    def __init__(self, vocab_size, hidden_size=256, num_layers=2, dropout=0.0):
        super().__init__()
        if vocab_size < 2 or hidden_size < 1 or num_layers < 1:
            raise ValueError(f"ELMoBiLM: vocab_size >= 2, hidden_size >= 1 and num_layers >= 1, got "
                             f"{vocab_size}, {hidden_size}, {num_layers}")
        self.config = dict(vocab_size=int(vocab_size), hidden_size=int(hidden_size),
                           num_layers=int(num_layers), dropout=float(dropout))
        self.embedding = Embedding(vocab_size, hidden_size)
        self.decoder = Linear(hidden_size, vocab_size)
        self.forward_lm = LanguageModel(self.embedding, self.decoder, num_layers, reverse=False, dropout=dropout)
        self.backward_lm = LanguageModel(self.embedding, self.decoder, num_layers, reverse=True, dropout=dropout)

    @property
    def num_layers(self):
        return len(self.forward_lm.layers)

    @property
    def hidden_size(self):
        return self.embedding.embedding_dim

    def forward(self, ids, lengths=None):
        """(x, forward states, backward states): x (T, B, H) the token embeddings, and each LM's
        list of L layer states, each (T, B, H). The embedding is looked up once for both."""
        ids = _ids_array(ids)
        x = self.embedding(ids.T)
        return x, self.forward_lm.run_layers(x, lengths), self.backward_lm.run_layers(x, lengths)

    def loss(self, ids, lengths, sampler=None):
        """The biLM's training loss on padded sentences, each `[<s>] + tokens + [<s>]`:
        (forward NLL, backward NLL), each the mean negative log-likelihood per predicted token.
        Their sum is the objective. With a `sampler` (a :class:`CandidateSampler`) the
        softmax is sampled; without, it is the full softmax."""
        ids = _ids_array(ids)
        lengths = np.asarray(lengths, dtype=np.int64)
        _, forward_states, backward_states = self(ids, lengths)
        losses = []
        for states, (targets, rows) in zip((forward_states, backward_states), prediction_targets(ids, lengths)):
            top = ops.dropout(states[-1], self.forward_lm.dropout, self.training)
            hidden = ops.reshape(top, (-1, self.hidden_size))[rows]
            losses.append(self.softmax_loss(hidden, targets, sampler))
        return tuple(losses)

    def softmax_loss(self, hidden, targets, sampler=None):
        """Mean NLL of `targets` (N,) given states `hidden` (N, H): sampled or full softmax."""
        if sampler is None:
            return ops.cross_entropy(self.decoder(hidden), targets)
        return sampled_softmax_loss(hidden, targets, self.decoder.weight, self.decoder.bias, sampler)


def prediction_targets(ids, lengths):
    """What each direction predicts on a batch of padded sentences (ids (B, T), lengths (B,)).

    Returns ((next_ids, next_rows), (previous_ids, previous_rows)). A row is a flat index
    t * B + b into the (T * B, H) matrix of states (time first). The forward LM's state at step
    t predicts ids[b, t + 1] (for t + 1 < length); the backward LM's state at step t predicts
    ids[b, t - 1] (for 1 <= t < length). Padding predicts nothing and is never predicted.
    """
    batch, steps = ids.shape
    t = np.arange(steps)[:, None]
    running = t < lengths[None, :]                        # (T, B)
    has_next = running & (t + 1 < lengths[None, :])      # never true at the last step
    has_previous = running & (t >= 1)                     # never true at the first step
    rows = np.arange(steps * batch)
    ids_tb = ids.T.astype(np.int64)
    next_ids = ids_tb[1:][has_next[:-1]]                  # ids[b, t + 1], in (t, b) order
    previous_ids = ids_tb[:-1][has_previous[1:]]          # ids[b, t - 1], in (t, b) order
    return ((next_ids, rows[has_next.reshape(-1)]), (previous_ids, rows[has_previous.reshape(-1)]))


class CandidateSampler:
    """The words each batch's sampled softmax scores besides the true ones.

    Drawn with replacement from the unigram distribution raised to `power` (word2vec's noise
    distribution, 3/4 by default: frequent words drawn a little less than their share),

        Q(k) = count_k^power / sum_j count_j^power,

    `num_sampled` ids per batch, shared by all its tokens. A word never seen (the padding) is
    never drawn.
    """

    def __init__(self, counts, num_sampled, power=0.75, rng=None):
        from ..embeddings.word2vec import noise_distribution
        from ..random import fork_rng
        counts = np.asarray(counts, dtype=np.float64)
        if num_sampled < 1 or counts.ndim != 1 or counts.sum() <= 0:
            raise ValueError(f"CandidateSampler: needs num_sampled >= 1 and positive counts, got "
                             f"num_sampled={num_sampled}, counts of shape {counts.shape}")
        self.cumulative = noise_distribution(counts, power)
        self.probabilities = np.diff(self.cumulative, prepend=0.0)
        self.num_sampled = int(num_sampled)
        self.rng = rng if rng is not None else fork_rng()

    def sample(self):
        """`num_sampled` word ids drawn from Q."""
        from ..embeddings.word2vec import draw_negatives
        return draw_negatives(self.cumulative, self.num_sampled, self.rng).astype(np.int64)

    def log_expected_count(self, ids):
        """log(S Q(k)) for each id k: how often S draws are expected to hit it, in logs."""
        return np.log(self.num_sampled * self.probabilities[ids])


def sampled_softmax_loss(hidden, targets, weight, bias, sampler):
    """The sampled softmax of Jean et al. (2015), as TensorFlow's `sampled_softmax_loss` computes it.

    Instead of the V scores of the full softmax, each token scores its true word y and the S
    words drawn by `sampler` from a proposal Q, each score corrected by the log of the word's
    expected count under Q (so that, in expectation, the gradient is the full softmax's):

        z_y = h . w_y + b_y - log(S Q(y)),   z_j = h . w_j + b_j - log(S Q(j))   (j = 1..S)
        loss = -log( exp(z_y) / (exp(z_y) + sum_j exp(z_j)) )

    A drawn word equal to the token's own target is left out of that token's sum (an
    "accidental hit"). hidden (N, H), targets (N,) ints, weight (V, H), bias (V,). Returns the
    mean loss over the N tokens.
    """
    targets = np.asarray(targets, dtype=np.int64)
    sampled = sampler.sample()
    n = len(targets)
    candidates = np.concatenate([targets, sampled])
    w = ops.embedding(candidates, weight)            # (N + S, H): only the rows we score
    b = bias[candidates]
    true_logits = ops.sum(hidden * w[:n], dim=1, keepdim=True) + ops.unsqueeze(b[:n], 1)  # (N, 1)
    sampled_logits = ops.matmul(hidden, w[n:].T) + b[n:]                                   # (N, S)
    log_q = sampler.log_expected_count(candidates).astype(hidden.dtype)
    correction = np.concatenate([log_q[:n, None], np.broadcast_to(log_q[n:], (n, len(sampled)))], axis=1)
    logits = ops.cat([true_logits, sampled_logits], dim=1) - Tensor(correction, dtype=hidden.dtype)
    hits = np.concatenate([np.zeros((n, 1), dtype=bool), sampled[None, :] == targets[:, None]], axis=1)
    logits = ops.masked_fill(logits, hits, -1e9)
    return ops.cross_entropy(logits, np.zeros(n, dtype=np.int64))


def _ids_array(ids):
    arr = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
    if arr.ndim != 2 or arr.dtype.kind not in "iu":
        raise ValueError(f"ELMo: token ids must be a 2-D integer array (batch, steps), got dtype "
                         f"{arr.dtype} and shape {tuple(arr.shape)}")
    return arr
