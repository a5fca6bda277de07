"""Checkpoints: exact round trip of everything a resumed run needs, atomic writes, and clear
errors for missing, corrupt and foreign files."""

import os

import numpy as np
import pytest

import minimaml
from minimaml.run.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from minimaml.nn import MLP
from minimaml.optim import Adam


def _saved(tmp_path, name="ckpt.npz"):
    net = MLP([1, 8, 8, 1], activation="tanh")
    theta = net.init(3).astype(np.float32)
    opt = Adam(lr=1e-3)
    for g in np.random.default_rng(0).standard_normal((3, net.num_params)).astype(np.float32):
        theta = opt.step(theta, g)
    rng = np.random.default_rng(7)
    rng.uniform(size=5)
    config = {"inner_lr": 0.01, "steps": 1, "sizes": [1, 8, 8, 1], "note": "x"}
    path = tmp_path / name
    save_checkpoint(path, net, theta, config, opt.state_dict(), iteration=3,
                    history=[(1, 2.5), (3, 1.25)], rng_state=rng.bit_generator.state)
    return path, net, theta, config, opt, rng


def test_round_trip_restores_everything_exactly(tmp_path):
    path, net, theta, config, opt, rng = _saved(tmp_path)
    ckpt = read_checkpoint(path)
    assert ckpt["net"].sizes == net.sizes and ckpt["net"].activation == "tanh"
    assert ckpt["theta"].dtype == np.float32
    np.testing.assert_array_equal(ckpt["theta"], theta)
    assert ckpt["config"] == config
    assert ckpt["iteration"] == 3
    np.testing.assert_array_equal(ckpt["history"], [[1, 2.5], [3, 1.25]])
    # The optimizer continues bit for bit ...
    restored = Adam(lr=1.0)
    restored.load_state_dict(ckpt["optimizer_state"])
    g = np.full(net.num_params, 0.5, np.float32)
    np.testing.assert_array_equal(restored.step(theta, g), opt.step(theta, g))
    # ... and so does the task stream.
    resumed = np.random.default_rng()
    resumed.bit_generator.state = ckpt["rng_state"]
    np.testing.assert_array_equal(resumed.uniform(size=4), rng.uniform(size=4))


def test_load_checkpoint_returns_net_theta_config(tmp_path):
    path, net, theta, config, *_ = _saved(tmp_path)
    net2, theta2, config2 = minimaml.load_checkpoint(str(path))
    x = np.linspace(-5, 5, 7)[:, None]
    np.testing.assert_array_equal(net2.net(theta2, x), net.net(theta, x))
    assert config2 == config


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path, net, theta, config, *_ = _saved(tmp_path)
    save_checkpoint(path, net, theta * 2, config, iteration=4)    # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    assert read_checkpoint(path)["iteration"] == 4
    # A failing write (theta of the wrong size) raises before touching the old file.
    with pytest.raises(ValueError, match=r"theta must have shape \(97,\)"):
        save_checkpoint(path, net, theta[:10], config, iteration=5)
    assert read_checkpoint(path)["iteration"] == 4
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz.*does not exist"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04garbage"])
def test_corrupt_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.npz.*not a readable .npz"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path, *_ = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="ckpt.npz"):
        load_checkpoint(path)


def test_foreign_npz_is_rejected(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.ones(3))
    with pytest.raises(CheckpointError, match="foreign.npz.*not a minimaml checkpoint"):
        load_checkpoint(path)


def test_missing_entries_and_wrong_version_are_named(tmp_path):
    path, *_ = _saved(tmp_path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    no_theta = {k: v for k, v in arrays.items() if k != "theta"}
    np.savez(tmp_path / "partial.npz", **no_theta)
    with pytest.raises(CheckpointError, match=r"partial.npz.*missing \['theta'\]"):
        load_checkpoint(tmp_path / "partial.npz")
    np.savez(tmp_path / "future.npz", **{**arrays, "version": np.array(99)})
    with pytest.raises(CheckpointError, match="future.npz.*version 99"):
        load_checkpoint(tmp_path / "future.npz")
    np.savez(tmp_path / "shape.npz", **{**arrays, "theta": np.zeros(5)})
    with pytest.raises(CheckpointError, match=r"shape.npz.*\(5,\)"):
        load_checkpoint(tmp_path / "shape.npz")


def test_a_version_1_checkpoint_still_loads(tmp_path):
    """Files written before models had descriptions (sizes + activation only) load as an MLP with MSE."""
    net = MLP([1, 8, 1], activation="tanh")
    save_checkpoint(tmp_path / "new.npz", net, net.init(0), {"inner_lr": 0.01}, iteration=3)
    with np.load(tmp_path / "new.npz") as data:
        old = {k: data[k] for k in data.files if k not in ("model", "val_history")}
    old["version"] = np.array(1)
    np.savez(tmp_path / "old.npz", **old)
    ckpt = read_checkpoint(tmp_path / "old.npz")
    assert ckpt["net"].sizes == [1, 8, 1] and ckpt["net"].activation == "tanh" and ckpt["net"].norm is None
    assert ckpt["loss"] is minimaml.mse and ckpt["val_history"].shape == (0, 2)
    np.testing.assert_array_equal(ckpt["theta"], net.init(0))


def test_model_description_round_trips_batch_norm_and_the_loss(tmp_path):
    net = MLP([4, 6, 3], norm="batch")
    save_checkpoint(tmp_path / "c.npz", net, net.init(1), {}, loss="softmax_cross_entropy")
    ckpt = read_checkpoint(tmp_path / "c.npz")
    assert ckpt["net"].norm == "batch" and ckpt["loss"] is minimaml.softmax_cross_entropy


def test_temporary_files_of_a_killed_write_are_removed_by_the_next_write(tmp_path):
    path, net, theta, config, *_ = _saved(tmp_path)
    for leftover in (".ckpt.npz.tmp-abc123", ".ckpt.npz.tmp-zz9"):     # what kill -9 mid-write leaves
        (tmp_path / leftover).write_bytes(b"half a checkpoint")
    (tmp_path / ".other.npz.tmp-keep").write_bytes(b"another file's write in progress")
    save_checkpoint(path, net, theta, config, iteration=5)
    assert sorted(os.listdir(tmp_path)) == [".other.npz.tmp-keep", "ckpt.npz"]


def test_the_folder_is_flushed_after_the_rename(tmp_path, monkeypatch):
    """os.replace is durable only once the folder's entry is on disk: the folder itself is fsynced."""
    path, net, theta, config, *_ = _saved(tmp_path)
    opened, synced = {}, []
    real_open, real_fsync = os.open, os.fsync

    def record_open(p, flags, *a):
        fd = real_open(p, flags, *a)
        opened[fd] = os.fspath(p)
        return fd
    monkeypatch.setattr(os, "open", record_open)
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(opened.get(fd, "file")), real_fsync(fd)))
    save_checkpoint(path, net, theta, config, iteration=6)
    assert synced[-1] == str(tmp_path)                    # the folder, last: after the rename
    assert len(synced) == 2 and synced[0] != str(tmp_path)   # the file's data first


@pytest.mark.parametrize("bad, match", [
    (lambda th: np.where(np.arange(th.size) == 3, np.nan, th), r"1 non-finite values"),
    (lambda th: th.astype(np.complex128), r"dtype complex128"),
    (lambda th: th.astype(np.int64), r"dtype int64"),
])
def test_a_checkpoint_whose_theta_is_not_a_usable_model_is_refused(tmp_path, bad, match):
    path, *_ = _saved(tmp_path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["theta"] = bad(arrays["theta"])
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(path)
