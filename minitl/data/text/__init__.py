"""Text for the word-vector sections: tokenizer, vocabulary, encoded corpora, GCIDE and plain text."""
from .corpus import Corpus, build_corpus, encode_corpus, open_text, text_sentences
from .gcide import clean_gcide, gcide_corpus, gcide_path, gcide_sentences
from .tokenizer import tokenize
from .vocab import Vocab

__all__ = ["tokenize", "Vocab", "Corpus", "encode_corpus", "build_corpus", "open_text",
           "text_sentences", "clean_gcide", "gcide_sentences", "gcide_corpus", "gcide_path"]
