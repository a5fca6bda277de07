"""A model linearised at θ₀: its first-order Taylor expansion in the parameters, as a model of its own.

    f_lin(θ, x) = f(θ₀, x) + J(x) (θ − θ₀),   J(x) = ∂f(θ, x)/∂θ at θ₀   (N, P) for N points

f_lin is affine in θ, so every derivative of order two or more vanishes: the Hessian of an MSE loss
(1/N) Σ (f_lin − y)² is exactly its Gauss–Newton part (2/N) JᵀJ, with no residual term (notebook 4
splits H = G + R; here R = 0). In the NTK parameterisation (``MLP(..., param="ntk")``) gradient
descent on a network approaches gradient descent on its linearisation as the width grows (Lee et
al. 2019; how fast, for MAML, is measured in tutorial 11); ``minimaml.meta_ntk`` is the kernel that
describes MAML on f_lin.

J(x)(θ − θ₀) is one Jacobian-vector product (``minimaml.jvp``) along θ − θ₀, so J is never formed
and f_lin works for any x. ``jvp`` is reverse mode applied to the reverse pass, whose result is
linear in the tangent and recorded on the engine's graph when the tangent is a Tensor: the engine
differentiates f_lin with respect to θ like any other model (MAML's "autodiff", "hessian" and
"first_order" routes). Each call costs about three passes of f at θ₀, whatever θ is.
"""
import numpy as np

from ..autodiff import jvp
from ..autodiff.tensor import raw


class Linearized:
    """f_lin(θ, x) = f(θ₀, x) + J(x)(θ − θ₀): a model ``net(θ, x)`` like any other (see ``linearize``).

    ``batched`` as the network's: an ``MLP``'s linearisation takes θ (T, P) with x (T, N, in), the
    tangents θ_t − θ₀ of all tasks in one Jacobian-vector product.
    """

    def __init__(self, net, theta0):
        theta0 = np.array(raw(theta0))    # a copy: θ₀ must not change under the model's feet
        if theta0.ndim != 1 or not np.issubdtype(theta0.dtype, np.floating):
            raise ValueError(f"theta0 must be a flat float vector (P,), got {theta0.dtype} of shape {theta0.shape}")
        expected = getattr(net, "num_params", None)          # a model that knows its size says it
        if expected is not None and theta0.shape[0] != expected:
            raise ValueError(f"theta0 must have shape (P,) = ({expected},) for {net!r}, got {theta0.shape}")
        theta0.flags.writeable = False
        self.net, self.theta0, self.num_params = net, theta0, theta0.shape[0]
        self.batched = getattr(net, "batched", False)

    def __repr__(self):
        return f"linearize({self.net!r}, theta0 of shape {self.theta0.shape})"

    def __call__(self, theta, x):
        shape = tuple(getattr(theta, "shape", ()))
        if not shape or shape[-1] != self.num_params:
            raise ValueError(f"theta must have shape (P,) or (T, P) with P = {self.num_params} for {self!r}, "
                             f"got shape {shape or None}")
        # the primal has the tangent's shape: θ₀ repeated per task when θ is (T, P)
        theta0 = np.broadcast_to(self.theta0, shape)
        out, change = jvp(lambda th: self.net(th, x), (theta0,), (theta - theta0,))
        return out + change


def linearize(net, theta0):
    """The model ``net`` linearised at θ₀: f_lin(θ, x) = f(θ₀, x) + J(x)(θ − θ₀).

    net: any model net(θ, x) built from minimaml's ops (an ``MLP`` or a function of one task).
    theta0: (P,) the linearisation point. Returns a model f_lin(θ, x) with f's shapes, a pure
    function of θ that MAML trains through the public API (method "autodiff", "hessian" or
    "first_order"; the fast route covers ``MLP`` only). At θ = θ₀ it equals f with f's gradient.

    >>> import minimaml as mm
    >>> net = mm.MLP([1, 8, 1]); theta0 = net.init(seed=0)
    >>> lin = mm.linearize(net, theta0)
    >>> x = np.ones((3, 1)); bool(np.allclose(lin(theta0, x), net(theta0, x)))
    True
    """
    return Linearized(net, theta0)
