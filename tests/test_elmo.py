"""ELMo (minitl/elmo/): the biLM, the sampled softmax, the scalar mix, the embedder, the
pretrained checkpoint, polysemy, and the two commands.

* the biLM's shapes; one embedding and one softmax object shared by both directions, whose
  gradient sums both directions' losses;
* the backward LM reads right to left: perturbing a token changes no backward state to its
  right... of it, and no forward state to its left; padding changes nothing;
* the sampled softmax against its formula written in NumPy, equal to the full softmax when
  every word is drawn once with a uniform proposal, and gradchecked;
* ScalarMix (exercise elmo.scalar_mix, on the reference path): s = 0 and gamma = 1 at the
  start, AllenNLP's formula written out in NumPy (with and without layer norm), gradcheck;
* the embedder's layer 0 is [x; x]; a sentence's vectors do not depend on its batch;
* the checkpoint: saved atomically, read without pickle, the same model back;
* polysemy: the sense labelling rule and the 1-NN rate on a small synthetic case;
* `minitl pretrain elmo --fast` and `minitl experiment elmo --fast` end to end in a subprocess.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minitl as tl
from minitl.data.text import Corpus, Vocab
from minitl.elmo import ELMo, ELMoBiLM, ScalarMix, scalar_mix
from minitl.elmo import bilm as B
from minitl.elmo import polysemy as P
from minitl.elmo.data import BOUNDARY_ID, Sentences, capped_corpus, split_sentences
from minitl.elmo.pretraining import read_pretrained, save_pretrained, weights_path

ROOT = Path(__file__).resolve().parent.parent
reference = tl.fastpath.use(False)  # exercise tests check the code a student writes


def f64(array):
    return tl.tensor(array, dtype=np.float64)


def small_bilm(vocab_size=30, hidden=6, layers=2, seed=0):
    tl.manual_seed(seed)
    return ELMoBiLM(vocab_size, hidden, layers).double()


def padded_batch(rng, vocab_size=30, lengths=(7, 4, 6)):
    ids = np.zeros((len(lengths), max(lengths)), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(1, vocab_size, n)
    return ids, np.array(lengths)


# --------------------------------------------------------------------------- the biLM


def test_bilm_shapes(rng):
    bilm = small_bilm()
    ids, lengths = padded_batch(rng)
    x, forward_states, backward_states = bilm(ids, lengths)
    assert x.shape == (7, 3, 6)
    assert len(forward_states) == len(backward_states) == 2
    assert all(h.shape == (7, 3, 6) for h in forward_states + backward_states)
    assert bilm.forward_lm(ids, lengths).shape == (3, 7, 30)   # the plain LM: scores per step
    assert len(bilm.forward_lm.hidden_states(ids, lengths)) == 3
    forward_loss, backward_loss = bilm.loss(ids, lengths)
    assert forward_loss.shape == backward_loss.shape == ()


def test_directions_share_one_embedding_and_one_softmax(rng):
    bilm = small_bilm()
    assert bilm.forward_lm.embedding is bilm.backward_lm.embedding is bilm.embedding
    assert bilm.forward_lm.decoder is bilm.backward_lm.decoder is bilm.decoder
    names = [name for name, _ in bilm.named_parameters()]
    assert names.count("embedding.weight") == 1 and not any(n.endswith("embedding.weight") and n != "embedding.weight"
                                                             for n in names)
    per_lstm = 4  # weight_ih, weight_hh, bias_ih, bias_hh
    assert len(names) == 1 + 2 + 2 * 2 * per_lstm   # embedding, decoder (W, b), 2 LMs x 2 layers
    # the shared parameters' gradient is the sum of both directions' gradients
    ids, lengths = padded_batch(rng)
    grads = {}
    for which in (0, 1, None):
        bilm.zero_grad()
        losses = bilm.loss(ids, lengths)
        (losses[0] + losses[1] if which is None else losses[which]).backward()
        grads[which] = (bilm.embedding.weight.grad.copy(), bilm.decoder.weight.grad.copy())
    for k in range(2):
        np.testing.assert_allclose(grads[None][k], grads[0][k] + grads[1][k], rtol=1e-10, atol=1e-12)
        assert np.abs(grads[0][k]).sum() > 0 and np.abs(grads[1][k]).sum() > 0


@pytest.mark.parametrize("fast", [False, True], ids=["reference", "fastpath"])
def test_backward_lm_reads_right_to_left(rng, fast):
    bilm = small_bilm()
    ids, lengths = padded_batch(rng, lengths=(8, 5))
    changed = ids.copy()
    j = 3
    changed[:, j] = (ids[:, j] % 29) + 1   # another word at position j in both rows
    with tl.fastpath.use(fast):
        _, f0, b0 = bilm(ids, lengths)
        _, f1, b1 = bilm(changed, lengths)
    for layer in range(2):
        fwd = np.abs(f1[layer].data - f0[layer].data).max(axis=2)   # (T, B)
        bwd = np.abs(b1[layer].data - b0[layer].data).max(axis=2)
        assert (fwd[:j] == 0).all(), "a forward state saw a token to its right"
        assert (bwd[j + 1:] == 0).all(), "a backward state saw a token to its left"
        assert (fwd[j] > 0).all() and (bwd[j] > 0).all() and (bwd[:j] > 0).all() and (fwd[j + 1:5] > 0).all()


def test_padding_changes_nothing(rng):
    bilm = small_bilm()
    ids, lengths = padded_batch(rng, lengths=(8, 5))
    _, f_batch, b_batch = bilm(ids, lengths)
    _, f_alone, b_alone = bilm(ids[1:, :5], lengths[1:])
    for layer in range(2):
        np.testing.assert_allclose(f_batch[layer].data[:5, 1], f_alone[layer].data[:, 0], atol=1e-12)
        np.testing.assert_allclose(b_batch[layer].data[:5, 1], b_alone[layer].data[:, 0], atol=1e-12)


def test_prediction_targets_shift_left_and_right():
    ids = np.array([[1, 5, 6, 1, 0], [1, 7, 8, 9, 1]])
    (next_ids, next_rows), (previous_ids, previous_rows) = B.prediction_targets(ids, np.array([4, 5]))
    batch = 2
    # forward: step t of row b predicts ids[b, t + 1]; backward: ids[b, t - 1]
    assert [(r // batch, r % batch) for r in next_rows] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (3, 1)]
    assert next_ids.tolist() == [5, 7, 6, 8, 1, 9, 1]
    assert [(r // batch, r % batch) for r in previous_rows] == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1), (4, 1)]
    assert previous_ids.tolist() == [1, 1, 5, 7, 6, 8, 9]


class FixedDraws(B.CandidateSampler):
    """A CandidateSampler whose draws are given (a gradient check needs the same draws twice)."""

    def __init__(self, counts, draws):
        super().__init__(counts, len(draws))
        self.draws = np.asarray(draws)

    def sample(self):
        return self.draws


def test_sampled_softmax_is_its_formula(rng):
    vocab, hidden, n = 12, 5, 7
    h, w, b = rng.standard_normal((n, hidden)), rng.standard_normal((vocab, hidden)), rng.standard_normal(vocab)
    targets = rng.integers(0, vocab, n)
    counts = rng.integers(1, 50, vocab)
    draws = np.array([0, 3, 3, 7, int(targets[0])])  # a repeat, and an accidental hit for row 0
    sampler = FixedDraws(counts, draws)
    loss = B.sampled_softmax_loss(f64(h), targets, f64(w), f64(b), sampler)
    q = counts ** 0.75 / (counts ** 0.75).sum()
    log_expected = np.log(len(draws) * q)
    z_true = (h * w[targets]).sum(1) + b[targets] - log_expected[targets]
    z_sampled = h @ w[draws].T + b[draws] - log_expected[draws]
    z_sampled[draws[None, :] == targets[:, None]] = -np.inf
    z = np.concatenate([z_true[:, None], z_sampled], axis=1)
    expected = np.mean(np.log(np.exp(z).sum(1)) - z_true)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-10)
    tl.gradcheck(lambda h_, w_, b_: B.sampled_softmax_loss(h_, targets, w_, b_, sampler),
                 tl.tensor(h), tl.tensor(w), tl.tensor(b))


def test_sampled_softmax_drawing_every_word_once_is_the_full_softmax(rng):
    vocab, n = 9, 6
    h, w, b = rng.standard_normal((n, 4)), rng.standard_normal((vocab, 4)), rng.standard_normal(vocab)
    targets = rng.integers(0, vocab, n)
    sampler = FixedDraws(np.ones(vocab), np.arange(vocab))   # uniform Q: log(S Q) = log 1 = 0
    sampled = B.sampled_softmax_loss(f64(h), targets, f64(w), f64(b), sampler)
    full = tl.ops.cross_entropy(f64(h @ w.T + b), targets)
    np.testing.assert_allclose(sampled.item(), full.item(), rtol=1e-10)


def test_bilm_loss_gradients_match_central_differences(rng):
    bilm = small_bilm(vocab_size=12, hidden=4)
    ids, lengths = padded_batch(rng, vocab_size=12, lengths=(5, 3))

    def loss():
        forward_loss, backward_loss = bilm.loss(ids, lengths)
        return forward_loss + backward_loss

    bilm.zero_grad()
    loss().backward()
    for param in (bilm.embedding.weight, bilm.decoder.weight, bilm.backward_lm.layers[1].weight_hh_l0):
        for index in zip(*(rng.integers(0, n, 4) for n in param.shape)):
            old = param.data[index]
            param.data[index] = old + 1e-6
            plus = loss().item()
            param.data[index] = old - 1e-6
            minus = loss().item()
            param.data[index] = old
            np.testing.assert_allclose(param.grad[index], (plus - minus) / 2e-6, rtol=1e-5, atol=1e-9)


def test_training_lowers_the_loss():
    tl.manual_seed(0)
    bilm = ELMoBiLM(12, 8, 2)
    ids = np.array([[1, 2, 3, 4, 5, 1], [1, 6, 7, 8, 1, 0]])
    lengths = np.array([6, 5])
    optimizer = tl.optim.Adam(bilm.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        f, b = bilm.loss(ids, lengths)
        loss = f + b
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 4


# --------------------------------------------------------------------------- the scalar mix


def allennlp_scalar_mix(tensors, s, gamma, mask=None, do_layer_norm=False):
    """AllenNLP's ScalarMix.forward written out in NumPy."""
    weights = np.exp(s) / np.exp(s).sum()
    if not do_layer_norm:
        return gamma * sum(w * t for w, t in zip(weights, tensors))
    broadcast = mask[..., None]
    count = mask.sum() * tensors[0].shape[-1]

    def layer_norm(t):
        masked = t * broadcast
        mean = masked.sum() / count
        variance = (((masked - mean) * broadcast) ** 2).sum() / count
        return (t - mean) / np.sqrt(variance + 1e-12)

    return gamma * sum(w * layer_norm(t) for w, t in zip(weights, tensors))


@pytest.mark.exercise("elmo.scalar_mix")
@reference
def test_scalar_mix_starts_as_the_plain_average(rng):
    layers = [rng.standard_normal((2, 3, 4)) for _ in range(3)]
    mix = ScalarMix(3)
    assert mix.scalar_parameters.data.tolist() == [0, 0, 0] and mix.gamma.data.tolist() == [1]
    out = mix([f64(x) for x in layers])
    np.testing.assert_allclose(out.data, sum(layers) / 3, rtol=1e-12)


@pytest.mark.exercise("elmo.scalar_mix")
@reference
@pytest.mark.parametrize("do_layer_norm", [False, True])
def test_scalar_mix_is_allennlps_formula(rng, do_layer_norm):
    layers = [rng.standard_normal((3, 5, 4)) * (k + 1) + k for k in range(3)]
    mask = np.ones((3, 5))
    mask[1, 3:] = mask[2, 1:] = 0
    mix = ScalarMix(3, do_layer_norm=do_layer_norm, initial_scalar_parameters=[0.3, -1.0, 0.7]).double()
    mix.gamma.data[:] = 1.7
    out = mix([f64(x) for x in layers], mask=mask)
    s = mix.scalar_parameters.data
    np.testing.assert_allclose(s, [0.3, -1.0, 0.7], rtol=1e-7)
    expected = allennlp_scalar_mix(layers, s, 1.7, mask, do_layer_norm)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10)
    np.testing.assert_allclose(mix.weights(), np.exp(s) / np.exp(s).sum(), rtol=1e-12)


@pytest.mark.exercise("elmo.scalar_mix")
@reference
def test_scalar_mix_gradcheck(rng):
    layers = [tl.tensor(rng.standard_normal((2, 3, 4))) for _ in range(3)]
    tl.gradcheck(lambda s, gamma, *hs: scalar_mix(list(hs), s, gamma),
                 tl.tensor(rng.standard_normal(3)), tl.tensor([0.8]), *layers)


def test_scalar_mix_errors():
    with pytest.raises(ValueError, match="mixture_size"):
        ScalarMix(0)
    with pytest.raises(ValueError, match="initial_scalar_parameters"):
        ScalarMix(3, initial_scalar_parameters=[0.0, 1.0])
    with pytest.raises(ValueError, match="3 tensors given"):
        ScalarMix(2)([tl.zeros(2, 3)] * 3)
    with pytest.raises(ValueError, match="one shape"):
        ScalarMix(2)([tl.zeros(2, 3), tl.zeros(2, 4)])


# --------------------------------------------------------------------------- the embedder


def tiny_vocab(words=("the", "bank", "river", "money", "of", "a")):
    return Vocab(["<pad>", "<s>", "<unk>", *words], np.ones(3 + len(words), dtype=np.int64), unk="<unk>")


def test_embedder_layers_and_layer_zero_duplication():
    vocab = tiny_vocab()
    bilm = small_bilm(vocab_size=len(vocab), hidden=5)
    elmo = ELMo(bilm, vocab)
    sentence = ["the", "bank", "of", "the", "river", "zebra"]
    layers = elmo.embed_sentence(sentence)
    assert layers.shape == (3, 6, 10) and elmo.num_layers == 3 and elmo.output_dim == 10
    ids = vocab.encode(sentence)
    assert ids[-1] == vocab.unk_id
    x = bilm.embedding.weight.data[ids]
    np.testing.assert_array_equal(layers[0], np.concatenate([x, x], axis=1))
    _, forward_states, backward_states = bilm(*elmo.batch_to_ids([sentence]))
    for l in (1, 2):
        np.testing.assert_allclose(layers[l][:, :5], forward_states[l - 1].data[1:7, 0])
        np.testing.assert_allclose(layers[l][:, 5:], backward_states[l - 1].data[1:7, 0])
    # "the" at positions 0 and 3: one vector at layer 0, two in context
    np.testing.assert_array_equal(layers[0][0], layers[0][3])
    assert not np.allclose(layers[2][0], layers[2][3])


def test_embedder_batches_padding_and_pooling():
    vocab = tiny_vocab()
    elmo = ELMo(small_bilm(vocab_size=len(vocab), hidden=4), vocab)
    sentences = [["a", "bank"], ["the", "money", "of", "the", "bank"], ["river"]]
    batch = elmo.embed_batch(sentences)
    for sentence, layers in zip(sentences, batch):
        np.testing.assert_allclose(layers, elmo.embed_sentence(sentence), atol=1e-12)
    out, mask = elmo(*elmo.batch_to_ids(sentences))
    assert mask.data.tolist()[0] == [1, 1, 0, 0, 0]
    assert all((layer.data[0, 2:] == 0).all() for layer in out)
    pooled = elmo.mean_pooled(sentences, tokens_per_batch=8)
    assert pooled.shape == (3, 3, 8)
    for i, layers in enumerate(batch):
        np.testing.assert_allclose(pooled[i], layers.mean(axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="at least one token"):
        elmo.embed_batch([["a"], []])


# --------------------------------------------------------------------------- data and checkpoint


def test_corpus_pieces_batches_and_held_out():
    corpus = Corpus(np.arange(30, dtype=np.int32) % 9, np.array([0, 3, 3, 13, 30]),
                    Vocab([f"w{i}" for i in range(9)], np.full(9, 5)))
    capped = capped_corpus(corpus, max_size=5)
    assert capped.vocab.id_to_word[:3] == ["<pad>", "<s>", "<unk>"] and len(capped.vocab) == 5
    assert capped.vocab.counts[BOUNDARY_ID] == 4
    pieces = split_sentences(corpus, max_len=4, held_out=False)
    assert pieces.lengths.tolist() == [3, 4, 4, 2, 4, 4, 4, 4, 1]   # sentence 1 is empty
    ids, lengths = pieces.batch([1, 8])
    assert ids.tolist() == [[1, 3, 4, 5, 6, 1], [1, 2, 1, 0, 0, 0]] and lengths.tolist() == [6, 3]
    groups = pieces.batches(12, np.random.default_rng(0))
    assert sorted(np.concatenate(groups).tolist()) == list(range(9))
    assert all(len(g) * (pieces.lengths[g].max() + 2) <= 12 or len(g) == 1 for g in groups)
    long = Corpus(np.zeros(200, dtype=np.int32), np.arange(201), Vocab(["w"], [200]))
    assert len(split_sentences(long, 10, held_out=True)) == 2   # sentences 50 and 150


def test_checkpoint_round_trip_is_atomic_and_pickle_free(tmp_path, rng):
    vocab = tiny_vocab()
    tl.manual_seed(1)
    bilm = ELMoBiLM(len(vocab), 4, 2)
    record = {"config": {"hidden_size": 4}, "perplexity": {"forward": 12.5, "backward": 13.0},
              "losses": np.ones((3, 2), dtype=np.float32)}
    path = tmp_path / "elmo.npz"
    save_pretrained(bilm, vocab, record, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elmo.npz"]   # no temporary file left
    with np.load(path, allow_pickle=False) as archive:                  # readable without pickle
        assert any(name.endswith("embedding.weight") for name in archive.files)
    loaded, loaded_vocab = read_pretrained(path)
    assert loaded_vocab.id_to_word == vocab.id_to_word and loaded_vocab.unk == "<unk>"
    assert loaded.info["perplexity"]["forward"] == 12.5
    for (name, a), (_, b) in zip(bilm.state_dict().items(), loaded.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    sentence = ["the", "bank", "of", "the", "river"]
    np.testing.assert_array_equal(ELMo(bilm, vocab).embed_sentence(sentence), ELMo(loaded, loaded_vocab).embed_sentence(sentence))
    tl.save({"weights": {}}, tmp_path / "other.npz")
    with pytest.raises(tl.CheckpointError, match="not a pretrained ELMo"):
        read_pretrained(tmp_path / "other.npz")


def test_missing_checkpoint_says_how_to_make_it(tmp_path, monkeypatch):
    from minitl.elmo import pretraining as pretrain
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="minitl pretrain elmo --fast"):
        pretrain.load_pretrained_elmo(fast=True, train_if_missing=False)


# --------------------------------------------------------------------------- polysemy


def test_sense_labels_follow_the_cue_words():
    senses = P.SENSE_CUES["bank"]
    assert P.label_sense("he sat on the bank of the river".split(), 4, senses) == "river"
    assert P.label_sense("money kept in a bank".split(), 4, senses) == "money"
    assert P.label_sense("a bank by the river holds money".split(), 1, senses) is None   # both
    assert P.label_sense("the bank".split(), 1, senses) is None                          # neither
    far = ["river"] + ["x"] * 20 + ["bank"]
    assert P.label_sense(far, 21, senses) is None                                         # too far


def test_find_occurrences_in_a_tiny_corpus():
    sentences = ["the bank of the river".split(), "money in the bank".split(), "a bank".split(),
                 "the river bank".split(), "cash at the bank".split(), "bank bank river".split()]
    words = sorted({w for s in sentences for w in s})
    vocab = Vocab(words, np.ones(len(words), dtype=np.int64))
    ids = np.concatenate([vocab.encode(s) for s in sentences])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sentences])])
    found = P.find_occurrences(Corpus(ids, offsets, vocab), per_sense=5)
    assert all(o.word == "bank" and o.tokens[o.position] == "bank" for o in found)
    # river: sentences 0, 3 and 5 (its first "bank" only); money: sentences 1 and 4; "a bank"
    # has no cue. Balanced: 2 of each sense, the river ones spread out (the first and the last)
    assert sorted((o.sense, " ".join(o.tokens)) for o in found) == [
        ("money", "cash at the bank"), ("money", "money in the bank"),
        ("river", "bank bank river"), ("river", "the bank of the river")]
    assert [o.position for o in found if o.tokens[0] == "bank"] == [0]


def test_sense_match_rate_on_synthetic_vectors():
    senses = np.array(["a"] * 4 + ["b"] * 4)
    clustered = np.concatenate([np.tile([1.0, 0.0], (4, 1)), np.tile([0.0, 1.0], (4, 1))])
    clustered += np.random.default_rng(0).normal(0, 0.01, clustered.shape)
    assert P.sense_match_rate(clustered, senses) == 1.0
    pairs = np.repeat(np.eye(4), 2, axis=0)                               # 4 pairs of equal vectors ...
    assert P.sense_match_rate(pairs, np.array(["a", "b"] * 4)) == 0.0     # ... each pair of two senses
    static = np.ones((8, 3))                                             # one vector for every occurrence
    assert P.sense_match_rate(static, senses) == pytest.approx(P.chance_rate(senses)) == pytest.approx(3 / 7)


def test_polysemy_rates_with_a_static_vector():
    occurrences = [P.Occurrence("bank", s, ["bank"], 0) for s in ("river", "money") * 3]
    layers = np.stack([np.ones((6, 2)), np.array([[1, 0], [0, 1]] * 3, dtype=float)])
    static = tl.embeddings.KeyedVectors(["bank"], np.ones((1, 2), dtype=np.float32))
    rates = P.polysemy_rates(layers, occurrences, static)
    bank = rates["words"]["bank"]
    assert bank["layers"] == [pytest.approx(0.4), 1.0] and bank["static"] == pytest.approx(0.4) == bank["chance"]
    assert bank["within"][0] == pytest.approx(1.0) and bank["across"][0] == pytest.approx(1.0)
    assert bank["within"][1] == pytest.approx(1.0) and bank["across"][1] == pytest.approx(0.0)
    rows, headers = P.rate_table(rates)
    assert headers == ["word", "occurrences", "chance", "word2vec", "ELMo layer 0", "ELMo layer 1"]
    assert rows == [("bank", 6, 0.4, 0.4, 0.4, 1.0), ("all words", 6, 0.4, 0.4, 0.4, 1.0)]


# --------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory):
    """A cache folder of its own (weights made here), sharing the parsed GCIDE of the real one."""
    from minitl.data import cache_dir
    home = tmp_path_factory.mktemp("xdg")
    (home / "minitl").mkdir()
    real = cache_dir("gcide")
    (home / "minitl" / "gcide").symlink_to(real, target_is_directory=True)
    return home


def run_cli(args, cache, timeout=300):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "minitl", *args], cwd=cache, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_pretrain_elmo_fast_command(cli_cache):
    out = run_cli(["pretrain", "elmo", "--fast"], cli_cache)
    assert "held-out perplexity" in out and "forward" in out and "backward" in out
    path = cli_cache / "minitl" / "weights"
    assert [p.name for p in path.iterdir()] == [weights_path(fast=True).name]
    bilm, vocab = read_pretrained(path / weights_path(fast=True).name)
    ppl = bilm.info["perplexity"]
    assert 1 < ppl["forward"] < len(vocab) and 1 < ppl["backward"] < len(vocab)


def test_experiment_elmo_fast_command(cli_cache, tmp_path):
    import json
    out = run_cli(["experiment", "elmo", "--fast", "--no-progress", "--json", str(tmp_path / "r.json"),
                   "--figure", str(tmp_path / "elmo.png")], cli_cache)
    results = json.loads((tmp_path / "r.json").read_text())
    assert set(results["accuracy"]) == {"word2vec", "ELMo top layer", "ELMo scalar mix"}
    assert all(0 <= a <= 1 for a in results["accuracy"].values())
    assert len(results["mixture_weights"]) == 3 and abs(sum(results["mixture_weights"]) - 1) < 1e-6
    assert "learned mix" in out and "test accuracy" in out and "majority baseline" in out
    # polysemy: every word of SENSE_CUES is found in GCIDE; a static vector scores chance exactly
    overall = results["polysemy"]["overall"]
    assert set(results["polysemy"]["words"]) == set(P.SENSE_CUES)
    assert overall["static"] == pytest.approx(overall["chance"]) == pytest.approx(overall["layers"][0])
    assert "sense-match rate" in out and (tmp_path / "elmo.png").stat().st_size > 0
