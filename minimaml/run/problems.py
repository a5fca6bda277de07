"""The problems the command line trains on: a task family with its model, loss and protocols.

The training loop, the evaluation and the checkpoints know none of them in particular: a config
names a problem (``config.task``) and this module says what it means:

    defaults                 the paper's setup for it (network, α, K, meta-batch, iterations)
    family(config)           the task family object (``minimaml.tasks``)
    train_batch(...)         a meta-training batch of T tasks: xs, ys, xq, yq
    protocol(...)            the fixed test protocol; ``test_set(...)`` draws its tasks
    loss, classification     the loss, and whether the metric is accuracy (else the query loss)

* ``sinusoid`` — regression (Finn et al. 2017, §5.1): 1-40-40-1 ReLU, MSE, α = 0.01, K = 10.
* ``omniglot`` — N-way K-shot classification (§5.2, the "MAML, no conv" row of Table 1):
  784-256-128-64-64-N with batch norm and ReLU, softmax cross-entropy, meta-batch 32, one inner
  step while meta-training and 3 at test. The released code's inner step is α = 0.4 on a loss that
  is the *sum* of the cross-entropies of a task's N·K points divided by K, i.e. N × the mean
  cross-entropy; minimaml's loss is the mean, so the same step is α = 0.4·N (2.0 for 5-way).
"""
import dataclasses

import numpy as np

from ..nn import mse, softmax_cross_entropy
from ..tasks import Omniglot, Sinusoid


@dataclasses.dataclass(frozen=True)
class Protocol:
    """A fixed, seeded test: ``num_tasks`` tasks with ``k`` support points (per class, for
    classification), ``num_query`` query points (sinusoid: evenly spaced on [−5, 5]; classification:
    per class), fine-tuned with gradient descent of step α (the model's training α unless
    ``inner_lr``), measured after each count in ``steps``."""
    num_tasks: int = 1000
    k: int = 10
    num_query: int = 100
    steps: tuple = (0, 1, 5, 10)
    inner_lr: float = None
    seed: int = 2017
    split: str = "test"

    def __post_init__(self):
        for name in ("num_tasks", "k", "num_query"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not self.steps or any(int(s) != s or s < 0 for s in self.steps):
            raise ValueError(f"steps must be a non-empty list of ints >= 0, got {self.steps!r}")
        if self.inner_lr is not None and not (np.isfinite(self.inner_lr) and self.inner_lr > 0):
            raise ValueError(f"inner_lr must be > 0, got {self.inner_lr!r}")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")


class SinusoidProblem:
    name = "sinusoid"
    loss = mse
    classification = False
    defaults = dict(sizes=[1, 40, 40, 1], norm=None, inner_lr=0.01, meta_batch=25, k_support=10,
                    k_query=10, iterations=50000, test_steps=10, val_every=0)

    @staticmethod
    def family(config):
        return Sinusoid()

    @staticmethod
    def train_batch(family, config, rng):
        b = family.sample(config.meta_batch, config.k_support, config.k_query, rng)
        return b.xs, b.ys, b.xq, b.yq

    @staticmethod
    def protocol(config, **overrides):
        return Protocol(**{"k": config.k_support, **overrides})

    @staticmethod
    def test_set(family, protocol):
        """The protocol's test sinusoids: xs, ys (T, K, 1), xq, yq (T, N, 1) float64, and params.
        Drawn here, in a fixed order (amplitudes, phases, support x), rather than by
        ``Sinusoid.sample``, so the test set stays the same if the training sampler changes; the
        "val" split draws from another stream of the same seed."""
        stream = {"test": 2, "val": 5}[protocol.split]
        rng = np.random.default_rng([int(protocol.seed), stream])
        T = protocol.num_tasks
        params = {"amplitude": rng.uniform(*family.amp_range, size=T),
                  "phase": rng.uniform(*family.phase_range, size=T)}
        xs = rng.uniform(*family.x_range, size=(T, protocol.k, 1))
        grid = np.linspace(*family.x_range, protocol.num_query)[:, None]
        yq = Sinusoid.function(params, grid)
        return xs, Sinusoid.function(params, xs), np.broadcast_to(grid, yq.shape), yq, params

    @staticmethod
    def describe(protocol, inner_lr):
        return (f"{protocol.num_tasks} {protocol.split} sinusoids (seed {protocol.seed}), K={protocol.k} "
                f"support points x~U[-5,5], query MSE on {protocol.num_query} evenly spaced x in [-5,5]")


class OmniglotProblem:
    name = "omniglot"
    loss = softmax_cross_entropy
    classification = True
    defaults = dict(sizes=None, norm="batch", inner_lr=None, meta_batch=32, k_support=1, k_query=None,
                    iterations=60000, test_steps=3, val_every=1000)

    @staticmethod
    def resolve(config):
        """Defaults that depend on other settings: the network's N outputs, α = 0.4·N, Q = K."""
        changes = {}
        if config.sizes is None:
            changes["sizes"] = [784, 256, 128, 64, 64, config.ways]
        if config.inner_lr is None:
            changes["inner_lr"] = 0.4 * config.ways
        if config.k_query is None:
            changes["k_query"] = config.k_support
        return changes

    @staticmethod
    def family(config):
        return Omniglot(data=config.data, ways=config.ways)

    @staticmethod
    def train_batch(family, config, rng):
        b = family.sample(config.meta_batch, config.k_support, config.k_query, rng, split="train")
        return b.xs, b.ys, b.xq, b.yq

    @staticmethod
    def protocol(config, **overrides):
        """The released code's test: 600 tasks, K shots and K query examples per class."""
        return Protocol(**{"num_tasks": 600, "k": config.k_support, "num_query": config.k_query,
                           "steps": (0, 1, 3, 5, 10), **overrides})

    @staticmethod
    def test_set(family, protocol):
        b = family.sample(protocol.num_tasks, protocol.k, protocol.num_query,
                          np.random.default_rng([int(protocol.seed), 2]), split=protocol.split)
        return b.xs, b.ys, b.xq, b.yq, b.params

    @staticmethod
    def describe(protocol, inner_lr):
        return (f"{protocol.num_tasks} {protocol.split} tasks (seed {protocol.seed}) of characters never "
                f"seen in training, {protocol.k} support and {protocol.num_query} query images per class, "
                f"each class rotated by a random multiple of 90 degrees; accuracy on the query images")


PROBLEMS = {p.name: p for p in (SinusoidProblem, OmniglotProblem)}


def problem(name):
    if name not in PROBLEMS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(PROBLEMS)}")
    return PROBLEMS[name]
