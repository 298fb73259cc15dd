"""Conv, pooling and batch norm: gradchecks in float64 (bound 1e-6), shapes, errors, and the
train/eval behaviour of BatchNorm's running statistics.

Everything here runs the reference code of minitl/ops/conv.py (the fast path off);
tests/test_fastpath.py proves the fast versions equal to it."""
import numpy as np
import pytest

import minitl as tl
import minitl.nn.functional as F
from minitl.ops.conv import adaptive_bins, im2col

rng = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def reference_path():
    with tl.fastpath.use(False):
        yield


def normal(*shape):
    return rng.standard_normal(shape)


def distinct(*shape):
    """Values far apart (no ties within a pooling window, no kinks for the numeric gradient)."""
    return rng.permutation(int(np.prod(shape))).reshape(shape) * 0.5


CONV_CASES = [  # (x shape, weight shape, stride, padding)
    ((2, 3, 6, 5), (4, 3, 3, 3), 1, 1),
    ((2, 2, 7, 7), (3, 2, 3, 3), 2, 1),
    ((1, 3, 5, 6), (2, 3, 1, 1), 2, 0),
    ((2, 2, 6, 7), (3, 2, 2, 3), (1, 2), (0, 1)),
]


@pytest.mark.exercise("vision.conv2d_backward")
@pytest.mark.parametrize("xs,ws,stride,padding", CONV_CASES)
def test_gradcheck_conv2d(xs, ws, stride, padding):
    assert tl.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), normal(*xs), normal(*ws), normal(ws[0]))


@pytest.mark.exercise("vision.conv2d_backward")
def test_gradcheck_conv2d_no_bias():
    assert tl.gradcheck(lambda x, w: F.conv2d(x, w, None, 1, 1), normal(2, 2, 4, 4), normal(3, 2, 3, 3))


@pytest.mark.exercise("vision.conv2d_im2col")
def test_conv2d_matches_direct_sum():
    """eq. (conv) written out with loops over output pixels, on a small case."""
    x, w, b = normal(2, 3, 5, 6), normal(4, 3, 3, 2), normal(4)
    s, p = 2, 1
    out = F.conv2d(tl.tensor(x), tl.tensor(w), tl.tensor(b), s, p).numpy()
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (5 + 2 * p - 3) // s + 1, (6 + 2 * p - 2) // s + 1
    assert out.shape == (2, 4, ho, wo)
    ref = np.zeros((2, 4, ho, wo))
    for yy in range(ho):
        for xx in range(wo):
            patch = xp[:, :, s * yy:s * yy + 3, s * xx:s * xx + 2]
            ref[:, :, yy, xx] = np.einsum("ncij,ocij->no", patch, w) + b
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.exercise("vision.conv2d_im2col")
def test_im2col_columns_are_patches():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)
    cols, (ho, wo) = im2col(x, (2, 2), (2, 2), (0, 0))
    assert cols.shape == (3 * 2 * 2, 2 * ho * wo) and (ho, wo) == (2, 2)
    # column (n=1, y=1, x=0) is the patch x[1, :, 2:4, 0:2] in (c, i, j) order
    np.testing.assert_array_equal(cols[:, 1 * 4 + 1 * 2 + 0], x[1, :, 2:4, 0:2].reshape(-1))


@pytest.mark.exercise("vision.maxpool_backward")
@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1), (2, 1, 0), ((2, 3), (1, 2), (1, 0))])
def test_gradcheck_max_pool(kernel, stride, padding):
    assert tl.gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding), distinct(2, 2, 5, 6))


@pytest.mark.exercise("vision.maxpool_backward")
def test_max_pool_gradient_goes_to_the_maximum_only():
    x = tl.tensor(np.array([[[[1.0, 5.0], [3.0, 2.0]]]]), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [[[[0, 1], [0, 0]]]])


@pytest.mark.parametrize("kernel,stride,padding", [(2, None, 0), (3, 2, 1)])
def test_gradcheck_avg_pool(kernel, stride, padding):
    assert tl.gradcheck(lambda x: F.avg_pool2d(x, kernel, stride, padding), normal(2, 2, 5, 6))


@pytest.mark.parametrize("size", [1, (2, 3), 3])
def test_gradcheck_adaptive_avg_pool(size):
    assert tl.gradcheck(lambda x: F.adaptive_avg_pool2d(x, size), normal(2, 2, 5, 7))


def test_adaptive_bins_cover_the_axis():
    assert adaptive_bins(7, 3) == [(0, 3), (2, 5), (4, 7)]
    assert adaptive_bins(4, 1) == [(0, 4)]


@pytest.mark.exercise("vision.batchnorm_backward")
def test_gradcheck_batch_norm_training():
    assert tl.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                        normal(3, 2, 3, 4), normal(2), normal(2))


@pytest.mark.exercise("vision.batchnorm_backward")
def test_gradcheck_batch_norm_eval_and_1d():
    mean, var = normal(3), rng.uniform(0.5, 2.0, 3)
    assert tl.gradcheck(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=False),
                        normal(2, 3, 2, 2), normal(3), normal(3))
    assert tl.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                        normal(5, 3), normal(3), normal(3))


@pytest.mark.parametrize("fast", [False, True])
def test_batchnorm2d_running_stats_train_vs_eval(fast):
    tl.fastpath.set_enabled(fast)  # the reference_path fixture restores the setting
    bn = tl.nn.BatchNorm2d(3, momentum=0.5)
    x = rng.normal(2.0, 3.0, size=(8, 3, 4, 4)).astype(np.float32)
    y = bn(tl.tensor(x)).numpy()
    # training: each channel of the output is normalised by this batch's statistics
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)
    # running stats moved halfway from (0, 1) to the batch's (unbiased variance, as PyTorch)
    np.testing.assert_allclose(bn.running_mean, 0.5 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.5 + 0.5 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    bn.eval()
    before = bn.running_mean.clone()
    y_eval = bn(tl.tensor(x)).numpy()
    np.testing.assert_array_equal(bn.running_mean, before)  # eval leaves them alone
    expected = (x - bn.running_mean[:, None, None]) / np.sqrt(bn.running_var[:, None, None] + bn.eps)
    np.testing.assert_allclose(y_eval, expected, rtol=1e-4, atol=1e-5)


def test_batchnorm_state_dict_round_trip(tmp_path):
    bn = tl.nn.BatchNorm2d(2)
    bn(tl.tensor(normal(4, 2, 3, 3).astype(np.float32)))
    tl.save(bn.state_dict(), tmp_path / "bn.npz")
    other = tl.nn.BatchNorm2d(2)
    other.load_state_dict(tl.load(tmp_path / "bn.npz"))
    np.testing.assert_array_equal(other.running_var, bn.running_var)


def test_conv_layers_shapes_and_parameters():
    conv = tl.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    assert conv.weight.shape == (8, 3, 3, 3) and conv.bias.shape == (8,)
    out = conv(tl.tensor(np.zeros((2, 3, 28, 28), np.float32)))
    assert out.shape == (2, 8, 14, 14) and out.dtype == np.float32
    assert tl.nn.MaxPool2d(2)(out).shape == (2, 8, 7, 7)
    assert tl.nn.AvgPool2d(2)(out).shape == (2, 8, 7, 7)
    assert tl.nn.AdaptiveAvgPool2d(1)(out).shape == (2, 8, 1, 1)


def test_conv_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"3 channels.*expects 2"):
        F.conv2d(tl.tensor(np.zeros((1, 3, 5, 5))), tl.tensor(np.zeros((4, 2, 3, 3))))
    with pytest.raises(ValueError, match="does not fit"):
        F.conv2d(tl.tensor(np.zeros((1, 1, 2, 2))), tl.tensor(np.zeros((1, 1, 3, 3))))


def test_frozen_conv_builds_no_graph():
    conv = tl.nn.Conv2d(1, 2, 3)
    conv.requires_grad_(False)
    out = conv(tl.tensor(np.zeros((1, 1, 5, 5), np.float32)))
    assert out.grad_fn is None and not out.requires_grad


def test_resnet_mini_shapes_and_head():
    model = tl.models.resnet_mini(7)
    assert model.fc.in_features == 64 and model.fc.out_features == 7
    out = model(tl.tensor(np.zeros((2, 1, 28, 28), np.float32)))
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert tl.models.small_cnn()(tl.tensor(np.zeros((2, 1, 28, 28), np.float32))).shape == (2, 10)


@pytest.mark.parametrize("fast", [False, True])
def test_batch_norm_in_float32_matches_float64_statistics(fast):
    x = (normal(4, 3, 5, 5) * 3 + 2).astype(np.float32)
    bn = tl.nn.BatchNorm2d(3)
    with tl.fastpath.use(fast):
        out = bn(tl.tensor(x)).numpy()
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3), keepdims=True), x64.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, (x64 - mean) / np.sqrt(var + 1e-5), atol=1e-5)

