"""minitl.data: the datasets of the chapter, offline first, in plain NumPy.

- ``paths``          where data is looked for (``$MINITL_DATA``, the cache, Debian packages, download)
- ``idx``            the IDX format of (Fashion-)MNIST
- ``fashion_mnist``  the image dataset of the vision sections
- ``text``           tokenizer, vocabulary and encoded corpora (GCIDE, plain text) for the
                     word-vector sections; GCIDE's labelled tasks (part of speech, subject)
                     for fine-tuning, probing and PEFT; the BPE subword tokenizer of the
                     transformers (``BPETokenizer``, ``gcide_tokenizer``)

Batching (``DataLoader``) lives in ``loader.py`` beside these.
"""
from .fashion_mnist import FASHION_MNIST_CLASSES, fashion_mnist
from .idx import CorruptDataError, read_idx, write_idx
from .loader import ArrayDataset, DataLoader
from .paths import DataNotFoundError, cache_dir
from .text import (MASK_TOKEN, BPETokenizer, Corpus, TextClassificationData, TextSplit, Vocab,
                   build_corpus, encode_corpus, gcide_corpus, gcide_pos, gcide_sentences,
                   gcide_subjects, gcide_tokenizer, text_sentences, tokenize)

__all__ = [
    "DataLoader", "ArrayDataset",
    "DataNotFoundError", "CorruptDataError", "cache_dir",
    "read_idx", "write_idx",
    "fashion_mnist", "FASHION_MNIST_CLASSES",
    "tokenize", "Vocab", "Corpus", "encode_corpus", "build_corpus",
    "text_sentences", "gcide_sentences", "gcide_corpus",
    "TextClassificationData", "TextSplit", "MASK_TOKEN", "gcide_pos", "gcide_subjects",
    "BPETokenizer", "gcide_tokenizer",
]
