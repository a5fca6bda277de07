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

    def _out(self):
        return None

    def _keep(self, a):
        return a

    # Every method: compute into the next recorded buffer if there is one, else allocate.
    def matmul(self, a, b):
        if a.shape[-1] == 1:       # an outer product: broadcasting is ~3x faster than matmul here
            return self.mul(a, b)
        if b.ndim == 2 and a.ndim > 2 and a.flags.c_contiguous:   # one matrix for the whole batch:
            flat = self.xp.matmul(a.reshape(-1, a.shape[-1]), b, out=self._out())   # one 2-D product
            return self._keep(flat).reshape(a.shape[:-1] + b.shape[-1:])
        return self._keep(self.xp.matmul(a, b, out=self._out()))

    def mul(self, a, b):
        return self._keep(self.xp.multiply(a, b, out=self._out()))

    def add(self, a, b):
        return self._keep(self.xp.add(a, b, out=self._out()))

    def sub(self, a, b):
        return self._keep(self.xp.subtract(a, b, out=self._out()))

    def sum(self, a, axis, keepdims=False):
        return self._keep(self.xp.sum(a, axis=axis, keepdims=keepdims, out=self._out()))

    def mean(self, a, axis, keepdims=False):
        return self._keep(self.xp.mean(a, axis=axis, keepdims=keepdims, out=self._out()))

    def concat(self, arrays, axis):
        return self._keep(self.xp.concatenate(arrays, axis=axis, out=self._out()))

    def empty(self, shape, dtype):
        out = self._out()
        return self._keep(self.xp.empty(shape, dtype) if out is None else out)

    def copy(self, a):
        out = self._out()
        if out is None:
            return self._keep(a.copy())
        out[...] = a
        return self._keep(out)


class Arena(Fresh):
    """Record on the first call, replay the same buffers on the next calls (see the module doc)."""

    def __init__(self, xp):
        super().__init__(xp)
        self.buffers, self.i = [], 0

    def _out(self):
        return self.buffers[self.i] if self.i < len(self.buffers) else None

    def _keep(self, a):
        if self.i == len(self.buffers):
            self.buffers.append(a)
        self.i += 1
        return a


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
