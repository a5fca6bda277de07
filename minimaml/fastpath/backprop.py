"""Hand-derived backprop and Pearlmutter's R-operator for ``MLP``, batched over tasks, in NumPy.

This is minimaml's fast CPU route to the MAML meta-gradient, and the reference the CUDA kernel
mirrors line by line. Notation for one task (K points, layers l = 0..L−1, σ the activation):

    forward      z_l = h_l W_l + b_l,   h_{l+1} = σ(z_l),   out = z_{L−1},   h_0 = x
    loss         L = 1/(K m) Σ (out − y)²                     (m = output size)
    backward     δ_{L−1} = ∂L/∂out = 2/(K m) (out − y)
                 ∇W_l = h_lᵀ δ_l,   ∇b_l = Σ_k δ_l,   dh_l = δ_l W_lᵀ,   δ_{l−1} = σ'(z_{l−1}) ⊙ dh_l

The R-operator R{·} = d/dε (·)(θ + ε v) at ε = 0 differentiates every line above along a
direction v = (V_l, v_l) of parameter space; the R of the gradient is the Hessian-vector
product H v, at about the cost of one more forward and backward pass:

    R-forward    R{z_l} = R{h_l} W_l + h_l V_l + v_l,   R{h_{l+1}} = σ'(z_l) ⊙ R{z_l},   R{h_0} = 0
    R-backward   R{δ_{L−1}} = 2/(K m) R{out}
                 R{∇W_l} = h_lᵀ R{δ_l} + R{h_l}ᵀ δ_l,   R{∇b_l} = Σ_k R{δ_l}
                 R{dh_l} = R{δ_l} W_lᵀ + δ_l V_lᵀ
                 R{δ_{l−1}} = σ'(z_{l−1}) ⊙ R{dh_l} + σ''(z_{l−1}) ⊙ R{z_{l−1}} ⊙ dh_l

Each R line is its plain line applied to the R quantities plus a product-rule term, so the code
reuses the plain per-layer helpers (``_dense_forward``, ``_dense_backward``) and adds the extras.

Two layout choices make it fast without hiding the math:

* The bias is the weight of a constant input 1: with ĥ = [h 1] and Ŵ_l = [W_l; b_l], a layer is
  z = ĥ Ŵ_l, its gradient ∇Ŵ_l = ĥᵀ δ (the last row is Σ_k δ = ∇b_l) — one matmul each. And the
  flat θ stores each layer as W_l.ravel() followed by b_l, which *is* Ŵ_l in C order, so
  ``_blocks(net, θ)`` gets every Ŵ_l as a view and gradients are written straight into θ's layout.
* Every array carries a leading batch axis B (tasks, or Hessian directions); a Ŵ or x shared by
  the whole batch has no batch axis and ``np.matmul`` broadcasts it (MAML's first inner step
  shares θ across tasks).
"""

import ctypes
import ctypes.util
import numbers
import os

import numpy as np

from ..nn.mlp import MLP


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse instead of handing it back to the OS.

    Why: a meta-step allocates and frees dozens of 10-350 KB temporaries. By default glibc serves
    those above 128 KB with a fresh mmap and trims the heap as soon as 128 KB are free at its top,
    so nearly every temporary pays page faults on first touch; on the 2-core benchmark machine
    that cost more than the arithmetic (float64 meta-step ~3x slower). PyTorch and XLA avoid it
    with their own caching allocators; this is NumPy's equivalent. It is process-wide, so the
    library never does it on import: ``train`` and the benchmarks call it (a user
    timing the hvp route in their own process may too). Set MINIMAML_DEFAULT_MALLOC=1 to skip it.
    Returns True if it took effect.
    """
    if os.environ.get("MINIMAML_DEFAULT_MALLOC"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):         # not glibc (macOS, Windows): nothing to do
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) & bool(mallopt(M_TRIM_THRESHOLD, 512 << 20))



# ------------------------------------------------------------------------------------------
# Layout helpers.
# ------------------------------------------------------------------------------------------
def _blocks(net, theta):
    """θ (..., P) -> [Ŵ_0, Ŵ_1, ...], Ŵ_l = [W_l; b_l] of shape (..., fan_in + 1, fan_out) (views)."""
    lead = theta.shape[:-1]
    return [theta[..., w0:b1].reshape(lead + (fan_in + 1, fan_out))
            for fan_in, fan_out, w0, _, b1 in net.slices]


def _mT(a):
    """Matrix transpose of the last two axes (a view)."""
    return a.swapaxes(-1, -2)


def _with_ones(shape, dtype):
    """An empty (..., n + 1) array whose last column is 1: room for ĥ = [h 1]."""
    a = np.empty(shape[:-1] + (shape[-1] + 1,), dtype)
    a[..., -1] = 1
    return a


def augment(x):
    """x (..., N, n) -> x̂ = [x 1] (..., N, n + 1): the network input with the bias's constant 1."""
    x1 = _with_ones(x.shape, x.dtype)
    x1[..., :-1] = x
    return x1


def _matmul(a, b):
    """a @ b, except that an inner dimension of 1 (an outer product, e.g. δ Wᵀ for a 1-output
    layer) is done by broadcasting: NumPy's matmul is ~5x slower on that shape."""
    return a * b if a.shape[-1] == 1 else a @ b


# ------------------------------------------------------------------------------------------
# Per-layer pieces, shared by the gradient and the Hessian-vector product.
# ------------------------------------------------------------------------------------------
def _dense_forward(h1, W1):
    """z = ĥ Ŵ = h W + b."""
    return h1 @ W1


def _dense_backward(h1, W1, delta, gW1, need_dh=True):
    """Given δ = ∂L/∂z for z = ĥ Ŵ: write ∇Ŵ = ĥᵀ δ (i.e. ∇W = hᵀδ and ∇b = Σ_k δ) into gW1;
    return dh = δ Wᵀ (the bias row of Ŵ takes no part: its input is the constant 1)."""
    np.matmul(_mT(h1), delta, out=gW1)
    return _matmul(delta, _mT(W1[..., :-1, :])) if need_dh else None


def _activate(z, activation, h1):
    """Write σ(z) into h1 = [σ(z) 1] and return σ'(z).
    ReLU: σ' = [z > 0], σ'' = 0.  tanh: σ' = 1 − σ², σ'' = −2 σ σ'."""
    h = h1[..., :-1]
    if activation == "relu":
        d = (z > 0).astype(z.dtype)
        np.multiply(z, d, out=h)
        return d
    np.tanh(z, out=h)
    return 1 - h * h


# ------------------------------------------------------------------------------------------
# Whole-network passes. A "cache" holds what the backward and R passes reuse from the forward.
# ------------------------------------------------------------------------------------------
def forward(net, Ws, x1):
    """Forward pass. Ws = _blocks(net, θ); x1 = augment(x), x (B, N, in) or (N, in).

    Returns (out, hs, ds): the output, the augmented layer inputs hs = [ĥ_0 = [x 1], ĥ_1, ...]
    and the activation slopes ds = [σ'(z_0), σ'(z_1), ...] of the hidden layers.
    """
    h1 = x1
    hs, ds = [h1], []
    for l, W1 in enumerate(Ws):
        z = _dense_forward(h1, W1)
        if l == len(Ws) - 1:
            return z, hs, ds
        h1 = _with_ones(z.shape, z.dtype)
        ds.append(_activate(z, net.activation, h1))
        hs.append(h1)


def backward(Ws, hs, ds, delta, grads):
    """Backward pass from δ_{L−1} = ∂L/∂out; writes ∇Ŵ_l into grads = _blocks(net, buffer).

    Returns (deltas, dhs): δ_l = ∂L/∂z_l per layer and dh_l = ∂L/∂h_l (dhs[0] = None: the input
    needs none), which the R-backward pass reuses.
    """
    L = len(Ws)
    deltas, dhs = [None] * L, [None] * L
    for l in reversed(range(L)):
        deltas[l] = delta
        dh = _dense_backward(hs[l], Ws[l], delta, grads[l], need_dh=l > 0)
        if l > 0:
            dhs[l] = dh
            delta = ds[l - 1] * dh
    return deltas, dhs


def r_forward(Ws, hs, ds, Vs):
    """R-forward pass along v (Vs = _blocks(net, v)): returns R{z_l} and R{h_l} (R{h_0} = None = 0)."""
    Rzs, Rhs = [], [None]
    for l, (W1, V1) in enumerate(zip(Ws, Vs)):
        Rz = _dense_forward(hs[l], V1)            # h_l V_l + v_l: θ moves along v
        if Rhs[l] is not None:
            Rz += Rhs[l] @ W1[..., :-1, :]        # R{h_l} W_l: the layer's input moves too
        Rzs.append(Rz)
        if l < len(Ws) - 1:
            Rhs.append(ds[l] * Rz)
    return Rzs, Rhs


def r_backward(activation, Ws, hs, ds, deltas, dhs, Vs, Rzs, Rhs, Rdelta, rgrads):
    """R-backward pass from R{δ_{L−1}}; writes R{∇Ŵ_l} (the blocks of H v) into rgrads."""
    for l in reversed(range(len(Ws))):
        Rdh = _dense_backward(hs[l], Ws[l], Rdelta, rgrads[l], need_dh=l > 0)
        # Product-rule terms: the layer input h_l and the weights W_l move along v as well.
        if Rhs[l] is not None:
            rgrads[l][..., :-1, :] += _mT(Rhs[l]) @ deltas[l]
        if l > 0:
            Rdh += _matmul(deltas[l], _mT(Vs[l][..., :-1, :]))
            Rdelta = ds[l - 1] * Rdh
            if activation == "tanh":              # σ''(z) = −2 σ(z) σ'(z); zero for ReLU
                Rdelta -= 2 * hs[l][..., :-1] * ds[l - 1] * Rzs[l - 1] * dhs[l]


# ------------------------------------------------------------------------------------------
# Loss, gradient and Hessian-vector product of the MSE loss.
# ------------------------------------------------------------------------------------------
def _loss_scale(y):
    """c in ∂L/∂out = c (out − y): L averages (out − y)² over the N·m entries of one task."""
    return 2.0 / (y.shape[-1] * y.shape[-2])


def _batch_shape(theta, x):
    return np.broadcast_shapes(theta.shape[:-1], x.shape[:-2])


def _value_grad_cache(net, theta, x1, y, out=None, need_loss=True):
    """Per-task loss (B,) or () (None unless need_loss), gradient (B, P) or (P,) (into ``out``
    if given), and the cache (Ŵs, ĥs, σ's, δs, dhs) that a Hessian-vector product at the same
    point reuses. x1 = augment(x)."""
    Ws = _blocks(net, theta)
    pred, hs, ds = forward(net, Ws, x1)
    r = pred - y
    loss = np.mean(r * r, axis=(-1, -2)) if need_loss else None
    if out is None:
        out = np.empty(_batch_shape(theta, x1) + (net.num_params,), dtype=theta.dtype)
    deltas, dhs = backward(Ws, hs, ds, _loss_scale(y) * r, _blocks(net, out))
    return loss, out, (Ws, hs, ds, deltas, dhs)


def _hvp_from_cache(net, cache, y, v, out=None):
    """H v for the loss whose forward/backward pass is cached; v (B, P) or (P,)."""
    Ws, hs, ds, deltas, dhs = cache
    Vs = _blocks(net, v)
    Rzs, Rhs = r_forward(Ws, hs, ds, Vs)
    if out is None:
        shape = np.broadcast_shapes(v.shape[:-1], deltas[-1].shape[:-2]) + (net.num_params,)
        out = np.empty(shape, dtype=v.dtype)
    r_backward(net.activation, Ws, hs, ds, deltas, dhs, Vs, Rzs, Rhs,
               _loss_scale(y) * Rzs[-1], _blocks(net, out))
    return out


def mlp_loss_and_grad(net, theta, x, y):
    """MSE loss and its gradient by hand-written backprop.

    θ (P,), x (N, in), y (N, out) -> (loss float, grad (P,)).
    Batched: θ (T, P) or shared (P,), x (T, N, in), y (T, N, out) -> (loss (T,), grad (T, P)),
    one loss and gradient per task.
    """
    theta, x, y = _check_xy(net, theta, x, y)
    loss, grad, _ = _value_grad_cache(net, theta, augment(x), y)
    return (float(loss) if loss.ndim == 0 else loss), grad


def mlp_hvp(net, theta, x, y, v):
    """Hessian-vector product H v of the MSE loss at θ, by the R-operator (no Hessian is formed).

    θ (P,), x (N, in), y (N, out): v (P,) -> (P,), or many directions v (D, P) -> (D, P).
    Batched over tasks: θ (T, P) or (P,), x (T, N, in), y (T, N, out), v (T, P) -> (T, P).
    """
    theta, x, y = _check_xy(net, theta, x, y)
    v = np.asarray(v, dtype=theta.dtype)
    batch = _batch_shape(theta, x)
    if v.shape[-1:] != (net.num_params,) or v.ndim > 2 or (batch and v.shape[:-1] != batch):
        want = f"({batch[0]}, P)" if batch else "(P,) or (D, P)"
        raise ValueError(f"v must have shape {want} with P = {net.num_params}, got {v.shape}")
    _, _, cache = _value_grad_cache(net, theta, augment(x), y, need_loss=False)
    return _hvp_from_cache(net, cache, y, v)


def mlp_hessian(net, theta, x, y):
    """Exact Hessian (P, P) of the MSE loss of one task: H = [H e_1, ..., H e_P], i.e. the
    R-operator applied to all P basis directions at once, as one batch of P directions.

    θ (P,), x (N, in), y (N, out). Costs one forward/backward pass plus one batched R pass.
    """
    theta = _check_theta(net, theta)
    if np.ndim(x) != 2:
        raise ValueError(f"mlp_hessian takes one task: x (N, {net.sizes[0]}), got x shape {np.shape(x)}")
    return mlp_hvp(net, theta, x, y, np.eye(net.num_params, dtype=theta.dtype))


# ------------------------------------------------------------------------------------------
# The MAML meta-gradient.
# ------------------------------------------------------------------------------------------
def hvp_meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order=False):
    """MAML meta-loss and meta-gradient by backprop + Hessian-vector products, all tasks at once.

    Inner loop, per task t (θ_0 = θ, shared by all tasks):

        θ_{k+1} = θ_k − α ∇L_support(θ_k),   k = 0..S−1

    Meta-loss = 1/T Σ_t L_query(θ_S^t). Its gradient by the chain rule, since
    ∂θ_{k+1}/∂θ_k = I − α H_k with H_k = ∇²L_support(θ_k) (symmetric):

        g ← ∇L_query(θ_S);   for k = S−1..0:  g ← g − α H_k g;   meta-grad = 1/T Σ_t g_t

    H_k g is one R-operator pass over the cached support forward/backward of step k, so no
    Hessian is ever formed. ``first_order=True`` drops the H terms (FOMAML): g = ∇L_query(θ_S).

    θ (P,) float32 or float64 (the computation runs in θ's dtype); xs (T, K, in), ys (T, K, out),
    xq (T, Kq, in), yq (T, Kq, out); inner_lr α > 0; steps S >= 0.
    Returns (meta_loss float, meta_grad (P,)).
    """
    theta, xs, ys, xq, yq = _check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps)
    xs1, xq1 = augment(xs), augment(xq)    # [x 1], once for all steps
    # Inner loop: forward, backward, update. Keep each step's cache for the way back.
    caches = []
    theta_k = theta                        # step 0 shares θ: its Ŵs broadcast over the tasks
    for _ in range(steps):
        _, grad, cache = _value_grad_cache(net, theta_k, xs1, ys, need_loss=False)
        caches.append(cache)
        # θ_{k+1} = θ_k − α ∇L_support(θ_k), in place in the gradient's buffer (no temporaries).
        grad *= -inner_lr
        grad += theta_k
        theta_k = grad                     # (T, P): one θ per task from here on
    # Query loss at the adapted parameters and its gradient, per task.
    loss, g, _ = _value_grad_cache(net, theta_k, xq1, yq)
    # Back through the inner steps: g ← (I − α H_k) g.
    if not first_order:
        Hg = np.empty_like(g)
        for cache in reversed(caches):
            _hvp_from_cache(net, cache, ys, g, out=Hg)
            Hg *= inner_lr
            g -= Hg
    return float(loss.mean()), g.mean(axis=0)


# ------------------------------------------------------------------------------------------
# Argument checks: fail early with the shapes involved.
# ------------------------------------------------------------------------------------------
def _check_theta(net, theta, batched_ok=False):
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a minimaml MLP, got {type(net).__name__}")
    theta = np.asarray(theta)
    if theta.dtype not in (np.float32, np.float64):
        theta = theta.astype(np.float64)
    ok_ndim = (1, 2) if batched_ok else (1,)
    if theta.ndim not in ok_ndim or theta.shape[-1] != net.num_params:
        want = "(P,) or (T, P)" if batched_ok else "(P,)"
        raise ValueError(f"theta must have shape {want} with P = {net.num_params} for {net!r}, "
                         f"got {theta.shape}")
    return theta


def _check_xy(net, theta, x, y):
    theta = _check_theta(net, theta, batched_ok=True)
    x = np.asarray(x, dtype=theta.dtype)
    y = np.asarray(y, dtype=theta.dtype)
    n_in, n_out = net.sizes[0], net.sizes[-1]
    if x.ndim not in (2, 3) or x.shape[-1] != n_in:
        raise ValueError(f"x must have shape (N, {n_in}) or (T, N, {n_in}), got {x.shape}")
    if y.shape != x.shape[:-1] + (n_out,):
        raise ValueError(f"y must have shape {x.shape[:-1] + (n_out,)} to match x {x.shape} and "
                         f"the output size {n_out}, got {y.shape}")
    if theta.ndim == 2 and (x.ndim != 3 or x.shape[0] != theta.shape[0]):
        raise ValueError(f"batched theta {theta.shape} needs x of shape ({theta.shape[0]}, N, {n_in}), "
                         f"got {x.shape}")
    return theta, x, y


def check_task_sets(net, xs, ys, xq, yq):
    """Shapes only, so NumPy and CuPy arrays alike (nothing is moved): xs (T, K, in), ys (T, K, out),
    xq (T, Kq, in), yq (T, Kq, out) with T >= 1, in/out the network's sizes. Shared with minimaml.gpu."""
    arrays = {"xs": xs, "ys": ys, "xq": xq, "yq": yq}
    n_in, n_out = net.sizes[0], net.sizes[-1]
    shapes = ", ".join(f"{k} {tuple(a.shape)}" for k, a in arrays.items())
    for name, a in arrays.items():
        size = n_in if name.startswith("x") else n_out
        if a.ndim != 3 or a.shape[-1] != size:
            raise ValueError(f"{name} must have shape (T, K, {size}) for {net!r}; got {shapes}")
    if len({a.shape[0] for a in arrays.values()}) != 1 or xs.shape[0] < 1:
        raise ValueError(f"xs, ys, xq, yq must hold the same number of tasks T >= 1; got {shapes}")
    if xs.shape[1] != ys.shape[1] or xq.shape[1] != yq.shape[1]:
        raise ValueError(f"x and y must have the same number of points K; got {shapes}")


def check_inner_loop(inner_lr, steps):
    """α = inner_lr a finite number > 0, steps an int >= 0. Shared with minimaml.gpu."""
    if (not isinstance(inner_lr, numbers.Real) or isinstance(inner_lr, bool)
            or not np.isfinite(inner_lr) or inner_lr <= 0):
        raise ValueError(f"inner_lr must be a finite number > 0, got {inner_lr!r}")
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")


def _check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps):
    theta = _check_theta(net, theta)
    xs, ys, xq, yq = (np.asarray(a, dtype=theta.dtype) for a in (xs, ys, xq, yq))
    check_task_sets(net, xs, ys, xq, yq)
    check_inner_loop(inner_lr, steps)
    return theta, xs, ys, xq, yq
