"""Differential tests against PyTorch (the oracle): forward values and gradients of ops and
layers, and whole training steps. Skipped cleanly when PyTorch is not installed."""
import numpy as np
import pytest

import minitl as tl
import minitl.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

rng = np.random.default_rng(7)


def both(*arrays):
    """The same float64 data as minitl leaves and as torch leaves."""
    ours = [tl.tensor(a, requires_grad=True, dtype="float64") for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True, dtype=torch.float64) for a in arrays]
    return ours, theirs


def compare(our_fn, torch_fn, *arrays, rtol=1e-10, atol=1e-12):
    ours, theirs = both(*arrays)
    out_ours, out_theirs = our_fn(*ours), torch_fn(*theirs)
    np.testing.assert_allclose(out_ours.data, out_theirs.detach().numpy(), rtol=rtol, atol=atol)
    g = rng.standard_normal(out_ours.shape)
    out_ours.backward(g)
    out_theirs.backward(torch.tensor(g))
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=rtol, atol=atol)


OPS = [
    ("broadcast arithmetic", lambda a, b: (a * b + a / (b * b + 1) - b) ** 2, [(3, 1, 4), (2, 4)]),
    ("matmul batched broadcast", lambda a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)]),
    ("exp log sqrt", lambda a: (a.exp() + 1).log().sqrt(), [(3, 4)]),
    ("tanh sigmoid relu", lambda a: a.tanh() + a.sigmoid() * a.relu(), [(5, 3)]),
    ("reductions", None, [(4, 5)]),
    ("var std", lambda a: a.var(1) + a.std(0).sum(), [(4, 5)]),
    ("shape ops", lambda a: a.permute(2, 0, 1).reshape(4, -1).transpose(0, 1).unsqueeze(0).squeeze(0), [(2, 3, 4)]),
    ("indexing", lambda a: a[1:, [0, 2, 2]] * 2, [(3, 4)]),
    ("softmax log_softmax", lambda a: a.softmax(-1) * a.log_softmax(0), [(3, 6)]),
]


@pytest.mark.parametrize("name,fn,shapes", OPS, ids=[o[0] for o in OPS])
def test_ops_match_pytorch(name, fn, shapes):
    arrays = [rng.standard_normal(s) for s in shapes]
    if name == "reductions":
        def ours(a):
            return a.sum(0) * a.mean(1, keepdim=True).sum() + a.max(0)

        def theirs(a):
            return a.sum(0) * a.mean(1, keepdim=True).sum() + a.max(0).values

        compare(ours, theirs, *arrays)
        return
    if name == "exp log sqrt":
        arrays = [np.abs(a) for a in arrays]
    compare(fn, fn, *arrays)


def test_concatenate_stack_pad_where_match_pytorch():
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    mask = np.array([[True, False, True], [False, False, True]])
    compare(lambda x, y: tl.cat([x, y], 1) * 2, lambda x, y: torch.cat([x, y], 1) * 2, a, b)
    compare(lambda x, y: tl.stack([x, y], 2), lambda x, y: torch.stack([x, y], 2), a, b)
    compare(lambda x: F.pad(x, (1, 2, 0, 1)), lambda x: TF.pad(x, (1, 2, 0, 1)), a)
    compare(lambda x, y: tl.where(mask, x, y), lambda x, y: torch.where(torch.tensor(mask), x, y), a, b)
    compare(lambda x: x.masked_fill(mask, -3.0), lambda x: x.masked_fill(torch.tensor(mask), -3.0), a)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_pytorch(approximate):
    compare(lambda x: F.gelu(x, approximate), lambda x: TF.gelu(x, approximate=approximate),
            rng.standard_normal((4, 5)), rtol=1e-7, atol=1e-9)


CE_KWARGS = [dict(), dict(reduction="sum"), dict(reduction="none"), dict(ignore_index=2),
             dict(label_smoothing=0.1), dict(label_smoothing=0.3, ignore_index=0)]


@pytest.mark.exercise("autograd.cross_entropy_forward")
@pytest.mark.parametrize("kwargs", CE_KWARGS)
def test_cross_entropy_values_match_pytorch(kwargs):
    """The forward alone (no backward runs), so it checks cross_entropy_forward by itself."""
    logits = rng.standard_normal((7, 5))
    target = np.array([0, 2, 4, 1, 2, 3, 0])
    ours = F.cross_entropy(tl.tensor(logits, dtype="float64"), target, **kwargs)
    theirs = TF.cross_entropy(torch.tensor(logits), torch.tensor(target), **kwargs)
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.exercise("autograd.cross_entropy_backward")
@pytest.mark.parametrize("kwargs", CE_KWARGS)
def test_cross_entropy_matches_pytorch(kwargs):
    logits = rng.standard_normal((7, 5))
    target = np.array([0, 2, 4, 1, 2, 3, 0])
    compare(lambda z: F.cross_entropy(z, target, **kwargs),
            lambda z: TF.cross_entropy(z, torch.tensor(target), **kwargs), logits)


def test_cross_entropy_sequence_layout_matches_pytorch():
    logits = rng.standard_normal((2, 5, 3))
    target = np.array([[0, 4, 1], [2, -100, 3]])
    compare(lambda z: F.cross_entropy(z, target), lambda z: TF.cross_entropy(z, torch.tensor(target)), logits)


def test_nll_mse_bce_match_pytorch():
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    t = np.array([2, 0, 1, 1])
    compare(lambda a: F.nll_loss(a.log_softmax(-1), t), lambda a: TF.nll_loss(a.log_softmax(-1), torch.tensor(t)), x)
    compare(lambda a, b: F.mse_loss(a, b), lambda a, b: TF.mse_loss(a, b), x, y)
    labels = (rng.random((4, 3)) > 0.5).astype(float)
    compare(lambda a: F.binary_cross_entropy_with_logits(a, labels),
            lambda a: TF.binary_cross_entropy_with_logits(a, torch.tensor(labels)), x * 10)


@pytest.mark.exercise("nn.linear_forward")
def test_linear_layer_values_match_pytorch():
    """The forward alone (no backward runs), so it checks linear_forward by itself."""
    tl.manual_seed(0)
    ours = tl.nn.Linear(5, 3).double()
    theirs = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
        theirs.bias.copy_(torch.tensor(ours.bias.data))
    for shape in [(5,), (4, 5), (2, 4, 5)]:
        x = rng.standard_normal(shape)
        with torch.no_grad():
            expected = theirs(torch.tensor(x)).numpy()
        np.testing.assert_allclose(ours(tl.tensor(x, dtype="float64")).data, expected, rtol=1e-12)


@pytest.mark.exercise("nn.linear_backward")
def test_linear_layer_matches_pytorch():
    tl.manual_seed(0)
    ours = tl.nn.Linear(5, 3).double()
    theirs = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
        theirs.bias.copy_(torch.tensor(ours.bias.data))
    x = rng.standard_normal((2, 4, 5))
    xo, xt = tl.tensor(x, requires_grad=True, dtype="float64"), torch.tensor(x, requires_grad=True)
    (ours(xo) ** 2).sum().backward()
    (theirs(xt) ** 2).sum().backward()
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-10)


def test_linear_init_has_pytorch_bounds():
    tl.manual_seed(0)
    layer = tl.nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.weight.data).max() > 0.95 * bound
    assert np.abs(layer.bias.data).max() <= bound


@pytest.mark.exercise("nn.layer_norm_backward")
def test_layer_norm_matches_pytorch():
    x, w, b = rng.standard_normal((3, 4, 6)), rng.standard_normal(6), rng.standard_normal(6)
    compare(lambda a, ww, bb: F.layer_norm(a, 6, ww, bb), lambda a, ww, bb: TF.layer_norm(a, (6,), ww, bb),
            x, w, b, rtol=1e-9, atol=1e-10)


def test_embedding_matches_pytorch():
    w = rng.standard_normal((6, 3))
    ids = np.array([[1, 5, 1], [0, 1, 3]])
    compare(lambda a: F.embedding(ids, a) * 2, lambda a: TF.embedding(torch.tensor(ids), a) * 2, w)
    compare(lambda a: F.embedding(ids, a, padding_idx=1).sum(), lambda a: TF.embedding(torch.tensor(ids), a, padding_idx=1).sum(), w)


@pytest.mark.exercise("optim.sgd_momentum")
@pytest.mark.parametrize("kwargs", [dict(lr=0.1), dict(lr=0.05, momentum=0.9, weight_decay=1e-3),
                                    dict(lr=0.05, momentum=0.9, nesterov=True)])
def test_sgd_training_steps_match_pytorch(kwargs):
    check_training_steps("SGD", kwargs)


@pytest.mark.exercise("optim.adam")
@pytest.mark.parametrize("opt_name,kwargs", [("Adam", dict(lr=1e-2)), ("Adam", dict(lr=1e-2, weight_decay=1e-2)),
                                             ("AdamW", dict(lr=1e-2, weight_decay=0.1))])
def test_adam_training_steps_match_pytorch(opt_name, kwargs):
    check_training_steps(opt_name, kwargs)


def check_training_steps(opt_name, kwargs):
    """Ten steps of an MLP with dropout off: same weights, same data, same losses."""
    tl.manual_seed(0)
    ours = tl.nn.Sequential(tl.nn.Linear(6, 16), tl.nn.GELU(), tl.nn.LayerNorm(16), tl.nn.Linear(16, 4)).double()
    theirs = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.LayerNorm(16),
                                 torch.nn.Linear(16, 4)).double()
    with torch.no_grad():
        for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
            p_theirs.copy_(torch.tensor(p_ours.data))
    opt_ours = getattr(tl.optim, opt_name)(ours.parameters(), **kwargs)
    opt_theirs = getattr(torch.optim, opt_name)(theirs.parameters(), **kwargs)
    x = rng.standard_normal((32, 6))
    y = rng.integers(0, 4, 32)
    for _ in range(10):
        loss_ours = F.cross_entropy(ours(tl.tensor(x, dtype="float64")), y)
        opt_ours.zero_grad()
        loss_ours.backward()
        opt_ours.step()
        loss_theirs = TF.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
        opt_theirs.zero_grad()
        loss_theirs.backward()
        opt_theirs.step()
        assert loss_ours.item() == pytest.approx(loss_theirs.item(), rel=1e-9)
    for p_ours, p_theirs in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p_ours.data, p_theirs.detach().numpy(), rtol=1e-8, atol=1e-10)


def test_warmup_cosine_matches_pytorch_lambda_schedule():
    p = tl.nn.Parameter(np.ones(1, np.float32))
    opt = tl.optim.SGD([p], lr=0.3)
    sched = tl.optim.warmup_cosine(opt, 5, 20)
    tp = torch.nn.Parameter(torch.ones(1))
    topt = torch.optim.SGD([tp], lr=0.3)
    from minitl.optim.lr_scheduler import warmup_cosine_factor
    tsched = torch.optim.lr_scheduler.LambdaLR(topt, lambda s: warmup_cosine_factor(s, 5, 20))
    for _ in range(20):
        assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"])
        sched.step()
        topt.step()
        tsched.step()


NEW_OPS = [
    ("softplus", lambda a: F.softplus(a), lambda a: TF.softplus(a), 10.0),
    ("softplus beta threshold", lambda a: F.softplus(a, beta=2.0, threshold=3.0),
     lambda a: TF.softplus(a, beta=2.0, threshold=3.0), 4.0),
    ("logsigmoid", lambda a: F.logsigmoid(a), lambda a: TF.logsigmoid(a), 30.0),
    ("silu", lambda a: F.silu(a), lambda a: TF.silu(a), 5.0),
    ("tril", lambda a: a.tril(), lambda a: a.tril(), 1.0),
    ("tril diagonal", lambda a: tl.tril(a, -1), lambda a: torch.tril(a, -1), 1.0),
    ("triu diagonal", lambda a: a.triu(2), lambda a: a.triu(2), 1.0),
    ("normalize", lambda a: F.normalize(a), lambda a: TF.normalize(a), 1.0),
    ("normalize p1 dim -1", lambda a: F.normalize(a, p=1, dim=-1), lambda a: TF.normalize(a, p=1, dim=-1), 1.0),
    ("normalize p3 dim 0", lambda a: F.normalize(a, p=3, dim=0), lambda a: TF.normalize(a, p=3, dim=0), 1.0),
    ("clone", lambda a: a.clone() * 2, lambda a: a.clone() * 2, 1.0),
    ("cast", lambda a: a.float().double() * 2, lambda a: a.float().double() * 2, 1.0),
    ("split", lambda a: tl.cat([p * (i + 1.0) for i, p in enumerate(a.split([1, 2, 1], dim=1))], 1),
     lambda a: torch.cat([p * (i + 1.0) for i, p in enumerate(a.split([1, 2, 1], dim=1))], 1), 1.0),
    ("chunk", lambda a: tl.cat([p * (i + 1.0) for i, p in enumerate(a.chunk(2, dim=2))], 2),
     lambda a: torch.cat([p * (i + 1.0) for i, p in enumerate(a.chunk(2, dim=2))], 2), 1.0),
]


@pytest.mark.parametrize("name,ours,theirs,scale", NEW_OPS, ids=[o[0] for o in NEW_OPS])
def test_sequence_and_activation_ops_match_pytorch(name, ours, theirs, scale):
    compare(ours, theirs, rng.standard_normal((3, 4, 5)) * scale, rtol=1e-7 if name == "cast" else 1e-10)


def test_normalize_of_a_zero_vector_matches_pytorch():
    """||x|| <= eps: y = x / eps, and the gradient is g / eps (the norm is a constant there)."""
    x = rng.standard_normal((3, 4))
    x[1] = 0.0
    compare(lambda a: F.normalize(a, dim=1), lambda a: TF.normalize(a, dim=1), x)


def test_maximum_minimum_split_ties_like_pytorch():
    """On a tie each input gets half of the gradient, broadcasting included."""
    a = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    b = np.array([[2.0], [3.0]])
    compare(lambda x, y: tl.maximum(x, y), lambda x, y: torch.maximum(x, y), a, b)
    compare(lambda x, y: tl.minimum(x, y), lambda x, y: torch.minimum(x, y), a, b)
    compare(lambda x, y: x.maximum(y), lambda x, y: x.maximum(y), a, a.copy())  # all tied


def test_full_max_and_amax_along_a_dim_share_ties_like_pytorch():
    """x.max() splits the gradient evenly among tied maxima in PyTorch, as does x.amax(dim);
    our max(dim) returns values only and follows amax."""
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    compare(lambda a: a.max(), lambda a: a.max(), x)
    compare(lambda a: a.max(1), lambda a: a.amax(1), x)
    compare(lambda a: a.min(0), lambda a: a.amin(0), x)


def test_activation_modules_match_pytorch():
    x = rng.standard_normal((4, 6)) * 5
    for ours, theirs in [(tl.nn.Softplus(beta=0.5, threshold=4.0), torch.nn.Softplus(beta=0.5, threshold=4.0)),
                         (tl.nn.SiLU(), torch.nn.SiLU()), (tl.nn.LogSigmoid(), torch.nn.LogSigmoid())]:
        compare(ours, theirs, x)


def test_embedding_from_pretrained_matches_pytorch():
    vectors = rng.standard_normal((5, 3))
    ids = np.array([[0, 4, 1], [1, 1, 2]])
    for freeze in (True, False):
        ours = tl.nn.Embedding.from_pretrained(tl.tensor(vectors, dtype="float64"), freeze=freeze, padding_idx=1)
        theirs = torch.nn.Embedding.from_pretrained(torch.tensor(vectors), freeze=freeze, padding_idx=1)
        assert ours.weight.requires_grad == theirs.weight.requires_grad == (not freeze)
        out_ours, out_theirs = ours(ids), theirs(torch.tensor(ids))
        np.testing.assert_array_equal(out_ours.data, out_theirs.detach().numpy())
        if not freeze:
            (out_ours * 2).sum().backward()
            (out_theirs * 2).sum().backward()
            np.testing.assert_array_equal(ours.weight.grad, theirs.weight.grad.numpy())
