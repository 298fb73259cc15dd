"""``minitl word2vec`` and ``minitl glove``: train on GCIDE or a text file, print the evaluation.

    minitl word2vec [--sg 1] [--epochs 3] [--shared-negatives] [--out vectors.bin] [--fast]
    minitl glove [--epochs 25] [--out vectors.txt] [--fast]

Each prints the corpus, the training time and the standard figures (WordSim-353, SimLex-999,
Google's analogies, king - man + woman), and with ``--out`` writes the vectors in word2vec's
format (``.bin``: binary), which gensim opens.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np

from .corpus import load_training_corpus


def common_arguments(parser: argparse.ArgumentParser, epochs: int):
    parser.add_argument("--corpus", default="gcide", help="'gcide' or a text file, one sentence per line")
    parser.add_argument("--vector-size", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write the vectors here (word2vec format; .bin means binary)")
    parser.add_argument("--fast", action="store_true", help="about 300k words only (a quick look)")


def finish(wv, out):
    """Save (when asked) and print the standard evaluation figures."""
    from .evaluation import evaluate, format_report
    if out:
        wv.save_word2vec_format(out, binary=str(out).endswith(".bin"))
        print(f"vectors written to {out}")
    print(format_report(evaluate(wv)))


def word2vec_main(argv: Sequence[str] | None = None) -> int:
    """``minitl word2vec``: train on GCIDE or a text file, print the evaluation figures."""
    from .word2vec import Word2Vec
    parser = argparse.ArgumentParser(prog="minitl word2vec", description=word2vec_main.__doc__)
    common_arguments(parser, epochs=3)
    parser.add_argument("--sg", type=int, default=1, choices=(0, 1), help="1 skip-gram, 0 CBOW")
    parser.add_argument("--negative", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--alpha", type=float, default=0.025)
    parser.add_argument("--batch-size", type=int, default=1024)
    estimator = parser.add_mutually_exclusive_group()
    estimator.add_argument("--shared-negatives", action="store_true",
                           help="skip-gram: one set of --noise-words noise words per batch, scored by "
                                "every pair (faster) instead of --negative drawn per pair")
    estimator.add_argument("--classic", action="store_true",
                           help="--negative noise words drawn per pair: the default, kept for old scripts")
    parser.add_argument("--noise-words", type=int, default=64,
                        help="with --shared-negatives: noise words per batch")
    args = parser.parse_args(argv)
    corpus = load_training_corpus(args.corpus, fast=args.fast)
    model = Word2Vec(vector_size=args.vector_size, window=args.window, min_count=args.min_count,
                     sg=args.sg, negative=args.negative, sample=args.sample, alpha=args.alpha,
                     epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                     shared_negatives=args.shared_negatives, noise_words=args.noise_words)
    model.build_vocab(corpus)
    print(f"corpus: {model.corpus.n_tokens:,} words, vocabulary {len(model.corpus.vocab):,}")
    model.train()
    print(f"trained in {model.train_seconds:.1f} s: {model.words_per_second:,.0f} words/s")
    finish(model.wv, args.out)
    return 0


def glove_main(argv: Sequence[str] | None = None) -> int:
    """``minitl glove``: count co-occurrences, train GloVe, print the evaluation figures."""
    from .glove import GloVe
    parser = argparse.ArgumentParser(prog="minitl glove", description=glove_main.__doc__)
    common_arguments(parser, epochs=25)
    parser.add_argument("--x-max", type=float, default=100.0)
    parser.add_argument("--learning-rate", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=16384)
    parser.set_defaults(window=10)
    args = parser.parse_args(argv)
    corpus = load_training_corpus(args.corpus, fast=args.fast)
    glove = GloVe(vector_size=args.vector_size, window=args.window, min_count=args.min_count,
                  x_max=args.x_max, learning_rate=args.learning_rate, epochs=args.epochs,
                  batch_size=args.batch_size, seed=args.seed).count(corpus)
    print(f"corpus: {glove.corpus.n_tokens:,} words, vocabulary {len(glove.corpus.vocab):,}; "
          f"{len(glove.values):,} co-occurring pairs counted in {glove.count_seconds:.1f} s")
    glove.fit()
    print(f"time per epoch: {np.mean(glove.epoch_seconds):.2f} s (final loss {glove.losses[-1]:.4f})")
    finish(glove.wv, args.out)
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    mains = {"word2vec": word2vec_main, "glove": glove_main}
    if command not in mains:
        sys.exit("usage: python -m minitl.embeddings.cli {word2vec,glove} [options]")
    sys.exit(mains[command](sys.argv[2:]))
