"""The MAML paper's sinusoid regression tasks (Finn et al. 2017, §5.1)."""

import numpy as np

from .base import _positive_int, _range, _split, as_rng


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
