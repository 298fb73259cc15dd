"""minitl's word2vec against gensim's, same corpus, same settings, one worker, in one run.

    python benchmarks/bench_embeddings.py                 # GCIDE, 1 epoch of skip-gram each
    python benchmarks/bench_embeddings.py --words 500000 --epochs 1 --json out.json
    python benchmarks/bench_embeddings.py --shared        # also minitl's shared-negatives option

Words per second = (corpus words x epochs) / training seconds, counted the same way for both
(every corpus token, before sub-sampling). Also times one GloVe epoch (gensim has no GloVe).
Prints the evaluation figures of both word2vec models, so speed is never read without quality.
Both sides run on one CPU thread: gensim with workers=1, minitl with BLAS limited to one thread
(``Word2Vec.train`` does that itself).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from minitl import cpu_runtime  # noqa: E402
from minitl.data.text import gcide_corpus  # noqa: E402
from minitl.embeddings import GloVe, Word2Vec, evaluate, format_report  # noqa: E402
from minitl.embeddings.corpus import sample_corpus  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=None, help="use about N words of GCIDE (every k-th sentence)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--sg", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024, help="minitl's pairs per step")
    parser.add_argument("--shared", action="store_true",
                        help="also time minitl's shared-negatives option (--noise-words per batch)")
    parser.add_argument("--noise-words", type=int, default=64, help="with --shared: noise words per step")
    parser.add_argument("--glove", action="store_true", help="also time GloVe epochs")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    cpu_runtime.tune()  # what a training program does: keep freed memory, let idle BLAS threads sleep
    settings = dict(vector_size=100, window=5, min_count=5, negative=5, sg=args.sg, epochs=args.epochs,
                    sample=1e-3, alpha=0.025, min_alpha=0.0001, seed=1)

    corpus = gcide_corpus()
    if args.words:
        corpus = sample_corpus(corpus, args.words)
    corpus = corpus.restrict(min_count=5)
    print(f"corpus: GCIDE, {corpus.n_tokens:,} words, vocabulary {len(corpus.vocab):,}; "
          f"{'skip-gram' if args.sg else 'CBOW'}, {args.epochs} epoch(s), one worker")
    figures = {"corpus_words": corpus.n_tokens, "settings": settings}

    def run_minitl(key, description, **options):
        model = Word2Vec(**settings, progress=False, batch_size=args.batch_size, **options).build_vocab(corpus)
        model.train()
        figures[f"{key}_words_per_s"] = model.words_per_second
        figures[f"{key}_eval"] = evaluate(model.wv)
        print(f"minitl  {model.train_seconds:7.1f} s  {model.words_per_second:10,.0f} words/s  ({description})")
        print(format_report(figures[f"{key}_eval"]))

    run_minitl("minitl", f"the default: {settings['negative']} negatives drawn per pair, as gensim")
    if args.shared:
        run_minitl("minitl_shared", f"shared negatives: {args.noise_words} noise words per {args.batch_size} pairs",
                   shared_negatives=True, noise_words=args.noise_words)

    try:
        from gensim.models import Word2Vec as GensimWord2Vec
    except ImportError:
        print("gensim is not installed (pip install gensim): no comparison")
    else:
        sentences = [corpus.words(i) for i in range(len(corpus))]     # gensim wants token lists
        theirs = GensimWord2Vec(workers=1, **settings)
        theirs.build_vocab(sentences)
        start = time.perf_counter()
        theirs.train(sentences, total_examples=len(sentences), epochs=args.epochs)
        seconds = time.perf_counter() - start
        figures["gensim_words_per_s"] = args.epochs * corpus.n_tokens / seconds
        from minitl.embeddings import KeyedVectors
        wv = KeyedVectors(theirs.wv.index_to_key, theirs.wv.vectors)
        figures["gensim_eval"] = evaluate(wv)
        print(f"gensim  {seconds:7.1f} s  {figures['gensim_words_per_s']:10,.0f} words/s")
        print(format_report(figures["gensim_eval"]))
        figures["ratio"] = figures["minitl_words_per_s"] / figures["gensim_words_per_s"]
        print(f"minitl / gensim words/s: {figures['ratio']:.2f}x")
        if args.shared:
            figures["shared_ratio"] = figures["minitl_shared_words_per_s"] / figures["gensim_words_per_s"]
            print(f"minitl shared negatives / gensim words/s: {figures['shared_ratio']:.2f}x")

    if args.glove:
        glove = GloVe(vector_size=100, window=10, epochs=2, progress=False).count(corpus)
        glove.fit()
        figures["glove_count_s"], figures["glove_epoch_s"] = glove.count_seconds, float(np.mean(glove.epoch_seconds))
        print(f"GloVe: {len(glove.values):,} co-occurring pairs counted in {glove.count_seconds:.1f} s; "
              f"{figures['glove_epoch_s']:.1f} s per epoch")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2, default=float)


if __name__ == "__main__":
    main()
