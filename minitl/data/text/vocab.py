"""The vocabulary: words <-> integer ids, with the counts that word2vec and GloVe need.

Section on word embeddings: every model there looks words up by id (an embedding matrix has
one row per id) and uses their frequencies (word2vec's sub-sampling and its unigram^0.75
negative-sampling table, GloVe's co-occurrence counts). A ``Vocab`` holds both.

Ids are assigned by decreasing count, ties broken alphabetically, so a vocabulary built twice
from the same text is identical, and the most frequent word has id 0 (after any special tokens,
which come first). It is saved as plain text, one ``word count`` per line in id order, which a
person can read and gensim's ``save_word2vec_format`` users will recognise; no pickle.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np


class Vocab:
    """A fixed list of words; ``id_to_word[i]`` is word ``i`` and ``counts[i]`` its count.

    ``unk`` names a word (normally a special such as ``"<unk>"``) that stands for every word not
    in the vocabulary; without it, unknown words are dropped by :meth:`encode` (word2vec's habit).
    """

    def __init__(self, words: Sequence[str], counts: Sequence[int] | None = None,
                 unk: str | None = None):
        self.id_to_word: list[str] = list(words)
        self.word_to_id: dict[str, int] = {w: i for i, w in enumerate(self.id_to_word)}
        if len(self.word_to_id) != len(self.id_to_word):
            dupes = [w for w, c in Counter(self.id_to_word).items() if c > 1]
            raise ValueError(f"duplicate words in vocabulary: {dupes[:5]}")
        for w in self.id_to_word:
            if not w or any(ch.isspace() for ch in w):
                raise ValueError(f"vocabulary words must be non-empty and without spaces: {w!r}")
        self.counts = np.zeros(len(self.id_to_word), np.int64) if counts is None \
            else np.asarray(counts, dtype=np.int64)
        if self.counts.shape != (len(self.id_to_word),):
            raise ValueError(f"{len(self.id_to_word)} words but counts of shape {self.counts.shape}")
        if unk is not None and unk not in self.word_to_id:
            raise ValueError(f"unk token {unk!r} is not in the vocabulary")
        self.unk = unk
        self.unk_id = None if unk is None else self.word_to_id[unk]

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_counts(cls, counts: Mapping[str, int], min_count: int = 1, max_size: int | None = None,
                    specials: Sequence[str] = (), unk: str | None = None) -> "Vocab":
        """Keep words seen at least ``min_count`` times, most frequent first (ties: alphabetical).

        ``specials`` (e.g. ``("<pad>", "<unk>")``) take the first ids whatever their counts;
        ``max_size`` bounds the whole vocabulary, specials included. With ``unk`` set, the
        dropped words' occurrences are added to its count, so frequencies still sum to one.
        """
        if unk is not None and unk not in specials:
            specials = (*specials, unk)
        kept = sorted(((w, c) for w, c in counts.items() if c >= min_count and w not in specials),
                      key=lambda wc: (-wc[1], wc[0]))
        if max_size is not None:
            if max_size < len(specials):
                raise ValueError(f"max_size={max_size} leaves no room for the specials {list(specials)}")
            kept = kept[:max_size - len(specials)]
        words = [*specials, *(w for w, _ in kept)]
        counts_out = [counts.get(s, 0) for s in specials] + [c for _, c in kept]
        if unk is not None:
            counts_out[list(specials).index(unk)] += sum(counts.values()) - sum(counts_out)
        return cls(words, counts_out, unk=unk)

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1,
              max_size: int | None = None, specials: Sequence[str] = (),
              unk: str | None = None) -> "Vocab":
        """Count the words of an iterable of token lists and keep them as :meth:`from_counts` says."""
        counts: Counter[str] = Counter()
        for sentence in sentences:
            counts.update(sentence)
        return cls.from_counts(counts, min_count=min_count, max_size=max_size,
                               specials=specials, unk=unk)

    # -- looking up -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.id_to_word)

    def __contains__(self, word: str) -> bool:
        return word in self.word_to_id

    def __getitem__(self, word: str) -> int:
        """The id of ``word``; an unknown word gets the ``unk`` id, or KeyError without one."""
        found = self.word_to_id.get(word, self.unk_id)
        if found is None:
            raise KeyError(f"{word!r} is not in the vocabulary (and it has no unk token)")
        return found

    def __repr__(self) -> str:
        head = ", ".join(self.id_to_word[:5])
        return f"Vocab({len(self)} words: {head}{', ...' if len(self) > 5 else ''})"

    @property
    def total(self) -> int:
        """The number of tokens counted (the sum of all counts)."""
        return int(self.counts.sum())

    @property
    def frequencies(self) -> np.ndarray:
        """counts / total, float64: the unigram distribution word2vec samples from."""
        return self.counts / max(self.total, 1)

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Token list -> int32 ids; unknown tokens become ``unk`` or, without one, are dropped."""
        get, unk_id = self.word_to_id.get, self.unk_id
        ids = [i for i in (get(t, unk_id) for t in tokens) if i is not None]
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> words (the inverse of :meth:`encode` for known words)."""
        return [self.id_to_word[int(i)] for i in ids]

    # -- plain-text file ------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``word count`` lines in id order (UTF-8); :meth:`load` reads them back."""
        path = Path(path)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for word, count in zip(self.id_to_word, self.counts.tolist()):
                f.write(f"{word} {count}\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, unk: str | None = None) -> "Vocab":
        """Read a file written by :meth:`save`; ids are line numbers. ``unk`` is not stored: pass it."""
        words, counts = [], []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                parts = line.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    raise ValueError(f"{path}:{number}: expected 'word count', got {line.rstrip()!r}")
                words.append(parts[0])
                counts.append(int(parts[1]))
        return cls(words, counts, unk=unk)
