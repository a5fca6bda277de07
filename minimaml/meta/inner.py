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
``axpy(c, X, Y) = Y + cX``, ``scale(s, X) = s ⊙ X`` (s (P,)), ``mean(X)`` and
``mean_product(X, Y)`` over tasks (and ``tensor_dots(X, Y, tensors)``, its sums over θ ranges),
``flat(X)`` as (T, P) and ``outputs(params, x)``.

    inner loop   θ_0 = θ,   θ_{k+1} = θ_k − s_k ⊙ ∇L_support(θ_k),   k = 0..S−1
    walk back    g ← ∇L_query(θ_S);   for k = S−1..0:  g ← (I − diag(s_k) H_k)ᵀ g = g − H_k (s_k ⊙ g)

(H_k = ∇²L_support(θ_k) is symmetric.) MAML takes s_k = α; the MAML family differs only in the step
sizes s_k (a number, or one per parameter) and in what it does with the trajectory.
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
    def scale(s, X):
        return s * X

    @staticmethod
    def mean_product(X, Y):
        return (X * Y).mean(axis=0)

    @staticmethod
    def tensor_dots(X, Y, tensors):
        product = (X * Y).mean(axis=0)
        return np.array([product[a:b].sum() for a, b in tensors])

    @staticmethod
    def mean(X, dtype):
        return X.mean(axis=0).astype(dtype, copy=False)

    @staticmethod
    def flat(X, lead, dtype):
        return np.broadcast_to(X, tuple(lead) + X.shape[-1:]).astype(dtype)


def task_losses_for(net, loss, ws=None, rank=0, fast=True, like=None):
    """The fast route's ``TaskLosses`` when it covers (net, loss) and ``fast``, else the engine's.
    ``ws``: its workspace (default: fresh arrays of the array module of ``like``, e.g. θ)."""
    from ..fastpath import arena, network
    if fast and network.supports(net, loss)[0]:
        xp = array_module(raw(like)) if like is not None else np
        return network.TaskLosses(net, loss, ws or arena.Fresh(xp), rank)
    return EngineTaskLosses(net, loss)


class Adaptation:
    """How a meta-learned model adapts to a new task, at test time or in a training loop's validation:

        θ_{k+1} = θ_k − s_k ⊙ (∇L_support(θ_k) + λ (θ_k − θ_0)),   k = 0, 1, ...

    ``sizes``: the step sizes, one per step (numbers or (P,) vectors); steps past the end reuse the
    last (MAML++: its learned sizes for the steps it was trained with, then the last one). ``lam``:
    iMAML's proximal pull toward the meta-learned θ_0 (0 for the others). A number α is
    ``Adaptation([α])``: MAML's plain gradient descent."""

    def __init__(self, sizes, lam=0.0):
        self.sizes, self.lam = list(sizes), float(lam)

    def size(self, k):
        return self.sizes[min(k, len(self.sizes) - 1)]

    def is_plain(self, alpha):
        """Whether this is plain gradient descent with step α (MAML's rule)."""
        return len(self.sizes) == 1 and np.ndim(self.sizes[0]) == 0 and self.sizes[0] == alpha and not self.lam

    def needs_dense(self, net):
        """Whether the rule needs per-task vectors held densely: the proximal term, or a step size that
        varies along a row of one of the net's layers (Meta-SGD's). ANIL's mask and MAML++'s per-tensor
        sizes are one number per row, which the fast route's low-rank weights take."""
        from ..fastpath import network
        from ..nn import MLP
        vectors = [np.asarray(s) for s in self.sizes if np.ndim(s)]
        if self.lam:
            return True
        return bool(vectors) and (not isinstance(net, MLP)
                                  or any(network.layer_pattern(net, s) is None for s in vectors))

    def step(self, tl, k, params, grads, start, factor=1.0):
        """θ_{k+1} from θ_k = ``params`` and ∇L(θ_k) = ``grads`` (a TaskLosses' vectors; ``start`` is
        θ_0 in tl's form); ``factor``: a number or one per task (T,) scaling the step (backtracking)."""
        direction = tl.axpy(self.lam, tl.axpy(-1.0, start, params), grads) if self.lam else grads
        s = self.size(k)
        if np.ndim(s) == 0:
            return tl.axpy(-s * factor, direction, params)
        return tl.axpy(-factor, tl.scale(s, direction), params)

    def __repr__(self):
        shown = [f"{s:g}" if np.ndim(s) == 0 else f"vector {np.shape(s)}" for s in self.sizes]
        return f"Adaptation(sizes={shown}" + (f", lam={self.lam:g})" if self.lam else ")")


def step_sizes(inner_lr, steps):
    """The step sizes of an inner loop, one per step: s_k = α for MAML. An algorithm may give each
    step its own size, a number or a (P,) vector (per parameter: Meta-SGD's learned α, MAML++'s
    per-tensor sizes, ANIL's α·mask)."""
    return [inner_lr] * steps


def inner_loop(tl, theta, x, y, sizes, keep_grads=False):
    """Run the inner steps from θ on each task's support set (x, y), one per entry of ``sizes``:
    per step k a ``value_and_grad`` at θ_k (its cache kept for the walk back) and

        θ_{k+1} = θ_k − s_k ⊙ ∇L(θ_k).

    ``tl``: a TaskLosses. Returns (θ_S in tl's form, [cache_0, ..., cache_{S−1}]), and the support
    gradients [∇L(θ_0), ...] too if ``keep_grads`` (for the gradient with respect to the sizes)."""
    params, caches, grads = tl.start(theta), [], []
    for s in sizes:
        _, g, cache = tl.value_and_grad(params, x, y, need_loss=False)
        caches.append(cache)
        if keep_grads:
            grads.append(g)
        params = tl.axpy(-s, g, params) if np.ndim(s) == 0 else tl.axpy(-1.0, tl.scale(s, g), params)
    return (params, caches, grads) if keep_grads else (params, caches)


def walk_back(tl, caches, g, sizes, grads=None, add=None, tensors=None):
    """Back through the inner steps, k = S−1 .. 0, each H_k g one Hessian-vector product from cache k.

    Step k's Jacobian is ∂θ_{k+1}/∂θ_k = I − diag(s_k) H_k, not symmetric when s_k varies by entry,
    so the walk back applies its transpose:  g ← g − H_k (s_k ⊙ g)  (= (I − s_k H_k) g for a number s_k).
    ``grads`` (the inner loop's support gradients): also return the meta-gradient with respect to
    each step size, ∂L/∂s_k = −mean over tasks of ∇L(θ_k) ⊙ g_{k+1}, a (P,) array per step (else
    None); with ``tensors`` (θ ranges, a size shared by each), the sums over them instead, (J,) per
    step. ``add``: {k: (w, X)}: w·X is added to g once g is the gradient with respect to θ_k (the
    query losses of the inner steps, for a multi-step loss). Returns (g, [∂L/∂s_0, ...])."""
    step_grads = [None] * len(caches)
    for k in reversed(range(len(caches))):
        s = sizes[k]
        if grads is not None:
            step_grads[k] = -(tl.mean_product(grads[k], g) if tensors is None
                              else tl.tensor_dots(grads[k], g, tensors))
        if np.ndim(s) == 0:
            g = tl.axpy(-s, tl.hvp(caches[k], g), g)
        else:
            g = tl.axpy(-1.0, tl.hvp(caches[k], tl.scale(s, g)), g)
        if add is not None and k in add:
            g = tl.axpy(add[k][0], add[k][1], g)
    return g, step_grads
