"""Training on navigation: checkpoints, exact resume, divergence, the evaluation table, the figure, and
the command-line entry points (called directly: minimaml/cli.py hooks them)."""
import argparse
import dataclasses
import json

import numpy as np
import pytest

import minimaml.rl.maml_rl as maml_rl
from minimaml.run.train import ConfigError, TrainingDiverged
from minimaml.rl import train as rl_train
from minimaml.rl.train import NavConfig, read_navigation_checkpoint, train_navigation

SMALL = dict(sizes=[2, 8, 2], horizon=8, meta_batch=3, trajectories=4, log_every=2, checkpoint_every=2)


@pytest.mark.parametrize("cosine", [False, True])
def test_resume_continues_bit_for_bit(tmp_path, monkeypatch, cosine):
    config = NavConfig(iterations=6, cosine=cosine, **SMALL)
    full = train_navigation(config, tmp_path / "a.npz", progress=False)
    real, calls = maml_rl.meta_step, []

    def interrupted(*args, **kwargs):       # Ctrl-C during iteration 5: the checkpoint of iteration 4 remains
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(maml_rl, "meta_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_navigation(config, tmp_path / "b.npz", progress=False)
    monkeypatch.setattr(maml_rl, "meta_step", real)
    assert read_navigation_checkpoint(tmp_path / "b.npz")["iteration"] == 4
    resumed = train_navigation(config, tmp_path / "b.npz", resume=True, progress=False)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    np.testing.assert_array_equal(resumed.history, full.history)
    saved = read_navigation_checkpoint(tmp_path / "b.npz")
    assert saved["iteration"] == 6 and saved["theta"].dtype == np.float32
    assert full.history.shape == (3, 4) and list(full.history[:, 0]) == [2, 4, 6]


def test_resume_refuses_a_different_config_and_a_dict_config_works(tmp_path):
    train_navigation(dict(iterations=2, **SMALL), tmp_path / "c.npz", progress=False)
    with pytest.raises(ConfigError, match="inner_lr was 0.5, now 0.1"):
        train_navigation(NavConfig(iterations=4, inner_lr=0.1, **SMALL), tmp_path / "c.npz", resume=True,
                         progress=False)
    with pytest.raises(ConfigError, match="unknown estimator"):
        NavConfig(estimator="exact")


def test_a_non_finite_gradient_stops_the_run_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    real, calls = maml_rl.meta_step, []

    def broken(*args, **kwargs):
        calls.append(1)
        step = real(*args, **kwargs)
        if len(calls) == 3:
            step.grad[0] = np.nan
        return step
    monkeypatch.setattr(maml_rl, "meta_step", broken)
    with pytest.raises(TrainingDiverged, match="iteration 3.*checkpoint of iteration 2 is kept"):
        train_navigation(NavConfig(iterations=6, **SMALL), tmp_path / "d.npz", progress=False)
    assert read_navigation_checkpoint(tmp_path / "d.npz")["iteration"] == 2


@dataclasses.dataclass
class SmallConfig(NavConfig):
    """NavConfig with SMALL's values as defaults, for the command line's entry points."""
    sizes: list = dataclasses.field(default_factory=lambda: [2, 8, 2])
    horizon: int = 8
    meta_batch: int = 3
    trajectories: int = 4


def _args(**kw):
    base = dict(out=None, resume=False, quiet=True, no_baseline=False, checkpoint=None, tasks=None, steps=None,
                inner_lr=None, seed=2017, json=None, trajectories=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_the_cli_entry_points_train_evaluate_and_plot(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    monkeypatch.setattr(rl_train, "NavConfig", SmallConfig)
    assert rl_train.cli_train(_args(out=str(out), iterations=4, estimator="biased")) == 0
    assert (out / "checkpoint.npz").exists() and (out / "pretrained.npz").exists() and (out / "figure.png").exists()
    assert read_navigation_checkpoint(out / "pretrained.npz")["config"].model == "pretrained"
    assert rl_train.is_navigation_checkpoint(str(out)) and not rl_train.is_navigation_checkpoint(str(tmp_path))

    assert rl_train.cli_eval(_args(checkpoint=str(out), tasks=3, trajectories=4, json=str(tmp_path / "e.json"))) == 0
    text = capsys.readouterr().out
    for name in ("MAML", "pretrained", "random init", "-40.41"):
        assert name in text, text
    rows = json.loads((tmp_path / "e.json").read_text())
    assert {r["model"] for r in rows} == {"MAML", "pretrained", "random init"}
    assert {r["steps"] for r in rows} == {0, 1, 2, 3}

    assert rl_train.cli_plot(_args(checkpoint=str(out), out=str(tmp_path / "f.png"), seed=4)) == 0
    assert (tmp_path / "f.png").stat().st_size > 10_000

    with pytest.raises(ConfigError, match="does not use --ways"):
        rl_train.cli_train(_args(out=str(out), ways=5))


def test_eval_goals_are_the_released_scripts_for_seed_1():
    np.testing.assert_array_equal(rl_train.eval_goals(40, seed=1),
                                  np.random.RandomState(1).uniform(-0.5, 0.5, size=(40, 2)))
