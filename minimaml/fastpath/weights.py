"""A dense layer's weights for a batch of tasks: one matrix per task, stored densely or as low rank.

In the augmented notation of ``layers.Dense`` a layer is z = â Ŵ with â = [a 1] and Ŵ = [W; b]
(n = fan_in + 1 rows, m = fan_out columns). Every gradient of a dense layer is a sum of outer
products: ∇Ŵ = âᵀδ over a task's N points, and its R-operator R{∇Ŵ} = âᵀR{δ} + R{â}ᵀδ. So after
the inner step θ' = θ − α∇L the task's weight is the shared Ŵ plus a matrix of rank ≤ N, and the
meta-gradient, walked back through S steps, has rank ≤ Q + 2NS. Two ways to hold such matrices:

* ``Full(W)``: W (n, m) shared by all tasks, or (T, n, m), one copy per task (the CUDA kernel's
  layout). Simplest, and best when n·m is small (the sinusoid network).
* ``LowRank(W0, A, B)``: Ŵ_t = W0 + A_tᵀ B_t with A (T, r, n), B (T, r, m) and W0 (n, m) shared
  (or None: 0). A layer of 785 × 256 weights seen through 5 points per task never needs its
  32 per-task copies (25 MB): the adapted layer's output is â W0 + (â A_tᵀ) B_t, a few small
  matmuls, and the mean over tasks of A_tᵀB_t is one matmul over all tasks' factors.

Both expose the same operations, so the layers never ask which one they hold:
``left(â)`` = â Ŵ_t, ``left_rows(a)`` = a W_t (no bias: for R{a}, whose bias input is 0),
``right(d)`` = d W_tᵀ (without the bias row: the gradient with respect to the layer's input a),
``axpy(c, X, Y)`` = Y + cX, and ``mean(X)`` over tasks.
"""


class Full:
    """Ŵ (n, m) shared by the tasks, or (B, n, m): one per task (or per Hessian direction)."""

    __slots__ = ("W",)

    def __init__(self, W):
        self.W = W

    def left(self, a1, ws):
        """â Ŵ: a1 (B, N, n) -> (B, N, m)."""
        return ws.matmul(a1, self.W)

    def left_rows(self, a, ws):
        """a W, the bias row left out (not multiplied by 0: an infinite bias must not make a NaN)."""
        return ws.matmul(a, self.W[..., :-1, :])

    def right(self, d, ws):
        """d Wᵀ without the bias row: d (B, N, m) -> (B, N, n − 1)."""
        return ws.matmul(d, self.W[..., :-1, :].swapaxes(-1, -2))

    def dense(self, ws):
        return self.W

    def mean(self):
        return self.W.mean(axis=0) if self.W.ndim == 3 else self.W


class LowRank:
    """Ŵ_t = W0 + A_tᵀ B_t: W0 (n, m) shared or None (zero), A (B, r, n), B (B, r, m)."""

    __slots__ = ("W0", "A", "B")

    def __init__(self, W0, A, B):
        self.W0, self.A, self.B = W0, A, B

    def left(self, a1, ws):
        """â W0 + (â A_tᵀ) B_t: two thin matmuls instead of a per-task (n, m) matrix."""
        low = ws.matmul(ws.matmul(a1, self.A.swapaxes(-1, -2)), self.B)
        return low if self.W0 is None else ws.add(ws.matmul(a1, self.W0), low)

    def left_rows(self, a, ws):
        """a W0 + (a A_tᵀ) B_t, the bias row left out."""
        low = ws.matmul(ws.matmul(a, self.A[..., :-1].swapaxes(-1, -2)), self.B)
        return low if self.W0 is None else ws.add(ws.matmul(a, self.W0[:-1]), low)

    def right(self, d, ws):
        """d W0ᵀ + (d B_tᵀ) A_t, bias row dropped."""
        low = ws.matmul(ws.matmul(d, self.B.swapaxes(-1, -2)), self.A[..., :-1])
        return low if self.W0 is None else ws.add(ws.matmul(d, self.W0[:-1].swapaxes(-1, -2)), low)

    def dense(self, ws):
        """The per-task matrices W0 + A_tᵀB_t (B, n, m) (for checks and the flat (T, P) view)."""
        low = ws.matmul(self.A.swapaxes(-1, -2), self.B)
        return low if self.W0 is None else ws.add(low, self.W0)

    def mean(self):
        """1/T Σ_t (W0 + A_tᵀ B_t) = W0 + (all tasks' A)ᵀ(all tasks' B) / T: one matmul."""
        T, r = self.A.shape[:2]
        low = self.A.reshape(T * r, -1).T @ self.B.reshape(T * r, -1) / T
        return low if self.W0 is None else self.W0 + low


def per_task(c, ndim):
    """A number stays a number; a (T,) array of per-task numbers becomes (T, 1, ..., 1) (ndim axes),
    to scale a batch of per-task arrays."""
    return c if getattr(c, "ndim", 0) == 0 else c.reshape(c.shape + (1,) * (ndim - 1))


def axpy(c, X, Y, ws):
    """Y + cX for two per-task weight matrices (the inner step θ − αg and the walk back g − αHg);
    c a number or one number per task (T,).

    Full + Full stays full; anything with a LowRank part becomes LowRank, its factors concatenated
    (the rank adds up), a Full(W0) on the Y side, shared by the tasks, becoming its W0.
    """
    if isinstance(X, Full):
        return Full(ws.add(Y.W, ws.mul(X.W, per_task(c, X.W.ndim))))
    B = ws.mul(X.B, per_task(c, X.B.ndim))
    if isinstance(Y, Full):                      # θ_0 (shared) − α (low-rank gradient)
        return LowRank(Y.W, X.A, B)
    return LowRank(Y.W0, ws.concat([Y.A, X.A], axis=-2), ws.concat([Y.B, B], axis=-2))


def scale(c, X, ws):
    """cX for a per-task weight matrix and one number c."""
    if isinstance(X, Full):
        return Full(ws.mul(X.W, c))
    return LowRank(None if X.W0 is None else ws.mul(X.W0, c), X.A, ws.mul(X.B, c))


def nothing(X):
    """0·X for low rank: a rank-0 factor pair, so an entry that does not adapt (a step size of 0, as
    ANIL's body) costs no product later."""
    return LowRank(None, X.A[..., :0, :], X.B[..., :0, :])


def scale_rows(d, X, ws):
    """diag(d) X: row i of Ŵ times d_i, d (n,) (a step size per row: MAML++'s one for W, another for
    b). For low rank, diag(d) A_tᵀ B_t = (A_t diag(d))ᵀ B_t: the rank stays."""
    if isinstance(X, Full):
        return Full(ws.mul(X.W, d[:, None]))
    return LowRank(None if X.W0 is None else ws.mul(X.W0, d[:, None]), ws.mul(X.A, d), X.B)


def mean_row_dots(X, Y, rows, ws):
    """The mean over tasks of Σ_{i ∈ rows, j} X_t[i, j] Y_t[i, j] for a slice of rows, from the factors:
    for X_t = A_tᵀB_t, Y_t = C_tᵀD_t it is Σ (A_t[:, rows] C_t[:, rows]ᵀ) ⊙ (B_t D_tᵀ), never forming X_t."""
    if isinstance(X, Full) or isinstance(Y, Full) or X.W0 is not None or Y.W0 is not None:
        product = X.dense(ws)[..., rows, :] * Y.dense(ws)[..., rows, :]
        return float(product.sum()) / (len(product) if product.ndim == 3 else 1)
    left = ws.matmul(X.A[..., rows], Y.A[..., rows].swapaxes(-1, -2))          # (T, r_x, r_y)
    right = ws.matmul(X.B, Y.B.swapaxes(-1, -2))
    return float((left * right).sum()) / len(X.A)
