"""The primitives, each next to its vector-Jacobian product (VJP), and the functions composed from them.

Every rule is written with these same differentiable operations — never with raw NumPy on a cotangent —
so the reverse pass is itself differentiable and derivatives of any order work by composition.

Conventions for a rule `vjp(g, ans, *args)`: g is the cotangent of `ans`, possibly with extra leading
(batch) axes, so rules work on trailing axes (negative axis numbers); `unbroadcast` sums a cotangent back
to an input's shape. Names and signatures follow NumPy.
"""
import numpy as np

from .tensor import Tensor, array_module, defvjp, primitive, raw


def _ndim(x):
    return np.ndim(x) if not isinstance(x, Tensor) else x.ndim


def _shape(x):
    return np.shape(x) if not isinstance(x, Tensor) else x.shape


def unbroadcast(g, shape, ans_ndim):
    """Sum cotangent g over the axes that broadcasting added to or stretched in an input of `shape`.
    g's axes are (batch..., *ans.shape); the batch axes (beyond ans_ndim) are kept."""
    nb = _ndim(g) - ans_ndim
    lead = ans_ndim - len(shape)
    if lead:
        g = sum(g, axis=tuple(range(nb, nb + lead)))
    stretched = tuple(nb + i for i, n in enumerate(shape) if n == 1 and _shape(g)[nb + i] != 1)
    if stretched:
        g = sum(g, axis=stretched, keepdims=True)
    return g


def _batch(g, ans):
    """The leading batch axes of a cotangent g of `ans`."""
    return _shape(g)[: _ndim(g) - _ndim(ans)]


# ---------------------------------------------------------------- arithmetic
@primitive
def add(x, y):
    """x + y, broadcasting. VJP: g to each input, summed over broadcast axes."""
    return x + y


@primitive
def subtract(x, y):
    """x − y, broadcasting. VJP: g and −g."""
    return x - y


@primitive
def multiply(x, y):
    """x ⊙ y, broadcasting. VJP: g ⊙ y and g ⊙ x."""
    return x * y


@primitive
def divide(x, y):
    """x / y, broadcasting. VJP: g / y and −g x / y²."""
    return x / y


@primitive
def negative(x):
    """−x. VJP: −g."""
    return -x


@primitive
def power(x, exponent):
    """x ** exponent for a constant exponent (a number or a plain array). The exponent has no derivative
    rule, so Primitive refuses a Tensor there when power is called."""
    return x**exponent


defvjp(add, lambda g, ans, x, y: unbroadcast(g, _shape(x), _ndim(ans)),
            lambda g, ans, x, y: unbroadcast(g, _shape(y), _ndim(ans)))
defvjp(subtract, lambda g, ans, x, y: unbroadcast(g, _shape(x), _ndim(ans)),
                 lambda g, ans, x, y: unbroadcast(negative(g), _shape(y), _ndim(ans)))
defvjp(multiply, lambda g, ans, x, y: unbroadcast(g * y, _shape(x), _ndim(ans)),
                 lambda g, ans, x, y: unbroadcast(g * x, _shape(y), _ndim(ans)))
defvjp(divide, lambda g, ans, x, y: unbroadcast(g / y, _shape(x), _ndim(ans)),
               lambda g, ans, x, y: unbroadcast(negative(g) * x / y**2, _shape(y), _ndim(ans)))
defvjp(negative, lambda g, ans, x: negative(g))
# d/dx x^p = p x^(p−1). Where p = 0 the exponent p − 1 becomes 0 (any value would do, it is multiplied by
# p = 0), so that x = 0 gives 0 · 0⁰ = 0, not 0 · 0⁻¹ = NaN; elementwise, for an array of exponents too.
defvjp(power, lambda g, ans, x, p: g * (p * x ** (p - 1 + (p == 0))))


# ---------------------------------------------------------------- elementwise functions
@primitive
def exp(x):
    """eˣ. VJP: g ⊙ eˣ (the answer itself)."""
    return np.exp(x)


@primitive
def log(x):
    """ln x (log 0 = −inf, as NumPy). VJP: g / x."""
    with np.errstate(divide="ignore"):  # log(0) = -inf, as in NumPy, without a warning
        return np.log(x)


@primitive
def sqrt(x):
    """√x. VJP: g / (2√x)."""
    return np.sqrt(x)


@primitive
def sin(x):
    """sin x. VJP: g ⊙ cos x."""
    return np.sin(x)


@primitive
def cos(x):
    """cos x. VJP: −g ⊙ sin x."""
    return np.cos(x)


@primitive
def tanh(x):
    """tanh x. VJP: g ⊙ (1 − tanh² x)."""
    return np.tanh(x)


@primitive
def sigmoid(x):
    """σ(x) = 1 / (1 + e^{-x}), computed as (1 + tanh(x/2)) / 2, which never overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@primitive
def relu(x):
    """max(x, 0). Convention: relu'(0) = 0, and relu'' = 0 everywhere (the mask is a constant)."""
    return np.maximum(x, 0)


defvjp(exp, lambda g, ans, x: g * ans)
defvjp(log, lambda g, ans, x: g / x)
defvjp(sqrt, lambda g, ans, x: g / (2.0 * ans))
defvjp(sin, lambda g, ans, x: g * cos(x))
defvjp(cos, lambda g, ans, x: negative(g) * sin(x))
defvjp(tanh, lambda g, ans, x: g * (1.0 - ans**2))
defvjp(sigmoid, lambda g, ans, x: g * (ans * (1.0 - ans)))
defvjp(relu, lambda g, ans, x: g * (raw(x) > 0))


@primitive
def maximum(x, y):
    """Elementwise max. At ties the gradient is split equally between x and y (as JAX does)."""
    return np.maximum(x, y)


def _max_share(x, y):
    x, y = raw(x), raw(y)
    return ((x > y) + 0.5 * (x == y)).astype(np.result_type(x, y), copy=False)


defvjp(maximum, lambda g, ans, x, y: unbroadcast(g * _max_share(x, y), _shape(x), _ndim(ans)),
                lambda g, ans, x, y: unbroadcast(g * _max_share(y, x), _shape(y), _ndim(ans)))


@primitive
def where(condition, x, y):
    """x where condition holds, else y. The condition is a constant (it gets no gradient): e.g. x > 0."""
    return np.where(condition, x, y)


defvjp(where, None,
       lambda g, ans, c, x, y: unbroadcast(where(c, g, 0.0), _shape(x), _ndim(ans)),
       lambda g, ans, c, x, y: unbroadcast(where(c, 0.0, g), _shape(y), _ndim(ans)))


# ---------------------------------------------------------------- linear algebra
@primitive
def _matmul(a, b):
    return a @ b


def _mT(x):
    return swapaxes(x, -1, -2)


# C = A B with stacks of matrices (..., n, k) @ (..., k, m): dA = dC Bᵀ, dB = Aᵀ dC, then undo broadcasting.
defvjp(_matmul, lambda g, ans, a, b: unbroadcast(g @ _mT(b), _shape(a), _ndim(ans)),
                lambda g, ans, a, b: unbroadcast(_mT(a) @ g, _shape(b), _ndim(ans)))


def matmul(a, b):
    """a @ b as NumPy defines it, including stacks (..., n, k) @ (..., k, m) with broadcasting.
    1-D operands are promoted to matrices with reshape and demoted after, so the primitive sees ndim >= 2."""
    da, db = _ndim(a), _ndim(b)
    if da == 0 or db == 0:
        raise ValueError(f"matmul: operands must be at least 1-D, got shapes {_shape(a)} and {_shape(b)}")
    if da == 1 and db == 1:
        return sum(a * b, axis=-1) if _shape(a) == _shape(b) else _matmul(a, b)  # _matmul raises the error
    if da == 1:
        out = _matmul(reshape(a, (1, -1)), b)
        return reshape(out, _shape(out)[:-2] + _shape(out)[-1:])
    if db == 1:
        return reshape(_matmul(a, reshape(b, (-1, 1))), _shape(a)[:-1])
    return _matmul(a, b)


# ---------------------------------------------------------------- reductions and shape
def _axes(axis, ndim):
    """Normalize `axis` (None, int or tuple) to a tuple of negative axis numbers."""
    if axis is None:
        return tuple(range(-ndim, 0))
    axis = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    for a in axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for an array of dimension {ndim}")
    return tuple(sorted(a - ndim if a >= 0 else a for a in axis))


@primitive
def sum(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name, on purpose
    """Σ over `axis`. VJP: g broadcast back over the summed axes."""
    return np.sum(x, axis=axis, keepdims=keepdims)


def _sum_vjp(g, ans, x, axis=None, keepdims=False):
    batch, shape = _batch(g, ans), _shape(x)
    kept = tuple(1 if i - len(shape) in _axes(axis, len(shape)) else n for i, n in enumerate(shape))
    return broadcast_to(reshape(g, batch + kept), batch + shape)


defvjp(sum, _sum_vjp)


@primitive
def broadcast_to(x, shape):
    """x repeated along new or size-1 axes to `shape`. VJP: unbroadcast (sum back)."""
    return np.broadcast_to(x, shape)


defvjp(broadcast_to, lambda g, ans, x, shape: unbroadcast(g, _shape(x), len(shape)))


def mean(x, axis=None, keepdims=False):
    """Mean over `axis`: a sum divided by the number of elements summed."""
    shape = _shape(x)
    count = int(np.prod([shape[a] for a in _axes(axis, len(shape))]))
    return sum(x, axis=axis, keepdims=keepdims) / count


@primitive
def reshape(x, shape):
    """The same elements in a new shape. VJP: g reshaped back."""
    return np.reshape(x, shape)


defvjp(reshape, lambda g, ans, x, shape: reshape(g, _batch(g, ans) + _shape(x)))


@primitive
def transpose(x, axes=None):
    """Permute axes (reverse them by default). VJP: g permuted back (the inverse permutation)."""
    return np.transpose(x, axes)


def _transpose_vjp(g, ans, x, axes=None):
    n, nb = _ndim(x), _ndim(g) - _ndim(ans)
    axes = tuple(range(n))[::-1] if axes is None else tuple(a % n for a in axes)
    inverse = tuple(int(i) for i in np.argsort(axes))
    return transpose(g, tuple(range(nb)) + tuple(nb + a for a in inverse))


defvjp(transpose, _transpose_vjp)


def swapaxes(x, axis1, axis2):
    """Swap two axes: a transpose with the permutation that exchanges them."""
    n = _ndim(x)
    perm = list(range(n))
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return transpose(x, tuple(perm))


@primitive
def getitem(x, index):
    """x[index]: basic slicing and integer-array indexing."""
    return x[index]


@primitive
def index_add(g, index, shape):
    """A zero array of `shape` with g added at x[index] (repeated indices accumulate): getitem's adjoint."""
    out = array_module(g).zeros(shape, dtype=g.dtype)
    array_module(g).add.at(out, index, g)
    return out


def _batched_index(index, nb):
    index = index if isinstance(index, tuple) else (index,)
    return (slice(None),) * nb + index


defvjp(getitem, lambda g, ans, x, index: index_add(
    g, _batched_index(index, _ndim(g) - _ndim(ans)), _batch(g, ans) + _shape(x)))
defvjp(index_add, lambda g, ans, x, index, shape: getitem(g, _batched_index(index, _ndim(g) - len(shape))))


@primitive
def _concatenate(*arrays, axis=0):
    return np.concatenate(arrays, axis=axis)


def _concatenate_vjp(i, g, ans, *arrays, axis=0):
    """Argument i's cotangent is its own slice of g along the joined axis."""
    ax = _axes(axis, _ndim(ans))[0]
    start = int(np.sum([_shape(a)[ax] for a in arrays[:i]]))
    index = (Ellipsis, slice(start, start + _shape(arrays[i])[ax])) + (slice(None),) * (-ax - 1)
    return getitem(g, index)


_concatenate.vjp_argnum = _concatenate_vjp  # one rule for any number of arguments


def concatenate(arrays, axis=0):
    """Join a sequence of arrays along an existing axis."""
    return _concatenate(*arrays, axis=axis)


def stack(arrays, axis=0):
    """Join a sequence of same-shaped arrays along a new axis (expand each, then concatenate)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("stack: need at least one array")
    n = _ndim(arrays[0]) + 1
    ax = axis % n if -n <= axis < n else axis
    if not 0 <= ax < n:
        raise ValueError(f"stack: axis {axis} is out of bounds for arrays of dimension {n - 1}")
    expanded = [reshape(a, _shape(a)[:ax] + (1,) + _shape(a)[ax:]) for a in arrays]
    return concatenate(expanded, axis=ax)


# ---------------------------------------------------------------- composites for classification
def logsumexp(x, axis=None, keepdims=False):
    """log Σ exp(x), stable: m + log Σ exp(x − m) with m = max(x) held constant (the value, and hence
    the derivative, does not depend on m, so no gradient needs to flow through the max)."""
    m = np.max(raw(x), axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # all -inf (or inf) along an axis: shift by 0, not by inf
    out = log(sum(exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else reshape(out, np.squeeze(m, axis=axis).shape)


def log_softmax(x, axis=-1):
    """log softmax(x) = x − logsumexp(x)."""
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    """exp(x_i) / Σ_j exp(x_j), computed as exp(log_softmax(x)) so large inputs do not overflow."""
    return exp(log_softmax(x, axis=axis))


# ---------------------------------------------------------------- operators and methods on Tensor
Tensor.__add__ = lambda self, other: add(self, other)
Tensor.__radd__ = lambda self, other: add(other, self)
Tensor.__sub__ = lambda self, other: subtract(self, other)
Tensor.__rsub__ = lambda self, other: subtract(other, self)
Tensor.__mul__ = lambda self, other: multiply(self, other)
Tensor.__rmul__ = lambda self, other: multiply(other, self)
Tensor.__truediv__ = lambda self, other: divide(self, other)
Tensor.__rtruediv__ = lambda self, other: divide(other, self)
Tensor.__neg__ = lambda self: negative(self)
Tensor.__pow__ = lambda self, p: power(self, p)
Tensor.__rpow__ = lambda self, base: power(base, self)  # refused: the exponent is a Tensor
Tensor.__matmul__ = lambda self, other: matmul(self, other)
Tensor.__rmatmul__ = lambda self, other: matmul(other, self)
Tensor.__getitem__ = lambda self, index: getitem(self, index.value if isinstance(index, Tensor) else index)
Tensor.T = property(lambda self: transpose(self))
Tensor.sum = lambda self, axis=None, keepdims=False: sum(self, axis=axis, keepdims=keepdims)
Tensor.mean = lambda self, axis=None, keepdims=False: mean(self, axis=axis, keepdims=keepdims)
Tensor.reshape = lambda self, *shape: reshape(self, shape[0] if len(shape) == 1 else shape)
Tensor.transpose = lambda self, *axes: transpose(self, (axes[0] if len(axes) == 1 else axes) or None)
Tensor.swapaxes = lambda self, a, b: swapaxes(self, a, b)


# ---------------------------------------------------------------- NumPy's own functions called on a Tensor
# NumPy cannot record a graph. The ufuncs behind the operators, reached by `ndarray + Tensor` or
# `np.float64(2) * Tensor`, are handed to the engine's op; ufuncs with a boolean answer (comparisons,
# isfinite) have no derivative and act on the raw values, like Tensor.__lt__; anything else is refused
# with the name of the op to use instead, rather than failing deep inside NumPy or making an object array.
_OPERATOR_UFUNCS = {"add": add, "subtract": subtract, "multiply": multiply, "divide": divide,
                    "true_divide": divide, "negative": negative, "power": power, "matmul": matmul}


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    if method == "__call__" and not kwargs:
        if ufunc.__name__ in _OPERATOR_UFUNCS:
            return _OPERATOR_UFUNCS[ufunc.__name__](*inputs)
        if all(t[-1] in "?O" for t in ufunc.types):  # every loop returns bool (or Python objects)
            return ufunc(*map(raw, inputs))
    name = ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}"
    raise TypeError(_not_on_tensor(f"np.{name}", ufunc.__name__))


def _array_function(self, func, types, args, kwargs):
    if func in (np.shape, np.ndim, np.size):  # questions about the shape, not the values
        return func(*map(raw, args), **kwargs)
    raise TypeError(_not_on_tensor(f"np.{func.__name__}", func.__name__))


def _array(self, dtype=None, copy=None):
    raise TypeError(_not_on_tensor("np.asarray (or np.array)", "asarray"))


def _not_on_tensor(call, name):
    import minimaml  # the top-level names, the ones a user writes as mm.<name>
    use = (f"use mm.{name}, its differentiable version" if callable(getattr(minimaml, name, None)) else
           f"minimaml has no differentiable {name}: write it with minimaml ops, or use "
           f"minimaml.autodiff.raw(x) for the value as a constant (no gradient)")
    return f"{call} was called on a Tensor (a value being differentiated), which NumPy cannot differentiate; {use}"


Tensor.__array_ufunc__ = _array_ufunc
Tensor.__array_function__ = _array_function
Tensor.__array__ = _array
