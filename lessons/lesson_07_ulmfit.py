# %% [markdown]
# # Lesson 7: ULMFiT, fine-tuning a language model for a classifier
#
# Chapter section "ULMFiT". ELMo (lesson 6) froze its biLM and fed its states to a task's
# model. ULMFiT (Howard & Ruder 2018) fine-tunes the language model itself, in three stages:
#
# 1. a language model pretrained on general text: here the forward LM of lesson 6's biLM,
#    pretrained on GCIDE (embedding, two LSTM layers, a softmax over the vocabulary);
# 2. the same LM fine-tuned on the target task's text, without its labels;
# 3. a classifier: the LM's softmax replaced by a small head, fine-tuned on the labels.
#
# Three ideas keep stages 2 and 3 from destroying what stage 1 learned: **discriminative
# learning rates** (lower layers move less), **slanted triangular learning rates** (a short
# rise, a long decay) and **gradual unfreezing** (the head first, then one layer group more per
# epoch). We take each one apart, run the pipeline, and measure it on GCIDE's part-of-speech
# task against the same classifier trained from scratch and against each idea left out.
#
# Run: `minitl lesson 7` (uses the biLM of `minitl pretrain elmo`, and the table of a full
# `minitl experiment ulmfit` run when one is cached; runs them when not), or
# `minitl lesson 7 --fast` (a tiny LM, GCIDE's first entries, a tiny table: a tiny model's numbers).

# %%
import time

import numpy as np

from minitl import report

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minitl as tl  # noqa: E402
from minitl import transfer, ulmfit  # noqa: E402
from minitl.experiments import ulmfit as experiment  # noqa: E402
from minitl.optim.lr_scheduler import slanted_triangular_factor  # noqa: E402

FAST = report.fast_mode()
out = report.output_dir("lesson_07_ulmfit")
tl.manual_seed(0)
lesson_start = time.perf_counter()

# %% [markdown]
# ## The task and the pretrained language model
#
# The task is `tl.data.gcide_pos`: a dictionary definition in, with its headword masked as
# `[MASK]`, the headword's part of speech out (noun, adjective, verb, adverb). The split is by
# headword. The pretrained LM is ELMo's forward LM: each step reads one word and scores every
# word of the vocabulary as the next one.

# %%
data, test_texts, test_labels = experiment.load_task(FAST)
print(data)
lm, vocab, info = ulmfit.load_pretrained_lm(fast=FAST)
print(lm)
print(f"vocabulary {len(vocab):,} words, {lm.num_parameters():,} parameters, held-out perplexity on GCIDE "
      f"{float(info['perplexity']['forward']):.1f}")
print("a definition:", " ".join(data.train.texts[1]), "->", data.classes[data.train.labels[1]])

# %% [markdown]
# ## 1. Discriminative learning rates
#
# Layers of a network hold different things: the lowest, general features of words; the
# highest, what the pretraining task needed. So ULMFiT gives each layer group l its own rate,
#
#     eta^{l-1} = eta^l / 2.6
#
# the head at eta, each group below 2.6 times slower. The classifier's groups, from the input
# up, are the embedding, each LSTM layer and the new head (`model.blocks()`); the transfer
# toolkit turns them into Adam's param groups (your exercise `ulmfit.discriminative_lr`).

# %%
model = ulmfit.classifier_from_lm(lm, len(data.classes))
groups = transfer.discriminative_param_groups(model, lr=1e-2)
names = ["head", *(f"LSTM layer {k}" for k in range(len(model.encoder.layers), 0, -1)), "embedding"]
rows = [(name, sum(p.numel() for p in g["params"]), f"{g['lr']:.2e}",
         "-" if k == 0 else f"{groups[k - 1]['lr'] / g['lr']:.2f}") for k, (name, g) in enumerate(zip(names, groups))]
table = report.table(rows, ["layer group", "parameters", "learning rate", "the group above / this one"],
             title="discriminative learning rates, eta = 1e-2")

# %% [markdown]
# ## 2. Slanted triangular learning rates
#
# Over T steps the rate rises linearly for the first cut_frac of them, then falls linearly for
# the rest (your exercise `ulmfit.slanted_triangular`):
#
#     cut = floor(T * cut_frac)
#     p = t / cut                                  if t < cut
#     p = 1 - (t - cut) / (cut * (1/cut_frac - 1))  otherwise
#     eta_t = eta_max * (1 + p * (ratio - 1)) / ratio
#
# with `cut_frac = 0.1` and `ratio = 32`: the rate starts and ends at eta_max / 32. The short rise
# lets the model find a good region fast; the long decay refines it. Below, the schedule over
# one classifier run, with discriminative rates: each group follows the same triangle at its
# own height.

# %%
T = experiment.FAST["steps"] if FAST else experiment.STEPS
steps = np.arange(T + 1)
factors = np.array([slanted_triangular_factor(t, T) for t in steps])
cut = int(np.argmax(factors))
print(f"T = {T} steps: cut at step {cut}; multiplier at t = 0: {factors[0]:.4f} (1/32 = {1 / 32:.4f}), "
      f"at the cut: {factors[cut]:.2f}, at t = T: {factors[-1]:.4f}")
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, g in zip(names, groups):
    ax.plot(steps, g["lr"] * factors, label=name)
ax.axvline(cut, color="grey", linestyle=":", linewidth=0.8)
ax.set_yscale("log")
ax.set_xlabel("step t")
ax.set_ylabel("learning rate")
ax.set_title("STLR (cut_frac 0.1, ratio 32) with discriminative rates")
ax.legend(fontsize=8)
fig.tight_layout()
figure = report.figure(fig, "stlr_schedule", "The slanted triangular schedule of one classifier run, per layer group.")

# %% [markdown]
# ## 3. Gradual unfreezing
#
# A new head starts random: its first gradients are large, and if they reached the pretrained
# layers at once they would wreck what stage 1 learned ("catastrophic forgetting"). So the head
# trains alone first; then each stage unfreezes one more group, from the top down, until all
# train (your exercise `ulmfit.gradual_unfreezing`). The paper's stage is an epoch; here the
# step budget is shared equally by the stages. One Adam runs throughout: each stage adds its
# group as a new param group, and the groups already training keep their moments.

# %%
stages = len(model.blocks())
rows = []
for stage in range(1, stages + 1):
    transfer.unfreeze_top(model, stage)
    training = [name for name, block in zip(names[::-1], model.blocks())       # from the input up
                if all(p.requires_grad for p in block.parameters())]
    rows.append((stage, ", ".join(training), transfer.count_trainable(model)))
table = report.table(rows, ["stage", "groups training", "trainable parameters"],
             title=f"gradual unfreezing: {stages} stages of {T // stages} steps each")

# %% [markdown]
# ## 4. The pipeline
#
# **Stage 2, LM fine-tuning.** The task's definitions are unlabelled text of their own kind
# ("[MASK]" stands where the headword was, a word the pretrained LM never saw: it joins the
# vocabulary as the average word). The LM reads them as one stream and learns to predict each
# next word, with discriminative rates and STLR, scored by ELMo's sampled softmax. The text
# depends neither on how many labels we have nor on a seed, so this is done once and cached.
# Perplexity on held-out definitions (the validation split's) says how much it learned.

# %%
start = time.perf_counter()
ft_lm, ft_vocab, record = ulmfit.load_finetuned_lm(data.train.texts, data.val.texts, fast=FAST)
print(f"loaded (or fine-tuned) in {time.perf_counter() - start:.1f} s; fine-tuning took {float(record['seconds']):.1f} s: "
      f"{int(record['config']['steps'])} steps, {int(record['train_tokens']):,} tokens of the "
      f"{int(record['stream_tokens']):,} in the task's training text")
before, after = np.exp(float(record["held_out_loss_before"])), np.exp(float(record["held_out_loss_after"]))
table = report.table([("pretrained LM (stage 1)", round(before, 1)), ("fine-tuned on the task's text (stage 2)", round(after, 1))],
             ["language model", "held-out perplexity"],
             title=f"perplexity on {int(record['held_out_tokens']):,} tokens of held-out definitions")
report.metric("task_perplexity_pretrained", round(before, 1))
report.metric("task_perplexity_finetuned", round(after, 1))
losses = np.asarray(record["losses"])
window = max(1, len(losses) // 25)
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(np.convolve(losses, np.ones(window) / window, mode="valid"))
ax.set_xlabel("step")
ax.set_ylabel("sampled-softmax loss")
ax.set_title("stage 2: fine-tuning the LM on the task's definitions")
fig.tight_layout()
figure = report.figure(fig, "lm_finetuning_loss", "The LM's training loss on the task's text (a running mean).")

# %% [markdown]
# **Stage 3, the classifier.** The LM's softmax goes (`encoder.decoder = nn.Identity()`), and
# the head reads *concat pooling* of the top LSTM layer's outputs H over each text's real steps:
#
#     h_c = [h_T, maxpool(H), meanpool(H)]
#
# the last state (which has read the whole text), and the maximum and the mean of every state,
# so a word anywhere in a long text can still reach the head. Texts of different lengths are
# padded to one length; padding must neither win the max nor enter the mean. Below: a short
# and a long definition in one padded batch give the same features as each alone.

# %%
classifier = ulmfit.classifier_from_lm(ft_lm, len(data.classes))
classifier.eval()
pair = [data.train.texts[0][:5], data.train.texts[1][:20]]
ids = ulmfit.encode(pair, ft_vocab)
print("padded ids:\n", ids)
with tl.no_grad():
    together = classifier.features(ids).data
    alone = np.concatenate([classifier.features(ulmfit.encode([t], ft_vocab)).data for t in pair])
print(f"features {together.shape} = (texts, 3 x {ft_lm.hidden_size}); largest difference batched vs alone: "
      f"{np.abs(together - alone).max():.1e}")

# %% [markdown]
# ## 5. Does it help? The table
#
# `minitl experiment ulmfit` trains, for N = 100, 1,000 and all training labels and three
# seeds, five classifiers with the same Adam steps: ULMFiT; the same classifier from scratch;
# and ULMFiT without discriminative rates, without STLR (a constant rate), and without gradual
# unfreezing. Accuracy is on the same test definitions for all. In full mode the lesson shows
# the table of the last full run (cached by the command), or runs it (a long run: the
# experiment's default); in fast mode a tiny version runs here.

# %%
cached = experiment.results_path()
if FAST:
    results = experiment.run(sizes=["100", "1000"], seeds=1, fast=True, progress=False)
elif cached.exists():
    import json
    results = json.loads(cached.read_text())
    print(f"the cached full run: {cached}")
else:
    results = experiment.run(progress=True)
summary = experiment.summarize(results["rows"])
sizes = sorted({t["labels"] for t in summary})
rows = []
for method in experiment.METHODS:
    cells = {t["labels"]: t for t in summary if t["method"] == method}
    rows.append([method, *(f"{cells[n]['mean']:.3f} ± {cells[n]['std']:.3f}" for n in sizes)])
table = report.table(rows, ["method", *(f"N = {n:,}" for n in sizes)],
             title=f"{results['task']}: test accuracy on {results['test_examples']:,} definitions "
                   f"(mean ± std over {summary[0]['runs']} seed(s)); majority class {results['majority_baseline']:.3f}")
figure = report.figure(experiment.plot(summary, results["majority_baseline"]), "ulmfit_table",
              "Test accuracy against the number of labels, per method.")
for t in summary:
    report.metric(f"accuracy_{t['method']}_{t['labels']}", round(t["mean"], 4))
smallest = sizes[0]
by_method = {t["method"]: t["mean"] for t in summary if t["labels"] == smallest}
print(f"at N = {smallest:,}: ULMFiT {by_method['ulmfit']:.3f}, scratch {by_method['scratch']:.3f} "
      f"({by_method['ulmfit'] - by_method['scratch']:+.3f}); majority class {results['majority_baseline']:.3f}")
for n in sizes:
    ranked = sorted((t for t in summary if t["labels"] == n), key=lambda t: -t["mean"])
    print(f"N = {n:,}, best first: " + ", ".join(f"{t['method']} {t['mean']:.3f}" for t in ranked))

# %% [markdown]
# How to read it. Each idea of ULMFiT slows the pretrained layers down: a smaller rate lower
# down, a slow start, a late unfreezing. That caution protects what pretraining learned, and it
# costs steps: when an ablation beats the full recipe, suspect a budget of steps too short for
# the lower layers to move. When ULMFiT beats scratch most at the smallest N, the pretrained
# LM is worth labels. In `--fast` mode the LM is tiny (a short pretraining on a slice of GCIDE,
# a quick fine-tuning) and each run short: read the fast table as the machinery at work, and
# the full run as the measurement of the chapter's claim.

# %%
print(f"lesson 7 ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Check yourself
#
# 1. In the table of discriminative rates, what is the ratio between neighbouring groups, and
#    which group moves slowest?
# 2. At which step does the slanted triangle peak for one classifier run, and what multiplier
#    of eta does it start and end at?
# 3. How much did fine-tuning on the task's text lower the LM's held-out perplexity, and at
#    the smallest N, how far apart were ULMFiT and the same classifier from scratch?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 7`), make each one's tests pass:
#
# - `ulmfit.discriminative_lr`: `minitl exercises check ulmfit.discriminative_lr`
# - `ulmfit.slanted_triangular`: `minitl exercises check ulmfit.slanted_triangular`
# - `ulmfit.gradual_unfreezing`: `minitl exercises check ulmfit.gradual_unfreezing`
