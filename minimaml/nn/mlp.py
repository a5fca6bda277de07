"""A multilayer perceptron as a pure function of one flat parameter vector θ.

Layer l computes ``z_l = h_l @ W_l + b_l`` with ``W_l`` of shape (fan_in, fan_out); hidden layers
apply the activation σ (ReLU or tanh), the last layer does not:

    h_0 = x,   h_{l+1} = σ(h_l W_l + b_l),   net(θ, x) = h_{L-1} W_{L-1} + b_{L-1}

All weights live in one vector, in this order (C order inside each matrix):

    θ = concat(W_0.ravel(), b_0, W_1.ravel(), b_1, ...)        shape (P,)

so that derivatives w.r.t. θ are plain vectors and matrices: the gradient is (P,), the Hessian
(P, P). The same code runs batched over tasks: θ of shape (T, P) with x of shape (T, N, fan_in)
gives (T, N, fan_out), one network per task. It uses only ``@``, ``+``, slicing, ``.reshape``
and ``ops.relu`` / ``ops.tanh``, so it runs on NumPy arrays and on engine Tensors alike.
"""

import numbers

import numpy as np

from ..autodiff import ops

ACTIVATIONS = ("relu", "tanh")


class MLP:
    """Fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    >>> net = MLP([1, 40, 40, 1])
    >>> net.num_params                     # 1*40+40 + 40*40+40 + 40*1+1
    1761
    >>> theta = net.init(seed=0)
    >>> net(theta, np.zeros((10, 1))).shape
    (10, 1)
    """

    def __init__(self, sizes, activation="relu"):
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
        if (not isinstance(sizes, list) or len(sizes) < 2
                or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n > 0
                           for n in sizes)):
            raise ValueError(f"sizes must be a list of at least 2 positive ints, got {sizes!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
        self.sizes = [int(n) for n in sizes]
        self.activation = activation
        self._act = ops.relu if activation == "relu" else ops.tanh
        # (fan_in, fan_out, start of W, start of b, end of b) per layer: the flat layout.
        self.slices = []
        offset = 0
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            w_end = offset + fan_in * fan_out
            self.slices.append((fan_in, fan_out, offset, w_end, w_end + fan_out))
            offset = w_end + fan_out
        self.num_params = offset

    def __repr__(self):
        return f"MLP({self.sizes}, activation={self.activation!r})"

    @property
    def num_layers(self):
        return len(self.slices)

    # -- parameters ---------------------------------------------------------------------------
    def init(self, seed=0):
        """Random θ (P,) float64, reproducible from ``seed`` (an int or a np.random.Generator).

        Weights and biases are drawn U[−1/√fan_in, 1/√fan_in] (PyTorch's ``nn.Linear``
        default, used by most MAML re-implementations). Non-zero first-layer biases matter for
        1-D regression: with zero biases every first-layer ReLU would have its kink at x = 0.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        theta = np.empty(self.num_params)
        for fan_in, fan_out, w0, w1, b1 in self.slices:
            bound = 1.0 / np.sqrt(fan_in)
            theta[w0:b1] = rng.uniform(-bound, bound, size=b1 - w0)
        return theta

    def unflatten(self, theta):
        """θ (..., P) -> [(W_0, b_0), ...] with W_l (..., fan_in, fan_out), b_l (..., fan_out).

        On ndarrays these are views into θ, so writing into them writes into θ.
        """
        self._check_theta(theta)
        lead = tuple(theta.shape[:-1])
        return [(theta[..., w0:w1].reshape(lead + (fan_in, fan_out)), theta[..., w1:b1])
                for fan_in, fan_out, w0, w1, b1 in self.slices]

    def flatten(self, layers):
        """[(W_0, b_0), ...] -> θ (..., P): the inverse of ``unflatten`` (NumPy arrays)."""
        if len(layers) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} (W, b) pairs, got {len(layers)}")
        parts = []
        for (W, b), (fan_in, fan_out, *_) in zip(layers, self.slices):
            W, b = np.asarray(W), np.asarray(b)
            if W.shape[-2:] != (fan_in, fan_out) or b.shape[-1:] != (fan_out,):
                raise ValueError(f"layer expects W (..., {fan_in}, {fan_out}) and b (..., {fan_out}), "
                                 f"got W {W.shape} and b {b.shape}")
            parts += [W.reshape(W.shape[:-2] + (-1,)), b]
        return np.concatenate(parts, axis=-1)

    # -- the function -------------------------------------------------------------------------
    def __call__(self, theta, x):
        return self.net(theta, x)

    def net(self, theta, x):
        """net(θ, x): θ (P,) with x (..., N, in) -> (..., N, out); θ (T, P) with x (T, N, in) -> (T, N, out)."""
        self._check_theta(theta)
        self._check_x(theta, x)
        lead = tuple(theta.shape[:-1])
        h = x
        for l, (W, b) in enumerate(self.unflatten(theta)):
            # Batched θ: b is (T, out); (T, 1, out) broadcasts it over the N points of each task.
            h = h @ W + (b.reshape(lead + (1, b.shape[-1])) if lead else b)
            if l < self.num_layers - 1:
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
