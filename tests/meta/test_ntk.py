"""The meta neural kernel: in float64 on the linearised network, the kernel formulas equal MAML run
through the public API (adaptation, ∂f'/∂θ, one outer step), the T-operator form equals the product
of (I − αH) matrices, and Φ is a symmetric positive semi-definite Gram matrix."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.meta.ntk import adaptation_operator, kernel_adapt, meta_kernel, ntk_gram

ALPHA = 0.05


def problem(norm=None, T=3, K=4, Q=5):
    """A small NTK-parameterised network, its linearisation at θ₀, a point θ ≠ θ₀ and sinusoid tasks."""
    net = mm.MLP([1, 6, 5, 1], "tanh", norm=norm, param="ntk")
    theta0 = net.init(seed=0)
    theta = theta0 + 0.2 * np.random.default_rng(1).standard_normal(net.num_params)
    return net, mm.linearize(net, theta0), theta, mm.Sinusoid().sample(T, K, Q, rng=2)


def adapted(lin, theta, b, steps):
    """F: every task's adapted query predictions (T·Q,), by the public API (the engine's inner loop)."""
    thetas = mm.adapt(lin, theta, b.xs, b.ys, ALPHA, steps)
    return np.concatenate([lin(thetas[t], b.xq[t])[:, 0] for t in range(len(b.xs))])


def product_rows(lin, theta, b, steps):
    """G (T·Q, P), rows J_{q_t}(I − αH_t)^k with H_t = (2/K) J_sᵀJ_s: explicit (P, P) matrices."""
    rows = []
    for t in range(len(b.xs)):
        Js = mm.jacobian(lambda th: lin(th, b.xs[t])[:, 0])(theta)
        Jq = mm.jacobian(lambda th: lin(th, b.xq[t])[:, 0])(theta)
        H = 2 / len(Js) * Js.T @ Js
        rows.append(Jq @ np.linalg.matrix_power(np.eye(len(theta)) - ALPHA * H, steps))
    return np.concatenate(rows)


def close(a, b, scale):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("norm", [None, "batch"])
@pytest.mark.parametrize("steps", [1, 3])
def test_the_adapted_query_prediction_is_the_kernel_formula(steps, norm):
    net, lin, theta, b = problem(norm)
    F = adapted(lin, theta, b, steps)
    gram = ntk_gram(lin, theta, b.xs, b.xq)
    F_kernel = kernel_adapt(gram, b.ys, 2 * ALPHA / 4, steps).ravel()
    close(F_kernel, F, np.abs(F).max())
    # the network's own Gram at θ₀ is the linearised model's anywhere
    gram_net = ntk_gram(net, lin.theta0, b.xs, b.xq)
    close(gram_net.ss, gram.ss, np.abs(gram.ss).max())
    close(gram_net.qq, gram.qq, np.abs(gram.qq).max())


@pytest.mark.parametrize("steps", [1, 3])
def test_the_adapted_predictions_jacobian_is_J_q_times_I_minus_alpha_H_to_the_k(steps):
    _, lin, theta, b = problem()
    T = len(b.xs)

    def F(th):                 # on engine Tensors: adapt records its inner steps
        thetas = mm.adapt(lin, th, b.xs, b.ys, ALPHA, steps)
        return mm.concatenate([lin(thetas[t], b.xq[t])[:, 0] for t in range(T)])
    J_F = mm.jacobian(F)(theta)
    G = product_rows(lin, theta, b, steps)
    close(J_F, G, np.abs(G).max())


@pytest.mark.parametrize("steps", [1, 2])
def test_one_outer_step_moves_the_predictions_by_minus_beta_phi_times_the_loss_gradient(steps):
    """Kernel regression, step by step: F(θ − β∇L_meta) − F(θ) = −β Φ ∂L_meta/∂F, exactly."""
    _, lin, theta, b = problem()
    T, Q = b.xq.shape[:2]
    beta = 0.3
    F = adapted(lin, theta, b, steps)
    loss, g = mm.meta_value_and_grad(lin, theta, b.xs, b.ys, b.xq, b.yq, ALPHA, steps, method="autodiff")
    dL_dF = 2 / (T * Q) * (F - b.yq.ravel())                     # L_meta = mean over tasks of the query MSE
    assert loss == pytest.approx(np.mean((F - b.yq.ravel()) ** 2), rel=1e-13)
    Phi = mm.meta_ntk(lin, theta, b.xs, b.xq, ALPHA, steps)
    step = adapted(lin, theta - beta * g, b, steps) - F
    close(step, -beta * Phi @ dL_dF, np.abs(step).max())
    # and for a second step from there (Φ does not change: the model is linear)
    theta1 = theta - beta * g
    _, g1 = mm.meta_value_and_grad(lin, theta1, b.xs, b.ys, b.xq, b.yq, ALPHA, steps, method="hessian")
    F1 = F + step
    step1 = adapted(lin, theta1 - beta * g1, b, steps) - F1
    close(step1, -beta * Phi @ (2 / (T * Q) * (F1 - b.yq.ravel())), np.abs(step1).max())


@pytest.mark.parametrize("norm", [None, "batch"])
@pytest.mark.parametrize("steps", [0, 1, 4])
def test_the_T_operator_form_equals_the_product_form(steps, norm):
    net, lin, theta, b = problem(norm)
    Phi = mm.meta_ntk(lin, theta, b.xs, b.xq, ALPHA, steps)
    G = product_rows(lin, theta, b, steps)
    assert Phi.shape == (15, 15)
    close(Phi, G @ G.T, np.abs(Phi).max())
    # the real network at θ₀ has the linearised model's Jacobians: the same Φ
    close(mm.meta_ntk(net, lin.theta0, b.xs, b.xq, ALPHA, steps), Phi, np.abs(Phi).max())
    if steps == 0:                                      # no adaptation: the plain NTK of the query points
        close(Phi, ntk_gram(lin, theta, b.xs, b.xq).qq, np.abs(Phi).max())


def test_phi_is_symmetric_positive_semi_definite():
    _, lin, theta, b = problem(T=6, K=5, Q=8)           # 48 query points, P = 53: Φ is rank deficient
    Phi = mm.meta_ntk(lin, theta, b.xs, b.xq, ALPHA, 2)
    scale = np.abs(Phi).max()
    close(Phi, Phi.T, scale)
    lam = np.linalg.eigvalsh((Phi + Phi.T) / 2)
    assert lam[0] > -1e-12 * scale and lam[-1] > 0
    assert np.sum(lam > 1e-9 * scale) <= lin.num_params


def test_the_adaptation_operator_polynomial_inverse_and_flow_forms():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5))
    K = A @ A.T / 5 + 0.5 * np.eye(5)                   # well conditioned, so the inverse is safe here
    c, k = 0.1, 7
    T = adaptation_operator(K, c, k)
    close(T, np.linalg.solve(K, np.eye(5) - np.linalg.matrix_power(np.eye(5) - c * K, k)), np.abs(T).max())
    tau = c * k
    expm = sum(np.linalg.matrix_power(-tau * K, j) / np.prod(np.arange(1.0, j + 1)) for j in range(60))
    T_flow = adaptation_operator(K, c, k, flow=True)
    close(T_flow, np.linalg.solve(K, np.eye(5) - expm), np.abs(T_flow).max())
    # the flow is the limit of k·m steps of c/m: the error shrinks like 1/m
    errors = [np.abs(adaptation_operator(K, c / m, k * m) - T_flow).max() for m in (10, 100)]
    assert 8 < errors[0] / errors[1] < 12
    # a singular K (a repeated point): both forms stay finite, and on K's null space T is c·k (resp. τ)
    v = np.ones(2) / np.sqrt(2)
    K2 = np.outer(v, v) * 3.0
    null = np.array([1.0, -1.0]) / np.sqrt(2)
    assert null @ adaptation_operator(K2, c, k) @ null == pytest.approx(c * k, rel=1e-14)
    assert null @ adaptation_operator(K2, c, k, flow=True) @ null == pytest.approx(tau, rel=1e-12)


def test_meta_ntk_with_flow_is_the_limit_of_many_small_inner_steps():
    _, lin, theta, b = problem()
    gram = ntk_gram(lin, theta, b.xs, b.xq)
    Phi_flow = mm.meta_ntk(lin, theta, b.xs, b.xq, ALPHA, 3, flow=True)
    close(Phi_flow, meta_kernel(gram, 2 * ALPHA / 4, 3, flow=True), np.abs(Phi_flow).max())
    errors = [np.abs(mm.meta_ntk(lin, theta, b.xs, b.xq, ALPHA / m, 3 * m) - Phi_flow).max() for m in (4, 40)]
    assert 8 < errors[0] / errors[1] < 12


def test_a_users_model_of_one_task():
    def model(theta, x):          # not batched: minimaml calls it task by task
        return mm.tanh(x @ theta[:3].reshape((1, 3))) @ theta[3:6].reshape((3, 1)) + theta[6]
    theta = np.random.default_rng(0).standard_normal(7)
    b = mm.Sinusoid().sample(2, 3, 4, rng=0)
    lin = mm.linearize(model, theta)
    G = product_rows(lin, theta, b, 2)
    Phi = mm.meta_ntk(model, theta, b.xs, b.xq, ALPHA, 2)
    close(Phi, G @ G.T, np.abs(Phi).max())


def test_refusals_name_the_problem():
    net, _, theta, b = problem()
    with pytest.raises(ValueError, match="one output per point"):
        mm.meta_ntk(mm.MLP([1, 3, 2]), mm.MLP([1, 3, 2]).init(seed=0), b.xs, b.xq, ALPHA, 1)
    with pytest.raises(ValueError, match="same T"):
        mm.meta_ntk(net, theta, b.xs, b.xq[:2], ALPHA, 1)
    with pytest.raises(ValueError, match="inner_lr"):
        mm.meta_ntk(net, theta, b.xs, b.xq, -0.1, 1)
    with pytest.raises(ValueError, match="shape"):
        mm.meta_ntk(net, theta[:-1], b.xs, b.xq, ALPHA, 1)
