"""Returns, GAE, the linear feature baseline and standardisation."""
import numpy as np

from minimaml.rl import returns


def _data(T=3, N=6, H=7, seed=0):
    rng = np.random.default_rng(seed)
    rewards, obs = rng.normal(size=(T, N, H)), rng.normal(size=(T, N, H, 2))
    mask = np.ones((T, N, H))
    mask[0, 1, 4:] = 0                        # an episode that ended after 4 steps
    return obs, rewards * mask, mask


def test_discounted_cumsum_is_the_reward_to_go():
    r = np.random.default_rng(1).normal(size=(2, 3, 5))
    want = np.stack([sum(0.9**k * r[..., t + k] for k in range(5 - t)) for t in range(5)], axis=-1)
    np.testing.assert_allclose(returns.discounted_cumsum(r, 0.9), want, rtol=1e-12)


def test_gae_with_lambda_one_is_return_minus_baseline_and_with_zero_the_td_error():
    obs, r, mask = _data()
    b = np.random.default_rng(2).normal(size=r.shape) * mask
    np.testing.assert_allclose(returns.gae(r, b, mask, 0.99, 1.0), (returns.discounted_cumsum(r, 0.99) - b) * mask,
                               atol=1e-12)
    next_b = np.concatenate([b[..., 1:], np.zeros(b.shape[:-1] + (1,))], axis=-1)
    np.testing.assert_allclose(returns.gae(r, b, mask, 0.99, 0.0), (r + 0.99 * next_b - b) * mask, atol=1e-12)


def test_the_linear_baseline_recovers_targets_that_are_linear_in_its_features():
    obs, _, mask = _data(N=10)
    w = np.random.default_rng(3).normal(size=(3, 8))
    targets = np.einsum("tnhf,tf->tnh", returns.features(obs), w) * mask
    fitted = returns.fit_linear_baseline(obs, targets, mask, reg=1e-12)
    # The time features t/100, (t/100)², (t/100)³ are nearly collinear over 7 steps: compare predictions.
    np.testing.assert_allclose(returns.predict_linear_baseline(fitted, obs, mask), targets, atol=1e-7)


def test_the_cross_fitted_baseline_ignores_the_trajectory_it_is_used_for():
    obs, r, mask = _data(N=8)
    b = returns.cross_fitted_baseline(obs, r, mask)
    r2 = r.copy()
    r2[:, 0] += 100.0                          # trajectory 0's own targets: its baseline must not move
    b2 = returns.cross_fitted_baseline(obs, r2, mask)
    np.testing.assert_array_equal(b2[:, 0], b[:, 0])
    assert not np.allclose(b2[:, 1], b[:, 1])  # the other fold's baselines do see it


def test_standardized_advantages_have_mean_zero_and_unit_std_on_valid_steps():
    obs, r, mask = _data()
    a = returns.standardize(r * 5 + 3, mask)
    for t in range(3):
        valid = a[t][mask[t] > 0]
        np.testing.assert_allclose([valid.mean(), valid.std()], [0, 1], atol=1e-6)
    assert np.all(a[mask == 0] == 0)
