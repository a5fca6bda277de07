"""Online meta-learning: Follow the Meta-Leader (FTML; Finn, Rajeswaran, Kakade & Levine 2019).

Tasks arrive one after another, t = 1, 2, ...; the data of the current task arrive in batches. Before
task t the meta-learner plays w_t; the task's loss after one step of adaptation is

    f_t(U_t(w)),   U_t(w) = w − α ∇f̂_t(w)        (f̂_t: the loss on the task's training points)

and FTML plays the leader of these losses, follow the leader one level up:

    w_{t+1} = argmin_w  Σ_{k≤t} f_k(w − α ∇f̂_k(w))        (the one-step MAML objective on tasks 1..t)

In practice (the paper's Algorithm 1) the argmin is approached by meta-gradient steps: after every new
batch of the current task's data, N updates θ ← Adam(θ, g), g the MAML meta-gradient of a meta-batch
of tasks drawn uniformly from the buffer of all tasks seen (their data so far), each task with an
inner mini-batch (the support set, for ∇f̂) and a separate outer one (the query set, for f). The
meta-gradient is ``meta_value_and_grad``'s, so any model and loss work, and an ``MLP`` takes the fast
route. ``TaskBuffer`` is the buffer, ``meta_updates`` the N updates, ``FTML`` the two together.

The exact check (``quadratic_*``, ``ftl_closed_form``, ``follow_the_leader``): on quadratic tasks
f_i(w) = ½ wᵀA_i w + b_iᵀw, A_i symmetric positive definite, with f̂_i = f_i, the adapted point is
w − α(A_i w + b_i) and ∇f_i there is (I − αA_i)(A_i w + b_i); the chain rule multiplies by the step's
Jacobian (I − αA_i) once more, so

    ∇_w f_i(w − α∇f_i(w)) = (I − αA_i)² (A_i w + b_i)

and the leader after t tasks solves a linear system:

    w_t* = −A_†⁻¹ b_†,   A_† = mean_{i≤t} (I − αA_i)² A_i,   b_† = mean_{i≤t} (I − αA_i)² b_i.

The factor (I − αA_i) is notebook 4's (I − αH) with H = A_i: here it appears squared.
"""
import numbers

import numpy as np

from ..autodiff import grad, hessian, ops
from ..fastpath import network
from ..nn import mse
from ..optim import Adam
from ..tasks import TaskBatch, as_rng
from . import checks
from .maml import adapt, meta_loss, meta_value_and_grad


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


class TaskBuffer:
    """FTML's buffer: every task seen so far, each with the points that have arrived for it.

    Task k's points are x (n_k, ...) and y (n_k, ...); the last task added is the current one, and new
    batches of its data go to it (``add_points``).
    """

    def __init__(self):
        self._x, self._y = [], []

    def __len__(self):
        return len(self._x)

    def add_task(self):
        """Start a new (the current) task, with no points yet."""
        self._x.append(None)
        self._y.append(None)

    def add_points(self, x, y):
        """Append a batch of the current task's points: x (n, ...), y (n, ...)."""
        if not self._x:
            raise ValueError("the buffer holds no task yet: call add_task() before add_points()")
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(f"a batch is x (n, ...) and y (n, ...) with the same n >= 1 points, got x {x.shape} "
                             f"and y {y.shape}")
        old_x, old_y = self._x[-1], self._y[-1]
        self._x[-1] = x if old_x is None else np.concatenate([old_x, x])
        self._y[-1] = y if old_y is None else np.concatenate([old_y, y])

    def points(self, k):
        """(x, y) of task k: every point that has arrived for it."""
        return self._x[k], self._y[k]

    def sample(self, num_tasks, k_support, k_query, rng):
        """A meta-batch: ``num_tasks`` tasks drawn uniformly from the buffer without replacement (all of
        them, each once, while it holds fewer), and for each a support set of K = ``k_support`` and a
        disjoint query set of Q = ``k_query`` points of its data.

        A task with n >= K + Q points gives K and then Q of a random permutation (uniform, without
        replacement). A task with fewer (the current one, early on) is split at random into two
        disjoint parts in the proportion K : Q (each at least one point), and the K support and Q query
        points are drawn from them with replacement: the shapes stay fixed and the inner and outer
        mini-batches stay separate. Returns a ``TaskBatch`` xs, ys (T, K, ...), xq, yq (T, Q, ...),
        with the tasks' indices in the buffer as ``batch.task`` (T,).
        """
        T = min(_positive_int("num_tasks", num_tasks), len(self))
        K, Q = _positive_int("k_support", k_support), _positive_int("k_query", k_query)
        if not self._x:
            raise ValueError("cannot sample from an empty buffer: no task has arrived yet")
        rng = as_rng(rng)
        tasks = np.sort(rng.choice(len(self), size=T, replace=False))
        support, query = [], []
        for k in tasks:
            x, y = self._x[k], self._y[k]
            n = 0 if x is None else len(x)
            if n < 2:
                raise ValueError(f"task {k} holds {n} point(s); its inner and outer mini-batches need at "
                                 f"least 2 (one each)")
            order = rng.permutation(n)
            cut = K if n >= K + Q else min(max(round(n * K / (K + Q)), 1), n - 1)
            s, q = _draw(order[:cut], K, rng), _draw(order[cut:], Q, rng)
            support.append((x[s], y[s]))
            query.append((x[q], y[q]))
        xs, ys = (np.stack(a) for a in zip(*support))
        xq, yq = (np.stack(a) for a in zip(*query))
        return TaskBatch(xs, ys, xq, yq, {"task": tasks})


def _draw(pool, m, rng):
    """m indices from ``pool`` (already in random order): its first m, or m drawn with replacement
    when it holds fewer."""
    return pool[:m] if len(pool) >= m else rng.choice(pool, size=m, replace=True)


def meta_updates(net, theta, optimizer, buffer, rng, updates, meta_batch, k_support, k_query, inner_lr,
                 steps=1, loss=mse, method=None):
    """FTML's Meta-Update: ``updates`` steps θ ← optimizer.step(θ, g) on meta-batches from the buffer.

    Each step draws ``meta_batch`` tasks uniformly from ``buffer`` with their support and query sets
    (``TaskBuffer.sample``) and takes g = ∇θ 1/T Σ_t L_query,t(θ_S,t), θ_S,t after ``steps`` inner steps
    of size α = ``inner_lr`` on task t's support set: the MAML meta-gradient
    (``meta_value_and_grad``; ``method`` None: "hvp" when the fast route covers the model and loss,
    else "autodiff"). With ``steps=0`` there is no adaptation, and the support and query points are
    pooled: plain joint training on the buffer, g = ∇θ of the loss at θ itself on all the points drawn
    (the baselines "follow the leader" and "train on everything").

    ``rng``: a Generator or seed for the sampling. ``optimizer``: e.g. ``Adam``, whose state carries
    over from call to call. Returns (θ, the meta-losses (updates,)).
    """
    if method is None:
        method = "hvp" if network.supports(net, loss)[0] else "autodiff"
    rng = as_rng(rng)
    losses = np.empty(_positive_int("updates", updates))
    for i in range(len(losses)):
        b = buffer.sample(meta_batch, k_support, k_query, rng)
        xs, ys, xq, yq = b.xs, b.ys, b.xq, b.yq
        if steps == 0:                 # no adaptation: every point drawn is training data
            xq, yq = np.concatenate([xs, xq], axis=1), np.concatenate([ys, yq], axis=1)
        losses[i], g = meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method=method, loss=loss)
        theta = optimizer.step(theta, g)
    return theta, losses


class FTML:
    """Follow the Meta-Leader (Finn et al. 2019, Algorithm 1), for any model and loss.

        for each task t:  new_task()
            for each batch of its data:  observe(x, y)      the batch joins task t in the buffer, then
                                                            N = ``updates`` meta-updates (``meta_updates``)
                                         adapt(x_t, y_t)    U_t(θ): ``steps`` inner steps on all its
                                                            data so far, the parameters to use on task t

    θ is the meta-learner's current iterate w; the optimizer (Adam with step β = ``meta_lr`` unless
    given) keeps its state across tasks, as in the paper.
    """

    def __init__(self, net, theta, inner_lr, meta_lr=1e-3, updates=100, meta_batch=10, k_support=10,
                 k_query=10, steps=1, loss=mse, method=None, optimizer=None):
        checks.check_model(net, loss)                      # fail here, not at the first batch of data
        checks.check_theta(net, theta)
        checks.check_inner_loop(inner_lr, steps)
        self.net, self.theta, self.loss, self.method = net, theta, loss, method
        self.inner_lr, self.steps, self.updates = inner_lr, steps, _positive_int("updates", updates)
        self.meta_batch = _positive_int("meta_batch", meta_batch)
        self.k_support, self.k_query = _positive_int("k_support", k_support), _positive_int("k_query", k_query)
        self.optimizer = optimizer if optimizer is not None else Adam(meta_lr)
        self.buffer = TaskBuffer()

    def new_task(self):
        """A new task arrives: it joins the buffer (with no data yet)."""
        self.buffer.add_task()

    def observe(self, x, y, rng):
        """A batch of the current task's points arrives: add it, then run the meta-updates.
        Returns their meta-losses (updates,)."""
        self.buffer.add_points(x, y)
        self.theta, losses = meta_updates(self.net, self.theta, self.optimizer, self.buffer, rng, self.updates,
                                          self.meta_batch, self.k_support, self.k_query, self.inner_lr,
                                          self.steps, self.loss, self.method)
        return losses

    def adapt(self, x, y):
        """U(θ): θ after ``steps`` inner steps of size α on one task's points x (n, ...), y (n, ...)."""
        return adapt(self.net, self.theta, x[None], y[None], self.inner_lr, self.steps, self.loss)[0]


# ----------------------------------------------------------------------------------------------
# The exact check: quadratic tasks, where the leader has a closed form
# ----------------------------------------------------------------------------------------------
def quadratic_model(theta, x):
    """The "model" of a quadratic task: its output at every point is w = θ itself. θ (P,), x (N, ...)
    (only N is used) -> (N, P). With ``quadratic_loss`` the task's loss is f(w) = ½ wᵀAw + bᵀw."""
    return theta + np.zeros((x.shape[0], theta.shape[-1]))


def quadratic_loss(out, y):
    """f(w) = mean over points n of ½ wᵀA_n w + b_nᵀw, with A_n (P, P) and b_n (P,) packed in the targets,
    y_n = [A_n.ravel(), b_n] (``quadratic_data``): out (..., N, P), y (..., N, P² + P) -> (...)."""
    P = out.shape[-1]
    if y.shape[-1] != P * P + P:
        raise ValueError(f"quadratic_loss: targets must pack A (P×P) and b (P) as {P * P + P} numbers per point "
                         f"for P = {P}, got y of shape {y.shape}")
    A = y[..., :P * P].reshape(tuple(y.shape[:-1]) + (P, P))
    b = y[..., P * P:]
    Aw = ops.sum(A * ops.reshape(out, tuple(out.shape[:-1]) + (1, P)), axis=-1)    # A w, row by row
    return ops.mean(0.5 * ops.sum(out * Aw, axis=-1) + ops.sum(b * out, axis=-1), axis=-1)


def quadratic_tasks(num_tasks, dim, rng=None, eigenvalues=(0.5, 2.0)):
    """T random quadratics: A_i = Q_i diag(λ) Q_iᵀ (Q_i a random rotation, λ ~ U[eigenvalues]), symmetric
    positive definite, and b_i ~ N(0, I). Returns A (T, P, P), b (T, P), P = ``dim``."""
    T, P, rng = _positive_int("num_tasks", num_tasks), _positive_int("dim", dim), as_rng(rng)
    lo, hi = eigenvalues
    if not 0 < lo <= hi:
        raise ValueError(f"eigenvalues must be (low, high) with 0 < low <= high (A positive definite), "
                         f"got {eigenvalues!r}")
    Q = np.linalg.qr(rng.standard_normal((T, P, P)))[0]
    lam = rng.uniform(lo, hi, size=(T, P))
    A = (Q * lam[:, None, :]) @ np.swapaxes(Q, 1, 2)
    return 0.5 * (A + np.swapaxes(A, 1, 2)), rng.standard_normal((T, P))


def quadratic_data(A, b, points=2):
    """Tasks as data for minimaml: x (T, points, 1) zeros, y (T, points, P² + P), every point of task i
    the same [A_i.ravel(), b_i]. Two points let the buffer draw disjoint inner and outer mini-batches
    of one point each that both see f_i (f̂ = f, as in the closed form)."""
    T, P = b.shape
    y = np.concatenate([A.reshape(T, P * P), b], axis=1)
    return np.zeros((T, points, 1)), np.repeat(y[:, None, :], points, axis=1)


def ftl_closed_form(A, b, inner_lr):
    """The leader after the T tasks given, w* = −A_†⁻¹ b_†, with A_† = mean_i (I − αA_i)² A_i and
    b_† = mean_i (I − αA_i)² b_i (module docstring). A (T, P, P), b (T, P) -> (P,)."""
    M = np.eye(b.shape[-1]) - inner_lr * A                 # I − αA_i, the inner step's Jacobian
    M2 = M @ M
    return -np.linalg.solve((M2 @ A).mean(axis=0), np.einsum("tij,tj->ti", M2, b).mean(axis=0))


def follow_the_leader(net, theta, xs, ys, xq, yq, inner_lr, loss=mse):
    """The leader of the T tasks given, argmin_w 1/T Σ_t L_query,t(w − α∇L_support,t(w)), by one Newton
    step from θ with the engine's exact gradient and Hessian of that objective F:

        w = θ − ∇²F(θ)⁻¹ ∇F(θ).

    Exact when F is quadratic in w (the quadratic tasks, whatever θ); for other models one Newton step.
    No formula for F's derivatives is used: the engine differentiates through the inner step."""
    def F(w):
        return meta_loss(net, w, xs, ys, xq, yq, inner_lr, 1, loss=loss)
    return theta - np.linalg.solve(hessian(F)(theta), grad(F)(theta))
