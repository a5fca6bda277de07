"""The Meta-Learner LSTM: MAML when its gates are fixed to f ≡ 1, i ≡ α (both orders), its
meta-gradient against finite differences of an independent NumPy replay of the paper's equations
(second order; first order with the learner's loss and gradients frozen), the preprocessing, the
initial gates, and bad arguments."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.fastpath import mlp_loss_and_grad
from minimaml.meta.meta_lstm import (NUM_GATE_PARAMS, meta_lstm_adapt, meta_lstm_init, meta_lstm_split,
                                     meta_lstm_value_and_grad, preprocess)


def problem(seed=0, sizes=(1, 6, 1), activation="tanh", tasks=3, k=5):
    net = mm.MLP(list(sizes), activation=activation)
    b = mm.Sinusoid().sample(tasks, k, k, rng=seed)
    return net, meta_lstm_init(net.init(seed=seed + 1), seed=seed), b


def central_fd(f, x, eps=1e-6):
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.size)])


# ------------------------------------------------------------------- an independent replay of the paper
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def prep(x, p=10.0):
    big = np.abs(x) >= np.exp(-p)
    with np.errstate(divide="ignore"):
        return [np.where(big, np.log(np.abs(x)) / p, -1.0), np.where(big, np.sign(x), np.exp(p) * x)]


def replay(net, phi, b, steps, frozen=None, record=None):
    """L_meta(φ) by the paper's equations in plain NumPy, the learner's losses and gradients by the fast
    route's hand-derived backprop. ``frozen``: [(L_t, ∇_t), ...] to use instead (what order 1 holds
    constant); ``record``: a list that receives them."""
    P = net.num_params
    c0, w_i, b_i, w_f, b_f = phi[:P], phi[P:P + 6], phi[P + 6], phi[P + 7:P + 13], phi[P + 13]
    theta = np.tile(c0, (len(b.xs), 1))
    i = f = np.zeros_like(theta)
    for t in range(steps):
        L, g = frozen[t] if frozen else mlp_loss_and_grad(net, theta, b.xs, b.ys)
        if record is not None:
            record.append((L, g))
        x = prep(g) + [np.broadcast_to(a[:, None], g.shape) for a in prep(L)] + [theta]
        i = sigmoid(sum(w * v for w, v in zip(w_i, x + [i])) + b_i)
        f = sigmoid(sum(w * v for w, v in zip(w_f, x + [f])) + b_f)
        theta = f * theta - i * g
    return mlp_loss_and_grad(net, theta, b.xq, b.yq)[0].mean()


# ------------------------------------------------------------------- f ≡ 1, i ≡ α: MAML
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_fixed_gates_are_maml_with_a_learned_initialisation(steps, activation):
    net, phi, b = problem(sizes=(1, 10, 10, 1), activation=activation)
    alpha, P = 0.03, net.num_params
    c0 = meta_lstm_split(phi).c0
    for order, method in ((2, "hvp"), (2, "autodiff"), (1, "first_order")):
        value, g = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, steps, order=order, gates=(1.0, alpha))
        maml_value, maml_grad = mm.meta_value_and_grad(net, c0, b.xs, b.ys, b.xq, b.yq, alpha, steps, method=method)
        assert value == pytest.approx(maml_value, rel=1e-13), (order, method)
        np.testing.assert_allclose(g[:P], maml_grad, rtol=1e-12, atol=1e-14 * np.abs(maml_grad).max())
        assert not g[P:].any()                              # fixed gates: the gate parameters are not used
    _, second = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, steps, order=2, gates=(1.0, alpha))
    _, first = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, steps, order=1, gates=(1.0, alpha))
    assert np.linalg.norm(second - first) > 1e-3 * np.linalg.norm(second)   # the orders are not the same thing


def test_fixed_gates_adapt_is_mamls_inner_loop():
    net, phi, b = problem(sizes=(1, 10, 10, 1))
    c0 = meta_lstm_split(phi).c0
    np.testing.assert_allclose(meta_lstm_adapt(net, phi, b.xs, b.ys, 4, gates=(1.0, 0.02)),
                               mm.adapt(net, c0, b.xs, b.ys, 0.02, 4), rtol=1e-12, atol=1e-14)


def test_a_user_model_with_fixed_gates_is_maml():
    def model(theta, x):                                    # one task: θ (7,), x (N, 1)
        return mm.tanh(x * theta[:3]) @ mm.reshape(theta[3:6], (3, 1)) + theta[6]
    b = mm.Sinusoid().sample(2, 4, 4, rng=3)
    phi = meta_lstm_init(0.5 * np.random.default_rng(0).standard_normal(7))
    value, g = meta_lstm_value_and_grad(model, phi, b.xs, b.ys, b.xq, b.yq, 2, gates=(1.0, 0.05))
    maml_value, maml_grad = mm.meta_value_and_grad(model, phi[:7], b.xs, b.ys, b.xq, b.yq, 0.05, 2, method="autodiff")
    assert value == pytest.approx(maml_value, rel=1e-13)
    np.testing.assert_allclose(g[:7], maml_grad, rtol=1e-11)


# ------------------------------------------------------------------- the meta-gradient, every part of φ
@pytest.mark.parametrize("steps", [1, 3])
def test_meta_gradient_matches_finite_differences(steps):
    net, phi, b = problem()
    P = net.num_params
    record = []
    value = replay(net, phi, b, steps, record=record)
    v2, g2 = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, steps, order=2)
    v1, g1 = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, steps, order=1)
    assert v1 == v2 == pytest.approx(value, rel=1e-13)     # the forward pass is the paper's
    fd2 = central_fd(lambda ph: replay(net, ph, b, steps), phi)
    fd1 = central_fd(lambda ph: replay(net, ph, b, steps, frozen=record), phi)   # ∇_t, L_t held at φ's values
    parts = {"c_0": slice(0, P), "w_I": slice(P, P + 6), "b_I": slice(P + 6, P + 7),
             "w_F": slice(P + 7, P + 13), "b_F": slice(P + 13, P + 14)}
    for name, part in parts.items():
        for order, g, fd in ((2, g2, fd2), (1, g1, fd1)):
            assert np.abs(fd[part]).max() > 1e-5, (name, order)           # a part that matters here
            np.testing.assert_allclose(g[part], fd[part], rtol=1e-6, atol=1e-9, err_msg=f"{name}, order {order}")
    assert np.linalg.norm(g1 - g2) > 1e-3 * np.linalg.norm(g2)


def test_float32_in_float32_out():
    net, phi, b = problem()
    value, g = meta_lstm_value_and_grad(net, phi.astype(np.float32), b.xs, b.ys, b.xq, b.yq, 2)
    _, g64 = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, 2)
    assert g.dtype == np.float32 and isinstance(value, float)
    np.testing.assert_allclose(g, g64, rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------- the preprocessing
def test_preprocessing_values_and_continuity():
    p, e = 10.0, np.exp(-10.0)
    x = np.array([-3.0, -e, -1e-7, 0.0, 2e-6, e, 0.5, 1e3])
    a, s = preprocess(x)
    np.testing.assert_allclose(a, [np.log(3) / p, -1, -1, -1, -1, -1, np.log(0.5) / p, np.log(1e3) / p], rtol=1e-15)
    np.testing.assert_allclose(s, [-1, -1, -np.exp(p) * 1e-7, 0, np.exp(p) * 2e-6, 1, 1, 1], rtol=1e-12)
    for edge in (e, -e):                                   # continuous across |x| = e^{−p}
        below, above = (np.array(preprocess(np.array([edge * (1 + d)]))) for d in (-1e-9, 1e-9))
        np.testing.assert_allclose(below, above, atol=1e-8)


def test_preprocessing_derivatives_on_both_sides_and_at_zero():
    e = np.exp(-10.0)
    x = np.array([-2.0, -3 * e, -0.5 * e, 0.3 * e, 4 * e, 0.7])
    for part in (0, 1):
        def f(z, part=part):
            return mm.sum(preprocess(z)[part] * np.arange(1.0, 7.0))
        g = mm.grad(f)(x)
        big = np.abs(x) >= e                               # d/dx: (1/(p x), 0) above e^{−p}, (0, e^p) below
        expected = np.where(big, 1 / (10 * x), 0.0) if part == 0 else np.where(big, 0.0, np.exp(10.0))
        np.testing.assert_allclose(g, expected * np.arange(1.0, 7.0), rtol=1e-12)
        np.testing.assert_allclose(g, central_fd(lambda z: float(f(z)), x, eps=1e-3 * e), rtol=1e-6)
    at_zero = mm.grad(lambda z: mm.sum(preprocess(z)[0] + preprocess(z)[1]))(np.zeros(3))
    np.testing.assert_array_equal(at_zero, np.exp(10.0))   # finite: log's branch is not taken, and gives no NaN
    mm.check_grads(lambda z: preprocess(z * z)[0] + preprocess(z)[1], np.array([0.3, -1.5, 2e-5]), order=2)


# ------------------------------------------------------------------- it starts as gradient descent
def test_initial_gates_start_close_to_gradient_descent():
    net = mm.MLP([1, 40, 40, 1])
    b = mm.Sinusoid().sample(25, 5, 5, rng=0)
    phi = meta_lstm_init(net.init(seed=0), seed=0)
    parts = meta_lstm_split(phi)
    assert 4 <= parts.b_f <= 5 and -5 <= parts.b_i <= -4 and np.abs(np.r_[parts.w_i, parts.w_f]).max() <= 0.01
    run = meta_lstm_adapt(net, phi, b.xs, b.ys, 3, trajectory=True)
    for f, i in zip(run.f, run.i):
        assert f.min() > 0.98 and f.max() < 0.995                           # keeps θ: σ(4) = 0.982, σ(5) = 0.993
        assert i.min() > 0.006 and i.max() < 0.02                           # small: σ(−5) = 0.0067, σ(−4) = 0.018
    # one step is gradient descent with step σ(b_I), up to ~1 % of θ
    theta0 = np.broadcast_to(parts.c0, run.theta[1].shape)
    gd = theta0 - 1 / (1 + np.exp(-parts.b_i)) * mlp_loss_and_grad(net, theta0, b.xs, b.ys)[1]
    assert np.linalg.norm(run.theta[1] - gd) < 0.02 * np.linalg.norm(theta0)
    assert np.linalg.norm(run.theta[1] - theta0) > 0.005 * np.linalg.norm(theta0)   # and it does move
    assert len(run.theta) == 4 and run.theta[0].shape == (25, net.num_params)


# ------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("change, error, match", [
    (dict(phi=np.zeros(19)), ValueError, r"phi must have shape \(P \+ 14,\) = \(33,\)"),
    (dict(phi=np.zeros(33, dtype=int)), TypeError, "phi must be float32 or float64"),
    (dict(phi=np.full(33, np.nan)), ValueError, "phi holds non-finite values"),
    (dict(steps=0), ValueError, "steps must be >= 1"),
    (dict(steps=1.5), TypeError, "steps must be an integer"),
    (dict(order=3), ValueError, "order must be 1 .* or 2"),
    (dict(order=True), ValueError, "order must be 1"),
    (dict(gates=(1.0,)), TypeError, r"gates must be None or two numbers \(f, i\)"),
    (dict(gates=(1.0, np.inf)), ValueError, r"gates must be finite numbers"),
    (dict(xq=np.zeros((2, 5, 1))), ValueError, "same number of tasks"),
])
def test_bad_arguments_are_one_clear_error(change, error, match):
    net, phi, b = problem()
    args = dict(phi=phi, xs=b.xs, ys=b.ys, xq=b.xq, yq=b.yq, steps=2, order=2, gates=None)
    args.update(change)
    if "xq" in change:
        args["yq"] = np.zeros((2, 5, 1))
    assert phi.size == net.num_params + NUM_GATE_PARAMS == 33
    with pytest.raises(error, match=match):
        meta_lstm_value_and_grad(net, **args)


def test_bad_initialisations_and_parameter_vectors_are_named():
    theta0 = mm.MLP([1, 4, 1]).init(0)
    with pytest.raises(ValueError, match=r"forget_bias must be an interval \(low, high\)"):
        mm.meta_lstm_init(theta0, forget_bias=(5.0, 4.0))
    with pytest.raises(ValueError, match="input_bias must be an interval"):
        mm.meta_lstm_init(theta0, input_bias=(-5.0, np.nan))
    with pytest.raises(ValueError, match=r"phi must be a flat vector \(P \+ 14,\) with P >= 1"):
        mm.meta_lstm_split(np.zeros(5))
