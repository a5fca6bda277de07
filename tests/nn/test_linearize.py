"""linearize: f_lin(θ, x) = f(θ₀, x) + J(x)(θ − θ₀) is a model like any other: exact against an
explicit Jacobian, batched like its network, and MAML goes through the public API on it."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.meta.maml import meta_loss


def tiny(theta, x):
    """A user's model of one task, written with minimaml's ops: θ (9,), x (N, 1) -> (N, 1)."""
    return mm.tanh(x @ theta[:4].reshape((1, 4))) @ theta[4:8].reshape((4, 1)) + theta[8]


def setup(param="ntk", act="tanh"):
    net = mm.MLP([1, 5, 4, 1], act, param=param)
    theta0 = net.init(seed=0)
    theta = theta0 + 0.3 * np.random.default_rng(1).standard_normal(net.num_params)
    return net, theta0, theta


@pytest.mark.parametrize("model", ["mlp", "function"])
def test_the_linearised_model_is_the_first_order_taylor_expansion(model):
    if model == "mlp":
        net, theta0, theta = setup()
    else:
        net, theta0 = tiny, np.random.default_rng(0).standard_normal(9)
        theta = theta0 + 0.3 * np.random.default_rng(1).standard_normal(9)
    lin = mm.linearize(net, theta0)
    x = np.linspace(-3, 3, 7)[:, None]
    J = mm.jacobian(lambda th: net(th, x)[:, 0])(theta0)                 # (N, P), explicit
    np.testing.assert_allclose(lin(theta, x)[:, 0], net(theta0, x)[:, 0] + J @ (theta - theta0), rtol=1e-13)
    np.testing.assert_allclose(lin(theta0, x), net(theta0, x), rtol=1e-15)
    # its Jacobian is J(θ₀) wherever it is taken, and it is not the network away from θ₀
    np.testing.assert_allclose(mm.jacobian(lambda th: lin(th, x)[:, 0])(theta), J, rtol=1e-13, atol=1e-15)
    assert not np.allclose(lin(theta, x), net(theta, x), rtol=1e-3)


def test_an_mse_on_it_has_exactly_the_gauss_newton_hessian():
    """Notebook 4's split H = G + R: for f_lin the residual term R vanishes, H = (2/N) JᵀJ."""
    net, theta0, theta = setup()
    lin = mm.linearize(net, theta0)
    x, y = np.linspace(-2, 2, 6)[:, None], np.sin(np.linspace(-2, 2, 6))[:, None]
    J = mm.jacobian(lambda th: net(th, x)[:, 0])(theta0)
    H = mm.hessian(lambda th: mm.mse(lin(th, x), y))(theta)
    np.testing.assert_allclose(H, 2 / 6 * J.T @ J, rtol=1e-12, atol=1e-14)


def test_batched_over_tasks_like_its_network():
    net, theta0, _ = setup()
    lin = mm.linearize(net, theta0)
    assert lin.batched and lin.num_params == net.num_params
    thetas = theta0 + 0.2 * np.random.default_rng(2).standard_normal((3, net.num_params))
    x = np.random.default_rng(3).uniform(-4, 4, (3, 5, 1))
    out = lin(thetas, x)
    assert out.shape == (3, 5, 1)
    for t in range(3):
        np.testing.assert_allclose(out[t], lin(thetas[t], x[t]), rtol=1e-13)
    assert not mm.linearize(tiny, np.zeros(9)).batched


def test_maml_goes_through_the_public_api_on_it():
    net, theta0, theta = setup(param="standard", act="relu")
    lin = mm.linearize(net, theta0)
    b = mm.Sinusoid().sample(3, 5, 4, rng=1)
    args = (theta, b.xs, b.ys, b.xq, b.yq, 0.05, 2)
    value, g = mm.meta_value_and_grad(lin, *args, method="autodiff")
    _, g_hessian = mm.meta_value_and_grad(lin, *args, method="hessian")
    _, g_first = mm.meta_value_and_grad(lin, *args, method="first_order")
    np.testing.assert_allclose(g_hessian, g, rtol=1e-11, atol=1e-14 * np.abs(g).max())
    eps = 1e-6
    i = np.argsort(np.abs(g))[-5:]                                      # the five largest entries, by FD
    fd = [(meta_loss(lin, theta + eps * e, *args[1:]) - meta_loss(lin, theta - eps * e, *args[1:])) / (2 * eps)
          for e in np.eye(net.num_params)[i]]
    np.testing.assert_allclose(g[i], fd, rtol=1e-6)
    assert not np.allclose(g_first, g)
    with pytest.raises(TypeError, match="method='autodiff'"):
        mm.meta_value_and_grad(lin, *args, method="hvp")
    assert value == pytest.approx(meta_loss(lin, *args), rel=1e-13)


def test_theta0_is_copied_and_shapes_are_checked():
    net, theta0, _ = setup()
    lin = mm.linearize(net, theta0)
    x = np.ones((2, 1))
    before = lin(theta0.copy(), x)
    theta0[:] = 0.0                                                      # the caller's array changes...
    np.testing.assert_array_equal(lin(lin.theta0, x), before)           # ...the linearisation point does not
    with pytest.raises(ValueError, match=r"theta must have shape \(P,\) or \(T, P\) with P = 39"):
        lin(np.zeros(5), x)
    with pytest.raises(ValueError, match="theta0 must be a flat float vector"):
        mm.linearize(net, np.zeros((2, 39)))
    with pytest.raises(ValueError, match=r"theta0 must have shape \(P,\) = \(39,\)"):
        mm.linearize(net, np.zeros(5))                                   # an MLP knows its P
