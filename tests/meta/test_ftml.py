"""FTML: the exact follow-the-leader on quadratic tasks equals the closed form −A_†⁻¹b_† at every t, the
practical FTML iterate approaches it, and the buffer draws tasks and points uniformly with separate
inner and outer mini-batches."""

import numpy as np
import pytest

import minimaml as mm
from minimaml.meta.ftml import (FTML, TaskBuffer, follow_the_leader, ftl_closed_form, meta_updates, quadratic_data,
                                quadratic_loss, quadratic_model, quadratic_tasks)

ALPHA = 0.3


def quadratic_stream(T=6, dim=4, seed=0):
    A, b = quadratic_tasks(T, dim, rng=seed)
    x, y = quadratic_data(A, b)
    return A, b, x, y


def test_the_quadratic_model_and_loss_are_the_quadratic():
    A, b, x, y = quadratic_stream(T=3)
    w = np.random.default_rng(1).standard_normal(4)
    f = quadratic_loss(mm.stack([quadratic_model(w, x[t]) for t in range(3)]), y)        # (T,)
    np.testing.assert_allclose(f, 0.5 * np.einsum("i,tij,j->t", w, A, w) + b @ w, rtol=1e-14)
    np.testing.assert_allclose(mm.grad(lambda v: quadratic_loss(quadratic_model(v, x[0]), y[0]))(w), A[0] @ w + b[0],
                               rtol=1e-13)


def test_the_one_step_gradient_has_the_factor_squared():
    """∇_w f(w − α∇f(w)) = (I − αA)²(Aw + b): the autodiff meta-gradient against the formula."""
    A, b, x, y = quadratic_stream(T=1)
    w = np.random.default_rng(2).standard_normal(4)
    _, g = mm.meta_value_and_grad(quadratic_model, w, x[:, :1], y[:, :1], x[:, 1:], y[:, 1:], ALPHA, 1,
                                  method="autodiff", loss=quadratic_loss)
    M = np.eye(4) - ALPHA * A[0]
    np.testing.assert_allclose(g, M @ M @ (A[0] @ w + b[0]), rtol=1e-12)


def test_exact_follow_the_leader_is_the_closed_form_at_every_t():
    A, b, x, y = quadratic_stream(T=8)
    start = np.random.default_rng(3).standard_normal(4)             # any start: the objective is quadratic
    leaders = []
    for t in range(1, 9):
        w = follow_the_leader(quadratic_model, start, x[:t, :1], y[:t, :1], x[:t, 1:], y[:t, 1:], ALPHA,
                              loss=quadratic_loss)
        closed = ftl_closed_form(A[:t], b[:t], ALPHA)
        np.testing.assert_allclose(w, closed, rtol=0, atol=1e-12 * max(1.0, np.abs(closed).max()))
        leaders.append(closed)
    assert min(np.linalg.norm(np.diff(leaders, axis=0), axis=1)) > 1e-3       # the leader moves with t


def test_the_closed_form_is_not_the_plain_leader():
    """Without the (I − αA)² factor the leader is −(mean A)⁻¹(mean b), a different point: the check has
    teeth."""
    A, b, _, _ = quadratic_stream(T=5)
    plain = -np.linalg.solve(A.mean(0), b.mean(0))
    assert np.linalg.norm(ftl_closed_form(A, b, ALPHA) - plain) > 0.05


def test_the_ftml_iterate_approaches_the_leader():
    """FTML with the whole buffer in each meta-batch takes Adam steps on the exact FTL objective: after its
    updates for task t, θ is within 1e-6 of −A_†⁻¹b_† of tasks 1..t, every t, while the leader itself
    moved by far more when the task arrived."""
    A, b, x, y = quadratic_stream(T=5)
    ftml = FTML(quadratic_model, np.zeros(4), ALPHA, meta_lr=0.05, updates=400, meta_batch=10, k_support=1,
                k_query=1, loss=quadratic_loss)
    rng = np.random.default_rng(0)
    for t in range(5):
        ftml.new_task()
        leader = ftl_closed_form(A[:t + 1], b[:t + 1], ALPHA)
        before = np.linalg.norm(ftml.theta - leader)
        losses = ftml.observe(x[t], y[t], rng)
        after = np.linalg.norm(ftml.theta - leader)
        assert before > 0.1 and after < 1e-6, (t, before, after)
        assert losses[-1] < losses[0]


def test_a_smaller_meta_batch_still_approaches_the_leader():
    """Tasks drawn two at a time: a stochastic gradient of the FTL objective. From afar the iterate comes close; at
    the leader, Adam with a fixed step β hovers around it, at a distance that shrinks with β."""
    A, b, x, y = quadratic_stream(T=6)
    leader = ftl_closed_form(A, b, ALPHA)
    buffer = TaskBuffer()
    for t in range(6):
        buffer.add_task()
        buffer.add_points(x[t], y[t])

    def distances(theta, lr, updates, seed=0):
        optimizer, rng, out = mm.Adam(lr), np.random.default_rng(seed), []
        for _ in range(updates // 50):
            theta, _ = meta_updates(quadratic_model, theta, optimizer, buffer, rng, 50, 2, 1, 1, ALPHA,
                                    loss=quadratic_loss)
            out.append(np.linalg.norm(theta - leader))
        return np.array(out)

    far = distances(np.zeros(4), 0.005, 1000)                   # from 0.9 away
    assert np.linalg.norm(leader) > 0.5 and far[-10:].mean() < 0.12, far
    hover = {lr: distances(leader.copy(), lr, 500).mean() for lr in (0.05, 0.005)}
    assert hover[0.005] < 0.5 * hover[0.05], hover               # ~√10 closer: a noise floor ∝ √β


# ------------------------------------------------------------------------------------------
# The buffer
# ------------------------------------------------------------------------------------------
def labelled_buffer(sizes):
    """Task k's point i has x = 1000 k + i, y = −x: every point is recognisable."""
    buffer = TaskBuffer()
    for k, n in enumerate(sizes):
        buffer.add_task()
        x = (1000.0 * k + np.arange(n))[:, None]
        buffer.add_points(x[: n // 2], -x[: n // 2])          # in two batches, as a stream delivers them
        buffer.add_points(x[n // 2:], -x[n // 2:])
    return buffer


def test_tasks_are_drawn_uniformly_and_points_split_into_disjoint_inner_and_outer_batches():
    buffer = labelled_buffer([30, 30, 30, 30, 30])
    rng = np.random.default_rng(0)
    counts, point_counts = np.zeros(5), np.zeros(30)
    for _ in range(4000):
        batch = buffer.sample(2, 5, 4, rng)
        assert batch.xs.shape == (2, 5, 1) and batch.xq.shape == (2, 4, 1)
        assert len(set(batch.task)) == 2                                        # without replacement
        np.testing.assert_array_equal(batch.ys, -batch.xs)
        for t, k in enumerate(batch.task):
            s, q = batch.xs[t, :, 0], batch.xq[t, :, 0]
            assert ((s // 1000) == k).all() and ((q // 1000) == k).all()       # the task's own points
            assert len(set(s)) == 5 and len(set(q)) == 4 and not set(s) & set(q)   # disjoint, no repeats
            if k == 0:
                np.add.at(point_counts, s.astype(int), 1)
        counts[batch.task] += 1
    # each task in 2/5 of the meta-batches; each point of task 0 in 5/30 of its support sets
    np.testing.assert_allclose(counts / 4000, 0.4, atol=0.03)
    np.testing.assert_allclose(point_counts / counts[0], 5 / 30, atol=0.03)


def test_a_small_buffer_gives_every_task_once():
    buffer = labelled_buffer([20, 20, 20])
    batch = buffer.sample(10, 3, 3, 0)
    assert list(batch.task) == [0, 1, 2]


def test_a_task_with_few_points_keeps_its_inner_and_outer_points_apart():
    buffer = labelled_buffer([4])                   # fewer than K + Q = 10: drawn with replacement from two parts
    for seed in range(50):
        batch = buffer.sample(1, 5, 5, seed)
        s, q = set(batch.xs[0, :, 0]), set(batch.xq[0, :, 0])
        assert batch.xs.shape == (1, 5, 1) and not s & q and s | q <= {0.0, 1.0, 2.0, 3.0}


@pytest.mark.parametrize("call, match", [
    (lambda b: b.sample(1, 1, 1, 0), "empty buffer"),
    (lambda b: b.add_points(np.zeros((2, 1)), np.zeros((2, 1))), "call add_task"),
])
def test_an_empty_buffer_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(TaskBuffer())


def test_a_task_with_one_point_cannot_be_split():
    buffer = TaskBuffer()
    buffer.add_task()
    buffer.add_points(np.zeros((1, 1)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match=r"task 0 holds 1 point\(s\); its inner and outer mini-batches need "
                                         r"at least 2"):
        buffer.sample(1, 5, 5, 0)


def test_bad_batches_and_sizes_are_clear_errors():
    buffer = labelled_buffer([10])
    with pytest.raises(ValueError, match="same n >= 1 points"):
        buffer.add_points(np.zeros((3, 1)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="k_support must be an int >= 1, got 0"):
        buffer.sample(1, 0, 5, 0)
    with pytest.raises(ValueError, match=r"0 < low <= high"):
        quadratic_tasks(2, 3, eigenvalues=(-1.0, 1.0))


def test_ftml_on_an_mlp_takes_the_fast_route_and_learns():
    """On a short stream of sinusoids FTML's θ improves the one-step meta-loss on 100 held-out sinusoids (the MLP
    takes the "hvp" route)."""
    net = mm.MLP([1, 20, 20, 1])
    ftml = FTML(net, net.init(0), 0.01, meta_lr=3e-3, updates=100, meta_batch=5)
    held_out = mm.Sinusoid().sample(100, 10, 10, rng=123)

    def meta_loss(theta):
        return mm.meta_value_and_grad(net, theta, held_out.xs, held_out.ys, held_out.xq, held_out.yq, 0.01, 1)[0]
    before, rng = meta_loss(ftml.theta), np.random.default_rng(0)
    for t in range(6):
        b = mm.Sinusoid().sample(1, 40, 1, rng)
        ftml.new_task()
        for j in range(0, 40, 20):                         # two batches of 20 points
            ftml.observe(b.xs[0, j:j + 20], b.ys[0, j:j + 20], rng)
    assert meta_loss(ftml.theta) < 0.7 * before, (before, meta_loss(ftml.theta))
    assert len(ftml.buffer) == 6 and len(ftml.buffer.points(5)[0]) == 40
    assert ftml.adapt(b.xs[0], b.ys[0]).shape == (net.num_params,)


def test_bad_arguments_fail_at_construction_not_at_the_first_batch():
    net = mm.MLP([1, 4, 1])
    with pytest.raises(ValueError, match=r"inner_lr \(α\) must be a finite number > 0"):
        mm.FTML(net, net.init(0), -0.01)
    with pytest.raises(ValueError, match=r"theta must have shape \(P,\) = \(13,\)"):
        mm.FTML(net, net.init(0)[:3], 0.01)
