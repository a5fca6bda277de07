"""The one argument check of every meta-learning route: shapes, dtypes and hyper-parameters.

Every public function that takes a model, θ, task sets or an inner loop's settings calls these,
and so do the GPU back-ends, so a bad argument gets the same one-line error whichever route it
reaches. Rules:

* θ is a float32 or float64 array (the computation runs in θ's dtype, and results come back in
  it); other dtypes (integers, float16, complex) are a TypeError that says so.
* Task sets: x (T, N, ...) with T >= 1 tasks of N >= 1 points; y (T, N, ...) for ``mse`` (the
  model's output shape) or integer labels (T, N) for ``softmax_cross_entropy``; x and float
  targets are cast to θ's dtype. Support and query sets hold the same T tasks.
* A wrong type is a TypeError, a wrong value a ValueError, each naming the argument and the value.
"""
import math
import numbers

import numpy as np

from ..autodiff.tensor import array_module, raw
from ..nn.losses import check_targets, mse, softmax_cross_entropy
from ..nn.mlp import MLP

FLOAT_DTYPES = (np.float32, np.float64)


def check_model(net, loss):
    if not callable(net):
        raise TypeError(f"net must be a model: a function net(theta, x), got {type(net).__name__}")
    if not callable(loss):
        raise TypeError(f"loss must be a function loss(out, y), got {type(loss).__name__}")


def check_theta(net, theta, name="theta"):
    """θ: a float32/float64 array of shape (P,) (P = net.num_params for an MLP). Returns it."""
    value = raw(theta)
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{name} must be a float array, got {type(theta).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {value.dtype} (shape {value.shape})"
                        + ("; cast with theta.astype(np.float32)" if value.dtype.kind in "fiu" else ""))
    if isinstance(net, MLP) and value.shape != (net.num_params,):
        raise ValueError(f"{name} must have shape (P,) = ({net.num_params},) for {net!r}, got {value.shape}")
    if value.ndim != 1:
        raise ValueError(f"{name} must be a flat vector (P,), got shape {value.shape}")
    return theta


def check_inner_loop(inner_lr, steps):
    """α = inner_lr a finite number > 0, steps an int >= 0."""
    if isinstance(inner_lr, bool) or not isinstance(inner_lr, numbers.Real):
        raise TypeError(f"inner_lr must be a real number, got {inner_lr!r} of type {type(inner_lr).__name__}")
    if not (math.isfinite(inner_lr) and inner_lr > 0):
        raise ValueError(f"inner_lr (α) must be a finite number > 0, got inner_lr={inner_lr!r}")
    check_steps(steps)


def check_steps(steps):
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be an integer >= 0, got {steps!r} of type {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got steps={steps}")


def check_lam(lam):
    """iMAML's λ, the pull of the inner problem towards θ: a finite number > 0."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam (λ) must be a real number, got {lam!r} of type {type(lam).__name__}")
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam (λ) must be a finite number > 0 (the pull towards θ), got lam={lam!r}")
    return float(lam)


def check_cg_steps(cg_steps):
    if isinstance(cg_steps, bool) or not isinstance(cg_steps, numbers.Integral) or cg_steps < 1:
        raise ValueError(f"cg_steps must be an integer >= 1, got {cg_steps!r}")
    return int(cg_steps)


def check_cg_tol(cg_tol):
    if isinstance(cg_tol, bool) or not isinstance(cg_tol, numbers.Real) or not 0 < cg_tol < 1:
        raise ValueError(f"cg_tol (a relative residual) must be a number in (0, 1), got {cg_tol!r}")
    return float(cg_tol)


def check_learned_sizes(name, sizes, shape):
    """Learned step sizes (Meta-SGD's α, MAML++'s per-step sizes): a finite float array of ``shape``.
    They may be negative or zero: what is learned is not constrained."""
    value = raw(sizes)
    if not hasattr(value, "shape") or not hasattr(value, "dtype") or value.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array of shape {shape}, got "
                        f"{type(sizes).__name__} {getattr(value, 'dtype', '')}")
    if value.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {value.shape}")
    if not bool(array_module(value).isfinite(value).all()):
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")


def check_mask(mask, num_params):
    """An inner-loop mask: a boolean (P,) array, True where the inner loop adapts θ."""
    value = np.asarray(mask) if isinstance(mask, (list, tuple)) else mask
    if not hasattr(value, "dtype") or value.dtype != bool:
        raise TypeError(f"inner_mask must be a boolean array of shape ({num_params},), got "
                        f"{type(mask).__name__} {getattr(value, 'dtype', '')}")
    if value.shape != (num_params,):
        raise ValueError(f"inner_mask must have θ's shape ({num_params},), got {value.shape}")
    return value


def _check_data(name, a, labels=False):
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if not labels and a.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype} (shape {a.shape})")


def check_set(net, loss, x, y, which="support"):
    """One support or query set: x (T, N, ...), y (T, N, ...). Looks at shapes and dtypes only (and
    the label range of cross-entropy), so it works on NumPy and CuPy arrays without moving them."""
    xn, yn = ("xs", "ys") if which == "support" else ("xq", "yq")
    labels = loss is softmax_cross_entropy
    _check_data(xn, x)
    _check_data(yn, y, labels)
    mlp = isinstance(net, MLP)
    if mlp and x.ndim != 3:
        raise ValueError(f"{xn} must have shape (T, N, {net.sizes[0]}), got {x.shape} ({x.ndim}-D)")
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"{xn} and {yn} must be (T, N, ...) arrays of T tasks with N points each, got "
                         f"{xn} {x.shape} and {yn} {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{xn} and {yn} must have the same number of tasks T, got {x.shape} and {y.shape}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{xn} and {yn} must have the same number of points N, got {x.shape} and {y.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"the {which} set needs at least one task and one point, got {xn}.shape = {x.shape}")
    if mlp:
        if x.shape[2] != net.sizes[0]:
            raise ValueError(f"{xn} has {x.shape[2]} features per point but the network's input size is "
                             f"{net.sizes[0]} ({net!r}); {xn}.shape = {x.shape}")
        if loss is mse and (y.ndim != 3 or y.shape[2] != net.sizes[-1]):
            raise ValueError(f"{yn} has {y.shape[2:]} features per point but the network's output size is "
                             f"{net.sizes[-1]} ({net!r}); {yn}.shape = {y.shape}")
        if loss is mse or labels:
            check_targets(loss, x.shape[:2] + (net.sizes[-1],), y)
    elif labels and y.ndim != 2:
        raise ValueError(f"{yn} must hold integer labels (T, N) for softmax_cross_entropy, got {y.shape}")


def as_data(theta, loss, *arrays):
    """The task arrays, given as (x, y) pairs, in θ's array module: x and float targets in θ's dtype,
    labels (cross-entropy) left as integers."""
    value = raw(theta)
    xp, dtype = array_module(value), value.dtype
    return tuple(xp.asarray(a) if loss is softmax_cross_entropy and i % 2 else xp.asarray(a, dtype=dtype)
                 for i, a in enumerate(arrays))


def check_adapt_args(net, theta, xs, ys, inner_lr, steps, loss=mse):
    """What an inner loop alone takes (``adapt``, ``inner_matrices``). Returns (xs, ys) converted
    (``as_data``)."""
    check_model(net, loss)
    check_theta(net, theta)
    check_inner_loop(inner_lr, steps)
    check_set(net, loss, xs, ys)
    return as_data(theta, loss, xs, ys)


def check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps, loss=mse):
    """Everything ``meta_value_and_grad`` takes (shapes, dtypes, hyper-parameters); one error naming
    the argument and its value otherwise. Does not convert anything (see ``as_data``)."""
    check_model(net, loss)
    check_theta(net, theta)
    check_inner_loop(inner_lr, steps)
    check_set(net, loss, xs, ys, "support")
    check_set(net, loss, xq, yq, "query")
    if xs.shape[0] != xq.shape[0]:
        raise ValueError(f"support and query must hold the same number of tasks T, got xs {xs.shape} "
                         f"(T={xs.shape[0]}) and xq {xq.shape} (T={xq.shape[0]})")


def check_task_losses(losses, num_tasks, loss):
    """A loss must return one value per task: shape (T,)."""
    shape = getattr(raw(losses), "shape", None)
    if shape != (num_tasks,):
        name = getattr(loss, "__name__", repr(loss))
        raise ValueError(f"loss {name} returned shape {shape} for a batch of {num_tasks} tasks; a loss "
                         f"must return the mean over each task's points, one value per task: ({num_tasks},)")
