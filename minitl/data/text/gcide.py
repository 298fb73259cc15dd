"""GCIDE, the Collaborative International Dictionary of English, as a corpus of sentences.

The word-embedding sections need a few million words of real English that install offline: the
Debian package ``dict-gcide`` ships GCIDE (Webster's 1913 plus WordNet) in the dictd format,
``/usr/share/dictd/gcide.dict.dz`` (gzip with an index for random access, which plain gzip reads
too) beside ``gcide.index`` (``headword <TAB> offset <TAB> length``, numbers in base 64).

The converted text still carries GCIDE's markup. An entry looks like::

    Coal \\Coal\\ (k[=o]l), n. [AS. col; akin to D. kool, OHG. chol, ...
       Cf. {Kiln}, {Collier}.]
       1. A thoroughly charred, and extinguished or still ignited,
          fragment from wood or other combustible substance;
          charcoal.
          [1913 Webster]

What :func:`clean_gcide` does with it, in this order, and why:

1. letter entities become letters: ``[=o]`` (o with macron) -> ``o``, ``[ae]`` -> ``ae``,
   ``C[oe]lenterata`` -> ``Coelenterata``, ``[imac]`` -> ``i``;
2. every other ``[...]`` goes: etymologies, sources (``[1913 Webster]``), usage labels
   (``[Obs.]``), inflections (``[imp. & p. p. ...]``) -- foreign or bookkeeping words;
3. an entry's header line (headword, ``\\pro*nun"ci*a`tion\\``, part of speech) goes;
4. quotation authors (``--Shak.``), run-on derivatives (``-- {Cloud"less*ly}, adv.``),
   subject labels (``(Zool.)``) and the labels ``Syn:``, ``Note:``, ``Usage:``, ``Defn:`` go;
   braces (``{Kiln}``: a cross-reference) go, their words stay.

One *sentence* is then one paragraph of an entry (a numbered sense, a note, a list of synonyms),
tokenised by ``minitl.data.text.tokenizer.tokenize``. From dict-gcide 0.48 this gives 3.57 million
words (of 5.4 million word-like tokens before cleaning; the headers alone held 0.7 million) in
252,550 sentences, with 108,610 distinct words.

The steps of :func:`clean_gcide` are functions of their own (:func:`decode_letters`,
:func:`drop_brackets`, :func:`strip_markup`), and :func:`read_gcide` streams the file in whole
paragraphs or whole entries, so that ``gcide_tasks`` (the labelled tasks) reads entries cleaned
exactly as the corpus is.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ..paths import cache_dir, locate
from .corpus import Corpus, build_corpus, take_words
from .tokenizer import tokenize

GCIDE_FILE = "gcide.dict.dz"
# Bump when clean_gcide changes, so cached corpora built by an older cleaner are rebuilt.
CLEANER_VERSION = 1

# \x00 marks a paragraph boundary inside a chunk: no pattern below may cross it.
_PARAGRAPH_BREAK = re.compile(r"\n(?:[ \t]*\n)+")  # keeps the next line's indent
_ACCENTED = re.compile(r"\[[\"'`^~=.,*-]?([A-Za-z]{1,2})\^?\]")  # [=o] [i^] ['e] [.a] [oe] [AE]
_NAMED_LETTERS = {"imac": "i", "aum": "a", "asl": "a", "udd": "u",
                  "eth": "th", "thorn": "th", "yogh": "gh"}
_NAMED = re.compile(r"\[(" + "|".join(_NAMED_LETTERS) + r")\]")
_INNERMOST_BRACKETS = re.compile(r"\[[^\[\]\x00]*\]")
# A line that starts at column 0 and holds a \headword\ (definitions are indented), with a
# (pronunciation) that may wrap onto the next line.
_ENTRY_HEADER = re.compile(
    r"(?:(?<=[\n\x00])|\A)[^\s\x00][^\n\x00\\]*\\(?:[^\n\x00(]|\([^)\x00]*\))*")
# "--Sir T." and, on a deeply indented next line, "Browne."
_CITATION = re.compile(r"--[A-Z][^\n\x00]*(?:\n {30,}[^\n\x00]*)*")
# a run-on derivative inside an entry: "-- {Cloud"less*ly}, adv." (stress marks give it away)
_RUN_ON_HEADWORD = re.compile(r"\{[^{}\x00]*[\"*`][^{}\x00]*\}(?:\s*\([^)\x00]*\))?,?(?:\s*[a-z]{1,4}\.)*")
_SUBJECT_LABEL = re.compile(r"\((?:[A-Z][A-Za-z.]*\s*)+\)")
_FIELD_LABEL = re.compile(r"\b(?:Syn|Note|Usage|Defn):|\bSyn\.")  # "Syn:", rarely "Syn. --"
_BRACES = re.compile(r"[{}]")


def decode_letters(text: str) -> str:
    """Step 1 of :func:`clean_gcide`: GCIDE's letter entities as plain letters (``[=o]`` -> ``o``)."""
    text = _ACCENTED.sub(r"\1", text)
    return _NAMED.sub(lambda m: _NAMED_LETTERS[m.group(1)], text)


def drop_brackets(text: str, fill: str | None = None) -> str:
    """Step 2 of :func:`clean_gcide`: every ``[...]`` (etymology, source, label) is removed.

    Each bracket becomes one space, or, with a one-character ``fill``, as many ``fill``
    characters as it was long, so that positions in the text stay put (a parser that reads an
    entry's header uses this). Brackets never cross a paragraph break (``\x00``).
    """
    replace = " " if fill is None else (lambda m: fill * len(m.group()))
    # Etymologies hold brackets inside brackets; removing the innermost ones until none is
    # left handles any depth. An unclosed "[" stays (and its text with it): never eat a paragraph.
    removed = 1
    while removed:
        text, removed = _INNERMOST_BRACKETS.subn(replace, text)
    return text


def split_paragraphs(text: str) -> list[str]:
    """Cut ``text`` at its blank lines (each paragraph keeps its first line's indent)."""
    return _PARAGRAPH_BREAK.split(text)


def clean_gcide(text: str) -> list[str]:
    """Strip GCIDE's markup from a run of whole paragraphs; return one clean string per paragraph.

    ``text`` must start at a paragraph (an entry's first line, or a blank-line boundary).
    """
    return strip_markup(split_paragraphs(decode_letters(text)))


def strip_markup(paragraphs: Sequence[str]) -> list[str]:
    """Steps 2 to 4 of :func:`clean_gcide` on paragraphs whose letters are decoded, all in one go.

    Each paragraph gives one string, in order: ``"\x00"`` marks the boundaries inside, and no
    pattern crosses it, so a paragraph is cleaned as if it were alone.
    """
    text = drop_brackets("\x00".join(paragraphs))
    text = _ENTRY_HEADER.sub("", text)  # after the brackets, so a wrapped etymology went with it
    text = _CITATION.sub("", text)
    text = _RUN_ON_HEADWORD.sub("", text)
    text = _SUBJECT_LABEL.sub("", text)
    text = _FIELD_LABEL.sub("", text)
    text = _BRACES.sub("", text)
    return text.split("\x00")


_DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# The digits re-spelt as characters in ascending order, so that string order is number order.
_DIGITS_IN_ORDER = str.maketrans(_DICTD_DIGITS, "".join(map(chr, range(0x100, 0x140))))


def _dictd_number(b64: str) -> int:
    """A number of a dictd index: base 64, most significant digit first, RFC 4648 alphabet."""
    value = 0
    for ch in b64:
        value = value * 64 + _DICTD_DIGITS.index(ch)
    return value


def _first_entry_offset(index_path: Path) -> int:
    """Where the dictionary proper starts: after the ``00-database-*`` entries (licence, notes)."""
    text = index_path.read_text(encoding="utf-8", errors="replace")
    # the offset column of every line whose headword does not start with "00"
    offsets = re.findall(r"^(?!00)[^\t\n]*\t([A-Za-z0-9+/]+)\t", text, flags=re.MULTILINE)
    # The smallest number without converting 200,000 of them: fewer digits (after leading
    # zeros, "A") is smaller, and among equally long ones the string order of the digits.
    significant = (o.lstrip("A") for o in offsets)
    return _dictd_number(min(significant, key=lambda o: (len(o), o.translate(_DIGITS_IN_ORDER))))


def gcide_path() -> Path:
    """The GCIDE file, searched for as ``minitl.data.paths`` describes (there is no download)."""
    return locate("gcide", GCIDE_FILE, alternatives=["gcide.dict"])


def gcide_sentences(path: str | os.PathLike | None = None, limit_words: int | None = None,
                    chunk_chars: int = 1 << 20) -> Iterator[list[str]]:
    """Yield GCIDE's paragraphs as lists of lower-cased words, streaming through the file.

    ``limit_words`` stops after that many words (the last sentence cut to hit it exactly), so a
    test or a quick experiment reads only the start of the file. Empty paragraphs are skipped.
    """
    paragraphs = (words for text in read_gcide(path, _after_last_paragraph, chunk_chars)
                  for words in map(tokenize, clean_gcide(text)) if words)
    return take_words(paragraphs, limit_words)


def _after_last_paragraph(text: str) -> int:
    return text.rfind("\n\n") + 2


def read_gcide(path: str | os.PathLike | None, cut: Callable[[str], int],
               chunk_chars: int = 1 << 20) -> Iterator[str]:
    """Stream the dictionary (after its ``00-database-*`` preamble) as pieces that end at a boundary.

    The file is read ``chunk_chars`` at a time; ``cut(text)`` says where the last whole unit
    (paragraph, entry) of the text read so far ends (a value < 2 when none does yet), and the
    rest waits for the next chunk. So a caller never sees a paragraph or an entry cut in two.
    """
    path = Path(path) if path is not None else gcide_path()
    index = path.parent / "gcide.index"
    start = _first_entry_offset(index) if index.is_file() else 0
    with gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb") as raw:
        raw.seek(start)  # index offsets count bytes of the uncompressed text
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        pending = ""
        while True:
            chunk = text.read(chunk_chars)
            pending += chunk
            end = len(pending) if not chunk else cut(pending)
            if end > 1:
                yield pending[:end]
                pending = pending[end:]
            if not chunk:
                return


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def gcide_corpus(path: str | os.PathLike | None = None, cache: bool = True,
                 verbose: bool = False) -> Corpus:
    """All of GCIDE encoded as a :class:`Corpus` (full vocabulary, ``min_count=1``).

    Parsing the whole dictionary takes several seconds, so the result is cached as an ``.npz`` in
    ``cache_dir("gcide")``, keyed by the source file (path, size, mtime) and ``CLEANER_VERSION``;
    later calls load it in a fraction of a second. Shrink the vocabulary with
    ``corpus.restrict(min_count=5)``.
    """
    path = Path(path) if path is not None else gcide_path()
    cached, stale = cache_file(path, "corpus", str(CLEANER_VERSION))
    if cache and cached.is_file():
        return Corpus.load(cached)
    started = time.perf_counter()
    corpus = build_corpus(gcide_sentences(path))
    if verbose:
        print(f"GCIDE: {corpus.n_tokens:,} words, {len(corpus):,} sentences, {len(corpus.vocab):,} "
              f"word types, parsed in {time.perf_counter() - started:.1f} s")
    if cache:
        write_cache(cached, corpus.save, stale, "the GCIDE corpus")
    return corpus


def cache_file(path: Path, kind: str, version: str) -> tuple[Path, str]:
    """Where something made from the GCIDE file ``path`` is cached, and a glob of its older copies.

    The name holds the source file (path, size, mtime) and the ``version`` of the code that
    made it, so a new dictionary or a changed parser is never served an old result.
    """
    stat = path.stat()
    source_id = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    folder = cache_dir("gcide", create=False)
    name = f"gcide-{kind}-{source_id}-{stat.st_size}-{int(stat.st_mtime)}-v{version}.npz"
    return folder / name, f"gcide-{kind}-{source_id}-*.npz"


def write_cache(cached: Path, save: Callable[[Path], object], stale: str, what: str) -> None:
    """``save(tmp)`` an ``.npz`` and move it to ``cached`` atomically; remove the ``stale`` ones.

    A read-only home must not stop the reading: an error only warns.
    """
    tmp = cached.with_name(cached.name + f".{os.getpid()}.part.npz")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        save(tmp)
        os.replace(tmp, cached)  # atomic: a reader never sees half an .npz
        # an older cache of the same file (changed file, older code) is now dead weight
        for old in cached.parent.glob(stale):
            if old != cached:
                old.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"could not cache {what} in {cached.parent}: {exc}", stacklevel=3)
    finally:
        tmp.unlink(missing_ok=True)
