# %% [markdown]
# # Lesson 11: parameter-efficient fine-tuning
#
# Chapter section "Parameter-efficient fine-tuning". Fine-tuning a pretrained model in full
# changes all of its weights, and a copy of them must be stored for every task. PEFT methods
# freeze the pretrained weights and train a small number of new ones:
#
# * **LoRA** learns a low-rank change of a weight matrix: `W + (alpha / r) B A`;
# * **adapters** insert a small bottleneck network after a layer: `x + f(x W_down) W_up`;
# * **prompt tuning** learns virtual tokens put in front of the input: `[P; X]`;
# * **prefix tuning** learns keys and values put in front of every attention layer's.
#
# We will (1) count the parameters of `W + BA`, (2) wrap a model with `tl.peft` (Hugging Face
# PEFT's API) and see that it starts equal to its base, (3) merge LoRA back into the weights,
# (4) serve two tasks from one frozen mini-BERT with two LoRA adapters, and (5) run the
# chapter's table on the mini-BERT and the ViT.
#
# Run: `minitl lesson 11` (uses the pretrained mini-BERT and ViT, training them first when the
# cache has none), or `minitl lesson 11 --fast` (their tiny versions, a few steps per method;
# its numbers are a tiny model's).

# %%
import time

import numpy as np

from minitl import report

import matplotlib

matplotlib.use("Agg")

import minitl as tl  # noqa: E402
from minitl import nn, peft  # noqa: E402
from minitl.experiments import peft_table  # noqa: E402

FAST = report.fast_mode()
out = report.output_dir("lesson_11_peft")
tl.manual_seed(0)
lesson_start = time.perf_counter()

# %% [markdown]
# ## 1. The arithmetic of W + BA
#
# A weight W maps k inputs to d outputs: d k numbers. LoRA keeps W frozen and learns its change
# as B A, with B of shape (d, r) and A of shape (r, k):
#
#     h = W x + (alpha / r) B A x
#
# That is r (d + k) numbers. The product BA is a d x k matrix, but its rank is at most r: the
# update can only move the layer's outputs within an r-dimensional subspace. The bet of LoRA is
# that the change fine-tuning needs has a low "intrinsic rank", so r far below min(d, k) is
# enough. If r reached min(d, k), BA could be any matrix and we would store as much as W itself.

# %%
rows = []
for d, k in ((128, 128), (128, 512), (768, 768), (4096, 4096)):
    for r in (4, 8):
        rows.append((f"{d} x {k}", r, d * k, r * (d + k), f"{100 * r * (d + k) / (d * k):.2f}%"))
report.table(rows, ["W (d x k)", "r", "d k (full)", "r (d + k) (LoRA)", "LoRA / full"],
             title="Parameters of one weight matrix and of its LoRA update")
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(5.5, 3.8))
ranks = np.array([1, 2, 4, 8, 16, 32, 64, 128])
for d in (128, 768, 4096):
    ax.plot(ranks, ranks * 2 * d / (d * d), marker="o", label=f"d = k = {d}")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.axhline(1.0, color="grey", lw=0.8)
ax.set_xlabel("rank r")
ax.set_ylabel("LoRA parameters / d k")
ax.set_title("r (d + k) against d k: the update is cheap while r << min(d, k)")
ax.legend()
report.figure(fig, "lora_parameters", "the fraction of a d x k matrix that LoRA trains, by rank")
rng = np.random.default_rng(0)
B, A = rng.standard_normal((128, 8)), rng.standard_normal((8, 128))
print(f"rank of B A for r = 8 and d = k = 128: {np.linalg.matrix_rank(B @ A)}")

# %% [markdown]
# ## 2. Wrapping a model
#
# `tl.peft.get_peft_model(model, config)` freezes the model and wraps each target layer.
# Below: a small Transformer classifier, with LoRA on its attention's [W_q; W_k; W_v] (the
# matrices the LoRA paper adapts) and on the MLP's first Linear; the new head trains in full
# (`modules_to_save`). `A` starts random and `B` at zero (your exercise `peft.lora_forward`
# computes the layer), so the wrapped model starts exactly where its base was. The names are
# PEFT's, so adapter weights copy across to (and from) PyTorch.

# %%


class SmallClassifier(nn.Module):
    def __init__(self, vocab=50, width=32, classes=3):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, 4, 4 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.classifier = nn.Linear(width, classes)

    def forward(self, ids):
        return self.classifier(self.encoder(self.embed(ids)).mean(1))


base = SmallClassifier()
ids = tl.tensor(rng.integers(0, 50, size=(8, 10)))
before = base(ids).data.copy()
trainable, total = peft.count_trainable_parameters(base)  # your exercise peft.count_trainable
print(f"the base model: {trainable:,} of {total:,} parameters trainable")
config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["self_attn", "linear1"], modules_to_save=["classifier"])
model = peft.get_peft_model(base, config)
print("with LoRA (r = 4):")
model.print_trainable_parameters()
print(f"largest change of the outputs at the start: {np.abs(model(ids).data - before).max()}")
for name, p in model.named_parameters():
    if "layers.0.linear1" in name:
        print(f"  {name} {tuple(p.shape)} requires_grad={p.requires_grad}")

# %% [markdown]
# ## 3. Training, then merging
#
# A few steps of Adam on a toy task move A and B. Then `merge_and_unload()` folds the update
# into the weights, `W' = W + (alpha / r) B A` (your exercise `peft.lora_merge`), and gives
# back a plain model: no extra matrices, no extra time at inference. Its outputs match the
# adapted model's up to float32 rounding.

# %%
labels = tl.tensor(ids.data[:, 0] % 3)
optimizer = tl.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
for step in range(30):
    loss, _ = tl.training.train_step(model, optimizer, tl.ops.cross_entropy, ids, labels)
print(f"training loss after 30 steps: {loss.item():.4f}")
model.eval()
adapted = model(ids).data.copy()
merged = model.merge_and_unload()
print(f"merged model: a {type(merged).__name__} with {sum(p.numel() for p in merged.parameters()):,} parameters "
      f"(the base had {sum(p.numel() for p in SmallClassifier().parameters()):,})")
report.metric("merge_max_abs_difference", float(np.abs(merged(ids).data - adapted).max()))

# %% [markdown]
# Adapters cannot be merged: their non-linearity f sits between W_down and W_up (your exercise
# `peft.adapter_block`). Prompt tuning cannot either: it lengthens the input (your exercise
# `peft.prepend_prompt`). That is the price of those methods at inference: a little more
# compute, every time.

# %% [markdown]
# ## 4. Multi-task serving
#
# One frozen model can serve many tasks, each with its own adapter: a batch comes in with its
# task's name, the adapter is switched (`set_adapter`) and the batch runs. Here one frozen
# mini-BERT serves two GCIDE tasks: a definition's part of speech, and a definition's subject
# (Zool., Bot., Med., Law, Naut., Mus. ...: the dictionary marks the field of a sense). Each task
# stores only its LoRA adapter and its head; a fully fine-tuned model per task would store the
# whole model. First, the subject task's classes and its majority baseline:

# %%
from minitl.data.text import gcide_pos, gcide_subjects  # noqa: E402

subjects = gcide_subjects(fast=FAST)
print(subjects.summary())
pos = gcide_pos(fast=FAST)
report.metric("subjects_majority_baseline", round(subjects.majority_baseline(), 4))
report.metric("pos_majority_baseline", round(pos.majority_baseline(), 4))

# %%
try:
    from minitl.models.pretraining import load_pretrained_bert
except ImportError:  # a checkout without the mini-BERT (lesson 8) yet
    load_pretrained_bert = None
    report.note("this checkout has no mini-BERT (minitl.models.pretraining): sections 4 and 5 need it")

if load_pretrained_bert is not None:
    bert = load_pretrained_bert(fast=FAST, progress=False)
    tasks = peft_table.multitask_data(bert.config["vocab_size"], min(peft_table.TEXT_TOKENS, bert.max_len), fast=FAST,
                                      n_train=500 if FAST else 2000)
    served = peft_table.serve_two_tasks(bert, tasks, r=8, steps=30 if FAST else 300, progress=False)
    rows = []
    for name, r in served.items():
        baseline = (pos if name == "pos" else subjects).majority_baseline()
        rows.append((name, round(r["accuracy"], 4), round(baseline, 4), f"{r['stored_bytes']:,}",
                     f"{r['full_copy_bytes']:,}", f"{r['full_copy_bytes'] / r['stored_bytes']:.0f}x"))
        report.metric(f"served_{name}_accuracy", round(r["accuracy"], 4))
    report.table(rows, ["task", "accuracy", "majority baseline", "bytes stored (LoRA + head)",
                        "bytes of a full copy", "saving"],
                 title="One frozen mini-BERT, two LoRA adapters switched per batch")

# %% [markdown]
# ## 5. The table
#
# Each method adapts the same pretrained model to a target task with 100 (and, outside fast
# mode, 1,000) labels: full fine-tuning, linear probing (head only), LoRA with r = 4 and 8,
# adapters, prompt tuning and prefix tuning. The columns are what each trains, what it reaches,
# what memory training needs (the trainable parameters, their gradients and Adam's two moments;
# and the measured peak of one training step) and the time per epoch. This is
# `minitl experiment peft` (one seed here; the command runs three).
#
# A comparison of methods is fair only if each trains at a learning rate that suits it: full
# fine-tuning moves pretrained weights and wants a small rate, a prompt is a handful of fresh
# vectors and wants a large one. Each method's rate was chosen by `minitl experiment peft --tune`
# on a validation split carved from the training labels, never on the test set (a rate picked
# by test accuracy would report a tuned test accuracy). The recipes:

# %%
for method, recipe in peft_table.RECIPES.items():
    print(f"{method:>12}: " + ", ".join(f"{k} {v:g}" for k, v in recipe.items()))

# %%
available = []
if load_pretrained_bert is not None:
    available.append("bert")
try:
    import minitl.pretrained_vit  # noqa: F401
    available.append("vit")
except ImportError:
    report.note("this checkout has no pretrained ViT (minitl.pretrained_vit): the table has no ViT rows")
if available:
    rows_run = peft_table.run(available, label_counts=(100,) if FAST else (100, 1000), seeds=1, fast=FAST,
                              progress=False)
    summary = peft_table.summarize(rows_run)
    print(peft_table.format_table(summary))
    report.figure(peft_table.plot(summary), "peft_table", "accuracy against trainable parameters (log axis)")
    for t in summary:
        report.metric(f"{t['task'].split(' ')[0]}_{t['labels']}_{t['method']}_accuracy", round(t["mean"], 4))
print(f"lesson 11 ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Check yourself
#
# 1. How many numbers does LoRA with r = 8 train for one 768 x 768 matrix, and what fraction of
#    the matrix is that?
# 2. By how much did the merged model's outputs differ from the adapted model's, and why not
#    exactly zero?
# 3. How many times fewer bytes does a task store with its LoRA adapter than with a full copy of
#    the mini-BERT?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 11`), make each one's tests pass:
#
# - `peft.count_trainable`: `minitl exercises check peft.count_trainable`
# - `peft.lora_forward`: `minitl exercises check peft.lora_forward`
# - `peft.lora_merge`: `minitl exercises check peft.lora_merge`
# - `peft.adapter_block`: `minitl exercises check peft.adapter_block`
# - `peft.prepend_prompt`: `minitl exercises check peft.prepend_prompt`
