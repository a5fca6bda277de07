"""MAML for reinforcement learning (Finn et al. 2017, Algorithm 3): one meta-iteration, and adaptation.

    sample T goals g_t ~ U[−0.5, 0.5]²
    per task: τ_1..τ_N ~ π_θ (pre-update),  Â from them (returns.inner_advantages)
              θ'_t = θ − α ∇θ L_in(θ)                              the inner policy-gradient step
              τ'_1..τ'_M ~ π_θ'_t (post-update)
    meta-gradient of J_meta(θ) = 1/T Σ_t E[R(τ')]  (estimators.meta_objective: "dice" or "biased")
    θ ← Adam(θ, −∇J_meta)                                          (train.py)

At test (the released code's ``test_maml_point.py``) a policy adapts by the same inner step, the
first of step α, later ones α/2, each on fresh trajectories of the current policy; the return
after k steps is the mean return of the trajectories sampled with θ_k.
"""
import dataclasses

import numpy as np

from ..autodiff import value_and_grad
from ..meta.inner import per_task
from . import estimators, returns


@dataclasses.dataclass
class MetaStep:
    """One meta-iteration's numbers: the loss −J_meta, its gradient (P,), the mean returns before
    and after the inner step (over tasks and trajectories), and the adapted θ' (T, P)."""
    loss: float
    grad: np.ndarray
    pre_return: float
    post_return: float
    adapted: np.ndarray


def leave_one_out_mean(x):
    """b_t = mean of x over the other tasks (T,): a per-task baseline independent of task t's samples."""
    T = x.shape[0]
    return (x.sum() - x) / (T - 1) if T > 1 else np.zeros_like(x)


def post_baseline(traj):
    """The post-update trajectories' baseline: a linear feature baseline for the undiscounted
    reward-to-go, cross-fitted (each trajectory's from the task's other ones), so the outer policy
    gradient stays unbiased."""
    return returns.cross_fitted_baseline(traj.obs, returns.discounted_cumsum(traj.rewards, 1.0), traj.mask)


def meta_step(env, policy, theta, goals, inner_lr, rng, num_trajectories=20, post_trajectories=None,
              estimator="dice", gamma=0.99, gae_lambda=1.0):
    """One meta-iteration's meta-gradient for the goals (T, 2) (``MetaStep``)."""
    M = post_trajectories or num_trajectories
    pre = env.rollout(policy, theta, goals, num_trajectories, rng)                  # τ ~ π_θ
    weights = returns.inner_advantages(pre, gamma, gae_lambda)                       # Â: constants
    adapted = estimators.inner_step(policy, theta, pre, weights, inner_lr)           # θ' (T, P), plain
    post = env.rollout(policy, adapted, goals, M, rng)                               # τ' ~ π_θ'
    post_returns = post.returns().mean(axis=1)                                       # (T,)

    def loss(th):
        return -estimators.meta_objective(policy, th, pre, weights, post, inner_lr, estimator,
                                          post_baseline=post_baseline(post),
                                          task_baseline=leave_one_out_mean(post_returns))
    value, g = value_and_grad(loss)(theta)
    return MetaStep(float(value), g, float(pre.returns().mean()), float(post_returns.mean()), adapted)


def joint_step(env, policy, theta, goals, rng, num_trajectories=20):
    """The *pretrained* baseline's step: the policy gradient of the expected return over all tasks
    at θ itself (no adaptation), with the same cross-fitted baseline. Returns (loss, gradient, return)."""
    traj = env.rollout(policy, theta, goals, num_trajectories, rng)
    value, g = value_and_grad(lambda th: -estimators.return_objective(policy, th, traj, post_baseline(traj)))(theta)
    return float(value), g, float(traj.returns().mean())


def eval_step_sizes(inner_lr, steps):
    """The released test protocol's step sizes: α for the first step, α/2 for the later ones."""
    return [inner_lr] + [inner_lr / 2] * (steps - 1)


def adaptation_curve(env, policy, theta, goals, step_sizes, rng, num_trajectories=40, gamma=0.99,
                     gae_lambda=1.0, keep=False):
    """Adapt to each goal by len(step_sizes) inner steps, each on num_trajectories fresh trajectories
    of the current policy. Returns (T, S + 1): the mean return after 0, 1, …, S steps; with
    ``keep``, also the list of the S + 1 ``Trajectories`` (for plots)."""
    thetas = per_task(np.asarray(theta, dtype=float), len(goals))
    curve, kept = np.zeros((len(goals), len(step_sizes) + 1)), []
    for k in range(len(step_sizes) + 1):
        traj = env.rollout(policy, thetas, goals, num_trajectories, rng)
        curve[:, k] = traj.returns().mean(axis=1)
        kept.append(traj)
        if k < len(step_sizes):
            weights = returns.inner_advantages(traj, gamma, gae_lambda)
            thetas = estimators.inner_step(policy, thetas, traj, weights, step_sizes[k])
    return (curve, kept) if keep else curve
