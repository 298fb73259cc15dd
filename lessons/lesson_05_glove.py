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
# vectors are W + W~. Run: `minitl lesson 5` (about 6 minutes; `--fast`: a third of the corpus
# and 6 epochs, under a minute).

# %%
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

FAST = report.fast_mode()
out = report.output_dir("lesson_05_glove")
tl.manual_seed(0)

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
report.figure(fig, "glove_weighting", "f(x) = min(1, (x/100)^0.75): rare pairs count little, frequent ones are capped.")

# %% [markdown]
# ## 2. Counting
#
# No Python loop over pairs: for each distance d the arrays ids[:-d] and ids[d:] hold every pair
# at that distance; a pair (i, j) becomes the integer i * V + j and `np.unique` adds up equal ones.

# %%
corpus = gcide_corpus()
if FAST:
    corpus = sample_corpus(corpus, 1_000_000)       # every 3rd sentence or so: still all of A-Z
glove = GloVe(vector_size=100, window=10, min_count=5, epochs=6 if FAST else 15, seed=1)
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
report.figure(fig, "glove_loss", "GloVe's loss per co-occurring pair, by epoch.")

# %% [markdown]
# ## 4. The vectors W + W~, judged like word2vec's (lesson 4)
#
# The same benchmarks as lesson 4, so the figures printed below compare with the ones lesson 4
# printed for word2vec on the same text (GloVe's authors trained on billions of words; a
# dictionary is a small corpus for a method that starts from counts). In `--fast` mode, a
# third of the corpus and few epochs, expect little more than noise on the analogies.

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
report.figure(wv.pca_figure([w for w in words if w in wv], title="GloVe vectors, first two principal components"),
              "glove_pca", "GloVe vectors of chosen words on their first two principal components.")

# %% [markdown]
# ## Exercises
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 5`), make each one's tests pass:
#
# - `embeddings.glove_weighting`: `minitl exercises check embeddings.glove_weighting`
# - `embeddings.glove_loss`: `minitl exercises check embeddings.glove_loss`
