"""Every differentiable op against float64 central differences (minitl.gradcheck, bound 1e-6).

Inputs avoid the kinks of relu/abs/max/clamp (no element within 0.1 of a kink), where the
numerical derivative is not defined.

Two kinds of check: `tl.gradcheck` runs an expression through the engine (Tensor.backward,
so also autograd.topological_sort), and `gradcheck_op` checks one backward rule alone, called
on the ctx its forward filled. The second kind lets a student do lesson 1's backward rules
before, and apart from, the engine.
"""
import numpy as np
import pytest

import minitl as tl
import minitl.nn.functional as F
from minitl.gradcheck import gradcheck_op
from minitl.ops.elementwise import Add, Exp, Log, Mul
from minitl.ops.linalg import Linear, MatMul
from minitl.ops.nn_ops import CrossEntropy, LayerNorm, Softmax
from minitl.ops.reduce import Sum
from minitl.ops.shape import GetItem

rng = np.random.default_rng(1234)


def away_from_zero(*shape):
    x = rng.uniform(0.2, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return x


def positive(*shape):
    return rng.uniform(0.5, 2.0, size=shape)


def normal(*shape):
    return rng.standard_normal(shape)


def check(fn, *inputs):
    assert tl.gradcheck(fn, *inputs)


# (name, fn, inputs, exercise ids)
CASES = [
    ("add broadcast", lambda a, b: a + b, [normal(3, 4), normal(4)], ["autograd.add_backward"]),
    ("add broadcast both", lambda a, b: a + b, [normal(2, 1, 4), normal(3, 1)], ["autograd.add_backward"]),
    ("add scalar", lambda a: a + 2.5, [normal(3)], ["autograd.add_backward"]),
    ("sub broadcast", lambda a, b: a - b, [normal(2, 3), normal(2, 1)], ["autograd.unbroadcast"]),
    ("rsub", lambda a: 1.0 - a, [normal(3)], []),
    ("mul broadcast", lambda a, b: a * b, [normal(2, 3, 4), normal(3, 1)], ["autograd.mul_backward"]),
    ("mul same", lambda a: a * a, [normal(5)], ["autograd.mul_backward"]),
    ("div", lambda a, b: a / b, [normal(3, 4), positive(4)], ["autograd.unbroadcast"]),
    ("div broadcast both", lambda a, b: a / b, [normal(2, 1, 3), positive(4, 1)], ["autograd.unbroadcast"]),
    ("rdiv", lambda a: 2.0 / a, [positive(3)], []),
    ("neg", lambda a: -a, [normal(3)], []),
    ("pow const", lambda a: a ** 3, [normal(3, 2)], []),
    ("pow fractional", lambda a: a ** 0.5, [positive(4)], []),
    ("pow tensor exponent", lambda a, b: a ** b, [positive(3), normal(3)], []),
    ("exp", lambda a: a.exp(), [normal(3, 3)], ["autograd.exp_backward"]),
    ("log", lambda a: a.log(), [positive(3, 3)], ["autograd.log_backward"]),
    ("sqrt", lambda a: a.sqrt(), [positive(4)], []),
    ("abs", lambda a: a.abs(), [away_from_zero(5)], []),
    ("tanh", lambda a: a.tanh(), [normal(4, 2)], []),
    ("sigmoid", lambda a: a.sigmoid(), [normal(4, 2) * 4], []),
    ("relu", lambda a: a.relu(), [away_from_zero(4, 3)], []),
    ("gelu exact", lambda a: F.gelu(a), [normal(6)], []),
    ("gelu tanh", lambda a: F.gelu(a, approximate="tanh"), [normal(6)], []),
    ("clamp", lambda a: a.clamp(-0.5, 0.5), [np.array([-1.0, -0.3, 0.1, 0.4, 0.9])], []),
    ("maximum broadcast", lambda a, b: tl.maximum(a, b), [normal(3, 4), normal(4)], []),
    ("minimum broadcast", lambda a, b: tl.minimum(a, b), [normal(2, 1, 3), normal(4, 1)], []),
    ("maximum with a number", lambda a: a.maximum(0.25), [away_from_zero(5) + 0.25], []),
    ("softplus", lambda a: F.softplus(a), [normal(4, 3) * 5], []),
    ("softplus beta threshold", lambda a: F.softplus(a, beta=2.0, threshold=1.0),
     [np.array([-2.0, -0.3, 0.2, 1.5, 3.0])], []),
    ("logsigmoid", lambda a: F.logsigmoid(a), [normal(4, 3) * 5], []),
    ("silu", lambda a: F.silu(a), [normal(4, 3) * 3], []),
    ("clone", lambda a: a.clone() * a, [normal(3, 2)], []),
    ("split sizes", lambda a: tl.cat([p * (i + 1.0) for i, p in enumerate(a.split([1, 3], dim=1))], 1),
     [normal(2, 4)], []),
    ("split int", lambda a: tl.cat([p * (i + 1.0) for i, p in enumerate(a.split(2))], 0), [normal(5, 2)], []),
    ("chunk", lambda a: a.chunk(3, dim=-1)[2] * 2, [normal(2, 7)], []),
    ("tril", lambda a: a.tril(-1), [normal(2, 3, 4)], []),
    ("triu", lambda a: tl.triu(a, 1), [normal(4, 3)], []),
    ("normalize", lambda a: F.normalize(a), [normal(3, 4)], []),
    ("normalize p1 dim0", lambda a: F.normalize(a, p=1, dim=0), [away_from_zero(3, 4)], []),
    ("normalize p3 last", lambda a: F.normalize(a, p=3, dim=-1), [normal(2, 3, 4)], []),
    ("matmul 2d", lambda a, b: a @ b, [normal(3, 4), normal(4, 5)], ["autograd.matmul_backward"]),
    ("matmul batched", lambda a, b: a @ b, [normal(2, 3, 4), normal(2, 4, 5)], ["autograd.matmul_backward"]),
    ("matmul broadcast batch", lambda a, b: a @ b, [normal(2, 1, 3, 4), normal(3, 4, 2)], ["autograd.matmul_backward"]),
    ("matmul shared weight", lambda a, b: a @ b, [normal(2, 3, 4), normal(4, 5)], ["autograd.matmul_backward"]),
    ("matmul vec-mat", lambda a, b: a @ b, [normal(4), normal(4, 3)], ["autograd.matmul_backward"]),
    ("matmul mat-vec", lambda a, b: a @ b, [normal(3, 4), normal(4)], ["autograd.matmul_backward"]),
    ("matmul vec-vec", lambda a, b: a @ b, [normal(4), normal(4)], ["autograd.matmul_backward"]),
    ("sum all", lambda a: a.sum(), [normal(3, 4)], ["autograd.sum_backward"]),
    ("sum axis", lambda a: a.sum(1), [normal(3, 4, 2)], ["autograd.sum_backward"]),
    ("sum axes keepdim", lambda a: a.sum((0, 2), keepdim=True), [normal(3, 4, 2)], ["autograd.sum_backward"]),
    ("sum negative axis", lambda a: a.sum(-1), [normal(3, 4)], ["autograd.sum_backward"]),
    ("mean", lambda a: a.mean(0), [normal(3, 4)], []),
    ("mean all", lambda a: a.mean(), [normal(3, 4)], []),
    ("max axis", lambda a: a.max(1), [np.arange(12.0).reshape(3, 4) * rng.permutation(12).reshape(3, 4)], []),
    ("max all", lambda a: a.max(), [rng.permutation(10).astype(float)], []),
    ("min axis keepdim", lambda a: a.min(0, keepdim=True), [rng.permutation(12).reshape(3, 4).astype(float)], []),
    ("var", lambda a: a.var(1), [normal(3, 5)], []),
    ("var biased", lambda a: a.var(unbiased=False), [normal(3, 5)], []),
    ("std", lambda a: a.std(0), [normal(4, 3)], []),
    ("logsumexp", lambda a: tl.logsumexp(a, 1), [normal(3, 5)], []),
    ("reshape", lambda a: a.reshape(6, 2) * tl.arange(12, dtype="float64").reshape(6, 2), [normal(3, 4)], []),
    ("permute", lambda a: a.permute(2, 0, 1), [normal(2, 3, 4)], []),
    ("transpose", lambda a: a.transpose(0, 1), [normal(2, 3)], []),
    ("T", lambda a: a.T, [normal(2, 3)], []),
    ("expand", lambda a: a.expand(3, 4), [normal(1, 4)], []),
    ("expand new axis", lambda a: a.expand(2, 3, 4), [normal(3, 1)], []),
    ("squeeze unsqueeze", lambda a: a.squeeze(1).unsqueeze(0), [normal(3, 1, 2)], []),
    ("flatten", lambda a: a.flatten(1), [normal(2, 3, 4)], []),
    ("index slice", lambda a: a[1:, ::2], [normal(3, 4)], ["autograd.getitem_backward"]),
    ("index int", lambda a: a[1], [normal(3, 4)], ["autograd.getitem_backward"]),
    ("index repeated ints", lambda a: a[np.array([0, 2, 0, 0])], [normal(3, 2)], ["autograd.getitem_backward"]),
    ("index pairs", lambda a: a[np.array([0, 1, 1]), np.array([2, 0, 2])], [normal(2, 3)], ["autograd.getitem_backward"]),
    ("index bool mask", lambda a: a[np.array([True, False, True])], [normal(3, 2)], ["autograd.getitem_backward"]),
    ("index mixed", lambda a: a[:, np.array([1, 1, 0])], [normal(2, 3)], ["autograd.getitem_backward"]),
    ("cat", lambda a, b: tl.cat([a, b], dim=1), [normal(2, 3), normal(2, 2)], []),
    ("stack", lambda a, b: tl.stack([a, b], dim=1), [normal(2, 3), normal(2, 3)], []),
    ("pad numpy style", lambda a: tl.pad(a, ((1, 0), (2, 1))), [normal(2, 3)], []),
    ("pad torch style", lambda a: F.pad(a, (1, 2)), [normal(2, 3)], []),
    ("where", lambda a, b: tl.where(np.array([True, False, True]), a, b), [normal(2, 3), normal(3)], []),
    ("masked_fill", lambda a: a.masked_fill(np.array([[True, False], [False, False]]), -1.0), [normal(2, 2)], []),
    ("softmax", lambda a: a.softmax(-1), [normal(3, 5)], ["autograd.softmax_backward"]),
    ("softmax axis 0", lambda a: F.softmax(a, dim=0), [normal(3, 5)], ["autograd.softmax_backward"]),
    ("log_softmax", lambda a: a.log_softmax(1), [normal(3, 5)], []),
    ("linear", lambda x, w, b: F.linear(x, w, b), [normal(4, 3), normal(5, 3), normal(5)], ["nn.linear_backward"]),
    ("linear batched no bias", lambda x, w: F.linear(x, w), [normal(2, 4, 3), normal(5, 3)], ["nn.linear_backward"]),
    ("embedding repeated ids", lambda w: F.embedding(np.array([[0, 2], [2, 2]]), w), [normal(4, 3)], []),
    ("layer_norm", lambda x, w, b: F.layer_norm(x, 4, w, b), [normal(3, 4), normal(4), normal(4)], ["nn.layer_norm_backward"]),
    ("layer_norm 2 axes", lambda x, w, b: F.layer_norm(x, (2, 3), w, b), [normal(2, 2, 3), normal(2, 3), normal(2, 3)], ["nn.layer_norm_backward"]),
    ("mse", lambda a, b: F.mse_loss(a, b), [normal(3, 2), normal(3, 2)], []),
    ("bce with logits", lambda a: F.binary_cross_entropy_with_logits(a, np.array([0.0, 1.0, 1.0])), [normal(3)], []),
    ("nll", lambda a: F.nll_loss(a.log_softmax(-1), np.array([1, 0, 2])), [normal(3, 4)], []),
]


def cases_of(exercise=None):
    """The cases whose op is (part of) `exercise`; None: the cases of no exercise."""
    return [pytest.param(fn, inputs, id=name) for name, fn, inputs, exercises in CASES
            if (exercise in exercises) or (exercise is None and not exercises)]


def run_case(fn, inputs):
    check(fn, *[tl.tensor(x, dtype="float64") for x in inputs])


@pytest.mark.parametrize("fn,inputs", cases_of(None))
def test_gradcheck(fn, inputs):
    run_case(fn, inputs)


# One test per exercise, so `minitl exercises check ID` runs exactly the checks of that op.

@pytest.mark.exercise("autograd.add_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.add_backward"))
def test_gradcheck_add(fn, inputs):
    run_case(fn, inputs)


# Sub and Div: binary ops whose backward is no exercise, so these check unbroadcast alone.
@pytest.mark.exercise("autograd.unbroadcast")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.unbroadcast"))
def test_gradcheck_broadcasting(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("autograd.mul_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.mul_backward"))
def test_gradcheck_mul(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("autograd.exp_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.exp_backward"))
def test_gradcheck_exp(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("autograd.log_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.log_backward"))
def test_gradcheck_log(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("autograd.matmul_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.matmul_backward"))
def test_gradcheck_matmul(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("autograd.sum_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.sum_backward"))
def test_gradcheck_sum(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("autograd.getitem_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.getitem_backward"))
def test_gradcheck_indexing(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("autograd.softmax_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("autograd.softmax_backward"))
def test_gradcheck_softmax(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("nn.linear_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("nn.linear_backward"))
def test_gradcheck_linear(fn, inputs):
    run_case(fn, inputs)


@pytest.mark.exercise("nn.layer_norm_backward")
@pytest.mark.parametrize("fn,inputs", cases_of("nn.layer_norm_backward"))
def test_gradcheck_layer_norm(fn, inputs):
    run_case(fn, inputs)


CE_CASES = [
    ("plain", dict()),
    ("sum", dict(reduction="sum")),
    ("none", dict(reduction="none")),
    ("ignore_index", dict(ignore_index=1)),
    ("label smoothing", dict(label_smoothing=0.1)),
    ("smoothing + ignore", dict(label_smoothing=0.2, ignore_index=0)),
]


@pytest.mark.exercise("autograd.cross_entropy_backward")
@pytest.mark.parametrize("kwargs", [c[1] for c in CE_CASES], ids=[c[0] for c in CE_CASES])
def test_gradcheck_cross_entropy(kwargs):
    logits = tl.tensor(normal(6, 4), dtype="float64")
    target = np.array([0, 1, 3, 1, 2, 0])
    check(lambda z: F.cross_entropy(z, target, **kwargs), logits)


@pytest.mark.exercise("autograd.cross_entropy_backward")
def test_gradcheck_cross_entropy_sequence_layout():
    """(N, C, T) logits with (N, T) targets, PyTorch's layout for sequences."""
    logits = tl.tensor(normal(2, 4, 3), dtype="float64")
    target = np.array([[0, 3, 1], [2, 2, 0]])
    check(lambda z: F.cross_entropy(z, target), logits)


# Each backward rule alone: Op.backward(ctx, grad) against central differences of Op.forward,
# with no graph and no Tensor.backward in between. A rule's test needs no other exercise but
# what the rule itself calls (unbroadcast, for the binary ops; its own forward).

TARGET = np.array([0, 1, 3, 1, 2, 0])

ALONE = [  # (name, Function, forward's positional inputs, forward's keyword arguments, exercise)
    ("add", Add, [normal(3, 4), normal(3, 4)], {}, "autograd.add_backward"),
    ("add broadcast", Add, [normal(3, 4), normal(4)], {}, "autograd.add_backward"),
    ("add broadcast both", Add, [normal(2, 1, 4), normal(3, 1)], {}, "autograd.add_backward"),
    ("mul", Mul, [normal(3, 4), normal(3, 4)], {}, "autograd.mul_backward"),
    ("mul broadcast", Mul, [normal(2, 3, 4), normal(3, 1)], {}, "autograd.mul_backward"),
    ("mul scalar", Mul, [normal(2, 3), normal()], {}, "autograd.mul_backward"),
    ("sum all", Sum, [normal(3, 4)], {}, "autograd.sum_backward"),
    ("sum axis", Sum, [normal(3, 4, 2)], dict(axis=1), "autograd.sum_backward"),
    ("sum axes keepdims", Sum, [normal(3, 4, 2)], dict(axis=(0, 2), keepdims=True), "autograd.sum_backward"),
    ("sum negative axis", Sum, [normal(3, 4)], dict(axis=-1), "autograd.sum_backward"),
    ("matmul 2d", MatMul, [normal(3, 4), normal(4, 5)], {}, "autograd.matmul_backward"),
    ("matmul broadcast batch", MatMul, [normal(2, 1, 3, 4), normal(3, 4, 2)], {}, "autograd.matmul_backward"),
    ("matmul shared weight", MatMul, [normal(2, 3, 4), normal(4, 5)], {}, "autograd.matmul_backward"),
    ("matmul vec-mat", MatMul, [normal(4), normal(4, 3)], {}, "autograd.matmul_backward"),
    ("matmul mat-vec", MatMul, [normal(3, 4), normal(4)], {}, "autograd.matmul_backward"),
    ("matmul vec-vec", MatMul, [normal(4), normal(4)], {}, "autograd.matmul_backward"),
    ("exp", Exp, [normal(3, 3)], {}, "autograd.exp_backward"),
    ("log", Log, [positive(3, 3)], {}, "autograd.log_backward"),
    ("index slice", GetItem, [normal(3, 4), (slice(1, None), slice(None, None, 2))], {}, "autograd.getitem_backward"),
    ("index int", GetItem, [normal(3, 4), 1], {}, "autograd.getitem_backward"),
    ("index repeated ints", GetItem, [normal(3, 2), np.array([0, 2, 0, 0])], {}, "autograd.getitem_backward"),
    ("index pairs", GetItem, [normal(2, 3), (np.array([0, 1, 1]), np.array([2, 0, 2]))], {}, "autograd.getitem_backward"),
    ("index bool mask", GetItem, [normal(3, 2), np.array([True, False, True])], {}, "autograd.getitem_backward"),
    ("softmax", Softmax, [normal(3, 5)], {}, "autograd.softmax_backward"),
    ("softmax axis 0", Softmax, [normal(3, 5)], dict(axis=0), "autograd.softmax_backward"),
    ("linear", Linear, [normal(4, 3), normal(5, 3), normal(5)], {}, "nn.linear_backward"),
    ("linear batched no bias", Linear, [normal(2, 4, 3), normal(5, 3)], {}, "nn.linear_backward"),
    *[(f"cross_entropy {name}", CrossEntropy, [normal(6, 4), TARGET], kwargs, "autograd.cross_entropy_backward")
      for name, kwargs in CE_CASES],
    ("layer_norm", LayerNorm, [normal(3, 4), normal(4), normal(4)], {}, "nn.layer_norm_backward"),
    ("layer_norm 2 axes", LayerNorm, [normal(2, 2, 3), normal(2, 3), normal(2, 3)], dict(ndim=2),
     "nn.layer_norm_backward"),
]


def alone_cases(exercise):
    return [pytest.param(op, inputs, kwargs, id=name)
            for name, op, inputs, kwargs, ex_id in ALONE if ex_id == exercise]


@pytest.mark.exercise("autograd.add_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.add_backward"))
def test_add_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("autograd.mul_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.mul_backward"))
def test_mul_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("autograd.sum_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.sum_backward"))
def test_sum_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("autograd.matmul_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.matmul_backward"))
def test_matmul_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("autograd.exp_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.exp_backward"))
def test_exp_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("autograd.log_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.log_backward"))
def test_log_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("autograd.getitem_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.getitem_backward"))
def test_getitem_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("autograd.softmax_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.softmax_backward"))
def test_softmax_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("nn.linear_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("nn.linear_backward"))
def test_linear_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("autograd.cross_entropy_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("autograd.cross_entropy_backward"))
def test_cross_entropy_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


@pytest.mark.exercise("nn.layer_norm_backward")
@pytest.mark.parametrize("op,inputs,kwargs", alone_cases("nn.layer_norm_backward"))
def test_layer_norm_backward_alone(op, inputs, kwargs):
    assert gradcheck_op(op, *inputs, kwargs=kwargs)


def test_every_backward_exercise_of_lessons_1_and_2_has_a_check_alone():
    engine_level = {ex_id for *_, exercises in CASES for ex_id in exercises} - {"autograd.unbroadcast"}
    assert engine_level <= {ex_id for *_, ex_id in ALONE}


def test_gradcheck_dropout_with_fixed_mask():
    # the mask is random: re-seed before every evaluation so each sees the same mask
    x = tl.tensor(normal(4, 5), dtype="float64")

    def fn(a):
        tl.manual_seed(7)
        return F.dropout(a, 0.3, training=True)

    check(fn, x)


def test_gradcheck_dtype_cast():
    """float64 -> float32 -> float64: float32 rounding limits the numerical derivative, so a
    wider step and bound; a cast that dropped or scaled the gradient would be off by O(1)."""
    x = tl.tensor(normal(3, 2), dtype="float64")
    assert tl.gradcheck(lambda a: a.float().double() * a, x, eps=1e-2, bound=1e-4)


def test_gradcheck_catches_a_wrong_backward():
    """The checker itself must fail on a wrong gradient."""
    class BadSquare(tl.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return grad * a  # should be 2a

    x = tl.tensor(normal(3), dtype="float64")
    with pytest.raises(tl.GradcheckError, match="relative error"):
        tl.gradcheck(lambda a: BadSquare.apply(a), x)
    assert tl.gradcheck(lambda a: BadSquare.apply(a), x, raise_exception=False) is False


def test_gradcheck_op_catches_a_wrong_backward_and_a_wrong_shape():
    class BadSquare(tl.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return grad * a  # should be 2a

    class SquareSummedGradient(tl.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a * a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return (2 * grad * a).sum(0)  # the right numbers, summed to the wrong shape

    with pytest.raises(tl.GradcheckError, match=r"(?s)gradcheck_op\(BadSquare\) failed.*relative error"):
        gradcheck_op(BadSquare, normal(3))
    assert gradcheck_op(BadSquare, normal(3), raise_exception=False) is False
    with pytest.raises(tl.GradcheckError, match=r"shape \(2,\) for an input of shape \(3, 2\)"):
        gradcheck_op(SquareSummedGradient, normal(3, 2))
    with pytest.raises(ValueError, match="no floating-point array"):
        gradcheck_op(GetItem, np.arange(3), 1)


def test_gradcheck_of_softmax_sum_is_not_vacuous():
    """sum(softmax(x)) is constant; the random projection still exposes a wrong backward."""
    class WrongSoftmax(tl.Function):
        @staticmethod
        def forward(ctx, a):
            e = np.exp(a - a.max(-1, keepdims=True))
            out = e / e.sum(-1, keepdims=True)
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, grad):
            (out,) = ctx.saved_tensors
            return grad * out  # misses the -y y^T term

    x = tl.tensor(normal(2, 4), dtype="float64")
    assert not tl.gradcheck(lambda a: WrongSoftmax.apply(a), x, raise_exception=False)
