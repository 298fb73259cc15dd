"""ELMo's features against word2vec's on a real task: GCIDE's part of speech.

Chapter: "Transfer learning in NLP", ELMo: "the chapter says ELMo helps; measure it". The task
is `tl.data.gcide_pos`: a dictionary definition in (its headword masked as "[MASK]"), the
headword's part of speech out (noun, adjective, verb, adverb), split by headword. Three
feature sets, each fed to the same classifier:

    word2vec   the average of the definition's static word2vec vectors (lesson 4's recipe,
               trained on GCIDE with `minitl.embeddings.Word2Vec`, cached)
    ELMo top   the top biLM layer [h_fwd^L ; h_bwd^L], averaged over the definition's tokens
    ELMo mix   gamma * sum_l softmax(s)_l * h_l over all L + 1 layers (`ScalarMix`), averaged
               over the tokens, with s and gamma learned together with the classifier

Averaging is linear, so mixing then averaging equals averaging each layer then mixing: the
layers are averaged once (a cached (N, L + 1, 2H) array) and the mix is learned on those.

**The classifier** is the same for all: each feature dimension standardised with the training
set's mean and standard deviation (each layer apart), then a linear layer to the 4 classes,
trained with Adam on the cross-entropy for the same epochs, batch size and learning rate,
from the same seed. Accuracy is measured once, on the test split, after the last epoch.

    minitl experiment elmo [--fast] [--json PATH]

The experiment also measures polysemy (`minitl.elmo.polysemy`): for "bank" and five other
two-sense words in GCIDE's sentences, how often an occurrence's nearest other occurrence has
the same sense, at each ELMo layer and with the static word2vec vector (which cannot beat
chance: it is one vector for every occurrence).

The biLM is the cached one of `minitl pretrain elmo` (made first if missing); --fast uses the
tiny biLM, word2vec on a 300,000-word slice, and the first entries of GCIDE (gcide_pos's fast).
It prints the task's class balance, the accuracy table, the learned mixture weights and the
polysemy table, and saves a figure of them.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from .. import cpu_runtime, nn, optim
from ..data import cache_dir
from ..random import manual_seed
from ..tensor import Tensor, no_grad
from ..report import save_figure

RECIPE = "v1"
# lesson 4's word2vec: skip-gram, 100 dimensions, window 5, 5 negatives, words seen 5 times
WORD2VEC = dict(vector_size=100, window=5, min_count=5, sg=1, negative=5, epochs=3, seed=1)
DEFAULT = dict(n_train=20_000, epochs=20, batch_size=256, lr=3e-3, seed=0, per_sense=40)
FAST = dict(n_train=2_000, epochs=20, batch_size=256, lr=3e-3, seed=0, per_sense=15)


def word2vec_path(fast=False):
    return cache_dir("weights") / f"word2vec_gcide_{RECIPE}{'_fast' if fast else ''}.npz"


def word2vec_vectors(fast=False, progress=True):
    """Static word vectors trained on GCIDE (lesson 4's settings; `fast`: one epoch on an
    evenly spread 300,000-word slice), cached as a KeyedVectors file."""
    from ..embeddings import KeyedVectors, Word2Vec
    from ..embeddings.corpus import load_training_corpus
    path = word2vec_path(fast)
    if path.exists():
        return KeyedVectors.load(path)
    settings = dict(WORD2VEC, epochs=1) if fast else WORD2VEC
    model = Word2Vec(**settings)
    model.build_vocab(load_training_corpus("gcide", fast=fast))
    model.train()
    model.wv.save(path)
    return KeyedVectors.load(path)


def average_vectors(wv, texts):
    """Each text's mean word vector over its words that `wv` knows (zeros when it knows none)."""
    out = np.zeros((len(texts), wv.vector_size), dtype=np.float32)
    for i, tokens in enumerate(texts):
        rows = [wv.key_to_index[t] for t in tokens if t in wv.key_to_index]
        if rows:
            out[i] = wv.vectors[rows].mean(axis=0)
    return out


def standardize(train, test):
    """(x - mean) / std per feature (and per layer), with the training set's statistics."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    return (train - mean) / std, (test - mean) / std


class Probe(nn.Module):
    """A linear classifier over features (N, D), or over layers (N, L + 1, D) mixed by a
    ScalarMix first."""

    def __init__(self, dim, num_classes, mixture_size=None):
        super().__init__()
        from ..elmo import ScalarMix
        self.mix = ScalarMix(mixture_size) if mixture_size else None
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x):
        if self.mix is not None:
            x = self.mix([x[:, l] for l in range(self.mix.mixture_size)])
        return self.linear(x)


def train_probe(x_train, y_train, x_test, y_test, num_classes, mixture=False, epochs=20, batch_size=256,
                lr=3e-3, seed=0, progress=False, desc="probe"):
    """Train a `Probe` with Adam; returns (test accuracy, the trained probe)."""
    from tqdm.auto import tqdm
    from ..ops import cross_entropy
    from ..training import train_step
    manual_seed(seed)
    probe = Probe(x_train.shape[-1], num_classes, x_train.shape[1] if mixture else None)
    optimizer = optim.Adam(probe.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(epochs), desc=desc, unit="epoch", disable=None if progress else True, leave=False):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            train_step(probe, optimizer, cross_entropy, Tensor(x_train[rows]), y_train[rows])
    with no_grad():
        predicted = probe(Tensor(x_test)).data.argmax(axis=1)
    return float(np.mean(predicted == y_test)), probe


def run(fast=False, progress=True, with_polysemy=True, **overrides):
    """The experiment; returns its results as a dict (printed by the command). `with_polysemy`:
    also measure polysemy (lesson 6 measures it apart, with its own figure)."""
    from ..data.text import gcide_corpus, gcide_pos
    from ..elmo import ELMo, load_pretrained_elmo, polysemy
    settings = dict(FAST if fast else DEFAULT, **overrides)
    wall, cpu = time.perf_counter(), time.process_time()
    data = gcide_pos(fast=fast, n_train=settings["n_train"])
    bilm, vocab = load_pretrained_elmo(fast=fast, progress=progress)
    elmo = ELMo(bilm, vocab)
    wv = word2vec_vectors(fast=fast, progress=progress)
    started_features = time.perf_counter()
    layers_train = elmo.mean_pooled(data.train.texts, progress=progress, desc="ELMo features (train)")
    layers_test = elmo.mean_pooled(data.test.texts, progress=progress, desc="ELMo features (test)")
    feature_seconds = time.perf_counter() - started_features
    y_train, y_test = data.train.labels, data.test.labels
    features = {
        "word2vec": standardize(average_vectors(wv, data.train.texts), average_vectors(wv, data.test.texts)),
        "ELMo top layer": standardize(layers_train[:, -1], layers_test[:, -1]),
        "ELMo scalar mix": standardize(layers_train, layers_test),
    }
    budget = {k: settings[k] for k in ("epochs", "batch_size", "lr", "seed")}
    accuracies, mix = {}, None
    for name, (train, test) in features.items():
        accuracies[name], probe = train_probe(train, y_train, test, y_test, len(data.classes),
                                              mixture=train.ndim == 3, progress=progress, desc=name, **budget)
        if probe.mix is not None:
            mix = probe.mix
    started_polysemy = time.perf_counter()
    rates = None
    if with_polysemy:
        _, _, rates = polysemy.measure(elmo, gcide_corpus(), static=wv, per_sense=settings["per_sense"])
    polysemy_seconds = time.perf_counter() - started_polysemy
    info = bilm.info
    return {
        "task": data.name, "summary": data.summary(), "classes": list(data.classes), "n_train": len(data.train), "n_test": len(data.test),
        "majority_baseline": data.majority_baseline(), "accuracy": accuracies,
        "mixture_weights": mix.weights().tolist(), "gamma": float(mix.gamma.data[0]),
        "dims": {"word2vec": int(wv.vector_size), "ELMo": int(elmo.output_dim)},
        "elmo_layers": elmo.num_layers, "elmo_perplexity": {k: float(v) for k, v in info["perplexity"].items()},
        "word2vec_words": len(wv), "classifier": budget, "fast": fast,
        "polysemy": rates, "polysemy_seconds": polysemy_seconds,
        "feature_seconds": feature_seconds, "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
    }


def report_lines(results):
    """The results as the lines the command prints."""
    from ..elmo import polysemy
    from ..report import markdown_table
    lines = [results["summary"],
             f"{results['task']}: {results['n_train']:,} training and {results['n_test']:,} test definitions "
             f"(majority baseline {results['majority_baseline']:.4f})",
             f"classifier: linear on standardised features, Adam, {results['classifier']}"]
    dims = {"word2vec": results["dims"]["word2vec"]}
    for name, acc in results["accuracy"].items():
        dim = dims.get(name, results["dims"]["ELMo"])
        lines.append(f"  {name:<16} {dim:>4}-d  test accuracy {acc:.4f}")
    weights = ", ".join(f"{w:.3f}" for w in results["mixture_weights"])
    lines.append(f"learned mix: softmax(s) = [{weights}] (layer 0 .. {results['elmo_layers'] - 1}), "
                 f"gamma = {results['gamma']:.3f}")
    rows, headers = polysemy.rate_table(results["polysemy"])
    lines.append(markdown_table(rows, headers, title="polysemy: 1-NN sense-match rate among the occurrences "
                                                     "of each word (leave-one-out)"))
    overall = results["polysemy"]["overall"]
    lines.append("mean cosine between two occurrences, same sense / different senses: "
                 + ", ".join(f"layer {l}: {w:.3f} / {a:.3f}"
                             for l, (w, a) in enumerate(zip(overall["within"], overall["across"]))))
    lines.append(f"ran in {results['seconds']:.0f} s wall, {results['cpu_seconds']:.0f} s CPU "
                 f"(ELMo features {results['feature_seconds']:.0f} s, polysemy {results['polysemy_seconds']:.0f} s)")
    return lines


def plot(results, path=None):
    """Three panels: the test accuracy of each feature set (and the majority class), the learned
    mixture weights, and the polysemy sense-match rate of each layer against word2vec and chance."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc, mix, poly) = plt.subplots(1, 3, figsize=(13, 3.8))
    names = ["majority", *results["accuracy"]]
    acc.bar(names, [results["majority_baseline"], *results["accuracy"].values()],
            color=["grey", "tab:green", "tab:blue", "tab:purple"])
    acc.set_ylim(0, 1)
    acc.set_ylabel("test accuracy")
    acc.set_title(results["task"])
    acc.tick_params(axis="x", labelsize=8)
    layers = [f"layer {l}" for l in range(results["elmo_layers"])]
    mix.bar(layers, results["mixture_weights"], color="tab:purple")
    mix.set_ylim(0, 1)
    mix.set_title(f"learned softmax(s), gamma = {results['gamma']:.2f}")
    overall = results["polysemy"]["overall"]
    poly.bar(["chance", "word2vec", *(f"ELMo {l}" for l in range(results["elmo_layers"]))],
             [overall["chance"], overall.get("static", float("nan")), *overall["layers"]],
             color=["grey", "tab:green", *["tab:purple"] * results["elmo_layers"]])
    poly.set_ylim(0, 1)
    poly.set_title(f"polysemy: 1-NN sense match ({len(results['polysemy']['words'])} words)")
    fig.tight_layout()
    return save_figure(fig, path)


def experiment_elmo_main(argv=None):
    """`minitl experiment elmo`: word2vec vs ELMo features on GCIDE's part of speech, and polysemy."""
    parser = argparse.ArgumentParser(prog="minitl experiment elmo", description=experiment_elmo_main.__doc__)
    parser.add_argument("--fast", action="store_true", help="small data and the tiny biLM (about a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--figure", default="minitl_output/elmo/elmo_features.png", help="where to save the figure")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    cpu_runtime.tune()  # a training run: keep freed memory, let idle BLAS threads sleep
    results = run(fast=args.fast, progress=not args.no_progress)
    print("\n".join(report_lines(results)))
    plot(results, args.figure)
    print(f"figure: {args.figure}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    experiment_elmo_main()
