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


# The hyper-parameters: name -> (the condition, said in words for the error message).
_HYPER = {
    "lr": (lambda x: x > 0, "a finite number > 0"),
    "b1": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "b2": (lambda x: 0 <= x < 1, "in [0, 1)"),
    "eps": (lambda x: x > 0, "a finite number > 0"),
}


def _check_hyper(name, value):
    """value as a float, if it is a real number that is finite and in range for hyper-parameter `name`."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    ok, words = _HYPER[name]
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {words}, got {name}={value!r}")
    return float(value)


def _check_step_args(theta, grad):
    # An integer theta would silently stay put: the float update is cast to its dtype and truncated.
    for name, a in (("theta", theta), ("grad", grad)):
        if getattr(getattr(a, "dtype", None), "kind", None) != "f":
            got = f"{a.dtype} array" if hasattr(a, "dtype") else type(a).__name__
            raise TypeError(f"{name} must be a floating-point array, got {got}; e.g. {name}.astype(np.float64)")
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
        self.lr = _check_hyper("lr", lr)

    def step(self, theta, grad):
        """Return θ − β g (a new array of theta's shape and dtype)."""
        _check_step_args(theta, grad)
        return theta - (self.lr * grad).astype(theta.dtype, copy=False)

    def state_dict(self):
        return {"name": "SGD", "lr": self.lr}

    def load_state_dict(self, state):
        _check_state(state, "SGD", ["lr"])
        self.lr = _check_hyper("lr", state["lr"])

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
        self.lr, self.b1, self.b2, self.eps = (_check_hyper(k, v) for k, v in
                                               (("lr", lr), ("b1", b1), ("b2", b2), ("eps", eps)))
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
        _check_state(state, "Adam", ["lr", "b1", "b2", "eps", "t", "m", "v"])
        hyper = [_check_hyper(k, state[k]) for k in ("lr", "b1", "b2", "eps")]
        t, m, v = state["t"], state["m"], state["v"]
        if not isinstance(t, (int, np.integer)) or isinstance(t, bool) or t < 0:
            raise ValueError(f"corrupt Adam state: t must be an int >= 0, got t={t!r}")
        if m is None or v is None:
            if m is not v or t != 0:
                raise ValueError(f"corrupt Adam state: m is {_describe(m)}, v is {_describe(v)} and t={t}; the "
                                 f"moments must both be arrays, or both None before the first step (t=0)")
        else:
            m, v = np.array(m, copy=True), np.array(v, copy=True)
            if m.shape != v.shape or m.dtype.kind != "f" or v.dtype.kind != "f":
                raise ValueError(f"corrupt Adam state: m and v must be float arrays of one shape, got m "
                                 f"{_describe(m)} and v {_describe(v)}")
            if not (np.isfinite(m).all() and np.isfinite(v).all() and (v >= 0).all()):
                raise ValueError("corrupt Adam state: m and v must be finite, and v >= 0 (a mean of squares)")
        # Only now, all checked: a bad state leaves the optimizer as it was.
        self.lr, self.b1, self.b2, self.eps = hyper
        self.t, self.m, self.v = int(t), m, v

    def __repr__(self):
        return f"Adam(lr={self.lr}, b1={self.b1}, b2={self.b2}, eps={self.eps}, t={self.t})"


def _array_module(a):
    """The module that made array ``a`` (numpy, cupy, ...), found without importing CuPy here:
    if ``a`` is a CuPy array, CuPy is already loaded."""
    return importlib.import_module(type(a).__module__.split(".")[0])


def _to_host(a):
    # CuPy arrays expose .get(); NumPy arrays do not.
    return a.get() if hasattr(a, "get") else np.array(a, copy=True)


def _check_state(state, name, keys):
    """A state_dict of optimizer `name` with all of `keys` (their values are checked by the caller)."""
    got = state.get("name") if hasattr(state, "get") else None
    if got != name:
        raise ValueError(f"state_dict is for optimizer {got!r}, cannot load it into {name}")
    missing = sorted(k for k in keys if k not in state)
    if missing:
        raise ValueError(f"{name} state_dict is missing keys {missing}; it has {sorted(state)}")


def _describe(a):
    return "None" if a is None else f"a {np.asarray(a).dtype} array of shape {np.shape(a)}"
