"""Vision layers against PyTorch (the oracle): forward values and gradients, float64.

The tests of an exercise run the reference code (tests/conftest.py turns the fast path off for
them); each has a `_fast_path` twin that runs minitl/fastpath/ against PyTorch too."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import minitl as tl  # noqa: E402
import minitl.nn.functional as F  # noqa: E402

rng = np.random.default_rng(3)


def both(*arrays):
    """minitl and torch float64 leaves holding the same values."""
    ours = [tl.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    return ours, theirs


def compare(ours_out, theirs_out, ours, theirs):
    np.testing.assert_allclose(ours_out.numpy(), theirs_out.detach().numpy(), rtol=1e-10, atol=1e-10)
    g = rng.standard_normal(ours_out.shape)
    ours_out.backward(g)
    theirs_out.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-9, atol=1e-10)


CONV_CASES = [((4, 3, 10, 9), (5, 3, 3, 3), 1, 1), ((2, 4, 11, 11), (6, 4, 3, 3), 2, 1),
              ((3, 2, 8, 8), (4, 2, 1, 1), 2, 0), ((2, 3, 9, 12), (2, 3, 5, 3), (2, 1), (2, 0))]


def check_conv2d(xs, ws, stride, padding):
    (x, w, b), (tx, tw, tb) = both(rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0]))
    compare(F.conv2d(x, w, b, stride, padding), torch.nn.functional.conv2d(tx, tw, tb, stride, padding),
            [x, w, b], [tx, tw, tb])


@pytest.mark.exercise("vision.conv2d_im2col")
@pytest.mark.parametrize("xs,ws,stride,padding", CONV_CASES)
def test_conv2d_values(xs, ws, stride, padding):
    """The forward alone (no backward runs), so it checks conv2d_im2col by itself."""
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
    ours = F.conv2d(tl.tensor(x, dtype="float64"), tl.tensor(w, dtype="float64"), tl.tensor(b, dtype="float64"),
                    stride, padding)
    theirs = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride, padding)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.exercise("vision.conv2d_backward")
@pytest.mark.parametrize("xs,ws,stride,padding", CONV_CASES)
def test_conv2d(xs, ws, stride, padding):
    check_conv2d(xs, ws, stride, padding)


@pytest.mark.parametrize("xs,ws,stride,padding", CONV_CASES)
@tl.fastpath.use(True)
def test_conv2d_fast_path(xs, ws, stride, padding):
    check_conv2d(xs, ws, stride, padding)


POOL_CASES = [(2, None, 0), (3, 2, 1), (3, 1, 0), ((2, 3), (2, 1), (1, 0))]


def check_max_pool(kernel, stride, padding):
    (x,), (tx,) = both(rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8) * 0.1)
    compare(F.max_pool2d(x, kernel, stride, padding),
            torch.nn.functional.max_pool2d(tx, kernel, stride, padding), [x], [tx])


@pytest.mark.exercise("vision.maxpool_backward")
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_max_pool(kernel, stride, padding):
    check_max_pool(kernel, stride, padding)


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
@tl.fastpath.use(True)
def test_max_pool_fast_path(kernel, stride, padding):
    check_max_pool(kernel, stride, padding)


@pytest.mark.parametrize("fast", [False, True])
def test_max_pool_2x2_matches_pytorch(fast):
    """Even sizes: the fast path's 2x2 kernel, on contiguous and on NHWC memory."""
    x_np = rng.permutation(2 * 3 * 8 * 6).reshape(2, 3, 8, 6) * 0.1
    for x_in in (x_np, np.ascontiguousarray(x_np.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)):
        (x,), (tx,) = both(x_in)
        with tl.fastpath.use(fast):
            compare(F.max_pool2d(x, 2), torch.nn.functional.max_pool2d(tx, 2), [x], [tx])


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1)])
def test_avg_pool(kernel, stride, padding):
    (x,), (tx,) = both(rng.standard_normal((2, 3, 9, 8)))
    compare(F.avg_pool2d(x, kernel, stride, padding),
            torch.nn.functional.avg_pool2d(tx, kernel, stride, padding), [x], [tx])


@pytest.mark.parametrize("size", [1, (3, 2), 4])
def test_adaptive_avg_pool(size):
    (x,), (tx,) = both(rng.standard_normal((2, 3, 9, 7)))
    compare(F.adaptive_avg_pool2d(x, size), torch.nn.functional.adaptive_avg_pool2d(tx, size), [x], [tx])


def check_batchnorm2d_module(training):
    x = rng.normal(1.0, 2.0, size=(6, 4, 5, 5))
    ours, theirs = tl.nn.BatchNorm2d(4).to(tl.float64), torch.nn.BatchNorm2d(4).double()
    weight, bias = rng.standard_normal(4), rng.standard_normal(4)
    for m in (ours, theirs):
        m.train(True)
        m(tl.tensor(x, dtype="float64") if m is ours else torch.tensor(x))  # one step of running statistics
        m.train(training)
    ours.weight.data[...] = weight
    ours.bias.data[...] = bias
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(weight))
        theirs.bias.copy_(torch.tensor(bias))
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-10)
    (xo,), (xt,) = both(x)
    compare(ours(xo), theirs(xt), [xo, ours.weight, ours.bias], [xt, theirs.weight, theirs.bias])


@pytest.mark.exercise("vision.batchnorm_backward")
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm2d_module(training):
    check_batchnorm2d_module(training)


@pytest.mark.parametrize("training", [True, False])
@tl.fastpath.use(True)
def test_batchnorm2d_module_fast_path(training):
    check_batchnorm2d_module(training)


def test_conv2d_module_default_init_range_matches_torch():
    ours = tl.nn.Conv2d(8, 16, 3)
    bound = 1 / np.sqrt(8 * 9)  # PyTorch's kaiming_uniform(a=sqrt(5)) bound for this fan-in
    assert np.abs(ours.weight.data).max() <= bound + 1e-7
    assert np.abs(ours.weight.data).max() > 0.9 * bound
    assert np.abs(ours.bias.data).max() <= bound + 1e-7


@pytest.mark.parametrize("fast", [False, True])
def test_small_cnn_training_step_matches_torch(fast):
    """The benchmark's CNN: one forward/backward gives the same loss and gradients."""
    model = tl.models.small_cnn().to(tl.float64)  # Module.double() passes a string that to() takes for a device
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64 * 7 * 7, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()}, strict=False)
    x = rng.standard_normal((4, 1, 28, 28))
    y = np.array([1, 0, 9, 3])
    with tl.fastpath.use(fast):
        loss = F.cross_entropy(model(tl.tensor(x, dtype="float64")), tl.tensor(y))
        loss.backward()
    ref_loss = torch.nn.functional.cross_entropy(ref(torch.tensor(x)), torch.tensor(y))
    np.testing.assert_allclose(loss.item(), ref_loss.item(), rtol=1e-10)
    ref_loss.backward()
    ref_grads = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, ref_grads[name].grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=name)

