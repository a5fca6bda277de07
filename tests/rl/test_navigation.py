"""The navigation environment: the released code's dynamics, rewards and episode end, vectorised."""
import numpy as np
import pytest

from minimaml.rl.navigation import Navigation


class Constant:
    """A policy that always outputs u (for the dynamics' tests)."""

    def __init__(self, u):
        self.u = np.asarray(u, dtype=float)

    def act(self, theta, obs, rng, deterministic=False):
        return np.broadcast_to(self.u, obs.shape).copy()


def test_step_scales_clips_and_rewards_the_distance_after_the_move():
    env = Navigation()
    new, r, done = env.step(np.zeros(2), np.array([0.3, 0.0]), np.array([0.5, 5.0]))
    np.testing.assert_allclose(new, [0.05, 0.1])            # 0.1·u, clipped to ±0.1
    np.testing.assert_allclose(r, -np.hypot(0.25, 0.1))
    assert not done
    sq = Navigation(reward="squared").step(np.zeros(2), np.array([0.3, 0.0]), np.array([0.5, 5.0]))[1]
    np.testing.assert_allclose(sq, -(0.25**2 + 0.1**2))


def test_standing_still_scores_minus_horizon_times_the_distance():
    env = Navigation()
    goals = env.sample_goals(5, rng=0)
    traj = env.rollout(Constant([0.0, 0.0]), None, goals, 3, rng=0)
    assert traj.rewards.shape == (5, 3, 100) and traj.positions.shape == (5, 3, 101, 2)
    np.testing.assert_allclose(traj.returns(), -100 * np.linalg.norm(goals, axis=1)[:, None] * np.ones((1, 3)))
    assert traj.mask.all()


def test_an_episode_ends_within_the_box_and_then_stays_put_with_zero_reward():
    env = Navigation()
    goal = np.array([[0.3, 0.2]])                   # reached after 3 steps of (0.1, 0.1·2/3)
    traj = env.rollout(Constant([1.0, 2 / 3]), None, goal, 2, rng=0)
    np.testing.assert_array_equal(traj.mask[0, 0, :4], [1, 1, 1, 0])
    assert traj.mask[0, :, 3:].sum() == 0 and np.all(traj.rewards[0, :, 3:] == 0)
    np.testing.assert_allclose(traj.positions[0, 0, 3:], np.broadcast_to([0.3, 0.2], (98, 2)), atol=1e-12)
    assert traj.returns()[0, 0] == pytest.approx(-(np.hypot(0.2, 0.4 / 3) + np.hypot(0.1, 0.2 / 3) + np.hypot(0, 0)),
                                                 abs=1e-9)


def test_goals_are_uniform_in_the_square_and_seeded():
    env = Navigation()
    g = env.sample_goals(20000, rng=1)
    assert g.shape == (20000, 2) and g.min() >= -0.5 and g.max() <= 0.5
    assert abs(g.mean()) < 0.01
    np.testing.assert_array_equal(env.sample_goals(3, rng=4), env.sample_goals(3, rng=4))


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown reward 'cubed'"):
        Navigation(reward="cubed")
    with pytest.raises(ValueError, match="horizon"):
        Navigation(horizon=0)


@pytest.mark.parametrize("goals, n, theta_shape, match", [
    (np.zeros(2), 3, (4,), r"goals must be \(T, 2\)"),
    (np.zeros((2, 3)), 3, (4,), r"goals must be \(T, 2\)"),
    (np.full((2, 2), np.nan), 3, (4,), "goals must be finite"),
    (np.zeros((2, 2)), 0, (4,), "num_trajectories must be an int >= 1"),
    (np.zeros((2, 2)), 2.5, (4,), "num_trajectories must be an int >= 1"),
    (np.zeros((2, 2)), 3, (3, 4), r"theta must be \(P,\), shared by the tasks, or \(T, P\) with T = 2"),
])
def test_rollout_refuses_bad_input_by_name(goals, n, theta_shape, match):
    with pytest.raises(ValueError, match=match):
        Navigation().rollout(Constant([0.0, 0.0]), np.zeros(theta_shape), goals, n, rng=0)
