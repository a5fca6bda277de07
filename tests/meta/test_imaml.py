"""iMAML: the two solvers agree, the closed form on linear regression, finite differences of the
meta-loss with the inner problem re-solved, memory that does not grow with the steps, and each
condition the formula needs refused with its numbers."""

import re
import tracemalloc

import numpy as np
import pytest

import minimaml as mm
from minimaml.fastpath import mlp_hessian
from minimaml.meta.imaml import imaml_value_and_grad, inner_problem
from minimaml.meta.inner import task_losses_for


def linear(theta, x):
    """y = x w + b for one task, by hand (the engine's route): θ = (w (2,), b), MLP([2, 1])'s layout."""
    return x @ theta[:2].reshape((2, 1)) + theta[2]


def tanh_problem(seed=1):
    net = mm.MLP([1, 6, 1], activation="tanh")
    return net, net.init(seed=seed), mm.Sinusoid().sample(3, 5, 5, rng=0)


def sets(b):
    return b.xs, b.ys, b.xq, b.yq


def bn_ce_problem():
    net = mm.MLP([2, 8, 3], activation="relu", norm="batch")
    rng = np.random.default_rng(0)
    xs, xq = rng.standard_normal((3, 6, 2)), rng.standard_normal((3, 5, 2))
    ys, yq = rng.integers(0, 3, (3, 6)), rng.integers(0, 3, (3, 5))
    return net, net.init(seed=0), (xs, ys, xq, yq)


@pytest.mark.parametrize("steps", [0, 3, 50])
@pytest.mark.parametrize("case", ["tanh", "bn-ce"])
def test_cg_and_the_exact_solve_agree(case, steps):
    if case == "tanh":
        net, theta, b = tanh_problem()
        data, loss, lam = sets(b), mm.mse, 5.0
    else:
        net, theta, data = bn_ce_problem()
        loss, lam = mm.softmax_cross_entropy, 2.0
    v_cg, g_cg = imaml_value_and_grad(net, theta, *data, 0.1, steps, lam, loss=loss, solver="cg")
    v_ex, g_ex = imaml_value_and_grad(net, theta, *data, 0.1, steps, lam, loss=loss, solver="exact")
    assert v_cg == v_ex and mm.imaml_value_and_grad is imaml_value_and_grad
    np.testing.assert_allclose(g_cg, g_ex, rtol=1e-8, atol=1e-8 * np.abs(g_ex).max())
    assert g_cg.dtype == theta.dtype and np.abs(g_cg).max() > 1e-3


@pytest.mark.parametrize("model", ["mlp", "by hand"])
@pytest.mark.parametrize("solver", ["cg", "exact"])
def test_linear_regression_converged_is_the_closed_form(model, solver):
    """MLP([d, 1]) with mse: L_s(φ) = 1/K ‖X̃φ − y‖² (X̃ = [X 1]), H = 2/K X̃ᵀX̃, so
    φ* = (H + λI)⁻¹(λθ + 2/K X̃ᵀy) and the meta-gradient is (I + H/λ)⁻¹ ∇L_q(φ*) = λ(H + λI)⁻¹ ∇L_q(φ*)."""
    b = mm.LinearRegression(dim=2).sample(3, 10, 8, rng=0)
    theta, lam, alpha = np.array([0.3, -0.2, 0.1]), 0.5, 0.2       # α(λ + λ_max) <= 0.2 · 4.3 < 2
    net = mm.MLP([2, 1]) if model == "mlp" else linear
    value, g = imaml_value_and_grad(net, theta, *sets(b), alpha, 300, lam, solver=solver)
    values, grads = [], []
    for xs, ys, xq, yq in zip(*sets(b)):
        X, Xq = np.hstack([xs, np.ones((10, 1))]), np.hstack([xq, np.ones((8, 1))])
        H = 2 / 10 * X.T @ X
        phi = np.linalg.solve(H + lam * np.eye(3), lam * theta + 2 / 10 * X.T @ ys[:, 0])
        r = Xq @ phi - yq[:, 0]
        values.append(r @ r / 8)
        grads.append(lam * np.linalg.solve(H + lam * np.eye(3), 2 / 8 * Xq.T @ r))
    assert value == pytest.approx(np.mean(values), rel=1e-12)
    np.testing.assert_allclose(g, np.mean(grads, axis=0), rtol=1e-9, atol=1e-13)


def test_the_implicit_gradient_is_the_derivative_of_the_converged_meta_loss():
    """Central differences of L_meta(θ) = mean_t L_query,t(φ*_t(θ)), the inner problem re-solved (to
    ‖∇R‖ < 1e-12) at every θ ± ε e_i: the implicit gradient matches far below the step ε = 1e-5."""
    net, theta, b = tanh_problem()
    alpha, steps, lam, eps = 0.1, 300, 5.0, 1e-5
    phi, _ = inner_problem(task_losses_for(net, mm.mse, rank=0), theta, b.xs, b.ys, alpha, steps, lam)
    grad_R = [mm.grad(lambda p: mm.mse(net(p, x), y) + lam / 2 * mm.sum((p - theta) ** 2))(p_t)
              for p_t, x, y in zip(phi, b.xs, b.ys)]
    assert np.abs(grad_R).max() < 1e-12                            # converged
    _, g = imaml_value_and_grad(net, theta, *sets(b), alpha, steps, lam)

    def meta_loss(th):
        return imaml_value_and_grad(net, th, *sets(b), alpha, steps, lam)[0]
    fd = np.array([(meta_loss(theta + eps * e) - meta_loss(theta - eps * e)) / (2 * eps)
                   for e in np.eye(net.num_params)])
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_memory_does_not_grow_with_the_inner_steps():
    net = mm.MLP([1, 40, 40, 1], activation="tanh")
    theta, b = net.init(seed=0), mm.Sinusoid().sample(4, 10, 10, rng=0)

    def peak(steps):
        imaml_value_and_grad(net, theta, *sets(b), 0.01, steps, 10.0, cg_steps=100, cg_tol=1e-6)  # warm
        tracemalloc.start()
        imaml_value_and_grad(net, theta, *sets(b), 0.01, steps, 10.0, cg_steps=100, cg_tol=1e-6)
        used = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return used
    few, many = peak(5), peak(50)
    print(f"peak bytes: {few} with 5 steps, {many} with 50")
    assert many < 1.1 * few


def test_float32_stays_float32():
    net, theta, b = tanh_problem()
    v32, g32 = imaml_value_and_grad(net, theta.astype(np.float32), *sets(b), 0.1, 20, 5.0)   # cg_tol 1e-5
    v64, g64 = imaml_value_and_grad(net, theta, *sets(b), 0.1, 20, 5.0)
    assert g32.dtype == np.float32
    assert v32 == pytest.approx(v64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4 * np.abs(g64).max())


def test_a_relu_networks_kinks_are_not_divergence():
    """Crossing a ReLU kink the gradient jumps and R may rise with a stable step: no error."""
    net, theta, data = bn_ce_problem()
    value, g = imaml_value_and_grad(net, theta, *data, 0.1, 200, 2.0, loss=mm.softmax_cross_entropy)
    assert np.isfinite(value) and np.isfinite(g).all()


# ----------------------------------------------------------------------------------------------
# What the formula needs, refused with the numbers
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam, error", [(0.0, ValueError), (-1.0, ValueError), (np.inf, ValueError),
                                        ("1", TypeError)])
def test_lambda_must_be_positive(lam, error):
    net, theta, b = tanh_problem()
    with pytest.raises(error, match=r"lam \(λ\) must be"):
        imaml_value_and_grad(net, theta, *sets(b), 0.1, 3, lam)


def test_not_positive_definite_is_refused_with_lambda_min():
    """A tanh net is not convex: at θ (no inner steps) task Hessians have λ_min < −λ for λ = 2."""
    net, theta, b = tanh_problem()
    lam = 2.0
    lows = [np.linalg.eigvalsh(mlp_hessian(net, theta, x, y))[0] for x, y in zip(b.xs, b.ys)]
    t = next(i for i, low in enumerate(lows) if low <= -lam)
    with pytest.raises(ValueError, match=rf"not positive definite for task {t}: .* λ_min = "
                                         rf"{re.escape(f'{lows[t]:.6g}')} <= −λ = -2"):
        imaml_value_and_grad(net, theta, *sets(b), 0.1, 0, lam, solver="exact")
    # CG meets it as a direction of curvature pᵀHp/pᵀp <= −λ, which λ_min bounds from below
    with pytest.raises(ValueError, match="not positive definite") as info:
        imaml_value_and_grad(net, theta, *sets(b), 0.1, 0, lam, solver="cg")
    task, curvature = re.search(r"task (\d+): .* curvature pᵀHp/pᵀp = (\S+) <=", str(info.value)).groups()
    assert lows[int(task)] - 1e-9 <= float(curvature) <= -lam


def test_divergent_inner_steps_are_refused():
    """Linear regression, α(λ + λ_max) = 2.02: one step does not yet raise R, but the exact solver's
    λ_max refuses it; from the second step R rises and both solvers refuse."""
    b = mm.LinearRegression(dim=2).sample(3, 10, 8, rng=0)
    net, theta, lam = mm.MLP([2, 1]), np.array([0.3, -0.2, 0.1]), 0.5
    augmented = [np.hstack([x, np.ones((10, 1))]) for x in b.xs]
    highs = [np.linalg.eigvalsh(2 / 10 * X.T @ X)[-1] for X in augmented]
    t = int(np.argmax(highs))
    alpha = 2.02 / (lam + highs[t])
    imaml_value_and_grad(net, theta, *sets(b), alpha, 1, lam, solver="cg")         # not noticed yet
    with pytest.raises(ValueError, match=rf"unstable for task {t}: inner_lr·\(lam \+ λ_max\) = "
                                         rf"{alpha:g}·\(0.5 \+ {highs[t]:.6g}\) = 2.02 >= 2"):
        imaml_value_and_grad(net, theta, *sets(b), alpha, 1, lam, solver="exact")
    for solver in ("cg", "exact"):
        with pytest.raises(ValueError, match=rf"inner steps diverge: task {t}'s .* grew from .* at inner "
                                             rf"step 2 \(inner_lr={alpha:g}, lam=0.5\); .* needs inner_lr·"):
            imaml_value_and_grad(net, theta, *sets(b), alpha, 5, lam, solver=solver)
    # a ReLU network is held to its start instead (its kinks let R rise a little): a far too large step
    net, theta, data = bn_ce_problem()
    with pytest.raises(ValueError, match=r"grew from \S+ \(its start\) to"):
        imaml_value_and_grad(net, theta, *data, 30.0, 5, 2.0, loss=mm.softmax_cross_entropy)


def test_cg_that_does_not_converge_says_so_with_the_residual():
    net, theta, b = tanh_problem()
    with pytest.raises(ValueError, match=r"CG did not converge in cg_steps=1 iterations: task \d \(the worst\)"
                                         r" has relative residual .* = \S+ > cg_tol = 1e-10") as info:
        imaml_value_and_grad(net, theta, *sets(b), 0.1, 10, 5.0, cg_steps=1)
    residual = float(re.search(r"= (\S+) > cg_tol", str(info.value)).group(1))
    assert 1e-10 < residual < 1


@pytest.mark.parametrize("kwargs, error, match", [
    ({"solver": "lu"}, ValueError, "unknown solver 'lu'"),
    ({"cg_steps": 0}, ValueError, "cg_steps must be an integer >= 1"),
    ({"cg_tol": 0.0}, ValueError, r"cg_tol \(a relative residual\) must be a number in \(0, 1\)"),
    ({"solver": "exact", "max_bytes": 1000}, MemoryError, r"solver='exact'.*solver='cg' solves with Hessian-vector products"),
])
def test_bad_options_are_one_clear_error(kwargs, error, match):
    net, theta, b = tanh_problem()
    with pytest.raises(error, match=match):
        imaml_value_and_grad(net, theta, *sets(b), 0.1, 3, 5.0, **kwargs)


def test_bad_task_sets_get_the_shared_check():
    net, theta, b = tanh_problem()
    with pytest.raises(ValueError, match=r"inner_lr \(α\) must be a finite number > 0"):
        imaml_value_and_grad(net, theta, *sets(b), -0.1, 3, 5.0)
    with pytest.raises(ValueError, match="support and query must hold the same number of tasks"):
        imaml_value_and_grad(net, theta, b.xs, b.ys, b.xq[:2], b.yq[:2], 0.1, 3, 5.0)
