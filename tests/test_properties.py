"""Hypothesis property tests: broadcasting and shape ops agree with NumPy, forward and backward."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minitl as tl

settings.register_profile("minitl", deadline=None, max_examples=60)
settings.load_profile("minitl")

floats = st.floats(-10, 10, allow_nan=False, width=32)


@st.composite
def broadcastable_pair(draw):
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4))
    a = draw(hnp.arrays(np.float32, shapes.input_shapes[0], elements=floats))
    b = draw(hnp.arrays(np.float32, shapes.input_shapes[1], elements=floats))
    return a, b


def check_broadcast_binary_op(pair, op):
    """`op` on a broadcastable pair agrees with NumPy, and d(sum of the output)/da is what
    brute force says: each element of `a` gets the sum of its contributions."""
    a, b = pair
    ta, tb = tl.tensor(a, requires_grad=True), tl.tensor(b, requires_grad=True)
    out = {"add": ta + tb, "sub": ta - tb, "mul": ta * tb}[op]
    expected = {"add": a + b, "sub": a - b, "mul": a * b}[op]
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)
    assert out.shape == np.broadcast_shapes(a.shape, b.shape)
    out.backward(np.ones(out.shape, np.float32))
    if op in ("add", "sub") and a.size and b.size:
        # broadcasting uses every element of an input the same number of times, out.size /
        # its size, and each use contributes 1 to d(sum)/da (and +1 or -1 to d(sum)/db)
        sign = 1 if op == "add" else -1
        np.testing.assert_allclose(ta.grad, np.full(a.shape, out.data.size / a.size), rtol=1e-6)
        np.testing.assert_allclose(tb.grad, np.full(b.shape, sign * out.data.size / b.size), rtol=1e-6)
    if op == "mul":
        # brute force: d(sum(a*b))/da_i = sum of the b's that a_i met, found by perturbing one-hot
        for i in range(a.size):
            one_hot = np.zeros(a.size, np.float32)
            one_hot[i] = 1
            expected = (np.broadcast_to(one_hot.reshape(a.shape), out.shape) * np.broadcast_to(b, out.shape)).sum()
            assert ta.grad.reshape(-1)[i] == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert ta.grad.shape == a.shape and tb.grad.shape == b.shape


# One test per op, each marked with the exercise it checks: sub's backward is no exercise,
# so its test checks unbroadcast alone.

@pytest.mark.exercise("autograd.unbroadcast")
@given(broadcastable_pair())
def test_broadcast_sub_matches_numpy(pair):
    check_broadcast_binary_op(pair, "sub")


@pytest.mark.exercise("autograd.add_backward")
@given(broadcastable_pair())
def test_broadcast_add_matches_numpy(pair):
    check_broadcast_binary_op(pair, "add")


@pytest.mark.exercise("autograd.mul_backward")
@given(broadcastable_pair())
def test_broadcast_mul_matches_numpy(pair):
    check_broadcast_binary_op(pair, "mul")


@pytest.mark.exercise("autograd.unbroadcast")
@given(hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=4, max_side=4))
def test_unbroadcast_is_adjoint_of_broadcast(shapes):
    """<broadcast(x), g> == <x, unbroadcast(g)> for all x, g: the definition of the adjoint."""
    shape, target = shapes.input_shapes[0], shapes.result_shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(target)
    lhs = (np.broadcast_to(x, target) * g).sum()
    rhs = (x * tl.unbroadcast(g, shape)).sum()
    assert tl.unbroadcast(g, shape).shape == tuple(shape)
    assert lhs == pytest.approx(rhs, rel=1e-9, abs=1e-9)


@st.composite
def array_and_axes(draw):
    arr = draw(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=5), elements=floats))
    axes = draw(st.none() | st.lists(st.integers(0, arr.ndim - 1), min_size=1, max_size=arr.ndim, unique=True))
    keepdims = draw(st.booleans())
    return arr, (tuple(axes) if axes else None), keepdims


@pytest.mark.exercise("autograd.sum_backward")
@given(array_and_axes())
def test_sum_and_mean_match_numpy(case):
    arr, axes, keepdims = case
    t = tl.tensor(arr, requires_grad=True)
    s = t.sum(axes, keepdim=keepdims)
    np.testing.assert_allclose(s.data, arr.sum(axis=axes, keepdims=keepdims), rtol=1e-5, atol=1e-4)
    s.backward(np.ones(s.shape, np.float32))
    np.testing.assert_array_equal(t.grad, np.ones_like(arr))
    m = tl.tensor(arr).mean(axes, keepdim=keepdims)
    np.testing.assert_allclose(m.data, arr.mean(axis=axes, keepdims=keepdims), rtol=1e-5, atol=1e-5)


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=4, max_side=4), elements=floats), st.data())
def test_permute_reshape_round_trip(arr, data):
    perm = data.draw(st.permutations(range(arr.ndim)))
    t = tl.tensor(arr, requires_grad=True)
    p = t.permute(*perm)
    np.testing.assert_array_equal(p.data, arr.transpose(perm))
    flat = p.reshape(-1)
    weights = np.arange(flat.shape[0], dtype=np.float32)
    (flat * weights).sum().backward()
    # the gradient of element i is the weight it was given after the permutation
    expected = weights.reshape(p.shape).transpose(np.argsort(perm))
    np.testing.assert_array_equal(t.grad, expected)


@pytest.mark.exercise("autograd.getitem_backward")
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 4)), elements=floats), st.data())
def test_integer_array_indexing_scatters_and_adds(arr, data):
    idx = np.array(data.draw(st.lists(st.integers(0, arr.shape[0] - 1), min_size=1, max_size=8)))
    t = tl.tensor(arr, requires_grad=True)
    out = t[idx]
    np.testing.assert_array_equal(out.data, arr[idx])
    out.sum().backward()
    counts = np.bincount(idx, minlength=arr.shape[0]).astype(np.float32)
    np.testing.assert_array_equal(t.grad, np.repeat(counts[:, None], arr.shape[1], axis=1))


@given(st.lists(hnp.arrays(np.float32, st.just((2, 3)), elements=floats), min_size=1, max_size=4), st.integers(-3, 2))
def test_stack_and_cat_match_numpy(arrays, dim):
    tensors = [tl.tensor(a, requires_grad=True) for a in arrays]
    out = tl.stack(tensors, dim)
    np.testing.assert_array_equal(out.data, np.stack(arrays, dim))
    cat_dim = dim % 2
    np.testing.assert_array_equal(tl.cat(tensors, cat_dim).data, np.concatenate(arrays, cat_dim))
    out.backward(np.ones(out.shape, np.float32))
    for t in tensors:
        np.testing.assert_array_equal(t.grad, np.ones((2, 3)))
