"""MAML (Finn et al. 2017, Algorithm 1) as pure functions of a flat parameter vector θ (P,).

For a batch of T tasks, each with a support set (xs, ys) of K points and a query set (xq, yq)::

    inner loop (per task t, S = steps):   θ_0 = θ,   θ_{k+1} = θ_k − α ∇θ L_support,t(θ_k)
    meta-loss:                            L_meta(θ) = 1/T Σ_t L_query,t(θ_S,t)
    outer update (see optim.py):          θ ← θ − β ∇θ L_meta(θ)

with the MSE loss L(θ; x, y) = mean over points and outputs of (net(θ, x) − y)², α = ``inner_lr``
and β = ``meta_lr``. By the chain rule, with H_k the Hessian of the support loss at θ_k::

    ∇θ L_meta = 1/T Σ_t (I − α H_0)ᵀ (I − α H_1)ᵀ ... (I − α H_{S−1})ᵀ ∇L_query,t(θ_S,t)

``meta_value_and_grad`` computes this one quantity several ways, so a reader can check each
against the others:

* ``"autodiff"``: the engine differentiates through the inner loop itself (it calls ``grad``
  inside a function that ``value_and_grad`` differentiates): second order, no formula needed.
* ``"hessian"``:  the formula above with explicit (P, P) Hessians from ``minimaml.hessian``
  (see ``inner_matrices``). O(P²) memory per step: the teaching route.
* ``"hvp"``:      the same product applied right to left as Hessian-vector products,
  g ← g − α H_k g, by hand-derived batched backprop (``minimaml.fastpath.backprop``): the fast route.
* ``"first_order"``: first-order MAML, every (I − α H_k) replaced by I.
* ``"cuda"`` / ``"cuda-emulated"``: the hvp route as a CUDA kernel (``minimaml.gpu``), float32.

Shapes: θ (P,); xs (T, K, d_in), ys (T, K, d_out); xq (T, Q, d_in), yq (T, Q, d_out);
adapted parameters (T, P).
"""

import math
import numbers

import numpy as np

from ..autodiff import Tensor, grad, hessian, value_and_grad
from ..fastpath.backprop import hvp_meta_value_and_grad, mlp_loss_and_grad
from ..nn import MLP, mse

SECOND_ORDER_METHODS = ("autodiff", "hessian", "hvp")
METHODS = SECOND_ORDER_METHODS + ("first_order", "cuda", "cuda-emulated")


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def loss(net, theta, x, y):
    """L(θ; x, y) = mean over points and outputs of (net(θ, x) − y)².

    θ (P,), x (K, d_in), y (K, d_out) → scalar; batched over tasks, θ (T, P), x (T, K, d_in),
    y (T, K, d_out) → (T,), one loss per task. Works on arrays and engine Tensors alike.
    """
    return mse(net(theta, x), y)


def support_loss(net, theta, xs, ys):
    """L_support(θ) = L(θ; xs, ys): the loss the inner loop descends. Shapes as in ``loss``."""
    return loss(net, theta, xs, ys)


def query_loss(net, theta, xq, yq):
    """L_query(θ') = L(θ'; xq, yq): the loss of the adapted parameters θ' on held-out points."""
    return loss(net, theta, xq, yq)


def _task_grads(net, thetas, x, y):
    """∇θ L(θ_t; x_t, y_t) for every task at once: thetas (T, P) → (T, P).

    Each task's loss depends only on its own row of thetas, so the gradient of the *sum* of the
    T losses is the stack of the T per-task gradients. On Tensors this stays on the engine's
    graph (that is what lets "autodiff" differentiate through the inner loop); on plain arrays
    it is the fast hand-derived backprop.
    """
    if isinstance(thetas, Tensor):
        return grad(lambda th: loss(net, th, x, y).sum())(thetas)
    return mlp_loss_and_grad(net, thetas, x, y)[1]


# ----------------------------------------------------------------------------------------------
# Inner loop
# ----------------------------------------------------------------------------------------------


def _inner_trajectory(net, theta, xs, ys, inner_lr, steps):
    """[θ_0, θ_1, ..., θ_S], each (T, P): θ_0 = θ for every task, θ_{k+1} = θ_k − α ∇L_support(θ_k)."""
    num_tasks = xs.shape[0]
    # θ + zeros broadcasts the shared start to one row per task; on Tensors the broadcast's VJP
    # sums the T rows' cotangents back into one: the Σ_t of the meta-gradient's chain rule.
    thetas = theta + np.zeros((num_tasks, theta.shape[-1]), dtype=theta.dtype)
    trajectory = [thetas]
    for _ in range(steps):
        thetas = thetas - inner_lr * _task_grads(net, thetas, xs, ys)
        trajectory.append(thetas)
    return trajectory


def adapt(net, theta, xs, ys, inner_lr, steps):
    """The inner loop: θ_{k+1} = θ_k − α ∇θ L_support(θ_k), k = 0..steps−1, from θ_0 = θ, per task.

    θ (P,) shared by all tasks, xs (T, K, d_in), ys (T, K, d_out) → adapted θ_S (T, P).
    θ may be an engine Tensor: the steps are then recorded, so the result can be differentiated
    with respect to θ (second-order MAML).
    """
    _check_hyper(inner_lr, steps)
    _check_theta(net, theta)
    _check_set(net, "support", xs, ys)
    return _inner_trajectory(net, theta, xs, ys, inner_lr, steps)[-1]


# ----------------------------------------------------------------------------------------------
# The meta-gradient, several ways
# ----------------------------------------------------------------------------------------------


def meta_loss(net, theta, xs, ys, xq, yq, inner_lr, steps):
    """L_meta(θ) = 1/T Σ_t L_query,t(adapt(θ)_t): a scalar, differentiable when θ is a Tensor."""
    _check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps)
    return _meta_loss(net, theta, xs, ys, xq, yq, inner_lr, steps)


def _meta_loss(net, theta, xs, ys, xq, yq, inner_lr, steps):
    return query_loss(net, _inner_trajectory(net, theta, xs, ys, inner_lr, steps)[-1], xq, yq).mean()


def inner_matrices(net, theta, xs, ys, inner_lr, steps):
    """The per-step Jacobians of the inner loop, M_{t,k} = ∂θ_{k+1}/∂θ_k = I − α H_k(t).

    H_k(t) is the exact (P, P) Hessian of task t's support loss at θ_k (``minimaml.hessian``).
    Returns an array (T, S, P, P) with ``[t, k]`` = I − α H_k(t) in the order the inner steps run,
    k = 0 (at θ_0 = θ) .. S−1, so ∂θ_S/∂θ = M_{t,S−1} ⋯ M_{t,1} M_{t,0} and, the M being
    symmetric, ∇θ L_meta = 1/T Σ_t M_{t,0}ᵀ M_{t,1}ᵀ ⋯ M_{t,S−1}ᵀ ∇L_query,t(θ_S).
    """
    _check_hyper(inner_lr, steps)
    _check_theta(net, theta)
    _check_set(net, "support", xs, ys)
    trajectory = _inner_trajectory(net, theta, xs, ys, inner_lr, steps)
    return np.stack([_task_inner_matrices(net, trajectory, xs, ys, inner_lr, t) for t in range(len(xs))])


def _task_inner_matrices(net, trajectory, xs, ys, inner_lr, t):
    """(S, P, P): I − α H_k for task t, k = 0..S−1, H_k the engine's exact Hessian at θ_k."""
    task_support_loss = lambda th: support_loss(net, th, xs[t], ys[t])  # noqa: E731
    num_params = trajectory[0].shape[-1]
    mats = np.empty((len(trajectory) - 1, num_params, num_params), dtype=trajectory[0].dtype)
    for k, theta_k in enumerate(trajectory[:-1]):
        mats[k] = np.eye(num_params) - inner_lr * hessian(task_support_loss)(theta_k[t])
    return mats


def _meta_autodiff(net, theta, xs, ys, xq, yq, inner_lr, steps):
    return value_and_grad(lambda th: _meta_loss(net, th, xs, ys, xq, yq, inner_lr, steps))(theta)


def _meta_hessian(net, theta, xs, ys, xq, yq, inner_lr, steps):
    trajectory = _inner_trajectory(net, theta, xs, ys, inner_lr, steps)
    losses, g_query = _query_loss_and_grads(net, trajectory[-1], xq, yq)
    meta_grads = []
    for t in range(len(xs)):  # one task at a time: S (P, P) matrices in memory, not T·S
        mats = _task_inner_matrices(net, trajectory, xs, ys, inner_lr, t)
        g = g_query[t]
        for k in reversed(range(steps)):  # right to left: g ← M_kᵀ g, k = S−1 .. 0
            g = mats[k].T @ g
        meta_grads.append(g)
    return losses.mean(), np.mean(meta_grads, axis=0)


def _meta_first_order(net, theta, xs, ys, xq, yq, inner_lr, steps):
    theta_s = _inner_trajectory(net, theta, xs, ys, inner_lr, steps)[-1]
    losses, g = _query_loss_and_grads(net, theta_s, xq, yq)
    return losses.mean(), g.mean(axis=0)


def _query_loss_and_grads(net, thetas, xq, yq):
    """Per-task query losses (T,) and their gradients at the adapted θ_S (T, P)."""
    return query_loss(net, thetas, xq, yq), _task_grads(net, thetas, xq, yq)


def meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method="hvp", first_order=None):
    """(L_meta(θ), ∇θ L_meta(θ)) for one meta-batch of T tasks.

    L_meta(θ) = 1/T Σ_t L_query,t(θ_S,t), θ_S,t after ``steps`` inner steps of size α = ``inner_lr``
    on task t's support set (see the module docstring for the chain rule).

    Args:
        net: an ``MLP``.
        theta: (P,) float array, P = net.num_params.
        xs, ys: support set, (T, K, d_in) and (T, K, d_out).
        xq, yq: query set, (T, Q, d_in) and (T, Q, d_out).
        inner_lr: α > 0.   steps: S >= 0 inner steps (S = 0: the plain query-loss gradient).
        method: one of ``METHODS``: "autodiff", "hessian", "hvp" (second order; agree to rounding),
            "first_order" (first-order MAML), "cuda", "cuda-emulated" (the GPU kernel, float32).
        first_order: for "hvp", "cuda", "cuda-emulated", True drops the Hessian terms (same result as
            method="first_order"). None means the method's own order.

    Returns:
        (meta_loss, grad): a scalar and a (P,) array in theta's dtype.
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
    _check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps)

    args = (net, theta, xs, ys, xq, yq, inner_lr, steps)
    if method == "hvp":
        return hvp_meta_value_and_grad(*args, first_order=bool(first_order))
    if method == "cuda":  # imported here: only this route needs CuPy
        from ..gpu import cuda

        return cuda.meta_value_and_grad(*args, first_order=bool(first_order))
    if method == "cuda-emulated":
        from ..gpu import emulated

        return emulated.meta_value_and_grad(*args, first_order=bool(first_order))
    route = {"autodiff": _meta_autodiff, "hessian": _meta_hessian, "first_order": _meta_first_order}[method]
    value, g = route(*args)
    return float(value), g


# ----------------------------------------------------------------------------------------------
# Bad input: O(1) checks on shapes and scalars only, so the fast path stays fast.
# ----------------------------------------------------------------------------------------------


def _check_float(name, a):
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype} (shape {a.shape})")


def _check_theta(net, theta):
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a minimaml MLP, got {type(net).__name__}")
    _check_float("theta", theta)
    if theta.shape != (net.num_params,):
        raise ValueError(
            f"theta must have shape (P,) = ({net.num_params},) for MLP{list(net.sizes)}, got {theta.shape}"
        )


def _check_set(net, which, x, y):
    """x (T, K, d_in) and y (T, K, d_out) of one support or query set."""
    xn, yn = ("xs", "ys") if which == "support" else ("xq", "yq")
    _check_float(xn, x)
    _check_float(yn, y)
    for name, a, d, role in ((xn, x, net.sizes[0], "input"), (yn, y, net.sizes[-1], "output")):
        if a.ndim != 3:
            raise ValueError(f"{name} must have shape (T, K, {d}), got {a.shape} ({a.ndim}-D)")
        if a.shape[2] != d:
            raise ValueError(
                f"{name} has {a.shape[2]} features per point but the network's {role} size is {d}"
                f" (MLP{list(net.sizes)}); {name}.shape = {a.shape}"
            )
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{xn} and {yn} must have the same number of tasks T, got {x.shape} and {y.shape}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{xn} and {yn} must have the same number of points K, got {x.shape} and {y.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"the {which} set needs at least one task and one point, got {xn}.shape = {x.shape}")


def _check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps):
    _check_hyper(inner_lr, steps)
    _check_theta(net, theta)
    _check_set(net, "support", xs, ys)
    _check_set(net, "query", xq, yq)
    if xs.shape[0] != xq.shape[0]:
        raise ValueError(
            f"support and query must have the same number of tasks T, got xs {xs.shape} (T={xs.shape[0]})"
            f" and xq {xq.shape} (T={xq.shape[0]})"
        )


def _check_hyper(inner_lr, steps):
    if isinstance(inner_lr, bool) or not isinstance(inner_lr, numbers.Real):
        raise TypeError(f"inner_lr must be a real number, got {inner_lr!r} of type {type(inner_lr).__name__}")
    if not (math.isfinite(inner_lr) and inner_lr > 0):
        raise ValueError(f"inner_lr (α) must be a finite number > 0, got inner_lr={inner_lr!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be an integer >= 0, got {steps!r} of type {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got steps={steps}")
