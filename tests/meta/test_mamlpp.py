"""MAML++: per-step, per-tensor learned step sizes and the multi-step loss, their gradients against
finite differences; MAML when the sizes are one α and the loss is the last step's."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.meta.mamlpp import cosine_lr, mamlpp_value_and_grad, msl_weights, tensor_index
from tests.meta.test_anil import wide_problem


def problem(norm=None, seed=0):
    net = mm.MLP([1, 5, 4, 1], activation="tanh", norm=norm)
    b = mm.Sinusoid().sample(3, 5, 6, rng=seed)
    sizes = 0.02 + 0.01 * np.random.default_rng(seed).standard_normal((3, len(net.tensors())))
    return net, net.init(seed=1), sizes, b


def definition(net, theta, sizes, b, weights):
    """L = Σ_k w_k mean_t L_query(θ_k) by plain loops and the engine's gradients."""
    index = tensor_index(net)
    total = 0.0
    for t in range(b.xs.shape[0]):
        th = theta
        for k in range(sizes.shape[0]):
            th = th - sizes[k][index] * mm.grad(lambda p: mm.mse(net(p, b.xs[t]), b.ys[t]))(th)
            total += weights[k] * float(mm.mse(net(th, b.xq[t]), b.yq[t]))
    return total / b.xs.shape[0]


def central_fd(f, x, eps=1e-6):
    flat = x.ravel()
    return np.array([(f((flat + eps * e).reshape(x.shape)) - f((flat - eps * e).reshape(x.shape))) / (2 * eps)
                     for e in np.eye(flat.size)]).reshape(x.shape)


@pytest.mark.parametrize("weights", [None, [0.2, 0.3, 0.5]], ids=["last-step", "multi-step"])
@pytest.mark.parametrize("norm", [None, "batch"])
def test_gradients_match_finite_differences(weights, norm):
    net, theta, sizes, b = problem(norm)
    w = np.array([0.0, 0.0, 1.0]) if weights is None else np.array(weights)
    value, (g_theta, g_sizes) = mamlpp_value_and_grad(net, theta, sizes, b.xs, b.ys, b.xq, b.yq, weights=weights)
    assert value == pytest.approx(definition(net, theta, sizes, b, w), rel=1e-12)
    np.testing.assert_allclose(g_theta, central_fd(lambda th: definition(net, th, sizes, b, w), theta),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(g_sizes, central_fd(lambda s: definition(net, theta, s, b, w), sizes),
                               rtol=1e-6, atol=1e-9)
    assert g_sizes.shape == sizes.shape and np.abs(g_sizes).max() > 1e-3


def test_first_order_treats_every_step_jacobian_as_the_identity():
    net, theta, sizes, b = problem()
    w = np.array([0.2, 0.3, 0.5])
    _, (g_theta, g_sizes) = mamlpp_value_and_grad(net, theta, sizes, b.xs, b.ys, b.xq, b.yq, weights=w,
                                                  first_order=True)
    index = tensor_index(net)
    expect_theta, expect_sizes = np.zeros_like(theta), np.zeros_like(sizes)
    for t in range(3):
        th, support_grads = theta, []
        for k in range(3):
            support_grads.append(mm.grad(lambda p: mm.mse(net(p, b.xs[t]), b.ys[t]))(th))
            th = th - sizes[k][index] * support_grads[-1]
            gq = w[k] * mm.grad(lambda p: mm.mse(net(p, b.xq[t]), b.yq[t]))(th)
            expect_theta += gq / 3
            for j in range(k + 1):
                expect_sizes[j] -= np.bincount(index, weights=support_grads[j] * gq) / 3
    np.testing.assert_allclose(g_theta, expect_theta, rtol=1e-11)
    np.testing.assert_allclose(g_sizes, expect_sizes, rtol=1e-10, atol=1e-15)


def test_one_size_and_the_last_steps_loss_is_maml():
    net, theta, _, b = problem()
    sizes = np.full((2, len(net.tensors())), 0.03)
    value, (g_theta, _) = mamlpp_value_and_grad(net, theta, sizes, b.xs, b.ys, b.xq, b.yq)
    ref_value, ref_grad = mm.meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.03, 2)
    assert value == pytest.approx(ref_value, rel=1e-13)
    np.testing.assert_allclose(g_theta, ref_grad, rtol=1e-11)


def test_the_schedules():
    np.testing.assert_allclose(msl_weights(5, 0.0), np.full(5, 0.2))
    w = msl_weights(5, 1.0)
    np.testing.assert_allclose(w[:-1], 0.03 / 5)
    assert w.sum() == pytest.approx(1.0) and w[-1] > 0.97
    half = msl_weights(5, 0.5)
    assert (half[:-1] < 0.2).all() and half[-1] > 0.2 and half.sum() == pytest.approx(1.0)
    assert cosine_lr(0, 100, 1e-3) == pytest.approx(1e-3) and cosine_lr(100, 100, 1e-3, 1e-5) == pytest.approx(1e-5)
    assert cosine_lr(50, 100, 1e-3) == pytest.approx(5e-4)


def test_bad_sizes_and_weights_are_clear_errors():
    net, theta, sizes, b = problem()
    with pytest.raises(ValueError, match=r"sizes must have shape \(3, 6\), got \(3, 5\)"):
        mamlpp_value_and_grad(net, theta, sizes[:, :5], b.xs, b.ys, b.xq, b.yq)
    with pytest.raises(ValueError, match="sizes holds non-finite"):
        mamlpp_value_and_grad(net, theta, sizes * np.inf, b.xs, b.ys, b.xq, b.yq)
    with pytest.raises(ValueError, match="weights must be 3 finite numbers"):
        mamlpp_value_and_grad(net, theta, sizes, b.xs, b.ys, b.xq, b.yq, weights=[1.0, 0.0])
    with pytest.raises(TypeError, match="tensor layout"):
        tensor_index(lambda th, x: x)


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("loss", [mm.mse, mm.softmax_cross_entropy], ids=["mse", "ce"])
def test_layers_held_as_low_rank_give_the_engines_answer(loss, first_order, monkeypatch):
    # A size per tensor is one number per row of a layer's [W; b]: wide layers keep per-task weights as
    # low rank (W's rows and b's row scaled apart, a size of 0, the size gradients from the factors).
    from minimaml.fastpath import network
    net, theta, xs, ys, xq, yq = wide_problem(loss, seed=2)
    sizes = 0.3 + 0.1 * np.random.default_rng(2).standard_normal((2, len(net.tensors())))
    sizes[0, 4] = 0.0                                     # W_1 does not adapt at the first step
    args = (net, theta, sizes, xs, ys, xq, yq)
    kw = dict(loss=loss, weights=[0.4, 0.6], first_order=first_order)
    assert any(network.choose_lowrank(net, 2 * 2 + 2 * 2 * 2))
    low = [mamlpp_value_and_grad(*args, **kw) for _ in range(2)]           # twice: the reused buffers
    monkeypatch.setattr(network, "supports", lambda net, loss: (False, "the engine's answer"))
    dense = mamlpp_value_and_grad(*args, **kw)                            # the engine's route
    for value, (g_theta, g_sizes) in low:
        assert value == pytest.approx(dense[0], rel=1e-12)
        for got, want in ((g_theta, dense[1][0]), (g_sizes, dense[1][1])):    # rounding, float64
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10 * np.abs(want).max())
