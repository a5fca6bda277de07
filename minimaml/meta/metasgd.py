"""Meta-SGD (Li, Zhou, Chen & Li 2017): MAML with a learned step size for every parameter.

The inner loop is MAML's with the scalar α replaced by a vector α (P,), learned with θ and used at
every inner step:

    θ_{k+1} = θ_k − α ⊙ ∇L_support(θ_k),   k = 0..S−1

Its Jacobian ∂θ_{k+1}/∂θ_k = I − diag(α) H_k is no longer symmetric, so the walk back applies the
transpose, g ← g − H_k (α ⊙ g), and since θ_{k+1} depends on α through −α ⊙ ∇L(θ_k),

    ∂L_meta/∂α = Σ_k −mean_t ∇L_support(θ_k) ⊙ g_{k+1},

with g_{k+1} the meta-gradient with respect to θ_{k+1} (``inner.walk_back`` collects both). With α
filled with one number this is MAML exactly.
"""
import numpy as np

from ..autodiff import value_and_grad
from ..autodiff.tensor import raw
from ..nn import mse
from . import checks
from .maml import _meta_loss, meta_backprop

METHODS = ("hvp", "autodiff", "first_order")


def metasgd_value_and_grad(net, theta, alpha, xs, ys, xq, yq, steps, loss=mse, method="hvp"):
    """(L_meta, (∇θ L_meta, ∇α L_meta)) of Meta-SGD for one meta-batch.

    θ (P,), α (P,) (float; any sign: what is learned is not constrained), the task sets as in
    ``meta_value_and_grad``, ``steps`` inner steps each θ ← θ − α ⊙ ∇L_support(θ).
    ``method``: "hvp" (the shared walk back, by the fast route when it covers the model, else the
    engine), "autodiff" (the engine differentiates through the inner loop with respect to θ and α),
    "first_order" (drops the Hessian terms; ∂θ_S/∂α = −Σ_k ∇L(θ_k) only).
    Returns the meta-loss (a float) and the two gradients in θ's dtype.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    checks.check_meta_args(net, theta, xs, ys, xq, yq, 1.0, steps, loss)
    checks.check_learned_sizes("alpha", alpha, raw(theta).shape)
    xs, ys, xq, yq = checks.as_data(theta, loss, xs, ys, xq, yq)
    alpha = raw(alpha).astype(raw(theta).dtype, copy=False)
    if method == "autodiff":
        value, (g_theta, g_alpha) = value_and_grad(
            lambda th, a: _meta_loss(net, th, xs, ys, xq, yq, [a] * steps, loss), argnums=(0, 1))(theta, alpha)
        dtype = raw(theta).dtype
        return float(value), (raw(g_theta).astype(dtype, copy=False), raw(g_alpha).astype(dtype, copy=False))
    value, g_theta, size_grads = meta_backprop(net, theta, xs, ys, xq, yq, [alpha] * steps, loss,
                                               first_order=method == "first_order", step_grads=True)
    g_alpha = np.zeros_like(alpha) if steps == 0 else sum(size_grads)
    return value, (g_theta, g_alpha.astype(alpha.dtype, copy=False))
