"""Few-shot evaluation: fine-tune on K support points of unseen tasks, measure the query MSE.

Protocol (fixed and seeded, so two runs print the same numbers):

* ``num_tasks`` test sinusoids (default 1000) drawn from the training distribution
  (A ~ U[0.1, 5], φ ~ U[0, π]) with their own seed, disjoint from the training stream;
* each task shows K support points x ~ U[−5, 5] (default K = 10; the paper's Table 2 is K = 5);
* fine-tuning is plain gradient descent on the support MSE, θ_{k+1} = θ_k − α ∇L_support(θ_k),
  with α the model's training ``inner_lr`` unless given;
* the query MSE is measured on ``num_query`` = 100 evenly spaced points of [−5, 5] (a low-noise
  estimate of the MSE over x ~ U[−5, 5]) after 0, 1, 5 and 10 steps;
* per step: mean over tasks ± 95% confidence interval (1.96 σ/√n), median, and the number of
  *diverged* tasks: query MSE non-finite, or more than 10× both its value before fine-tuning and
  the MSE of predicting 0 (mean of y² over the query points). The second floor keeps a task that
  was already fitted, whose tiny error wobbles up and back down, from counting as diverged.

The paper's own protocol (Finn et al. 2017, Table 2; their code ``main.py``): 600 tasks, K = 5,
``--tasks 600 --k 5``.

Why the median and the divergence count: gradient descent with step α is unstable on a task
whose support-loss Hessian has an eigenvalue λ > 2/α (the error along that eigenvector is
multiplied by |1 − αλ| > 1 each step). MAML trained with one step has no reason to keep λ
below 2/α, and it does not: it meta-learns a θ at the edge of stability (median λ_max·α ≈ 2.5
on 5-shot test tasks). Most tasks stabilise after the first step, but a few (mostly
high-amplitude ones; at α = 0.01, 0 to 1 in 250 tasks in our runs, depending on seed and init;
none seen at the released code's α = 0.001) blow up after 5-10 steps while the rest improve; the
mean alone would hide that. ``sharpness`` measures λ_max per
task. ``backtrack=True`` (``minimaml eval --backtrack``) is a safeguard outside the paper's
protocol: a per-task backtracking line search on the support loss, so no task can diverge.
"""

import math
import os
from dataclasses import dataclass

import numpy as np

from ..tasks import Sinusoid

DIVERGENCE_FACTOR = 10.0


@dataclass(frozen=True)
class Protocol:
    num_tasks: int = 1000
    k: int = 10
    num_query: int = 100
    steps: tuple = (0, 1, 5, 10)
    inner_lr: float = None          # None: the model's training inner_lr
    seed: int = 2017

    def __post_init__(self):
        for name in ("num_tasks", "k", "num_query"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not self.steps or any(int(s) != s or s < 0 for s in self.steps):
            raise ValueError(f"steps must be a non-empty list of ints >= 0, got {self.steps!r}")
        if self.inner_lr is not None and not (math.isfinite(self.inner_lr) and self.inner_lr > 0):
            raise ValueError(f"inner_lr must be > 0, got {self.inner_lr!r}")

    def describe(self, inner_lr):
        return (f"{self.num_tasks} test sinusoids (seed {self.seed}), K={self.k} support points "
                f"x~U[-5,5], query MSE on {self.num_query} evenly spaced x in [-5,5]; fine-tuning: "
                f"gradient descent on the support MSE, alpha={inner_lr:g}; diverged: query MSE "
                f"non-finite or > {DIVERGENCE_FACTOR:g}x both its value before fine-tuning and the MSE of predicting 0")


def protocol_tasks(protocol):
    """The protocol's fixed test set: xs, ys (T, K, 1), xq, yq (T, N, 1) float64, and params.

    Drawn here, in a fixed order (amplitudes, phases, support x), rather than by
    ``Sinusoid.sample``, so the test set stays the same if the training sampler changes."""
    family = Sinusoid()
    rng = np.random.default_rng([int(protocol.seed), 2])
    params = {"amplitude": rng.uniform(*family.amp_range, size=protocol.num_tasks),
              "phase": rng.uniform(*family.phase_range, size=protocol.num_tasks)}
    xs = rng.uniform(*family.x_range, size=(protocol.num_tasks, protocol.k, 1))
    grid = np.linspace(*family.x_range, protocol.num_query)[:, None]
    yq = Sinusoid.function(params, grid)
    return xs, Sinusoid.function(params, xs), np.broadcast_to(grid, yq.shape), yq, params


def finetune_curves(net, theta, xs, ys, xq, yq, inner_lr, max_steps, backtrack=False):
    """Query MSE of every task after 0..max_steps steps of gradient descent on its support set.

    θ (P,) shared start; returns (T, max_steps + 1) float64. Diverging tasks give inf/nan
    entries (no warnings): they are counted, not hidden.

    ``backtrack=True`` is a safeguard, not the paper's protocol: a backtracking line search per
    task. If a step would raise the task's support loss, that task's step size is halved
    (α_t ← α_t / 2, and it stays halved) and the step retried, so the support loss never
    increases and no task can diverge; tasks whose steps all decrease it are fine-tuned exactly
    as without it.
    """
    from ..fastpath import mlp_loss_and_grad
    from ..meta.maml import query_loss

    theta = np.asarray(theta, dtype=np.float64)
    thetas = np.broadcast_to(theta, (xs.shape[0], theta.shape[0])).copy()
    alphas = np.full((xs.shape[0], 1), float(inner_lr))
    curves = np.empty((xs.shape[0], max_steps + 1))
    with np.errstate(all="ignore"):
        curves[:, 0] = query_loss(net, thetas, xq, yq)
        support, grads = mlp_loss_and_grad(net, thetas, xs, ys)
        for s in range(1, max_steps + 1):
            proposal = thetas - alphas * grads
            new_support, new_grads = mlp_loss_and_grad(net, proposal, xs, ys)
            for _ in range(30 if backtrack else 0):
                worse = np.flatnonzero(~(new_support <= support))    # ~(<=) also catches nan
                if worse.size == 0:
                    break
                alphas[worse] /= 2
                proposal[worse] = thetas[worse] - alphas[worse] * grads[worse]
                new_support[worse], new_grads[worse] = mlp_loss_and_grad(net, proposal[worse], xs[worse], ys[worse])
            else:
                if backtrack:   # still no decrease after 30 halvings (a stationary point): stay
                    worse = ~(new_support <= support)
                    proposal[worse], new_support[worse], new_grads[worse] = thetas[worse], support[worse], grads[worse]
            thetas, support, grads = proposal, new_support, new_grads
            curves[:, s] = query_loss(net, thetas, xq, yq)
    return curves


@dataclass
class StepStats:
    steps: int
    mean: float
    ci95: float
    median: float
    diverged: int
    num_tasks: int


def summarize(curves, steps, yq):
    """Per requested step count: mean ± 95% CI over tasks, median and the diverged count
    (``yq`` (T, Q, 1): the query targets, for ``diverged_mask``)."""
    n = curves.shape[0]
    blown = diverged_mask(curves, yq)
    with np.errstate(all="ignore"):
        out = []
        for s in steps:
            col = curves[:, s]
            finite = bool(np.isfinite(col).all())
            mean = float(col.mean()) if finite else math.inf
            ci = float(1.96 * col.std(ddof=1) / math.sqrt(n)) if finite and n > 1 else math.nan
            median = float(np.median(np.where(np.isfinite(col), col, np.inf)))
            out.append(StepStats(int(s), mean, ci, median, int(blown[:, s].sum()), n))
    return out


def evaluate(net, theta, protocol=None, inner_lr=0.01, return_curves=False, backtrack=False):
    """Evaluate one parameter vector on the protocol's test tasks: a list of ``StepStats``
    (and the (T, max_steps + 1) per-task query-MSE curves if ``return_curves``)."""
    protocol = protocol or Protocol()
    alpha = protocol.inner_lr if protocol.inner_lr is not None else inner_lr
    xs, ys, xq, yq, _ = protocol_tasks(protocol)
    curves = finetune_curves(net, theta, xs, ys, xq, yq, alpha, max(protocol.steps), backtrack)
    stats = summarize(curves, protocol.steps, yq)
    return (stats, curves) if return_curves else stats


def diverged_mask(curves, yq):
    """(T, S+1) bool: task t counts as diverged after s steps: its query MSE is non-finite, or more
    than DIVERGENCE_FACTOR × max(MSE before fine-tuning, MSE of predicting 0 = mean yq²)."""
    scale = np.maximum(curves[:, :1], np.mean(np.asarray(yq) ** 2, axis=(1, 2))[:, None])
    with np.errstate(all="ignore"):
        return ~np.isfinite(curves) | (curves > DIVERGENCE_FACTOR * scale)


def format_table(results):
    """``results``: {model name: [StepStats]} -> an aligned text table."""
    def num(x):  # blown-up means are shown, compactly: hiding them would hide the divergence
        return f"{x:.3f}" if abs(x) < 1e4 else f"{x:.1e}"

    lines = [f"{'model':<11} {'steps':>5}  {'mean ± 95% CI':>19}  {'median':>8}  {'diverged':>9}"]
    for name, stats in results.items():
        for st in stats:
            mean = f"{num(st.mean)} ± {num(st.ci95)}" if math.isfinite(st.mean) else "inf (overflow)"
            lines.append(f"{name:<11} {st.steps:>5}  {mean:>19}  {num(st.median):>8}  "
                         f"{st.diverged:>4}/{st.num_tasks:<4}")
    return "\n".join(lines)


def sharpness(net, theta, xs, ys, iterations=100, exact=False, seed=0):
    """λ_max of each task's support-loss Hessian H_t at θ: (T,) float64.

    Gradient descent with step α on task t is stable near θ only if λ_max(H_t) < 2/α (the error
    along the top eigenvector is multiplied by 1 − αλ each step). By default: power iteration
    v ← H_t v / ‖H_t v‖ for all tasks at once, with exact Hessian-vector products
    (``minimaml.fastpath.mlp_hvp``), returning the Rayleigh quotient vᵀH_t v (the eigenvalue of
    largest magnitude, converged to a few digits in ~100 iterations). ``exact=True`` forms each
    (P, P) Hessian (``mlp_hessian``) and takes its top eigenvalue: exact but O(P³) per task.
    """
    from ..fastpath import mlp_hessian, mlp_hvp

    theta = np.asarray(theta, dtype=np.float64)
    if exact:
        return np.array([np.linalg.eigvalsh(mlp_hessian(net, theta, xs[t], ys[t]))[-1]
                         for t in range(xs.shape[0])])
    thetas = np.broadcast_to(theta, (xs.shape[0], theta.shape[0])).copy()
    v = np.random.default_rng(seed).standard_normal(thetas.shape)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(iterations):
        hv = mlp_hvp(net, thetas, xs, ys, v)
        lam = np.einsum("tp,tp->t", v, hv)
        v = hv / np.linalg.norm(hv, axis=1, keepdims=True)
    return lam


# ---------------------------------------------------------------------------------------------
# The pretrained baseline next to a checkpoint
# ---------------------------------------------------------------------------------------------

PRETRAINED_NAME = "pretrained.npz"


def pretrained_path(checkpoint):
    return os.path.join(os.path.dirname(os.path.abspath(os.fspath(checkpoint))), PRETRAINED_NAME)


def load_or_train_pretrained(checkpoint, config, progress=True, log=print):
    """The "pretrained" baseline for a MAML checkpoint: ``pretrained.npz`` in the same folder
    (written by ``minimaml train``), or trained now with the same data, budget and seed as the
    MAML run and cached there. Returns θ (P,)."""
    from .checkpoint import read_checkpoint
    from .train import TrainConfig, pretrained_config, train

    path = pretrained_path(checkpoint)
    want = pretrained_config(TrainConfig.from_dict(config))
    if os.path.exists(path):
        ckpt = read_checkpoint(path)
        got = TrainConfig.from_dict(ckpt["config"])
        if got.model == "pretrained" and got.sizes == want.sizes and got.activation == want.activation:
            return ckpt["theta"]
        log(f"ignoring {path}: it is not a pretrained baseline for this network")
    log(f"training the pretrained baseline ({want.iterations} iterations) -> {path}")
    try:
        return train(want, checkpoint=path, progress=progress).theta
    except OSError:  # read-only folder: train, but do not cache
        return train(want, checkpoint=None, progress=progress).theta
