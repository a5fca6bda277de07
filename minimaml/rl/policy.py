"""The Gaussian MLP policy of the MAML paper's RL experiments, a pure function of a flat θ.

    π_θ(u | s) = N(u; μ_θ(s), diag(σ²)),   μ_θ = MLP 2-100-100-2 (ReLU),   log σ ∈ ℝ² learned

σ does not depend on the state (rllab's GaussianMLPPolicy, as in the released code), and starts at
``init_std`` = 1. The parameters are one vector, the mean network's then log σ:

    θ = concat(θ_μ, log σ)   (P,),   P = MLP.num_params + action_dim  (10,602 + 2 for 2-100-100-2)

    log π_θ(u | s) = Σ_d [ −(u_d − μ_d(s))² / (2σ_d²) − log σ_d − ½ log 2π ]

written with minimaml's ops, so the engine differentiates it (to any order). Like ``MLP`` it runs
batched: θ (P,) with s (..., N, 2), or θ (T, P) with s (T, N, 2), one policy per task.
"""
import math

import numpy as np

from ..autodiff import ops
from ..autodiff.tensor import raw
from ..nn.mlp import MLP

LOG_2PI = math.log(2.0 * math.pi)


class GaussianMLPPolicy:
    """π_θ(u | s) = N(μ_θ(s), diag(σ²)) with μ_θ an ``MLP(sizes)`` and a learned log σ."""

    def __init__(self, sizes=(2, 100, 100, 2), activation="relu", init_std=1.0):
        if not (np.isfinite(init_std) and init_std > 0):
            raise ValueError(f"init_std must be a finite number > 0, got {init_std!r}")
        self.net = MLP(list(sizes), activation)
        self.init_std = float(init_std)
        self.obs_dim, self.action_dim = self.net.sizes[0], self.net.sizes[-1]
        self.num_params = self.net.num_params + self.action_dim

    def __repr__(self):
        return f"GaussianMLPPolicy({self.net.sizes}, activation={self.net.activation!r}, init_std={self.init_std})"

    def describe(self):
        return {"kind": "gaussian_mlp", "sizes": list(self.net.sizes), "activation": self.net.activation,
                "init_std": self.init_std}

    @classmethod
    def from_description(cls, d):
        if d.get("kind") != "gaussian_mlp":
            raise ValueError(f"not a Gaussian MLP policy description: {d!r}")
        return cls(d["sizes"], d["activation"], d["init_std"])

    def init(self, seed=0):
        """θ (P,): the mean network's ``MLP.init(seed)``, then log σ = log(init_std)."""
        return np.concatenate([self.net.init(seed), np.full(self.action_dim, math.log(self.init_std))])

    def split(self, theta):
        """θ (..., P) -> (θ_μ (..., P_μ), log σ (..., action_dim))."""
        if theta.shape[-1] != self.num_params:
            raise ValueError(f"theta must have last dimension {self.num_params} for {self!r}, got shape "
                             f"{tuple(theta.shape)}")
        P = self.net.num_params
        return theta[..., :P], theta[..., P:]

    def mean_and_log_std(self, theta, obs):
        """μ_θ(s) (..., N, action_dim) and log σ, shaped to broadcast against it."""
        theta_mu, log_std = self.split(theta)
        mu = self.net(theta_mu, obs)
        if len(theta.shape) == 2:                       # one σ per task: (T, 1, action_dim)
            log_std = log_std.reshape((theta.shape[0], 1, self.action_dim))
        return mu, log_std

    def log_prob(self, theta, obs, actions):
        """log π_θ(u | s) for every step: obs (..., N, obs_dim), actions (..., N, action_dim) -> (..., N)."""
        mu, log_std = self.mean_and_log_std(theta, obs)
        z = (actions - mu) / ops.exp(log_std)
        return ops.sum(-0.5 * z * z - log_std, axis=-1) - 0.5 * self.action_dim * LOG_2PI

    def act(self, theta, obs, rng, deterministic=False):
        """u ~ π_θ(· | s), or μ_θ(s) if deterministic; plain arrays (sampling is not differentiated)."""
        mu, log_std = self.mean_and_log_std(raw(theta), obs)
        if deterministic:
            return mu
        return mu + np.exp(log_std) * rng.standard_normal(mu.shape)
