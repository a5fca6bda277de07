"""Task families for few-shot regression: each task is a function, seen through K support and
K_q query points.

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


class Sinusoid:
    """The MAML paper's sinusoids: y = A sin(x − φ), A ~ U[0.1, 5], φ ~ U[0, π], x ~ U[−5, 5].

    Inputs and outputs are 1-D: xs, ys are (T, K, 1). Task parameters: ``amplitude`` (T,),
    ``phase`` (T,).
    """

    def __init__(self, amp_range=(0.1, 5.0), phase_range=(0.0, np.pi), x_range=(-5.0, 5.0)):
        self.amp_range = _range("amp_range", amp_range)
        self.phase_range = _range("phase_range", phase_range)
        self.x_range = _range("x_range", x_range)

    def __repr__(self):
        return (f"Sinusoid(amp_range={self.amp_range}, phase_range={self.phase_range}, "
                f"x_range={self.x_range})")

    def sample(self, num_tasks, k_support, k_query, rng=None):
        """T tasks y = A sin(x − φ): A ~ U[amp_range], φ ~ U[phase_range], x ~ U[x_range]. Returns a
        TaskBatch: xs, ys (T, K, 1), xq, yq (T, Kq, 1), params amplitude, phase (T,).
        ``rng``: a np.random.Generator or an int seed."""
        T = _positive_int("num_tasks", num_tasks)
        K = _positive_int("k_support", k_support)
        Kq = _positive_int("k_query", k_query)
        rng = as_rng(rng)
        params = {"amplitude": rng.uniform(*self.amp_range, size=T),
                  "phase": rng.uniform(*self.phase_range, size=T)}
        # Support and query points are drawn together and split: one call instead of two
        # (sampling is part of every meta-training iteration).
        x = rng.uniform(*self.x_range, size=(T, K + Kq, 1))
        y = self.function(params, x)
        return _split(x, y, K, params)

    @staticmethod
    def function(params, x):
        """The true curves A sin(x − φ) at x: x (T, N, 1) or a shared grid (N, 1) / (N,) -> (T, N, 1)."""
        x = np.asarray(x, dtype=float)
        if x.ndim == 1:
            x = x[:, None]
        amp = np.asarray(params["amplitude"], dtype=float).reshape(-1, 1, 1)
        phase = np.asarray(params["phase"], dtype=float).reshape(-1, 1, 1)
        return amp * np.sin(x - phase)


class LinearRegression:
    """Linear tasks y = x·w (+ noise·ε), w ~ N(0, I_dim) per task, x ~ N(0, I_dim), ε ~ N(0, 1).

    xs is (T, K, dim), ys (T, K, 1); task parameter ``weights`` (T, dim).

    Why it is here: for the linear model ``MLP([dim, 1])`` and the MSE loss, the support loss
    L(θ) = 1/K ‖X̃ θ̃ − y‖² (X̃ = [X 1], θ̃ = (w, b)) is quadratic, so its Hessian is the constant
    H = 2/K X̃ᵀX̃, the same at every inner step. Each inner step θ_{k+1} = θ_k − α∇L(θ_k) is
    affine in θ_k with Jacobian (I − αH), so the MAML meta-gradient has the closed form

        d/dθ L_query(θ_S(θ)) = ((I − αH)ᵀ)^S ∇L_query(θ_S) = (I − αH)^S ∇L_query(θ_S)

    (flat θ ordered (w, b), as MLP lays it out): an exact check for every meta-gradient route.
    """

    def __init__(self, dim=1, noise=0.0):
        self.dim = _positive_int("dim", dim)
        if not (np.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.noise = float(noise)

    def __repr__(self):
        return f"LinearRegression(dim={self.dim}, noise={self.noise})"

    def sample(self, num_tasks, k_support, k_query, rng=None):
        """T tasks y = x·w (+ noise), w ~ N(0, I): a TaskBatch with xs (T, K, dim), ys (T, K, 1),
        xq (T, Kq, dim), yq (T, Kq, 1), params weights (T, dim). ``rng``: a Generator or an int seed."""
        T = _positive_int("num_tasks", num_tasks)
        K = _positive_int("k_support", k_support)
        Kq = _positive_int("k_query", k_query)
        rng = as_rng(rng)
        params = {"weights": rng.standard_normal((T, self.dim))}
        x = rng.standard_normal((T, K + Kq, self.dim))        # support and query, then split
        y = self.function(params, x) + self.noise * rng.standard_normal((T, K + Kq, 1))
        return _split(x, y, K, params)

    @staticmethod
    def function(params, x):
        """Noise-free y = x·w: x (T, N, dim) or a shared (N, dim) -> (T, N, 1)."""
        w = np.asarray(params["weights"], dtype=float)
        w = w.reshape(-1, w.shape[-1], 1)
        return np.asarray(x, dtype=float) @ w
