"""MAML (Finn et al. 2017, Algorithm 1) as pure functions of a flat parameter vector θ (P,).

For a batch of T tasks, each with a support set (xs, ys) of K points and a query set (xq, yq)::

    inner loop (per task t, S = steps):   θ_0 = θ,   θ_{k+1} = θ_k − α ∇θ L_support,t(θ_k)
    meta-loss:                            L_meta(θ) = 1/T Σ_t L_query,t(θ_S,t)
    outer update (see optim.py):          θ ← θ − β ∇θ L_meta(θ)

with L(θ; x, y) = loss(net(θ, x), y) (``loss`` = ``mse`` unless given: any function with the
convention of ``minimaml.mse``, e.g. ``softmax_cross_entropy``), α = ``inner_lr`` and
β = ``meta_lr``. By the chain rule, with H_k the Hessian of the support loss at θ_k::

    ∇θ L_meta = 1/T Σ_t (I − α H_0)ᵀ (I − α H_1)ᵀ ... (I − α H_{S−1})ᵀ ∇L_query,t(θ_S,t)

``meta_value_and_grad`` computes this one quantity several ways, so a reader can check each
against the others:

* ``"autodiff"``: the engine differentiates through the inner loop itself (it calls ``grad``
  inside a function that ``value_and_grad`` differentiates): second order, no formula needed.
* ``"hessian"``:  the formula above with explicit (P, P) Hessians from ``minimaml.hessian``
  (see ``inner_matrices``). O(P²) memory per step: the teaching route.
* ``"hvp"``:      the same product applied right to left as Hessian-vector products,
  g ← g − α H_k g, by hand-derived backprop (``minimaml.fastpath``): the fast route, for ``MLP``
  with ``mse`` or ``softmax_cross_entropy``.
* ``"first_order"``: first-order MAML, every (I − α H_k) replaced by I.
* ``"cuda"`` / ``"cuda-emulated"``: the hvp route as a CUDA kernel (``minimaml.gpu``), float32,
  for small MLPs with ``mse``.

The model is any pure function ``net(θ, x)`` of one task (θ (P,), x (N, ...) -> (N, ...)) built
from minimaml's ops: "autodiff", "hessian" and "first_order" work for every such model and loss.

Shapes: θ (P,); xs (T, K, ...), ys (T, K, ...); xq (T, Q, ...), yq (T, Q, ...) (for
``softmax_cross_entropy`` ys and yq are integer labels (T, K), (T, Q)); adapted parameters (T, P).
"""

import numpy as np

from ..autodiff import Tensor, hessian, value_and_grad
from ..autodiff.tensor import array_module, raw
from ..autodiff.transforms import check_memory, jacobian_bytes
from ..fastpath import arena, network
from ..nn import mse
from . import checks
from .inner import (EngineTaskLosses, inner_loop, per_task, step_sizes, task_grads, task_losses,
                    task_losses_for, walk_back)

SECOND_ORDER_METHODS = ("autodiff", "hessian", "hvp")
METHODS = SECOND_ORDER_METHODS + ("first_order", "cuda", "cuda-emulated")


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def task_loss(net, theta, x, y, loss=mse):
    """L(θ; x, y) = loss(net(θ, x), y): θ (P,), x (N, ...) → scalar; batched over tasks, θ (T, P),
    x (T, N, ...) → (T,), one loss per task. Works on arrays and engine Tensors alike."""
    if len(getattr(theta, "shape", ())) == 2:
        return task_losses(net, loss, theta, x, y)
    return loss(net(theta, x), y)


def support_loss(net, theta, xs, ys, loss=mse):
    """L_support(θ) = L(θ; xs, ys): the loss the inner loop descends. Shapes as in ``task_loss``."""
    return task_loss(net, theta, xs, ys, loss)


def query_loss(net, theta, xq, yq, loss=mse):
    """L_query(θ') = L(θ'; xq, yq): the loss of the adapted parameters θ' on held-out points."""
    return task_loss(net, theta, xq, yq, loss)


# ----------------------------------------------------------------------------------------------
# Inner loop
# ----------------------------------------------------------------------------------------------
def _trajectory(net, theta, xs, ys, sizes, loss):
    """[θ_0, θ_1, ..., θ_S], each (T, P): θ_0 = θ for every task, θ_{k+1} = θ_k − s_k ⊙ ∇L_support(θ_k),
    one step per entry of ``sizes`` (numbers, or (P,) vectors). By the engine, so it works on
    Tensors (the "autodiff" route: θ and the sizes may be Tensors) and for any model."""
    thetas = per_task(theta, xs.shape[0])
    trajectory = [thetas]
    for s in sizes:
        thetas = thetas - s * task_grads(net, loss, thetas, xs, ys)
        trajectory.append(thetas)
    return trajectory


def adapt(net, theta, xs, ys, inner_lr, steps, loss=mse):
    """The inner loop: θ_{k+1} = θ_k − α ∇θ L_support(θ_k), k = 0..steps−1, from θ_0 = θ, per task.

    θ (P,) shared by all tasks, xs (T, K, ...), ys (T, K, ...) → adapted θ_S (T, P).
    θ may be an engine Tensor: the steps are then recorded, so the result can be differentiated
    with respect to θ (second-order MAML). On arrays, an ``MLP`` with a built-in loss adapts by the
    fast route.
    """
    xs, ys = checks.check_adapt_args(net, theta, xs, ys, inner_lr, steps, loss)
    dtype = raw(theta).dtype
    if isinstance(theta, Tensor):
        return _trajectory(net, theta, xs, ys, step_sizes(inner_lr, steps), loss)[-1]
    tl = task_losses_for(net, loss, rank=xs.shape[1] * steps, like=theta)
    params, _ = inner_loop(tl, theta, xs, ys, step_sizes(inner_lr, steps))
    return tl.flat(params, (xs.shape[0],), dtype)


# ----------------------------------------------------------------------------------------------
# The meta-gradient, several ways
# ----------------------------------------------------------------------------------------------
def meta_loss(net, theta, xs, ys, xq, yq, inner_lr, steps, loss=mse):
    """L_meta(θ) = 1/T Σ_t L_query,t(adapt(θ)_t): a scalar, differentiable when θ is a Tensor."""
    checks.check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps, loss)
    xs, ys, xq, yq = checks.as_data(theta, loss, xs, ys, xq, yq)
    return _meta_loss(net, theta, xs, ys, xq, yq, step_sizes(inner_lr, steps), loss)


def _meta_loss(net, theta, xs, ys, xq, yq, sizes, loss):
    theta_s = _trajectory(net, theta, xs, ys, sizes, loss)[-1]
    return task_losses(net, loss, theta_s, xq, yq).mean()


def inner_matrices(net, theta, xs, ys, inner_lr, steps, loss=mse, max_bytes=None):
    """The per-step Jacobians of the inner loop, M_{t,k} = ∂θ_{k+1}/∂θ_k = I − diag(s) H_k(t).

    H_k(t) is the exact (P, P) Hessian of task t's support loss at θ_k (``minimaml.hessian``), and
    s = ``inner_lr``: a number α (MAML: M = I − αH, symmetric) or a (P,) vector of per-parameter
    step sizes (Meta-SGD: M = I − diag(s)H, not symmetric). Returns an array (T, S, P, P) with
    ``[t, k]`` = M_{t,k} in the order the inner steps run, k = 0 (at θ_0 = θ) .. S−1, so
    ∂θ_S/∂θ = M_{t,S−1} ⋯ M_{t,1} M_{t,0} and ∇θ L_meta = 1/T Σ_t M_{t,0}ᵀ ⋯ M_{t,S−1}ᵀ ∇L_query,t(θ_S).
    Refuses, before any work, a result that would not fit in the memory available (or ``max_bytes``).
    """
    if np.ndim(raw(inner_lr)) == 0:
        xs, ys = checks.check_adapt_args(net, theta, xs, ys, inner_lr, steps, loss)
    else:
        checks.check_learned_sizes("inner_lr", inner_lr, raw(theta).shape)
        xs, ys = checks.check_adapt_args(net, theta, xs, ys, 1.0, steps, loss)
    dtype, P = raw(theta).dtype, theta.shape[-1]
    _check_hessian_memory(P, dtype, xs.shape[0] * steps, max_bytes, "inner_matrices")
    sizes = step_sizes(inner_lr, steps)
    trajectory = _trajectory(net, theta, xs, ys, sizes, loss)
    return np.stack([_task_inner_matrices(net, trajectory, xs, ys, sizes, t, loss, max_bytes)
                     for t in range(len(xs))])


def _check_hessian_memory(num_params, dtype, num_matrices, max_bytes, who,
                          hint="method='hvp' gives the same meta-gradient with Hessian-vector products, in O(P) memory"):
    """The (P, P) matrices a route keeps, plus the engine's workspace for one Hessian."""
    itemsize = np.dtype(dtype).itemsize
    need = num_matrices * num_params**2 * itemsize + jacobian_bytes(num_params, num_params, dtype)
    check_memory(need, f"{who}: {num_matrices} (P, P) matrices, P = {num_params}", max_bytes, hint)


def _task_inner_matrices(net, trajectory, xs, ys, sizes, t, loss, max_bytes=None):
    """(S, P, P): I − diag(s_k) H_k for task t, k = 0..S−1, H_k the engine's exact Hessian at θ_k
    (diag(s) H scales H's rows: s[:, None] * H)."""
    def task_support_loss(th):
        return loss(net(th, xs[t]), ys[t])
    P = trajectory[0].shape[-1]
    mats = np.empty((len(trajectory) - 1, P, P), dtype=trajectory[0].dtype)
    for k, theta_k in enumerate(trajectory[:-1]):
        H = hessian(task_support_loss, max_bytes=max_bytes)(theta_k[t])
        mats[k] = np.eye(P) - np.reshape(sizes[k], (-1, 1)) * H
    return mats


def _meta_autodiff(net, theta, xs, ys, xq, yq, sizes, loss):
    return value_and_grad(lambda th: _meta_loss(net, th, xs, ys, xq, yq, sizes, loss))(theta)


def _meta_hessian(net, theta, xs, ys, xq, yq, sizes, loss, max_bytes=None):
    _check_hessian_memory(theta.shape[-1], theta.dtype, len(sizes), max_bytes, "method='hessian'")
    trajectory = _trajectory(net, theta, xs, ys, sizes, loss)
    losses, g_query, _ = EngineTaskLosses(net, loss).value_and_grad(trajectory[-1], xq, yq)
    meta_grads = []
    for t in range(len(xs)):  # one task at a time: S (P, P) matrices in memory, not T·S
        mats = _task_inner_matrices(net, trajectory, xs, ys, sizes, t, loss, max_bytes)
        g = g_query[t]
        for k in reversed(range(len(sizes))):  # right to left: g ← M_kᵀ g, k = S−1 .. 0
            g = mats[k].T @ g
        meta_grads.append(g)
    return losses.mean(), np.mean(meta_grads, axis=0)


def meta_backprop(net, theta, xs, ys, xq, yq, sizes, loss, first_order=False, fast=True, step_grads=False):
    """The inner loop, the query gradient and the walk back by one TaskLosses: the fast route's
    (in buffers it reuses from call to call of the same shapes) or the engine's. ``sizes``: the step
    sizes s_k (numbers, or (P,) vectors: the per-task vectors are then held densely). Returns
    (meta-loss, meta-gradient (P,)), and with ``step_grads`` the gradients with respect to the s_k."""
    K, Q, steps = xs.shape[1], xq.shape[1], len(sizes)
    scalar = all(np.ndim(raw(s)) == 0 for s in sizes)
    # Low-rank per-task weights take a step size that is one number per layer (ANIL's α·mask) but
    # not one that varies inside a layer (Meta-SGD), nor the gradient of per-entry sizes.
    layers = None
    if not scalar and not step_grads and fast and network.supports(net, loss)[0]:
        layers = tuple(() if np.ndim(raw(s)) == 0 else network.layer_pattern(net, raw(s)) for s in sizes)
        layers = None if None in layers else layers
    lowrank = scalar or layers is not None
    rank = 0 if not lowrank else max(K * steps, Q) if first_order else Q + 2 * K * steps
    ws = arena.arena(("maml", id(net), loss, theta.dtype, xs.shape, ys.shape, xq.shape, yq.shape,
                      steps, first_order, scalar, layers, step_grads), array_module(theta)) if fast else None
    tl = task_losses_for(net, loss, ws, rank, fast=fast)
    params, caches, grads = inner_loop(tl, theta, xs, ys, sizes, keep_grads=True)
    losses, g, _ = tl.value_and_grad(params, xq, yq)
    size_grads = [None] * steps
    if not first_order:
        g, size_grads = walk_back(tl, caches, g, sizes, grads=grads if step_grads else None)
    elif step_grads:      # first order: ∂θ_S/∂s_k = −∇L(θ_k) alone, so ∂L/∂s_k = −mean ∇L(θ_k) ⊙ g
        size_grads = [-tl.mean_product(grads[k], g) for k in range(steps)]
    result = (float(losses.sum()) / len(losses), tl.mean(g, theta.dtype))
    return result + (size_grads,) if step_grads else result


def meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method="hvp", first_order=None,
                        loss=mse, max_bytes=None, inner_mask=None):
    """(L_meta(θ), ∇θ L_meta(θ)) for one meta-batch of T tasks.

    L_meta(θ) = 1/T Σ_t L_query,t(θ_S,t), θ_S,t after ``steps`` inner steps of size α = ``inner_lr``
    on task t's support set (see the module docstring for the chain rule).

    Args:
        net: a model net(θ, x): an ``MLP`` or any pure function of one task built from minimaml ops.
        theta: (P,) float32 or float64 array; everything is computed in its dtype.
        xs, ys: support set, (T, K, ...) each (integer labels (T, K) for cross-entropy).
        xq, yq: query set, (T, Q, ...).
        inner_lr: α > 0.   steps: S >= 0 inner steps (S = 0: the plain query-loss gradient).
        method: one of ``METHODS``: "autodiff", "hessian", "hvp" (second order; agree to rounding),
            "first_order" (first-order MAML), "cuda", "cuda-emulated" (the GPU kernel, float32).
        first_order: for "hvp", "cuda", "cuda-emulated", True drops the Hessian terms (same result as
            method="first_order"). None means the method's own order.
        loss: loss(out, y) -> per-task mean (``mse``, ``softmax_cross_entropy`` or your own).
        max_bytes: for "hessian", a memory budget (default: the memory available).
        inner_mask: a boolean (P,) array: only the entries where it is True adapt in the inner loop,
            the others stay at θ (ANIL: ``MLP.head_mask()``, the last layer). The step is then
            s = α·mask, and the walk back g ← g − H(s ⊙ g) needs only H's columns of the adapted
            entries (for ANIL the head's rows and the mixed head-body block, by symmetry).

    Returns:
        (meta_loss, grad): a float and a (P,) array in theta's dtype.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(map(repr, METHODS))}")
    if first_order not in (None, True, False):
        raise TypeError(f"first_order must be None, True or False, got {first_order!r}")
    if method == "first_order" and first_order is False:
        raise ValueError("method='first_order' contradicts first_order=False")
    if method in ("autodiff", "hessian") and first_order:
        raise ValueError(
            f"method={method!r} is second order by construction; use method='first_order' for first-order MAML"
        )
    checks.check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps, loss)
    sizes = step_sizes(inner_lr, steps)
    if inner_mask is not None:
        mask = checks.check_mask(inner_mask, raw(theta).shape[-1])
        if method in ("cuda", "cuda-emulated"):
            raise ValueError(f"method={method!r} adapts every parameter; use method='hvp' with inner_mask")
        sizes = step_sizes(inner_lr * array_module(raw(theta)).asarray(mask, dtype=raw(theta).dtype), steps)
    if method in ("hvp", "cuda", "cuda-emulated"):
        ok, why = network.supports(net, loss)
        if not ok:
            raise TypeError(f"method={method!r}: {why}; method='autodiff' (or 'first_order') works for "
                            f"any model and loss")
    if method in ("cuda", "cuda-emulated"):   # imported here: only these routes need the GPU code
        if loss is not mse:
            raise TypeError(f"method={method!r}: the CUDA kernel computes the MSE loss; use method='hvp'")
        from ..gpu import cuda, emulated
        backend = cuda if method == "cuda" else emulated
        return backend.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps,
                                           first_order=bool(first_order))
    xs, ys, xq, yq = checks.as_data(theta, loss, xs, ys, xq, yq)
    args = (net, theta, xs, ys, xq, yq, sizes, loss)
    if method in ("hvp", "first_order"):
        return meta_backprop(*args, first_order=method == "first_order" or bool(first_order),
                             fast=network.supports(net, loss)[0])
    if method == "autodiff":
        value, g = _meta_autodiff(*args)
    else:
        value, g = _meta_hessian(*args, max_bytes)
    return float(value), raw(g).astype(theta.dtype, copy=False)
