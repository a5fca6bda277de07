"""Every primitive and composite op: value against NumPy, first and second derivatives against central
finite differences (float64), on shapes that include broadcasting; batched cotangents against a loop."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minimaml as mm
from minimaml.autodiff import check_grads, getitem, vjp

rng = np.random.default_rng(0)


def away_from_zero(shape):
    """Values in ±[0.5, 2]: keeps relu/maximum/division away from kinks and poles."""
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def positive(shape):
    return rng.uniform(0.5, 2.0, shape)


def normal(shape):
    return rng.standard_normal(shape)


# (name, function of the listed inputs, NumPy reference, input makers)
UNARY = [
    ("negative", mm.negative, np.negative, normal),
    ("exp", mm.exp, np.exp, normal),
    ("log", mm.log, np.log, positive),
    ("sqrt", mm.sqrt, np.sqrt, positive),
    ("sin", mm.sin, np.sin, normal),
    ("cos", mm.cos, np.cos, normal),
    ("tanh", mm.tanh, np.tanh, normal),
    ("sigmoid", mm.sigmoid, lambda x: 1 / (1 + np.exp(-x)), normal),
    ("relu", mm.relu, lambda x: np.maximum(x, 0), away_from_zero),
    ("square", lambda x: x**2, lambda x: x**2, normal),
    ("cube", lambda x: x**3, lambda x: x**3, normal),
    ("power_half", lambda x: x**0.5, np.sqrt, positive),
    ("power_neg", lambda x: mm.power(x, -1.5), lambda x: x**-1.5, positive),
    ("power_zero", lambda x: x**0, lambda x: x**0, normal),
]


@pytest.mark.parametrize("name,f,ref,make", UNARY, ids=[u[0] for u in UNARY])
@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_unary(name, f, ref, make, shape):
    x = make(shape)
    np.testing.assert_allclose(f(x), ref(x), rtol=1e-12)
    check_grads(f, x, order=3 if name != "relu" else 2)


BROADCAST_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 1, 3), (4, 1))]
BINARY = [
    ("add", mm.add, np.add, normal, normal),
    ("subtract", mm.subtract, np.subtract, normal, normal),
    ("multiply", mm.multiply, np.multiply, normal, normal),
    ("divide", mm.divide, np.divide, normal, away_from_zero),
    ("maximum", mm.maximum, np.maximum, normal, normal),
]


@pytest.mark.parametrize("name,f,ref,make_x,make_y", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("sx,sy", BROADCAST_SHAPES)
def test_binary_broadcasting(name, f, ref, make_x, make_y, sx, sy):
    x, y = make_x(sx), make_y(sy)
    np.testing.assert_allclose(f(x, y), ref(x, y), rtol=1e-12)
    check_grads(lambda a: f(a, y), x)
    check_grads(lambda b: f(x, b), y)


def test_binary_operators_mix_arrays_scalars_and_tensors():
    x, W = normal((4, 3)), normal((3, 2))
    # Plain array on the left of every operator: NumPy must hand the expression to the Tensor.
    g = mm.grad(lambda W: mm.sum(x @ W + 2.0 * W.sum() + np.ones(2)) - mm.sum(1.0 / (3.0 + W**2) - W / 2.0))(W)
    num = mm.autodiff.numerical_grad(lambda W: np.sum(x @ W + 2.0 * W.sum() + np.ones(2))
                                     - np.sum(1.0 / (3.0 + W**2) - W / 2.0), W)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)
    assert type(g) is np.ndarray


def test_maximum_with_scalar_and_ties_split_gradient():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_allclose(mm.grad(lambda x: mm.sum(mm.maximum(x, 0.0)))(x), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(mm.grad(lambda x: mm.sum(mm.maximum(0.0, x)))(x), [0.0, 0.5, 1.0])


def test_relu_convention_at_zero_and_zero_second_derivative():
    x = np.array([-1.0, 0.0, 2.0])
    f = lambda x: mm.sum(mm.relu(x) * x)  # noqa: E731  (= Σ x² on x > 0)
    np.testing.assert_array_equal(mm.grad(mm.relu)(0.0), 0.0)
    np.testing.assert_allclose(mm.grad(f)(x), [0.0, 0.0, 4.0])
    np.testing.assert_allclose(mm.hessian(lambda x: mm.sum(mm.relu(x)))(x), np.zeros((3, 3)))


def test_where():
    x, y = normal((2, 3)), normal((3,))
    c = rng.random((2, 3)) > 0.5
    np.testing.assert_allclose(mm.where(c, x, y), np.where(c, x, y))
    check_grads(lambda a: mm.where(c, a * a, y), x)
    check_grads(lambda b: mm.where(c, x, mm.sin(b)), y)


MATMUL_SHAPES = [((3, 4), (4, 2)), ((2, 3, 4), (4, 5)), ((5, 3, 4), (5, 4, 2)), ((2, 1, 3, 4), (5, 4, 2)),
                 ((3, 4), (4,)), ((4,), (4, 2)), ((4,), (4,)), ((4,), (2, 4, 3))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul(sa, sb):
    a, b = normal(sa), normal(sb)
    np.testing.assert_allclose(mm.matmul(a, b), a @ b, rtol=1e-12)
    check_grads(lambda a: mm.tanh(a @ b), a)  # tanh makes the second derivative non-zero
    check_grads(lambda b: mm.tanh(a @ b), b)


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op,ref", [(mm.sum, np.sum), (mm.mean, np.mean)], ids=["sum", "mean"])
def test_reductions(op, ref, axis, keepdims):
    x = normal((2, 3, 4))
    np.testing.assert_allclose(op(x, axis=axis, keepdims=keepdims), ref(x, axis=axis, keepdims=keepdims))
    check_grads(lambda x: op(mm.sin(x), axis=axis, keepdims=keepdims), x)


def test_shape_ops():
    x = normal((2, 3, 4))
    cases = [
        (lambda x: mm.reshape(x, (4, -1)), lambda x: x.reshape(4, -1)),
        (lambda x: mm.transpose(x), lambda x: x.T),
        (lambda x: mm.transpose(x, (1, 0, 2)), lambda x: x.transpose(1, 0, 2)),
        (lambda x: mm.swapaxes(x, 0, -1), lambda x: x.swapaxes(0, -1)),
    ]
    for f, ref in cases:
        np.testing.assert_array_equal(f(x), ref(x))
        check_grads(lambda x: mm.sin(f(x)), x)


@pytest.mark.parametrize("index", [1, (slice(None), 1), (Ellipsis, slice(1, 3)), (0, slice(None, None, -1), 2),
                                   np.array([1, 0, 1]), (np.array([0, 1, 1]), np.array([2, 0, 2])),
                                   (slice(None), np.array([[0, 2], [1, 1]]))],
                         ids=["int", "slice", "ellipsis", "mixed", "int-array-repeats", "two-arrays", "2d-array"])
def test_indexing(index):
    x = normal((2, 3, 4))
    np.testing.assert_array_equal(getitem(x, index), x[index])
    check_grads(lambda x: mm.sin(getitem(x, index)), x)


def test_concatenate_and_stack():
    a, b, c = normal((2, 3)), normal((2, 1)), normal((2, 3))
    np.testing.assert_array_equal(mm.concatenate([a, b, c], axis=1), np.concatenate([a, b, c], axis=1))
    np.testing.assert_array_equal(mm.stack([a, c], axis=1), np.stack([a, c], axis=1))
    check_grads(lambda b: mm.sin(mm.concatenate([a, b * b, c], axis=-1)), b)
    check_grads(lambda c: mm.sin(mm.concatenate([a, c], axis=0)), c)
    check_grads(lambda a: mm.cos(mm.stack([a, c, a], axis=-1)), a)


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_logsumexp_softmax_log_softmax(axis):
    x = normal((3, 4))
    m = np.max(x, axis=axis, keepdims=True)
    lse = np.squeeze(m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)), axis=axis)
    np.testing.assert_allclose(mm.logsumexp(x, axis=axis), lse)
    check_grads(lambda x: mm.logsumexp(x, axis=axis), x, order=3)
    if axis is not None:
        np.testing.assert_allclose(mm.softmax(x, axis), np.exp(x - np.expand_dims(lse, axis)))
        check_grads(lambda x: mm.softmax(x, axis), x)
        check_grads(lambda x: mm.log_softmax(x, axis), x)


def test_numerical_care_for_large_inputs_and_log_zero():
    x = np.array([1000.0, 1000.0, -1000.0])
    np.testing.assert_allclose(mm.logsumexp(x), 1000.0 + np.log(2.0))
    np.testing.assert_allclose(mm.softmax(x), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(mm.grad(mm.logsumexp)(x), [0.5, 0.5, 0.0])
    assert np.all(np.isfinite(mm.log_softmax(x)[:2]))
    assert mm.logsumexp(np.array([-np.inf, -np.inf])) == -np.inf
    with np.errstate(all="raise"):  # log(0) is -inf, as NumPy gives, with no warning turned error
        assert mm.log(np.array(0.0)) == -np.inf
    np.testing.assert_allclose(mm.sigmoid(np.array([-800.0, 800.0])), [0.0, 1.0])


@settings(max_examples=25, deadline=None, derandomize=True)  # deterministic in CI
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       st.sampled_from(["add", "subtract", "multiply", "maximum"]))
def test_property_broadcasting_binary_ops(shapes, name):
    (sx, sy), _ = shapes
    f = getattr(mm, name)
    x, y = away_from_zero(sx), away_from_zero(sy) * 1.7  # 1.7: no ties for maximum
    check_grads(lambda a: mm.tanh(f(a, y)), x)
    check_grads(lambda b: mm.tanh(f(x, b)), y)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=3))
def test_property_matmul_shapes(shapes):
    """Every shape NumPy's matmul accepts, 1-D operands and broadcast stacks included."""
    (sa, sb), _ = shapes
    a, b = normal(sa), normal(sb)
    np.testing.assert_allclose(mm.matmul(a, b), a @ b, rtol=1e-12, atol=1e-12)
    check_grads(lambda a: mm.tanh(mm.matmul(a, b)), a)
    check_grads(lambda b: mm.tanh(mm.matmul(a, b)), b)


# ------------------------------------------------------------------ batched cotangents
BATCHABLE = [
    ("matmul", lambda x: mm.tanh(x.reshape(3, 4) @ np.arange(8.0).reshape(4, 2) / 10), (12,)),
    ("sum-keepdims", lambda x: mm.sum(x.reshape(3, 4) ** 2, axis=0, keepdims=True), (12,)),
    ("transpose", lambda x: mm.sin(x.reshape(2, 3, 2).transpose(2, 0, 1)), (12,)),
    ("getitem", lambda x: x[np.array([0, 3, 3, 5])] * x[2:4].sum(), (6,)),
    ("concatenate", lambda x: mm.concatenate([x[:2] ** 2, mm.exp(x)], axis=0), (5,)),
    ("broadcast", lambda x: x.reshape(2, 1, 3) * np.ones((4, 1)) + x[:3], (6,)),
    ("grad-inside", lambda x: mm.grad(lambda y: mm.sum(mm.tanh(y) ** 3))(x), (4,)),
]


@pytest.mark.parametrize("f,shape", [b[1:] for b in BATCHABLE], ids=[b[0] for b in BATCHABLE])
def test_batched_cotangents_equal_one_at_a_time(f, shape):
    """jacobian pulls back all rows at once; each row must equal a separate VJP."""
    x = normal(shape)
    out, pullback = vjp(f, x)
    U = normal((3,) + np.shape(out))
    batched = pullback(U)
    for i in range(3):
        np.testing.assert_allclose(batched[i], pullback(U[i]), rtol=1e-12, atol=1e-14)
    J = mm.jacobian(f)(x)
    J_rows = np.stack([pullback(e.reshape(np.shape(out))) for e in np.eye(np.size(out))])
    np.testing.assert_allclose(J.reshape(np.size(out), -1), J_rows.reshape(np.size(out), -1), atol=1e-13)


def test_power_derivative_at_zero_with_zero_exponents():
    """d/dx x^p = p x^(p-1) is 0 where p = 0, also at x = 0 (not 0 · 0⁻¹ = NaN), elementwise in an array p."""
    p = np.array([0.0, 2.0, 1.0, 0.0])
    x = np.array([0.0, 0.0, 0.0, 1.5])
    np.testing.assert_array_equal(mm.grad(lambda x: mm.sum(mm.power(x, p)))(x), [0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(mm.hessian(lambda x: mm.sum(mm.power(x, p)))(x), np.diag([0.0, 2.0, 0.0, 0.0]))
    assert mm.grad(mm.grad(lambda x: x**1))(0.0) == 0.0


def test_constant_arguments_refuse_a_tensor_when_called():
    """An argument without a derivative rule (power's exponent, where's condition) must be a constant; a
    Tensor there is refused at the call, before any reverse pass."""
    def f(x):
        with pytest.raises(TypeError, match=r"power: exponent must be a constant .*not a Tensor"):
            mm.power(x, x)
        with pytest.raises(TypeError, match=r"power: exponent must be a constant"):
            np.ones(3) ** x
        with pytest.raises(TypeError, match=r"where: condition must be a constant"):
            mm.where(x, x, 0.0)
        return mm.sum(x)
    mm.grad(f)(np.ones(3))
