"""A one-step problem where the expected post-update return and its meta-gradient have a closed form.

It checks the estimators of ``estimators.py``, run unchanged, against exact numbers:

    policy   π_θ(a) = N(θ, σ²),  θ ∈ ℝ (P = 1), σ fixed;   one step, reward r(a) = −(a − g)²
    inner    N samples a_i ~ π_θ, REINFORCE without a baseline (``inner_step`` with Â = r):
             ĝ = 1/N Σ_i r(a_i) ∇θ log π_θ(a_i) = 1/N Σ_i r(a_i) (a_i − θ)/σ²,    θ' = θ + α ĝ
    post     J_post(θ') = E_{a ~ N(θ', σ²)} [−(a − g)²] = −(θ' − g)² − σ²

The closed form. Write d = θ − g and a_i = θ + σ ε_i with ε_i ~ N(0, 1); then
r(a_i)(a_i − θ)/σ² = −X_i/σ with X = (d + σε)² ε, whose moments follow from E ε² = 1, E ε⁴ = 3, E ε⁶ = 15
(odd moments 0):

    E X = 2dσ,   E X² = d⁴ + 18 d²σ² + 15 σ⁴,   Var X = d⁴ + 14 d²σ² + 15 σ⁴
    E ĝ = −2d = ∇J_post(θ)  (the inner estimate is unbiased),   Var ĝ = Var X / (N σ²)

    E J(θ') = −E (d + α ĝ)² − σ² = −(1 − 2α)² d² − α² (d⁴ + 14 d²σ² + 15 σ⁴) / (N σ²) − σ²
    d/dθ E J(θ') = −2 (1 − 2α)² d − α² (4 d³ + 28 d σ²) / (N σ²)

The second term of each line is the price of estimating the inner gradient from N samples: it
depends on θ, and only an estimator that differentiates through the sampling sees it.
"""
import math

import numpy as np

from ..autodiff import grad, ops
from ..meta.inner import per_task
from ..tasks.base import as_rng
from . import estimators
from .navigation import Trajectories

LOG_2PI = math.log(2.0 * math.pi)


class OneStepGaussian:
    """π_θ(a) = N(θ, σ²) with θ of shape (1,) (or (T, 1), one per task); the state is ignored."""

    num_params = 1

    def __init__(self, sigma=1.0):
        self.sigma = float(sigma)

    def _mean(self, theta):
        return theta.reshape((theta.shape[0], 1, 1)) if len(theta.shape) == 2 else theta

    def log_prob(self, theta, obs, actions):
        """log N(a; θ, σ²): actions (T, N, 1) -> (T, N)."""
        z = (actions - self._mean(theta)) / self.sigma
        return ops.sum(-0.5 * z * z, axis=-1) - math.log(self.sigma) - 0.5 * LOG_2PI

    def act(self, theta, obs, rng, deterministic=False):
        mean = np.broadcast_to(self._mean(np.asarray(theta)), obs.shape[:-1] + (1,))
        return mean if deterministic else mean + self.sigma * rng.standard_normal(mean.shape)


def rollout(policy, theta, goal, num_tasks, num_samples, rng):
    """num_tasks × num_samples one-step episodes: a ~ π_θ, r = −(a − g)², as ``Trajectories`` with H = 1."""
    obs = np.zeros((num_tasks, num_samples, 1))
    a = policy.act(theta, obs, rng)
    positions = np.zeros((num_tasks, num_samples, 2, 1))
    return Trajectories(positions, a[:, :, None, :], -((a[..., 0] - goal) ** 2)[..., None],
                        np.ones((num_tasks, num_samples, 1)), np.full((num_tasks, 1), goal))


def closed_form(theta, goal, sigma, alpha, n):
    """(E J(θ'), d/dθ E J(θ')) for the one-step problem (module docstring): exact numbers."""
    d, s2 = theta - goal, sigma**2
    value = -(1 - 2 * alpha) ** 2 * d**2 - alpha**2 * (d**4 + 14 * d**2 * s2 + 15 * s2**2) / (n * s2) - s2
    slope = -2 * (1 - 2 * alpha) ** 2 * d - alpha**2 * (4 * d**3 + 28 * d * s2) / (n * s2)
    return value, slope


def meta_gradient_samples(theta, goal, sigma, alpha, n, m, replicates, estimator, rng=None):
    """``replicates`` independent estimates of d/dθ E J(θ') by ``estimators.meta_objective``, each from
    n pre-update and m post-update samples: (replicates,), and the post-update returns' mean.

    The replicates run at once as ``replicates`` tasks that share θ, each its own copy: the
    gradient with respect to copy t is replicate t's estimate."""
    rng = as_rng(rng)
    policy = OneStepGaussian(sigma)
    theta = np.array([float(theta)])
    pre = rollout(policy, theta, goal, replicates, n, rng)
    adapted = estimators.inner_step(policy, theta, pre, pre.rewards, alpha)       # θ' (replicates, 1)
    post = rollout(policy, adapted, goal, replicates, m, rng)

    def total(thetas):     # Σ over replicates: the gradient with respect to row t is replicate t's alone
        return replicates * estimators.meta_objective(policy, thetas, pre, pre.rewards, post, alpha, estimator)
    return grad(total)(per_task(theta, replicates))[:, 0], float(post.returns().mean())
