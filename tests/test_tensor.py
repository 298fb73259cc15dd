"""The engine's behaviour: construction, dtypes, backward semantics, no_grad, errors."""
import numpy as np
import pytest

import minitl as tl
from minitl.tensor import _topological_order


def test_tensor_dtypes_default_like_pytorch():
    assert tl.tensor([1.0, 2.0]).dtype == np.float32
    assert tl.tensor(np.zeros(3)).dtype == np.float32  # float64 arrays become float32 by default
    assert tl.tensor(np.zeros(3), dtype="float64").dtype == np.float64
    assert tl.tensor([1, 2]).dtype == np.int64
    assert tl.tensor([True, False]).dtype == np.bool_
    assert tl.zeros(2, 3).shape == (2, 3) and tl.ones((2,)).dtype == np.float32
    assert tl.arange(5).tolist() == [0, 1, 2, 3, 4]


def test_tensor_copies_its_input():
    data = np.ones(3, dtype=np.float32)
    t = tl.tensor(data)
    data[0] = 5
    assert t.data[0] == 1


def test_only_float_tensors_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        tl.tensor([1, 2], requires_grad=True)


# autograd.topological_sort, the first exercise of lesson 1, is tested on graphs built by
# forward passes only (a forward never runs a backward), and backward() is tested with ops
# whose backward is no exercise (cat, neg, tanh, which need no unbroadcast either): a student
# can make these pass before writing any backward rule.

def assert_topological(order, root, expected):
    """`order` holds each tensor of `expected` once, each after the inputs it needs a
    gradient for, and `root` last."""
    assert sorted(map(id, order)) == sorted(map(id, expected)), "not exactly the tensors that need a gradient"
    assert len({id(t) for t in order}) == len(order), "a tensor appears twice"
    assert order[-1] is root
    place = {id(t): n for n, t in enumerate(order)}
    for t in order:
        if t.grad_fn is not None:
            for parent in t.grad_fn.parents:
                if parent.requires_grad:
                    assert place[id(parent)] < place[id(t)], "a tensor comes before one of its inputs"


@pytest.mark.exercise("autograd.topological_sort")
def test_topological_order_puts_each_tensor_after_its_inputs():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    w = tl.tensor([0.5, -1.0], requires_grad=True)
    c = tl.tensor([3.0, 4.0])  # a constant: needs no gradient, so it is not in the order
    h = x * w
    hc = h + c
    k = hc.tanh()
    hk = h * k  # h is used twice
    d = hk - x  # and x three times
    out = d.sum()
    assert_topological(_topological_order(out), out, [x, w, h, hc, k, hk, d, out])
    assert_topological(_topological_order(hc), hc, [x, w, h, hc])
    assert [t is x for t in _topological_order(x)] == [True]  # a leaf alone


@pytest.mark.exercise("autograd.topological_sort")
def test_topological_order_of_the_reused_node_trap():
    """b = a + a; c = b + b: b once, after a, so its two contributions are summed first."""
    a = tl.tensor(3.0, requires_grad=True)
    b = a + a
    c = b + b
    assert [id(t) for t in _topological_order(c)] == [id(a), id(b), id(c)]


@pytest.mark.exercise("autograd.topological_sort")
def test_topological_order_of_a_diamond():
    x = tl.tensor(2.0, requires_grad=True)
    y = x * 3
    z = x * x
    yz = y * z
    out = yz + z
    assert_topological(_topological_order(out), out, [x, y, z, yz, out])


@pytest.mark.exercise("autograd.topological_sort")
def test_topological_order_of_a_deep_graph_does_not_hit_the_recursion_limit():
    x = tl.tensor(1.0, requires_grad=True)
    chain = [x]
    for _ in range(20000):
        chain.append(chain[-1] * 1.0001)
    assert [id(t) for t in _topological_order(chain[-1])] == [id(t) for t in chain]


@pytest.mark.exercise("autograd.topological_sort")
def test_backward_sums_every_path_before_passing_a_gradient_on():
    """The trap of lesson 1 with cat and neg: b = [a, a], c = [b, -b]. b's gradient must hold
    both of its contributions before it reaches a."""
    a = tl.tensor([3.0], requires_grad=True)
    b = tl.cat([a, a])
    c = tl.cat([b, -b])
    c.backward(np.array([1.0, 2.0, 3.0, 4.0]))
    # dc/db = [1, 2] - [3, 4] = [-2, -2]; dc/da = -2 + -2
    np.testing.assert_array_equal(a.grad, [-4.0])


@pytest.mark.exercise("autograd.topological_sort")
def test_backward_through_a_diamond_of_tanh_and_neg():
    x = tl.tensor([0.5, -1.5], requires_grad=True, dtype="float64")
    y = x.tanh()
    out = tl.cat([y, -x, y])
    g = np.arange(1.0, 7.0)
    out.backward(g)
    expected = (g[0:2] + g[4:6]) * (1 - np.tanh(x.data) ** 2) - g[2:4]
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)


@pytest.mark.exercise("autograd.topological_sort")
def test_backward_through_a_deep_graph_does_not_hit_the_recursion_limit():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = x
    for _ in range(20001):
        y = -y
    y.backward(np.array([1.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [-1.0, -3.0])


# The same engine end to end, through the backward rules of lesson 1's exercises.

def test_simple_backward_and_leaf_grad():
    x = tl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x + 3 * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)
    assert isinstance(x.grad, np.ndarray)


def test_reused_node_trap():
    """b = a + a; c = b + b: dc/da = 4. A recursive backward that propagates each path as it
    meets it, without summing b's two contributions first, gets this wrong."""
    a = tl.tensor(3.0, requires_grad=True)
    b = a + a
    c = b + b
    c.backward()
    assert a.grad == 4.0


def test_diamond_graph():
    x = tl.tensor(2.0, requires_grad=True)
    y = x * 3
    z = x * x
    out = y * z + z  # d/dx (3x^3 + x^2) = 9x^2 + 2x
    out.backward()
    assert out.item() == 28.0
    assert x.grad == pytest.approx(9 * 4 + 4)


def test_deep_graph_does_not_hit_recursion_limit():
    x = tl.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001 ** 20000, rel=1e-3)


@pytest.mark.exercise("autograd.unbroadcast")
def test_unbroadcast_sums_over_the_axes_broadcasting_added():
    g = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(tl.unbroadcast(g, (2, 3, 4)), g)
    np.testing.assert_array_equal(tl.unbroadcast(g, (3, 4)), g.sum(0))
    np.testing.assert_array_equal(tl.unbroadcast(g, (4,)), g.sum((0, 1)))
    np.testing.assert_array_equal(tl.unbroadcast(g, (2, 1, 4)), g.sum(1, keepdims=True))
    np.testing.assert_array_equal(tl.unbroadcast(g, (3, 1)), g.sum(0).sum(1, keepdims=True))
    np.testing.assert_array_equal(tl.unbroadcast(g, (1, 1, 1)), np.full((1, 1, 1), g.sum()))
    np.testing.assert_array_equal(tl.unbroadcast(g, (1,)), [g.sum()])
    assert tl.unbroadcast(g, ()) == g.sum() and np.shape(tl.unbroadcast(g, ())) == ()


def test_leaf_gradients_accumulate_like_pytorch():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    (x * 2).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0])
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_grads_of_two_leaves_are_independent_arrays():
    a = tl.tensor([1.0, 2.0], requires_grad=True)
    b = tl.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad += 10  # an optimizer updating one grad in place must not touch the other
    np.testing.assert_allclose(b.grad, [1.0, 1.0])


class _Scale(tl.Function):
    """y = c x, with a backward that returns a new array and keeps nothing."""
    fresh_gradients = True
    returned = []

    @staticmethod
    def forward(ctx, x, c):
        ctx.c = c
        return x * c

    @staticmethod
    def backward(ctx, grad):
        out = grad * ctx.c
        _Scale.returned.append(out)
        return out


class _SharedGradient(tl.Function):
    """y = x + 0, whose backward hands back one array that it also keeps."""
    kept = []

    @staticmethod
    def forward(ctx, x):
        return x + 0

    @staticmethod
    def backward(ctx, grad):
        _SharedGradient.kept.append(grad)
        return grad


def test_a_leaf_adopts_a_fresh_gradient_and_copies_any_other():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    _Scale.returned.clear()
    _Scale.apply(x, 3.0).sum().backward()
    assert x.grad is _Scale.returned[0]  # nothing else holds it: no copy
    y = tl.tensor([1.0, 2.0], requires_grad=True)
    _SharedGradient.kept.clear()
    (_SharedGradient.apply(y) * 2).sum().backward()  # a contiguous array, kept by the op
    assert y.grad is not _SharedGradient.kept[0] and not np.shares_memory(y.grad, _SharedGradient.kept[0])
    np.testing.assert_array_equal(y.grad, [2.0, 2.0])


def test_gradient_sums_write_only_into_arrays_the_engine_owns():
    """x gets three gradients: two fresh ones and one that its op keeps. Summing in place into
    an owned array must not touch the kept one, wherever it arrives in the order."""
    x = tl.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    for order in ([2.0, "shared", 5.0], ["shared", 2.0, 5.0], [2.0, 5.0, "shared"]):
        x.grad = None
        _SharedGradient.kept.clear()
        terms = [_SharedGradient.apply(x) * 7 if c == "shared" else _Scale.apply(x, c) for c in order]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        total.sum().backward()
        np.testing.assert_array_equal(x.grad, [14.0, 14.0])
        np.testing.assert_array_equal(_SharedGradient.kept[0], [7.0, 7.0])
        x.grad += 1  # the leaf's array is its own
        np.testing.assert_array_equal(_SharedGradient.kept[0], [7.0, 7.0])


def test_the_fast_linear_layer_hands_its_weight_gradient_over_without_a_copy(monkeypatch):
    from minitl.fastpath import linear as fast_linear
    returned = []
    backward = fast_linear.Linear.backward

    def recording(ctx, grad):
        grads = backward(ctx, grad)
        returned.append(grads)
        return grads

    monkeypatch.setattr(fast_linear.Linear, "backward", staticmethod(recording))
    layer = tl.nn.Linear(3, 2)
    with tl.fastpath.use(True):
        layer(tl.randn(4, 3)).sum().backward()
    assert layer.weight.grad is returned[0][1] and layer.bias.grad is returned[0][2]


def test_non_scalar_backward_needs_gradient():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match=r"non-scalar tensor \(shape \(2,\)\) needs an explicit gradient"):
        y.backward()
    y.backward(tl.tensor([1.0, 10.0]))
    np.testing.assert_allclose(x.grad, [2.0, 20.0])
    with pytest.raises(ValueError, match="gradient shape"):
        y.backward(np.ones(3))


def test_backward_without_any_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (tl.tensor([1.0]) * 2).sum().backward()


def test_intermediate_grads_not_kept_unless_retained():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    k = (x * 3).retain_grad()
    (h * k).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(k.grad, h.data)


def test_no_grad_builds_no_graph_and_works_as_decorator():
    x = tl.tensor([1.0], requires_grad=True)
    with tl.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None
    assert tl.is_grad_enabled()

    @tl.no_grad()
    def double(t):
        return t * 2

    assert not double(x).requires_grad
    assert (x * 2).requires_grad


def test_detach_cuts_the_graph():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).detach() * x
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


def test_constants_do_not_get_grads():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    c = tl.tensor([5.0, 5.0])
    (x * c).sum().backward()
    assert c.grad is None


def test_float32_stays_float32_through_ops_and_grads():
    x = tl.randn(4, 3, requires_grad=True)
    w = tl.randn(3, 2, requires_grad=True)
    out = ((x @ w).relu() * 0.5 + 1).exp().log().softmax(-1).sum()
    assert out.dtype == np.float32
    out.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_mismatched_shapes_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
        tl.ones(2, 3) + tl.ones(4)
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\).*3 != 4"):
        tl.ones(2, 3) @ tl.ones(4, 5)
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\)"):
        tl.ones(2, 3).reshape(4, 2)
    with pytest.raises(ValueError, match=r"linear: input of shape \(2, 3\)"):
        tl.nn.functional.linear(tl.ones(2, 3), tl.ones(4, 5))
    with pytest.raises(ValueError, match=r"cat: shapes \(2, 3\), \(3, 3\)"):
        tl.cat([tl.ones(2, 3), tl.ones(3, 3)], dim=1)


def test_cross_entropy_bad_targets():
    logits = tl.zeros(3, 4)
    with pytest.raises(IndexError, match=r"targets must lie in \[0, 4\).*\[7\]"):
        tl.nn.functional.cross_entropy(logits, np.array([0, 7, 1]))
    with pytest.raises(TypeError, match="integer class indices"):
        tl.nn.functional.cross_entropy(logits, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"targets of shape \(3,\)"):
        tl.nn.functional.cross_entropy(logits, np.array([0, 1]))


def test_item_and_repr():
    assert tl.tensor([2.5]).item() == 2.5
    with pytest.raises(ValueError, match="one element"):
        tl.ones(2).item()
    assert "requires_grad=True" in repr(tl.ones(2, requires_grad=True))
    assert "grad_fn" in repr(tl.ones(2, requires_grad=True) * 2)


def test_comparisons_and_argmax_are_outside_the_graph():
    x = tl.tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 1.0]], requires_grad=True)
    assert x.argmax(1).tolist() == [1, 0]
    assert (x > 1.5).tolist() == [[False, True, True], [True, False, False]]
    assert not (x > 1).requires_grad


def test_stable_softmax_and_log_softmax_on_huge_logits():
    x = tl.tensor([[1000.0, 0.0, -1000.0]])
    p = x.softmax(-1)
    assert np.all(np.isfinite(p.data)) and p.data[0, 0] == pytest.approx(1.0)
    lp = x.log_softmax(-1)
    np.testing.assert_allclose(lp.data, [[0.0, -1000.0, -2000.0]])


def test_sigmoid_no_overflow():
    with np.errstate(over="raise"):
        s = tl.tensor([-1000.0, 0.0, 1000.0]).sigmoid()
    np.testing.assert_allclose(s.data, [0.0, 0.5, 1.0])


def test_cuda_request_without_cupy_is_a_clear_error():
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(tl.backend.DeviceError, match="CuPy"):
        tl.ones(2).to("cuda")


def test_equality_is_elementwise_and_setitem_edits_plain_tensors():
    pred = tl.tensor([1, 2, 3])
    assert (pred == tl.tensor([1, 0, 3])).tolist() == [True, False, True]
    assert (pred != 2).tolist() == [True, False, True]
    assert (pred == None) is False  # noqa: E711
    mask = tl.zeros(3)
    mask[1] = 5.0
    assert mask.tolist() == [0.0, 5.0, 0.0]
    with pytest.raises(RuntimeError, match="invisible to backward"):
        tl.zeros(3, requires_grad=True)[0] = 1.0
    table = {pred: "ok"}  # still hashable by identity
    assert table[pred] == "ok"


def test_leaf_grads_are_fresh_writable_arrays_even_from_views():
    """Gradients that reach a leaf as a broadcast view (sum), the caller's own array, or one
    array given to two inputs still become separate, writable .grad arrays."""
    a = tl.tensor([[1.0, 2.0]], requires_grad=True)
    a.sum().backward()  # Sum's backward is a read-only broadcast view
    a.grad += 1
    np.testing.assert_allclose(a.grad, [[2.0, 2.0]])
    seed = np.ones(2, np.float32)
    b = tl.tensor([1.0, 2.0], requires_grad=True)
    (b * 1.0).backward(seed)
    b.grad += 5
    np.testing.assert_array_equal(seed, [1.0, 1.0])  # the caller's gradient is untouched
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 2).retain_grad()
    (h + x).sum().backward()
    h.grad += 100  # the retained grad and the leaf grad were the same array in flight
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_second_backward_through_a_freed_graph_is_a_clear_error():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        y.backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])  # the failed call added nothing
    h = x * x
    h.sum().backward()  # frees h's node too: a new graph built on h cannot go through it
    with pytest.raises(RuntimeError, match="second time"):
        (h * 3).sum().backward()


def test_retain_graph_allows_a_second_backward_that_accumulates():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x * x).sum()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad, [3.0, 12.0])
    y.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad, [6.0, 24.0])
    y.backward()  # the last one may free it
    np.testing.assert_allclose(x.grad, [9.0, 36.0])
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_serves_two_losses_sharing_a_trunk():
    """Two heads on one shared computation (ELMo/multi-task style): backward each loss."""
    w = tl.tensor([0.5, -1.0], requires_grad=True, dtype="float64")
    trunk = (w * 3).tanh()
    (trunk * 2).sum().backward(retain_graph=True)
    (trunk * trunk).sum().backward()
    t = np.tanh(3 * w.data)
    np.testing.assert_allclose(w.grad, (2 + 2 * t) * (1 - t * t) * 3, rtol=1e-12)


def test_grad_modes_are_separate_classes_and_nest():
    assert not isinstance(tl.enable_grad(), tl.no_grad)
    assert not isinstance(tl.no_grad(), tl.enable_grad)
    x = tl.tensor([1.0], requires_grad=True)
    with tl.no_grad():
        with tl.enable_grad():
            assert (x * 2).requires_grad
        assert not (x * 2).requires_grad
    assert tl.is_grad_enabled()

    @tl.enable_grad()
    def doubled(t):
        """Doubles."""
        return t * 2

    with tl.no_grad():
        assert doubled(x).requires_grad
    assert doubled.__name__ == "doubled" and doubled.__doc__ == "Doubles."


def test_dtype_casts_are_differentiable():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64 and y.requires_grad and y.grad_fn is not None
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [2.0, 4.0])
    z = tl.tensor([1.0], requires_grad=True, dtype="float64")
    (z.float() * 3).sum().backward()
    assert z.grad.dtype == np.float64 and z.grad.tolist() == [3.0]
    (z.to(tl.float32) * 2).sum().backward()
    assert z.grad.tolist() == [5.0]
    assert x.to(tl.float32) is x and x.float() is x
    ints = x.long()
    assert ints.dtype == np.int64 and not ints.requires_grad


def test_clone_copies_the_data_and_keeps_the_graph():
    x = tl.tensor([1.0, 2.0], requires_grad=True)
    c = x.clone()
    assert c.data is not x.data and c.requires_grad
    (c * c).sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])
    plain = tl.tensor([1.0, 2.0])
    copy = plain.clone()
    copy[0] = 7.0
    assert plain.tolist() == [1.0, 2.0]


def test_split_and_chunk_follow_torch_semantics():
    x = tl.arange(10, dtype="float32").reshape(5, 2)
    assert [p.shape for p in x.split(2)] == [(2, 2), (2, 2), (1, 2)]
    assert [p.tolist() for p in tl.split(x, [1, 4])][0] == [[0.0, 1.0]]
    assert [p.shape for p in x.split(1, dim=1)] == [(5, 1), (5, 1)]
    assert [p.shape for p in x.chunk(3)] == [(2, 2), (2, 2), (1, 2)]
    assert [p.shape for p in tl.chunk(tl.ones(5), 4)] == [(2,), (2,), (1,)]  # fewer than asked
    assert isinstance(x.split(2), tuple)
    with pytest.raises(ValueError, match=r"sizes \[1, 2\] must .*add up to 5"):
        x.split([1, 2])
    with pytest.raises(ValueError, match="positive"):
        x.chunk(0)


@pytest.mark.parametrize("training", [True, False])
def test_dropout_with_p_one(training):
    x = tl.ones(3, 4, requires_grad=True)
    out = tl.nn.functional.dropout(x, p=1.0, training=training)
    np.testing.assert_array_equal(out.data, 0.0 if training else 1.0)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, 0.0 if training else 1.0)
    layer = tl.nn.Dropout(1.0)
    layer.train(training)
    np.testing.assert_array_equal(layer(x).data, 0.0 if training else 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tl.nn.functional.dropout(x, p=1.5)


def test_tril_triu_need_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        tl.ones(3).tril()
    mask = tl.ones(3, 3).tril()
    assert mask.tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert tl.triu(tl.ones(2, 3), 1).tolist() == [[0, 1, 1], [0, 0, 1]]


def test_softmax_backward_uses_the_gpu_kernel_where_it_applies(monkeypatch):
    """On the CPU the exercise's formula runs; where the GPU kernels apply (float32 on a GPU),
    Softmax.backward hands the work to backend.softmax_backward. The GPU case is simulated."""
    x = tl.randn(3, 4, requires_grad=True)
    y = x.softmax(-1)
    calls = []
    monkeypatch.setattr(tl.backend, "gpu_kernels_apply", lambda *arrays: True)
    monkeypatch.setattr(tl.backend, "softmax_backward", lambda y, dy, axis: calls.append(axis) or dy * 0)
    (y * tl.randn(3, 4)).sum().backward()
    assert calls == [-1]
