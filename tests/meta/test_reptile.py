"""Reptile: its direction against the definition computed by hand, the paper's Taylor result for two
inner steps (against MAML and first-order MAML), one step is the gradient, and bad input."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.meta.reptile import reptile_direction


def line(theta, x):
    """y = w x + b for one task: a model that is not an MLP (the engine's route)."""
    return x * theta[0] + theta[1]


def by_hand(net, theta, xs, ys, alpha, steps, loss=mm.mse, minibatches=False):
    """θ − mean_t θ_S,t with the engine's gradient, one task and one step at a time (the definition)."""
    ends = []
    for t in range(len(xs)):
        phi = theta.copy()
        for k in range(steps):
            x, y = (xs[t, k], ys[t, k]) if minibatches else (xs[t], ys[t])
            phi = phi - alpha * mm.grad(lambda th: loss(net(th, x), y))(phi)
        ends.append(phi)
    return theta - np.mean(ends, axis=0)


CASES = {   # net, labels?, input size
    "tanh": (mm.MLP([1, 6, 1], activation="tanh"), False, 1),
    "bn-ce": (mm.MLP([2, 8, 3], activation="relu", norm="batch"), True, 2),
    "lowrank": (mm.MLP([1, 40, 40, 1], activation="tanh"), False, 1),   # K·S < 41/2: low-rank weights
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("minibatches", [False, True], ids=["shared", "minibatches"])
def test_the_direction_is_theta_minus_the_mean_adapted_theta(case, minibatches):
    net, labels, d_in = CASES[case]
    T, S, K = 3, 3, 2
    rng = np.random.default_rng(0)
    lead = (T, S, K) if minibatches else (T, K)
    xs = rng.standard_normal(lead + (d_in,))
    ys = rng.integers(0, 3, lead) if labels else rng.standard_normal(lead + (1,))
    loss = mm.softmax_cross_entropy if labels else mm.mse
    theta = net.init(seed=1)
    d = reptile_direction(net, theta, xs, ys, 0.1, S, loss=loss)
    expected = by_hand(net, theta, xs, ys, 0.1, S, loss, minibatches)
    np.testing.assert_allclose(d, expected, rtol=1e-10, atol=1e-15)
    assert d.dtype == theta.dtype and np.abs(d).max() > 1e-3
    assert mm.reptile_direction is reptile_direction


@pytest.mark.parametrize("minibatches", [False, True])
def test_a_model_that_is_not_an_mlp_goes_through_the_engine(minibatches):
    rng = np.random.default_rng(2)
    lead = (2, 3, 4) if minibatches else (2, 4)
    xs, ys = rng.standard_normal(lead + (1,)), rng.standard_normal(lead + (1,))
    theta = np.array([0.3, -0.2])
    d = reptile_direction(line, theta, xs, ys, 0.05, 3, minibatches=minibatches)
    np.testing.assert_allclose(d, by_hand(line, theta, xs, ys, 0.05, 3, minibatches=minibatches), rtol=1e-12)


def test_the_papers_taylor_result_for_two_steps():
    """Nichol et al. 2018, §5: with g_i, H_i the gradient and Hessian of mini-batch i's loss at θ,
    g_MAML = g₂ − αH₂g₁ − αH₁g₂ + O(α²), g_FOMAML = g₂ − αH₂g₁ + O(α²), d/α = g₁ + g₂ − αH₂g₁ + O(α²).
    Each residual is O(α²): halving α divides it by 4. A tanh net in float64 (on linear regression
    H is constant and some residuals vanish exactly)."""
    net = mm.MLP([1, 8, 1], activation="tanh")
    theta = net.init(seed=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, (2, 5, 1))                         # two mini-batches of one task
    y = 2 * np.sin(x + 0.5)
    support = [lambda th, i=i: mm.mse(net(th, x[i]), y[i]) for i in range(2)]
    g1, g2 = (mm.grad(f)(theta) for f in support)
    H1, H2 = (mm.hessian(f)(theta) for f in support)
    mb1, mb2 = (x[:1], y[:1]), (x[1:], y[1:])                 # MAML: one step on mini-batch 1, query on 2

    def residuals(alpha):
        _, maml = mm.meta_value_and_grad(net, theta, *mb1, *mb2, alpha, 1, method="hvp")
        _, fomaml = mm.meta_value_and_grad(net, theta, *mb1, *mb2, alpha, 1, method="first_order")
        reptile = reptile_direction(net, theta, x[None], y[None], alpha, 2) / alpha
        return np.array([np.linalg.norm(maml - (g2 - alpha * H2 @ g1 - alpha * H1 @ g2)),
                         np.linalg.norm(fomaml - (g2 - alpha * H2 @ g1)),
                         np.linalg.norm(reptile - (g1 + g2 - alpha * H2 @ g1))])

    r = [residuals(alpha) for alpha in (0.02, 0.01, 0.005)]   # two halvings
    ratios = np.array([r[0] / r[1], r[1] / r[2]])
    print("residual ratios (rows: α 0.02→0.01, 0.01→0.005; columns: MAML, FOMAML, Reptile)\n", ratios)
    assert ((3.5 < ratios) & (ratios < 4.5)).all(), ratios
    assert (r[1] > 1e-6).all()                                 # the O(α²) term, well above rounding


def test_one_step_on_shared_data_is_the_gradient():
    net = mm.MLP([1, 6, 1], activation="tanh")
    theta = net.init(seed=3)
    b = mm.Sinusoid().sample(4, 5, 1, rng=3)
    alpha = 0.1
    d = reptile_direction(net, theta, b.xs, b.ys, alpha, 1)
    mean_grad = np.mean([mm.grad(lambda th: mm.mse(net(th, x), y))(theta) for x, y in zip(b.xs, b.ys)], 0)
    # d = α mean_t g_t, summed from the gradients: the same numbers up to rounding (no θ − θ_1 cancellation)
    np.testing.assert_allclose(d / alpha, mean_grad, rtol=1e-13, atol=1e-15)


def test_no_steps_no_direction():
    net = mm.MLP([1, 6, 1])
    b = mm.Sinusoid().sample(2, 5, 1, rng=0)
    d = reptile_direction(net, net.init(seed=0), b.xs, b.ys, 0.1, 0)
    np.testing.assert_array_equal(d, np.zeros(net.num_params))


def test_float32_stays_float32_and_keeps_its_digits():
    net = mm.MLP([1, 6, 1], activation="tanh")
    theta = net.init(seed=0)
    b = mm.Sinusoid().sample(2, 5, 1, rng=0)
    d64 = reptile_direction(net, theta, b.xs, b.ys, 1e-3, 3)
    d32 = reptile_direction(net, theta.astype(np.float32), b.xs, b.ys, 1e-3, 3)
    assert d32.dtype == np.float32
    # summed from the gradients: float32's relative rounding (~1e-7). θ − mean θ_S would lose
    # float32's rounding of θ divided by α·S (here ~5e-6 of the direction)
    assert np.abs(d32 - d64).max() < 1e-6 * np.abs(d64).max()


@pytest.mark.parametrize("net, xs_shape, kwargs, error, match", [
    (mm.MLP([1, 6, 1]), (2, 2, 5, 1), {}, ValueError, r"xs holds 2 mini-batches per task .* for steps=3"),
    (line, (2, 5, 1), {}, ValueError, "say minibatches=False or minibatches=True"),
    (line, (2, 3, 5, 1), {"minibatches": "yes"}, TypeError, "minibatches must be None, True or False"),
    (mm.MLP([1, 6, 1]), (2, 5, 1), {"inner_lr": 0.0}, ValueError, r"inner_lr \(α\) must be a finite number"),
    (mm.MLP([1, 6, 1]), (2, 3, 5, 1), {"inner_lr": -0.1}, ValueError, r"inner_lr \(α\) must be a finite"),
    (mm.MLP([1, 6, 1]), (2, 5, 1), {"minibatches": True}, ValueError, r"xs must have shape \(T, S, K, 1\)"),
])
def test_bad_input_is_one_clear_error(net, xs_shape, kwargs, error, match):
    xs = np.zeros(xs_shape)
    theta = net.init(seed=0) if isinstance(net, mm.MLP) else np.zeros(2)
    kwargs = {"inner_lr": 0.1, **kwargs}
    with pytest.raises(error, match=match):
        reptile_direction(net, theta, xs, np.zeros(xs_shape), steps=3, **kwargs)
