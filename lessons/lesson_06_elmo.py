# %% [markdown]
# # Lesson 6: ELMo, word vectors that read the sentence
#
# Chapter section "ELMo". word2vec and GloVe (lessons 4 and 5) give every word one vector. ELMo
# (Peters et al. 2018) gives every *occurrence* its own: it runs a pretrained bidirectional
# language model over the sentence and takes, for each token, the states of all its layers.
# A task then learns how to mix those layers.
#
# We will (1) write down the LSTM cell the language models are made of, (2) build the biLM,
# two LMs that read in opposite directions and share the embedding and the softmax, (3)
# pretrain it on GCIDE and measure each direction's perplexity, (4) mix its layers with the
# scalar mix, (5) measure, with numbers, how an occurrence's vector follows the word's sense,
# and (6) compare ELMo's features with word2vec's on a real task.
#
# Run: `minitl lesson 6` (uses the biLM cached by `minitl pretrain elmo`, and trains it first
# when the cache has none, which takes many minutes on two cores), or `minitl lesson 6 --fast` (a tiny
# biLM trained on a slice of GCIDE in seconds; its numbers are a tiny model's).

# %%
import time

import numpy as np

from minitl import report

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minitl as tl  # noqa: E402
from minitl.data.text import gcide_corpus  # noqa: E402
from minitl.elmo import ELMo, ELMoBiLM, ScalarMix, load_pretrained_elmo  # noqa: E402
from minitl.elmo import polysemy  # noqa: E402
from minitl.elmo.data import split_sentences  # noqa: E402
from minitl.elmo.pretraining import training_corpus  # noqa: E402
from minitl.experiments import elmo_features  # noqa: E402

FAST = report.fast_mode()
out = report.output_dir("lesson_06_elmo")
tl.manual_seed(0)
lesson_start = time.perf_counter()

# %% [markdown]
# ## 1. The LSTM cell
#
# A language model reads a sentence one token at a time and keeps a state. The LSTM's state is
# a pair (h, c). One step computes four gates from one pre-activation a (gates in PyTorch's
# order i, f, g, o):
#
#     a = x W_ih^T + h W_hh^T + b_ih + b_hh
#     i = sigma(a_i)   f = sigma(a_f)   g = tanh(a_g)   o = sigma(a_o)
#     c' = f * c + i * g
#     h' = o * tanh(c')
#
# The forget gate f keeps part of the old cell, the input gate i lets in part of the candidate
# g, the output gate o shows part of the cell as h'. Because c' is a *sum* of the old cell and
# the new input, gradients flow back through many steps. These equations are your exercises
# `rnn.lstm_cell_forward` and (its chain rule, backward) `rnn.lstm_cell_backward`. Below: one
# step of `tl.nn.LSTMCell` against the equations written in NumPy, then a numerical gradient
# check of the cell in float64.

# %%
rng = np.random.default_rng(0)
cell = tl.nn.LSTMCell(3, 2)
x, h, c = (rng.standard_normal((1, k)).astype(np.float32) for k in (3, 2, 2))
h_next, c_next = cell(tl.tensor(x), (tl.tensor(h), tl.tensor(c)))


def sigma(z):
    return 1 / (1 + np.exp(-z))


a = x @ cell.weight_ih.data.T + h @ cell.weight_hh.data.T + cell.bias_ih.data + cell.bias_hh.data
i, f, g, o = sigma(a[:, 0:2]), sigma(a[:, 2:4]), np.tanh(a[:, 4:6]), sigma(a[:, 6:8])
c_by_hand = f * c + i * g
h_by_hand = o * np.tanh(c_by_hand)
print("gates i, f, o:", i.round(3), f.round(3), o.round(3), " candidate g:", g.round(3))
print(f"h' from LSTMCell {h_next.data.round(4)}, from the equations {h_by_hand.round(4)}; "
      f"largest difference in h' and c': {max(abs(h_next.data - h_by_hand).max(), abs(c_next.data - c_by_hand).max()):.1e}")
weights = [rng.standard_normal(shape) * 0.5 for shape in ((8, 3), (8, 2), (8,), (8,))]
ok = tl.gradcheck(lambda x_, h_, c_, *w: tl.ops.cat(list(tl.ops.rnn.lstm_cell(x_, h_, c_, *w)), dim=1),
                  rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.standard_normal((4, 2)), *weights)
print("the cell's backward passes a float64 gradient check (relative error below 1e-6):", ok)

# %% [markdown]
# ## 2. Two language models, one embedding, one softmax
#
# ELMo's biLM is a forward LM, which predicts each token from the ones before it, and a
# backward LM, which predicts each token from the ones after it. Trained together, they
# maximise
#
#     sum_k [ log p(t_k | t_1 .. t_{k-1}) + log p(t_k | t_{k+1} .. t_N) ]
#
# with one token embedding and one softmax layer shared by the two directions, and an LSTM
# stack of its own for each. The stacks must stay apart: in a two-layer *bidirectional* LSTM
# the second layer reads both directions of the first, so a "forward" state would already know
# the words it must predict. Here each layer of each LM runs in one direction only.
#
# Below, a small biLM: which objects are shared, and which states change when we change the
# token at position 3 of a sentence. The forward LM must react at positions 3 and after, the
# backward LM at positions 3 and before; a state that reacts elsewhere would be cheating.

# %%
tiny = ELMoBiLM(vocab_size=50, hidden_size=8, num_layers=2)
print("one embedding:", tiny.forward_lm.embedding is tiny.backward_lm.embedding,
      "| one softmax:", tiny.forward_lm.decoder is tiny.backward_lm.decoder,
      "| parameters:", tiny.num_parameters(), "| each LM alone:", tiny.forward_lm.num_parameters())
sentence = np.array([[1, 17, 4, 23, 9, 30, 1]])
changed = sentence.copy()
changed[0, 3] = 42
with tl.no_grad():
    _, f0, b0 = tiny(sentence)
    _, f1, b1 = tiny(changed)
rows = [(t, bool(np.abs(f1[-1].data[t] - f0[-1].data[t]).max() > 0), bool(np.abs(b1[-1].data[t] - b0[-1].data[t]).max() > 0))
        for t in range(sentence.shape[1])]
table = report.table(rows, ["position", "forward state changed", "backward state changed"],
                     title="changing the token at position 3")

# %% [markdown]
# ## 3. Pretraining on GCIDE, and perplexity
#
# Each sentence of GCIDE is fed as `<s> t_1 ... t_N <s>`; the vocabulary keeps the most
# frequent words and maps the rest to `<unk>`. A softmax over the whole vocabulary costs one
# dot product per word and per token, so training uses ELMo's *sampled softmax*: each batch
# scores its true words against a few hundred words drawn by frequency, each score corrected
# by the log of how often it is expected to be drawn (`minitl/elmo/bilm.py`).
#
# Perplexity is exp(mean negative log-likelihood per predicted token), measured with the full
# softmax on held-out sentences (every 100th sentence of the dictionary). It is the number of
# words the model hesitates between, on average. For scale: a unigram model, which predicts
# every token by its frequency alone and ignores the context, is printed beside it.

# %%
bilm, vocab = load_pretrained_elmo(fast=FAST)
info = bilm.info
config = info["config"]
print(f"biLM: {config['num_layers']} LSTM layers of {config['hidden_size']} units per direction, vocabulary "
      f"{len(vocab):,}, {bilm.num_parameters():,} parameters; trained on {int(info['train_tokens']):,} tokens in "
      f"{float(info['train_seconds']):.0f} s ({float(info['train_cpu_seconds']):.0f} s of CPU)")
corpus = training_corpus(config)
held_out = split_sentences(corpus, config["max_len"], held_out=True)
train_counts = np.bincount(split_sentences(corpus, config["max_len"], held_out=False).ids, minlength=len(vocab))
train_counts[1] = len(corpus)          # <s>, predicted once per sentence by each LM
unigram = train_counts / train_counts.sum()
predicted = np.concatenate([held_out.ids, np.ones(len(held_out), dtype=np.int64)])   # the tokens, and one <s> each
unigram_ppl = float(np.exp(-np.log(unigram[predicted]).mean()))
rows = [("forward LM", round(float(info["perplexity"]["forward"]), 1)),
        ("backward LM", round(float(info["perplexity"]["backward"]), 1)),
        ("unigram (no context)", round(unigram_ppl, 1))]
report.table(rows, ["model", "held-out perplexity"],
             title=f"perplexity on {int(info['held_out_tokens']):,} held-out predictions per direction")
report.metric("elmo_perplexity_forward", round(float(info["perplexity"]["forward"]), 1))
report.metric("elmo_perplexity_backward", round(float(info["perplexity"]["backward"]), 1))
losses = np.asarray(info["losses"])
window = max(1, len(losses) // 50)
smooth = np.stack([np.convolve(losses[:, k], np.ones(window) / window, mode="valid") for k in range(2)], axis=1)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(smooth[:, 0], label="forward LM")
ax.plot(smooth[:, 1], label="backward LM")
ax.set_xlabel("training step")
ax.set_ylabel("sampled-softmax loss")
ax.set_title("pretraining the biLM on GCIDE")
ax.legend()
fig.tight_layout()
path = report.figure(fig, "elmo_pretraining_loss", "The two directions' sampled-softmax losses during pretraining.")

# %% [markdown]
# Each LM on its own is a plain language model (ULMFiT starts from one like it): here are its
# five most likely next words after a few words, and the backward LM's five most likely
# previous words before a few others.

# %%
def top_words(scores, k=5):
    return ", ".join(vocab.id_to_word[j] for j in np.argsort(-scores)[:k])


with tl.no_grad():
    for prefix in (["the", "bank", "of", "the"], ["a", "small"]):
        ids = np.array([[1, *vocab.encode(prefix)]])
        print(f"forward:  {' '.join(prefix)} ... -> {top_words(bilm.forward_lm(ids).data[0, -1])}")
    for suffix in (["of", "a", "river"], ["of", "money"]):
        ids = np.array([[*vocab.encode(suffix), 1]])
        print(f"backward: ... {' '.join(suffix)} <- {top_words(bilm.backward_lm(ids).data[0, 0])}")

# %% [markdown]
# ## 4. The scalar mix
#
# For token k, the biLM offers L + 1 vectors: layer 0, the token embedding x_k (duplicated to
# [x_k; x_k] to match the width of the others), and each LSTM layer's [h_fwd; h_bwd]. A task
# does not choose one; it learns a mix (your exercise `elmo.scalar_mix`):
#
#     ELMo_task = gamma * sum_l softmax(s)_l * h_l
#
# with s starting at 0 (an equal mix) and gamma at 1. Below, the layers of one sentence, the
# mix at its start (exactly the average of the layers), and the gradient a task's loss sends
# to s and gamma.

# %%
elmo = ELMo(bilm, vocab)
layers, mask = elmo(*elmo.batch_to_ids([["the", "bank", "of", "the", "river"]]))
print(f"{elmo.num_layers} layers, each {tuple(layers[0].shape)} (batch, tokens, 2H)")
mix = ScalarMix(elmo.num_layers)
mixed = mix(layers)
average = sum(layer.data for layer in layers) / elmo.num_layers
print(f"softmax(s) = {mix.weights().round(3)}, gamma = {mix.gamma.data}; "
      f"largest difference from the plain average: {np.abs(mixed.data - average).max():.1e}")
(mixed * mixed).mean().backward()
print(f"gradient of a toy loss: d/ds = {mix.scalar_parameters.grad.round(4)}, d/dgamma = {mix.gamma.grad.round(4)}")

# %% [markdown]
# ## 5. Polysemy, with numbers
#
# "bank" is a river's edge or a place for money. We take real sentences of GCIDE in which
# a two-sense word occurs, and label each occurrence's sense by a rule stated in
# `minitl/elmo/polysemy.py`: cue words of one sense (and not of the other) within 12 tokens
# ("river", "shore", "stream" against "money", "deposit", "notes"). As many occurrences of
# each sense are kept. Then, for each layer: does an occurrence's nearest neighbour (cosine,
# among the other occurrences of the same word) have the same sense? A static vector, the same
# for every occurrence, cannot tell them apart: its neighbours all tie, and its rate is the
# chance rate by construction. ELMo's layer 0 is such a static vector too.

# %%
wv = elmo_features.word2vec_vectors(fast=FAST)
occurrences, vectors, rates = polysemy.measure(elmo, gcide_corpus(), static=wv, per_sense=15 if FAST else 40)
overall = rates["overall"]
report.table(*polysemy.rate_table(rates), title="1-NN sense-match rate among the occurrences of each word (leave-one-out)")
for l in range(elmo.num_layers):
    report.metric(f"polysemy_match_rate_layer_{l}", round(overall["layers"][l], 3))
report.metric("polysemy_match_rate_word2vec", round(overall["static"], 3))
report.metric("polysemy_chance_rate", round(overall["chance"], 3))
print("mean cosine between two occurrences of a word, same sense / different senses, per layer:",
      ", ".join(f"layer {l}: {w:.3f} / {a:.3f}" for l, (w, a) in enumerate(zip(overall["within"], overall["across"]))))

# %% [markdown]
# A picture of "bank": its occurrences' top-layer vectors on their first two principal
# components, coloured by the sense the rule gave them, beside the rates of every layer.

# %%
index = [k for k, o in enumerate(occurrences) if o.word == "bank"]
top = vectors[-1][index].astype(np.float64)
centred = top - top.mean(axis=0)
_, _, vt = np.linalg.svd(centred, full_matrices=False)
xy = centred @ vt[:2].T
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
for sense, colour in zip(polysemy.SENSE_CUES["bank"], ("tab:blue", "tab:orange")):
    chosen = [k for k, i in enumerate(index) if occurrences[i].sense == sense]
    left.scatter(xy[chosen, 0], xy[chosen, 1], s=14, color=colour, label=f"bank ({sense})")
left.set_title("'bank' in GCIDE: ELMo's top layer, 2 principal components")
left.legend()
names = ["chance", "word2vec", *(f"ELMo {l}" for l in range(elmo.num_layers))]
right.bar(names, [overall["chance"], overall["static"], *overall["layers"]],
          color=["grey", "tab:green", *["tab:purple"] * elmo.num_layers])
right.set_ylim(0, 1)
right.set_ylabel("1-NN sense-match rate")
right.set_title(f"all {len(rates['words'])} words")
fig.tight_layout()
path = report.figure(fig, "elmo_polysemy", "Occurrences of 'bank' by sense in ELMo's top layer; sense-match rates per layer.")

# %% [markdown]
# ## 6. Features on a real task
#
# The chapter says ELMo's features help a downstream task. We measure it on GCIDE's part of
# speech (`tl.data.gcide_pos`: a definition in, its headword's part of speech out, the
# headword masked). Three feature sets feed the same linear classifier, trained with Adam for
# the same epochs: the average of the definition's word2vec vectors; ELMo's top layer averaged
# over the tokens; and ELMo's layers mixed by a learned scalar mix, then averaged. This is
# `minitl experiment elmo` (with `--fast` here in fast mode); whatever it prints is the result.

# %%
results = elmo_features.run(fast=FAST, progress=False, with_polysemy=False)  # measured in section 5
rows = [("majority class", "-", round(results["majority_baseline"], 4))]
for name, accuracy in results["accuracy"].items():
    dim = results["dims"]["word2vec" if name == "word2vec" else "ELMo"]
    rows.append((name, dim, round(accuracy, 4)))
report.table(rows, ["features", "dimensions", "test accuracy"],
             title=f"{results['task']}: {results['n_train']:,} training, {results['n_test']:,} test definitions")
for name, accuracy in results["accuracy"].items():
    report.metric(f"pos_accuracy_{name.lower().replace(' ', '_')}", round(accuracy, 4))
print(f"learned mix: softmax(s) = {np.round(results['mixture_weights'], 3).tolist()} "
      f"(layers 0..{results['elmo_layers'] - 1}), gamma = {results['gamma']:.3f}")
best = max(results["accuracy"], key=results["accuracy"].get)
print(f"best: {best}, {results['accuracy'][best] - results['majority_baseline']:+.4f} over the majority class, "
      f"{results['accuracy'][best] - results['accuracy']['word2vec']:+.4f} over word2vec")
print(f"lesson 6 ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Check yourself
#
# 1. In the polysemy table, which ELMo layer scores exactly the chance rate, like word2vec,
#    and why must it?
# 2. Which layer did the learned scalar mix weight most on the part-of-speech task, and did
#    the mix beat the top layer alone?
# 3. How many held-out predictions was each direction's perplexity measured on, and how much
#    lower is it than the unigram model's?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 6`), make each one's tests pass:
#
# - `rnn.lstm_cell_forward`: `minitl exercises check rnn.lstm_cell_forward`
# - `rnn.lstm_cell_backward`: `minitl exercises check rnn.lstm_cell_backward`
# - `elmo.scalar_mix`: `minitl exercises check elmo.scalar_mix`
