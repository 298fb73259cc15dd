"""word2vec (minitl.embeddings.word2vec): sub-sampling, noise, windows, the SGNS op, training.

Training runs on tiny corpora made here with planted structure, plus one small cut of GCIDE
for the command line (skipped without dict-gcide).
"""
import numpy as np
import pytest

import minitl as tl
from minitl.data.paths import SYSTEM_DIRS
from minitl.embeddings import KeyedVectors, Word2Vec, word2vec as word2vec_module
from minitl.embeddings.cli import word2vec_main
from minitl.embeddings.word2vec import (CBOWNegativeSampling, SkipGramNegativeSampling,
                                        SkipGramSharedNegatives, context_pairs, draw_negatives,
                                        noise_distribution, sgns_loss, sgns_shared_loss,
                                        subsample_keep_probability)
from minitl.fastpath import sparse as fast_sparse
from minitl.optim import SparseSGD
from minitl.optim.sparse import RowSparseGrad, add_rows

GCIDE = SYSTEM_DIRS["gcide"][0] / "gcide.dict.dz"


def planted_corpus(n_sentences=3000, seed=0):
    """Two topics that never meet: animals with animal verbs, fruit with fruit adjectives.

    A sentence is 6 words drawn from one topic, so words of one topic share all their contexts.
    """
    rng = np.random.default_rng(seed)
    topics = [["dog", "cat", "horse", "cow", "barks", "runs", "eats", "sleeps"],
              ["apple", "pear", "plum", "fig", "sweet", "ripe", "red", "juicy"]]
    return [list(rng.choice(topics[i % 2], 6)) for i in range(n_sentences)]


def topic_gap(wv):
    """Mean cosine within topics minus mean cosine across them."""
    animals, fruit = ["dog", "cat", "horse", "cow"], ["apple", "pear", "plum", "fig"]
    within = np.mean([wv.similarity(a, b) for g in (animals, fruit) for a in g for b in g if a != b])
    across = np.mean([wv.similarity(a, b) for a in animals for b in fruit])
    return within - across


# -- sub-sampling ---------------------------------------------------------------------------------
@pytest.mark.exercise("embeddings.subsample_probability")
def test_subsample_probability_is_gensims_formula():
    counts = np.array([500_000, 10_000, 1_000, 10])
    keep = subsample_keep_probability(counts, sample=1e-3)
    f = counts / counts.sum()
    expected = np.minimum(1, (np.sqrt(f / 1e-3) + 1) * 1e-3 / f)
    np.testing.assert_allclose(keep, expected)
    assert keep[0] < 0.1 and keep[-1] == 1.0          # "the" thinned hard, a rare word never
    assert np.all(np.diff(keep) >= 0)                # rarer words are kept more often


@pytest.mark.exercise("embeddings.subsample_probability")
def test_subsample_probability_by_hand():
    # f = 0.01 for the first word: (sqrt(10) + 1) * 0.1 = 0.41623
    keep = subsample_keep_probability(np.array([1, 99]), sample=1e-3)
    assert keep[0] == pytest.approx((np.sqrt(10) + 1) * 0.1)
    assert keep[1] == pytest.approx((np.sqrt(0.99 / 1e-3) + 1) * 1e-3 / 0.99)
    assert np.all(subsample_keep_probability(np.array([5, 7]), sample=0) == 1)


# -- negatives and windows -------------------------------------------------------------------------
def test_negatives_follow_unigram_to_three_quarters():
    counts = np.array([1000, 100, 10, 1])
    cdf = noise_distribution(counts, 0.75)
    draws = draw_negatives(cdf, 200_000, np.random.default_rng(0))
    freq = np.bincount(draws, minlength=4) / len(draws)
    expected = counts ** 0.75 / (counts ** 0.75).sum()
    np.testing.assert_allclose(freq, expected, atol=0.004)


def test_context_pairs_stay_in_sentence_and_window():
    sentence_of = np.repeat(np.arange(40), 7)     # 40 sentences of 7 tokens
    centers, contexts = context_pairs(sentence_of, window=3, rng=np.random.default_rng(0))
    distance = np.abs(centers - contexts)
    assert np.all(sentence_of[centers] == sentence_of[contexts])
    assert distance.min() >= 1 and distance.max() == 3
    assert np.all(np.diff(centers) >= 0)           # ordered by center, as gensim visits them
    # the dynamic window: reach 1 is drawn a third of the time, so distance-1 pairs outnumber distance-3
    assert (distance == 1).sum() > 1.5 * (distance == 3).sum()


def test_context_pairs_window_one_is_the_neighbours():
    centers, contexts = context_pairs(np.array([0, 0, 0, 1, 1]), window=1, rng=np.random.default_rng(0))
    assert sorted(zip(centers.tolist(), contexts.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)]


# -- the loss ---------------------------------------------------------------------------------------
@pytest.mark.exercise("embeddings.sgns_loss")
def test_sgns_loss_value_by_hand():
    v = np.array([[1.0, 0.0]])
    u = np.array([[[2.0, 5.0], [-1.0, 3.0], [0.5, 0.0]]])     # scores 2 (true), -1, 0.5 (negatives)
    loss, grad_v, grad_u = sgns_loss(v, u)
    sig = lambda x: 1 / (1 + np.exp(-x))                       # noqa: E731
    assert loss == pytest.approx(-np.log(sig(2)) - np.log(sig(1)) - np.log(sig(-0.5)))
    g = np.array([sig(2) - 1, sig(-1), sig(0.5)])
    np.testing.assert_allclose(grad_v[0], g @ u[0])
    np.testing.assert_allclose(grad_u[0], g[:, None] * v[0])


@pytest.mark.exercise("embeddings.sgns_loss")
def test_skipgram_op_gradcheck():
    rng = np.random.default_rng(1)
    w_in, w_out = rng.standard_normal((7, 4)) * 0.5, rng.standard_normal((7, 4)) * 0.5
    centers = np.array([0, 3, 3, 6])
    targets = np.array([[1, 2, 5], [2, 2, 0], [4, 1, 3], [0, 5, 6]])       # repeats on purpose
    tl.gradcheck(lambda a, b: SkipGramNegativeSampling.apply(a, b, centers, targets, sparse=False),
                 tl.tensor(w_in, dtype=tl.float64), tl.tensor(w_out, dtype=tl.float64))


@pytest.mark.exercise("embeddings.sgns_loss")
def test_skipgram_skips_negatives_equal_to_the_context():
    # gensim skips a negative that is the pair's own context word: the loss and gradients are
    # those of the pair without that column
    rng = np.random.default_rng(8)
    w_in, w_out = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    with_collision = SkipGramNegativeSampling.apply(
        tl.tensor(w_in, dtype=tl.float64), tl.tensor(w_out, dtype=tl.float64),
        np.array([0]), np.array([[4, 4, 1]]), sparse=False)
    expected, _, _ = sgns_loss(w_in[[0]], w_out[[[4, 1]]])
    assert float(with_collision.data) == pytest.approx(expected)


@pytest.mark.exercise("embeddings.sgns_loss")
def test_cbow_op_gradcheck():
    rng = np.random.default_rng(2)
    w_in, w_out = rng.standard_normal((6, 3)) * 0.5, rng.standard_normal((6, 3)) * 0.5
    context, owner = np.array([1, 2, 2, 4, 5, 0]), np.array([0, 0, 0, 1, 1, 2])
    targets = np.array([[3, 1], [0, 2], [5, 5]])
    for cbow_mean in (True, False):
        tl.gradcheck(lambda a, b: CBOWNegativeSampling.apply(a, b, context, owner, targets,
                                                             cbow_mean=cbow_mean, sparse=False),
                     tl.tensor(w_in, dtype=tl.float64), tl.tensor(w_out, dtype=tl.float64))


@pytest.mark.exercise("embeddings.sgns_loss")
def test_sparse_gradient_equals_dense():
    rng = np.random.default_rng(3)
    w_in = tl.tensor(rng.standard_normal((9, 5)), requires_grad=True)
    w_out = tl.tensor(rng.standard_normal((9, 5)), requires_grad=True)
    centers, targets = np.array([1, 1, 8]), np.array([[2, 3, 3], [8, 0, 1], [1, 2, 4]])
    SkipGramNegativeSampling.apply(w_in, w_out, centers, targets, sparse=True).backward()
    sparse_in, sparse_out = w_in.grad, w_out.grad
    assert isinstance(sparse_in, RowSparseGrad) and set(sparse_in.coalesce().indices.tolist()) == {1, 8}
    w_in.grad = w_out.grad = None
    SkipGramNegativeSampling.apply(w_in, w_out, centers, targets, sparse=False).backward()
    np.testing.assert_allclose(sparse_in.to_dense(), w_in.grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sparse_out.coalesce().to_dense(), w_out.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.exercise("embeddings.sgns_loss")
def test_shared_negatives_loss_is_sgns_with_weighted_shared_noise():
    # brute force: each pair (c, o) scored by sgns_loss against all K' shared noise words, whose
    # negative terms are weighted K / K'; the shared form must give the same loss and gradients
    rng = np.random.default_rng(5)
    v, noise = rng.standard_normal((3, 4)), rng.standard_normal((6, 4))      # 3 centers, K' = 6
    u = rng.standard_normal((7, 4))                                           # 7 pairs
    starts, owner, negative = np.array([0, 2, 3]), np.array([0, 0, 1, 2, 2, 2, 2]), 2
    loss, grad_v, grad_u, grad_noise = sgns_shared_loss(v, u, starts, noise, negative)
    scale = negative / len(noise)
    expected_loss, expected_v = 0.0, np.zeros_like(v)
    expected_u, expected_noise = np.zeros_like(u), np.zeros_like(noise)
    for b in range(len(u)):
        c = owner[b]
        pos_loss, pos_v, pos_u = sgns_loss(v[c:c + 1], u[None, b:b + 1])       # the true pair alone
        neg_loss, neg_v, neg_u = sgns_loss(v[c:c + 1], np.concatenate([u[None, b:b + 1], noise[None]], 1))
        # neg_* include the true pair again: subtract it, weight what is left by K / K'
        expected_loss += pos_loss + scale * (neg_loss - pos_loss)
        expected_v[c] += pos_v[0] + scale * (neg_v[0] - pos_v[0])
        expected_u[b] += pos_u[0, 0]
        expected_noise += scale * neg_u[0, 1:]
    assert loss == pytest.approx(expected_loss)
    np.testing.assert_allclose(grad_v, expected_v, atol=1e-12)
    np.testing.assert_allclose(grad_u, expected_u, atol=1e-12)
    np.testing.assert_allclose(grad_noise, expected_noise, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_and_sigmoid_helpers_do_not_overflow(dtype):
    from minitl.ops.elementwise import stable_softplus, stable_sigmoid
    x = np.array([-1000.0, -90.0, -3.0, 0.0, 2.5, 90.0, 1000.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):     # no overflow, no nan
        soft, sig = stable_softplus(x), stable_sigmoid(x)
    np.testing.assert_allclose(soft, np.logaddexp(0, x.astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(sig, 0.5 * np.tanh(0.5 * x.astype(np.float64)) + 0.5, rtol=1e-6, atol=1e-30)
    assert soft.dtype == sig.dtype == dtype


def test_shared_negatives_op_gradcheck():
    rng = np.random.default_rng(6)
    w_in, w_out = rng.standard_normal((8, 3)) * 0.5, rng.standard_normal((8, 3)) * 0.5
    centers, starts = np.array([2, 5, 2]), np.array([0, 3, 4])           # word 2 twice on purpose
    contexts, noise = np.array([1, 5, 7, 0, 1, 1]), np.array([3, 1, 6, 6])   # repeats on purpose
    tl.gradcheck(lambda a, b: SkipGramSharedNegatives.apply(a, b, centers, starts, contexts, noise, 5,
                                                            sparse=False),
                 tl.tensor(w_in, dtype=tl.float64), tl.tensor(w_out, dtype=tl.float64))


def test_scatter_add_rows_adds_repeated_rows():
    # the reference: np.add.at adds every row into place, a repeated row adding up (W[rows] += g
    # would keep only the last); checked against a loop over the rows
    rng = np.random.default_rng(7)
    table, rows = rng.standard_normal((5, 3)), np.array([4, 0, 4, 4, 2])
    values = rng.standard_normal((5, 3))
    expected = table.copy()
    for r, v in zip(rows, values):
        expected[r] += v
    with tl.fastpath.use(False):
        add_rows(table, rows, values)
    np.testing.assert_allclose(table, expected, rtol=1e-12)


def strided_tables(rng, n_rows, width):
    """The same (n_rows, width) float64 values as a C-contiguous table and as views with strides."""
    base = rng.standard_normal((n_rows, width))
    fortran = np.asfortranarray(base)
    wide = np.zeros((n_rows, 2 * width + 1))
    wide[:, 1:2 * width + 1:2] = base
    tall = np.zeros((2 * n_rows, width))
    tall[::2] = base
    return {"contiguous": base, "fortran": fortran, "every other column": wide[:, 1:2 * width + 1:2],
            "every other row": tall[::2]}


@pytest.mark.parametrize("n_rows, width, n_updates", [(1, 1, 5), (7, 3, 40), (33, 101, 500), (5, 1, 1), (6, 4, 0)])
def test_fast_row_scatter_equals_np_add_at(n_rows, width, n_updates):
    rng = np.random.default_rng(n_rows * 1000 + width)
    rows = rng.integers(0, n_rows, n_updates)                     # repeats on purpose
    values = rng.standard_normal((n_updates, width))
    for name, table in strided_tables(rng, n_rows, width).items():
        expected = table.copy()
        np.add.at(expected, rows, values)
        fast_sparse.scatter_add_rows(table, rows, values)
        np.testing.assert_allclose(table, expected, rtol=1e-13, atol=1e-13, err_msg=name)


def test_sparse_sgd_is_the_same_with_and_without_the_fast_path():
    rng = np.random.default_rng(9)
    start = rng.standard_normal((11, 6))
    grad = RowSparseGrad(np.array([3, 10, 3, 0, 3]), rng.standard_normal((5, 6)), (11, 6))
    results = []
    for fast in (False, True):
        w = tl.tensor(start.copy(), dtype=tl.float64, requires_grad=True)
        w.grad = grad
        with tl.fastpath.use(fast):
            SparseSGD([w], lr=0.1).step()
        results.append(w.data)
    expected = start.copy()
    np.add.at(expected, grad.indices, -0.1 * grad.values)
    np.testing.assert_allclose(results[0], expected, rtol=1e-13)
    np.testing.assert_allclose(results[1], expected, rtol=1e-13)


# -- training ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sg, shared", [(1, False), (1, True), (0, False)])
def test_word2vec_learns_planted_topics(sg, shared):
    # 16 words: a batch must be small beside the vocabulary, or a word's many summed
    # gradients in one step overshoot (see Word2Vec's docstring)
    model = Word2Vec(planted_corpus(), vector_size=16, window=3, min_count=1, sg=sg, epochs=3,
                     sample=0, progress=False, seed=3, batch_size=32, shared_negatives=shared)
    assert isinstance(model.wv, KeyedVectors) and len(model.wv) == 16
    assert topic_gap(model.wv) > 0.5, topic_gap(model.wv)
    assert model.losses[-1] < model.losses[0]
    nearest = [w for w, _ in model.wv.most_similar("dog", topn=3)]
    assert set(nearest) <= {"cat", "horse", "cow", "barks", "runs", "eats", "sleeps"}


@pytest.mark.exercise("embeddings.sgns_loss")
def test_default_skipgram_trains_with_sgns_loss(monkeypatch):
    # lesson 4 trains Word2Vec(sg=1) as it comes: its loss must be the exercise's sgns_loss
    calls = []

    def spy(v, u):
        calls.append(u.shape)
        return sgns_loss(v, u)

    monkeypatch.setattr(word2vec_module, "sgns_loss", spy)
    # sample=0: sub-sampling off, so this test needs only this exercise (lesson 4 meets it first)
    model = Word2Vec(planted_corpus(200), vector_size=8, min_count=1, sg=1, negative=3, epochs=1,
                     progress=False, batch_size=64, sample=0)
    assert model.shared_negatives is False
    assert calls and all(shape[1:] == (1 + 3, 8) for shape in calls)


def test_untrained_vectors_have_no_topics():
    # the control for the test above: the same measure on the initial vectors is near zero
    model = Word2Vec(vector_size=16, min_count=1, progress=False).build_vocab(planted_corpus())
    assert abs(topic_gap(model.wv)) < 0.3


def test_seeded_training_repeats_exactly():
    runs = [Word2Vec(planted_corpus(500), vector_size=8, min_count=1, sg=1, epochs=1, progress=False,
                     seed=7).wv.vectors for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_learning_rate_decays_linearly():
    model = Word2Vec(alpha=0.025, min_alpha=0.0001)
    assert model._learning_rate(0, 100) == 0.025
    assert model._learning_rate(50, 100) == pytest.approx((0.025 + 0.0001) / 2)
    assert model._learning_rate(100, 100) == pytest.approx(0.0001)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="negative sampling"):
        Word2Vec(negative=0)
    with pytest.raises(ValueError, match="min_count"):
        Word2Vec([["a", "b"]], min_count=5, progress=False)


@pytest.mark.skipif(not GCIDE.is_file(), reason="GCIDE is not installed (apt-get install dict-gcide)")
def test_command_line_on_a_gcide_cut(tmp_path, capsys):
    from minitl.data.text import gcide_sentences
    text = tmp_path / "gcide_cut.txt"
    text.write_text("\n".join(" ".join(s) for s in gcide_sentences(limit_words=20_000)))
    out = tmp_path / "vectors.txt"
    assert word2vec_main(["--corpus", str(text), "--epochs", "1", "--vector-size", "20",
                          "--min-count", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "words/s" in printed and "WordSim-353 Spearman" in printed and "analogies" in printed
    wv = KeyedVectors.load_word2vec_format(out)
    assert wv.vector_size == 20 and "the" in wv


def test_command_line_estimator_flags():
    with pytest.raises(SystemExit):
        word2vec_main(["--shared-negatives", "--classic"])       # one estimator or the other


def test_sample_corpus_spans_the_text():
    from minitl.data.text import build_corpus
    from minitl.embeddings.corpus import sample_corpus
    corpus = build_corpus([[f"w{i}", "x"] for i in range(100)])        # 100 sentences of 2 words
    sample = sample_corpus(corpus, 40)                                    # every 5th sentence
    assert len(sample) == 20 and sample.n_tokens == 40
    assert [sample.words(i) for i in (0, 1, 19)] == [["w0", "x"], ["w5", "x"], ["w95", "x"]]
    assert sample.vocab.counts[sample.vocab["x"]] == 20
