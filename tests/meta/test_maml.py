"""MAML's meta-gradient, checked against independent oracles:

* the second-order routes against each other ("autodiff" through the inner loop, explicit
  (I − αH) matrices, Hessian-vector products) to 1e-9 relative in float64;
* a closed form (linear regression: constant Hessian, derived here in plain NumPy);
* central finite differences of the meta-loss;
* steps = 0 (plain query-loss gradient) and the first-order gap;
* bad input, each with its message.
"""

import numpy as np
import pytest

from minimaml.meta import maml
from minimaml.autodiff import grad
from minimaml.fastpath import mlp_hessian
from minimaml.meta.maml import METHODS, adapt, inner_matrices, meta_loss, meta_value_and_grad
from minimaml.nn import MLP
from minimaml.tasks import LinearRegression, Sinusoid

ALPHA = 0.01


def rel(a, b):
    """max |a − b| / max |b|: the relative disagreement reported everywhere below."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def sinusoid_problem(sizes, activation, num_tasks=3, k=5, q=7, seed=0):
    net = MLP(sizes, activation)
    batch = Sinusoid().sample(num_tasks, k, q, rng=seed)
    return net, net.init(seed), (batch.xs, batch.ys, batch.xq, batch.yq)


# ------------------------------------------------------------------------------------------
# The three second-order routes agree; first order does not
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_second_order_routes_agree_small_net(activation, steps):
    # α larger than the paper's so that the Hessian terms are large and disagreement would show.
    net, theta, data = sinusoid_problem([1, 8, 8, 1], activation, seed=steps)
    inner_lr = 0.05
    results = {m: meta_value_and_grad(net, theta, *data, inner_lr, steps, method=m)
               for m in ("autodiff", "hessian", "hvp", "first_order")}
    loss_ref, g_ref = results["hvp"]
    for m in ("autodiff", "hessian"):
        loss, g = results[m]
        assert g.shape == (net.num_params,) and g.dtype == np.float64
        assert loss == pytest.approx(loss_ref, rel=1e-12)
        assert rel(g, g_ref) < 1e-9, (m, rel(g, g_ref))
    gap = rel(results["first_order"][1], g_ref)
    print(f"{activation} steps={steps}: autodiff {rel(results['autodiff'][1], g_ref):.1e}, "
          f"hessian {rel(results['hessian'][1], g_ref):.1e}, first-order gap {gap:.1e}")
    # Dropping the Hessian terms changes the gradient by far more than rounding.
    assert gap > 1e-3
    # ... but not the loss, which is the same forward computation.
    assert results["first_order"][0] == pytest.approx(loss_ref, rel=1e-12)


@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_second_order_routes_agree_paper_net(activation, steps):
    # The paper's 1-40-40-1 network (P = 1761), α = 0.01 as in the paper.
    net, theta, data = sinusoid_problem([1, 40, 40, 1], activation, num_tasks=2, k=10, q=10)
    results = {m: meta_value_and_grad(net, theta, *data, ALPHA, steps, method=m)
               for m in ("autodiff", "hessian", "hvp", "first_order")}
    g_ref = results["hvp"][1]
    assert rel(results["autodiff"][1], g_ref) < 1e-9
    assert rel(results["hessian"][1], g_ref) < 1e-9
    assert rel(results["first_order"][1], g_ref) > 1e-4


def test_first_order_flag_matches_first_order_method():
    net, theta, data = sinusoid_problem([1, 8, 8, 1], "tanh")
    loss_a, g_a = meta_value_and_grad(net, theta, *data, 0.05, 3, method="first_order")
    loss_b, g_b = meta_value_and_grad(net, theta, *data, 0.05, 3, method="hvp", first_order=True)
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    assert rel(g_a, g_b) < 1e-12


# ------------------------------------------------------------------------------------------
# Closed form: linear regression, constant Hessian
# ------------------------------------------------------------------------------------------


def linear_meta_gradient(theta, xs, ys, xq, yq, inner_lr, steps, first_order=False):
    """MAML for y ≈ X̃ θ, X̃ = [X 1], θ = (w, b), in plain NumPy:
    ∇L(θ) = 2/K X̃ᵀ(X̃θ − y), H = 2/K X̃ᵀX̃ (constant), so
    ∇θ L_meta = 1/T Σ_t (I − αH_t)^S ∇L_query,t(θ_S,t)."""
    grads, losses = [], []
    for x, y, x2, y2 in zip(xs, ys, xq, yq):
        X = np.hstack([x, np.ones((len(x), 1))])
        Xq = np.hstack([x2, np.ones((len(x2), 1))])
        y, y2 = y[:, 0], y2[:, 0]
        H = 2.0 / len(X) * X.T @ X
        th = theta.copy()
        for _ in range(steps):
            th = th - inner_lr * 2.0 / len(X) * X.T @ (X @ th - y)
        r = Xq @ th - y2
        losses.append(np.mean(r**2))
        g = 2.0 / len(Xq) * Xq.T @ r
        if not first_order:
            g = np.linalg.matrix_power(np.eye(len(theta)) - inner_lr * H, steps).T @ g
        grads.append(g)
    return np.mean(losses), np.mean(grads, axis=0)


@pytest.mark.parametrize("steps", [0, 1, 2, 4])
@pytest.mark.parametrize("method", ["autodiff", "hessian", "hvp", "first_order"])
def test_linear_regression_closed_form(method, steps):
    dim = 3
    net = MLP([dim, 1])
    batch = LinearRegression(dim).sample(4, 6, 9, rng=1)
    data = (batch.xs, batch.ys, batch.xq, batch.yq)
    theta = net.init(2)
    inner_lr = 0.1  # large: (I − αH)^S is far from I, so dropping it would be caught
    want_loss, want = linear_meta_gradient(theta, *data, inner_lr, steps,
                                           first_order=(method == "first_order"))
    loss, g = meta_value_and_grad(net, theta, *data, inner_lr, steps, method=method)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert rel(g, want) < 1e-12
    if steps > 0 and method != "first_order":
        _, fo = linear_meta_gradient(theta, *data, inner_lr, steps, first_order=True)
        assert rel(fo, want) > 1e-2  # the check above could tell first order from second order


def test_linear_regression_inner_matrices_are_the_constant_hessian():
    net = MLP([2, 1])
    batch = LinearRegression(2).sample(3, 5, 5, rng=3)
    theta = net.init(0)
    mats = inner_matrices(net, theta, batch.xs, batch.ys, 0.1, 3)
    assert mats.shape == (3, 3, 3, 3)
    for t in range(3):
        X = np.hstack([batch.xs[t], np.ones((5, 1))])
        want = np.eye(3) - 0.1 * 2.0 / 5 * X.T @ X
        for k in range(3):
            np.testing.assert_allclose(mats[t, k], want, rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------------------
# steps = 0, finite differences, inner_matrices, adapt
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["autodiff", "hessian", "hvp", "first_order"])
def test_zero_steps_is_the_plain_query_gradient(method):
    net, theta, (xs, ys, xq, yq) = sinusoid_problem([1, 8, 8, 1], "relu")
    # Oracle: the engine's gradient of the mean query loss, one unbatched task at a time.
    want = np.mean([grad(lambda th: maml.query_loss(net, th, xq[t], yq[t]))(theta)
                    for t in range(len(xq))], axis=0)
    want_loss = np.mean([maml.query_loss(net, theta, xq[t], yq[t]) for t in range(len(xq))])
    loss, g = meta_value_and_grad(net, theta, xs, ys, xq, yq, ALPHA, 0, method=method)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert rel(g, want) < 1e-12
    np.testing.assert_array_equal(adapt(net, theta, xs, ys, ALPHA, 0), np.tile(theta, (len(xs), 1)))


def test_meta_gradient_matches_central_finite_differences():
    net, theta, data = sinusoid_problem([1, 6, 6, 1], "tanh", num_tasks=2)
    inner_lr, steps, eps = 0.1, 3, 1e-6
    _, g = meta_value_and_grad(net, theta, *data, inner_lr, steps, method="hvp")
    fd = np.empty_like(theta)
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = eps
        fd[i] = (meta_loss(net, theta + e, *data, inner_lr, steps)
                 - meta_loss(net, theta - e, *data, inner_lr, steps)) / (2 * eps)
    assert rel(g, fd) < 1e-7
    _, fo = meta_value_and_grad(net, theta, *data, inner_lr, steps, method="first_order")
    assert rel(fo, fd) > 1e-3  # finite differences see the second-order terms


def test_inner_matrices_reproduce_the_meta_gradient():
    net, theta, (xs, ys, xq, yq) = sinusoid_problem([1, 8, 8, 1], "tanh")
    inner_lr, steps = 0.05, 3
    mats = inner_matrices(net, theta, xs, ys, inner_lr, steps)
    T, P = len(xs), net.num_params
    assert mats.shape == (T, steps, P, P)
    # Each M = I − αH, H from the fast R-operator Hessian (an independent route) at θ_k.
    trajectory = [np.tile(theta, (T, 1))]
    for k in range(steps):
        trajectory.append(adapt(net, theta, xs, ys, inner_lr, k + 1))
    for t in range(T):
        for k in range(steps):
            H = mlp_hessian(net, trajectory[k][t], xs[t], ys[t])
            np.testing.assert_allclose(mats[t, k], np.eye(P) - inner_lr * H, rtol=0, atol=1e-12)
    # ∇θ L_meta = 1/T Σ_t M_{t,0}ᵀ ⋯ M_{t,S−1}ᵀ ∇L_query,t(θ_S,t), written out with matrix products.
    theta_s = trajectory[-1]
    total = np.zeros(P)
    for t in range(T):
        jac = np.eye(P)
        for k in range(steps):  # ∂θ_S/∂θ = M_{S−1} ⋯ M_0
            jac = mats[t, k] @ jac
        g_query = grad(lambda th: maml.query_loss(net, th, xq[t], yq[t]))(theta_s[t])
        total += jac.T @ g_query
    _, g = meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method="hvp")
    assert rel(total / T, g) < 1e-10


def test_adapt_is_per_task_gradient_descent():
    net, theta, (xs, ys, _, _) = sinusoid_problem([1, 8, 8, 1], "relu")
    inner_lr, steps = 0.02, 4
    got = adapt(net, theta, xs, ys, inner_lr, steps)
    assert got.shape == (len(xs), net.num_params)
    for t in range(len(xs)):
        th = theta.copy()
        for _ in range(steps):
            th = th - inner_lr * grad(lambda p: maml.support_loss(net, p, xs[t], ys[t]))(th)
        np.testing.assert_allclose(got[t], th, rtol=0, atol=1e-13)
    # Adaptation lowers each task's support loss.
    before = maml.support_loss(net, np.tile(theta, (len(xs), 1)), xs, ys)
    after = maml.support_loss(net, got, xs, ys)
    assert np.all(after < before)


def test_adapt_is_differentiable_with_the_engine():
    # d/dθ Σ_t Σ_i θ_1,t[i] = Σ_t (I − α H_t)ᵀ 1 = T·1 − α Σ_t H_t 1, H_t at θ (one inner step).
    net, theta, (xs, ys, _, _) = sinusoid_problem([1, 8, 8, 1], "tanh")
    inner_lr = 0.05
    got = grad(lambda th: adapt(net, th, xs, ys, inner_lr, 1).sum())(theta)
    ones = np.ones_like(theta)
    want = len(xs) * ones - inner_lr * sum(mlp_hessian(net, theta, xs[t], ys[t]) @ ones for t in range(len(xs)))
    assert rel(got, want) < 1e-12
    assert rel(got, len(xs) * ones) > 1e-3  # the Hessian term is really there


def test_float32_hvp_route_keeps_dtype_and_agrees_with_float64():
    net, theta, data = sinusoid_problem([1, 40, 40, 1], "relu", num_tasks=5, k=10, q=10)
    _, g64 = meta_value_and_grad(net, theta, *data, ALPHA, 2)
    data32 = tuple(a.astype(np.float32) for a in data)
    loss32, g32 = meta_value_and_grad(net, theta.astype(np.float32), *data32, ALPHA, 2)
    assert g32.dtype == np.float32
    assert rel(g32, g64) < 1e-4


@pytest.mark.parametrize("first_order", [False, True])
def test_cuda_emulated_route_is_dispatched_and_agrees(first_order):
    # The CUDA kernel's source compiled for the CPU (float32) against the float64 hvp route.
    net, theta, data = sinusoid_problem([1, 40, 40, 1], "relu", num_tasks=5, k=10, q=10)
    loss, g = meta_value_and_grad(net, theta, *data, ALPHA, 2, method="cuda-emulated", first_order=first_order)
    loss64, g64 = meta_value_and_grad(net, theta, *data, ALPHA, 2, method="hvp", first_order=first_order)
    assert g.dtype == np.float32 and g.shape == (net.num_params,)
    assert loss == pytest.approx(loss64, rel=1e-5)
    assert rel(g, g64) < 1e-5
    if not first_order:
        _, fo = meta_value_and_grad(net, theta, *data, ALPHA, 2, method="first_order")
        assert rel(fo, g64) > 1e-3  # so the kernel's second-order mode is really second order


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


def _bad(**changes):
    net, theta, (xs, ys, xq, yq) = sinusoid_problem([1, 8, 8, 1], "relu")
    kw = dict(net=net, theta=theta, xs=xs, ys=ys, xq=xq, yq=yq, inner_lr=ALPHA, steps=1, method="hvp")
    kw.update(changes)
    return kw


@pytest.mark.parametrize("changes, error, match", [
    (dict(xq=np.zeros((4, 7, 1)), yq=np.zeros((4, 7, 1))), ValueError,
     r"same number of tasks T, got xs \(3, 5, 1\) \(T=3\) and xq \(4, 7, 1\) \(T=4\)"),
    (dict(ys=np.zeros((4, 5, 1))), ValueError, r"xs and ys must have the same number of tasks T"),
    (dict(ys=np.zeros((3, 6, 1))), ValueError,
     r"xs and ys must have the same number of points N, got \(3, 5, 1\) and \(3, 6, 1\)"),
    (dict(yq=np.zeros((3, 8, 1))), ValueError, r"xq and yq must have the same number of points N"),
    (dict(xs=np.zeros((3, 5, 2))), ValueError,
     r"xs has 2 features per point but the network's input size is 1 \(MLP\(\[1, 8, 8, 1\]"),
    (dict(xq=np.zeros((3, 7, 3))), ValueError, r"xq has 3 features per point but the network's input size is 1"),
    (dict(ys=np.zeros((3, 5, 2))), ValueError, r"ys has \(2,\) features per point but the network's output size is 1"),
    (dict(yq=np.zeros((3, 7, 2))), ValueError, r"yq has \(2,\) features per point but the network's output size is 1"),
    (dict(xs=np.zeros((5, 1))), ValueError, r"xs must have shape \(T, N, 1\), got \(5, 1\) \(2-D\)"),
    (dict(xs=np.zeros((3, 0, 1)), ys=np.zeros((3, 0, 1))), ValueError,
     r"the support set needs at least one task and one point, got xs.shape = \(3, 0, 1\)"),
    (dict(inner_lr=0.0), ValueError, r"inner_lr \(α\) must be a finite number > 0, got inner_lr=0.0"),
    (dict(inner_lr=-0.01), ValueError, r"inner_lr \(α\) must be a finite number > 0, got inner_lr=-0.01"),
    (dict(inner_lr=float("nan")), ValueError, r"got inner_lr=nan"),
    (dict(inner_lr="0.01"), TypeError, r"inner_lr must be a real number, got '0.01' of type str"),
    (dict(steps=-1), ValueError, r"steps must be >= 0, got steps=-1"),
    (dict(steps=1.5), TypeError, r"steps must be an integer >= 0, got 1.5 of type float"),
    (dict(steps=True), TypeError, r"steps must be an integer >= 0, got True of type bool"),
    (dict(method="newton"), ValueError,
     r"unknown method 'newton'; valid methods: 'autodiff', 'hessian', 'hvp', 'first_order', 'cuda', "
     r"'cuda-emulated'"),
    (dict(theta=np.zeros(96)), ValueError, r"theta must have shape \(P,\) = \(97,\) for MLP\(\[1, 8, 8, 1\], activation='relu'\), got \(96,\)"),
    (dict(theta=np.zeros((3, 97))), ValueError,
     r"theta must have shape \(P,\) = \(97,\) for MLP\(\[1, 8, 8, 1\], activation='relu'\), got \(3, 97\)"),
    (dict(theta=np.zeros(97, dtype=np.int64)), TypeError,
     r"theta must be float32 or float64, got dtype int64 \(shape \(97,\)\)"),
    (dict(xs=np.zeros((3, 5, 1), dtype=np.int32)), TypeError, r"xs must be a floating-point array, got dtype int32"),
    (dict(yq=[[[0.0]]]), TypeError, r"yq must be an array, got list"),
    (dict(method="autodiff", first_order=True), ValueError,
     r"method='autodiff' is second order by construction; use method='first_order'"),
    (dict(method="first_order", first_order=False), ValueError, r"contradicts first_order=False"),
    (dict(net=lambda theta, x: x), TypeError, r"method='hvp': the fast route covers minimaml.MLP networks.*method='autodiff'"),
    (dict(first_order="yes"), TypeError, r"first_order must be None, True or False, got 'yes'"),
])
def test_bad_input(changes, error, match):
    kw = _bad(**changes)
    with pytest.raises(error, match=match):
        meta_value_and_grad(**kw)


def test_bad_input_adapt_and_inner_matrices():
    net, theta, (xs, ys, _, _) = sinusoid_problem([1, 8, 8, 1], "relu")
    with pytest.raises(ValueError, match=r"steps must be >= 0, got steps=-2"):
        adapt(net, theta, xs, ys, ALPHA, -2)
    with pytest.raises(ValueError, match=r"xs and ys must have the same number of points N"):
        adapt(net, theta, xs, ys[:, :3], ALPHA, 1)
    with pytest.raises(ValueError, match=r"inner_lr \(α\) must be a finite number > 0, got inner_lr=0"):
        inner_matrices(net, theta, xs, ys, 0, 1)


def test_methods_list_is_the_documented_one():
    assert METHODS == ("autodiff", "hessian", "hvp", "first_order", "cuda", "cuda-emulated")


# ------------------------------------------------------------------------------------------
# One rule for dtypes and one validator for every route.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["autodiff", "hessian", "hvp", "first_order"])
def test_results_come_back_in_thetas_dtype(method):
    net, theta, (xs, ys, xq, yq) = sinusoid_problem([1, 8, 8, 1], "tanh")
    loss, g = meta_value_and_grad(net, theta.astype(np.float32), xs, ys, xq, yq, ALPHA, 1, method=method)
    assert g.dtype == np.float32 and isinstance(loss, float)


@pytest.mark.parametrize("method", ["autodiff", "hessian", "hvp", "first_order", "cuda-emulated"])
@pytest.mark.parametrize("dtype", [np.float16, np.complex128, np.int32])
def test_every_route_refuses_a_theta_that_is_not_float32_or_float64(method, dtype):
    net, theta, (xs, ys, xq, yq) = sinusoid_problem([1, 8, 8, 1], "relu")
    with pytest.raises(TypeError, match=rf"theta must be float32 or float64, got dtype {np.dtype(dtype)}"):
        meta_value_and_grad(net, theta.astype(dtype), xs, ys, xq, yq, ALPHA, 1, method=method)


@pytest.mark.parametrize("method", ["autodiff", "hessian", "hvp", "first_order", "cuda-emulated"])
def test_every_route_gives_the_same_error_for_the_same_mistake(method):
    net, theta, (xs, ys, xq, yq) = sinusoid_problem([1, 8, 8, 1], "relu")
    with pytest.raises(TypeError, match=r"inner_lr must be a real number, got '0.1' of type str"):
        meta_value_and_grad(net, theta, xs, ys, xq, yq, "0.1", 1, method=method)
    with pytest.raises(ValueError, match=r"inner_lr \(α\) must be a finite number > 0, got inner_lr=-1"):
        meta_value_and_grad(net, theta, xs, ys, xq, yq, -1, 1, method=method)
    with pytest.raises(TypeError, match=r"xs must be a floating-point array, got dtype complex128"):
        meta_value_and_grad(net, theta, xs.astype(complex), ys, xq, yq, ALPHA, 1, method=method)
