"""CLIP on Fashion-MNIST and GCIDE: zero-shot classification from text prompts, against chance
and beside a linear probe (chapter: transformers as foundation models, CLIP; lesson 10).

**The pairs.** A Fashion-MNIST image and a caption of its class, drawn afresh at every step
from the class's captions: a class name through several templates ("a photo of a coat.") and
the class name with GCIDE's definition of it ("a coat: an outer garment fitting the upper part
of the body ..."), or the definition alone. `CLASS_WORDS` gives each class's GCIDE headword and
the words of the sense that defines it (an entry runs its senses together, and a bag's "sac in
animal bodies" would not help), checked against GCIDE when the captions are built. GCIDE has no
"T-shirt" nor "pullover": a jersey and a sweater stand in.

**Two classes are held out** of CLIP's training entirely (`HELD_OUT`: trousers and ankle boot):
none of their images and none of their captions is trained on. Zero-shot classification
embeds, for each class, all its captions (names and definitions: prompt ensembling), and gives
an image the class whose mean caption embedding is the most similar to its own:

    (a) all 10 classes, on the whole test set          chance 1/10
        ... and its accuracy on the 8 seen and on the 2 held-out classes' images
    (b) the 2 held-out classes, between themselves      chance 1/2

the same before CLIP's training (pretrained encoders, random projections) as a baseline, and
a linear probe (a softmax layer trained on labelled images of all 10 classes) on the image
encoder's features before and after CLIP, as the supervised reference.

**The encoders**: the CNN of `minitl pretrain resnet-mini` (pretrained on classes 0, 1, 5, 7,
8) and the mini-BERT of `minitl pretrain bert` (either is trained first when not cached), both
trained on, with the projections and the temperature. The run prints which text-encoder
initialisation it used: `--text-init untrained` (or a checkout without
`minitl.models.pretraining`) gives the same architecture with fresh weights, never silently.

**The budget** (15 minutes on 2 idle cores), from CPU time measured with `time.process_time`
on one thread (BLAS and minitl's threads limited to 1) on the shared 2-core machine: a run of
300 steps took 121 s of CPU to train (0.40 s a step of 64 pairs: the CNN's forward and
backward 0.16 s, the text transformer the rest) and 57 s for everything else (data, the
zero-shot and linear-probe evaluations before and after, on 10,000 test and 10,000 probe
images). The default 1,000 steps so come to about 57 + 1000 x 0.40 = 460 s of CPU, under 8
minutes, which one process on an idle 2-core machine takes at most in wall time. A text
encoder not yet cached is pretrained first, on its own budget (`minitl pretrain bert`).
`--fast` trains 60 steps on a slice, with the tiny models, for tests and the lesson (21 s of
CPU for the whole lesson 10 on one thread).

    minitl experiment clip [--fast] [--json PATH] [--steps N] [--text bert|gpt]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from .. import cpu_runtime, nn, optim, transfer
from ..data import FASHION_MNIST_CLASSES, fashion_mnist
from ..models import resnet_mini
from ..models.clip import (CLIP, ContrastiveObjective, ImageFeatures, image_embeddings, passthrough_loss,
                           text_encoder, zero_shot_classifier, zero_shot_predict)
from ..pretrained import SOURCE_CLASSES, load_pretrained, normalize
from ..random import manual_seed
from ..tensor import Tensor
from ..training import train_step
from ..report import save_figure

# class -> (its name in captions, the GCIDE headword that defines it, the words of its sense there)
CLASS_WORDS = {
    0: ("t-shirt", "Jersey", "a closefitting jacket or upper garment made of an elastic fabric"),
    1: ("trousers", "Trousers", "a garment worn by men and boys extending from the waist to the knee or to the "
                                "ankle and covering each leg separately"),
    2: ("pullover", "Sweater", "a woolen jacket or jersey worn by athletes"),
    3: ("dress", "Dress", "a lady's gown"),
    4: ("coat", "Coat", "an outer garment fitting the upper part of the body especially such a garment worn by men"),
    5: ("sandal", "Sandal", "a kind of shoe consisting of a sole strapped to the foot"),
    6: ("shirt", "Shirt", "a loose under garment for the upper part of the body made of cotton linen or other "
                          "material"),
    7: ("sneaker", "Sneaker", "a type of soft shoe with a flat pliable typically rubber or other soft sole and "
                              "canvas like upper"),
    8: ("bag", "Bag", "a sack or pouch used for holding anything"),
    9: ("ankle boot", "Boot", "a covering for the foot and lower part of the leg ordinarily made of leather"),
}
HELD_OUT = (1, 9)  # trousers and ankle boot: no image, no caption of theirs is trained on
NAME_TEMPLATES = ("a photo of {a} {name}.", "{a} {name}.", "a picture of the {name}.", "a grey photo of {a} {name}.",
                  "a small image of {a} {name}.", "this is {a} {name}.")
DEFINITION_TEMPLATES = ("{a} {name}: {definition}.", "a photo of {a} {name}, {definition}.", "{definition}.")
CAPTION_TOKENS = 40  # a caption's subwords, [CLS] and [SEP] included (fast: the tiny model's 32)

DEFAULT = dict(steps=1000, batch_size=64, lr=3e-4, projection_lr=3e-3, embed_dim=64, weight_decay=0.1,
               n_probe=10_000, n_test=None, probe_epochs=30, seed=0, text="bert",
               text_init="pretrained")
FAST = dict(DEFAULT, steps=60, n_probe=1_000, n_test=1_000, probe_epochs=30)


def class_definitions(texts_by_headword=None):
    """{class: its sense in GCIDE (CLASS_WORDS), checked against `tl.data.gcide_pos`'s noun
    entries of the headword, whose text must hold it (the masked headword counts as the class
    name's place)."""
    if texts_by_headword is None:
        texts_by_headword = _noun_definitions({headword for _, headword, _ in CLASS_WORDS.values()})
    definitions = {}
    for label, (name, headword, sense) in CLASS_WORDS.items():
        wanted = sense.split()
        for words in texts_by_headword.get(headword, []):
            if any(words[i:i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1)):
                definitions[label] = sense
                break
        else:
            raise LookupError(f"GCIDE has no noun entry {headword!r} whose definition holds {sense!r} "
                              f"(class {label}, {FASHION_MNIST_CLASSES[label]})")
    return definitions


def _noun_definitions(headwords):
    from ..data import gcide_pos

    data = gcide_pos(max_tokens=None)
    found = {}
    for split in data.splits.values():
        for words, label, headword in zip(split.texts, split.labels, split.headwords):
            if headword in headwords and data.classes[label] == "noun":
                found.setdefault(headword, []).append(list(words))
    return found


def class_captions(definitions):
    """{class: its captions}: every name template, then every definition template."""
    captions = {}
    for label, (name, _, _) in CLASS_WORDS.items():
        words = dict(name=name, a="an" if name[0] in "aeiou" else "a", definition=definitions[label])
        captions[label] = [t.format(**words) for t in NAME_TEMPLATES + DEFINITION_TEMPLATES]
    return captions


def load_images(split, n=None, classes=None, seed=0):
    """Normalised images (N, 1, 28, 28) and labels of a Fashion-MNIST split, of `classes` only
    (all when None), the first n of a seeded shuffle (all when None)."""
    images, labels = fashion_mnist(split)
    keep = np.flatnonzero(np.isin(labels, classes) if classes is not None else np.ones(len(labels), bool))
    keep = np.random.default_rng(seed).permutation(keep)[:n]
    return normalize(images[keep]), labels[keep].astype(np.int64)


def build_model(settings, fast, progress=True):
    """(CLIP, the text encoder's initialisation as a sentence)."""
    state = load_pretrained(fast=fast, progress=progress)
    cnn = resnet_mini(len(SOURCE_CLASSES), **state["config"])
    cnn.load_state_dict(state["weights"])
    pretrained = settings["text_init"] == "pretrained"  # trained first when not cached, as other experiments do
    text, init = text_encoder(settings["text"], fast=fast, pretrained=pretrained, train_if_missing=pretrained,
                              progress=progress)
    return CLIP(ImageFeatures(cnn), text, settings["embed_dim"]), init


def train_clip(model, images, labels, captions, tokenizer, settings, progress=True):
    """Contrastive training for settings["steps"] steps of `train_step` on batches of (image,
    a random caption of its class); returns the history {"step", "loss", "scale"}."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(settings["seed"])
    flat, owner = [], []
    for label, texts in captions.items():
        flat += texts
        owner += [label] * len(texts)
    owner = np.asarray(owner)
    encoded = tokenizer(flat, max_length=min(CAPTION_TOKENS, model.text_encoder.backbone.config["max_len"]))
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    choices = {label: np.flatnonzero(owner == label) for label in captions}
    projections = [*model.image_projection.parameters(), *model.text_projection.parameters(), model.logit_scale]
    encoders = [*model.image_encoder.parameters(), *model.text_encoder.parameters()]
    optimizer = optim.AdamW([{"params": encoders, "lr": settings["lr"]},
                             {"params": projections, "lr": settings["projection_lr"]}],
                            lr=settings["lr"], weight_decay=settings["weight_decay"])
    steps = settings["steps"]
    scheduler = optim.lr_scheduler.warmup_cosine(optimizer, max(1, steps // 20), steps)
    objective = ContrastiveObjective(model)
    history = {"step": [], "loss": [], "scale": []}
    model.train()
    bar = tqdm(range(1, steps + 1), desc="CLIP training", disable=not progress, mininterval=2)
    order = iter(())
    for step in bar:
        batch = [i for i, _ in zip(order, range(settings["batch_size"]))]
        if len(batch) < settings["batch_size"]:  # a new pass over the images, in a new order
            order = iter(rng.permutation(len(images)))
            batch = [i for i, _ in zip(order, range(settings["batch_size"]))]
        batch = np.asarray(batch)
        rows = np.array([rng.choice(choices[label]) for label in labels[batch]])
        width = int(mask[rows].sum(axis=1).max())  # trim the padding every caption of the batch has
        loss, _ = train_step(objective, optimizer, passthrough_loss,
                             (Tensor(images[batch]), ids[rows, :width], mask[rows, :width]), None, scheduler)
        history["step"].append(step)
        history["loss"].append(float(loss.item()))
        history["scale"].append(float(np.exp(model.scale().data)))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(history['loss'][-10:]):.3f}", scale=f"{history['scale'][-1]:.1f}")
    model.eval()
    return history


def zero_shot(model, captions, tokenizer, test_images, test_labels):
    """The zero-shot accuracies (a) over the 10 classes (all test images, then the seen and the
    held-out classes' images apart) and (b) between the two held-out classes."""
    max_length = min(CAPTION_TOKENS, model.text_encoder.backbone.config["max_len"])
    classes = zero_shot_classifier(model, [captions[c] for c in range(10)],
                                   lambda texts: tokenizer(texts, max_length=max_length))
    embedded = image_embeddings(model, test_images)
    predicted = zero_shot_predict(embedded, classes)
    held = np.isin(test_labels, HELD_OUT)
    correct = predicted == test_labels
    held_out_only = np.asarray(HELD_OUT)[zero_shot_predict(embedded[held], classes[list(HELD_OUT)])]
    return {"10 classes": float(correct.mean()), "10 classes, seen images": float(correct[~held].mean()),
            "10 classes, held-out images": float(correct[held].mean()),
            "2 held-out classes": float((held_out_only == test_labels[held]).mean())}


def linear_probe(model, x_train, y_train, x_test, y_test, epochs, seed=0):
    """Test accuracy of a softmax layer trained (Adam, cached features) on the image encoder's
    features, standardised with the training set's statistics."""
    train = transfer.extract_features(model.image_encoder, x_train, features=model.image_encoder)
    test = transfer.extract_features(model.image_encoder, x_test, features=model.image_encoder)
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    manual_seed(seed)
    head = nn.Linear(train.shape[1], 10)
    loader = transfer.make_loader((train - mean) / std, y_train, batch_size=128)
    optimizer = optim.Adam(head.parameters(), lr=1e-2)
    transfer.train_steps(head, loader, optimizer, epochs=epochs)
    return transfer.accuracy(head, (test - mean) / std, y_test)


def run(fast=False, progress=True, **overrides):
    """The whole experiment; returns the results as a dict (see `report_lines`)."""
    from ..data import gcide_tokenizer

    wall, cpu = time.perf_counter(), time.process_time()
    settings = dict(FAST if fast else DEFAULT, **{k: v for k, v in overrides.items() if v is not None})
    manual_seed(settings["seed"])
    definitions = class_definitions()
    captions = class_captions(definitions)
    seen = [c for c in range(10) if c not in HELD_OUT]
    model, init = build_model(settings, fast, progress)
    if progress:
        print(f"text encoder: {init}")
    tokenizer = gcide_tokenizer(model.text_encoder.backbone.config["vocab_size"])
    x_train, y_train = load_images("train", None if not fast else 3_000, seen, settings["seed"])
    x_probe, y_probe = load_images("train", settings["n_probe"], None, settings["seed"] + 1)
    x_test, y_test = load_images("test", settings["n_test"], None, settings["seed"] + 2)
    before = zero_shot(model, captions, tokenizer, x_test, y_test)
    probe_before = linear_probe(model, x_probe, y_probe, x_test, y_test, settings["probe_epochs"], settings["seed"])
    train_wall, train_cpu = time.perf_counter(), time.process_time()
    history = train_clip(model, x_train, y_train, {c: captions[c] for c in seen}, tokenizer, settings, progress)
    train_wall, train_cpu = time.perf_counter() - train_wall, time.process_time() - train_cpu
    after = zero_shot(model, captions, tokenizer, x_test, y_test)
    probe_after = linear_probe(model, x_probe, y_probe, x_test, y_test, settings["probe_epochs"], settings["seed"])
    return {
        "text_encoder_init": init, "settings": settings, "fast": fast,
        "classes": list(FASHION_MNIST_CLASSES), "held_out": [FASHION_MNIST_CLASSES[c] for c in HELD_OUT],
        "definitions": {FASHION_MNIST_CLASSES[c]: d for c, d in definitions.items()},
        "n_train_images": int(len(x_train)), "n_test_images": int(len(x_test)), "n_probe_images": int(len(x_probe)),
        "chance": {"10 classes": 0.1, "2 held-out classes": 0.5},
        "zero_shot_before": before, "zero_shot": after,
        "linear_probe_before": probe_before, "linear_probe": probe_after,
        "history": history, "final_scale": history["scale"][-1],
        "train_seconds": train_wall, "train_cpu_seconds": train_cpu,
        "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
    }


def report_lines(results):
    """The results as the lines the command prints: a table of accuracies against chance."""
    s = results["settings"]
    lines = [f"text encoder: {results['text_encoder_init']}",
             f"CLIP trained {s['steps']} steps of {s['batch_size']} pairs on {results['n_train_images']:,} images of "
             f"8 classes (held out: {', '.join(results['held_out'])}); exp(t) ended at {results['final_scale']:.1f}",
             f"tested on {results['n_test_images']:,} test images; linear probes on "
             f"{results['n_probe_images']:,} labelled training images of all 10 classes",
             "", "| accuracy | chance | before CLIP | after CLIP |", "|---|---:|---:|---:|"]
    for key in results["zero_shot"]:
        chance = results["chance"]["2 held-out classes" if key.startswith("2") else "10 classes"]
        lines.append(f"| zero-shot, {key} | {chance:.3f} | {results['zero_shot_before'][key]:.3f} "
                     f"| {results['zero_shot'][key]:.3f} |")
    lines.append(f"| linear probe, 10 classes | 0.100 | {results['linear_probe_before']:.3f} "
                 f"| {results['linear_probe']:.3f} |")
    lines += ["", f"CLIP training {results['train_seconds']:.0f} s wall, {results['train_cpu_seconds']:.0f} s CPU; "
              f"whole run {results['seconds']:.0f} s wall, {results['cpu_seconds']:.0f} s CPU"]
    return lines


def plot(results, path=None):
    """The contrastive loss and exp(t) over the steps, and the accuracies against chance."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = results["history"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(history["step"], history["loss"], lw=0.6, label="contrastive loss")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    twin = left.twinx()
    twin.plot(history["step"], history["scale"], color="tab:red", label="exp(t)")
    twin.set_ylabel("exp(t)", color="tab:red")
    left.set_title("CLIP training")
    names = [*results["zero_shot"], "linear probe"]
    after = [*results["zero_shot"].values(), results["linear_probe"]]
    before = [*results["zero_shot_before"].values(), results["linear_probe_before"]]
    chance = [0.5 if n.startswith("2") else 0.1 for n in names]
    at = np.arange(len(names))
    right.bar(at - 0.2, before, 0.4, label="before CLIP", color="tab:gray")
    right.bar(at + 0.2, after, 0.4, label="after CLIP", color="tab:blue")
    right.scatter(at, chance, marker="_", s=600, color="black", label="chance", zorder=3)
    right.set_xticks(at, [n.replace(", ", ",\n") for n in names], fontsize=7)
    right.set_ylim(0, 1)
    right.set_ylabel("test accuracy")
    right.legend(fontsize=8)
    right.set_title("zero-shot from prompts vs a linear probe")
    fig.tight_layout()
    return save_figure(fig, path)


def experiment_clip_main(argv=None):
    """`minitl experiment clip`: CLIP on Fashion-MNIST with GCIDE captions, zero-shot vs chance."""
    parser = argparse.ArgumentParser(prog="minitl experiment clip", description=experiment_clip_main.__doc__)
    parser.add_argument("--fast", action="store_true", help="60 steps on a slice, the tiny models (about a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--figure", default="minitl_output/clip/clip_zero_shot.png")
    parser.add_argument("--steps", type=int, default=None, help=f"training steps (default {DEFAULT['steps']})")
    parser.add_argument("--text", choices=("bert", "gpt"), default=None, help="the text encoder (default bert)")
    parser.add_argument("--text-init", choices=("pretrained", "untrained"), default=None,
                        help="the text encoder's start (default pretrained: `minitl pretrain bert`, trained first "
                             "when not cached; untrained: the same architecture, fresh weights)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be positive, got {args.steps}")
    cpu_runtime.tune()
    results = run(fast=args.fast, progress=not args.no_progress, steps=args.steps, text=args.text,
                  text_init=args.text_init)
    print("\n".join(report_lines(results)))
    plot(results, args.figure)
    print(f"figure: {args.figure}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    experiment_clip_main()
