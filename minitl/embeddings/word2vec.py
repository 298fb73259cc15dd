"""word2vec: skip-gram and CBOW with negative sampling (Mikolov et al. 2013a, 2013b).

Section on word embeddings, "word2vec". Skip-gram reads a word's *input* vector v_c and asks
each word around it, within a window, to be predictable from it. Predicting with a softmax over
the whole vocabulary costs |V| dot products per pair, so negative sampling replaces it by
K + 1 binary questions: "is o a real context of c?" (yes) and "is n_k?" (no, for K words drawn
from the unigram distribution to the 3/4 power). The loss of one (center c, context o) pair is

    L = -log sigmoid(u_o . v_c) - sum_k log sigmoid(-u_{n_k} . v_c)          (SGNS, eq. 4 of 2013b)

with u the *output* vectors. CBOW turns it around: the mean h of the context words' input
vectors predicts the center word, L = -log sigmoid(u_c . h) - sum_k log sigmoid(-u_{n_k} . h).

What makes word2vec work as well as it does, all kept here with gensim's names and defaults:

- sub-sampling (``sample``): a token of a word with frequency f is kept with probability
  (sqrt(f / sample) + 1) * sample / f, so "the" and "of" stop drowning the window;
- a dynamic window: each center draws its window size uniformly from 1..``window``, which
  weights near words more;
- the learning rate falls linearly from ``alpha`` to ``min_alpha`` over the whole run.

How it runs in NumPy: no Python loop per word. A chunk of the corpus (about 100,000 words)
is sub-sampled and turned into all its (center, context) pairs at once (a 2-D mask over
positions x window offsets), and the K negatives of every pair are drawn in one call. Then
mini-batches of 1024 pairs go through one op (:class:`SkipGramNegativeSampling`, whose body is
:func:`sgns_loss`, the equation above) whose backward gives *row-sparse* gradients (only the
rows a batch touched), and ``minitl.optim.SparseSGD`` adds them into place. gensim updates
after every single pair; a batch is a few hundred words of text, small enough that the
staleness inside it costs (as measured) little.

**Shared negatives** (an option, ``shared_negatives=True``; lesson 4 measures it beside the
classic path). Drawing K negatives per pair means gathering, scoring and updating K rows of
W_out per pair. Instead a batch may draw K' (``noise_words``, 64) noise words once; every pair
scores all of them in one matrix product, each weighted K / K' (:func:`sgns_shared_loss`). In
expectation over the noise this is the loss above, term for term, so it optimises the same
objective with a different noise; and as the negative term depends on the center alone, it is
computed once per center token rather than once per pair. This is the trick of "sampled
softmax" implementations that share one candidate set per batch (Jean et al. 2015;
TensorFlow's ``sampled_softmax_loss``). The classic path, like gensim, skips a negative that
happens to be the pair's own context word; the shared path keeps such a collision, as the
paper's objective (an expectation over all noise words) does: a noise draw is "the", the
likeliest, with probability 1.5% on GCIDE, so for a pair whose context is "the" the kept term
weighs on average 5 x 1.5% = 0.08 of one negative, and less for every other word.
"""
from __future__ import annotations

import time

import numpy as np

from ..nn import Module, Parameter
from ..ops.elementwise import stable_softplus, stable_sigmoid
from ..optim.sparse import RowSparseGrad, SparseSGD
from ..random import fork_rng
from ..tensor import Function
from .corpus import as_corpus
from .keyed_vectors import KeyedVectors


# -- sub-sampling and the noise distribution ------------------------------------------------------
def subsample_keep_probability(counts: np.ndarray, sample: float = 1e-3) -> np.ndarray:
    """The probability of keeping one token of each word, gensim's form of Mikolov's formula.

    With f = count / total, a token is kept with probability min(1, (sqrt(f / sample) + 1) * sample / f):
    words rarer than ``sample`` are always kept; the most frequent are thinned hardest.
    ``sample=0`` turns sub-sampling off (all ones).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if not sample:
        return np.ones_like(counts)
    # BEGIN EXERCISE embeddings.subsample_probability
    # hint: f = counts / counts.sum(); keep = (sqrt(f / sample) + 1) * sample / f, capped at 1 (use np.minimum)
    f = counts / counts.sum()
    return np.minimum(1.0, (np.sqrt(f / sample) + 1.0) * sample / f)
    # END EXERCISE


def noise_distribution(counts: np.ndarray, ns_exponent: float = 0.75) -> np.ndarray:
    """The cumulative distribution of count**ns_exponent: negatives are drawn from it.

    The 3/4 power (Mikolov et al. 2013b) raises rare words' chances against frequent ones':
    a word 100x rarer than another is drawn only 100**0.75 = 32x less often.
    """
    weights = np.asarray(counts, dtype=np.float64) ** ns_exponent
    cumulative = np.cumsum(weights)
    return cumulative / cumulative[-1]


def draw_negatives(cumulative: np.ndarray, shape, rng: np.random.Generator) -> np.ndarray:
    """Word ids drawn from the distribution whose cumulative table is ``cumulative``.

    Inverse-transform sampling: a uniform u in [0, 1) falls in word i's slice
    [cumulative[i-1], cumulative[i]) with exactly that word's probability.
    """
    return np.searchsorted(cumulative, rng.random(shape), side="right").astype(np.int32)


# -- windows --------------------------------------------------------------------------------------
def context_pairs(sentence_of: np.ndarray, window: int, rng: np.random.Generator):
    """All (center position, context position) pairs of a run of tokens, with dynamic windows.

    ``sentence_of[t]`` is the sentence of token t (windows never cross a sentence end). Each
    center t draws its window ``1 + randint(window)`` as word2vec.c does. Returns two int64
    arrays ordered by center position, as gensim visits them.
    """
    n = len(sentence_of)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])   # (2w,)
    reach = window - rng.integers(0, window, n)                                   # 1..window
    context = np.arange(n)[:, None] + offsets[None, :]                            # (n, 2w)
    inside = (context >= 0) & (context < n)
    np.clip(context, 0, n - 1, out=context)
    valid = inside & (np.abs(offsets)[None, :] <= reach[:, None]) \
        & (sentence_of[context] == sentence_of[:, None])
    centers, slot = np.nonzero(valid)        # row-major: grouped and ordered by center
    return centers, context[centers, slot]


def one_blas_thread():
    """A context in which BLAS (the library under ``@``) runs on one thread, when threadpoolctl
    is installed (else nothing changes).

    word2vec's matrix products are small (a few hundred x 100 by 100 x 64). Waking and syncing
    BLAS threads costs more than such a product: on a busy 2-core machine one
    (200 x 100) @ (100 x 64) product took 7.8 ms with OpenBLAS's threads and 0.03 ms on one.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


# -- the loss and its op --------------------------------------------------------------------------
def sgns_loss(v: np.ndarray, u: np.ndarray):
    """Negative-sampling loss of a batch and its gradients, on plain arrays.

    ``v``: (B, d) the vectors that predict (skip-gram: centers' input vectors; CBOW: context means).
    ``u``: (B, 1 + K, d) output vectors; column 0 the true word, columns 1..K the negatives.
    Returns ``(loss, grad_v, grad_u)``, the loss summed over the batch (word2vec's step is per pair).

    With s = u . v and label y = 1 for column 0, 0 otherwise, L = -sum log sigmoid(+-s), and
    dL/ds = sigmoid(s) - y: the same "prediction minus target" as logistic regression.
    """
    # BEGIN EXERCISE embeddings.sgns_loss
    # hint: s_k = u_k . v; loss = sum softplus(-s_0) + sum_(k>0) softplus(s_k); g = sigmoid(s) - y (y = 1 for k = 0, else 0); grad_v = sum_k g_k u_k, grad_u_k = g_k v
    scores = np.einsum("bkd,bd->bk", u, v)                    # s_k = u_k . v
    labels = np.zeros_like(scores)
    labels[:, 0] = 1                                          # y: the true word 1, the negatives 0
    # -log sigmoid(x) = softplus(-x) = log(1 + exp(-x)), computed without overflow
    loss = stable_softplus(-scores[:, 0]).sum() + stable_softplus(scores[:, 1:]).sum()
    g = stable_sigmoid(scores) - labels                       # dL/ds: prediction minus target
    grad_v = np.einsum("bk,bkd->bd", g, u)                    # sum_k g_k u_k
    grad_u = g[:, :, None] * v[:, None, :]                    # g_k v
    return loss, grad_v, grad_u
    # END EXERCISE


def sgns_shared_loss(v, u, starts, noise, negative):
    """Skip-gram loss of a batch whose pairs all share one set of K' noise words; plain arrays.

    ``v``: (P, d) the input vectors of the batch's P center tokens. ``u``: (B, d) output vectors
    of the B context words, grouped by center: center p owns rows ``starts[p]`` up to
    ``starts[p + 1]`` (``starts[0] == 0``; every center owns at least one). ``noise``: (K', d)
    output vectors of the shared noise words. ``negative``: K, word2vec's negatives per pair.
    Returns ``(loss, grad_v, grad_u, grad_noise)``. Each pair (c, o) costs

        -log sigmoid(u_o . v_c) - (K / K') sum_{k=1..K'} log sigmoid(-u_{n_k} . v_c)

    Word2vec's own term is a sum over K noise words drawn for that pair; here every pair of the
    batch scores *all* K' shared noise words and weights each by K / K'. Both are sums whose
    expectation over the noise is K E_n[-log sigmoid(-u_n . v_c)]: the same objective. Only the
    noise (variance) differs, and the negative term becomes two matrix products. One more saving
    follows: that term depends on the center alone, so a center with m pairs computes it once
    and weights it by m.
    """
    pairs = np.diff(np.append(starts, len(u)))                     # m_p: pairs of each center
    owner = np.repeat(np.arange(len(v)), pairs)                    # the center of each pair
    v_pair = v[owner]                                              # (B, d)
    positive = np.einsum("bd,bd->b", u, v_pair)                    # u_o . v_c per pair
    negative_scores = v @ noise.T                                  # (P, K') once per center
    # (K / K') * m_p, cast to the vectors' float32: a float64 weight would make the products
    # below mixed-type, which NumPy computes without BLAS (training ran 5x slower)
    weight = (pairs * (negative / len(noise))).astype(v.dtype)
    loss = stable_softplus(-positive).sum() + weight @ stable_softplus(negative_scores).sum(axis=1)
    g_positive = stable_sigmoid(positive) - 1                      # prediction minus label 1
    g_negative = stable_sigmoid(negative_scores) * weight[:, None] # prediction minus label 0, weighted
    grad_u = g_positive[:, None] * v_pair
    grad_v = np.add.reduceat(g_positive[:, None] * u, starts, axis=0) + g_negative @ noise
    grad_noise = g_negative.T @ v
    return loss, grad_v, grad_u, grad_noise


def row_gradient(rows, values, shape, sparse):
    """The gradient of a (V, d) table whose rows ``rows`` (repeats add up) got ``values``:
    a :class:`RowSparseGrad`, or with ``sparse=False`` the dense array (for gradcheck)."""
    grad = RowSparseGrad(rows, values, shape)
    return grad if sparse else grad.to_dense()


class SkipGramNegativeSampling(Function):
    """loss = SGNS(W_in[centers], W_out[targets]) summed over the batch; targets (B, 1+K).

    word2vec's own estimator, the default of :class:`Word2Vec`: K negatives drawn for each
    pair, those equal to the pair's context skipped as in gensim.

    Fuses the two embedding lookups with the loss so that the backward can hand the optimizer
    the rows it touched (``sparse=True``, a :class:`RowSparseGrad`) instead of two dense
    (V, d) matrices of mostly zeros; ``sparse=False`` gives dense arrays (for gradcheck).
    """

    @staticmethod
    def forward(ctx, w_in, w_out, centers, targets, sparse=True):
        v, u = w_in[centers], w_out[targets]
        loss, grad_v, grad_u = sgns_loss(v, u)
        # a negative that is the pair's own context word would teach "o is and is not a context
        # of c" at once: word2vec.c and gensim skip it, so we take its term back out
        pair, column = np.nonzero(targets[:, 1:] == targets[:, :1])
        column += 1
        scores = np.einsum("bd,bd->b", u[pair, column], v[pair])
        loss = loss - stable_softplus(scores).sum()
        np.subtract.at(grad_v, pair, stable_sigmoid(scores)[:, None] * u[pair, column])
        grad_u[pair, column] = 0
        ctx.save_for_backward(centers, targets, grad_v, grad_u)
        ctx.shapes, ctx.sparse = (w_in.shape, w_out.shape), sparse
        return np.asarray(loss, dtype=w_in.dtype)

    @staticmethod
    def backward(ctx, grad):
        centers, targets, grad_v, grad_u = ctx.saved_tensors
        d = grad_v.shape[-1]
        return (row_gradient(centers, grad * grad_v, ctx.shapes[0], ctx.sparse),
                row_gradient(targets.reshape(-1), grad * grad_u.reshape(-1, d), ctx.shapes[1], ctx.sparse))


class SkipGramSharedNegatives(Function):
    """Skip-gram loss of a batch with shared noise words (:func:`sgns_shared_loss`).

    Inputs: the tables W_in, W_out; ``centers`` (P,) word ids of the center tokens; ``starts``
    (P,) where each center's pairs begin; ``contexts`` (B,) word ids; ``noise`` (K',) word ids;
    ``negative`` K. Gradients are row-sparse: the P center rows of W_in, and the B context rows
    plus the K' noise rows of W_out.
    """

    @staticmethod
    def forward(ctx, w_in, w_out, centers, starts, contexts, noise, negative, sparse=True):
        loss, grad_v, grad_u, grad_noise = sgns_shared_loss(
            w_in[centers], w_out[contexts], starts, w_out[noise], negative)
        ctx.save_for_backward(centers, np.concatenate([contexts, noise]), grad_v,
                              np.concatenate([grad_u, grad_noise]))
        ctx.shapes, ctx.sparse = (w_in.shape, w_out.shape), sparse
        return np.asarray(loss, dtype=w_in.dtype)

    @staticmethod
    def backward(ctx, grad):
        centers, out_rows, grad_v, grad_out = ctx.saved_tensors
        return (row_gradient(centers, grad * grad_v, ctx.shapes[0], ctx.sparse),
                row_gradient(out_rows, grad * grad_out, ctx.shapes[1], ctx.sparse))


class CBOWNegativeSampling(Function):
    """CBOW: h_b = mean (or sum) of W_in over the context words of center b, then SGNS(h, W_out[targets]).

    ``context``: (P,) word ids of all context words of the batch; ``owner``: (P,) which center
    (0..B-1) each belongs to. With ``cbow_mean`` each context word gets dL/dh / count, the exact
    gradient of the mean. (word2vec.c and gensim add the undivided dL/dh to each instead.)
    """

    @staticmethod
    def forward(ctx, w_in, w_out, context, owner, targets, cbow_mean=True, sparse=True):
        n_centers = targets.shape[0]
        h = np.zeros((n_centers, w_in.shape[1]), dtype=w_in.dtype)
        np.add.at(h, owner, w_in[context])
        count = np.bincount(owner, minlength=n_centers).astype(w_in.dtype)[:, None]
        if cbow_mean:
            h /= count
        loss, grad_h, grad_u = sgns_loss(h, w_out[targets])
        if cbow_mean:
            grad_h /= count
        ctx.save_for_backward(context, owner, targets, grad_h, grad_u)
        ctx.shapes, ctx.sparse = (w_in.shape, w_out.shape), sparse
        return np.asarray(loss, dtype=w_in.dtype)

    @staticmethod
    def backward(ctx, grad):
        context, owner, targets, grad_h, grad_u = ctx.saved_tensors
        d = grad_h.shape[-1]
        return (row_gradient(context, grad * grad_h[owner], ctx.shapes[0], ctx.sparse),
                row_gradient(targets.reshape(-1), grad * grad_u.reshape(-1, d), ctx.shapes[1], ctx.sparse))


class Word2VecModel(Module):
    """The two tables of word2vec: input vectors ``w_in`` (the word vectors one keeps) and output
    vectors ``w_out``. Initialised like word2vec.c: w_in uniform in +-0.5/d, w_out zeros."""

    def __init__(self, vocab_size: int, vector_size: int, rng: np.random.Generator):
        super().__init__()
        init = (rng.random((vocab_size, vector_size), dtype=np.float32) - 0.5) / vector_size
        self.w_in = Parameter(init)
        self.w_out = Parameter(np.zeros((vocab_size, vector_size), dtype=np.float32))

    def forward(self, centers, targets):
        """Skip-gram loss of a batch of pairs; targets[:, 0] the contexts, the rest negatives."""
        return SkipGramNegativeSampling.apply(self.w_in, self.w_out, centers, targets)

    def shared(self, centers, starts, contexts, noise, negative):
        """Skip-gram loss of a batch whose pairs share the noise words ``noise``."""
        return SkipGramSharedNegatives.apply(self.w_in, self.w_out, centers, starts, contexts, noise, negative)

    def cbow(self, context, owner, targets, cbow_mean=True):
        return CBOWNegativeSampling.apply(self.w_in, self.w_out, context, owner, targets,
                                          cbow_mean=cbow_mean)


class Word2Vec:
    """Train word vectors; gensim's ``Word2Vec`` names and defaults, ``model.wv`` the vectors.

    ``Word2Vec(sentences, sg=1, epochs=3)`` trains at once (``sentences``: a Corpus or an iterable
    of token lists). ``batch_size`` (pairs per SGD step; gensim has no such knob) is ours: a word
    that occurs n times in a batch gets the sum of n gradients computed from the same stale
    vectors, so a batch must stay small beside the vocabulary (1024 pairs for tens of thousands
    of words; a few dozen for a toy vocabulary of 16).
    Skip-gram draws ``negative`` noise words for each pair, as gensim does, and trains with
    :func:`sgns_loss`. ``shared_negatives=True`` (ours too) draws ``noise_words`` (K') noise
    words per batch instead, scored by every pair and weighted ``negative`` / K' (see the
    module docstring): faster, the same objective in expectation. CBOW always draws per example.
    ``seed=None`` draws from minitl's generator (``tl.manual_seed``); an integer seeds the model
    on its own, as gensim's ``seed`` does.
    """

    def __init__(self, sentences=None, vector_size=100, alpha=0.025, window=5, min_count=5,
                 sample=1e-3, seed=1, min_alpha=0.0001, sg=0, negative=5, ns_exponent=0.75,
                 cbow_mean=1, epochs=5, batch_size=1024, chunk_words=100_000, progress=True,
                 shared_negatives=False, noise_words=64):
        if negative < 1:
            raise ValueError("only negative sampling is implemented: negative must be >= 1")
        if window < 1 or vector_size < 1 or epochs < 1 or noise_words < 1:
            raise ValueError("window, vector_size, epochs and noise_words must be >= 1")
        self.vector_size, self.alpha, self.window, self.min_count = vector_size, alpha, window, min_count
        self.sample, self.seed, self.min_alpha, self.sg = sample, seed, min_alpha, sg
        self.negative, self.ns_exponent, self.cbow_mean, self.epochs = negative, ns_exponent, cbow_mean, epochs
        self.batch_size, self.chunk_words, self.progress = batch_size, chunk_words, progress
        self.shared_negatives, self.noise_words = shared_negatives, noise_words
        self.rng = fork_rng() if seed is None else np.random.default_rng(seed)
        self.corpus = self.model = self.wv = None
        self.train_seconds, self.words_trained = 0.0, 0
        if sentences is not None:
            self.build_vocab(sentences)
            self.train()

    def build_vocab(self, sentences):
        self.corpus = as_corpus(sentences, self.min_count)
        vocab = self.corpus.vocab
        if len(vocab) == 0:
            raise ValueError(f"no word occurs min_count={self.min_count} times")
        self.keep_probability = subsample_keep_probability(vocab.counts, self.sample)
        self.noise_cdf = noise_distribution(vocab.counts, self.ns_exponent)
        self.model = Word2VecModel(len(vocab), self.vector_size, self.rng)
        self.wv = KeyedVectors(vocab.id_to_word, self.model.w_in.data, counts=vocab.counts)
        return self

    # -- training ------------------------------------------------------------------------------
    def _chunks(self):
        """(first sentence, last sentence + 1) ranges of about ``chunk_words`` tokens each."""
        offsets = self.corpus.offsets
        bounds = np.searchsorted(offsets, np.arange(0, offsets[-1], self.chunk_words), side="left")
        bounds = np.unique(np.concatenate([bounds, [len(offsets) - 1]]))
        return list(zip(bounds[:-1], bounds[1:]))

    def train(self, epochs=None):
        """Run ``epochs`` passes (default ``self.epochs``); returns self. Prints nothing but a
        progress bar (words/s); ``self.train_seconds`` and ``self.losses`` keep the record."""
        from tqdm.auto import tqdm
        epochs = epochs or self.epochs
        corpus = self.corpus
        total_words = epochs * corpus.n_tokens
        optimizer = SparseSGD(self.model.parameters(), lr=self.alpha)
        self.losses = []
        start = time.perf_counter()
        bar = tqdm(total=total_words, unit="word", unit_scale=True, disable=not self.progress,
                   desc="skip-gram" if self.sg else "CBOW", mininterval=1.0)
        with one_blas_thread():
            self._train_epochs(epochs, optimizer, bar, total_words)
        bar.close()
        self.train_seconds += time.perf_counter() - start
        self.words_trained += total_words
        self.wv = KeyedVectors(corpus.vocab.id_to_word, self.model.w_in.data, counts=corpus.vocab.counts)
        return self

    def _train_epochs(self, epochs, optimizer, bar, total_words):
        corpus, rng = self.corpus, self.rng
        done = 0
        for _ in range(epochs):
            for first, last in self._chunks():
                lo, hi = corpus.offsets[first], corpus.offsets[last]
                ids = corpus.ids[lo:hi]
                sentence_of = np.repeat(np.arange(last - first), np.diff(corpus.offsets[first:last + 1]))
                kept = rng.random(len(ids)) < self.keep_probability[ids]
                ids, sentence_of = ids[kept], sentence_of[kept]
                centers, contexts = context_pairs(sentence_of, self.window, rng)
                step = self._train_sg if self.sg else self._train_cbow
                step(ids, centers, contexts, optimizer, done, hi - lo, total_words)
                done += hi - lo
                bar.update(hi - lo)
                if self.losses:
                    bar.set_postfix(loss=f"{self.losses[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.5f}")

    def _learning_rate(self, words_done, total_words):
        """alpha decaying linearly to min_alpha over the run (word2vec.c, gensim)."""
        progress = min(float(words_done) / total_words, 1.0)
        return self.alpha - (self.alpha - self.min_alpha) * progress

    def _update(self, optimizer, loss, words_done, total_words) -> float:
        """Back-propagate `loss` and take one step at the learning rate decayed to this point of
        training (`words_done` of `total_words`). Returns the loss as a float."""
        optimizer.param_groups[0]["lr"] = self._learning_rate(words_done, total_words)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return float(loss.data)

    def _train_sg(self, ids, centers, contexts, optimizer, done, chunk_words, total_words):
        if self.shared_negatives:
            return self._train_sg_shared(ids, centers, contexts, optimizer, done, chunk_words, total_words)
        n_pairs = len(centers)
        if n_pairs == 0:
            return
        targets = np.empty((n_pairs, 1 + self.negative), dtype=np.int32)
        targets[:, 0] = ids[contexts]
        targets[:, 1:] = draw_negatives(self.noise_cdf, (n_pairs, self.negative), self.rng)
        center_ids = ids[centers]
        chunk_loss = 0.0
        for b in range(0, n_pairs, self.batch_size):
            loss = self.model(center_ids[b:b + self.batch_size], targets[b:b + self.batch_size])
            chunk_loss += self._update(optimizer, loss, done + chunk_words * b / n_pairs, total_words)
        self.losses.append(chunk_loss / n_pairs)

    def _train_sg_shared(self, ids, centers, contexts, optimizer, done, chunk_words, total_words):
        n_pairs = len(centers)
        if n_pairs == 0:
            return
        # pairs come grouped by center token: `first[p]` is where center p's pairs begin
        first = np.flatnonzero(np.concatenate([[True], centers[1:] != centers[:-1]]))
        center_ids, context_ids = ids[centers[first]], ids[contexts]
        # batches of about batch_size pairs, cut between centers so that none is split
        cuts = np.unique(np.append(np.searchsorted(first, np.arange(0, n_pairs, self.batch_size)), len(first)))
        first = np.append(first, n_pairs)
        noise = draw_negatives(self.noise_cdf, (len(cuts) - 1, self.noise_words), self.rng)
        chunk_loss = 0.0
        for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            p0, p1 = first[a], first[b]
            loss = self.model.shared(center_ids[a:b], first[a:b] - p0, context_ids[p0:p1], noise[k],
                                     self.negative)
            chunk_loss += self._update(optimizer, loss, done + chunk_words * p0 / n_pairs, total_words)
        self.losses.append(chunk_loss / n_pairs)

    def _train_cbow(self, ids, centers, contexts, optimizer, done, chunk_words, total_words):
        # one CBOW example per center with at least one context word; pairs are grouped by center
        positions, first_pair = np.unique(centers, return_index=True)
        n = len(positions)
        if n == 0:
            return
        targets = np.empty((n, 1 + self.negative), dtype=np.int32)
        targets[:, 0] = ids[positions]
        targets[:, 1:] = draw_negatives(self.noise_cdf, (n, self.negative), self.rng)
        example_of_pair = np.repeat(np.arange(n), np.diff(np.append(first_pair, len(centers))))
        context_ids = ids[contexts]
        batch = max(1, self.batch_size // (2 * self.window))    # about batch_size pairs a step
        chunk_loss = 0.0
        for b in range(0, n, batch):
            p0, p1 = first_pair[b], (first_pair[b + batch] if b + batch < n else len(centers))
            loss = self.model.cbow(context_ids[p0:p1], example_of_pair[p0:p1] - b,
                                   targets[b:b + batch], cbow_mean=bool(self.cbow_mean))
            chunk_loss += self._update(optimizer, loss, done + chunk_words * b / n, total_words)
        self.losses.append(chunk_loss / n)

    @property
    def words_per_second(self) -> float:
        """Corpus words (before sub-sampling) per second of training, gensim's count."""
        return self.words_trained / self.train_seconds if self.train_seconds else 0.0
