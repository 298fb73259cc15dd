"""The transfer toolkit: the chapter's listing as written, freezing (and that frozen parts build
no graph), discriminative learning rates, gradual unfreezing, feature caching, the source
model cache, and a miniature run of the transfer table."""
import json

import numpy as np
import pytest

import minitl as tl
from minitl import transfer
from minitl.experiments import transfer_table as table

rng = np.random.default_rng(11)


def images(n):
    return rng.standard_normal((n, 1, 28, 28)).astype(np.float32)


def test_chapter_listing_runs_as_written():
    tl.manual_seed(0)
    source = tl.models.resnet_mini(5)
    pretrained = source.state_dict()
    num_classes = 3

    model = tl.models.resnet_mini(5); model.load_state_dict(pretrained)  # noqa: E702
    for p in model.parameters(): p.requires_grad = False  # noqa: E701
    model.fc = tl.nn.Linear(model.fc.in_features, num_classes)
    optimizer = tl.optim.Adam(model.fc.parameters(), lr=1e-3)

    x, y = tl.tensor(images(8)), tl.tensor(rng.integers(0, num_classes, 8))
    before = {k: v.copy() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    model.eval()  # frozen BatchNorms keep the source statistics
    loss = tl.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert model.fc.weight.grad is not None
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("fc."))
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert transfer.count_trainable(model) == 64 * num_classes + num_classes


@pytest.mark.exercise("transfer.freeze")
def test_freeze_and_unfreeze():
    model = tl.models.resnet_mini(5)
    transfer.freeze([model.stem, model.layer1])
    assert not any(p.requires_grad for p in model.stem.parameters())
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    transfer.unfreeze(model.layer1)
    assert all(p.requires_grad for p in model.layer1.parameters())


@pytest.mark.exercise("transfer.freeze")
def test_frozen_backbone_builds_no_graph():
    model = tl.models.resnet_mini(5)
    transfer.freeze(model)
    transfer.unfreeze(model.fc)
    feats = model.features(tl.tensor(images(2)))
    assert feats.grad_fn is None and not feats.requires_grad  # nothing recorded below the head
    out = model.fc(feats)
    assert out.requires_grad


@pytest.mark.exercise("transfer.freeze")
def test_freeze_lower_and_unfreeze_top():
    model = tl.models.resnet_mini(5)
    transfer.freeze_lower(model, 3)
    flags = [all(p.requires_grad for p in b.parameters()) for b in transfer.blocks_of(model)]
    assert flags == [False, False, False, True, True]
    transfer.unfreeze_top(model, 1)
    assert transfer.count_trainable(model) == model.fc.weight.numel() + model.fc.bias.numel()
    with pytest.raises(ValueError, match="depth"):
        transfer.freeze_lower(model, 9)


@pytest.mark.exercise("transfer.freeze")
def test_frozen_batchnorm_stays_in_eval_while_training():
    model = tl.models.resnet_mini(5)
    transfer.freeze_lower(model, 2)
    stem_mean = model.stem[1].running_mean.clone()
    x, y = images(8), rng.integers(0, 5, 8)
    opt = tl.optim.Adam(transfer.trainable_parameters(model), lr=1e-3)
    transfer.train_steps(model, transfer.make_loader(x, y, 4), opt, epochs=1)
    np.testing.assert_array_equal(model.stem[1].running_mean, stem_mean)
    assert not np.array_equal(model.layer3[0].bn1.running_mean, 0)  # a trained block's stats moved


def test_discriminative_param_groups():
    model = tl.models.resnet_mini(5)
    transfer.freeze_lower(model, 1)
    groups = transfer.discriminative_param_groups(model, lr=1e-2, decay=2.0)
    assert [g["lr"] for g in groups] == [1e-2, 5e-3, 2.5e-3, 1.25e-3]  # fc, layer3, layer2, layer1
    assert sum(len(g["params"]) for g in groups) == len(transfer.trainable_parameters(model))
    opt = tl.optim.Adam(groups, lr=1e-2)
    assert [g["lr"] for g in opt.param_groups] == [1e-2, 5e-3, 2.5e-3, 1.25e-3]


def test_replace_head():
    model = tl.models.resnet_mini(5)
    head = transfer.replace_head(model, 3)
    assert model.fc is head and head.out_features == 3 and head.in_features == 64
    assert model(tl.tensor(images(2))).shape == (2, 3)


def test_gradual_unfreezing_ends_fully_unfrozen_and_changes_lower_layers():
    tl.manual_seed(0)
    model = tl.models.resnet_mini(3)
    stem_before = model.stem[0].weight.data.copy()
    x, y = images(16), rng.integers(0, 3, 16)
    transfer.gradual_unfreezing(model, x, y, epochs=3, batch_size=8)  # 6 steps over 5 stages
    assert transfer.count_trainable(model) == model.num_parameters()
    assert not np.array_equal(model.stem[0].weight.data, stem_before)


def test_feature_cache_computes_once():
    model = tl.models.resnet_mini(5)
    cache = transfer.FeatureCache(model)
    x = images(3)
    first = cache.get("a", x)
    assert first.shape == (3, 64)
    assert cache.get("a", x[:1]) is first  # served from the cache, not recomputed


def test_sample_labels_is_balanced_and_seeded():
    y = np.repeat(np.arange(5), 40)
    idx = table.sample_labels(y, 23, seed=1)
    assert len(set(idx)) == 23
    assert sorted(np.bincount(y[idx], minlength=5)) == [4, 4, 5, 5, 5]
    np.testing.assert_array_equal(idx, table.sample_labels(y, 23, seed=1))


def test_transfer_table_miniature(tmp_path):
    """Every strategy on a tiny synthetic problem: rows have the JSON fields, trainable counts
    follow the strategy, and the table and figure are produced."""
    tl.manual_seed(0)
    source = tl.models.resnet_mini(5, widths=(4, 8, 8))
    state = {"weights": source.state_dict(), "config": {"widths": [4, 8, 8], "depth": [1, 1, 1]}}
    y = np.repeat(np.arange(5), 8)
    x = images(40) + y[:, None, None, None].astype(np.float32)  # a learnable signal
    data = (x, y, x[:20], y[:20])
    cache = transfer.FeatureCache(table.pretrained_model(state, 5))
    rows = [table.run_one(s, 10, 0, data, state, cache, fast=True) for s in table.STRATEGIES]
    assert [set(r) for r in rows] == [{"model", "strategy", "n_labels", "seed", "accuracy", "trainable_params",
                                      "seconds"}] * 5
    params = {r["strategy"]: r["trainable_params"] for r in rows}
    assert params["feature_extraction"] == 8 * 5 + 5
    assert params["feature_extraction"] < params["finetune_frozen_lower"] < params["finetune"] == params["scratch"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    summary = table.summarize(rows)
    text = table.format_table(summary)
    assert "feature_extraction" in text and "(n=1)" in text and "±" not in text  # one seed: no spread
    two_seeds = table.summarize(rows + [dict(r, seed=1, accuracy=r["accuracy"] / 2) for r in rows])
    assert "± " in table.format_table(two_seeds) and "(n=2)" in table.format_table(two_seeds)
    table.plot(summary, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    json.dumps(rows)


def test_load_pretrained_caches(tmp_path, monkeypatch):
    from minitl import pretrained

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def fake_pretrain(**kwargs):
        calls.append(kwargs)
        return tl.models.resnet_mini(5), 0.5

    monkeypatch.setattr(pretrained, "pretrain", fake_pretrain)
    first = pretrained.load_pretrained(fast=True, progress=False)
    second = pretrained.load_pretrained(fast=True, progress=False)
    assert len(calls) == 1  # the second call loaded from the cache
    assert pretrained.weights_path(True).parent == tmp_path / "minitl" / "weights"
    assert set(first["weights"]) == set(tl.models.resnet_mini(5).state_dict())
    np.testing.assert_array_equal(first["weights"]["fc.weight"], second["weights"]["fc.weight"])
    model = pretrained.pretrained_resnet_mini(3, fast=True)
    assert model.fc.out_features == 3


def test_task_relabels_target_classes():
    from minitl import pretrained

    try:
        x, y = pretrained.task(pretrained.TARGET_CLASSES, "test")
    except tl.data.DataNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    assert x.shape == (5000, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(y), [1000] * 5)
    assert abs(float(x.mean())) < 0.5


def test_command_line_entry_points(tmp_path, monkeypatch, capsys):
    from minitl import pretrained

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(pretrained, "pretrain", lambda **kw: (tl.models.resnet_mini(5), 0.875))
    assert pretrained.pretrain_main(["--fast"]) == 0
    assert "source test accuracy (classes 0,1,5,7,8): 0.8750" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        table.experiment_transfer_main(["--fast", "--strategies", "no_such_strategy"])


def test_lp_ft_trains_the_head_first_then_everything():
    tl.manual_seed(0)
    model = tl.models.resnet_mini(3)
    stem_before = model.stem[0].weight.data.copy()
    x, y = images(16), rng.integers(0, 3, 16)
    head_only = tl.models.resnet_mini(3)
    head_only.load_state_dict(model.state_dict())
    transfer.train_head(head_only, x, y, epochs=2, batch_size=8)
    assert transfer.count_trainable(head_only) == head_only.fc.weight.numel() + head_only.fc.bias.numel()
    np.testing.assert_array_equal(head_only.stem[0].weight.data, stem_before)
    transfer.finetune(model, x, y, steps=3, batch_size=8, head_epochs=2)
    assert transfer.count_trainable(model) == model.num_parameters()
    assert not np.array_equal(model.stem[0].weight.data, stem_before)


def test_freeze_bn_keeps_the_source_statistics_while_fine_tuning():
    model = tl.models.resnet_mini(3)
    mean = model.layer3[0].bn1.running_mean.clone()
    x, y = images(16), rng.integers(0, 3, 16)
    transfer.finetune(model, x, y, steps=2, batch_size=8, freeze_bn=True)
    np.testing.assert_array_equal(model.layer3[0].bn1.running_mean, mean)
    transfer.finetune(model, x, y, steps=2, batch_size=8)
    assert not np.array_equal(model.layer3[0].bn1.running_mean, mean)


def test_every_strategy_gets_the_same_steps_and_a_decaying_rate():
    model = tl.models.resnet_mini(3)
    x, y = images(16), rng.integers(0, 3, 16)
    opt = tl.optim.Adam(model.parameters(), lr=1e-3)
    schedule = transfer._cosine(opt, 4)
    transfer.train_steps(model, transfer.make_loader(x, y, 8), opt, steps=4, scheduler=schedule)
    assert schedule.last_step == 4 and opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_delegated_commands_exit_zero_when_their_main_returns_results(monkeypatch):
    """`minitl experiment fashion-cnn` returns (history, accuracy) to Python callers; on the
    command line that is success, not an exit status (it once crashed in int())."""
    from minitl import cli
    from minitl.experiments import fashion_cnn

    monkeypatch.setattr(fashion_cnn, "main", lambda argv: (["history"], 0.9))
    assert cli.main(["experiment", "fashion-cnn", "--epochs", "1"]) == 0
    monkeypatch.setattr(fashion_cnn, "main", lambda argv: 3)
    assert cli.main(["experiment", "fashion-cnn"]) == 3


def _fashion_mnist_installed():
    from minitl.data import paths
    return (paths.SYSTEM_DIRS["fashion-mnist"][0] / "t10k-labels-idx1-ubyte.gz").exists()


@pytest.mark.skipif(not _fashion_mnist_installed(), reason="sudo apt-get install dataset-fashion-mnist")
def test_the_ten_class_cnn_command_runs_one_short_epoch(capsys):
    """The warm-up of its schedule must fit runs shorter than 100 steps (--fast, 1 epoch)."""
    from minitl import cli

    assert cli.main(["experiment", "fashion-cnn", "--fast", "--epochs", "1"]) == 0
    assert "test accuracy" in capsys.readouterr().out


# --- the toolkit on any model: a language-model-shaped stack, gradual unfreezing's one optimizer

VOCAB = 7


class TinyLM(tl.nn.Module):
    """An embedding, a hidden layer and a decoder over the vocabulary: a language model's shape,
    its head named "decoder", no blocks() and no features() method."""

    def __init__(self, dim=8, tie=False):
        super().__init__()
        self.embedding = tl.nn.Embedding(VOCAB, dim)
        self.hidden = tl.nn.Linear(dim, dim)
        self.decoder = tl.nn.Linear(dim, VOCAB)
        if tie:
            self.decoder.weight = self.embedding.weight

    def forward(self, ids):
        return self.decoder(self.hidden(self.embedding(ids)).relu())


def next_token_data(n=64, length=5, seed=0):
    """Sequences that count up modulo VOCAB; the target is the next token of each position."""
    ids = (np.random.default_rng(seed).integers(0, VOCAB, (n, 1)) + np.arange(length)) % VOCAB
    return ids, (ids + 1) % VOCAB


def lm_loss(logits, target):
    """Cross-entropy over every position: (N, T, V) logits, (N, T) targets."""
    return tl.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def test_freezing_and_groups_on_a_language_model_shaped_stack():
    model = TinyLM()
    assert transfer.blocks_of(model) == [model.embedding, model.hidden, model.decoder]
    transfer.freeze_lower(model, 2)
    assert transfer.trainable_parameters(model) == list(model.decoder.parameters())
    transfer.unfreeze_top(model, 2)
    assert not model.embedding.weight.requires_grad and model.hidden.weight.requires_grad
    transfer.unfreeze(model)
    groups = transfer.discriminative_param_groups(model, lr=1e-2, decay=2.0)
    assert [g["lr"] for g in groups] == [1e-2, 5e-3, 2.5e-3]  # decoder, hidden, embedding
    assert groups[2]["params"] == [model.embedding.weight]
    assert transfer.get_head(model, "decoder") is model.decoder
    with pytest.raises(AttributeError, match="embedding, hidden, decoder"):
        transfer.get_head(model, "fc")  # the error lists what there is to choose from


def test_replace_head_by_name_and_by_dotted_path():
    model = TinyLM()
    new = transfer.replace_head(model, 3, head="decoder")
    assert model.decoder is new and (new.in_features, new.out_features) == (8, 3)
    assert model(tl.tensor(next_token_data(2)[0])).shape == (2, 5, 3)
    assert transfer.blocks_of(model)[-1] is new  # the head stays the top block
    outer = tl.nn.Sequential(tl.nn.Linear(3, 3))
    outer.lm = TinyLM()
    transfer.replace_head(outer, 2, head="lm.decoder")
    assert outer.lm.decoder.out_features == 2
    with pytest.raises(AttributeError, match="no module 'lm.decodr'"):
        transfer.replace_head(outer, 2, head="lm.decodr")  # a typo adds no attribute
    with pytest.raises(TypeError, match="set_head"):
        transfer.replace_head(outer, 2, head="lm.embedding")  # an Embedding has no in_features


def test_tied_weights_go_to_the_upper_group_once():
    model = TinyLM(tie=True)
    groups = transfer.discriminative_param_groups(model, lr=1e-2)
    assert any(p is model.embedding.weight for p in groups[0]["params"])  # with the decoder, at the head's rate
    assert len(groups) == 2  # the embedding's block has nothing left of its own
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    tl.optim.Adam(groups)  # no parameter in two groups
    transfer.freeze_lower(model, 2)  # the tied weight trains with the decoder, as its group says
    assert model.decoder.weight.requires_grad and not model.hidden.weight.requires_grad


def test_features_default_to_everything_but_the_head():
    tl.manual_seed(0)
    model = TinyLM()
    ids, _ = next_token_data(6)
    children = list(model.named_children())
    feats = transfer.extract_features(model, ids, batch_size=4, head="decoder")
    with tl.no_grad():
        expected = model.hidden(model.embedding(tl.tensor(ids))).relu().data
    np.testing.assert_allclose(feats, expected, rtol=1e-6)
    assert list(model.named_children()) == children and "forward" not in vars(model.decoder)  # untouched
    assert model(tl.tensor(ids)).shape == (6, 5, VOCAB)
    only_embedding = transfer.FeatureCache(model, features=model.embedding).get("x", ids)
    np.testing.assert_array_equal(only_embedding, model.embedding.weight.data[ids])


def test_strategies_train_a_language_model_with_its_own_head_and_loss():
    tl.manual_seed(0)
    ids, targets = next_token_data()
    calls = []

    def counted_loss(logits, target):
        calls.append(logits.shape)
        return lm_loss(logits, target)

    model = TinyLM()
    below = {k: v.copy() for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    chance = transfer.accuracy(model, ids, targets)
    transfer.feature_extraction(model, ids, targets, epochs=30, lr=3e-2, batch_size=16, head="decoder",
                                loss_fn=counted_loss)
    assert calls and all(shape[-1] == VOCAB for shape in calls)
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in below.items())
    assert transfer.count_trainable(model) == model.decoder.weight.numel() + model.decoder.bias.numel()
    probed = transfer.accuracy(model, ids, targets)
    assert probed > max(0.5, chance)

    transfer.gradual_unfreezing(model, ids, targets, steps=30, lr=1e-2, batch_size=16, head="decoder",
                                loss_fn=lm_loss)
    assert transfer.count_trainable(model) == model.num_parameters()
    assert not np.array_equal(model.embedding.weight.data, below["embedding.weight"])
    assert transfer.accuracy(model, ids, targets) >= probed

    transfer.finetune(TinyLM(), ids, targets, steps=2, batch_size=16, head_epochs=1, head="decoder",
                      loss_fn=lm_loss)


def test_norm_types_choose_which_frozen_layers_keep_their_statistics():
    x, y = rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)

    def run(**kwargs):
        tl.manual_seed(0)
        model = tl.nn.Sequential(tl.nn.Linear(4, 6), tl.nn.BatchNorm1d(6), tl.nn.ReLU(), tl.nn.Linear(6, 3))
        transfer.freeze_lower(model, 2)
        opt = tl.optim.SGD(transfer.trainable_parameters(model), lr=0.1)
        transfer.train_steps(model, transfer.make_loader(x, y, 8), opt, steps=2, **kwargs)
        return model[1].running_mean

    np.testing.assert_array_equal(run(), 0)  # frozen BatchNorm1d: eval mode, source statistics
    assert not np.array_equal(run(norm_types=()), 0)  # no layer kept in eval: the statistics drift


def test_gradual_unfreezing_keeps_one_optimizer_and_its_moments(monkeypatch):
    """Stage after stage the same Adam trains: a parameter trained since stage 1 keeps its
    moment arrays and step count, each new block joins as a param group at its own rate, and
    one cosine schedule runs across the stages."""
    from minitl.optim.lr_scheduler import warmup_cosine_factor

    seen = []
    real = transfer.train_steps

    def spy(model, loader, optimizer, steps=None, scheduler=None, **kwargs):
        head_state = optimizer.state.get(id(model.fc.weight), {})
        seen.append({"optimizer": optimizer, "schedule": scheduler, "at": scheduler.last_step,
                     "head_step": head_state.get("step"), "exp_avg": head_state.get("exp_avg"),
                     "exp_avg_copy": None if not head_state else head_state["exp_avg"].copy(),
                     "lrs": [g["lr"] for g in optimizer.param_groups],
                     "initial_lrs": [g["initial_lr"] for g in optimizer.param_groups]})
        return real(model, loader, optimizer, steps=steps, scheduler=scheduler, **kwargs)

    monkeypatch.setattr(transfer, "train_steps", spy)
    tl.manual_seed(0)
    model = tl.models.resnet_mini(3, widths=(4, 8, 8))
    x, y = images(16), rng.integers(0, 3, 16)
    transfer.gradual_unfreezing(model, x, y, steps=9, lr=1e-2, decay=2.0, batch_size=8, stages=3)

    assert [s["at"] for s in seen] == [0, 3, 6]  # three steps per stage, one schedule throughout
    assert all(s["optimizer"] is seen[0]["optimizer"] and s["schedule"] is seen[0]["schedule"] for s in seen)
    assert seen[0]["head_step"] is None and [s["head_step"] for s in seen[1:]] == [3, 6]  # never reset
    assert seen[2]["exp_avg"] is seen[1]["exp_avg"]  # the same moment array goes on being updated
    assert not np.array_equal(seen[2]["exp_avg_copy"], seen[1]["exp_avg_copy"])
    assert [s["initial_lrs"] for s in seen] == [[1e-2], [1e-2, 5e-3], [1e-2, 5e-3, 2.5e-3]]  # fc, layer3, layer2
    for s in seen:  # every group, new or old, at the multiplier the schedule has reached
        assert s["lrs"] == pytest.approx([lr * warmup_cosine_factor(s["at"], 0, 9) for lr in s["initial_lrs"]])
    optimizer = seen[0]["optimizer"]
    assert optimizer.state[id(model.fc.weight)]["step"] == 9
    assert optimizer.state[id(model.layer2[0].conv1.weight)]["step"] == 3
