"""What every task family shares: the TaskBatch it samples, seeds, and argument checks.

Each task is seen through K support and K_q query points.

``family.sample(num_tasks, k_support, k_query, rng)`` returns a ``TaskBatch`` of arrays

    xs (T, K, in), ys (T, K, 1)       support set: what the inner loop adapts on
    xq (T, Kq, in), yq (T, Kq, 1)     query set: what the meta-loss is measured on

plus the task parameters. ``rng`` is a ``np.random.Generator`` or an int seed, so a batch is
reproducible from its seed.
"""

import dataclasses
import math
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


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _range(name, value):
    """(low, high) as floats, low <= high, with low, high and the width high − low finite: NumPy's uniform
    sampler overflows on an infinite width."""
    try:
        lo, hi = value
    except (TypeError, ValueError):  # not a pair
        lo = hi = None
    if not (_is_real(lo) and _is_real(hi)):
        raise TypeError(f"{name} must be a pair of real numbers (low, high), got {value!r}")
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi and math.isfinite(hi - lo)):
        raise ValueError(f"{name} must be (low, high) with finite low <= high (and a finite width high − low), "
                         f"got {(lo, hi)!r}")
    return lo, hi


def _nonnegative(name, value):
    """value as a float, if it is a finite real number >= 0."""
    if not (_is_real(value) and math.isfinite(value) and value >= 0):
        error = ValueError if _is_real(value) else TypeError
        raise error(f"{name} must be a finite real number >= 0, got {value!r}")
    return float(value)


def as_rng(rng):
    """A np.random.Generator from a Generator, an int seed >= 0, or None (fresh entropy). The one place
    seeds are checked: task sampling and ``MLP.init`` both come here."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:  # NumPy's own error ("expected non-negative integer") names neither the seed nor its value
            raise ValueError(f"seed must be an int >= 0, got {rng}")
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a np.random.Generator, an int seed >= 0 or None, got {type(rng).__name__}")


def _split(x, y, K, params):
    """TaskBatch from points drawn together: the first K of each task are the support set."""
    parts = (x[:, :K], y[:, :K], x[:, K:], y[:, K:])
    return TaskBatch(*(np.ascontiguousarray(a) for a in parts), params)
