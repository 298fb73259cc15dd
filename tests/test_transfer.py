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
    assert [set(r) for r in rows] == [{"strategy", "n_labels", "seed", "accuracy", "trainable_params", "seconds"}] * 5
    params = {r["strategy"]: r["trainable_params"] for r in rows}
    assert params["feature_extraction"] == 8 * 5 + 5
    assert params["feature_extraction"] < params["finetune_frozen_lower"] < params["finetune"] == params["scratch"]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    summary = table.summarize(rows)
    text = table.format_table(summary)
    assert "feature_extraction" in text and "±" in text
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
