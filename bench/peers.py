"""MAML's meta-gradient written with JAX and with PyTorch the way their users write it.

Benchmark only: neither library is a dependency of minimaml. Each peer is what a JAX or PyTorch
user would write for the MAML paper's sinusoid experiment (Eric Jang's "MAML in JAX" post, the
jax-meta-learning notebooks, functorch's ``maml_regression`` example):

* parameters are a list of per-layer arrays (a pytree; in PyTorch the module's named parameters),
* ``inner_update``: θ' = θ − α ∇θ L_support(θ), leaf by leaf (``tree_map`` / a dict comprehension),
* ``maml_loss``: one task's query loss after ``steps`` inner updates,
* ``jax.vmap`` / ``torch.func.vmap`` over the T tasks, the mean over tasks,
* ``jax.jit(jax.value_and_grad(...))`` / ``torch.func.grad_and_value(...)``.

The timed function is the meta-gradient only: no optimiser. Network and loss are minimaml's
(z_l = h_l W_l + b_l, W_l (fan_in, fan_out); MSE = mean over points and outputs), so the numbers
are the same computation; ``to_layers`` / ``to_theta`` convert between minimaml's flat θ
(layer l: W_l in C order, then b_l) and the peers' per-layer arrays.

``META_GRADS[name](net, theta, xs, ys, xq, yq, inner_lr, steps, first_order)`` returns
``(run, result)``: ``run()`` computes (meta-loss, meta-gradient) in the peer's own types and
blocks until they are ready (the timed call); ``result(out)`` turns that into
(float, θ-layout float64 array) for the correctness check. Importing a missing peer raises
ImportError; ``available()`` lists the installed ones.

``HESSIANS`` (for bench_hessian.py) differentiate the loss with respect to minimaml's flat θ,
since the point there is the (P, P) matrix itself.
"""

import importlib.metadata
import importlib.util

import numpy as np


def available():
    """Names of the installed peers, e.g. ["jax", "torch"] (found without importing them: importing
    one changes how fast NumPy runs in this process, see harness.py)."""
    return [name for name in ("jax", "torch") if importlib.util.find_spec(name) is not None]


def versions(names):
    """"jax 0.10.2, jaxlib 0.10.2, torch 2.13.0+cpu" for the given peers, without importing them."""
    dists = {"jax": ["jax", "jaxlib"], "torch": ["torch"]}
    return ", ".join(f"{d} {importlib.metadata.version(d)}" for n in names for d in dists[n])


def to_layers(net, theta):
    """minimaml's flat θ (P,) -> [(W_0, b_0), ...] as float arrays (copies), W_l (fan_in, fan_out)."""
    return [(np.array(W), np.array(b)) for W, b in net.unflatten(np.asarray(theta))]


def to_theta(net, layers):
    """[(W_0, b_0), ...] (anything np.asarray takes) -> flat θ (P,) float64."""
    return net.flatten([(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in layers])


# ------------------------------------------------------------------------------------------
# JAX (Eric Jang's MAML post / jax-meta-learning): pytree of params, grad, vmap, jit.
# ------------------------------------------------------------------------------------------
def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)   # float64 needs it; float32 arrays stay float32
    return jax, jax.numpy


def make_jax_meta_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order):
    jax, jnp = _jax()
    act = jax.nn.relu if net.activation == "relu" else jnp.tanh

    def forward(params, x):
        for W, b in params[:-1]:
            x = act(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss(params, x, y):
        return jnp.mean((forward(params, x) - y) ** 2)

    def inner_update(params, x, y):
        grads = jax.grad(loss)(params, x, y)
        if first_order:
            grads = jax.lax.stop_gradient(grads)
        return jax.tree_util.tree_map(lambda p, g: p - inner_lr * g, params, grads)

    def maml_loss(params, xs, ys, xq, yq):
        for _ in range(steps):
            params = inner_update(params, xs, ys)
        return loss(params, xq, yq)

    def batched_maml_loss(params, xs, ys, xq, yq):
        return jnp.mean(jax.vmap(maml_loss, in_axes=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq))

    meta_grad = jax.jit(jax.value_and_grad(batched_maml_loss))
    dtype = theta.dtype
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in to_layers(net, theta)]
    data = [jnp.asarray(np.asarray(a, dtype)) for a in (xs, ys, xq, yq)]

    def run():
        return jax.block_until_ready(meta_grad(params, *data))

    def result(out):
        value, grads = out
        return float(value), to_theta(net, grads)

    return run, result


def make_jax_hessian(net, theta, x, y):
    jax, jnp = _jax()
    act = jax.nn.relu if net.activation == "relu" else jnp.tanh

    def loss(theta, x, y):        # minimaml's flat θ: the Hessian is the (P, P) matrix itself
        h = x
        for l, (fi, fo, w0, w1, b1) in enumerate(net.slices):
            h = h @ theta[w0:w1].reshape(fi, fo) + theta[w1:b1]
            if l < net.num_layers - 1:
                h = act(h)
        return jnp.mean((h - y) ** 2)

    hess = jax.jit(jax.hessian(loss))
    args = [jnp.asarray(np.asarray(a, theta.dtype)) for a in (theta, x, y)]
    return lambda: np.asarray(hess(*args).block_until_ready())


# ------------------------------------------------------------------------------------------
# PyTorch (functorch's maml_regression example): nn.Sequential + torch.func.functional_call,
# grad, vmap.
# ------------------------------------------------------------------------------------------
def _torch(threads):
    import torch
    if threads:
        torch.set_num_threads(threads)
    return torch


def _torch_model(torch, net, dtype):
    layers = []
    for l, (fan_in, fan_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if l < net.num_layers - 1:
            layers.append(torch.nn.ReLU() if net.activation == "relu" else torch.nn.Tanh())
    return torch.nn.Sequential(*layers).to(getattr(torch, np.dtype(dtype).name))


def _torch_params(torch, model, net, theta):
    """minimaml's θ as the model's named parameters (nn.Linear stores W transposed, (out, in))."""
    names = [n for n, _ in model.named_parameters()]
    values = []
    for W, b in to_layers(net, theta):
        values += [torch.tensor(W.T.copy()), torch.tensor(b)]
    return dict(zip(names, values))


def make_torch_meta_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order, threads=1):
    torch = _torch(threads)
    from torch.func import functional_call, grad, grad_and_value, vmap

    model = _torch_model(torch, net, theta.dtype)

    def loss(params, x, y):
        return torch.nn.functional.mse_loss(functional_call(model, params, (x,)), y)

    def maml_loss(params, xs, ys, xq, yq):
        for _ in range(steps):
            grads = grad(loss)(params, xs, ys)
            if first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            params = {k: p - inner_lr * grads[k] for k, p in params.items()}
        return loss(params, xq, yq)

    def batched_maml_loss(params, xs, ys, xq, yq):
        return vmap(maml_loss, in_dims=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq).mean()

    meta_grad = grad_and_value(batched_maml_loss)
    params = _torch_params(torch, model, net, theta)
    data = [torch.tensor(np.asarray(a, theta.dtype)) for a in (xs, ys, xq, yq)]

    def run():
        return meta_grad(params, *data)      # eager on the CPU: done when it returns

    def result(out):
        grads, value = out
        g = [grads[n].numpy() for n in params]
        return float(value), to_theta(net, [(g[i].T, g[i + 1]) for i in range(0, len(g), 2)])

    return run, result


def make_torch_hessian(net, theta, x, y, threads=1):
    torch = _torch(threads)
    from torch.func import hessian

    def loss(theta, x, y):
        h = x
        for l, (fi, fo, w0, w1, b1) in enumerate(net.slices):
            h = h @ theta[w0:w1].reshape(fi, fo) + theta[w1:b1]
            if l < net.num_layers - 1:
                h = torch.relu(h) if net.activation == "relu" else torch.tanh(h)
        return torch.mean((h - y) ** 2)

    args = [torch.tensor(np.asarray(a, theta.dtype)) for a in (theta, x, y)]
    return lambda: hessian(loss)(*args).numpy()


META_GRADS = {"jax": make_jax_meta_grad, "torch": make_torch_meta_grad}
HESSIANS = {"jax": make_jax_hessian, "torch": make_torch_hessian}


# ------------------------------------------------------------------------------------------
# Omniglot (MAML paper §5.2): dense -> batch norm -> ReLU hidden layers, softmax cross-entropy.
# Parameters per hidden layer (W, b, γ, β), last layer (W, b); minimaml's flat θ stores them in
# that order, layer after layer (W in C order). Batch norm uses the statistics of the points of
# one task in one call (mean and biased variance over the points, per feature), ε = 1e-3.
# ------------------------------------------------------------------------------------------
BN_EPS = 1e-3


def bn_layers(sizes, theta):
    """Flat θ -> [(W_0, b_0, γ_0, β_0), ..., (W_last, b_last)] as NumPy arrays (copies)."""
    layers, i = [], 0
    for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes = [(fan_in, fan_out), (fan_out,)] + ([(fan_out,)] * 2 if l < len(sizes) - 2 else [])
        layer = []
        for shape in shapes:
            n = int(np.prod(shape))
            layer.append(np.array(theta[i:i + n]).reshape(shape))
            i += n
        layers.append(tuple(layer))
    if i != len(theta):
        raise ValueError(f"theta has {len(theta)} entries, the network {sizes} has {i}")
    return layers


def bn_theta(layers):
    """The inverse of ``bn_layers``: per-layer arrays (JAX, torch or NumPy) -> flat θ float64."""
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for layer in layers for a in layer])


def make_jax_omniglot(sizes, theta, xs, ys, xq, yq, inner_lr, factored=False):
    """Second-order MAML, one inner step, all parameters adapted: jit(value_and_grad(mean of vmap)).

    factored=False, the straightforward version: θ' = θ − α ∇L_support(θ) by tree_map, so every
    task gets its own copy of every weight matrix.
    factored=True: the same exact maths without those copies. The support loss reaches W_l only
    through z_l = h_l W_l, so ∇W_l L = h_lᵀ δ_l (h_l the layer's K inputs, δ_l = ∂L/∂z_l), and the
    adapted layer applied to query inputs x is x (W_l − α h_lᵀ δ_l) = x W_l − α (x h_lᵀ) δ_l: a
    (Q, K) and a (K, out) product instead of a per-task (in, out) matrix. δ_l is the gradient of
    the support loss with respect to a zero offset added to z_l; jax.grad of the meta-loss
    differentiates through h_l and δ_l, so the result is the exact second-order meta-gradient.
    The small vectors (b, γ, β) are adapted the usual way.
    """
    jax, jnp = _jax()

    def forward(params, x, offsets=None, low_rank=None):
        """Logits and the inputs h_l of every dense layer. offsets[l] is added to z_l; low_rank[l]
        = (h_s, δ_s) makes the layer's weight W − α h_sᵀ δ_s."""
        inputs = []
        for l, layer in enumerate(params):
            W, b = layer[0], layer[1]
            inputs.append(x)
            z = x @ W + b
            if low_rank is not None:
                h_s, delta_s = low_rank[l]
                z = z - inner_lr * ((x @ h_s.T) @ delta_s)
            if offsets is not None:
                z = z + offsets[l]
            if len(layer) == 4:
                mean = jnp.mean(z, axis=0)
                var = jnp.mean((z - mean) ** 2, axis=0)
                x = jax.nn.relu(layer[2] * (z - mean) / jnp.sqrt(var + BN_EPS) + layer[3])
        return z, inputs

    def xent(logits, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=-1))

    def loss(params, x, y):
        return xent(forward(params, x)[0], y)

    def maml_loss(params, xs, ys, xq, yq):
        grads = jax.grad(loss)(params, xs, ys)
        adapted = jax.tree_util.tree_map(lambda p, g: p - inner_lr * g, params, grads)
        return loss(adapted, xq, yq)

    def maml_loss_factored(params, xs, ys, xq, yq):
        vectors = [layer[1:] for layer in params]                  # (b, γ, β) or (b,)
        offsets = [jnp.zeros((xs.shape[0], layer[0].shape[1]), xs.dtype) for layer in params]

        def support_loss(vectors, offsets):
            logits, inputs = forward([(layer[0],) + v for layer, v in zip(params, vectors)], xs, offsets)
            return xent(logits, ys), inputs

        (g_vectors, deltas), inputs = jax.grad(support_loss, argnums=(0, 1), has_aux=True)(vectors, offsets)
        adapted = [(layer[0],) + tuple(v - inner_lr * g for v, g in zip(vs, gs))
                   for layer, vs, gs in zip(params, vectors, g_vectors)]
        logits, _ = forward(adapted, xq, low_rank=list(zip(inputs, deltas)))
        return xent(logits, yq)

    task_loss = maml_loss_factored if factored else maml_loss

    def batched_maml_loss(params, xs, ys, xq, yq):
        return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq))

    meta_grad = jax.jit(jax.value_and_grad(batched_maml_loss))
    params = [tuple(jnp.asarray(a) for a in layer) for layer in bn_layers(sizes, theta)]
    data = [jnp.asarray(a) for a in (xs, ys, xq, yq)]

    def run():
        return jax.block_until_ready(meta_grad(params, *data))

    def working_set():
        """Bytes of XLA's buffers for one call: arguments, outputs and temporaries (compiles again)."""
        m = meta_grad.lower(params, *data).compile().memory_analysis()
        return m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes

    run.working_set = working_set
    return run, lambda out: (float(out[0]), bn_theta(out[1]))


def make_torch_omniglot(sizes, theta, xs, ys, xq, yq, inner_lr, threads=1):
    """The straightforward version with torch.func: grad of the mean over vmap of a per-task MAML
    loss, inner step by a comprehension over the parameter tuples (a pytree), eager."""
    torch = _torch(threads)
    from torch.func import grad, grad_and_value, vmap

    def forward(params, x):
        for layer in params:
            z = x @ layer[0] + layer[1]
            if len(layer) == 4:
                mean = z.mean(dim=0)
                var = ((z - mean) ** 2).mean(dim=0)
                x = torch.relu(layer[2] * (z - mean) / torch.sqrt(var + BN_EPS) + layer[3])
        return z

    def loss(params, x, y):
        return torch.nn.functional.cross_entropy(forward(params, x), y)

    def maml_loss(params, xs, ys, xq, yq):
        grads = grad(loss)(params, xs, ys)
        adapted = [tuple(p - inner_lr * g for p, g in zip(ps, gs)) for ps, gs in zip(params, grads)]
        return loss(adapted, xq, yq)

    def batched_maml_loss(params, xs, ys, xq, yq):
        return vmap(maml_loss, in_dims=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq).mean()

    meta_grad = grad_and_value(batched_maml_loss)
    params = [tuple(torch.tensor(a) for a in layer) for layer in bn_layers(sizes, theta)]
    data = [torch.tensor(a) for a in (xs, ys, xq, yq)]

    def run():
        return meta_grad(params, *data)

    return run, lambda out: (float(out[1]), bn_theta([[g.numpy() for g in layer] for layer in out[0]]))


OMNIGLOT = {"jax": make_jax_omniglot,
            "jax-factored": lambda *a: make_jax_omniglot(*a, factored=True),
            "torch": make_torch_omniglot}
