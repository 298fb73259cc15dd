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


# -- gensim's surface, checked against gensim itself on the same vectors ------------------------------
def random_vectors(n_words=40, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(n_words)]
    return KeyedVectors(words, rng.standard_normal((n_words, dim)).astype(np.float32),
                        counts=np.arange(n_words, 0, -1))


def gensim_twin(wv):
    """gensim's KeyedVectors holding the same keys and vectors (the test skips without gensim)."""
    models = pytest.importorskip("gensim.models")
    twin = models.KeyedVectors(vector_size=wv.vector_size)
    twin.add_vectors(list(wv.index_to_key), wv.vectors.copy())
    return twin


def assert_same_ranking(ours, theirs):
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    dict(positive="w3"), dict(positive=["w3", "w7"], negative=["w1"], topn=5),
    dict(positive=[("w3", 0.5), ("w7", 2.0)], negative=[("w1", -1.5)]), dict(negative="w2", topn=4),
    dict(positive=["w3"], restrict_vocab=20), dict(positive=["w3"], clip_start=5, clip_end=30, topn=3),
    dict(positive=["w3", 4], topn=50)])
def test_most_similar_matches_gensim(kwargs):
    wv = random_vectors()
    assert_same_ranking(wv.most_similar(**kwargs), gensim_twin(wv).most_similar(**kwargs))


def test_most_similar_vectors_and_all_scores_match_gensim():
    wv = random_vectors()
    theirs = gensim_twin(wv)
    query = np.random.default_rng(3).standard_normal(wv.vector_size).astype(np.float32)
    assert_same_ranking(wv.most_similar(positive=[query, "w2"], negative=["w5"]),
                        theirs.most_similar(positive=[query, "w2"], negative=["w5"]))
    assert_same_ranking(wv.similar_by_vector(query, topn=7), theirs.similar_by_vector(query, topn=7))
    assert_same_ranking(wv.similar_by_word("w9", topn=3), theirs.similar_by_word("w9", topn=3))
    assert_same_ranking(wv.similar_by_key("w9", restrict_vocab=10), theirs.similar_by_key("w9", restrict_vocab=10))
    np.testing.assert_allclose(wv.most_similar("w4", topn=None), theirs.most_similar("w4", topn=None),
                               rtol=1e-5, atol=1e-6)
    assert wv.most_similar("w4", topn=0) == theirs.most_similar("w4", topn=0) == []


def test_lookups_match_gensim():
    wv = random_vectors()
    theirs = gensim_twin(wv)
    for norm in (False, True):
        np.testing.assert_allclose(wv.get_vector("w6", norm=norm), theirs.get_vector("w6", norm=norm), rtol=1e-6)
    np.testing.assert_array_equal(wv[["w1", "w2"]], theirs[["w1", "w2"]])
    np.testing.assert_array_equal(wv[3], theirs[3])                        # an index is a key too
    for key in ("w5", 7, 40, -1, "nope"):
        assert wv.has_index_for(key) == theirs.has_index_for(key)
        assert (key in wv) == (key in theirs)
    with pytest.raises(KeyError):
        wv.get_vector("nope")
    assert not wv.get_vector("w1").flags.writeable                          # norms must stay right


def test_distances_and_ranks_match_gensim():
    wv = random_vectors()
    theirs = gensim_twin(wv)
    assert wv.distance("w1", "w8") == pytest.approx(theirs.distance("w1", "w8"), rel=1e-5)
    np.testing.assert_allclose(wv.distances("w1"), theirs.distances("w1"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wv.distances("w1", ["w2", "w9"]), theirs.distances("w1", ["w2", "w9"]), rtol=1e-5)
    vector = wv["w4"] + 0.5
    np.testing.assert_allclose(wv.distances(vector, ["w2"]), theirs.distances(vector, ["w2"]), rtol=1e-5)
    assert wv.closer_than("w1", "w8") == theirs.closer_than("w1", "w8")
    assert wv.rank("w1", "w8") == theirs.rank("w1", "w8") > 1
    assert wv.most_similar_to_given("w1", ["w8", "w2", "w30"]) == theirs.most_similar_to_given("w1", ["w8", "w2", "w30"])
    np.testing.assert_allclose(KeyedVectors.cosine_similarities(wv["w3"], wv.vectors[:5]),
                               theirs.cosine_similarities(wv["w3"], wv.vectors[:5]), rtol=1e-5)


def test_sets_of_words_match_gensim():
    wv = random_vectors()
    theirs = gensim_twin(wv)
    words = ["w1", "w2", "w3", "w17"]
    assert wv.doesnt_match(words) == theirs.doesnt_match(words)
    ours_rank, their_rank = wv.rank_by_centrality(words), theirs.rank_by_centrality(words)
    assert [w for _, w in ours_rank] == [w for _, w in their_rank]
    with pytest.warns(UserWarning, match="nope"):
        assert wv.doesnt_match(words + ["nope"]) == theirs.doesnt_match(words + ["nope"])
    assert wv.n_similarity(["w1", "w2"], ["w3", "nope"]) == pytest.approx(
        theirs.n_similarity(["w1", "w2"], ["w3", "nope"]), rel=1e-5)   # unknown words are skipped
    with pytest.raises(ZeroDivisionError):
        wv.n_similarity([], ["w1"])


@pytest.mark.parametrize("kwargs", [dict(), dict(pre_normalize=False), dict(post_normalize=True),
                                    dict(weights=[0.5, -2.0, 1.0]), dict(weights=[0.5, -2.0, 1.0], pre_normalize=False)])
def test_get_mean_vector_matches_gensim(kwargs):
    wv = random_vectors()
    keys = ["w1", "nope", "w5"]                                      # an unknown word is skipped
    np.testing.assert_allclose(wv.get_mean_vector(keys, **kwargs), gensim_twin(wv).get_mean_vector(keys, **kwargs),
                               rtol=1e-5, atol=1e-6)


def test_get_mean_vector_takes_vectors_and_refuses_what_gensim_refuses():
    wv = random_vectors()
    theirs = gensim_twin(wv)
    keys = ["w1", np.arange(6, dtype=np.float32)]
    np.testing.assert_allclose(wv.get_mean_vector(keys), theirs.get_mean_vector(keys), rtol=1e-5)
    with pytest.raises(KeyError, match="nope"):
        wv.get_mean_vector(["w1", "nope"], ignore_missing=False)
    with pytest.raises(ValueError, match="same length"):
        wv.get_mean_vector(["w1", "w2"], weights=[1.0])
    with pytest.raises(ValueError, match="no input"):
        wv.get_mean_vector([])


@pytest.mark.parametrize("replace", [False, True])
def test_add_vectors_matches_gensim(replace):
    wv = random_vectors(10)
    theirs = gensim_twin(wv)
    new = np.random.default_rng(4).standard_normal((3, 6)).astype(np.float32)
    for kv in (wv, theirs):
        kv.most_similar("w1")                                        # norms computed before the change
        kv.add_vectors(["w2", "fresh", "newer"], new, replace=replace)
        kv.add_vectors("single", new[0] * 2)
    assert wv.index_to_key == list(theirs.index_to_key)
    assert wv.key_to_index == theirs.key_to_index
    np.testing.assert_array_equal(wv.vectors, theirs.vectors)
    theirs.fill_norms(force=True)                 # gensim keeps stale norms after add_vectors; we don't
    assert_same_ranking(wv.most_similar("fresh"), theirs.most_similar("fresh"))
    assert wv.counts.tolist() == list(range(10, 0, -1)) + [0, 0, 0]
    wv["w3"] = new[1]
    np.testing.assert_array_equal(wv["w3"], new[1])
    with pytest.raises(ValueError, match="vectors"):
        wv.add_vectors(["a", "b"], new)


def test_native_save_and_load(tmp_path):
    wv = random_vectors()
    wv.add_vectors(["café", "ünï"], np.ones((2, 6), dtype=np.float32))
    path = wv.save(tmp_path / "vectors.npz")
    back = KeyedVectors.load(path)
    assert back.index_to_key == wv.index_to_key
    np.testing.assert_array_equal(back.vectors, wv.vectors)
    np.testing.assert_array_equal(back.counts, wv.counts)
    assert back.most_similar("w3") == wv.most_similar("w3")
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.npz"]      # no temporary file left behind
    no_counts = KeyedVectors(["a"], np.ones((1, 2)))
    assert KeyedVectors.load(no_counts.save(tmp_path / "a.npz")).counts is None


def test_load_refuses_bad_files_clearly(tmp_path):
    import minitl as tl
    with pytest.raises(FileNotFoundError, match="no KeyedVectors file"):
        KeyedVectors.load(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    random_vectors().save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    with pytest.raises(tl.CheckpointError, match="corrupt"):
        KeyedVectors.load(corrupt)
    other = tmp_path / "other.npz"
    tl.save({"weight": np.ones(3)}, other)
    with pytest.raises(tl.CheckpointError, match="not a file of KeyedVectors.save"):
        KeyedVectors.load(other)
