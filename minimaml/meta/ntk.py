"""MAML at infinite width: the meta neural kernel (Wang, Sun & Li, "Global convergence and
generalization bound of gradient-based meta-learning with deep neural nets", 2020).

Take a model with one output, linearised at θ (``minimaml.linearize``): f(x; θ + δ) = f(x) + J(x) δ,
and minimaml's MSE over each task's n support points, L = (1/n) Σ (f − y)². Its Hessian is exactly
H_s = (2/n) J_sᵀJ_s (notebook 4's Gauss–Newton part; the residual part vanishes), so with c = 2α/n
and the empirical neural tangent kernel K = J Jᵀ (K_qs = J_q J_sᵀ, ...), k inner steps of size α give

    f'(X_q) = f(X_q) − K_qs T (f(X_s) − Y_s),   T = Σ_{j<k} c (I − c K_ss)^j = K_ss⁻¹(I − (I − c K_ss)^k)
    ∂f'(X_q)/∂θ = J_q (I − αH_s)^k = J_q − K_qs T J_s,   since (I − c J_sᵀJ_s)^k = I − J_sᵀ T J_s

(adaptation is kernel regression with K, stopped after k steps; T is its ``adaptation_operator``,
T_i task i's). Stack every task's adapted query predictions into F (T·Q,): F is affine in θ with
Jacobian G, G_i = J_{q_i}(I − αH_i)^k, so an outer step θ ← θ − β ∇L_meta = θ − β Gᵀ ∂L_meta/∂F
moves them by

    ΔF = −β Φ ∂L_meta/∂F,    Φ_ij = G_i G_jᵀ = J_{q_i} (I − αH_i)^k (I − αH_j)^k J_{q_j}ᵀ

the meta neural kernel: notebook 4's (I − α∇²L), literally, on both sides. Outer gradient descent
on the linearised model is kernel regression with Φ. Φ is computed from NTK Gram blocks only,
never from a (P, P) matrix and never inverting K_ss (near-singular):

    Φ_ij = K_{q_i q_j} − K_{q_i s_j}T_jK_{s_j q_j} − K_{q_i s_i}T_iK_{s_i q_j}
           + K_{q_i s_i}T_iK_{s_i s_j}T_jK_{s_j q_j}

As k → ∞ with τ = ck fixed, T → K_ss⁻¹(I − e^{−τK_ss}) (gradient flow for time αk: ``flow=True``),
Wang, Sun & Li's continuous-time meta neural kernel.

Shapes: xs (T, K, ...), xq (T, Q, ...) for T tasks (n = K); kernels over points are flat and
task-major: row t·K + a is support point a of task t, row t·Q + a query point a.
"""
from collections import namedtuple

import numpy as np

from ..autodiff import ops, vjp
from ..autodiff.tensor import raw
from ..autodiff.transforms import check_memory
from . import checks

# The model at θ on every support and query point (f_s (T, K), f_q (T, Q)) and the empirical NTK's
# Gram blocks ss = J_s J_sᵀ (T·K, T·K), sq = J_s J_qᵀ (T·K, T·Q), qq = J_q J_qᵀ (T·Q, T·Q).
NTKGram = namedtuple("NTKGram", "f_s f_q ss sq qq")


def ntk_gram(net, theta, xs, xq):
    """The empirical NTK of a one-output model at θ over all support and query points (``NTKGram``).

    J comes from the engine, one set of points at a time (each task's support set, then each query
    set), called as MAML calls the model, so points that share a call (batch norm) stay coupled.
    The Gram blocks are products of the (N, P) Jacobian, N = T·(K + Q): O(N P) memory, never (P, P).
    """
    checks.check_theta(net, theta)
    theta = raw(theta)
    shapes = np.shape(xs), np.shape(xq)
    if min(map(len, shapes)) < 2 or shapes[0][0] != shapes[1][0] or 0 in shapes[0][:2] + shapes[1][:2]:
        raise ValueError(f"xs and xq must be (T, K, ...) and (T, Q, ...) for the same T >= 1 tasks, got xs "
                         f"{np.shape(xs)} and xq {np.shape(xq)}")
    T, K, Q, P = np.shape(xs)[0], np.shape(xs)[1], np.shape(xq)[1], theta.shape[0]
    check_memory(T * (K + Q) * P * theta.dtype.itemsize, f"the NTK's Jacobians: {T * (K + Q)} points x P = {P}",
                 hint="use fewer tasks or points")
    f, J = np.empty(T * (K + Q), dtype=theta.dtype), np.empty((T * (K + Q), P), dtype=theta.dtype)
    row = 0
    for x in [xs[t] for t in range(T)] + [xq[t] for t in range(T)]:    # rows: all support points, then all query points
        f[row:row + len(x)], J[row:row + len(x)] = _values_and_jacobian(net, theta, x)
        row += len(x)
    gram = J @ J.T               # one product, N × N, then its blocks
    s, q = slice(0, T * K), slice(T * K, None)
    return NTKGram(f[s].reshape(T, K), f[q].reshape(T, Q), gram[s, s], gram[s, q], gram[q, q])


def _values_and_jacobian(net, theta, x):
    """f(x) (n,) and J (n, P) on one set of n points: one forward pass, and one reverse pass with the
    n × n identity as a batch of n cotangents (``minimaml.jacobian``'s way)."""
    out, pullback = vjp(lambda th: ops.reshape(net(th, x), (-1,)), theta)
    if np.size(out) != len(x):
        raise ValueError(f"the meta neural kernel needs a model with one output per point: net(θ, x) for "
                         f"{len(x)} points gave shape {np.shape(net(theta, x))}")
    return out, pullback(np.eye(len(x), dtype=theta.dtype))


def adaptation_operator(K, rate, steps, flow=False):
    """T = Σ_{j<k} c (I − cK)^j = K⁻¹(I − (I − cK)^k), c = ``rate``, k = ``steps``: k steps of gradient
    descent that map the residual r ← (I − cK) r change the predictions by −K T r₀ in all (kernel
    regression: the inner loop with K = K_ss, c = 2α/K; the outer loop with Φ, c = 2β/(T·Q)).

    By the polynomial (Horner: T_{j+1} = cI + (I − cK) T_j), so K is never inverted. ``flow=True``:
    the limit k → ∞ with τ = ck fixed, T = K⁻¹(I − e^{−τK}) = V diag((1 − e^{−τλ})/λ) Vᵀ by the
    eigendecomposition K = V diag(λ) Vᵀ, with (1 − e^{−τλ})/λ → τ at λ = 0.
    K (..., n, n) symmetric -> (..., n, n).
    """
    K = np.asarray(K)
    eye = np.eye(K.shape[-1], dtype=K.dtype)
    if flow:
        lam, V = np.linalg.eigh(K)
        x = rate * steps * lam
        safe = np.where(x == 0, 1.0, x)
        g = rate * steps * np.where(x == 0, 1.0, -np.expm1(-x) / safe)       # (1 − e^{−x})/x · τ
        return (V * g[..., None, :]) @ np.swapaxes(V, -1, -2)
    A = eye - rate * K
    T = np.zeros_like(A)
    for _ in range(steps):
        T = rate * eye + A @ T
    return T


def _adapt_query(gram, rate, steps, flow):
    """M (T·K, T·Q), block diagonal with blocks M_t = T_t K_{s_t q_t}: f'(X_q) = f(X_q) − Mᵀ r_s."""
    (T, K), Q = gram.f_s.shape, gram.f_q.shape[1]
    M = np.zeros((T * K, T * Q), dtype=gram.ss.dtype)
    for t in range(T):
        s, q = slice(t * K, (t + 1) * K), slice(t * Q, (t + 1) * Q)
        M[s, q] = adaptation_operator(gram.ss[s, s], rate, steps, flow) @ gram.sq[s, q]
    return M


def kernel_adapt(gram, ys, rate, steps, flow=False):
    """The linearised model's adapted query predictions (T, Q) from the NTK Gram blocks:

        f'(X_q) = f(X_q) − K_qs T (f(X_s) − Y_s),   T = Σ_{j<k} c (I − c K_ss)^j,  c = ``rate``

    (c = 2α/K for minimaml's MSE): what ``adapt`` and then the model on the query set give for
    ``linearize(net, θ)``, task by task. ys (T, K, 1) or (T, K).
    """
    residual = gram.f_s - np.reshape(ys, gram.f_s.shape)
    M = _adapt_query(gram, rate, steps, flow)
    return gram.f_q - (M.T @ residual.ravel()).reshape(gram.f_q.shape)


def meta_kernel(gram, rate, steps, flow=False):
    """Φ (T·Q, T·Q) from the NTK Gram blocks (``NTKGram``), c = ``rate`` (2α/K for minimaml's MSE):

        Φ = K_qq − K_qs M − Mᵀ K_sq + Mᵀ K_ss M,   M = blockdiag_t(T_t K_{s_t q_t})

    which is the four-term formula block by block (T_t symmetric), i.e. Φ = Eᵀ K E with E = [I; −M]
    over the query-then-support points: a Gram matrix, so symmetric positive semi-definite.
    """
    M = _adapt_query(gram, rate, steps, flow)
    KqsM = gram.sq.T @ M
    return gram.qq - KqsM - KqsM.T + M.T @ (gram.ss @ M)


def meta_ntk(net, theta, xs, xq, inner_lr, steps, flow=False):
    """The meta neural kernel Φ (T·Q, T·Q) of a one-output model at θ, for minimaml's MSE.

    Φ_ij = J_{q_i}(I − αH_i)^k (I − αH_j)^k J_{q_j}ᵀ with H_i = (2/K) J_{s_i}ᵀJ_{s_i}, J the engine's
    Jacobians at θ (the linearisation point), k = ``steps`` inner steps of size α = ``inner_lr``;
    rows and columns are the tasks' query points in order (task-major: t·Q + a). One outer step of
    gradient descent with step β on the linearised model moves the adapted query predictions by
    −β Φ ∂L_meta/∂f'. ``flow=True``: the inner loop as gradient flow for time α·steps (k → ∞, kα fixed).

    θ (P,); xs (T, K, ...), xq (T, Q, ...). Cost: the Jacobians (T·(K + Q), P) and their Gram matrix.
    """
    checks.check_inner_loop(inner_lr, steps)
    gram = ntk_gram(net, theta, xs, xq)
    return meta_kernel(gram, 2 * inner_lr / np.shape(xs)[1], steps, flow)
