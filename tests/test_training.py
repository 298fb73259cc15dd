"""DataLoader, fit/evaluate, and determinism: two seeded runs are equal bit for bit."""
import numpy as np
import pytest

import minitl as tl
from minitl.data import ArrayDataset, DataLoader


def test_dataloader_batches_and_seeded_shuffle():
    x = np.arange(10)
    y = np.arange(10) * 2
    loader = DataLoader((x, y), batch_size=4)
    batches = [(bx.tolist(), by.tolist()) for bx, by in loader]
    assert batches == [([0, 1, 2, 3], [0, 2, 4, 6]), ([4, 5, 6, 7], [8, 10, 12, 14]), ([8, 9], [16, 18])]
    assert len(DataLoader((x, y), batch_size=4, drop_last=True)) == 2

    def epoch_orders(seed):
        tl.manual_seed(seed)
        loader = DataLoader((x,), batch_size=10, shuffle=True)
        return [next(iter(loader))[0].tolist() for _ in range(2)]

    first, second = epoch_orders(5)
    assert sorted(first) == list(range(10)) and first != second  # reshuffled every epoch
    assert epoch_orders(5) == [first, second]  # and repeatable


def test_dataloader_transform_and_errors():
    loader = DataLoader((np.ones((3, 2), np.uint8), np.zeros(3)), batch_size=2,
                        transform=lambda a, b: (a.astype(np.float32) / 2, b))
    bx, _ = next(iter(loader))
    assert bx.dtype == np.float32 and bx.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    with pytest.raises(ValueError, match="different lengths"):
        ArrayDataset(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader((np.ones(3),), batch_size=0)


def blobs(n=1000, seed=0):
    """Three Gaussian blobs in 5-D: an easy, honest classification problem."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, 5)) * 3
    y = rng.integers(0, 3, n)
    x = (centers[y] + rng.standard_normal((n, 5))).astype(np.float32)
    return x, y


def train_once(seed):
    tl.manual_seed(seed)
    x, y = blobs()
    model = tl.nn.Sequential(tl.nn.Linear(5, 32), tl.nn.ReLU(), tl.nn.Dropout(0.1), tl.nn.Linear(32, 3))
    opt = tl.optim.Adam(model.parameters(), lr=1e-2)
    train = DataLoader((x[:500], y[:500]), batch_size=50, shuffle=True)
    val = DataLoader((x[500:600], y[500:600]), batch_size=100)
    history = tl.fit(model, train, opt, epochs=4, val_loader=val, progress=False)
    return model, history


def test_fit_learns_and_records_history():
    model, history = train_once(0)
    assert len(history) == 4
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history.last()["val_acc"] > 0.9
    x, y = blobs()
    loss, acc = tl.evaluate(model, DataLoader((x[600:], y[600:]), batch_size=100))
    assert acc > 0.9 and loss < 0.5
    assert model.training  # evaluate restores the mode


def test_two_seeded_runs_are_identical():
    model_a, hist_a = train_once(11)
    model_b, hist_b = train_once(11)
    assert hist_a["train_loss"] == hist_b["train_loss"]
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
    model_c, hist_c = train_once(12)
    assert hist_c["train_loss"] != hist_a["train_loss"]


def test_fit_stops_on_a_diverging_loss():
    x, y = blobs()
    model = tl.nn.Linear(5, 3)
    model.weight.data[0, 0] = np.inf  # what a far too large learning rate leads to
    opt = tl.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        with np.errstate(all="ignore"):
            tl.fit(model, DataLoader((x, y), batch_size=50), opt, epochs=2, progress=False)


def test_training_step_closure_updates_the_model_each_call():
    from minitl.training import training_step

    tl.manual_seed(0)
    model = tl.nn.Linear(4, 3)
    x = tl.tensor(np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32))
    y = tl.tensor(np.arange(16) % 3)
    step = training_step(model, tl.optim.SGD(model.parameters(), lr=0.5), tl.nn.functional.cross_entropy, x, y)
    losses = []
    for _ in range(5):
        losses.append(float(tl.nn.functional.cross_entropy(model(x), y).data))
        step()
    assert losses[-1] < losses[0]


def _linear_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    return x, np.arange(16) % 3


def test_train_step_is_forward_loss_backward_step_schedule():
    """The one step equals the lines written out by hand, bit for bit, and hands back the
    loss and logits cut from the graph."""
    from minitl.training import train_step

    x, y = _linear_problem()
    tl.manual_seed(0)
    ours, theirs = tl.nn.Linear(4, 3), tl.nn.Linear(4, 3)
    theirs.load_state_dict(ours.state_dict())
    opt_ours = tl.optim.Adam(ours.parameters(), lr=0.1)
    opt_theirs = tl.optim.Adam(theirs.parameters(), lr=0.1)
    sched_ours = tl.optim.warmup_cosine(opt_ours, 1, 4)
    sched_theirs = tl.optim.warmup_cosine(opt_theirs, 1, 4)
    for _ in range(3):
        loss, logits = train_step(ours, opt_ours, tl.nn.functional.cross_entropy, tl.tensor(x), tl.tensor(y),
                                  scheduler=sched_ours)
        expected_logits = theirs(tl.tensor(x))
        expected = tl.nn.functional.cross_entropy(expected_logits, tl.tensor(y))
        opt_theirs.zero_grad()
        expected.backward()
        opt_theirs.step()
        sched_theirs.step()
        assert loss.item() == expected.item()
        np.testing.assert_array_equal(logits.data, expected_logits.data)
        assert loss.grad_fn is None and not logits.requires_grad
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.data)
    assert opt_ours.param_groups[0]["lr"] == opt_theirs.param_groups[0]["lr"] != 0.1  # the schedule moved


def test_train_step_clips_the_joint_gradient_norm():
    from minitl.nn.utils import clip_grad_norm_
    from minitl.training import train_step

    x, y = _linear_problem(1)
    tl.manual_seed(1)
    model = tl.nn.Linear(4, 3)
    start = {k: v.copy() for k, v in model.state_dict().items()}
    train_step(model, tl.optim.SGD(model.parameters(), lr=1.0), tl.nn.functional.cross_entropy,
               tl.tensor(x), tl.tensor(y), max_grad_norm=1e-3)
    moved = {k: start[k] - v for k, v in model.state_dict().items()}  # = lr * the clipped gradient
    norm = np.sqrt(sum(float((d.astype(np.float64) ** 2).sum()) for d in moved.values()))
    assert norm == pytest.approx(1e-3, rel=1e-3)
    model.zero_grad()
    tl.nn.functional.cross_entropy(model(tl.tensor(x)), tl.tensor(y)).backward()
    assert clip_grad_norm_(model.parameters(), 1e9) > 1e-2  # so the clip above did act


def test_train_step_runs_a_pytorch_model_too():
    """The benchmarks time PyTorch's step with the same function."""
    torch = pytest.importorskip("torch")
    from minitl.training import train_step

    x, y = _linear_problem(2)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    tx, ty = torch.tensor(x), torch.tensor(y)
    first, _ = train_step(model, opt, torch.nn.functional.cross_entropy, tx, ty)
    for _ in range(3):
        loss, logits = train_step(model, opt, torch.nn.functional.cross_entropy, tx, ty)
    assert loss.item() < first.item() and logits.shape == (16, 3) and not loss.requires_grad


def test_every_training_loop_runs_the_one_step(monkeypatch):
    """fit, transfer.train_steps and the benchmarks' closure all go through train_step."""
    from minitl import training, transfer

    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    real = training.train_step
    monkeypatch.setattr(training, "train_step", counting)
    monkeypatch.setattr(transfer, "train_step", counting)
    x, y = _linear_problem(3)
    model = tl.nn.Linear(4, 3)
    opt = tl.optim.SGD(model.parameters(), lr=0.1)
    tl.fit(model, DataLoader((x, y), batch_size=4), opt, epochs=1, progress=False)
    assert len(calls) == 4
    transfer.train_steps(model, DataLoader((x, y), batch_size=8), opt, steps=3)
    assert len(calls) == 7
    training.training_step(model, opt, tl.nn.functional.cross_entropy, tl.tensor(x), tl.tensor(y))()
    assert len(calls) == 8


def test_fit_clips_with_max_grad_norm():
    x, y = blobs()
    tl.manual_seed(0)
    model = tl.nn.Linear(5, 3)
    before = model.weight.data.copy()
    tl.fit(model, DataLoader((x[:50], y[:50]), batch_size=50), tl.optim.SGD(model.parameters(), lr=1.0),
           epochs=1, progress=False, max_grad_norm=1e-4)
    assert 0 < np.abs(model.weight.data - before).max() <= 1e-4 + 1e-7
