"""iMAML (Rajeswaran, Finn, Kakade & Levine 2019): the meta-gradient by implicit differentiation.

Each task's inner problem is regularised towards θ,

    φ*_t(θ) = argmin_φ  R_t(φ),   R_t(φ) = L_support,t(φ) + λ/2 ‖φ − θ‖²,

solved approximately by S = ``steps`` gradient steps from φ_0 = θ:

    φ_{k+1} = φ_k − α (∇L_support,t(φ_k) + λ (φ_k − θ)),   k = 0..S−1

At a minimum ∇L_support(φ*) + λ(φ* − θ) = 0; differentiating this in θ gives (H + λI) dφ*/dθ = λI,
H = ∇²L_support(φ*), so dφ*/dθ = (I + H/λ)⁻¹ (symmetric) and

    L_meta(θ) = 1/T Σ_t L_query,t(φ*_t)          (no regulariser)
    ∇θ L_meta = 1/T Σ_t (I + H_t/λ)⁻¹ ∇L_query,t(φ*_t)

whatever path the inner loop took: nothing is differentiated through the steps, so iMAML keeps no
cache per step and its memory does not grow with ``steps`` (MAML's walk back keeps S of them): a
few (T, P) arrays, the one support cache at φ_S for the Hessian-vector products, and with
``solver="exact"`` one task's (P, P) Hessian at a time. The formula holds at the minimum; after
finitely many steps it is the paper's approximation (exact as the inner problem converges).

Two conditions, checked rather than assumed (each failure an error with the numbers):

* I + H/λ positive definite, i.e. λ > −λ_min(H): φ* is a minimum of R (CG needs it too). CG meets
  it as a pᵀ(I + H/λ)p <= 0; ``solver="exact"`` checks λ_min itself.
* α (λ + λ_max(H)) < 2: gradient descent on R, whose Hessian is H + λI, does not diverge. The loop
  watches R fall at every step (``inner_problem``); ``solver="exact"`` checks λ_max at φ_S too.

The linear system is solved per task by ``solver="cg"`` (conjugate gradient, one Hessian-vector
product per iteration: any size) or ``solver="exact"`` (the explicit Hessian: small nets).
"""

import numpy as np

from ..autodiff import hessian
from ..autodiff.tensor import array_module, raw
from ..fastpath import mlp_hessian, network
from ..nn import MLP, mse
from . import checks
from .inner import task_losses_for
from .maml import _check_hessian_memory

SOLVERS = ("cg", "exact")
CG_TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}   # float32: ~100 ulps


def imaml_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, lam, loss=mse, solver="cg",
                         cg_steps=None, cg_tol=None, max_bytes=None):
    """(L_meta(θ), ∇θ L_meta(θ)) of iMAML for one meta-batch of T tasks (see the module docstring).

    Args:
        net, theta, xs, ys, xq, yq, loss: as in ``meta_value_and_grad`` (any model; the fast route
            for an ``MLP`` with ``mse`` or ``softmax_cross_entropy``).
        inner_lr: α > 0, the step on R.   steps: S >= 0 steps from φ_0 = θ.
        lam: λ > 0, the strength of the pull towards θ.
        solver: "cg" (conjugate gradient on v ↦ v + Hv/λ) or "exact" (the explicit Hessian of each
            task: also checks λ_min and λ_max exactly; refused when the Hessian would not fit).
        cg_steps: at most this many CG iterations (default P, where exact arithmetic converges).
        cg_tol: CG stops when ‖b − Ax‖ <= cg_tol ‖b‖ for every task (default 1e-10 in float64,
            1e-5 in float32); an error if it does not within ``cg_steps``.
        max_bytes: for "exact", a memory budget (default: the memory available).

    Returns:
        (meta_loss, grad): the mean query loss at φ_S (a float) and a (P,) array in theta's dtype.
    """
    checks.check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps, loss)
    lam = checks.check_lam(lam)
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    dtype, P = raw(theta).dtype, raw(theta).shape[-1]
    cg_steps = P if cg_steps is None else checks.check_cg_steps(cg_steps)
    cg_tol = CG_TOL[dtype] if cg_tol is None else checks.check_cg_tol(cg_tol)
    if solver == "exact":
        _check_hessian_memory_for_imaml(P, dtype, max_bytes)
    xs, ys, xq, yq = checks.as_data(theta, loss, xs, ys, xq, yq)
    tl = task_losses_for(net, loss, rank=0, like=theta)
    kinks = isinstance(net, MLP) and net.activation == "relu" and net.num_layers > 1   # others: smooth
    phi, cache = inner_problem(tl, raw(theta), xs, ys, float(inner_lr), steps, lam, kinks)
    losses, g, _ = tl.value_and_grad(tl.start(phi), xq, yq)
    b = tl.flat(g, phi.shape[:1], dtype)                                # ∇L_query,t(φ_t), (T, P)
    if solver == "cg":
        x = cg(lambda v: v + tl.flat(tl.hvp(cache, tl.start(v)), phi.shape[:1], dtype) / lam,
               b, lam, cg_steps, cg_tol)
    else:
        x = _exact_solve(net, loss, phi, xs, ys, b, float(inner_lr), lam, max_bytes)
    return float(losses.sum()) / len(losses), x.mean(axis=0).astype(dtype, copy=False)


def inner_problem(tl, theta, xs, ys, inner_lr, steps, lam, kinks=False):
    """φ_S (T, P) after ``steps`` gradient steps on R(φ) = L_support(φ) + λ/2 ‖φ − θ‖² from φ_0 = θ,
    and the TaskLosses cache of the support loss at φ_S (for H v there). ``tl`` holds per-task
    vectors densely (rank 0), so φ is a plain (T, P) array.

    Refuses a divergent loop. For a twice-differentiable loss, with g = ∇R(φ_k) and some ξ on the step,

        R(φ_{k+1}) − R(φ_k) = −α ‖g‖² + α²/2 gᵀ(H(ξ) + λI) g,

    so R rises (beyond rounding) only where α (λ + λ_max(H(ξ))) > 2: R must fall at every step.
    ``kinks`` (a ReLU network): crossing a kink the gradient jumps and R may rise a little with a
    stable step (measured on small ReLU nets: about half the steps near convergence), so there R must
    only stay below where it started, R(θ) = L_support(θ), which a divergent loop leaves behind."""
    xp, T = array_module(theta), xs.shape[0]
    phi = xp.repeat(theta[None], T, axis=0)
    R, grad_R, cache = _regularised(tl, phi, theta, xs, ys, lam)
    slack = 100 * np.finfo(theta.dtype).eps        # R's rounding: it may not fall at convergence
    for k in range(steps):
        phi = phi - inner_lr * grad_R
        R_next, grad_R, cache = _regularised(tl, phi, theta, xs, ys, lam)
        grew = ~(R_next <= R + slack * xp.abs(R))       # NaN and inf count as growing
        if bool(grew.any()):
            t = int(xp.argmax(grew))
            raise ValueError(
                f"iMAML's inner steps diverge: task {t}'s regularised support loss L_support + λ/2 ‖φ − θ‖² "
                f"grew from {float(R[t]):.6g}{' (its start)' if kinks else ''} to {float(R_next[t]):.6g} at "
                f"inner step {k + 1} (inner_lr={inner_lr:g}, lam={lam:g}); gradient descent on it needs "
                f"inner_lr·(lam + λ_max) < 2, λ_max the largest eigenvalue of the support-loss Hessian: "
                f"take a smaller inner_lr")
        if not kinks:
            R = R_next
    return phi, cache


def _regularised(tl, phi, theta, xs, ys, lam):
    """R_t(φ_t) (T,), ∇R_t(φ_t) = ∇L_support,t(φ_t) + λ (φ_t − θ) (T, P), and the support cache."""
    losses, g, cache = tl.value_and_grad(tl.start(phi), xs, ys)
    pull = phi - theta
    R = losses + lam / 2 * (pull * pull).sum(axis=1)
    return R, tl.flat(g, phi.shape[:1], phi.dtype) + lam * pull, cache


def cg(matvec, b, lam, max_steps, tol):
    """Solve A x_t = b_t for every task t at once by conjugate gradient, A = I + H_t/λ applied by
    ``matvec`` (T, P) -> (T, P); per-task scalars are (T,) vectors, and a task that has converged
    stops moving (its step is 0).

    A positive definite is checked on the way: CG's pᵀAp are the pivots of A restricted to the
    Krylov space, so one <= 0 before convergence shows a direction p of curvature
    pᵀHp / pᵀp = λ (pᵀAp / pᵀp − 1) <= −λ (by Sylvester's law of inertia it shows up whenever b has
    a component above cg_tol along an eigenvector with λ_i(H) <= −λ)."""
    xp = array_module(b)
    x, r = xp.zeros_like(b), b.copy()
    p, rr = r.copy(), (r * r).sum(axis=1)
    norm_b = xp.sqrt(rr)
    target = tol * norm_b
    for _ in range(max_steps):
        active = xp.sqrt(rr) > target
        if not bool(active.any()):
            return x
        Ap = matvec(p)
        pAp = (p * Ap).sum(axis=1)
        bad = active & ~(pAp > 0)
        if bool(bad.any()):
            t = int(xp.argmax(bad))
            curvature = lam * (float(pAp[t]) / float((p[t] * p[t]).sum()) - 1)
            raise ValueError(
                f"iMAML: I + H/λ is not positive definite for task {t}: CG found pᵀ(I + H/λ)p = "
                f"{float(pAp[t]):.6g} <= 0, a direction of curvature pᵀHp/pᵀp = {curvature:.6g} <= −λ = "
                f"{-lam:g} in the support-loss Hessian H at φ_S; the implicit gradient needs "
                f"λ > −λ_min(H) (here lam > {-curvature:.6g} at least); at a minimum of R, H + λI is "
                f"positive semi-definite, so more inner steps may also help")
        a = xp.where(active, rr / xp.where(active, pAp, 1), 0)
        x = x + a[:, None] * p
        r = r - a[:, None] * Ap
        rr_next = (r * r).sum(axis=1)
        p = r + xp.where(active, rr_next / xp.where(active, rr, 1), 0)[:, None] * p
        rr = rr_next
    if bool((xp.sqrt(rr) > target).any()):
        residual = xp.sqrt(rr) / xp.where(norm_b > 0, norm_b, 1)
        t = int(xp.argmax(residual))
        raise ValueError(
            f"iMAML: CG did not converge in cg_steps={max_steps} iterations: task {t} (the worst) has "
            f"relative residual ‖b − (I + H/λ)x‖/‖b‖ = {float(residual[t]):.3g} > cg_tol = {tol:g}; raise "
            f"cg_steps, or lam (a larger λ makes I + H/λ better conditioned)")
    return x


def _exact_solve(net, loss, phi, xs, ys, b, inner_lr, lam, max_bytes):
    """x_t = (I + H_t/λ)⁻¹ b_t with each task's explicit Hessian at φ_S, one task at a time, after
    checking both conditions on its eigenvalues: λ_min > −λ and α (λ + λ_max) < 2."""
    fast = network.supports(net, loss)[0]
    xp, P = array_module(phi), phi.shape[1]
    x = xp.empty_like(b)
    for t in range(len(phi)):
        if fast:
            H = mlp_hessian(net, phi[t], xs[t], ys[t], loss=loss)
        else:
            H = hessian(lambda th: loss(net(th, xs[t]), ys[t]), max_bytes=max_bytes)(phi[t])
        eig = xp.linalg.eigvalsh(H)
        low, high = float(eig[0]), float(eig[-1])
        if not low > -lam:
            raise ValueError(
                f"iMAML: I + H/λ is not positive definite for task {t}: the support-loss Hessian at φ_S "
                f"has λ_min = {low:.6g} <= −λ = {-lam:g}; the implicit gradient needs λ > −λ_min "
                f"(lam > {-low:.6g}); at a minimum of R, H + λI is positive semi-definite, so more inner "
                f"steps may also help")
        if not inner_lr * (lam + high) < 2:
            raise ValueError(
                f"iMAML's inner steps are unstable for task {t}: inner_lr·(lam + λ_max) = "
                f"{inner_lr:g}·({lam:g} + {high:.6g}) = {inner_lr * (lam + high):.6g} >= 2 (λ_max of the "
                f"support-loss Hessian at φ_S); gradient descent on L_support + λ/2 ‖φ − θ‖² needs it < 2: "
                f"take inner_lr < {2 / (lam + high):.6g}")
        x[t] = xp.linalg.solve(xp.eye(P, dtype=H.dtype) + H / lam, b[t])
    return x


def _check_hessian_memory_for_imaml(P, dtype, max_bytes):
    """One task's Hessian and I + H/λ at a time, plus the workspace of one Hessian."""
    _check_hessian_memory(P, dtype, 2, max_bytes, "imaml_value_and_grad(solver='exact')",
                          hint="solver='cg' solves with Hessian-vector products, in O(P) memory")



