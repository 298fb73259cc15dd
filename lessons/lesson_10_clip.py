# %% [markdown]
# # Lesson 10: CLIP, images and words in one space
#
# Chapter section "CLIP". A classifier's head knows a fixed list of classes; to add one, you
# label images and train again. CLIP (Radford et al. 2021) trains an image encoder and a text
# encoder together so that an image and a caption of it land close together in one space.
# Then a class is just a caption: to classify, embed "a photo of a coat." for every class and
# pick the caption nearest to the image. No classifier is trained on those classes: that is
# *zero-shot* classification, and it works for classes the training never showed, as far as
# their words relate to the words it did show.
#
# We will (1) write the symmetric contrastive loss, (2) put CLIP together from two pretrained
# encoders (the CNN of lesson 3 and the mini-BERT of lesson 8), so there is transfer on both
# sides, (3) build captions for Fashion-MNIST from class names and GCIDE's definitions, holding
# two classes out entirely, (4) train it and classify from prompts, against chance, beside a
# linear probe on the same image features.
#
# Run: `minitl lesson 10` (the pretrained encoders cached by `minitl pretrain resnet-mini` and
# `minitl pretrain bert`, each trained first when the cache has none, then the CLIP training
# of `minitl experiment clip`), or `minitl lesson 10 --fast` (tiny models, 60 training steps:
# its numbers are a tiny model's).

# %%
import math
import time

import numpy as np

from minitl import report

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401

import minitl as tl  # noqa: E402
import minitl.nn.functional as F  # noqa: E402
from minitl.data import FASHION_MNIST_CLASSES  # noqa: E402
from minitl.experiments import clip_zero_shot as experiment  # noqa: E402
from minitl.models import clip  # noqa: E402

FAST = report.fast_mode()
out = report.output_dir("lesson_10_clip")
tl.manual_seed(0)
rng = np.random.default_rng(0)
lesson_start = time.perf_counter()

# %% [markdown]
# ## 1. The contrastive loss
#
# A batch holds N images and the N captions written for them. Both encoders' outputs are
# projected to one width and L2-normalised, so a dot product is a cosine. Every image is scored
# against every caption:
#
#     logits = exp(t) I T^T                           an (N, N) matrix
#     L = ( CE(logits, diag) + CE(logits^T, diag) ) / 2
#
# Row i classifies image i among the N captions (the right one is caption i); column j
# classifies caption j among the N images. The other N - 1 pairs of the batch are the
# negatives: no labels beyond "these two belong together". t is a learned log-temperature: it
# starts at $\log(1/0.07)$, and exp(t) is clamped at 100. This is your exercise
# `clip.contrastive_loss` (`F.clip_loss`). Below: a batch whose pairs match (captions close to
# their images) against the same batch scrambled, at three temperatures, then a float64
# gradient check.

# %%
image = rng.standard_normal((8, 16))
text = image + 0.5 * rng.standard_normal((8, 16))  # caption i resembles image i
scrambled = text[rng.permutation(8)]
rows = []
for name, t in (("exp(t) = 1", 0.0), ("exp(t) = 1/0.07 (CLIP's start)", math.log(1 / 0.07)),
                ("exp(t) = 100 (the clamp)", math.log(100))):
    matched_loss = F.clip_loss(tl.tensor(image), tl.tensor(text), t).item()
    scrambled_loss = F.clip_loss(tl.tensor(image), tl.tensor(scrambled), t).item()
    rows.append((name, round(matched_loss, 4), round(scrambled_loss, 4)))
report.table(rows, ["temperature", "matched pairs", "scrambled pairs"],
             title=f"F.clip_loss on a batch of 8 pairs (a random guess costs ln 8 = {math.log(8):.4f})")
ok = tl.gradcheck(lambda i, c, s: F.clip_loss(i, c, s), image[:4, :5], text[:4, :5], np.array(1.0))
print("clip_loss passes a float64 gradient check (features and log-temperature):", ok)

# %% [markdown]
# Compare the rows. At exp(t) = 1 every logit is a cosine, in [-1, 1]: the softmax over 8
# captions cannot become confident, so even perfectly ordered similarities leave the matched
# batch's loss far above 0. A low temperature (a large exp(t)) sharpens the softmax: matched
# pairs then cost next to nothing and scrambled ones a lot, which is what makes the loss a
# strong signal. CLIP learns t; it starts at $1/0.07 = 14.3$ and is not allowed past 100.
#
# ## 2. Two pretrained encoders, two projections, one temperature
#
# The image encoder is the CNN pretrained on five Fashion-MNIST classes (lesson 3); any module
# that maps images to a feature vector plugs in (the ViT of lesson 9 through the same
# `ImageFeatures` wrapper). The text encoder is the mini-BERT pretrained on GCIDE by masked LM
# (lesson 8), its states averaged over the caption's tokens. Each is followed by a linear
# projection, without bias, to a shared width. The line below says which text initialisation
# this run has: a missing pretrained model is never silently replaced.

# %%
settings = experiment.FAST if FAST else experiment.DEFAULT
model, init = experiment.build_model(settings, FAST, progress=False)
print("text encoder:", init)
parts = {"image encoder (CNN)": model.image_encoder, "text encoder": model.text_encoder,
         "image projection": model.image_projection, "text projection": model.text_projection}
report.table([(name, f"{sum(p.numel() for p in m.parameters()):,}") for name, m in parts.items()],
             ["part", "parameters"], title="CLIP's parts")
print(f"projections: {model.image_encoder.out_features} -> {model.embed_dim} (image), "
      f"{model.text_encoder.out_features} -> {model.embed_dim} (text); "
      f"t starts at {float(model.logit_scale.data):.4f}, exp(t) = {float(np.exp(model.scale().data)):.2f}")

# %% [markdown]
# ## 3. Captions from class names and a dictionary
#
# Fashion-MNIST has labels, not captions, so we write them: each class name through six
# templates ("a photo of a coat."), and the name with its GCIDE definition through three ("a
# coat: an outer garment fitting the upper part of the body..."), the last the definition
# alone. A training pair is an image and one of its class's captions, drawn afresh at every
# step. Two classes are held out of CLIP's training entirely: none of their images, none of
# their captions. All we will give the model about them is their names and definitions, as
# prompts, at test time.

# %%
definitions = experiment.class_definitions()
captions = experiment.class_captions(definitions)
held_out = [FASHION_MNIST_CLASSES[c] for c in experiment.HELD_OUT]
report.table([(c, FASHION_MNIST_CLASSES[c], "held out" if c in experiment.HELD_OUT else "trained",
               definitions[c]) for c in range(10)], ["class", "name", "in training", "GCIDE's definition"],
             title="The classes and their definitions")
print(f"{len(captions[0])} captions per class, e.g.:", *captions[4][:2], captions[4][6], sep="\n  ")

# %% [markdown]
# ## 4. Training, then classification from prompts
#
# `minitl experiment clip` (with `--fast` here in fast mode) trains CLIP on the eight other
# classes, with AdamW, the encoders at a small learning rate and the projections and t at a
# larger one, and then classifies the test images from prompts: each class's captions are
# embedded and averaged (CLIP's prompt ensembling), and an image gets the class of the most
# similar average. Measured (a) over all 10 classes and (b) between the two held-out classes
# alone, before and after CLIP's training, against chance. Beside them, a linear probe: a
# softmax layer trained on *labelled* images of all ten classes, on the image encoder's
# features: the supervised reference that zero-shot does without.

# %%
results = experiment.run(fast=FAST, progress=False)
print("\n".join(experiment.report_lines(results)))
zs, zs_before = results["zero_shot"], results["zero_shot_before"]
for key, value in zs.items():
    report.metric("zero_shot_" + key.replace(", ", "_").replace(" ", "_").replace("-", "_"), round(value, 4))
report.metric("linear_probe_after_clip", round(results["linear_probe"], 4))
path = report.figure(experiment.plot(results), "clip_zero_shot",
                     "Contrastive loss and exp(t) during training; zero-shot and linear-probe accuracy vs chance.")

# %%
print(f"(a) zero-shot over the 10 classes: {zs['10 classes']:.3f} against chance 0.100 "
      f"({zs_before['10 classes']:.3f} before CLIP's training); on the trained classes' images "
      f"{zs['10 classes, seen images']:.3f}, on the held-out classes' images {zs['10 classes, held-out images']:.3f}")
print(f"(b) zero-shot between the held-out {held_out[0]} and {held_out[1]}: {zs['2 held-out classes']:.3f} "
      f"against chance 0.500 ({zs_before['2 held-out classes']:.3f} before)")
print(f"linear probe on CLIP's image features, 10 classes with labels: {results['linear_probe']:.3f} "
      f"(on the CNN's before CLIP: {results['linear_probe_before']:.3f})")
print("text encoder:", results["text_encoder_init"])

# A batch of 64 images of 8 classes holds about 8 of each class: for an image, the captions of
# the other images of its class are as right as its own, and nothing tells them apart. If the
# model puts its probability evenly on those k, row i costs ln k: the loss has a floor.
labels = rng.integers(0, 8, size=(500, settings["batch_size"]))
floor = np.mean([np.log(np.bincount(row)[row]).mean() for row in labels])
final_loss = float(np.mean(results["history"]["loss"][-20:]))
print(f"final training loss (mean of the last 20 steps) {final_loss:.3f}; the floor of a batch of "
      f"{settings['batch_size']} drawn from 8 classes, mean of ln k: {floor:.3f}")

# %% [markdown]
# Read the table from the printed numbers. The final loss lies above its floor by what the
# model has yet to learn: at the floor it would match images and captions as well as a batch
# of look-alike pairs allows. Before training the projections are random, so the
# "before" column is what prompts give without CLIP: compare it with chance. After training,
# the seen-images row says how well eight classes are recognised from their captions alone,
# with no classifier. In the 10-way row a held-out class's prompt has to beat all eight
# trained captions, which CLIP has learned to put near images; its images mostly go to a
# trained class. Between the two held-out classes only, (b) asks whether their words alone (a
# garment for the legs; a covering for the foot, made of leather) point towards their images.
# That is where the text encoder's pretraining has to carry the transfer, and an untrained one
# has nothing to offer: check which initialisation the run printed. With two prompts, (b) is
# nearly one bit per class (most images of a class go the same way), so a single run can land
# far from chance on either side. The linear probe shows what the same image features do
# with labels: the supervised reference for zero-shot.

# %%
print(f"lesson 10 ran in {time.perf_counter() - lesson_start:.0f} s")

# %% [markdown]
# ## Check yourself
#
# 1. In the table of section 1, what did the matched batch cost at exp(t) = 1 and at CLIP's
#    starting temperature, and why can the first not get close to 0?
# 2. How far above chance was the zero-shot accuracy over the 10 classes, and how much of it
#    came from the trained classes' images?
# 3. Between the two held-out classes, did zero-shot beat chance in your run, and which
#    text-encoder initialisation did the run use?
#
# The exercises of this lesson, in the order it meets them. In a student copy
# (`minitl exercises export DIR --lesson 10`), make each one's tests pass:
#
# - `clip.contrastive_loss`: `minitl exercises check clip.contrastive_loss`
