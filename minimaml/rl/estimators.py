"""Surrogate objectives whose gradients are MAML-RL's policy gradients, and the two meta-gradients.

A trajectory τ = (s_0, u_0, r_0, …, s_{H−1}, u_{H−1}, r_{H−1}); the dynamics do not depend on θ, so
∇θ log p_θ(τ) = ∇θ log π_θ(τ) with log π_θ(τ) = Σ_t log π_θ(u_t | s_t), and R(τ) = Σ_t r_t.

**Inner step** (the released code's vanilla policy gradient), on N pre-update trajectories
τ_1..τ_N ~ π_θ of one task, with advantages Â computed from them (constants, ``returns.py``):

    L_in(θ) = − Σ_{n,t} m_nt log π_θ(u_nt | s_nt) Â_nt / Σ m,      θ' = U(θ, τ) = θ − α ∇θ L_in(θ)

**Meta-objective**: the expected return after the step, J(θ) = E_{τ ~ π_θ} E_{τ' ~ π_θ'} [R(τ')].
The samples τ depend on θ too. Differentiating the expectation over τ by the product rule:

    ∇J(θ) = E_τ [ (∂U/∂θ)ᵀ ∇J_post(θ')  +  J_post(θ') ∇θ log π_θ(τ_1, …, τ_N) ],   J_post(θ') = E_{τ'}[R(τ')]
              └── "biased": differentiate through U with the samples held fixed ──┘  └─ the samples' score ─┘

The *biased* estimator (MAML's original code, and any autodiff through the inner surrogate that
treats the samples as data) keeps the first term only. The *unbiased* one adds the second.

**DiCE** (Foerster et al. 2018) writes both terms as one objective for the engine to differentiate.
The magic box □(x) = exp(x − ⊥x), with ⊥ a stop-gradient, has the value 1 and the gradient
∇□(x) = □(x) ∇x. With it (M post-update trajectories, ℓ_≤t = Σ_{t'≤t} log π_θ'(u_t' | s_t')):

    J_dice(θ') = 1/M Σ_i Σ_t m_it [ r_it □(ℓ_i,≤t)  +  (1 − □(log π_θ'(u_it | s_it))) b_it ]

has the value 1/M Σ_i R(τ'_i) and the gradient 1/M Σ_i Σ_t ∇log π_θ'(u_it|s_it) (Σ_{t'≥t} r_it' − b_it),
REINFORCE with causality and a baseline b (Mao et al. 2019's baseline term: value 0). Then

    unbiased ("dice"):  J_meta(θ) = □(log π_θ(τ_1..N)) · J_dice(U(θ, τ)) + (1 − □(log π_θ(τ_1..N))) · b_task
    biased:             J_meta(θ) = J_dice(U(θ, τ))

both with the value of the mean post-update return. Each estimate is exactly unbiased for its
term as long as every baseline is independent of the samples it multiplies: b_it of τ'_i
(``returns.cross_fitted_baseline``: fitted on the task's other trajectories), b_task of the task's
pre-update samples (e.g. a mean over the *other* tasks of the meta-batch). ∂U/∂θ is exact:
the engine differentiates ``grad`` of L_in (second order, like MAML's "autodiff" route).

Shapes: θ (P,) shared, or (T, P) one per task; trajectories (T, N, H, ...) (``navigation.Trajectories``:
obs, actions, rewards, mask). Every objective is a mean over tasks, to be *maximised*.
"""
import numpy as np

from ..autodiff import grad, ops
from ..autodiff.tensor import raw
from ..meta.inner import per_task

ESTIMATORS = ("dice", "biased")


def magic_box(x):
    """□(x) = exp(x − ⊥x): 1 in value, □(x)·∇x in gradient (⊥: ``raw``, the value as a constant)."""
    return ops.exp(x - raw(x))


def like(x, theta):
    """x as a plain array of θ's dtype: data enter the graph in θ's precision (float32 stays float32)."""
    return np.asarray(x, dtype=raw(theta).dtype)


def log_probs(policy, theta, traj):
    """log π_θ(u_t | s_t) of every step: θ (P,) or (T, P), traj (T, N, H, ...) -> (T, N, H)."""
    T, N, H = traj.rewards.shape
    obs = like(traj.obs, theta).reshape(T, N * H, -1)
    actions = like(traj.actions, theta).reshape(T, N * H, -1)
    return policy.log_prob(theta, obs, actions).reshape((T, N, H))


def inner_loss(policy, theta, traj, weights):
    """L_in(θ) = − Σ_{n,t} m log π_θ(u | s) Â / Σ m for every task: (T,). weights Â (T, N, H)."""
    count = like(traj.mask.sum(axis=(1, 2)), theta)
    return -ops.sum(log_probs(policy, theta, traj) * like(traj.mask * weights, theta), axis=(1, 2)) / count


def inner_step(policy, theta, traj, weights, step_size):
    """θ' = θ − α ∇θ L_in(θ), per task: θ (P,) or (T, P) -> (T, P).

    θ may be an engine Tensor: the step is then recorded (``grad`` inside a differentiated function),
    so the meta-gradient goes through it exactly, Hessian of L_in included."""
    thetas = per_task(theta, traj.rewards.shape[0]) if len(theta.shape) == 1 else theta
    # Each task's loss depends on its own row only, so ∇ of the sum is the stack of the T gradients.
    g = grad(lambda th: ops.sum(inner_loss(policy, th, traj, weights)))(thetas)
    return thetas - step_size * g


def dice_objective(logp, rewards, mask, baseline=None):
    """J_dice per task (T,): value the mean return 1/M Σ_i Σ_t r_it, gradient REINFORCE with causality
    (and the baseline b, if given: (T, M, H), independent of the trajectory it belongs to).
    logp (T, M, H) from ``log_probs``; rewards, mask (T, M, H)."""
    H = rewards.shape[-1]
    logp = logp * like(mask, logp)                            # steps after the end were never taken
    cumulative = logp @ like(np.triu(np.ones((H, H))), logp)  # ℓ_≤t = Σ_{t'≤t} log π_t'
    J = ops.sum(like(rewards, logp) * magic_box(cumulative), axis=(1, 2))
    if baseline is not None:
        J = J + ops.sum(like(mask * baseline, logp) * (1.0 - magic_box(logp)), axis=(1, 2))
    return J / rewards.shape[1]


def meta_objective(policy, theta, pre, weights, post, inner_lr, estimator="dice", post_baseline=None,
                   task_baseline=None):
    """J_meta(θ), the mean over tasks of the post-update return, whose gradient is the meta-gradient.

    pre: the pre-update trajectories (sampled with θ), weights their advantages Â for the inner
    step; post: the post-update trajectories (sampled with θ' = U(θ, pre)); post_baseline (T, M, H)
    and task_baseline (T,) are optional baselines (see the module docstring for what keeps them
    unbiased). estimator: "dice" (unbiased) or "biased" (the samples' score left out)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    adapted = inner_step(policy, theta, pre, weights, inner_lr)                     # θ' = U(θ, τ): (T, P)
    J = dice_objective(log_probs(policy, adapted, post), post.rewards, post.mask, post_baseline)
    if estimator == "dice":
        box = magic_box(ops.sum(log_probs(policy, theta, pre) * like(pre.mask, theta), axis=(1, 2)))  # □(log π_θ(τ))
        J = box * J + (1.0 - box) * like(0.0 if task_baseline is None else task_baseline, theta)
    return ops.mean(J)


def return_objective(policy, theta, traj, baseline=None):
    """J(θ) without adaptation, the mean over tasks of the return (value) with the policy gradient
    (gradient): the objective of the *pretrained* baseline policy, one policy for all tasks."""
    return ops.mean(dice_objective(log_probs(policy, theta, traj), traj.rewards, traj.mask, baseline))
