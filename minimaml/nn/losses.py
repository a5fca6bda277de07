"""Losses with minimaml's convention: the mean over the points of one task.

``loss(out, y)`` returns () for one task (out (N, ...)) and (T,) for a batch of T tasks
(out (T, N, ...)), so the meta-loss is ``loss(...).mean()`` and the inner loop differentiates
``loss(...).sum()`` (each task's loss depends only on its own parameters).
"""
from ..autodiff import ops


def mse(pred, y):
    """L = mean over points and outputs of (pred − y)²; batched (T, N, out) inputs give (T,)."""
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have the same shape, got {pred.shape} and {y.shape}")
    d = pred - y
    sq = d * d
    if len(pred.shape) >= 3:
        n = pred.shape[-1] * pred.shape[-2]
        return ops.mean(sq.reshape(tuple(pred.shape[:-2]) + (n,)), axis=-1)
    return ops.mean(sq)
