"""MAML++ (Antoniou, Edwards & Storkey 2019, "How to train your MAML"): the pieces that change the
meta-gradient, on the shared inner loop.

* Learned per-step, per-tensor step sizes: step k updates each parameter tensor j (each W_l, b_l,
  γ_l, β_l) with its own learned size s_{k,j}: θ_{k+1} = θ_k − s_k ⊙ ∇L_support(θ_k), with s_k the
  (P,) vector that repeats s_{k,j} over tensor j. Their gradient is the walk back's
  ∂L/∂s_k = −mean_t ∇L(θ_k) ⊙ g_{k+1}, summed over the entries of each tensor.
* The multi-step loss: L = Σ_{k=1..S} w_k mean_t L_query,t(θ_k), the query loss after every step,
  weighted; ``msl_weights`` anneals the weights from uniform toward the last step (the paper's
  schedule). dL/dθ_k = w_k ∇L_query(θ_k) + (∂θ_{k+1}/∂θ_k)ᵀ dL/dθ_{k+1}: the walk back adds the
  direct term at each θ_k (``walk_back(..., add=...)``).
* Derivative-order annealing (first order for the first epochs) and cosine annealing of the meta
  step size are options of the training loop (``run/train.py``): ``first_order=`` here, and
  ``cosine_lr``.
"""
import math

import numpy as np

from ..autodiff.tensor import array_module, raw
from ..fastpath import arena, network
from ..nn import MLP, mse
from . import checks
from .inner import inner_loop, task_losses_for, walk_back


def tensor_index(net):
    """(P,) int array: the index of the parameter tensor (``MLP.tensors()``) each entry of θ is in."""
    if not isinstance(net, MLP):
        raise TypeError(f"MAML++'s per-tensor step sizes need an MLP's tensor layout, got {type(net).__name__}")
    index = np.empty(net.num_params, dtype=np.intp)
    for j, (_, start, stop) in enumerate(net.tensors()):
        index[start:stop] = j
    return index


def msl_weights(steps, progress, min_fraction=0.03):
    """The multi-step loss weights w_1..w_S at ``progress`` ∈ [0, 1] of the annealing period (the paper's
    schedule): uniform 1/S at the start; every weight but the last decays linearly to
    ``min_fraction``/S, the last grows to keep the sum 1."""
    if not 0 <= progress:
        raise ValueError(f"progress must be >= 0, got {progress!r}")
    w = np.full(steps, 1.0 / steps)
    floor = min_fraction / steps
    w[:-1] = np.maximum(w[:-1] - progress / steps, floor)
    w[-1] = 1.0 - w[:-1].sum()
    return w


def cosine_lr(step, total, lr_max, lr_min=0.0):
    """Cosine annealing of the meta step size: lr_min + (lr_max − lr_min)(1 + cos(π step/total))/2."""
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * min(step, total) / max(total, 1))) / 2


def mamlpp_value_and_grad(net, theta, sizes, xs, ys, xq, yq, loss=mse, weights=None, first_order=False):
    """(L, (∇θ L, ∇sizes L)) of MAML++ for one meta-batch.

    ``sizes`` (S, J): the step size of each of the net's J tensors at each of the S inner steps (any
    sign). ``weights`` (S,): the multi-step loss weights w_1..w_S (default: the last step only, MAML's
    loss). ``first_order``: drop the Hessian terms (derivative-order annealing's first phase). Returns
    L = Σ_k w_k mean_t L_query,t(θ_k), and its gradients in θ's dtype.
    """
    index = tensor_index(net)
    J = int(index.max()) + 1
    sizes_value = raw(sizes)
    steps = sizes_value.shape[0] if getattr(sizes_value, "ndim", 0) == 2 else -1
    checks.check_meta_args(net, theta, xs, ys, xq, yq, 1.0, max(steps, 0), loss)
    checks.check_learned_sizes("sizes", sizes, (max(steps, 1), J))
    weights = np.eye(steps)[-1] if weights is None else np.asarray(weights, dtype=float)
    if weights.shape != (steps,) or not np.isfinite(weights).all():
        raise ValueError(f"weights must be {steps} finite numbers, one per inner step, got {weights!r}")
    xs, ys, xq, yq = checks.as_data(theta, loss, xs, ys, xq, yq)
    dtype = raw(theta).dtype
    xp = array_module(raw(theta))
    per_step = [xp.asarray(sizes_value[k].astype(dtype)[index]) for k in range(steps)]   # s_k as (P,) vectors
    tensors = [(start, stop) for _, start, stop in net.tensors()]
    fast = network.supports(net, loss)[0]
    # One size per tensor is one number per row of each layer's Ŵ = [W; b], so wide layers can hold
    # per-task weights as low rank (rank ≤ the S query gradients' plus the 2KS of the steps and walk back).
    pattern = tuple(network.layer_pattern(net, s) for s in per_step) if fast else None
    ws = arena.arena(("mamlpp", id(net), loss, dtype, xs.shape, ys.shape, xq.shape, yq.shape,
                      tuple(weights != 0), bool(first_order), pattern), xp) if fast else None
    rank = steps * xq.shape[1] + 2 * xs.shape[1] * steps
    tl = task_losses_for(net, loss, ws, rank=rank, like=theta)
    params, caches, grads = inner_loop(tl, theta, xs, ys, per_step, keep_grads=True)
    # The query loss at every θ_k with a weight: recompute the trajectory's points (cheap next to the walk back).
    value, add, point = 0.0, {}, tl.start(theta)
    for k in range(steps - 1):
        point = tl.axpy(-1.0, tl.scale(per_step[k], grads[k]), point)
        if weights[k]:
            losses, gq, _ = tl.value_and_grad(point, xq, yq)
            value += weights[k] * float(losses.mean())
            add[k + 1] = (weights[k], gq)
    losses, g, _ = tl.value_and_grad(params, xq, yq)
    value += weights[-1] * float(losses.mean())
    g = tl.scale(weights[-1], g)
    if first_order:
        size_grads = [-tl.tensor_dots(grads[k], g, tensors) for k in range(steps)]
        for k, (w, gq) in add.items():          # first order: each θ_k's query gradient, undamped
            g = tl.axpy(w, gq, g)
            for j in range(k):
                size_grads[j] = size_grads[j] - w * tl.tensor_dots(grads[j], gq, tensors)
    else:
        g, size_grads = walk_back(tl, caches, g, per_step, grads=grads, add=add, tensors=tensors)
    grad_sizes = np.stack(size_grads)
    return value, (tl.mean(g, dtype), grad_sizes.astype(dtype))
