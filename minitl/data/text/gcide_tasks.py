"""Two labelled tasks read from GCIDE: a definition's part of speech, and its subject.

Transfer learning is judged on a *target task*: the sequence models, the transformers (BERT,
GPT) and the PEFT methods of the chapter (LoRA, adapters, prompt tuning) are fine-tuned or
probed on a supervised text task and compared with training from scratch. These two tasks come
from the same offline dictionary as the word-vector corpus (``minitl.data.text.gcide``), so every
lesson and experiment can share them.

**Part of speech** (:func:`gcide_pos`): each entry's definition text, labelled with the part of
speech its header gives the headword. GCIDE writes ``Abandon \\A*ban"don\\, v. t. [...]``; the
abbreviations after the last ``\\headword\\`` (and its pronunciation) are read, and
``POS_TAGS`` maps them to four classes: ``n.``, ``n. pl.`` -> noun; ``a.``, ``adj.`` (WordNet's
spelling) -> adjective; ``v. t.``, ``v. i.``, ``v.``, ``v. t. & i.``, ``v. i. & t.`` -> verb;
``adv.`` -> adverb. One sense of a headword with another part of speech is an entry of its own
in GCIDE (``Abandon``, v. t. and ``Abandon``, n.), hence an example of its own. Dropped from the
126,292 text blocks of dict-gcide 0.48: 5,863 headers without a part of speech (mostly
``Unsaved \\Unsaved\\  See {saved}.``), 971 with several (``a. & n.``, ``n. & v.``), 2,388 with
another one (``prop. n.``, ``prep.``, ``interj.``, ``p. p.``...), 8 without definition text and
75 blocks without a header. That leaves **116,987 examples** (101,711 distinct headwords):

    ============  ======  =====
    noun          66,736  57.0%
    adjective     29,838  25.5%
    verb          16,590  14.2%
    adverb         3,823   3.3%
    ============  ======  =====

so the majority baseline (always "noun") is 57.5% on the default test split.

**Subject** (:func:`gcide_subjects`): GCIDE marks a sense's field with a label in parentheses at
its start, ``3. (Naut.) Backward against the mast``, or after the etymology of a header, which
then labels the entry's first paragraph. One example per labelled paragraph (a numbered sense, or
a phrase such as ``{Whale louse} (Zool.), ...``) whose label is one of ``SUBJECTS``, the twelve
most frequent (labels are matched exactly: ``Bot. & Zool.`` or ``Physiol. Chem.`` are other
subjects). **30,450 examples** (24,612 headwords): zoology 9,801 (32.2%), botany 5,529,
chemistry 3,262, medicine 2,393, anatomy 1,944, nautical 1,598, law 1,491, mineralogy 1,067,
biology 951, music 929, architecture 870, military 615; 14,475 paragraphs carry another label.
The majority baseline (always "zoology") is 31.9% on the default test split.

**The text** of an example is cleaned as the corpus is (:func:`~minitl.data.text.gcide.clean_gcide`:
no etymologies, sources, quotation authors or labels; the subject label of a subject example is
gone with them) and tokenised by :func:`~minitl.data.text.tokenizer.tokenize`. A part-of-speech
example is the entry's paragraphs one after another (senses, notes, quotations), a subject
example its one paragraph; ``max_tokens=64`` (the default) keeps the first 64 tokens (90% of
the texts are shorter). The header itself (headword, pronunciation, part of
speech, inflections) is never part of the text.

**The headword is masked**: each token of it becomes ``MASK_TOKEN`` (``"[MASK]"``, BERT's
spelling), and so do the forms the header writes (``[imp. & p. p. {Abandoned}]``, ``pl.
{Abaci}``, ``[Written also ...]``) and the regular inflections of :func:`headword_forms`
(``abandons``, ``abandoning``...). ``"[MASK]"`` is no output of ``tokenize`` (brackets are not
letters), so a vocabulary built from these texts holds it as a word of its own, and a model's
tokenizer maps it to its mask id. Function words of a headword of several words stay (``the``
of ``spin the plate``).

**The split is by headword**: ``sha1(f"{seed}:{headword.lower()}")`` read as a number u in
[0, 1) puts all entries of a headword in train (u < 0.8), val (u < 0.9) or test, so no word is
in two splits, and the assignment depends neither on the order of the entries nor on numpy.
Within a split the examples are ordered by u, so any prefix is a random sample of headwords;
``n_train`` keeps such a prefix of each class, in proportion (stratified), so the class balance
and the majority baseline stay as they were.

Both tasks are built in one pass over the dictionary (about 10 s of CPU, twice the corpus's
time) and cached as ``.npz`` (no pickle) in ``cache_dir("gcide")``, keyed by the source file
and ``CLEANER_VERSION.TASKS_VERSION``; a later call loads in under a second. ``fast=True``
reads the first ``FAST_ENTRIES`` entries only (under a second; 11,169 part-of-speech and 2,444
subject examples), for tests and quick runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .classification import TextClassificationData, TextSplit
from .gcide import (_PARAGRAPH_BREAK, CLEANER_VERSION, cache_file, decode_letters, drop_brackets,
                    gcide_path, read_gcide, split_paragraphs, strip_markup, write_cache)
from .tokenizer import tokenize

# Bump when the parsing or the labelling below changes, so that cached tasks are rebuilt.
TASKS_VERSION = 1

MASK_TOKEN = "[MASK]"
# Left unmasked in a headword of several words: masking "of" of "man of war" everywhere in its
# definition would hide more than the headword.
FUNCTION_WORDS = frozenset("a an the of in on to and or for by with at as from".split())

POS_CLASSES = ("noun", "adjective", "verb", "adverb")
# The header's part-of-speech abbreviations, normalised to single spaces, and the class they give.
POS_TAGS = {
    "n.": "noun", "n. pl.": "noun",
    "a.": "adjective", "adj.": "adjective",
    "v. t.": "verb", "v. i.": "verb", "v.": "verb", "v. t. & i.": "verb", "v. i. & t.": "verb",
    "adv.": "adverb",
}

# The twelve most frequent subject labels (each on more than 600 paragraphs) and their classes.
SUBJECTS = {"Zool.": "zoology", "Bot.": "botany", "Chem.": "chemistry", "Med.": "medicine",
            "Anat.": "anatomy", "Naut.": "nautical", "Law": "law", "Min.": "mineralogy",
            "Biol.": "biology", "Mus.": "music", "Arch.": "architecture", "Mil.": "military"}

FAST_ENTRIES = 12_000  # fast=True reads this many entries, the start of the letter A and B

# -- parsing one entry --------------------------------------------------------------------------
_ENTRY_BREAK = re.compile(r"\n\n(?=\S)")  # a blank line, then a line in column 0
_BRACKET = "\x01"  # what a bracket's characters become in the position-keeping copy
_HEADER_LINES = re.compile(r"[^\n]*(?:\n(?=\S)[^\n]*)*")  # the first line and any in column 0 after it
_STRESS_FORM = re.compile(r"\\([^\\\n\x01]*)\\")  # \A*ban"don\ : the headword with stress marks
_NO_STRESS_MARKS = str.maketrans("", "", '*"`')
_ENDINGS = ("s", "es", "d", "ed", "ing", "er", "est", "'s")
_AFTER_DROPPED_E = ("ing", "ed", "er", "est")
_AFTER_Y_TO_I = ("ies", "ied", "ier", "iest")
_AFTER_DOUBLING = ("ed", "ing", "er", "est")
_LABEL_TEXT = r"[A-Z][A-Za-z]*\.?(?:\s*(?:&\s*)?[A-Z][A-Za-z]*\.?)*"  # Zool.  Civil Law  Bot. & Zool.
_LABEL = r"\((?P<label>" + _LABEL_TEXT + r")\)"
# After the last \form\, maybe on the next line: a pronunciation (neither a subject label nor a
# sense's "(a)"), commas, then the part-of-speech abbreviations, which may wrap ("v.\n   t.").
_HEADER_TAIL = re.compile(
    r"[ \t,]*\n?[ \t]*(?P<pron>\((?!" + _LABEL_TEXT + r"\)|[a-z]\))[^)]*\))?[ \t,;.\x01]*\n?[ \t]*"
    r"(?P<pos>[a-z]{1,6}\.(?:[ \t]*(?:&[ \t]*)?\n?[ \t]*[a-z]{1,6}\.)*)?")
_TAIL_LABEL = re.compile(_LABEL)
_LEADING_LABEL = re.compile(
    r"\s*(?:\d+\.\s*)?(?:\([a-z]\)\s*)?(?:\[[^\]]*\]\s*)?(?:\{[^}]*\}\s*)?" + _LABEL)
_BRACE = re.compile(r"\{([^{}]*)\}")
# A bracket in the header that lists forms of the headword: "[imp. & p. p. {Abandoned}; ...]",
# "[pl. {Abaci}]", "[Written also {beach-comber}]" (an etymology's "[L. ... See {Alien}.]" is not).
_FORMS_BRACKET = re.compile(r"\[\s*(?:Written also|(?:[a-z]{1,6}\.\s*(?:&\s*)?)+\{)")


@dataclass
class GcideEntry:
    """One entry of the dictionary: a header (headword, part of speech) and its paragraphs.

    ``paragraphs[i]`` is ``(subject, tokens)``: the paragraph's subject label (``"Zool."``) or
    None, and its cleaned words with every form of the headword replaced by ``MASK_TOKEN``.
    """

    headword: str
    pos: str | None
    paragraphs: list[tuple[str | None, list[str]]]


def split_entries(text: str) -> list[str]:
    """Cut whole entries apart: an entry starts at a line in column 0 after a blank line."""
    return [e for e in _ENTRY_BREAK.split(text) if e.strip()]


def _after_last_entry(text: str) -> int:
    """Where the last complete entry of ``text`` ends (see :func:`read_gcide`); 0 if none does."""
    i = len(text)
    while (i := text.rfind("\n\n", 0, i)) >= 0:
        if i + 2 < len(text) and not text[i + 2].isspace():
            return i + 2
    return 0


def headword_forms(headword: str, written: Iterable[str]) -> set[str]:
    """The tokens to mask in an entry: the headword's, its written forms', and regular inflections.

    ``written`` are the other spellings the header gives (stress forms, plurals, past tenses...).
    Each token t of three letters or more also stands for t+s, t+es, t+d, t+ed, t+ing, t+er,
    t+est, t+'s, and, as English spells them, t without its final e (+ing, +ed...), y -> i
    (+es, +ed, +er, +est) and a doubled last consonant (+ed, +ing, +er, +est). The function
    words of a headword of several words ("the" of "spin the plate") are not masked.
    """
    tokens = set(tokenize(" ".join((headword, *written)).translate(_NO_STRESS_MARKS)))
    if len(tokens) > 1:
        tokens -= FUNCTION_WORDS
    forms = set(tokens)
    for t in tokens:
        if len(t) < 3:
            continue
        forms.update([t + end for end in _ENDINGS])
        if t[-1] == "e":
            forms.update([t[:-1] + end for end in _AFTER_DROPPED_E])
        elif t[-1] == "y":
            forms.update([t[:-1] + end for end in _AFTER_Y_TO_I])
        elif t[-1] not in "aiouwx":
            forms.update([t + t[-1] + end for end in _AFTER_DOUBLING])
    return forms


def parse_entry(text: str) -> GcideEntry | None:
    """Read one entry (as :func:`split_entries` cuts them); None when it has no ``\\headword\\``."""
    return parse_entries([text])[0]


def parse_entries(entries: Sequence[str]) -> list[GcideEntry | None]:
    """Read many entries (GCIDE's text, as :func:`split_entries` cuts it)."""
    return _parse_decoded([decode_letters(text) for text in entries])


def _parse_decoded(entries: Sequence[str]) -> list[GcideEntry | None]:
    """:func:`parse_entries` after ``decode_letters``; all paragraphs go through one ``strip_markup``."""
    headers = [_parse_header(text) for text in entries]
    bodies = [split_paragraphs(header[-1]) if header else [] for header in headers]
    cleaned = iter(strip_markup([p for body in bodies for p in body]))
    parsed = []
    for header, body in zip(headers, bodies):
        if header is None:
            parsed.append(None)
            continue
        display, pos, masked, header_label, _ = header
        paragraphs = []
        for i, raw in enumerate(body):
            tokens = [MASK_TOKEN if t in masked else t for t in tokenize(next(cleaned))]
            if not tokens:
                continue
            label = _LEADING_LABEL.match(raw) or (header_label if i == 0 else None)
            paragraphs.append((" ".join(label.group("label").split()) if label else None, tokens))
        parsed.append(GcideEntry(display, pos, paragraphs))
    return parsed


def _parse_header(decoded: str):
    """``(headword, pos, tokens to mask, header's subject label match, body text)``, or None."""
    brk = _PARAGRAPH_BREAK.search(decoded)
    first = decoded[:brk.start()] if brk else decoded
    # The same paragraph with every bracket's characters blanked out: positions stay put, so a
    # position found here (the end of the header) is one in ``first`` too.
    blank = drop_brackets(first, fill=_BRACKET)
    # The header is the lines in column 0 at the start ("Cloven-footed \...\, Cloven-hoofed
    # <newline> \...\, a."); its last \form\ comes before the pronunciation and the POS.
    header_lines = _HEADER_LINES.match(blank).group()
    forms = list(_STRESS_FORM.finditer(header_lines))
    if not forms:
        return None
    display = blank[:forms[0].start()].strip(" \n,") or forms[0].group(1).translate(_NO_STRESS_MARKS)
    display = " ".join(display.split())  # one line: the cache keeps headwords a line each
    if not display:
        return None
    tail = _HEADER_TAIL.match(blank, forms[-1].end())
    pos = " ".join(tail.group("pos").split()) if tail.group("pos") else None
    header_end = tail.end("pos") if pos else tail.end("pron") if tail.group("pron") else forms[-1].end()
    line_end = blank.find("\n", header_end)
    line_end = len(first) if line_end < 0 else line_end

    written = [f.group(1) for f in forms]
    for brace in _BRACE.finditer(first, forms[0].end(), line_end):
        if blank[brace.start()] == "{":  # outside brackets: "n.; pl. {Abaculi}"
            written.append(brace.group(1))
        else:  # inside a bracket: only one that lists forms of the headword
            opening = len(blank[:brace.start()].rstrip(_BRACKET))
            if _FORMS_BRACKET.match(first, opening):
                written.append(brace.group(1))
    header_label = _TAIL_LABEL.search(blank, header_end, line_end)
    return display, pos, headword_forms(display, written), header_label, decoded[line_end:]


def gcide_entries(path: str | os.PathLike | None = None,
                  limit: int | None = None) -> Iterator[GcideEntry | None]:
    """Yield the entries of GCIDE in file order, parsed (None for a text block without a header).

    ``limit`` stops after that many entries (``fast=True`` of the tasks reads the first
    ``FAST_ENTRIES``).
    """
    count = 0
    for text in read_gcide(path, _after_last_entry):
        entries = split_entries(decode_letters(text))  # letter entities never cross an entry
        if limit is not None:
            entries = entries[:limit - count]
        count += len(entries)
        yield from _parse_decoded(entries)
        if limit is not None and count >= limit:
            return


# -- the two tasks ------------------------------------------------------------------------------
@dataclass
class _Examples:
    """A task's examples in file order, before the split: what the cache holds."""

    texts: list[list[str]]
    labels: list[int]
    headwords: list[str]
    dropped: Counter


def pos_examples(entries: Iterable[GcideEntry | None]) -> _Examples:
    """One example per entry whose header names one class of ``POS_TAGS``: all its paragraphs."""
    out = _Examples([], [], [], Counter())
    class_of = {tag: POS_CLASSES.index(name) for tag, name in POS_TAGS.items()}
    for entry in entries:
        if entry is None:
            out.dropped["no header"] += 1
        elif entry.pos is None:
            out.dropped["no part of speech"] += 1
        elif entry.pos not in class_of:
            out.dropped["several parts of speech" if "&" in entry.pos else "another part of speech"] += 1
        elif not entry.paragraphs:
            out.dropped["no definition text"] += 1
        else:
            out.texts.append([t for _, tokens in entry.paragraphs for t in tokens])
            out.labels.append(class_of[entry.pos])
            out.headwords.append(entry.headword)
    return out


def subject_examples(entries: Iterable[GcideEntry | None]) -> _Examples:
    """One example per paragraph whose subject label is one of ``SUBJECTS``."""
    out = _Examples([], [], [], Counter())
    class_of = {label: i for i, label in enumerate(SUBJECTS)}
    for entry in entries:
        if entry is None:
            out.dropped["no header"] += 1
            continue
        for label, tokens in entry.paragraphs:
            if label is None:
                out.dropped["paragraph without a subject label"] += 1
            elif label not in class_of:
                out.dropped["paragraph with another subject"] += 1
            else:
                out.texts.append(tokens)
                out.labels.append(class_of[label])
                out.headwords.append(entry.headword)
    return out


_TASKS = {"pos": pos_examples, "subjects": subject_examples}


def _save_examples(path: Path, examples: _Examples) -> None:
    """An ``.npz`` without pickle: the texts as word ids with offsets (as a ``Corpus`` holds them)."""
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(t, len(index)) for tokens in examples.texts for t in tokens],
                   dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum([len(tokens) for tokens in examples.texts])])
    np.savez(path, ids=ids, offsets=offsets.astype(np.int64), words=_pack(index),
             labels=np.array(examples.labels, dtype=np.int64), headwords=_pack(examples.headwords),
             dropped=np.array(json.dumps(dict(examples.dropped))))


def _load_examples(path: Path, max_tokens: int | None) -> _Examples:
    with np.load(path, allow_pickle=False) as data:
        ids, offsets, labels = data["ids"], data["offsets"], data["labels"].tolist()
        words = np.array(_unpack(data["words"], int(ids.max(initial=-1)) + 1), dtype=object)
        headwords = _unpack(data["headwords"], len(labels))
        dropped = Counter(json.loads(str(data["dropped"])))
    starts = offsets[:-1]
    lengths = offsets[1:] - starts if max_tokens is None else np.minimum(offsets[1:] - starts, max_tokens)
    # the positions of the kept tokens, all texts at once: start_i, start_i + 1, ... for each i
    kept_offsets = np.concatenate([[0], np.cumsum(lengths)])
    kept = np.arange(kept_offsets[-1]) + np.repeat(starts - kept_offsets[:-1], lengths)
    # one lookup for all tokens, then list slices: each text's words are shared str objects
    tokens = words[ids[kept]].tolist()
    texts = [tokens[a:b] for a, b in zip(kept_offsets[:-1].tolist(), kept_offsets[1:].tolist())]
    return _Examples(texts, labels, headwords, dropped)


def _pack(strings: Iterable[str]) -> np.ndarray:
    """Strings without newlines as one UTF-8 byte array: no pickle, no fixed-width padding."""
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8)


def _unpack(packed: np.ndarray, n: int) -> list[str]:
    """The ``n`` strings of :func:`_pack` (``n`` tells no string from one empty string)."""
    return packed.tobytes().decode("utf-8").split("\n") if n else []


def _task_examples(task: str, path, fast: bool, cache: bool, max_tokens: int | None) -> _Examples:
    """The examples of ``task``, from the cache or parsed (both tasks are built in one pass)."""
    path = Path(path) if path is not None else gcide_path()
    version = f"{CLEANER_VERSION}.{TASKS_VERSION}"
    kinds = {name: name + ("-fast" if fast else "") for name in _TASKS}
    cached, _ = cache_file(path, kinds[task], version)
    if cache and cached.is_file():
        return _load_examples(cached, max_tokens)
    from tqdm.auto import tqdm
    # a bar on a terminal only (disable=None): a first build takes several seconds
    entries = list(tqdm(gcide_entries(path, limit=FAST_ENTRIES if fast else None), disable=None,
                        desc=f"parsing {path.name}", unit=" entries", leave=False))
    built = {name: make(entries) for name, make in _TASKS.items()}
    if cache:
        for name, examples in built.items():
            target, stale = cache_file(path, kinds[name], version)
            write_cache(target, lambda tmp, ex=examples: _save_examples(tmp, ex), stale,
                        f"the GCIDE {name} task")
    examples = built[task]
    texts = examples.texts if max_tokens is None else [t[:max_tokens] for t in examples.texts]
    return _Examples(texts, examples.labels, examples.headwords, examples.dropped)


def split_of(headwords: Sequence[str], fractions: Sequence[float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(split, rank)``: each headword's split (0 train, 1 val, 2 test) and a place in a shuffle.

    Both come from ``u = sha1(f"{seed}:{headword.lower()}")`` read as a number in [0, 1): the split
    is where u falls among the cumulative ``fractions``. So every entry of one headword lands in
    the same split, and the assignment depends neither on the order of the entries nor on the
    numpy version. ``rank`` orders examples by u, so any prefix of a split is a random sample.
    """
    u = np.array([int.from_bytes(hashlib.sha1(f"{seed}:{h.lower()}".encode()).digest()[:8], "big")
                  for h in headwords], dtype=np.uint64)
    split = np.searchsorted(np.cumsum(fractions)[:-1], u / 2.0**64, side="right")
    return split.astype(np.int64), np.argsort(u, kind="stable")


def _stratified_prefix(labels: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """Positions of the first examples of each class, ``n`` in all, in proportion to the classes.

    Quotas are ``n * count_c / len(labels)`` rounded by largest remainder, so they sum to ``n``
    and the class balance (hence the majority baseline) stays what it was.
    """
    counts = np.bincount(labels, minlength=n_classes)
    exact = n * counts / len(labels)
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[:n - quota.sum()]] += 1
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    for c in range(n_classes):
        members = np.flatnonzero(labels == c)
        rank_in_class[members] = np.arange(len(members))
    return np.flatnonzero(rank_in_class < quota[labels])


def _check_options(split: Sequence[float], max_tokens: int | None, n_train: int | None) -> np.ndarray:
    """The split fractions as an array, once the options are known to make sense."""
    fractions = np.asarray(split, dtype=np.float64)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split must be three fractions (train, val, test) >= 0 that sum to 1, "
                         f"got {tuple(split)}")
    if max_tokens is not None and (not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive int or None (the whole text), got {max_tokens!r}")
    if n_train is not None and (not isinstance(n_train, (int, np.integer)) or n_train < 1):
        raise ValueError(f"n_train must be a positive int or None (all of them), got {n_train!r}")
    return fractions


def _make_dataset(name: str, classes: Sequence[str], examples: _Examples, fractions: np.ndarray,
                  seed: int, n_train: int | None) -> TextClassificationData:
    which, order = split_of(examples.headwords, fractions, seed)
    labels = np.asarray(examples.labels, dtype=np.int64)
    parts = []
    for k in range(3):
        chosen = order[which[order] == k]  # this split's examples, in the shuffled order
        if k == 0 and n_train is not None:
            if n_train > len(chosen):
                raise ValueError(f"n_train must be in 1..{len(chosen):,} (the training examples of "
                                 f"{name} with this split), got {n_train}")
            chosen = chosen[_stratified_prefix(labels[chosen], n_train, len(classes))]
        parts.append(TextSplit([examples.texts[i] for i in chosen], labels[chosen],
                               [examples.headwords[i] for i in chosen]))
    return TextClassificationData(name, tuple(classes), *parts, dropped=dict(examples.dropped))


def gcide_pos(split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, max_tokens: int | None = 64,
              n_train: int | None = None, fast: bool = False, path: str | os.PathLike | None = None,
              cache: bool = True) -> TextClassificationData:
    """GCIDE's definitions labelled with their headword's part of speech (see the module docstring).

    ``split``: fractions of the *headwords* for train, val, test; ``seed`` picks the assignment.
    ``max_tokens``: keep the first tokens of each definition (None: all of it).
    ``n_train``: keep that many training examples, the same share of each class (stratified),
    the first ones of the split's shuffled order. ``fast``: read only the first ``FAST_ENTRIES``
    entries (the start of A and B), for tests. Cached in ``cache_dir("gcide")``.
    """
    fractions = _check_options(split, max_tokens, n_train)
    examples = _task_examples("pos", path, fast, cache, max_tokens)
    return _make_dataset("GCIDE part of speech", POS_CLASSES, examples, fractions, seed, n_train)


def gcide_subjects(split: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, max_tokens: int | None = 64,
                   n_train: int | None = None, fast: bool = False, path: str | os.PathLike | None = None,
                   cache: bool = True) -> TextClassificationData:
    """GCIDE's definition paragraphs labelled with their subject (Zool., Bot., ...; see the module).

    The options are those of :func:`gcide_pos`; the split is by headword here too.
    """
    fractions = _check_options(split, max_tokens, n_train)
    examples = _task_examples("subjects", path, fast, cache, max_tokens)
    return _make_dataset("GCIDE subject", tuple(SUBJECTS.values()), examples, fractions, seed, n_train)
