"""Whole-network passes of the fast route, and its public functions.

An ``MLP`` with a built-in loss becomes a stack of layers (``layers.py``):

    Dense → [BatchNorm] → Activation → Dense → ... → Dense → head (MSE or cross-entropy)

and per-task parameters become a list with one tuple per layer (a dense layer's weights as a
``weights.Full`` or ``weights.LowRank``, batch norm's (γ, β), nothing for an activation). The
passes run over the stack in order (forward, R-forward) or in reverse (backward, R-backward);
``TaskLosses`` packages them as the one interface every meta-learning algorithm uses:

    value_and_grad(params, x, y) -> per-task losses (T,), gradients, cache
    hvp(cache, v)                -> H v, per task, from the cache of the same point
    axpy(c, X, Y) = Y + cX,  mean(X) over tasks -> (P,),  flat(X) -> (T, P)

with per-task vectors held as a ``Vec``: one flat (T, P) array, as the CUDA kernel holds them
(the sinusoid network), except for the dense layers held as low rank (``weights.py``).

The code takes its array module from θ (``autodiff.array_module``: NumPy or CuPy), so the same
passes run on a GPU for networks too big for the fused kernel.
"""
import numpy as np

from ..autodiff.tensor import array_module
from ..nn.losses import check_targets, mse, softmax_cross_entropy
from ..nn.mlp import BN_EPS, MLP
from .arena import Fresh
from . import weights
from .layers import Activation, BatchNorm, CrossEntropyHead, Dense, MSEHead
from .weights import Full

HEADS = {mse: MSEHead, softmax_cross_entropy: CrossEntropyHead}


def supports(net, loss):
    """(True, "") if the fast route covers this model and loss, else (False, what is missing)."""
    if not isinstance(net, MLP):
        return False, (f"the fast route covers minimaml.MLP networks (dense, batch norm, relu/tanh), "
                       f"not {type(net).__name__}")
    if net.param != "standard":
        return False, (f"the fast route implements MLP's standard parameterisation; {net!r} has "
                       f"param={net.param!r}")
    if loss not in HEADS:
        name = getattr(loss, "__name__", repr(loss))
        return False, f"the fast route covers the losses mse and softmax_cross_entropy, not {name}"
    return True, ""


class Vec:
    """A batch of vectors in parameter space, one per task (or per Hessian direction), as the fast
    route holds them: ``flat`` (..., Pd) has every entry that is held densely, in θ's order (all P of
    them unless some dense layers are low rank: then it is θ without those layers' Ŵ), and ``low``
    maps the index of each low-rank layer to its ``weights.Full``/``weights.LowRank``."""

    __slots__ = ("flat", "low", "views")

    def __init__(self, flat, low):
        self.flat, self.low, self.views = flat, low, None    # views: made once, by Network.views


class Network:
    """The layer stack of an MLP and its loss's head. ``lowrank[l]`` chooses, per dense layer, how
    per-task weights are held (``weights.py``); ``choose_lowrank`` picks it from the rank needed."""

    def __init__(self, net, loss, lowrank=None):
        self.net, self.loss, self.num_params = net, loss, net.num_params
        self.head = HEADS[loss]()
        lowrank = lowrank or [False] * net.num_layers
        self.layers = []
        for l, L in enumerate(net.layers):
            self.layers.append(Dense(L.fan_in, L.fan_out, L.w, lowrank[l]))
            if l < net.num_layers - 1:
                if L.gamma is not None:
                    self.layers.append(BatchNorm(L.fan_out, L.gamma, BN_EPS))
                self.layers.append(Activation(net.activation))
        # Where each densely held block sits in Vec.flat: (layer, start, stop, shape); and the runs of
        # θ they copy: (θ start, θ stop, flat start).
        self.blocks, self.runs, size = [], [], 0
        for i, layer in enumerate(self.layers):
            if layer.lowrank or not layer.shapes():
                continue
            start = layer.start
            for shape in layer.shapes():
                n = int(np.prod(shape))
                self.blocks.append((i, size, size + n, shape))
                if self.runs and self.runs[-1][1] == start:          # contiguous in θ: one run
                    self.runs[-1] = (self.runs[-1][0], start + n, self.runs[-1][2])
                else:
                    self.runs.append((start, start + n, size))
                start, size = start + n, size + n
        self.flat_size = size
        self.identity = self.runs == [(0, self.num_params, 0)]     # Vec.flat is θ's layout itself

    def views(self, vec):
        """The per-layer parameter tuples of ``vec`` (views into vec.flat, and vec.low's entries).
        Made once per Vec (a Vec's low-rank entries are set before its views are first asked for)."""
        if vec.views is not None:
            return vec.views
        lead = vec.flat.shape[:-1]
        params = [[] for _ in self.layers]
        for i, at, stop, shape in self.blocks:
            block = vec.flat[..., at:stop]
            params[i].append(Full(block.reshape(lead + shape)) if len(shape) == 2 else block)
        for i, w in vec.low.items():
            params[i].append(w)
        vec.views = [tuple(p) for p in params]
        return vec.views

    def start(self, theta):
        """θ (P,) or (T, P) as a Vec (views into θ where the layout allows)."""
        if self.identity:
            flat = theta
        else:
            flat = self.xp(theta).concatenate([theta[..., a:b] for a, b, _ in self.runs], axis=-1)
        low = {i: Full(theta[..., layer.start:layer.stop].reshape(theta.shape[:-1] + (layer.n, layer.m)))
               for i, layer in enumerate(self.layers) if layer.lowrank}
        return Vec(flat, low)

    @staticmethod
    def xp(a):
        return array_module(a)

    def empty(self, lead, dtype, ws):
        return Vec(ws.empty(tuple(lead) + (self.flat_size,), dtype), {})

    # -- the four passes over the stack -----------------------------------------------------------
    def forward(self, params, x1, ws):
        caches, a = [], x1
        for layer, p in zip(self.layers, params):
            a, c = layer.forward(a, p, ws)
            caches.append(c)
        return a, caches

    def backward(self, params, caches, delta, grad, ws):
        """Gradients into the Vec ``grad`` (its flat part written in place, its low-rank part filled)."""
        out = self.views(grad)
        for i in reversed(range(len(self.layers))):
            factors, delta = self.layers[i].backward(delta, caches[i], params[i], out[i], ws,
                                                     need_input_grad=i > 0)
            if factors is not None:
                grad.low[i] = factors[0]
        grad.views = None              # made before its low-rank entries existed: make them anew
        return grad

    def r_forward(self, params, caches, v, ws):
        Ra, vs = None, self.views(v)                # R{x} = 0: the data does not move with θ
        for layer, p, c, vp in zip(self.layers, params, caches, vs):
            Ra = layer.r_forward(Ra, c, p, vp, ws)
        return Ra

    def r_backward(self, params, caches, v, Rdelta, rgrad, ws):
        vs, out = self.views(v), self.views(rgrad)
        for i in reversed(range(len(self.layers))):
            factors, Rdelta = self.layers[i].r_backward(Rdelta, caches[i], params[i], vs[i], out[i], ws,
                                                        need_input_grad=i > 0)
            if factors is not None:
                rgrad.low[i] = factors[0]
        rgrad.views = None
        return rgrad


_networks = {}


def network(net, loss, lowrank=None):
    """The (cached) ``Network`` for this MLP, loss and choice of low-rank layers."""
    key = (id(net), tuple(net.sizes), net.activation, net.norm, loss, tuple(lowrank or ()))
    found = _networks.get(key)
    if found is None or found.net is not net:
        found = _networks[key] = Network(net, loss, lowrank)
    return found


def row_scales(s, start, n, m):
    """The step sizes s[start : start + n·m] of one layer's Ŵ (n × m) as one number per row: a number
    when every row has the same, else the (n,) rows' numbers; None when a row's entries differ."""
    block = s[start:start + n * m].reshape(n, m)
    d = block[:, 0]
    if not bool((block == d[:, None]).all()):
        return None
    return d if not bool((d == d[0]).all()) else float(d[0])


def layer_pattern(net, s):
    """For (P,) step sizes s that are one number per row of each dense layer's Ŵ = [W; b] (ANIL's
    α·mask, MAML++'s per-tensor sizes), what each layer's scaling is: "zero", "same" (one number) or
    "rows"; None when s varies along a row (Meta-SGD's). Layers held as low rank can take such sizes
    (``TaskLosses.scale``); the pattern decides the buffers a call uses (``arena.py``)."""
    pattern = []
    for L in net.layers:
        d = row_scales(s, L.w, L.fan_in + 1, L.fan_out)
        if d is None:
            return None
        pattern.append("rows" if np.ndim(d) else "zero" if d == 0 else "same")
    return tuple(pattern)


def choose_lowrank(net, rank):
    """Per dense layer: hold per-task weights as low rank when the largest rank a computation needs
    is under half the smaller side of the layer's (fan_in + 1) × fan_out matrix (there the factors
    cost less to use than one dense copy per task). 0 (unknown) keeps every layer dense."""
    return [0 < rank < min(L.fan_in + 1, L.fan_out) / 2 for L in net.layers]


def augment(x, ws):
    """x (..., N, n) -> x̂ = [x 1] (..., N, n + 1): the dense layer's input with the bias's constant 1."""
    x1 = ws.empty(x.shape[:-1] + (x.shape[-1] + 1,), x.dtype)
    x1[..., :-1] = x
    x1[..., -1] = 1
    return x1


class TaskLosses:
    """Per-task losses, gradients and Hessian-vector products of a network on a batch of tasks, by
    the hand-derived passes. ``ws``: the workspace the arrays come from (``arena.py``)."""

    def __init__(self, net, loss, ws, rank=0):
        self.net = network(net, loss, choose_lowrank(net, rank))
        self.ws = ws
        self._splits = {}               # id -> (vector step size ``scale`` took, its split by layout)

    def start(self, theta):
        return self.net.start(theta)

    def value_and_grad(self, params, x, y, need_loss=True):
        """Per-task losses (T,) (None unless need_loss), gradients (a Vec) and the cache a
        Hessian-vector product at the same point reuses."""
        ws, net = self.ws, self.net
        views = net.views(params)
        out, caches = net.forward(views, augment(x, ws), ws)
        loss, delta, head_cache = net.head.loss_and_delta(out, y, ws, need_loss)
        lead = np.broadcast_shapes(params.flat.shape[:-1], x.shape[:-2])
        grad = net.backward(views, caches, delta, net.empty(lead, out.dtype, ws), ws)
        return loss, grad, (views, caches, head_cache, y, lead)

    def hvp(self, cache, v):
        """H v for the loss whose passes are cached; v a Vec (one direction per task or a batch)."""
        views, caches, head_cache, y, lead = cache
        ws, net = self.ws, self.net
        Rout = net.r_forward(views, caches, v, ws)
        Rdelta = net.head.r_delta(Rout, y, head_cache, ws)
        rgrad = net.empty(np.broadcast_shapes(lead, v.flat.shape[:-1]), Rout.dtype, ws)
        return net.r_backward(views, caches, v, Rdelta, rgrad, ws)

    def axpy(self, c, X, Y):
        """Y + cX (c a number, or one per task (T,)): one pass over the flat parts, the low-rank
        factors concatenated."""
        ws = self.ws
        low = {i: weights.axpy(c, X.low[i], Y.low[i], ws) for i in X.low}
        return Vec(ws.add(Y.flat, ws.mul(X.flat, weights.per_task(c, X.flat.ndim))), low)

    def scale(self, s, X):
        """s ⊙ X for a (P,) vector s, or sX for a number s. A layer held as low rank takes a vector
        that is one number per row of its Ŵ = [W; b] (``layer_pattern``: ANIL's α·mask, MAML++'s
        per-tensor sizes); one that varies inside a row (Meta-SGD's) needs the weights held densely
        (TaskLosses(..., rank=0))."""
        net, ws = self.net, self.ws
        if np.ndim(s) == 0:
            return Vec(ws.mul(X.flat, s), {i: weights.scale(s, w, ws) for i, w in X.low.items()})
        if net.identity:
            return Vec(ws.mul(X.flat, s), {})
        flat, rows = self._split_sizes(s)
        low = {}
        for i, w in X.low.items():
            d = rows[i]
            if np.ndim(d):
                low[i] = weights.scale_rows(d, w, ws)
            elif d == 0 and isinstance(w, weights.LowRank):          # see ``layer_pattern``: "zero"
                low[i] = weights.nothing(w)
            else:
                low[i] = weights.scale(d, w, ws)
        return Vec(ws.mul(X.flat, flat), low)

    def _split_sizes(self, s):
        """s (P,) as (its densely held entries in Vec.flat's layout, {low-rank layer: one number, or
        one per row of its Ŵ}). The inner loop and the walk back pass the same arrays again: each
        is split once (checked, and copied into the flat layout), not at every call."""
        kept = self._splits.get(id(s))
        if kept is not None and kept[0] is s:           # kept[0] holds s, so its id is not reused
            return kept[1]
        net, rows = self.net, {}
        for i, layer in enumerate(net.layers):
            if not getattr(layer, "lowrank", False):
                continue
            rows[i] = row_scales(s, layer.start, layer.n, layer.m)
            if rows[i] is None:
                self._dense_only("a step size that varies along a row of a layer held as low rank")
        flat = net.xp(s).concatenate([s[a:b] for a, b, _ in net.runs]) if net.runs else s[:0]
        self._splits[id(s)] = (s, (flat, rows))
        return flat, rows

    def tensor_dots(self, X, Y, tensors):
        """For each θ range (start, stop) in ``tensors`` (``MLP.tensors()``'s), the mean over tasks of
        Σ X_t ⊙ Y_t over the range, (J,): the gradient of a step size one tensor shares. A layer held
        as low rank answers for its W and its b from the factors (``weights.mean_row_dots``)."""
        net = self.net
        dense = np.zeros(net.num_params, dtype=np.float64)
        product = (X.flat * Y.flat).sum(axis=0) * (1.0 / len(X.flat)) if X.flat.ndim == 2 else X.flat * Y.flat
        product = self.ws.xp.asnumpy(product) if hasattr(self.ws.xp, "asnumpy") else product
        for a, b, at in net.runs:
            dense[a:b] = product[at:at + b - a]
        low = {}
        for i in X.low:
            layer = net.layers[i]
            split = layer.start + (layer.n - 1) * layer.m                   # W's rows, then b's row
            low[(layer.start, split)] = weights.mean_row_dots(X.low[i], Y.low[i], slice(0, -1), self.ws)
            low[(split, layer.stop)] = weights.mean_row_dots(X.low[i], Y.low[i], slice(-1, None), self.ws)
        return np.array([low[(a, b)] if (a, b) in low else dense[a:b].sum() for a, b in tensors])

    def mean_product(self, X, Y):
        """The mean over tasks of X_t ⊙ Y_t, as a fresh (P,) array (dense vectors only)."""
        self._dense_only("the gradient of per-parameter step sizes")
        return (X.flat * Y.flat).sum(axis=0) * (1.0 / len(X.flat))

    def _dense_only(self, what):
        if not self.net.identity:
            raise ValueError(f"{what} needs the per-task weights held densely (TaskLosses(..., rank=0))")

    def outputs(self, params, x):
        """net(θ_t, x_t) for every task: the forward pass alone, (T, N, out)."""
        return self.net.forward(self.net.views(params), augment(x, self.ws), self.ws)[0]

    def mean(self, X, dtype):
        """1/T Σ_t X_t as a flat (P,) array (a fresh one: it is handed to the user)."""
        out = self.ws.xp.empty(self.net.num_params, dtype)
        flat = X.flat.sum(axis=0) * (1.0 / len(X.flat)) if X.flat.ndim == 2 else X.flat
        for a, b, at in self.net.runs:
            out[a:b] = flat[at:at + b - a]
        for i, w in X.low.items():
            layer = self.net.layers[i]
            out[layer.start:layer.stop] = w.mean().reshape(-1)
        return out

    def flat(self, X, lead, dtype):
        """X as a flat (*lead, P) array (fresh)."""
        out = self.ws.xp.empty(tuple(lead) + (self.net.num_params,), dtype)
        for a, b, at in self.net.runs:
            out[..., a:b] = X.flat[..., at:at + b - a]
        for i, w in X.low.items():
            layer = self.net.layers[i]
            out[..., layer.start:layer.stop] = w.dense(self.ws).reshape(tuple(lead) + (-1,))
        return out


# ----------------------------------------------------------------------------------------------
# Public functions: one loss, gradient or Hessian-vector product, for a batch of tasks or one.
# ----------------------------------------------------------------------------------------------
def _prepare(net, theta, x, y, loss):
    ok, why = supports(net, loss)
    if not ok:
        raise TypeError(f"{why}; use the engine (minimaml.grad / minimaml.hvp) for other models")
    xp = array_module(theta)
    theta = xp.asarray(theta)
    if theta.dtype not in (np.float32, np.float64):
        raise TypeError(f"theta must be float32 or float64, got dtype {theta.dtype}")
    if theta.shape[-1:] != (net.num_params,) or theta.ndim > 2:
        raise ValueError(f"theta must have shape (P,) or (T, P) with P = {net.num_params} for {net!r}, "
                         f"got {theta.shape}")
    x = xp.asarray(x, dtype=theta.dtype)
    if x.ndim not in (2, 3) or x.shape[-1] != net.sizes[0] or (theta.ndim == 2 and x.shape[:1] != theta.shape[:1]):
        want = f"({theta.shape[0]}, N, {net.sizes[0]})" if theta.ndim == 2 else f"(N, {net.sizes[0]}) or (T, N, {net.sizes[0]})"
        raise ValueError(f"x must have shape {want} for theta {theta.shape}, got {x.shape}")
    y = xp.asarray(y, dtype=theta.dtype) if loss is mse else xp.asarray(y)
    check_targets(loss, x.shape[:-1] + (net.sizes[-1],), y)
    return xp, theta, x, y


def _lead(theta, x):
    return np.broadcast_shapes(theta.shape[:-1], x.shape[:-2])


def mlp_loss_and_grad(net, theta, x, y, loss=mse):
    """Loss and gradient by the hand-derived backward pass.

    θ (P,), x (N, in), y (N, out) (or labels (N,)) -> (loss float, grad (P,)).
    Batched: θ (T, P) or shared (P,), x (T, N, in), y (T, N, ...) -> (loss (T,), grad (T, P)).
    """
    xp, theta, x, y = _prepare(net, theta, x, y, loss)
    tl = TaskLosses(net, loss, Fresh(xp))
    losses, grads, _ = tl.value_and_grad(tl.start(theta), x, y)
    return (float(losses) if losses.ndim == 0 else losses), tl.flat(grads, _lead(theta, x), theta.dtype)


def mlp_hvp(net, theta, x, y, v, loss=mse):
    """Hessian-vector product H v of the loss at θ, by the R-operator (no Hessian is formed).

    θ (P,), x (N, in), y: v (P,) -> (P,), or many directions v (D, P) -> (D, P).
    Batched over tasks: θ (T, P) or (P,), x (T, N, in), y, v (T, P) -> (T, P).
    """
    xp, theta, x, y = _prepare(net, theta, x, y, loss)
    v = xp.asarray(v, dtype=theta.dtype)
    lead = _lead(theta, x)
    if v.shape[-1:] != (net.num_params,) or v.ndim > 2 or (lead and v.shape[:-1] != lead):
        want = f"({lead[0]}, P)" if lead else "(P,) or (D, P)"
        raise ValueError(f"v must have shape {want} with P = {net.num_params}, got {v.shape}")
    tl = TaskLosses(net, loss, Fresh(xp))
    _, _, cache = tl.value_and_grad(tl.start(theta), x, y, need_loss=False)
    single = v.ndim == 1
    Hv = tl.hvp(cache, tl.start(v[None] if single else v))
    out = tl.flat(Hv, (1,) if single else v.shape[:-1], theta.dtype)
    return out[0] if single else out


def mlp_hessian(net, theta, x, y, loss=mse):
    """Exact Hessian (P, P) of the loss of one task: H = [H e_1, ..., H e_P], i.e. the R-operator
    applied to all P basis directions at once, as one batch of P directions.

    θ (P,), x (N, in), y. Costs one forward/backward pass plus one batched R pass.
    """
    if np.ndim(x) != 2:
        raise ValueError(f"mlp_hessian takes one task: x (N, {net.sizes[0]}), got x shape {np.shape(x)}")
    xp = array_module(theta)
    return mlp_hvp(net, theta, x, y, xp.eye(net.num_params, dtype=xp.asarray(theta).dtype), loss=loss)
