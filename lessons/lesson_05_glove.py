# %% [markdown]
# # Lesson 5: GloVe, word vectors from global counts
#
# Chapter section "Word embeddings: GloVe". word2vec slides over the text; GloVe first counts,
# once, how often each word occurs near each other word (X_ij, a pair at distance d adding 1/d),
# then fits vectors whose dot products predict the log counts:
#
#     J = 1/2 sum_{X_ij > 0} f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2,   f(x) = min(1, (x / 100)^0.75)
#
# f gives little weight to the many rare, noisy pairs and caps the frequent ones. The final
# vectors are W + W~. Run: `minitl lesson 5` (all of GCIDE; the last cell prints the time it
# took), or `minitl lesson 5 --fast` (an evenly spread slice of GCIDE and few epochs: its
# figures are a small model's).

# %%
import time

import numpy as np

from minitl import report

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minitl as tl  # noqa: E402
from minitl.data.text import gcide_corpus  # noqa: E402
from minitl.embeddings import GloVe, evaluate, format_report  # noqa: E402
from minitl.embeddings.glove import glove_weighting  # noqa: E402
from minitl.embeddings.corpus import sample_corpus  # noqa: E402
from minitl.embeddings import Word2Vec  # noqa: E402

FAST = report.fast_mode()
out = report.output_dir("lesson_05_glove")
tl.manual_seed(0)
lesson_start = time.perf_counter()

# %% [markdown]
# ## 0. Why ratios of counts
#
# GloVe's paper opens with a table: the probability that a word k occurs near "ice", over the
# probability that it occurs near "steam". For k = "solid" (related to ice, not steam) the
# ratio should be large; for "gas" small; for "water" (both) and "fashion" (neither) near 1.
# The ratio, not either probability alone, separates what tells ice from steam, and
# GloVe's model makes a *difference* of vectors predict the *log of such a ratio*:
# (w_ice - w_steam) . w~_k = log P(k|ice) - log P(k|steam). Here is the table from GCIDE's
# counts (all of GCIDE, window 10, a pair at distance d adding 1/d, as GloVe counts).
# Predict first: which rows will behave as the paper's did?

# %%
gcide = gcide_corpus()


def cooccurrences_of(corpus, word, window=10):
    """X_word,k for every word k: the 1/d-weighted count of k within ``window`` words of ``word``."""
    ids, offsets = corpus.ids, corpus.offsets
    sentence_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    at = np.flatnonzero(ids == corpus.vocab.word_to_id[word])
    counts = np.zeros(len(corpus.vocab))
    for d in [*range(-window, 0), *range(1, window + 1)]:
        near = at + d
        inside = (near >= 0) & (near < len(ids))
        near, centre = near[inside], at[inside]
        near = near[sentence_of[near] == sentence_of[centre]]   # windows stop at a sentence end
        counts += np.bincount(ids[near], minlength=len(counts)) / abs(d)
    return counts


x_ice, x_steam = cooccurrences_of(gcide, "ice"), cooccurrences_of(gcide, "steam")
rows = []
for k in ("solid", "gas", "water", "fashion", "cold", "hot", "engine", "the"):
    j = gcide.vocab.word_to_id.get(k)
    if j is None:
        continue
    p_ice, p_steam = x_ice[j] / x_ice.sum(), x_steam[j] / x_steam.sum()
    rows.append((k, round(x_ice[j], 1), round(x_steam[j], 1), f"{p_ice:.2e}", f"{p_steam:.2e}",
                 f"{p_ice / p_steam:.2f}" if p_steam > 0 else "inf" if p_ice > 0 else "n/a (both 0)"))
_ = report.table(rows, ["k", "X(ice, k)", "X(steam, k)", "P(k | ice)", "P(k | steam)", "P(k|ice) / P(k|steam)"],
             title="co-occurrence probabilities in GCIDE, the table that motivates GloVe")

# %% [markdown]
# ## 1. The weighting f (exercise `embeddings.glove_weighting`)

# %%
x = np.logspace(-1, 3, 200)
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogx(x, glove_weighting(x))
ax.set_xlabel("co-occurrence count X_ij")
ax.set_ylabel("f(X_ij)")
ax.set_title("GloVe's weighting, x_max = 100, alpha = 3/4")
fig.tight_layout()
_ = report.figure(fig, "glove_weighting", "f(x) = min(1, (x/100)^0.75): rare pairs count little, frequent ones are capped.")

# %% [markdown]
# ## 2. Counting
#
# No Python loop over pairs: for each distance d the arrays ids[:-d] and ids[d:] hold every pair
# at that distance; a pair (i, j) becomes the integer i * V + j and `np.unique` adds up equal ones.

# %%
corpus = gcide
if FAST:
    corpus = sample_corpus(corpus, 300_000)       # every k-th sentence: still all of A-Z
WINDOW = 10
glove = GloVe(vector_size=100, window=WINDOW, min_count=5, epochs=5 if FAST else 15, seed=1)
glove.count(corpus)
vocab = glove.corpus.vocab
print(f"{glove.corpus.n_tokens:,} words, vocabulary {len(vocab):,}: {len(glove.values):,} nonzero X_ij "
      f"({len(glove.values) / len(vocab) ** 2:.2%} of the matrix), counted in {glove.count_seconds:.1f} s")
top = np.argsort(-glove.values)[:6]
report.table([(vocab.id_to_word[glove.rows[k]], vocab.id_to_word[glove.cols[k]], float(glove.values[k]))
              for k in top], ["word i", "word j", "X_ij"], title="the largest co-occurrence counts")

# %% [markdown]
# ## 3. Training with AdaGrad (loss: exercise `embeddings.glove_loss`)
#
# Each epoch shuffles the triples (i, j, X_ij) and walks through them in mini-batches of 16,384.
# A batch's gradient touches only the rows of its words; AdaGrad then gives every element of
# those rows its own step size, lr * g / sqrt(G), with G the running sum of its squared gradients:
# a frequent word's steps shrink, a rare word's stay large. (glove.c starts G at 1 and adds
# (lr * g)^2; `GloVe.fit` explains how that is textbook AdaGrad with another starting value.)

# %%
glove.fit()
report.metric("glove_seconds_per_epoch", round(float(np.mean(glove.epoch_seconds)), 2))
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(np.arange(1, len(glove.losses) + 1), glove.losses, marker="o")
ax.set_xlabel("epoch")
ax.set_ylabel("weighted squared error per pair")
ax.set_title("GloVe on GCIDE")
fig.tight_layout()
_ = report.figure(fig, "glove_loss", "GloVe's loss per co-occurring pair, by epoch.")

# %% [markdown]
# ## 4. The vectors W + W~, judged like word2vec's (lesson 4)
#
# The same benchmarks as lesson 4 (GloVe's authors trained on billions of words; a dictionary
# is a small corpus for a method that starts from counts). In `--fast` mode, a slice of the
# corpus and few epochs, expect little more than noise on the analogies.

# %%
wv = glove.wv
for word in ("water", "king", "bank"):
    if word in wv:
        print(word, "->", ", ".join(w for w, _ in wv.most_similar(word, topn=8)))
results = evaluate(wv)
print(format_report(results))
for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy"):
    report.metric(f"glove_{key}", round(results[key], 3))
words = ["king", "queen", "man", "woman", "horse", "dog", "red", "green", "iron", "gold", "river", "sea"]
_ = report.figure(wv.pca_figure([w for w in words if w in wv], title="GloVe vectors, first two principal components"),
              "glove_pca", "GloVe vectors of chosen words on their first two principal components.")

# %% [markdown]
# ## 5. GloVe and word2vec at the same window
#
# Lesson 4 trained word2vec with a window of 5, GloVe here counts with 10: a comparison of
# the two lessons' figures mixes the method with the window. So here is skip-gram on the very
# same text with GloVe's window (shared negatives, the faster estimator lesson 4 measured),
# judged by the same benchmarks. One run of each (n=1); the seconds column says what each
# cost (GloVe's counting included).

# %%
w2v = Word2Vec(vector_size=100, window=WINDOW, min_count=5, sg=1, negative=5, seed=1,
               epochs=1 if FAST else 3, shared_negatives=True)
w2v.build_vocab(glove.corpus)
w2v.train()
w2v_results = evaluate(w2v.wv)
rows = [(name, WINDOW, round(seconds, 1), round(r["wordsim353_spearman"], 3), round(r["simlex999_spearman"], 3),
         round(r["analogy_accuracy"], 3))
        for name, seconds, r in ((f"GloVe, {glove.epochs} epochs", glove.count_seconds + sum(glove.epoch_seconds), results),
                                 (f"skip-gram, {w2v.epochs} epoch(s)", w2v.train_seconds, w2v_results))]
report.table(rows, ["model", "window", "seconds", "WordSim-353", "SimLex-999", "analogies"],
             title="GloVe and word2vec on the same text at the same window, n=1 each")
better = {key: "GloVe" if results[key] > w2v_results[key] else "word2vec"
          for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy")}
report.note(f"At window {WINDOW} on this text, the higher score: WordSim-353 {better['wordsim353_spearman']}, "
            f"SimLex-999 {better['simlex999_spearman']}, analogies {better['analogy_accuracy']}.")
print(f"lesson 5 ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Check yourself
#
# 1. In the ice/steam table, which context words had a ratio above 1, and did "water" land
#    near 1 as the paper's did?
# 2. What share of all word pairs (the V x V matrix) did GCIDE's co-occurrence count fill?
# 3. At the same window, which model scored higher on WordSim-353 in this run: GloVe or
#    word2vec?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 5`), make each one's tests pass:
#
# - `embeddings.glove_weighting`: `minitl exercises check embeddings.glove_weighting`
# - `embeddings.glove_loss`: `minitl exercises check embeddings.glove_loss`
