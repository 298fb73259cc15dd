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
