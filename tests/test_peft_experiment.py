"""`minitl experiment peft` (issue 13) on tiny tasks made here: every method runs and reports
its numbers, the counts are the models' own, the base stays frozen, multi-task serving switches
adapters per batch. The real tasks (the pretrained mini-BERT and ViT) run in the lesson and CI."""
import json

import numpy as np
import pytest

import minitl as tl
from minitl import nn
from minitl.experiments import peft_table


class TinyText(nn.Module):
    """A token classifier shaped like the chapter's: embeddings, a Transformer encoder, a head."""

    def __init__(self, vocab=12, width=16, classes=3):
        super().__init__()
        self.config = {"d_model": width}
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, 2, 32, dropout=0.0, batch_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.classifier = nn.Linear(width, classes)

    def encode(self, ids, pooling="mean"):
        hidden = self.encoder(self.embed(ids))
        return hidden, hidden.mean(1)

    def forward(self, ids):
        return self.classifier(self.encode(ids)[1])


def tiny_task(seed=0, n=240):
    """Which of three marker tokens a sequence holds: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.integers(3, 12, size=(n, 6))
    x[np.arange(n), rng.integers(0, 6, size=n)] = y
    tl.manual_seed(1)
    state = TinyText().state_dict()

    def make_model():
        model = TinyText()
        model.load_state_dict(state)
        return model

    return peft_table.Task("tiny", make_model, "classifier", x[:200], y[:200], x[200:], y[200:], 3)


def test_every_method_runs_and_reports_the_tables_columns(tmp_path):
    task = tiny_task()
    rows = peft_table.run([task], label_counts=(30,), seeds=1, fast=True, json_path=tmp_path / "rows.json",
                          progress=False)
    assert [r["method"] for r in rows] == list(peft_table.METHODS)
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    by = {r["method"]: r for r in rows}
    total = sum(p.numel() for p in TinyText().parameters())
    assert by["full_ft"]["trainable_params"] == by["full_ft"]["total_params"] == total
    assert by["linear_probe"]["trainable_params"] == 16 * 3 + 3
    # LoRA on [W_q; W_k; W_v] of two layers, r (16 + 48) each, plus the head's trained copy
    assert by["lora_r4"]["trainable_params"] == 2 * 4 * (16 + 48) + 51
    assert by["lora_r8"]["trainable_params"] == 2 * 8 * (16 + 48) + 51
    assert by["prompt"]["trainable_params"] == 10 * 16 + 51
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["n_labels"] == 30
        assert r["training_state_bytes"] == 4 * 4 * r["trainable_params"]  # float32 x (param, grad, m, v)
        assert r["peak_step_bytes"] > 0 and r["seconds_per_epoch"] > 0
        assert 0 < r["trainable_percent"] <= 100
    summary = peft_table.summarize(rows)
    table = peft_table.format_table(summary)
    assert "| tiny | 30 | lora_r8 |" in table and "± 0.000 (n=1)" in table
    fig = peft_table.plot(summary, tmp_path / "peft.png")
    assert (tmp_path / "peft.png").stat().st_size > 0 and fig.axes[0].get_xscale() == "log"


def test_the_pretrained_weights_are_not_changed_by_the_peft_methods():
    task = tiny_task()
    before = task.make_model().state_dict()
    model = peft_table.adapt(task.make_model(), "lora_r4", "classifier")
    optimizer = tl.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(3):
        tl.training.train_step(model, optimizer, tl.ops.cross_entropy, tl.tensor(task.x[:16]), tl.tensor(task.y[:16]))
    base = model.unload().state_dict()
    for k, v in before.items():
        np.testing.assert_array_equal(base[k], v, err_msg=k)


def test_lora_learns_the_tiny_task():
    # 160 labels: the pool of 200 less its validation fifth
    rows = peft_table.run([tiny_task()], label_counts=(160,), seeds=1, methods=("lora_r8",), progress=False)
    assert rows[0]["accuracy"] > 0.6  # chance is 1/3


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="unknown method 'lora'"):
        peft_table.adapt(TinyText(), "lora", "classifier")


def test_multi_task_serving_switches_adapters_per_batch_on_one_frozen_backbone():
    tl.manual_seed(0)
    backbone = TinyText()
    frozen = {k: v for k, v in backbone.state_dict().items() if not k.startswith("classifier")}
    rng = np.random.default_rng(0)
    a = tiny_task(0)
    # the second task, another label set: does the sequence hold token 11 (the tokens 3..10 otherwise)
    x2 = rng.integers(3, 11, size=(240, 6))
    y2 = rng.integers(0, 2, size=240)
    x2[np.arange(240), rng.integers(0, 6, size=240)] = np.where(y2 == 1, 11, x2[np.arange(240), 0])
    tasks = {"first": (a.x, a.y, a.x_test, a.y_test, 3), "second": (x2[:200], y2[:200], x2[200:], y2[200:], 2)}
    results = peft_table.serve_two_tasks(backbone, tasks, r=4, steps=150, progress=False)
    assert set(results) == {"first", "second"}
    assert results["first"]["adapter_switches"] == 2  # one test batch of each task, served in turn
    for name, r in results.items():
        assert 0.0 <= r["accuracy"] <= 1.0
        # the adapter (2 layers x 4 x (16 + 48) numbers) and the head, in float32
        head = 16 * tasks[name][4] + tasks[name][4]
        assert r["stored_bytes"] == 4 * (2 * 4 * 64 + head)
        assert r["full_copy_bytes"] > r["stored_bytes"]
    for name in tasks:  # each adapter learned its task: a collapsed one scores the majority baseline
        y_test = tasks[name][3]
        majority = np.bincount(y_test).max() / len(y_test)
        assert results[name]["accuracy"] > majority + 0.15, (name, results[name]["accuracy"], majority)
    after = backbone.state_dict()  # the LoRA layers sit in it now, the frozen weights as base_layer
    for k, v in frozen.items():
        np.testing.assert_array_equal(after[k.replace("self_attn.", "self_attn.base_layer.")], v, err_msg=k)


# --- the recipes and how they were tuned ----------------------------------------------------------
def test_the_recipe_table_names_every_method_with_a_rate_from_its_tuning_grid():
    assert set(peft_table.RECIPES) == set(peft_table.METHODS)
    assert set(peft_table.TUNING_GRID) == set(peft_table.TUNED_METHODS) == set(peft_table.METHODS) - {"lora_r4"}
    for method in peft_table.TUNED_METHODS:
        assert peft_table.RECIPES[method]["lr"] in peft_table.TUNING_GRID[method], method
        assert len(peft_table.TUNING_GRID[method]) >= 3
    assert peft_table.RECIPES["lora_r4"] == peft_table.RECIPES["lora_r8"]  # r = 4 takes r = 8's tuned rate


def test_the_validation_split_is_carved_from_the_training_pool_stratified_and_fixed():
    task = tiny_task()
    pool, validation = peft_table.validation_split(task)
    assert len(validation) == len(task.y) // 5 and len(pool) + len(validation) == len(task.y)
    assert not set(pool) & set(validation) and validation.max() < len(task.y)
    counts = np.bincount(task.y[validation], minlength=3) / len(validation)
    np.testing.assert_allclose(counts, np.bincount(task.y, minlength=3) / len(task.y), atol=0.03)
    again = peft_table.validation_split(tiny_task())
    np.testing.assert_array_equal(again[1], validation)


def unique_rows_task():
    """tiny_task, its 240 sequences all different, so a row tells which example it is."""
    task = tiny_task()
    x = np.concatenate([task.x, task.x_test])
    assert len(np.unique(x, axis=0)) == len(x)
    return task, {row.tobytes(): i for i, row in enumerate(x)}


@pytest.mark.parametrize("evaluate", ["test", "validation"])
def test_runs_train_outside_the_validation_split_and_tuning_never_reads_the_test_set(monkeypatch, evaluate):
    task, index = unique_rows_task()
    pool, validation = peft_table.validation_split(task)
    trained, scored = set(), []
    real_step, real_accuracy = peft_table.train_step, peft_table.accuracy

    def recording_step(model, optimizer, loss_fn, x, y, **kw):
        trained.update(index[row.tobytes()] for row in x.data)
        return real_step(model, optimizer, loss_fn, x, y, **kw)

    def recording_accuracy(model, x, y, **kw):
        scored.append({index[row.tobytes()] for row in x})
        return real_accuracy(model, x, y, **kw)

    monkeypatch.setattr(peft_table, "train_step", recording_step)
    monkeypatch.setattr(peft_table, "accuracy", recording_accuracy)
    row = peft_table.run_one(task, "linear_probe", 100, 0, fast=True, evaluate=evaluate)
    assert row["evaluated_on"] == evaluate
    test_ids = set(range(len(task.y), len(task.y) + len(task.y_test)))
    assert trained and trained <= set(pool.tolist())  # never a validation or test example
    assert scored == [test_ids if evaluate == "test" else set(validation.tolist())]


def test_more_labels_than_the_pool_outside_validation_is_an_error():
    with pytest.raises(ValueError, match="160 examples outside the validation split"):
        peft_table.run_one(tiny_task(), "linear_probe", 200, 0, fast=True)
    with pytest.raises(ValueError, match="evaluate must be"):
        peft_table.run_one(tiny_task(), "linear_probe", 30, 0, fast=True, evaluate="train")


def test_full_fine_tuning_trains_its_fresh_head_at_the_recipes_head_rate():
    task = tiny_task()
    model = peft_table.adapt(task.make_model(), "full_ft", "classifier")
    optimizer = peft_table.optimizer_for(model, "full_ft", "classifier", {"lr": 1e-4, "head_lr": 3e-3})
    body, head = optimizer.param_groups
    assert body["lr"] == 1e-4 and head["lr"] == 3e-3
    assert {id(p) for p in head["params"]} == {id(p) for p in model.classifier.parameters()}
    assert len(body["params"]) + len(head["params"]) == len(list(model.parameters()))
    peft_model = peft_table.adapt(task.make_model(), "lora_r4", "classifier")
    group, = peft_table.optimizer_for(peft_model, "lora_r4", "classifier", {"lr": 5e-3}).param_groups
    assert group["lr"] == 5e-3


def test_the_sweep_scores_every_rate_on_validation_then_reruns_the_best_with_twice_the_steps(monkeypatch):
    monkeypatch.setattr(peft_table, "STEPS", 20)
    grid = {"linear_probe": (1e-3, 1e-1), "lora_r4": (1e-3, 3e-2)}
    rows = peft_table.tune([tiny_task()], methods=tuple(grid), n_labels=100, grid=grid, progress=False,
                           check_steps=tuple(grid))
    assert [(r["method"], r["lr"]) for r in rows[:4]] == [(m, lr) for m in grid for lr in grid[m]]
    assert all(r["evaluated_on"] == "validation" for r in rows) and len(rows) == 6
    for method in grid:
        swept = [r for r in rows[:4] if r["method"] == method]
        check, = [r for r in rows[4:] if r["method"] == method]
        assert check["lr"] == max(swept, key=lambda r: r["accuracy"])["lr"]
        assert check["steps"] == 2 * swept[0]["steps"]
    table = peft_table.format_tuning(rows)
    assert table.count(" *") == 2 and "| tiny | lora_r4 | 0.03 |" in table


def test_the_twice_the_steps_check_runs_only_for_the_methods_asked(monkeypatch):
    monkeypatch.setattr(peft_table, "STEPS", 10)
    grid = {"linear_probe": (1e-2,), "prompt": (3e-2,)}
    rows = peft_table.tune([tiny_task()], methods=tuple(grid), n_labels=50, grid=grid, progress=False,
                           check_steps=("prompt",))
    assert [(r["method"], r["steps"]) for r in rows] == [("linear_probe", 12), ("prompt", 12), ("prompt", 24)]


def test_a_tuning_grid_on_the_command_line_names_tuned_methods_and_numbers():
    import argparse
    parser = argparse.ArgumentParser()
    assert peft_table.parse_grid("full_ft=3e-3;prompt=1e-1,3e-1", parser) == {"full_ft": (3e-3,), "prompt": (0.1, 0.3)}
    for bad in ("lora_r4=1e-3", "prompt=fast", "prompt"):
        with pytest.raises(SystemExit):
            peft_table.parse_grid(bad, parser)
