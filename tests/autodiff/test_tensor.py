"""Tensor as a NumPy-like value: comparisons, truth value, float(), and NumPy's own functions called on
a Tensor (the engine op for operators, a clear error naming the minimaml op otherwise)."""
import numpy as np
import pytest

import minimaml as mm
from minimaml.autodiff import Tensor

x012 = np.array([0.0, 1.0, 2.0])


def test_equality_compares_values_so_where_selects_the_same_as_on_arrays():
    f = lambda x: mm.sum(mm.where(x == 1.0, 10 * x, x))  # noqa: E731
    val, g = mm.value_and_grad(f)(x012)
    assert val == f(x012) == 12.0
    np.testing.assert_array_equal(g, [1.0, 10.0, 1.0])
    g = mm.grad(lambda x: mm.sum(mm.where(x != 1.0, x, 0.0 * x)))(x012)
    np.testing.assert_array_equal(g, [1.0, 0.0, 1.0])
    with pytest.raises(TypeError, match="unhashable"):
        hash(Tensor(x012, 1))  # like ndarray: == is elementwise, so there is no consistent hash


def test_truth_value_like_ndarray():
    assert mm.grad(lambda x: x * 2.0 if x else x * 3.0)(1.0) == 2.0
    assert mm.grad(lambda x: x * 2.0 if x else x * 3.0)(0.0) == 3.0
    with pytest.raises(ValueError, match=r"truth value of a Tensor of shape \(3,\) is ambiguous.*mm.where"):
        mm.grad(lambda x: mm.sum(x) if x else 0.0)(x012)


def test_float_and_int_read_the_value_as_a_constant():
    # float(x) is a plain number: it carries no gradient, so d/dx [float(x) · x] = float(x).
    assert mm.grad(lambda x: float(x) * x)(3.0) == 3.0
    assert mm.grad(lambda x: int(x) * x)(2.5) == 2.0
    with pytest.raises(TypeError):  # as float(ndarray) of size 3
        mm.grad(lambda x: float(x) * mm.sum(x))(x012)


def test_numpy_operators_with_a_tensor_on_the_right_give_tensors():
    def f(x):
        for y in (np.float64(2.0) * x, np.ones(3) * x, np.ones(3) + x, np.ones(3) - x, np.ones(3) / (x + 1),
                  np.eye(3) @ x, np.float32(1.5) + x):
            assert isinstance(y, Tensor)
        assert type(np.ones(3) < x) is np.ndarray and type(np.isfinite(x)) is np.ndarray  # constants
        return mm.sum(np.float64(2.0) * x) + np.ones(3) @ x
    np.testing.assert_array_equal(mm.grad(f)(x012), [3.0, 3.0, 3.0])


@pytest.mark.parametrize("call,use", [
    (lambda x: np.sin(x), "mm.sin"),
    (lambda x: np.sum(x), "mm.sum"),
    (lambda x: np.mean(x, axis=0), "mm.mean"),
    (lambda x: np.reshape(x, (3, 1)), "mm.reshape"),
    (lambda x: np.maximum(x, 0.0), "mm.maximum"),
    (lambda x: np.add.reduce(x), "mm.add"),
    (lambda x: np.floor(x), "no differentiable"),
    (lambda x: np.asarray(x), "raw"),
])
def test_numpy_functions_on_a_tensor_name_the_minimaml_op(call, use):
    with pytest.raises(TypeError, match=f"on a Tensor.*{use}"):
        mm.grad(lambda x: mm.sum(call(x)))(x012)
    assert np.shape(Tensor(x012, 1)) == (3,) and np.ndim(Tensor(x012, 1)) == 1  # shape queries are fine
