"""ULMFiT (minitl/ulmfit.py, minitl/experiments/ulmfit.py) and its three ideas.

* concat pooling respects padding: a padded step never wins the max nor enters the mean, and
  h_T is the last real step; the classifier gives a text the same logits however padded;
* slanted triangular rates (exercise ulmfit.slanted_triangular) against the paper's formula;
* discriminative rates (exercise ulmfit.discriminative_lr): one group per layer group, 2.6
  times slower going down;
* gradual unfreezing (exercise ulmfit.gradual_unfreezing): one more group per stage, one Adam
  whose moments survive the stages;
* LM fine-tuning lowers the held-out LM loss on a tiny case; the stream and its windows; new
  words start as the mean word; the fine-tuned LM's cache;
* `minitl experiment ulmfit --fast` end to end in a subprocess.
"""
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minitl as tl
from minitl import transfer, ulmfit
from minitl.data.text import Vocab
from minitl.elmo.bilm import LanguageModel

ROOT = Path(__file__).resolve().parent.parent


def tiny_lm(vocab_size=12, hidden=6, layers=2, seed=0):
    tl.manual_seed(seed)
    return LanguageModel(tl.nn.Embedding(vocab_size, hidden), tl.nn.Linear(hidden, vocab_size), layers)


def tiny_classifier(num_classes=3, **kwargs):
    return ulmfit.classifier_from_lm(tiny_lm(**kwargs), num_classes, dropout=0.0)


def padded_ids(lengths, vocab_size=12, width=None, seed=0):
    """Rows `<s> tokens <s>` of the given total lengths, then <pad> (0) up to `width`."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), width or max(lengths)), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(3, vocab_size, n)
        ids[row, 0] = ids[row, n - 1] = 1
    return ids


# --------------------------------------------------------------------------- concat pooling

def test_concat_pool_ignores_padded_steps(rng):
    lengths = np.array([3, 1, 5])
    outputs = rng.standard_normal((3, 5, 4))
    real = np.arange(5)[None, :] < lengths[:, None]
    outputs[~real] = 100.0          # padding that would win every max and pull every mean
    outputs[1, 0] = -3.0            # a one-step row whose only value is below the padding's
    x = tl.tensor(outputs, requires_grad=True)
    pooled = ulmfit.concat_pool(x, lengths)
    assert pooled.shape == (3, 12)
    for b, n in enumerate(lengths):
        last, high, mean = np.split(pooled.data[b], 3)
        np.testing.assert_allclose(last, outputs[b, n - 1], rtol=1e-6)
        np.testing.assert_allclose(high, outputs[b, :n].max(axis=0), rtol=1e-6)
        np.testing.assert_allclose(mean, outputs[b, :n].mean(axis=0), rtol=1e-6)
    pooled.sum().backward()
    assert np.all(x.grad[~real] == 0)   # nothing flows back to a padded step


def test_concat_pool_gradient_is_correct():
    lengths = np.array([2, 4])
    values = np.random.default_rng(1).standard_normal((2, 4, 3))
    assert tl.gradcheck(lambda h: ulmfit.concat_pool(h, lengths), values)


def test_the_classifier_gives_the_same_logits_however_padded():
    model = tiny_classifier()
    model.eval()
    ids = padded_ids([4, 7, 2])
    wider = np.concatenate([ids, np.zeros((3, 5), dtype=np.int64)], axis=1)
    with tl.no_grad():
        np.testing.assert_allclose(model(wider).data, model(ids).data, rtol=1e-6, atol=1e-7)
        alone = model(ids[2:3, :2]).data          # the short text in a batch of its own
    np.testing.assert_allclose(alone, model(ids).data[2:3], rtol=1e-6, atol=1e-7)
    assert model(ids).shape == (3, 3)


def test_a_row_of_padding_only_is_an_error():
    with pytest.raises(ValueError, match="only padding"):
        tiny_classifier()(np.array([[1, 5, 1], [0, 0, 0]]))


# --------------------------------------------------------------------------- STLR

def paper_stlr(t, T, cut_frac=0.1, ratio=32):
    """Howard & Ruder (2018), eq. 3, as a fraction of eta_max."""
    cut = math.floor(T * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return (1 + p * (ratio - 1)) / ratio


@pytest.mark.exercise("ulmfit.slanted_triangular")
def test_slanted_triangular_follows_the_paper():
    from minitl.optim.lr_scheduler import slanted_triangular_factor as factor
    T = 1000
    assert factor(0, T) == pytest.approx(1 / 32)            # the start: eta_max / ratio
    assert factor(50, T) == pytest.approx(paper_stlr(50, T)) == pytest.approx(16.5 / 32)   # half way up
    assert factor(100, T) == pytest.approx(1.0)             # the cut: the peak, eta_max
    assert factor(550, T) == pytest.approx(paper_stlr(550, T)) == pytest.approx(16.5 / 32)  # half way down
    assert factor(T, T) == pytest.approx(1 / 32)            # the end: back to eta_max / ratio
    for t in (1, 37, 99, 101, 640, 999):
        assert factor(t, T) == pytest.approx(paper_stlr(t, T))
    assert factor(5, 200, cut_frac=0.2, ratio=10) == pytest.approx(paper_stlr(5, 200, 0.2, 10))


@pytest.mark.exercise("ulmfit.slanted_triangular")
def test_slanted_triangular_sets_every_group_rate():
    params = [tl.nn.Parameter(np.zeros(2)), tl.nn.Parameter(np.zeros(2))]
    optimizer = tl.optim.Adam([{"params": params[:1], "lr": 0.01}, {"params": params[1:], "lr": 0.002}])
    schedule = tl.optim.lr_scheduler.slanted_triangular(optimizer, total_steps=100)
    seen = []
    for _ in range(101):
        seen.append([g["lr"] for g in optimizer.param_groups])
        schedule.step()
    seen = np.array(seen)
    assert int(np.argmax(seen[:, 0])) == 10                 # the peak at cut = floor(100 * 0.1)
    np.testing.assert_allclose(seen[:, 0], [0.01 * paper_stlr(t, 100) for t in range(101)])
    np.testing.assert_allclose(seen[:, 1] / seen[:, 0], 0.2)  # each group keeps its own eta


# --------------------------------------------------------------------------- discriminative rates

@pytest.mark.exercise("ulmfit.discriminative_lr")
def test_discriminative_rates_divide_by_2_6_going_down():
    model = tiny_classifier()
    groups = transfer.discriminative_param_groups(model, lr=0.01)
    blocks = model.blocks()                                  # embedding, LSTM 1, LSTM 2, head
    assert len(groups) == len(blocks) == 4
    for group, block in zip(groups, reversed(blocks)):      # the head first
        assert [id(p) for p in group["params"]] == [id(p) for p in block.parameters()]
    lrs = [g["lr"] for g in groups]
    assert lrs[0] == pytest.approx(0.01)
    for upper, lower in zip(lrs, lrs[1:]):
        assert upper / lower == pytest.approx(2.6)
    assert lrs[-1] == pytest.approx(0.01 / 2.6 ** 3)


@pytest.mark.exercise("ulmfit.discriminative_lr")
def test_frozen_groups_get_no_rate_and_the_rest_keep_theirs():
    model = tiny_classifier()
    transfer.unfreeze_top(model, 2)                          # the head and the top LSTM layer
    groups = transfer.discriminative_param_groups(model, lr=0.02, decay=2.6)
    assert [g["lr"] for g in groups] == pytest.approx([0.02, 0.02 / 2.6])
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in model.encoder.layers[1].parameters()]


# --------------------------------------------------------------------------- gradual unfreezing

@pytest.mark.exercise("ulmfit.gradual_unfreezing")
def test_gradual_unfreezing_adds_one_group_per_stage_and_keeps_adams_moments(monkeypatch):
    model = tiny_classifier()
    names = {"embedding": model.encoder.embedding, "lstm1": model.encoder.layers[0],
             "lstm2": model.encoder.layers[1], "head": model.head}
    seen = []
    real = transfer.train_steps

    def spy(model_, loader, optimizer, steps=None, scheduler=None, **kwargs):
        head_weight = model.head[2].weight
        state = optimizer.state.get(id(head_weight), {})
        seen.append({"trainable": {n for n, m in names.items() if all(p.requires_grad for p in m.parameters())},
                     "frozen": {n for n, m in names.items() if not any(p.requires_grad for p in m.parameters())},
                     "optimizer": optimizer, "at": scheduler.last_step, "head_step": state.get("step"),
                     "exp_avg": state.get("exp_avg"), "lrs": [g["initial_lr"] for g in optimizer.param_groups]})
        return real(model_, loader, optimizer, steps=steps, scheduler=scheduler, **kwargs)

    monkeypatch.setattr(transfer, "train_steps", spy)
    ids, labels = padded_ids([5, 3, 6, 4] * 4, width=6), np.arange(16) % 3
    ulmfit.fine_tune_classifier(model, ids, labels, steps=8, lr=0.01, batch_size=4)

    assert [s["trainable"] for s in seen] == [{"head"}, {"head", "lstm2"}, {"head", "lstm2", "lstm1"},
                                             {"head", "lstm2", "lstm1", "embedding"}]
    assert all(s["trainable"] | s["frozen"] == set(names) for s in seen)   # whole groups, never half
    assert all(s["optimizer"] is seen[0]["optimizer"] for s in seen)        # one Adam throughout
    assert [s["at"] for s in seen] == [0, 2, 4, 6]                          # one STLR over all 8 steps
    assert [s["head_step"] for s in seen] == [None, 2, 4, 6]                # the head's step count goes on
    assert seen[3]["exp_avg"] is seen[1]["exp_avg"]                          # ... and so do its moments
    assert seen[-1]["lrs"] == pytest.approx([0.01 / 2.6 ** k for k in range(4)])
    assert seen[0]["optimizer"].state[id(model.encoder.embedding.weight)]["step"] == 2


def test_the_ablations_leave_out_one_idea_each(monkeypatch):
    calls = []
    monkeypatch.setattr(transfer, "gradual_unfreezing", lambda *a, **k: calls.append(("gradual", k)))
    monkeypatch.setattr(transfer, "train_steps", lambda *a, **k: calls.append(("all at once", k)))
    ids, labels = padded_ids([4, 5]), np.array([0, 1])
    ulmfit.fine_tune_classifier(tiny_classifier(), ids, labels, steps=4, discriminative=False)
    assert calls[-1][0] == "gradual" and calls[-1][1]["decay"] == 1.0
    model = tiny_classifier()
    ulmfit.fine_tune_classifier(model, ids, labels, steps=4, gradual=False)
    schedule = calls[-1][1]["scheduler"]
    assert calls[-1][0] == "all at once" and all(p.requires_grad for p in model.parameters())
    assert [g["lr"] for g in schedule.optimizer.param_groups] == pytest.approx(
        [1e-2 / 2.6 ** k / 32 for k in range(4)])                            # STLR starts at eta / 32
    ulmfit.fine_tune_classifier(tiny_classifier(), ids, labels, steps=4, stlr=False, gradual=False)
    schedule = calls[-1][1]["scheduler"]
    for _ in range(3):
        schedule.step()
    assert schedule.get_last_lr()[0] == pytest.approx(1e-2)                  # constant


# --------------------------------------------------------------------------- LM fine-tuning

def test_text_stream_and_windows():
    vocab = Vocab(["<pad>", "<s>", "<unk>", "a", "b", "c"], unk="<unk>")
    stream = ulmfit.text_stream([["a", "b"], ["c"], ["zzz", "a"]], vocab)
    np.testing.assert_array_equal(stream, [1, 3, 4, 1, 5, 1, 2, 3, 1])
    x, y = ulmfit.lm_windows(stream, 3)
    np.testing.assert_array_equal(x, [[1, 3, 4], [1, 5, 1]])
    np.testing.assert_array_equal(y, [[3, 4, 1], [5, 1, 2]])                # each the next id
    with pytest.raises(ValueError, match="no window"):
        ulmfit.lm_windows(stream[:2], 3)


def test_new_words_start_as_the_mean_word():
    lm = tiny_lm(vocab_size=5)
    vocab = Vocab(["<pad>", "<s>", "<unk>", "a", "b"], unk="<unk>")
    grown, grown_vocab = ulmfit.add_words(lm, vocab, ["[MASK]", "a", "[MASK]"])
    assert grown_vocab.id_to_word[-1] == "[MASK]" and len(grown_vocab) == 6
    np.testing.assert_allclose(grown.embedding.weight.data[:5], lm.embedding.weight.data)
    np.testing.assert_allclose(grown.embedding.weight.data[5], lm.embedding.weight.data.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(grown.decoder.bias.data[5], lm.decoder.bias.data.mean(), rtol=1e-6)
    np.testing.assert_allclose(grown.layers[1].weight_hh_l0.data, lm.layers[1].weight_hh_l0.data)
    assert grown.embedding.weight is not lm.embedding.weight


def test_lm_fine_tuning_lowers_the_held_out_loss():
    # the "task": counting sentences 3 4 5 6 ... of random start and length; the LM is untrained
    rng = np.random.default_rng(0)
    vocab = Vocab(["<pad>", "<s>", "<unk>"] + [f"w{k}" for k in range(12)], unk="<unk>")

    def texts(n):
        starts, lengths = rng.integers(0, 6, n), rng.integers(3, 7, n)
        return [[f"w{k}" for k in range(s, s + m)] for s, m in zip(starts, lengths)]

    lm = tiny_lm(vocab_size=len(vocab), hidden=16)
    train, held_out = ulmfit.text_stream(texts(300), vocab), ulmfit.text_stream(texts(40), vocab)
    before = ulmfit.lm_loss(lm, *ulmfit.lm_windows(held_out, 8))
    record = ulmfit.fine_tune_lm(lm, train, held_out, dict(steps=60, batch_size=8, bptt=8, lr=2e-2, num_sampled=8,
                                                           held_out_tokens=400, dropout=0.0))
    assert record["held_out_loss_before"] == pytest.approx(before)
    assert record["held_out_loss_after"] < 0.8 * before
    assert len(record["losses"]) == 60 and record["train_tokens"] == 60 * 8 * 8


def test_the_fine_tuned_lm_round_trips_through_its_file(tmp_path):
    lm = tiny_lm()
    vocab = Vocab(["<pad>", "<s>", "<unk>"] + [f"w{k}" for k in range(9)], unk="<unk>")
    ulmfit.save_finetuned_lm(lm, vocab, {"config": {"steps": 3}, "seconds": 1.5}, tmp_path / "lm.npz")
    back, back_vocab, record = ulmfit.read_finetuned_lm(tmp_path / "lm.npz")
    assert back_vocab.id_to_word == vocab.id_to_word and record["config"] == {"steps": 3}
    ids = padded_ids([5, 3])
    with tl.no_grad():
        np.testing.assert_allclose(back(ids).data, lm(ids).data, rtol=1e-6)


def test_stratified_sample_keeps_the_class_shares():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = ulmfit.stratified_sample(labels, 20, seed=3)
    assert len(set(idx)) == 20 and np.bincount(labels[idx]).tolist() == [12, 6, 2]
    np.testing.assert_array_equal(idx, ulmfit.stratified_sample(labels, 20, seed=3))
    assert not np.array_equal(np.sort(idx), np.sort(ulmfit.stratified_sample(labels, 20, seed=4)))
    with pytest.raises(ValueError, match="n must lie"):
        ulmfit.stratified_sample(labels, 101, 0)


def test_scratch_classifier_has_the_same_shape_and_no_softmax():
    pre, scratch = tiny_classifier(), ulmfit.scratch_classifier(12, 6, 2, 3)
    assert [tuple(p.shape) for p in pre.parameters()] == [tuple(p.shape) for p in scratch.parameters()]
    assert isinstance(pre.encoder.decoder, tl.nn.Identity)


# --------------------------------------------------------------------------- the command

@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory):
    """A cache of its own, sharing the parsed GCIDE and (when made) the tiny pretrained biLM."""
    from minitl.data import cache_dir
    from minitl.elmo.pretraining import weights_path
    home = tmp_path_factory.mktemp("xdg")
    (home / "minitl" / "weights").mkdir(parents=True)
    (home / "minitl" / "gcide").symlink_to(cache_dir("gcide"), target_is_directory=True)
    if weights_path(fast=True).exists():
        shutil.copy2(weights_path(fast=True), home / "minitl" / "weights")
    return home


def test_experiment_ulmfit_fast_command(cli_cache, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(cli_cache), PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "minitl", "experiment", "ulmfit", "--fast", "--no-progress",
                             "--json", str(tmp_path / "r.json"), "--figure", str(tmp_path / "f.png")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert {r["method"] for r in results["rows"]} == set(ulmfit_methods())
    assert all(0 <= r["accuracy"] <= 1 and r["n_labels"] == 100 for r in results["rows"])
    lm = results["lm"]
    assert lm["task_perplexity_after"] < lm["task_perplexity_before"]
    assert "| ulmfit |" in result.stdout and "N = 100" in result.stdout and (tmp_path / "f.png").exists()
    assert (cli_cache / "minitl" / "weights" / "ulmfit_lm_gcide_pos_v1_fast.npz").exists()
    print(f"minitl experiment ulmfit --fast: {seconds:.1f} s")


def test_experiment_rejects_a_bad_label_budget(cli_cache, tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(cli_cache), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "minitl", "experiment", "ulmfit", "--fast", "--sizes", "100,lots"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "'lots'" in result.stderr


def ulmfit_methods():
    from minitl.experiments.ulmfit import METHODS
    return METHODS


def test_no_batch_of_one_reaches_the_heads_batch_norm():
    assert ulmfit.batch_size_for_batch_norm(100, 16) == 16
    assert ulmfit.batch_size_for_batch_norm(33, 32) == 33          # one batch of 33, not 32 and 1
    assert ulmfit.batch_size_for_batch_norm(5, 32) == 5
    for n in range(2, 200):
        assert n % ulmfit.batch_size_for_batch_norm(n, 16) != 1
    ids, labels = padded_ids([5, 3, 6] * 11), np.arange(33) % 3      # 33 examples, batches of 32
    ulmfit.fine_tune_classifier(tiny_classifier(), ids, labels, steps=3, batch_size=32)
    with pytest.raises(ValueError, match="at least 2"):
        ulmfit.fine_tune_classifier(tiny_classifier(), ids[:1], labels[:1], steps=3)
