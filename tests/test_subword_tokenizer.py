"""The BPE subword tokenizer (minitl.data.text.subword): training, encoding, batches, files.

The merges of a tiny corpus are worked out by hand below (Sennrich et al.'s example); the round
trips run over random word lists; the real-data tests (skipped without the Debian package
dict-gcide) train on the first 200,000 words of GCIDE and encode the part-of-speech texts of
``gcide_pos(fast=True)``.
"""
import gzip
import json
import string

import numpy as np
import pytest

from minitl.data import paths
from minitl.data.text import (BPETokenizer, TokenizerFileError, gcide_pos, gcide_sentences,
                              gcide_tokenizer, pre_tokenize)
from minitl.data.text import subword
from minitl.data.text.subword import count_pairs, merge_pair

GCIDE = paths.SYSTEM_DIRS["gcide"][0] / "gcide.dict.dz"
have_gcide = pytest.mark.skipif(not GCIDE.is_file(),
                                reason=f"GCIDE is not installed at {GCIDE} (sudo apt-get install dict-gcide)")

# Sennrich, Haddow and Birch (2016), "Neural machine translation of rare words with subword units"
TOY_COUNTS = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
TOY_TEXTS = ["low"] * 5 + ["lower"] * 2 + ["newest"] * 6 + ["widest"] * 3

# the merges of TOY_COUNTS, worked out by hand. Spelt: l o w</w> (5), l o w e r</w> (2),
# n e w e s t</w> (6), w i d e s t</w> (3). The alphabet d e i l n o r s t w gives ids in that
# order, the end-of-word pieces after them, merged pieces after those; ties go to smaller ids.
TOY_MERGES = [
    ("e", "s"),           # 9 (newest 6 + widest 3), tied with (s, t</w>): e < s
    ("es", "t</w>"),      # 9
    ("l", "o"),           # 7 (low 5 + lower 2)
    ("e", "w"),           # 6, tied with (n, e) and (w, est</w>): e < n < w
    ("n", "ew"),          # 6, tied with (ew, est</w>): n is a character, ew a merged piece
    ("new", "est</w>"),   # 6
    ("lo", "w</w>"),      # 5
    ("d", "est</w>"),     # 3, tied with (w, i) and (i, d): d < i < w
    ("i", "dest</w>"),    # 3, tied with (w, i): i < w
    ("w", "idest</w>"),   # 3
    ("e", "r</w>"),       # 2, tied with (lo, w) and (w, e): e < w < lo
    ("w", "er</w>"),      # 2, tied with (lo, w): w < lo
    ("lo", "wer</w>"),    # 2; then every word is one piece
]


@pytest.fixture(scope="module")
def toy():
    return BPETokenizer.train_from_counts(TOY_COUNTS, vocab_size=1000)


@pytest.fixture(scope="module")
def small():
    """A tokenizer trained on a few sentences, with every letter and the apostrophe in its alphabet."""
    texts = ["the quick brown fox jumps over the lazy dog",
             "pack my box with five dozen liquor jugs",
             "don't panic the lower the newer the wider the lowest the newest the widest",
             "o'clock the dog's fox"] * 3
    return BPETokenizer.train(texts, vocab_size=120)


# -- training -------------------------------------------------------------------------------
@pytest.mark.exercise("text.bpe_merge")
def test_merge_pair_replaces_every_occurrence_left_to_right():
    a, b, c, ab = 7, 8, 9, 20
    assert merge_pair([a, b, a, b, b], (a, b), ab) == [ab, ab, b]
    assert merge_pair([c, a, b], (a, b), ab) == [c, ab]
    assert merge_pair([a, a, a], (a, a), ab) == [ab, a]  # occurrences may not overlap
    assert merge_pair([a, a, a, a], (a, a), ab) == [ab, ab]
    assert merge_pair([b, a], (a, b), ab) == [b, a]
    assert merge_pair([a], (a, b), ab) == [a] and merge_pair([], (a, b), ab) == []


@pytest.mark.exercise("text.bpe_merge")
def test_training_on_the_textbook_example_gives_the_merges_worked_by_hand(toy):
    assert toy.alphabet == list("deilnorstw")
    assert toy.merges == TOY_MERGES
    assert toy.vocab_size == 5 + 2 * 10 + len(TOY_MERGES)  # every merge made a new piece
    # the same from the texts themselves
    assert BPETokenizer.train(TOY_TEXTS, vocab_size=1000).merges == TOY_MERGES
    # vocab_size and min_frequency stop it early
    assert BPETokenizer.train_from_counts(TOY_COUNTS, vocab_size=25 + 3).merges == TOY_MERGES[:3]
    assert BPETokenizer.train_from_counts(TOY_COUNTS, min_frequency=3).merges == TOY_MERGES[:10]
    # the words of the corpus are now one piece each; an unseen word replays the merges in order
    assert toy.tokenize("low lower newest widest") == ["low</w>", "lower</w>", "newest</w>", "widest</w>"]
    # lowest: l o w e s t</w> -> (e,s) -> (es,t</w>) -> (l,o) -> no (lo,w</w>): w is not last
    assert toy.tokenize("lowest") == ["lo", "w", "est</w>"]
    assert toy.tokenize("slow") == ["s", "low</w>"]


def test_count_pairs_weights_each_occurrence_by_the_word_count():
    pairs = count_pairs([[1, 2, 1, 2], [2, 1]], [3, 10])
    assert pairs == {(1, 2): 6, (2, 1): 3 + 10}


def test_ties_and_a_merge_that_spells_an_existing_piece():
    # "ab"+"c" and "a"+"bc" both spell abc: the second merge adds no piece, and encoding
    # a word with either spelling gives the one id of abc
    tok = BPETokenizer(list("abc"), [("a", "b"), ("ab", "c"), ("b", "c"), ("a", "bc")])
    assert tok.vocab_size == 5 + 6 + 3 and tok.get_vocab()["abc"] == 5 + 6 + 1
    assert tok.tokenize("abcc") == ["abc", "c</w>"]
    with pytest.raises(ValueError, match="learnt twice"):
        BPETokenizer(list("ab"), [("a", "b"), ("a", "b")])
    with pytest.raises(ValueError, match="not in the vocabulary before it"):
        BPETokenizer(list("ab"), [("ab", "b")])


def test_training_input_is_checked():
    with pytest.raises(ValueError, match="vocab_size must be at least 25"):
        BPETokenizer.train_from_counts(TOY_COUNTS, vocab_size=24)
    with pytest.raises(ValueError, match="min_frequency"):
        BPETokenizer.train_from_counts(TOY_COUNTS, min_frequency=0)
    with pytest.raises(TypeError, match="lists of words"):
        BPETokenizer.train([["low", 3]])


# -- words, special tokens, unknown characters -------------------------------------------
def test_pre_tokenize_keeps_special_tokens_and_cuts_off_punctuation():
    assert pre_tokenize("The [MASK] sat, 12 cats.") == ["the", "[MASK]", "sat", ",", "12", "cats", "."]
    assert pre_tokenize("  Don\u2019t  o'clock ") == ["don't", "o'clock"]
    assert pre_tokenize("[CLS]a[SEP][mask]") == ["[CLS]", "a", "[SEP]", "[", "mask", "]"]
    assert pre_tokenize("") == []


def test_special_tokens_have_fixed_ids(small):
    assert [small.pad_token_id, small.unk_token_id, small.cls_token_id, small.sep_token_id,
            small.mask_token_id] == [0, 1, 2, 3, 4]
    assert small.convert_ids_to_tokens(range(5)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert small.all_special_ids == [0, 1, 2, 3, 4] and small.mask_token == "[MASK]"
    assert small.convert_tokens_to_ids(["[MASK]", "the</w>", "no such piece"]) == \
        [4, small.get_vocab()["the</w>"], 1]
    ids = small.encode("the dog")
    assert ids[0] == 2 and ids[-1] == 3 and small.encode("the dog", add_special_tokens=False) == ids[1:-1]


def test_mask_in_a_text_is_the_mask_id(small):
    words = ["the", "[MASK]", "jumps", "over", "[MASK]"]
    ids = small.encode(words, add_special_tokens=False)
    assert ids.count(4) == 2 and ids[small.tokenize(words).index("[MASK]")] == 4
    assert ids == small.encode(" ".join(words), add_special_tokens=False)
    assert small.decode(ids, skip_special_tokens=False) == "the [MASK] jumps over [MASK]"
    assert small.decode(ids) == "the jumps over"
    # only the exact spelling is special: "[mask]" is three words, brackets unknown
    assert small.tokenize("[mask]") == ["[UNK]", *small.tokenize("mask"), "[UNK]"]


def test_a_word_with_an_unknown_character_is_one_unk(small):
    # café (no é in training), the comma and 42 are one [UNK] each
    assert small.tokenize("the caf\u00e9, 42 dogs") == \
        ["the</w>", "[UNK]", "[UNK]", "[UNK]", *small.tokenize("dogs")]
    ids = small.encode("the caf\u00e9 dog")
    assert small.decode(ids) == "the dog"
    assert small.decode(ids, skip_special_tokens=False) == "[CLS] the [UNK] dog [SEP]"


# -- round trips --------------------------------------------------------------------------
def _random_words(rng, n):
    letters = np.array(list(string.ascii_lowercase))
    words = []
    for _ in range(n):
        word = "".join(rng.choice(letters, size=rng.integers(1, 13)))
        if len(word) > 2 and rng.random() < 0.1:  # an apostrophe inside a word ("don't")
            cut = int(rng.integers(1, len(word)))
            word = word[:cut] + "'" + word[cut:]
        words.append(word)
    return words


def test_round_trip_of_random_word_lists(small, rng):
    for _ in range(200):
        words = _random_words(rng, int(rng.integers(0, 20)))
        ids = small.encode(words)
        assert small.decode(ids) == " ".join(words)
        assert small.encode(" ".join(words)) == ids
        # each word's pieces spell it, the last piece marked as the end of the word
        for word in words:
            pieces = small.tokenize([word])
            assert "".join(pieces) == word + "</w>" and all(p.endswith("</w>") for p in pieces[-1:])
            assert not any(p.endswith("</w>") for p in pieces[:-1])


def test_round_trip_normalises_case_and_spaces(small):
    text = "  The LAZY\tdog\n jumps  "
    assert small.decode(small.encode(text)) == "the lazy dog jumps"
    assert small.decode([]) == "" and small.encode("") == [2, 3]
    # a word cut short (by truncation) still comes out
    the = small.encode("the", add_special_tokens=False)
    partial = small.encode("quickly", add_special_tokens=False)[:-1]
    assert small.decode(the + partial) == "the " + "".join(small.convert_ids_to_tokens(partial))


def test_decode_checks_its_ids(small):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        small.decode([2, small.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        small.decode([-1])
    with pytest.raises(ValueError, match="1-d sequence of ints"):
        small.decode([[2, 3]])
    with pytest.raises(TypeError, match="must hold strings"):
        small.encode(["the", 3])
    with pytest.raises(TypeError, match="a string or a list of words"):
        small.encode(3)


# -- batches ------------------------------------------------------------------------------
def test_batch_pads_to_the_longest_with_a_mask(small):
    texts = ["the dog", ["the", "quick", "brown", "fox"], ""]
    batch = small(texts)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    rows = [small.encode(t) for t in texts]
    width = max(map(len, rows))
    assert ids.shape == mask.shape == (3, width)
    for i, row in enumerate(rows):
        assert ids[i, :len(row)].tolist() == row
        assert (ids[i, len(row):] == 0).all()
        assert mask[i].tolist() == [1] * len(row) + [0] * (width - len(row))
    assert small.batch_decode(ids) == ["the dog", "the quick brown fox", ""]
    assert small("the dog")["input_ids"].tolist() == [rows[0]]  # a string is a batch of one


def test_batch_truncation_and_padding_to_max_length(small):
    texts = [["the", "quick", "brown", "fox", "jumps"], ["dog"]]
    full = [small.encode(t) for t in texts]
    batch = small(texts, max_length=5)
    assert batch["input_ids"].shape == (2, 5)
    assert batch["input_ids"][0].tolist() == full[0][:4] + [3]  # [SEP] stays last
    assert batch["attention_mask"][0].tolist() == [1] * 5
    assert batch["input_ids"][1].tolist() == full[1] + [0] * (5 - len(full[1]))
    # the longest of a short batch is shorter than max_length
    assert small([["dog"]], max_length=50)["input_ids"].shape == (1, len(full[1]))
    padded = small([["dog"]], max_length=50, padding="max_length")
    assert padded["input_ids"].shape == (1, 50) and padded["attention_mask"].sum() == len(full[1])
    bare = small(texts, max_length=3, add_special_tokens=False)
    assert bare["input_ids"][0].tolist() == full[0][1:4]
    lists = small(texts, padding=False)
    assert lists["input_ids"] == full and lists["attention_mask"] == [[1] * len(r) for r in full]
    with pytest.raises(ValueError, match="text 0 has .* truncation=False"):
        small(texts, max_length=5, truncation=False)
    with pytest.raises(ValueError, match="needs a max_length"):
        small(texts, padding="max_length")
    with pytest.raises(ValueError, match="max_length must be an int >= 3"):
        small(texts, max_length=2)
    with pytest.raises(TypeError, match="must hold strings"):
        small([["the", ["dog"]]])


# -- files --------------------------------------------------------------------------------
def test_save_and_load_round_trip(small, tmp_path):
    path = small.save(tmp_path / "tok.json")
    data = json.loads(path.read_text(encoding="utf-8"))  # plain JSON, readable
    assert data["merges"][:2] == [list(m) for m in small.merges[:2]]
    loaded = BPETokenizer.load(path)
    assert loaded.get_vocab() == small.get_vocab() and loaded.merges == small.merges
    text = "the lazy [MASK] jumps over the quickest fox"
    assert loaded.encode(text) == small.encode(text)
    small.save(path)  # over the old file, through a temporary one that is gone afterwards
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]


def test_a_corrupt_file_says_so(small, tmp_path):
    path = small.save(tmp_path / "tok.json")
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:len(text) // 2], encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="tok.json is not a tokenizer file .not valid JSON"):
        BPETokenizer.load(path)
    path.write_text(json.dumps({"format": "something else"}), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="not a minitl BPE tokenizer file"):
        BPETokenizer.load(path)
    data = json.loads(text)
    data["vocab"][10], data["vocab"][11] = data["vocab"][11], data["vocab"][10]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="corrupt: its \"vocab\""):
        BPETokenizer.load(path)
    data = json.loads(text)
    data["merges"][0] = ["not", "there"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="corrupt: merge 0"):
        BPETokenizer.load(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(TokenizerFileError, match="not valid JSON"):
        BPETokenizer.load(path)


GCIDE_SNIPPET = r"""Lower \Low"er\, v. t. [imp. & p. p. {Lowered}.]
   1. To let descend by its own weight; to lower a rope.
      [1913 Webster]

Newest \New"est\, a.
   The newest, the lowest and the widest of the new.
   [1913 Webster]
"""


def test_gcide_tokenizer_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    source = tmp_path / "mini.dict.dz"
    source.write_bytes(gzip.compress(GCIDE_SNIPPET.encode("utf-8")))
    first = gcide_tokenizer(vocab_size=70, path=source)
    cached = list((tmp_path / "cache" / "minitl" / "gcide").glob("gcide-bpe70-*.json"))
    # 13 word types are too few for 70 pieces: merging stops at pairs seen once
    assert len(cached) == 1 and 5 + 2 * 18 < first.vocab_size < 70
    assert first.decode(first.encode("the newest and the lowest")) == "the newest and the lowest"

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been loaded")
    with monkeypatch.context() as m:
        m.setattr(BPETokenizer, "train_from_counts", no_training)
        assert gcide_tokenizer(vocab_size=70, path=source).merges == first.merges
    # a damaged cache is trained again, with a warning
    cached[0].write_text("{", encoding="utf-8")
    with pytest.warns(UserWarning, match="retraining the GCIDE tokenizer"):
        assert gcide_tokenizer(vocab_size=70, path=source).merges == first.merges
    assert BPETokenizer.load(cached[0]).merges == first.merges


# -- real data ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gcide_bpe():
    return BPETokenizer.train(gcide_sentences(limit_words=200_000), vocab_size=2000)


@have_gcide
def test_real_gcide_training_and_pos_texts(gcide_bpe):
    assert gcide_bpe.vocab_size == 2000
    assert gcide_bpe.alphabet == sorted("'" + string.ascii_lowercase)
    assert gcide_bpe.merges[0] == ("t", "h")  # as on the whole corpus
    for word in ("the", "of", "and", "which"):
        assert gcide_bpe.tokenize(word) == [word + "</w>"]
    texts = gcide_pos(fast=True).test.texts
    batch = gcide_bpe(texts, max_length=512)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (ids[mask == 0] == 0).all() and (ids[:, 0] == 2).all()
    assert (ids == 4).sum() == sum(t.count("[MASK]") for t in texts)
    assert [gcide_bpe.decode(row[m == 1], skip_special_tokens=False) for row, m in zip(ids, mask)] == \
        [" ".join(["[CLS]", *t, "[SEP]"]) for t in texts]
    assert all(gcide_bpe.decode(row) == " ".join(w for w in t if w != "[MASK]")
               for row, t in zip(ids, texts))
    pieces_per_word = (mask.sum() - 2 * len(texts)) / sum(map(len, texts))
    # 1.64 here (2,000 pieces learnt from the letter A); single characters would give about 8
    assert 1.0 < pieces_per_word < 2.0, pieces_per_word
