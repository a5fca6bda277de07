"""Meta-training: MAML's Algorithm 1 as a loop, with checkpoints, resume and a progress bar.

    θ ← init(seed)
    repeat for `iterations` meta-updates:
        sample T tasks, each with K support and K_q query points       (xs, ys, xq, yq)
        θ'_t = θ − α ∇θ L_support,t(θ)         (``steps`` times, per task)  ┐ meta_value_and_grad
        L_meta = 1/T Σ_t L_query,t(θ'_t),  g = ∇θ L_meta                     ┘
        θ ← Adam(θ, g) with step size β = meta_lr

The problem (``config.task``: sinusoid regression or Omniglot classification, see
``problems.py``) gives the task family, the network and the loss; the loop knows none of them in
particular. For regression the same loop trains the "pretrained" baseline of the paper
(``model="pretrained"``): one network regressed on all tasks jointly, i.e. the query-loss gradient
at θ itself (zero inner steps) on all K + K_q points of every sampled task. Every ``val_every``
iterations it measures the model on fixed validation tasks (Omniglot: characters of the "val"
split, never the test ones) after ``test_steps`` inner steps: the learning curve.

Resuming is exact: a checkpoint stores θ, Adam's state and the task sampler's RNG state, so a
run interrupted at a checkpoint and resumed on the same device ends with the very same θ as an
uninterrupted run. A run may also move between the CPU and a GPU (the same state, float32 on both),
but not bit for bit: the kernel sums the tasks' gradients with atomicAdd, in an order that varies.

A run that goes wrong stops and says so, keeping the last good checkpoint: a non-finite meta-loss,
θ or optimizer state; a meta-loss far above the run's own start; or an inner step that makes the
loss far worse than before adaptation (α too large), which is checked on the first batch and at
every checkpoint (with a warning when adaptation makes the loss worse at all).
"""

import dataclasses
import math
import numbers
import os
import time
from dataclasses import dataclass

import numpy as np

from ..meta import algorithms
from ..nn.losses import loss_name
from ..nn.mlp import MLP
from ..optim import Adam
from ..files import check_writable
from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from ..meta.mamlpp import cosine_lr
from .problems import PROBLEMS, problem

METHODS = ("hvp", "first_order", "autodiff", "hessian")
MODELS = ("maml", "pretrained")
ALGORITHMS = algorithms.NAMES
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")
# Fields that may differ between a checkpoint's config and a resumed run's config (a GPU run can
# continue on the CPU and vice versa: the same state, though not bit for bit, see above).
RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "log_every", "device", "data", "val_every", "val_tasks",
                     "max_seconds")


def one_blas_thread():
    """A context in which BLAS runs on one thread (``threadpoolctl``), restored on exit.

    Why: the fast route's matrix products are small (tens to hundreds of rows), too small for
    threads to pay off, and OpenBLAS's threads spin-wait for one another, so as soon as anything
    else runs on the machine they stall: a 5-way 1-shot Omniglot meta-step took 7.6 ms on one
    thread and 86-265 ms with NumPy's default two on this project's 2-core machine. The limit
    holds only while training or evaluating, never beyond (no process-wide setting is left behind).
    """
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1, user_api="blas")


class TrainingDiverged(RuntimeError):
    """The run went wrong (non-finite or exploding loss or state, or adaptation that makes the loss
    far worse); the last good checkpoint was left untouched."""


# How much worse than before adaptation the loss after it may be, and how far above the run's own
# first logged meta-loss the meta-loss may climb, before the run is stopped.
ADAPTATION_LIMIT = 100.0
GROWTH_LIMIT = 100.0
# The largest fraction of a log period's meta-batches an algorithm may refuse before the run stops.
SKIP_LIMIT = 0.1


class ConfigError(ValueError):
    """An invalid training configuration, or one that does not match the checkpoint to resume."""


class DeviceUnavailable(RuntimeError):
    """``device="cuda"`` without CuPy or without a working GPU."""


def is_int(value, low):
    """An int (not a bool) >= low: how every run's config checks its integer fields."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def is_number(value, low=0.0, strict=True):
    """A finite real number (not a bool) > low, or >= low when not ``strict``: the configs' rates and budgets."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value > low if strict else value >= low


@dataclass
class TrainConfig:
    """One training run. Fields left None take the problem's defaults (``problems.py``): for
    ``task="sinusoid"`` the MAML paper's sinusoid setup (Finn et al. 2017, §5.1): a 1-40-40-1 ReLU
    network, one inner step of α = 0.01 on K = 10 support points, Adam with β = 1e-3 on meta-batches
    of 25 tasks, query sets of 10 points (the paper trains for 70,000 meta-updates; the default
    here is 50,000 so that ``minimaml train`` takes about a minute); for ``task="omniglot"`` its
    Omniglot setup (§5.2): 784-256-128-64-64-N with batch norm, α = 0.4·N on the mean
    cross-entropy, K = 1 shot, meta-batch 32, 60,000 meta-updates, 3 inner steps at test.
    """
    task: str = "sinusoid"          # the problem: "sinusoid" | "omniglot"
    sizes: list = None              # layer widths (None: the problem's network)
    activation: str = "relu"
    norm: str = None                # None | "batch" (None: the problem's)
    ways: int = 5                   # N classes per task (classification)
    data: str = None                # Omniglot's data folder (None: $MINIMAML_DATA)
    inner_lr: float = None          # α, the inner (adaptation) step size
    steps: int = 1                  # inner gradient steps during meta-training
    test_steps: int = None          # inner steps for the validation curve
    meta_lr: float = 1e-3           # β, Adam's step size for the outer update
    meta_batch: int = None          # T, tasks per meta-update
    k_support: int = None           # K, support points per task (per class for classification)
    k_query: int = None             # query points per task (per class for classification)
    iterations: int = None          # meta-updates
    method: str = "hvp"             # how the meta-gradient is computed (see meta/maml.py)
    dtype: str = "float32"          # float32 is faster; float64 for exactness checks
    device: str = "cpu"             # "cuda": θ, Adam state and the meta-gradient on the GPU
    seed: int = 0                   # θ's init and the task stream
    model: str = "maml"             # "maml" or the "pretrained" baseline
    algorithm: str = "maml"         # the MAML family: see minimaml/meta/algorithms.py
    lam: float = 20.0               # iMAML: λ, the proximal term's strength (I + H/λ must stay positive definite)
    cg_steps: int = 20              # iMAML: conjugate-gradient iterations
    cg_tol: float = 1e-3            # iMAML: the relative residual CG must reach (an approximate solve, as in the paper)
    msl_iterations: int = 0         # MAML++: iterations over which the multi-step loss anneals (0: no multi-step loss)
    first_order_iterations: int = 0  # MAML++: first order for this many iterations, then second order
    cosine: bool = False            # cosine annealing of the meta step size (MAML++), to 0 at `iterations`
    max_seconds: float = 0.0        # stop after this many seconds of the process's CPU time (0: no limit):
                                    # a budget for comparisons that other jobs on the machine do not eat into
    checkpoint_every: int = 5000
    log_every: int = 500
    val_every: int = None           # iterations between validation measurements (0: none)
    val_tasks: int = 200            # validation tasks per measurement

    def __post_init__(self):
        def need(ok, what):
            if not ok:
                raise ConfigError(f"invalid training config: {what}")

        need(self.task in PROBLEMS, f"unknown task {self.task!r}; choose one of {sorted(PROBLEMS)}")
        need(is_int(self.ways, 2), f"ways must be an int >= 2, got {self.ways!r}")
        spec = problem(self.task)
        for name, value in spec.defaults.items():          # the problem's setup where none is given
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name, value in getattr(spec, "resolve", lambda config: {})(self).items():
            setattr(self, name, value)                     # defaults that depend on other fields
        need(isinstance(self.sizes, (list, tuple)) and all(is_int(s, 1) for s in self.sizes) and len(self.sizes) >= 2,
             f"sizes must be a list of at least 2 ints >= 1, got {self.sizes!r}")
        self.sizes = [int(s) for s in self.sizes]
        for name in ("inner_lr", "meta_lr"):
            value = getattr(self, name)
            need(is_number(value), f"{name} must be a finite number > 0, got {value!r}")
        for name, low in (("steps", 0), ("test_steps", 0), ("meta_batch", 1), ("k_support", 1), ("k_query", 1),
                          ("checkpoint_every", 1), ("log_every", 1), ("iterations", 0), ("seed", 0),
                          ("val_every", 0), ("val_tasks", 1)):
            need(is_int(getattr(self, name), low), f"{name} must be an int >= {low}, got {getattr(self, name)!r}")
        need(self.activation in ("relu", "tanh"), f"unknown activation {self.activation!r}")
        need(self.norm in (None, "batch"), f"unknown norm {self.norm!r}; choose None or 'batch'")
        need(self.method in METHODS, f"unknown method {self.method!r}; choose one of {METHODS}")
        need(self.model in MODELS, f"unknown model {self.model!r}; choose one of {MODELS}")
        need(self.algorithm in ALGORITHMS, f"unknown algorithm {self.algorithm!r}; choose one of {ALGORITHMS}")
        need(is_number(self.lam), f"lam (λ) must be a finite number > 0, got {self.lam!r}")
        need(is_int(self.cg_steps, 1), f"cg_steps must be an int >= 1, got {self.cg_steps!r}")
        need(is_number(self.cg_tol) and self.cg_tol < 1, f"cg_tol must be a number in (0, 1), got {self.cg_tol!r}")
        for name in ("msl_iterations", "first_order_iterations"):
            need(is_int(getattr(self, name), 0), f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        need(isinstance(self.cosine, bool), f"cosine must be True or False, got {self.cosine!r}")
        need(is_number(self.max_seconds, strict=False), f"max_seconds must be a number >= 0, got {self.max_seconds!r}")
        need(self.algorithm == "maml" or (self.device == "cpu" and self.model == "maml"),
             f"algorithm {self.algorithm!r} runs on the CPU, for the model 'maml'")
        need(self.algorithm != "mamlpp" or self.steps >= 1, "MAML++ needs at least one inner step")
        need(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; choose one of {DTYPES}")
        need(self.device in DEVICES, f"unknown device {self.device!r}; choose one of {DEVICES}")
        need(self.device == "cpu" or self.method in ("hvp", "first_order"),
             f"device 'cuda' runs the methods 'hvp' and 'first_order', not {self.method!r}")
        need(self.device == "cpu" or self.dtype == "float32",
             f"device 'cuda' computes in float32, got dtype {self.dtype!r}")
        need(self.device == "cpu" or (self.task == "sinusoid" and self.norm is None),
             "device 'cuda' runs the fused kernel: sinusoid MLPs without batch norm")
        need(self.model == "maml" or not spec.classification,
             f"the pretrained baseline is defined for regression, not for task {self.task!r} "
             "(labels are permuted per task)")
        if spec.classification:
            need(self.sizes[-1] == self.ways, f"the network has {self.sizes[-1]} outputs but ways={self.ways}")

    @property
    def problem(self):
        return problem(self.task)

    def make_net(self):
        return MLP(self.sizes, self.activation, self.norm)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """A config from a checkpoint's dict; unknown keys are an error (a foreign config). Keys
        that older checkpoints lack take their defaults (a sinusoid run)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training-config keys {unknown}; known: {sorted(names)}")
        try:
            return cls(**d)
        except TypeError as e:   # e.g. a value of the wrong type that the checks cannot compare
            raise ConfigError(f"invalid training config: {e}") from None


@dataclass
class TrainResult:
    net: MLP
    theta: np.ndarray               # final θ (P,), on the host
    config: TrainConfig
    iteration: int                  # completed meta-updates
    history: np.ndarray             # (N, 2) rows (iteration, mean meta-loss of the log period)
    seconds: float                  # wall time of this call's loop
    iterations_run: int = 0         # meta-updates done by this call (fewer than iteration if resumed)
    checkpoint: str = None          # path of the written checkpoint, if any
    val_history: np.ndarray = None  # (M, 2) rows (iteration, validation metric)
    extra: np.ndarray = None        # the algorithm's other meta-parameters (Meta-SGD's α, MAML++'s sizes)


def _device_module(config):
    """(array module, meta-gradient function, optimizer) for the config's device and method."""
    if config.device == "cuda":
        from ..gpu import cuda   # imports CuPy only when called

        ok, why = cuda.available()
        if not ok:
            raise DeviceUnavailable(f"--device cuda: {why}")
        cupy = cuda.array_module()
        first_order = config.method == "first_order"

        def meta_grad(net, theta, xs, ys, xq, yq, inner_lr, steps):
            return cuda.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps,
                                            first_order=first_order)
        return cupy, meta_grad, _CudaAdam(cuda, config.meta_lr)

    from ..meta.maml import meta_value_and_grad

    loss = config.problem.loss

    def meta_grad(net, theta, xs, ys, xq, yq, inner_lr, steps):
        return meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method=config.method, loss=loss)
    return np, meta_grad, Adam(config.meta_lr)


def _algorithm_step(config, net, loss):
    """params = [θ, extra], the batch, the iteration -> (meta-loss, gradient of params)."""
    def step(params, batch, iteration):
        return algorithms.value_and_grad(config.algorithm, net, params, batch, config, loss, iteration)
    return step


class _CudaAdam(Adam):
    """``optim.Adam`` with its update done by the GPU's fused elementwise kernel, in place on
    θ, m, v (``minimaml.gpu.cuda.adam_update``). Same arithmetic and the same ``state_dict``,
    so a checkpoint written on the GPU resumes on the CPU and vice versa."""

    def __init__(self, cuda, lr):
        super().__init__(lr)
        self._cuda = cuda

    def step(self, theta, grad):
        cupy = self._cuda.array_module()
        if self.m is None or not isinstance(self.m, cupy.ndarray):
            self.m = cupy.zeros_like(grad) if self.m is None else cupy.asarray(self.m, dtype=cupy.float32)
            self.v = cupy.zeros_like(grad) if self.v is None else cupy.asarray(self.v, dtype=cupy.float32)
        self.t += 1
        return self._cuda.adam_update(theta, grad, self.m, self.v, self.t, self.lr, self.b1, self.b2, self.eps)


def task_rng(seed):
    """The task sampler's generator: its own stream, independent of θ's initialisation."""
    return np.random.default_rng([int(seed), 1])


def train(config=None, checkpoint=None, resume=False, progress=True):
    """Meta-train (or pretrain, ``config.model == "pretrained"``) and return a ``TrainResult``.

    checkpoint: path of the ``.npz`` to write every ``checkpoint_every`` updates and at the end
        (None: write nothing).
    resume: continue from ``checkpoint``; its config must equal ``config`` apart from
        ``RESUMABLE_CHANGES`` (iterations, checkpoint_every, log_every, device, data, validation);
        pass ``config=None`` to take it as stored. The result is bit-identical to a run that was
        never interrupted (same θ, Adam state and task stream).
    progress: show a tqdm bar with the running meta-loss.
    Raises ``TrainingDiverged`` if the meta-loss turns NaN/inf; the checkpoint on disk is then
    the last good one.
    """
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs the checkpoint path to resume from")
        ckpt = read_checkpoint(checkpoint)
        saved = TrainConfig.from_dict(ckpt["config"])
        if config is None:
            config = saved
        diffs = {k: (v, getattr(config, k)) for k, v in saved.to_dict().items()
                 if k not in RESUMABLE_CHANGES and getattr(config, k) != v}
        if diffs:
            raise ConfigError(f"cannot resume {checkpoint!r} with a different configuration: "
                             + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diffs.items()))
        net, theta, start = ckpt["net"], ckpt["theta"], ckpt["iteration"]
        extra = ckpt["extra"]
        history = [tuple(row) for row in ckpt["history"]]
        val_history = [tuple(row) for row in ckpt["val_history"]]
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = ckpt["rng_state"]
        except (TypeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {checkpoint!r} has a malformed task-sampler state "
                                  f"({type(e).__name__}: {e}); it cannot be resumed") from None
        optimizer_state = ckpt["optimizer_state"]
        if optimizer_state is None:
            raise CheckpointError(f"checkpoint {checkpoint!r} has no optimizer state; it cannot be resumed")
        if start > config.iterations:
            raise ConfigError(f"checkpoint {checkpoint!r} is at iteration {start}, beyond the requested "
                             f"iterations={config.iterations}")
    else:
        config = config or TrainConfig()
        net = config.make_net()
        theta = net.init(config.seed).astype(config.dtype)
        extra = algorithms.extra(config.algorithm, net, config).astype(config.dtype)
        optimizer_state = None
        rng = task_rng(config.seed)
        start, history, val_history = 0, [], []

    spec = config.problem
    family = spec.family(config)
    if checkpoint is not None:
        check_writable(os.path.dirname(os.path.abspath(checkpoint)))
    xp, meta_grad, optimizer = _device_module(config)
    if optimizer_state is not None:
        try:
            optimizer.load_state_dict(optimizer_state)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {checkpoint!r} has a malformed optimizer state: {e}") from None
    dtype = np.dtype(config.dtype)
    theta = xp.array(theta, dtype=dtype)      # a copy: the GPU's Adam updates θ in place
    P = net.num_params
    if config.algorithm != "maml":            # the MAML family: optimise [θ, extra] together
        theta = np.concatenate([theta, np.asarray(extra, dtype=dtype)])
        step = _algorithm_step(config, net, spec.loss)
    pretrained = config.model == "pretrained"
    steps = 0 if pretrained else config.steps
    validate = _validation(config, spec, family, net) if config.val_every and not pretrained else None

    def stop(what, hint=True):
        bar.close()
        kept = (f"the last good checkpoint {checkpoint!r} (iteration {last_saved}) is kept"
                if checkpoint is not None and last_saved is not None else "no checkpoint was written")
        hint = (f" Try a smaller --meta-lr (now {config.meta_lr}) or --inner-lr (now {config.inner_lr})."
                if hint else "")
        raise TrainingDiverged(f"{what}; {kept}.{hint}")

    def save(iteration):
        # A finite loss can still be followed by an update that overflows θ or Adam's moments:
        # never save (or resume from) that.
        state = optimizer.state_dict()
        for name, value in (("θ", theta), ("Adam's m", state.get("m")), ("Adam's v", state.get("v"))):
            if value is not None and not bool(xp.isfinite(xp.asarray(value)).all()):
                stop(f"{name} became non-finite at iteration {iteration} (last finite meta-loss: {last_good})")
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, theta[:P], config.to_dict(), optimizer.state_dict(),
                            iteration=iteration, history=history, rng_state=rng.bit_generator.state,
                            loss=loss_name(spec.loss), val_history=val_history, extra=theta[P:])

    bar = progress_bar(progress, total=config.iterations, initial=start,
                        desc="pretrain" if pretrained else "meta-train")
    pending = []  # meta-losses since the last log line; read back once per period (a GPU sync)
    skipped = []  # why the meta-batches the algorithm refused since the last log line were refused
    last_good = None
    reference = history[0][1] if history else np.inf   # the run's starting meta-loss (set below)

    def flush(iteration):
        nonlocal pending, last_good, skipped
        losses = np.array([float(l) for l in pending])
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:             # first: a non-finite loss is the cause, whatever was skipped after it
            at = iteration - len(losses) + int(bad[0]) + 1
            stop(f"meta-loss became {losses[bad[0]]} at iteration {at} (last finite meta-loss: {last_good})")
        if skipped:
            period = len(skipped) + len(pending)
            what = (f"{len(skipped)} of the {period} meta-batches up to iteration {iteration} were skipped "
                    f"by {config.algorithm}; the last because {skipped[-1]}")
            if len(skipped) > SKIP_LIMIT * period:
                stop(what, hint=False)          # the refusal says what to change
            bar.write(f"warning: {what}")
            skipped = []
        if len(losses) and losses.mean() > GROWTH_LIMIT * reference:
            stop(f"the meta-loss {losses.mean():.3g} (iterations {iteration - len(losses) + 1}-{iteration}) is "
                 f"more than {GROWTH_LIMIT:g}x the run's starting meta-loss {reference:.3g}")
        if len(losses):
            last_good = float(losses[-1])
            history.append((iteration, float(losses.mean())))
            bar.update(len(losses))
            shown = f"meta-loss {losses.mean():.4f}"
            if val_history:
                shown += f", val {val_history[-1][1]:.1f}" + ("%" if spec.classification else "")
            bar.set_postfix_str(shown, refresh=False)
        pending = []

    def check_adaptation(after, before, iteration, warn):
        """The query loss after the inner steps against the same θ's on the same batch before them:
        far worse stops the run (at once, or at a checkpoint); worse at all is a warning at a
        checkpoint (not at the start: from a random θ a large α often makes the loss worse, and
        meta-training is what fixes that)."""
        if not (np.isfinite(after) and np.isfinite(before)):
            return                                      # reported by flush, as a non-finite meta-loss
        if after > ADAPTATION_LIMIT * before + 1e-12:
            stop(f"adaptation makes the loss {after / before:.3g}x worse at iteration {iteration} (query loss "
                 f"{before:.4g} before the {steps} inner step(s), {after:.4g} after): the inner step size "
                 f"is too large for this network")
        if warn and after > before:
            bar.write(f"warning: at iteration {iteration} adaptation makes the query loss worse ({before:.4g} "
                      f"before the inner steps, {after:.4g} after); consider a smaller inner step size")

    last_saved = start if resume else None
    done = start
    t0, cpu0 = time.perf_counter(), time.process_time()
    # Overflow is detected and reported (TrainingDiverged) rather than warned about per op.
    with np.errstate(over="ignore", invalid="ignore"), one_blas_thread():
        for it in range(start, config.iterations):
            batch = spec.train_batch(family, config, rng)                  # T tasks ~ p(T)
            xs, ys, xq, yq = (xp.asarray(a, dtype=dtype if a.dtype.kind == "f" else None) for a in batch)
            if pretrained:                                                 # regress on all points
                xq, yq = xp.concatenate([xs, xq], axis=1), xp.concatenate([ys, yq], axis=1)
            done = it + 1
            if config.algorithm == "maml":
                loss, g = meta_grad(net, theta, xs, ys, xq, yq, config.inner_lr, steps)  # adapt + query
            else:
                try:
                    loss, g = step(theta, (xs, ys, xq, yq), it)
                except ValueError as e:
                    # A meta-batch the algorithm refuses (iMAML: I + H/λ not positive definite, or its
                    # inner steps diverging) is skipped, never used; flush reports it, and stops the
                    # run if it keeps happening.
                    skipped.append(str(e))
                    loss = None
                if loss is not None and not np.isfinite(loss):     # never applied: flush stops the run
                    pending.append(loss)
                    flush(done)
                if loss is not None and not np.isfinite(g).all():
                    stop(f"the meta-gradient became non-finite at iteration {done} (meta-loss {loss:.4g})")
            if loss is not None:
                if it == 0:
                    reference = float(loss)
                if steps and (it == start or done % config.checkpoint_every == 0):
                    before = meta_grad(net, theta[:P], xs, ys, xq, yq, config.inner_lr, 0)[0]
                    check_adaptation(float(loss), float(before), done, warn=it != start)
                if config.cosine:
                    optimizer.lr = cosine_lr(it, config.iterations, config.meta_lr)
                theta = optimizer.step(theta, g)                           # θ ← θ − β Adam(g)
                pending.append(loss)
            out_of_time = config.max_seconds and time.process_time() - cpu0 > config.max_seconds
            last = done == config.iterations or out_of_time
            if validate is not None and (done % config.val_every == 0 or last):
                val_history.append((done, validate(theta)))
            if done % config.log_every == 0 or done % config.checkpoint_every == 0 or last:
                flush(done)
            if done % config.checkpoint_every == 0 and not last:
                save(done)
                last_saved = done
            if out_of_time:
                break
    flush(done)
    seconds = time.perf_counter() - t0
    save(done)
    bar.close()
    theta_host = theta.get() if hasattr(theta, "get") and xp is not np else theta
    return TrainResult(net, theta_host[:P], config, done, np.array(history).reshape(-1, 2),
                       seconds, done - start, None if checkpoint is None else os.fspath(checkpoint),
                       np.array(val_history).reshape(-1, 2), theta_host[P:])


def _validation(config, spec, family, net):
    """θ -> the mean metric (accuracy in %, or query MSE) on ``val_tasks`` fixed validation tasks
    after ``test_steps`` inner steps: one point of the learning curve."""
    from .evaluate import finetune_curves

    protocol = spec.protocol(config, num_tasks=config.val_tasks, steps=(config.test_steps,), split="val",
                             seed=config.seed)
    xs, ys, xq, yq, _ = spec.test_set(family, protocol)

    def validate(params):
        params = params.get() if hasattr(params, "get") else params
        P = net.num_params
        rule = algorithms.adaptation(config.algorithm, net, params[P:], config)
        curves = finetune_curves(net, params[:P], xs, ys, xq, yq, rule, config.test_steps, loss=spec.loss)
        return float(np.mean(curves[:, -1]))
    return validate


def progress_bar(enabled, **kwargs):
    """A tqdm bar (``kwargs``: total, initial, desc), or, when not ``enabled`` (``--quiet``), an object
    with the same methods that draws nothing and prints what is written to it. Shared by every loop
    that runs long: training, the online stream, navigation."""
    if enabled:
        from tqdm.auto import tqdm
        return tqdm(unit="it", mininterval=0.5, dynamic_ncols=True, **kwargs)

    class _Silent:
        def update(self, n):
            pass

        def write(self, s):
            print(s)

        def set_postfix_str(self, s, refresh=True):
            pass

        def close(self):
            pass
    return _Silent()


def pretrained_config(config):
    """The baseline's config for a MAML config: same data, budget, optimizer and seed."""
    return dataclasses.replace(config, model="pretrained")

