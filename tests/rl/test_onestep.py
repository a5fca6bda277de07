"""The exact check of issue 13: on a one-step problem with a closed form, the unbiased (DiCE)
meta-gradient's mean lies within 3 standard errors of the exact derivative, the biased one's beyond 5."""
import numpy as np
import pytest

from minimaml.rl import onestep

# θ = 0, goal 1 (d = −1), σ = 1, α = 0.1, N = 4 pre-update and M = 4 post-update samples.
CASE = dict(theta=0.0, goal=1.0, sigma=1.0, alpha=0.1, n=4)
REPLICATES = 200_000


def test_the_closed_form_value_matches_a_direct_simulation():
    """E J(θ') from a plain NumPy simulation of the inner step (not the library's code)."""
    theta, g, s, a, n = CASE.values()
    rng = np.random.default_rng(11)
    acts = theta + s * rng.standard_normal((1_000_000, n))
    g_hat = np.mean(-((acts - g) ** 2) * (acts - theta) / s**2, axis=1)
    J = -((theta + a * g_hat - g) ** 2) - s**2                 # J_post(θ') exactly, per replicate
    value, _ = onestep.closed_form(**CASE)
    assert abs(J.mean() - value) < 3 * J.std() / np.sqrt(J.size), (J.mean(), value)


def test_the_closed_form_slope_is_the_derivative_of_the_closed_form_value():
    eps = 1e-6
    up = onestep.closed_form(**{**CASE, "theta": CASE["theta"] + eps})[0]
    down = onestep.closed_form(**{**CASE, "theta": CASE["theta"] - eps})[0]
    assert onestep.closed_form(**CASE)[1] == pytest.approx((up - down) / (2 * eps), rel=1e-8)


@pytest.mark.parametrize("case", [CASE, dict(theta=0.5, goal=-0.5, sigma=0.8, alpha=0.2, n=3)])
def test_dice_is_unbiased_and_the_biased_estimator_is_not(case):
    exact = onestep.closed_form(**case)[1]
    z = {}
    for estimator in ("dice", "biased"):
        samples, _ = onestep.meta_gradient_samples(m=4, replicates=REPLICATES, estimator=estimator, rng=2017, **case)
        z[estimator] = (samples.mean() - exact) / (samples.std(ddof=1) / np.sqrt(samples.size))
    assert abs(z["dice"]) < 3, z
    assert abs(z["biased"]) > 5, z


def test_the_post_update_returns_average_to_the_closed_form_value():
    samples, post_return = onestep.meta_gradient_samples(m=4, replicates=REPLICATES, estimator="dice", rng=3, **CASE)
    value = onestep.closed_form(**CASE)[0]
    assert post_return == pytest.approx(value, abs=0.02)      # SE ≈ 0.004 for 800,000 post-update samples
