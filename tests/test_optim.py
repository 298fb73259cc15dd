"""Optimizers and schedules: against reference formulas written out here, and against PyTorch."""
import math

import numpy as np
import pytest

import minitl as tl


def quadratic_problem(seed=0):
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    target = rng.standard_normal((3, 4)).astype(np.float32)
    return w0, target


def run_minitl(opt_factory, steps=5, seed=0):
    w0, target = quadratic_problem(seed)
    w = tl.nn.Parameter(w0.copy())
    opt = opt_factory([w])
    history = []
    for _ in range(steps):
        loss = ((w - tl.tensor(target)) ** 2).sum() * 0.5
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(w.data.copy())
    return history


@pytest.mark.exercise("optim.sgd_momentum")
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_the_formula(nesterov):
    lr, mu, wd = 0.1, 0.9, 0.01
    got = run_minitl(lambda p: tl.optim.SGD(p, lr=lr, momentum=mu, weight_decay=wd, nesterov=nesterov))
    w, target = quadratic_problem()
    w = w.astype(np.float64)
    buf = None
    for step in range(5):
        g = (w - target) + wd * w
        buf = g.copy() if buf is None else mu * buf + g
        w = w - lr * (g + mu * buf if nesterov else buf)
        np.testing.assert_allclose(got[step], w, rtol=1e-5, atol=1e-6)


@pytest.mark.exercise("optim.sgd_momentum")
def test_plain_sgd_step():
    got = run_minitl(lambda p: tl.optim.SGD(p, lr=0.5), steps=1)
    w, target = quadratic_problem()
    np.testing.assert_allclose(got[0], w - 0.5 * (w - target), rtol=1e-6)


@pytest.mark.exercise("optim.adam")
@pytest.mark.parametrize("cls", ["Adam", "AdamW"])
def test_adam_matches_the_formula(cls):
    lr, b1, b2, eps, wd = 0.01, 0.9, 0.99, 1e-8, 0.1
    got = run_minitl(lambda p: getattr(tl.optim, cls)(p, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd), steps=6)
    w, target = quadratic_problem()
    w = w.astype(np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(1, 7):
        g = w - target
        if cls == "Adam":
            g = g + wd * w
        else:
            w = w * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(got[t - 1], w, rtol=1e-5, atol=1e-6)


def check_adam_with_a_large_eps(steps):
    """eps = 1 is as large as sqrt(v_hat) here, so eps in the wrong place (inside the sqrt,
    added to v before the bias correction, or to m_hat) moves the result by O(1)."""
    lr, b1, b2, eps = 0.1, 0.8, 0.9, 1.0
    got = run_minitl(lambda p: tl.optim.Adam(p, lr=lr, betas=(b1, b2), eps=eps), steps=steps)
    w, target = quadratic_problem()
    w = w.astype(np.float64)
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, steps + 1):
        g = w - target
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(got[t - 1], w, rtol=1e-5, atol=1e-6)


@pytest.mark.exercise("optim.adam")
@pytest.mark.parametrize("steps", [1, 3])
def test_adam_with_a_large_eps_matches_the_formula(steps):
    with tl.fastpath.use(False):
        check_adam_with_a_large_eps(steps)


@pytest.mark.parametrize("steps", [1, 3])
def test_fast_adam_with_a_large_eps_matches_the_formula(steps):
    with tl.fastpath.use(True):
        check_adam_with_a_large_eps(steps)


@pytest.mark.exercise("optim.adam")
def test_adam_first_step_moves_every_weight_by_lr():
    """At t = 1, m_hat = g and v_hat = g^2, so each weight moves by lr * sign(g) (eps aside)."""
    g = np.array([3.0, -0.5, 1e-3, -200.0], np.float32)
    p = tl.nn.Parameter(np.zeros(4, np.float32))
    p.grad = g
    tl.optim.Adam([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, -0.1 * np.sign(g), rtol=1e-4)


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("cls,kwargs", [("Adam", dict(lr=1e-2, weight_decay=1e-2)),
                                        ("AdamW", dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1))])
def test_adam_matches_pytorch_on_both_paths(fast, cls, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    shapes = [(70, 30), (30,), (5, 3, 3, 2)]
    start = [rng.standard_normal(s) for s in shapes]
    ours = [tl.nn.Parameter(np.zeros(s, np.float32)) for s in shapes]
    for p, w in zip(ours, start):
        p.data = w.copy()  # float64
    theirs = [torch.tensor(w, requires_grad=True) for w in start]
    opt, ref = getattr(tl.optim, cls)(ours, **kwargs), getattr(torch.optim, cls)(theirs, **kwargs)
    with tl.fastpath.use(fast):
        for _ in range(5):
            grads = [rng.standard_normal(s) for s in shapes]
            for p, t, g in zip(ours, theirs, grads):
                p.grad, t.grad = g, torch.tensor(g)
            opt.step()
            ref.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_param_groups_have_their_own_learning_rates():
    a = tl.nn.Parameter(np.ones(2, np.float32))
    b = tl.nn.Parameter(np.ones(2, np.float32))
    opt = tl.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b]}], lr=1.0)
    a.grad = np.ones(2, np.float32)
    b.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(a.data, [0.9, 0.9])
    np.testing.assert_allclose(b.data, [0.0, 0.0])
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 1.0


def test_optimizer_input_errors():
    p = tl.nn.Parameter(np.ones(2, np.float32))
    with pytest.raises(ValueError, match="empty parameter list"):
        tl.optim.Adam([])
    with pytest.raises(ValueError, match="more than one parameter group"):
        tl.optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        tl.optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        tl.optim.Adam([p], betas=(1.0, 0.9))


def test_frozen_and_gradless_parameters_are_skipped():
    a = tl.nn.Parameter(np.ones(2, np.float32))
    b = tl.nn.Parameter(np.ones(2, np.float32))
    opt = tl.optim.Adam([a, b], lr=0.1)
    a.grad = np.ones(2, np.float32)
    opt.step()
    np.testing.assert_allclose(b.data, [1.0, 1.0])
    assert not np.allclose(a.data, [1.0, 1.0])


def test_optimizer_state_dict_round_trip(tmp_path):
    def make():
        tl.manual_seed(3)
        model = tl.nn.Linear(4, 2)
        return model, tl.optim.Adam(model.parameters(), lr=0.01)

    x = tl.randn(8, 4)
    model, opt = make()
    for _ in range(3):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    tl.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.npz")
    model2, opt2 = make()
    ckpt = tl.load(tmp_path / "ckpt.npz")
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_warmup_cosine_schedule():
    p = tl.nn.Parameter(np.ones(1, np.float32))
    opt = tl.optim.SGD([p], lr=1.0)
    sched = tl.optim.warmup_cosine(opt, warmup_steps=4, total_steps=14)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(14):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[9] == pytest.approx(0.5) and lrs[14] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))


def test_slanted_triangular_matches_ulmfit_formula():
    p = tl.nn.Parameter(np.ones(1, np.float32))
    opt = tl.optim.SGD([p], lr=0.01)
    total, cut_frac, ratio = 100, 0.1, 32
    sched = tl.optim.slanted_triangular(opt, total, cut_frac, ratio)
    cut = math.floor(total * cut_frac)
    for t in range(total):
        p_t = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
        assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * (1 + p_t * (ratio - 1)) / ratio)
        sched.step()


def test_lambda_schedule_per_group():
    a = tl.nn.Parameter(np.ones(1, np.float32))
    b = tl.nn.Parameter(np.ones(1, np.float32))
    opt = tl.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 2.0}])
    sched = tl.optim.LambdaLR(opt, [lambda s: 0.5 ** s, lambda s: 1.0 / (s + 1)])
    sched.step()
    sched.step()
    assert sched.get_last_lr() == pytest.approx([0.25, 2.0 / 3])


def test_clip_grad_norm():
    a = tl.nn.Parameter(np.zeros(2, np.float32))
    b = tl.nn.Parameter(np.zeros(1, np.float32))
    a.grad = np.array([3.0, 0.0], np.float32)
    b.grad = np.array([4.0], np.float32)
    norm = tl.nn.utils.clip_grad_norm_([a, b], max_norm=1.0)
    assert norm == pytest.approx(5.0)
    total = math.sqrt(float((a.grad ** 2).sum() + (b.grad ** 2).sum()))
    assert total == pytest.approx(1.0, rel=1e-4)
