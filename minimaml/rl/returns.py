"""Returns, advantages and the linear feature baseline, on plain arrays (none of it is differentiated).

Shapes: rewards, mask (T, N, H): T tasks, N trajectories, H steps; a step after the end of an
episode has reward 0 and mask 0 (see ``navigation.py``).

    reward-to-go            R_t = Σ_{k≥0} γ^k r_{t+k}
    linear baseline         b(s_t, t) = φ(s_t, t)ᵀ w,  w = argmin Σ (φᵀw − R_t)² + reg ‖w‖²   (per task)
                            φ(s, t) = [s, s², t/100, (t/100)², (t/100)³, 1]   (rllab's LinearFeatureBaseline)
    GAE (Schulman 2016)     δ_t = r_t + γ b_{t+1} − b_t (b = 0 after the end),  A_t = Σ_k (γλ)^k δ_{t+k}
                            λ = 1: A_t = R_t − b_t
    standardised            Â = (A − mean A) / (std A + 1e-8), over a task's valid steps (rllab's center_adv)
"""
import numpy as np

RIDGE = 1e-5   # rllab's reg_coeff


def discounted_cumsum(x, gamma):
    """Σ_{k≥0} γ^k x_{t+k} along the last axis (the reward-to-go R_t when x = r)."""
    out = np.zeros_like(x)
    running = np.zeros(x.shape[:-1])
    for t in range(x.shape[-1] - 1, -1, -1):
        running = x[..., t] + gamma * running
        out[..., t] = running
    return out


def features(obs):
    """φ(s_t, t) = [s, s², t/100, (t/100)², (t/100)³, 1] for obs (T, N, H, d) -> (T, N, H, 2d + 4).

    rllab's LinearFeatureBaseline, as the released code used it (time scaled by 100, positions
    clipped to ±10)."""
    s = np.clip(obs, -10, 10)
    t = np.broadcast_to((np.arange(obs.shape[-2]) / 100.0)[:, None], obs.shape[:-1] + (1,))
    return np.concatenate([s, s * s, t, t**2, t**3, np.ones_like(t)], axis=-1)


def fit_linear_baseline(obs, targets, mask, reg=RIDGE):
    """Per-task ridge regression of targets on φ over the valid steps: w (T, F).

    obs (T, N, H, d), targets and mask (T, N, H)."""
    phi = features(obs) * mask[..., None]                              # invalid steps drop out
    F = phi.shape[-1]
    phi = phi.reshape(phi.shape[0], -1, F)                             # (T, N·H, F)
    y = (targets * mask).reshape(targets.shape[0], -1, 1)
    A = np.swapaxes(phi, -1, -2) @ phi + reg * np.eye(F)               # ΦᵀΦ + reg·I, SPD
    return np.linalg.solve(A, np.swapaxes(phi, -1, -2) @ y)[..., 0]


def predict_linear_baseline(w, obs, mask):
    """b(s_t, t) = φᵀw on every valid step (0 elsewhere): (T, N, H)."""
    return np.einsum("tnhf,tf->tnh", features(obs), w) * mask


def cross_fitted_baseline(obs, targets, mask, folds=2):
    """A baseline for each trajectory fitted on the task's *other* trajectories (split into
    ``folds`` groups): b never depends on the trajectory it is used for, so a policy gradient
    Σ_t ∇log π_t (R_t − b_t) that uses it stays exactly unbiased."""
    N = obs.shape[1]
    if N < 2 * folds:
        raise ValueError(f"a {folds}-fold cross-fitted baseline needs at least {2 * folds} trajectories per "
                         f"task, got {N}")
    b = np.zeros_like(targets)
    fold = np.arange(N) % folds
    for k in range(folds):
        w = fit_linear_baseline(obs[:, fold != k], targets[:, fold != k], mask[:, fold != k])
        b[:, fold == k] = predict_linear_baseline(w, obs[:, fold == k], mask[:, fold == k])
    return b


def gae(rewards, values, mask, gamma, lam):
    """A_t = Σ_k (γλ)^k δ_{t+k} with δ_t = r_t + γ b_{t+1} − b_t; values (T, N, H), 0 after the end."""
    next_values = np.concatenate([values[..., 1:] * mask[..., 1:], np.zeros(values.shape[:-1] + (1,))], axis=-1)
    deltas = (rewards + gamma * next_values - values) * mask
    return discounted_cumsum(deltas, gamma * lam) * mask


def standardize(x, mask, eps=1e-8):
    """(x − mean) / (std + eps) per task over its valid steps (0 on invalid ones): (T, N, H)."""
    count = mask.sum(axis=(1, 2), keepdims=True)
    mean = (x * mask).sum(axis=(1, 2), keepdims=True) / count
    std = np.sqrt((((x - mean) * mask) ** 2).sum(axis=(1, 2), keepdims=True) / count)
    return (x - mean) / (std + eps) * mask


def inner_advantages(traj, gamma=0.99, lam=1.0):
    """The released code's advantages for the inner policy-gradient step, per task: the linear
    baseline fitted on the task's own trajectories (to R_t, γ-discounted), GAE(γ, λ), standardised.
    traj: ``Trajectories`` -> Â (T, N, H)."""
    R = discounted_cumsum(traj.rewards, gamma)
    b = predict_linear_baseline(fit_linear_baseline(traj.obs, R, traj.mask), traj.obs, traj.mask)
    return standardize(gae(traj.rewards, b, traj.mask, gamma, lam), traj.mask)
