"""The inner loop every algorithm shares, and the walk back through it.

A model is any pure function ``net(θ, x)`` for one task (θ (P,), x (N, ...) -> (N, ...)) written
with minimaml's ops; ``task_outputs`` runs it over the T tasks of a batch (all at once when the
model says ``batched = True``, as ``MLP`` does). A loss returns each task's mean over its points.

Per-task losses, gradients and Hessian-vector products come from one interface with two
implementations, so an algorithm never writes its own backprop:

* ``fastpath.TaskLosses``: hand-derived passes, for ``MLP`` with ``mse`` or cross-entropy;
* ``EngineTaskLosses``: the autodiff engine, for any model and loss.

Both hold per-task parameters in their own form (``start(θ)`` makes it) and offer
``value_and_grad(params, x, y) -> (losses (T,), grads, cache)``, ``hvp(cache, v)``,
``axpy(c, X, Y) = Y + cX``, ``mean(X)`` over tasks, ``flat(X)`` as (T, P) and ``outputs(params, x)``.

    inner loop   θ_0 = θ,   θ_{k+1} = θ_k − α ∇L_support(θ_k),   k = 0..S−1
    walk back    g ← ∇L_query(θ_S);   for k = S−1..0:  g ← (I − α H_k) g = g − α H_k g

(H_k = ∇²L_support(θ_k) is symmetric, so (I − αH_k)ᵀ g = g − αH_k g.)
"""
import numpy as np

from ..autodiff import grad, hvp, ops, vjp
from ..autodiff.tensor import array_module, raw
from .checks import check_task_losses


def task_outputs(net, thetas, x):
    """net(θ_t, x_t) for every task: thetas (T, P) (or a shared (P,)), x (T, N, ...) -> (T, N, ...).
    A model with ``batched = True`` takes the whole batch in one call; any other is called once per
    task and the outputs stacked (differentiably, so this works on engine Tensors too)."""
    if getattr(net, "batched", False):
        return net(thetas, x)
    shared = len(getattr(thetas, "shape", ())) == 1
    return ops.stack([net(thetas if shared else thetas[t], x[t]) for t in range(x.shape[0])])


def task_losses(net, loss, thetas, x, y):
    """Per-task losses (T,) = loss(net(θ_t, x_t), y_t) for every task."""
    losses = loss(task_outputs(net, thetas, x), y)
    check_task_losses(losses, x.shape[0], loss)
    return losses


def task_grads(net, loss, thetas, x, y):
    """∇θ L(θ_t; x_t, y_t) for every task, thetas (T, P) -> (T, P), by the engine.

    Each task's loss depends only on its own row of thetas, so the gradient of the *sum* of the T
    losses is the stack of the T per-task gradients. On Tensors this stays on the engine's graph,
    which is what lets the "autodiff" route differentiate through the inner loop.
    """
    return grad(lambda th: ops.sum(task_losses(net, loss, th, x, y)))(thetas)


def per_task(theta, num_tasks):
    """θ (P,) shared -> (T, P), one row per task. On Tensors the broadcast's VJP sums the T rows'
    cotangents back into one: the Σ_t of the meta-gradient's chain rule."""
    xp = array_module(raw(theta))
    return theta + xp.zeros((num_tasks, theta.shape[-1]), dtype=raw(theta).dtype)


class EngineTaskLosses:
    """Per-task losses, gradients and Hessian-vector products of any model and loss, by the engine:
    the gradient by one reverse pass over the sum of the task losses, H v by reverse over reverse.
    Parameters are plain (T, P) arrays (or the shared (P,) before the first step)."""

    def __init__(self, net, loss):
        self.model, self.loss = net, loss

    def start(self, theta):
        return theta

    def value_and_grad(self, params, x, y, need_loss=True):
        thetas = per_task(params, x.shape[0]) if params.ndim == 1 else params
        losses, pullback = vjp(lambda th: task_losses(self.model, self.loss, th, x, y), thetas)
        g = pullback(np.ones(x.shape[0], dtype=thetas.dtype))
        return losses, g, (thetas, x, y)

    def hvp(self, cache, v):
        thetas, x, y = cache
        return hvp(lambda th: ops.sum(task_losses(self.model, self.loss, th, x, y)), thetas, v)

    def outputs(self, params, x):
        return task_outputs(self.model, params, x)

    @staticmethod
    def axpy(c, X, Y):
        """Y + cX, c a number or one per task (T,)."""
        return Y + (c if np.ndim(c) == 0 else np.reshape(c, (-1, 1))) * X

    @staticmethod
    def mean(X, dtype):
        return X.mean(axis=0).astype(dtype, copy=False)

    @staticmethod
    def flat(X, lead, dtype):
        return np.broadcast_to(X, tuple(lead) + X.shape[-1:]).astype(dtype)


def task_losses_for(net, loss, ws=None, rank=0, fast=True):
    """The fast route's ``TaskLosses`` when it covers (net, loss) and ``fast``, else the engine's."""
    from ..fastpath import arena, network
    if fast and network.supports(net, loss)[0]:
        return network.TaskLosses(net, loss, ws or arena.Fresh(np), rank)
    return EngineTaskLosses(net, loss)


def inner_loop(tl, theta, x, y, inner_lr, steps):
    """Run S = ``steps`` inner steps from θ on each task's support set (x, y): per step k a
    ``value_and_grad`` at θ_k (its cache kept for the walk back) and θ_{k+1} = θ_k − α ∇L(θ_k).
    ``tl``: a TaskLosses. Returns (θ_S in tl's form, [cache_0, ..., cache_{S−1}])."""
    params, caches = tl.start(theta), []
    for _ in range(steps):
        _, g, cache = tl.value_and_grad(params, x, y, need_loss=False)
        caches.append(cache)
        params = tl.axpy(-inner_lr, g, params)
    return params, caches


def walk_back(tl, caches, g, inner_lr):
    """g ← (I − α H_k) g for k = S−1 .. 0, each H_k g one Hessian-vector product from cache k."""
    for cache in reversed(caches):
        g = tl.axpy(-inner_lr, tl.hvp(cache, g), g)
    return g

