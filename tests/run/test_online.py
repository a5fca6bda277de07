"""The online runner: the metric on hand-made curves, records per task on a tiny stream, exact resume,
divergence stops the run, bad settings are clear errors, and the `minimaml online` functions."""

import argparse
import json

import numpy as np
import pytest

import minimaml.run.online as online
from minimaml.run.online import (OnlineConfig, add_online_parser, cmd_online, points_to_proficiency,
                                 read_online_checkpoint, run_online, stream_task)
from minimaml.run.train import ConfigError, TrainingDiverged

TINY = dict(num_tasks=3, batch=2, max_points=6, query_points=20, sizes=(1, 8, 1), updates=3, finetune_updates=3,
            meta_batch=2, k_support=2, k_query=2)


def test_points_to_proficiency_on_hand_made_curves():
    curves = np.array([[1.0, 0.5, 0.2, 0.1],      # below 0.3 from the third batch on: 15 points
                       [0.9, 0.8, 0.7, 0.6],      # never: inf
                       [0.1, 0.5, 0.05, 0.01],    # at once (what comes after does not matter): 5
                       [0.4, 0.3, 0.3, 0.29]])    # equal to the threshold is not below it: 20
    points = np.array([5, 10, 15, 20])
    np.testing.assert_array_equal(points_to_proficiency(curves, points, 0.3), [15, np.inf, 5, 20])
    assert points_to_proficiency(curves[0], points, 0.15) == 20
    assert points_to_proficiency(curves[0], points, 2.0) == 5


def test_a_tiny_stream_records_every_learner_after_every_batch():
    result = run_online(OnlineConfig(**TINY), progress=False)
    assert result.tasks_done == 3 and list(result.points) == [2, 4, 6]
    assert set(result.mse) == {"ftml", "ftml-ft", "ftl", "toe", "scratch"}
    for name, curves in result.mse.items():
        assert curves.shape == (3, 3) and np.isfinite(curves).all(), name
        assert result.train_loss[name].shape == (3, 3) and np.isfinite(result.train_loss[name]).all()
        np.testing.assert_array_equal(result.points_to_proficiency(name),
                                      points_to_proficiency(curves, [2, 4, 6], TINY.get("threshold", 0.3)))
    # each task is the stream's: its amplitude and phase are recorded
    np.testing.assert_array_equal(result.tasks[1], stream_task(OnlineConfig(**TINY), 1)[4])
    # TOE is the joint model as it is: its MSE on a task is that model's on the query set
    x, y, xq, yq, _ = stream_task(OnlineConfig(**TINY), 2)
    assert result.mse["toe"][2].std() > 0          # it keeps training as the batches arrive


def test_the_stream_is_a_function_of_the_seed_and_the_position():
    a, b = OnlineConfig(**TINY), OnlineConfig(**{**TINY, "seed": 1})
    x0, y0, xq, yq, (amp, phase) = stream_task(a, 0)
    assert x0.shape == (6, 1) and xq.shape == (20, 1) and 0.1 <= amp <= 5 and 0 <= phase <= np.pi
    np.testing.assert_allclose(y0, amp * np.sin(x0 - phase))
    np.testing.assert_array_equal(stream_task(a, 0)[0], x0)
    assert not np.array_equal(stream_task(a, 1)[0], x0) and not np.array_equal(stream_task(b, 0)[0], x0)


def test_a_subset_of_learners():
    result = run_online(OnlineConfig(**{**TINY, "learners": ("ftml", "ftl")}), progress=False)
    assert set(result.mse) == {"ftml", "ftl"}


def test_resume_gives_the_same_records_as_an_uninterrupted_run(tmp_path):
    full = run_online(OnlineConfig(**{**TINY, "num_tasks": 4, "checkpoint_every": 2}), tmp_path / "a.npz",
                      progress=False)
    run_online(OnlineConfig(**{**TINY, "num_tasks": 2}), tmp_path / "b.npz", progress=False)
    assert read_online_checkpoint(tmp_path / "b.npz")["tasks_done"] == 2
    resumed = run_online(OnlineConfig(**{**TINY, "num_tasks": 4}), tmp_path / "b.npz", resume=True, progress=False)
    for name in full.mse:
        np.testing.assert_array_equal(resumed.mse[name], full.mse[name])
    a, b = read_online_checkpoint(tmp_path / "a.npz"), read_online_checkpoint(tmp_path / "b.npz")
    assert b["tasks_done"] == 4 and set(a["models"]) == {"ftml", "toe"}
    for name in a["models"]:
        np.testing.assert_array_equal(b["models"][name][0], a["models"][name][0])
        np.testing.assert_array_equal(b["models"][name][1]["m"], a["models"][name][1]["m"])


def test_resume_refuses_a_different_config(tmp_path):
    run_online(OnlineConfig(**TINY), tmp_path / "c.npz", progress=False)
    with pytest.raises(ConfigError, match="cannot resume.*threshold was 0.3, now 0.5"):
        run_online(OnlineConfig(**{**TINY, "threshold": 0.5}), tmp_path / "c.npz", resume=True, progress=False)


def test_a_learner_that_diverges_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real = online._finetune

    def nan_on_the_third_task(net, theta, x, y, updates, lr):
        theta, losses = real(net, theta, x, y, updates, lr)
        if calls.append(1) or len(calls) > 3 * 3 * 2:       # 3 fine-tuned learners, 3 batches, 2 tasks: then nan
            losses[-1] = np.nan
        return theta, losses
    calls = []
    monkeypatch.setattr(online, "_finetune", nan_on_the_third_task)
    path = tmp_path / "d.npz"
    with pytest.raises(TrainingDiverged, match=r"ftml-ft's training loss became nan \(ftml-ft, task 3, after 2 "
                                               r"points\).*last checkpoint .*d.npz.* \(after 2 tasks\) is kept"):
        run_online(OnlineConfig(**{**TINY, "checkpoint_every": 1}), path, progress=False)
    assert read_online_checkpoint(path)["tasks_done"] == 2


def test_a_huge_meta_step_stops_the_run():
    with pytest.raises(TrainingDiverged, match="(ftml|toe)'s (training loss|parameters)"):
        run_online(OnlineConfig(**{**TINY, "meta_lr": 1e30, "num_tasks": 5, "learners": ("ftml", "toe")}),
                   progress=False)


@pytest.mark.parametrize("bad, match", [
    (dict(batch=8, max_points=6), "batch size b = 8 is larger than max_points n_max = 6"),
    (dict(batch=4, max_points=6), "n_max = 6 must be a multiple of the batch size b = 4"),
    (dict(batch=1), "batch must be an int >= 2, got 1; FTML splits"),
    (dict(threshold=0.0), r"threshold \(γ, a query MSE\) must be a finite number > 0, got 0.0"),
    (dict(threshold=float("nan")), "threshold"),
    (dict(learners=("ftml", "magic")), "learners must be a non-empty list of distinct names"),
    (dict(learners=()), "learners must be a non-empty list"),
    (dict(sizes=(2, 8, 1)), "from 1 input to 1 output"),
    (dict(finetune_lr=-1.0), "finetune_lr must be a finite number > 0"),
    (dict(dtype="float16"), "dtype must be"),
])
def test_bad_settings_are_clear_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        OnlineConfig(**{**TINY, **bad})


# ------------------------------------------------------------------------------------------
# The command line functions
# ------------------------------------------------------------------------------------------
def parser():
    p = argparse.ArgumentParser(prog="minimaml")
    add_online_parser(p.add_subparsers(dest="command"))
    return p


TINY_ARGS = ["online", "--tasks", "3", "--batch", "2", "--max-points", "6", "--query-points", "20", "--sizes", "1,8,1",
             "--updates", "3", "--finetune-updates", "3", "--meta-batch", "2", "--k", "2", "--k-query", "2", "--quiet"]


def test_the_online_command_parses_runs_and_writes_its_files(tmp_path, capsys):
    args = parser().parse_args(TINY_ARGS + ["--out", str(tmp_path), "--threshold", "0.5", "--learners", "ftml,scratch"])
    assert args.threshold == 0.5 and args.learners == ("ftml", "scratch") and args.sizes == (1, 8, 1)
    assert cmd_online(args) == 0
    out = capsys.readouterr().out
    assert "threshold query MSE < 0.5" in out and "ftml" in out and "scratch" in out
    rows = json.loads((tmp_path / "results.json").read_text())
    assert rows["points"] == [2, 4, 6] and set(rows["mse"]) == {"ftml", "scratch"} and len(rows["tasks"]) == 3
    assert (tmp_path / "figure.png").stat().st_size > 1000
    assert read_online_checkpoint(tmp_path / "checkpoint.npz")["tasks_done"] == 3
    # --resume with a longer stream continues from the checkpoint
    assert cmd_online(parser().parse_args(TINY_ARGS[:2] + ["5", "--out", str(tmp_path), "--resume", "--quiet"])) == 0
    assert len(json.loads((tmp_path / "results.json").read_text())["tasks"]) == 5


@pytest.mark.parametrize("argv, match", [
    (["--threshold", "0"], "must be a finite number > 0"),
    (["--batch", "1"], "must be >= 2"),
    (["--learners", "ftml,nope"], "expected names from"),
    (["--sizes", "1,x,1"], "expected comma-separated integers"),
])
def test_bad_command_line_values_are_clear_errors(argv, match, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["online"] + argv)
    assert match in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint at"):
        cmd_online(parser().parse_args(TINY_ARGS + ["--out", str(tmp_path), "--resume"]))
