# %% [markdown]
# # Lesson 8: BERT and GPT, transformers as foundation models
#
# Chapter section "Transformers as foundation models". ELMo (lesson 6) gave a task the states of
# a pretrained LSTM. BERT (Devlin et al. 2018) and GPT (Radford et al. 2018) replace the LSTM by
# a Transformer, pretrain it on raw text with a self-supervised objective, and then adapt the
# *whole* network to a task, or read its features with a linear probe.
#
# We will (1) cut text into subwords with a byte-pair-encoding tokenizer trained on GCIDE, (2)
# write attention, split it into heads and see the two masks that make a model BERT or GPT,
# (3) draw BERT's masked-LM targets, (4) pretrain a mini-BERT and a mini-GPT on GCIDE and read
# their held-out losses, (5) let BERT fill blanks and GPT write, with temperature and top-k,
# and (6) measure fine-tuning against linear probing and training from scratch.
#
# Run: `minitl lesson 8` (uses the models cached by `minitl pretrain bert` and `minitl pretrain
# gpt`, and trains them first when the cache has none: a long run each), or
# `minitl lesson 8 --fast` (tiny models trained on a slice of GCIDE in seconds; their numbers
# are a tiny model's).

# %%
import time

import numpy as np

from minitl import report

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minitl as tl  # noqa: E402
from minitl.data.text import BPETokenizer, gcide_tokenizer  # noqa: E402
from minitl.data.text.subword import merge_pair  # noqa: E402
from minitl.experiments import language  # noqa: E402
from minitl.models.bert import IGNORE_INDEX, mlm_mask  # noqa: E402
from minitl.models.pretraining import load_pretrained  # noqa: E402
from minitl.ops.attention import merge_heads, scaled_dot_product, split_heads  # noqa: E402

FAST = report.fast_mode()
out = report.output_dir("lesson_08_bert_gpt")
tl.manual_seed(0)
lesson_start = time.perf_counter()

# %% [markdown]
# ## 1. Subwords: byte-pair encoding
#
# A word-level vocabulary (lessons 4-6) maps every rare word to `<unk>`. BERT and GPT read
# *subwords* instead: start from characters, and repeatedly merge the most frequent adjacent
# pair into a new piece, until the vocabulary has the size we want. Frequent words end up as
# one piece, rare ones as a few. The step that applies one merge to a word is your exercise
# `text.bpe_merge`: every occurrence of the pair (a, b), left to right, becomes the piece ab.
# Below, a tokenizer trained on a handful of words, then the one trained on all of GCIDE (8,000
# pieces; `</w>` marks the end of a word).

# %%
print("merge_pair([a, b, a, b, b], (a, b), ab) =", merge_pair(["a", "b", "a", "b", "b"], ("a", "b"), "ab"))
toy = BPETokenizer.train(["low lower lowest newer newest wider widest"] * 5, vocab_size=40, min_frequency=2)
print("toy tokenizer:", toy.tokenize("lowest newest wider"))
tokenizer = gcide_tokenizer(8000)
sentence = "The [MASK] of a river is its sloping margin; antidisestablishmentarianism is rare."
ids = tokenizer.encode(sentence)
print(f"GCIDE tokenizer: {tokenizer.vocab_size:,} pieces; special tokens {tokenizer.all_special_tokens} "
      f"are ids {tokenizer.all_special_ids}")
print("pieces:", tokenizer.convert_ids_to_tokens(ids))
print("decoded back:", tokenizer.decode(ids))

# %% [markdown]
# ## 2. Attention, heads and the two masks
#
# Each position asks a query q_i; every position offers a key k_j and a value v_j:
#
#     Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + M) V
#
# M is 0 where position i may look at position j and -inf where it may not (e^-inf = 0 takes
# that key out of the softmax). That line is your exercise `attention.scaled_dot_product`.
# Multi-head attention cuts the width d into H heads of d/H features (`attention.split_heads`),
# attends in each head on its own, and glues the heads back (`attention.merge_heads`).
#
# The mask is what makes the model BERT or GPT. BERT's position i sees every real token, to its
# left and to its right, and no padding. GPT's position i sees positions 0..i only (the causal
# mask), so its state has never seen token i+1 and can be trained to predict it.

# %%
rng = np.random.default_rng(0)
q, k, v = (tl.tensor(rng.standard_normal((1, 5, 4))) for _ in range(3))
out_attention, weights = scaled_dot_product(q, k, v, scale=1 / np.sqrt(4))
scores = q.numpy() @ k.numpy().transpose(0, 2, 1) / 2
by_hand = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True) @ v.numpy()
print(f"attention by the formula vs scaled_dot_product: largest difference {np.abs(out_attention.numpy() - by_hand).max():.1e}")
x = tl.tensor(rng.standard_normal((2, 5, 8)))
heads = split_heads(x, 4)
print(f"split_heads: {tuple(x.shape)} -> {tuple(heads.shape)} (batch, heads, positions, d/H); "
      f"merge_heads gives back x exactly: {np.array_equal(merge_heads(heads).numpy(), x.numpy())}")

length, real = 6, 4  # a text of 4 tokens padded to 6
bert_mask = np.tile(np.arange(length) < real, (length, 1))
gpt_mask = np.tril(np.ones((length, length), dtype=bool))
fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
for ax, mask, title in ((axes[0], bert_mask, "BERT: every real token, no padding"),
                        (axes[1], gpt_mask, "GPT: positions 0..i (causal)")):
    ax.imshow(mask, cmap="Greens", vmin=0, vmax=1.3)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("key position j")
    ax.set_ylabel("query position i")
fig.tight_layout()
report.figure(fig, "attention_masks", "Which keys each query may attend to (green), BERT and GPT.")
print("keys seen by each query, BERT:", bert_mask.sum(1).tolist(), " GPT:", gpt_mask.sum(1).tolist())

# %% [markdown]
# ## 3. BERT's masked-LM targets
#
# Predicting the next token is a cheat for BERT: the token is in view. BERT instead hides
# tokens and predicts them from both sides. `15%` of the ordinary tokens are chosen; of those,
# `80%` become `[MASK]`, `10%` a random token, `10%` stay as they are, and the loss is computed at the
# chosen positions only. The random and unchanged ones keep the model from trusting that only
# `[MASK]` needs predicting (at fine-tuning time there is no `[MASK]` at all). That rule is your
# exercise `bert.mlm_mask`. One definition masked, then the shares counted on many tokens:

# %%
definition = tokenizer("A small stream of water flowing from a spring or from the melting of snow",
                       padding="max_length", max_length=24)["input_ids"]
inputs, labels = mlm_mask(definition, np.random.default_rng(3))
print("input to BERT:", " ".join(tokenizer.convert_ids_to_tokens(inputs[0][definition[0] != 0])))
print("targets:      ", [tokenizer.convert_ids_to_tokens([t])[0] for t in labels[0] if t != IGNORE_INDEX])
many = np.random.default_rng(1).integers(5, 8000, size=(200, 256))
inputs, labels = mlm_mask(many, np.random.default_rng(2))
chosen = labels != IGNORE_INDEX
as_mask = float(np.mean(inputs[chosen] == tokenizer.mask_token_id))
unchanged = float(np.mean(inputs[chosen] == many[chosen]))
report.table([("chosen", round(float(chosen.mean()), 4)), ("... of them [MASK]", round(as_mask, 4)),
              ("... a random token", round(1 - as_mask - unchanged, 4)), ("... unchanged", round(unchanged, 4))],
             ["share", "measured"], title=f"mlm_mask on {many.size:,} tokens")

# %% [markdown]
# ## 4. Pretraining on GCIDE
#
# The text is all of GCIDE as one stream of subwords (a `[SEP]` after each paragraph), cut into
# windows of 64 tokens that start with `[CLS]`; every 100th paragraph is held out. BERT learns
# to fill the blanks of `mlm_mask`, with more blanks than the original 15% (the rate is printed
# below; Wettig et al. 2022 found 40% better for small budgets: each window then gives more
# predictions to learn from), its held-out loss still read at 15%; GPT learns the next token
# at every position. Both are the
# same Transformer encoder (`tl.nn.TransformerEncoder`): width 128, 4 layers of 4 heads, an MLP
# of 512, with the output layer tied to the token embedding (one matrix E reads the tokens in
# and scores them out). The loss is a mean cross-entropy in nats; exp(loss), the perplexity, is
# the number of subwords the model hesitates between. A uniform guess over the vocabulary has
# loss $\ln 8000 = 8.99$; the unigram model below, which knows each subword's frequency but no
# context, is the bar that context must clear.

# %%
bert = load_pretrained("bert", fast=FAST)
gpt = load_pretrained("gpt", fast=FAST)
from minitl.models.pretraining import gcide_token_streams  # noqa: E402

train_stream, heldout_stream = gcide_token_streams(tokenizer, int(bert.info["training"]["paragraph_stride"]))
frequency = np.bincount(train_stream, minlength=tokenizer.vocab_size) + 1
unigram_loss = float(-np.log(frequency[heldout_stream] / frequency.sum()).mean())
rows = []
for name, model in (("mini-BERT (masked LM)", bert), ("mini-GPT (causal LM)", gpt)):
    info = model.info
    rows.append((name, f"{model.num_parameters():,}", int(info["training"]["steps"]), f"{int(info['train_tokens']):,}",
                 round(float(info["heldout_loss"]), 3), round(float(info["heldout_perplexity"]), 1),
                 round(float(info["cpu_seconds"]))))
rows.append(("unigram (no context)", "-", "-", "-", round(unigram_loss, 3), round(float(np.exp(unigram_loss)), 1), "-"))
report.table(rows, ["model", "parameters", "steps", "tokens", "held-out loss", "perplexity", "CPU s"],
             title="pretraining on GCIDE, held-out losses")
bert_mask_rate = float(bert.info["training"].get("mask_prob", 0.15))
print(f"BERT trained with {bert_mask_rate:.0%} of its tokens masked; held-out losses at 15% masking")
report.metric("bert_heldout_loss", round(float(bert.info["heldout_loss"]), 3))
report.metric("gpt_heldout_loss", round(float(gpt.info["heldout_loss"]), 3))
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, model in (("BERT", bert), ("GPT", gpt)):
    history = model.info["history"]
    masked = f" ({bert_mask_rate:.0%} masked)" if name == "BERT" else ""
    line, = ax.plot(history["step"], history["train_loss"], label=f"{name} training{masked}")
    ax.plot(history["heldout_step"], history["heldout_loss"], "o--", color=line.get_color(), label=f"{name} held-out")
ax.axhline(unigram_loss, color="gray", linestyle=":", label="unigram")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy (nats)")
ax.set_title("pretraining mini-BERT and mini-GPT on GCIDE")
ax.legend(fontsize=8)
fig.tight_layout()
report.figure(fig, "bert_gpt_pretraining", "Training and held-out losses of the two objectives.")

# %% [markdown]
# BERT's loss and GPT's are not the same question, so they do not compare directly: BERT sees
# both sides of a blank; GPT predicts every token from its left alone, including the first
# word of a window, where it has almost nothing to go on.
#
# ## 5. Filling blanks and writing text
#
# BERT's head scores the whole vocabulary at a `[MASK]`. GPT writes: it draws a token from
# softmax(logits / T), appends it and repeats. The temperature T sharpens (T < 1) or flattens
# (T > 1) the distribution; top-k draws only among the k most likely tokens (T = 0 takes the
# most likely one: greedy decoding, which tends to repeat itself).

# %%
with tl.no_grad():
    for text in ("A large [MASK] of water surrounded by land.", "To [MASK] with a knife; to cut."):
        batch = tokenizer([text])
        logits = bert.mlm_logits(batch["input_ids"], batch["attention_mask"]).numpy()[0]
        where = int(np.flatnonzero(batch["input_ids"][0] == tokenizer.mask_token_id)[0])
        best = np.argsort(-logits[where])[:5]
        print(f"BERT: {text!r} -> {tokenizer.convert_ids_to_tokens(best)}")
prompt = tokenizer.encode("a small", add_special_tokens=False)
prompt = [tokenizer.cls_token_id, *prompt]
for temperature, top_k in ((0.0, None), (0.7, 40), (1.0, 40), (1.5, None)):
    text = gpt.generate(prompt, 16, temperature=temperature, top_k=top_k, seed=0)
    print(f"GPT, T = {temperature}, top-k = {top_k}: {tokenizer.decode(text)}")

# %% [markdown]
# ## 6. Fine-tuning, linear probing, and training from scratch
#
# The chapter's adaptation strategies, on GCIDE's part-of-speech task (a definition, its
# headword masked: noun, adjective, verb or adverb?). The pretrained model's LM head is
# replaced by a linear classifier on the mean of its hidden states. *Fine-tuning* trains
# everything; a *linear probe* freezes the model and trains the classifier alone (a few hundred
# parameters) on features computed once; *scratch* trains the same architecture from random
# weights, with the same steps as fine-tuning (the recipes are printed: the mini-BERT's
# pretrained weights take larger fine-tuning steps than GPT's, after a warm-up). This is `minitl experiment
# language` with N = 100 and 1,000 labelled texts and one seed (the command runs three seeds
# and N = all): whatever it prints is the result.

# %%
rows, records, baseline = language.run(sizes=(100,) if FAST else (100, 1000), seeds=1, fast=FAST, progress=False)
summary = language.summarize(rows)
print("learning rates and warm-up shares:", language.RECIPES)
print(f"majority class (always noun) on these test texts: {baseline:.3f}")
report.table([(t["model"], t["approach"], t["labels"], round(t["mean"], 3), f"{t['trainable_params']:,}",
               round(t["seconds"], 1)) for t in summary],
             ["model", "approach", "labels N", "test accuracy", "trainable parameters", "seconds"],
             title="GCIDE part of speech: adaptation strategies")
for t in summary:
    report.metric(f"pos_{t['model']}_{t['approach']}_{t['labels']}", round(t["mean"], 4))
fig = language.plot(summary, baseline)
report.figure(fig, "language_strategies", "Test accuracy against N, per model and strategy.")
print(f"lesson 8 ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Check yourself
#
# 1. In the `mlm_mask` table, which share of all tokens was chosen, and which share of the
#    chosen ones was left unchanged? Why does BERT leave any unchanged?
# 2. Which model's held-out loss beat the unigram model's by more, and why can't you conclude
#    from that which model is better?
# 3. In the strategies table, how many parameters does the linear probe train, against
#    fine-tuning? At N = 100, which strategy won for each model?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 8`), make each one's tests pass:
#
# - `text.bpe_merge`: `minitl exercises check text.bpe_merge`
# - `attention.scaled_dot_product`: `minitl exercises check attention.scaled_dot_product`
# - `attention.split_heads`: `minitl exercises check attention.split_heads`
# - `attention.merge_heads`: `minitl exercises check attention.merge_heads`
# - `bert.mlm_mask`: `minitl exercises check bert.mlm_mask`
