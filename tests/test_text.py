"""Tokenizer, Vocab, encoded corpora, plain-text and GCIDE readers (minitl.data.text).

Everything runs on small texts written here, plus the first few thousand words of the real
GCIDE (skipped when the Debian package dict-gcide is absent). The full GCIDE is never parsed here.
"""
import gzip

import numpy as np
import pytest

from minitl.data import paths
from minitl.data.paths import DataNotFoundError
from minitl.data.text import (Corpus, Vocab, build_corpus, clean_gcide, encode_corpus, gcide_corpus,
                              gcide_path, gcide_sentences, text_sentences, tokenize)

GCIDE = paths.SYSTEM_DIRS["gcide"][0] / "gcide.dict.dz"
have_gcide = pytest.mark.skipif(not GCIDE.is_file(),
                                reason=f"GCIDE is not installed at {GCIDE} (sudo apt-get install dict-gcide)")

SENTENCES = [["the", "cat", "sat"], ["the", "dog", "sat"], ["a", "cat"], ["the", "end"]]


# -- tokenizer ----------------------------------------------------------------------------------
def test_tokenize_lowercases_and_keeps_only_words():
    assert tokenize("The Cat's hat, 42 coal-black!") == ["the", "cat's", "hat", "coal", "black"]
    assert tokenize("Don\u2019t PANIC") == ["don't", "panic"]
    assert tokenize("Café über naïve") == ["café", "über", "naïve"]
    assert tokenize("'quoted' -- 3.14 _x_") == ["quoted", "x"]
    assert tokenize("") == []


# -- Vocab --------------------------------------------------------------------------------------
def test_vocab_orders_by_count_then_word():
    vocab = Vocab.build(SENTENCES)
    # the:3; cat, sat:2 (alphabetical); a, dog, end:1 (alphabetical)
    assert vocab.id_to_word == ["the", "cat", "sat", "a", "dog", "end"]
    assert vocab.counts.tolist() == [3, 2, 2, 1, 1, 1]
    assert vocab.word_to_id["sat"] == 2 and vocab["dog"] == 4
    assert vocab.total == 10 and vocab.frequencies.sum() == pytest.approx(1.0)


def test_vocab_min_count_and_max_size():
    assert Vocab.build(SENTENCES, min_count=2).id_to_word == ["the", "cat", "sat"]
    assert Vocab.build(SENTENCES, max_size=2).id_to_word == ["the", "cat"]
    assert Vocab.build(SENTENCES, min_count=4).id_to_word == []


def test_vocab_specials_and_unk():
    vocab = Vocab.build(SENTENCES, min_count=2, specials=("<pad>",), unk="<unk>", max_size=4)
    assert vocab.id_to_word == ["<pad>", "<unk>", "the", "cat"]
    assert vocab.counts.tolist() == [0, 5, 3, 2]  # <unk> stands for sat x2, a, dog, end
    assert vocab.frequencies.sum() == pytest.approx(1.0)
    assert vocab.encode(["the", "zebra", "cat"]).tolist() == [2, 1, 3]
    assert vocab["zebra"] == 1


def test_vocab_without_unk_drops_unknown_words():
    vocab = Vocab.build(SENTENCES)
    ids = vocab.encode(["the", "zebra", "cat"])
    assert ids.dtype == np.int32 and ids.tolist() == [0, 1]
    assert vocab.decode(ids) == ["the", "cat"]
    with pytest.raises(KeyError, match="zebra"):
        vocab["zebra"]


def test_vocab_rejects_bad_words():
    with pytest.raises(ValueError, match="duplicate"):
        Vocab(["a", "b", "a"])
    with pytest.raises(ValueError, match="without spaces"):
        Vocab(["new york"])
    with pytest.raises(ValueError, match="unk token"):
        Vocab(["a"], unk="<unk>")


def test_vocab_save_load_round_trip(tmp_path):
    vocab = Vocab.build(SENTENCES + [["naïve", "don't"]], specials=("<unk>",), unk="<unk>")
    path = vocab.save(tmp_path / "vocab.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["<unk> 0", "the 3", "cat 2"]
    back = Vocab.load(path, unk="<unk>")
    assert back.id_to_word == vocab.id_to_word
    assert back.counts.tolist() == vocab.counts.tolist() and back.unk_id == 0


def test_vocab_load_names_a_bad_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the 3\ncat two\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'word count'"):
        Vocab.load(path)


# -- encoded corpora ----------------------------------------------------------------------------
def test_encode_corpus_layout():
    vocab = Vocab.build(SENTENCES, min_count=2)  # the, cat, sat
    ids, offsets = encode_corpus(SENTENCES + [["zebra"]], vocab)
    assert ids.dtype == np.int32 and offsets.dtype == np.int64
    assert ids.tolist() == [0, 1, 2, 0, 2, 1, 0]
    assert offsets.tolist() == [0, 3, 5, 6, 7, 7]  # "zebra" leaves an empty last sentence


def test_build_corpus_matches_two_pass_encoding():
    corpus = build_corpus(SENTENCES, min_count=2)
    vocab = Vocab.build(SENTENCES, min_count=2)
    ids, offsets = encode_corpus(SENTENCES, vocab)
    assert corpus.vocab.id_to_word == vocab.id_to_word
    assert corpus.vocab.counts.tolist() == vocab.counts.tolist()
    np.testing.assert_array_equal(corpus.ids, ids)
    np.testing.assert_array_equal(corpus.offsets, offsets)
    assert len(corpus) == 4 and corpus.n_tokens == 7
    assert corpus.words(1) == ["the", "sat"] and corpus.words(3) == ["the"]


def test_restrict_with_unk_and_empty_input():
    corpus = build_corpus(SENTENCES).restrict(max_size=2, unk="<unk>")
    assert corpus.vocab.id_to_word == ["<unk>", "the"]
    assert [corpus.words(i) for i in range(len(corpus))] == [
        ["the", "<unk>", "<unk>"], ["the", "<unk>", "<unk>"], ["<unk>", "<unk>"], ["the", "<unk>"]]
    empty = build_corpus([])
    assert len(empty) == 0 and empty.n_tokens == 0 and len(empty.vocab) == 0


def test_corpus_save_load_round_trip(tmp_path):
    corpus = build_corpus(SENTENCES, specials=("<unk>",), unk="<unk>")
    back = Corpus.load(corpus.save(tmp_path / "c.npz"))  # np.load(allow_pickle=False) inside
    np.testing.assert_array_equal(back.ids, corpus.ids)
    np.testing.assert_array_equal(back.offsets, corpus.offsets)
    assert back.vocab.id_to_word == corpus.vocab.id_to_word and back.vocab.unk == "<unk>"
    assert Corpus.load(build_corpus(SENTENCES).save(tmp_path / "d.npz")).vocab.unk is None


# -- plain text ---------------------------------------------------------------------------------
TINY_TEXT = "The quick brown fox.\n\nJumps over the lazy dog!\nthe end\n"


@pytest.mark.parametrize("gzipped", [False, True])
def test_text_sentences_reads_lines(tmp_path, gzipped):
    path = tmp_path / "tiny.txt"
    data = TINY_TEXT.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    assert list(text_sentences(path)) == [
        ["the", "quick", "brown", "fox"], ["jumps", "over", "the", "lazy", "dog"], ["the", "end"]]
    assert list(text_sentences(path, max_sentence_len=2)) == [
        ["the", "quick"], ["brown", "fox"], ["jumps", "over"], ["the", "lazy"], ["dog"], ["the", "end"]]
    assert list(text_sentences(path, limit_words=6)) == [["the", "quick", "brown", "fox"], ["jumps", "over"]]
    assert list(text_sentences(path, limit_words=0)) == []


def test_text8_style_single_line(tmp_path):
    path = tmp_path / "text8"
    path.write_text(" anarchism originated as a term of abuse" * 3, encoding="utf-8")
    corpus = build_corpus(text_sentences(path, max_sentence_len=10))
    assert corpus.offsets.tolist() == [0, 10, 20, 21]
    assert corpus.vocab.counts.tolist() == [3] * 7


# -- GCIDE markup -------------------------------------------------------------------------------
# Verbatim from /usr/share/dictd/gcide.dict.dz (one entry shortened), with the markup that matters.
GCIDE_SNIPPET = r"""Coal \Coal\ (k[=o]l), n. [AS. col; akin to D. kool, OHG. chol,
   cholo, G. kohle, Icel. kol. Cf. {Kiln}, {Collier}.]
   1. A thoroughly charred, and extinguished or still ignited,
      fragment from wood or other combustible substance;
      charcoal.
      [1913 Webster]

   2. (Min.) A black, or brownish black, solid, combustible
      substance. [Obs.]
      [1913 Webster]

   Note: This word is often used adjectively; as, coal-black.
         [1913 Webster]

Aden ulcer \A"den ul"cer\ ([aum]"den [u^]l"s[~e]r or [=a]"den
   [u^]l"s[~e]r). [So named after Aden, a seaport in Southern
   Arabia, where it occurs.] (Med.)
   One of the numerous names of the lesion of Old World
   cutaneous leishmaniasis.
   [1913 Webster]

         They [magnets] do septentrionate at one extreme, and
         australize at another.                   --Sir T.
                                                  Browne.
   [1913 Webster]

Cloudless \Cloud"less\, a.
   Without a cloud; clear. {C[oe]lenterata} are not. -- {Cloud"less*ly}, adv.
   --{Cloud"less*ness}, n.
   [1913 Webster]

   Syn: Clear; unclouded.
        [1913 Webster]
"""


def test_clean_gcide_strips_the_markup():
    sentences = [tokenize(p) for p in clean_gcide(GCIDE_SNIPPET)]
    assert [s for s in sentences if s] == [
        "a thoroughly charred and extinguished or still ignited fragment from wood or other "
        "combustible substance charcoal".split(),
        "a black or brownish black solid combustible substance".split(),
        "this word is often used adjectively as coal black".split(),
        "one of the numerous names of the lesion of old world cutaneous leishmaniasis".split(),
        "they do septentrionate at one extreme and australize at another".split(),
        "without a cloud clear coelenterata are not".split(),
        "clear unclouded".split(),
    ]


def test_gcide_corpus_cache_on_a_small_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "mini.dict.dz"
    source.write_bytes(gzip.compress(GCIDE_SNIPPET.encode("utf-8")))
    first = gcide_corpus(source)
    cached = list((tmp_path / "cache" / "minitl" / "gcide").glob("gcide-corpus-*.npz"))
    assert len(cached) == 1
    second = gcide_corpus(source)  # from the .npz
    np.testing.assert_array_equal(first.ids, second.ids)
    np.testing.assert_array_equal(first.offsets, second.offsets)
    assert second.vocab.id_to_word == first.vocab.id_to_word
    assert first.n_tokens == 16 + 8 + 9 + 13 + 10 + 7 + 2 and len(first) == 7
    assert second.words(6) == ["clear", "unclouded"]
    # a changed source gets a new cache, and the old one is removed
    extra = b"\nAdded \\Added\\ n.\n   One more.\n"
    source.write_bytes(gzip.compress(GCIDE_SNIPPET.encode("utf-8") + extra))
    third = gcide_corpus(source)
    assert third.words(len(third) - 1) == ["one", "more"]
    remaining = list((tmp_path / "cache" / "minitl" / "gcide").glob("gcide-corpus-*.npz"))
    assert len(remaining) == 1 and remaining != cached


def test_missing_gcide_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(paths.SYSTEM_DIRS, "gcide", [tmp_path / "system"])
    with pytest.raises(DataNotFoundError) as info:
        gcide_path()
    message = str(info.value)
    assert str(tmp_path / "data" / "gcide" / "gcide.dict.dz") in message
    assert str(tmp_path / "system" / "gcide.dict.dz") in message
    assert "sudo apt-get install dict-gcide" in message


@have_gcide
def test_real_gcide_start():
    sentences = list(gcide_sentences(limit_words=5000))
    assert sum(map(len, sentences)) == 5000
    words = {w for s in sentences for w in s}
    # no markup left over: sources, labels, part-of-speech tails
    assert not words & {"webster", "wordnet", "pjc", "syn", "obs", "adj", "imac"}
    # the entry "1" of WordNet: "used of a single unit or thing; not two or more"
    assert sentences[2][:6] == ["used", "of", "a", "single", "unit", "or"]
    assert sentences[3] == ["one", "i", "ane"]  # its synonyms, "Syn:" stripped
