"""Text: tokenizers (words; BPE subwords), vocabulary, encoded corpora (GCIDE, plain text) and
GCIDE's labelled tasks."""
from .classification import TextClassificationData, TextSplit
from .corpus import Corpus, build_corpus, encode_corpus, open_text, text_sentences
from .gcide import clean_gcide, gcide_corpus, gcide_path, gcide_sentences
from .gcide_tasks import MASK_TOKEN, gcide_pos, gcide_subjects
from .subword import BPETokenizer, TokenizerFileError, gcide_tokenizer, pre_tokenize
from .tokenizer import tokenize
from .vocab import Vocab

__all__ = ["tokenize", "Vocab", "Corpus", "encode_corpus", "build_corpus", "open_text",
           "text_sentences", "clean_gcide", "gcide_sentences", "gcide_corpus", "gcide_path",
           "TextClassificationData", "TextSplit", "MASK_TOKEN", "gcide_pos", "gcide_subjects",
           "BPETokenizer", "TokenizerFileError", "gcide_tokenizer", "pre_tokenize"]
