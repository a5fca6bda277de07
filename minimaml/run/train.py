"""Meta-training: MAML's Algorithm 1 as a loop, with checkpoints, resume and a progress bar.

    θ ← init(seed)
    repeat for `iterations` meta-updates:
        sample T tasks, each with K support and K_q query points       (xs, ys, xq, yq)
        θ'_t = θ − α ∇θ L_support,t(θ)         (``steps`` times, per task)  ┐ meta_value_and_grad
        L_meta = 1/T Σ_t L_query,t(θ'_t),  g = ∇θ L_meta                     ┘
        θ ← Adam(θ, g) with step size β = meta_lr

The same loop trains the "pretrained" baseline of the paper (``model="pretrained"``): one
network regressed on all tasks jointly, i.e. the query-loss gradient at θ itself (zero inner
steps) on all K + K_q points of every sampled task.

Resuming is exact: a checkpoint stores θ, Adam's state and the task sampler's RNG state, so a
run interrupted at a checkpoint and resumed ends with the very same θ as an uninterrupted run.
"""

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .checkpoint import read_checkpoint, save_checkpoint
from ..nn.mlp import MLP
from ..optim import Adam
from ..tasks import Sinusoid

METHODS = ("hvp", "first_order", "autodiff", "hessian")
MODELS = ("maml", "pretrained")
DTYPES = ("float32", "float64")
DEVICES = ("cpu", "cuda")
# Fields that may differ between a checkpoint's config and a resumed run's config
# (a GPU run can continue on the CPU and vice versa: same float32 arithmetic, same state).
RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "log_every", "device")


class TrainingDiverged(RuntimeError):
    """The meta-loss became NaN or infinite; the last good checkpoint was left untouched."""


class ConfigError(ValueError):
    """An invalid training configuration, or one that does not match the checkpoint to resume."""


class DeviceUnavailable(RuntimeError):
    """``device="cuda"`` without CuPy or without a working GPU."""


@dataclass
class TrainConfig:
    """One training run. Defaults: the MAML paper's sinusoid setup (Finn et al. 2017, §5.1):
    a 1-40-40-1 ReLU network, one inner step of α = 0.01 on K = 10 support points, Adam with
    β = 1e-3 on meta-batches of 25 tasks, query sets of 10 points. The paper trains for 70,000
    meta-updates; the default here is shorter so that ``minimaml train`` takes about a minute.
    """
    sizes: list = field(default_factory=lambda: [1, 40, 40, 1])
    activation: str = "relu"
    inner_lr: float = 0.01          # α, the inner (adaptation) step size
    steps: int = 1                  # inner gradient steps during meta-training
    meta_lr: float = 1e-3           # β, Adam's step size for the outer update
    meta_batch: int = 25            # T, tasks per meta-update
    k_support: int = 10             # K, support points per task
    k_query: int = 10               # query points per task
    iterations: int = 50000         # meta-updates (the paper: 70000)
    method: str = "hvp"             # how the meta-gradient is computed (see maml.py)
    dtype: str = "float32"          # float32 is faster; float64 for exactness checks
    device: str = "cpu"             # "cuda": θ, Adam state and the meta-gradient on the GPU
    seed: int = 0                   # θ's init and the task stream
    model: str = "maml"             # "maml" or the "pretrained" baseline
    checkpoint_every: int = 5000
    log_every: int = 500

    def __post_init__(self):
        def need(ok, what):
            if not ok:
                raise ConfigError(f"invalid training config: {what}")
        self.sizes = [int(s) for s in self.sizes]
        need(math.isfinite(self.inner_lr) and self.inner_lr > 0, f"inner_lr must be > 0, got {self.inner_lr}")
        need(math.isfinite(self.meta_lr) and self.meta_lr > 0, f"meta_lr must be > 0, got {self.meta_lr}")
        need(int(self.steps) == self.steps and self.steps >= 0, f"steps must be an int >= 0, got {self.steps}")
        for name in ("meta_batch", "k_support", "k_query", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            need(int(value) == value and value >= 1, f"{name} must be an int >= 1, got {value}")
        need(int(self.iterations) == self.iterations and self.iterations >= 0,
             f"iterations must be an int >= 0, got {self.iterations}")
        need(self.method in METHODS, f"unknown method {self.method!r}; choose one of {METHODS}")
        need(self.model in MODELS, f"unknown model {self.model!r}; choose one of {MODELS}")
        need(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; choose one of {DTYPES}")
        need(self.device in DEVICES, f"unknown device {self.device!r}; choose one of {DEVICES}")
        need(self.device == "cpu" or self.method in ("hvp", "first_order"),
             f"device 'cuda' runs the methods 'hvp' and 'first_order', not {self.method!r}")
        need(self.device == "cpu" or self.dtype == "float32",
             f"device 'cuda' computes in float32, got dtype {self.dtype!r}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """A config from a checkpoint's dict; unknown keys are an error (a foreign config)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training-config keys {unknown}; known: {sorted(names)}")
        return cls(**d)


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

    def meta_grad(net, theta, xs, ys, xq, yq, inner_lr, steps):
        return meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, method=config.method)
    return np, meta_grad, Adam(config.meta_lr)


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
        ``RESUMABLE_CHANGES`` (iterations, checkpoint_every, log_every, device); pass
        ``config=None`` to take it as stored. The result is bit-identical to a run that was
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
        history = [tuple(row) for row in ckpt["history"]]
        rng = np.random.default_rng()
        rng.bit_generator.state = ckpt["rng_state"]
        optimizer_state = ckpt["optimizer_state"]
        if start > config.iterations:
            raise ConfigError(f"checkpoint {checkpoint!r} is at iteration {start}, beyond the requested "
                             f"iterations={config.iterations}")
    else:
        config = config or TrainConfig()
        net = MLP(config.sizes, config.activation)
        theta = net.init(config.seed).astype(config.dtype)
        optimizer_state = None
        rng = task_rng(config.seed)
        start, history = 0, []

    xp, meta_grad, optimizer = _device_module(config)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    family = Sinusoid()
    dtype = np.dtype(config.dtype)
    theta = xp.array(theta, dtype=dtype)      # a copy: the GPU's Adam updates θ in place
    T, K, Kq = config.meta_batch, config.k_support, config.k_query
    pretrained = config.model == "pretrained"
    steps = 0 if pretrained else config.steps

    def save(iteration):
        # A finite loss can still be followed by an update that overflows θ: never save that.
        if not bool(xp.isfinite(theta).all()):
            bar.close()
            raise TrainingDiverged(
                f"θ became non-finite at iteration {iteration} (last finite meta-loss: {last_good}); "
                + (f"the last good checkpoint {checkpoint!r} is kept" if checkpoint is not None
                   else "no checkpoint was written")
                + f". Try a smaller --meta-lr (now {config.meta_lr}) or --inner-lr (now {config.inner_lr}).")
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, theta, config.to_dict(), optimizer.state_dict(),
                            iteration=iteration, history=history, rng_state=rng.bit_generator.state)

    bar = _progress_bar(progress, total=config.iterations, initial=start,
                        desc="pretrain" if pretrained else "meta-train")
    pending = []  # meta-losses since the last log line; read back once per period (a GPU sync)
    last_good = None

    def flush(iteration):
        nonlocal pending, last_good
        losses = np.array([float(l) for l in pending])
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            at = iteration - len(losses) + int(bad[0]) + 1
            kept = (f"the last good checkpoint {checkpoint!r} (iteration {last_saved}) is kept"
                    if checkpoint is not None and last_saved is not None else "no checkpoint was written")
            bar.close()
            raise TrainingDiverged(
                f"meta-loss became {losses[bad[0]]} at iteration {at} (last finite meta-loss: "
                f"{last_good}); {kept}. Try a smaller --meta-lr (now {config.meta_lr}) or "
                f"--inner-lr (now {config.inner_lr}).")
        if len(losses):
            last_good = float(losses[-1])
            history.append((iteration, float(losses.mean())))
            bar.update(len(losses))
            bar.set_postfix_str(f"meta-loss {losses.mean():.4f}", refresh=False)
        pending = []

    last_saved = start if resume else None
    t0 = time.perf_counter()
    # Overflow is detected and reported (TrainingDiverged) rather than warned about per op.
    with np.errstate(over="ignore", invalid="ignore"):
        for it in range(start, config.iterations):
            tasks = family.sample(T, K, Kq, rng)                           # T tasks ~ p(T)
            xs, ys, xq, yq = (xp.asarray(a, dtype=dtype) for a in (tasks.xs, tasks.ys, tasks.xq, tasks.yq))
            if pretrained:                                                 # regress on all points
                xq, yq = xp.concatenate([xs, xq], axis=1), xp.concatenate([ys, yq], axis=1)
            loss, g = meta_grad(net, theta, xs, ys, xq, yq, config.inner_lr, steps)  # adapt + query
            theta = optimizer.step(theta, g)                               # θ ← θ − β Adam(g)
            pending.append(loss)
            done = it + 1
            if done % config.log_every == 0 or done % config.checkpoint_every == 0 or done == config.iterations:
                flush(done)
            if done % config.checkpoint_every == 0 and done != config.iterations:
                save(done)
                last_saved = done
    flush(config.iterations)
    seconds = time.perf_counter() - t0
    save(config.iterations)
    bar.close()
    theta_host = theta.get() if hasattr(theta, "get") and xp is not np else theta
    return TrainResult(net, theta_host, config, config.iterations, np.array(history).reshape(-1, 2),
                       seconds, config.iterations - start, None if checkpoint is None else os.fspath(checkpoint))


def _progress_bar(enabled, **kwargs):
    if enabled:
        from tqdm.auto import tqdm
        return tqdm(unit="it", mininterval=0.5, dynamic_ncols=True, **kwargs)

    class _Silent:
        def update(self, n):
            pass

        def set_postfix_str(self, s, refresh=True):
            pass

        def close(self):
            pass
    return _Silent()


def pretrained_config(config):
    """The baseline's config for a MAML config: same data, budget, optimizer and seed."""
    return dataclasses.replace(config, model="pretrained")

