"""Reptile (Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms", Algorithm 2).

Reptile runs MAML's inner loop and moves θ towards where it ends, with no query set and no Hessian:

    inner loop (per task t):  θ_0 = θ,   θ_{k+1} = θ_k − α ∇L_k,t(θ_k),   k = 0..S−1
    direction:                d = θ − 1/T Σ_t θ_S,t = α Σ_k 1/T Σ_t ∇L_k,t(θ_k,t)
    outer update:             θ ← θ − ε d

L_k,t is task t's loss on the data of step k: the same support set at every step, or mini-batch k
of the task's data (the paper's setting, where the step-k gradients differ by more than the point
they are taken at). The direction plays the role of a meta-gradient (an optimiser in ``optim.py``
may take it in place of ∇L_meta), though it is the gradient of no loss.

Why it works (the paper's §5, a Taylor expansion in α): for two inner steps on one task, with
g_i = ∇L_i(θ) and H_i = ∇²L_i(θ) the gradient and Hessian of mini-batch i's loss at θ itself,

    g_MAML    = g₂ − α H₂ g₁ − α H₁ g₂ + O(α²)     (one step on mini-batch 1, evaluated on 2)
    g_FOMAML  = g₂ − α H₂ g₁ + O(α²)
    d / α     = g₁ + g₂ − α H₂ g₁ + O(α²)           (Reptile)

In expectation over the order of the mini-batches E[H₂ g₁] = E[H₁ g₂] = ½ ∇θ E[g₁·g₂], so all three
descend the average loss (the g_i terms) and raise the inner product of the gradients of different
mini-batches of a task (the α terms): they learn an initialisation where one task's mini-batches
agree, which is what makes a few steps generalise.
"""
import numpy as np

from ..autodiff.tensor import raw
from ..nn import MLP, mse
from . import checks
from .inner import task_losses_for


def reptile_direction(net, theta, xs, ys, inner_lr, steps, loss=mse, minibatches=None, xq=None, yq=None):
    """Reptile's direction d = θ − 1/T Σ_t θ_S,t for one meta-batch of T tasks (θ ← θ − ε d).

    Args:
        net: a model net(θ, x): an ``MLP`` (the fast route, with ``mse`` or cross-entropy) or any
            pure function of one task built from minimaml ops (the engine).
        theta: (P,) float32 or float64; the direction comes back in its dtype.
        xs, ys: the tasks' data. (T, K, ...) each: the same support set at every step; or
            (T, S, K, ...) each (labels (T, S, K) for cross-entropy): mini-batch k at step k, S = steps.
        inner_lr: α > 0.   steps: S >= 0 inner steps (S = 0: d = 0).
        loss: loss(out, y) -> per-task mean (``mse``, ``softmax_cross_entropy`` or your own).
        minibatches: True for (T, S, K, ...) data, False for (T, K, ...). None: read from the shape
            for an ``MLP`` (xs.ndim == 4 means mini-batches); any other model must say.
        xq, yq: a query set per task, (T, Q, ...): also return the mean query loss at θ_S (what a
            training loop logs; Reptile itself never uses it).

    Returns:
        d, a (P,) array in theta's dtype; with xq, yq: (d, mean query loss).
    """
    minibatches = _uses_minibatches(net, xs, minibatches)
    if minibatches:
        xs, ys = _check_minibatches(net, theta, xs, ys, inner_lr, steps, loss)
    else:
        xs, ys = checks.check_adapt_args(net, theta, xs, ys, inner_lr, steps, loss)
    dtype = raw(theta).dtype
    K = xs.shape[2] if minibatches else xs.shape[1]
    # Each step adds a rank-K gradient per dense layer, so θ_S − θ has rank K·S at most: the fast
    # route may hold the per-task weights as low-rank corrections to the shared θ.
    tl = task_losses_for(net, loss, rank=K * steps, like=theta)
    params, moved = tl.start(theta), None
    for k in range(steps):
        x, y = (xs[:, k], ys[:, k]) if minibatches else (xs, ys)
        _, g, _ = tl.value_and_grad(params, x, y, need_loss=False)  # no cache kept: no walk back
        params = tl.axpy(-inner_lr, g, params)
        moved = g if moved is None else tl.axpy(1.0, g, moved)
    # d = θ − mean θ_S = α · mean Σ_k g_k: summed from the gradients rather than subtracted from θ,
    # where two nearly equal numbers would cancel (in float32 d would keep only a few digits).
    d = np.zeros_like(raw(theta)) if moved is None else inner_lr * tl.mean(moved, dtype)
    if xq is None:
        return d
    xq, yq = checks.as_data(theta, loss, xq, yq)
    return d, float(loss(tl.outputs(params, xq), yq).mean())


def _uses_minibatches(net, xs, minibatches):
    """Whether xs holds one mini-batch per step: the caller says, or an MLP's input shape does (its
    points are vectors, so (T, K, in) is one set and (T, S, K, in) is S of them)."""
    if minibatches is not None:
        if not isinstance(minibatches, bool):
            raise TypeError(f"minibatches must be None, True or False, got {minibatches!r}")
        return minibatches
    if not isinstance(net, MLP):
        raise ValueError(f"reptile_direction cannot tell from xs {np.shape(xs)} whether it holds one support "
                         f"set per task (T, K, ...) or one mini-batch per step (T, S, K, ...) for a model "
                         f"other than MLP; say minibatches=False or minibatches=True")
    return np.ndim(xs) == 4


def _check_minibatches(net, theta, xs, ys, inner_lr, steps, loss):
    """Mini-batch data (T, S, K, ...), S = steps: the S mini-batches of each task checked as T·S
    support sets of K points by the one validator. Returns (xs, ys) converted (``checks.as_data``)."""
    for name, a in (("xs", xs), ("ys", ys)):
        if np.ndim(a) < 3:
            raise ValueError(f"with minibatches, {name} must be (T, S, K, ...): S mini-batches of K points "
                             f"per task, got shape {np.shape(a)}")
    if isinstance(net, MLP) and np.ndim(xs) != 4:
        raise ValueError(f"with minibatches, xs must have shape (T, S, K, {net.sizes[0]}), got {np.shape(xs)}")
    if np.shape(xs)[:2] != np.shape(ys)[:2]:
        raise ValueError(f"xs and ys must hold the same tasks and mini-batches (T, S), got xs {np.shape(xs)} "
                         f"and ys {np.shape(ys)}")
    checks.check_steps(steps)
    if np.shape(xs)[1] != steps:
        raise ValueError(f"one mini-batch per inner step: xs holds {np.shape(xs)[1]} mini-batches per task "
                         f"(xs.shape = {np.shape(xs)}) for steps={steps}")
    T, S = xs.shape[:2]
    merged = checks.check_adapt_args(net, theta, xs.reshape((T * S,) + xs.shape[2:]),
                                     ys.reshape((T * S,) + ys.shape[2:]), inner_lr, steps, loss)
    return tuple(a.reshape((T, S) + a.shape[1:]) for a in merged)
