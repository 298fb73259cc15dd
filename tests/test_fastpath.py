"""The fast paths equal their references, and the switch chooses between them.

Every fast Function of minitl/fastpath/ is run against the reference Function of minitl/ops/
(or the reference Adam update) in float64, forward and backward, on odd shapes, strides,
paddings, non-square kernels, odd batch sizes, inputs of any memory layout (contiguous, an
NCHW view of NHWC memory as a fast conv returns it, a strided slice), and on 1 and 3 threads.
The thread pool's blocks are made tiny (the `threads` fixture, tests/conftest.py), so that these
small inputs really are split.
"""
import numpy as np
import pytest

import minitl as tl
import minitl.nn.functional as F
from minitl.fastpath import adam as fast_adam
from minitl.fastpath import conv as fast_conv
from minitl.fastpath import elementwise as fast_elementwise
from minitl.fastpath import gelu as fast_gelu
from minitl.fastpath import layer_norm as fast_layer_norm
from minitl.fastpath import linear as fast_linear
from minitl.fastpath import parallel
from minitl.ops import conv as ref_conv
from minitl.ops import elementwise as ref_elementwise
from minitl.ops import linalg as ref_linalg
from minitl.ops import nn_ops as ref_nn_ops
from minitl.optim import adam as ref_adam

rng = np.random.default_rng(5)


def assert_close(fast, ref, what="", floor=1e-300):
    """max |fast - ref| <= 1e-12 * max |ref|: equal up to the order of float64 sums. `floor`
    bounds the scale from below, for arrays that are zero in exact arithmetic."""
    fast, ref = np.asarray(fast), np.asarray(ref)
    assert fast.shape == ref.shape, what
    scale = max(float(np.abs(ref).max()), floor) if ref.size else 1.0
    err = float(np.abs(fast - ref).max()) / scale if ref.size else 0.0
    assert err <= 1e-12, f"{what}: relative error {err:.1e}"


def layout(a, kind):
    """The same values in another memory layout: 'nchw' (contiguous), 'nhwc' (an NCHW view of
    NHWC memory, as a fast conv returns) or 'strided' (every other element of a larger array)."""
    if kind == "nchw" or a.ndim != 4:
        return np.ascontiguousarray(a) if kind != "strided" else _strided(a)
    if kind == "nhwc":
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return _strided(a)


def _strided(a):
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


LAYOUTS = ["nchw", "nhwc", "strided"]


def run_both(fn, arrays, grad_seed=0, requires_grad=None):
    """fn on fresh float64 leaves with the fast path on and off: for each, (output, input
    gradients, class of the node that made the output)."""
    results = []
    for flag in (True, False):
        with tl.fastpath.use(flag):
            leaves = [tl.tensor(a, dtype="float64", requires_grad=True if requires_grad is None else requires_grad[i])
                      for i, a in enumerate(arrays)]
            out = fn(*leaves)
            g = np.random.default_rng(grad_seed).standard_normal(out.shape)
            out.backward(g)
            results.append((out.numpy(), [leaf.grad for leaf in leaves], type(out.grad_fn)))
    return results


def check_equal(fn, arrays, fast_class, ref_class, requires_grad=None):
    (out_f, grads_f, cls_f), (out_r, grads_r, cls_r) = run_both(fn, arrays, requires_grad=requires_grad)
    assert (cls_f, cls_r) == (fast_class, ref_class)  # each path recorded its own node
    assert_close(out_f, out_r, "forward")
    for i, (gf, gr) in enumerate(zip(grads_f, grads_r)):
        assert (gf is None) == (gr is None), f"gradient {i}"
        if gr is not None:
            assert_close(gf, gr, f"gradient of input {i}")


# --- the switch ----------------------------------------------------------------------------------

def test_the_switch_set_and_use_restore_the_previous_setting():
    start = tl.fastpath.enabled()
    assert tl.fastpath.set_enabled(not start) is start
    assert tl.fastpath.enabled() is (not start)
    assert tl.fastpath.set_enabled(start) is (not start)
    with tl.fastpath.use(False):
        assert not tl.fastpath.enabled()
        with tl.fastpath.use(True):
            assert tl.fastpath.enabled()
        assert not tl.fastpath.enabled()
    assert tl.fastpath.enabled() is start

    @tl.fastpath.use(False)
    def inside():
        return tl.fastpath.enabled()

    assert inside() is False and tl.fastpath.enabled() is start
    for bad in (1, "0", None):
        with pytest.raises(TypeError):
            tl.fastpath.set_enabled(bad)
        with pytest.raises(TypeError):
            tl.fastpath.use(bad)


def test_the_environment_variable_sets_the_start(monkeypatch):
    from minitl import fastpath

    monkeypatch.setenv("MINITL_FASTPATH", "0")
    assert fastpath._from_environment() is False
    monkeypatch.setenv("MINITL_FASTPATH", "1")
    assert fastpath._from_environment() is True
    monkeypatch.delenv("MINITL_FASTPATH")
    assert fastpath._from_environment() is fastpath.ENABLED_BY_DEFAULT
    monkeypatch.setenv("MINITL_FASTPATH", "yes")
    with pytest.raises(ValueError, match="MINITL_FASTPATH"):
        fastpath._from_environment()


def test_fast_functions_are_their_own_classes():
    pairs = [(fast_conv.Conv2d, ref_conv.Conv2d), (fast_conv.BatchNorm, ref_conv.BatchNorm),
             (fast_conv.MaxPool2x2, ref_conv.MaxPool2d), (fast_elementwise.Relu, ref_elementwise.Relu),
             (fast_linear.Linear, ref_linalg.Linear)]
    for fast, ref in pairs:
        assert not issubclass(fast, ref) and not issubclass(ref, fast)


@pytest.mark.parametrize("flag", [True, False])
def test_each_op_records_the_node_of_the_chosen_path(flag):
    x = tl.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = tl.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    with tl.fastpath.use(flag):
        nodes = {
            "conv": F.conv2d(x, w, None, 1, 1).grad_fn,
            "relu": tl.relu(x).grad_fn,
            "batch_norm": F.batch_norm(x, None, None, training=True).grad_fn,
            "max_pool 2x2": F.max_pool2d(x, 2).grad_fn,
            "max_pool 3x3": F.max_pool2d(x, 3, 2, 1).grad_fn,  # no fast version: the reference
        }
    expected = {
        "conv": fast_conv.Conv2d if flag else ref_conv.Conv2d,
        "relu": fast_elementwise.Relu if flag else ref_elementwise.Relu,
        "batch_norm": fast_conv.BatchNorm if flag else ref_conv.BatchNorm,
        "max_pool 2x2": fast_conv.MaxPool2x2 if flag else ref_conv.MaxPool2d,
        "max_pool 3x3": ref_conv.MaxPool2d,
    }
    assert {k: type(v) for k, v in nodes.items()} == expected


@pytest.mark.parametrize("flag", [True, False])
def test_adam_step_runs_the_update_of_the_chosen_path(flag, monkeypatch):
    calls = []
    monkeypatch.setattr(fast_adam, "adam_update_all", lambda *a, **k: calls.append("fast"))
    monkeypatch.setattr(ref_adam, "adam_update", lambda *a, **k: calls.append("reference"))
    p = tl.nn.Parameter(np.ones(3, np.float32))
    p.grad = np.ones(3, np.float32)
    with tl.fastpath.use(flag):
        tl.optim.Adam([p]).step()
    assert calls == ["fast" if flag else "reference"]


@pytest.mark.exercise("optim.adam")
def test_exercise_tests_run_the_reference():
    """tests/conftest.py turns the fast path off for every test of an exercise, so this step
    runs `adam_update`, the code the student writes."""
    assert tl.fastpath.enabled() is False
    p = tl.nn.Parameter(np.zeros(3, np.float32))
    p.grad = np.ones(3, np.float32)
    tl.optim.Adam([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, [-0.1] * 3, rtol=1e-5)


# --- convolution -------------------------------------------------------------------------------

CONV_CASES = [  # (x shape, weight shape, stride, padding, bias)
    ((3, 5, 9, 7), (4, 5, 3, 3), 1, 1, True),
    ((1, 2, 8, 11), (3, 2, 2, 3), (1, 2), (0, 1), True),
    ((5, 3, 7, 7), (6, 3, 3, 3), 2, 1, False),
    ((2, 1, 6, 5), (2, 1, 1, 1), 2, 0, True),
    ((3, 4, 10, 9), (5, 4, 5, 3), (2, 1), (2, 0), True),
    ((1, 3, 5, 5), (2, 3, 5, 5), 1, 0, False),  # the kernel covers the whole image
    ((4, 1, 9, 8), (3, 1, 3, 3), 1, 1, True),  # one channel, as Fashion-MNIST's first conv
]


@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("xs,ws,stride,padding,bias", CONV_CASES)
def test_conv2d(threads, xs, ws, stride, padding, bias, kind):
    arrays = [layout(rng.standard_normal(xs), kind), rng.standard_normal(ws)] + ([rng.standard_normal(ws[0])] if bias else [])
    check_equal(lambda x, w, *b: F.conv2d(x, w, b[0] if b else None, stride, padding), arrays,
                fast_conv.Conv2d, ref_conv.Conv2d)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, True)])
def test_conv2d_gradients_of_some_inputs_only(threads, needs):
    arrays = [rng.standard_normal((3, 2, 7, 6)), rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)]
    check_equal(lambda x, w, b: F.conv2d(x, w, b, 1, 1), arrays, fast_conv.Conv2d, ref_conv.Conv2d,
                requires_grad=needs)


def test_conv2d_errors_are_the_same_on_both_paths():
    for flag in (True, False):
        with tl.fastpath.use(flag):
            with pytest.raises(ValueError, match=r"3 channels.*expects 2"):
                F.conv2d(tl.tensor(np.zeros((1, 3, 5, 5))), tl.tensor(np.zeros((4, 2, 3, 3))))
            with pytest.raises(ValueError, match="does not fit"):
                F.conv2d(tl.tensor(np.zeros((1, 1, 2, 2))), tl.tensor(np.zeros((1, 1, 3, 3))))


# --- batch norm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape,kind", [((5, 3, 7, 9), "nchw"), ((3, 4, 5, 5), "nhwc"), ((7, 2, 3, 4), "strided"),
                                        ((9, 5), "nchw"), ((5, 3, 11), "nchw"), ((6, 4, 7), "strided"),
                                        ((8, 4, 4, 4), "nhwc"), ((4, 6, 8, 8), "nhwc")])
def test_batch_norm(threads, shape, kind, training):
    channels = shape[1]
    x = layout(rng.normal(1.5, 2.0, shape), kind)
    weight, bias = rng.standard_normal(channels), rng.standard_normal(channels)
    running = {flag: (np.linspace(-1, 1, channels), np.linspace(0.5, 2, channels)) for flag in (True, False)}

    def fn(x, w, b):
        mean, var = running[tl.fastpath.enabled()]
        return F.batch_norm(x, mean, var, w, b, training=training, momentum=0.3)

    check_equal(fn, [x, weight, bias], fast_conv.BatchNorm, ref_conv.BatchNorm)
    for fast, ref in zip(running[True], running[False]):  # the running statistics moved alike
        assert_close(fast, ref, "running statistics")


@pytest.mark.parametrize("rows,channels", [(64, 3), (96, 32), (7, 4), (512, 600)])
def test_channel_passes_on_wide_rows_equal_the_narrow_ones(threads, rows, channels):
    """channel_rowwise views (R, C) as (R/k, k*C) with the vectors tiled: the same float ops on
    the same elements, so the same bits, whatever k comes out (1 for 7 rows, or 600 channels)."""
    a, b = rng.standard_normal((2, rows, channels)).astype(np.float32)
    p, q, shift = rng.standard_normal((3, channels)).astype(np.float32)
    wide = fast_conv.channel_rowwise(fast_conv.two_term_combination, np.empty_like(a), a, p, b, q, shift)
    narrow = parallel.rowwise(fast_conv.two_term_combination, np.empty_like(a), a, p, b, q, shift)
    np.testing.assert_array_equal(wide, narrow)
    strided = a[:, ::-1]  # not contiguous: the narrow passes
    np.testing.assert_array_equal(fast_conv.channel_rowwise(np.subtract, np.empty_like(a), strided, p), strided - p)


@pytest.mark.parametrize("rows,channels", [(100352 // 16, 32), (7, 4), (4096, 600)])
def test_centered_square_sums_in_one_pass(threads, rows, channels):
    """x - mean written whole, and the column sums of its squares, the same bits on one thread
    as on the fixture's (partial sums add in block order), on wide rows and on a non-contiguous
    input."""
    x = rng.standard_normal((rows, channels)) * 3 + 1
    mean = x.mean(axis=0)
    for a in (x, np.asfortranarray(x)):
        results = []
        for count in (threads, 1):
            before = parallel.get_num_threads()
            parallel.set_num_threads(count)
            try:
                centered = np.empty_like(a)
                results.append((fast_conv.centered_square_sums(a, mean, centered), centered))
            finally:
                parallel.set_num_threads(before)
        (sums, centered), (sums_2, centered_2) = results
        np.testing.assert_array_equal(centered, a - mean)
        np.testing.assert_allclose(sums, ((a - mean) ** 2).sum(axis=0), rtol=1e-12)
        np.testing.assert_array_equal(sums, sums_2)
        np.testing.assert_array_equal(centered, centered_2)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, True), (False, False, True)])
def test_batch_norm_gradients_of_some_inputs_only(threads, needs):
    arrays = [rng.standard_normal((4, 3, 5, 5)), rng.standard_normal(3), rng.standard_normal(3)]
    check_equal(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), arrays,
                fast_conv.BatchNorm, ref_conv.BatchNorm, requires_grad=needs)


# --- 2x2 max-pool --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("shape,padding", [((3, 5, 8, 6), 0), ((1, 2, 4, 10), 0), ((2, 3, 6, 8), 1),
                                           ((5, 1, 2, 2), 0), ((2, 4, 6, 8), (0, 1))])
def test_max_pool_2x2(threads, shape, padding, kind):
    x = layout(rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25, kind)
    check_equal(lambda t: F.max_pool2d(t, 2, 2, padding), [x], fast_conv.MaxPool2x2, ref_conv.MaxPool2d)


@pytest.mark.parametrize("kind", LAYOUTS)
def test_max_pool_2x2_takes_the_first_maximum_on_ties(threads, kind):
    x = layout(rng.integers(0, 3, (3, 4, 6, 8)).astype(np.float64), kind)  # many ties
    check_equal(lambda t: F.max_pool2d(t, 2), [x], fast_conv.MaxPool2x2, ref_conv.MaxPool2d)


@pytest.mark.parametrize("kernel,stride,padding,shape", [
    (2, 2, 0, (2, 3, 5, 6)),  # odd height: the windows do not tile it
    (2, 1, 0, (2, 3, 6, 6)), ((2, 3), None, 0, (2, 3, 6, 6)), (3, 2, 1, (2, 3, 6, 6))])
def test_other_max_pools_run_the_reference_on_both_paths(kernel, stride, padding, shape):
    with tl.fastpath.use(True):
        out = F.max_pool2d(tl.tensor(rng.standard_normal(shape), requires_grad=True), kernel, stride, padding)
    assert type(out.grad_fn) is ref_conv.MaxPool2d


# --- ReLU ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("shape", [(7,), (5, 13), (3, 4, 7, 5)])
def test_relu(threads, shape, kind):
    x = rng.standard_normal(shape)
    x.flat[::5] = 0.0  # the kink: no gradient at 0 on either path
    check_equal(tl.relu, [layout(x, kind)], fast_elementwise.Relu, ref_elementwise.Relu)


def test_relu_keeps_the_memory_layout_of_its_input():
    with tl.fastpath.use(True):
        out = tl.relu(tl.tensor(layout(rng.standard_normal((2, 3, 4, 5)), "nhwc"))).numpy()
    assert out.transpose(0, 2, 3, 1).flags.c_contiguous


# --- linear ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["nchw", "strided"])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 9), (1, 6)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(shape, kind, bias):
    arrays = [layout(rng.standard_normal(shape), kind), rng.standard_normal((3, shape[-1]))]
    if bias:
        arrays.append(rng.standard_normal(3))
    check_equal(F.linear, arrays, fast_linear.Linear, ref_linalg.Linear)


@pytest.mark.parametrize("needs", [(True, False, False), (False, True, True), (False, False, True)])
def test_linear_gradients_of_some_inputs_only(needs):
    arrays = [rng.standard_normal((4, 5, 6)), rng.standard_normal((2, 6)), rng.standard_normal(2)]
    check_equal(F.linear, arrays, fast_linear.Linear, ref_linalg.Linear, requires_grad=needs)


@pytest.mark.parametrize("batch", [1, 5, 9, 40], ids=["one row", "shorter than wide", "as long as wide", "longer"])
def test_a_chain_of_linear_layers_column_major_equals_the_reference(threads, batch):
    """Linear-ReLU-Linear-ReLU-Linear (the benchmark's MLP in small): the layers at least as
    wide as the batch run column-major, the narrow last one takes column-major input; outputs
    and every gradient as the reference's."""
    shapes = [(batch, 6), (9, 6), (9,), (9, 9), (9,), (3, 9), (3,)]
    arrays = [rng.standard_normal(s) for s in shapes]

    def mlp(x, w1, b1, w2, b2, w3, b3):
        return F.linear(F.relu(F.linear(F.relu(F.linear(x, w1, b1)), w2, b2)), w3, b3)

    check_equal(mlp, arrays, fast_linear.Linear, ref_linalg.Linear)


def test_the_fast_linear_layer_keeps_a_batch_column_major_and_dx_in_the_inputs_layout(monkeypatch):
    returned = []
    backward = fast_linear.Linear.backward
    monkeypatch.setattr(fast_linear.Linear, "backward", staticmethod(lambda ctx, g: returned.append(backward(ctx, g)) or returned[-1]))
    w1, w2 = tl.tensor(rng.standard_normal((8, 3)), requires_grad=True), tl.tensor(rng.standard_normal((2, 8)), requires_grad=True)
    x = tl.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    with tl.fastpath.use(True):
        h = F.linear(x, w1)  # 8 wide, 4 long: column-major
        y = F.linear(h, w2)  # 2 wide, but its input is column-major
        assert h.data.T.flags.c_contiguous and not h.data.flags.c_contiguous and y.data.T.flags.c_contiguous
        y.sum().backward()
    (dh, dw2), (dx, dw1) = returned
    assert dh.T.flags.c_contiguous and not dh.flags.c_contiguous  # in h's layout
    assert dx.flags.c_contiguous  # in x's (row-major) layout
    assert dw1.flags.c_contiguous and dw2.flags.c_contiguous  # weight gradients row-major, as the weights
    long = tl.tensor(rng.standard_normal((20, 3)))
    with tl.fastpath.use(True):
        assert F.linear(long, w1).data.flags.c_contiguous  # 20 rows, 8 wide: the reference's orientation


def test_linear_errors_are_the_same_on_both_paths():
    x, w = tl.tensor(np.ones((2, 3))), tl.tensor(np.ones((4, 5)))
    for flag in (True, False):
        with tl.fastpath.use(flag), pytest.raises(ValueError, match="3 features but the weight"):
            F.linear(x, w)


# --- layer norm and GELU on threads (the transformer's element-wise work) -----------------------

@pytest.mark.parametrize("kind", ["nchw", "strided"])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 9)])
def test_layer_norm(threads, shape, kind, monkeypatch):
    monkeypatch.setattr(fast_layer_norm, "ROWS", 2)  # many slices, the last one short, on the threads
    width = shape[-1]
    arrays = [layout(rng.standard_normal(shape) * 2 + 1, kind), rng.standard_normal(width), rng.standard_normal(width)]
    check_equal(lambda x, w, b: F.layer_norm(x, width, w, b), arrays, fast_layer_norm.LayerNorm, ref_nn_ops.LayerNorm)


@pytest.mark.parametrize("shape", [(7,), (5, 13), (3, 4, 7, 5)])
def test_float32_gelu_gives_the_same_bits_on_any_number_of_threads(shape, monkeypatch):
    """Each element's value depends on that element alone, so splitting the slices over threads
    changes no bit; the values against the exact GELU: tests/test_attention.py."""
    monkeypatch.setattr(fast_gelu, "BLOCK", 7)  # many slices, the last one short
    monkeypatch.setattr(parallel, "MIN_ELEMENTS_PER_THREAD", 1)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    grad = rng.standard_normal(shape).astype(np.float32)
    before, results = parallel.get_num_threads(), []
    try:
        for count in (1, 3):
            parallel.set_num_threads(count)
            leaf = tl.tensor(x, requires_grad=True)
            with tl.fastpath.use(True):
                out = F.gelu(leaf)
                out.backward(grad)
            assert type(out.grad_fn) is fast_gelu.Gelu
            results.append((out.numpy(), leaf.grad))
    finally:
        parallel.set_num_threads(before)
    (out1, grad1), (out3, grad3) = results
    np.testing.assert_array_equal(out3, out1)
    np.testing.assert_array_equal(grad3, grad1)


# --- Adam ----------------------------------------------------------------------------------------

def float64_parameter(values):
    p = tl.nn.Parameter(np.zeros(values.shape, np.float32))
    p.data = values.astype(np.float64)  # a Parameter starts as float32
    return p


def adam_run(flag, cls, kwargs, steps=4):
    """`steps` Adam steps on parameters of odd sizes (several slices each when SLICE is small),
    one of them non-contiguous and one without a gradient at the second step."""
    shapes = [(7, 53), (301,), (3, 5, 2), (1,)]
    params = [float64_parameter(np.random.default_rng(i).standard_normal(s)) for i, s in enumerate(shapes)]
    params[0].data = np.asfortranarray(params[0].data)
    opt = cls([{"params": params[:2]}, {"params": params[2:], "lr": 0.05}], **kwargs)
    grads = np.random.default_rng(9)
    with tl.fastpath.use(flag):
        for step in range(steps):
            for i, p in enumerate(params):
                p.grad = None if (step == 1 and i == 3) else grads.standard_normal(p.shape)
            opt.step()
    return [p.data for p in params], [(s["exp_avg"], s["exp_avg_sq"], s["step"]) for s in opt.state.values()]


@pytest.mark.parametrize("cls,kwargs", [(tl.optim.Adam, dict(lr=0.01)),
                                        (tl.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
                                        (tl.optim.AdamW, dict(lr=0.02, eps=1e-3, weight_decay=0.1))])
def test_adam(threads, cls, kwargs):
    fast_params, fast_state = adam_run(True, cls, kwargs)
    ref_params, ref_state = adam_run(False, cls, kwargs)
    for a, b in zip(fast_params, ref_params):
        assert_close(a, b, "parameters")
    for (m_f, v_f, t_f), (m_r, v_r, t_r) in zip(fast_state, ref_state):
        assert t_f == t_r
        assert_close(m_f, m_r, "exp_avg")
        assert_close(v_f, v_r, "exp_avg_sq")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("parallel_elements", [1, 1 << 40], ids=["two threads", "one thread"])
def test_adam_on_slices_long_enough_for_blas(dtype, parallel_elements, monkeypatch):
    """The default slice size, so that the axpby updates run in BLAS (fastpath.blas.MIN_SIZE):
    a parameter of one slice, one of two slices whose second is short, and a small one."""
    from minitl.fastpath import blas
    monkeypatch.setattr(fast_adam, "PARALLEL_ELEMENTS", parallel_elements)
    jobs = []  # (slices, threaded, slice length) of each fast step
    run_jobs = parallel.parallel_for

    def recording_parallel_for(n, body, row_size, enabled, block_elements):
        jobs.append((n, enabled, block_elements))
        run_jobs(n, body, row_size, enabled=enabled, block_elements=block_elements)

    monkeypatch.setattr(parallel, "parallel_for", recording_parallel_for)
    before = parallel.get_num_threads()
    parallel.set_num_threads(2)
    sizes = [blas.MIN_SIZE * 3 + 7, fast_adam.SLICE + blas.MIN_SIZE // 2, fast_adam.THREADED_SLICE + 5, 300]

    def run(flag):
        params = [tl.nn.Parameter(np.zeros(n, np.float32)) for n in sizes]
        for i, p in enumerate(params):
            p.data = np.random.default_rng(i).standard_normal(p.data.size).astype(dtype)
        opt = tl.optim.Adam(params, lr=0.01, weight_decay=0.1)
        grads = np.random.default_rng(7)
        with tl.fastpath.use(flag):
            for _ in range(3):
                for p in params:
                    p.grad = grads.standard_normal(p.data.size).astype(dtype)
                opt.step()
        return [p.data for p in params] + [a for st in opt.state.values() for a in (st["exp_avg"], st["exp_avg_sq"])]

    try:
        fast, ref = run(True), run(False)
    finally:
        parallel.set_num_threads(before)
    threaded = parallel_elements == 1
    slices = 1 + 1 + 2 + 1 if threaded else 1 + 2 + 5 + 1  # per parameter, in slices of 2^18 or 2^16
    assert jobs == [(slices, threaded, fast_adam.THREADED_SLICE if threaded else fast_adam.SLICE)] * 3
    for a, b in zip(fast, ref):
        assert a.dtype == dtype
        if dtype == np.float64:
            assert_close(a, b)
        else:  # BLAS may fuse a multiply-add: one float32 rounding apart
            np.testing.assert_allclose(a, b, rtol=3e-6, atol=1e-7)


def test_aligned_empty_starts_on_a_cache_line():
    from minitl.fastpath import aligned
    for shape, dtype in (((512, 784), np.float32), (7, np.float64), ((3, 0, 2), np.float32), (np.int64(5), np.int32)):
        a = aligned.empty(shape, dtype)
        assert (aligned.is_aligned(a) or a.size == 0) and a.flags.c_contiguous and a.dtype == dtype
        assert a.shape == ((int(shape),) if np.ndim(shape) == 0 else tuple(shape))
    assert not aligned.is_aligned(aligned.empty(40, np.float32)[1:])


def test_adam_moves_its_moments_to_aligned_memory_and_keeps_their_values():
    """The fast step puts the moments of a parameter long enough for BLAS on a cache-line
    boundary once (also after load_state_dict, whose copies land anywhere), and the next steps
    equal the reference's."""
    from minitl.fastpath import aligned, blas
    n = blas.MIN_SIZE + 999

    def run(flag, reload):
        p = float64_parameter(np.linspace(-1, 1, n))
        opt = tl.optim.Adam([p], lr=0.1)
        for k in range(4):
            p.grad = np.cos(np.arange(n) * (k + 1))
            if k == 2 and reload:
                opt.load_state_dict(opt.state_dict())
            with tl.fastpath.use(flag):
                opt.step()
        state = next(iter(opt.state.values()))
        return p.data, state["exp_avg"], state["exp_avg_sq"]

    for reload in (False, True):
        fast, ref = run(True, reload), run(False, reload)
        assert all(aligned.is_aligned(a) for a in fast[1:])
        for a, b in zip(fast, ref):
            assert_close(a, b)


def test_adam_with_moments_of_another_dtype_than_the_parameter():
    """Moments and gradients in float32 for a parameter made float64 after a step, over
    several slices: each array's slice addresses use its own item size, so the BLAS calls never
    read or write past the moments, and the steps equal the reference's."""
    from minitl.fastpath import blas
    n = fast_adam.SLICE + blas.MIN_SIZE + 1000  # a second slice long enough for BLAS

    def run(flag):
        p = tl.nn.Parameter(np.zeros(n, np.float32))
        p.data = np.linspace(-1, 1, n, dtype=np.float32)
        opt = tl.optim.Adam([p], lr=0.01)
        p.grad = np.cos(np.arange(n)).astype(np.float32)
        with tl.fastpath.use(flag):
            opt.step()
            p.data = p.data.astype(np.float64)
            for k in range(2):
                p.grad = np.sin(np.arange(n) * (k + 2)).astype(np.float32)  # float32 gradients
                opt.step()
        state = next(iter(opt.state.values()))
        return p.data, state["exp_avg"], state["exp_avg_sq"]

    for a, b in zip(run(True), run(False)):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def test_blas_axpby_equals_numpy_and_is_found_in_numpys_openblas():
    from threadpoolctl import threadpool_info

    from minitl.fastpath import blas
    rng_ = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        if any(info.get("internal_api") == "openblas" for info in threadpool_info()):
            assert blas.routine(dtype) is not None, "NumPy's OpenBLAS exports cblas_?axpby under a name we miss"
        for n in (5, blas.MIN_SIZE, blas.MIN_SIZE * 2 + 3):
            x, y = rng_.standard_normal((2, n)).astype(dtype)
            for a, b in ((0.3, 0.7), (-2.0, 1.0), (1.5, 0.0)):
                expected = (a * x.astype(np.float64) + b * y.astype(np.float64))
                out = blas.axpby(a, x, b, y.copy())
                np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)
                strided = y.copy()[::2]  # not contiguous: the NumPy passes
                np.testing.assert_allclose(blas.axpby(a, x[::2], b, strided), expected[::2], rtol=1e-6, atol=1e-6)


def test_adam_state_moves_between_the_paths(threads):
    """Two steps on one path and two on the other equal four on the reference: the state
    means the same thing on both."""
    def run(flags):
        p = float64_parameter(np.linspace(-1, 1, 250))
        opt = tl.optim.AdamW([p], lr=0.1)
        for k, flag in enumerate(flags):
            p.grad = np.cos(np.arange(250) * (k + 1))
            with tl.fastpath.use(flag):
                opt.step()
        return p.data

    assert_close(run([True, True, False, False]), run([False] * 4))
    assert_close(run([False, False, True, True]), run([False] * 4))


def test_adam_float32_over_default_slices():
    """The real slice size, float32: every element of a parameter longer than two slices moves
    by lr on the first step (m_hat / sqrt(v_hat) = sign(g))."""
    n = fast_adam.SLICE * 2 + 123
    p = tl.nn.Parameter(np.zeros(n, np.float32))
    p.grad = np.ones(n, np.float32)
    with tl.fastpath.use(True):
        tl.optim.Adam([p], lr=0.1).step()
    np.testing.assert_allclose(p.data, np.full(n, -0.1), rtol=1e-5)


# --- a whole network -----------------------------------------------------------------------------

def test_small_cnn_forward_and_backward(threads):
    """The benchmark's CNN (conv, batch norm, ReLU, 2x2 max-pool, linear): the same loss,
    gradients and running statistics on both paths."""
    x = rng.standard_normal((3, 1, 28, 28))
    y = np.array([1, 0, 9])
    results = []
    for flag in (True, False):
        tl.manual_seed(0)
        model = tl.models.small_cnn().to(tl.float64)
        with tl.fastpath.use(flag):
            loss = F.cross_entropy(model(tl.tensor(x, dtype="float64")), tl.tensor(y))
            loss.backward()
        state = [np.array(v) for v in model.state_dict().values()]  # weights and running statistics
        results.append((loss.item(), [p.grad for p in model.parameters()], state))
    (loss_f, grads_f, state_f), (loss_r, grads_r, state_r) = results
    assert loss_f == pytest.approx(loss_r, rel=1e-12)
    # the conv biases' gradients are zero in exact arithmetic (batch norm removes any shift):
    # rounding noise of about 1e-16 on both paths, hence the floor
    for a, b in zip(grads_f + state_f, grads_r + state_r):
        assert_close(a, b, floor=1e-3)
