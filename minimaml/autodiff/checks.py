"""Finite-difference checks of derivatives, in the style of HIPS autograd's `check_grads`.

For a function f: ℝⁿ → ℝᵐ and random directions u ∈ ℝᵐ, v ∈ ℝⁿ, reverse mode gives ⟨uᵀJ, v⟩ and a central
difference gives (⟨u, f(x + εv)⟩ − ⟨u, f(x − εv)⟩) / 2ε; the two must agree. Then the same check is applied to
the derivative itself, x ↦ uᵀJ_f(x), so second (and higher) derivatives are checked by default.
"""
import math
import numbers

import numpy as np

from .tensor import raw
from .transforms import vjp


def _check_eps(eps):
    # eps = 0 would divide 0 by 0, and a NaN difference can make a check pass or fail for the wrong reason.
    if not (isinstance(eps, numbers.Real) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got eps={eps!r}")


def numerical_grad(f, x, eps=1e-6):
    """Central-difference gradient of a scalar f at x: (f(x + εe_i) − f(x − εe_i)) / 2ε for each i."""
    _check_eps(eps)
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (_scalar(f(x + e)) - _scalar(f(x - e))) / (2 * eps)
    return g


def _scalar(y):
    """f's value as a float; a non-scalar f would otherwise fail inside float() or be silently squeezed."""
    if np.size(raw(y)) != 1:
        raise ValueError(f"numerical_grad: f must return a scalar, got shape {np.shape(raw(y))}")
    return float(np.reshape(raw(y), ()))


def check_grads(f, x, order=2, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    """Assert that the derivatives of f at x, up to `order`, match central finite differences (float64)."""
    _check_eps(eps)
    if not isinstance(order, numbers.Integral) or isinstance(order, bool) or order < 1:
        raise ValueError(f"order must be an int >= 1, got order={order!r}")
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    out, pullback = vjp(f, x)
    u = rng.standard_normal(np.shape(raw(out)))
    v = rng.standard_normal(x.shape)
    analytic = float(np.sum(raw(pullback(u)) * v))
    numeric = float(np.sum(u * (raw(f(x + eps * v)) - raw(f(x - eps * v))))) / (2 * eps)
    if not np.isclose(analytic, numeric, rtol=rtol, atol=atol):
        raise AssertionError(f"derivative check failed (order {order} left): reverse mode gives {analytic!r}, "
                             f"central difference gives {numeric!r} (|diff| = {abs(analytic - numeric):.3g})")
    if order > 1:
        check_grads(lambda y: vjp(f, y)[1](u), x, order - 1, eps, rtol, atol, seed + 1)
