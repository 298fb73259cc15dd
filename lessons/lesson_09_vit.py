# %% [markdown]
# # Lesson 9: the Vision Transformer, an image as a sequence of patches
#
# Chapter section "ViT". Lesson 8 built the Transformer encoder for text. Dosovitskiy et al.
# (2021) feed it images with almost no change: cut the image into patches, treat each patch
# as a word. The encoder does not know it is looking at a picture; everything it knows about
# space is in the position embeddings.
#
#     z_0 = [x_cls; x_1 E; x_2 E; ...; x_N E] + E_pos
#
# x_i is patch i flattened to a vector of C p^2 pixels, E the patch embedding (one matrix),
# x_cls a learned token put in front, E_pos one learned vector per position. After the
# encoder, the CLS token's output is the image's feature, and a linear head classifies it.
#
# We will (1) cut images into patches with a reshape, (2) build z_0, (3) pretrain a small ViT
# on the CNN's source task (Fashion-MNIST classes 0, 1, 5, 7, 8) and look at what its
# position embeddings learned, (4) interpolate them to another image size, (5) put the ViT
# through the transfer table beside the CNN of lesson 3, and (6) look at where the CLS token
# attends.
#
# Run: `minitl lesson 9` (uses the ViT cached by `minitl pretrain vit`, and trains it first
# when the cache has none), or `minitl lesson 9 --fast` (a tiny ViT trained on 3,000 images in
# seconds; its numbers are a tiny model's).
#
# Read alongside: `minitl/models/vit.py`, `minitl/pretrained_vit.py`,
# `minitl/experiments/transfer_table.py`.

# %%
import time

import numpy as np

from minitl import report

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import minitl as tl  # noqa: E402
from minitl import transfer  # noqa: E402
from minitl.data import FASHION_MNIST_CLASSES  # noqa: E402
from minitl.experiments import transfer_table as table  # noqa: E402
from minitl.models.vit import PatchEmbed, interpolate_pos_embed, patchify, resize_bilinear  # noqa: E402
from minitl.pretrained import MEAN, SOURCE_CLASSES, STD, TARGET_CLASSES, task  # noqa: E402
from minitl.pretrained_vit import (attention_examples, load_pretrained_vit, plot_attention_maps,  # noqa: E402
                                   source_vit)

FAST = report.fast_mode()
out = report.output_dir("lesson_09_vit")
tl.manual_seed(0)
lesson_start = time.perf_counter()
x_source_test, y_source_test = task(SOURCE_CLASSES, "test")
if FAST:
    x_source_test, y_source_test = x_source_test[:1000], y_source_test[:1000]

# %% [markdown]
# ## 1. Patches by reshape
#
# A 28x28 image with p = 4 has a 7x7 grid of patches. Cutting it needs no loop: the axes
# (C, H, W) are split as (C, H/p, p, W/p, p), reordered so that the grid axes come first,
# (H/p, W/p, C, p, p), and each patch's C p p numbers are flattened into one vector. That
# reshape is your exercise `vit.patch_embed`. Below, the patches of one image, and the
# patchified image against patches cut one by one with slices.

# %%
image = x_source_test[:1]  # (1, 1, 28, 28)
patches = patchify(tl.tensor(image), 4).numpy()
print("image", image.shape, "-> patches", patches.shape, "(N, (H/p)(W/p), C p p)")
by_hand = np.stack([image[0, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].reshape(-1) for i in range(7) for j in range(7)])
fig, axes = plt.subplots(7, 7, figsize=(3.5, 3.5))
for k, ax in enumerate(axes.flat):
    ax.imshow(patches[0, k].reshape(4, 4), cmap="gray", vmin=image.min(), vmax=image.max())
    ax.axis("off")
fig.suptitle(f"a {FASHION_MNIST_CLASSES[SOURCE_CLASSES[y_source_test[0]]]} as 49 patches of 4x4", fontsize=9)
report.figure(fig, "patches", "one test image cut into its 7x7 grid of 4x4 patches")
print("patches equal to slices cut one by one:", np.array_equal(patches[0], by_hand))

# %% [markdown]
# The projection x_i E is one Linear layer applied to every patch. A p x p convolution with
# stride p computes exactly the same numbers: each output position reads one patch, through
# the same D filters. Many ViT implementations write it as that convolution; here it is
# written as what it is. Below, `PatchEmbed` against `tl.nn.Conv2d(1, D, 4, stride=4)` with
# the same weights.

# %%
embed = PatchEmbed(img_size=28, patch_size=4, in_chans=1, embed_dim=16)
conv = tl.nn.Conv2d(1, 16, 4, stride=4)
conv.weight.data[...] = embed.proj.weight.data.reshape(16, 1, 4, 4)
conv.bias.data[...] = embed.proj.bias.data
with tl.no_grad():
    tokens = embed(tl.tensor(image)).numpy()
    conv_tokens = conv(tl.tensor(image)).numpy().reshape(1, 16, 49).transpose(0, 2, 1)
print("tokens", tokens.shape, "| largest difference from the stride-4 convolution:",
      f"{np.abs(tokens - conv_tokens).max():.1e}")

# %% [markdown]
# ## 2. The CLS token and the position embeddings
#
# The encoder treats its input as a *set*: permute the patch tokens and its outputs are
# permuted the same way. Position embeddings break the symmetry: E_pos adds to each token a
# learned vector that says where it sits. The CLS token is one more learned vector, the same
# for every image, put in front; it has no patch of its own, and through attention it gathers
# from all patches what the head needs. Below, z_0 of the model (`ViTEmbeddings`) against the
# equation written out.

# %%
model = tl.models.vit_mini(5, embed_dim=16, depth=1, num_heads=2, mlp_dim=32)
emb = model.embeddings
with tl.no_grad():
    z0 = emb(tl.tensor(image)).numpy()
x_e = patchify(tl.tensor(image), 4).numpy() @ emb.patch_embed.proj.weight.data.T + emb.patch_embed.proj.bias.data
by_equation = np.concatenate([emb.cls_token.data, x_e], axis=1) + emb.pos_embed.data
print(f"z_0 {z0.shape}: 1 CLS token and 49 patch tokens of width 16; "
      f"largest difference from [x_cls; x_i E] + E_pos: {np.abs(z0 - by_equation).max():.1e}")
print(f"E: {emb.patch_embed.proj.weight.shape}, x_cls: {emb.cls_token.shape}, E_pos: {emb.pos_embed.shape}")

# %% [markdown]
# ## 3. A ViT pretrained on the source task
#
# `load_pretrained_vit()` trains a ViT on the source task's 30,000 training images once, with
# AdamW and a warm-up then cosine decay of the learning rate, and caches its weights as .npz
# under `~/.cache/minitl/weights` (`minitl pretrain vit` does the same and prints the times).
# Its size and its accuracy on the source classes' test images:

# %%
start = time.perf_counter()
state = load_pretrained_vit(fast=FAST)
vit = source_vit(state)
config = dict(state["config"])
print(f"loaded in {time.perf_counter() - start:.1f} s; config {config}; {vit.num_parameters():,} parameters")
print(f"trained {int(state['epochs'])} epochs in {float(state['seconds']):.0f} s ({float(state['cpu_seconds']):.0f} s "
      f"of CPU); source test accuracy {float(state['source_accuracy']):.4f}")
report.metric("vit_source_test_accuracy", round(float(state["source_accuracy"]), 4))

# %% [markdown]
# What did the position embeddings learn? Nothing told the model that patch (2, 3) is next to
# patch (2, 4). Below, for a few positions, the cosine similarity of its E_pos with the E_pos
# of every other position, drawn on the 7x7 grid. A model that learned the geometry of the
# grid shows each position most similar to itself and to its neighbours; the printed number
# is the mean similarity of grid neighbours against that of positions three or more steps
# apart.

# %%
pos = vit.embeddings.pos_embed.data[0, 1:]  # (49, D): the patch positions, CLS left out
unit = pos / np.linalg.norm(pos, axis=1, keepdims=True)
similarity = unit @ unit.T
grid = vit.patch_embed.grid_size
rows_, cols_ = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
distance = np.abs(rows_[:, None] - rows_[None]) + np.abs(cols_[:, None] - cols_[None])
near, far = similarity[distance == 1].mean(), similarity[distance >= 3].mean()
shown = [0, 3, 6, 24, 42, 48]
fig, axes = plt.subplots(1, len(shown), figsize=(1.7 * len(shown), 2))
for ax, k in zip(axes, shown):
    ax.imshow(similarity[k].reshape(grid), cmap="viridis", vmin=-1, vmax=1)
    ax.set_title(f"position ({k // grid[1]}, {k % grid[1]})", fontsize=7)
    ax.axis("off")
report.figure(fig, "pos_embed_similarity", "cosine similarity of one position's embedding with all others")
print(f"mean cosine similarity of E_pos: grid neighbours {near:.3f}, positions 3+ steps apart {far:.3f}")
report.metric("pos_embed_similarity_neighbours", round(float(near), 3))
report.metric("pos_embed_similarity_far", round(float(far), 3))

# %% [markdown]
# ## 4. Position embeddings for another image size
#
# E, the encoder and the head do not care how many patches there are: attention takes any
# number of tokens. Only E_pos has one row per position of the training grid. To run the model
# on larger images (a common last step of ViT pretraining: fine-tune at a higher resolution),
# the 7x7 grid of position vectors is resampled to the new grid, bilinearly, as an image of D
# channels. The CLS entry is kept. The resampling is your exercise
# `vit.interpolate_pos_embed`: output index i reads the old grid at
# s = (i + 1/2) old/new - 1/2 and blends its two neighbours.
#
# Below, the source test images enlarged to 36x36 (by the same bilinear resize), read by the
# model with its E_pos interpolated to 9x9, against the same model with E_pos set to zero
# (the model then sees the patches but not where they are).

# %%
bigger = resize_bilinear(x_source_test, (36, 36), axes=(2, 3)).astype(np.float32)
acc_28 = transfer.accuracy(vit, x_source_test, y_source_test)
vit_36 = source_vit(state).set_image_size(36)
acc_36 = transfer.accuracy(vit_36, bigger, y_source_test)
vit_36.embeddings.pos_embed.data[...] = 0
acc_no_pos = transfer.accuracy(vit_36, bigger, y_source_test)
print(f"E_pos {vit.embeddings.pos_embed.shape} -> {source_vit(state).set_image_size(36).embeddings.pos_embed.shape}")
report.table([("28x28, trained E_pos (7x7)", round(acc_28, 4)),
              ("36x36, E_pos interpolated to 9x9", round(acc_36, 4)),
              ("36x36, E_pos set to zero", round(acc_no_pos, 4))],
             ["input", "source test accuracy"], title=f"the source model on {len(y_source_test):,} test images")
report.metric("accuracy_36_interpolated", round(acc_36, 4))
report.metric("accuracy_36_no_positions", round(acc_no_pos, 4))

# %% [markdown]
# ## 5. The ViT in the transfer table, beside the CNN
#
# The target task is lesson 3's: classes 2, 3, 4, 6, 9 with only N labels. The strategies and
# their budgets are the same (`minitl/experiments/transfer_table.py`); only the network
# changes. For the ViT the "lower blocks" of `finetune_frozen_lower` are the patch embedding
# (E, x_cls and E_pos together) and the first two encoder layers, gradual unfreezing unfreezes
# one encoder layer per stage, and the fine-tuning rate is lower than the CNN's. The lesson
# runs one seed (fast mode: N = 100 only, tiny source models, 500 test images); the chapter's
# table with three seeds is `minitl experiment transfer --model vit`.

# %%
data = table.load_target(FAST)
sizes = (100,) if FAST else (100, 1000)
rows = []
for name in ("resnet-mini", "vit"):
    spec = table.source_model(name)
    source_state = spec.load_state(FAST, False)
    cache = transfer.FeatureCache(table.pretrained_model(source_state, len(TARGET_CLASSES), spec), head=spec.head)
    for n in sizes:
        for strategy in table.STRATEGIES:
            row = table.run_one(strategy, n, 0, data, source_state, cache, fast=FAST, model=spec)
            rows.append(row)
            print(f"{name:<12} N={n:<6,} {strategy:<24} accuracy {row['accuracy']:.3f}  "
                  f"trainable {row['trainable_params']:>7,}  {row['seconds']:.1f} s")
summary = table.summarize(rows)
report.table([[t["model"], t["approach"], t["labels"], f"{t['mean']:.3f}", t["trainable_params"]] for t in summary],
             headers=["model", "approach", "labels", "accuracy", "trainable params"],
             title="Target test accuracy (classes 2, 3, 4, 6, 9), one seed")
report.figure(table.plot(summary), "transfer_vit_cnn", "target test accuracy, CNN (solid) and ViT (dashed)")
for n in sizes:
    for name in ("resnet-mini", "vit"):
        got = {t["approach"]: t["mean"] for t in summary if t["labels"] == n and t["model"] == name}
        best = max((s for s in got if s != "scratch"), key=got.get)
        print(f"N={n:,} {name}: best pretrained strategy {best} {got[best]:.3f} against scratch {got['scratch']:.3f} "
              f"({100 * (got[best] - got['scratch']):+.1f} points)")
        report.metric(f"{name}_best_minus_scratch_at_{n}", round(got[best] - got["scratch"], 4))

# %% [markdown]
# A ViT has no convolution's built-in assumptions: that nearby pixels belong together, and
# that a pattern means the same thing wherever it appears. It must learn them from data, which
# is why ViTs trained from scratch on small data sets lose to CNNs, and why pretraining matters
# even more for them than for a CNN. Compare, in the rows above, the gap between scratch and
# the best pretrained strategy for each network.

# %% [markdown]
# ## 6. Where the CLS token looks
#
# In the last encoder layer, row 0 of each head's attention weights says how much the CLS
# token reads from each patch. Below, drawn over the images, for test images of the source
# classes and of the target classes (which the model never saw). The last column is the
# attention *rollout* (Abnar and Zuidema 2020): the heads averaged, the residual connection
# added as 1/2 I, and the layers' matrices multiplied, which follows attention through all
# layers down to the patches. A title says the true class, and the model's guess when it is
# wrong (for the target classes there is no right answer among the source classes: the
# guess shows which source class the garment looks like to the model).

# %%
images, labels, names = attention_examples(SOURCE_CLASSES)
report.figure(plot_attention_maps(vit, images, labels, names), "attention_source",
              "CLS attention per head of the last layer, and the rollout, on source-class test images")
target_images, target_labels, target_names = attention_examples(TARGET_CLASSES)
report.figure(plot_attention_maps(vit, target_images, target_labels, target_names, guess_names=names),
              "attention_target", "the same for target-class images the model never saw (with the source class it guessed)")
weights = vit.attention_maps(images)[-1][:, :, 0, 1:]
pixels = images[:, 0] * STD + MEAN  # back to [0, 1]: the background is 0
on_object = (pixels.reshape(len(images), 7, 4, 7, 4).mean(axis=(2, 4)) > 0.1).reshape(len(images), 1, -1)
share = float((weights * on_object).sum(-1).mean())
print(f"share of the CLS token's last-layer attention on patches that hold part of the garment: {share:.2f} "
      f"(those patches are {on_object.mean():.2f} of the grid)")
report.metric("cls_attention_on_garment", round(share, 3))
print(f"lesson ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Check yourself
#
# 1. How did the pretrained model's accuracy on 36x36 images with interpolated position
#    embeddings compare with its accuracy at 28x28, and with E_pos set to zero? What does
#    the last number say about what the encoder learned from E_pos?
# 2. Are neighbouring positions' embeddings more alike than distant ones' in the printed
#    similarities, although nothing told the model where a patch sits?
# 3. At N = 100, by how many points did the best pretrained strategy beat scratch for the
#    ViT, and for the CNN?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 9`), make each one's tests pass:
#
# - `vit.patch_embed`: `minitl exercises check vit.patch_embed`
# - `vit.interpolate_pos_embed`: `minitl exercises check vit.interpolate_pos_embed`
