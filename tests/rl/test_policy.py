"""The Gaussian MLP policy: its log-density, batching, derivatives and samples."""
import math

import numpy as np

from minimaml.autodiff import check_grads
from minimaml.rl.policy import GaussianMLPPolicy


def test_log_prob_is_the_diagonal_gaussian_density():
    policy = GaussianMLPPolicy((2, 8, 2), init_std=0.7)
    theta = policy.init(0)
    theta[-2:] = [math.log(0.7), math.log(1.3)]
    rng = np.random.default_rng(0)
    obs, u = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    mu = policy.net(theta[:-2], obs)
    sigma = np.array([0.7, 1.3])
    want = np.sum(-0.5 * ((u - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * math.log(2 * math.pi), axis=-1)
    np.testing.assert_allclose(policy.log_prob(theta, obs, u), want, rtol=1e-12)


def test_batched_thetas_give_each_task_its_own_policy():
    policy = GaussianMLPPolicy((2, 8, 2))
    thetas = np.stack([policy.init(1), policy.init(2)])
    rng = np.random.default_rng(1)
    obs, u = rng.normal(size=(2, 4, 2)), rng.normal(size=(2, 4, 2))
    together = policy.log_prob(thetas, obs, u)
    for t in range(2):
        np.testing.assert_allclose(together[t], policy.log_prob(thetas[t], obs[t], u[t]), rtol=1e-12)


def test_log_prob_derivatives_match_finite_differences_to_second_order():
    policy = GaussianMLPPolicy((2, 5, 2), activation="relu")
    rng = np.random.default_rng(2)
    obs, u = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    check_grads(lambda th: policy.log_prob(th, obs, u).sum(), policy.init(3), order=2)


def test_samples_have_the_policy_mean_and_standard_deviation():
    policy = GaussianMLPPolicy((2, 8, 2), init_std=0.5)
    theta, obs = policy.init(4), np.zeros((1, 200000, 2))
    u = policy.act(theta, obs, np.random.default_rng(3))
    mu = policy.net(theta[:-2], obs[:, :1])[0, 0]
    np.testing.assert_allclose(u.mean(axis=(0, 1)), mu, atol=0.005)
    np.testing.assert_allclose(u.std(axis=(0, 1)), 0.5, rtol=0.01)
    np.testing.assert_array_equal(policy.act(theta, obs[:, :3], None, deterministic=True),
                                  policy.net(theta[:-2], obs[:, :3]))
