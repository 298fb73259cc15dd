"""Subword tokens for the transformer sections: byte-pair encoding (BPE), trained here on GCIDE.

The pretrained transformers of the chapter (mini-BERT, mini-GPT) and, later, CLIP's text
encoder read *subwords*: a vocabulary of 8,000 pieces covers every word, frequent ones whole
(``the</w>``, ``learning</w>``), rare ones spelt from pieces (``kinesiatrics`` -> ``kin esi at
ric s</w>``), so a model needs neither a row per word type (108,610 of them in GCIDE) nor an
unknown-word token.

**Why BPE and not WordPiece.** Both grow a vocabulary from single characters by merging
pieces. BPE (Sennrich et al., 2016) merges the *most frequent* adjacent pair; WordPiece (BERT's)
merges the pair of best likelihood gain ``count(ab) / (count(a) count(b))``. BPE's loop is the
one to learn first, and it is what GPT-2 and CLIP tokenize with (RoBERTa shows it serves a BERT
as well), so one tokenizer serves all the models here. GCIDE's words spell with 27 characters
(a-z and the apostrophe), so no byte-level alphabet is needed: the pieces are characters.

**Training**, on a table of word types and their counts (never re-reading the corpus):

1. every word is spelt as characters, the last one marked as the end of the word:
   ``low`` -> ``l o w</w>`` (CLIP's marker; so ``er</w>`` at a word's end and ``er`` inside
   one are different pieces);
2. count every adjacent pair of pieces, each occurrence weighted by its word's count:
   ``count(a, b) = sum_w  n_w * #{i : w_i = a, w_(i+1) = b}``;
3. merge the most frequent pair ``(a, b)`` into one new piece ``ab`` everywhere; record the merge;
4. repeat 2-3 until the vocabulary has ``vocab_size`` pieces or no pair occurs ``min_frequency``
   times. Ties go to the pair of smallest ids ``(a, b)``: the characters in alphabetical
   order (the end-of-word pieces after the others), then the merged pieces in order of making.

Step 2 is done once; after a merge only the words that held the pair are re-spelt, and their
pairs' counts updated (old pairs subtracted, new ones added); a heap finds the most frequent
pair. Training on GCIDE's word counts (8,000 pieces) takes seconds.

**Encoding** a word replays the merges: spell it as in step 1, then merge the adjacent pair
that was learnt *earliest*, until no learnt pair is left. The ids of each word are cached, so a
dataset of millions of words costs one dictionary look-up per word.

**The words of a text.** The corpus is GCIDE's cleaned, lower-cased word stream
(``minitl.data.text.tokenizer.tokenize``), and so are the texts of ``gcide_pos``. A text is
given either as a list of words (as ``gcide_pos`` holds them) or as a string; it is lower-cased
and cut into words (runs of letters joined by inner apostrophes, as ``tokenize`` does), numbers
(runs of digits) and single other characters (punctuation). The special tokens ``[PAD]`` (id 0), ``[UNK]``
(1), ``[CLS]`` (2), ``[SEP]`` (3) and ``[MASK]`` (4), written exactly so, stay whole and get
their ids: the ``[MASK]`` of a ``gcide_pos`` text is the mask id, not five subwords.

**Unknown characters.** A word with a character that training never saw (a digit, a comma, a
Greek letter: GCIDE has none of them) becomes one ``[UNK]``, as in BERT: a word is spelt whole
or not at all, so decoding never runs two words together.

**Round trip.** ``decode`` joins the pieces, turns each ``</w>`` into a word boundary and puts
one space between words. So ``decode(encode(text)) == " ".join(text.lower().split())`` for any
text whose words are words of the corpus's alphabet (what ``tokenize`` returns), and each word
with an unknown character comes back as ``[UNK]`` (``skip_special_tokens=False``) or not at all.

:func:`gcide_tokenizer` trains on the whole of GCIDE once and caches the result as JSON (no
pickle) in ``cache_dir("gcide")``, keyed by the source file, the corpus cleaner's version,
this module's ``BPE_VERSION`` and the vocabulary size.
"""
from __future__ import annotations

import heapq
import json
import os
import re
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Hashable
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .gcide import CLEANER_VERSION, cache_file, gcide_corpus, gcide_path, write_cache
from .gcide_tasks import MASK_TOKEN  # the "[MASK]" that gcide_pos writes for a headword
from .tokenizer import WORD_RE

# Bump when training or encoding changes, so that cached tokenizers are retrained.
BPE_VERSION = 1
FILE_FORMAT = "minitl-bpe-tokenizer"
FILE_FORMAT_VERSION = 1

END_OF_WORD = "</w>"
PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, MASK_TOKEN)  # their ids: 0 to 4

_SPECIAL_RE = re.compile("(" + "|".join(map(re.escape, SPECIAL_TOKENS)) + ")")
# a corpus word, a number, or any other single non-space character (punctuation)
_WORD_OR_OTHER_RE = re.compile(WORD_RE.pattern + r"|\d+|\S")


# a merge as indent=1 writes it, over four lines: [\n  "a",\n  "b"\n ]
_ONE_MERGE_A_LINE = re.compile(r'\[\n\s*("[^"\n]*"),\n\s*("[^"\n]*")\n\s*\]')


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read as one :meth:`BPETokenizer.save` wrote."""


def pre_tokenize(text: str) -> list[str]:
    """The words of ``text`` as the tokenizer sees them (see the module docstring).

    ``pre_tokenize("The [MASK] sat, 12 cats.") == ["the", "[MASK]", "sat", ",", "12", "cats", "."]``
    """
    if "[" not in text:  # no special token: the common case of a corpus text
        return _plain_words(text)
    words = []
    # split() with a group keeps the separators: the special tokens sit at the odd positions
    for i, piece in enumerate(_SPECIAL_RE.split(text)):
        words.extend([piece] if i % 2 else _plain_words(piece))
    return words


def _plain_words(text: str) -> list[str]:
    return _WORD_OR_OTHER_RE.findall(text.lower().replace("\u2019", "'"))


def count_pairs(word_pieces: Sequence[Sequence[int]], word_counts: Sequence[int]) -> Counter:
    """``count(a, b) = sum_w n_w * #{i : w_i = a, w_(i+1) = b}`` over words spelt as pieces."""
    pairs: Counter = Counter()
    for pieces, n in zip(word_pieces, word_counts):
        for pair in zip(pieces, pieces[1:]):
            pairs[pair] += n
    return pairs


def merge_pair(pieces: Sequence[int], pair: tuple[int, int], merged: int) -> list[int]:
    """``pieces`` with every occurrence of ``pair``, left to right, replaced by ``merged``.

    ``merge_pair([a, b, a, b, b], (a, b), ab) == [ab, ab, b]``; ``(a, a)`` in ``a a a`` merges once.
    """
    # BEGIN EXERCISE text.bpe_merge
    # hint: walk i over the pieces: where (pieces[i], pieces[i+1]) == pair, emit merged
    # hint: and step 2; else emit pieces[i] and step 1
    out, i = [], 0
    while i < len(pieces):
        if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == pair:
            out.append(merged)
            i += 2
        else:
            out.append(pieces[i])
            i += 1
    return out
    # END EXERCISE


class BPETokenizer:
    """Byte-pair encoding over characters with an end-of-word marker (see the module docstring).

    Made by :meth:`train` (from texts), :meth:`train_from_counts` (from word counts),
    :meth:`load` (a saved file) or :func:`gcide_tokenizer` (trained on GCIDE, cached).
    ``alphabet`` are the characters (each gives two pieces, ``c`` and ``c</w>``), ``merges`` the
    learnt pairs of pieces in order. The vocabulary is the special tokens (ids 0-4), then the
    pieces of the alphabet, then one piece per merge (a merge that spells an existing piece
    again adds none).
    """

    pad_token, unk_token, cls_token, sep_token, mask_token = SPECIAL_TOKENS
    pad_token_id, unk_token_id, cls_token_id, sep_token_id, mask_token_id = range(len(SPECIAL_TOKENS))
    all_special_tokens = list(SPECIAL_TOKENS)
    all_special_ids = list(range(len(SPECIAL_TOKENS)))

    def __init__(self, alphabet: Sequence[str], merges: Sequence[tuple[str, str]]):
        alphabet = list(alphabet)
        if any(not isinstance(c, str) or len(c) != 1 or c.isspace() for c in alphabet) \
                or len(set(alphabet)) != len(alphabet):
            raise ValueError(f"the alphabet must be distinct single non-space characters, got {alphabet!r}")
        self.alphabet = alphabet
        self._id_to_token = [*SPECIAL_TOKENS, *alphabet, *(c + END_OF_WORD for c in alphabet)]
        self._token_to_id = {t: i for i, t in enumerate(self._id_to_token)}
        self.merges: list[tuple[str, str]] = []
        # (id of a, id of b) -> (rank of the merge, id of ab): what encoding replays
        self._merge_ranks: dict[tuple[int, int], tuple[int, int]] = {}
        for a, b in merges:
            self._add_merge(a, b)
        self._word_cache: dict[str, list[int]] = {}

    def _add_merge(self, a: str, b: str) -> int:
        """Record the merge of pieces ``a`` and ``b``; the id of ``ab`` (new or existing)."""
        ids = self._token_to_id
        if a not in ids or b not in ids or a in SPECIAL_TOKENS or b in SPECIAL_TOKENS:
            raise ValueError(f"merge {len(self.merges)} ({a!r}, {b!r}) joins a piece that is not "
                             f"in the vocabulary before it")
        if a.endswith(END_OF_WORD):
            raise ValueError(f"merge {len(self.merges)} ({a!r}, {b!r}): nothing follows the end of a word")
        pair = (ids[a], ids[b])
        if pair in self._merge_ranks:
            raise ValueError(f"merge {len(self.merges)} ({a!r}, {b!r}) is learnt twice")
        merged = ids.setdefault(a + b, len(self._id_to_token))
        if merged == len(self._id_to_token):
            self._id_to_token.append(a + b)
        self._merge_ranks[pair] = (len(self.merges), merged)
        self.merges.append((a, b))
        return merged

    # -- training ---------------------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str | Sequence[str]], vocab_size: int = 8000,
              min_frequency: int = 2, verbose: bool = False) -> BPETokenizer:
        """Learn a vocabulary of ``vocab_size`` pieces (special tokens included) from ``texts``.

        ``texts``: strings, or lists of words (GCIDE's sentences, ``gcide_pos`` texts), read
        once to count the words; special tokens in them are not counted. See
        :meth:`train_from_counts` for the rest.
        """
        raw: Counter = Counter()
        for text in texts:
            raw.update(pre_tokenize(text) if isinstance(text, str) else text)
        counts: Counter = Counter()
        for word, n in raw.items():  # each distinct word is cut into words once
            if not isinstance(word, str):
                raise TypeError(f"texts must be strings or lists of words (strings), got a word {word!r}")
            for piece in pre_tokenize(word):
                counts[piece] += n
        return cls.train_from_counts(counts, vocab_size=vocab_size, min_frequency=min_frequency,
                                     verbose=verbose)

    @classmethod
    def train_from_counts(cls, word_counts: Mapping[str, int], vocab_size: int = 8000,
                          min_frequency: int = 2, verbose: bool = False) -> BPETokenizer:
        """Learn the merges from a table ``word -> count`` (the training loop of the module docstring).

        The alphabet is every character of the words. Merging stops at ``vocab_size`` pieces or
        when the most frequent pair occurs fewer than ``min_frequency`` times (merging a pair
        seen once would only memorise a word), so the vocabulary may come out smaller.
        """
        words = sorted(w for w, n in word_counts.items() if n > 0 and w not in SPECIAL_TOKENS)
        bad = [w for w in words if not w or any(ch.isspace() for ch in w)]
        if bad:
            raise ValueError(f"words must be non-empty and without spaces, got {bad[:5]!r}")
        tokenizer = cls(sorted({ch for w in words for ch in w}), [])
        base = tokenizer.vocab_size
        if not isinstance(vocab_size, (int, np.integer)) or vocab_size < base:
            raise ValueError(f"vocab_size must be at least {base} (5 special tokens and 2 pieces for "
                             f"each of the {len(tokenizer.alphabet)} characters), got {vocab_size!r}")
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")
        started = time.perf_counter()
        spellings = [tokenizer._characters(w) for w in words]
        _learn_merges(tokenizer, spellings, [int(word_counts[w]) for w in words], vocab_size,
                      min_frequency)
        if verbose:
            print(f"BPE: {len(words):,} word types, {len(tokenizer.merges):,} merges, "
                  f"{tokenizer.vocab_size:,} pieces in {time.perf_counter() - started:.1f} s")
        return tokenizer

    # -- the vocabulary ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, {len(self.alphabet)} characters, "
                f"{len(self.merges)} merges)")

    def get_vocab(self) -> dict[str, int]:
        """A copy of the mapping piece -> id."""
        return dict(self._token_to_id)

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        """Pieces -> ids; a string that is no piece gives the ``[UNK]`` id."""
        return [self._token_to_id.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> pieces (``[CLS]``, ``the</w>``, ``mask``...)."""
        return [self._id_to_token[i] for i in self._checked_ids(ids)]

    def _checked_ids(self, ids: Iterable[int]) -> list[int]:
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a 1-d sequence of ints, got an array of shape "
                             f"{ids.shape} and dtype {ids.dtype}")
        out_of_range = ids[(ids < 0) | (ids >= self.vocab_size)]
        if out_of_range.size:
            raise ValueError(f"ids {out_of_range[:5].tolist()} are outside the vocabulary "
                             f"(0..{self.vocab_size - 1})")
        return ids.tolist()

    # -- encoding ---------------------------------------------------------------------------
    def _characters(self, word: str) -> list[int]:
        """Step 1: ``low`` as the ids of ``l o w</w>`` (its characters must be in the alphabet)."""
        ids = self._token_to_id
        return [ids[ch] for ch in word[:-1]] + [ids[word[-1] + END_OF_WORD]]

    def _spell(self, word: str) -> list[int]:
        """One word (a ``pre_tokenize`` output) as ids: the merges replayed, earliest first."""
        if word in SPECIAL_TOKENS:
            return [self._token_to_id[word]]
        if any(ch not in self._token_to_id for ch in word):
            return [self.unk_token_id]
        pieces = self._characters(word)
        ranks = self._merge_ranks
        while len(pieces) > 1:
            learnt = [(ranks[pair], pair) for pair in zip(pieces, pieces[1:]) if pair in ranks]
            if not learnt:
                break
            (_, merged), pair = min(learnt)
            pieces = merge_pair(pieces, pair, merged)
        return pieces

    def _word_ids(self, word: str) -> list[int]:
        """The ids of one element of a word list (normally one word), cached."""
        ids = self._word_cache.get(word) if isinstance(word, Hashable) else None
        if ids is None:
            if not isinstance(word, str):
                raise TypeError(f"a list of words must hold strings, got {word!r} "
                                f"({type(word).__name__}); a batch is a list of texts")
            ids = [i for piece in pre_tokenize(word) for i in self._spell(piece)]
            self._word_cache[word] = ids
        return ids

    def _words(self, text: str | Sequence[str]) -> Sequence[str]:
        if isinstance(text, str):
            return pre_tokenize(text)
        if isinstance(text, (list, tuple, np.ndarray)):
            return text  # its words are checked as they are first spelt (_word_ids)
        raise TypeError(f"a text must be a string or a list of words, got {type(text).__name__}")

    def _encode_batch(self, texts: Sequence[str | Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """All texts' ids (no special tokens added) as ``(ids, offsets)``: text i is ``ids[o[i]:o[i+1]]``.

        One dictionary look-up per word gives its word type; the pieces of each type are spelt
        once, and numpy lays them out for every word.
        """
        texts = [self._words(text) for text in texts]
        type_of: dict[str, int] = {}
        try:
            word_types = [type_of.setdefault(w, len(type_of)) for words in texts for w in words]
        except TypeError:  # unhashable: a list where a word should be
            for words in texts:
                for w in words:
                    self._word_ids(w)  # raises, naming the culprit
            raise
        words_per_text = [len(words) for words in texts]
        spelt = [self._word_ids(w) for w in type_of]
        type_lengths = np.array([len(s) for s in spelt], dtype=np.int64)
        type_starts = np.concatenate([[0], np.cumsum(type_lengths)])[:-1]
        type_ids = np.fromiter((i for s in spelt for i in s), dtype=np.int64, count=int(type_lengths.sum()))
        word_types = np.asarray(word_types, dtype=np.int64)
        lengths = type_lengths[word_types]
        # token k of the batch is piece k - (first token of its word) of its word's type
        word_first_token = np.concatenate([[0], np.cumsum(lengths)])
        within = np.arange(word_first_token[-1]) - np.repeat(word_first_token[:-1], lengths)
        ids = type_ids[np.repeat(type_starts[word_types], lengths) + within]
        text_word_offsets = np.concatenate([[0], np.cumsum(words_per_text)]).astype(np.int64)
        return ids, word_first_token[text_word_offsets]

    def tokenize(self, text: str | Sequence[str]) -> list[str]:
        """The pieces of a text (no special tokens added): ``["see</w>", "kin", "esi", ...]``."""
        return [self._id_to_token[i] for w in self._words(text) for i in self._word_ids(w)]

    def encode(self, text: str | Sequence[str], add_special_tokens: bool = True) -> list[int]:
        """The ids of one text (a string or a list of words), in ``[CLS] ... [SEP]`` by default."""
        ids = [i for w in self._words(text) for i in self._word_ids(w)]
        return [self.cls_token_id, *ids, self.sep_token_id] if add_special_tokens else ids

    def __call__(self, texts: str | Sequence[str | Sequence[str]], max_length: int | None = None,
                 padding: bool | str = True, truncation: bool = True,
                 add_special_tokens: bool = True) -> dict:
        """Encode a batch: ``{"input_ids": (B, L) int64, "attention_mask": (B, L) int64}``.

        ``texts``: a list of texts, each a string or a list of words (``gcide_pos``'s
        ``split.texts`` as it is); a single string is a batch of one. ``max_length`` bounds
        L, special tokens included; ``truncation=True`` cuts longer texts (``[SEP]`` stays
        last), ``truncation=False`` makes one an error. ``padding=True`` (or ``"longest"``)
        pads with ``[PAD]`` to the longest text of the batch, ``"max_length"`` to
        ``max_length``; ``False`` returns lists of ids, unpadded. The mask is 1 on real tokens.
        """
        if isinstance(texts, str):
            texts = [texts]
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs a max_length")
        extra = 2 if add_special_tokens else 0
        if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < extra + 1):
            raise ValueError(f"max_length must be an int >= {extra + 1} (room for the special tokens "
                             f"and one token), got {max_length!r}")
        ids, offsets = self._encode_batch(texts)
        lengths = np.diff(offsets)
        if max_length is not None:
            too_long = np.flatnonzero(lengths + extra > max_length)
            if too_long.size and not truncation:
                i = int(too_long[0])
                raise ValueError(f"text {i} has {lengths[i] + extra} tokens, more than max_length="
                                 f"{max_length}, and truncation=False")
            lengths = np.minimum(lengths, max_length - extra)
        if padding in (False, "do_not_pad"):
            rows = [ids[a:a + n].tolist() for a, n in zip(offsets[:-1].tolist(), lengths.tolist())]
            if add_special_tokens:
                rows = [[self.cls_token_id, *row, self.sep_token_id] for row in rows]
            return {"input_ids": rows, "attention_mask": [[1] * len(row) for row in rows]}
        width = max_length if padding == "max_length" else int(lengths.max(initial=0)) + extra
        columns = np.arange(width)
        first = 1 if add_special_tokens else 0  # the column of a text's first token
        is_text = (columns >= first) & (columns < first + lengths[:, None])
        source = offsets[:-1, None] + columns - first  # where column j of row i reads from
        input_ids = np.full((len(texts), width), self.pad_token_id, dtype=np.int64)
        input_ids[is_text] = ids[source[is_text]]
        if add_special_tokens:
            input_ids[:, 0] = self.cls_token_id
            input_ids[np.arange(len(texts)), lengths + 1] = self.sep_token_id
        attention_mask = (columns < lengths[:, None] + extra).astype(np.int64)
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text: pieces joined, ``</w>`` a word boundary, one space between words.

        Special tokens (``[UNK]`` too) are left out, or with ``skip_special_tokens=False`` kept
        as words of their own. A last word cut short (by truncation) still comes out.
        """
        words, word = [], []
        for i in self._checked_ids(ids):
            token = self._id_to_token[i]
            if i < len(SPECIAL_TOKENS):
                if word:
                    words.append("".join(word))
                    word = []
                if not skip_special_tokens:
                    words.append(token)
            elif token.endswith(END_OF_WORD):
                word.append(token[:-len(END_OF_WORD)])
                words.append("".join(word))
                word = []
            else:
                word.append(token)
        if word:
            words.append("".join(word))
        return " ".join(words)

    def batch_decode(self, sequences: Iterable[Iterable[int]], skip_special_tokens: bool = True) -> list[str]:
        """:meth:`decode` of each row (``[PAD]`` is special, so padding goes)."""
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in sequences]

    # -- saving -----------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"format": FILE_FORMAT, "version": FILE_FORMAT_VERSION,
                "special_tokens": list(SPECIAL_TOKENS), "end_of_word": END_OF_WORD,
                "alphabet": self.alphabet, "merges": [list(m) for m in self.merges],
                "vocab": self._id_to_token}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON (readable, no pickle), atomically: a crash leaves the old file."""
        path = Path(path)
        text = json.dumps(self.to_json(), ensure_ascii=False, indent=1)
        text = _ONE_MERGE_A_LINE.sub(r"[\1, \2]", text)  # a person reads the merges in order
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")  # beside it: os.replace is atomic
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a file written by :meth:`save`; a file that is not one raises :class:`TokenizerFileError`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TokenizerFileError(f"{path} is not a tokenizer file (not valid JSON: {exc})") from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise TokenizerFileError(f"{path} is not a minitl BPE tokenizer file (no \"format\": "
                                     f"\"{FILE_FORMAT}\" in it)")
        if data.get("version") != FILE_FORMAT_VERSION:
            raise TokenizerFileError(f"{path}: file version {data.get('version')!r}, this minitl "
                                     f"reads version {FILE_FORMAT_VERSION}")
        if data.get("special_tokens") != list(SPECIAL_TOKENS) or data.get("end_of_word") != END_OF_WORD:
            raise TokenizerFileError(f"{path}: special tokens {data.get('special_tokens')!r} and end-of-word "
                                     f"marker {data.get('end_of_word')!r} differ from this minitl's "
                                     f"{list(SPECIAL_TOKENS)} and {END_OF_WORD!r}")
        merges = data.get("merges")
        if not isinstance(merges, list) or not all(
                isinstance(m, list) and len(m) == 2 and all(isinstance(p, str) for p in m) for m in merges):
            raise TokenizerFileError(f"{path}: \"merges\" must be a list of [piece, piece] pairs")
        try:
            tokenizer = cls(data.get("alphabet", []), [tuple(m) for m in merges])
        except (TypeError, ValueError) as exc:
            raise TokenizerFileError(f"{path} is corrupt: {exc}") from None
        if data.get("vocab") != tokenizer._id_to_token:
            raise TokenizerFileError(f"{path} is corrupt: its \"vocab\" is not the one its alphabet "
                                     f"and merges make")
        return tokenizer


def _learn_merges(tokenizer: BPETokenizer, pieces: list[list[int]], counts: list[int],
                  vocab_size: int, min_frequency: int) -> None:
    """Steps 2-4 of the module docstring: merge the most frequent pair of ``pieces`` (the word
    types spelt as ids, each seen ``counts[w]`` times) into ``tokenizer`` until it is big enough.

    The pair counts are kept up to date word by word, never recounted; ``pieces`` is re-spelt
    in place.
    """
    pair_counts = count_pairs(pieces, counts)
    holders = defaultdict(set)  # pair -> the words that hold it (and some that no longer do)
    for w, spelling in enumerate(pieces):
        for pair in zip(spelling, spelling[1:]):
            holders[pair].add(w)
    # A max-heap of pairs by count (heapq is a min-heap: -count), ties to the smallest ids.
    # An entry may hold an old count: a merge lowers the counts of the pairs around it without
    # touching the heap; such an entry is pushed again with its true count when it comes to
    # the top. Every pair keeps an entry >= its count, so the first true entry is the most
    # frequent pair.
    heap = [(-n, a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)
    from tqdm.auto import tqdm
    progress = tqdm(total=vocab_size - tokenizer.vocab_size, desc="BPE merges", disable=None,
                    leave=False)
    while tokenizer.vocab_size < vocab_size and heap:
        negative_count, a, b = heapq.heappop(heap)
        count = pair_counts[a, b]
        if count != -negative_count:
            if count > 0:
                heapq.heappush(heap, (-count, a, b))
            continue
        if count < min_frequency:
            break
        before = tokenizer.vocab_size
        merged = tokenizer._add_merge(tokenizer._id_to_token[a], tokenizer._id_to_token[b])
        progress.update(tokenizer.vocab_size - before)
        grown = set()  # only pairs with the new piece in them can have grown
        for w in holders.pop((a, b)):
            old = pieces[w]
            if a not in old or b not in old:
                continue  # an earlier merge took the pair out of this word (a quick test)
            new = merge_pair(old, (a, b), merged)
            if len(new) == len(old):
                continue  # the same, where the quick test could not tell
            for pair in zip(old, old[1:]):
                pair_counts[pair] -= counts[w]
            for pair in zip(new, new[1:]):
                pair_counts[pair] += counts[w]
                if merged in pair:
                    holders[pair].add(w)
                    grown.add(pair)
            pieces[w] = new
        for pair in grown:
            heapq.heappush(heap, (-pair_counts[pair], *pair))
    progress.close()


def gcide_tokenizer(vocab_size: int = 8000, path: str | os.PathLike | None = None, cache: bool = True,
                    verbose: bool = False) -> BPETokenizer:
    """A :class:`BPETokenizer` trained on the word counts of all of GCIDE (``gcide_corpus``).

    Trained once (seconds) and cached as JSON in ``cache_dir("gcide")``, keyed by the source
    file, ``CLEANER_VERSION``, ``BPE_VERSION`` and ``vocab_size``; later calls load it.
    """
    path = Path(path) if path is not None else gcide_path()
    cached, stale = cache_file(path, f"bpe{vocab_size}", f"{CLEANER_VERSION}.{BPE_VERSION}")
    cached, stale = cached.with_suffix(".json"), stale.replace(".npz", ".json")
    if cache and cached.is_file():
        try:
            return BPETokenizer.load(cached)
        except TokenizerFileError as exc:
            warnings.warn(f"retraining the GCIDE tokenizer: {exc}", stacklevel=2)
    vocab = gcide_corpus(path, cache=cache, verbose=verbose).vocab
    tokenizer = BPETokenizer.train_from_counts(dict(zip(vocab.id_to_word, vocab.counts.tolist())),
                                               vocab_size=vocab_size, verbose=verbose)
    if cache:
        write_cache(cached, tokenizer.save, stale, "the GCIDE tokenizer")
    return tokenizer
