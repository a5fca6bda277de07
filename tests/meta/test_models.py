"""MAML is model-agnostic: a user's own model and loss go through every route that does not need the
fast path, and the routes agree with each other, with finite differences and with the MLP."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.meta.maml import inner_matrices, meta_loss

ROUTES = ("autodiff", "hessian")


def line(theta, x):
    """y = w x + b for one task: θ = (w, b), x (N, 1) -> (N, 1)."""
    return x * theta[0] + theta[1]


def two_layer(theta, x):
    """A tiny tanh network written by hand with minimaml's ops: θ (26,), x (N, 3) -> logits (N, 2)."""
    W1, b1 = theta[:12].reshape((3, 4)), theta[12:16]
    W2, b2 = theta[16:24].reshape((4, 2)), theta[24:26]
    return mm.tanh(x @ W1 + b1) @ W2 + b2


def log_cosh(out, y):
    """A user's regression loss with the minimaml convention (mean over a task's points)."""
    d = out - y
    return mm.mean(mm.log((mm.exp(d) + mm.exp(-d)) / 2), axis=(-1, -2))


def central_fd(f, theta, eps=1e-6):
    return np.array([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in np.eye(theta.size)])


def test_the_issues_example_now_works_on_every_route():
    b = mm.LinearRegression(dim=1).sample(4, 5, 6, rng=0)
    theta = np.array([0.3, -0.2])
    args = (theta, b.xs, b.ys, b.xq, b.yq, 0.05, 2)
    grads = {m: mm.meta_value_and_grad(line, *args, method=m)[1] for m in ROUTES + ("first_order",)}
    np.testing.assert_allclose(grads["hessian"], grads["autodiff"], rtol=1e-12)
    # the same model as an MLP([1, 1]) (θ = (W, b) in the same order) through the fast route
    _, g_mlp = mm.meta_value_and_grad(mm.MLP([1, 1]), *args, method="hvp")
    np.testing.assert_allclose(grads["autodiff"], g_mlp, rtol=1e-12)
    _, g_mlp_fo = mm.meta_value_and_grad(mm.MLP([1, 1]), *args, method="first_order")
    np.testing.assert_allclose(grads["first_order"], g_mlp_fo, rtol=1e-12)


@pytest.mark.parametrize("steps", [1, 2])
def test_a_hand_written_classifier_meta_gradient_against_finite_differences(steps):
    rng = np.random.default_rng(1)
    theta = 0.5 * rng.standard_normal(26)
    xs, xq = rng.standard_normal((3, 4, 3)), rng.standard_normal((3, 5, 3))
    ys, yq = rng.integers(0, 2, (3, 4)), rng.integers(0, 2, (3, 5))
    args = (xs, ys, xq, yq, 0.5, steps)
    value, g = mm.meta_value_and_grad(two_layer, theta, *args, method="autodiff", loss=mm.softmax_cross_entropy)
    _, g_hessian = mm.meta_value_and_grad(two_layer, theta, *args, method="hessian", loss=mm.softmax_cross_entropy)
    fd = central_fd(lambda th: meta_loss(two_layer, th, *args, loss=mm.softmax_cross_entropy), theta)
    np.testing.assert_allclose(g_hessian, g, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    adapted = mm.adapt(two_layer, theta, xs, ys, 0.5, steps, loss=mm.softmax_cross_entropy)
    expected = np.mean([mm.softmax_cross_entropy(two_layer(adapted[t], xq[t]), yq[t]) for t in range(3)])
    assert value == pytest.approx(float(expected), rel=1e-13)


def test_a_batched_model_and_a_per_task_model_agree():
    class Batched:
        batched = True

        def __call__(self, theta, x):      # θ (P,) or (T, P), x (..., N, 1)
            w = theta[..., 0:1] if theta.ndim == 1 else theta[:, None, 0:1]
            b = theta[..., 1:2] if theta.ndim == 1 else theta[:, None, 1:2]
            return x * w + b
    b = mm.Sinusoid().sample(3, 4, 4, rng=2)
    args = (np.array([0.5, 0.1]), b.xs, b.ys, b.xq, b.yq, 0.1, 3)
    for m in ROUTES + ("first_order",):
        np.testing.assert_allclose(mm.meta_value_and_grad(Batched(), *args, method=m)[1],
                                   mm.meta_value_and_grad(line, *args, method=m)[1], rtol=1e-13)


def test_a_users_loss_on_an_mlp_goes_through_the_engine():
    net = mm.MLP([1, 6, 1], activation="tanh")
    b = mm.Sinusoid().sample(3, 5, 5, rng=3)
    args = (net, net.init(seed=0), b.xs, b.ys, b.xq, b.yq, 0.05, 2)
    _, g = mm.meta_value_and_grad(*args, method="autodiff", loss=log_cosh)
    np.testing.assert_allclose(mm.meta_value_and_grad(*args, method="hessian", loss=log_cosh)[1], g, rtol=1e-10)
    assert not np.allclose(g, mm.meta_value_and_grad(*args, method="autodiff")[1])     # not MSE
    with pytest.raises(TypeError, match="fast route covers the losses mse and softmax_cross_entropy, not "
                                        "log_cosh.*method='autodiff'"):
        mm.meta_value_and_grad(*args, method="hvp", loss=log_cosh)


def test_the_fast_route_names_what_it_does_not_cover():
    b = mm.LinearRegression(dim=1).sample(2, 3, 3, rng=0)
    with pytest.raises(TypeError, match="fast route covers minimaml.MLP networks.*not function.*"
                                        "method='autodiff'"):
        mm.meta_value_and_grad(line, np.zeros(2), b.xs, b.ys, b.xq, b.yq, 0.1, 1, method="hvp")
    with pytest.raises(TypeError, match="CUDA kernel"):
        mm.meta_value_and_grad(mm.MLP([1, 4, 1], norm="batch"), mm.MLP([1, 4, 1], norm="batch").init(),
                               b.xs, b.ys, b.xq, b.yq, 0.1, 1, method="cuda-emulated")


def test_a_loss_that_does_not_return_one_value_per_task_is_refused():
    def total(out, y):                     # sums over the tasks too: not the convention
        return mm.sum((out - y) ** 2)
    b = mm.LinearRegression(dim=1).sample(2, 3, 3, rng=0)
    with pytest.raises(ValueError, match=r"loss total returned shape \(\) for a batch of 2 tasks.*\(2,\)"):
        mm.meta_value_and_grad(line, np.zeros(2), b.xs, b.ys, b.xq, b.yq, 0.1, 1, method="autodiff", loss=total)


def test_hessian_routes_refuse_what_does_not_fit_before_allocating():
    net = mm.MLP([1, 40, 40, 1])
    b = mm.Sinusoid().sample(2, 5, 5, rng=0)
    theta = net.init(seed=0)
    with pytest.raises(MemoryError, match=r"inner_matrices: 4 \(P, P\) matrices, P = 1761 would need about "
                                          r"0.1.* GB, more than the budget max_bytes.*method='hvp'"):
        inner_matrices(net, theta, b.xs, b.ys, 0.01, 2, max_bytes=10_000_000)
    with pytest.raises(MemoryError, match=r"method='hessian'.*method='hvp'"):
        mm.meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.01, 1, method="hessian", max_bytes=1e6)
    omniglot = mm.MLP([784, 256, 128, 64, 64, 5], norm="batch")
    with pytest.raises(MemoryError, match=r"P = 247621.*more than the memory available"):
        inner_matrices(omniglot, omniglot.init(), np.zeros((1, 5, 784)), np.zeros((1, 5), int), 0.4, 1,
                       loss=mm.softmax_cross_entropy)
