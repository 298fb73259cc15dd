"""Word vectors once trained: similarity, analogies, benchmarks, the word2vec file format.

Section on word embeddings, "what the vectors know". The surface is gensim 4's ``KeyedVectors``
(argument names, defaults and results), so that what a student writes here works there:
``most_similar(positive=, negative=, topn=)``, ``similarity``, ``distance(s)``, ``doesnt_match``,
``n_similarity``, ``get_mean_vector``, ``closer_than``, ``rank``, ``add_vectors``,
``evaluate_word_analogies``, ``evaluate_word_pairs``, and ``save_word2vec_format``/
``load_word2vec_format`` (text and binary), whose files gensim and word2vec.c read and write.
``save``/``load`` keep the keys, vectors and counts in one .npz file, without pickle.

Analogies, "a is to b as c is to ?" (Mikolov et al. 2013c), are answered by 3CosAdd,

    argmax_x  cos(x, b) - cos(x, a) + cos(x, c)        over x not in {a, b, c},

and optionally by Levy & Goldberg's (2014) 3CosMul, argmax cos'(x, b) cos'(x, c) / (cos'(x, a) + eps)
with cos' = (1 + cos) / 2 in [0, 1], which stops one large similarity from dominating.
"""
from __future__ import annotations

import numbers
import os
import warnings
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

KEY_TYPES = (str, int, np.integer)              # what names one vector (gensim's _KEY_TYPES)
FILE_FORMAT = "minitl.KeyedVectors"             # the tag save() writes and load() checks


class PairScores(NamedTuple):
    """What :meth:`KeyedVectors.evaluate_word_pairs` returns (gensim adds p-values; we don't)."""

    pearson: float
    spearman: float
    oov_ratio: float     # percent of pairs skipped because a word is not in the vocabulary


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its length (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def three_cos_add(unit: np.ndarray, positive: Sequence[int], negative: Sequence[int]) -> np.ndarray:
    """3CosAdd scores of every word: sum of cosines with the positive words minus the negative ones.

    ``unit``: (V, d) unit-length rows. For king - man + woman: positive = [king, woman], negative
    = [man]. Since the rows have length 1, sum_p cos(x, p) - sum_n cos(x, n) = x . (sum_p p - sum_n n):
    one matrix-vector product. We divide that query by its length, which changes no ranking and
    makes the score the cosine with (b - a + c), as gensim reports it.
    """
    # BEGIN EXERCISE embeddings.three_cos_add
    # hint: query = unit[positive].sum(0) - unit[negative].sum(0); return unit @ (query / its norm)
    query = unit[list(positive)].sum(axis=0) - unit[list(negative)].sum(axis=0)
    return unit @ (query / np.linalg.norm(query))
    # END EXERCISE


def three_cos_mul(unit: np.ndarray, positive: Sequence[int], negative: Sequence[int],
                  eps: float = 1e-6) -> np.ndarray:
    """3CosMul (Levy & Goldberg 2014): prod_p cos'(x, p) / (prod_n cos'(x, n) + eps), cos' = (1 + cos) / 2."""
    shifted = (1 + unit @ unit[list(positive) + list(negative)].T) / 2        # (V, P + N)
    n_pos = len(positive)
    return shifted[:, :n_pos].prod(axis=1) / (shifted[:, n_pos:].prod(axis=1) + eps)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks, ties given their average rank."""
    return pearson(_ranks(np.asarray(x, float)), _ranks(np.asarray(y, float)))


def pearson(x, y) -> float:
    x, y = np.asarray(x, float) - np.mean(x), np.asarray(y, float) - np.mean(y)
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    # tied values share the mean of the ranks they span
    _, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(group, weights=ranks)
    return (sums / counts)[group]


def as_list(keys) -> list:
    """``None`` -> [], one key or vector -> [it], a sequence -> a list (gensim's ``_ensure_list``)."""
    if keys is None:
        return []
    if isinstance(keys, KEY_TYPES) or (isinstance(keys, np.ndarray) and keys.ndim == 1):
        return [keys]
    return list(keys)


def unit_vector(vector: np.ndarray) -> np.ndarray:
    """``vector`` divided by its length; a zero vector stays zero."""
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


class KeyedVectors:
    """One vector per word: ``wv["king"]``, ``wv.most_similar(...)``, and the rest of the module.

    ``index_to_key`` (a list) and ``key_to_index`` (a dict) map words to rows of ``vectors``
    (V, d); ``counts``, when known, are the corpus counts of the words.
    """

    def __init__(self, index_to_key: Sequence[str], vectors: np.ndarray, counts=None):
        self.index_to_key = list(index_to_key)
        self.key_to_index = {w: i for i, w in enumerate(self.index_to_key)}
        self.vectors = np.asarray(vectors)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.index_to_key):
            raise ValueError(f"{len(self.index_to_key)} words need a ({len(self.index_to_key)}, d) array "
                             f"of vectors, got shape {self.vectors.shape}")
        self.counts = None if counts is None else np.asarray(counts)
        if self.counts is not None and self.counts.shape != (len(self.index_to_key),):
            raise ValueError(f"{len(self.index_to_key)} words but counts of shape {self.counts.shape}")
        self._unit = None

    # -- looking up ----------------------------------------------------------------------------
    def __len__(self):
        return len(self.index_to_key)

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def get_index(self, key, default=None) -> int:
        """The row of ``key``; an integer in range is its own row (as in gensim); else ``default``
        when given, else a KeyError."""
        index = self.key_to_index.get(key, -1)
        if index >= 0:
            return index
        if isinstance(key, (int, np.integer)) and 0 <= key < len(self):
            return int(key)
        if default is not None:
            return default
        raise KeyError(f"word {key!r} not in vocabulary")

    def has_index_for(self, key) -> bool:
        """True when ``key`` names a row (a word of the vocabulary, or an index in range)."""
        return self.get_index(key, -1) >= 0

    __contains__ = has_index_for

    def get_vector(self, key, norm=False) -> np.ndarray:
        """The vector of ``key`` (read-only, so that cached norms stay right); ``norm=True``: of length 1."""
        index = self.get_index(key)
        vector = self.get_normed_vectors()[index] if norm else self.vectors[index]
        vector.setflags(write=False)
        return vector

    def __getitem__(self, key_or_keys) -> np.ndarray:
        """``wv["king"]``: one vector; ``wv[["king", "queen"]]``: a (2, d) array."""
        if isinstance(key_or_keys, KEY_TYPES):
            return self.get_vector(key_or_keys)
        return np.vstack([self.get_vector(key) for key in key_or_keys])

    def get_normed_vectors(self) -> np.ndarray:
        """Unit-length copies of the vectors (a zero vector stays zero); computed once, see :meth:`fill_norms`."""
        self.fill_norms()
        return self._unit

    def fill_norms(self, force=False):
        """Compute the unit-length vectors if not done yet, or again with ``force`` (after editing ``vectors``)."""
        if self._unit is None or force:
            self._unit = unit_rows(self.vectors.astype(np.float32))

    def get_mean_vector(self, keys, weights=None, pre_normalize=True, post_normalize=False, ignore_missing=True):
        """sum_i w_i x_i / sum_i |w_i| over ``keys`` (words, indices or vectors), gensim's rule.

        ``pre_normalize``: the words' vectors taken at length 1 (a vector given as an array is
        used as it is); ``post_normalize``: the mean brought to length 1; ``ignore_missing``: a
        word outside the vocabulary is skipped (else a KeyError).
        """
        if len(keys) == 0:
            raise ValueError("cannot compute mean with no input")
        weights = np.ones(len(keys)) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(keys),):
            raise ValueError(f"keys and weights must have the same length: {len(keys)} keys, weights of shape "
                             f"{weights.shape}")
        mean, total_weight = np.zeros(self.vector_size, dtype=np.float64), 0.0
        for key, weight in zip(keys, weights):
            if isinstance(key, np.ndarray):
                vector = key
            elif self.has_index_for(key):
                vector = self.get_vector(key, norm=pre_normalize)
            elif ignore_missing:
                continue
            else:
                raise KeyError(f"word {key!r} not in vocabulary")
            mean += weight * vector
            total_weight += abs(weight)
        if total_weight > 0:
            mean /= total_weight
        mean = mean.astype(self.vectors.dtype)
        return unit_vector(mean) if post_normalize else mean

    def add_vectors(self, keys, weights, replace=False):
        """Append words and their vectors; a word already present keeps its vector unless ``replace``.

        ``keys``: one word or a list; ``weights``: its vector, or a (len(keys), d) array or list of
        vectors. New words get count 0.
        """
        if isinstance(keys, KEY_TYPES):
            keys, weights = [keys], np.asarray(weights).reshape(1, -1)
        weights = np.asarray(weights)
        if weights.shape != (len(keys), self.vector_size):
            raise ValueError(f"add_vectors: {len(keys)} keys need a ({len(keys)}, {self.vector_size}) array of "
                             f"vectors, got shape {weights.shape}")
        present = np.array([key in self.key_to_index for key in keys], dtype=bool)
        for key in (key for key, known in zip(keys, present) if not known):
            self.key_to_index[key] = len(self.index_to_key)
            self.index_to_key.append(key)
        self.vectors = np.vstack([self.vectors, weights[~present].astype(self.vectors.dtype)])
        if self.counts is not None:
            self.counts = np.concatenate([self.counts, np.zeros(int((~present).sum()), dtype=self.counts.dtype)])
        if replace and present.any():
            rows = [self.key_to_index[key] for key, known in zip(keys, present) if known]
            self.vectors[rows] = weights[present]
        self._unit = None

    def __setitem__(self, keys, weights):
        """``wv["new"] = vector``: :meth:`add_vectors` with ``replace=True``."""
        if not isinstance(keys, list):
            keys, weights = [keys], np.asarray(weights).reshape(1, -1)
        self.add_vectors(keys, weights, replace=True)

    # -- similarity ----------------------------------------------------------------------------
    @staticmethod
    def cosine_similarities(vector_1: np.ndarray, vectors_all: np.ndarray) -> np.ndarray:
        """cos(vector_1, each row of vectors_all) = v . x / (|v| |x|)."""
        norms = np.linalg.norm(vectors_all, axis=1) * np.linalg.norm(vector_1)
        return (vectors_all @ vector_1) / norms

    def similarity(self, w1, w2) -> float:
        """Cosine similarity of two words."""
        unit = self.get_normed_vectors()
        return float(unit[self.get_index(w1)] @ unit[self.get_index(w2)])

    def distance(self, w1, w2) -> float:
        """Cosine distance, 1 - :meth:`similarity`."""
        return 1 - self.similarity(w1, w2)

    def distances(self, word_or_vector, other_words=()) -> np.ndarray:
        """Cosine distances from a word (or a vector) to ``other_words``, or to every word (itself included)."""
        vector = self.get_vector(word_or_vector) if isinstance(word_or_vector, KEY_TYPES) else word_or_vector
        others = self.vectors if not other_words else self.vectors[[self.get_index(w) for w in other_words]]
        return 1 - self.cosine_similarities(vector, others)

    def n_similarity(self, ws1, ws2) -> float:
        """Cosine similarity of the means of two sets of words (unnormalised vectors; unknown words skipped)."""
        if not (len(ws1) and len(ws2)):
            raise ZeroDivisionError("At least one of the passed list is empty.")
        mean1 = self.get_mean_vector(ws1, pre_normalize=False)
        mean2 = self.get_mean_vector(ws2, pre_normalize=False)
        return float(unit_vector(mean1) @ unit_vector(mean2))

    def most_similar(self, positive=None, negative=None, topn=10, clip_start=0, clip_end=None,
                     restrict_vocab=None, method="3cosadd"):
        """The ``topn`` words nearest to sum(positive) - sum(negative), as (word, cosine) pairs.

        ``positive``/``negative``: words, indices or vectors, or (item, weight) pairs (gensim's
        rule: a pair's weight is used as given; the default weights are +1 and -1). Words are
        taken at unit length, the query is their weighted mean (:meth:`get_mean_vector`), and
        for plain words that is 3CosAdd (:func:`three_cos_add`). The query words themselves are
        never answered. ``restrict_vocab`` searches only the first (most frequent) that many
        words, else ``clip_start:clip_end``; ``topn=None`` returns the cosines of all those words
        as an array. ``method="3cosmul"`` (words only) ranks by 3CosMul instead.
        """
        if isinstance(topn, numbers.Integral) and topn < 1:
            return []
        items = [(item, 1.0) for item in as_list(positive)] + [(item, -1.0) for item in as_list(negative)]
        if not items:
            raise ValueError("most_similar needs at least one positive or negative word")
        items = [pair if isinstance(pair[0], (*KEY_TYPES, np.ndarray)) else (pair[0][0], pair[0][1])
                 for pair in items]
        keys, weights = [key for key, _ in items], np.array([weight for _, weight in items])
        clip_end = clip_end or len(self)
        if restrict_vocab:
            clip_start, clip_end = 0, restrict_vocab
        unit = self.get_normed_vectors()
        words_only = all(isinstance(key, KEY_TYPES) for key in keys)
        if method.lower() not in ("3cosadd", "3cosmul"):
            raise ValueError(f"method must be '3cosadd' or '3cosmul', got {method!r}")
        if words_only and np.all(np.abs(weights) == 1):
            pos = [self.get_index(k) for k, w in zip(keys, weights) if w > 0]
            neg = [self.get_index(k) for k, w in zip(keys, weights) if w < 0]
            scorer = three_cos_add if method.lower() == "3cosadd" else three_cos_mul
            scores = scorer(unit, pos, neg)[clip_start:clip_end]
        elif method.lower() == "3cosadd":
            scores = unit[clip_start:clip_end] @ self.get_mean_vector(
                keys, weights, pre_normalize=True, post_normalize=True, ignore_missing=False)
        else:
            raise ValueError("3CosMul takes words only, weighted +1 (positive) or -1 (negative)")
        if not topn:
            return scores
        query = {self.get_index(key) for key in keys if isinstance(key, KEY_TYPES)}
        order = np.argsort(-scores, kind="stable")[:topn + len(query)]
        return [(self.index_to_key[i + clip_start], float(scores[i]))
                for i in order if i + clip_start not in query][:topn]

    def most_similar_cosmul(self, positive=None, negative=None, topn=10, restrict_vocab=None):
        """:meth:`most_similar` ranked by 3CosMul (Levy & Goldberg 2014)."""
        return self.most_similar(positive, negative, topn, restrict_vocab=restrict_vocab, method="3cosmul")

    def similar_by_key(self, key, topn=10, restrict_vocab=None):
        """The ``topn`` nearest words of one word."""
        return self.most_similar(positive=[key], topn=topn, restrict_vocab=restrict_vocab)

    similar_by_word = similar_by_key

    def similar_by_vector(self, vector, topn=10, restrict_vocab=None):
        """The ``topn`` nearest words of a vector (by cosine)."""
        return self.most_similar(positive=[vector], topn=topn, restrict_vocab=restrict_vocab)

    def most_similar_to_given(self, key1, keys_list):
        """The word of ``keys_list`` most similar to ``key1``."""
        return keys_list[int(np.argmax([self.similarity(key1, key) for key in keys_list]))]

    def closer_than(self, key1, key2) -> list:
        """Every word closer to ``key1`` than ``key2`` is, in vocabulary order (``key1`` left out)."""
        all_distances = self.distances(key1)
        index1, index2 = self.get_index(key1), self.get_index(key2)
        closer = np.flatnonzero(all_distances < all_distances[index2])
        return [self.index_to_key[i] for i in closer if i != index1]

    def rank(self, key1, key2) -> int:
        """1 + the number of words closer to ``key1`` than ``key2``: 1 when ``key2`` is the nearest."""
        return len(self.closer_than(key1, key2)) + 1

    def rank_by_centrality(self, words, use_norm=True) -> list:
        """(cosine with the words' mean direction, word) pairs, most central first; unknown words skipped."""
        used = [word for word in words if word in self]
        if len(used) != len(words):
            warnings.warn(f"vectors for words {set(words) - set(used)} are not present in the model, "
                          "ignoring these words", stacklevel=2)
        if not used:
            raise ValueError("cannot select a word from an empty list")
        vectors = np.vstack([self.get_vector(word, norm=use_norm) for word in used]).astype(np.float32)
        mean = self.get_mean_vector(vectors, post_normalize=True)
        return sorted(zip((float(x) for x in vectors @ mean), used), reverse=True)

    def doesnt_match(self, words):
        """The word of ``words`` farthest from the mean direction of them all."""
        return self.rank_by_centrality(words)[-1][1]

    # -- benchmarks ----------------------------------------------------------------------------
    def _restricted_lookup(self, restrict_vocab, case_insensitive):
        """word -> index over the first ``restrict_vocab`` words; upper-cased when case_insensitive
        (the more frequent spelling wins, as in gensim)."""
        lookup = {}
        for i in reversed(range(min(restrict_vocab, len(self)))):
            word = self.index_to_key[i]
            lookup[word.upper() if case_insensitive else word] = i
        return lookup

    def evaluate_word_analogies(self, path, restrict_vocab=300000, case_insensitive=True,
                                method="3cosadd"):
        """Accuracy on a file of ``a b c d`` lines grouped under ``: section`` headers (Google's
        questions-words.txt). Questions with a word outside the first ``restrict_vocab`` words are
        skipped, as gensim does. Returns ``(accuracy, sections)``, sections a list of dicts with
        ``section``, ``correct`` and ``incorrect`` lists of question tuples (the last: "Total accuracy").
        """
        lookup = self._restricted_lookup(restrict_vocab, case_insensitive)
        unit = self.get_normed_vectors()
        scorer = {"3cosadd": three_cos_add, "3cosmul": three_cos_mul}[method.lower()]
        sections, section = [], None
        questions, owners = [], []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith(":"):
                    section = {"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []}
                    sections.append(section)
                    continue
                words = line.split()
                if len(words) != 4 or section is None:
                    continue
                if case_insensitive:
                    words = [w.upper() for w in words]
                if all(w in lookup for w in words):
                    questions.append(tuple(words))
                    owners.append(section)
        limit = min(restrict_vocab, len(self))
        abc = np.array([[lookup[w] for w in q[:3]] for q in questions], dtype=np.int64).reshape(-1, 3)
        if method.lower() == "3cosadd":
            # all questions at once, 512 at a time: the same 3CosAdd as three_cos_add, as a matrix product
            answers = []
            for s in range(0, len(abc), 512):
                a, b, c = abc[s:s + 512].T
                queries = unit_rows(unit[b] - unit[a] + unit[c])
                scores = queries @ unit[:limit].T
                np.put_along_axis(scores, abc[s:s + 512], -np.inf, axis=1)
                answers.extend(np.argmax(scores, axis=1).tolist())
        else:
            answers = []
            for ia, ib, ic in abc:
                scores = scorer(unit, [ib, ic], [ia])[:limit]
                scores[[ia, ib, ic]] = -np.inf
                answers.append(int(np.argmax(scores)))
        for (a, b, c, expected), section, answer_id in zip(questions, owners, answers):
            answer = self.index_to_key[answer_id]
            guess = answer.upper() if case_insensitive else answer
            section["correct" if guess == expected else "incorrect"].append((a, b, c, expected))
        correct = sum(len(s["correct"]) for s in sections)
        incorrect = sum(len(s["incorrect"]) for s in sections)
        total = {"section": "Total accuracy",
                 "correct": [q for s in sections for q in s["correct"]],
                 "incorrect": [q for s in sections for q in s["incorrect"]]}
        accuracy = correct / (correct + incorrect) if correct + incorrect else 0.0
        return accuracy, sections + [total]

    def evaluate_word_pairs(self, path, delimiter="\t", restrict_vocab=300000, case_insensitive=True):
        """Correlation of cosine similarities with human scores on ``word word score`` lines
        (``#`` comments skipped): WordSim-353, SimLex-999. Returns :class:`PairScores`."""
        lookup = self._restricted_lookup(restrict_vocab, case_insensitive)
        unit = self.get_normed_vectors()
        ours, theirs, skipped = [], [], 0
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                parts = line.rstrip("\n").split(delimiter)
                w1, w2, score = parts[0].strip(), parts[1].strip(), float(parts[2])
                if case_insensitive:
                    w1, w2 = w1.upper(), w2.upper()
                if w1 not in lookup or w2 not in lookup:
                    skipped += 1
                    continue
                ours.append(float(unit[lookup[w1]] @ unit[lookup[w2]]))
                theirs.append(score)
        if len(ours) < 2:
            raise ValueError(f"{path}: fewer than two pairs have both words in the vocabulary")
        return PairScores(pearson(ours, theirs), spearman(ours, theirs),
                          100.0 * skipped / (skipped + len(ours)))

    # -- the word2vec file format --------------------------------------------------------------
    def save_word2vec_format(self, path, binary=False):
        """Write the format of word2vec.c: a header ``V d``, then per word ``word`` and its d
        numbers, as text (``%f``-like, space separated) or, with ``binary``, as d float32 bytes
        little-endian after ``word `` (then a newline, as word2vec.c and gensim write it)."""
        vectors = self.vectors.astype(np.float32)
        with open(path, "wb") as f:
            f.write(f"{len(self)} {self.vector_size}\n".encode("utf-8"))
            for word, vec in zip(self.index_to_key, vectors):
                if binary:
                    f.write(word.encode("utf-8") + b" " + vec.astype("<f4").tobytes() + b"\n")
                else:
                    f.write((word + " " + " ".join(repr(float(x)) for x in vec) + "\n").encode("utf-8"))
        return Path(path)

    @classmethod
    def load_word2vec_format(cls, path, binary=False, limit=None):
        """Read a file :meth:`save_word2vec_format` (or gensim, or word2vec.c) wrote."""
        with open(path, "rb") as f:
            n_words, dim = (int(x) for x in f.readline().split())
            if limit is not None:
                n_words = min(n_words, limit)
            words, vectors = [], np.empty((n_words, dim), dtype=np.float32)
            for i in range(n_words):
                if binary:
                    word = bytearray()
                    while (ch := f.read(1)) != b" ":
                        if not ch:
                            raise ValueError(f"{path}: file ends inside word {i}")
                        if ch != b"\n":          # the newline after the previous vector
                            word += ch
                    vectors[i] = np.frombuffer(f.read(4 * dim), dtype="<f4")
                    words.append(word.decode("utf-8"))
                else:
                    parts = f.readline().decode("utf-8").rstrip("\n").split(" ")
                    if len(parts) != dim + 1:
                        raise ValueError(f"{path}: line {i + 2} has {len(parts) - 1} numbers, expected {dim}")
                    words.append(parts[0])
                    vectors[i] = np.array(parts[1:], dtype=np.float32)
        return cls(words, vectors)

    # -- minitl's own file: keys, vectors, counts, no pickle ------------------------------------
    def save(self, fname):
        """Write the words, vectors and counts to ``fname`` (.npz, written atomically by ``tl.save``)."""
        from ..serialization import save
        state = {"format": FILE_FORMAT, "version": 1,
                 "index_to_key": [key if isinstance(key, str) else int(key) for key in self.index_to_key],
                 "vectors": self.vectors}
        if self.counts is not None:
            state["counts"] = self.counts
        save(state, fname)
        return Path(fname)

    @classmethod
    def load(cls, fname):
        """Read a file :meth:`save` wrote (gensim's pickled files are not read: use the word2vec format)."""
        from ..serialization import CheckpointError, load
        if not os.path.isfile(fname):
            raise FileNotFoundError(f"no KeyedVectors file at {fname}")
        state = load(fname)
        if state.get("format") != FILE_FORMAT or "vectors" not in state or "index_to_key" not in state:
            raise CheckpointError(f"{fname} is not a file of KeyedVectors.save (it holds {sorted(state)}); "
                                  "word2vec-format files open with KeyedVectors.load_word2vec_format")
        try:
            return cls(state["index_to_key"], state["vectors"], counts=state.get("counts"))
        except ValueError as exc:
            raise CheckpointError(f"{fname}: inconsistent KeyedVectors file: {exc}") from None

    # -- a picture -----------------------------------------------------------------------------
    def pca_2d(self, words: Sequence[str]) -> np.ndarray:
        """The 2-D coordinates of ``words`` on the first two principal components of their vectors."""
        x = np.stack([self[w] for w in words]).astype(np.float64)
        x -= x.mean(axis=0)
        # the right singular vectors of the centred data are the principal directions
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        return x @ vt[:2].T

    def pca_figure(self, words: Sequence[str], title="word vectors, first two principal components"):
        """A matplotlib figure of :meth:`pca_2d`, each point labelled with its word (no two
        labels overlap: :func:`minitl.report.label_points`)."""
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        from ..report import label_points
        words = [w for w in words if w in self]
        xy = self.pca_2d(words)
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.scatter(xy[:, 0], xy[:, 1], s=12)
        ax.set_title(title)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.margins(0.12)  # room for the labels of the outermost points
        fig.tight_layout()
        label_points(ax, xy, words)
        return fig

    def __repr__(self):
        return f"KeyedVectors({len(self)} words x {self.vector_size})"
