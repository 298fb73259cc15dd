"""KeyedVectors (minitl.embeddings.keyed_vectors): similarity, analogies, benchmarks, file format."""
import numpy as np
import pytest

from minitl.embeddings import KeyedVectors, three_cos_add, three_cos_mul
from minitl.embeddings.keyed_vectors import spearman, unit_rows



def analogy_vectors():
    """Vectors where king - man + woman is exactly queen (gender + royalty axes), plus noise words."""
    words = ["man", "woman", "king", "queen", "apple", "car"]
    vectors = np.array([[1, 0, 0, 0.1], [0, 1, 0, 0.1], [1, 0, 1, 0.1], [0, 1, 1, 0.1],
                        [0.2, 0.2, -1, 1], [0.5, 0.4, 0.3, -1]], dtype=np.float32)
    return KeyedVectors(words, vectors)


@pytest.mark.exercise("embeddings.three_cos_add")
def test_three_cos_add_is_the_sum_of_cosines():
    rng = np.random.default_rng(0)
    unit = unit_rows(rng.standard_normal((20, 5)))
    scores = three_cos_add(unit, [3, 7], [11])
    sums = unit @ unit[3] + unit @ unit[7] - unit @ unit[11]
    # the same ranking, and proportional values (the query was divided by its length)
    assert np.argsort(scores).tolist() == np.argsort(sums).tolist()
    np.testing.assert_allclose(scores / sums, np.full(20, scores[0] / sums[0]), rtol=1e-5)


@pytest.mark.exercise("embeddings.three_cos_add")
def test_king_minus_man_plus_woman():
    wv = analogy_vectors()
    answer = wv.most_similar(positive=["king", "woman"], negative=["man"], topn=3)
    assert answer[0][0] == "queen"
    assert {w for w, _ in answer}.isdisjoint({"king", "woman", "man"})
    assert [s for _, s in answer] == sorted((s for _, s in answer), reverse=True)


def test_three_cos_mul_answers_too():
    wv = analogy_vectors()
    assert wv.most_similar_cosmul(positive=["king", "woman"], negative=["man"], topn=1)[0][0] == "queen"
    unit = wv.get_normed_vectors()
    scores = three_cos_mul(unit, [2, 1], [0])
    cos = lambda a, b: (1 + unit[a] @ unit[b]) / 2     # noqa: E731
    assert scores[3] == pytest.approx(cos(3, 2) * cos(3, 1) / (cos(3, 0) + 1e-6), rel=1e-5)


def test_similarity_and_lookup():
    wv = analogy_vectors()
    assert wv.similarity("king", "king") == pytest.approx(1.0)
    assert wv.similarity("man", "woman") == pytest.approx(0.01 / 1.01, rel=1e-5)
    assert "queen" in wv and "prince" not in wv and len(wv) == 6
    with pytest.raises(KeyError, match="prince"):
        wv["prince"]


def test_spearman_with_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks of x: 1, 2.5, 2.5, 4; of y: 1, 2, 3, 4 -> Pearson of those = 0.9486833
    assert spearman([1, 5, 5, 9], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 10, 50), rng.integers(0, 10, 50)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_evaluate_word_pairs_and_analogies(tmp_path):
    wv = analogy_vectors()
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("# comment\nking\tqueen\t8\nman\tking\t6\nWOMAN\tqueen\t7\napple\tcar\t1\nunicorn\tman\t5\n")
    scores = wv.evaluate_word_pairs(pairs)
    ours = [wv.similarity(a, b) for a, b in [("king", "queen"), ("man", "king"), ("woman", "queen"), ("apple", "car")]]
    assert scores.spearman == pytest.approx(spearman(ours, [8, 6, 7, 1]))
    assert scores.oov_ratio == pytest.approx(20.0)
    questions = tmp_path / "questions.txt"
    questions.write_text(": royal\nman woman king queen\nwoman man queen king\nman king woman apple\n"
                         ": missing\nman woman prince princess\n")
    accuracy, sections = wv.evaluate_word_analogies(questions)
    assert accuracy == pytest.approx(2 / 3)
    assert sections[-1]["section"] == "Total accuracy" and len(sections[1]["correct"]) == 0
    assert len(sections[0]["correct"]) == 2 and len(sections[0]["incorrect"]) == 1
    assert wv.evaluate_word_analogies(questions, method="3cosmul")[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_round_trip(tmp_path, binary):
    wv = KeyedVectors(["a", "bé", "c'd"], np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    path = wv.save_word2vec_format(tmp_path / "v.bin", binary=binary)
    back = KeyedVectors.load_word2vec_format(path, binary=binary)
    assert back.index_to_key == wv.index_to_key
    np.testing.assert_array_equal(back.vectors, wv.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_opens_in_gensim_and_back(tmp_path, binary):
    gensim_models = pytest.importorskip("gensim.models")
    wv = KeyedVectors(["the", "cat", "café"], np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32))
    ours = wv.save_word2vec_format(tmp_path / "ours", binary=binary)
    theirs = gensim_models.KeyedVectors.load_word2vec_format(str(ours), binary=binary)
    assert list(theirs.index_to_key) == wv.index_to_key
    np.testing.assert_allclose(theirs.vectors, wv.vectors, rtol=1e-6)
    theirs.save_word2vec_format(str(tmp_path / "theirs"), binary=binary)
    back = KeyedVectors.load_word2vec_format(tmp_path / "theirs", binary=binary)
    assert back.index_to_key == wv.index_to_key
    np.testing.assert_allclose(back.vectors, wv.vectors, rtol=1e-6)


def test_pca_figure(tmp_path):
    wv = analogy_vectors()
    xy = wv.pca_2d(["man", "woman", "king", "queen"])
    assert xy.shape == (4, 2)
    # PCA keeps distances when the 4 points span 2 dimensions around their mean (they do here up to the 0.1s)
    fig = wv.pca_figure(["man", "woman", "king", "queen", "unknownword"])
    fig.savefig(tmp_path / "pca.png")
    assert (tmp_path / "pca.png").stat().st_size > 1000


def test_eval_files_are_found_in_minitl_data(tmp_path, monkeypatch):
    from minitl.embeddings import eval_file
    (tmp_path / "word-vector-eval").mkdir()
    (tmp_path / "word-vector-eval" / "simlex999.txt").write_text("old\tnew\t1.58\n")
    monkeypatch.setenv("MINITL_DATA", str(tmp_path))
    assert eval_file("simlex999.txt") == tmp_path / "word-vector-eval" / "simlex999.txt"
    with pytest.raises(ValueError, match="unknown evaluation set"):
        eval_file("nope.txt")
