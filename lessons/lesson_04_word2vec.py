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
# (4) ask the vectors `king - man + woman`, (5) train CBOW, skip-gram's mirror image, and a
# faster estimator of the skip-gram loss beside it, (6) draw the vectors, and (7) see what one
# vector per word cannot do.
#
# Run: `minitl lesson 4` (all of GCIDE, three epochs of three models; the last cell prints the
# time it took), or `minitl lesson 4 --fast` (one epoch on an evenly spread slice of GCIDE:
# its figures are a small model's).

# %%
import time

import numpy as np

from minitl import report

import minitl as tl
from minitl.data.text import gcide_corpus
from minitl.embeddings import Word2Vec, evaluate, format_report
from minitl.embeddings.corpus import sample_corpus
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
# grows with frequency f (a word's count over all tokens), with a threshold t. The paper
# (Mikolov et al. 2013b, eq. 5) states it as the probability of *discarding* a token,
#
#     P_discard(w) = 1 - sqrt(t / f(w)),    so P_keep = sqrt(t / f),    with t around 1e-5;
#
# word2vec.c, and gensim after it, keep a token with
#
#     P_keep(w) = (sqrt(f / t) + 1) * t / f = sqrt(t / f) + t / f,    default t = 1e-3,
#
# the paper's form plus t / f, which keeps words rarer than about 2.6 t whole (P_keep >= 1).
# `subsample_keep_probability` (your exercise `embeddings.subsample_probability`) is gensim's
# form; the table puts both side by side at gensim's t. Negatives are drawn from
# counts^(3/4), which gives rare words a chance.

# %%
corpus = gcide_corpus()
if FAST:  # every k-th sentence: a slice that still spans A to Z (GCIDE is alphabetical)
    corpus = sample_corpus(corpus, 600_000)
corpus = corpus.restrict(min_count=5)
vocab = corpus.vocab
print(f"{corpus.n_tokens:,} words, {len(vocab):,} distinct words seen at least 5 times")
SAMPLE = 1e-3
keep = subsample_keep_probability(vocab.counts, SAMPLE)
paper_keep = np.minimum(1.0, np.sqrt(SAMPLE / vocab.frequencies))
noise = np.diff(noise_distribution(vocab.counts), prepend=0)
rows = [(vocab.id_to_word[i], int(vocab.counts[i]), float(vocab.frequencies[i]), float(keep[i]),
         float(paper_keep[i]), float(noise[i]))
        for i in (0, 1, 10, 100, 1000, len(vocab) - 1)]
report.table(rows, ["word", "count", "unigram P", "P(keep), gensim", "P(keep), paper", "noise P (^0.75)"],
             title=f"sub-sampling (t = {SAMPLE:g}) and negative sampling on GCIDE")
print(f"gensim's form keeps every token of a word with f <= {(3 + 5 ** 0.5) / 2:.1f} t (where sqrt(t/f) + t/f = 1); "
      f"the paper's, of a word with f <= t")
print(f"tokens kept by one pass of sub-sampling: {(vocab.counts * keep).sum() / vocab.counts.sum():.1%} "
      f"(gensim's form), {(vocab.counts * paper_keep).sum() / vocab.counts.sum():.1%} (the paper's)")

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
epochs = 1 if FAST else 3        # --fast: one pass over the slice instead of three over GCIDE
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
_ = report.figure(fig, "word2vec_loss", "The SGNS loss per (center, context) pair during training.")

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
# (In `--fast` mode the slice is too small for most of this: read the figures as a small
# model's.)

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
# ## 5. CBOW, and a faster estimator of the skip-gram loss, measured
#
# **CBOW** (continuous bag of words) turns skip-gram around: the mean h of the input vectors of
# the words around a position predicts the word at that position,
#
#     L = -log sigmoid(u_c . h) - sum_k log sigmoid(-u_{n_k} . h),    h = mean of v_o over the window,
#
# one example per position instead of one per (center, context) pair, so it reads the text
# several times faster; the paper found skip-gram better on rare words and semantic analogies.
# `Word2Vec(sg=0)` is CBOW (gensim's default; the chapter's setting is `sg=1`).
#
# **Shared negatives.** Most of skip-gram's training time goes into the negatives: K = 5 rows of W_out gathered, scored and
# updated for every pair. `Word2Vec(shared_negatives=True)` changes the estimator, not the
# objective: one mini-batch draws K' = 64 noise words, and every pair of the batch scores all of
# them with one matrix product (centers @ noise^T), each weighted K / K':
#
#     L = -log sigmoid(u_o . v_c) - (K / K') sum_{k=1..K'} log sigmoid(-u_{n_k} . v_c)
#
# On average over the noise this is the SGNS loss exactly (both negative terms have expectation
# K E_n[-log sigmoid(-u_n . v_c)]); only its noise differs. And since the negative term depends
# on the center alone, a center word with m context words computes it once, not m times.
# Does the different noise cost quality? Below, CBOW and the two skip-gram estimators, with the
# same settings, corpus, seed and number of epochs, judged by the same benchmarks (one run of
# each, n=1: no error bars, so a small difference may be no more than another seed's).

# %%
shared = Word2Vec(**settings, shared_negatives=True)
shared.build_vocab(corpus)
shared.train()
shared_results = evaluate(shared.wv)
cbow = Word2Vec(**dict(settings, sg=0))
cbow.build_vocab(corpus)
cbow.train()
cbow_results = evaluate(cbow.wv)
rows = []
for name, trained, scores in (("skip-gram, K = 5 drawn per pair", model, results),
                              ("skip-gram, shared negatives, K' = 64 per batch", shared, shared_results),
                              ("CBOW, K = 5 drawn per example", cbow, cbow_results)):
    rows.append((name, round(trained.train_seconds, 1), round(trained.words_per_second),
                 round(scores["wordsim353_spearman"], 3), round(scores["simlex999_spearman"], 3),
                 round(scores["analogy_accuracy"], 3), ", ".join(scores.get("king_man_woman", []))))
report.table(rows, ["model", "seconds", "words/s", "WordSim-353", "SimLex-999", "analogies",
                    "king - man + woman"], title=f"CBOW and skip-gram, {epochs} epoch(s), n=1 each")
for name, other, other_results in (("shared negatives", shared, shared_results), ("CBOW", cbow, cbow_results)):
    print(f"{name} trained {model.train_seconds / other.train_seconds:.1f}x as fast as per-pair skip-gram; "
          f"quality, {name} minus skip-gram: "
          f"WordSim-353 {other_results['wordsim353_spearman'] - results['wordsim353_spearman']:+.3f}, "
          f"SimLex-999 {other_results['simlex999_spearman'] - results['simlex999_spearman']:+.3f}, "
          f"analogies {other_results['analogy_accuracy'] - results['analogy_accuracy']:+.3f}")
for prefix, scores in (("word2vec_shared", shared_results), ("word2vec_cbow", cbow_results)):
    for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy"):
        report.metric(f"{prefix}_{key}", round(scores[key], 3))

# %% [markdown]
# ## 6. A map
#
# 100 dimensions projected on their first two principal components: a lossy picture, but groups
# of related words should sit together.

# %%
words = ["king", "queen", "prince", "man", "woman", "boy", "girl", "horse", "dog", "cow",
         "red", "green", "blue", "iron", "copper", "gold", "silver", "river", "sea", "lake"]
fig = wv.pca_figure([w for w in words if w in wv])
_ = report.figure(fig, "word2vec_pca", "word2vec vectors of chosen words on their first two principal components.")

# %% [markdown]
# ## 7. One vector per word
#
# "bank" is a river's edge and a place for money. word2vec gives it one vector, trained on the
# occurrences of both senses, and nothing in the vector can say which sense a sentence means.
# Which sense do its neighbours show? Predict, then read the lines below: the ten nearest
# neighbours of "bank", "spring" and "bark", then, for "bank", its cosine with a few words of
# each sense (the average says which sense the vector leans to; a neighbour list may well show
# only one sense, or neither, since a dictionary writes about banks in many ways). Contextual
# models (ELMo, BERT; later lessons) compute a vector per occurrence instead.

# %%
for word in ("bank", "spring", "bark"):
    if word in wv:
        print(word, "->", ", ".join(w for w, _ in wv.most_similar(word, topn=10)))
SENSES = {"river": ["river", "shore", "stream", "edge", "slope", "sand"],
          "money": ["money", "deposit", "loan", "credit", "coin", "account"]}
if "bank" in wv:
    leaning = {}
    for sense, probes in SENSES.items():
        probes = [w for w in probes if w in wv]
        leaning[sense] = float(np.mean([wv.similarity("bank", w) for w in probes])) if probes else float("nan")
        print(f"bank ~ {sense} sense: mean cosine {leaning[sense]:.3f} with {', '.join(probes)}")
    neighbours = {w for w, _ in wv.most_similar("bank", topn=10)}
    for sense, probes in SENSES.items():
        print(f"  {sense}-sense probe words among the ten nearest neighbours: "
              f"{', '.join(sorted(neighbours & set(probes))) or 'none'}")
    gap = leaning["money"] - leaning["river"]
    report.note(f"mean cosine of 'bank' with the river words {leaning['river']:.3f}, with the money words "
                f"{leaning['money']:.3f}: " + ("no clear leaning (a gap under 0.02)" if abs(gap) < 0.02 else
                                               f"it leans to the {'money' if gap > 0 else 'river'} sense"))
print(f"lesson 4 ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Check yourself
#
# 1. In the sub-sampling table, which of the two forms keeps more tokens of a frequent word
#    such as "the", and what share of all tokens does one pass keep under each?
# 2. In the table of CBOW and skip-gram, which model read the corpus fastest, and which scored
#    best on WordSim-353 in this run?
# 3. By mean cosine, does the one vector of "bank" lean to either sense here, and are any
#    words of either sense among its ten nearest neighbours?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 4`), make each one's tests pass:
#
# - `embeddings.sgns_loss`: `minitl exercises check embeddings.sgns_loss`
# - `embeddings.subsample_probability`: `minitl exercises check embeddings.subsample_probability`
# - `embeddings.three_cos_add`: `minitl exercises check embeddings.three_cos_add`
