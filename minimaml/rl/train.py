"""Meta-training on 2-D navigation, its checkpoints, the test protocol and the figure; the CLI's entry points.

    θ ← policy.init(seed)
    repeat for ``iterations`` meta-updates:
        T goals ~ U[−0.5, 0.5]², one meta-iteration (maml_rl.meta_step): N trajectories per goal,
        the inner step θ'_t, N post-update trajectories, the meta-gradient of the post-update return
        θ ← θ + β Adam(∇J_meta)

The pretrained baseline (``model="pretrained"``) is the same loop on the return at θ itself, over
all goals jointly (maml_rl.joint_step): one policy for every task, fine-tuned at test like MAML.

A checkpoint (one ``.npz``, written atomically with ``files.write_atomic``) holds θ, the policy's
and the environment's descriptions, the config, Adam's state and the goal/trajectory sampler's
RNG state, so ``resume`` continues bit for bit. Its own format tag, ``minimaml-rl-checkpoint``:
an RL policy is not an ``MLP`` with a loss (run/checkpoint.py's format).

The test protocol (the released code's ``test_maml_point.py``): fixed test goals (``np.random.RandomState(seed)``,
seed 2017 by default; seed 1 gives the released script's 40), each policy adapted by ``steps`` inner steps
(α, then α/2), 40 fresh trajectories per step; the return after k steps is their mean return,
reported as mean ± 95% CI over goals (1.96 σ/√n), for MAML, the pretrained policy and the
random initialisation θ_0 that MAML started from.
"""
import dataclasses
import json
import os
import time

import numpy as np

from ..files import check_writable, write_atomic
from ..meta.mamlpp import cosine_lr
from ..optim import Adam
from ..run.evaluate import json_rows, summarize
from ..run.train import ConfigError, TrainingDiverged, is_int, is_number, one_blas_thread, progress_bar
from . import maml_rl
from .estimators import ESTIMATORS
from .navigation import REWARDS, Navigation
from .policy import GaussianMLPPolicy

FORMAT, VERSION = "minimaml-rl-checkpoint", 1
DEFAULT_OUT = os.path.join("runs", "navigation")
MODELS = ("maml", "pretrained")
RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "log_every", "max_seconds")
# Table 4 of the paper: MAML's average return after 0, 1, 2, 3 steps.
PAPER_TABLE4 = {0: -40.41, 1: -11.68, 2: -3.33, 3: -3.23}


@dataclasses.dataclass
class NavConfig:
    """One run on 2-D navigation. The defaults are the released code's point-mass setup
    (``maml_trpo_point.py``) except where said: the paper's meta-batch of 20 tasks (the script: 40)
    and the outer optimiser, Adam on the exact meta-gradient instead of TRPO."""
    model: str = "maml"             # "maml" | "pretrained"
    estimator: str = "dice"         # the meta-gradient: "dice" (unbiased) | "biased" (samples' score dropped)
    reward: str = "distance"        # "distance" −‖s − g‖ (the released code) | "squared" (the paper's text)
    horizon: int = 100
    action_scale: float = 0.1       # a = clip(0.1 u, ±0.1): rllab's normalize (the policy acts in [−1, 1] units)
    sizes: list = dataclasses.field(default_factory=lambda: [2, 100, 100, 2])
    init_std: float = 1.0
    inner_lr: float = 0.5           # α (the released code; the paper's text says 0.1)
    trajectories: int = 20          # N per task, before and after the inner step
    meta_batch: int = 20            # T tasks per meta-update
    gamma: float = 0.99             # γ and GAE λ of the inner step's advantages
    gae_lambda: float = 1.0
    meta_lr: float = 1e-3           # β, Adam's step size
    cosine: bool = False            # anneal β to 0 over the run (cosine), so the last iterations settle
    iterations: int = 3000
    seed: int = 0                   # θ's init, and the goal and trajectory stream
    dtype: str = "float32"          # θ and the meta-gradient (float32: ~1.5x faster; rollouts are float64)
    checkpoint_every: int = 50
    log_every: int = 10
    max_seconds: float = 0.0        # stop after this much CPU time of the process (0: no limit)

    def __post_init__(self):
        def need(ok, what):
            if not ok:
                raise ConfigError(f"invalid navigation config: {what}")

        need(self.model in MODELS, f"unknown model {self.model!r}; choose one of {MODELS}")
        need(self.estimator in ESTIMATORS, f"unknown estimator {self.estimator!r}; choose one of {ESTIMATORS}")
        need(self.reward in REWARDS, f"unknown reward {self.reward!r}; choose one of {REWARDS}")
        for name, low in (("horizon", 1), ("trajectories", 4), ("meta_batch", 1), ("iterations", 0), ("seed", 0),
                          ("checkpoint_every", 1), ("log_every", 1)):
            need(is_int(getattr(self, name), low), f"{name} must be an int >= {low}, got {getattr(self, name)!r}")
        for name in ("action_scale", "init_std", "inner_lr", "meta_lr", "gamma"):
            need(is_number(getattr(self, name)), f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        need(is_number(self.gae_lambda, strict=False) and self.gae_lambda <= 1 and self.gamma <= 1,
             f"gamma and gae_lambda must lie in (0, 1] and [0, 1], got {self.gamma!r} and {self.gae_lambda!r}")
        need(isinstance(self.cosine, bool), f"cosine must be True or False, got {self.cosine!r}")
        need(self.dtype in ("float32", "float64"), f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        need(is_number(self.max_seconds, strict=False), f"max_seconds must be a number >= 0, got {self.max_seconds!r}")
        self.sizes = [int(s) for s in self.sizes]
        need(len(self.sizes) >= 2 and self.sizes[0] == 2 and self.sizes[-1] == 2 and min(self.sizes) >= 1,
             f"sizes must run from 2 (the position) to 2 (the velocity), got {self.sizes!r}")

    def make_env(self):
        return Navigation(self.horizon, self.reward, self.action_scale)

    def make_policy(self):
        return GaussianMLPPolicy(self.sizes, "relu", self.init_std)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown navigation-config keys {unknown}; known: {sorted(names)}")
        return cls(**d)


@dataclasses.dataclass
class NavResult:
    policy: GaussianMLPPolicy
    theta: np.ndarray               # (P,)
    config: NavConfig
    iteration: int
    history: np.ndarray             # (L, 4) rows (iteration, loss, return before, return after the inner step)
    seconds: float                  # this call's wall time
    checkpoint: str = None


# ------------------------------------------------------------------------------------------ checkpoints
def save_navigation_checkpoint(path, policy, theta, config, optimizer_state, iteration, history, rng_state):
    """Write the run's state atomically to ``path`` (see the module docstring)."""
    arrays = {"format": np.array(FORMAT), "version": np.array(VERSION), "theta": np.asarray(theta),
              "policy": np.array(json.dumps(policy.describe())), "config": np.array(json.dumps(config.to_dict())),
              "iteration": np.array(int(iteration)), "history": np.asarray(history, dtype=float).reshape(-1, 4),
              "rng_state": np.array(json.dumps(rng_state))}
    scalars = {k: v for k, v in optimizer_state.items() if not isinstance(v, np.ndarray)}
    arrays["optimizer"] = np.array(json.dumps(scalars))
    arrays.update({f"optimizer/{k}": v for k, v in optimizer_state.items() if isinstance(v, np.ndarray)})
    write_atomic(path, lambda f: np.savez(f, **arrays), remove_stale=True)


def is_navigation_checkpoint(path):
    """Whether ``path`` (a checkpoint, or a run folder holding checkpoint.npz) is an RL checkpoint."""
    path = _resolve(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return "format" in data.files and str(data["format"]) == FORMAT
    except (OSError, ValueError):
        return False


def read_navigation_checkpoint(path):
    """The checkpoint's contents: {"policy", "theta", "config" (NavConfig), "iteration", "history",
    "rng_state", "optimizer_state"}. ``path`` may be the run folder."""
    from ..run.checkpoint import CheckpointError

    path = _resolve(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if not is_navigation_checkpoint(path):
        raise CheckpointError(f"{path!r} is not a minimaml navigation checkpoint")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    optimizer = json.loads(str(arrays["optimizer"]))
    optimizer.update({k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("optimizer/")})
    policy = GaussianMLPPolicy.from_description(json.loads(str(arrays["policy"])))
    theta = arrays["theta"]
    if theta.shape != (policy.num_params,) or not np.isfinite(theta).all():
        raise CheckpointError(f"checkpoint {path!r}: theta must be {policy.num_params} finite numbers, got shape "
                              f"{theta.shape}")
    return {"policy": policy, "theta": theta, "config": NavConfig.from_dict(json.loads(str(arrays["config"]))),
            "iteration": int(arrays["iteration"]), "history": arrays["history"],
            "rng_state": json.loads(str(arrays["rng_state"])), "optimizer_state": optimizer}


def _resolve(path):
    inside = os.path.join(path, "checkpoint.npz")
    return inside if os.path.isdir(path) and os.path.exists(inside) else os.fspath(path)


# ------------------------------------------------------------------------------------------ training
def train_navigation(config=None, checkpoint=None, resume=False, progress=True):
    """Meta-train (or pretrain) a navigation policy; returns a ``NavResult``.

    config: a ``NavConfig`` or a dict of its fields (None: the defaults, or the checkpoint's when
    resuming). checkpoint: the ``.npz`` written every ``checkpoint_every`` iterations and at the end.
    resume: continue from it, bit for bit (a config that differs beyond ``RESUMABLE_CHANGES`` is refused).
    Raises ``TrainingDiverged`` on a non-finite loss or gradient (the last checkpoint is kept)."""
    if isinstance(config, dict):
        config = NavConfig.from_dict(config)
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs the checkpoint path to resume from")
        saved = read_navigation_checkpoint(checkpoint)
        config = config or saved["config"]
        diffs = {k: (v, getattr(config, k)) for k, v in saved["config"].to_dict().items()
                 if k not in RESUMABLE_CHANGES and getattr(config, k) != v}
        if diffs:
            raise ConfigError(f"cannot resume {checkpoint!r} with a different configuration: "
                              + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diffs.items()))
        theta, start, history = saved["theta"], saved["iteration"], [tuple(r) for r in saved["history"]]
        rng = np.random.default_rng()
        rng.bit_generator.state = saved["rng_state"]
        optimizer = Adam(config.meta_lr)
        optimizer.load_state_dict(saved["optimizer_state"])
    else:
        config = config or NavConfig()
        theta = config.make_policy().init(config.seed).astype(config.dtype)
        start, history = 0, []
        rng = np.random.default_rng([config.seed, 1])     # its own stream, independent of θ's init
        optimizer = Adam(config.meta_lr)
    if checkpoint is not None:
        check_writable(os.path.dirname(os.path.abspath(checkpoint)))
    env, policy = config.make_env(), config.make_policy()
    pretrained = config.model == "pretrained"

    def save(iteration):
        if checkpoint is not None:
            save_navigation_checkpoint(checkpoint, policy, theta, config, optimizer.state_dict(), iteration,
                                       history, rng.bit_generator.state)

    bar = progress_bar(progress, total=config.iterations, initial=start,
                        desc="pretrain" if pretrained else f"meta-train ({config.estimator})")
    pending, done, last_saved = [], start, start if resume else None
    t0, cpu0 = time.perf_counter(), time.process_time()
    with one_blas_thread():
        for it in range(start, config.iterations):
            goals = env.sample_goals(config.meta_batch, rng)
            if pretrained:
                loss, g, ret = maml_rl.joint_step(env, policy, theta, goals, rng, config.trajectories)
                row = (loss, ret, ret)
            else:
                s = maml_rl.meta_step(env, policy, theta, goals, config.inner_lr, rng, config.trajectories,
                                      estimator=config.estimator, gamma=config.gamma, gae_lambda=config.gae_lambda)
                loss, g, row = s.loss, s.grad, (s.loss, s.pre_return, s.post_return)
            if not (np.isfinite(loss) and np.isfinite(g).all()):
                bar.close()
                kept = (f"the checkpoint of iteration {last_saved} is kept" if last_saved is not None
                        else "no checkpoint was written")
                raise TrainingDiverged(f"the meta-loss or its gradient became non-finite at iteration {it + 1}; "
                                       f"{kept}. Try a smaller --meta-lr (now {config.meta_lr}).")
            if config.cosine:
                optimizer.lr = cosine_lr(it, config.iterations, config.meta_lr)
            theta = optimizer.step(theta, g)                   # θ ← θ − β Adam(∇(−J_meta))
            pending.append(row)
            done = it + 1
            out_of_time = config.max_seconds and time.process_time() - cpu0 > config.max_seconds
            if done % config.log_every == 0 or done == config.iterations or out_of_time:
                mean = np.mean(pending, axis=0)
                history.append((done, *mean))
                bar.update(len(pending))
                bar.set_postfix_str(f"return {mean[1]:.1f}" + ("" if pretrained else f" -> {mean[2]:.1f} after 1 step"),
                                    refresh=False)
                pending = []
            if done % config.checkpoint_every == 0:
                save(done)
                last_saved = done
            if out_of_time:
                break
    if pending:
        history.append((done, *np.mean(pending, axis=0)))
        bar.update(len(pending))
    save(done)
    bar.close()
    return NavResult(policy, theta, config, done, np.array(history).reshape(-1, 4), time.perf_counter() - t0,
                     None if checkpoint is None else os.fspath(checkpoint))


# ------------------------------------------------------------------------------------------ evaluation
def eval_goals(num_goals=40, seed=2017):
    """The test goals: ``np.random.RandomState(seed).uniform(−0.5, 0.5, (num_goals, 2))``, never the
    training stream's (seed 1 gives the released test script's 40 goals)."""
    return np.random.RandomState(seed).uniform(-0.5, 0.5, size=(num_goals, 2))


def adaptation_returns(config, theta, goals, steps=3, trajectories=40, inner_lr=None, seed=0, chunk=20):
    """(T, steps + 1): each goal's mean return after 0..steps inner steps (α, then α/2), ``trajectories``
    fresh trajectories per step; goals ``chunk`` at a time (memory)."""
    env, policy = config.make_env(), config.make_policy()
    sizes = maml_rl.eval_step_sizes(inner_lr or config.inner_lr, steps)
    rng = np.random.default_rng([seed, 11])
    with one_blas_thread():
        return np.concatenate([maml_rl.adaptation_curve(env, policy, theta, goals[i:i + chunk], sizes, rng,
                                                        trajectories, config.gamma, config.gae_lambda)
                               for i in range(0, len(goals), chunk)])


def evaluate_navigation(checkpoint, num_goals=40, steps=(0, 1, 2, 3), trajectories=40, inner_lr=None, seed=2017,
                        baselines=True):
    """{model name: [StepStats]} for the checkpoint's policy and, with ``baselines``, the pretrained
    policy (``pretrained.npz`` beside it, if there) and the random initialisation θ_0 of its config:
    mean return ± 95% CI over ``num_goals`` test goals after each number of ``steps``."""
    ckpt = read_navigation_checkpoint(checkpoint)
    config, goals, S = ckpt["config"], eval_goals(num_goals, seed), max(steps)
    models = {"MAML" if config.model == "maml" else config.model: ckpt["theta"]}
    if baselines:
        base = os.path.join(os.path.dirname(_resolve(checkpoint)), "pretrained.npz")
        if os.path.exists(base) and config.model == "maml":
            models["pretrained"] = read_navigation_checkpoint(base)["theta"]
        models["random init"] = config.make_policy().init(config.seed)
    return {name: summarize(adaptation_returns(config, theta, goals, S, trajectories, inner_lr), steps)
            for name, theta in models.items()}


def format_navigation_table(results, paper=True):
    """An aligned text table of the returns, with the paper's Table 4 (MAML) beside MAML's rows."""
    lines = ["average return (mean ± 95% CI over test goals):",
             f"{'model':<12} {'steps':>5}  {'mean ± 95% CI':>17}  {'median':>8}" + ("  paper (MAML)" if paper else "")]
    for name, stats in results.items():
        for st in stats:
            ref = f"  {PAPER_TABLE4[st.steps]:>12.2f}" if paper and name == "MAML" and st.steps in PAPER_TABLE4 else ""
            lines.append(f"{name:<12} {st.steps:>5}  {st.mean:>8.2f} ± {st.ci95:<6.2f}  {st.median:>8.2f}{ref}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ figure
def plot_navigation(models, config, goal, path=None, steps=(0, 1, 3), trajectories=3, inner_lr=None, seed=0):
    """The paper's Figure 4: for one goal, a few trajectories of each policy before adaptation and
    after 1 and 3 inner steps (α, then α/2). ``models``: {panel title: θ}. Returns the Figure (saved
    as PNG if ``path``)."""
    from matplotlib.figure import Figure

    env, policy = config.make_env(), config.make_policy()
    sizes = maml_rl.eval_step_sizes(inner_lr or config.inner_lr, max(steps))
    goal = np.asarray(goal, dtype=float).reshape(1, 2)
    fig = Figure(figsize=(4.6 * len(models), 4.4))
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    colors = {0: "tab:red", 1: "tab:blue", 2: "tab:orange", 3: "tab:green"}
    with one_blas_thread():
        for ax, (title, theta) in zip(axes, models.items()):
            # The adaptation itself uses the protocol's 40 trajectories per step; a few are drawn.
            curve, kept = maml_rl.adaptation_curve(env, policy, theta, goal, sizes, np.random.default_rng([seed, 13]),
                                                   40, config.gamma, config.gae_lambda, keep=True)
            for k in steps:
                for n in range(trajectories):
                    path_n = kept[k].positions[0, n]
                    ax.plot(path_n[:, 0], path_n[:, 1], color=colors.get(k, "k"), lw=1.3, alpha=0.8,
                            label=(f"{'pre-update' if k == 0 else f'{k} step' + 's' * (k > 1)} "
                                   f"(return {curve[0, k]:.1f})") if n == 0 else None)
            ax.plot(*goal[0], marker="*", ms=16, color="k", ls="", label="goal")
            ax.plot(0, 0, marker="o", ms=5, color="k", ls="")
            ax.set_xlim(-0.8, 0.8)
            ax.set_ylim(-0.8, 0.8)
            ax.set_aspect("equal")
            ax.grid(alpha=0.3)
            ax.set_title(title)
            ax.legend(loc="lower left", fontsize=7)
    fig.suptitle(f"2-D navigation: trajectories before and after adaptation (α = {sizes[0]:g}, then {sizes[0] / 2:g})",
                 fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# ------------------------------------------------------------------------------------------ command line
# The options of ``minimaml train`` that mean something here (the rest are the other tasks'), by
# NavConfig field; the CLI's own parser defines them (None when not given).
TRAIN_OPTIONS = {"iterations": "iterations", "seed": "seed", "inner_lr": "inner_lr", "meta_lr": "meta_lr",
                 "meta_batch": "meta_batch", "checkpoint_every": "checkpoint_every", "log_every": "log_every",
                 "max_seconds": "max_seconds", "estimator": "estimator", "reward": "reward", "dtype": "dtype",
                 "cosine": "cosine",
                 "trajectories": "trajectories"}
OTHER_TASKS_OPTIONS = ("ways", "shots", "data", "steps", "k", "k_query", "algorithm", "method", "device",
                       "val_every", "test_steps", "lam", "cg_steps", "cg_tol", "msl_iterations",
                       "first_order_iterations")


def add_train_arguments(parser):
    """The navigation-only options of ``minimaml train`` (``--task navigation``)."""
    parser.add_argument("--estimator", choices=ESTIMATORS,
                        help="navigation: the meta-gradient, dice (unbiased, default) or biased")
    parser.add_argument("--reward", choices=REWARDS,
                        help="navigation: distance (the released code, default) or squared (the paper's text)")
    parser.add_argument("--trajectories", type=int, metavar="N",
                        help="navigation: trajectories per task before and after the inner step (default 20; "
                             "at eval: per adaptation step, default 40)")


def add_eval_arguments(parser):
    """The navigation-only options of ``minimaml eval`` (the same ``--trajectories``)."""
    parser.add_argument("--trajectories", type=int, metavar="N",
                        help="navigation: fresh trajectories per adaptation step (default 40)")


def cli_train(args):
    """``minimaml train --task navigation [...]``: meta-train MAML (DIR/checkpoint.npz), the pretrained
    baseline with the same budget (DIR/pretrained.npz, unless --no-baseline) and draw DIR/figure.png."""
    given = [name for name in OTHER_TASKS_OPTIONS if getattr(args, name, None) not in (None, False)]
    if given:
        raise ConfigError(f"--task navigation does not use {', '.join('--' + n.replace('_', '-') for n in given)}")
    overrides = {field: getattr(args, name) for name, field in TRAIN_OPTIONS.items()
                 if getattr(args, name, None) is not None}
    out = args.out or DEFAULT_OUT
    ckpt_path, base_path = os.path.join(out, "checkpoint.npz"), os.path.join(out, "pretrained.npz")
    if args.resume:
        if not os.path.exists(ckpt_path):
            raise ConfigError(f"--resume: no checkpoint at {ckpt_path!r} (use --out to name the run's folder)")
        config = NavConfig.from_dict({**read_navigation_checkpoint(ckpt_path)["config"].to_dict(), **overrides})
    else:
        config = NavConfig(**overrides)
    print(f"meta-training MAML on 2-D navigation: {config.iterations} iterations, policy {config.sizes} ReLU, "
          f"alpha={config.inner_lr:g}, {config.meta_batch} tasks x {config.trajectories} trajectories, reward "
          f"{config.reward}, {config.estimator} meta-gradient, Adam beta={config.meta_lr:g}"
          f"{' (cosine-annealed)' if config.cosine else ''} -> {out}")
    result = train_navigation(config, ckpt_path, resume=args.resume, progress=not args.quiet)
    last = result.history[-1] if len(result.history) else [np.nan] * 4
    print(f"MAML: {result.iteration} iterations, {result.seconds:.0f} s; return {last[2]:.2f} before and "
          f"{last[3]:.2f} after one step -> {ckpt_path}")
    models = {"MAML": result.theta}
    if not args.no_baseline:
        base_config = dataclasses.replace(config, model="pretrained")
        resume_base = args.resume and os.path.exists(base_path)
        base = train_navigation(base_config, base_path, resume=resume_base, progress=not args.quiet)
        print(f"pretrained: {base.iteration} iterations, {base.seconds:.0f} s -> {base_path}")
        models["pretrained"] = base.theta
    fig_path = os.path.join(out, "figure.png")
    plot_navigation(models, config, eval_goals(40)[4], fig_path)
    print(f"figure -> {fig_path}\nnext: minimaml eval {out}")
    return 0


def _refuse_other_tasks_options(args, names, command):
    given = [n for n in names if getattr(args, n, None) not in (None, False, 0)]
    if given:
        raise ConfigError(f"{command} of a navigation run does not use "
                          + ", ".join("--" + n.replace("_", "-") for n in given))


def cli_eval(args):
    """``minimaml eval DIR`` for a navigation run: the table of returns after 0..3 steps."""
    _refuse_other_tasks_options(args, ("k", "query_points", "baseline_inner_lr", "data", "backtrack", "sharpness"),
                                "eval")
    steps = tuple(args.steps) if args.steps else (0, 1, 2, 3)
    results = evaluate_navigation(args.checkpoint, num_goals=args.tasks or 40, steps=steps,
                                  trajectories=getattr(args, "trajectories", None) or 40, inner_lr=args.inner_lr,
                                  seed=args.seed, baselines=not args.no_baseline)
    config = read_navigation_checkpoint(args.checkpoint)["config"]
    alpha = args.inner_lr or config.inner_lr
    print(f"protocol: {args.tasks or 40} test goals, {getattr(args, 'trajectories', None) or 40} fresh trajectories "
          f"per step, inner steps alpha={alpha:g} then {alpha / 2:g}, reward {config.reward}")
    print(format_navigation_table(results, paper=config.reward == "distance"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_rows(results), f, indent=1)
    return 0


def cli_plot(args):
    """``minimaml plot DIR`` for a navigation run: the trajectories before and after adaptation."""
    _refuse_other_tasks_options(args, ("k", "data"), "plot")
    ckpt = read_navigation_checkpoint(args.checkpoint)
    models = {"MAML": ckpt["theta"]}
    base = os.path.join(os.path.dirname(_resolve(args.checkpoint)), "pretrained.npz")
    if os.path.exists(base):
        models["pretrained"] = read_navigation_checkpoint(base)["theta"]
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(_resolve(args.checkpoint))), "figure.png")
    goal = eval_goals(max(40, args.seed + 1))[args.seed]
    plot_navigation(models, ckpt["config"], goal, out, inner_lr=args.inner_lr)
    print(f"figure -> {out}")
    return 0
