"""A corpus as arrays: every token an integer id, sentences marked by offsets.

A corpus of five million words as Python lists of strings costs hundreds of megabytes and is slow
to walk; as ids it is one int32 array (20 MB) that numpy can slice, shuffle and window. The
layout is the one of a sparse matrix's rows (CSR)::

    ids     = [ 4 17  2 | 9  4 | 33  1  8  2 ]     every token of every sentence, in order
    offsets = [ 0        3     5            9 ]    sentence i is ids[offsets[i]:offsets[i+1]]

so ``len(offsets) == number of sentences + 1`` and ``offsets[-1] == len(ids)``. word2vec's
context windows stay inside one sentence by looking at these offsets.

Plain text files come in through :func:`text_sentences` (one sentence or document per line, the
format of text8 and of most corpora one downloads); GCIDE through ``minitl.data.text.gcide``.
"""
from __future__ import annotations

import gzip
import io
import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .tokenizer import tokenize
from .vocab import Vocab


def encode_corpus(sentences: Iterable[Sequence[str]], vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> ``(ids int32, offsets int64)``, dropping (or unk-ing) words not in ``vocab``.

    Streams: the sentences may be a generator over a file bigger than memory as strings.
    A sentence left with no known word stays as an empty row, so row i is still sentence i.
    """
    get, unk_id = vocab.word_to_id.get, vocab.unk_id
    ids = array("i")           # a growable C int32 buffer: 4 bytes per token, not a Python int
    offsets = array("q", [0])  # int64
    for sentence in sentences:
        ids.extend(i for i in (get(t, unk_id) for t in sentence) if i is not None)
        offsets.append(len(ids))
    return np.frombuffer(ids, dtype=np.int32).copy(), np.frombuffer(offsets, dtype=np.int64).copy()


@dataclass
class Corpus:
    """Encoded sentences (``ids``, ``offsets`` as described in the module) and their ``vocab``."""

    ids: np.ndarray
    offsets: np.ndarray
    vocab: Vocab

    def __len__(self) -> int:
        """The number of sentences."""
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return len(self.ids)

    def sentence(self, i: int) -> np.ndarray:
        """The ids of sentence ``i`` (a view, not a copy)."""
        return self.ids[self.offsets[i]:self.offsets[i + 1]]

    def words(self, i: int) -> list[str]:
        """Sentence ``i`` as words, for reading."""
        return self.vocab.decode(self.sentence(i))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.sentence(i) for i in range(len(self)))

    def restrict(self, min_count: int = 1, max_size: int | None = None,
                 specials: Sequence[str] = (), unk: str | None = None) -> "Corpus":
        """The same corpus over a smaller vocabulary (as :meth:`Vocab.from_counts` selects it).

        Words that leave the vocabulary are dropped from the sentences, or become ``unk``;
        all of it with numpy, so shrinking a 5-million-token corpus takes a fraction of a second.
        The counts are taken from ``self.vocab``, i.e. from this corpus as it was counted.
        """
        counts = dict(zip(self.vocab.id_to_word, self.vocab.counts.tolist()))
        new_vocab = Vocab.from_counts(counts, min_count=min_count, max_size=max_size,
                                      specials=specials, unk=unk)
        fallback = -1 if new_vocab.unk_id is None else new_vocab.unk_id
        old_to_new = np.array([new_vocab.word_to_id.get(w, fallback) for w in self.vocab.id_to_word],
                              dtype=np.int64)
        mapped = old_to_new[self.ids]
        keep = mapped >= 0
        # kept_before[k] = how many tokens before position k survive; it moves every offset.
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        return Corpus(mapped[keep].astype(np.int32), kept_before[self.offsets].astype(np.int64), new_vocab)

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (ids, offsets, words, counts); :meth:`load` reads it without pickle."""
        path = Path(path)
        np.savez(path, ids=self.ids, offsets=self.offsets,
                 words=np.array(self.vocab.id_to_word, dtype=str), counts=self.vocab.counts,
                 unk=np.array("" if self.vocab.unk is None else self.vocab.unk))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Corpus":
        with np.load(path, allow_pickle=False) as data:
            unk = str(data["unk"]) or None
            vocab = Vocab(data["words"].tolist(), data["counts"], unk=unk)
            return cls(data["ids"], data["offsets"], vocab)


def build_corpus(sentences: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None,
                 specials: Sequence[str] = (), unk: str | None = None) -> Corpus:
    """Count and encode in one pass over ``sentences``, then keep the vocabulary asked for.

    One pass matters when the sentences come from a slow generator (parsing a dictionary):
    every new word gets the next free id as it appears, and :meth:`Corpus.restrict` then sorts
    the vocabulary by frequency and re-numbers the ids.
    """
    word_to_id: dict[str, int] = {}
    ids = array("i")
    offsets = array("q", [0])
    for sentence in sentences:
        # setdefault hands out id len(word_to_id) to a word seen for the first time
        ids.extend(word_to_id.setdefault(t, len(word_to_id)) for t in sentence)
        offsets.append(len(ids))
    ids_np = np.frombuffer(ids, dtype=np.int32).copy()
    counts = np.bincount(ids_np, minlength=len(word_to_id))
    first_seen = Corpus(ids_np, np.frombuffer(offsets, dtype=np.int64).copy(),
                        Vocab(list(word_to_id), counts))
    return first_seen.restrict(min_count=min_count, max_size=max_size, specials=specials, unk=unk)


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Open a UTF-8 text file for reading, gunzipping it when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")
    # errors="replace": one stray byte in a 100 MB corpus should not stop the reading
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace")


def text_sentences(path: str | os.PathLike, max_sentence_len: int | None = None,
                   limit_words: int | None = None) -> Iterator[list[str]]:
    """Yield the tokenised lines of a text file (``.gz`` or plain): one line, one sentence.

    Blank lines are skipped. ``max_sentence_len`` cuts long lines into pieces of that many words
    (text8 is one line of 17 million words; word2vec's C tool cuts at 10,000). ``limit_words``
    stops after that many words, the last sentence cut short to hit it exactly.
    """
    return take_words(_line_pieces(path, max_sentence_len), limit_words)


def _line_pieces(path: str | os.PathLike, max_sentence_len: int | None) -> Iterator[list[str]]:
    with open_text(path) as f:
        for line in f:
            words = tokenize(line)
            step = max_sentence_len or max(len(words), 1)
            for start in range(0, len(words), step):
                yield words[start:start + step]


def take_words(sentences: Iterable[list[str]], limit_words: int | None) -> Iterator[list[str]]:
    """The ``sentences`` until ``limit_words`` words have passed, the last one cut short to hit
    the limit exactly; all of them when ``limit_words`` is None. Lazy: nothing more is read."""
    if limit_words is None:
        yield from sentences
        return
    remaining = limit_words
    if remaining <= 0:
        return
    for sentence in sentences:
        sentence = sentence[:remaining]
        remaining -= len(sentence)
        yield sentence
        if remaining == 0:
            return
