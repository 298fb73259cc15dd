# %% [markdown]
# # Lesson 4: word2vec, the first transferable representation of words
#
# Chapter section "Word embeddings: word2vec". A network that reads text must first turn words
# into vectors. word2vec learns those vectors from raw text alone, by one self-supervised task:
# predict the words around a word. The vectors it learns carry over to any later task that reads
# English: the chapter's first example of transfer.
#
# We will (1) write down skip-gram with negative sampling (SGNS), (2) see sub-sampling and the
# noise distribution on real counts, (3) train on the GCIDE dictionary with that very loss,
# (4) ask the vectors `king - man + woman`, (5) measure a faster estimator of the same loss
# beside it, (6) draw the vectors, and (7) see what one vector per word cannot do.
#
# Run: `minitl lesson 4` (three epochs of two models: several minutes on two cores; the last
# cell prints the time it took), or `minitl lesson 4 --fast` (one epoch of each).

# %%
import time

import numpy as np

from minitl import report

import minitl as tl
from minitl.data.text import gcide_corpus
from minitl.embeddings import Word2Vec, evaluate, format_report
from minitl.embeddings.word2vec import noise_distribution, sgns_loss, subsample_keep_probability

FAST = report.fast_mode()
out = report.output_dir("lesson_04_word2vec")
tl.manual_seed(0)
lesson_start = time.perf_counter()

# %% [markdown]
# ## 1. The objective
#
# For a center word c and a word o seen near it, with input vector v_c and output vector u_o,
# and K "negative" words n_k drawn at random:
#
#     L = -log sigmoid(u_o . v_c) - sum_k log sigmoid(-u_{n_k} . v_c)
#
# Each term is a logistic regression: "is o really a neighbour of c?" (yes) and "is n_k?" (no).
# Its gradient with respect to a score s is sigmoid(s) - label: prediction minus target.
# Here is `sgns_loss` (your exercise `embeddings.sgns_loss`) on one pair with 2 negatives:

# %%
v = np.array([[0.5, -0.2, 0.1]])
u = np.array([[[0.4, -0.1, 0.0], [0.3, 0.3, 0.3], [-0.2, 0.1, 0.5]]])
loss, grad_v, grad_u = sgns_loss(v, u)
print(f"loss {loss:.4f}; scores {(u[0] @ v[0]).round(3)}")
print("gradient of the scores (sigmoid(s) - label):", (1 / (1 + np.exp(-(u[0] @ v[0]))) - [1, 0, 0]).round(3))
# a random guess (all scores 0) costs (1 + K) log 2:
print(f"(1 + K) log 2 = {3 * np.log(2):.4f}")

# %% [markdown]
# ## 2. The corpus, sub-sampling and the noise distribution
#
# GCIDE, a dictionary, gives a few million words of real English. Frequent words ("the", "of")
# say little about their neighbours, so each of their tokens is dropped with a probability that
# grows with frequency; negatives are drawn from counts^(3/4), which gives rare words a chance.

# %%
corpus = gcide_corpus().restrict(min_count=5)
vocab = corpus.vocab
print(f"{corpus.n_tokens:,} words, {len(vocab):,} distinct words seen at least 5 times")
keep = subsample_keep_probability(vocab.counts, 1e-3)
noise = np.diff(noise_distribution(vocab.counts), prepend=0)
rows = [(vocab.id_to_word[i], int(vocab.counts[i]), float(keep[i]), float(vocab.frequencies[i]), float(noise[i]))
        for i in (0, 1, 10, 100, 1000, len(vocab) - 1)]
report.table(rows, ["word", "count", "P(keep)", "unigram P", "noise P (^0.75)"],
             title="sub-sampling and negative sampling on GCIDE")

# %% [markdown]
# ## 3. Training
#
# Skip-gram, 100 dimensions, window 5, K = 5 negatives: the settings of the chapter. For every
# (center, context) pair, `Word2Vec` draws its own 5 negatives, as word2vec.c and gensim do, and
# the loss it trains with is `sgns_loss` from section 1, your exercise. A step takes a mini-batch
# of 1024 pairs; the gradient touches only the rows of the words in it, so the optimizer
# (`tl.optim.SparseSGD`) writes only those rows, `np.add.at(W, rows, -lr * g)`, a row that
# occurs several times in the batch getting the sum of its gradients.
#
# A random guess (every score 0) costs (1 + K) log 2 per pair: the loss should start there,
# fall quickly, then slowly.

# %%
epochs = 1 if FAST else 3        # --fast: one pass over the corpus instead of three
settings = dict(vector_size=100, window=5, min_count=5, sg=1, negative=5, epochs=epochs, seed=1)
model = Word2Vec(**settings)
model.build_vocab(corpus)
model.train()
print(f"{epochs} epoch(s) in {model.train_seconds:.0f} s, {model.words_per_second:,.0f} words/s; "
      f"loss per pair: (1 + K) log 2 = {6 * np.log(2):.2f} for a random guess, "
      f"{model.losses[0]:.2f} on the first chunk, {model.losses[-1]:.2f} on the last")
report.metric("word2vec_words_per_second", round(model.words_per_second))
report.metric("word2vec_train_seconds", round(model.train_seconds, 1))
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(np.arange(1, len(model.losses) + 1) * model.chunk_words / 1e6, model.losses)
ax.set_xlabel("million words read")
ax.set_ylabel("loss per pair")
ax.set_title("skip-gram with negative sampling on GCIDE")
fig.tight_layout()
report.figure(fig, "word2vec_loss", "The SGNS loss per (center, context) pair during training.")

# %% [markdown]
# ## 4. What the vectors know
#
# Nearest neighbours by cosine, then the analogy a : b :: c : ? answered by 3CosAdd,
# argmax_x cos(x, b) - cos(x, a) + cos(x, c) (your exercise `embeddings.three_cos_add`).
# Then the standard benchmarks: WordSim-353 and SimLex-999 (Spearman's rho between the cosines
# and human judgements of word pairs; 1 is perfect agreement, 0 none) and Google's analogy
# questions (the fraction answered exactly; only the questions whose four words are
# in our vocabulary count). A dictionary is small and odd beside the billions of words of news
# the original vectors were trained on, so expect figures far below the paper's. One analogy,
# king - man + woman, is a noisy test: whether queen makes the top 5 depends on the seed.

# %%
wv = model.wv
for word in ("water", "king", "music"):
    if word in wv:
        print(word, "->", ", ".join(w for w, _ in wv.most_similar(word, topn=6)))
results = evaluate(wv)
print(format_report(results))
for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy"):
    report.metric(f"word2vec_{key}", round(results[key], 3))
report.metric("word2vec_king_man_woman", results.get("king_man_woman"))

# %% [markdown]
# ## 5. A faster estimator of the same loss, measured
#
# Most of that training time goes into the negatives: K = 5 rows of W_out gathered, scored and
# updated for every pair. `Word2Vec(shared_negatives=True)` changes the estimator, not the
# objective: one mini-batch draws K' = 64 noise words, and every pair of the batch scores all of
# them with one matrix product (centers @ noise^T), each weighted K / K':
#
#     L = -log sigmoid(u_o . v_c) - (K / K') sum_{k=1..K'} log sigmoid(-u_{n_k} . v_c)
#
# On average over the noise this is the SGNS loss exactly (both negative terms have expectation
# K E_n[-log sigmoid(-u_n . v_c)]); only its noise differs. And since the negative term depends
# on the center alone, a center word with m context words computes it once, not m times.
# Does the different noise cost quality? Below, the same settings, corpus, seed and number of
# epochs, trained both ways and judged by the same benchmarks.

# %%
shared = Word2Vec(**settings, shared_negatives=True)
shared.build_vocab(corpus)
shared.train()
shared_results = evaluate(shared.wv)
rows = []
for name, trained, scores in (("SGNS, K = 5 drawn per pair (default)", model, results),
                              ("shared negatives, K' = 64 per batch", shared, shared_results)):
    rows.append((name, round(trained.train_seconds, 1), round(trained.words_per_second),
                 round(scores["wordsim353_spearman"], 3), round(scores["simlex999_spearman"], 3),
                 round(scores["analogy_accuracy"], 3), ", ".join(scores.get("king_man_woman", []))))
report.table(rows, ["estimator", "seconds", "words/s", "WordSim-353", "SimLex-999", "analogies",
                    "king - man + woman"], title=f"two estimators of the SGNS loss, {epochs} epoch(s) on GCIDE")
print(f"shared negatives trained {model.train_seconds / shared.train_seconds:.1f}x faster; quality, shared minus "
      f"per-pair: WordSim-353 {shared_results['wordsim353_spearman'] - results['wordsim353_spearman']:+.3f}, "
      f"SimLex-999 {shared_results['simlex999_spearman'] - results['simlex999_spearman']:+.3f}, "
      f"analogies {shared_results['analogy_accuracy'] - results['analogy_accuracy']:+.3f}")
report.metric("word2vec_shared_words_per_second", round(shared.words_per_second))
for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy"):
    report.metric(f"word2vec_shared_{key}", round(shared_results[key], 3))

# %% [markdown]
# ## 6. A map
#
# 100 dimensions projected on their first two principal components: a lossy picture, but groups
# of related words should sit together.

# %%
words = ["king", "queen", "prince", "man", "woman", "boy", "girl", "horse", "dog", "cow",
         "red", "green", "blue", "iron", "copper", "gold", "silver", "river", "sea", "lake"]
fig = wv.pca_figure([w for w in words if w in wv])
report.figure(fig, "word2vec_pca", "word2vec vectors of chosen words on their first two principal components.")

# %% [markdown]
# ## 7. One vector per word
#
# "bank" is a river's edge and a place for money. word2vec gives it one vector, an average of
# both senses weighted by how often each occurs: its neighbours mix the two, and nothing in the
# vector says which sense a sentence means. Contextual models (ELMo, BERT; later lessons) fix this
# by computing a vector per occurrence.

# %%
for word in ("bank", "spring", "bark"):
    if word in wv:
        print(word, "->", ", ".join(w for w, _ in wv.most_similar(word, topn=10)))
print(f"lesson 4 ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 4`), make each one's tests pass:
#
# - `embeddings.sgns_loss`: `minitl exercises check embeddings.sgns_loss`
# - `embeddings.subsample_probability`: `minitl exercises check embeddings.subsample_probability`
# - `embeddings.three_cos_add`: `minitl exercises check embeddings.three_cos_add`
