"""GloVe: global vectors from the co-occurrence matrix (Pennington, Socher & Manning 2014).

Section on word embeddings, "GloVe". Instead of sliding over the text as word2vec does, GloVe
first counts, once, how often each word j appears near each word i: X_ij, each co-occurrence at
distance d adding 1/d. Then it fits vectors so that a dot product predicts the log count,

    J = 1/2 sum_{ij: X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2        (eq. 8)
    f(x) = min(1, (x / x_max)^alpha),  x_max = 100, alpha = 3/4                       (eq. 9)

(the 1/2 is the C code's, so the gradient is f * diff). f keeps the many rare, noisy pairs from
mattering much and caps the very frequent ones. Words get two vectors, w and w~, trained
symmetrically; the paper's final vectors are their sum, W + W~.

Counting is vectorised: for each distance d, ``ids[:-d]`` and ``ids[d:]`` are all pairs at that
distance; a pair (i, j) becomes one integer key i * V + j, and ``np.unique`` adds up equal keys.
The matrix stays as sparse triples (rows, cols, values), a few million of them. Training
shuffles the triples each epoch and takes AdaGrad steps (glove.c's form, see ``fit``) on
mini-batches of 16,384 of them. glove.c updates after every triple; a batch adds up the
gradients of a word's rows before one step. Big batches are what make NumPy fast here: the
per-triple work is a handful of whole-array operations, and adding up repeated rows
(:func:`~minitl.optim.sparse.segment_sum`) is cheap.
"""
from __future__ import annotations

import time

import numpy as np

from ..nn import Module, Parameter
from ..optim.sparse import RowSparseGrad, SparseAdagrad
from ..random import fork_rng
from ..tensor import Function
from .corpus import as_corpus
from .keyed_vectors import KeyedVectors


def cooccurrence_matrix(ids: np.ndarray, offsets: np.ndarray, vocab_size: int, window: int = 10,
                        chunk_tokens: int = 1_000_000):
    """Symmetric co-occurrence counts with 1/d weighting, as triples ``(rows, cols, values)``.

    Pairs never cross a sentence end (``offsets`` as in ``minitl.data.text.Corpus``). Each pair at
    distance d <= ``window`` adds 1/d to X[i, j] and to X[j, i]. Processed in chunks of about
    ``chunk_tokens`` tokens, whose partial sums are merged at the end, to bound memory.
    """
    sentence_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    keys_parts, value_parts = [], []
    for start in range(0, len(ids), chunk_tokens):
        # chunks overlap by `window` tokens so that pairs across the cut are counted once
        stop = min(start + chunk_tokens + window, len(ids))
        chunk, sent = ids[start:stop].astype(np.int64), sentence_of[start:stop]
        keys, values = [], []
        for d in range(1, window + 1):
            if d >= len(chunk):
                break
            left = np.arange(len(chunk) - d)
            left = left[(left < chunk_tokens) & (sent[left] == sent[left + d])]
            i, j = chunk[left], chunk[left + d]
            keys += [i * vocab_size + j, j * vocab_size + i]          # both directions: symmetric
            values.append(np.full(2 * len(left), 1.0 / d))
        if keys:
            merged, summed = _sum_by_key(np.concatenate(keys), np.concatenate(values))
            keys_parts.append(merged)
            value_parts.append(summed)
    if not keys_parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0)
    keys, values = _sum_by_key(np.concatenate(keys_parts), np.concatenate(value_parts))
    return (keys // vocab_size).astype(np.int32), (keys % vocab_size).astype(np.int32), values


def _sum_by_key(keys, values):
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=values, minlength=len(unique))


def glove_weighting(x: np.ndarray, x_max: float = 100.0, alpha: float = 0.75) -> np.ndarray:
    """f(x) = (x / x_max)^alpha below x_max, 1 above (eq. 9 of the GloVe paper)."""
    # BEGIN EXERCISE embeddings.glove_weighting
    # hint: np.minimum(1, (x / x_max) ** alpha)
    return np.minimum(1.0, (x / x_max) ** alpha)
    # END EXERCISE


def glove_loss(w_i, w_j, b_i, b_j, log_x, f):
    """GloVe's loss over a batch of triples and its gradients, on plain arrays.

    ``w_i``, ``w_j``: (B, d) the two words' vectors (w and w~); ``b_i``, ``b_j``: (B,) biases;
    ``log_x``: (B,) log X_ij; ``f``: (B,) the weights f(X_ij).
    Returns ``(loss, grad_w_i, grad_w_j, grad_b_i, grad_b_j)`` for loss = 1/2 sum f diff^2.
    """
    # BEGIN EXERCISE embeddings.glove_loss
    # hint: e = w_i . w_j + b_i + b_j - log X_ij (per row); loss = 1/2 sum f e^2; with g = f e: dw_i = g w_j, dw_j = g w_i, db_i = db_j = g
    diff = (w_i * w_j).sum(axis=1) + b_i + b_j - log_x
    g = f * diff
    loss = 0.5 * (g * diff).sum()
    return loss, g[:, None] * w_j, g[:, None] * w_i, g, g
    # END EXERCISE


class GloVeLoss(Function):
    """The GloVe loss of a batch of triples (i, j, X_ij), with row-sparse gradients.

    Inputs W, W~ (V, d) and b, b~ (V, 1), the rows i and j, log X and f(X).
    ``sparse=False`` returns dense gradients (for gradcheck).
    """

    @staticmethod
    def forward(ctx, w, w_tilde, b, b_tilde, i, j, log_x, f, sparse=True):
        loss, g_wi, g_wj, g_bi, g_bj = glove_loss(w[i], w_tilde[j], b[i, 0], b_tilde[j, 0], log_x, f)
        ctx.save_for_backward(i, j, g_wi, g_wj, g_bi, g_bj)
        ctx.shapes, ctx.sparse = (w.shape, w_tilde.shape, b.shape), sparse
        return np.asarray(loss, dtype=w.dtype)

    @staticmethod
    def backward(ctx, grad):
        i, j, g_wi, g_wj, g_bi, g_bj = ctx.saved_tensors
        w_shape, wt_shape, b_shape = ctx.shapes
        grads = [RowSparseGrad(i, grad * g_wi, w_shape), RowSparseGrad(j, grad * g_wj, wt_shape),
                 RowSparseGrad(i, grad * g_bi[:, None], b_shape), RowSparseGrad(j, grad * g_bj[:, None], b_shape)]
        return tuple(g if ctx.sparse else g.to_dense() for g in grads)


class GloVeModel(Module):
    """W, W~ (uniform in +-0.5/d, as glove.c) and the biases b, b~ (zeros)."""

    def __init__(self, vocab_size: int, vector_size: int, rng: np.random.Generator):
        super().__init__()
        def table():
            return Parameter((rng.random((vocab_size, vector_size), dtype=np.float32) - 0.5) / vector_size)
        self.w, self.w_tilde = table(), table()
        self.b = Parameter(np.zeros((vocab_size, 1), dtype=np.float32))
        self.b_tilde = Parameter(np.zeros((vocab_size, 1), dtype=np.float32))

    def forward(self, i, j, log_x, f):
        return GloVeLoss.apply(self.w, self.w_tilde, self.b, self.b_tilde, i, j, log_x, f)


class GloVe:
    """Count co-occurrences, then fit GloVe's weighted least squares with AdaGrad.

    ``GloVe(vector_size=100, window=10, x_max=100, alpha=0.75, epochs=25)`` are the paper's and
    glove.c's defaults; ``fit(corpus)`` with a Corpus or token lists; ``train(epochs)`` goes on;
    ``wv`` holds W + W~; ``epoch_seconds`` the time of each epoch.

    ``learning_rate`` is 0.2, not glove.c's 0.05: glove.c steps after every triple, we after a
    batch, and a batch's *summed* gradient of a frequent word fills AdaGrad's accumulator much
    faster than its single-triple gradients would. Measured on all of GCIDE (window 10, batches
    of 16,384, 10 epochs), WordSim-353 Spearman: 0.15 with 0.05, 0.35 with 0.2, 0.39 with 0.5
    (but with 0.5 the analogies were worse, 0.047 against 0.053).
    """

    def __init__(self, vector_size=100, window=10, min_count=5, x_max=100.0, alpha=0.75,
                 learning_rate=0.2, epochs=25, batch_size=16384, seed=1, progress=True):
        self.vector_size, self.window, self.min_count = vector_size, window, min_count
        self.x_max, self.alpha, self.learning_rate, self.epochs = x_max, alpha, learning_rate, epochs
        self.batch_size, self.progress = batch_size, progress
        self.rng = fork_rng() if seed is None else np.random.default_rng(seed)
        self.wv = self.model = None
        self.epoch_seconds, self.losses = [], []

    def count(self, sentences):
        """Build the vocabulary and the co-occurrence triples; ``count_seconds`` records the time."""
        start = time.perf_counter()
        self.corpus = as_corpus(sentences, self.min_count)
        self.rows, self.cols, self.values = cooccurrence_matrix(
            self.corpus.ids, self.corpus.offsets, len(self.corpus.vocab), self.window)
        self.count_seconds = time.perf_counter() - start
        return self

    def fit(self, sentences=None, epochs=None):
        """Count (unless :meth:`count` ran), start fresh vectors and train them; returns self."""
        if sentences is not None or not hasattr(self, "rows"):
            self.count(sentences)
        self.model = GloVeModel(len(self.corpus.vocab), self.vector_size, self.rng)
        # glove.c's AdaGrad: G starts at 1 and accumulates (lr * g)^2, and the step is
        # lr * g / sqrt(G) = g / sqrt(1 / lr^2 + sum g^2). That is textbook AdaGrad with a step size
        # of 1 and an accumulator that starts at 1 / lr^2 (25 for our lr = 0.2, 400 for glove.c's
        # 0.05): steps stay near lr * g until a row's squared gradients add up to about 1 / lr^2,
        # and only then shrink.
        self.optimizer = SparseAdagrad(self.model.parameters(), lr=1.0,
                                       initial_accumulator_value=1.0 / self.learning_rate ** 2)
        self.epoch_seconds, self.losses = [], []
        return self.train(epochs)

    def train(self, epochs=None):
        """``epochs`` more passes (default ``self.epochs``) over the triples; returns self."""
        from tqdm.auto import tqdm
        vocab, optimizer = self.corpus.vocab, self.optimizer
        log_x = np.log(self.values).astype(np.float32)
        weight = glove_weighting(self.values, self.x_max, self.alpha).astype(np.float32)
        n = len(self.values)
        for epoch in tqdm(range(epochs or self.epochs), desc="GloVe", unit="epoch", disable=not self.progress):
            start = time.perf_counter()
            # a new random order of the triples each epoch, gathered once rather than per batch
            order = self.rng.permutation(n)
            rows, cols, epoch_log_x, epoch_weight = self.rows[order], self.cols[order], log_x[order], weight[order]
            total = 0.0
            for s in range(0, n, self.batch_size):
                batch = slice(s, s + self.batch_size)
                loss = self.model(rows[batch], cols[batch], epoch_log_x[batch], epoch_weight[batch])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                total += float(loss.data)
            self.epoch_seconds.append(time.perf_counter() - start)
            self.losses.append(total / max(n, 1))
        self.wv = KeyedVectors(vocab.id_to_word, self.model.w.data + self.model.w_tilde.data,
                               counts=vocab.counts)
        return self
