"""The text word2vec and GloVe train on: a Corpus from token lists, GCIDE or a text file, and
an evenly spread sample of it (section on word embeddings)."""
from __future__ import annotations

import numpy as np


def as_corpus(sentences, min_count: int = 1):
    """A :class:`~minitl.data.text.Corpus` restricted to ``min_count``, from a Corpus or token lists."""
    from ..data.text import Corpus, build_corpus
    if isinstance(sentences, Corpus):
        return sentences.restrict(min_count=min_count) if min_count > 1 else sentences
    return build_corpus(sentences, min_count=min_count)


def sample_corpus(corpus, n_words):
    """About ``n_words`` tokens of ``corpus``: every k-th sentence, so the sample spans the whole text.

    (GCIDE is alphabetical: its first 300,000 words are all entries under "A", a poor corpus.)
    The vocabulary is recounted on the sample.
    """
    from ..data.text import Corpus, Vocab
    if n_words >= corpus.n_tokens:
        return corpus
    step = max(1, round(corpus.n_tokens / n_words))
    starts, ends = corpus.offsets[:-1:step], corpus.offsets[1::step]
    lengths = ends - starts
    # the ids of the chosen sentences, gathered without a Python loop
    positions = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
    ids = corpus.ids[positions]
    counts = np.bincount(ids, minlength=len(corpus.vocab))
    sample = Corpus(ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                    Vocab(corpus.vocab.id_to_word, counts, unk=corpus.vocab.unk))
    return sample.restrict(min_count=1)


def load_training_corpus(name: str, fast: bool = False):
    """``gcide`` or a path to a plain-text file (one sentence per line); ``fast``: about 300k words."""
    from ..data.text import build_corpus, gcide_corpus, text_sentences
    limit = 300_000 if fast else None
    if name == "gcide":
        corpus = gcide_corpus()
        return sample_corpus(corpus, limit) if limit else corpus
    return build_corpus(text_sentences(name, max_sentence_len=10_000, limit_words=limit))
