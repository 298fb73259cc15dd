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


def test_get_and_set_submodule_by_dotted_name():
    model = MLP()
    assert model.get_submodule("body.0") is model.body[0]
    assert model.get_submodule("") is model
    new = nn.Linear(4, 8)
    model.set_submodule("body.0", new)
    assert model.body[0] is new and model.get_submodule("body.0") is new
    assert dict(model.named_parameters())["body.0.weight"] is new.weight
    with pytest.raises(AttributeError, match=r"get_submodule\('body.7.x'\): Sequential at body has no sub-module '7'"):
        model.get_submodule("body.7.x")
    with pytest.raises(AttributeError, match="has no sub-module 'head'"):
        model.set_submodule("head.0", nn.ReLU())  # the parent must exist
    model.set_submodule("extra", nn.ReLU())  # not strict: a new child of an existing parent
    assert isinstance(model.extra, nn.ReLU)
    with pytest.raises(AttributeError, match="has no sub-module 'other'"):
        model.set_submodule("other", nn.ReLU(), strict=True)
    model.note = "text"
    with pytest.raises(AttributeError, match="'note' is not an nn.Module"):
        model.set_submodule("note", nn.ReLU())
    with pytest.raises(ValueError, match="expected an nn.Module"):
        model.set_submodule("fc", 3)


def test_forward_hooks_observe_and_replace_and_can_be_removed():
    model = MLP()
    seen = []
    handle = model.body[0].register_forward_hook(lambda module, args, out: seen.append((args[0].shape, out.shape)))
    x = tl.randn(2, 4)
    model(x)
    assert seen == [((2, 4), (2, 8))]
    handle.remove()
    model(x)
    assert len(seen) == 1
    with model.fc.register_forward_hook(lambda module, args, out: out * 0):
        assert np.all(model(x).data == 0)
    assert not np.all(model(x).data == 0)  # leaving the block removed the hook


def test_forward_pre_hooks_may_replace_the_arguments():
    lin = nn.Linear(3, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda module, args: calls.append(module) or None)
    h2 = lin.register_forward_pre_hook(lambda module, args: args[0] * 0)  # one value: becomes (value,)
    out = lin(tl.ones(1, 3))
    np.testing.assert_allclose(out.data, lin.bias.data[None], rtol=1e-6)
    assert calls == [lin]
    got = []
    lin.register_forward_hook(lambda module, args, out: got.append(args[0].tolist()))
    lin(tl.ones(1, 3))
    assert got == [[[0.0, 0.0, 0.0]]]  # the forward hook sees the replaced arguments
    h1.remove()
    h2.remove()
    lin(tl.ones(1, 3))
    assert got[-1] == [[1.0, 1.0, 1.0]] and len(calls) == 2


def test_train_and_eval_go_through_each_childs_own_train():
    class StaysInEval(nn.Module):
        def train(self, mode=True):
            return super().train(False)

    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(StaysInEval(), nn.Dropout()))
    model.eval()
    model.train()
    assert model.training and model[0].training and model[1].training
    assert not model[1][0].training  # its override was honoured
    assert model[1][1].training
    with pytest.raises(ValueError, match="True or False"):
        model.train("yes")


def test_buffers_are_tensors_and_non_persistent_ones_are_not_saved():
    class WithBuffers(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", tl.ones(3))
            self.register_buffer("mask", np.tril(np.ones((2, 2), bool)), persistent=False)

    m = WithBuffers()
    assert isinstance(m.scale, tl.Tensor) and isinstance(m.mask, tl.Tensor)
    assert [n for n, _ in m.named_buffers()] == ["scale", "mask"]
    assert list(m.state_dict()) == ["scale"]
    assert isinstance(m.state_dict()["scale"], np.ndarray)
    m.scale = m.scale * 2  # assignment keeps it a buffer
    assert [n for n, _ in m.named_buffers()] == ["scale", "mask"]
    m2 = WithBuffers()
    assert m2.load_state_dict(m.state_dict()) == ([], [])  # the mask is not expected
    np.testing.assert_array_equal(m2.scale.data, [2.0, 2.0, 2.0])
    m2.double()
    assert m2.scale.dtype == np.float64 and m2.mask.dtype == np.bool_
    with pytest.raises(TypeError, match="cannot assign str as buffer 'scale'"):
        m.scale = "no"
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("training", tl.ones(1))
    m.scale = nn.Parameter(np.ones(3, np.float32))  # a parameter replaces the buffer
    assert [n for n, _ in m.named_buffers()] == ["mask"] and "scale" in dict(m.named_parameters())


def test_batchnorm_buffers_are_tensors_updated_in_place():
    bn = nn.BatchNorm2d(2)
    mean = bn.running_mean
    assert isinstance(mean, tl.Tensor) and not mean.requires_grad
    bn(tl.randn(4, 2, 3, 3) + 5)
    assert bn.running_mean is mean and np.all(mean.data > 0.4)  # moved toward the batch mean of about 5
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    assert all(p is not mean for p in bn.parameters())


def test_log_softmax_module_is_not_a_softmax():
    assert not isinstance(nn.LogSoftmax(), nn.Softmax)
    x = tl.randn(2, 5)
    np.testing.assert_allclose(nn.LogSoftmax(dim=1)(x).data, np.log(nn.Softmax(dim=1)(x).data), rtol=1e-5, atol=1e-6)
    assert repr(nn.LogSoftmax(dim=0)) == "LogSoftmax(dim=0)"


def test_embedding_from_pretrained_shares_or_copies_and_freezes():
    vectors = tl.randn(4, 3)
    emb = nn.Embedding.from_pretrained(vectors)
    assert emb.weight.data is vectors.data and not emb.weight.requires_grad
    assert (emb.num_embeddings, emb.embedding_dim) == (4, 3)
    np.testing.assert_array_equal(emb(np.array([2, 0])).data, vectors.data[[2, 0]])
    assert nn.Embedding.from_pretrained(vectors, freeze=False).weight.requires_grad
    wide = nn.Embedding.from_pretrained(tl.tensor(np.ones((2, 2)), dtype="float64"))
    assert wide.weight.dtype == np.float64
    with pytest.raises(ValueError, match="must be 2-D"):
        nn.Embedding.from_pretrained(tl.ones(3))


def test_new_activation_modules_and_functions_exist():
    x = tl.tensor([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(nn.SiLU()(x).data, x.data / (1 + np.exp(-x.data)), rtol=1e-6)
    np.testing.assert_allclose(nn.Softplus()(x).data, np.log1p(np.exp(x.data)), rtol=1e-6)
    np.testing.assert_allclose(nn.LogSigmoid()(x).data, -np.log1p(np.exp(-x.data)), rtol=1e-6)
    assert repr(nn.Softplus(beta=2)) == "Softplus(beta=2, threshold=20.0)"


# Forward passes by hand, without PyTorch, and without running any backward: the tests of the
# forward exercises need nothing that comes after them.

@pytest.mark.exercise("nn.linear_forward")
def test_linear_forward_is_x_times_w_transposed_plus_b(rng):
    x, w, b = rng.standard_normal((2, 4, 3)), rng.standard_normal((5, 3)), rng.standard_normal(5)
    F = nn.functional
    out = F.linear(tl.tensor(x, dtype="float64"), tl.tensor(w, dtype="float64"), tl.tensor(b, dtype="float64"))
    assert out.shape == (2, 4, 5)
    np.testing.assert_allclose(out.data, x @ w.T + b, rtol=1e-12)
    one = F.linear(tl.tensor(x[0, 0], dtype="float64"), tl.tensor(w, dtype="float64"))  # a single vector, no bias
    assert one.shape == (5,)
    np.testing.assert_allclose(one.data, w @ x[0, 0], rtol=1e-12)


@pytest.mark.exercise("autograd.cross_entropy_forward")
def test_cross_entropy_forward_by_hand(rng):
    F = nn.functional
    logits = rng.standard_normal((5, 4))
    target = np.array([0, 3, 1, -100, 2])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    rows = [0, 1, 2, 4]  # row 3 is ignored
    nll = -logp[rows, target[rows]]
    z = tl.tensor(logits, dtype="float64")
    np.testing.assert_allclose(F.cross_entropy(z, target).item(), nll.mean(), rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(z, target, reduction="sum").item(), nll.sum(), rtol=1e-12)
    per_row = F.cross_entropy(z, target, reduction="none").data
    np.testing.assert_allclose(per_row[rows], nll, rtol=1e-12)
    assert per_row[3] == 0
    eps = 0.2  # label smoothing: target distribution (1 - eps) one_hot + eps / C
    smooth = (1 - eps) * nll - eps * logp[rows].mean(1)
    np.testing.assert_allclose(F.cross_entropy(z, target, label_smoothing=eps).item(), smooth.mean(), rtol=1e-12)
    huge = F.cross_entropy(tl.tensor([[1000.0, 0.0]], dtype="float64"), np.array([1]))
    assert huge.item() == pytest.approx(1000.0)  # stable: no exp of 1000


def test_layers_that_share_code_are_not_kinds_of_each_other():
    """Average pooling is no max pooling, and BatchNorm1d no BatchNorm2d: each shares its code
    through a private base (as PyTorch's _BatchNorm), so isinstance tells them apart."""
    assert not isinstance(nn.AvgPool2d(2), nn.MaxPool2d)
    assert not isinstance(nn.MaxPool2d(2), nn.AvgPool2d)
    assert not isinstance(nn.BatchNorm1d(4), nn.BatchNorm2d)
    assert not isinstance(nn.BatchNorm2d(4), nn.BatchNorm1d)
    x = tl.tensor(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(nn.MaxPool2d(2)(x).data, [[[[5, 7], [13, 15]]]])
    np.testing.assert_array_equal(nn.AvgPool2d(2)(x).data, [[[[2.5, 4.5], [10.5, 12.5]]]])
    assert repr(nn.AvgPool2d(2)) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"
    assert set(nn.BatchNorm1d(3).state_dict()) == set(nn.BatchNorm2d(3).state_dict())


def test_batch_norms_name_the_inputs_they_accept():
    assert nn.BatchNorm1d(3)(tl.randn(4, 3)).shape == (4, 3)
    assert nn.BatchNorm1d(3)(tl.randn(4, 3, 5)).shape == (4, 3, 5)
    assert nn.BatchNorm2d(3)(tl.randn(4, 3, 2, 2)).shape == (4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected a 4-D input \(N, C, H, W\), got shape \(4, 3\)"):
        nn.BatchNorm2d(3)(tl.randn(4, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected a 2-D .* got shape \(4, 3, 2, 2\)"):
        nn.BatchNorm1d(3)(tl.randn(4, 3, 2, 2))
