"""The meta-training loop: it learns, resumes bit for bit, and stops cleanly on divergence."""

import numpy as np
import pytest

import minimaml.run.train as train_mod
from minimaml.run.checkpoint import read_checkpoint
from minimaml.meta.maml import meta_value_and_grad
from minimaml.tasks import Sinusoid
from minimaml.run.train import ConfigError, DeviceUnavailable, TrainConfig, TrainingDiverged, train

SMALL = dict(sizes=[1, 20, 20, 1], log_every=10, checkpoint_every=10)


def _held_out_meta_loss(net, theta, inner_lr=0.01):
    b = Sinusoid().sample(100, 10, 10, np.random.default_rng(123))
    return meta_value_and_grad(net, theta.astype(np.float64), b.xs, b.ys, b.xq, b.yq, inner_lr, 1)[0]


def test_short_training_run_lowers_the_meta_loss():
    config = TrainConfig(iterations=400, log_every=100, checkpoint_every=1000)
    result = train(config, progress=False)
    before = _held_out_meta_loss(result.net, result.net.init(config.seed))
    after = _held_out_meta_loss(result.net, result.theta)
    assert after < 0.6 * before, (before, after)
    assert result.history.shape == (4, 2) and list(result.history[:, 0]) == [100, 200, 300, 400]
    assert result.theta.dtype == np.float32


def test_pretrained_baseline_trains_with_the_same_loop():
    config = TrainConfig(model="pretrained", iterations=200, sizes=[1, 20, 20, 1], log_every=100)
    result = train(config, progress=False)
    assert result.history[-1, 1] < result.history[0, 1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resume_gives_the_same_theta_as_an_uninterrupted_run(tmp_path, dtype):
    full = train(TrainConfig(iterations=40, dtype=dtype, **SMALL), checkpoint=tmp_path / "a.npz", progress=False)
    # "Interrupted" after 20 iterations, then resumed to 40 from the checkpoint alone.
    train(TrainConfig(iterations=20, dtype=dtype, **SMALL), checkpoint=tmp_path / "b.npz", progress=False)
    assert read_checkpoint(tmp_path / "b.npz")["iteration"] == 20
    resumed = train(TrainConfig(iterations=40, dtype=dtype, **SMALL), checkpoint=tmp_path / "b.npz",
                    resume=True, progress=False)
    np.testing.assert_array_equal(resumed.theta, full.theta)
    np.testing.assert_array_equal(resumed.history, full.history)
    np.testing.assert_array_equal(read_checkpoint(tmp_path / "b.npz")["theta"], full.theta)


def test_resume_refuses_a_different_config(tmp_path):
    train(TrainConfig(iterations=10, **SMALL), checkpoint=tmp_path / "c.npz", progress=False)
    with pytest.raises(ConfigError, match="cannot resume.*inner_lr was 0.01, now 0.05"):
        train(TrainConfig(iterations=20, inner_lr=0.05, **SMALL), checkpoint=tmp_path / "c.npz",
              resume=True, progress=False)


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real = train_mod._device_module

    def nan_from_call_13(config):
        xp, meta_grad, optimizer = real(config)
        calls = []

        def poisoned(*args):
            if args[-1] == 0:              # the loop's adaptation check (no inner steps): leave it
                return meta_grad(*args)
            calls.append(1)
            loss, g = meta_grad(*args)
            return (float("nan"), g) if len(calls) >= 13 else (loss, g)
        return xp, poisoned, optimizer

    monkeypatch.setattr(train_mod, "_device_module", nan_from_call_13)
    config = TrainConfig(iterations=30, sizes=[1, 20, 20, 1], log_every=5, checkpoint_every=5)
    with pytest.raises(TrainingDiverged, match=r"nan at iteration 13.*last good checkpoint .*d.npz.*iteration 10"):
        train(config, checkpoint=tmp_path / "d.npz", progress=False)
    monkeypatch.undo()
    kept = read_checkpoint(tmp_path / "d.npz")
    assert kept["iteration"] == 10
    clean = train(TrainConfig(iterations=10, sizes=[1, 20, 20, 1], log_every=5, checkpoint_every=5), progress=False)
    np.testing.assert_array_equal(kept["theta"], clean.theta)


def test_huge_meta_lr_diverges_with_a_clear_message(tmp_path):
    config = TrainConfig(iterations=50, meta_lr=1e4, **SMALL)
    with pytest.raises(TrainingDiverged, match="meta-loss became (nan|inf).*smaller --meta-lr"):
        train(config, checkpoint=tmp_path / "e.npz", progress=False)
    assert not (tmp_path / "e.npz").exists()  # nothing good to keep, nothing written


@pytest.mark.parametrize("bad, match", [
    (dict(inner_lr=0.0), "inner_lr must be a finite number > 0, got 0.0"),
    (dict(steps=-1), "steps must be an int >= 0"),
    (dict(meta_batch=0), "meta_batch must be an int >= 1"),
    (dict(method="magic"), "unknown method 'magic'"),
    (dict(dtype="float16"), "unknown dtype"),
    (dict(device="tpu"), "unknown device"),
    (dict(device="cuda", method="hessian"), "device 'cuda' runs"),
])
def test_bad_config_is_a_clear_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)


def test_cuda_without_cupy_is_a_clear_error(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "cupy", None)       # makes `import cupy` fail
    with pytest.raises(DeviceUnavailable, match="--device cuda: .*needs CuPy.*pip install 'minimaml\\[gpu\\]'"):
        train(TrainConfig(iterations=1, device="cuda"), progress=False)


def test_cuda_path_glue_with_a_numpy_stand_in_for_cupy(monkeypatch, tmp_path):
    # No GPU here: stand in NumPy for CuPy and the hvp route / a NumPy Adam for the kernels, to
    # check what train.py does around them (device arrays, in-place Adam, one sync per log
    # period, checkpoints that resume on the CPU). The kernels themselves: tests/test_gpu_*.
    import sys
    import types

    import minimaml.gpu.cuda as cuda
    from functools import partial

    from minimaml.meta.maml import meta_value_and_grad
    hvp_meta_value_and_grad = partial(meta_value_and_grad, method="hvp")

    fake = types.ModuleType("cupy")
    fake.ndarray, fake.float32 = np.ndarray, np.float32
    for name in ("array", "asarray", "zeros_like", "isfinite", "concatenate"):
        setattr(fake, name, getattr(np, name))
    monkeypatch.setitem(sys.modules, "cupy", fake)

    def adam_update(theta, grad, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
        m[:] = b1 * m + (1.0 - b1) * grad
        v[:] = b2 * v + (1.0 - b2) * (grad * grad)
        theta -= lr * (m / (1.0 - b1**t)) / ((v / (1.0 - b2**t)) ** 0.5 + eps)
        return theta

    monkeypatch.setattr(cuda, "available", lambda: (True, ""))
    monkeypatch.setattr(cuda, "array_module", lambda: fake)
    monkeypatch.setattr(cuda, "meta_value_and_grad", hvp_meta_value_and_grad)
    monkeypatch.setattr(cuda, "adam_update", adam_update)

    cpu = train(TrainConfig(iterations=30, **SMALL), progress=False)
    gpu = train(TrainConfig(iterations=20, device="cuda", **SMALL), checkpoint=tmp_path / "g.npz", progress=False)
    resumed_on_cpu = train(TrainConfig(iterations=30, **SMALL), checkpoint=tmp_path / "g.npz",
                           resume=True, progress=False)
    assert gpu.theta.dtype == np.float32
    np.testing.assert_allclose(resumed_on_cpu.theta, cpu.theta, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Runs that go wrong stop, say why, and keep the last good checkpoint.
# ------------------------------------------------------------------------------------------
def test_an_inner_step_that_blows_up_the_loss_stops_at_once(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"adaptation makes the loss .*x worse at iteration 1 \(query loss "
                                               r".* before the 1 inner step\(s\), .* after\)"):
        train(TrainConfig(iterations=50, inner_lr=10.0, **SMALL), checkpoint=tmp_path / "a.npz", progress=False)
    assert not (tmp_path / "a.npz").exists()


def test_a_meta_loss_far_above_the_start_stops_before_saving_garbage(tmp_path):
    """β = 3 sends the meta-loss from ~4 to ~1e31 within the first 10 iterations (it used to finish and
    save a checkpoint whose Adam state held inf)."""
    path = tmp_path / "b.npz"
    with pytest.raises(TrainingDiverged, match=r"(more than 100x the run's starting meta-loss|adaptation makes "
                                               r"the loss .*x worse at iteration 10).*no checkpoint was written"):
        train(TrainConfig(iterations=400, meta_lr=3.0, **SMALL), checkpoint=path, progress=False)
    assert not path.exists()


def test_adaptation_that_makes_the_loss_worse_is_warned_about(capsys):
    train(TrainConfig(iterations=20, inner_lr=0.3, **SMALL), progress=False)
    assert "adaptation makes the query loss worse" in capsys.readouterr().out


def test_optimizer_state_that_overflows_is_never_saved(tmp_path, monkeypatch):
    real = train_mod._device_module

    def inf_moments(config):
        xp, meta_grad, optimizer = real(config)
        step = optimizer.step

        def poisoned(theta, g):
            out = step(theta, g)
            if optimizer.t == 12:       # θ stays finite (its steps vanish), the saved state would not
                optimizer.v = np.where(optimizer.v > 0, np.inf, optimizer.v)
            return out
        optimizer.step = poisoned
        return xp, meta_grad, optimizer
    monkeypatch.setattr(train_mod, "_device_module", inf_moments)
    with pytest.raises(TrainingDiverged, match=r"Adam's v became non-finite at iteration 20.*iteration 10\) is kept"):
        train(TrainConfig(iterations=30, **SMALL), checkpoint=tmp_path / "c.npz", progress=False)
    assert read_checkpoint(tmp_path / "c.npz")["iteration"] == 10


def test_an_unwritable_output_folder_is_reported_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="file"):
        train(TrainConfig(iterations=5, **SMALL), checkpoint=blocker / "run" / "c.npz", progress=False)


@pytest.mark.parametrize("corrupt, match", [
    (lambda a: a.update({"rng_state": np.array('{"bit_generator": "nope"}')}), "malformed task-sampler state"),
    (lambda a: a.pop("optimizer/m"), "malformed optimizer state"),
    (lambda a: a.update({"optimizer/v": -a["optimizer/v"] - 1}), "malformed optimizer state"),
])
def test_resume_from_a_malformed_checkpoint_is_one_clear_error(tmp_path, corrupt, match):
    from minimaml.run.checkpoint import CheckpointError
    path = tmp_path / "d.npz"
    train(TrainConfig(iterations=10, **SMALL), checkpoint=path, progress=False)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    corrupt(arrays)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=match):
        train(TrainConfig(iterations=20, **SMALL), checkpoint=path, resume=True, progress=False)
