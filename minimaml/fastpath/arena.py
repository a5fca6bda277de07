"""Workspaces: where the fast route's arrays come from.

A MAML meta-step allocates and frees dozens of temporaries of 10-400 KB. With glibc's default
malloc, freed blocks above 128 KB go back to the operating system at once, so nearly every
temporary pays page faults when it is first written; on a 2-core machine that costs more than
the arithmetic (the float32 sinusoid meta-gradient ran at 1.0 ms instead of 0.36 ms). PyTorch and
XLA avoid it with caching allocators. The fast route does it with buffers it owns:

* ``Arena`` records the arrays that the first call of a given shape makes (every op goes through
  it: ``ws.matmul(a, b)``, ``ws.mul(a, b)``, ...) and hands the same buffers back, in the same
  order, to the next call with the same signature (the network, the shapes and dtypes, the number
  of steps): a call's sequence of operations depends only on that signature, never on the values,
  so the i-th request of every call has the same shape and dtype.
* ``Fresh`` has the same methods and allocates every time: for one-off calls whose results are
  handed to the user.

Nothing an ``Arena`` holds may escape to the user: a later call overwrites it. The routes that use
one (``meta_value_and_grad``) return fresh arrays (the mean over tasks, a float loss).
Arenas are per thread and keep the ``MAX_ARENAS`` most recent signatures.
"""
import threading
from collections import OrderedDict

MAX_ARENAS = 8


class Fresh:
    """The operations the fast route uses, each returning a newly allocated array of module xp."""

    def __init__(self, xp):
        self.xp = xp

    def _call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs): a NumPy (or CuPy) function that can write its result into ``out``."""
        return fn(*args, **kwargs)

    def matmul(self, a, b):
        if a.shape[-1] == 1:       # an outer product: broadcasting is ~3x faster than matmul here
            return self._call(self.xp.multiply, a, b)
        if b.ndim == 2 and a.ndim > 2 and a.flags.c_contiguous:   # one matrix for the whole batch:
            flat = self._call(self.xp.matmul, a.reshape(-1, a.shape[-1]), b)   # one 2-D product
            return flat.reshape(a.shape[:-1] + b.shape[-1:])
        return self._call(self.xp.matmul, a, b)

    def mul(self, a, b):
        return self._call(self.xp.multiply, a, b)

    def add(self, a, b):
        return self._call(self.xp.add, a, b)

    def sub(self, a, b):
        return self._call(self.xp.subtract, a, b)

    def sum(self, a, axis, keepdims=False):
        return self._call(self.xp.sum, a, axis=axis, keepdims=keepdims)

    def mean(self, a, axis, keepdims=False):
        """A sum times 1/count (NumPy's mean costs several times more Python per call)."""
        count = 1
        for ax in (axis if isinstance(axis, tuple) else (axis,)):
            count *= a.shape[ax]
        return self.mul(self.sum(a, axis, keepdims), 1.0 / count)

    def concat(self, arrays, axis):
        return self._call(self.xp.concatenate, arrays, axis=axis)

    def empty(self, shape, dtype):
        return self._call(_empty, self.xp, shape, dtype)

    def copy(self, a):
        return self._call(_copy, a)


def _empty(xp, shape, dtype, out=None):
    return xp.empty(shape, dtype) if out is None else out


def _copy(a, out=None):
    if out is None:
        return a.copy()
    out[...] = a
    return out


class Arena(Fresh):
    """Record on the first call, replay the same buffers on the next calls (see the module doc)."""

    def __init__(self, xp):
        super().__init__(xp)
        self.buffers, self.i = [], 0

    def _call(self, fn, *args, **kwargs):
        i = self.i
        self.i = i + 1
        if i < len(self.buffers):
            return fn(*args, out=self.buffers[i], **kwargs)
        result = fn(*args, **kwargs)
        self.buffers.append(result)
        return result


_local = threading.local()


def arena(signature, xp):
    """The calling thread's arena for ``signature`` (any hashable) and array module ``xp``, rewound
    to its first buffer."""
    arenas = getattr(_local, "arenas", None)
    if arenas is None:
        arenas = _local.arenas = OrderedDict()
    signature = (signature, xp.__name__)
    ws = arenas.pop(signature, None) or Arena(xp)
    arenas[signature] = ws                    # most recent last
    while len(arenas) > MAX_ARENAS:
        arenas.popitem(last=False)
    ws.i = 0
    return ws
