"""The tokenizer of the word-vector sections: lower-cased words, nothing more.

word2vec and GloVe learn one vector per *word type*, so the tokenizer decides what a type is.
Ours is deliberately simple, so that a student can predict its output:

- the text is lower-cased ("The" and "the" are one word),
- a word is a run of letters (any alphabet, so "café" stays whole), optionally joined by
  apostrophes inside it ("don't", "o'clock"); the typographic apostrophe counts too,
- digits, punctuation and hyphens separate words and are dropped ("coal-black" -> "coal", "black").
"""
from __future__ import annotations

import re

# [^\W\d_] is "a word character that is neither a digit nor an underscore": a letter.
WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lower-cased words: ``tokenize("Don't panic, 42!") == ["don't", "panic"]``."""
    return WORD_RE.findall(text.lower().replace("\u2019", "'"))
