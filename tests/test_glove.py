"""GloVe (minitl.embeddings.glove): co-occurrence counting, weighting, loss, training."""
from collections import defaultdict

import numpy as np
import pytest

import minitl as tl
from minitl.embeddings import GloVe, cooccurrence_matrix
from minitl.embeddings.glove import GloVeLoss, glove_loss, glove_weighting
from minitl.fastpath import sparse as fast_sparse
from minitl.optim import SparseAdagrad
from minitl.optim.sparse import RowSparseGrad, segment_sum
from test_word2vec import planted_corpus, topic_gap


def brute_force_counts(sentences, window):
    """The definition, one pair at a time (fine for a test, far too slow for a corpus)."""
    counts = defaultdict(float)
    for s in sentences:
        for a in range(len(s)):
            for b in range(a + 1, min(a + window + 1, len(s))):
                counts[s[a], s[b]] += 1.0 / (b - a)
                counts[s[b], s[a]] += 1.0 / (b - a)
    return counts


def as_dict(rows, cols, values):
    return {(int(i), int(j)): float(x) for i, j, x in zip(rows, cols, values)}


def test_cooccurrence_matches_the_definition():
    rng = np.random.default_rng(0)
    sentences = [rng.integers(0, 6, rng.integers(1, 12)).tolist() for _ in range(30)]
    ids = np.concatenate([np.array(s, np.int32) for s in sentences])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])])
    for window in (1, 3):
        expected = brute_force_counts(sentences, window)
        got = as_dict(*cooccurrence_matrix(ids, offsets, 6, window))
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key])
        # chunking (pieces of 7 tokens) must give the same counts
        chunked = as_dict(*cooccurrence_matrix(ids, offsets, 6, window, chunk_tokens=7))
        assert chunked.keys() == got.keys()
        assert all(chunked[k] == pytest.approx(got[k]) for k in got)


def test_cooccurrence_small_example_by_hand():
    # "a b c" (ids 0 1 2), window 2: X[a,b] = 1, X[b,c] = 1, X[a,c] = 1/2, symmetric
    rows, cols, values = cooccurrence_matrix(np.array([0, 1, 2]), np.array([0, 3]), 3, window=2)
    assert as_dict(rows, cols, values) == {(0, 1): 1.0, (1, 0): 1.0, (1, 2): 1.0, (2, 1): 1.0,
                                           (0, 2): 0.5, (2, 0): 0.5}


@pytest.mark.parametrize("fast", [False, True])
def test_segment_sum_adds_rows_of_equal_index(fast):
    rng = np.random.default_rng(1)
    indices = rng.integers(0, 6, 40)
    values = rng.standard_normal((40, 3))
    with tl.fastpath.use(fast):
        unique, sums = segment_sum(indices, values)
    assert unique.tolist() == sorted(set(indices.tolist()))
    for u, row in zip(unique, sums):
        np.testing.assert_allclose(row, values[indices == u].sum(axis=0), rtol=1e-12)


def test_sparse_adagrad_is_glove_c_rule():
    # glove.c: G starts at 1, G += (lr g)^2, W -= lr g / sqrt(G); GloVe.fit writes it as AdaGrad
    # with step 1 and accumulator 1 / lr^2; a repeated row gets its summed gradient
    lr, w = 0.05, tl.tensor(np.ones((3, 2)), requires_grad=True)
    opt = SparseAdagrad([w], lr=1.0, initial_accumulator_value=1 / lr ** 2)
    w.grad = RowSparseGrad(np.array([2, 0, 2]), np.array([[1.0, 2.0], [3.0, 0.0], [1.0, 2.0]]), (3, 2))
    opt.step()
    g = np.array([[3.0, 0.0], [0.0, 0.0], [2.0, 4.0]])
    expected = 1 - lr * g / np.sqrt(1 + (lr * g) ** 2)
    np.testing.assert_allclose(w.data, expected, rtol=1e-5)


@pytest.mark.parametrize("width", [1, 3, 100])
def test_fast_adagrad_rows_equal_the_reference(width):
    rng = np.random.default_rng(width)
    start, accumulator = rng.standard_normal((9, width)), rng.uniform(1, 3, (9, width))
    rows, grad = np.array([7, 0, 4, 8]), rng.standard_normal((4, width))
    expected_w, expected_g = start.copy(), accumulator.copy()
    expected_g[rows] += grad * grad
    expected_w[rows] -= 0.3 * grad / np.sqrt(expected_g[rows])
    fast_sparse.adagrad_rows(start, accumulator, rows, grad, 0.3)
    np.testing.assert_allclose(start, expected_w, rtol=1e-13)
    np.testing.assert_allclose(accumulator, expected_g, rtol=1e-13)


@pytest.mark.parametrize("fast", [False, True])
def test_sparse_adagrad_on_dense_and_sparse_gradients_agree(fast):
    rng = np.random.default_rng(2)
    start, dense = rng.standard_normal((6, 4)), np.zeros((6, 4))
    rows, values = np.array([5, 1, 5]), rng.standard_normal((3, 4))
    np.add.at(dense, rows, values)
    results = []
    for grad in (RowSparseGrad(rows, values, (6, 4)), dense):
        w = tl.tensor(start.copy(), dtype=tl.float64, requires_grad=True)
        opt = SparseAdagrad([w], lr=0.1)
        for _ in range(2):
            w.grad = grad
            with tl.fastpath.use(fast):
                opt.step()
        results.append(w.data)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)


@pytest.mark.exercise("embeddings.glove_weighting")
def test_glove_weighting():
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    np.testing.assert_allclose(glove_weighting(x), [0.01 ** 0.75, 0.1 ** 0.75, 1.0, 1.0])
    np.testing.assert_allclose(glove_weighting(np.array([5.0]), x_max=10, alpha=1.0), [0.5])


@pytest.mark.exercise("embeddings.glove_loss")
def test_glove_loss_by_hand():
    w_i, w_j = np.array([[1.0, 2.0]]), np.array([[3.0, -1.0]])
    loss, g_wi, g_wj, g_bi, g_bj = glove_loss(w_i, w_j, np.array([0.5]), np.array([-0.25]),
                                              np.array([np.log(2.0)]), np.array([0.3]))
    diff = 1.0 + 0.5 - 0.25 - np.log(2.0)
    assert loss == pytest.approx(0.5 * 0.3 * diff ** 2)
    np.testing.assert_allclose(g_wi, 0.3 * diff * w_j)
    np.testing.assert_allclose(g_wj, 0.3 * diff * w_i)
    np.testing.assert_allclose(g_bi, [0.3 * diff])


@pytest.mark.exercise("embeddings.glove_loss")
def test_glove_op_gradcheck():
    rng = np.random.default_rng(4)
    i, j = np.array([0, 2, 2, 4]), np.array([1, 1, 3, 4])
    log_x = np.log(rng.uniform(1, 50, 4))
    f = glove_weighting(np.exp(log_x))
    tl.gradcheck(lambda w, wt, b, bt: GloVeLoss.apply(w, wt, b, bt, i, j, log_x, f, sparse=False),
                 *(tl.tensor(rng.standard_normal(shape) * 0.5, dtype=tl.float64)
                   for shape in ((5, 3), (5, 3), (5, 1), (5, 1))))


def test_glove_learns_planted_topics():
    glove = GloVe(vector_size=16, window=3, min_count=1, epochs=30, x_max=10, batch_size=64,
                  progress=False, seed=5).fit(planted_corpus())
    assert len(glove.epoch_seconds) == 30 and glove.losses[-1] < glove.losses[0]
    assert topic_gap(glove.wv) > 0.5, topic_gap(glove.wv)
    # the vectors are W + W~
    np.testing.assert_allclose(glove.wv.vectors, glove.model.w.data + glove.model.w_tilde.data)


def test_glove_command_line(tmp_path, capsys):
    from minitl.cli import main
    text = tmp_path / "planted.txt"
    text.write_text("\n".join(" ".join(s) for s in planted_corpus(400)))
    out = tmp_path / "glove.bin"
    assert main(["glove", "--corpus", str(text), "--epochs", "2", "--vector-size", "8", "--min-count", "1",
                 "--window", "3", "--batch-size", "256", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "co-occurring pairs" in printed and "time per epoch" in printed and "WordSim-353" in printed
    from minitl.embeddings import KeyedVectors
    assert KeyedVectors.load_word2vec_format(out, binary=True).vector_size == 8
