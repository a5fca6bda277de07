"""MLP: flat-θ layout, forward pass, batching over tasks, engine Tensors, init, errors."""

import numpy as np
import pytest

import minimaml
import minimaml as mm
from minimaml.autodiff import check_grads
from minimaml.nn import MLP, mse


def manual_net(layers, x, act):
    """Reference forward pass from explicit (W, b) pairs."""
    h = x
    for l, (W, b) in enumerate(layers):
        h = h @ W + b
        if l < len(layers) - 1:
            h = np.maximum(h, 0) if act == "relu" else np.tanh(h)
    return h


def test_num_params_of_the_paper_network():
    assert MLP([1, 40, 40, 1]).num_params == 1 * 40 + 40 + 40 * 40 + 40 + 40 * 1 + 1 == 1761


def test_flat_layout_is_W0_b0_W1_b1_in_C_order():
    net = MLP([2, 3, 1])
    theta = np.arange(net.num_params, dtype=float)
    (W0, b0), (W1, b1) = net.unflatten(theta)
    np.testing.assert_array_equal(W0, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(b0, [6.0, 7.0, 8.0])
    np.testing.assert_array_equal(W1, [[9.0], [10.0], [11.0]])
    np.testing.assert_array_equal(b1, [12.0])
    np.testing.assert_array_equal(net.flatten(net.unflatten(theta)), theta)


def test_unflatten_returns_views():
    net = MLP([2, 3, 1])
    theta = np.zeros(net.num_params)
    (W0, _), (_, b1) = net.unflatten(theta)
    W0[1, 2] = 5.0
    b1[0] = 7.0
    assert theta[5] == 5.0 and theta[-1] == 7.0


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_forward_matches_explicit_layers(act):
    net = MLP([3, 4, 5, 2], activation=act)
    theta = net.init(seed=1)
    x = np.random.default_rng(0).standard_normal((7, 3))
    np.testing.assert_allclose(net(theta, x), manual_net(net.unflatten(theta), x, act), rtol=1e-13)


def test_batched_over_tasks_equals_per_task_loop():
    net = MLP([1, 6, 6, 1], activation="tanh")
    rng = np.random.default_rng(0)
    thetas = np.stack([net.init(seed=s) for s in range(4)])         # (T, P)
    x = rng.uniform(-5, 5, size=(4, 9, 1))                          # (T, N, 1)
    out = net(thetas, x)
    assert out.shape == (4, 9, 1)
    for t in range(4):
        np.testing.assert_allclose(out[t], net(thetas[t], x[t]), rtol=1e-13)
    # A shared θ broadcasts over a stack of tasks too.
    np.testing.assert_allclose(net(thetas[0], x)[2], net(thetas[0], x[2]), rtol=1e-13)


def test_runs_on_engine_tensors_and_differentiates():
    net = MLP([1, 5, 1], activation="tanh")
    theta = net.init(seed=0)
    x = np.linspace(-2, 2, 6)[:, None]
    y = np.sin(x)
    g = minimaml.grad(lambda th: mse(net(th, x), y))(theta)
    eps = 1e-6
    fd = np.array([(mse(net(theta + eps * e, x), y) - mse(net(theta - eps * e, x), y)) / (2 * eps)
                   for e in np.eye(net.num_params)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_init_is_seeded_and_bounded():
    net = MLP([1, 40, 40, 1])
    a, b, c = net.init(seed=3), net.init(seed=3), net.init(seed=4)
    assert a.shape == (1761,) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    for (W, bias), fan_in in zip(net.unflatten(a), net.sizes[:-1]):
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(W).max() <= bound and np.abs(bias).max() <= bound
        assert np.abs(W).max() > 0.5 * bound                       # not a degenerate tiny init
    (_, b0), _, _ = net.unflatten(a)
    assert np.ptp(b0) > 0.5                                       # first-layer kinks spread out


def test_mse_mean_over_points_and_outputs_batched():
    pred = np.arange(12.0).reshape(2, 3, 2)
    y = np.zeros((2, 3, 2))
    np.testing.assert_allclose(mse(pred, y), [np.mean(np.arange(6.0) ** 2), np.mean(np.arange(6.0, 12) ** 2)])
    assert mse(pred[0], y[0]) == pytest.approx(np.mean(np.arange(6.0) ** 2))
    with pytest.raises(ValueError, match=r"\(2, 3, 2\).*\(2, 3\)"):
        mse(pred, y[..., 0])


@pytest.mark.parametrize("sizes", [[1], [], [1, 0, 1], [1, 2.5, 1], [1, -3], "12", [True, 2]])
def test_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        MLP(sizes)


def test_bad_activation_names_it():
    with pytest.raises(ValueError, match="'sigmoid'"):
        MLP([1, 2, 1], activation="sigmoid")


def test_bad_theta_and_x_shapes():
    net = MLP([2, 3, 1])
    with pytest.raises(ValueError, match=r"P = 13.*\(12,\)"):
        net(np.zeros(12), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"last dimension 2.*\(4, 3\)"):
        net(np.zeros(13), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"batched theta \(3, 13\).*\(2, 4, 2\)"):
        net(np.zeros((3, 13)), np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="expected 2"):
        net.flatten(net.unflatten(np.zeros(13))[:1])


def test_init_refuses_a_negative_seed_in_one_line():
    with pytest.raises(ValueError, match=r"seed must be an int >= 0, got -1"):
        MLP([1, 2, 1]).init(seed=-1)
    np.testing.assert_array_equal(MLP([1, 2, 1]).init(seed=np.random.default_rng(0)), MLP([1, 2, 1]).init(seed=0))


# ------------------------------------------------------------------------------------------
# Batch norm: dense -> batch norm -> activation in every hidden layer (the Omniglot network).
# ------------------------------------------------------------------------------------------
def test_batch_norm_layout_init_and_round_trip():
    net = MLP([3, 4, 2], norm="batch")
    assert net.num_params == 3 * 4 + 4 + 4 + 4 + 4 * 2 + 2               # W, b, γ, β; last layer W, b
    theta = net.init(seed=0)
    (W0, b0, g0, be0), (W1, b1) = net.unflatten(theta)
    np.testing.assert_array_equal(theta[16:20], np.ones(4))               # γ_0 = 1 right after b_0
    np.testing.assert_array_equal(be0, np.zeros(4))
    assert W1.shape == (4, 2)
    np.testing.assert_array_equal(net.flatten(net.unflatten(theta)), theta)
    assert MLP.from_description(net.describe()).layers == net.layers
    assert net.head_mask().sum() == 4 * 2 + 2 and net.head_mask()[-10:].all()
    with pytest.raises(ValueError, match=r"\(W, b, gamma, beta\)"):
        net.flatten([(W0, b0), (W1, b1)])
    with pytest.raises(ValueError, match="unknown norm 'layer'"):
        MLP([3, 4, 2], norm="layer")


def test_batch_norm_normalises_each_task_over_its_own_points():
    """The hidden layer's pre-activations have mean β and std γ over the points of each task,
    whatever the other tasks of the batch hold."""
    net = MLP([2, 3, 1], norm="batch")
    theta = net.init(seed=1)
    theta[net.layers[0].gamma:net.layers[0].beta] = [1.0, 2.0, 3.0]
    x = np.random.default_rng(0).standard_normal((2, 6, 2)) * [[[1.0]], [[100.0]]]
    W, b, gamma, beta = net.unflatten(theta)[0]
    for t in range(2):
        z = x[t] @ W + b
        zhat = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-3)
        np.testing.assert_allclose(mm.batch_norm(z, gamma, beta), gamma * zhat + beta, rtol=1e-13)
    # a task's output does not depend on the other tasks of the batch
    np.testing.assert_allclose(net(np.stack([theta, theta]), x)[1], net(theta, x[1]), rtol=1e-13)


def test_batch_norm_network_derivatives_to_second_order():
    net = MLP([2, 3, 2], activation="tanh", norm="batch")
    x = np.random.default_rng(2).standard_normal((5, 2))
    y = np.random.default_rng(3).standard_normal((5, 2))
    check_grads(lambda th: mse(net(th, x), y), net.init(seed=4), order=2)


# ------------------------------------------------------------------------------------------
# The NTK parameterisation: z = h W / √fan_in + b, W and b drawn N(0, 1).
# ------------------------------------------------------------------------------------------
def manual_ntk_net(layers, x, act):
    """Reference forward pass of the NTK parameterisation from explicit (W, b) pairs."""
    h = x
    for l, (W, b) in enumerate(layers):
        h = h @ W / np.sqrt(W.shape[0]) + b
        if l < len(layers) - 1:
            h = np.maximum(h, 0) if act == "relu" else np.tanh(h)
    return h


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_ntk_forward_matches_a_hand_written_one(act):
    net = MLP([3, 16, 9, 2], activation=act, param="ntk")
    theta = net.init(seed=1)
    x = np.random.default_rng(0).standard_normal((7, 3))
    np.testing.assert_allclose(net(theta, x), manual_ntk_net(net.unflatten(theta), x, act), rtol=1e-13)
    # the same θ read by the standard parameterisation is a different function
    assert not np.allclose(MLP([3, 16, 9, 2], activation=act)(theta, x), net(theta, x))
    # batched over tasks, as the standard one
    thetas, xs = np.stack([theta, net.init(seed=2)]), np.stack([x, 2 * x])
    np.testing.assert_allclose(net(thetas, xs)[1], net(thetas[1], xs[1]), rtol=1e-13)


def test_ntk_with_batch_norm_matches_a_hand_written_one():
    net = MLP([2, 5, 1], activation="tanh", norm="batch", param="ntk")
    theta = net.init(seed=3)
    theta[net.layers[0].gamma:net.layers[0].end] = np.random.default_rng(1).standard_normal(10)
    x = np.random.default_rng(0).standard_normal((6, 2))
    (W0, b0, g0, be0), (W1, b1) = net.unflatten(theta)
    z = x @ W0 / np.sqrt(2) + b0
    h = np.tanh(g0 * (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-3) + be0)
    np.testing.assert_allclose(net(theta, x), h @ W1 / np.sqrt(5) + b1, rtol=1e-13)


def test_ntk_init_is_standard_normal_and_seeded():
    net = MLP([1, 200, 200, 1], param="ntk")
    theta = net.init(seed=0)
    np.testing.assert_array_equal(theta, net.init(seed=0))
    assert abs(theta.mean()) < 0.01 and abs(theta.std() - 1) < 0.01     # 40,801 draws of N(0, 1)
    for W, b in net.unflatten(theta):                                   # every layer, weights and biases alike
        assert 0.8 < W.std() < 1.2 and (len(b) < 10 or 0.8 < b.std() < 1.2)


@pytest.mark.parametrize("norm", [None, "batch"])
def test_ntk_derivatives_against_finite_differences_to_second_order(norm):
    net = MLP([2, 4, 3, 2], activation="tanh", norm=norm, param="ntk")
    x = np.random.default_rng(2).standard_normal((5, 2))
    y = np.random.default_rng(3).standard_normal((5, 2))
    check_grads(lambda th: mse(net(th, x), y), net.init(seed=4), order=2)


def test_ntk_description_round_trips_through_a_checkpoint(tmp_path):
    net = MLP([1, 8, 8, 1], activation="tanh", param="ntk")
    d = net.describe()
    assert d["param"] == "ntk" and "param='ntk'" in repr(net)
    again = MLP.from_description(d)
    assert (again.param, again.sizes, again.activation, again.layers) == ("ntk", net.sizes, "tanh", net.layers)
    theta = net.init(seed=0)
    mm.save_checkpoint(tmp_path / "ntk.npz", net, theta, config={})
    loaded, theta_loaded, _ = mm.load_checkpoint(tmp_path / "ntk.npz")
    x = np.linspace(-5, 5, 7)[:, None]
    assert loaded.param == "ntk"
    np.testing.assert_array_equal(loaded(theta_loaded, x), net(theta, x))
    # descriptions written before the option existed are the standard parameterisation
    old = {"kind": "mlp", "sizes": [1, 8, 1], "activation": "relu", "norm": None}
    assert MLP.from_description(old).param == "standard" and MLP([1, 8, 1]).describe()["param"] == "standard"
    with pytest.raises(ValueError, match=r"unknown param 'mup'; choose one of \('standard', 'ntk'\)"):
        MLP([1, 8, 1], param="mup")


def test_ntk_goes_through_the_engine_and_the_fast_route_refuses_it_by_name():
    net = MLP([1, 6, 6, 1], param="ntk")
    b = mm.Sinusoid().sample(3, 5, 5, rng=0)
    args = (net, net.init(seed=0), b.xs, b.ys, b.xq, b.yq, 0.05, 2)
    ok, why = mm.fastpath.supports(net, mse)
    assert not ok and "param='ntk'" in why
    for method in ("hvp", "cuda-emulated"):
        with pytest.raises(TypeError, match=r"standard parameterisation.*method='autodiff'"):
            mm.meta_value_and_grad(*args, method=method)
    _, g = mm.meta_value_and_grad(*args, method="autodiff")
    _, g_hessian = mm.meta_value_and_grad(*args, method="hessian")
    np.testing.assert_allclose(g_hessian, g, rtol=1e-11, atol=1e-13 * np.abs(g).max())
    # adapt on arrays takes the engine's route too: one step is θ − α∇L_support(θ) per task
    step = [args[1] - 0.05 * mm.grad(lambda th: mse(net(th, b.xs[t]), b.ys[t]))(args[1]) for t in range(3)]
    np.testing.assert_allclose(mm.adapt(*args[:4], 0.05, 1), step, rtol=1e-13)


def test_the_ntk_stays_of_order_one_as_the_width_grows():
    """K(x, x) = |∂f(x)/∂θ|²: O(1) under the NTK parameterisation, growing with the width under the
    standard one (why the theory, and a fixed α, need the former)."""
    x = np.array([[1.5]])

    def ntk_diag(width, param):
        net = MLP([1, width, 1], param=param)
        J = mm.jacobian(lambda th: net(th, x)[0, 0])(net.init(seed=0))
        return J @ J
    assert 0.5 < ntk_diag(4096, "ntk") / ntk_diag(64, "ntk") < 2
    assert ntk_diag(4096, "standard") / ntk_diag(64, "standard") > 10
