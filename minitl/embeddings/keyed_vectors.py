"""Word vectors once trained: similarity, analogies, benchmarks, the word2vec file format.

Section on word embeddings, "what the vectors know". The surface is gensim's ``KeyedVectors``
so that what a student writes here works there: ``most_similar(positive=, negative=, topn=)``,
``similarity``, ``evaluate_word_analogies``, ``evaluate_word_pairs``, and
``save_word2vec_format``/``load_word2vec_format`` (text and binary), whose files gensim and
word2vec.c read and write.

Analogies, "a is to b as c is to ?" (Mikolov et al. 2013c), are answered by 3CosAdd,

    argmax_x  cos(x, b) - cos(x, a) + cos(x, c)        over x not in {a, b, c},

and optionally by Levy & Goldberg's (2014) 3CosMul, argmax cos'(x, b) cos'(x, c) / (cos'(x, a) + eps)
with cos' = (1 + cos) / 2 in [0, 1], which stops one large similarity from dominating.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np


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


class KeyedVectors:
    """One vector per word: ``wv["king"]``, ``wv.most_similar(...)``, and the rest of the module."""

    def __init__(self, index_to_key: Sequence[str], vectors: np.ndarray, counts=None):
        self.index_to_key = list(index_to_key)
        self.key_to_index = {w: i for i, w in enumerate(self.index_to_key)}
        self.vectors = np.asarray(vectors)
        if self.vectors.shape[0] != len(self.index_to_key):
            raise ValueError(f"{len(self.index_to_key)} words but {self.vectors.shape[0]} vectors")
        self.counts = None if counts is None else np.asarray(counts)
        self._unit = None

    # -- looking up ----------------------------------------------------------------------------
    def __len__(self):
        return len(self.index_to_key)

    def __contains__(self, word):
        return word in self.key_to_index

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def get_index(self, word: str) -> int:
        try:
            return self.key_to_index[word]
        except KeyError:
            raise KeyError(f"word {word!r} not in vocabulary") from None

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.get_index(word)]

    def get_normed_vectors(self) -> np.ndarray:
        """Unit-length copies of the vectors (computed once; call :meth:`fill_norms` after editing)."""
        if self._unit is None:
            self._unit = unit_rows(self.vectors.astype(np.float32))
        return self._unit

    def fill_norms(self, force=True):
        self._unit = None

    def similarity(self, w1: str, w2: str) -> float:
        """Cosine similarity of two words."""
        unit = self.get_normed_vectors()
        return float(unit[self.get_index(w1)] @ unit[self.get_index(w2)])

    def most_similar(self, positive=(), negative=(), topn=10, restrict_vocab=None, method="3cosadd"):
        """The ``topn`` words nearest to sum(positive) - sum(negative) (3CosAdd), as (word, score).

        The query words themselves are left out, as in gensim. ``restrict_vocab`` searches only
        the first (most frequent) that many words; ``method="3cosmul"`` uses 3CosMul.
        """
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if not positive and not negative:
            raise ValueError("most_similar needs at least one positive or negative word")
        pos, neg = [self.get_index(w) for w in positive], [self.get_index(w) for w in negative]
        unit = self.get_normed_vectors()[:restrict_vocab]
        scorer = {"3cosadd": three_cos_add, "3cosmul": three_cos_mul}[method.lower()]
        scores = scorer(self.get_normed_vectors(), pos, neg)[:len(unit)]
        scores[[i for i in pos + neg if i < len(scores)]] = -np.inf     # never answer with a query word
        k = min(topn, len(scores) - len(set(pos + neg)))
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")][:k]
        return [(self.index_to_key[i], float(scores[i])) for i in best]

    def most_similar_cosmul(self, positive=(), negative=(), topn=10, restrict_vocab=None):
        return self.most_similar(positive, negative, topn, restrict_vocab, method="3cosmul")

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

    # -- a picture -----------------------------------------------------------------------------
    def pca_2d(self, words: Sequence[str]) -> np.ndarray:
        """The 2-D coordinates of ``words`` on the first two principal components of their vectors."""
        x = np.stack([self[w] for w in words]).astype(np.float64)
        x -= x.mean(axis=0)
        # the right singular vectors of the centred data are the principal directions
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        return x @ vt[:2].T

    def pca_figure(self, words: Sequence[str], title="word vectors, first two principal components"):
        """A matplotlib figure of :meth:`pca_2d`, each point labelled with its word."""
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        words = [w for w in words if w in self]
        xy = self.pca_2d(words)
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.scatter(xy[:, 0], xy[:, 1], s=12)
        for (x, y), w in zip(xy, words):
            ax.annotate(w, (x, y), xytext=(3, 3), textcoords="offset points", fontsize=9)
        ax.set_title(title)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        fig.tight_layout()
        return fig

    def __repr__(self):
        return f"KeyedVectors({len(self)} words x {self.vector_size})"
