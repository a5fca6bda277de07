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


def _vjp(f, args, argnums, who, kwargs):
    """Run f(*args, **kwargs) with args[argnums] boxed in a fresh trace (keyword arguments are passed through,
    not differentiated). Returns (out, pullback) where pullback(g) gives the cotangents of the chosen
    arguments (zeros for those the output does not depend on)."""
    trace = _new_trace()
    args = list(args)
    starts = []
    for a in argnums:
        args[a] = Tensor(_check_differentiable(args[a], who, a), trace)
        starts.append(args[a])
    end = f(*args, **kwargs)
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


def _check_same_shape(x, v, who, what):
    """A tangent (or the vector of a Hessian-vector product) lives where x lives: it must have x's shape."""
    if _shape(v) != _shape(x):
        raise ValueError(f"{who}: {what} must have the shape of x, {_shape(x)}; got {_shape(v)}")


def vjp(f, *primals, **kwargs):
    """(f(x), pullback) with pullback(g) = gᵀ J_f(x) = Σ_i g_i ∂f_i/∂x, for each primal argument.
    g may carry extra leading axes: a batch of cotangents pulled back at once. Keyword arguments go to f."""
    out, pullback = _vjp(f, primals, tuple(range(len(primals))), "vjp", kwargs)
    return out, (lambda g: pullback(g)[0]) if len(primals) == 1 else pullback


def value_and_grad(f, argnums=0):
    """x ↦ (f(x), ∇f(x)) for a scalar-valued f; argnums picks the positional argument(s) to differentiate.
    Keyword arguments are passed to f and not differentiated."""
    def value_and_grad_f(*args, **kwargs):
        single, nums = _argnums_tuple(argnums, len(args), "grad")
        out, pullback = _vjp(f, args, nums, "grad", kwargs)
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
    def grad_f(*args, **kwargs):
        return value_and_grad(f, argnums)(*args, **kwargs)[1]
    return grad_f


def jvp(f, primals, tangents):
    """(f(x), J_f(x) v), forward mode by reverse-of-reverse: the pullback u ↦ uᵀJ is linear in u, and its own
    pullback, applied to v, is J v. One argument, as tuples as in JAX: primals=(x,), tangents=(v,)."""
    if not (isinstance(primals, (tuple, list)) and isinstance(tangents, (tuple, list))):
        raise TypeError(f"jvp: primals and tangents must be tuples, as in JAX: jvp(f, (x,), (v,)); got "
                        f"{type(primals).__name__} and {type(tangents).__name__}")
    if len(primals) != 1 or len(tangents) != 1:
        raise ValueError(f"jvp: one primal and one tangent are supported, got {len(primals)} and {len(tangents)}")
    (x,), (v,) = primals, tangents
    _check_same_shape(x, v, "jvp", "the tangent")
    out, pullback = vjp(f, x)
    u0 = _zeros(np.shape(raw(out)), raw(out) if np.ndim(raw(out)) else np.asarray(raw(out)))
    _, pullback_of_pullback = vjp(pullback, u0)
    return out, pullback_of_pullback(v)


# Peak memory of jacobian's reverse pass, in units of the result: the (m, n) result plus the batches of m
# cotangents alive at once. Measured with tracemalloc for small test functions and MLP losses: 3 to 7 times;
# more when f's intermediates are much larger than its input and output.
WORKSPACE_FACTOR = 4


def jacobian_bytes(out_size, in_size, dtype):
    """Estimated peak bytes of `jacobian` for f: ℝⁿ → ℝᵐ (m = out_size, n = in_size): m cotangents of size
    max(m, n) (the identity seed is (m, m)), WORKSPACE_FACTOR of them, at dtype's itemsize. For a Hessian,
    jacobian_bytes(n, n, dtype) ≈ 4 · 8n² bytes in float64: 29 GB for n = 30,000."""
    return WORKSPACE_FACTOR * out_size * max(out_size, in_size) * np.dtype(dtype).itemsize


def check_memory(nbytes, what, max_bytes=None, hint=""):
    """Refuse, before doing any work, a computation estimated to need `nbytes`: MemoryError if nbytes exceeds
    `max_bytes` (a caller's budget) or, without one, the memory available now (MemAvailable of Linux's
    /proc/meminfo, host memory; no check where it is unknown). `what` names the computation in the message,
    `hint` suggests a cheaper route."""
    if max_bytes is not None and not (isinstance(max_bytes, numbers.Real) and max_bytes > 0):
        raise ValueError(f"max_bytes must be a number of bytes > 0 (or None), got {max_bytes!r}")
    limit = max_bytes if max_bytes is not None else _available_bytes()
    if limit is not None and nbytes > limit:
        source = "the budget max_bytes" if max_bytes is not None else "the memory available"
        raise MemoryError(f"{what} would need about {nbytes / 1e9:.3g} GB, more than {source} "
                          f"({limit / 1e9:.3g} GB)" + (f"; {hint}" if hint else ""))


def _available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except OSError:
        pass
    return None


def jacobian(f, max_bytes=None):
    """x ↦ J, the array of ∂f_i/∂x_j with shape f(x).shape + x.shape. All rows in one reverse pass: the
    cotangent is the identity matrix, its leading axis a batch of cotangents. Keyword arguments go to f.
    Refuses (MemoryError) a J whose estimated memory (jacobian_bytes) exceeds max_bytes or what is free."""
    def jacobian_f(x, **kwargs):
        x = _check_differentiable(x, "jacobian", 0)
        out, pullback = vjp(f, x, **kwargs)
        r = raw(out)
        m, n, dtype = np.size(r), np.size(raw(x)), np.result_type(r.dtype, raw(x).dtype)
        check_memory(jacobian_bytes(m, n, dtype), f"jacobian of {n} inputs: the {(m, n)} {dtype} result and its "
                     f"reverse pass", max_bytes, "use vjp or jvp for products with J")
        eye = array_module(r).eye(m, dtype=dtype)
        J = pullback(eye.reshape((m,) + np.shape(r)))
        return ops.reshape(J, np.shape(r) + _shape(x))
    return jacobian_f


def hessian(f, max_bytes=None):
    """x ↦ ∇²f(x) = jacobian(grad(f))(x), shape x.shape + x.shape. Exact, to rounding. Its size is known
    from x alone, so one too large for max_bytes (or for the free memory) is refused before f runs."""
    def hessian_f(x, **kwargs):
        x = _check_differentiable(x, "hessian", 0)
        n, dtype = np.size(raw(x)), raw(x).dtype
        check_memory(jacobian_bytes(n, n, dtype), f"hessian of {n} inputs: the {(n, n)} {dtype} result and "
                     f"its reverse pass", max_bytes, "use hvp(f, x, v) for Hessian-vector products H v")
        return jacobian(grad(f), max_bytes)(x, **kwargs)
    return hessian_f


def hvp(f, x, v):
    """∇²f(x) v without forming the Hessian: the gradient of x ↦ ⟨∇f(x), v⟩ (reverse over reverse).
    v has x's shape."""
    _check_same_shape(x, v, "hvp", "v")
    return grad(lambda y: ops.sum(grad(f)(y) * v))(x)
