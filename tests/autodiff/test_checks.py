"""check_grads and numerical_grad: they catch a wrong derivative, and refuse arguments that would make the
finite difference meaningless instead of passing or failing on NaN."""
import numpy as np
import pytest

import minimaml as mm
from minimaml.autodiff import check_grads, defvjp, numerical_grad, primitive


def test_check_grads_catches_a_wrong_rule():
    @primitive
    def wrong_sin(x):
        return np.sin(x)
    defvjp(wrong_sin, lambda g, ans, x: g * mm.sin(x))  # should be cos
    with pytest.raises(AssertionError, match="derivative check failed"):
        check_grads(wrong_sin, np.array([0.3, 1.2]))


@pytest.mark.parametrize("kwargs,match", [
    ({"eps": 0.0}, r"eps must be a finite number > 0, got eps=0.0"),
    ({"eps": float("nan")}, r"eps must be a finite number > 0"),
    ({"order": 0}, r"order must be an int >= 1, got order=0"),
    ({"order": 1.5}, r"order must be an int >= 1"),
])
def test_check_grads_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_grads(mm.sin, np.ones(2), **kwargs)


def test_numerical_grad_bad_arguments():
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got eps=-1e-06"):
        numerical_grad(np.sum, np.ones(2), eps=-1e-6)
    with pytest.raises(ValueError, match=r"numerical_grad: f must return a scalar, got shape \(2,\)"):
        numerical_grad(np.sin, np.ones(2))
