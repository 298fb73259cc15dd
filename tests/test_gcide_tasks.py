"""GCIDE's labelled tasks (minitl.data.text.gcide_tasks) and the dataset they return.

The parsing is tested on entries copied from /usr/share/dictd/gcide.dict.dz (some shortened);
the real-data tests (skipped without the Debian package dict-gcide) read the cached tasks, which
the first of them builds once (about 12 s of CPU) when the cache is cold.
"""
import gzip
import random

import numpy as np
import pytest

from minitl.data import paths
from minitl.data.paths import DataNotFoundError
from minitl.data.text import (MASK_TOKEN, TextClassificationData, TextSplit, gcide_pos,
                              gcide_subjects, tokenize)
from minitl.data.text import gcide_tasks
from minitl.data.text.gcide_tasks import (FUNCTION_WORDS, headword_forms, parse_entries,
                                          parse_entry, pos_examples, split_entries, split_of,
                                          subject_examples)

GCIDE = paths.SYSTEM_DIRS["gcide"][0] / "gcide.dict.dz"
have_gcide = pytest.mark.skipif(not GCIDE.is_file(),
                                reason=f"GCIDE is not installed at {GCIDE} (sudo apt-get install dict-gcide)")

ENTRIES = r"""Abandon \A*ban"don\ ([.a]*b[a^]n"d[u^]n), v. t. [imp. & p. p.
   {Abandoned} (-d[u^]nd); p. pr. & vb. n. {Abandoning}.] [OF.
   abandoner, F. abandonner; a (L. ad) + bandon permission. See {Ban}.]
   1. To cast or drive out; to banish; to expel; to reject.
      [Obs.]
      [1913 Webster]

            Being all this time abandoned from your bed. --Shak.
      [1913 Webster]

   2. To give up absolutely; to forsake entirely.
      [1913 Webster]

Abandon \A*ban"don\, n. [F. abandon. fr. abandonner. See
   {Abandon}, v.]
   Abandonment; relinquishment. [Obs.]
   [1913 Webster]

Aback \A*back"\ ([.a]*b[a^]k"), adv. [Pref. a- + back; AS. on
   b[ae]c at, on, or toward the back. See {Back}.]
   1. Toward the back or rear; backward. "Therewith aback she
      started." --Chaucer.
      [1913 Webster]

   3. (Naut.) Backward against the mast; -- said of the sails
      when pressed by the wind. --Totten.
      [1913 Webster]

Abactinal \Ab*ac"ti*nal\ ([a^]b*[a^]k"t[i^]*nal), a. [L. ab + E.
   actinal.] (Zool.)
   Pertaining to the surface or end opposite to the mouth in a
   radiate animal; -- opposed to {actinal}. "The aboral or
   abactinal area." --L. Agassiz.
   [1913 Webster]

Abalienate \Ab*al"ien*ate\ ([a^]b*[=a]l"yen*[=a]t; 94, 106), v.
   t. [L. abalienatus, p. p. of abalienare; ab + alienus
   foreign, alien. See {Alien}.]
   1. (Civil Law) To transfer the title of from one to another;
      to alienate.
      [1913 Webster]

   2. To estrange; to withdraw. [Obs.]
      [1913 Webster]

Titivate \Tit"i*vate\, Tittivate \Tit"ti*vate\
   (t[i^]t"[i^]*v[=a]t), v. t. & i. [imp. & p. p. {Titivated}
   (t[i^]t"[i^]*v[=a]t`[e^]d); p. pr. & vb. n. {Titivating}
   (t[i^]t"[i^]*v[=a]t`[i^]ng).] [Formed from an uncertain
   source, in imitation of words in -ate fr. L.]
   To dress or smarten up; to spruce. -- {Tit`i*va"tion},
   {Tit`ti*va"tion}, n. [Both Humorous]

         "Come here, an' let me titivate you."
                                                  --Quiller-Couch.
   [Webster 1913 Suppl.]

Unsaved \Unsaved\
   See {saved}.

Wandering \Wan"der*ing\,
   a. & n. from {Wander}, v.
   [1913 Webster]

   {Wandering albatross} (Zool.), the great white albatross. See
      Illust. of {Albatross}.

   {Wandering cell} (Physiol.), an animal cell which possesses
      the power of spontaneous movement.

   {Wandering kidney} (Med.), a morbid condition in which one
      kidney can be moved; -- called also {floating kidney}.

Sea porcupine \Sea" por"cu*pine\ (Zool.)
   Any fish of the genus {Diodon}, and allied genera, whose body
   is covered with spines. See Illust. under {Diodon}.
   [1913 Webster]

Cymbal \Cym"bal\ (s?m"bal). n. [OE. cimbale, simbale, OF.
   cimbale. Cf. {Chime}.]
   1. A musical instrument used by the ancients.
      [1913 Webster]

   Note: In orchestras, one cymbal is commonly attached to the
         bass drum.
         [1913 Webster]

Abaft \A*baft"\ ([.a]*b[.a]ft"), prep. [Pref. a- on + OE. baft,
   baften, biaften, AS. be[ae]ftan; be by + [ae]ftan behind. See
   {After}, {Aft}, {By}.] (Naut.)
   Behind; toward the stern from; as, abaft the wheelhouse.
   [1913 Webster]

aardvark \aard"vark`\ ([aum]rd"v[aum]rk`), n. [D., earth-pig.]
   (Zool.)
   An edentate mammal, of the genus {Orycteropus} ({Orycteropus
   afer}), somewhat resembling a pig. [Spelled also {Aard-vark}.]

   Syn: Syn. --ant bear, anteater, {Orycteropus afer}
        [1913 Webster WordNet 1.5]
"""

M = MASK_TOKEN


def _parsed():
    return parse_entries(split_entries(ENTRIES))


# -- parsing ------------------------------------------------------------------------------------
def test_split_entries_cuts_at_column_zero_after_a_blank_line():
    entries = split_entries(ENTRIES)
    assert len(entries) == 12
    assert [e.split(" \\")[0] for e in entries[:3]] == ["Abandon", "Abandon", "Aback"]
    assert entries[0].count("\n\n") == 2  # its quotation and sense 2 stay with it


def test_headers_give_headword_and_part_of_speech():
    parsed = _parsed()
    assert [(e.headword, e.pos) for e in parsed] == [
        ("Abandon", "v. t."), ("Abandon", "n."), ("Aback", "adv."), ("Abactinal", "a."),
        ("Abalienate", "v. t."),   # "v." and "t." on two lines
        ("Titivate", "v. t. & i."),  # two headwords, the POS after a pronunciation on line 2
        ("Unsaved", None), ("Wandering", "a. & n."), ("Sea porcupine", None),
        ("Cymbal", "n."),          # "(s?m"bal). n." with a stray period
        ("Abaft", "prep."), ("aardvark", "n.")]
    assert parse_entry("   An indented paragraph, no header.\n") is None


def test_text_is_cleaned_and_the_headword_masked():
    parsed = {(e.headword, e.pos): e for e in _parsed()}
    verb = parsed["Abandon", "v. t."]
    assert [tokens for _, tokens in verb.paragraphs] == [
        "to cast or drive out to banish to expel to reject".split(),
        ["being", "all", "this", "time", M, "from", "your", "bed"],  # "abandoned", from [imp. ...]
        "to give up absolutely to forsake entirely".split()]
    # a derived word is another word: only the headword and its inflections are masked
    assert parsed["Abandon", "n."].paragraphs == [(None, ["abandonment", "relinquishment"])]
    titivate = parsed["Titivate", "v. t. & i."].paragraphs
    # the run-on "-- {Tit`i*va"tion}, n." is gone, and no POS abbreviation leaks into the text
    assert titivate[0][1] == "to dress or smarten up to spruce".split()
    assert titivate[1][1] == ["come", "here", "an", "let", "me", M, "you"]
    abactinal = parsed["Abactinal", "a."].paragraphs
    assert abactinal[0][1][-4:] == ["aboral", "or", M, "area"]


def test_subject_labels_of_paragraphs():
    parsed = {(e.headword, e.pos): e for e in _parsed()}

    def labels(key):
        return [label for label, _ in parsed[key].paragraphs]

    assert labels(("Aback", "adv.")) == [None, "Naut."]  # at the start of sense 3
    assert labels(("Abactinal", "a.")) == ["Zool."]  # after the header's etymology
    assert labels(("aardvark", "n.")) == ["Zool.", None]  # on a line of its own after the header
    assert labels(("Sea porcupine", None)) == ["Zool."]  # right after the \headword\
    assert labels(("Abalienate", "v. t.")) == ["Civil Law", None]
    assert labels(("Wandering", "a. & n.")) == ["Zool.", "Physiol.", "Med."]  # phrases
    # the label is not left in the text
    assert parsed["Aback", "adv."].paragraphs[1][1][:3] == ["backward", "against", "the"]
    assert parsed["Wandering", "a. & n."].paragraphs[0][1][:4] == [M, "albatross", "the", "great"]


def test_headword_forms():
    forms = headword_forms("Abandon", ["A*ban\"don", "Abandoned"])
    assert {"abandon", "abandons", "abandoned", "abandoning", "abandoner"} <= forms
    assert "abandonment" not in forms
    assert {"tries", "tried", "trying"} <= headword_forms("Try", [])
    assert {"abetted", "abetting"} <= headword_forms("Abet", [])
    assert {"abating", "abated"} <= headword_forms("Abate", [])
    # function words of a headword of several words stay; a short word gets no inflections
    assert "the" not in headword_forms("spin the plate", []) and "plates" in headword_forms("spin the plate", [])
    assert headword_forms("A", []) == {"a"}
    assert FUNCTION_WORDS >= {"the", "of", "a"}


def test_examples_and_what_is_dropped():
    parsed = _parsed()
    pos = pos_examples(parsed + [None])
    classes = [gcide_tasks.POS_CLASSES[c] for c in pos.labels]
    assert list(zip(pos.headwords, classes)) == [
        ("Abandon", "verb"), ("Abandon", "noun"), ("Aback", "adverb"), ("Abactinal", "adjective"),
        ("Abalienate", "verb"), ("Titivate", "verb"), ("Cymbal", "noun"), ("aardvark", "noun")]
    assert dict(pos.dropped) == {"no part of speech": 2, "several parts of speech": 1,
                                 "another part of speech": 1, "no header": 1}
    # a part-of-speech example is the entry's paragraphs one after another
    assert pos.texts[6] == ["a", "musical", "instrument", "used", "by", "the", "ancients",
                            "in", "orchestras", "one", M, "is", "commonly", "attached", "to",
                            "the", "bass", "drum"]

    subjects = subject_examples(parsed)
    names = [list(gcide_tasks.SUBJECTS.values())[c] for c in subjects.labels]
    assert list(zip(subjects.headwords, names)) == [
        ("Aback", "nautical"), ("Abactinal", "zoology"), ("Wandering", "zoology"),
        ("Wandering", "medicine"), ("Sea porcupine", "zoology"), ("Abaft", "nautical"),
        ("aardvark", "zoology")]
    assert dict(subjects.dropped) == {"paragraph with another subject": 2,  # Civil Law, Physiol.
                                      "paragraph without a subject label": 12}


# -- split and dataset --------------------------------------------------------------------------
def test_split_by_headword_is_deterministic_and_order_free():
    words = [f"word{i}" for i in range(3000)]
    which, order = split_of(words, (0.8, 0.1, 0.1), seed=0)
    assert which.dtype == np.int64 and set(which.tolist()) == {0, 1, 2}
    assert abs(np.mean(which == 0) - 0.8) < 0.03 and abs(np.mean(which == 2) - 0.1) < 0.02
    # case does not matter, the order of the input does not either
    shuffled = words[::-1]
    which_shuffled, _ = split_of([w.upper() for w in shuffled], (0.8, 0.1, 0.1), seed=0)
    assert which_shuffled.tolist() == which[::-1].tolist()
    # sha1, not numpy's generator: these assignments hold on any machine and numpy version
    # (u = 0.402, 0.688, 0.885, 0.961 for these four)
    assert split_of(["abandon", "coal", "fugue", "aback"], (0.8, 0.1, 0.1), 0)[0].tolist() == [0, 0, 1, 2]
    other_seed, _ = split_of(words, (0.8, 0.1, 0.1), seed=1)
    assert (other_seed != which).mean() > 0.2
    # the order within a split follows the hash: sorted, and the same for equal headwords
    assert sorted(order.tolist()) == list(range(3000))


def _tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "mini.dict.dz"
    source.write_bytes(gzip.compress(ENTRIES.encode("utf-8")))
    return source


def test_tasks_on_a_small_file_and_their_cache(tmp_path, monkeypatch):
    source = _tiny(tmp_path, monkeypatch)
    pos = gcide_pos(path=source, split=(0.5, 0.25, 0.25))
    folder = tmp_path / "cache" / "minitl" / "gcide"
    assert sorted(p.name.split("-")[1] for p in folder.glob("*.npz")) == ["pos", "subjects"]
    again = gcide_pos(path=source, split=(0.5, 0.25, 0.25))  # from the .npz
    for name in ("train", "val", "test"):
        first, second = pos.splits[name], again.splits[name]
        assert first.texts == second.texts and first.headwords == second.headwords
        np.testing.assert_array_equal(first.labels, second.labels)
    assert sum(len(s) for s in pos.splits.values()) == 8
    assert pos.classes == ("noun", "adjective", "verb", "adverb")
    assert pos.dropped == {"no part of speech": 2, "several parts of speech": 1,
                           "another part of speech": 1}
    # both entries of "Abandon" in one split
    where = {name for name, s in pos.splits.items() if "Abandon" in s.headwords}
    assert len(where) == 1 and pos.splits[where.pop()].headwords.count("Abandon") == 2
    short = gcide_pos(path=source, max_tokens=3, split=(1.0, 0.0, 0.0))
    assert max(len(t) for t in short.train.texts) == 3 and len(short.val) == 0
    subjects = gcide_subjects(path=source, split=(1.0, 0.0, 0.0), max_tokens=None)
    assert len(subjects.train) == 7 and subjects.train.class_counts(12)[0] == 4  # zoology
    assert ["any", "fish", "of", "the", "genus"] in [t[:5] for t in subjects.train.texts]
    uncached = gcide_subjects(path=source, split=(1.0, 0.0, 0.0), max_tokens=None, cache=False)
    assert uncached.train.texts == subjects.train.texts


def test_stratified_n_train(tmp_path, monkeypatch):
    source = _tiny(tmp_path, monkeypatch)
    full = gcide_pos(path=source, split=(1.0, 0.0, 0.0))
    assert full.train.class_counts(4).tolist() == [3, 1, 3, 1]
    half = gcide_pos(path=source, split=(1.0, 0.0, 0.0), n_train=4)
    # quotas 4 * [3, 1, 3, 1] / 8 = [1.5, 0.5, 1.5, 0.5]: floors [1, 0, 1, 0], and the two
    # largest remainders (a tie, broken by class order) go to noun and adjective
    assert half.train.class_counts(4).tolist() == [2, 1, 1, 0]
    assert set(half.train.headwords) <= set(full.train.headwords)
    assert gcide_pos(path=source, split=(1.0, 0.0, 0.0), n_train=4).train.texts == half.train.texts
    with pytest.raises(ValueError, match=r"n_train must be in 1\.\.8"):
        gcide_pos(path=source, split=(1.0, 0.0, 0.0), n_train=9)


def test_bad_options_are_named_before_any_reading(tmp_path):
    missing = tmp_path / "no.dict.dz"  # the options are checked first: no FileNotFoundError
    with pytest.raises(ValueError, match="split must be three fractions"):
        gcide_pos(path=missing, split=(0.8, 0.1))
    with pytest.raises(ValueError, match="split must be three fractions"):
        gcide_subjects(path=missing, split=(0.8, 0.3, -0.1))
    with pytest.raises(ValueError, match="max_tokens must be a positive int or None"):
        gcide_pos(path=missing, max_tokens=0)
    with pytest.raises(ValueError, match="n_train must be a positive int or None"):
        gcide_subjects(path=missing, n_train=0.5)


def test_missing_gcide_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(paths.SYSTEM_DIRS, "gcide", [tmp_path / "system"])
    for task in (gcide_pos, gcide_subjects):
        with pytest.raises(DataNotFoundError, match="sudo apt-get install dict-gcide"):
            task()


def test_class_counts_balance_and_majority_baseline():
    def split(labels):
        return TextSplit([["w"]] * len(labels), np.array(labels), [f"h{i}" for i in range(len(labels))])

    data = TextClassificationData("toy", ("a", "b", "c"), split([0, 1, 1, 1, 2]), split([0, 1]),
                                  split([0, 0, 0, 1]), dropped={"odd": 3})
    assert data.class_counts()["train"].tolist() == [1, 3, 1]
    np.testing.assert_allclose(data.balance()["test"], [0.75, 0.25, 0.0])
    # the majority class is read on train (b), the accuracy measured on test
    assert data.majority_class() == 1
    assert data.majority_baseline() == 0.25 and data.majority_baseline("val") == 0.5
    text = data.summary()
    assert "majority baseline (b): 25.0% test accuracy" in text and "odd 3" in text
    assert data.train[1] == (["w"], 1)
    with pytest.raises(ValueError, match="split must be one of"):
        data.majority_baseline("dev")
    with pytest.raises(ValueError, match="differ in length"):
        TextSplit([["w"]], np.array([0, 1]), ["h"])


# -- the real dictionary ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pos():
    return gcide_pos()


@pytest.fixture(scope="module")
def subjects():
    return gcide_subjects()


@have_gcide
def test_real_pos_counts_and_baseline(pos):
    counts = {name: c.sum() for name, c in pos.class_counts().items()}
    total = sum(counts.values())
    assert 105_000 < total < 130_000  # 116,987 from dict-gcide 0.48
    assert 0.75 < counts["train"] / total < 0.85 and 0.08 < counts["test"] / total < 0.12
    share = pos.balance()["train"]
    assert pos.classes[int(np.argmax(share))] == "noun" and 0.5 < share[0] < 0.65
    assert 0.02 < share[3] < 0.05  # adverbs are rare
    assert 0.5 < pos.majority_baseline() < 0.65
    assert sum(pos.dropped.values()) < 12_000
    assert max(len(t) for t in pos.train.texts) == 64


@have_gcide
def test_real_subject_counts_and_baseline(subjects):
    counts = subjects.class_counts()
    total = sum(c.sum() for c in counts.values())
    assert 25_000 < total < 36_000  # 30,450 from dict-gcide 0.48
    per_class = sum(counts.values())
    assert per_class.min() > 500 and subjects.classes[int(np.argmax(per_class))] == "zoology"
    assert 0.25 < subjects.majority_baseline() < 0.4


@have_gcide
@pytest.mark.parametrize("task", ["pos", "subjects"])
def test_real_split_by_headword_and_masking(task, pos, subjects):
    data = {"pos": pos, "subjects": subjects}[task]
    words = {name: {h.lower() for h in s.headwords} for name, s in data.splits.items()}
    assert not words["train"] & words["test"] and not words["train"] & words["val"]
    assert not words["val"] & words["test"]
    for split in data.splits.values():
        for headword, text in zip(split.headwords, split.texts):
            tokens = set(tokenize(headword))
            if len(tokens) > 1:
                tokens -= FUNCTION_WORDS
            assert not tokens & set(text), (headword, text)
            assert text, headword


@have_gcide
def test_real_labels_of_known_words(pos, subjects):
    def labels(data, word):
        return {data.classes[label] for split in data.splits.values()
                for h, label in zip(split.headwords, split.labels) if h.lower() == word}

    assert labels(pos, "abandon") == {"verb", "noun"}  # v. t. and two n. entries
    assert labels(pos, "aardvark") == {"noun"}
    assert labels(pos, "quickly") == {"adverb"}
    assert "adjective" in labels(pos, "beautiful")
    assert labels(subjects, "aardvark") == {"zoology"}
    assert labels(subjects, "bowsprit") == {"nautical"}
    assert "music" in labels(subjects, "fugue")
    assert "law" in labels(subjects, "tort")


@have_gcide
def test_real_split_is_deterministic_and_independent_of_entry_order():
    first, second = gcide_pos(fast=True), gcide_pos(fast=True)
    assert first.test.headwords == second.test.headwords and first.test.texts == second.test.texts
    # rebuilding from the parsed entries in another order gives the same split of each headword
    entries = [e for e in gcide_tasks.gcide_entries(limit=3000)]
    random.Random(0).shuffle(entries)
    examples = pos_examples(entries)
    which, _ = split_of(examples.headwords, (0.8, 0.1, 0.1), seed=0)
    fast = {name: set(s.headwords) for name, s in first.splits.items()}
    for headword, k in zip(examples.headwords, which.tolist()):
        assert headword in fast[("train", "val", "test")[k]]
