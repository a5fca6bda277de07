"""Few-shot evaluation: fine-tune on the support set of unseen tasks, measure the query set.

Every problem (``problems.py``) has a fixed, seeded protocol, so two runs print the same numbers.
Classification (Omniglot): 600 test tasks of characters never seen in training, fine-tuned with
α for 0, 1, 3, 5 and 10 steps; the metric is the query accuracy in %, mean ± 95% confidence
interval over tasks and median. Regression (sinusoids):

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

from ..meta.checks import as_data
from ..meta.inner import Adaptation, task_losses_for
from ..nn.losses import accuracy, is_classification, mse
from ..tasks import Sinusoid
from .problems import Protocol, SinusoidProblem  # noqa: F401  (Protocol: part of this module's API)

DIVERGENCE_FACTOR = 10.0


def protocol_tasks(protocol):
    """The sinusoid protocol's fixed test set: xs, ys (T, K, 1), xq, yq (T, N, 1), and params."""
    return SinusoidProblem.test_set(Sinusoid(), protocol)


def finetune_curves(net, theta, xs, ys, xq, yq, inner_lr, max_steps, backtrack=False, loss=mse,
                    chunk=100):
    """The query metric of every task after 0..max_steps steps of gradient descent on its support
    set: θ_{s+1} = θ_s − α ∇L_support(θ_s) from θ_0 = θ (P,), or the rule of an ``Adaptation``
    (``inner_lr``: a number α or an Adaptation, e.g. Meta-SGD's per-parameter step, iMAML's
    proximal steps). Returns (T, max_steps + 1) float64:
    the query loss (regression; diverging tasks give inf/nan entries, no warnings: they are
    counted, not hidden), or the query accuracy in % (``softmax_cross_entropy``).

    Tasks are fine-tuned ``chunk`` at a time (memory), by the fast route when it covers the model.
    ``backtrack=True`` is a safeguard, not the paper's protocol: a backtracking line search per
    task. If a step would raise the task's support loss, that task's step size is halved
    (α_t ← α_t / 2, and it stays halved) and the step retried, so the support loss never
    increases and no task can diverge; tasks whose steps all decrease it are fine-tuned exactly
    as without it.
    """
    T = xs.shape[0]
    theta = np.asarray(theta, dtype=np.float64)
    rule = inner_lr if isinstance(inner_lr, Adaptation) else Adaptation([float(inner_lr)])
    xs, ys, xq, yq = as_data(theta, loss, xs, ys, xq, yq)
    tl = task_losses_for(net, loss, rank=0 if rule.needs_dense(net) else xs.shape[1] * max_steps)
    curves = np.empty((T, max_steps + 1))
    with np.errstate(all="ignore"):
        for lo in range(0, T, chunk):
            c = slice(lo, min(T, lo + chunk))
            curves[c] = _finetune_chunk(tl, theta, xs[c], ys[c], xq[c], yq[c], rule, max_steps, backtrack, loss)
    return curves


def _finetune_chunk(tl, theta, xs, ys, xq, yq, rule, max_steps, backtrack, loss):
    def measure(params):
        out = tl.outputs(params, xq)
        return 100.0 * accuracy(out, yq) if is_classification(loss) else loss(out, yq)

    def propose(k):
        return rule.step(tl, k, params, grads, start, factors)

    start = params = tl.start(theta)
    curves = [measure(params)]
    support, grads, _ = tl.value_and_grad(params, xs, ys)
    factors = np.ones(xs.shape[0])                        # backtracking halves a task's step
    for k in range(max_steps):
        proposal = propose(k)
        new_support, new_grads, _ = tl.value_and_grad(proposal, xs, ys)
        for _ in range(30 if backtrack else 0):
            worse = ~(new_support <= support)              # ~(<=) also catches nan
            if not worse.any():
                break
            factors[worse] /= 2
            proposal = propose(k)
            new_support, new_grads, _ = tl.value_and_grad(proposal, xs, ys)
        else:
            if backtrack:   # still no decrease after 30 halvings (a stationary point): stay
                factors[~(new_support <= support)] = 0.0
                proposal = propose(k)
                new_support, new_grads, _ = tl.value_and_grad(proposal, xs, ys)
        params, support, grads = proposal, new_support, new_grads
        curves.append(measure(params))
    return np.stack(curves, axis=1)


@dataclass
class StepStats:
    steps: int
    mean: float
    ci95: float
    median: float
    diverged: int
    num_tasks: int


def summarize(curves, steps, yq=None):
    """Per requested step count: mean ± 95% CI over tasks, median and the diverged count
    (``yq`` (T, Q, 1): the regression query targets, for ``diverged_mask``; None for accuracies,
    which cannot diverge)."""
    n = curves.shape[0]
    blown = diverged_mask(curves, yq) if yq is not None else np.zeros(curves.shape, dtype=bool)
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


def evaluate(net, theta, protocol=None, inner_lr=0.01, return_curves=False, backtrack=False,
             problem=SinusoidProblem, family=None):
    """Evaluate one parameter vector on the protocol's test tasks of ``problem``: a list of
    ``StepStats`` (and the (T, max_steps + 1) per-task curves if ``return_curves``)."""
    from .train import one_blas_thread

    protocol = protocol or Protocol()
    alpha = protocol.inner_lr if protocol.inner_lr is not None else inner_lr
    family = family if family is not None else Sinusoid()
    xs, ys, xq, yq, _ = problem.test_set(family, protocol)
    with one_blas_thread():
        curves = finetune_curves(net, theta, xs, ys, xq, yq, alpha, max(protocol.steps), backtrack, problem.loss)
    stats = summarize(curves, protocol.steps, None if problem.classification else yq)
    return (stats, curves) if return_curves else stats


def diverged_mask(curves, yq):
    """(T, S+1) bool: task t counts as diverged after s steps: its query MSE is non-finite, or more
    than DIVERGENCE_FACTOR × max(MSE before fine-tuning, MSE of predicting 0 = mean yq²)."""
    scale = np.maximum(curves[:, :1], np.mean(np.asarray(yq) ** 2, axis=(1, 2))[:, None])
    with np.errstate(all="ignore"):
        return ~np.isfinite(curves) | (curves > DIVERGENCE_FACTOR * scale)


def format_table(results, metric="query MSE"):
    """``results``: {model name: [StepStats]} -> an aligned text table of ``metric``."""
    def num(x):  # blown-up means are shown, compactly: hiding them would hide the divergence
        return f"{x:.3f}" if abs(x) < 1e4 else f"{x:.1e}"

    lines = [f"{metric}:", f"{'model':<11} {'steps':>5}  {'mean ± 95% CI':>19}  {'median':>8}  {'diverged':>9}"]
    for name, stats in results.items():
        for st in stats:
            mean = f"{num(st.mean)} ± {num(st.ci95)}" if math.isfinite(st.mean) else "inf (overflow)"
            lines.append(f"{name:<11} {st.steps:>5}  {mean:>19}  {num(st.median):>8}  "
                         f"{st.diverged:>4}/{st.num_tasks:<4}")
    return "\n".join(lines)


def json_rows(results):
    """{model: [StepStats]} -> the rows of ``eval --json``: {"model", "steps", "mean", "ci95",
    "median", "diverged", "tasks"} (accuracy in % for classification, MSE for regression)."""
    return [{"model": name, "steps": s.steps, "mean": s.mean, "ci95": s.ci95, "median": s.median,
             "diverged": s.diverged, "tasks": s.num_tasks} for name, stats in results.items() for s in stats]


def sharpness(net, theta, xs, ys, iterations=100, exact=False, seed=0, loss=mse):
    """The top eigenvalue of each task's support-loss Hessian H_t at θ: (T,) float64.

    Gradient descent with step α on task t is stable near θ only if λ_max(H_t) < 2/α (the error
    along the top eigenvector is multiplied by 1 − αλ each step). By default: power iteration
    v ← H_t v / ‖H_t v‖ for all tasks at once, with exact Hessian-vector products
    (``minimaml.fastpath.mlp_hvp``), returning the Rayleigh quotient vᵀH_t v. Power iteration finds
    the eigenvalue of largest *magnitude*: that is λ_max when the Hessian's most negative
    eigenvalue is smaller in size (as for these trained networks), otherwise a negative number;
    a few digits in ~100 iterations. ``exact=True`` forms each (P, P) Hessian (``mlp_hessian``)
    and takes its largest eigenvalue: exact but O(P³) per task.
    """
    from ..fastpath import mlp_hessian, mlp_hvp

    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
    theta = np.asarray(theta, dtype=np.float64)
    if exact:
        return np.array([np.linalg.eigvalsh(mlp_hessian(net, theta, xs[t], ys[t], loss=loss))[-1]
                         for t in range(xs.shape[0])])
    thetas = np.broadcast_to(theta, (xs.shape[0], theta.shape[0])).copy()
    v = np.random.default_rng(seed).standard_normal(thetas.shape)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(iterations):
        hv = mlp_hvp(net, thetas, xs, ys, v, loss=loss)
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
    (written by ``minimaml train``) if its configuration is the MAML run's (the same network,
    data, budget and seed; only the fields a resumed run may change can differ), else trained now
    that way and cached there. Returns θ (P,)."""
    from .checkpoint import read_checkpoint
    from .train import RESUMABLE_CHANGES, TrainConfig, pretrained_config, train

    path = pretrained_path(checkpoint)
    want = pretrained_config(TrainConfig.from_dict(config))
    if os.path.exists(path):
        ckpt = read_checkpoint(path)
        got = TrainConfig.from_dict(ckpt["config"]).to_dict()
        differ = sorted(k for k, v in want.to_dict().items() if k not in RESUMABLE_CHANGES and got[k] != v)
        if not differ and ckpt["iteration"] == want.iterations:
            return ckpt["theta"]
        log(f"ignoring {path}: it is not the pretrained baseline of this run (it differs in "
            f"{differ or ['iteration']})")
    log(f"training the pretrained baseline ({want.iterations} iterations) -> {path}")
    try:
        return train(want, checkpoint=path, progress=progress).theta
    except OSError:  # read-only folder: train, but do not cache
        return train(want, checkpoint=None, progress=progress).theta
