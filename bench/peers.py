"""The same MAML meta-step and exact Hessian written with JAX and with PyTorch (torch.func).

Benchmark only: neither library is a dependency of minimaml. Each ``make_*`` returns a
zero-argument callable that runs one step and blocks until the result is ready, or raises
ImportError when the library is not installed. The network is minimaml's MLP convention (flat θ,
layer l: h @ W_l + b_l, W_l (fan_in, fan_out), θ = concat(W_0.ravel(), b_0, ...)) and the loss
is the same MSE, so the numbers are the same computation.

Meta-step = meta-gradient of T tasks (inner loop θ_{k+1} = θ_k − α∇L_support, differentiated
through unless first-order) + one Adam update of θ.
"""

import numpy as np

from minimaml.nn import MLP

ADAM = dict(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8)


def available():
    """Names of the installed peers, e.g. ["jax", "torch"]."""
    names = []
    for name in ("jax", "torch"):
        try:
            __import__(name)
            names.append(name)
        except ImportError:
            pass
    return names


def _net(sizes, act):
    """net(θ, x) for minimaml's flat layout, written once for both frameworks (same operators)."""
    layout = MLP(sizes).slices  # (fan_in, fan_out, start of W, end of W = start of b, end of b)

    def net(theta, x):
        h = x
        for l, (fi, fo, w0, w1, b1) in enumerate(layout):
            h = h @ theta[w0:w1].reshape(fi, fo) + theta[w1:b1]
            if l < len(layout) - 1:
                h = act(h)
        return h
    return net


# ------------------------------------------------------------------------------------------
# JAX: jit + vmap, grad through the inner loop.
# ------------------------------------------------------------------------------------------
def _jax_functions(sizes, activation, dtype):
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)   # float64 needs it; float32 arrays stay float32
    net = _net(sizes, jax.nn.relu if activation == "relu" else jnp.tanh)

    def loss(theta, x, y):
        return jnp.mean((net(theta, x) - y) ** 2)

    return jax, jnp, loss


def make_jax_meta_step(sizes, activation, theta, xs, ys, xq, yq, inner_lr, steps, first_order):
    jax, jnp, loss = _jax_functions(sizes, activation, theta.dtype)

    def task_loss(theta, xs, ys, xq, yq):
        th = theta
        for _ in range(steps):
            g = jax.grad(loss)(th, xs, ys)
            if first_order:
                g = jax.lax.stop_gradient(g)
            th = th - inner_lr * g
        return loss(th, xq, yq)

    def meta_loss(theta, xs, ys, xq, yq):
        return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(theta, xs, ys, xq, yq))

    @jax.jit
    def step(theta, m, v, t, xs, ys, xq, yq):
        value, g = jax.value_and_grad(meta_loss)(theta, xs, ys, xq, yq)
        t = t + 1
        m = ADAM["b1"] * m + (1 - ADAM["b1"]) * g
        v = ADAM["b2"] * v + (1 - ADAM["b2"]) * g * g
        mhat = m / (1 - ADAM["b1"] ** t)
        vhat = v / (1 - ADAM["b2"] ** t)
        return theta - ADAM["lr"] * mhat / (jnp.sqrt(vhat) + ADAM["eps"]), m, v, t, value

    dt = theta.dtype
    state = [jnp.asarray(theta), jnp.zeros_like(jnp.asarray(theta)), jnp.zeros_like(jnp.asarray(theta)),
             jnp.asarray(0, dtype=dt)]
    data = [jnp.asarray(a, dtype=dt) for a in (xs, ys, xq, yq)]

    def run():
        out = step(*state, *data)
        out[0].block_until_ready()
        state[:4] = out[:4]
        return out

    return run


def make_jax_hessian(sizes, activation, theta, x, y):
    jax, jnp, loss = _jax_functions(sizes, activation, theta.dtype)
    hess = jax.jit(jax.hessian(loss))
    args = [jnp.asarray(a, dtype=theta.dtype) for a in (theta, x, y)]
    return lambda: np.asarray(hess(*args).block_until_ready())


# ------------------------------------------------------------------------------------------
# PyTorch: torch.func grad + vmap, grad through the inner loop.
# ------------------------------------------------------------------------------------------
def _torch_functions(sizes, activation):
    import torch
    # One intra-op thread: on the shared 2-core machine PyTorch's default (2 OpenMP threads)
    # made these tiny ops ~100x slower (spin-waiting threads, 700 ms instead of 6 ms per
    # meta-step), and its spinning workers slowed whatever ran next in the same process.
    torch.set_num_threads(1)
    net = _net(sizes, torch.relu if activation == "relu" else torch.tanh)

    def loss(theta, x, y):
        return torch.mean((net(theta, x) - y) ** 2)

    return torch, loss


def make_torch_meta_step(sizes, activation, theta, xs, ys, xq, yq, inner_lr, steps, first_order):
    torch, loss = _torch_functions(sizes, activation)
    from torch.func import grad, grad_and_value, vmap

    def task_loss(theta, xs, ys, xq, yq):
        th = theta
        for _ in range(steps):
            g = grad(loss)(th, xs, ys)
            if first_order:
                g = g.detach()
            th = th - inner_lr * g
        return loss(th, xq, yq)

    def meta_loss(theta, xs, ys, xq, yq):
        return vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(theta, xs, ys, xq, yq).mean()

    meta_grad = grad_and_value(meta_loss)
    theta = torch.tensor(theta)
    data = [torch.tensor(np.asarray(a, dtype=theta.numpy().dtype)) for a in (xs, ys, xq, yq)]
    opt_state = {"m": torch.zeros_like(theta), "v": torch.zeros_like(theta), "t": 0, "theta": theta}

    def run():
        s = opt_state
        g, value = meta_grad(s["theta"], *data)
        s["t"] += 1
        s["m"].mul_(ADAM["b1"]).add_(g, alpha=1 - ADAM["b1"])
        s["v"].mul_(ADAM["b2"]).addcmul_(g, g, value=1 - ADAM["b2"])
        mhat = s["m"] / (1 - ADAM["b1"] ** s["t"])
        vhat = s["v"] / (1 - ADAM["b2"] ** s["t"])
        s["theta"] = s["theta"] - ADAM["lr"] * mhat / (vhat.sqrt() + ADAM["eps"])
        return value

    return run


def make_torch_hessian(sizes, activation, theta, x, y):
    torch, loss = _torch_functions(sizes, activation)
    from torch.func import hessian
    args = [torch.tensor(np.asarray(a, dtype=theta.dtype)) for a in (theta, x, y)]
    return lambda: hessian(loss)(*args).numpy()


META_STEPS = {"jax": make_jax_meta_step, "torch": make_torch_meta_step}
HESSIANS = {"jax": make_jax_hessian, "torch": make_torch_hessian}
