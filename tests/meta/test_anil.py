"""ANIL (Raghu et al. 2020): only the head adapts. MAML with the step α·mask: every route agrees, the
body stays at θ in the inner loop, and the second-order term uses only the Hessian's head columns."""

import numpy as np
import pytest

import minimaml as mm


def problem(norm=None, loss=mm.mse, seed=0):
    net = mm.MLP([2, 8, 6, 3], activation="tanh", norm=norm)
    rng = np.random.default_rng(seed)
    xs, xq = rng.standard_normal((3, 5, 2)), rng.standard_normal((3, 4, 2))
    if loss is mm.mse:
        ys, yq = rng.standard_normal((3, 5, 3)), rng.standard_normal((3, 4, 3))
    else:
        ys, yq = rng.integers(0, 3, (3, 5)), rng.integers(0, 3, (3, 4))
    return net, net.init(seed) + 0.1 * rng.standard_normal(net.num_params), xs, ys, xq, yq


@pytest.mark.parametrize("norm", [None, "batch"])
@pytest.mark.parametrize("loss", [mm.mse, mm.softmax_cross_entropy], ids=["mse", "ce"])
def test_every_route_agrees_with_the_mask(norm, loss):
    net, theta, *data = problem(norm, loss)
    mask = net.head_mask()
    grads = {m: mm.meta_value_and_grad(net, theta, *data, 0.2, 2, method=m, loss=loss, inner_mask=mask)[1]
             for m in ("autodiff", "hessian", "hvp", "first_order")}
    for m in ("hessian", "hvp"):
        np.testing.assert_allclose(grads[m], grads["autodiff"], rtol=1e-9, atol=1e-13)
    assert np.abs(grads["first_order"] - grads["autodiff"]).max() > 1e-4
    # not MAML: the body's adaptation changes the answer
    maml = mm.meta_value_and_grad(net, theta, *data, 0.2, 2, loss=loss)[1]
    assert np.abs(maml - grads["hvp"]).max() > 1e-4


def test_the_body_does_not_adapt_and_the_mixed_block_carries_its_gradient():
    net, theta, xs, ys, xq, yq = problem()
    head = net.head_mask()
    alpha = 0.2
    # one step, one task: θ' = θ − α mask ⊙ g; meta-gradient g_q − α H[:, head] g_q[head]
    support = lambda th: mm.mse(net(th, xs[0]), ys[0])            # noqa: E731
    g0 = mm.grad(support)(theta)
    theta1 = theta - alpha * head * g0
    np.testing.assert_array_equal(theta1[~head], theta[~head])
    gq = mm.grad(lambda th: mm.mse(net(th, xq[0]), yq[0]))(theta1)
    H = mm.hessian(support)(theta)
    expected = gq - alpha * H[:, head] @ gq[head]
    _, g = mm.meta_value_and_grad(net, theta, xs[:1], ys[:1], xq[:1], yq[:1], alpha, 1, inner_mask=head)
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-14)
    body_rows = H[np.ix_(~head, head)]                              # the mixed body × head block
    assert np.abs(body_rows).max() > 1e-3 and np.abs(g[~head] - gq[~head]).max() > 1e-6
    print(f"head block {head.sum()}x{net.num_params} of the {net.num_params}^2 Hessian")


def test_the_masked_meta_gradient_against_finite_differences():
    net, theta, xs, ys, xq, yq = problem(seed=3)
    head = net.head_mask()

    # the definition: the inner loop moves only the head, by the engine's gradient of the support loss
    def definition(th):
        total = 0.0
        for t in range(3):
            g = mm.grad(lambda p: mm.mse(net(p, xs[t]), ys[t]))(th)
            total += float(mm.mse(net(th - 0.2 * head * g, xq[t]), yq[t]))
        return total / 3
    eps = 1e-6
    fd = np.array([(definition(theta + eps * e) - definition(theta - eps * e)) / (2 * eps)
                   for e in np.eye(net.num_params)])
    _, g = mm.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.2, 1, inner_mask=head)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mask, error, match", [
    (np.ones(5, dtype=bool), ValueError, r"inner_mask must have θ's shape \(99,\), got \(5,\)"),
    (np.ones(99), TypeError, "inner_mask must be a boolean array"),
])
def test_bad_masks_are_one_clear_error(mask, error, match):
    net, theta, *data = problem()
    with pytest.raises(error, match=match):
        mm.meta_value_and_grad(net, theta, *data, 0.2, 1, inner_mask=mask)
    with pytest.raises(ValueError, match="method='cuda-emulated' adapts every parameter"):
        mm.meta_value_and_grad(net, theta, *data, 0.2, 1, method="cuda-emulated", inner_mask=net.head_mask())


@pytest.mark.parametrize("loss", [mm.mse, mm.softmax_cross_entropy], ids=["mse", "ce"])
def test_layers_held_as_low_rank_take_a_mask_that_is_one_number_per_layer(loss):
    # Wide enough that the fast route holds the middle layers' per-task weights as low rank: the
    # mask's α (head) and 0 (body) scale the factors, and the answer is the autodiff route's.
    from minimaml.fastpath import network
    net, theta, xs, ys, xq, yq = wide_problem(loss, seed=5)
    assert any(network.choose_lowrank(net, 2 + 2 * 2 * 2))
    masks = {"head": net.head_mask(), "body": ~net.head_mask()}
    cut = np.zeros(net.num_params, bool)
    cut[: net.num_params // 2] = True                    # varies inside a low-rank layer: held densely
    masks["cut"] = cut
    assert network.layer_pattern(net, cut) is None
    assert network.layer_pattern(net, 1.0 * masks["head"]) == ("zero", "zero", "same")
    for _ in range(2):                                   # again: the buffers reused per mask are right
        for name, mask in masks.items():
            want = mm.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.3, 2, method="autodiff", loss=loss,
                                          inner_mask=mask)
            got = mm.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.3, 2, loss=loss, inner_mask=mask)
            assert got[0] == pytest.approx(want[0], rel=1e-12), name
            np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-12, err_msg=name)


def wide_problem(loss, seed):
    """A net whose middle layer the fast route holds as low rank for 2 points per task (rank ≤ 32),
    with 4 tasks of 2 support and 2 query points."""
    net = mm.MLP([3, 64, 64, 3], activation="tanh", norm="batch")
    rng = np.random.default_rng(seed)
    theta = net.init(seed) + 0.05 * rng.standard_normal(net.num_params)
    xs, xq = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    if loss is mm.mse:
        ys, yq = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    else:
        ys, yq = rng.integers(0, 3, (4, 2)), rng.integers(0, 3, (4, 2))
    return net, theta, xs, ys, xq, yq
