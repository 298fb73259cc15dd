"""Word embeddings, the chapter's first form of language transfer: word2vec, GloVe, KeyedVectors.

    from minitl.embeddings import Word2Vec
    model = Word2Vec(corpus, sg=1, epochs=3)
    model.wv.most_similar(positive=["king", "woman"], negative=["man"])
"""
from .evaluation import eval_file, evaluate, format_report
from .glove import GloVe, cooccurrence_matrix
from .keyed_vectors import KeyedVectors, three_cos_add, three_cos_mul
from .word2vec import Word2Vec

__all__ = ["Word2Vec", "GloVe", "KeyedVectors", "cooccurrence_matrix", "three_cos_add", "three_cos_mul",
           "eval_file", "evaluate", "format_report"]
