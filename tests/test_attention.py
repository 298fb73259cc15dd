"""Attention and the Transformer encoder (issue 12): F.scaled_dot_product_attention,
nn.MultiheadAttention, nn.TransformerEncoderLayer and nn.TransformerEncoder.

* the exercises (attention.scaled_dot_product, attention.split_heads, attention.merge_heads),
  on the reference code;
* against PyTorch on copied weights, in float64: outputs, attention weights, the gradients of
  the inputs and of every parameter, with boolean and float masks, key padding, causal
  masks, need_weights on and off, batch_first both ways, pre- and post-norm, ReLU and GELU,
  dropout in eval mode; and, on both the reference code and the fast paths;
* float64 gradient checks of the function, of the layers' inputs and of all their parameters;
* fully masked rows: zeros, defined here (and what PyTorch's SDPA gives too);
* dropout in training mode, statistically;
* the fast paths (minitl/fastpath/attention.py, gelu.py, layer_norm.py) equal to the reference
  in float64, and the float32 GELU as accurate as float32 allows;
* on the CuPy backend the softmax is the project's kernel: on a GPU (skipped without one), and
  on the CPU through the CUDA emulation with the backend told to take NumPy arrays as GPU ones.
"""
import copy

import numpy as np
import pytest

import minitl as tl
import minitl.nn.functional as F
from minitl.fastpath import attention as fast_attention
from minitl.fastpath import gelu as fast_gelu
from minitl.fastpath import layer_norm as fast_layer_norm
from minitl.gradcheck import numerical_gradient, relative_error
from minitl.ops.attention import merge_heads, scaled_dot_product, split_heads

rng = np.random.default_rng(12)
PATHS = pytest.mark.parametrize("fast", [False, True], ids=["reference", "fastpath"])


def leaves(*arrays):
    return [tl.tensor(a, dtype="float64", requires_grad=True) for a in arrays]


def softmax64(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def assert_close(ours, theirs, what="", rtol=1e-9, atol=1e-11):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    ours = ours.numpy() if isinstance(ours, tl.Tensor) else np.asarray(ours)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


# ============================================================================ exercises

@pytest.mark.exercise("attention.scaled_dot_product")
def test_scaled_dot_product_is_softmax_of_scaled_scores_times_values():
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    bias = np.where(rng.random((4, 5)) < 0.3, -np.inf, 0.0)
    bias[:, 0] = 0.0  # every query keeps a key
    weights_expected = softmax64(q @ k.transpose(0, 2, 1) * 0.7 + bias)
    with tl.fastpath.use(False):
        out, weights = scaled_dot_product(*leaves(q, k, v), tl.tensor(bias, dtype="float64"), scale=0.7)
        np.testing.assert_allclose(weights.numpy(), weights_expected, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(out.numpy(), weights_expected @ v, rtol=1e-12, atol=1e-15)
        assert np.all(weights.numpy()[:, bias == -np.inf] == 0)  # masked keys get nothing
        assert tl.gradcheck(lambda q, k, v: scaled_dot_product(q, k, v, tl.tensor(bias, dtype="float64"), 0.7)[0],
                            q, k, v)


@pytest.mark.exercise("attention.scaled_dot_product")
@pytest.mark.parametrize("mask", ["none", "boolean", "float", "causal"])
def test_reference_attention_matches_pytorch(mask):
    torch = pytest.importorskip("torch")
    q, k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 6, 4)), rng.standard_normal((2, 3, 6, 3))
    kwargs = {}
    if mask == "boolean":
        kwargs["attn_mask"] = rng.random((5, 6)) < 0.7
        kwargs["attn_mask"][:, 0] = True
    elif mask == "float":
        kwargs["attn_mask"] = rng.standard_normal((2, 1, 5, 6))
    elif mask == "causal":
        kwargs["is_causal"] = True
    with tl.fastpath.use(False):
        compare_sdpa_with_torch(torch, q, k, v, **kwargs)


@pytest.mark.exercise("attention.split_heads")
def test_split_heads_gives_each_head_its_slice_of_features():
    x = rng.standard_normal((2, 5, 6))
    (leaf,) = leaves(x)
    with tl.fastpath.use(False):
        heads = split_heads(leaf, 3)
    assert heads.shape == (2, 3, 5, 2)
    for h in range(3):
        np.testing.assert_array_equal(heads.numpy()[:, h], x[:, :, 2 * h:2 * h + 2])
    g = rng.standard_normal(heads.shape)
    heads.backward(g)
    np.testing.assert_array_equal(leaf.grad, g.transpose(0, 2, 1, 3).reshape(2, 5, 6))


@pytest.mark.exercise("attention.merge_heads")
def test_merge_heads_puts_the_heads_side_by_side():
    y = rng.standard_normal((2, 3, 5, 2))
    (leaf,) = leaves(y)
    with tl.fastpath.use(False):
        merged = merge_heads(leaf)
    assert merged.shape == (2, 5, 6)
    for h in range(3):
        np.testing.assert_array_equal(merged.numpy()[:, :, 2 * h:2 * h + 2], y[:, h])
    g = rng.standard_normal(merged.shape)
    merged.backward(g)
    np.testing.assert_array_equal(leaf.grad, g.reshape(2, 5, 3, 2).transpose(0, 2, 1, 3))


def test_split_heads_refuses_a_width_that_does_not_divide():
    with pytest.raises(ValueError, match="width 5 does not split into 2 heads"):
        split_heads(tl.zeros(1, 2, 5), 2)


# ============================================================================ the function

def compare_sdpa_with_torch(torch, q, k, v, attn_mask=None, mask_requires_grad=False, **kwargs):
    """F.scaled_dot_product_attention on both sides, float64: output and every gradient."""
    ours = leaves(q, k, v)
    theirs = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    our_mask = their_mask = None
    if attn_mask is not None:
        our_mask = tl.tensor(attn_mask, dtype=attn_mask.dtype, requires_grad=mask_requires_grad)
        their_mask = torch.tensor(attn_mask, requires_grad=mask_requires_grad)
    out = F.scaled_dot_product_attention(*ours, attn_mask=our_mask, **kwargs)
    expected = torch.nn.functional.scaled_dot_product_attention(*theirs, attn_mask=their_mask, **kwargs)
    assert_close(out, expected, "output")
    g = rng.standard_normal(out.shape)
    out.backward(g)
    expected.backward(torch.tensor(g))
    for name, o, t in zip("qkv", ours, theirs):
        assert_close(o.grad, t.grad, f"d{name}")
    if mask_requires_grad:
        assert_close(our_mask.grad, their_mask.grad, "d attn_mask")
    return out


SDPA_CASES = {
    "no mask": dict(),
    "boolean (L, S)": dict(attn_mask=(5, 6)),
    "boolean broadcast (B, 1, L, S)": dict(attn_mask=(2, 1, 5, 6)),
    "float (H, L, S)": dict(attn_mask=(3, 5, 6), float_mask=True),
    "float with grad": dict(attn_mask=(2, 3, 5, 6), float_mask=True, mask_requires_grad=True),
    "causal": dict(is_causal=True),
    "own scale": dict(scale=0.3),
}


@PATHS
@pytest.mark.parametrize("case", list(SDPA_CASES), ids=list(SDPA_CASES))
def test_scaled_dot_product_attention_matches_pytorch(fast, case):
    torch = pytest.importorskip("torch")
    spec = dict(SDPA_CASES[case])
    q, k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 6, 4)), rng.standard_normal((2, 3, 6, 7))
    mask_shape = spec.pop("attn_mask", None)
    mask = None
    if mask_shape is not None:
        if spec.pop("float_mask", False):
            mask = rng.standard_normal(mask_shape)
        else:
            mask = rng.random(mask_shape) < 0.6
            mask[..., 0] = True
    with tl.fastpath.use(fast):
        compare_sdpa_with_torch(torch, q, k, v, attn_mask=mask, **spec)


@PATHS
@pytest.mark.parametrize("kind", ["boolean", "float -inf"])
def test_a_fully_masked_row_gives_zeros_as_in_pytorch(fast, kind):
    torch = pytest.importorskip("torch")
    q, k, v = rng.standard_normal((2, 4, 3)), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 2))
    allowed = rng.random((2, 4, 5)) < 0.6
    allowed[..., 0] = True
    allowed[0, 2] = False  # query 2 of sequence 0 may see no key at all
    mask = allowed if kind == "boolean" else np.where(allowed, rng.standard_normal(allowed.shape), -np.inf)
    with tl.fastpath.use(fast):
        out = compare_sdpa_with_torch(torch, q, k, v, attn_mask=mask)
    assert np.all(out.numpy()[0, 2] == 0)
    assert np.all(np.isfinite(out.numpy()))


@PATHS
def test_a_fully_masked_row_has_zero_weights_and_zero_gradients(fast):
    from minitl.ops.attention import attention

    q, k, v = leaves(rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2)))
    allowed = np.ones((3, 5), bool)
    allowed[1] = False
    with tl.fastpath.use(fast):
        out, weights = attention(q, k, v, attn_mask=tl.tensor(allowed), need_weights=True)
        (out * tl.tensor(rng.standard_normal(out.shape), dtype="float64")).sum().backward()
    assert np.all(weights.numpy()[1] == 0) and np.allclose(weights.numpy()[[0, 2]].sum(-1), 1)
    assert np.all(q.grad[1] == 0)
    assert np.all(np.isfinite(k.grad)) and np.all(np.isfinite(v.grad))


@PATHS
@pytest.mark.parametrize("mask", ["none", "boolean with a blocked row", "float with grad", "causal"])
def test_gradcheck_scaled_dot_product_attention(fast, mask):
    q, k, v = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 3))
    extra = []
    if mask == "boolean with a blocked row":
        allowed = rng.random((3, 4)) < 0.6
        allowed[:, 1] = True
        allowed[2] = False
        fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=tl.tensor(allowed))  # noqa: E731
    elif mask == "float with grad":
        extra = [rng.standard_normal((2, 1, 4))]
        fn = lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)  # noqa: E731
    else:
        fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=mask == "causal")  # noqa: E731
    with tl.fastpath.use(fast):
        assert tl.gradcheck(fn, q, k, v, *extra)


@PATHS
def test_gradcheck_with_dropout_under_a_fixed_seed(fast):
    def fn(q, k, v):
        tl.manual_seed(3)  # the same dropout mask on every call
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)

    q, k, v = rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 3))
    with tl.fastpath.use(fast):
        assert tl.gradcheck(fn, q, k, v)


def test_attention_takes_a_different_value_width_and_broadcast_batches():
    torch = pytest.importorskip("torch")
    q, k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((3, 6, 4)), rng.standard_normal((3, 6, 1))
    for fast in (False, True):
        with tl.fastpath.use(fast):
            out = compare_sdpa_with_torch(torch, q, k, v)
        assert out.shape == (2, 3, 5, 1)


@pytest.mark.parametrize("p", [0.25, 0.6])
def test_dropout_keeps_the_expected_output(p):
    """E[dropout(W) V] = W V: the mean over many draws approaches the output without dropout,
    within a few standard errors, on both paths."""
    q, k, v = (tl.tensor(rng.standard_normal(s)) for s in [(4, 3), (6, 3), (6, 2)])
    exact = F.scaled_dot_product_attention(q, k, v).numpy()
    for fast in (False, True):
        with tl.fastpath.use(fast):
            draws = np.stack([F.scaled_dot_product_attention(q, k, v, dropout_p=p).numpy() for _ in range(3000)])
        assert not np.allclose(draws[0], exact)
        stderr = draws.std(axis=0) / np.sqrt(len(draws))
        assert np.all(np.abs(draws.mean(axis=0) - exact) < 5 * stderr + 1e-6)


def test_dropout_of_one_drops_every_weight():
    q, k, v = leaves(rng.standard_normal((3, 2)), rng.standard_normal((4, 2)), rng.standard_normal((4, 2)))
    for fast in (False, True):
        with tl.fastpath.use(fast):
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=1.0)
            out.sum().backward()
        assert np.all(out.numpy() == 0) and np.all(q.grad == 0) and np.all(v.grad == 0)


def test_bad_input_gets_a_clear_error():
    q, k, v = tl.zeros(2, 3, 4), tl.zeros(2, 5, 4), tl.zeros(2, 5, 6)
    sdpa = F.scaled_dot_product_attention
    with pytest.raises(ValueError, match="same feature size E"):
        sdpa(q, tl.zeros(2, 5, 3), v)
    with pytest.raises(ValueError, match="same length S"):
        sdpa(q, k, tl.zeros(2, 4, 6))
    with pytest.raises(ValueError, match="does not broadcast to the scores' shape"):
        sdpa(q, k, v, attn_mask=tl.ones(3, 4, dtype="bool"))
    with pytest.raises(TypeError, match="boolean or floating point"):
        sdpa(q, k, v, attn_mask=tl.ones(3, 5, dtype="int64"))
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        sdpa(q, k, v, attn_mask=tl.ones(3, 5, dtype="bool"), is_causal=True)
    with pytest.raises(TypeError, match="share one floating-point dtype"):
        sdpa(q, k.double(), v)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        sdpa(tl.zeros(4), k, v)
    with pytest.raises(ValueError, match="batch dimensions"):
        sdpa(q, tl.zeros(3, 5, 4), tl.zeros(3, 5, 6))
    with pytest.raises(ValueError, match="dropout_p must lie in"):
        sdpa(q, k, v, dropout_p=1.5)


# ============================================================================ MultiheadAttention

def torch_twins(torch, ours_cls, theirs_cls, *args, **kwargs):
    """The PyTorch module with random weights (biases too: PyTorch starts them at zero), and
    ours loaded from its state_dict; both float64."""
    torch.manual_seed(0)
    theirs = theirs_cls(*args, **kwargs).double()
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64) * 0.5)
    ours = ours_cls(*args, **kwargs).double()
    ours.load_state_dict(torch_state(theirs))
    return ours, theirs


def torch_state(module):
    return {name: value.detach().numpy() for name, value in module.state_dict().items()}


def assert_parameter_grads_match(ours, theirs):
    their_grads = {name: p.grad for name, p in theirs.named_parameters()}
    our_names = [name for name, _ in ours.named_parameters()]
    assert our_names == list(their_grads), "parameter names and order differ from PyTorch's"
    for name, p in ours.named_parameters():
        assert_close(p.grad, their_grads[name], f"d {name}")


def run_mha(module, inputs, same_input, **kwargs):
    query, key, value = (inputs[0],) * 3 if same_input else inputs
    return module(query, key, value, **kwargs)


MHA_CASES = {
    "self-attention": dict(),
    "batch_first": dict(batch_first=True),
    "no weights": dict(need_weights=False),
    "per-head weights": dict(average_attn_weights=False),
    "key padding (bool)": dict(key_padding_mask="bool"),
    "key padding (float), batch_first": dict(key_padding_mask="float", batch_first=True),
    "attn_mask (L, S) bool": dict(attn_mask="bool2d"),
    "attn_mask (N*H, L, S) float": dict(attn_mask="float3d"),
    "both masks, no weights": dict(attn_mask="bool2d", key_padding_mask="bool", need_weights=False),
    "causal": dict(attn_mask="causal", is_causal=True),
    "causal, no weights": dict(attn_mask="causal", is_causal=True, need_weights=False),
    "cross-attention, kdim vdim": dict(cross=True, kdim=5, vdim=3),
    "cross-attention, batch_first": dict(cross=True, batch_first=True),
    "no bias": dict(bias=False),
    "dropout in eval mode": dict(dropout=0.4, eval=True),
    "unbatched": dict(unbatched=True, key_padding_mask="bool"),
    "fully padded sequence, no weights": dict(key_padding_mask="all of one", need_weights=False),
}


def mha_case(torch, spec, embed_dim=8, num_heads=2, batch=3, length=4, source=5):
    """Inputs and forward keyword arguments for one MHA_CASES entry, as (ours, theirs) pairs."""
    spec = dict(spec)
    module_kwargs = {k: spec.pop(k) for k in ("batch_first", "kdim", "vdim", "bias", "dropout") if k in spec}
    cross, unbatched, use_eval = spec.pop("cross", False), spec.pop("unbatched", False), spec.pop("eval", False)
    if not cross:
        source = length
    kdim, vdim = module_kwargs.get("kdim", embed_dim), module_kwargs.get("vdim", embed_dim)
    if unbatched:
        shapes = [(length, embed_dim), (source, kdim), (source, vdim)]
    elif module_kwargs.get("batch_first"):
        shapes = [(batch, length, embed_dim), (batch, source, kdim), (batch, source, vdim)]
    else:
        shapes = [(length, batch, embed_dim), (source, batch, kdim), (source, batch, vdim)]
    arrays = [rng.standard_normal(s) for s in shapes]
    forward = {}
    padding = spec.pop("key_padding_mask", None)
    if padding is not None:
        hidden = rng.random((source,) if unbatched else (batch, source)) < 0.4
        hidden[..., 0] = False
        if padding == "all of one":
            hidden[0] = True
        forward["key_padding_mask"] = np.where(hidden, -np.inf, rng.standard_normal(hidden.shape)) \
            if padding == "float" else hidden
    mask = spec.pop("attn_mask", None)
    if mask == "bool2d":
        hidden = rng.random((length, source)) < 0.4
        hidden[:, 1] = False
        forward["attn_mask"] = hidden
    elif mask == "float3d":
        forward["attn_mask"] = rng.standard_normal((batch * num_heads, length, source))
    elif mask == "causal":
        forward["attn_mask"] = ~np.tri(length, source, 0, dtype=bool)
    forward.update(spec)
    ours_forward = {k: tl.tensor(v, dtype=v.dtype) if isinstance(v, np.ndarray) else v for k, v in forward.items()}
    theirs_forward = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in forward.items()}
    return module_kwargs, arrays, cross, use_eval, ours_forward, theirs_forward


@PATHS
@pytest.mark.parametrize("case", list(MHA_CASES), ids=list(MHA_CASES))
def test_multihead_attention_matches_pytorch(fast, case):
    torch = pytest.importorskip("torch")
    module_kwargs, arrays, cross, use_eval, ours_fw, theirs_fw = mha_case(torch, MHA_CASES[case])
    ours, theirs = torch_twins(torch, tl.nn.MultiheadAttention, torch.nn.MultiheadAttention, 8, 2, **module_kwargs)
    if use_eval:
        ours.eval()
        theirs.eval()
    our_inputs = leaves(*arrays)
    their_inputs = [torch.tensor(a, requires_grad=True) for a in arrays]
    with tl.fastpath.use(fast):
        out, weights = run_mha(ours, our_inputs, not cross, **ours_fw)
        expected, expected_weights = run_mha(theirs, their_inputs, not cross, **theirs_fw)
        assert_close(out, expected, "output")
        g = rng.standard_normal(out.shape)
        loss_ours = (out * tl.tensor(g, dtype="float64")).sum()
        loss_theirs = (expected * torch.tensor(g)).sum()
        if expected_weights is None:
            assert weights is None
        else:
            assert_close(weights, expected_weights, "attention weights")
            gw = rng.standard_normal(weights.shape)
            loss_ours = loss_ours + (weights * tl.tensor(gw, dtype="float64")).sum()
            loss_theirs = loss_theirs + (expected_weights * torch.tensor(gw)).sum()
        loss_ours.backward()
    loss_theirs.backward()
    used = 1 if not cross else 3
    for i, (o, t) in enumerate(zip(our_inputs[:used], their_inputs[:used])):
        assert_close(o.grad, t.grad, f"d input {i}")
    assert_parameter_grads_match(ours, theirs)


def test_multihead_attention_has_pytorchs_parameters_and_initialisation():
    torch = pytest.importorskip("torch")
    ours = tl.nn.MultiheadAttention(16, 4)
    theirs = torch.nn.MultiheadAttention(16, 4)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert np.all(ours.in_proj_bias.numpy() == 0) and np.all(ours.out_proj.bias.numpy() == 0)
    bound = np.sqrt(6 / (16 + 48))  # Xavier-uniform over the (3E, E) stack, as PyTorch
    assert 0.8 * bound < np.abs(ours.in_proj_weight.numpy()).max() <= bound
    separate = tl.nn.MultiheadAttention(16, 4, kdim=5, vdim=7, bias=False)
    names = [name for name, _ in separate.named_parameters()]
    assert names == [name for name, _ in torch.nn.MultiheadAttention(16, 4, kdim=5, vdim=7, bias=False).named_parameters()]
    assert separate.in_proj_weight is None and separate.in_proj_bias is None


def test_our_state_dict_loads_into_pytorch():
    torch = pytest.importorskip("torch")
    ours = tl.nn.MultiheadAttention(8, 2, batch_first=True)
    theirs = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    out, weights = ours(*(tl.tensor(x),) * 3)
    expected, expected_weights = theirs(*(torch.from_numpy(x),) * 3)
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.numpy(), expected_weights.detach().numpy(), rtol=1e-5, atol=1e-6)


@PATHS
def test_is_causal_without_a_mask_applies_the_causal_mask(fast):
    mha = tl.nn.MultiheadAttention(6, 3, batch_first=True).double()
    (x,) = leaves(rng.standard_normal((2, 5, 6)))
    hidden = tl.tensor(~np.tri(5, 5, 0, dtype=bool))
    with tl.fastpath.use(fast):
        implicit, w1 = mha(x, x, x, is_causal=True)
        explicit, w2 = mha(x, x, x, attn_mask=hidden)
    np.testing.assert_allclose(implicit.numpy(), explicit.numpy(), rtol=1e-13)
    assert np.all(np.triu(w1.numpy()[0], 1) == 0) and np.allclose(w1.numpy(), w2.numpy())


def test_a_fully_padded_sequence_gets_zero_weights():
    """PyTorch's need_weights path gives NaN for a query with no key to attend to; here its
    weights are zero and its attention output is zero (the output is out_proj's bias)."""
    mha = tl.nn.MultiheadAttention(4, 2, batch_first=True)
    x = tl.randn(2, 3, 4)
    padding = np.zeros((2, 3), bool)
    padding[1] = True
    out, weights = mha(x, x, x, key_padding_mask=tl.tensor(padding))
    assert np.all(weights.numpy()[1] == 0) and np.all(np.isfinite(out.numpy()))
    np.testing.assert_allclose(out.numpy()[1], np.broadcast_to(mha.out_proj.bias.numpy(), (3, 4)))


def test_attention_dropout_in_training_mode_drops_and_rescales_the_weights():
    p = 0.5
    mha = tl.nn.MultiheadAttention(8, 2, dropout=p, batch_first=True)
    x = tl.randn(16, 12, 8)
    mha.eval()
    _, exact = mha(x, x, x, average_attn_weights=False)
    mha.train()
    _, dropped = mha(x, x, x, average_attn_weights=False)
    dropped, exact = dropped.numpy(), exact.numpy()
    zero = dropped == 0
    assert abs(zero.mean() - p) < 0.02  # 4608 weights: the standard deviation of the fraction is 0.007
    np.testing.assert_allclose(dropped[~zero], exact[~zero] / (1 - p), rtol=1e-5)
    mha.eval()
    np.testing.assert_array_equal(mha(x, x, x, average_attn_weights=False)[1].numpy(), exact)


def test_multihead_attention_refuses_bad_input():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        tl.nn.MultiheadAttention(10, 3)
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        tl.nn.MultiheadAttention(8, 2, add_bias_kv=True)
    mha = tl.nn.MultiheadAttention(8, 2)
    x = tl.zeros(4, 3, 8)
    with pytest.raises(ValueError, match="should have 8 features"):
        mha(tl.zeros(4, 3, 6), x, x)
    with pytest.raises(ValueError, match="all be 3-D"):
        mha(tl.zeros(4, 8), x, x)
    with pytest.raises(ValueError, match="different batch sizes"):
        mha(x, tl.zeros(4, 2, 8), tl.zeros(4, 2, 8))
    with pytest.raises(ValueError, match=r"key_padding_mask of shape \(3, 5\) should be \(N, S\)"):
        mha(x, x, x, key_padding_mask=tl.zeros(3, 5, dtype="bool"))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 5\) should be \(L, S\)"):
        mha(x, x, x, attn_mask=tl.zeros(4, 5, dtype="bool"))
    with pytest.raises(TypeError, match="boolean or floating point"):
        mha(x, x, x, attn_mask=tl.zeros(4, 4, dtype="int64"))


# ============================================================================ encoder

LAYER_CASES = {
    "post-norm relu": dict(),
    "pre-norm gelu, batch_first": dict(norm_first=True, activation="gelu", batch_first=True),
    "post-norm gelu, key padding": dict(activation="gelu", src_key_padding_mask=True),
    "pre-norm relu, bool src_mask": dict(norm_first=True, src_mask="bool"),
    "post-norm, float src_mask, batch_first": dict(src_mask="float", batch_first=True),
    "pre-norm, causal": dict(norm_first=True, src_mask="causal", is_causal=True),
    "no bias": dict(bias=False, norm_first=True),
    "dropout in eval mode": dict(dropout=0.3, eval=True, activation="gelu"),
}


def layer_case(torch, spec, batch=3, length=5, d_model=8):
    spec = dict(spec)
    module_kwargs = {k: spec.pop(k) for k in ("norm_first", "activation", "batch_first", "bias", "dropout") if k in spec}
    module_kwargs.setdefault("dropout", 0.0)
    use_eval = spec.pop("eval", False)
    shape = (batch, length, d_model) if module_kwargs.get("batch_first") else (length, batch, d_model)
    forward = {}
    if spec.pop("src_key_padding_mask", False):
        hidden = rng.random((batch, length)) < 0.4
        hidden[:, 0] = False
        forward["src_key_padding_mask"] = hidden
    mask = spec.pop("src_mask", None)
    if mask == "bool":
        hidden = rng.random((length, length)) < 0.4
        np.fill_diagonal(hidden, False)
        forward["src_mask"] = hidden
    elif mask == "float":
        forward["src_mask"] = rng.standard_normal((length, length))
    elif mask == "causal":
        forward["src_mask"] = ~np.tri(length, length, 0, dtype=bool)
    forward.update(spec)
    ours_fw = {k: tl.tensor(v, dtype=v.dtype) if isinstance(v, np.ndarray) else v for k, v in forward.items()}
    theirs_fw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in forward.items()}
    return module_kwargs, rng.standard_normal(shape), use_eval, ours_fw, theirs_fw


def compare_modules(torch, ours, theirs, x, ours_fw, theirs_fw, use_eval, fast):
    if use_eval:
        ours.eval()
        theirs.eval()
    (leaf,) = leaves(x)
    their_x = torch.tensor(x, requires_grad=True)
    with tl.fastpath.use(fast):
        out = ours(leaf, **ours_fw)
        expected = theirs(their_x, **theirs_fw)
        assert_close(out, expected, "output")
        g = rng.standard_normal(out.shape)
        out.backward(g)
    expected.backward(torch.tensor(g))
    assert_close(leaf.grad, their_x.grad, "d input")
    assert_parameter_grads_match(ours, theirs)


@PATHS
@pytest.mark.parametrize("case", list(LAYER_CASES), ids=list(LAYER_CASES))
def test_transformer_encoder_layer_matches_pytorch(fast, case):
    torch = pytest.importorskip("torch")
    module_kwargs, x, use_eval, ours_fw, theirs_fw = layer_case(torch, LAYER_CASES[case])
    ours, theirs = torch_twins(torch, tl.nn.TransformerEncoderLayer, torch.nn.TransformerEncoderLayer, 8, 2, 16,
                               **module_kwargs)
    compare_modules(torch, ours, theirs, x, ours_fw, theirs_fw, use_eval, fast)


@PATHS
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_transformer_encoder_matches_pytorch(fast, norm_first):
    torch = pytest.importorskip("torch")

    def build(lib, **extra):
        layer = lib.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True,
                                               norm_first=norm_first)
        return lib.nn.TransformerEncoder(layer, 3, norm=lib.nn.LayerNorm(8), **extra)

    theirs = build(torch, enable_nested_tensor=False).double()
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64) * 0.5)
    ours = build(tl).double()
    ours.load_state_dict(torch_state(theirs))
    padding = rng.random((2, 6)) < 0.3
    padding[:, 0] = False
    hidden = ~np.tri(6, 6, 0, dtype=bool)
    compare_modules(torch, ours, theirs, rng.standard_normal((2, 6, 8)),
                    dict(mask=tl.tensor(hidden), src_key_padding_mask=tl.tensor(padding), is_causal=True),
                    dict(mask=torch.tensor(hidden), src_key_padding_mask=torch.tensor(padding), is_causal=True),
                    False, fast)


def test_transformer_encoder_deep_copies_its_layer():
    layer = tl.nn.TransformerEncoderLayer(8, 2, 16)
    encoder = tl.nn.TransformerEncoder(layer, 2)
    first, second = encoder.layers[0], encoder.layers[1]
    assert first is not layer and first is not second
    assert first.linear1.weight is not second.linear1.weight
    np.testing.assert_array_equal(first.linear1.weight.numpy(), layer.linear1.weight.numpy())
    first.linear1.weight.data[...] = 0
    assert np.any(second.linear1.weight.numpy() != 0) and np.any(layer.linear1.weight.numpy() != 0)
    assert len(list(encoder.parameters())) == 2 * len(list(layer.parameters()))


def test_encoder_layer_training_mode_applies_dropout():
    layer = tl.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3, batch_first=True)
    x = tl.randn(2, 5, 8)
    layer.eval()
    exact = layer(x).numpy()
    layer.train()
    assert not np.allclose(layer(x).numpy(), exact)
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), exact)
    no_dropout = tl.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    np.testing.assert_array_equal(no_dropout(x).numpy(), no_dropout.eval()(x).numpy())


def test_encoder_layer_takes_a_callable_activation_and_refuses_unknown_names():
    layer = tl.nn.TransformerEncoderLayer(4, 2, 8, activation=F.tanh)
    assert layer(tl.randn(3, 2, 4)).shape == (3, 2, 4)
    with pytest.raises(ValueError, match="'relu' or 'gelu'"):
        tl.nn.TransformerEncoderLayer(4, 2, 8, activation="swish")


def test_layer_norm_without_bias_matches_pytorch():
    torch = pytest.importorskip("torch")
    ours, theirs = tl.nn.LayerNorm(6, bias=False), torch.nn.LayerNorm(6, bias=False)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()] == ["weight"]
    x = rng.standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(ours(tl.tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(), atol=1e-6)


# ============================================================================ gradient checks of the layers

def check_module_gradients(module, arrays, forward, bound=1e-6):
    """Central differences in float64 for every input and every parameter of `module`."""
    module.double()
    inputs = leaves(*arrays)
    projection = None

    def loss_value():
        with tl.no_grad():
            return float((forward(module, *inputs).data * projection).sum())

    out = forward(module, *inputs)
    projection = np.random.default_rng(0).standard_normal(out.shape)
    (out * tl.tensor(projection, dtype="float64")).sum().backward()
    named = [(f"input {i}", t) for i, t in enumerate(inputs)] + list(module.named_parameters())
    errors = {name: relative_error(t.grad, numerical_gradient(loss_value, t.data)) for name, t in named}
    bad = {name: err for name, err in errors.items() if not err < bound}
    assert not bad, f"gradient check failed (bound {bound:.0e}): {bad}"


@PATHS
def test_gradcheck_multihead_attention(fast):
    mha = tl.nn.MultiheadAttention(6, 2, kdim=4, vdim=3)
    padding = tl.tensor(np.array([[False, False, True], [False, True, True]]))
    hidden = tl.tensor(np.array([[False, True, False], [False, False, False]]))

    def forward(m, q, k, v):
        out, weights = m(q, k, v, key_padding_mask=padding, attn_mask=hidden)
        return out.sum(-1) + weights.sum(-1)

    arrays = [rng.standard_normal((2, 2, 6)), rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 3))]
    with tl.fastpath.use(fast):
        check_module_gradients(mha, arrays, forward)


@PATHS
@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")], ids=["post-norm relu", "pre-norm gelu"])
def test_gradcheck_transformer_encoder_layer(fast, norm_first, activation):
    layer = tl.nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, activation=activation, norm_first=norm_first,
                                          batch_first=True)
    padding = tl.tensor(np.array([[False, False, True], [False, False, False]]))
    with tl.fastpath.use(fast):
        check_module_gradients(layer, [rng.standard_normal((2, 3, 4))],
                               lambda m, x: m(x, src_key_padding_mask=padding, is_causal=True))


# ============================================================================ the fast paths

def run_on_both_paths(fn, arrays, seed=0):
    """fn on float64 leaves with the fast paths off and on: [(output, input grads)] x 2."""
    results = []
    for fast in (False, True):
        inputs = leaves(*arrays)
        with tl.fastpath.use(fast):
            tl.manual_seed(seed)
            out = fn(*inputs)
            out.backward(np.random.default_rng(seed).standard_normal(out.shape))
        results.append((out.numpy(), [t.grad for t in inputs]))
    return results


def assert_same_on_both_paths(fn, arrays):
    (ref_out, ref_grads), (fast_out, fast_grads) = run_on_both_paths(fn, arrays)
    scale = max(np.abs(ref_out).max(), 1e-300)
    assert np.abs(fast_out - ref_out).max() <= 1e-12 * scale
    for r, f in zip(ref_grads, fast_grads):
        assert np.abs(f - r).max() <= 1e-12 * max(np.abs(r).max(), 1e-300)


@pytest.mark.parametrize("shapes,mask,dropout_p", [
    ([(7, 3), (5, 3), (5, 2)], None, 0.0),
    ([(2, 3, 7, 5), (2, 3, 9, 5), (2, 3, 9, 4)], "bool", 0.0),
    ([(2, 1, 7, 5), (3, 9, 5), (3, 9, 1)], "float grad", 0.0),
    ([(2, 3, 7, 5), (2, 3, 9, 5), (2, 3, 9, 4)], "bool blocked", 0.35),
    ([(4, 7, 5), (4, 7, 5), (4, 7, 6)], "causal", 0.5),
], ids=["2-D", "bool mask", "broadcast batch, float mask with grad", "blocked rows, dropout", "causal, dropout"])
@pytest.mark.parametrize("slice_elements", [1, 100, 65536], ids=["slices of one", "odd slices", "one slice"])
def test_fused_attention_equals_the_reference(shapes, mask, dropout_p, slice_elements, threads, monkeypatch):
    monkeypatch.setattr(fast_attention, "SLICE_ELEMENTS", slice_elements)  # `threads`: on 1 and 3 threads
    arrays = [rng.standard_normal(s) for s in shapes]
    length, source = shapes[0][-2], shapes[1][-2]
    if mask == "float grad":
        arrays.append(rng.standard_normal((length, source)))

        def fn(q, k, v, m):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=dropout_p)
    else:
        allowed = None
        if mask and mask.startswith("bool"):
            allowed = rng.random((length, source)) < 0.5
            allowed[:, 2] = True
            if mask == "bool blocked":
                allowed[[1, 4]] = False

        def fn(q, k, v):
            m = None if allowed is None else tl.tensor(allowed)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m, dropout_p=dropout_p, is_causal=mask == "causal")
    assert_same_on_both_paths(fn, arrays)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["plain", "a row far below", "a row far above", "-inf in a row", "one row all -inf"])
def test_the_fused_softmax_shift_by_the_slice_max_falls_back_to_row_maxima(dtype, case):
    """One shift for the whole slice, the slice's max, unless a row's exponentials would
    underflow: then the row maxima, as the reference. Rows of 1e3 apart underflow in both dtypes."""
    scores = rng.standard_normal((2, 3, 4, 6)) * 3
    if case == "a row far below":
        scores[1, 2, 3] -= 1e3
    elif case == "a row far above":
        scores[0, 1, 2] += 1e3
    elif case == "-inf in a row":
        scores[1, 0, 1, [0, 4]] = -np.inf
    elif case == "one row all -inf":  # NaN, as the row-max softmax gives it
        scores[0, 0, 0] = -np.inf
    scores = scores.astype(dtype)
    with np.errstate(invalid="ignore"):
        shifted = scores - scores.max(axis=-1, keepdims=True)
        expected = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        out = np.empty_like(scores)
        fast_attention._softmax(scores.copy(), out, on_kernels=False)
    # exp(s - c) errs by about ulp(|s - c|) relative, larger for the slice's c than for the row's
    # (|s - c| up to ~20 here): the same order as the rounding already in float32 scores
    np.testing.assert_allclose(out, expected, rtol=5e-6 if dtype == np.float32 else 1e-13, atol=1e-30)


def test_fused_attention_takes_strided_views(monkeypatch):
    """Head views of a (B, L, 3E) projection, as multi-head attention makes them."""
    monkeypatch.setattr(fast_attention, "SLICE_ELEMENTS", 40)
    qkv = rng.standard_normal((2, 6, 3 * 8))

    def fn(x):
        q, k, v = (split_heads(t, 2) for t in x.chunk(3, dim=-1))
        return F.scaled_dot_product_attention(q, k, v, scale=0.2)

    assert_same_on_both_paths(fn, [qkv])


PACKED_CASES = {
    "no mask": dict(),
    "key padding, batch_first": dict(key_padding_mask="bool", batch_first=True),
    "causal, dropout": dict(is_causal=True, dropout=0.3),
    "float (N*H, L, S) mask and a fully padded sequence": dict(attn_mask="float3d", key_padding_mask="all of one"),
    "unbatched, no bias": dict(unbatched=True, bias=False),
}


def packed_case(spec, embed_dim=8, num_heads=2, batch=3, length=5):
    """(module, input array, forward keyword arguments) for one PACKED_CASES entry, float64."""
    spec = dict(spec)
    unbatched, batch_first = spec.pop("unbatched", False), spec.get("batch_first", False)
    module = tl.nn.MultiheadAttention(embed_dim, num_heads, dropout=spec.get("dropout", 0.0),
                                      bias=spec.get("bias", True), batch_first=batch_first).double()
    shape = (length, embed_dim) if unbatched else (batch, length, embed_dim) if batch_first else (length, batch, embed_dim)
    forward = {"need_weights": False}
    if spec.get("is_causal"):
        forward["is_causal"] = True
    padding = spec.get("key_padding_mask")
    if padding:
        hidden = rng.random((batch, length)) < 0.4
        hidden[:, 0] = False
        if padding == "all of one":
            hidden[1] = True
        forward["key_padding_mask"] = tl.tensor(hidden)
    if spec.get("attn_mask") == "float3d":
        forward["attn_mask"] = tl.tensor(rng.standard_normal((batch * num_heads, length, length)))
    return module, rng.standard_normal(shape), forward


@pytest.mark.parametrize("case", list(PACKED_CASES), ids=list(PACKED_CASES))
def test_packed_self_attention_equals_the_reference(case, threads, monkeypatch):
    """Self-attention on the fast path: one packed in-projection, the heads as strided views
    (PackedSelfAttention); outputs, input and parameter gradients equal to the reference's."""
    monkeypatch.setattr(fast_attention, "SLICE_ELEMENTS", 60)  # several slices of the batch
    module, x, forward = packed_case(PACKED_CASES[case])
    results = []
    for fast in (False, True):
        module.zero_grad()
        leaf = tl.tensor(x, dtype="float64", requires_grad=True)
        with tl.fastpath.use(fast):
            tl.manual_seed(0)
            out, weights = module(leaf, leaf, leaf, **forward)
            out.backward(np.random.default_rng(1).standard_normal(out.shape))
        assert weights is None
        grad_fns = graph_functions(out)
        assert ("PackedSelfAttention" in grad_fns) == fast
        results.append([out.numpy(), leaf.grad] + [p.grad.copy() for p in module.parameters()])
    for ref, got in zip(*results):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def graph_functions(out):
    """The names of the Functions in out's graph."""
    seen, stack, names = set(), [out], set()
    while stack:
        t = stack.pop()
        if id(t) in seen or t._ctx is None:
            continue
        seen.add(id(t))
        names.add(type(t._ctx).__name__)
        stack.extend(getattr(t._ctx, "parents", []))
    return names


def test_gradcheck_packed_self_attention():
    module, x, forward = packed_case(PACKED_CASES["key padding, batch_first"], batch=2, length=3)
    forward["attn_mask"] = tl.tensor(np.array([[False, True, False], [False, False, False], [True, False, False]]))
    with tl.fastpath.use(True):
        check_module_gradients(module, [x], lambda m, x: m(x, x, x, **forward)[0])


def test_packed_self_attention_only_where_it_applies():
    """Weights asked for, cross-attention and separate key/value widths take the general path."""
    x = tl.tensor(rng.standard_normal((4, 2, 8)))
    other = tl.tensor(rng.standard_normal((4, 2, 8)))
    with tl.fastpath.use(True):
        mha = tl.nn.MultiheadAttention(8, 2)
        assert "PackedSelfAttention" in graph_functions(mha(x, x, x, need_weights=False)[0].sum())
        assert "PackedSelfAttention" not in graph_functions(mha(x, x, x)[0].sum())
        assert "PackedSelfAttention" not in graph_functions(mha(x, other, other, need_weights=False)[0].sum())
        narrow = tl.nn.MultiheadAttention(8, 2, kdim=8, vdim=6)
        assert "PackedSelfAttention" not in graph_functions(
            narrow(x, x, tl.tensor(rng.standard_normal((4, 2, 6))), need_weights=False)[0].sum())


def test_fused_attention_is_one_graph_node():
    q, k, v = leaves(rng.standard_normal((3, 2)), rng.standard_normal((4, 2)), rng.standard_normal((4, 2)))
    with tl.fastpath.use(True):
        assert type(F.scaled_dot_product_attention(q, k, v).grad_fn).__name__ == "FusedAttention"
    with tl.fastpath.use(False):
        assert type(F.scaled_dot_product_attention(q, k, v).grad_fn).__name__ == "MatMul"


@pytest.mark.parametrize("shape", [(7,), (3, 5, 11), (4, 9)])
def test_fast_gelu_equals_the_reference_in_float64(shape, monkeypatch):
    monkeypatch.setattr(fast_gelu, "BLOCK", 16)
    x = rng.standard_normal(shape) * 3
    assert_same_on_both_paths(F.gelu, [x])
    assert_same_on_both_paths(lambda t: F.gelu(t.transpose(0, -1) if t.ndim > 1 else t), [x])
    x32 = tl.tensor(x.astype(np.float32), requires_grad=True)
    with tl.fastpath.use(True):
        with_graph = F.gelu(x32).numpy()
        with tl.no_grad():  # no slope is made without a graph; the value is the same
            np.testing.assert_array_equal(F.gelu(x32).numpy(), with_graph)


def test_gradcheck_fast_gelu():
    with tl.fastpath.use(True):
        assert tl.gradcheck(F.gelu, rng.standard_normal((3, 4)) * 2)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # an overflow far out is expected, and must not warn
def test_fast_gelu_in_float32_is_as_accurate_as_float32(monkeypatch):
    """The tanh fit of Phi against the exact normal CDF (float64 erf) on a dense grid, in
    slices of an odd size: an absolute error below 1e-7, where the reference's own float32
    computation errs by up to 6e-8; GELU itself and its gradient within about one float32
    rounding."""
    from minitl.ops.elementwise import erf

    monkeypatch.setattr(fast_gelu, "BLOCK", 4099)
    far = [5.5, 5.6, 9.0, 30.0, 1e3, 1e10, 1e20, 3e38]  # no clipping: tanh saturates (x P(x^2) may overflow to inf)
    x = np.concatenate([np.linspace(-12, 12, 240001), [0.0, 1e-30, -1e-30], far, np.negative(far)]).astype(np.float32)
    exact_cdf = 0.5 * (1 + erf(x.astype(np.float64) / np.sqrt(2)))
    assert np.abs(fast_gelu.normal_cdf(x) - exact_cdf).max() < 1e-7
    strided = x[:240000].reshape(400, 600).T
    np.testing.assert_array_equal(fast_gelu.normal_cdf(strided), fast_gelu.normal_cdf(strided.copy()))
    (leaf,) = [tl.tensor(x, requires_grad=True)]
    with tl.fastpath.use(True):
        out = F.gelu(leaf)
        out.backward(np.ones_like(x))
    x64 = x.astype(np.float64)
    exact_grad = exact_cdf + x64 * np.exp(-x64 ** 2 / 2) / np.sqrt(2 * np.pi)
    assert out.dtype == np.float32 and leaf.grad.dtype == np.float32
    # about one float32 rounding of GELU(x) (the reference's float32 result errs by up to 1e-7 on this scale)
    assert np.all(np.abs(out.numpy() - x64 * exact_cdf) <= 1.5e-7 * np.maximum(np.abs(x64), 1))
    assert np.abs(leaf.grad - exact_grad).max() < 2e-6


def test_fast_gelu_matches_pytorch_in_float32():
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((64, 33)) * 4).astype(np.float32)
    with tl.fastpath.use(True):
        ours = F.gelu(tl.tensor(x)).numpy()
    theirs = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    assert np.all(np.abs(ours - theirs) <= 3e-7 * np.maximum(np.abs(x), 1))  # each side about one rounding off


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 9), (1, 6)])
def test_fast_layer_norm_equals_the_reference_in_float64(shape, monkeypatch):
    monkeypatch.setattr(fast_layer_norm, "ROWS", 3)  # several slices, the last one short
    width = shape[-1]
    arrays = [rng.standard_normal(shape) * 2 + 1, rng.standard_normal(width), rng.standard_normal(width)]
    assert_same_on_both_paths(lambda x, w, b: F.layer_norm(x, width, w, b, eps=1e-3), arrays)
    if len(shape) > 2:  # a strided view of the input
        arrays[0] = rng.standard_normal((shape[1], shape[0], width))
        assert_same_on_both_paths(lambda x, w, b: F.layer_norm(x.transpose(0, 1), width, w, b), arrays)


def test_gradcheck_fast_layer_norm(monkeypatch):
    monkeypatch.setattr(fast_layer_norm, "ROWS", 2)
    with tl.fastpath.use(True):
        assert tl.gradcheck(lambda x, w, b: F.layer_norm(x, 4, w, b),
                            rng.standard_normal((5, 4)), rng.standard_normal(4), rng.standard_normal(4))


def test_fast_layer_norm_leaves_several_normalised_axes_to_the_reference():
    x = tl.randn(3, 4, 5, requires_grad=True)
    with tl.fastpath.use(True):
        assert type(F.layer_norm(x, 5).grad_fn).__module__ == "minitl.fastpath.layer_norm"
        assert type(F.layer_norm(x, (4, 5)).grad_fn).__module__ == "minitl.ops.nn_ops"


# ============================================================================ the softmax kernel

def _count_softmax_kernel_calls(monkeypatch):
    from minitl import kernels

    calls = []
    for name in ("softmax", "softmax_backward"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    return calls


def _attention_through_the_kernels(to_device, monkeypatch):
    """SDPA forward and backward in float32 on both paths: calls to the softmax kernels are
    counted, and the results compared with float64 NumPy."""
    calls = _count_softmax_kernel_calls(monkeypatch)
    q, k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 6, 4)), rng.standard_normal((2, 3, 6, 3))
    allowed = rng.random((5, 6)) < 0.6
    allowed[:, 0] = True
    g = rng.standard_normal((2, 3, 5, 3))
    scores = q @ k.swapaxes(-1, -2) / 2 + np.where(allowed, 0, -np.inf)
    weights = softmax64(scores)
    expected = weights @ v
    d_weights = g @ v.swapaxes(-1, -2)
    d_scores = weights * (d_weights - (d_weights * weights).sum(-1, keepdims=True))
    expected_dq = d_scores @ k / 2
    for fast in (False, True):
        calls.clear()
        inputs = [to_device(tl.tensor(a.astype(np.float32), requires_grad=True)) for a in (q, k, v)]
        with tl.fastpath.use(fast):
            out = F.scaled_dot_product_attention(*inputs, attn_mask=to_device(tl.tensor(allowed)))
            out.backward(to_device(tl.tensor(g.astype(np.float32))).data)
        assert calls == ["softmax", "softmax_backward"], f"fast={fast}: {calls}"
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(tl.tensor(inputs[0].grad).numpy(), expected_dq, rtol=1e-4, atol=1e-5)


def test_attention_softmax_runs_on_the_project_kernel_through_the_emulation(monkeypatch):
    """No GPU here: the CUDA kernels run on the CPU (kernels/emulation), and the backend is told
    that float32 NumPy arrays are GPU arrays, so the path a CuPy tensor takes is the one run."""
    from minitl import backend
    from minitl.kernels import emulation

    if not emulation.available():
        pytest.skip("the CUDA emulation needs g++")
    monkeypatch.setattr(backend, "gpu_kernels_apply", lambda *arrays: all(a.dtype == np.float32 for a in arrays))
    with emulation.emulate():
        _attention_through_the_kernels(lambda t: t, monkeypatch)


def test_attention_softmax_runs_on_the_project_kernel_on_a_gpu(monkeypatch):
    pytest.importorskip("cupy")
    if not tl.is_cuda_available():
        pytest.skip("no GPU on this machine")
    _attention_through_the_kernels(lambda t: t.to("cuda"), monkeypatch)


def test_encoder_layer_on_a_gpu_follows_the_cpu():
    pytest.importorskip("cupy")
    if not tl.is_cuda_available():
        pytest.skip("no GPU on this machine")
    layer = tl.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    gpu_layer = copy.deepcopy(layer).to("cuda")
    x = rng.standard_normal((3, 7, 16)).astype(np.float32)
    for fast in (False, True):
        with tl.fastpath.use(fast):
            cpu_out = layer(tl.tensor(x))
            gpu_out = gpu_layer(tl.tensor(x).to("cuda"))
            gpu_out.sum().backward()
        np.testing.assert_allclose(gpu_out.numpy(), cpu_out.numpy(), rtol=1e-4, atol=1e-4)
        assert gpu_layer.self_attn.in_proj_weight.grad is not None
