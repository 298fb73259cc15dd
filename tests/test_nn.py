"""nn.Module and friends: registration, walking, state dicts, checkpoints, modes, freezing."""
import os

import numpy as np
import pytest

import minitl as tl
from minitl import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5))
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.body(x))


def test_registration_and_names():
    model = MLP()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["body.0.weight", "body.0.bias", "fc.weight", "fc.bias"]
    assert [n for n, _ in model.named_children()] == ["body", "fc"]
    assert [n for n, _ in model.named_modules()] == ["", "body", "body.0", "body.1", "body.2", "fc"]
    assert model.num_parameters() == 4 * 8 + 8 + 8 * 3 + 3


def test_replacing_the_head_as_in_the_chapter():
    model = MLP()
    for p in model.parameters():
        p.requires_grad = False
    model.fc = nn.Linear(model.fc.in_features, 5)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    assert model.num_parameters(trainable_only=True) == 8 * 5 + 5
    out = model(tl.randn(2, 4))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert model.fc.weight.grad is not None and model.body[0].weight.grad is None


def test_shared_parameter_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2


def test_train_eval_switches_dropout():
    model = MLP()
    x = tl.ones(64, 4)
    model.eval()
    assert not model.body[2].training
    np.testing.assert_array_equal(model(x).data, model(x).data)
    model.train()
    assert model.body[2].training
    assert not np.array_equal(model(x).data, model(x).data)


def test_requires_grad_and_zero_grad():
    model = MLP()
    model.body.requires_grad_(False)
    assert model.num_parameters(trainable_only=True) == 8 * 3 + 3
    model(tl.randn(2, 4)).sum().backward()
    assert model.fc.bias.grad is not None
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_dict_round_trip_and_copy_semantics():
    tl.manual_seed(0)
    a = MLP()
    tl.manual_seed(1)
    b = MLP()
    state = a.state_dict()
    a.fc.weight.data += 1  # the state dict is a snapshot
    assert not np.array_equal(state["fc.weight"], a.fc.weight.data)
    result = b.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    np.testing.assert_array_equal(b.fc.weight.data, state["fc.weight"])


def test_load_state_dict_lists_every_problem():
    model = MLP()
    state = model.state_dict()
    del state["fc.bias"]
    state["fc.extra"] = np.zeros(2)
    state["body.0.weight"] = np.zeros((2, 2))
    with pytest.raises(nn.StateDictError) as info:
        model.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: fc.bias" in message
    assert "unexpected keys: fc.extra" in message
    assert "body.0.weight: checkpoint (2, 2) vs model (8, 4)" in message


def test_load_state_dict_non_strict_still_rejects_shapes():
    model = MLP()
    state = {"fc.weight": np.zeros((3, 8)), "other": np.zeros(1)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert "fc.bias" in missing and unexpected == ["other"]
    np.testing.assert_array_equal(model.fc.weight.data, 0)
    with pytest.raises(nn.StateDictError, match="mis-shaped"):
        model.load_state_dict({"fc.weight": np.zeros((4, 8))}, strict=False)


def test_buffers_are_saved_and_loaded():
    class WithBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.register_buffer("running", np.zeros(2, np.float32))

    m = WithBuffer()
    m.running = m.running + 5  # reassigning keeps it a buffer
    state = m.state_dict()
    assert "running" in state and state["running"].tolist() == [5.0, 5.0]
    m2 = WithBuffer()
    m2.load_state_dict(state)
    assert m2.running.tolist() == [5.0, 5.0]


def test_save_load_checkpoint(tmp_path):
    model = MLP()
    path = tmp_path / "sub" / "model.npz"
    tl.save(model.state_dict(), path)
    loaded = tl.load(path)
    assert list(loaded) == list(model.state_dict())
    fresh = MLP()
    fresh.load_state_dict(loaded)
    np.testing.assert_array_equal(fresh.fc.weight.data, model.fc.weight.data)
    # no temporary files left behind
    assert os.listdir(path.parent) == ["model.npz"]


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    tl.save({"w": np.ones(3)}, path)

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        tl.save({"w": np.zeros(3)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(tl.load(path)["w"], np.ones(3))  # the old checkpoint survived
    assert os.listdir(tmp_path) == ["model.npz"]


def test_load_never_unpickles_and_reports_corruption(tmp_path):
    path = tmp_path / "bad.npz"
    tl.save({"w": np.ones(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(tl.CheckpointError, match="corrupt or truncated"):
        tl.load(path)
    obj_path = tmp_path / "objects.npz"
    np.savez(obj_path, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(tl.CheckpointError):
        tl.load(obj_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        tl.load(tmp_path / "missing.npz")


def test_nested_state_round_trip(tmp_path):
    state = {"epoch": 3, "name": "run", "model": {"w": np.arange(3.0)}, "lrs": [0.1, 0.01]}
    tl.save(state, tmp_path / "x.npz")
    back = tl.load(tmp_path / "x.npz")
    assert back["epoch"] == 3 and back["name"] == "run" and back["lrs"] == [0.1, 0.01]
    np.testing.assert_array_equal(back["model"]["w"], np.arange(3.0))


def test_containers():
    lst = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
    lst.append(nn.Linear(2, 1))
    assert len(lst) == 3 and len(list(lst.parameters())) == 6
    d = nn.ModuleDict({"a": nn.Linear(2, 2)})
    d["b"] = nn.ReLU()
    assert list(d.keys()) == ["a", "b"] and "a" in d
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert isinstance(seq[:2], nn.Sequential) and len(seq[:2]) == 2
    assert seq(tl.ones(4, 2)).shape == (4, 1)
    assert "Linear(in_features=2, out_features=3, bias=True)" in repr(seq)


def test_module_without_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.lin = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"must call super\(\).__init__\(\)"):
        Broken()


def test_module_double_casts_parameters():
    model = nn.Linear(3, 2).double()
    assert model.weight.dtype == np.float64
    out = model(tl.tensor(np.ones((1, 3)), dtype="float64"))
    assert out.dtype == np.float64
