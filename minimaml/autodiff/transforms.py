"""Function transformations in the style of JAX: grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp.

Each takes a function of arrays and returns a function of arrays. Called on plain arrays they return plain
arrays; called inside a function that is itself being differentiated they return Tensors of the outer trace,
so they compose: `grad(grad(f))`, `hessian(f) = jacobian(grad(f))`, `hvp` = the gradient of ⟨∇f(x), v⟩.
"""
import numbers

import numpy as np

from . import ops
from .tensor import Tensor, _new_trace, array_module, backward, raw


def _check_differentiable(x, who, argnum):
    """Accept a float array (or Tensor, or Python float); reject anything else with a message that says what it was."""
    if isinstance(x, numbers.Real) and not isinstance(x, (bool, numbers.Integral)):
        return np.asarray(x, dtype=float)
    if isinstance(x, numbers.Integral):
        raise TypeError(f"{who}: argument {argnum} is the integer {x!r}; derivatives need a floating-point "
                        f"value (e.g. {float(x)!r})")
    if not hasattr(raw(x), "dtype") or not hasattr(raw(x), "shape"):
        raise TypeError(f"{who}: argument {argnum} must be a float array to differentiate with respect to; "
                        f"got {type(x).__name__} {x!r:.60}")
    if not np.issubdtype(raw(x).dtype, np.floating):
        raise TypeError(f"{who}: argument {argnum} has dtype {raw(x).dtype} (shape {raw(x).shape}); derivatives "
                        f"need a floating-point array, e.g. x.astype(np.float64)")
    return x


def _argnums_tuple(argnums, nargs, who):
    single = isinstance(argnums, int)
    argnums = (argnums,) if single else tuple(argnums)
    for a in argnums:
        if not -nargs <= a < nargs:
            raise ValueError(f"{who}: argnums={a} but the function was called with {nargs} positional arguments")
    return single, tuple(a % nargs for a in argnums)


def _vjp(f, args, argnums, who):
    """Run f with args[argnums] boxed in a fresh trace. Returns (out, pullback) where pullback(g) gives the
    cotangents of the chosen arguments (zeros for those the output does not depend on)."""
    trace = _new_trace()
    args = list(args)
    starts = []
    for a in argnums:
        args[a] = Tensor(_check_differentiable(args[a], who, a), trace)
        starts.append(args[a])
    end = f(*args)
    on_trace = isinstance(end, Tensor) and end.trace == trace
    out = end.value if on_trace else end

    def pullback(g):
        if isinstance(out, (tuple, list, dict)):
            raise TypeError(f"{who}: the function must return one array, not a {type(out).__name__}")
        if _shape(g)[_ndim(g) - np.ndim(raw(out)):] != np.shape(raw(out)):
            raise ValueError(f"{who}: cotangent of shape {_shape(g)} does not end with the output's shape "
                             f"{np.shape(raw(out))}")
        batch = _shape(g)[: _ndim(g) - np.ndim(raw(out))]
        grads = backward(end, g, starts) if on_trace else [None] * len(starts)
        return tuple(gr if gr is not None else _zeros(batch + s.shape, raw(s)) for gr, s in zip(grads, starts))

    return out, pullback


def _zeros(shape, like):
    return array_module(like).zeros(shape, dtype=like.dtype)


def _shape(x):
    return x.shape if isinstance(x, Tensor) else np.shape(x)


def _ndim(x):
    return len(_shape(x))


def vjp(f, *primals):
    """(f(x), pullback) with pullback(g) = gᵀ J_f(x) = Σ_i g_i ∂f_i/∂x, for each primal argument.
    g may carry extra leading axes: a batch of cotangents pulled back at once."""
    out, pullback = _vjp(f, primals, tuple(range(len(primals))), "vjp")
    return out, (lambda g: pullback(g)[0]) if len(primals) == 1 else pullback


def value_and_grad(f, argnums=0):
    """x ↦ (f(x), ∇f(x)) for a scalar-valued f; argnums picks the argument(s) to differentiate."""
    def value_and_grad_f(*args):
        single, nums = _argnums_tuple(argnums, len(args), "grad")
        out, pullback = _vjp(f, args, nums, "grad")
        if isinstance(out, (tuple, list, dict)) or np.size(raw(out)) != 1 or np.ndim(raw(out)) != 0:
            raise ValueError(f"grad: the function must return a scalar (shape ()), but it returned "
                             f"{type(raw(out)).__name__} of shape {np.shape(raw(out))}; use jacobian or vjp "
                             f"for non-scalar outputs, or reduce it (e.g. .sum())")
        r = raw(out)
        grads = pullback(array_module(r).ones((), dtype=getattr(r, "dtype", np.float64)))
        return out, grads[0] if single else grads
    return value_and_grad_f


def grad(f, argnums=0):
    """∇f: the gradient of a scalar-valued f with respect to argument `argnums` (an int or a tuple)."""
    def grad_f(*args):
        return value_and_grad(f, argnums)(*args)[1]
    return grad_f


def jvp(f, primals, tangents):
    """(f(x), J_f(x) v), forward mode by reverse-of-reverse: the pullback u ↦ uᵀJ is linear in u, and its own
    pullback, applied to v, is J v. (One argument: primals=(x,), tangents=(v,), as in JAX.)"""
    (x,), (v,) = primals, tangents
    out, pullback = vjp(f, x)
    u0 = _zeros(np.shape(raw(out)), raw(out) if np.ndim(raw(out)) else np.asarray(raw(out)))
    _, pullback_of_pullback = vjp(pullback, u0)
    return out, pullback_of_pullback(v)


def jacobian(f):
    """x ↦ J, the array of ∂f_i/∂x_j with shape f(x).shape + x.shape. All rows in one reverse pass: the
    cotangent is the identity matrix, its leading axis a batch of cotangents."""
    def jacobian_f(x):
        out, pullback = vjp(f, x)
        r = raw(out)
        eye = array_module(r).eye(np.size(r), dtype=np.result_type(r.dtype, raw(x).dtype))
        J = pullback(eye.reshape((np.size(r),) + np.shape(r)))
        return ops.reshape(J, np.shape(r) + _shape(x))
    return jacobian_f


def hessian(f):
    """x ↦ ∇²f(x) = jacobian(grad(f))(x), shape x.shape + x.shape. Exact, to rounding."""
    return jacobian(grad(f))


def hvp(f, x, v):
    """∇²f(x) v without forming the Hessian: the gradient of x ↦ ⟨∇f(x), v⟩ (reverse over reverse)."""
    return grad(lambda y: ops.sum(grad(f)(y) * v))(x)
