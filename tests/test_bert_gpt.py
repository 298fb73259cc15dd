"""Mini-BERT and mini-GPT (issue 12): `tl.models.bert`, `tl.models.gpt`, their pretraining on
GCIDE and the language experiment.

* the exercise bert.mlm_mask (BERT's 15% / 80-10-10 masking), statistically, on the reference;
* the models against PyTorch (nn.Embedding + nn.TransformerEncoder + a tied head) on copied
  weights, in float64, with padding;
* what the masks mean: GPT's position t never sees t+1, BERT's does; padding changes nothing
  for the real tokens; `embed` + `inputs_embeds` is `forward`; weight tying;
* sampling: temperature 0 / top_k=1 is greedy, top-k never draws outside the k best, the draws
  follow softmax(logits / T);
* the pretraining data (windows, the paragraph stream) and the objectives' batches;
* `minitl pretrain bert|gpt --fast` and `minitl experiment language --fast` end to end (GCIDE).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minitl as tl
from minitl.models import TextClassifier
from minitl.models.bert import IGNORE_INDEX, mlm_mask
from minitl.models.gpt import sample_next
from minitl.models.pretraining import FAST_RECIPE, CausalLM, MaskedLM, heldout_loss, make_windows, spread
from minitl.models.text_transformer import pool, trim_padding

ROOT = Path(__file__).resolve().parent.parent
SMALL = dict(vocab_size=50, max_len=12, d_model=16, num_layers=2, num_heads=2, dim_feedforward=24, dropout=0.0)


def ids_with_padding(rng, batch=3, length=9, vocab=50):
    ids = rng.integers(5, vocab, size=(batch, length))
    ids[:, 0] = 2
    ids[1, 6:] = 0  # a shorter text, padded
    ids[1, 5] = 3
    return ids


# ============================================================================ the exercise

def masking_counts(ids, inputs, labels, mask_id=4):
    chosen = labels != IGNORE_INDEX
    return chosen, inputs[chosen] == mask_id, inputs[chosen] == ids[chosen]


@pytest.mark.exercise("bert.mlm_mask")
def test_mlm_mask_chooses_15_percent_and_replaces_80_10_10():
    ids = np.random.default_rng(1).integers(5, 8000, size=(400, 500))
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    ids[::7, 300:] = 0             # padding
    inputs, labels = mlm_mask(ids, np.random.default_rng(2))
    assert inputs.shape == labels.shape == ids.shape
    chosen, masked, kept = masking_counts(ids, inputs, labels)
    special = np.isin(ids, [0, 1, 2, 3, 4])
    assert not (chosen & special).any(), "special tokens and padding are never chosen"
    rate = chosen.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.003, f"{rate:.4f} of the ordinary tokens were chosen, not 15%"
    assert np.array_equal(labels[chosen], ids[chosen]), "labels hold the original ids at the chosen positions"
    assert np.array_equal(inputs[~chosen], ids[~chosen]), "a token that is not chosen stays itself"
    replaced = ~masked & ~kept
    assert abs(masked.mean() - 0.8) < 0.006 and abs(replaced.mean() - 0.1) < 0.005 and abs(kept.mean() - 0.1) < 0.005
    assert inputs[chosen][replaced].min() >= 5, "a random replacement is an ordinary token"
    assert len(np.unique(inputs[chosen][replaced])) > 2000, "random replacements spread over the vocabulary"


@pytest.mark.exercise("bert.mlm_mask")
def test_mlm_mask_is_reproducible_and_varies_with_the_seed():
    ids = np.random.default_rng(0).integers(5, 100, size=(8, 64))
    a = mlm_mask(ids, np.random.default_rng(7), vocab_size=100)
    b = mlm_mask(ids, np.random.default_rng(7), vocab_size=100)
    c = mlm_mask(ids, np.random.default_rng(8), vocab_size=100)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])
    assert a[0].dtype == a[1].dtype == np.int64


def test_mlm_mask_checks_its_input():
    with pytest.raises(TypeError, match="integer token ids"):
        mlm_mask(np.zeros((2, 3)), np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        mlm_mask(np.zeros((2, 3), dtype=int), 0)


# ============================================================================ against PyTorch

def torch_twin(torch, ours, kind):
    """The same network in PyTorch, ours's weights copied: embeddings, TransformerEncoder, head."""
    c = ours.config
    layer = torch.nn.TransformerEncoderLayer(c["d_model"], c["num_heads"], c["dim_feedforward"], 0.0,
                                             activation="gelu", batch_first=True, norm_first=kind == "gpt")
    encoder = torch.nn.TransformerEncoder(layer, c["num_layers"], enable_nested_tensor=False,
                                          norm=torch.nn.LayerNorm(c["d_model"]) if kind == "gpt" else None)
    state = {k[len("encoder."):]: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()
             if k.startswith("encoder.")}
    encoder.load_state_dict(state)
    return encoder.double()


@pytest.mark.parametrize("kind", ["bert", "gpt"])
def test_models_match_pytorch_on_copied_weights(kind, rng):
    torch = pytest.importorskip("torch")
    ours = (tl.models.bert if kind == "bert" else tl.models.gpt)(**SMALL)
    ours.double().eval()
    ids = ids_with_padding(rng)
    hidden = ours(ids).numpy().astype(np.float64)
    encoder = torch_twin(torch, ours, kind)
    tok = torch.tensor(ours.embeddings.token.weight.numpy(), dtype=torch.float64)
    pos = torch.tensor(ours.embeddings.position.weight.numpy(), dtype=torch.float64)
    x = tok[torch.tensor(ids)] + pos[: ids.shape[1]]
    if kind == "bert":
        norm = ours.embeddings.norm
        x = torch.nn.functional.layer_norm(x, (x.shape[-1],), torch.tensor(norm.weight.numpy(), dtype=torch.float64),
                                           torch.tensor(norm.bias.numpy(), dtype=torch.float64), norm.eps)
    padding = torch.tensor(ids == 0)
    causal = torch.triu(torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool), 1) if kind == "gpt" else None
    with torch.no_grad():
        theirs = encoder(x, mask=causal, src_key_padding_mask=padding, is_causal=kind == "gpt").numpy()
    real = ids != 0  # PyTorch leaves the padded positions' outputs unspecified
    np.testing.assert_allclose(hidden[real], theirs[real], rtol=1e-9, atol=1e-10)
    logits = ours.lm_logits(ours(ids)).numpy()
    assert logits.shape == (*ids.shape, SMALL["vocab_size"])


# ============================================================================ masks and interface

def test_gpt_is_causal_and_bert_is_not(rng):
    ids = rng.integers(5, 50, size=(2, 10))
    changed = ids.copy()
    changed[:, 6] = (changed[:, 6] + 1 - 5) % 45 + 5
    for build, causal in ((tl.models.gpt, True), (tl.models.bert, False)):
        model = build(**SMALL)
        model.eval()
        a, b = model(ids).numpy(), model(changed).numpy()
        np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-6) if causal else None
        assert not np.allclose(a[:, 6:], b[:, 6:], atol=1e-6)
        if not causal:
            assert not np.allclose(a[:, :6], b[:, :6], atol=1e-6), "BERT's earlier tokens see a later change"


@pytest.mark.parametrize("build", [tl.models.bert, tl.models.gpt])
def test_padding_changes_nothing_for_the_real_tokens(build, rng):
    model = build(**SMALL)
    model.eval()
    ids = rng.integers(5, 50, size=(1, 6))
    padded = np.concatenate([ids, np.zeros((1, 4), dtype=ids.dtype)], axis=1)
    np.testing.assert_allclose(model(padded).numpy()[:, :6], model(ids).numpy(), atol=1e-5)
    mask = np.concatenate([np.ones((1, 6)), np.zeros((1, 4))], axis=1)
    np.testing.assert_allclose(model(padded, attention_mask=mask).numpy()[:, :6], model(ids).numpy(), atol=1e-5)
    # the pooled features too, and trim_padding drops only columns of padding
    for pooling in ("mean", "last", "cls"):
        np.testing.assert_allclose(model.encode(padded, pooling=pooling)[1].numpy(),
                                   model.encode(ids, pooling=pooling)[1].numpy(), atol=1e-5)
    assert trim_padding(padded).shape == (1, 6)


def test_embed_then_inputs_embeds_is_forward_and_weights_are_tied(rng):
    for build in (tl.models.bert, tl.models.gpt):
        model = build(**SMALL)
        model.eval()
        ids = ids_with_padding(rng)
        x = model.embed(ids)
        assert x.shape == (*ids.shape, SMALL["d_model"])
        np.testing.assert_allclose(model(inputs_embeds=x, attention_mask=ids != 0).numpy(), model(ids).numpy(),
                                   atol=1e-6)
        decoder = model.lm_head.decoder if build is tl.models.bert else model.lm_head
        assert decoder.weight is model.get_input_embeddings().weight
        assert sum(p is model.embeddings.token.weight for p in model.parameters()) == 1


def test_pool_reads_cls_mean_and_last_real_token():
    hidden = tl.tensor(np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(pool(hidden, mask, "cls").numpy(), hidden.numpy()[:, 0])
    np.testing.assert_array_equal(pool(hidden, mask, "last").numpy(), hidden.numpy()[[0, 1], [3, 1]])
    np.testing.assert_allclose(pool(hidden, mask, "mean").numpy()[1], hidden.numpy()[1, :2].mean(0))
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "max")


def test_bad_input_gets_a_clear_error(rng):
    model = tl.models.bert(**SMALL)
    with pytest.raises(ValueError, match="longer than the model's 12 positions"):
        model(rng.integers(5, 50, size=(1, 13)))
    with pytest.raises(ValueError, match="integer token ids"):
        model(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="attention_mask"):
        model(rng.integers(5, 50, size=(2, 4)), attention_mask=np.ones((2, 5)))
    with pytest.raises(ValueError, match="num_layers"):
        tl.models.gpt(num_layers=0)


def test_text_classifier_trains_and_counts_without_the_lm_head(rng):
    model = TextClassifier(tl.models.bert(**SMALL), 3)
    assert model.backbone.lm_head is None
    ids = ids_with_padding(rng)
    y = np.array([0, 1, 2])
    opt = tl.optim.Adam(model.parameters(), lr=1e-2)
    losses = [float(tl.training.train_step(model, opt, tl.ops.cross_entropy, ids, y)[0].item()) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]


# ============================================================================ sampling

def test_sample_next_greedy_top_k_and_temperature():
    gen = np.random.default_rng(0)
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]] * 20000))
    assert (sample_next(logits, temperature=0) == 3).all()
    assert (sample_next(logits, top_k=1, rng=gen) == 3).all()
    top2 = sample_next(logits, top_k=2, rng=gen)
    assert set(np.unique(top2)) == {2, 3}
    np.testing.assert_allclose(np.mean(top2 == 3), 0.4 / 0.7, atol=0.015)
    plain = np.bincount(sample_next(logits, rng=gen), minlength=4) / 20000
    np.testing.assert_allclose(plain, [0.1, 0.2, 0.3, 0.4], atol=0.012)
    cold = np.bincount(sample_next(logits, temperature=0.5, rng=gen), minlength=4) / 20000
    np.testing.assert_allclose(cold, np.array([1, 4, 9, 16]) / 30, atol=0.012)  # p^(1/T), renormalised


def test_generate_appends_tokens_and_is_seeded(rng):
    model = tl.models.gpt(**SMALL)
    prompt = rng.integers(5, 50, size=4)
    a = model.generate(prompt, 15, top_k=5, seed=3)  # longer than max_len: the context slides
    assert a.shape == (19,) and np.array_equal(a[:4], prompt) and a.dtype == np.int64
    assert np.array_equal(a, model.generate(prompt, 15, top_k=5, seed=3))
    greedy = model.generate(prompt[None].repeat(2, 0), 3, temperature=0)
    assert greedy.shape == (2, 7) and np.array_equal(greedy[0], greedy[1])
    step = model.lm_logits(model(prompt[None])[:, -1]).numpy().argmax(-1)
    assert greedy[0, 4] == step[0]
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 2, temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(prompt, 2, top_k=0)


# ============================================================================ pretraining data

def test_windows_start_with_cls_and_cover_the_stream_in_order():
    stream = np.arange(100, 150)
    w = make_windows(stream, 8, cls_id=2, offset=3)
    assert w.shape == (6, 8) and (w[:, 0] == 2).all()
    np.testing.assert_array_equal(w[:, 1:].ravel(), stream[3:3 + 42])
    assert len(spread(w, 3)) == 3 and spread(w, 3)[0, 1] == w[0, 1] and spread(w, 3)[-1, 1] == w[-1, 1]
    assert spread(w, None) is w


def test_objective_batches(rng):
    windows = rng.integers(5, 50, size=(4, 12))
    windows[:, 0] = 2
    x, y = CausalLM.batch(windows)
    np.testing.assert_array_equal(x, windows[:, :-1])
    np.testing.assert_array_equal(y.reshape(4, 11), windows[:, 1:])
    gpt = CausalLM(tl.models.gpt(**SMALL))
    assert gpt(x).shape == (44, 50)
    bert = MaskedLM(tl.models.bert(**SMALL))
    (inputs, positions), targets = bert.batch(windows, np.random.default_rng(0), 50)
    assert len(positions) == len(targets) > 0
    np.testing.assert_array_equal(windows.reshape(-1)[positions], targets)
    assert bert((inputs, positions)).shape == (len(positions), 50)


def test_masked_lm_objective_masks_at_its_own_rate():
    """The pretraining recipe's masking rate reaches mlm_mask: 40% of the ordinary tokens are
    predicted at mask_prob=0.4, 15% by default (BERT's rate, at which held-out losses are read)."""
    windows = np.random.default_rng(1).integers(5, 50, size=(400, 12))
    windows[:, 0] = 2
    ordinary = 400 * 11
    model = tl.models.bert(**SMALL)
    for rate in (0.15, 0.4):
        (_, positions), _ = MaskedLM(model, mask_prob=rate).batch(windows, np.random.default_rng(0), 50)
        assert abs(len(positions) / ordinary - rate) < 0.02
    (_, positions), _ = MaskedLM(model).batch(windows, np.random.default_rng(0), 50)
    assert abs(len(positions) / ordinary - 0.15) < 0.02
    # the held-out loss is read at 15%, whatever rate the recipe trains at, so recipes compare
    _, count = heldout_loss(model, windows)
    assert abs(count / ordinary - 0.15) < 0.02
    _, count = heldout_loss(model, windows, mask_prob=0.4)
    assert abs(count / ordinary - 0.4) < 0.02


def test_language_experiment_gives_each_model_its_fine_tuning_recipe():
    from minitl.experiments.language import RECIPES, recipe
    assert recipe("finetune", "bert") == RECIPES["finetune"]["bert"] != recipe("finetune", "gpt")
    assert recipe("finetune", "gpt") == RECIPES["finetune"]["gpt"]
    assert recipe("scratch", "bert") == recipe("scratch", "gpt") == RECIPES["scratch"]
    assert set(recipe("finetune", "bert")) == {"lr", "warmup"}


# ============================================================================ the commands (GCIDE)

@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory):
    """A cache folder of its own (weights made here), sharing the parsed GCIDE of the real one."""
    from minitl.data import cache_dir
    home = tmp_path_factory.mktemp("xdg")
    (home / "minitl").mkdir()
    (home / "minitl" / "gcide").symlink_to(cache_dir("gcide"), target_is_directory=True)
    return home


def run_cli(args, cache, timeout=600):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "minitl", *args], cwd=cache, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_pretrain_and_experiment_fast_commands(cli_cache, tmp_path):
    from minitl.models.pretraining import load_pretrained
    for kind in ("bert", "gpt"):
        out = run_cli(["pretrain", kind, "--fast", "--no-progress"], cli_cache)
        assert "held-out" in out and "perplexity" in out
        path = cli_cache / "minitl" / "weights" / f"{kind}_gcide_{FAST_RECIPE[kind]}_fast.npz"
        assert path.exists()
    rows_path = tmp_path / "rows.json"
    out = run_cli(["experiment", "language", "--fast", "--no-progress", "--json", str(rows_path),
                   "--figure", str(tmp_path / "f.png")], cli_cache)
    rows = json.loads(rows_path.read_text())
    assert {(r["model"], r["strategy"]) for r in rows} == {(k, s) for k in ("bert", "gpt")
                                                            for s in ("finetune", "linear_probe", "scratch")}
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    probe = [r for r in rows if r["strategy"] == "linear_probe"]
    assert all(r["trainable_params"] == 4 * 32 + 4 for r in probe)
    assert "| bert | finetune |" in out and (tmp_path / "f.png").exists()
    # the cached weights load without training, in eval mode, with their record
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cli_cache))
        model = load_pretrained("gpt", fast=True, train_if_missing=False)
    assert not model.training and 0 < float(model.info["heldout_loss"]) < np.log(8000) + 1


def test_experiment_sizes_option():
    from minitl.experiments.language import parse_sizes, steps_for
    assert parse_sizes("100, 1000,all") == [100, 1000, None]
    with pytest.raises(ValueError, match="'all'"):
        parse_sizes("100,lots")
    assert steps_for(100) == 60 and steps_for(1000) == 125 and steps_for(93000) == 150
