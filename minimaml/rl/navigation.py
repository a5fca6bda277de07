"""The MAML paper's 2-D navigation task (Finn et al. 2017, §5.3), many trajectories at once.

A point agent starts at the origin and moves towards a goal g drawn per task from U[−0.5, 0.5]²:

    s_0 = 0,   a_t = clip(c · u_t, −0.1, 0.1),   s_{t+1} = s_t + a_t,   t = 0 .. H−1,  H = 100

The observation is the position s_t (the goal is not observed: the agent must find it from the
rewards); u_t is what the policy outputs, c = ``action_scale``. The released code (cbfinn/maml_rl,
``point_env_randgoal.py`` inside rllab's ``normalize``) has c = 0.1: the policy acts in [−1, 1]
units, scaled to ±0.1 and clipped. Rewards and the end of an episode, after the move:

    reward="distance" (the released code):   r_t = −‖s_{t+1} − g‖
    reward="squared"  (the paper's text):    r_t = −‖s_{t+1} − g‖²
    done when |s_{t+1} − g| < 0.01 in both coordinates (the released code's box test)

The paper's 0-step return of −40.41 fits the released code's reward ("distance", the default);
a standing agent would score −100 · E‖g‖ ≈ −38.3.

Everything is vectorised: T tasks (goals), N trajectories each, stepped together for H steps.
An episode that is done stays where it is, with reward 0 and ``mask`` 0 from the next step on,
so arrays stay rectangular (T, N, H, ...) and every sum over time is a masked sum.
"""
import dataclasses

import numpy as np

from ..tasks.base import as_rng

REWARDS = ("distance", "squared")


@dataclasses.dataclass
class Trajectories:
    """T tasks × N trajectories × H steps, plain arrays.

    positions (T, N, H+1, 2)  s_0 .. s_H (the path; after an episode is done it stays put)
    actions   (T, N, H, 2)    u_t, the policy's samples (before scaling and clipping)
    rewards   (T, N, H)       r_t (0 after done)
    mask      (T, N, H)       1 where step t was taken, 0 after the episode ended
    goals     (T, 2)
    """
    positions: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    mask: np.ndarray
    goals: np.ndarray

    @property
    def obs(self):
        """The observation at which each action was taken, s_t: (T, N, H, 2)."""
        return self.positions[:, :, :-1]

    def returns(self):
        """The undiscounted return Σ_t r_t of each trajectory: (T, N)."""
        return self.rewards.sum(axis=-1)


class Navigation:
    """The 2-D navigation environment; see the module docstring for the dynamics and rewards."""

    obs_dim = 2
    action_dim = 2

    def __init__(self, horizon=100, reward="distance", action_scale=0.1, max_action=0.1,
                 goal_range=(-0.5, 0.5), done_tolerance=0.01):
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}; choose one of {REWARDS}")
        if not (isinstance(horizon, (int, np.integer)) and horizon >= 1):
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        for name, value in (("action_scale", action_scale), ("max_action", max_action)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        self.horizon, self.reward = int(horizon), reward
        self.action_scale, self.max_action = float(action_scale), float(max_action)
        self.goal_range, self.done_tolerance = tuple(map(float, goal_range)), float(done_tolerance)

    def describe(self):
        return {"horizon": self.horizon, "reward": self.reward, "action_scale": self.action_scale,
                "max_action": self.max_action, "goal_range": list(self.goal_range),
                "done_tolerance": self.done_tolerance}

    def sample_goals(self, num_goals, rng=None):
        """num_goals goals, U[low, high]² (the released code: U[−0.5, 0.5]²): (num_goals, 2)."""
        return as_rng(rng).uniform(*self.goal_range, size=(num_goals, 2))

    def step(self, positions, goals, u):
        """One move of every agent: positions (..., 2), goals broadcastable, u (..., 2) ->
        (new positions, rewards (...), done (...))."""
        a = np.clip(self.action_scale * u, -self.max_action, self.max_action)
        new = positions + a
        delta = new - goals
        squared = np.sum(delta * delta, axis=-1)
        reward = -np.sqrt(squared) if self.reward == "distance" else -squared
        done = np.all(np.abs(delta) < self.done_tolerance, axis=-1)
        return new, reward, done

    def rollout(self, policy, theta, goals, num_trajectories, rng=None, deterministic=False):
        """Run N = num_trajectories episodes per goal with policy π_θ, all at once.

        theta: (P,) shared by every task, or (T, P), one policy per task (e.g. adapted ones);
        goals (T, 2). ``deterministic``: act with the mean μ_θ(s) instead of sampling (for plots).
        Returns ``Trajectories`` of shape (T, N, H, ...).
        """
        rng = as_rng(rng)
        goals = np.asarray(goals, dtype=float)
        if goals.ndim != 2 or goals.shape[1] != 2 or len(goals) == 0:
            raise ValueError(f"goals must be (T, 2) with T >= 1, one 2-D goal per task, got shape {goals.shape}")
        if not np.isfinite(goals).all():
            raise ValueError("goals must be finite numbers (got NaN or inf)")
        if isinstance(num_trajectories, bool) or not isinstance(num_trajectories, (int, np.integer)) \
                or num_trajectories < 1:
            raise ValueError(f"num_trajectories must be an int >= 1, got {num_trajectories!r}")
        theta_rows = np.shape(theta)[:-1]
        if theta_rows not in ((), (len(goals),)):
            raise ValueError(f"theta must be (P,), shared by the tasks, or (T, P) with T = {len(goals)} goals, "
                             f"got shape {np.shape(theta)}")
        T, N, H = goals.shape[0], int(num_trajectories), self.horizon
        positions = np.zeros((T, N, H + 1, 2))
        actions = np.zeros((T, N, H, 2))
        rewards = np.zeros((T, N, H))
        mask = np.zeros((T, N, H))
        alive = np.ones((T, N), dtype=bool)
        g = goals[:, None, :]                                       # (T, 1, 2), broadcast over N
        for t in range(H):
            s = positions[:, :, t]
            u = policy.act(theta, s, rng, deterministic)            # (T, N, 2)
            new, r, done = self.step(s, g, u)
            # A finished episode neither moves nor earns: the rectangle is padded, not extended.
            positions[:, :, t + 1] = np.where(alive[..., None], new, s)
            actions[:, :, t] = u
            rewards[:, :, t] = np.where(alive, r, 0.0)
            mask[:, :, t] = alive
            alive &= ~done
        return Trajectories(positions, actions, rewards, mask, goals)
