"""Online meta-learning on a stream of sinusoids: FTML against the paper's baselines (Finn et al. 2019).

    for task t = 1 .. num_tasks:                    a fresh sinusoid, y = A sin(x − φ)
        its n_max training points x ~ U[−5, 5] arrive in batches of b;  its query set: Q points evenly
        spaced on [−5, 5], held out (never trained on)
        for each batch:  every learner learns from it, then adapts to the task on all its points so far;
                         record the query MSE of what it adapted to, against the number of points n

The learners. Two train a model on the buffer of all tasks seen (their data so far), N = ``updates``
optimizer steps after each batch, on meta-batches drawn uniformly from it (``meta/ftml.py``):

    ftml      FTML: N meta-updates (the one-step MAML meta-gradient), then adapts by its own update
              procedure, one inner step U(θ) = θ − α∇L(θ) on the task's points so far
    toe       train on everything: one model trained jointly on the buffer (N Adam steps on the loss
              at θ itself, support and query points pooled), used as it is: no adaptation

and the others fine-tune a start point on the task's points so far: F = ``finetune_updates`` steps of a
fresh Adam (step ``finetune_lr``) from the start, redone after each batch (as FTML's U is):

    ftl       follow the leader + fine-tuning: the start is the joint model as it was when the task
              arrived, i.e. trained on tasks 1..t−1 (toe's training, shared)
    scratch   from scratch + fine-tuning: the start is a fresh random network
    ftml-ft   FTML's θ + the same fine-tuning: the meta-learned start under the baselines' procedure

The metric, as in the paper: for each task, the number of its points needed to reach proficiency, the
first n whose query MSE is below the threshold γ (``points_to_proficiency``; inf if it never gets
there), against the task's position in the stream; and the query MSE after a fixed amount of data
(all n_max points).

Every random draw of task t (the task, the learners' mini-batches, the scratch network) comes from a
generator seeded by (seed, t), so a run resumed from a checkpoint, written atomically every
``checkpoint_every`` tasks, ends exactly where an uninterrupted one does. A learner whose training loss
or parameters become non-finite, whose loss climbs 100× above its first, or whose adapted model's
query MSE is non-finite, stops the run with a message (``TrainingDiverged``); the last checkpoint is kept.
"""
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from ..files import check_writable, write_atomic
from ..meta.ftml import FTML, TaskBuffer, meta_updates
from ..meta.maml import meta_value_and_grad
from ..nn import MLP, mse
from ..optim import Adam
from ..tasks import Sinusoid
from .checkpoint import CheckpointError
from .train import GROWTH_LIMIT, ConfigError, TrainingDiverged, is_int, is_number, one_blas_thread, progress_bar

LEARNERS = ("ftml", "ftml-ft", "ftl", "toe", "scratch")
DEFAULT_OUT = os.path.join("runs", "online")
FORMAT, VERSION = "minimaml-online", 1
# Fields that may differ between a checkpoint's config and the run that resumes it.
RESUMABLE_CHANGES = ("num_tasks", "checkpoint_every")


@dataclass
class OnlineConfig:
    """One online run: the stream, the proficiency threshold and the learners' settings."""
    num_tasks: int = 100            # tasks in the stream
    batch: int = 10                 # b: points per batch of the current task's data
    max_points: int = 100           # n_max: training points per task (a multiple of b)
    query_points: int = 100         # held-out points per task, evenly spaced on [−5, 5]
    threshold: float = 0.3          # γ: a task is learned once its query MSE is below γ
    learners: tuple = LEARNERS
    sizes: tuple = (1, 40, 40, 1)   # the network (ReLU)
    inner_lr: float = 0.01          # α: FTML's inner step, in meta-training and when adapting
    meta_lr: float = 1e-3           # β: Adam's step for FTML's and the joint model's updates
    updates: int = 100              # N: meta-updates (FTML) and joint-training steps (toe, ftl) per batch
    finetune_updates: int = 10      # F: Adam steps of the baselines' fine-tuning (ftl, scratch) per batch
    finetune_lr: float = 1e-2       # its step size
    meta_batch: int = 10            # tasks per meta-batch (FTML and the joint model)
    k_support: int = 10             # inner mini-batch: points per task
    k_query: int = 10               # outer mini-batch: points per task (the joint model pools both)
    dtype: str = "float32"
    seed: int = 0
    checkpoint_every: int = 10      # tasks between checkpoints

    def __post_init__(self):
        def need(ok, what):
            if not ok:
                raise ConfigError(f"invalid online config: {what}")

        for name, low in (("num_tasks", 1), ("batch", 2), ("max_points", 2), ("query_points", 1), ("updates", 1),
                          ("finetune_updates", 1), ("meta_batch", 1), ("k_support", 1), ("k_query", 1), ("seed", 0),
                          ("checkpoint_every", 1)):
            need(is_int(getattr(self, name), low), f"{name} must be an int >= {low}, got {getattr(self, name)!r}"
                 + ("; FTML splits a task's points into inner and outer mini-batches, so a batch brings at "
                    "least 2" if name == "batch" else ""))
        need(self.batch <= self.max_points, f"the batch size b = {self.batch} is larger than max_points "
                                            f"n_max = {self.max_points}")
        need(self.max_points % self.batch == 0, f"max_points n_max = {self.max_points} must be a multiple of the "
                                                f"batch size b = {self.batch}")
        need(is_number(self.threshold), f"threshold (γ, a query MSE) must be a finite number > 0, got "
                                          f"{self.threshold!r}")
        for name in ("inner_lr", "meta_lr", "finetune_lr"):
            need(is_number(getattr(self, name)), f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
        self.learners = tuple(self.learners) if isinstance(self.learners, (list, tuple)) else self.learners
        need(isinstance(self.learners, tuple) and self.learners and all(n in LEARNERS for n in self.learners)
             and len(set(self.learners)) == len(self.learners),
             f"learners must be a non-empty list of distinct names from {LEARNERS}, got {self.learners!r}")
        need(isinstance(self.sizes, (list, tuple)) and len(self.sizes) >= 2 and all(is_int(s, 1) for s in self.sizes)
             and self.sizes[0] == 1 and self.sizes[-1] == 1,
             f"sizes must be the layer widths of a network from 1 input to 1 output, got {self.sizes!r}")
        self.sizes = tuple(int(s) for s in self.sizes)
        need(self.dtype in ("float32", "float64"), f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    @property
    def points(self):
        """(B,) the number of a task's points after each batch: b, 2b, ..., n_max."""
        return np.arange(self.batch, self.max_points + 1, self.batch)

    def to_dict(self):
        return {**dataclasses.asdict(self), "learners": list(self.learners), "sizes": list(self.sizes)}

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) - names:
            raise ConfigError(f"not an online config: {sorted(set(d) - names) if isinstance(d, dict) else d!r} "
                              f"(known keys: {sorted(names)})")
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# The stream
# ----------------------------------------------------------------------------------------------
def _rng(config, what, t):
    """The generator of one kind of draw for task t: its own stream for each (seed, kind, t)."""
    kinds = ("task", "ftml", "joint", "scratch")
    return np.random.default_rng([config.seed, 10 + kinds.index(what), t])


def stream_task(config, t):
    """Task t of the stream: (x, y) its n_max training points (n_max, 1) in the order they arrive,
    (xq, yq) its query set (Q, 1) evenly spaced on [−5, 5], and (amplitude, phase)."""
    family = Sinusoid()
    b = family.sample(1, config.max_points, 1, _rng(config, "task", t))
    xq = np.linspace(*family.x_range, config.query_points)[:, None]
    yq = Sinusoid.function(b.params, xq)[0]
    return b.xs[0], b.ys[0], xq, yq, (float(b.amplitude[0]), float(b.phase[0]))


def points_to_proficiency(mse_curves, points, threshold):
    """The metric: for each task, the first number of points whose query MSE is below ``threshold``.
    mse_curves (T, B) (or (B,)), the MSE after each batch; points (B,) -> (T,) (or a number), inf for a
    task that never gets below it."""
    curves = np.asarray(mse_curves, dtype=float)
    below = curves < threshold
    first = np.asarray(points, dtype=float)[np.argmax(below, axis=-1)]
    return np.where(below.any(axis=-1), first, np.inf)


# ----------------------------------------------------------------------------------------------
# The learners. Each: begin_task(t); learn(the new batch, all the task's points so far, t) -> {name:
# training losses}; adapted(all the points) -> {name: the parameters to use on the task}; state() ->
# {name: (θ, optimizer)} of what it carries from task to task (checkpointed), restore(name, θ).
# ----------------------------------------------------------------------------------------------
def _finetune(net, theta, x, y, updates, lr):
    """Fine-tuning, the baselines' update procedure: ``updates`` steps of a fresh Adam (step ``lr``) on the
    loss at θ on all of a task's points x, y (n, 1), from θ = the learner's start. Returns (θ, losses)."""
    losses, optimizer = np.empty(updates), Adam(lr)
    for i in range(updates):      # zero inner steps: the gradient of the loss at θ itself (α unused)
        losses[i], g = meta_value_and_grad(net, theta, x[None], y[None], x[None], y[None], 1.0, 0)
        theta = optimizer.step(theta, g)
    return theta, losses


class _FTMLLearner:
    """FTML, adapted by its own update procedure (ftml), and its θ fine-tuned like the baselines (ftml-ft)."""

    def __init__(self, config, net):
        theta = net.init(config.seed).astype(config.dtype)
        self.config, self.net = config, net
        self.ftml = FTML(net, theta, config.inner_lr, config.meta_lr, config.updates, config.meta_batch,
                         config.k_support, config.k_query)
        self.buffer = self.ftml.buffer

    def begin_task(self, t):
        self.ftml.new_task()

    def learn(self, x_new, y_new, x, y, t):
        c = self.config
        losses = {"ftml": self.ftml.observe(x_new, y_new, _rng(c, "ftml", t))}
        if "ftml-ft" in c.learners:
            self.tuned, losses["ftml-ft"] = _finetune(self.net, self.ftml.theta, x, y, c.finetune_updates,
                                                      c.finetune_lr)
        return losses

    def adapted(self, x, y):
        return {"ftml": self.ftml.adapt(x, y), **({"ftml-ft": self.tuned} if "ftml-ft" in self.config.learners else {})}

    def state(self):
        return {"ftml": (self.ftml.theta, self.ftml.optimizer)}

    def restore(self, name, theta):
        self.ftml.theta = theta


class _JointLearner:
    """One model trained on the buffer with no adaptation (toe), and follow the leader: its value when
    the task arrived (trained on tasks 1..t−1), fine-tuned on the task's points (ftl)."""

    def __init__(self, config, net):
        self.config, self.net, self.buffer = config, net, TaskBuffer()
        self.theta, self.optimizer = net.init(config.seed).astype(config.dtype), Adam(config.meta_lr)

    def begin_task(self, t):
        self.buffer.add_task()
        self.leader = self.theta.copy()          # trained on tasks 1..t−1

    def learn(self, x_new, y_new, x, y, t):
        c, losses = self.config, {}
        self.buffer.add_points(x_new, y_new)
        self.theta, losses["toe"] = meta_updates(self.net, self.theta, self.optimizer, self.buffer,
                                                 _rng(c, "joint", t), c.updates, c.meta_batch, c.k_support,
                                                 c.k_query, c.inner_lr, steps=0)
        if "ftl" in c.learners:
            self.tuned, losses["ftl"] = _finetune(self.net, self.leader, x, y, c.finetune_updates, c.finetune_lr)
        return losses

    def adapted(self, x, y):
        return {"toe": self.theta, **({"ftl": self.tuned} if "ftl" in self.config.learners else {})}

    def state(self):
        return {"toe": (self.theta, self.optimizer)}

    def restore(self, name, theta):
        self.theta = theta


class _ScratchLearner:
    """A fresh random network per task, fine-tuned on the task's points (scratch)."""

    def __init__(self, config, net):
        self.config, self.net, self.buffer = config, net, None

    def begin_task(self, t):
        self.start = self.net.init(_rng(self.config, "scratch", t)).astype(self.config.dtype)

    def learn(self, x_new, y_new, x, y, t):
        c = self.config
        self.theta, losses = _finetune(self.net, self.start, x, y, c.finetune_updates, c.finetune_lr)
        return {"scratch": losses}

    def adapted(self, x, y):
        return {"scratch": self.theta}

    def state(self):
        return {}


def _learners(config, net):
    kinds = [(_FTMLLearner, ("ftml", "ftml-ft")), (_JointLearner, ("toe", "ftl")), (_ScratchLearner, ("scratch",))]
    return [kind(config, net) for kind, names in kinds if set(names) & set(config.learners)]


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
@dataclass
class OnlineResult:
    config: OnlineConfig
    mse: dict                   # learner -> (tasks_done, B) query MSE after b, 2b, ..., n_max points
    train_loss: dict            # learner -> (tasks_done, B) mean training loss of the updates after each batch
    tasks: np.ndarray           # (tasks_done, 2) each task's (amplitude, phase)
    tasks_done: int
    seconds: float              # wall time of this call
    checkpoint: str = None

    @property
    def points(self):
        return self.config.points

    def points_to_proficiency(self, name, threshold=None):
        """(tasks_done,) the metric for one learner (threshold: the config's γ unless given)."""
        return points_to_proficiency(self.mse[name], self.points, threshold or self.config.threshold)


def run_online(config=None, checkpoint=None, resume=False, progress=True):
    """Run the stream (``OnlineConfig``) and return an ``OnlineResult``.

    checkpoint: path of the ``.npz`` written every ``checkpoint_every`` tasks and at the end (None:
        nothing is written). resume: continue from it; its config must equal ``config`` apart from
        ``RESUMABLE_CHANGES`` (e.g. a longer stream); ``config=None`` takes it as stored.
    Raises ``TrainingDiverged`` when a learner goes wrong (the checkpoint on disk is the last good one).
    """
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs the checkpoint path to resume from")
        saved = read_online_checkpoint(checkpoint)
        config = config or saved["config"]
        diffs = {k: (v, getattr(config, k)) for k, v in dataclasses.asdict(saved["config"]).items()
                 if k not in RESUMABLE_CHANGES and getattr(config, k) != v}
        if diffs:
            raise ConfigError(f"cannot resume {checkpoint!r} with a different configuration: "
                              + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diffs.items()))
        start = saved["tasks_done"]
        if start > config.num_tasks:
            raise ConfigError(f"checkpoint {checkpoint!r} has done {start} tasks, more than "
                              f"num_tasks={config.num_tasks}")
    else:
        config, start = config or OnlineConfig(), 0
    if checkpoint is not None:
        check_writable(os.path.dirname(os.path.abspath(checkpoint)))
    net = MLP(list(config.sizes))
    learners = _learners(config, net)
    names = [n for n in LEARNERS if n in config.learners]
    B = len(config.points)
    mse_rec = {n: np.full((config.num_tasks, B), np.nan) for n in names}
    loss_rec = {n: np.full((config.num_tasks, B), np.nan) for n in names}
    params = np.full((config.num_tasks, 2), np.nan)
    first_loss = {}
    if resume:
        _restore(saved, learners, mse_rec, loss_rec, params, first_loss)
        for t in range(start):               # the buffers: the stream is a function of (seed, t)
            x, y = stream_task(config, t)[:2]
            for learner in learners:
                if learner.buffer is not None:
                    learner.buffer.add_task()
                    learner.buffer.add_points(x, y)

    def save(done):
        if checkpoint is not None:
            _save_online_checkpoint(checkpoint, config, done, learners, mse_rec, loss_rec, params, first_loss)

    last_saved = start if resume else None

    def stop(what):
        bar.close()
        kept = (f"the last checkpoint {checkpoint!r} (after {last_saved} tasks) is kept"
                if checkpoint is not None and last_saved is not None else "no checkpoint was written")
        raise TrainingDiverged(f"{what}; {kept}. Try a smaller --meta-lr (now {config.meta_lr}), "
                               f"--finetune-lr (now {config.finetune_lr}) or --inner-lr (now {config.inner_lr}).")

    def check(name, losses, where):
        if not np.isfinite(losses).all():
            stop(f"{name}'s training loss became {losses[~np.isfinite(losses)][0]} ({where})")
        first_loss.setdefault(name, float(losses[0]))
        if name in ("ftml", "toe") and losses.mean() > GROWTH_LIMIT * first_loss[name]:
            stop(f"{name}'s training loss {losses.mean():.3g} is more than {GROWTH_LIMIT:g}x its first, "
                 f"{first_loss[name]:.3g} ({where})")

    bar = progress_bar(progress, total=config.num_tasks, initial=start, desc="online tasks")
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"), one_blas_thread():
        for t in range(start, config.num_tasks):
            x_all, y_all, xq, yq, params[t] = stream_task(config, t)
            for learner in learners:
                learner.begin_task(t)
            for j, n in enumerate(config.points):
                new = slice(n - config.batch, n)                     # the batch that arrives now
                x, y = x_all[:n], y_all[:n]                          # all the task's points so far
                for learner in learners:
                    for name, losses in learner.learn(x_all[new], y_all[new], x, y, t).items():
                        check(name, losses, f"{name}, task {t + 1}, after {n} points")
                        if name in loss_rec:
                            loss_rec[name][t, j] = losses.mean()
                    for name, theta in learner.adapted(x, y).items():
                        if name in mse_rec:
                            mse_rec[name][t, j] = float(mse(net(theta, xq), yq))
                            if not (np.isfinite(theta).all() and np.isfinite(mse_rec[name][t, j])):
                                stop(f"{name}'s parameters or query MSE became non-finite (task {t + 1}, after "
                                     f"{n} points)")
            done = t + 1
            shown = {n: points_to_proficiency(mse_rec[n][t], config.points, config.threshold) for n in names}
            bar.set_postfix_str("points to MSE<%g: " % config.threshold
                                + " ".join(f"{n} {v:.0f}" if np.isfinite(v) else f"{n} -" for n, v in shown.items()),
                                refresh=False)
            bar.update(1)
            if done % config.checkpoint_every == 0 or done == config.num_tasks:
                save(done)
                last_saved = done
    bar.close()
    done = config.num_tasks
    return OnlineResult(config, {n: a[:done] for n, a in mse_rec.items()}, {n: a[:done] for n, a in loss_rec.items()},
                        params[:done], done, time.perf_counter() - t0,
                        None if checkpoint is None else os.fspath(checkpoint))


# ----------------------------------------------------------------------------------------------
# Checkpoints: one .npz of plain arrays, written atomically (minimaml.files.write_atomic)
# ----------------------------------------------------------------------------------------------
def _save_online_checkpoint(path, config, tasks_done, learners, mse_rec, loss_rec, params, first_loss):
    """format, version, config (JSON), tasks_done, first_loss (JSON), tasks (done, 2); per learner
    mse/<name>, loss/<name> (done, B); per trained model theta/<name> and optimizer/<name> (JSON scalars)
    with optimizer/<name>/m, /v. The buffers are not stored: the stream is a function of (seed, t)."""
    arrays = {"format": np.array(FORMAT), "version": np.array(VERSION),
              "config": np.array(json.dumps(config.to_dict(), sort_keys=True)),
              "tasks_done": np.array(tasks_done), "first_loss": np.array(json.dumps(first_loss)),
              "tasks": params[:tasks_done]}
    for name in mse_rec:
        arrays[f"mse/{name}"], arrays[f"loss/{name}"] = mse_rec[name][:tasks_done], loss_rec[name][:tasks_done]
    for learner in learners:
        for name, (theta, optimizer) in learner.state().items():
            state = optimizer.state_dict()
            arrays[f"theta/{name}"] = theta
            for key in ("m", "v"):
                if state[key] is not None:
                    arrays[f"optimizer/{name}/{key}"] = state.pop(key)
            arrays[f"optimizer/{name}"] = np.array(json.dumps({k: v for k, v in state.items() if v is not None}))
    write_atomic(path, lambda f: np.savez(f, **arrays), remove_stale=True)


def read_online_checkpoint(path):
    """{"config", "tasks_done", "mse", "loss", "tasks", "first_loss", "models": {name: (θ, optimizer state)}}
    from an online checkpoint. FileNotFoundError or CheckpointError (naming the path) otherwise."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"online checkpoint {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            a = {key: data[key] for key in data.files}
    except (ValueError, OSError, EOFError, KeyError) as e:
        raise CheckpointError(f"{path!r} is not a readable .npz file: {type(e).__name__}: {e}") from None
    if str(a.get("format", "")) != FORMAT or int(a.get("version", -1)) != VERSION:
        raise CheckpointError(f"{path!r} is not a minimaml online checkpoint (version {VERSION})")
    try:
        config = OnlineConfig.from_dict(json.loads(str(a["config"])))
        models = {}
        for key in a:
            if key.startswith("theta/"):
                name = key[len("theta/"):]
                state = json.loads(str(a[f"optimizer/{name}"]))
                state.update(m=a.get(f"optimizer/{name}/m"), v=a.get(f"optimizer/{name}/v"))
                models[name] = (a[key], state)
        return {"config": config, "tasks_done": int(a["tasks_done"]), "tasks": a["tasks"],
                "first_loss": json.loads(str(a["first_loss"])), "models": models,
                "mse": {k[4:]: v for k, v in a.items() if k.startswith("mse/")},
                "loss": {k[5:]: v for k, v in a.items() if k.startswith("loss/")}}
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"online checkpoint {path!r} has a missing or invalid entry: "
                              f"{type(e).__name__}: {e}") from None


def _restore(saved, learners, mse_rec, loss_rec, params, first_loss):
    done = saved["tasks_done"]
    for name in mse_rec:
        mse_rec[name][:done], loss_rec[name][:done] = saved["mse"][name], saved["loss"][name]
    params[:done] = saved["tasks"]
    first_loss.update(saved["first_loss"])
    for learner in learners:
        for name, (theta, optimizer) in learner.state().items():
            saved_theta, state = saved["models"][name]
            optimizer.load_state_dict(state)
            learner.restore(name, saved_theta.copy())


# ----------------------------------------------------------------------------------------------
# Summary and figure
# ----------------------------------------------------------------------------------------------
def summary(result, threshold=None):
    """Per learner, over all the tasks, the first and the second half of the stream (keys prefixed "", "first_half_",
    "second_half_"): "reached", the fraction of tasks that reach proficiency; "points", the mean number of points
    needed, a task that never gets there counted as n_max + b; "mse_first_median", the median query MSE after the
    first b points; "mse_final_median", after all n_max. And over all the tasks "mse_final_mean" ± "mse_final_ci95"
    (1.96 σ/√n)."""
    threshold = threshold or result.config.threshold
    c, half, rows = result.config, result.tasks_done // 2, {}
    for name, curves in result.mse.items():
        needed = points_to_proficiency(curves, result.points, threshold)
        row = {}
        for part, sl in (("", slice(None)), ("first_half_", slice(0, half)), ("second_half_", slice(half, None))):
            n, part_curves = needed[sl], curves[sl]
            if not len(n):
                continue
            row[part + "reached"] = float(np.isfinite(n).mean())
            row[part + "points"] = float(np.where(np.isfinite(n), n, c.max_points + c.batch).mean())
            row[part + "mse_first_median"] = float(np.median(part_curves[:, 0]))
            row[part + "mse_final_median"] = float(np.median(part_curves[:, -1]))
        final = curves[:, -1]
        row["mse_final_mean"] = float(final.mean())
        row["mse_final_ci95"] = float(1.96 * final.std(ddof=1) / math.sqrt(len(final))) if len(final) > 1 else None
        rows[name] = row
    return rows


def format_summary(result, threshold=None):
    """The summary as a text table."""
    threshold = threshold or result.config.threshold
    c, T = result.config, result.tasks_done
    lines = [f"{T} tasks, b = {c.batch} points per batch up to n_max = {c.max_points}; proficiency: query MSE < "
             f"{threshold:g} on {c.query_points} evenly spaced points",
             f"{'':<8} {'':>8} {'points needed (mean)':^26}   {'query MSE after b points':^24}   "
             f"{'query MSE after n_max points':^36}",
             f"{'learner':<8} {'reached':>8} {'all':>7} {'1st half':>9} {'2nd half':>9}   {'1st half':>11} "
             f"{'2nd half':>11}    {'mean ± 95% CI':>21} {'2nd half median':>15}"]
    for name, r in summary(result, threshold).items():
        ci = f"{r['mse_final_ci95']:.3f}" if r["mse_final_ci95"] is not None else "n/a"
        lines.append(f"{name:<8} {r['reached']:>8.0%} {r['points']:>7.1f} {r.get('first_half_points', math.nan):>9.1f} "
                     f"{r['second_half_points']:>9.1f}   {r.get('first_half_mse_first_median', math.nan):>11.3f} "
                     f"{r['second_half_mse_first_median']:>11.3f}    {r['mse_final_mean']:>11.3f} ± {ci:<7} "
                     f"{r['second_half_mse_final_median']:>15.3f}")
    lines.append(f"(points needed: a task that never reaches proficiency counts as n_max + b = "
                 f"{c.max_points + c.batch}; "
                 f"halves: tasks 1-{T // 2} and {T // 2 + 1}-{T}; MSE after b: medians)")
    return "\n".join(lines)


def online_figure(result, threshold=None, path=None, window=10):
    """Three panels: points to proficiency against the task's position in the stream (a moving average
    over ``window`` tasks, not reached counted as n_max + b), the query MSE after all n_max points against
    the position (moving median), and the median query MSE against the number of points over the second
    half of the stream. Saves a PNG if ``path`` is given; returns the matplotlib Figure."""
    from matplotlib.figure import Figure

    from .plotting import _save

    threshold = threshold or result.config.threshold
    c, T = result.config, result.tasks_done
    colors = {"ftml": "tab:red", "ftml-ft": "tab:orange", "ftl": "tab:blue", "toe": "tab:green", "scratch": "tab:gray"}
    labels = {"ftml": "FTML (one inner step)", "ftml-ft": "FTML's θ + fine-tuning", "ftl": "FTL + fine-tuning",
              "toe": "train on everything", "scratch": "from scratch + fine-tuning"}
    position = np.arange(1, T + 1)
    w = max(1, min(window, T))

    def moving(a, how):
        return np.array([how(a[max(0, i - w + 1):i + 1]) for i in range(len(a))])

    fig = Figure(figsize=(15, 4.2))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for name, curves in result.mse.items():
        needed = np.where(np.isinf(result.points_to_proficiency(name, threshold)), c.max_points + c.batch,
                          result.points_to_proficiency(name, threshold))
        ax1.scatter(position, needed, s=8, alpha=0.35, color=colors[name])
        ax1.plot(position, moving(needed, np.mean), color=colors[name], lw=2, label=labels[name])
        ax2.semilogy(position, curves[:, -1], ".", ms=3, alpha=0.35, color=colors[name])
        ax2.semilogy(position, moving(curves[:, -1], np.median), color=colors[name], lw=2, label=labels[name])
        ax3.semilogy(result.points, np.median(curves[T // 2:], axis=0), "o-", ms=4, color=colors[name],
                     label=labels[name])
    ax1.axhline(c.max_points + c.batch, color="k", ls=":", lw=1)
    ax1.text(1, c.max_points + c.batch, " not reached", va="bottom", fontsize=8)
    ax1.set(xlabel="task position in the stream", ylabel=f"points needed for query MSE < {threshold:g}",
            title=f"data to proficiency (moving mean of {w} tasks)", ylim=(0, c.max_points + 2.5 * c.batch))
    ax2.axhline(threshold, color="k", ls=":", lw=1)
    ax2.set(xlabel="task position in the stream", ylabel=f"query MSE after n_max = {c.max_points} points",
            title=f"performance after all the data (moving median of {w})")
    ax3.axhline(threshold, color="k", ls=":", lw=1, label=f"threshold γ = {threshold:g}")
    ax3.set(xlabel="points of the task seen", ylabel="query MSE (median over tasks)",
            title=f"tasks {T // 2 + 1}-{T}: MSE against data")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3, which="both")
    ax3.legend(fontsize=8)
    fig.suptitle(f"Online meta-learning on a stream of {T} sinusoids: b = {c.batch} points per batch, up to "
                 f"{c.max_points}; {c.updates} (meta-)updates per batch; fine-tuning: {c.finetune_updates} Adam steps "
                 f"of {c.finetune_lr:g}", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return fig


# ----------------------------------------------------------------------------------------------
# The command line: `minimaml online ...` (hooked into minimaml/cli.py)
# ----------------------------------------------------------------------------------------------
def add_online_parser(subparsers):
    """Add the ``online`` command to an argparse subparsers object; returns its parser."""
    from ..cli import _int_at_least, _nonneg_int, _positive_float, _positive_int

    d = OnlineConfig()
    p = subparsers.add_parser(
        "online", help="online meta-learning on a stream of sinusoids: FTML against its baselines",
        description="Online meta-learning (Finn et al. 2019): a stream of sinusoid tasks, each with N_MAX "
        "training points arriving in batches of B and a held-out query set. After each batch, FTML (meta-"
        "updates on a buffer of all tasks seen, then one inner step) and the baselines (train on everything, "
        "follow the leader + fine-tuning, from scratch) adapt, and their query MSE is recorded. Writes "
        "DIR/checkpoint.npz (every --checkpoint-every tasks), DIR/results.json and DIR/figure.png: the "
        "points each task needs to reach query MSE < THRESHOLD against its position in the stream.")
    # Defaults are None so that --resume can tell which options were given.
    p.add_argument("--tasks", type=_positive_int, metavar="N", help=f"tasks in the stream (default {d.num_tasks})")
    p.add_argument("--batch", type=_int_at_least(2), metavar="B", help=f"points per batch, b (default {d.batch})")
    p.add_argument("--max-points", type=_positive_int, metavar="N_MAX",
                   help=f"training points per task, a multiple of B (default {d.max_points})")
    p.add_argument("--threshold", type=_positive_float, metavar="GAMMA",
                   help=f"proficiency: query MSE below GAMMA (default {d.threshold})")
    p.add_argument("--query-points", type=_positive_int, metavar="Q",
                   help=f"held-out points per task, evenly spaced on [-5, 5] (default {d.query_points})")
    p.add_argument("--learners", type=_learner_list, metavar="LIST",
                   help=f"comma-separated, from {','.join(LEARNERS)} (default: all)")
    p.add_argument("--sizes", type=_size_list, metavar="1,...,1", help="layer widths (default 1,40,40,1)")
    p.add_argument("--inner-lr", type=_positive_float, metavar="ALPHA",
                   help=f"FTML's inner step (default {d.inner_lr})")
    p.add_argument("--meta-lr", type=_positive_float, metavar="BETA",
                   help=f"Adam step of FTML and the joint model (default {d.meta_lr})")
    p.add_argument("--finetune-lr", type=_positive_float, metavar="LR",
                   help=f"Adam step of fine-tuning and of training from scratch (default {d.finetune_lr})")
    p.add_argument("--updates", type=_positive_int, metavar="N",
                   help=f"meta-updates (FTML) and joint-training steps (toe, ftl) per batch (default {d.updates})")
    p.add_argument("--finetune-updates", type=_positive_int, metavar="F",
                   help=f"Adam steps of the fine-tuning (ftl, scratch, ftml-ft) per batch (default "
                        f"{d.finetune_updates})")
    p.add_argument("--meta-batch", type=_positive_int, metavar="T",
                   help=f"tasks per meta-batch (default {d.meta_batch})")
    p.add_argument("--k", type=_positive_int, metavar="K", help=f"inner mini-batch points (default {d.k_support})")
    p.add_argument("--k-query", type=_positive_int, metavar="KQ", help=f"outer mini-batch points (default {d.k_query})")
    p.add_argument("--dtype", choices=("float32", "float64"), help=f"default {d.dtype}")
    p.add_argument("--seed", type=_nonneg_int, help=f"the stream's and the networks' seed (default {d.seed})")
    p.add_argument("--checkpoint-every", type=_positive_int, metavar="N", help=f"tasks (default {d.checkpoint_every})")
    p.add_argument("--out", metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _learner_list(text):
    import argparse
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in LEARNERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected names from {','.join(LEARNERS)}, got {text!r}")
    return names


def _size_list(text):
    import argparse
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,40,40,1, got {text!r}") from None


def cmd_online(args):
    """``minimaml online``: run (or resume) the stream, print the summary, write the results and figure."""
    overrides = {name: value for name, value in (
        ("num_tasks", args.tasks), ("batch", args.batch), ("max_points", args.max_points),
        ("threshold", args.threshold), ("query_points", args.query_points), ("learners", args.learners),
        ("sizes", args.sizes), ("inner_lr", args.inner_lr), ("meta_lr", args.meta_lr),
        ("finetune_lr", args.finetune_lr), ("updates", args.updates), ("finetune_updates", args.finetune_updates),
        ("meta_batch", args.meta_batch),
        ("k_support", args.k), ("k_query", args.k_query), ("dtype", args.dtype), ("seed", args.seed),
        ("checkpoint_every", args.checkpoint_every)) if value is not None}
    out = args.out or DEFAULT_OUT
    ckpt = os.path.join(out, "checkpoint.npz")
    if args.resume:
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt!r} (use --out to name the run's folder)")
        config = OnlineConfig.from_dict({**read_online_checkpoint(ckpt)["config"].to_dict(), **overrides})
    else:
        config = OnlineConfig(**overrides)
    print(f"online meta-learning: {config.num_tasks} sinusoid tasks, b={config.batch} points per batch up to "
          f"n_max={config.max_points}, threshold query MSE < {config.threshold:g}; learners "
          f"{','.join(config.learners)}; {config.updates} updates per batch, meta-batch {config.meta_batch} x "
          f"K={config.k_support}+{config.k_query}, "
          f"alpha={config.inner_lr:g}, beta={config.meta_lr:g}; fine-tuning {config.finetune_updates} Adam steps of "
          f"{config.finetune_lr:g} -> {out}")
    result = run_online(config, checkpoint=ckpt, resume=args.resume, progress=not args.quiet)
    print(format_summary(result))
    rows = {"config": config.to_dict(), "points": result.points.tolist(), "summary": summary(result),
            "tasks": [{"amplitude": a, "phase": p} for a, p in result.tasks.tolist()],
            "mse": {n: m.tolist() for n, m in result.mse.items()},
            "points_to_proficiency": {n: [None if math.isinf(v) else v
                                          for v in result.points_to_proficiency(n).tolist()] for n in result.mse}}
    results_path, fig_path = os.path.join(out, "results.json"), os.path.join(out, "figure.png")
    write_atomic(results_path, lambda f: f.write(json.dumps(rows, indent=1, allow_nan=True).encode()))
    online_figure(result, path=fig_path)
    print(f"{result.seconds:.1f} s -> {ckpt}, {results_path}, {fig_path}")
    return 0
