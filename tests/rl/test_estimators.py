"""The surrogates and the two meta-gradients, term by term against their formulas."""
import numpy as np
import pytest

from minimaml.autodiff import check_grads, grad, ops, vjp
from minimaml.meta.inner import per_task
from minimaml.rl import estimators, maml_rl, returns
from minimaml.rl.navigation import Navigation
from minimaml.rl.policy import GaussianMLPPolicy


@pytest.fixture(scope="module")
def small():
    """A tiny policy on 4-step navigation: 3 tasks, 5 trajectories before and after one inner step."""
    env, policy = Navigation(horizon=4), GaussianMLPPolicy((2, 6, 2))
    theta = policy.init(0)
    rng = np.random.default_rng(0)
    goals = env.sample_goals(3, rng)
    pre = env.rollout(policy, theta, goals, 5, rng)
    weights = returns.inner_advantages(pre)
    adapted = estimators.inner_step(policy, theta, pre, weights, 0.5)
    post = env.rollout(policy, adapted, goals, 5, rng)
    return env, policy, theta, pre, weights, adapted, post


def test_the_magic_box_is_one_with_the_gradient_and_curvature_of_its_exponent():
    f = lambda x: ops.sin(x) * x                                        # noqa: E731
    df = lambda x: np.cos(x) * x + np.sin(x)                            # noqa: E731
    d2f = lambda x: -np.sin(x) * x + 2 * np.cos(x)                      # noqa: E731
    x = np.array(0.7)
    assert estimators.magic_box(f(x)) == 1.0
    np.testing.assert_allclose(grad(lambda y: estimators.magic_box(f(y)))(x), df(x), rtol=1e-12)
    # □ = exp(f − ⊥f): its second derivative is f'' + f'², DiCE's score-function Hessian term.
    np.testing.assert_allclose(grad(grad(lambda y: estimators.magic_box(f(y))))(x), d2f(x) + df(x) ** 2, rtol=1e-12)


def test_dice_objective_is_the_mean_return_with_the_reinforce_gradient(small):
    _, policy, _, _, _, adapted, post = small
    b = returns.cross_fitted_baseline(post.obs, returns.discounted_cumsum(post.rewards, 1.0), post.mask)
    value = estimators.dice_objective(estimators.log_probs(policy, adapted, post), post.rewards, post.mask, b)
    np.testing.assert_allclose(value, post.returns().mean(axis=1), rtol=1e-12)
    # The gradient: 1/M Σ_i Σ_t ∇log π(u_it|s_it) (Σ_{t'≥t} r_it' − b_it), per task.
    coef = (returns.discounted_cumsum(post.rewards, 1.0) - b) * post.mask / post.rewards.shape[1]
    want = grad(lambda th: ops.sum(estimators.log_probs(policy, th, post) * coef))(adapted)
    got = grad(lambda th: ops.sum(estimators.dice_objective(estimators.log_probs(policy, th, post), post.rewards,
                                                            post.mask, b)))(adapted)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_the_inner_step_is_each_tasks_own_policy_gradient_step(small):
    _, policy, theta, pre, weights, adapted, _ = small
    for t in range(3):
        def one(th):
            return -(estimators.log_probs(policy, th, pre)[t] * pre.mask[t] * weights[t]).sum() / pre.mask[t].sum()
        np.testing.assert_allclose(adapted[t], theta - 0.5 * grad(one)(theta), rtol=1e-12, atol=1e-15)


def test_the_inner_steps_jacobian_matches_finite_differences(small):
    _, policy, theta, pre, weights, _, _ = small
    v = np.random.default_rng(5).normal(size=(3, policy.num_params))
    check_grads(lambda th: ops.sum(estimators.inner_step(policy, th, pre, weights, 0.5) * v), theta, order=1)


def test_biased_is_the_chain_rule_through_the_step_and_dice_adds_the_samples_score(small):
    _, policy, theta, pre, weights, adapted, post = small
    b = returns.cross_fitted_baseline(post.obs, returns.discounted_cumsum(post.rewards, 1.0), post.mask)
    J = post.returns().mean(axis=1)
    task_b = maml_rl.leave_one_out_mean(J)

    def meta(estimator):
        return grad(lambda th: estimators.meta_objective(policy, th, pre, weights, post, 0.5, estimator, b,
                                                         task_b))(theta)

    # biased: 1/T Σ_t (∂θ'_t/∂θ)ᵀ ∇J_dice,t(θ'_t)
    g_post = grad(lambda th: ops.sum(estimators.dice_objective(estimators.log_probs(policy, th, post),
                                                               post.rewards, post.mask, b)))(adapted)
    _, pullback = vjp(lambda th: estimators.inner_step(policy, th, pre, weights, 0.5), theta)
    np.testing.assert_allclose(meta("biased"), pullback(g_post) / 3, rtol=1e-9, atol=1e-12)
    # dice − biased = 1/T Σ_t (Ĵ_t − b_t) ∇ log π_θ(τ_t,1..N)
    weight = pre.mask * ((J - task_b) / 3)[:, None, None]
    score = grad(lambda th: ops.sum(estimators.log_probs(policy, th, pre) * weight))
    np.testing.assert_allclose(meta("dice") - meta("biased"), score(theta), rtol=1e-8, atol=1e-10)


def test_the_meta_objectives_value_is_the_post_update_return(small):
    _, policy, theta, pre, weights, _, post = small
    for estimator in estimators.ESTIMATORS:
        value = estimators.meta_objective(policy, theta, pre, weights, post, 0.5, estimator)
        assert value == pytest.approx(post.returns().mean(), rel=1e-12)
    with pytest.raises(ValueError, match="unknown estimator 'exact'"):
        estimators.meta_objective(policy, theta, pre, weights, post, 0.5, "exact")


def test_float32_stays_float32(small):
    _, policy, theta, pre, weights, _, post = small
    g = grad(lambda th: estimators.meta_objective(policy, th, pre, weights, post, 0.5))(theta.astype(np.float32))
    assert g.dtype == np.float32


def test_per_task_thetas_give_per_task_meta_gradients(small):
    """The check in test_onestep.py differentiates with respect to one copy of θ per task: the rows
    must sum to the shared θ's gradient."""
    _, policy, theta, pre, weights, _, post = small
    shared = grad(lambda th: estimators.meta_objective(policy, th, pre, weights, post, 0.5))(theta)
    rows = grad(lambda th: estimators.meta_objective(policy, th, pre, weights, post, 0.5))(per_task(theta, 3))
    np.testing.assert_allclose(rows.sum(axis=0), shared, rtol=1e-9, atol=1e-12)
