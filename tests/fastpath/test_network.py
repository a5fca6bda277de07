"""The fast route on the sinusoid MLP (dense layers, MSE): backprop, R-operator HVPs, exact MLP
Hessians, the MAML meta-gradient it drives. Oracles: central finite differences, the engine, and the
closed form of MAML on linear regression. Float64 unless a test says otherwise. (Batch norm,
cross-entropy, low-rank weights and the workspaces: test_layers.py.)"""

import numpy as np
import pytest

from functools import partial

import minimaml
from minimaml.fastpath import mlp_hessian, mlp_hvp, mlp_loss_and_grad
from minimaml.meta.maml import meta_value_and_grad
from minimaml.nn import MLP, mse
from minimaml.tasks import LinearRegression, Sinusoid

EPS = 1e-6
hvp_meta_value_and_grad = partial(meta_value_and_grad, method="hvp")


def central_fd(f, theta, eps=EPS):
    """∂f/∂θ_i ≈ (f(θ + ε e_i) − f(θ − ε e_i)) / 2ε, for every i (f may return an array)."""
    return np.array([(np.asarray(f(theta + eps * e)) - np.asarray(f(theta - eps * e))) / (2 * eps)
                     for e in np.eye(theta.size)])


def rel_err(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def small_problem(act, T=3, K=4, Kq=5, seed=0):
    net = MLP([1, 5, 5, 1], activation=act)
    return net, net.init(seed=seed), Sinusoid().sample(T, K, Kq, rng=seed)


# ------------------------------------------------------------------------------------------
# Meta-gradient vs finite differences of the meta-loss.
# ReLU is piecewise smooth: with ε = 1e-6 and these seeds no pre-activation crosses 0 between
# θ ± εe_i (a crossing would show up as an O(1) error), so FD is a valid oracle there too.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_meta_grad_matches_finite_differences(act, steps):
    net, theta, b = small_problem(act)
    args = (b.xs, b.ys, b.xq, b.yq, 0.1, steps)
    loss, g = hvp_meta_value_and_grad(net, theta, *args)
    fd = central_fd(lambda th: hvp_meta_value_and_grad(net, th, *args)[0], theta)
    assert g.shape == (net.num_params,) and isinstance(loss, float)
    assert rel_err(g, fd) < 1e-7


def test_meta_loss_is_the_query_loss_after_adaptation():
    net, theta, b = small_problem("tanh")
    thetas = np.repeat(theta[None], 3, axis=0)
    for _ in range(2):                                       # the inner loop, by hand
        thetas = thetas - 0.1 * mlp_loss_and_grad(net, thetas, b.xs, b.ys)[1]
    expected = np.mean([mse(net(thetas[t], b.xq[t]), b.yq[t]) for t in range(3)])
    loss, _ = hvp_meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.1, 2)
    assert loss == pytest.approx(expected, rel=1e-13)


def test_zero_steps_is_the_plain_query_gradient():
    net, theta, b = small_problem("relu")
    loss, g = hvp_meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.1, 0)
    losses, grads = mlp_loss_and_grad(net, theta, b.xq, b.yq)   # shared θ, per-task losses
    assert loss == pytest.approx(losses.mean(), rel=1e-13)
    np.testing.assert_allclose(g, grads.mean(axis=0), rtol=1e-12)


def test_first_order_drops_the_hessian_terms_and_differs_measurably():
    net, theta, b = small_problem("tanh")
    args = (b.xs, b.ys, b.xq, b.yq, 0.1, 2)
    _, g2 = hvp_meta_value_and_grad(net, theta, *args)
    _, g1 = hvp_meta_value_and_grad(net, theta, *args, first_order=True)
    thetas = np.repeat(theta[None], 3, axis=0)
    for _ in range(2):
        thetas = thetas - 0.1 * mlp_loss_and_grad(net, thetas, b.xs, b.ys)[1]
    np.testing.assert_allclose(g1, mlp_loss_and_grad(net, thetas, b.xq, b.yq)[1].mean(0), rtol=1e-12)
    assert np.linalg.norm(g2 - g1) / np.linalg.norm(g2) > 1e-2


def test_batched_meta_grad_is_the_mean_of_per_task_meta_grads():
    net, theta, b = small_problem("relu", T=4)
    _, g = hvp_meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.05, 3)
    per_task = [hvp_meta_value_and_grad(net, theta, b.xs[t:t + 1], b.ys[t:t + 1], b.xq[t:t + 1],
                                        b.yq[t:t + 1], 0.05, 3)[1] for t in range(4)]
    np.testing.assert_allclose(g, np.mean(per_task, axis=0), rtol=1e-12, atol=1e-15)


def test_results_are_fresh_arrays_and_inputs_untouched():
    net, theta, b = small_problem("tanh")
    theta0 = theta.copy()
    _, g_a = hvp_meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.1, 2)
    g_a0 = g_a.copy()
    hvp_meta_value_and_grad(net, theta + 1.0, b.xs, b.ys, b.xq, b.yq, 0.1, 2)
    np.testing.assert_array_equal(g_a, g_a0)
    np.testing.assert_array_equal(theta, theta0)


# ------------------------------------------------------------------------------------------
# Float32.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 5])
def test_float32_agrees_with_float64(steps):
    net = MLP([1, 40, 40, 1])
    theta = net.init(seed=0)
    b = Sinusoid().sample(25, 10, 10, rng=0)
    args = (b.xs, b.ys, b.xq, b.yq, 0.01, steps)
    l64, g64 = hvp_meta_value_and_grad(net, theta, *args)
    l32, g32 = hvp_meta_value_and_grad(net, theta.astype(np.float32), *args)
    assert g32.dtype == np.float32
    assert np.linalg.norm(g32 - g64) / np.linalg.norm(g64) < 1e-4
    assert l32 == pytest.approx(l64, rel=1e-5)


# ------------------------------------------------------------------------------------------
# Loss, gradient, HVP and Hessian of a single task.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_loss_and_grad_match_the_engine_and_batching(act):
    net, theta, b = small_problem(act)
    loss, g = mlp_loss_and_grad(net, theta, b.xs[0], b.ys[0])
    assert loss == pytest.approx(mse(net(theta, b.xs[0]), b.ys[0]), rel=1e-14)
    np.testing.assert_allclose(g, minimaml.grad(lambda th: mse(net(th, b.xs[0]), b.ys[0]))(theta),
                               rtol=1e-12, atol=1e-15)
    thetas = np.stack([net.init(seed=s) for s in range(3)])
    losses, grads = mlp_loss_and_grad(net, thetas, b.xs, b.ys)
    assert losses.shape == (3,) and grads.shape == (3, net.num_params)
    for t in range(3):
        lt, gt = mlp_loss_and_grad(net, thetas[t], b.xs[t], b.ys[t])
        assert losses[t] == pytest.approx(lt, rel=1e-14)
        np.testing.assert_allclose(grads[t], gt, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_hessian_matches_fd_of_gradient_and_the_engine(act):
    net, theta, b = small_problem(act)
    x, y = b.xs[0], b.ys[0]
    H = mlp_hessian(net, theta, x, y)
    assert H.shape == (net.num_params, net.num_params)
    assert np.abs(H - H.T).max() <= 1e-13 * np.abs(H).max()
    fd = central_fd(lambda th: mlp_loss_and_grad(net, th, x, y)[1], theta)
    assert rel_err(H, fd) < 1e-7
    H_engine = minimaml.hessian(lambda th: mse(net(th, x), y))(theta)
    np.testing.assert_allclose(H, H_engine, rtol=1e-10, atol=1e-12 * np.abs(H).max())


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_hvp_is_hessian_times_v(act):
    net, theta, b = small_problem(act)
    rng = np.random.default_rng(1)
    H = mlp_hessian(net, theta, b.xs[1], b.ys[1])
    v = rng.standard_normal(net.num_params)
    np.testing.assert_allclose(mlp_hvp(net, theta, b.xs[1], b.ys[1], v), H @ v, rtol=1e-11, atol=1e-13)
    V = rng.standard_normal((4, net.num_params))                 # many directions at once
    np.testing.assert_allclose(mlp_hvp(net, theta, b.xs[1], b.ys[1], V), V @ H, rtol=1e-11, atol=1e-13)
    # Batched over tasks: one θ, data set and direction per task.
    thetas = np.stack([net.init(seed=s) for s in range(3)])
    V = rng.standard_normal((3, net.num_params))
    Hv = mlp_hvp(net, thetas, b.xs, b.ys, V)
    for t in range(3):
        np.testing.assert_allclose(Hv[t], mlp_hessian(net, thetas[t], b.xs[t], b.ys[t]) @ V[t],
                                   rtol=1e-11, atol=1e-13)


def test_hessian_of_a_linear_model_is_2_over_K_XtX():
    net = MLP([3, 1])
    b = LinearRegression(dim=3).sample(1, 6, 6, rng=0)
    X1 = np.concatenate([b.xs[0], np.ones((6, 1))], axis=1)
    np.testing.assert_allclose(mlp_hessian(net, net.init(seed=0), b.xs[0], b.ys[0]),
                               2 / 6 * X1.T @ X1, rtol=1e-13)


# ------------------------------------------------------------------------------------------
# The closed form of MAML on linear regression (see LinearRegression's docstring).
# ------------------------------------------------------------------------------------------
def closed_form_meta_grad(theta, b, alpha, steps):
    """mean_t (I − αH_t)^S ∇L_query,t(θ_S,t), H_t = 2/K X̃ᵀX̃, X̃ = [X 1], in plain NumPy."""
    grads = []
    for xs, ys, xq, yq in zip(b.xs, b.ys, b.xq, b.yq):
        Xs = np.concatenate([xs, np.ones((len(xs), 1))], axis=1)
        Xq = np.concatenate([xq, np.ones((len(xq), 1))], axis=1)
        H = 2 / len(xs) * Xs.T @ Xs
        th = theta.copy()
        for _ in range(steps):
            th = th - alpha * 2 / len(xs) * Xs.T @ (Xs @ th - ys[:, 0])
        g = 2 / len(xq) * Xq.T @ (Xq @ th - yq[:, 0])
        M = np.eye(len(theta)) - alpha * H
        grads.append(np.linalg.matrix_power(M, steps) @ g)
    return np.mean(grads, axis=0)


@pytest.mark.parametrize("steps", [0, 1, 2, 5])
@pytest.mark.parametrize("dim", [1, 4])
def test_linear_regression_closed_form(steps, dim):
    net = MLP([dim, 1])
    theta = net.init(seed=2)
    b = LinearRegression(dim=dim, noise=0.1).sample(6, 5, 7, rng=3)
    _, g = hvp_meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.05, steps)
    np.testing.assert_allclose(g, closed_form_meta_grad(theta, b, 0.05, steps), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------
def test_meta_grad_rejects_bad_input():
    net, theta, b = small_problem("relu")
    ok = (b.xs, b.ys, b.xq, b.yq)
    f = lambda *a, lr=0.1, steps=1, th=theta: hvp_meta_value_and_grad(net, th, *a, lr, steps)
    with pytest.raises(ValueError, match=r"same number of tasks.*xs \(3, 4, 1\).*xq \(2, 5, 1\)"):
        f(b.xs, b.ys, b.xq[:2], b.yq[:2])
    with pytest.raises(ValueError, match=r"xs has 2 features per point.*input size is 1.*\(3, 4, 2\)"):
        f(np.zeros((3, 4, 2)), b.ys, b.xq, b.yq)
    with pytest.raises(ValueError, match=r"ys has \(\) features per point"):
        f(b.xs, b.ys[..., 0], b.xq, b.yq)
    with pytest.raises(ValueError, match=r"same number of points.*\(3, 3, 1\)"):
        f(b.xs, b.ys[:, :3], b.xq, b.yq)
    for lr, error in ((0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("0.1", TypeError),
                      (True, TypeError)):
        with pytest.raises(error, match="inner_lr"):
            f(*ok, lr=lr)
    for steps, error in ((-1, ValueError), (1.5, TypeError), (True, TypeError), (None, TypeError)):
        with pytest.raises(error, match="steps"):
            f(*ok, steps=steps)
    with pytest.raises(ValueError, match=r"theta must have shape \(P,\) = \(46,\).*\(47,\)"):
        f(*ok, th=np.zeros(47))
    with pytest.raises(ValueError, match=r"\(3, 46\)"):
        f(*ok, th=np.zeros((3, 46)))
    with pytest.raises(TypeError, match="net must be a model"):
        hvp_meta_value_and_grad("net", theta, *ok, 0.1, 1)


def test_single_task_routes_reject_bad_input():
    net, theta, b = small_problem("tanh")
    x, y = b.xs[0], b.ys[0]
    with pytest.raises(ValueError, match=r"v must have shape.*\(45,\)"):
        mlp_hvp(net, theta, x, y, np.zeros(45))
    with pytest.raises(ValueError, match=r"v must have shape \(3, P\).*\(2, 46\)"):
        mlp_hvp(net, np.zeros((3, 46)), b.xs, b.ys, np.zeros((2, 46)))
    with pytest.raises(ValueError, match=r"one task.*\(3, 4, 1\)"):
        mlp_hessian(net, theta, b.xs, b.ys)
    with pytest.raises(ValueError, match=r"output has shape \(4, 1\) but the targets y have shape \(4, 2\)"):
        mlp_loss_and_grad(net, theta, x, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1\).*\(4, 3\)"):
        mlp_loss_and_grad(net, theta, np.zeros((4, 3)), y)
