"""Hand-written meta-optimizers: the outer update θ ← θ − β · step(∇θ L_meta).

Both optimizers are functional in the parameters: ``theta = opt.step(theta, grad)`` returns a
new vector and never mutates its inputs. Their own running state (Adam's moments and step
count) lives inside the object and can be saved with ``state_dict()`` and restored with
``load_state_dict()``, so a training run resumed from a checkpoint continues bit for bit.

They use only array operators and methods (``*``, ``+``, ``**``, ``.copy()``), never
``numpy.*`` functions, so CuPy arrays flow through without this module importing CuPy.
"""

import importlib
import math

import numpy as np


def _check_lr(lr):
    if not isinstance(lr, (int, float, np.integer, np.floating)) or isinstance(lr, bool):
        raise TypeError(f"lr must be a real number, got {lr!r} of type {type(lr).__name__}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got lr={lr!r}")
    return float(lr)


def _check_step_args(theta, grad):
    if getattr(theta, "shape", None) != getattr(grad, "shape", None):
        raise ValueError(
            f"theta and grad must have the same shape, got theta {getattr(theta, 'shape', type(theta))}"
            f" and grad {getattr(grad, 'shape', type(grad))}"
        )


class SGD:
    """Plain gradient descent: θ ← θ − β g.

    ``lr`` is the meta step size β. Stateless apart from ``lr``.
    """

    def __init__(self, lr):
        self.lr = _check_lr(lr)

    def step(self, theta, grad):
        """Return θ − β g (a new array of theta's shape and dtype)."""
        _check_step_args(theta, grad)
        return theta - (self.lr * grad).astype(theta.dtype, copy=False)

    def state_dict(self):
        return {"name": "SGD", "lr": self.lr}

    def load_state_dict(self, state):
        _check_name(state, "SGD")
        self.lr = _check_lr(float(state["lr"]))

    def __repr__(self):
        return f"SGD(lr={self.lr})"


class Adam:
    """Adam (Kingma & Ba 2015, their Algorithm 1, with bias correction)::

        t ← t + 1
        m ← b1 m + (1 − b1) g           (first moment)
        v ← b2 v + (1 − b2) g²          (second moment)
        m̂ = m / (1 − b1ᵗ),  v̂ = v / (1 − b2ᵗ)
        θ ← θ − β m̂ / (√v̂ + ε)

    ``m`` and ``v`` are created on the first ``step`` with theta's shape, dtype and array
    module (``zeros_like`` via ``grad * 0``), so the same object drives NumPy or CuPy vectors.
    """

    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.lr = _check_lr(lr)
        for name, b in (("b1", b1), ("b2", b2)):
            if not (0.0 <= b < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {name}={b!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got eps={eps!r}")
        self.b1, self.b2, self.eps = float(b1), float(b2), float(eps)
        self.m = None
        self.v = None
        self.t = 0

    def step(self, theta, grad):
        """Return the Adam-updated θ (new array); advances the internal m, v, t."""
        _check_step_args(theta, grad)
        if self.m is None:
            self.m = grad * 0
            self.v = grad * 0
        if type(self.m) is not type(grad):
            # State restored from a checkpoint is NumPy; continue on grad's device (e.g. CuPy).
            xp = _array_module(grad)
            self.m, self.v = xp.asarray(self.m), xp.asarray(self.v)
        if self.m.shape != grad.shape:
            raise ValueError(
                f"Adam state has shape {self.m.shape} but grad has shape {grad.shape};"
                " use a fresh Adam for a different parameter vector"
            )
        self.t += 1
        self.m = self.b1 * self.m + (1.0 - self.b1) * grad
        self.v = self.b2 * self.v + (1.0 - self.b2) * (grad * grad)
        m_hat = self.m / (1.0 - self.b1**self.t)
        v_hat = self.v / (1.0 - self.b2**self.t)
        update = self.lr * m_hat / (v_hat**0.5 + self.eps)
        return theta - update.astype(theta.dtype, copy=False)

    def state_dict(self):
        """Everything needed to continue exactly: hyper-parameters, t, and copies of m, v
        (host NumPy arrays, ready for ``np.savez``; ``None`` before the first step)."""
        return {
            "name": "Adam",
            "lr": self.lr,
            "b1": self.b1,
            "b2": self.b2,
            "eps": self.eps,
            "t": self.t,
            "m": None if self.m is None else _to_host(self.m),
            "v": None if self.v is None else _to_host(self.v),
        }

    def load_state_dict(self, state):
        """Restore from ``state_dict()`` output. m and v come back as NumPy arrays; the next
        ``step`` moves them to grad's array module if that differs (e.g. CuPy)."""
        _check_name(state, "Adam")
        self.lr = _check_lr(float(state["lr"]))
        self.b1, self.b2, self.eps = float(state["b1"]), float(state["b2"]), float(state["eps"])
        self.t = int(state["t"])
        m, v = state["m"], state["v"]
        if (m is None) != (v is None) or (m is not None and np.shape(m) != np.shape(v)):
            raise ValueError("corrupt Adam state: m and v must both be None or arrays of one shape")
        if m is None and self.t != 0:
            raise ValueError(f"corrupt Adam state: t={self.t} but no moments m, v")
        self.m = None if m is None else np.array(m, copy=True)
        self.v = None if v is None else np.array(v, copy=True)

    def __repr__(self):
        return f"Adam(lr={self.lr}, b1={self.b1}, b2={self.b2}, eps={self.eps}, t={self.t})"


def _array_module(a):
    """The module that made array ``a`` (numpy, cupy, ...), found without importing CuPy here:
    if ``a`` is a CuPy array, CuPy is already loaded."""
    return importlib.import_module(type(a).__module__.split(".")[0])


def _to_host(a):
    # CuPy arrays expose .get(); NumPy arrays do not.
    return a.get() if hasattr(a, "get") else np.array(a, copy=True)


def _check_name(state, name):
    got = state.get("name") if hasattr(state, "get") else None
    if got != name:
        raise ValueError(f"state_dict is for optimizer {got!r}, cannot load it into {name}")
