"""Tests aimed at small bugs that a mutation sample of the core slipped past the rest of the
suite: clamp at its bounds, max with tied maxima, max-pooling with a non-square window, and
a checkpoint of Tensors. Each runs on the reference code and on the fast paths (the switch
`tl.fastpath.use`), so a fast version added later is held to the same answers.
"""
import numpy as np
import pytest

import minitl as tl
import minitl.nn.functional as F


@pytest.fixture(params=[False, True], ids=["reference", "fastpath"])
def path(request):
    with tl.fastpath.use(request.param):
        yield request.param


def grad_of(fn, values, dtype="float64"):
    x = tl.tensor(values, dtype=dtype, requires_grad=True)
    fn(x).sum().backward()
    return x.grad


# --- clamp: the bounds belong to the inside ----------------------------------------------------

def test_clamp_gradient_is_one_exactly_at_the_bounds(path):
    """PyTorch passes the gradient where min <= x <= max, bounds included."""
    x = [-1.0, -0.5, 0.0, 0.5, 1.0]
    np.testing.assert_array_equal(grad_of(lambda t: t.clamp(-0.5, 0.5), x), [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(grad_of(lambda t: t.clamp(min=0.0), x), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(grad_of(lambda t: t.clamp(max=0.0), x), [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(grad_of(lambda t: tl.clamp(t, 0.5, 0.5), x), [0, 0, 0, 1, 0])


def test_clamp_at_bounds_matches_pytorch(path):
    torch = pytest.importorskip("torch")
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    tx = torch.tensor(x, requires_grad=True)
    tx.clamp(-0.5, 0.5).sum().backward()
    np.testing.assert_array_equal(grad_of(lambda t: t.clamp(-0.5, 0.5), x), tx.grad.numpy())


# --- max with ties: the gradient is shared equally ---------------------------------------------

TIED = [[1.0, 3.0, 3.0], [2.0, 3.0, 0.0]]


def test_max_over_all_elements_shares_the_gradient_among_ties(path):
    np.testing.assert_allclose(grad_of(lambda t: t.max(), TIED), [[0, 1 / 3, 1 / 3], [0, 1 / 3, 0]])
    np.testing.assert_allclose(grad_of(lambda t: tl.max(t), TIED, "float32"), [[0, 1 / 3, 1 / 3], [0, 1 / 3, 0]],
                               rtol=1e-6)


@pytest.mark.parametrize("keepdim", [False, True])
def test_max_along_a_dim_shares_the_gradient_among_ties(path, keepdim):
    np.testing.assert_allclose(grad_of(lambda t: t.max(1, keepdim=keepdim), TIED), [[0, 0.5, 0.5], [0, 1, 0]])
    np.testing.assert_allclose(grad_of(lambda t: t.max(0, keepdim=keepdim), TIED), [[0, 0.5, 1], [1, 0.5, 0]])
    np.testing.assert_allclose(grad_of(lambda t: t.min(1, keepdim=keepdim), [[2.0, 2.0, 5.0]]), [[0.5, 0.5, 0]])


def test_max_ties_match_pytorch_max_and_amax(path):
    torch = pytest.importorskip("torch")
    for ours, theirs in [(lambda t: t.max(), lambda t: t.max()), (lambda t: t.max(1), lambda t: t.amax(1))]:
        tx = torch.tensor(TIED, dtype=torch.float64, requires_grad=True)
        theirs(tx).sum().backward()
        np.testing.assert_allclose(grad_of(ours, TIED), tx.grad.numpy())


# --- max-pooling with a non-square window --------------------------------------------------------

def max_pool_by_loops(x, kernel, stride, padding):
    """Max-pooling and its gradient for an all-ones upstream gradient, one window at a time."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    ho, wo = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    out = np.empty(x.shape[:2] + (ho, wo))
    grad = np.zeros_like(xp)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for i in range(ho):
                for j in range(wo):
                    window = xp[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    out[n, c, i, j] = window.max()
                    a, b = np.unravel_index(window.argmax(), window.shape)
                    grad[n, c, i * sh + a, j * sw + b] += 1
    return out, grad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]


GEOMETRIES = [((2, 3), (2, 3), (1, 1)), ((2, 3), None, (0, 1)), ((3, 2), (1, 2), (1, 0))]


@pytest.mark.parametrize("kernel,stride,padding,shape", [((3, 2), (2, 1), (1, 1), (2, 3, 8, 9)),
                                                       ((17, 16), (3, 2), (0, 0), (1, 2, 20, 19))],
                         ids=["ties", "ties, 272 offsets per window"])
def test_max_pool_takes_the_first_maximum_on_ties(path, kernel, stride, padding, shape):
    """Values from a handful of integers, so most windows hold their maximum more than once:
    the value and the gradient's one destination as a loop over windows finds them (argmax,
    the first maximum in row order); the second window has more offsets than a byte counts."""
    x_np = np.random.default_rng(1).integers(0, 4, shape).astype(np.float64)
    x = tl.tensor(x_np, dtype="float64", requires_grad=True)
    out = F.max_pool2d(x, kernel, stride, padding)
    out.sum().backward()
    expected, expected_grad = max_pool_by_loops(x_np, kernel, stride, padding)
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(x.grad, expected_grad)


@pytest.mark.parametrize("kernel,stride,padding", GEOMETRIES)
def test_max_pool_with_a_non_square_window(path, kernel, stride, padding):
    rng = np.random.default_rng(0)
    x_np = rng.permutation(2 * 3 * 7 * 11).reshape(2, 3, 7, 11) * 0.01  # distinct values: no ties
    x = tl.tensor(x_np, dtype="float64", requires_grad=True)
    out = F.max_pool2d(x, kernel, stride, padding)
    out.sum().backward()
    expected, expected_grad = max_pool_by_loops(x_np, kernel, stride or kernel, padding)
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(x.grad, expected_grad)
    assert tl.nn.MaxPool2d(kernel, stride, padding)(x).shape == expected.shape


@pytest.mark.parametrize("kernel,stride,padding", GEOMETRIES)
def test_max_pool_with_a_non_square_window_matches_pytorch(path, kernel, stride, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x_np = rng.permutation(2 * 3 * 7 * 11).reshape(2, 3, 7, 11) * 0.01
    g = rng.standard_normal(torch.nn.functional.max_pool2d(torch.tensor(x_np), kernel, stride, padding).shape)
    x, tx = tl.tensor(x_np, dtype="float64", requires_grad=True), torch.tensor(x_np, requires_grad=True)
    out, tout = F.max_pool2d(x, kernel, stride, padding), torch.nn.functional.max_pool2d(tx, kernel, stride, padding)
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    out.backward(g)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


# --- a checkpoint holding Tensors ------------------------------------------------------------------

def test_save_and_load_round_trip_a_dict_of_tensors(tmp_path):
    """Tensors are saved as their data and come back as NumPy arrays, dtype and shape kept."""
    state = {
        "weights": tl.tensor(np.arange(6.0).reshape(2, 3), dtype="float64", requires_grad=True),
        "ids": tl.tensor([3, 1, 2]),
        "nested": {"scale": tl.tensor([0.5], dtype="float32"), "mask": tl.tensor([True, False])},
        "step": 7,
    }
    tl.save(state, tmp_path / "ckpt.npz")
    back = tl.load(tmp_path / "ckpt.npz")
    assert list(back) == ["weights", "ids", "nested", "step"] and back["step"] == 7
    pairs = [(back["weights"], state["weights"]), (back["ids"], state["ids"]),
             (back["nested"]["scale"], state["nested"]["scale"]), (back["nested"]["mask"], state["nested"]["mask"])]
    for got, want in pairs:
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want.data)
    model = tl.nn.Linear(3, 2)
    tl.save({name: tl.tensor(p.data) for name, p in model.named_parameters()}, tmp_path / "m.npz")
    fresh = tl.nn.Linear(3, 2)
    fresh.load_state_dict(tl.load(tmp_path / "m.npz"))
    np.testing.assert_array_equal(fresh.weight.data, model.weight.data)
