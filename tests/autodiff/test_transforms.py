"""grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp: closed forms, composition to third order, the exact
Hessian of a small MLP against finite differences, and the bad-input errors."""
import numpy as np
import pytest

import minimaml as mm
from minimaml.autodiff import numerical_grad

rng = np.random.default_rng(1)


# ------------------------------------------------------------------ closed forms, to third order
CLOSED_FORMS = [  # f, f', f'', f'''
    (mm.sin, np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x)),
    (mm.exp, np.exp, np.exp, np.exp),
    (lambda x: x**5, lambda x: 5 * x**4, lambda x: 20 * x**3, lambda x: 60 * x**2),
    (mm.tanh, lambda x: 1 - np.tanh(x) ** 2, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2),
     lambda x: (1 - np.tanh(x) ** 2) * (6 * np.tanh(x) ** 2 - 2)),
    (lambda x: mm.log(x) * x, lambda x: np.log(x) + 1, lambda x: 1 / x, lambda x: -1 / x**2),
    (mm.sigmoid, lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2,
     lambda x: np.exp(-x) * (np.exp(-x) - 1) / (1 + np.exp(-x)) ** 3,
     lambda x: np.exp(-x) * (np.exp(-2 * x) - 4 * np.exp(-x) + 1) / (1 + np.exp(-x)) ** 4),
]


@pytest.mark.parametrize("f,d1,d2,d3", CLOSED_FORMS)
@pytest.mark.parametrize("x", [0.3, 1.7])
def test_grad_of_grad_of_grad_matches_closed_form(f, d1, d2, d3, x):
    np.testing.assert_allclose(mm.grad(f)(x), d1(x), rtol=1e-12)
    np.testing.assert_allclose(mm.grad(mm.grad(f))(x), d2(x), rtol=1e-12)
    np.testing.assert_allclose(mm.grad(mm.grad(mm.grad(f)))(x), d3(x), rtol=1e-11)


def test_fourth_derivative_and_plain_outputs():
    d4 = mm.grad(mm.grad(mm.grad(mm.grad(mm.cos))))(0.4)
    np.testing.assert_allclose(d4, np.cos(0.4), rtol=1e-12)
    assert not isinstance(d4, mm.Tensor)  # plain in, plain out
    assert type(mm.hessian(lambda x: mm.sum(mm.sin(x)))(np.ones(2))) is np.ndarray


def test_no_perturbation_confusion():
    """d/dx [x · (d/dy x·y)] = d/dx x² = 2x: the inner derivative must treat the outer x as a variable."""
    g = mm.grad(lambda x: x * mm.grad(lambda y: x * y)(3.0))(2.5)
    np.testing.assert_allclose(g, 5.0)


def test_grad_argnums_and_value_and_grad():
    f = lambda x, y: mm.sum(x**2 * y)  # noqa: E731
    x, y = normal(3), normal(3)
    np.testing.assert_allclose(mm.grad(f, argnums=1)(x, y), x**2)
    gx, gy = mm.grad(f, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(gx, 2 * x * y)
    np.testing.assert_allclose(gy, x**2)
    val, g = mm.value_and_grad(f)(x, y)
    np.testing.assert_allclose(val, np.sum(x**2 * y))
    np.testing.assert_allclose(g, 2 * x * y)
    np.testing.assert_array_equal(mm.grad(lambda x: 3.0)(x), np.zeros(3))  # constant: a zero gradient


def normal(*shape):
    return rng.standard_normal(shape)


def vector_field(x):
    A = np.arange(12.0).reshape(4, 3) / 10
    return mm.tanh(A @ x) * mm.sum(x**2)


def test_jacobian_against_finite_differences_and_jvp():
    x, v = normal(3), normal(3)
    J = mm.jacobian(vector_field)(x)
    assert J.shape == (4, 3)
    J_num = np.stack([numerical_grad(lambda x: vector_field(x)[i], x) for i in range(4)])
    np.testing.assert_allclose(J, J_num, rtol=1e-7, atol=1e-9)
    out, Jv = mm.jvp(vector_field, (x,), (v,))
    np.testing.assert_allclose(out, vector_field(x))
    np.testing.assert_allclose(Jv, J @ v, rtol=1e-12)
    out, pullback = mm.vjp(vector_field, x)
    u = normal(4)
    np.testing.assert_allclose(pullback(u), u @ J, rtol=1e-12)


def test_jacobian_of_matrix_function_has_out_shape_plus_in_shape():
    X = normal(2, 3)
    J = mm.jacobian(lambda X: mm.exp(X.T))(X)
    assert J.shape == (3, 2, 2, 3)
    np.testing.assert_allclose(J[1, 0, 0, 1], np.exp(X[0, 1]))
    assert J[1, 0, 1, 0] == 0


# ------------------------------------------------------------------ the exact Hessian of a tiny MLP loss
def tiny_mlp_loss(sizes, x, y, activation):
    def net(theta):
        h, i = x, 0
        for layer, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
            W, b = theta[i:i + m * n].reshape(m, n), theta[i + m * n:i + m * n + n]
            i += m * n + n
            h = h @ W + b
            if layer < len(sizes) - 2:
                h = activation(h)
        return mm.mean((h - y) ** 2)
    return net


@pytest.mark.parametrize("activation", [mm.tanh, mm.relu], ids=["tanh", "relu"])
def test_exact_hessian_of_tiny_mlp_loss(activation):
    sizes = [2, 5, 4, 1]
    x, y = normal(7, 2), normal(7, 1)
    loss = tiny_mlp_loss(sizes, x, y, activation)
    P = sum(m * n + n for m, n in zip(sizes[:-1], sizes[1:]))
    theta = normal(P) * 0.7
    H = mm.hessian(loss)(theta)
    assert H.shape == (P, P)
    np.testing.assert_allclose(H, H.T, atol=1e-13)  # symmetric to rounding
    # Finite differences of the (exact) gradient, column by column.
    g = mm.grad(loss)
    eps = 1e-6
    H_num = np.stack([(g(theta + eps * e) - g(theta - eps * e)) / (2 * eps) for e in np.eye(P)], axis=1)
    np.testing.assert_allclose(H, H_num, rtol=1e-5, atol=1e-7)
    v = normal(P)
    np.testing.assert_allclose(mm.hvp(loss, theta, v), H @ v, rtol=1e-10, atol=1e-12)
    # Second derivatives of the gradient itself, in random directions, against finite differences.
    mm.check_grads(loss, theta, order=2)


def test_hessian_of_a_function_that_calls_grad():
    """f(x) = |∇g(x)|² is a function that calls grad; its Hessian needs third derivatives of g."""
    g = lambda x: mm.sum(mm.sin(x) * x[::-1])  # noqa: E731
    f = lambda x: mm.sum(mm.grad(g)(x) ** 2)  # noqa: E731
    x = normal(3)
    H = mm.hessian(f)(x)
    H_num = np.stack([numerical_grad(lambda y: mm.grad(f)(y)[i], x) for i in range(3)])
    np.testing.assert_allclose(H, H_num, rtol=1e-6, atol=1e-8)


def test_tensor_methods_read_like_numpy():
    def f(x):
        return (x.T @ x).sum(axis=0).mean() + x[1:3].reshape(-1).sum() + x.swapaxes(0, 1).transpose().sum()
    x = normal(4, 2)
    ref = lambda x: (x.T @ x).sum(axis=0).mean() + x[1:3].reshape(-1).sum() + x.swapaxes(0, 1).T.sum()  # noqa
    np.testing.assert_allclose(f(x), ref(x))
    np.testing.assert_allclose(mm.grad(f)(x), numerical_grad(ref, x), rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ bad input
def test_grad_of_non_scalar_function_names_the_shape():
    with pytest.raises(ValueError, match=r"must return a scalar.*shape \(3,\)"):
        mm.grad(mm.sin)(np.ones(3))


def test_shape_mismatch_in_an_op_names_the_shapes():
    with pytest.raises(ValueError, match=r"add.*\(3,\).*\(4,\)"):
        mm.grad(lambda x: mm.sum(x + np.ones(4)))(np.ones(3))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        mm.grad(lambda x: mm.sum(x @ np.ones((4, 5))))(np.ones((2, 3)))


def test_integer_array_is_refused_with_its_dtype():
    with pytest.raises(TypeError, match=r"dtype int64.*shape \(3,\).*floating-point"):
        mm.grad(lambda x: mm.sum(x * 1.0))(np.arange(3))
    with pytest.raises(TypeError, match="floating-point"):
        mm.grad(lambda x: x * 1.0)(3)


@pytest.mark.parametrize("bad", [[1.0, 2.0], "abc", None])
def test_non_array_argument_is_refused(bad):
    with pytest.raises(TypeError, match="must be a float array"):
        mm.grad(lambda x: x)(bad)


def test_exponent_must_be_constant_and_argnums_checked():
    with pytest.raises(TypeError, match="exponent must be a constant"):
        mm.grad(lambda x: mm.sum(2.0**x))(np.ones(2))
    with pytest.raises(ValueError, match="argnums=2"):
        mm.grad(lambda x, y: x * y, argnums=2)(1.0, 2.0)


def test_tangent_and_vector_shapes_must_equal_the_primal_shape():
    f = lambda x: mm.sum(x**3)  # noqa: E731
    x = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"hvp: v must have the shape of x, \(3,\); got \(3, 3\)"):
        mm.hvp(f, x, np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"jvp: the tangent must have the shape of x, \(3,\); got \(1,\)"):
        mm.jvp(mm.sin, (x,), (np.ones(1),))
    with pytest.raises(TypeError, match=r"jvp: primals and tangents must be tuples.*jvp\(f, \(x,\), \(v,\)\)"):
        mm.jvp(mm.sin, x, x)
    with pytest.raises(ValueError, match=r"jvp: one primal"):
        mm.jvp(lambda a, b: a * b, (x, x), (x, x))


def test_jacobian_accepts_what_grad_accepts():
    np.testing.assert_allclose(mm.jacobian(mm.sin)(0.5), np.cos(0.5))
    np.testing.assert_allclose(mm.hessian(mm.sin)(0.5), -np.sin(0.5))
    with pytest.raises(TypeError, match=r"jacobian: argument 0 is the integer 3"):
        mm.jacobian(mm.sin)(3)


def test_keyword_arguments_pass_through_undifferentiated():
    f = lambda x, y=1.0, scale=1.0: mm.sum(scale * x**2 * y)  # noqa: E731
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(mm.grad(f)(x, y=3.0), 6 * x)
    val, g = mm.value_and_grad(f, argnums=(0, 1))(x, 2.0, scale=0.5)
    np.testing.assert_allclose(val, 5.0)
    np.testing.assert_allclose(g[0], 2 * x)
    np.testing.assert_allclose(mm.vjp(f, x, y=3.0)[1](1.0), 6 * x)
    np.testing.assert_allclose(mm.jacobian(f)(x, y=3.0), 6 * x)
    np.testing.assert_allclose(mm.hessian(f)(x, y=3.0), 6 * np.eye(2))


def test_hessian_too_large_is_refused_before_any_work(monkeypatch):
    def f(x):
        raise AssertionError("f must not be called: the size alone decides")
    with pytest.raises(MemoryError, match=r"hessian of 30000 inputs: the \(30000, 30000\) float64 result.*"
                                          r"about 28.8 GB.*budget max_bytes.*0.001 GB.*hvp"):
        mm.hessian(f, max_bytes=10**6)(np.zeros(30000))
    monkeypatch.setattr(mm.autodiff.transforms, "_available_bytes", lambda: 2 * 10**9)
    with pytest.raises(MemoryError, match=r"about 28.8 GB, more than the memory available \(2 GB\).*hvp"):
        mm.hessian(f)(np.zeros(30000))
    with pytest.raises(MemoryError, match=r"jacobian of 2000 inputs: the \(3000, 2000\) float64 result"):
        mm.jacobian(lambda x: mm.concatenate([x, x[:1000]]), max_bytes=10**6)(np.zeros(2000))
    assert mm.autodiff.jacobian_bytes(30000, 30000, np.float64) > 30000**2 * 8
    mm.autodiff.check_memory(10**6, "a small thing", max_bytes=10**7)  # fits: no error
    np.testing.assert_allclose(mm.hessian(lambda x: mm.sum(x**3), max_bytes=10**6)(np.ones(3)), 6 * np.eye(3))
