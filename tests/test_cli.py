"""The command line: train -> eval -> plot on a tiny run, and clean errors for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from minimaml import __version__
from minimaml.run.checkpoint import read_checkpoint
from minimaml.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--iterations", "30", "--log-every", "10", "--out", str(out), "--quiet"]) == 0
    return out


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    assert main([]) == 0
    assert "train" in capsys.readouterr().out


def test_python_dash_m_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "minimaml", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"minimaml {__version__}"


def test_train_writes_checkpoint_baseline_and_figure(run_dir):
    ckpt = read_checkpoint(run_dir / "checkpoint.npz")
    assert ckpt["iteration"] == 30 and ckpt["config"]["model"] == "maml"
    assert ckpt["net"].sizes == [1, 40, 40, 1] and ckpt["config"]["inner_lr"] == 0.01
    assert read_checkpoint(run_dir / "pretrained.npz")["config"]["model"] == "pretrained"
    assert (run_dir / "figure.png").read_bytes()[:8] == PNG_MAGIC


def test_train_resume_extends_the_run(run_dir, tmp_path):
    import shutil
    out = tmp_path / "r"
    shutil.copytree(run_dir, out)
    assert main(["train", "--resume", "--iterations", "40", "--out", str(out), "--quiet", "--no-baseline"]) == 0
    assert read_checkpoint(out / "checkpoint.npz")["iteration"] == 40


def test_eval_prints_both_models_and_is_reproducible(run_dir, capsys, tmp_path):
    args = ["eval", str(run_dir / "checkpoint.npz"), "--tasks", "20", "--k", "5", "--steps", "0,1,10"]
    assert main(args + ["--json", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "20 test sinusoids" in out and "K=5" in out
    assert "MAML" in out and "pretrained" in out and "diverged" in out
    assert main(args + ["--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a == b
    assert [(r["model"], r["steps"]) for r in a] == [(m, s) for m in ("MAML", "pretrained") for s in (0, 1, 10)]
    assert set(a[0]) == {"model", "steps", "mean", "ci95", "median", "diverged", "tasks"}
    assert a[0]["tasks"] == 20 and a[0]["ci95"] > 0


def test_eval_baseline_inner_lr_changes_only_the_baseline(run_dir, capsys, tmp_path):
    args = ["eval", str(run_dir), "--tasks", "20", "--steps", "0,1,5"]
    assert main(args + ["--json", str(tmp_path / "same.json")]) == 0
    assert main(args + ["--baseline-inner-lr", "0.03", "--json", str(tmp_path / "tuned.json")]) == 0
    assert "baseline is fine-tuned with alpha=0.03" in capsys.readouterr().out
    same, tuned = (json.loads((tmp_path / f).read_text()) for f in ("same.json", "tuned.json"))
    assert same[:3] == tuned[:3]                                    # MAML's rows
    assert same[3] == tuned[3]                                      # the baseline after 0 steps: no fine-tuning yet
    assert same[5]["model"] == "pretrained" and same[5]["mean"] != tuned[5]["mean"]


def test_eval_sharpness_reports_lambda_max_against_2_over_alpha(run_dir, capsys, tmp_path):
    args = ["eval", str(run_dir / "checkpoint.npz"), "--tasks", "8", "--no-baseline", "--sharpness", "8",
            "--inner-lr", "0.02"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "2/alpha = 100" in out and "first 8 test tasks" in out
    median = float(out.split("lambda_max of the support-loss Hessian: median ")[1].split(",")[0])
    assert median > 0


def test_eval_backtrack_and_run_folder(run_dir, capsys):
    assert main(["eval", str(run_dir), "--tasks", "10", "--steps", "1,5", "--backtrack"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint.npz" in out and "with --backtrack" in out


def test_plot_writes_a_png(run_dir, tmp_path, capsys):
    png = tmp_path / "fig.png"
    assert main(["plot", str(run_dir / "checkpoint.npz"), "--out", str(png), "--k", "5"]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("argv", [
    ["train", "--iterations", "-5"],
    ["train", "--inner-lr", "0"],
    ["train", "--method", "magic"],
    ["eval", "x.npz", "--steps", "a,b"],
    ["train", "--seed", "-1"],
    ["eval", "x.npz", "--seed", "-1"],
    ["plot", "x.npz", "--seed", "-1"],
    ["train", "--dtype", "float16"],
    ["frobnicate"],
])
def test_bad_arguments_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


def test_resume_with_a_different_config_is_refused(run_dir, capsys):
    assert main(["train", "--resume", "--out", str(run_dir), "--inner-lr", "0.05", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "cannot resume" in err and "inner_lr was 0.01, now 0.05" in err and "Traceback" not in err
    assert read_checkpoint(run_dir / "checkpoint.npz")["iteration"] == 30     # untouched


def test_user_errors_print_one_line_without_traceback(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.npz")]) == 1
    err = capsys.readouterr().err
    assert "missing.npz" in err and "does not exist" in err and "Traceback" not in err
    np.savez(tmp_path / "foreign.npz", a=np.ones(2))
    assert main(["plot", str(tmp_path / "foreign.npz")]) == 1
    assert "not a minimaml checkpoint" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(tmp_path / "none"), "--quiet"]) == 1
    assert "no checkpoint" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Omniglot (the real zips in ../shared/data/omniglot, cached in a temporary folder)
# ------------------------------------------------------------------------------------------
OMNIGLOT = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"


@pytest.fixture(scope="module")
def omniglot_cache(tmp_path_factory):
    # One decoded copy of the zips for the module's Omniglot runs.
    mp = pytest.MonkeyPatch()
    mp.setenv("MINIMAML_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def omniglot_run(tmp_path_factory, omniglot_cache):
    out = tmp_path_factory.mktemp("omniglot")
    assert main(["train", "--task", "omniglot", "--ways", "3", "--shots", "1", "--data", str(OMNIGLOT),
                 "--iterations", "20", "--val-every", "10", "--log-every", "10", "--out", str(out), "--quiet"]) == 0
    return out


def test_omniglot_train_writes_checkpoint_curve_and_figure(omniglot_run):
    ckpt = read_checkpoint(omniglot_run / "checkpoint.npz")
    assert ckpt["net"].sizes == [784, 256, 128, 64, 64, 3] and ckpt["net"].norm == "batch"
    assert ckpt["loss"].__name__ == "softmax_cross_entropy" and ckpt["config"]["inner_lr"] == pytest.approx(1.2)
    assert ckpt["val_history"].shape == (2, 2) and list(ckpt["val_history"][:, 0]) == [10, 20]
    assert 0 <= ckpt["val_history"][:, 1].min() and ckpt["val_history"][:, 1].max() <= 100
    for name in ("curve.png", "figure.png"):
        assert (omniglot_run / name).read_bytes()[:8] == PNG_MAGIC
    assert not (omniglot_run / "pretrained.npz").exists()


def test_omniglot_eval_reports_accuracy_rows(omniglot_run, capsys, tmp_path):
    out_json = tmp_path / "acc.json"
    assert main(["eval", str(omniglot_run), "--tasks", "12", "--steps", "0,1,3", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "query accuracy (%)" in out and "12 test tasks" in out and "pretrained" not in out
    rows = json.loads(out_json.read_text())
    assert [(r["model"], r["steps"], r["tasks"]) for r in rows] == [("MAML", s, 12) for s in (0, 1, 3)]
    assert all(0 <= r["mean"] <= 100 for r in rows) and rows[0]["diverged"] == 0


def test_omniglot_plot_and_bad_data_folder(omniglot_run, tmp_path, capsys):
    png = tmp_path / "task.png"
    assert main(["plot", str(omniglot_run), "--out", str(png), "--seed", "3"]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert main(["plot", str(omniglot_run), "--out", str(tmp_path / "task")]) == 1
    assert "--out must name a .png file" in capsys.readouterr().err
    assert main(["train", "--task", "omniglot", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "images_background.zip" in err and "Traceback" not in err


def test_eval_refuses_a_checkpoint_with_an_invalid_config(run_dir, tmp_path, capsys):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    with np.load(bad / "checkpoint.npz") as data:
        arrays = {k: data[k] for k in data.files}
    config = json.loads(str(arrays["config"]))
    arrays["config"] = np.array(json.dumps({**config, "inner_lr": -1}))
    np.savez(bad / "checkpoint.npz", **arrays)
    assert main(["eval", str(bad), "--tasks", "5"]) == 1
    err = capsys.readouterr().err
    assert "inner_lr must be a finite number > 0, got -1" in err and "Traceback" not in err


def test_eval_retrains_a_cached_baseline_of_another_run(run_dir, tmp_path, capsys):
    """pretrained.npz is reused only if it is this run's baseline (same seed, budget, K, ...)."""
    import shutil
    out = tmp_path / "other"
    shutil.copytree(run_dir, out)
    assert main(["train", "--iterations", "30", "--log-every", "10", "--seed", "1", "--out", str(tmp_path / "s1"),
                 "--quiet"]) == 0
    shutil.copy(tmp_path / "s1" / "checkpoint.npz", out / "checkpoint.npz")   # a seed-1 run, a seed-0 baseline
    capsys.readouterr()
    assert main(["eval", str(out), "--tasks", "5"]) == 0
    assert "it differs in ['seed']" in capsys.readouterr().out


def test_a_run_folder_without_a_checkpoint_is_named(tmp_path, capsys):
    for command in ("eval", "plot"):
        assert main([command, str(tmp_path)]) == 1
        assert "holds no checkpoint.npz" in capsys.readouterr().err


def test_plot_refuses_an_output_that_is_not_a_png(run_dir, tmp_path, capsys):
    for out in (tmp_path, tmp_path / "fig", tmp_path / "fig.xyz"):
        assert main(["plot", str(run_dir), "--out", str(out)]) == 1
        assert "--out must name a .png file" in capsys.readouterr().err


@pytest.mark.parametrize("task, algorithm, extra", [
    ("sinusoid", "metasgd", []),
    ("sinusoid", "imaml", ["--lam", "100", "--inner-lr", "0.002", "--steps", "2"]),
    ("omniglot", "metasgd", []),
    ("omniglot", "mamlpp", ["--steps", "2"]),
])
def test_family_train_eval_plot_through_the_command_line(task, algorithm, extra, tmp_path, capsys, omniglot_cache):
    # Learned or proximal rules reach every figure and table that names the adaptation rule.
    out = tmp_path / "run"
    data = ["--data", str(OMNIGLOT), "--ways", "3", "--val-every", "10"] if task == "omniglot" else ["--no-baseline"]
    assert main(["train", "--task", task, "--algorithm", algorithm, *extra, *data, "--iterations", "10",
                 "--log-every", "5", "--out", str(out), "--quiet"]) == 0
    assert read_checkpoint(out / "checkpoint.npz")["config"]["algorithm"] == algorithm
    assert (out / "figure.png").read_bytes()[:8] == PNG_MAGIC
    assert main(["eval", str(out), "--tasks", "4", "--steps", "0,1"]) == 0
    assert main(["plot", str(out), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC
    assert "Traceback" not in capsys.readouterr().err


def test_online_is_a_subcommand(tmp_path, capsys):
    argv = ["online", "--tasks", "2", "--batch", "2", "--max-points", "4", "--query-points", "10", "--sizes", "1,8,1",
            "--updates", "2", "--finetune-updates", "2", "--meta-batch", "2", "--k", "2", "--k-query", "2", "--quiet"]
    assert main(argv + ["--out", str(tmp_path)]) == 0
    assert (tmp_path / "figure.png").read_bytes()[:8] == PNG_MAGIC and (tmp_path / "results.json").is_file()
    assert main(argv + ["--out", str(tmp_path / "b"), "--max-points", "5"]) == 1     # not a multiple of b
    err = capsys.readouterr().err
    assert err.startswith("minimaml online: error:") and "multiple" in err and "Traceback" not in err


def test_navigation_train_eval_plot_through_the_command_line(tmp_path, capsys):
    # The full-size policy for two meta-iterations: the RL task behind the same three commands.
    out = tmp_path / "nav"
    assert main(["train", "--task", "navigation", "--iterations", "2", "--meta-batch", "2", "--trajectories", "4",
                 "--out", str(out), "--quiet"]) == 0
    assert (out / "checkpoint.npz").is_file() and (out / "pretrained.npz").is_file()
    assert (out / "figure.png").read_bytes()[:8] == PNG_MAGIC
    assert main(["eval", str(out), "--tasks", "2", "--steps", "0,1", "--trajectories", "4",
                 "--json", str(tmp_path / "e.json")]) == 0
    rows = json.loads((tmp_path / "e.json").read_text())
    assert {(r["model"], r["steps"]) for r in rows} == {(m, s) for m in ("MAML", "pretrained", "random init")
                                                        for s in (0, 1)}
    assert main(["plot", str(out), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_MAGIC
    assert main(["train", "--task", "navigation", "--ways", "5", "--out", str(tmp_path / "x"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "does not use --ways" in err and "Traceback" not in err
    assert main(["eval", str(out), "--k", "5", "--backtrack"]) == 1       # the regression tasks' options
    assert "eval of a navigation run does not use --k, --backtrack" in capsys.readouterr().err
