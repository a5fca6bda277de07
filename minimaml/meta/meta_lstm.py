"""The Meta-Learner LSTM (Ravi & Larochelle 2017): the update rule is an LSTM cell whose cell state
is the learner's parameters.

For each task, from the learned cell state c_0 = θ_0 (so the LSTM learns an initialisation too),
for t = 1..S, coordinate by coordinate:

    L_t, ∇_t = L_support(θ_{t−1}), ∇θ L_support(θ_{t−1})        the learner's loss and gradient
    i_t = σ(w_I · [∇̃_t, L̃_t, θ_{t−1}, i_{t−1}] + b_I)            input gate: a learned step size
    f_t = σ(w_F · [∇̃_t, L̃_t, θ_{t−1}, f_{t−1}] + b_F)            forget gate: a learned shrinkage
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ (−∇_t),   θ_t = c_t

with i_0 = f_0 = 0. ∇̃ and L̃ are the gradient and the loss preprocessed as in Andrychowicz et al.
2016 (``preprocess``: two numbers each), so each gate reads 6 numbers per coordinate, and its
weights w (6,) and bias b are shared by all coordinates of all tasks while each coordinate of each
task has its own state (c, i, f). The meta-loss is MAML's, L_meta = 1/T Σ_t L_query,t(θ_S,t), and
the meta-parameters are one flat vector

    φ = concat(c_0 (P,), w_I (6,), [b_I], w_F (6,), [b_F])        (P + 14,)

With the gates fixed to f ≡ 1 and i ≡ α the cell is c_t = c_{t−1} − α ∇_t: MAML's inner loop from
θ = c_0, so the meta-gradient with respect to c_0 is MAML's, 1/T Σ_t (I − αH_0)ᵀ⋯(I − αH_{S−1})ᵀ
∇L_query,t(θ_S) (``order=2``), or first-order MAML's ∇L_query,t(θ_S) averaged (``order=1``).

``order`` says what the meta-gradient differentiates. ``order=2``: everything, ∇_t included, whose
derivative ∂∇_t/∂θ_{t−1} = H_{t−1} brings in the second-order terms, as in MAML (notebook 4's
(I − αH) story, with diag(f_t) − diag(i_t)H_{t−1} + the gates' own terms in place of I − αH).
``order=1``: the paper's approximation, which does not backpropagate through the learner's
gradient and loss (to avoid second derivatives): they are inputs to the LSTM, constants to the
meta-gradient (computed on plain arrays); the meta-gradient still flows through c_{t−1} and
through the gates (their θ_{t−1} and i_{t−1}, f_{t−1} inputs).

Everything runs on the engine (any model and loss), batched over tasks and coordinates: the gates
are elementwise operations on (T, P) arrays. The released code puts a 20-unit coordinate-wise LSTM
between the preprocessed inputs and the gates; this module implements the paper's gate equations.
"""
import math
import numbers
from collections import namedtuple

import numpy as np

from ..autodiff import ops, value_and_grad
from ..autodiff.tensor import array_module, raw
from ..nn import mse
from ..nn.mlp import MLP
from . import checks
from .inner import EngineTaskLosses, per_task, task_losses

NUM_INPUTS = 6              # [∇̃ (2), L̃ (2), θ_{t−1}, the gate's previous value]
NUM_GATE_PARAMS = 2 * (NUM_INPUTS + 1)
PREPROCESS_P = 10.0         # Andrychowicz et al.'s p

Parts = namedtuple("Parts", "c0 w_i b_i w_f b_f")
Unroll = namedtuple("Unroll", "theta f i")    # lists: [θ_0, ..., θ_S], [f_1, ..., f_S], [i_1, ..., i_S]


# ----------------------------------------------------------------------------------------------
# The meta-parameters
# ----------------------------------------------------------------------------------------------
def meta_lstm_init(theta0, seed=0, forget_bias=(4.0, 5.0), input_bias=(-5.0, -4.0)):
    """φ (P + 14,) for a learner whose initial parameters are θ_0 = ``theta0`` (P,) (e.g.
    ``net.init(seed)``): c_0 = θ_0, gate weights w ~ U(−0.01, 0.01), b_F ~ U(forget_bias),
    b_I ~ U(input_bias). A forget bias high and an input bias low make the cell start as plain
    gradient descent: f ≈ σ(4.5) ≈ 0.99 keeps θ, i ≈ σ(−4.5) ≈ 0.011 is a small step size."""
    theta0 = checks.check_theta(None, np.asarray(theta0), "theta0")
    for name, (low, high) in (("forget_bias", forget_bias), ("input_bias", input_bias)):
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"{name} must be an interval (low, high) of finite numbers with low <= high, "
                             f"got {(low, high)!r}")
    rng = np.random.default_rng(seed)
    w_i, w_f = rng.uniform(-0.01, 0.01, size=(2, NUM_INPUTS))
    b_i, b_f = rng.uniform(*input_bias), rng.uniform(*forget_bias)
    return np.concatenate([theta0, w_i, [b_i], w_f, [b_f]]).astype(theta0.dtype)


def meta_lstm_split(phi):
    """φ (P + 14,) -> Parts(c0 (P,), w_i (6,), b_i (), w_f (6,), b_f ()): views (or, on a Tensor,
    differentiable slices)."""
    P, n = phi.shape[-1] - NUM_GATE_PARAMS, NUM_INPUTS
    if len(phi.shape) != 1 or P < 1:
        raise ValueError(f"phi must be a flat vector (P + {NUM_GATE_PARAMS},) with P >= 1 (c_0, then the gates' "
                         f"parameters; make it with meta_lstm_init), got shape {tuple(phi.shape)}")
    return Parts(phi[:P], phi[P:P + n], phi[P + n], phi[P + n + 1:P + 2 * n + 1], phi[P + 2 * n + 1])


# ----------------------------------------------------------------------------------------------
# The cell
# ----------------------------------------------------------------------------------------------
def preprocess(x, p=PREPROCESS_P):
    """Andrychowicz et al. 2016's preprocessing of a gradient or loss, elementwise: x -> (a, b),

        (log|x| / p, sign x)   if |x| ≥ e^{−p},        (−1, e^p x)   otherwise,

    each of x's shape. It keeps the magnitude on a log scale and the sign apart, so inputs that
    span many orders of magnitude reach the gates as numbers of order 1. Continuous at |x| = e^{−p}
    (both sides give (−1, ±1)); its derivative is not (1/(p x) and 0 above, 0 and e^p below).

    Differentiable: the branch is chosen by a constant mask, and |x| = sign(x)·x with sign(x) a
    constant (its derivative is 0 wherever it is defined). ``where`` computes both branches, so the
    log gets 1 where its branch is not taken: log's derivative 1/x at x = 0 would otherwise be
    0 · ∞ = NaN in the reverse pass, although the mask discards it.
    """
    value = raw(x)
    xp = array_module(value)
    big = xp.abs(value) >= math.exp(-p)
    sign = xp.sign(value)
    log_part = ops.where(big, ops.log(ops.where(big, sign * x, 1.0)) / p, -1.0)
    sign_part = ops.where(big, sign, math.exp(p) * x)
    return log_part, sign_part


def _gate(w, b, inputs):
    """σ(w · inputs + b) for every coordinate: ``inputs`` the gate's 6 inputs, each (T, P), or the
    loss's (T, 1) broadcasting to it. A sum of products rather than a (T, P, 6) @ (6,) product, which
    costs more here; the loss's two terms are added to b first, while the sum is still (T, 1)."""
    z = b
    for j in (2, 3, 0, 1, 4, 5):
        z = z + w[j] * inputs[j]
    return ops.sigmoid(z)


def _unroll(net, loss, phi, xs, ys, steps, order, gates):
    """The cell run ``steps`` times from c_0 on every task's support set (xs, ys) (T, K, ...).
    Returns Unroll([θ_0, ..., θ_S], [f_1, ...], [i_1, ...]), each (T, P) (θ_0 = c_0 for every
    task); Tensors when φ is one, so the meta-gradient can go through them."""
    c0, w_i, b_i, w_f, b_f = meta_lstm_split(phi)
    T = xs.shape[0]
    theta, i, f = per_task(c0, T), 0.0, 0.0
    tl = EngineTaskLosses(net, loss)
    out = Unroll([theta], [], [])
    for _ in range(steps):
        # order 1: the learner's loss and gradient are the LSTM's inputs, constants to the meta-gradient
        losses, grads, _ = tl.value_and_grad(raw(theta) if order == 1 else theta, xs, ys)
        if gates is None:
            inputs = preprocess(grads) + preprocess(ops.reshape(losses, (T, 1))) + (theta,)
            i = _gate(w_i, b_i, inputs + (i,))
            f = _gate(w_f, b_f, inputs + (f,))
        else:
            f, i = gates
        theta = f * theta - i * grads
        out.theta.append(theta)
        out.f.append(f)
        out.i.append(i)
    return out


# ----------------------------------------------------------------------------------------------
# The public functions
# ----------------------------------------------------------------------------------------------
def meta_lstm_adapt(net, phi, xs, ys, steps, loss=mse, gates=None, trajectory=False):
    """Run the learned update rule on new tasks: θ_S (T, P) after ``steps`` (>= 0) applications of
    the cell from c_0 on each task's support set xs, ys (T, K, ...). ``trajectory=True`` returns
    Unroll(theta=[θ_0, ..., θ_S], f=[f_1, ...], i=[i_1, ...]) instead, each (T, P) (the gates
    numbers if fixed by ``gates=(f, i)``). On plain arrays: nothing is recorded."""
    checks.check_steps(steps)
    xs, ys = _check(net, phi, loss, gates, xs, ys)
    run = _unroll(net, loss, phi, xs, ys, steps, 1, gates)
    return run if trajectory else run.theta[-1]


def meta_lstm_value_and_grad(net, phi, xs, ys, xq, yq, steps, order=2, loss=mse, gates=None):
    """(L_meta(φ), ∇φ L_meta(φ)) of the Meta-Learner LSTM for one meta-batch of T tasks.

    Args:
        net: the learner, a model net(θ, x) (an ``MLP`` or any pure function of minimaml ops).
        phi: the meta-parameters (P + 14,), float32 or float64 (``meta_lstm_init``): c_0 = θ_0 and
            the gates' weights and biases (``meta_lstm_split``).
        xs, ys, xq, yq: support and query sets, (T, K, ...) and (T, Q, ...), as for MAML.
        steps: S >= 1 applications of the cell.
        order: 2 differentiates through the learner's gradients (second order, exact); 1 treats
            the learner's loss and gradient as constants (the paper's approximation).
        loss: loss(out, y) -> per-task mean (``mse``, ``softmax_cross_entropy`` or your own).
        gates: None (the LSTM's gates), or numbers (f, i) that replace them at every step:
            (1, α) is MAML with step α from θ = c_0 (the check of this module).

    Returns:
        (meta_loss, grad): a float and a (P + 14,) array in φ's dtype (zero on the gate
        parameters when ``gates`` fixes the gates).
    """
    if isinstance(order, bool) or order not in (1, 2):
        raise ValueError(f"order must be 1 (the learner's gradients as constants, the paper's) or 2 "
                         f"(differentiate through them), got order={order!r}")
    checks.check_steps(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1 (the number of times the LSTM cell updates θ), got steps={steps}")
    xs, ys, xq, yq = _check(net, phi, loss, gates, xs, ys, xq, yq)

    def meta_loss(ph):
        theta_s = _unroll(net, loss, ph, xs, ys, steps, order, gates).theta[-1]
        return task_losses(net, loss, theta_s, xq, yq).mean()

    value, g = value_and_grad(meta_loss)(phi)
    return float(value), raw(g).astype(raw(phi).dtype, copy=False)


def _check(net, phi, loss, gates, xs, ys, xq=None, yq=None):
    """The arguments, by the shared validator (c_0 stands for θ), plus φ's layout and ``gates``.
    Returns the task arrays in φ's dtype."""
    value = raw(checks.check_theta(None, phi, "phi"))           # a flat float32/float64 vector
    P = net.num_params if isinstance(net, MLP) else value.shape[0] - NUM_GATE_PARAMS
    if P < 1 or value.shape != (P + NUM_GATE_PARAMS,):
        raise ValueError(f"phi must have shape (P + {NUM_GATE_PARAMS},) = ({P + NUM_GATE_PARAMS},): c_0 (P = {P}) then "
                         f"the gates' w_I (6), b_I, w_F (6), b_F; got {value.shape} (make it with meta_lstm_init)")
    c0 = meta_lstm_split(value).c0
    if xq is None:
        xs, ys = checks.check_adapt_args(net, c0, xs, ys, 1.0, 0, loss)
    else:
        checks.check_meta_args(net, c0, xs, ys, xq, yq, 1.0, 0, loss)
        xs, ys, xq, yq = checks.as_data(c0, loss, xs, ys, xq, yq)
    if not bool(np.isfinite(value).all()):
        raise ValueError("phi holds non-finite values (NaN or inf)")
    if gates is not None:
        if not (isinstance(gates, (tuple, list)) and len(gates) == 2
                and all(isinstance(g, numbers.Real) and not isinstance(g, bool) for g in gates)):
            raise TypeError(f"gates must be None or two numbers (f, i), e.g. (1.0, 0.01), got {gates!r}")
        if not all(math.isfinite(g) for g in gates):
            raise ValueError(f"gates must be finite numbers (f, i), got {gates!r}")
    return (xs, ys) if xq is None else (xs, ys, xq, yq)
