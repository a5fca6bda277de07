"""Checkpoints: one ``.npz`` file holding everything a run needs to be used or resumed.

Layout (every entry a plain array, so ``np.load(path, allow_pickle=False)`` reads it)::

    format            "minimaml-checkpoint"      tag that tells our files from foreign .npz
    version           2 (version 1 files, from before models had descriptions, still load)
    theta             (P,)   the flat parameter vector, in its training dtype
    model             JSON text of the model's description: {"kind": "mlp", "sizes", "activation",
                      "norm", "param"} (``MLP.describe()``) and the loss's name ("mse" | "softmax_cross_entropy")
    sizes, activation the MLP's layer sizes and activation (also in ``model``; version 1 has only these)
    config            JSON text of the run's configuration (a dict)
    iteration         number of completed meta-updates
    history           (N, 2) rows (iteration, mean meta-loss over the last log period)
    val_history       (M, 2) rows (iteration, validation metric): the learning curve
    extra             (E,)   the algorithm's meta-parameters besides θ (config "algorithm" names it)
    rng_state         JSON text of the task sampler's numpy bit-generator state
    optimizer         JSON text of the optimizer's scalar state (name, lr, t, ...)
    optimizer/<key>   the optimizer's array state (Adam's m and v)

Writes are atomic: the file is written to a temporary name in the same directory
(``.<name>.tmp-XXXX``), flushed to disk, moved over the old one with ``os.replace``, and the directory
itself is flushed (so a power cut cannot lose the rename), so a crash (or a diverging run) never
leaves a half-written checkpoint, and the last good one stays readable. A temporary file left by a
process killed mid-write is removed by the next write of the same checkpoint.
Reading checks the values too: θ must be a finite float32/float64 vector of the model's size.
"""

import json
import os
import zipfile

import numpy as np

from ..files import write_atomic

FORMAT = "minimaml-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_REQUIRED = ("format", "version", "theta", "sizes", "activation", "config", "iteration")


class CheckpointError(ValueError):
    """A file that is not a readable minimaml checkpoint (corrupt, foreign, wrong version)."""


def save_checkpoint(path, net, theta, config, optimizer_state=None, iteration=0, history=None,
                    rng_state=None, loss="mse", val_history=None, extra=None):
    """Write a checkpoint atomically to ``path`` (a ``.npz`` file; parent folders are created).

    ``net`` is an ``MLP`` (its description is stored); ``config`` is a dict (or a dataclass such as
    ``TrainConfig``) of JSON-able values; ``optimizer_state`` is ``optimizer.state_dict()``;
    ``rng_state`` is ``rng.bit_generator.state``; ``loss`` the loss's name; ``extra`` the
    algorithm's other meta-parameters (Meta-SGD's α, MAML++'s step sizes; flat). ``theta`` may be a
    CuPy array (it is copied to the host).
    """
    path = os.fspath(path)
    if hasattr(config, "__dataclass_fields__"):
        from dataclasses import asdict
        config = asdict(config)
    theta = _to_host(theta)
    if theta.ndim != 1 or theta.shape[0] != net.num_params:
        raise ValueError(f"theta must have shape ({net.num_params},) for MLP sizes {list(net.sizes)}, "
                         f"got {theta.shape}")
    history = np.zeros((0, 2)) if history is None or len(history) == 0 else np.asarray(history, float)
    val_history = np.zeros((0, 2)) if val_history is None or len(val_history) == 0 else np.asarray(val_history, float)
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "theta": theta,
        "sizes": np.asarray(net.sizes, dtype=np.int64),
        "activation": np.array(net.activation),
        "config": np.array(json.dumps(config, sort_keys=True, default=_json_scalar)),
        "iteration": np.array(int(iteration)),
        "history": history.reshape(-1, 2),
        "val_history": val_history.reshape(-1, 2),
        "rng_state": np.array(json.dumps(rng_state)),
        "model": np.array(json.dumps({**net.describe(), "loss": loss})),
        "extra": np.zeros(0) if extra is None else _to_host(extra).ravel(),
    }
    if optimizer_state is not None:
        scalars = {}
        for key, value in optimizer_state.items():
            if value is not None and np.ndim(_to_host(value)) > 0:
                arrays[f"optimizer/{key}"] = _to_host(value)
            else:
                scalars[key] = value
        arrays["optimizer"] = np.array(json.dumps(scalars, default=_json_scalar))

    write_atomic(path, lambda f: np.savez(f, **arrays), remove_stale=True)


def read_checkpoint(path):
    """Load everything a checkpoint holds, for resuming or inspection.

    Returns a dict with ``net`` (an ``MLP``), ``loss`` (the loss function), ``theta``, ``extra``
    (the algorithm's other meta-parameters, (E,)), ``config`` (dict), ``iteration``, ``history``
    (N, 2), ``val_history`` (M, 2), ``rng_state`` (dict or None) and ``optimizer_state`` (dict or None).
    Raises ``FileNotFoundError`` for a missing file and ``CheckpointError`` for a file that
    is not a readable minimaml checkpoint, both naming the path and the problem.
    """
    from ..nn.losses import loss_by_name, mse
    from ..nn.mlp import MLP

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path!r} is a directory, not a .npz file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path!r} is not a readable .npz file "
                              f"(corrupt or truncated?): {type(e).__name__}: {e}") from None

    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        found = str(arrays["format"]) if "format" in arrays else "no 'format' entry"
        raise CheckpointError(f"{path!r} is not a minimaml checkpoint (format tag: {found}; "
                              f"entries: {sorted(arrays)[:8]})")
    missing = [key for key in _REQUIRED if key not in arrays]
    if missing:
        raise CheckpointError(f"checkpoint {path!r} is incomplete: missing {missing}")
    version = int(arrays["version"])
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"checkpoint {path!r} has format version {version}; "
                              f"this minimaml reads versions {READABLE_VERSIONS}")
    try:
        if "model" in arrays:
            model = json.loads(str(arrays["model"]))
            net, loss = MLP.from_description(model), loss_by_name(model.get("loss", "mse"))
        else:   # version 1: a sinusoid MLP with MSE
            net, loss = MLP([int(s) for s in arrays["sizes"]], activation=str(arrays["activation"])), mse
        config = json.loads(str(arrays["config"]))
        rng_state = json.loads(str(arrays["rng_state"])) if "rng_state" in arrays else None
        optimizer_state = None
        if "optimizer" in arrays:
            optimizer_state = json.loads(str(arrays["optimizer"]))
            for key in arrays:
                if key.startswith("optimizer/"):
                    optimizer_state[key[len("optimizer/"):]] = arrays[key]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path!r} has an invalid entry: {type(e).__name__}: {e}") from None
    theta = arrays["theta"]
    if theta.shape != (net.num_params,):
        raise CheckpointError(f"checkpoint {path!r}: theta has shape {theta.shape} but MLP sizes "
                              f"{list(net.sizes)} need ({net.num_params},)")
    if theta.dtype not in (np.float32, np.float64):
        raise CheckpointError(f"checkpoint {path!r}: theta has dtype {theta.dtype}; a checkpoint holds "
                              f"float32 or float64 parameters")
    if not np.isfinite(theta).all():
        raise CheckpointError(f"checkpoint {path!r}: theta holds {int((~np.isfinite(theta)).sum())} "
                              f"non-finite values (NaN or inf): not a usable model")
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path!r}: its config is not a dict but {type(config).__name__}")
    return {
        "net": net,
        "loss": loss,
        "theta": theta,
        "config": config,
        "iteration": int(arrays["iteration"]),
        "history": arrays.get("history", np.zeros((0, 2))),
        "val_history": arrays.get("val_history", np.zeros((0, 2))),
        "extra": arrays.get("extra", np.zeros(0)),
        "rng_state": rng_state,
        "optimizer_state": optimizer_state,
    }


def load_checkpoint(path):
    """``(net, theta, config)`` from a checkpoint: the model, its flat parameters (P,) and the
    run's configuration dict. See ``read_checkpoint`` for the full contents."""
    ckpt = read_checkpoint(path)
    return ckpt["net"], ckpt["theta"], ckpt["config"]


def _to_host(a):
    # CuPy arrays expose .get(); everything else goes through np.asarray.
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _json_scalar(x):
    # NumPy scalars (np.float32(1e-3), np.int64(5)) are not JSON-serialisable by default.
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"cannot store {x!r} of type {type(x).__name__} in a checkpoint's JSON entries")
