"""Losses with minimaml's convention: the mean over the points of one task.

``loss(out, y)`` returns () for one task (out (N, ...)) and (T,) for a batch of T tasks
(out (T, N, ...)), so the meta-loss is ``loss(...).mean()`` and the inner loop differentiates
``loss(...).sum()`` (each task's loss depends only on its own parameters).

A user's loss is any function with this convention written with minimaml's ops. The built-in
ones check their targets with ``check_targets`` (shapes, dtypes, label range), which the fast
route calls too, so bad targets give the same one-line error on every route.
"""
import numpy as np

from ..autodiff import ops
from ..autodiff.tensor import raw


def mse(pred, y):
    """L = mean over points and outputs of (pred − y)²: pred, y (N, m) -> (); (T, N, m) -> (T,)."""
    check_targets(mse, pred.shape, y)
    d = pred - y
    sq = d * d
    if len(pred.shape) >= 3:
        n = pred.shape[-1] * pred.shape[-2]
        return ops.mean(sq.reshape(tuple(pred.shape[:-2]) + (n,)), axis=-1)
    return ops.mean(sq)


def softmax_cross_entropy(logits, labels):
    """L = 1/N Σ_n [log Σ_c exp(logits_nc) − logits_{n, y_n}]: the mean negative log-likelihood of
    the labels under softmax(logits).

    logits (..., N, C), integer labels (..., N) in [0, C) -> (...): () for one task, (T,) for T.
    Its gradient with respect to the logits of point n is (softmax(logits_n) − onehot(y_n)) / N and
    its Hessian block (diag(p_n) − p_n p_nᵀ) / N: positive semi-definite, so cross-entropy is convex
    in the logits (the network makes it non-convex in θ).
    """
    check_targets(softmax_cross_entropy, logits.shape, labels)
    onehot = one_hot(labels, logits.shape[-1], raw(logits).dtype)
    picked = ops.sum(logits * onehot, axis=-1)                   # logits_{n, y_n}
    return ops.mean(ops.logsumexp(logits, axis=-1) - picked, axis=-1)


def accuracy(logits, labels):
    """Fraction of points whose largest logit is their label: logits (..., N, C), labels (..., N)
    -> (...) in [0, 1]. A plain-array metric (no gradient)."""
    logits = raw(logits)
    check_targets(softmax_cross_entropy, logits.shape, labels)
    return np.mean(np.argmax(logits, axis=-1) == np.asarray(labels), axis=-1)


def one_hot(labels, num_classes, dtype):
    """(..., N) integer labels -> (..., N, C) array with 1 at each label (a constant, no gradient)."""
    labels = np.asarray(labels)
    return (labels[..., None] == np.arange(num_classes)).astype(dtype)


def check_targets(loss, out_shape, y):
    """Check the targets y of a built-in loss against the model's output shape; one clear error.

    mse: y has the output's shape. softmax_cross_entropy: y holds integer labels of shape
    out_shape[:-1], each in [0, C) with C = out_shape[-1].
    """
    out_shape, y_shape = tuple(out_shape), tuple(y.shape if hasattr(y, "shape") else np.shape(y))
    if loss is mse:
        if y_shape != out_shape:
            raise ValueError(f"mse: the model's output has shape {out_shape} but the targets y have "
                             f"shape {y_shape}; they must be equal")
        return
    if loss is softmax_cross_entropy:
        y = raw(y)
        if len(out_shape) < 2:
            raise ValueError(f"softmax_cross_entropy: logits must be (..., N, C), got shape {out_shape}")
        if y_shape != out_shape[:-1]:
            raise ValueError(f"softmax_cross_entropy: logits of shape {out_shape} need labels of shape "
                             f"{out_shape[:-1]}, got labels of shape {y_shape}")
        dtype = getattr(y, "dtype", None)
        if dtype is None or dtype.kind not in "iu":
            raise TypeError(f"softmax_cross_entropy: labels must be an integer array, got dtype {dtype}"
                            + (" (convert with labels.astype(int) if they are whole numbers)"
                               if dtype is not None and dtype.kind == "f" else ""))
        C = out_shape[-1]
        if y.size and (int(y.min()) < 0 or int(y.max()) >= C):
            raise ValueError(f"softmax_cross_entropy: labels must be in [0, {C}) for {C} classes, "
                             f"got values from {int(y.min())} to {int(y.max())}")
        return
    raise ValueError(f"check_targets knows mse and softmax_cross_entropy, not {loss!r}")


def is_classification(loss):
    """Whether ``loss`` takes integer labels (so accuracy is its metric)."""
    return loss is softmax_cross_entropy


LOSSES = {"mse": mse, "softmax_cross_entropy": softmax_cross_entropy}


def loss_name(loss):
    """The built-in loss's name (for checkpoints), or a clear error for a user's function."""
    for name, fn in LOSSES.items():
        if fn is loss:
            return name
    raise ValueError(f"only the built-in losses {sorted(LOSSES)} can be stored by name; got {loss!r}")


def loss_by_name(name):
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]

