"""Evaluation: a fixed seeded protocol, honest summaries (CI, median, diverged count), and the
step-size stability rule λ_max < 2/α that explains the "known trap"."""

import math

import numpy as np
import pytest

from minimaml.run.evaluate import (Protocol, diverged_mask, evaluate, finetune_curves, protocol_tasks, sharpness,
                               summarize)
from minimaml.nn import MLP
from minimaml.tasks import LinearRegression


def test_protocol_tasks_are_fixed_by_the_seed():
    p = Protocol(num_tasks=7, k=5, num_query=30)
    xs, ys, xq, yq, params = protocol_tasks(p)
    assert xs.shape == ys.shape == (7, 5, 1) and xq.shape == yq.shape == (7, 30, 1)
    np.testing.assert_array_equal(xq[3, :, 0], np.linspace(-5, 5, 30))
    np.testing.assert_allclose(yq, params["amplitude"][:, None, None] * np.sin(xq - params["phase"][:, None, None]))
    again = protocol_tasks(Protocol(num_tasks=7, k=5, num_query=30))
    np.testing.assert_array_equal(again[0], xs)
    other = protocol_tasks(Protocol(num_tasks=7, k=5, num_query=30, seed=1))
    assert not np.array_equal(other[0], xs)


def test_evaluate_is_reproducible_from_the_seed():
    net = MLP([1, 20, 20, 1])
    theta = net.init(0)
    p = Protocol(num_tasks=50, k=5, steps=(0, 1, 3))
    a, b = evaluate(net, theta, p), evaluate(net, theta, p)
    assert [vars(s) for s in a] == [vars(s) for s in b]
    c = evaluate(net, theta, Protocol(num_tasks=50, k=5, steps=(0, 1, 3), seed=5))
    assert a[1].mean != c[1].mean
    assert [s.steps for s in a] == [0, 1, 3] and all(s.num_tasks == 50 for s in a)
    assert a[2].mean < a[0].mean                     # a few small steps help on average


def test_summarize_reports_mean_ci_median_and_diverged():
    curves = np.array([[1.0, 0.5, 0.25],
                       [2.0, 1.0, 30.0],             # > 10x its start: diverged at step 2
                       [4.0, 2.0, np.inf],           # non-finite: diverged
                       [3.0, 1.5, 1.0]])
    yq = np.full((4, 3, 1), 0.1)                     # MSE of predicting 0: 0.01, below every start
    s0, s1, s2 = summarize(curves, (0, 1, 2), yq)
    assert s0.mean == 2.5 and s0.diverged == 0
    assert s1.mean == 1.25 and s1.median == 1.25 and s1.diverged == 0
    assert math.isclose(s1.ci95, 1.96 * np.std([0.5, 1.0, 2.0, 1.5], ddof=1) / 2)
    assert s2.mean == math.inf and s2.diverged == 2 and s2.median == 15.5


def test_a_fitted_task_whose_small_error_wobbles_is_not_diverged():
    curves = np.array([[0.01, 0.15, 0.02],          # 15x its start, but far below predicting 0
                       [0.01, 0.15, 40.0]])          # 40 > 10 x (mean y² = 1): diverged
    yq = np.ones((2, 5, 1))
    mask = diverged_mask(curves, yq)
    assert mask.tolist() == [[False, False, False], [False, False, True]]


def test_gradient_descent_diverges_exactly_when_lambda_max_exceeds_2_over_alpha():
    # A linear model on linear tasks: the support-loss Hessian is the constant 2/K X̃ᵀX̃, so
    # gradient descent with step α converges iff α < 2/λ_max — the rule behind the MAML trap.
    net = MLP([2, 1])
    batch = LinearRegression(dim=2).sample(4, 8, 8, np.random.default_rng(0))
    theta = net.init(0)
    lam = sharpness(net, theta, batch.xs, batch.ys, exact=True)
    power = sharpness(net, theta, batch.xs, batch.ys, iterations=300)
    for t in range(4):
        X = np.concatenate([batch.xs[t], np.ones((8, 1))], axis=1)
        assert math.isclose(lam[t], np.linalg.eigvalsh(2 / 8 * X.T @ X)[-1], rel_tol=1e-10)
    np.testing.assert_allclose(power, lam, rtol=1e-8)
    alpha_crit = 2 / lam                                          # per task
    stable = finetune_curves(net, theta, batch.xs, batch.ys, batch.xq, batch.yq, 0.9 * alpha_crit.min(), 200)
    unstable = finetune_curves(net, theta, batch.xs, batch.ys, batch.xq, batch.yq, 1.1 * alpha_crit.max(), 200)
    assert np.all(stable[:, -1] < stable[:, 0])
    assert all(s.diverged == 4 for s in summarize(unstable, (200,), batch.yq))
    assert summarize(stable, (200,), batch.yq)[0].diverged == 0


def test_backtracking_keeps_every_task_from_diverging_and_changes_nothing_when_stable():
    net = MLP([2, 1])
    batch = LinearRegression(dim=2).sample(4, 8, 8, np.random.default_rng(0))
    theta = net.init(0)
    alpha_crit = 2 / sharpness(net, theta, batch.xs, batch.ys, exact=True)
    args = (net, theta, batch.xs, batch.ys, batch.xq, batch.yq)
    too_big = 3 * alpha_crit.max()
    safe = finetune_curves(*args, too_big, 50, backtrack=True)
    assert np.isfinite(safe).all() and summarize(safe, (50,), batch.yq)[0].diverged == 0
    assert np.all(safe[:, -1] < safe[:, 0])
    stable = 0.5 * alpha_crit.min()          # every step lowers the support loss: no backtracking
    np.testing.assert_array_equal(finetune_curves(*args, stable, 20, backtrack=True),
                                  finetune_curves(*args, stable, 20))


@pytest.mark.parametrize("bad, match", [
    (dict(num_tasks=0), "num_tasks must be"),
    (dict(steps=()), "steps must be"),
    (dict(steps=(0, -1)), "steps must be"),
    (dict(inner_lr=-0.1), "inner_lr must be > 0"),
])
def test_bad_protocol_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        Protocol(**bad)


def test_sharpness_needs_at_least_one_iteration():
    net = MLP([1, 4, 1])
    xs, ys = np.zeros((2, 3, 1)), np.zeros((2, 3, 1))
    with pytest.raises(ValueError, match="iterations must be an int >= 1, got 0"):
        sharpness(net, net.init(0), xs, ys, iterations=0)


@pytest.mark.parametrize("backtrack", [False, True])
def test_per_row_rules_fine_tune_on_low_rank_weights_as_on_dense_ones(backtrack, monkeypatch):
    # ANIL's α·mask and MAML++'s per-tensor sizes: evaluation holds the wide layers as low rank.
    import minimaml as mm
    from minimaml.meta.inner import Adaptation
    from minimaml.meta.mamlpp import tensor_index
    from tests.meta.test_anil import wide_problem
    net, theta, xs, ys, xq, yq = wide_problem(mm.mse, seed=7)
    index = tensor_index(net)
    sizes = np.linspace(0.5, 1.5, len(net.tensors()))
    rules = [Adaptation([0.8 * net.head_mask()]), Adaptation([sizes[index], 0.5 * sizes[index]])]
    for rule in rules:
        assert not rule.needs_dense(net)
        low = finetune_curves(net, theta, xs, ys, xq, yq, rule, 3, backtrack)
        with monkeypatch.context() as m:
            m.setattr(Adaptation, "needs_dense", lambda self, net: True)
            dense = finetune_curves(net, theta, xs, ys, xq, yq, rule, 3, backtrack)
        np.testing.assert_allclose(low, dense, rtol=1e-10)
        assert np.isfinite(low).all() and np.ptp(low[:, -1] - low[:, 0]) > 0    # it adapts, task by task
    assert Adaptation([np.random.default_rng(0).random(net.num_params)]).needs_dense(net)   # Meta-SGD's α
    assert Adaptation([0.1], lam=1.0).needs_dense(net)                                      # iMAML's pull
