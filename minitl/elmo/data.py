"""The biLM's text: GCIDE with a capped vocabulary, a held-out part, and batches of sentences.

Chapter: "Transfer learning in NLP", ELMo's pretraining corpus. ELMo's biLM read the
1B Word Benchmark one sentence at a time, each sentence between boundary tokens; here the
sentences are GCIDE's paragraphs (`tl.data.gcide_corpus`), and each one is fed as

    <s> t_1 ... t_N <s>

so the forward LM starts from <s> and ends by predicting <s> (the sentence is over), and the
backward LM does the same from the right. One boundary token serves both ends.

The vocabulary keeps the `max_size` most frequent words (20,000 cover 94% of GCIDE's tokens);
every other word becomes <unk>, a word of its own that both LMs predict like any other. Every
`HELD_OUT_EVERY`-th sentence is held out for measuring perplexity: GCIDE is alphabetical, so
a stride spreads the held-out part over the whole dictionary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.text import Corpus, Vocab

PAD, BOUNDARY, UNK = "<pad>", "<s>", "<unk>"
PAD_ID, BOUNDARY_ID = 0, 1
HELD_OUT_EVERY = 100   # sentence i is held out when i % HELD_OUT_EVERY == HELD_OUT_EVERY // 2


def capped_corpus(corpus: Corpus, max_size: int) -> Corpus:
    """`corpus` over its `max_size` most frequent words plus <pad>, <s> and <unk> (ids 0, 1, 2);
    every other word becomes <unk>. <s> gets one count per sentence (it is predicted once at
    each end of a sentence, by one of the two LMs)."""
    capped = corpus.restrict(max_size=max_size, specials=(PAD, BOUNDARY), unk=UNK)
    counts = capped.vocab.counts.copy()
    counts[BOUNDARY_ID] = len(capped)
    return Corpus(capped.ids, capped.offsets, Vocab(capped.vocab.id_to_word, counts, unk=UNK))


def held_out_mask(n_sentences: int) -> np.ndarray:
    """True for the held-out sentences: one in every HELD_OUT_EVERY, spread over the corpus."""
    return np.arange(n_sentences) % HELD_OUT_EVERY == HELD_OUT_EVERY // 2


@dataclass
class Sentences:
    """Token id sequences (without boundaries) as one array with offsets (CSR, as `Corpus`)."""

    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self):
        return len(self.offsets) - 1

    @property
    def lengths(self):
        return np.diff(self.offsets)

    @property
    def n_tokens(self):
        return int(self.offsets[-1])

    def batch(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """The sentences `rows` as a padded batch: ids (B, T) int64, each row `<s> tokens <s>`
        followed by <pad> (id 0), and their lengths (B,) counting both boundaries."""
        rows = np.asarray(rows)
        starts, lengths = self.offsets[rows], self.lengths[rows]
        ids = np.full((len(rows), int(lengths.max()) + 2), PAD_ID, dtype=np.int64)
        ids[:, 0] = BOUNDARY_ID
        # every token's (row, column) at once: column 1 + its position in its sentence
        row_of = np.repeat(np.arange(len(rows)), lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        ids[row_of, 1 + within] = self.ids[np.repeat(starts, lengths) + within]
        ids[np.arange(len(rows)), lengths + 1] = BOUNDARY_ID
        return ids, lengths + 2

    def batches(self, tokens_per_batch: int, rng: np.random.Generator | None = None):
        """Row groups of sentences of about equal length, about `tokens_per_batch` tokens each
        (with boundaries and padding), in random order when `rng` is given: sorting by length
        keeps the padding, and so the wasted steps, small."""
        lengths = self.lengths + 2
        noise = rng.random(len(lengths)) if rng is not None else np.zeros(len(lengths))
        order = np.lexsort((noise, lengths))             # by length, ties in random order
        groups, start = [], 0
        while start < len(order):
            guess = max(1, tokens_per_batch // int(lengths[order[start]]))
            longest = int(lengths[order[min(start + guess, len(order)) - 1]])
            size = max(1, tokens_per_batch // longest)  # the batch is padded to its longest
            groups.append(order[start:start + size])
            start += size
        if rng is not None:
            rng.shuffle(groups)
        return groups


def split_sentences(corpus: Corpus, max_len: int, held_out: bool) -> Sentences:
    """The training (held_out=False) or held-out sentences of `corpus`, each cut into pieces of
    at most `max_len` tokens (a paragraph of GCIDE may run to hundreds); empty ones dropped."""
    lengths = np.diff(corpus.offsets)
    keep = held_out_mask(len(lengths)) == held_out
    starts, lengths = corpus.offsets[:-1][keep], lengths[keep]
    pieces = -(-lengths // max_len)                     # ceil: pieces per sentence
    first = np.repeat(starts, pieces) + max_len * (np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces))
    ends = np.repeat(starts + lengths, pieces)
    piece_lengths = np.minimum(ends - first, max_len)
    positions = np.repeat(first, piece_lengths) + (np.arange(piece_lengths.sum())
                                                   - np.repeat(np.cumsum(piece_lengths) - piece_lengths, piece_lengths))
    offsets = np.concatenate([[0], np.cumsum(piece_lengths)]).astype(np.int64)
    return Sentences(corpus.ids[positions].astype(np.int64), offsets)


def encode_sentences(sentences, vocab: Vocab) -> Sentences:
    """Token lists -> Sentences over `vocab` (unknown words become <unk>)."""
    get, unk = vocab.word_to_id.get, vocab.unk_id
    lengths = [len(s) for s in sentences]
    ids = np.fromiter((get(t, unk) for s in sentences for t in s), dtype=np.int64, count=sum(lengths))
    return Sentences(ids, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
