"""Lesson 3's claim measurements (minitl/experiments/transfer_claims.py) on a tiny synthetic
problem: runs are shared between tables, forgetting is read through the original head, the
batch-norm pitfall moves running statistics and no parameter, and the chapter's table is
read off curves."""
import math

import numpy as np
import pytest

import minitl as tl
from minitl import transfer
from minitl.experiments import transfer_claims as claims
from minitl.experiments import transfer_table as table

rng = np.random.default_rng(5)
CONFIG = {"widths": [4, 8, 8], "depth": [1, 1, 1]}


def images(n):
    return rng.standard_normal((n, 1, 28, 28)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_runs():
    """A tiny source model with non-trivial BatchNorm statistics, and Runs over a tiny target."""
    tl.manual_seed(0)
    source = tl.models.resnet_mini(5, **CONFIG)
    ys = np.repeat(np.arange(5), 8)
    xs = images(40) + ys[:, None, None, None].astype(np.float32)
    transfer.train_steps(source, transfer.make_loader(xs, ys, 8), tl.optim.Adam(source.parameters(), lr=1e-2),
                         steps=5)
    state = {"weights": source.state_dict(), "config": CONFIG}
    y = np.repeat(np.arange(5), 8)
    x = 2 * images(40) + 1 + y[:, None, None, None].astype(np.float32)  # other statistics than the source's
    data = (x, y, x[:20], y[:20])
    cache = transfer.FeatureCache(table.pretrained_model(state, 5))
    return claims.Runs(state, data, cache, (xs, ys), fast=True, progress=False)


def test_feature_extraction_keeps_the_source_task_through_the_original_head(tiny_runs):
    row = tiny_runs.get("feature_extraction", 10)
    assert row["source_accuracy"] == tiny_runs.source_before()
    assert row["params_changed"] == 0 and row["mean_drift"] == 0.0
    full = tiny_runs.get("finetune", 10)
    assert full["params_changed"] == full["params_total"]  # every body array moved
    assert "source_accuracy" not in tiny_runs.get("scratch", 10)


def test_runs_are_trained_once_and_shared(tiny_runs, monkeypatch):
    tiny_runs.get("finetune", 10)
    tiny_runs.get("finetune_frozen_lower", 10)
    monkeypatch.setattr(table, "train_one", lambda *a, **k: pytest.fail("retrained a shared run"))
    assert claims.depth_run(tiny_runs, 0, 10) is tiny_runs.get("finetune", 10)
    assert claims.depth_run(tiny_runs, 3, 10) is tiny_runs.get("finetune_frozen_lower", 10)


def test_freeze_depth_counts_what_trains(tiny_runs):
    claim = claims.freeze_depth(tiny_runs, (10,))
    trainable = [int(r[1].replace(",", "")) for r in claim.rows]
    assert trainable == sorted(trainable, reverse=True)  # each deeper freeze trains fewer parameters
    assert trainable[-1] == 8 * 5 + 5  # all blocks frozen: the head alone
    assert len(claim.rows) == 5 and "N = 10" in claim.findings[0]
    assert claims.depth_run(tiny_runs, 2, 10)["params_changed"] == sum(
        1 for k in tiny_runs.state["weights"] if k.startswith(("layer2.", "layer3.")) and "running_" not in k)


def test_batchnorm_pitfall_moves_statistics_not_parameters(tiny_runs):
    claim = claims.batchnorm_pitfall(tiny_runs, (10,))
    ev, tr = claim.data["eval()@10"], claim.data["train()@10"]
    assert ev["params_changed"] == tr["params_changed"] == 0
    assert ev["mean_drift"] == 0.0 and ev["var_drift"] == 0.0
    assert tr["mean_drift"] > 0.05 and tr["var_drift"] > 0.05  # the target's statistics leaked in
    assert ev["source_accuracy"] == tiny_runs.source_before()


def test_forgetting_and_learning_rate_tables(tiny_runs):
    claim = claims.forgetting(tiny_runs, (10,))
    assert claim.rows[0][0].startswith("source model") and len(claim.rows) == 1 + len(claims.PRETRAINED)
    assert claim.data["source"]["feature_extraction@10"] == claim.data["before"]
    lr = claims.body_learning_rate(tiny_runs, (10,))
    assert [r[0] for r in lr.rows] == ["1", "0.1", "0.01"]
    assert lr.data["accuracy"]["1@10"] == tiny_runs.get("finetune", 10)["accuracy"]


def test_labels_to_reach_reads_the_curve_in_log_n():
    curve = [(100, 0.6), (1000, 0.7), (10000, 0.8)]
    value, text = claims.labels_to_reach(curve, 0.75)
    assert value == pytest.approx(math.sqrt(1000 * 10000)) and text == "≈ 3,162"
    assert claims.labels_to_reach(curve, 0.5) == (100.0, "≤ 100")
    assert claims.labels_to_reach(curve, 0.7)[0] == pytest.approx(1000)
    value, text = claims.labels_to_reach(list(reversed(curve)), 0.9)
    assert value == math.inf and text == "> 10,000 (not reached)"
    with pytest.raises(ValueError, match="no points"):
        claims.labels_to_reach([], 0.5)


class FakeRuns:
    """Rows with given accuracies, to test the table logic of (e) alone."""

    def __init__(self, accuracy):
        self.accuracy = accuracy

    def get(self, strategy, n):
        return {"accuracy": self.accuracy[strategy][n]}


def test_data_needed_compares_the_chapters_rows_in_code(tmp_path):
    acc = {"scratch": {100: 0.60, 1000: 0.75, 10000: 0.83, 30000: 0.87},
           "feature_extraction": {100: 0.68, 1000: 0.73, 10000: 0.75},
           "finetune": {100: 0.70, 1000: 0.81, 10000: 0.86},
           "finetune_frozen_lower": {100: 0.71, 1000: 0.80, 10000: 0.84},
           "gradual_unfreezing": {100: 0.70, 1000: 0.81, 10000: 0.85}}
    main, agreement = claims.data_needed(FakeRuns(acc), (100, 1000, 10000), scratch_extra=(30000,))
    assert main.data["goal"] == 0.82
    assert main.data["needed"]["feature_extraction"] == math.inf
    assert 1000 < main.data["needed"]["finetune"] < main.data["needed"]["scratch"] < 10000
    verdicts = [r[2] for r in agreement.rows]
    assert verdicts == ["no", "yes", "no", "yes", "yes", "yes"]
    assert "agree with 4 of the chapter's 6 statements, disagree with 2, and cannot tell 0" in main.findings[0]
    one_point = {a: {100: acc[a][100]} for a in acc}  # every curve reaches the goal at its first point
    _, agreement = claims.data_needed(FakeRuns(one_point), (100,))
    assert [r[2] for r in agreement.rows] == ["can't tell"] * 3 + ["yes", "yes", "can't tell"]
    fig = claims.plot_data_needed(main, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 1000
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_claims_show_records_tables_for_the_tour(tmp_path, monkeypatch):
    from minitl import report

    monkeypatch.setenv("MINITL_REPORT", str(tmp_path / "r.jsonl"))
    claims.Claim("t", ["a"], [["1"]], ["a finding"]).show()
    kinds = [r["kind"] for r in report.read_records(tmp_path / "r.jsonl")]
    assert kinds == ["table", "note"]


def test_a_store_resumes_rows_of_the_same_checkpoint_only(tiny_runs, tmp_path, monkeypatch):
    store = tmp_path / "runs.jsonl"
    first = claims.Runs(tiny_runs.state, tiny_runs.data, tiny_runs.cache, tiny_runs.source_data, fast=True,
                        progress=False, store=store)
    row = first.get("feature_extraction", 10)
    monkeypatch.setattr(table, "train_one", lambda *a, **k: pytest.fail("retrained a stored run"))
    again = claims.Runs(tiny_runs.state, tiny_runs.data, tiny_runs.cache, tiny_runs.source_data, fast=True,
                        progress=False, store=store)
    assert again.get("feature_extraction", 10) == row
    other = {**tiny_runs.state, "weights": {**tiny_runs.state["weights"],
                                            "fc.bias": tiny_runs.state["weights"]["fc.bias"] + 1}}
    assert claims.Runs(other, tiny_runs.data, tiny_runs.cache, store=store).stored == {}


def test_the_plan_is_every_run_the_claims_ask_for_shared_out_once():
    plan = claims.lesson_plan(fast=False, whole_set=30000)
    assert ("scratch", 30000, {}) in plan and ("finetune", 100, {"body_lr_ratio": 0.01}) in plan
    assert len(plan) == len({repr(p) for p in plan})
    shares = claims.share_out(plan, 4)
    assert sorted(map(repr, sum(shares, []))) == sorted(map(repr, plan))

    class OnlyPlanned(claims._Planner):
        def get(self, strategy, n_labels, **overrides):
            assert (strategy, n_labels, overrides) in plan, (strategy, n_labels, overrides)
            return super().get(strategy, n_labels, **overrides)

    assert len(claims.lesson_claims(OnlyPlanned(), fast=False, whole_set=30000)) == 6
