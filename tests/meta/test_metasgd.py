"""Meta-SGD: a learned step size per parameter. Its meta-gradients (for θ and for α) against finite
differences and autodiff, MAML when α is one number, and the non-symmetric step Jacobian."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.meta.maml import inner_matrices, meta_loss
from minimaml.meta.metasgd import metasgd_value_and_grad


def problem(seed=0, norm=None):
    net = mm.MLP([1, 6, 1], activation="tanh", norm=norm)
    b = mm.Sinusoid().sample(3, 5, 5, rng=seed)
    rng = np.random.default_rng(seed)
    alpha = 0.02 + 0.02 * rng.standard_normal(net.num_params)            # mixed signs included
    return net, net.init(seed=1), alpha, b


def central_fd(f, x, eps=1e-6):
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.size)])


def loss_with(net, theta, alpha, b, steps):
    """L_meta(θ, α) by the engine, through a trajectory with the vector step (the definition)."""
    from minimaml.meta.maml import _meta_loss
    return float(_meta_loss(net, theta, b.xs, b.ys, b.xq, b.yq, [alpha] * steps, mm.mse))


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("method", ["hvp", "autodiff"])
def test_both_gradients_match_finite_differences(steps, method):
    net, theta, alpha, b = problem()
    value, (g_theta, g_alpha) = metasgd_value_and_grad(net, theta, alpha, b.xs, b.ys, b.xq, b.yq, steps,
                                                       method=method)
    assert value == pytest.approx(loss_with(net, theta, alpha, b, steps), rel=1e-13)
    np.testing.assert_allclose(g_theta, central_fd(lambda th: loss_with(net, th, alpha, b, steps), theta),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(g_alpha, central_fd(lambda a: loss_with(net, theta, a, b, steps), alpha),
                               rtol=1e-6, atol=1e-9)
    assert np.abs(g_alpha).max() > 1e-3


@pytest.mark.parametrize("norm", [None, "batch"])
def test_hvp_route_equals_autodiff(norm):
    net, theta, alpha, b = problem(seed=2, norm=norm)
    args = (net, theta, alpha, b.xs, b.ys, b.xq, b.yq, 3)
    _, (ta, aa) = metasgd_value_and_grad(*args, method="autodiff")
    _, (th, ah) = metasgd_value_and_grad(*args, method="hvp")
    np.testing.assert_allclose(th, ta, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(ah, aa, rtol=1e-9, atol=1e-13)


def test_one_alpha_for_every_parameter_is_maml():
    net, theta, _, b = problem()
    alpha = np.full(net.num_params, 0.03)
    value, (g_theta, g_alpha) = metasgd_value_and_grad(net, theta, alpha, b.xs, b.ys, b.xq, b.yq, 2)
    maml_value, maml_grad = mm.meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.03, 2)
    assert value == pytest.approx(maml_value, rel=1e-14)
    np.testing.assert_allclose(g_theta, maml_grad, rtol=1e-12)
    # Σ_i ∂L/∂α_i is the derivative along α = (a, ..., a): dL/da for MAML's scalar step
    eps = 1e-6
    dL_da = (meta_loss(net, theta, b.xs, b.ys, b.xq, b.yq, 0.03 + eps, 2)
             - meta_loss(net, theta, b.xs, b.ys, b.xq, b.yq, 0.03 - eps, 2)) / (2 * eps)
    assert g_alpha.sum() == pytest.approx(float(dL_da), rel=1e-6)


def test_first_order_drops_the_hessian_terms():
    net, theta, alpha, b = problem()
    _, (g_theta, g_alpha) = metasgd_value_and_grad(net, theta, alpha, b.xs, b.ys, b.xq, b.yq, 1,
                                                   method="first_order")
    # θ_1 = θ − α ⊙ g_0; first order: ∂L/∂θ ≈ ∇L_q(θ_1), ∂L/∂α ≈ −g_0 ⊙ ∇L_q(θ_1), both averaged over tasks
    g0 = np.stack([mm.grad(lambda th: mm.mse(net(th, b.xs[t]), b.ys[t]))(theta) for t in range(3)])
    thetas = theta - alpha * g0
    gq = np.stack([mm.grad(lambda th: mm.mse(net(th, b.xq[t]), b.yq[t]))(thetas[t]) for t in range(3)])
    np.testing.assert_allclose(g_theta, gq.mean(0), rtol=1e-12)
    np.testing.assert_allclose(g_alpha, (-g0 * gq).mean(0), rtol=1e-12)


def test_the_step_jacobian_is_not_symmetric():
    net, theta, alpha, b = problem()
    M = inner_matrices(net, theta, b.xs[:1], b.ys[:1], alpha, 1)[0, 0]           # I − diag(α) H
    H = mm.hessian(lambda th: mm.mse(net(th, b.xs[0]), b.ys[0]))(theta)
    np.testing.assert_allclose(M, np.eye(net.num_params) - alpha[:, None] * H, rtol=1e-12, atol=1e-15)
    assert np.abs(M - M.T).max() > 1e-3
    # the meta-gradient is Mᵀ ∇L_query(θ_1), not M ∇L_query(θ_1)
    theta1 = theta - alpha * mm.grad(lambda th: mm.mse(net(th, b.xs[0]), b.ys[0]))(theta)
    gq = mm.grad(lambda th: mm.mse(net(th, b.xq[0]), b.yq[0]))(theta1)
    _, (g_theta, _) = metasgd_value_and_grad(net, theta, alpha, b.xs[:1], b.ys[:1], b.xq[:1], b.yq[:1], 1)
    np.testing.assert_allclose(g_theta, M.T @ gq, rtol=1e-10)
    assert not np.allclose(g_theta, M @ gq, rtol=1e-3)


@pytest.mark.parametrize("alpha, error, match", [
    (np.zeros(5), ValueError, r"alpha must have shape \(19,\), got \(5,\)"),
    (np.full(19, np.nan), ValueError, "alpha holds non-finite values"),
    ("0.1", TypeError, "alpha must be a float array"),
    (np.zeros(19, dtype=int), TypeError, "alpha must be a float array"),
])
def test_bad_alpha_is_one_clear_error(alpha, error, match):
    net, theta, _, b = problem()
    with pytest.raises(error, match=match):
        metasgd_value_and_grad(net, theta, alpha, b.xs, b.ys, b.xq, b.yq, 1)
