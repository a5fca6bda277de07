"""Tensor: an array being differentiated, and the reverse pass that pulls cotangents back through it.

The design is HIPS autograd's (via autodidact), in a few screenfuls:

* Differentiating `f` at `x` opens a new *trace* (an integer, larger than every trace already open) and wraps
  `x` in a `Tensor` of that trace. Each primitive called on a Tensor computes on the unwrapped values and wraps
  its answer in a new Tensor that remembers the primitive and its inputs: the graph is recorded as f runs.
* The reverse pass walks that graph backwards, calling each primitive's vector-Jacobian product (VJP) rule.
  The rules are written with the same differentiable primitives (see ops.py), so when the values they touch
  are themselves Tensors of an *outer* trace, the reverse pass records a graph of its own. That is all it takes
  for gradients of gradients: `grad(grad(f))`, `hessian = jacobian(grad(f))`, third derivatives, MAML's
  differentiation through an inner loop of gradient steps.
* A Tensor's `value` is an ndarray, or a Tensor of an outer trace when derivatives are nested.

Cotangents may carry extra *leading* axes (a batch of cotangents pulled back at once). Every VJP rule acts
on the trailing axes only, which is how `jacobian` pushes a whole identity matrix through in one pass.
"""
import inspect
import itertools
import sys

import numpy as np

_new_trace = itertools.count(1).__next__


def array_module(x):
    """NumPy, or CuPy for a CuPy array (found without importing CuPy), so the engine runs on either."""
    return sys.modules["cupy"] if type(x).__module__.startswith("cupy") else np


def raw(x):
    """The plain array inside any number of Tensor wrappers (a constant: no gradient flows through it)."""
    while isinstance(x, Tensor):
        x = x.value
    return x


class Tensor:
    """A value of trace `trace`, made by `prim` from `args` (its unwrapped inputs); `parents` are the inputs
    that are Tensors of the same trace, as (argnum, Tensor) pairs. A leaf has no primitive."""

    __slots__ = ("value", "trace", "prim", "args", "kwargs", "parents")

    def __init__(self, value, trace, prim=None, args=(), kwargs=None, parents=()):
        self.value, self.trace = value, trace
        self.prim, self.args, self.kwargs, self.parents = prim, args, kwargs or {}, parents

    shape = property(lambda self: self.value.shape)
    ndim = property(lambda self: self.value.ndim)
    size = property(lambda self: self.value.size)
    dtype = property(lambda self: self.value.dtype)

    def __len__(self):
        return len(self.value)

    def __repr__(self):
        return f"Tensor({raw(self)!r}, trace={self.trace})"

    # Comparisons give plain boolean arrays: they are constants, not differentiable. As for ndarray,
    # `==` is elementwise, so a Tensor has no hash (the engine keys its dicts by id(), never by Tensor).
    def __lt__(self, other): return raw(self) < raw(other)
    def __le__(self, other): return raw(self) <= raw(other)
    def __gt__(self, other): return raw(self) > raw(other)
    def __ge__(self, other): return raw(self) >= raw(other)
    def __eq__(self, other): return raw(self) == raw(other)
    def __ne__(self, other): return raw(self) != raw(other)
    __hash__ = None

    # Reading the value as a Python number is a constant too: float(x) carries no gradient. As for ndarray,
    # it works for a single element only.
    def __float__(self): return float(raw(self))
    def __int__(self): return int(raw(self))

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of a Tensor of shape {self.shape} is ambiguous: test raw values "
                             f"with .any() or .all(), or select elementwise with mm.where(condition, x, y)")
        return bool(raw(self))
    # Arithmetic operators, indexing, methods and NumPy's hooks are attached in ops.py, next to the primitives.


class Primitive:
    """An operation with known derivative rules. Calling it on Tensors records a node; on plain arrays it is
    the bare NumPy function. `vjps[i](g, ans, *args, **kwargs)` pulls the cotangent g of the answer back to
    argument i (args and ans unwrapped to this trace: they may be Tensors of outer traces)."""

    def __init__(self, fn):
        self.fn, self.name, self.vjps = fn, fn.__name__, {}
        self.vjp_argnum = None  # optional rule(argnum, g, ans, *args) for primitives with any number of args
        self.argnames = inspect.getfullargspec(fn).args  # for error messages
        self.__doc__ = fn.__doc__

    def __repr__(self):
        return f"<primitive {self.name}>"

    def __call__(self, *args, **kwargs):
        trace = max((a.trace for a in args if isinstance(a, Tensor)), default=0)
        if trace == 0:
            return self._call_raw(args, kwargs)
        argvals = tuple(a.value if isinstance(a, Tensor) and a.trace == trace else a for a in args)
        parents = tuple((i, a) for i, a in enumerate(args) if isinstance(a, Tensor) and a.trace == trace)
        for i, _ in parents:  # refuse now, not in a reverse pass that may never come or come much later
            if i not in self.vjps and self.vjp_argnum is None:
                raise TypeError(f"{self.name}: {self.argnames[i]} must be a constant (a number or plain array), "
                                f"not a Tensor being differentiated: {self.name} has no derivative rule for it")
        ans = self(*argvals, **kwargs)  # recursion peels Tensors of outer traces, one trace per level
        return Tensor(ans, trace, self, argvals, kwargs, parents)

    def _call_raw(self, args, kwargs):
        try:
            return self.fn(*args, **kwargs)
        except (ValueError, IndexError, TypeError) as e:
            # Name the operation and the shapes: NumPy's own message often shows neither.
            shapes = ", ".join(str(getattr(a, "shape", type(a).__name__)) for a in args)
            raise type(e)(f"{self.name}: cannot apply to operands of shapes ({shapes}): {e}") from None


def primitive(fn):
    """Decorator: turn a NumPy function into a Primitive; then attach its rules with defvjp."""
    return Primitive(fn)


def defvjp(prim, *rules):
    """Attach VJP rules to a primitive, one per positional argument (None: not differentiable there)."""
    prim.vjps.update((i, r) for i, r in enumerate(rules) if r is not None)


def _toposort(end):
    """Tensors of end's trace reachable from end, each before every Tensor it was made from."""
    child_count, stack, seen = {}, [end], {id(end)}
    while stack:
        node = stack.pop()
        for _, parent in node.parents:
            child_count[id(parent)] = child_count.get(id(parent), 0) + 1
            if id(parent) not in seen:
                seen.add(id(parent))
                stack.append(parent)
    order, ready = [], [end]
    while ready:  # Kahn's algorithm: a node is emitted once all of its children have been
        node = ready.pop()
        order.append(node)
        for _, parent in node.parents:
            child_count[id(parent)] -= 1
            if child_count[id(parent)] == 0:
                ready.append(parent)
    return order


def backward(end, g, starts):
    """Pull cotangent g back from the Tensor `end` to each leaf in `starts` (all of one trace).
    Returns the list of cotangents, None for a start that end does not depend on."""
    from .ops import add  # accumulation must itself be differentiable

    grads = {id(end): g}
    for node in _toposort(end):
        if node.prim is None:  # a leaf: its cotangent stays in grads for the caller
            continue
        g = grads.pop(id(node), None)  # popped: intermediate cotangents are freed as we go
        if g is None:
            continue
        for argnum, parent in node.parents:
            rule = node.prim.vjps.get(argnum)  # every parent has a rule: Primitive.__call__ made sure
            if rule is not None:
                gp = rule(g, node.value, *node.args, **node.kwargs)
            else:
                gp = node.prim.vjp_argnum(argnum, g, node.value, *node.args, **node.kwargs)
            grads[id(parent)] = add(grads[id(parent)], gp) if id(parent) in grads else gp
    return [grads.get(id(s)) for s in starts]
