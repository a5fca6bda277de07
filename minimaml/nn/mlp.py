"""A multilayer perceptron as a pure function of one flat parameter vector θ.

Layer l computes ``z_l = h_l @ W_l + b_l`` with ``W_l`` of shape (fan_in, fan_out); hidden layers
apply the activation σ (ReLU or tanh), the last layer does not:

    h_0 = x,   h_{l+1} = σ(h_l W_l + b_l),   net(θ, x) = h_{L-1} W_{L-1} + b_{L-1}

With ``norm="batch"`` every hidden layer is dense → batch norm → activation, the MAML paper's
Omniglot network (Finn et al. 2017, §5.2):

    h_{l+1} = σ(γ_l ⊙ ẑ_l + β_l),   ẑ_l = (z_l − μ_l) / √(v_l + ε),

μ_l and v_l the mean and biased (1/N) variance of z_l over the N points of *one task in one call*
(per feature): the support set in the inner loop, the query set for the query loss, at
meta-training and at test alike. Never pooled across tasks, no running averages.

With ``param="ntk"`` (the NTK parameterisation of Jacot, Gabriel & Hongler 2018) the weights are
drawn N(0, 1) and scaled by 1/√fan_in in the forward pass instead of at initialisation:

    z_l = h_l W_l / √fan_in + b_l,   W_l, b_l ~ N(0, 1)

The function at initialisation is distributed as under a Gaussian init of variance 1/fan_in; what
changes is the gradient: ∂z_l/∂W_l carries the factor 1/√fan_in, so the neural tangent kernel
J Jᵀ (a sum over all P parameters) stays O(1) as the width grows, where under ``param="standard"``
it grows with the width, and gradient descent with a fixed step approaches its infinite-width,
linearised limit (``minimaml.linearize``, ``minimaml.meta_ntk``). The bias scale is 1 (Jacot et
al. take 0.1): with 1-D inputs on [−5, 5] it keeps the first layer's ReLU kinks, at x = −b/w,
spread as under the standard init. The fast route implements the standard parameterisation only;
"ntk" networks go through the engine (``method="autodiff"``).

All parameters live in one vector, layer after layer (C order inside each matrix):

    θ = concat(W_0.ravel(), b_0, [γ_0, β_0], W_1.ravel(), b_1, [γ_1, β_1], ...)   shape (P,)

so that derivatives w.r.t. θ are plain vectors and matrices: the gradient is (P,), the Hessian
(P, P). The same code runs batched over tasks: θ of shape (T, P) with x of shape (T, N, fan_in)
gives (T, N, fan_out), one network per task (``batched = True`` tells minimaml so). It uses only
engine ops, so it runs on NumPy arrays and on engine Tensors alike.
"""

import numbers
from collections import namedtuple

import numpy as np

from ..autodiff import ops
from ..tasks.base import as_rng

ACTIVATIONS = ("relu", "tanh")
NORMS = (None, "batch")
PARAMS = ("standard", "ntk")
BN_EPS = 1e-3   # the MAML paper's code (tf.contrib.layers.batch_norm's default)

# Where layer l lives in θ: W_l = θ[w:b].reshape(fan_in, fan_out), b_l = θ[b:gamma or end],
# and with batch norm γ_l = θ[gamma:beta], β_l = θ[beta:end] (gamma = beta = None without).
Layer = namedtuple("Layer", "fan_in fan_out w b gamma beta end")


class MLP:
    """Fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    >>> net = MLP([1, 40, 40, 1])
    >>> net.num_params                     # 1*40+40 + 40*40+40 + 40*1+1
    1761
    >>> theta = net.init(seed=0)
    >>> net(theta, np.zeros((10, 1))).shape
    (10, 1)
    """

    batched = True   # net(θ (T, P), x (T, N, in)) runs T networks at once

    def __init__(self, sizes, activation="relu", norm=None, param="standard"):
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
        if (not isinstance(sizes, list) or len(sizes) < 2
                or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0
                           for n in sizes)):
            raise ValueError(f"sizes must be a list of at least 2 positive ints, got {sizes!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
        if param not in PARAMS:
            raise ValueError(f"unknown param {param!r}; choose one of {PARAMS}")
        self.sizes = [int(n) for n in sizes]
        self.activation = activation
        self.norm = norm
        self.param = param
        self._act = ops.relu if activation == "relu" else ops.tanh
        self.layers = []
        offset = 0
        for l, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            b = offset + fan_in * fan_out
            end = b + fan_out
            gamma = beta = None
            if norm == "batch" and l < len(self.sizes) - 2:   # hidden layers only
                gamma, beta, end = end, end + fan_out, end + 2 * fan_out
            self.layers.append(Layer(fan_in, fan_out, offset, b, gamma, beta, end))
            offset = end
        self.num_params = offset

    def __repr__(self):
        norm = f", norm={self.norm!r}" if self.norm else ""
        param = f", param={self.param!r}" if self.param != "standard" else ""
        return f"MLP({self.sizes}, activation={self.activation!r}{norm}{param})"

    @property
    def num_layers(self):
        return len(self.layers)

    @property
    def slices(self):
        """(fan_in, fan_out, start of W, start of b, end of b) per layer: the dense parts of θ."""
        return [(L.fan_in, L.fan_out, L.w, L.b, L.b + L.fan_out) for L in self.layers]

    def describe(self):
        """The model as a JSON-able dict (what a checkpoint stores); ``from_description`` inverts it."""
        return {"kind": "mlp", "sizes": list(self.sizes), "activation": self.activation, "norm": self.norm,
                "param": self.param}

    @classmethod
    def from_description(cls, d):
        if d.get("kind", "mlp") != "mlp":
            raise ValueError(f"not an MLP description: {d!r}")
        return cls(d["sizes"], d.get("activation", "relu"), d.get("norm"), d.get("param", "standard"))

    # -- parameters ---------------------------------------------------------------------------
    def init(self, seed=0):
        """Random θ (P,) float64, reproducible from ``seed`` (an int or a np.random.Generator).

        Weights and biases are drawn U[−1/√fan_in, 1/√fan_in] (PyTorch's ``nn.Linear``
        default, used by most MAML re-implementations). Non-zero first-layer biases matter for
        1-D regression: with zero biases every first-layer ReLU would have its kink at x = 0.
        Batch norm starts as the identity map: γ = 1, β = 0. With ``param="ntk"`` weights and biases
        are drawn N(0, 1) (the forward pass scales the weights by 1/√fan_in).
        """
        rng = as_rng(seed)  # checks the seed: an int >= 0, a Generator, or None
        theta = np.empty(self.num_params)
        for L in self.layers:
            size = L.b + L.fan_out - L.w
            if self.param == "ntk":
                theta[L.w:L.b + L.fan_out] = rng.standard_normal(size)
            else:
                bound = 1.0 / np.sqrt(L.fan_in)
                theta[L.w:L.b + L.fan_out] = rng.uniform(-bound, bound, size=size)
            if L.gamma is not None:
                theta[L.gamma:L.beta], theta[L.beta:L.end] = 1.0, 0.0
        return theta

    def unflatten(self, theta):
        """θ (..., P) -> per layer (W_l, b_l), or (W_l, b_l, γ_l, β_l) with batch norm;
        W_l (..., fan_in, fan_out), the others (..., fan_out).

        On ndarrays these are views into θ, so writing into them writes into θ.
        """
        self._check_theta(theta)
        lead = tuple(theta.shape[:-1])
        out = []
        for L in self.layers:
            W = theta[..., L.w:L.b].reshape(lead + (L.fan_in, L.fan_out))
            b = theta[..., L.b:L.b + L.fan_out]
            out.append((W, b) if L.gamma is None else
                       (W, b, theta[..., L.gamma:L.beta], theta[..., L.beta:L.end]))
        return out

    def flatten(self, layers):
        """The inverse of ``unflatten`` (NumPy arrays): per-layer tuples -> θ (..., P)."""
        if len(layers) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers, got {len(layers)}")
        parts = []
        for params, L in zip(layers, self.layers):
            want = 2 if L.gamma is None else 4
            if len(params) != want:
                raise ValueError(f"layer expects {'(W, b)' if want == 2 else '(W, b, gamma, beta)'}, "
                                 f"got {len(params)} arrays")
            W, *vectors = (np.asarray(p) for p in params)
            if W.shape[-2:] != (L.fan_in, L.fan_out) or any(v.shape[-1:] != (L.fan_out,) for v in vectors):
                raise ValueError(f"layer expects W (..., {L.fan_in}, {L.fan_out}) and vectors "
                                 f"(..., {L.fan_out}), got {[W.shape] + [v.shape for v in vectors]}")
            parts += [W.reshape(W.shape[:-2] + (-1,))] + vectors
        return np.concatenate(parts, axis=-1)

    def tensors(self):
        """The parameter tensors in θ's order, [(name, start, stop)]: W_0, b_0, [γ_0, β_0], W_1, ... (for
        algorithms with one value per tensor, such as MAML++'s per-step step sizes)."""
        out = []
        for l, L in enumerate(self.layers):
            out += [(f"W_{l}", L.w, L.b), (f"b_{l}", L.b, L.b + L.fan_out)]
            if L.gamma is not None:
                out += [(f"gamma_{l}", L.gamma, L.beta), (f"beta_{l}", L.beta, L.end)]
        return out

    def head_mask(self):
        """Boolean (P,): True on the last layer's W and b (the "head"), False elsewhere."""
        mask = np.zeros(self.num_params, dtype=bool)
        mask[self.layers[-1].w:] = True
        return mask

    # -- the function -------------------------------------------------------------------------
    def __call__(self, theta, x):
        return self.net(theta, x)

    def net(self, theta, x):
        """net(θ, x): θ (P,) with x (..., N, in) -> (..., N, out); θ (T, P) with x (T, N, in) -> (T, N, out)."""
        self._check_theta(theta)
        self._check_x(theta, x)
        lead = tuple(theta.shape[:-1])

        def per_task(v):    # (T, C) -> (T, 1, C): broadcast a per-task vector over the N points
            return v.reshape(lead + (1, v.shape[-1])) if lead else v

        h = x
        for l, params in enumerate(self.unflatten(theta)):
            W, b = params[:2]
            if self.param == "ntk":     # the 1/√fan_in in the function, not in θ: every ∂z/∂W carries it
                h = (h @ W) * (1.0 / np.sqrt(self.layers[l].fan_in)) + per_task(b)
            else:
                h = h @ W + per_task(b)
            if l < self.num_layers - 1:
                if len(params) == 4:
                    h = batch_norm(h, per_task(params[2]), per_task(params[3]))
                h = self._act(h)
        return h

    # -- validation ---------------------------------------------------------------------------
    def _check_theta(self, theta):
        shape = getattr(theta, "shape", None)
        if shape is None or len(shape) == 0 or shape[-1] != self.num_params:
            raise ValueError(f"theta must have shape (P,) or (T, P) with P = {self.num_params} "
                             f"for {self!r}, got shape {shape}")

    def _check_x(self, theta, x):
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) < 1 or shape[-1] != self.sizes[0]:
            raise ValueError(f"x must have last dimension {self.sizes[0]} (the input size of "
                             f"{self!r}), got x shape {shape}")
        if len(theta.shape) > 1 and (len(shape) != len(theta.shape) + 1
                                     or tuple(shape[:-2]) != tuple(theta.shape[:-1])):
            raise ValueError(f"batched theta {tuple(theta.shape)} needs x of shape "
                             f"{tuple(theta.shape[:-1])} + (N, {self.sizes[0]}), got x shape {shape}")
        if self.norm == "batch" and len(shape) >= 2 and shape[-2] < 1:
            raise ValueError(f"batch norm needs at least one point per task, got x shape {shape}")


def batch_norm(z, gamma, beta, eps=BN_EPS):
    """γ ⊙ (z − μ) / √(v + ε) + β with μ, v the mean and biased variance of z over its points
    (axis −2), per feature: z (..., N, C), γ and β broadcastable to it."""
    mu = ops.mean(z, axis=-2, keepdims=True)
    c = z - mu
    var = ops.mean(c * c, axis=-2, keepdims=True)
    return gamma * (c / ops.sqrt(var + eps)) + beta
