"""Figures: the paper's Figure 2 for sinusoids (``figure2``), a test task of image classification
before and after adaptation (``classification_figure``), and the learning curve
(``learning_curve``). Plain matplotlib Figures (no pyplot state), saved as PNG when given a path."""

import os

import numpy as np

from ..tasks import Sinusoid


def adapted_predictions(net, theta, xs, ys, x, inner_lr, steps):
    """{s: net(θ_s, x)[:, 0]} for s in ``steps``, θ_s after s gradient steps on (xs, ys) (K, 1)."""
    from ..nn import mse
    return {s: out[:, 0] for s, out in adapted_outputs(net, theta, xs, ys, x, inner_lr, steps, mse).items()}


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
                 f"{_step_label(inner_lr)}", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return fig


def adapted_outputs(net, theta, xs, ys, x, inner_lr, steps, loss):
    """{s: net(θ_s, x)} for s in ``steps`` for one task, θ_s after s adaptation steps on (xs, ys):
    gradient descent with α = ``inner_lr``, or an algorithm's ``Adaptation`` rule."""
    from ..meta.inner import Adaptation, task_losses_for

    rule = inner_lr if isinstance(inner_lr, Adaptation) else Adaptation([float(inner_lr)])
    tl = task_losses_for(net, loss, rank=0 if rule.needs_dense(net) else xs.shape[0] * max(steps))
    start = params = tl.start(np.asarray(theta, dtype=np.float64))
    out = {}
    for s in range(max(steps) + 1):
        if s in steps:
            out[s] = tl.outputs(params, x[None])[0]
        if s < max(steps):
            params = rule.step(tl, s, params, tl.value_and_grad(params, xs[None], ys[None])[1], start)
    return out


def _step_label(inner_lr):
    """How a figure names the adaptation rule: α = 0.01, or the rule."""
    from ..meta.inner import Adaptation
    if isinstance(inner_lr, Adaptation):
        if inner_lr.is_plain(inner_lr.sizes[0]):
            return f"α = {inner_lr.sizes[0]:g}"
        return "learned steps" if not inner_lr.lam else f"proximal steps, λ = {inner_lr.lam:g}"
    return f"α = {inner_lr:g}"


def classification_figure(net, theta, task, inner_lr, steps=3, loss=None, path=None, title=""):
    """One test task of N-way K-shot image classification: its support images with their labels,
    then its query images with the labels the network predicts before adaptation and after
    ``steps`` gradient steps on the support set, framed green when right and red when wrong.
    ``task`` = (xs (N·K, 784), ys (N·K,), xq (N·Q, 784), yq (N·Q,))."""
    from matplotlib.figure import Figure

    from ..nn import softmax_cross_entropy

    xs, ys, xq, yq = task
    side = int(round(np.sqrt(xs.shape[-1])))
    preds = {s: out.argmax(-1) for s, out in adapted_outputs(
        net, theta, xs, ys, xq, inner_lr, (0, steps), loss or softmax_cross_entropy).items()}
    rows = [("support", xs, ys, None)] + [(f"{s} step{'s' * (s != 1)}", xq, yq, preds[s]) for s in (0, steps)]
    cols = max(len(xs), len(xq))
    fig = Figure(figsize=(1.0 * cols + 1.2, 1.25 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, (name, images, labels, pred) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.axis("off")
                continue
            ax.imshow(images[c].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
            if pred is None:
                ax.set_title(f"label {labels[c]}", fontsize=8)
            else:
                right = pred[c] == labels[c]
                ax.set_title(f"pred {pred[c]} ({labels[c]})", fontsize=8, color="tab:green" if right else "tab:red")
                for spine in ax.spines.values():
                    spine.set_color("tab:green" if right else "tab:red")
                    spine.set_linewidth(2.5)
        axes[r][0].set_ylabel(name if pred is None else
                              f"query, {name}\n{np.mean(pred == labels):.0%} right", fontsize=9)
    fig.suptitle(title or f"a test task: support, then query predictions before and after {steps} steps\n"
                 f"({_step_label(inner_lr)}); in brackets the true label", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return fig


def learning_curve(history, val_history, path=None, metric="validation accuracy (%)", title=""):
    """The meta-loss and the validation metric against the meta-iteration, side by side."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6))
    ax_loss, ax_val = fig.subplots(1, 2)
    history, val_history = np.asarray(history).reshape(-1, 2), np.asarray(val_history).reshape(-1, 2)
    ax_loss.plot(history[:, 0], history[:, 1], color="tab:blue")
    ax_loss.set_xlabel("meta-iteration")
    ax_loss.set_ylabel("meta-loss (mean over a log period)")
    ax_loss.set_yscale("log")
    ax_val.plot(val_history[:, 0], val_history[:, 1], marker=".", color="tab:green")
    ax_val.set_xlabel("meta-iteration")
    ax_val.set_ylabel(metric)
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return fig


def _save(fig, path):
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=110)
