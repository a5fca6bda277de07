"""The MAML family in the training loop: every algorithm trains, checkpoints its extra
meta-parameters, resumes exactly, and adapts at test time by its own rule."""

import numpy as np
import pytest

from minimaml.meta import algorithms
from minimaml.meta.inner import Adaptation
from minimaml.run.checkpoint import read_checkpoint
from minimaml.run.evaluate import evaluate
from minimaml.run.problems import Protocol
from minimaml.run.train import ConfigError, TrainConfig, train

SMALL = dict(sizes=[1, 16, 16, 1], log_every=50, checkpoint_every=50)
EXTRA = dict(mamlpp=dict(steps=2, msl_iterations=60, first_order_iterations=20),
             imaml=dict(lam=100.0, inner_lr=0.002, steps=3))


@pytest.mark.parametrize("name", ["maml", "fomaml", "anil", "metasgd", "mamlpp", "reptile", "imaml"])
def test_every_algorithm_trains_and_resumes_exactly(name, tmp_path):
    config = dict(algorithm=name, **SMALL, **EXTRA.get(name, {}))
    full = train(TrainConfig(iterations=150, **config), checkpoint=tmp_path / "a.npz", progress=False)
    assert full.history[-1, 1] < full.history[0, 1]
    size = {"metasgd": full.net.num_params, "mamlpp": 2 * len(full.net.tensors())}.get(name, 0)
    assert full.extra.shape == (size,)
    ckpt = read_checkpoint(tmp_path / "a.npz")
    assert ckpt["config"]["algorithm"] == name
    np.testing.assert_array_equal(ckpt["extra"], full.extra)
    train(TrainConfig(iterations=100, **config), checkpoint=tmp_path / "b.npz", progress=False)
    resumed = train(TrainConfig(iterations=150, **config), checkpoint=tmp_path / "b.npz", resume=True, progress=False)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    np.testing.assert_array_equal(resumed.extra, full.extra)


def test_cosine_annealing_ends_at_zero(tmp_path):
    result = train(TrainConfig(iterations=50, cosine=True, **SMALL), checkpoint=tmp_path / "d.npz", progress=False)
    assert read_checkpoint(tmp_path / "d.npz")["optimizer_state"]["lr"] < 1e-6 < result.config.meta_lr


def test_each_algorithm_adapts_by_its_own_rule():
    config = TrainConfig(steps=2, lam=0.5, **SMALL)
    net = config.make_net()
    alpha = np.linspace(-0.01, 0.02, net.num_params)
    assert algorithms.adaptation("maml", net, None, config).sizes == [0.01]
    np.testing.assert_array_equal(algorithms.adaptation("anil", net, None, config).sizes[0],
                                  0.01 * net.head_mask())
    np.testing.assert_array_equal(algorithms.adaptation("metasgd", net, alpha, config).sizes[0], alpha)
    sizes = np.arange(2 * len(net.tensors()), dtype=float)
    rule = algorithms.adaptation("mamlpp", net, sizes, config)
    assert len(rule.sizes) == 2 and rule.size(5) is rule.sizes[1]         # past the trained steps: the last
    assert rule.sizes[1][0] == sizes[len(net.tensors())]                   # step 1's W_0 size
    assert algorithms.adaptation("imaml", net, None, config).lam == 0.5


def test_a_learned_rule_changes_the_evaluation():
    config = TrainConfig(iterations=40, algorithm="metasgd", **SMALL)
    result = train(config, progress=False)
    protocol = Protocol(num_tasks=20, k=5, steps=(0, 1, 5))
    own = evaluate(result.net, result.theta, protocol, algorithms.adaptation("metasgd", result.net, result.extra, config))
    plain = evaluate(result.net, result.theta, protocol, config.inner_lr)
    assert own[0].mean == plain[0].mean and own[2].mean != plain[2].mean
    assert isinstance(algorithms.adaptation("metasgd", result.net, result.extra, config), Adaptation)


def test_a_wall_clock_budget_stops_and_saves(tmp_path):
    result = train(TrainConfig(iterations=10**6, max_seconds=0.3, **SMALL), checkpoint=tmp_path / "c.npz",
                   progress=False)
    assert 0 < result.iteration < 10**6 and read_checkpoint(tmp_path / "c.npz")["iteration"] == result.iteration


@pytest.mark.parametrize("bad, match", [
    (dict(algorithm="maml2"), "unknown algorithm 'maml2'"),
    (dict(lam=0.0), r"lam \(λ\) must be a finite number > 0"),
    (dict(algorithm="mamlpp", steps=0), "MAML\\+\\+ needs at least one inner step"),
    (dict(algorithm="metasgd", device="cuda"), "runs on the CPU"),
    (dict(max_seconds=-1), "max_seconds must be a number >= 0"),
])
def test_bad_algorithm_settings_are_clear_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)


def test_refused_meta_batches_are_skipped_reported_and_stop_the_run_when_frequent(monkeypatch, capsys):
    import minimaml.run.train as train_mod
    real = train_mod._algorithm_step

    def refusing(every):
        def make(config, net, loss):
            step = real(config, net, loss)

            def maybe(params, batch, iteration):
                if iteration % every == 0:
                    raise ValueError("I + H/λ is not positive definite (a stand-in)")
                return step(params, batch, iteration)
            return maybe
        return make

    monkeypatch.setattr(train_mod, "_algorithm_step", refusing(25))          # 4 % of the batches
    result = train(TrainConfig(iterations=100, algorithm="fomaml", **SMALL), progress=False)
    assert result.iteration == 100
    assert "2 of the 50 meta-batches up to iteration 50 were skipped by fomaml" in capsys.readouterr().out
    monkeypatch.setattr(train_mod, "_algorithm_step", refusing(5))           # 20 %: the run stops
    with pytest.raises(Exception, match=r"10 of the 50 meta-batches .* skipped .*not positive definite"):
        train(TrainConfig(iterations=100, algorithm="fomaml", **SMALL), progress=False)
