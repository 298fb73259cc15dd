"""The LSTM (minitl.ops.rnn, minitl.nn.rnn, minitl/fastpath/rnn.py).

* the cell's exercises: its forward against the same equations composed from the engine's own
  ops, its backward by gradcheck (float64) and against the composed ops' autograd;
* LSTMCell and LSTM against torch.nn on copied weights (a PyTorch state dict loads as it is),
  forward and backward: outputs, h_n, c_n and the gradients of the input, the initial states
  and every weight, for 1-2 layers, one or both directions, batch_first both ways, with and
  without `lengths` (torch side: pack_padded_sequence + LSTM + pad_packed_sequence), on the
  reference code and on the fast path;
* the fast layer equal to the reference in float64, forward and backward, on odd shapes;
* padding leaks nowhere; initialisation, dropout, unbatched inputs, clear errors; the GPU.
"""
import numpy as np
import pytest

import minitl as tl
from minitl.fastpath import rnn as fast_rnn
from minitl.ops import rnn as R

# torch.Tensor.__array__ takes no `copy` keyword, which NumPy 2 warns about when a PyTorch state
# dict is loaded as it is (the load itself is right: the tests below check the numbers)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
reference = tl.fastpath.use(False)  # exercise tests check the code a student writes
PATHS = pytest.mark.parametrize("fast", [False, True], ids=["reference", "fastpath"])


def normal(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def leaf(array):
    return tl.tensor(array, requires_grad=True, dtype=np.float64)


def cell_arrays(rng, batch=3, inputs=4, hidden=5):
    """x, h, c, w_ih, w_hh, b_ih, b_hh for one step, float64."""
    return (normal(rng, batch, inputs), normal(rng, batch, hidden), normal(rng, batch, hidden),
            normal(rng, 4 * hidden, inputs, scale=0.5), normal(rng, 4 * hidden, hidden, scale=0.5),
            normal(rng, 4 * hidden, scale=0.5), normal(rng, 4 * hidden, scale=0.5))


def cell_from_engine_ops(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """eq. LSTM composed from the engine's ops (matmul, slicing, sigmoid, tanh): an independent
    way to the same numbers, and, through autograd, to the same gradients."""
    hidden = h.shape[1]
    a = x @ w_ih.T + h @ w_hh.T + b_ih + b_hh
    i, f = a[:, :hidden].sigmoid(), a[:, hidden:2 * hidden].sigmoid()
    g, o = a[:, 2 * hidden:3 * hidden].tanh(), a[:, 3 * hidden:].sigmoid()
    c_next = f * c + i * g
    return o * c_next.tanh(), c_next


# --------------------------------------------------------------------------- the cell (exercises)


@pytest.mark.exercise("rnn.lstm_cell_forward")
@reference
def test_cell_forward_is_the_lstm_equations(rng):
    arrays = cell_arrays(rng)
    h, c = R.lstm_cell(*(tl.tensor(a, dtype=np.float64) for a in arrays))
    h_ref, c_ref = cell_from_engine_ops(*(tl.tensor(a, dtype=np.float64) for a in arrays))
    assert h.shape == c.shape == (3, 5)
    np.testing.assert_allclose(c.numpy(), c_ref.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), h_ref.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.exercise("rnn.lstm_cell_forward")
@reference
def test_cell_forward_without_bias_and_gate_order(rng):
    x, h, c, w_ih, w_hh, _, _ = cell_arrays(rng, batch=2, inputs=3, hidden=2)
    # only the forget gate's rows of W_hh are nonzero, and the input is zero: then i = f = o =
    # sigma(0) = 1/2 except f = sigma(h W_f^T), and g = tanh(0) = 0, so c' = f * c, h' = tanh(c') / 2
    w_ih[:] = 0
    w_hh[:2], w_hh[4:] = 0, 0
    h_next, c_next = R.lstm_cell(*(tl.tensor(a, dtype=np.float64) for a in (x, h, c, w_ih, w_hh)))
    f = 1 / (1 + np.exp(-(h @ w_hh[2:4].T)))
    np.testing.assert_allclose(c_next.numpy(), f * c, rtol=1e-12)
    np.testing.assert_allclose(h_next.numpy(), np.tanh(f * c) / 2, rtol=1e-12)


@pytest.mark.exercise("rnn.lstm_cell_backward")
@reference
def test_gradcheck_cell(rng):
    def step(*tensors):
        h, c = R.lstm_cell(*tensors)
        return tl.cat([h, c], dim=1)

    assert tl.gradcheck(step, *cell_arrays(rng))
    assert tl.gradcheck(step, *cell_arrays(rng, batch=1, inputs=2, hidden=3)[:5])  # no bias


@pytest.mark.exercise("rnn.lstm_cell_backward")
@reference
def test_cell_backward_matches_autograd_of_the_equations(rng):
    arrays = cell_arrays(rng, batch=4, inputs=3, hidden=6)
    r_h, r_c = normal(rng, 4, 6), normal(rng, 4, 6)
    grads = []
    for cell in (R.lstm_cell, cell_from_engine_ops):
        leaves = [leaf(a) for a in arrays]
        h, c = cell(*leaves)
        ((h * tl.tensor(r_h, dtype=np.float64)).sum() + (c * tl.tensor(r_c, dtype=np.float64)).sum()).backward()
        grads.append([t.grad for t in leaves])
    for name, ours, composed in zip(["x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"], *grads):
        np.testing.assert_allclose(ours, composed, rtol=1e-10, atol=1e-12, err_msg=name)


# --------------------------------------------------------------------------- against PyTorch

torch = None


def need_torch():
    global torch
    torch = pytest.importorskip("torch")
    return torch


def torch_weights_into(module, torch_module):
    """Load the PyTorch module's state dict into ours, as it is (torch tensors)."""
    module.load_state_dict(torch_module.state_dict())
    return module.double()


def torch_lstm_run(lstm, x, hx, lengths, batch_first):
    if lengths is None:
        return lstm(x, hx)
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    out, (h, c) = lstm(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    return out, (h, c)


LENGTHS = [5, 2, 4, 1]  # T = 5, B = 4: a full sequence, a one-step one, two in between


@PATHS
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["TBI", "BTI"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_lstm_matches_torch(rng, bidirectional, num_layers, batch_first, lengths, fast):
    need_torch()
    torch.manual_seed(0)
    steps, batch, inputs, hidden = 5, 4, 3, 6
    directions = 2 if bidirectional else 1
    peer = torch.nn.LSTM(inputs, hidden, num_layers, batch_first=batch_first, bidirectional=bidirectional).double()
    ours = torch_weights_into(tl.nn.LSTM(inputs, hidden, num_layers, batch_first=batch_first,
                                         bidirectional=bidirectional), peer)
    x = normal(rng, *((batch, steps) if batch_first else (steps, batch)), inputs)
    h0, c0 = normal(rng, num_layers * directions, batch, hidden), normal(rng, num_layers * directions, batch, hidden)
    r_out = normal(rng, *x.shape[:2], directions * hidden)
    r_h, r_c = normal(rng, *h0.shape), normal(rng, *h0.shape)

    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    t_out, (t_h, t_c) = torch_lstm_run(peer, tx, (th0, tc0), lengths, batch_first)
    ((t_out * torch.tensor(r_out)).sum() + (t_h * torch.tensor(r_h)).sum() + (t_c * torch.tensor(r_c)).sum()).backward()

    mx, mh0, mc0 = leaf(x), leaf(h0), leaf(c0)
    with tl.fastpath.use(fast):
        out, (h_n, c_n) = ours(mx, (mh0, mc0), lengths=lengths)
        f64 = lambda a: tl.tensor(a, dtype=np.float64)  # noqa: E731
        ((out * f64(r_out)).sum() + (h_n * f64(r_h)).sum() + (c_n * f64(r_c)).sum()).backward()

    close = dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), **close, err_msg="output")
    np.testing.assert_allclose(h_n.numpy(), t_h.detach().numpy(), **close, err_msg="h_n")
    np.testing.assert_allclose(c_n.numpy(), t_c.detach().numpy(), **close, err_msg="c_n")
    for name, ours_grad, peer_grad in [("input", mx.grad, tx.grad), ("h_0", mh0.grad, th0.grad),
                                       ("c_0", mc0.grad, tc0.grad)]:
        np.testing.assert_allclose(ours_grad, peer_grad.numpy(), **close, err_msg=f"grad of {name}")
    peer_params = dict(peer.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, peer_params[name].grad.numpy(), **close, err_msg=f"grad of {name}")


@PATHS
def test_lstm_float32_and_default_states_match_torch(rng, fast):
    need_torch()
    torch.manual_seed(1)
    peer = torch.nn.LSTM(8, 16, 2, batch_first=True, bidirectional=True)
    ours = tl.nn.LSTM(8, 16, 2, batch_first=True, bidirectional=True)
    ours.load_state_dict(peer.state_dict())
    x = normal(rng, 3, 7, 8).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    t_out, (t_h, t_c) = peer(tx)
    (t_out.sum() + t_h.sum() + t_c.sum()).backward()
    mx = tl.tensor(x, requires_grad=True)
    with tl.fastpath.use(fast):
        out, (h_n, c_n) = ours(mx)
        (out.sum() + h_n.sum() + c_n.sum()).backward()
    assert out.dtype == np.float32 and mx.grad.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h_n.numpy(), t_h.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mx.grad, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.weight_hh_l1_reverse.grad, peer.weight_hh_l1_reverse.grad.numpy(),
                               rtol=1e-4, atol=1e-5)


@PATHS
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_module_matches_torch(rng, bias, fast):
    need_torch()
    torch.manual_seed(2)
    peer = torch.nn.LSTMCell(3, 4, bias=bias).double()
    ours = torch_weights_into(tl.nn.LSTMCell(3, 4, bias=bias), peer)
    x, h, c = normal(rng, 2, 3), normal(rng, 2, 4), normal(rng, 2, 4)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    t_h, t_c = peer(tx, (th, tc))
    (t_h.sum() * 2 + (t_c * t_c).sum()).backward()
    mx, mh, mc = leaf(x), leaf(h), leaf(c)
    with tl.fastpath.use(fast):
        h1, c1 = ours(mx, (mh, mc))
        (h1.sum() * 2 + (c1 * c1).sum()).backward()
    np.testing.assert_allclose(h1.numpy(), t_h.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(c1.numpy(), t_c.detach().numpy(), rtol=1e-10)
    pairs = [(mx.grad, tx.grad), (mh.grad, th.grad), (mc.grad, tc.grad), (ours.weight_ih.grad, peer.weight_ih.grad),
             (ours.weight_hh.grad, peer.weight_hh.grad)]
    if bias:
        pairs.append((ours.bias_hh.grad, peer.bias_hh.grad))
    for ours_grad, peer_grad in pairs:
        np.testing.assert_allclose(ours_grad, peer_grad.numpy(), rtol=1e-10, atol=1e-12)
    # unbatched input and default states, as in PyTorch
    h_u, c_u = ours(tl.tensor(x[0], dtype=np.float64))
    t_hu, t_cu = peer(torch.tensor(x[0]))
    assert h_u.shape == (4,)
    np.testing.assert_allclose(h_u.numpy(), t_hu.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(c_u.numpy(), t_cu.detach().numpy(), rtol=1e-10)


@PATHS
def test_unbatched_input_matches_torch(rng, fast):
    need_torch()
    torch.manual_seed(3)
    peer = torch.nn.LSTM(3, 4, 2, bidirectional=True).double()
    ours = torch_weights_into(tl.nn.LSTM(3, 4, 2, bidirectional=True), peer)
    x, h0, c0 = normal(rng, 5, 3), normal(rng, 4, 4), normal(rng, 4, 4)
    t_out, (t_h, t_c) = peer(torch.tensor(x), (torch.tensor(h0), torch.tensor(c0)))
    with tl.fastpath.use(fast):
        out, (h_n, c_n) = ours(tl.tensor(x, dtype=np.float64),
                               (tl.tensor(h0, dtype=np.float64), tl.tensor(c0, dtype=np.float64)))
    assert out.shape == (5, 8) and h_n.shape == (4, 4)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-10)
    np.testing.assert_allclose(c_n.numpy(), t_c.detach().numpy(), rtol=1e-10)


def test_parameter_names_shapes_and_state_dict_are_pytorchs():
    need_torch()
    peer = torch.nn.LSTM(5, 7, num_layers=2, bias=True, bidirectional=True)
    ours = tl.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in peer.named_parameters()]
    ours.load_state_dict(peer.state_dict())  # strict: the same keys
    np.testing.assert_array_equal(ours.bias_hh_l1_reverse.numpy(), peer.bias_hh_l1_reverse.detach().numpy())
    no_bias = tl.nn.LSTM(5, 7, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    cell = tl.nn.LSTMCell(5, 7)
    assert [(n, tuple(p.shape)) for n, p in cell.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in torch.nn.LSTMCell(5, 7).named_parameters()]


def test_initialisation_is_uniform_in_one_over_sqrt_hidden():
    tl.manual_seed(0)
    lstm = tl.nn.LSTM(30, 64, num_layers=2, bidirectional=True)
    bound = 1 / np.sqrt(64)
    values = np.concatenate([p.numpy().ravel() for p in lstm.parameters()])
    assert values.dtype == np.float32
    assert np.abs(values).max() <= bound
    assert abs(values.std() - bound / np.sqrt(3)) < 0.02 * bound  # the std of U(-b, b)
    assert abs(values.mean()) < 0.01 * bound
    cell = tl.nn.LSTMCell(30, 16)
    assert all(np.abs(p.numpy()).max() <= 0.25 for p in cell.parameters())


# --------------------------------------------------------------------------- fast path == reference


def layer_case(rng, steps, batch, inputs, hidden, bias=True):
    arrays = [normal(rng, steps, batch, inputs), normal(rng, batch, hidden), normal(rng, batch, hidden),
              normal(rng, 4 * hidden, inputs, scale=0.6), normal(rng, 4 * hidden, hidden, scale=0.6)]
    if bias:
        arrays += [normal(rng, 4 * hidden, scale=0.6), normal(rng, 4 * hidden, scale=0.6)]
    return arrays


def run_layer(arrays, lengths, reverse, fast, projections):
    leaves = [leaf(a) for a in arrays]
    args = leaves + [None] * (7 - len(leaves))
    with tl.fastpath.use(fast):
        out, h, c = R.lstm_layer(*args, lengths=lengths, reverse=reverse)
        loss = sum((t * tl.tensor(r, dtype=np.float64)).sum() for t, r in zip((out, h, c), projections))
        loss.backward()
    return [out.numpy(), h.numpy(), c.numpy()] + [t.grad for t in leaves]


FAST_CASES = [  # steps, batch, inputs, hidden, lengths, bias
    (1, 1, 1, 1, None, True),
    (6, 3, 5, 2, None, False),
    (7, 5, 3, 4, [7, 1, 3, 7, 5], True),
    (4, 2, 2, 3, [1, 1], True),
    (9, 4, 6, 5, [2, 9, 6, 4], False),
]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("steps,batch,inputs,hidden,lengths,bias", FAST_CASES)
def test_fast_layer_equals_reference(rng, steps, batch, inputs, hidden, lengths, bias, reverse):
    arrays = layer_case(rng, steps, batch, inputs, hidden, bias)
    projections = [normal(rng, steps, batch, hidden), normal(rng, batch, hidden), normal(rng, batch, hidden)]
    lengths = None if lengths is None else np.array(lengths)
    names = ["output", "h_n", "c_n", "grad x", "grad h0", "grad c0", "grad w_ih", "grad w_hh", "grad b_ih", "grad b_hh"]
    for name, ref, fast in zip(names, run_layer(arrays, lengths, reverse, False, projections),
                               run_layer(arrays, lengths, reverse, True, projections)):
        np.testing.assert_allclose(fast, ref, rtol=1e-11, atol=1e-13, err_msg=name)


@pytest.mark.parametrize("lengths", [None, [4, 2, 1]])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_gradcheck_fast_layer(rng, lengths, reverse):
    lengths = None if lengths is None else np.array(lengths)

    def layer(*tensors):
        with tl.fastpath.use(True):
            out, h, c = R.lstm_layer(*tensors, lengths=lengths, reverse=reverse)
        return tl.cat([out.reshape(-1), h.reshape(-1), c.reshape(-1)])

    assert tl.gradcheck(layer, *layer_case(rng, 4, 3, 2, 3))


def test_fast_layer_is_one_graph_node_and_backward_twice(rng):
    arrays = layer_case(rng, 6, 2, 3, 4)
    leaves = [leaf(a) for a in arrays]
    with tl.fastpath.use(True):
        out, h, c = R.lstm_layer(*leaves)
    assert isinstance(out.grad_fn.parents[0].grad_fn, fast_rnn.LSTMLayer)  # out = packed[:T]
    loss = out.sum() + h.sum()
    loss.backward(retain_graph=True)
    first = [t.grad.copy() for t in leaves]
    loss.backward()  # the saved gate buffer survived the first backward
    for g1, t in zip(first, leaves):
        np.testing.assert_allclose(t.grad, 2 * g1, rtol=1e-12)


def test_fast_layer_gives_blas_its_threads_back(rng):
    from threadpoolctl import threadpool_info

    threads = [info["num_threads"] for info in threadpool_info()]
    leaves = [leaf(a) for a in layer_case(rng, 3, 2, 3, 4)]
    with tl.fastpath.use(True):
        out, _, _ = R.lstm_layer(*leaves)
        out.sum().backward()
    assert [info["num_threads"] for info in threadpool_info()] == threads


@PATHS
def test_gradcheck_lstm_module_with_lengths(rng, fast):
    lstm = tl.nn.LSTM(2, 3, num_layers=2, bidirectional=True, batch_first=True).double()

    def run(x, h0, c0):
        with tl.fastpath.use(fast):
            out, (h, c) = lstm(x, (h0, c0), lengths=[3, 1])
        return tl.cat([out.reshape(-1), h.reshape(-1), c.reshape(-1)])

    assert tl.gradcheck(run, normal(rng, 2, 3, 2), normal(rng, 4, 2, 3), normal(rng, 4, 2, 3))


# --------------------------------------------------------------------------- padding, dropout, errors


@PATHS
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_padding_leaks_into_nothing(rng, bidirectional, fast):
    lstm = tl.nn.LSTM(3, 4, num_layers=2, bidirectional=bidirectional, batch_first=True).double()
    lengths = np.array([6, 3, 1])
    x = normal(rng, 3, 6, 3)
    garbage = x.copy()
    for b, n in enumerate(lengths):
        garbage[b, n:] = 1e3 * normal(rng, 6 - n, 3)
    results = []
    for data in (x, garbage):
        mx = leaf(data)
        with tl.fastpath.use(fast):
            out, (h, c) = lstm(mx, lengths=lengths)
            (out.sum() + h.sum() + c.sum()).backward()
        results.append((out.numpy(), h.numpy(), c.numpy(), mx.grad))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    out, h, _, grad = results[0]
    for b, n in enumerate(lengths):
        assert not out[b, n:].any() and not grad[b, n:].any()
        # each sequence alone, unpadded, gives the same outputs and final states
        with tl.fastpath.use(fast):
            alone, (h_alone, _) = lstm(tl.tensor(x[b:b + 1, :n], dtype=np.float64))
        np.testing.assert_allclose(out[b:b + 1, :n], alone.numpy(), rtol=1e-12)
        np.testing.assert_allclose(h[:, b], h_alone.numpy()[:, 0], rtol=1e-12)


@PATHS
def test_dropout_between_layers_only_in_training(rng, fast):
    tl.manual_seed(0)
    lstm = tl.nn.LSTM(3, 8, num_layers=2, dropout=0.5)
    x = tl.tensor(normal(rng, 4, 2, 3).astype(np.float32))
    with tl.fastpath.use(fast):
        trained = lstm(x)[0].numpy()
        lstm.eval()
        evaluated = lstm(x)[0].numpy()
        lstm.dropout = 0.0
        lstm.train()
        plain = lstm(x)[0].numpy()
    np.testing.assert_array_equal(evaluated, plain)
    assert not np.allclose(trained, plain)
    with pytest.warns(UserWarning, match="num_layers=1"):
        tl.nn.LSTM(3, 4, dropout=0.2)


@PATHS
def test_layer_weights_is_where_a_subclass_changes_the_weights(rng, fast):
    class HalfRecurrence(tl.nn.LSTM):  # as AWD-LSTM's weight drop would, with a mask
        def layer_weights(self, layer, suffix=""):
            w_ih, w_hh, b_ih, b_hh = super().layer_weights(layer, suffix)
            return w_ih, w_hh * 0.5, b_ih, b_hh

    tl.manual_seed(0)
    lstm = HalfRecurrence(3, 4, bidirectional=True).double()
    plain = tl.nn.LSTM(3, 4, bidirectional=True).double()
    plain.load_state_dict(lstm.state_dict())
    for name in ("weight_hh_l0", "weight_hh_l0_reverse"):
        getattr(plain, name).data *= 0.5
    x = tl.tensor(normal(rng, 5, 2, 3), dtype=np.float64)
    with tl.fastpath.use(fast):
        out = lstm(x)[0]
        out.sum().backward()
        expected = plain(x)[0]
        expected.sum().backward()
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-12)
    np.testing.assert_allclose(lstm.weight_hh_l0_reverse.grad, 0.5 * plain.weight_hh_l0_reverse.grad, rtol=1e-12)


def test_clear_errors(rng):
    lstm = tl.nn.LSTM(3, 4, num_layers=2)
    x = tl.randn(5, 2, 3)
    with pytest.raises(ValueError, match=r"expected an input of shape \(steps, batch, 3\)"):
        lstm(tl.randn(5, 2, 4))
    with pytest.raises(ValueError, match=r"h_0 and c_0 must have shape \(2, 2, 4\)"):
        lstm(x, (tl.zeros(1, 2, 4), tl.zeros(1, 2, 4)))
    with pytest.raises(TypeError, match="pair of tensors"):
        lstm(x, tl.zeros(2, 2, 4))
    with pytest.raises(ValueError, match=r"every length must lie in \[1, 5\]"):
        lstm(x, lengths=[6, 2])
    with pytest.raises(ValueError, match=r"lengths must be integers of shape \(2,\)"):
        lstm(x, lengths=[5, 2, 1])
    with pytest.raises(TypeError, match="one floating-point dtype"):
        lstm(x.double())
    with pytest.raises(ValueError, match="num_layers"):
        tl.nn.LSTM(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="hidden_size"):
        tl.nn.LSTMCell(3, 0)
    with pytest.raises(ValueError, match="both biases"):
        R.lstm_cell(tl.randn(2, 3), tl.randn(2, 4), tl.randn(2, 4), tl.randn(16, 3), tl.randn(16, 4), tl.randn(16))
    with pytest.raises(ValueError, match=r"weight_hh \(12, 4\) \(expected \(16, 4\)\)"):
        R.lstm_cell(tl.randn(2, 3), tl.randn(2, 4), tl.randn(2, 4), tl.randn(16, 3), tl.randn(12, 4))


# --------------------------------------------------------------------------- the GPU


def _gpu_or_skip():
    pytest.importorskip("cupy")
    if not tl.is_cuda_available():
        pytest.skip("no GPU on this machine")


@PATHS
def test_lstm_on_cuda_matches_cpu(rng, fast):
    _gpu_or_skip()
    tl.manual_seed(0)
    lstm = tl.nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)
    x = normal(rng, 3, 6, 4).astype(np.float32)
    results = {}
    for device in ("cpu", "cuda"):
        lstm.to(device)
        lstm.zero_grad()
        mx = tl.tensor(x, requires_grad=True, device=device)
        with tl.fastpath.use(fast):
            out, (h, c) = lstm(mx, lengths=[6, 2, 4])
            (out.sum() + h.sum() + c.sum()).backward()
        results[device] = [out.numpy(), h.numpy(), tl.tensor(mx.grad).numpy(),
                           tl.tensor(lstm.weight_hh_l1_reverse.grad).numpy()]
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
