"""What every task family shares: the TaskBatch it samples, seeds, and argument checks.

Each task is seen through K support and K_q query points.

``family.sample(num_tasks, k_support, k_query, rng)`` returns a ``TaskBatch`` of arrays

    xs (T, K, in), ys (T, K, 1)       support set: what the inner loop adapts on
    xq (T, Kq, in), yq (T, Kq, 1)     query set: what the meta-loss is measured on

plus the task parameters. ``rng`` is a ``np.random.Generator`` or an int seed, so a batch is
reproducible from its seed.
"""

import dataclasses
import numbers

import numpy as np


@dataclasses.dataclass
class TaskBatch:
    """Support/query arrays of T tasks (float64) and the parameters that generated them.

    ``params`` maps names to (T, ...) arrays; they are also readable as attributes,
    e.g. ``batch.amplitude``.
    """
    xs: np.ndarray
    ys: np.ndarray
    xq: np.ndarray
    yq: np.ndarray
    params: dict

    def __getattr__(self, name):
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"TaskBatch has no attribute or task parameter {name!r}")

    @property
    def num_tasks(self):
        return self.xs.shape[0]


def _positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _range(name, value):
    lo, hi = (float(v) for v in value)
    if not lo <= hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value!r}")
    return lo, hi


def as_rng(rng):
    """A np.random.Generator from a Generator, an int seed, or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a np.random.Generator or an int seed, got {type(rng).__name__}")


def _split(x, y, K, params):
    """TaskBatch from points drawn together: the first K of each task are the support set."""
    parts = (x[:, :K], y[:, :K], x[:, K:], y[:, K:])
    return TaskBatch(*(np.ascontiguousarray(a) for a in parts), params)
