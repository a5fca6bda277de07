"""One meta-iteration and the test-time adaptation."""
import numpy as np
import pytest

from minimaml.rl import maml_rl
from minimaml.rl.navigation import Navigation
from minimaml.rl.policy import GaussianMLPPolicy


def test_meta_step_gives_a_finite_gradient_and_returns_before_and_after():
    env, policy = Navigation(horizon=6), GaussianMLPPolicy((2, 8, 2))
    theta = policy.init(0)
    goals = env.sample_goals(3, rng=0)
    steps = {est: maml_rl.meta_step(env, policy, theta, goals, 0.5, np.random.default_rng(1), 4, estimator=est)
             for est in ("dice", "biased")}
    for s in steps.values():
        assert s.grad.shape == (policy.num_params,) and np.isfinite(s.grad).all()
        assert s.loss == pytest.approx(-s.post_return) and s.adapted.shape == (3, policy.num_params)
    # Same samples (same seed): same value, different gradients (the samples' score).
    assert steps["dice"].loss == steps["biased"].loss
    assert not np.allclose(steps["dice"].grad, steps["biased"].grad)


def test_joint_step_is_the_policy_gradient_of_the_return_at_theta():
    env, policy = Navigation(horizon=6), GaussianMLPPolicy((2, 8, 2))
    goals = env.sample_goals(3, rng=0)
    loss, g, ret = maml_rl.joint_step(env, policy, policy.init(0), goals, np.random.default_rng(1), 4)
    assert loss == pytest.approx(-ret) and np.isfinite(g).all()


def test_adaptation_curve_uses_the_released_step_sizes_and_fresh_trajectories():
    assert maml_rl.eval_step_sizes(0.5, 3) == [0.5, 0.25, 0.25]
    env, policy = Navigation(horizon=6), GaussianMLPPolicy((2, 8, 2))
    goals = env.sample_goals(4, rng=0)
    curve, kept = maml_rl.adaptation_curve(env, policy, policy.init(0), goals, [0.5, 0.25], np.random.default_rng(2),
                                           5, keep=True)
    assert curve.shape == (4, 3) and len(kept) == 3
    np.testing.assert_allclose(curve[:, 1], kept[1].returns().mean(axis=1))


def test_one_inner_step_from_a_standing_policy_moves_towards_the_goal():
    """A policy that stands still (mean 0) learns from one step to move towards its goal."""
    env, policy = Navigation(horizon=20), GaussianMLPPolicy((2, 8, 2), init_std=1.0)
    theta = policy.init(0)
    theta[: policy.net.num_params] = 0.0                       # μ_θ(s) = 0 everywhere
    goals = np.array([[0.4, 0.4], [-0.4, 0.3]])
    curve = maml_rl.adaptation_curve(env, policy, theta, goals, [2.0], np.random.default_rng(3), 200)
    assert np.all(curve[:, 1] > curve[:, 0] + 2.0), curve


def test_leave_one_out_mean():
    np.testing.assert_allclose(maml_rl.leave_one_out_mean(np.array([1.0, 2.0, 6.0])), [4.0, 3.5, 1.5])
    np.testing.assert_array_equal(maml_rl.leave_one_out_mean(np.array([5.0])), [0.0])
