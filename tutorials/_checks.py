"""Automatic checks for the exercises in 06_exercises.ipynb (and its solutions notebook).

Each ``check_exercise_N(answer...)`` raises AssertionError, naming what is wrong and the numbers
involved, unless the answer is right; it prints one line when it passes. The reference it
compares against is always an *independent* route in minimaml (finite differences, the engine's
autodiff through the inner loop, ``method="first_order"``, the exact Hessian, the fast route's
``reptile_direction``), never a copy of the solution. The checks see only the numbers an answer
returns, not how it computed them. ``attempt`` runs a check but turns the stub's NotImplementedError into
"not done yet", so the exercises notebook runs top to bottom before it is solved.
"""
import numpy as np

import minimaml as mm
from minimaml.nn import MLP, mse
from minimaml.tasks import LinearRegression, Sinusoid


def attempt(check, *answers):
    """Run ``check(*answers)``; an unfinished exercise (NotImplementedError) prints instead of failing."""
    try:
        check(*answers)
    except NotImplementedError:
        print(f"{check.__name__}: not done yet (the stub still raises NotImplementedError)")


def _close(name, got, want, rtol, atol=0.0):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"{name}: expected shape {want.shape}, got {got.shape}"
    err = np.max(np.abs(got - want), initial=0.0)
    assert np.allclose(got, want, rtol=rtol, atol=atol), (
        f"{name}: max |yours − reference| = {err:.3g} (rtol {rtol:g}, atol {atol:g});\n"
        f"  yours     = {np.array2string(got.ravel()[:5], precision=6)} ...\n"
        f"  reference = {np.array2string(want.ravel()[:5], precision=6)} ...")
    return err


def _close_in_norm(name, got, want, rtol):
    """Relative error in norm, ‖got − want‖ / ‖want‖ <= rtol: "k correct digits" of a vector as a whole, which an
    entrywise test would refuse whenever a few small entries carry larger relative errors than the big ones."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"{name}: expected shape {want.shape}, got {got.shape}"
    err = np.linalg.norm(got - want) / np.linalg.norm(want)
    assert err <= rtol, (
        f"{name}: relative error ‖yours − reference‖ / ‖reference‖ = {err:.3g}, more than {rtol:g};\n"
        f"  yours     = {np.array2string(got.ravel()[:5], precision=6)} ...\n"
        f"  reference = {np.array2string(want.ravel()[:5], precision=6)} ...")
    return err


# ------------------------------------------------------------------------- exercise 1: a new primitive
def check_exercise_1(softplus):
    """softplus(x) = log(1 + eˣ) as an engine primitive whose VJP is itself differentiable:
    first AND second derivatives must match finite differences (check_grads, order=2)."""
    x = np.linspace(-4.0, 4.0, 9)
    _close("softplus(x) values", softplus(x), np.logaddexp(0.0, x), rtol=1e-12)
    sigma = 1.0 / (1.0 + np.exp(-x))
    g = mm.grad(lambda z: mm.sum(softplus(z)))(x)
    _close("softplus'(x) = σ(x)", g, sigma, rtol=1e-10)
    g2 = mm.grad(lambda z: mm.sum(mm.grad(lambda w: mm.sum(softplus(w)))(z)))(x)
    assert np.any(np.abs(g2) > 1e-3), (
        "softplus'' came out as zero everywhere: the VJP rule was computed on raw NumPy values, so the "
        "engine could not record it. Write it with minimaml ops (e.g. mm.sigmoid(x)) so it is differentiable.")
    _close("softplus''(x) = σ(x)(1 − σ(x))", g2, sigma * (1 - sigma), rtol=1e-10)
    mm.check_grads(softplus, x, order=2)
    mm.check_grads(lambda z: mm.sum(softplus(z * z) * z), x[::2], order=3)
    print("exercise 1 passed: softplus, its gradient and its second derivative are right")


# ------------------------------------------------------------------------- exercise 2: MAML by hand
def linear_regression_tasks(dim=3, num_tasks=4, k=5, seed=0):
    """A fixed meta-batch of linear-regression tasks and a random θ = (w, b) for MLP([dim, 1])."""
    batch = LinearRegression(dim).sample(num_tasks, k, k, seed)
    theta = np.random.default_rng(seed + 1).standard_normal(dim + 1)
    return theta, batch.xs, batch.ys, batch.xq, batch.yq


def check_exercise_2(maml_grad_by_hand, inner_lr=0.1):
    """The closed-form one-step MAML meta-gradient of linear regression against the engine's autodiff
    through the inner loop (minimaml.meta_value_and_grad, method="autodiff")."""
    for dim, seed in ((1, 0), (3, 1)):
        theta, xs, ys, xq, yq = linear_regression_tasks(dim=dim, seed=seed)
        yours = maml_grad_by_hand(theta, xs, ys, xq, yq, inner_lr)
        _, ref = mm.meta_value_and_grad(MLP([dim, 1]), theta, xs, ys, xq, yq, inner_lr, 1, method="autodiff")
        _close(f"meta-gradient (dim={dim})", yours, ref, rtol=1e-9, atol=1e-12)
    print("exercise 2 passed: your closed form equals autodiff through the inner step")


# ------------------------------------------------------------------------- exercise 3: first-order MAML
def sinusoid_tasks(seed=0, num_tasks=3, k=5):
    """A small net, a random θ and a fixed meta-batch of sinusoid tasks."""
    net = MLP([1, 16, 16, 1])
    batch = Sinusoid().sample(num_tasks, k, k, seed)
    return net, net.init(seed), batch.xs, batch.ys, batch.xq, batch.yq


def check_exercise_3(fomaml_grad, inner_lr=0.01, steps=2):
    """Your first-order MAML gradient against minimaml's method="first_order"; it must also differ from
    the second-order meta-gradient (method="autodiff"), or it is not first-order."""
    net, theta, xs, ys, xq, yq = sinusoid_tasks()
    yours = fomaml_grad(net, theta, xs, ys, xq, yq, inner_lr, steps)
    _, ref = mm.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method="first_order")
    _, second = mm.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method="autodiff")
    gap = np.linalg.norm(second - ref)
    assert np.linalg.norm(np.asarray(yours) - second) > 0.1 * gap, (
        "your gradient equals the full second-order meta-gradient: first-order MAML must treat "
        "∂θ'/∂θ as the identity (do not differentiate through the inner gradient steps)")
    _close("first-order meta-gradient", yours, ref, rtol=1e-9, atol=1e-12)
    print(f"exercise 3 passed: first-order MAML matches; it is {gap / np.linalg.norm(second):.1%} away from the exact meta-gradient here")


# ------------------------------------------------------------------------- exercise 4: H v two ways
def check_exercise_4(hvp_finite_difference, hvp_forward_over_reverse):
    """Two Hessian-vector products that never form H, against H @ v with H = minimaml.hessian, by their relative
    error in norm: at most 1e-4 for the finite difference ("about 4 digits"), 1e-12 for forward-over-reverse."""
    net = MLP([1, 10, 10, 1], activation="tanh")
    theta = net.init(3)
    batch = Sinusoid().sample(1, 10, 1, 3)
    f = lambda th: mse(net(th, batch.xs[0]), batch.ys[0])  # noqa: E731
    v = np.random.default_rng(4).standard_normal(net.num_params)
    H = mm.hessian(f)(theta)
    _close("H symmetric", H, H.T, rtol=0, atol=1e-12 * np.abs(H).max())
    Hv = H @ v
    # "About 4 correct digits": a relative error of 1e-4 in norm (a central difference with eps = 1e-3 has ~5e-5).
    fd_err = _close_in_norm("finite-difference H v", hvp_finite_difference(f, theta, v), Hv, rtol=1e-4)
    # Exact to rounding; tighter than the best central difference here (~6e-11, eps = 1e-6).
    fr_err = _close_in_norm("forward-over-reverse H v", hvp_forward_over_reverse(f, theta, v), Hv, rtol=1e-12)
    print(f"exercise 4 passed: both Hessian-vector products equal H @ v (relative errors {fd_err:.1e} and "
          f"{fr_err:.1e})")


# ------------------------------------------------------------------------- exercise 5: Reptile by hand
def check_exercise_5(reptile_direction_by_hand, inner_lr=0.02, steps=3):
    """Your Reptile direction d = θ − 1/T Σ_t θ_S,t against ``minimaml.reptile_direction`` (the fast route's
    hand-derived gradients, summed step by step), on a small sinusoid net, 3 tasks, 3 inner steps."""
    net, theta, xs, ys, _, _ = sinusoid_tasks(seed=5)
    yours = np.asarray(reptile_direction_by_hand(net, theta, xs, ys, inner_lr, steps), dtype=float)
    ref = mm.reptile_direction(net, theta, xs, ys, inner_lr, steps)
    assert yours.shape == ref.shape, f"Reptile direction: expected shape {ref.shape}, got {yours.shape}"
    assert not np.allclose(yours, -ref, rtol=1e-6), (
        "your direction has the wrong sign: Reptile's d = θ − mean θ_S points *away* from the adapted parameters, "
        "so that the outer update θ ← θ − ε d moves θ toward them")
    # θ − mean θ_S subtracts nearly equal numbers: about |θ|/|d| · 1e-16 of relative rounding, far below 1e-9.
    err = _close_in_norm("Reptile direction", yours, ref, rtol=1e-9)
    print(f"exercise 5 passed: your Reptile direction matches minimaml.reptile_direction (relative error {err:.1e})")


# ------------------------------------------------------------------------- exercise 6: Meta-SGD's α-gradient
def check_exercise_6(metasgd_alpha_grad):
    """Your ∂L/∂α of Meta-SGD for one task and one inner step against the engine's autodiff through the inner
    step with respect to α (``minimaml.metasgd_value_and_grad(..., method="autodiff")``)."""
    net, theta, xs, ys, xq, yq = sinusoid_tasks(seed=6, num_tasks=1)
    alpha = np.random.default_rng(6).uniform(-0.02, 0.05, net.num_params)   # learned α's have either sign
    yours = np.asarray(metasgd_alpha_grad(net, theta, alpha, xs[0], ys[0], xq[0], yq[0]), dtype=float)
    _, (_, ref) = mm.metasgd_value_and_grad(net, theta, alpha, xs, ys, xq, yq, 1, method="autodiff")
    assert yours.shape == ref.shape, f"∂L/∂α: expected shape {ref.shape}, got {yours.shape}"
    assert not np.allclose(yours, -ref, rtol=1e-6), (
        "your ∂L/∂α has the wrong sign: θ' = θ − α ⊙ ∇L_support(θ) *decreases* as α grows where ∇L_support > 0")
    support_grad = mm.grad(lambda th: mse(net(th, xs[0]), ys[0]))(theta)
    at_theta = -support_grad * mm.grad(lambda th: mse(net(th, xq[0]), yq[0]))(theta)
    assert not np.allclose(yours, at_theta, rtol=1e-9, atol=1e-12), (
        "you took the query gradient at θ: the query loss is measured at the adapted θ' = θ − α ⊙ ∇L_support(θ)")
    _close("∂L/∂α", yours, ref, rtol=1e-9, atol=1e-12)
    print("exercise 6 passed: −∇L_support(θ) ⊙ ∇L_query(θ') is Meta-SGD's α-gradient for one step")
