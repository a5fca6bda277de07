"""The paper's Figure 2, for one test sinusoid: the true curve, the K support points, and the
network's prediction before fine-tuning and after 1 and 10 gradient steps on those points,
for MAML (left) and the pretrained baseline (right)."""

import os

import numpy as np

from ..tasks import Sinusoid


def adapted_predictions(net, theta, xs, ys, x, inner_lr, steps):
    """{s: net(θ_s, x)} for s in ``steps``, θ_s after s gradient steps on (xs, ys) (K, 1)."""
    from ..fastpath import mlp_loss_and_grad

    theta = np.asarray(theta, dtype=np.float64)[None]           # (1, P): a batch of one task
    out = {}
    for s in range(max(steps) + 1):
        if s in steps:
            out[s] = net.net(theta[0], x)[:, 0]
        if s < max(steps):
            theta = theta - inner_lr * mlp_loss_and_grad(net, theta, xs[None], ys[None])[1]
    return out


def figure2(models, inner_lr, k=10, seed=4, steps=(0, 1, 10), path=None, amplitude=None, phase=None):
    """Draw the figure; ``models`` is {panel title: (net, θ)}. Saves a PNG if ``path`` is given
    and returns the matplotlib Figure. The task is drawn from ``seed`` (or given by
    ``amplitude``/``phase``); its K support points are x ~ U[−5, 5]."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    family = Sinusoid()
    rng = np.random.default_rng([int(seed), 3])
    params = {"amplitude": np.array([rng.uniform(*family.amp_range) if amplitude is None else amplitude]),
              "phase": np.array([rng.uniform(*family.phase_range) if phase is None else phase])}
    xs = rng.uniform(*family.x_range, size=(k, 1))
    ys = Sinusoid.function(params, xs[None])[0]
    grid = np.linspace(-5, 5, 200)[:, None]
    truth = Sinusoid.function(params, grid)[0, :, 0]

    fig = Figure(figsize=(5.2 * len(models), 4))
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)
    styles = {0: dict(color="tab:green", ls=":", label="pre-update"),
              1: dict(color="tab:blue", ls="--", label="1 grad step"),
              10: dict(color="tab:purple", ls="-.", label="10 grad steps")}
    shown = []
    for ax, (title, (net, theta)) in zip(axes[0], models.items()):
        preds = adapted_predictions(net, theta, xs, ys, grid, inner_lr, steps)
        ax.plot(grid[:, 0], truth, color="tab:red", lw=2, label="ground truth")
        for s in steps:
            style = styles.get(s, dict(ls="--", label=f"{s} grad steps"))
            ax.plot(grid[:, 0], np.clip(preds[s], -50, 50), lw=1.6, **style)
            shown.append(np.nan_to_num(np.clip(preds[s], -50, 50)))
        ax.scatter(xs[:, 0], ys[:, 0], marker="^", s=60, color="k", zorder=5, label=f"{k} support points")
        ax.set_title(f"{title}, K={k}")
        ax.set_xlim(-5, 5)
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
    # Show the truth with room for the predictions, but do not let a wild one squash the plot.
    reach = max(np.abs(p).max() for p in shown)
    top = np.abs(truth).max()
    ylim = min(max(1.3 * top + 0.5, reach), 2.5 * top + 1)
    axes[0][0].set_ylim(-ylim, ylim)
    axes[0][0].set_ylabel("y")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"A sin(x − φ), A = {params['amplitude'][0]:.2f}, φ = {params['phase'][0]:.2f}, "
                 f"α = {inner_lr:g}", fontsize=10)
    fig.tight_layout()
    if path is not None:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
