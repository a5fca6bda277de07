"""Linear-regression tasks: MAML's meta-gradient has a closed form on them, an exact check."""

import numpy as np

from .base import _nonnegative, _positive_int, _split, as_rng


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
        self.noise = _nonnegative("noise", noise)

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
