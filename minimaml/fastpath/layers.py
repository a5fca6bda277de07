"""The layers of the fast route, each with its four passes side by side.

For a layer b = f(a; p) inside a network whose loss is L, and a direction v in parameter space
(R{·} = d/dε (·)(θ + εv) at ε = 0, Pearlmutter's R-operator):

    forward      b = f(a; p)                                   (cache what the others need)
    backward     given δb = ∂L/∂b:  ∇p = (∂b/∂p)ᵀ δb,   δa = (∂b/∂a)ᵀ δb
    R-forward    given R{a}:        R{b} = ∂b/∂a R{a} + ∂b/∂p v_p
    R-backward   given R{δb}:       R{∇p}, R{δa}: the backward line differentiated by the product rule

The R of the gradient is the Hessian-vector product H v, at about the cost of one more forward
and backward pass. A network is a stack: dense → [batch norm] → activation → ... → dense → head.

Every array carries a leading batch axis B (tasks, or Hessian directions) and the points axis N
second to last: a (B, N, features). Arrays come from the workspace ``ws`` (``arena.py``); a
layer's parameter gradients are written into ``out``, views of one flat gradient buffer (a
low-rank dense layer returns its factors instead, see ``weights.py``).
Dense inputs are *augmented* with a constant column, â = [a 1], so that the bias is the last row of
Ŵ = [W; b]: the activations write their output straight into such a buffer. R{â} = [R{a} 0] is kept
as R{a} alone, and the bias row is left out wherever it would be multiplied by that 0 (so that an
infinite weight gives inf, not NaN, exactly as the CUDA kernel computes it).
"""
from .weights import LowRank


class Cache:
    """What a layer's forward pass keeps for the other three (attributes set by the layer)."""


class Dense:
    """z = â Ŵ, i.e. z = a W + b.  p = (Ŵ,) as a ``weights.Full`` or ``weights.LowRank``.

        backward     ∇Ŵ = âᵀ δz                     δa = δz Wᵀ
        R-forward    R{z} = â V̂ + R{â} Ŵ           (V̂ = v's block for this layer)
        R-backward   R{∇Ŵ} = âᵀ R{δz} + R{â}ᵀ δz    R{δa} = R{δz} Wᵀ + δz Vᵀ

    ``lowrank``: per-task weights and gradients held as factors (the gradient's are just â and δz).
    """

    def __init__(self, fan_in, fan_out, start, lowrank=False):
        self.n, self.m, self.lowrank = fan_in + 1, fan_out, lowrank
        self.start, self.stop = start, start + self.n * fan_out   # Ŵ = θ[start:stop]: W_l.ravel(), b_l

    def shapes(self):
        return [(self.n, self.m)]

    def forward(self, a1, p, ws):
        c = Cache()
        c.a1 = a1
        return p[0].left(a1, ws), c

    def backward(self, dz, c, p, out, ws, need_input_grad=True):
        c.dz = dz
        if self.lowrank:
            grad = (LowRank(None, c.a1, dz),)
        else:
            ws.xp.matmul(c.a1.swapaxes(-1, -2), dz, out=out[0].W)
            grad = None
        return grad, (p[0].right(dz, ws) if need_input_grad else None)

    def r_forward(self, Ra, c, p, v, ws):
        c.Ra = Ra
        Rz = v[0].left(c.a1, ws)                                        # θ moves along v ...
        return Rz if Ra is None else ws.add(Rz, p[0].left_rows(Ra, ws))  # ... and so does the input

    def r_backward(self, Rdz, c, p, v, out, ws, need_input_grad=True):
        if self.lowrank:
            if c.Ra is None:
                rgrad = (LowRank(None, c.a1, Rdz),)
            else:
                Ra1 = ws.empty(c.Ra.shape[:-1] + c.a1.shape[-1:], c.Ra.dtype)
                Ra1[..., :-1], Ra1[..., -1] = c.Ra, 0                   # R{â} = [R{a} 0]
                rgrad = (LowRank(None, ws.concat([c.a1, Ra1], axis=-2), ws.concat([Rdz, c.dz], axis=-2)),)
        else:
            ws.xp.matmul(c.a1.swapaxes(-1, -2), Rdz, out=out[0].W)
            if c.Ra is not None:                                        # the input moved too: R{a}ᵀ δz
                out[0].W[..., :-1, :] += ws.matmul(c.Ra.swapaxes(-1, -2), c.dz)
            rgrad = None
        if not need_input_grad:
            return rgrad, None
        return rgrad, ws.add(p[0].right(Rdz, ws), v[0].right(c.dz, ws))


class BatchNorm:
    """b = γ ⊙ â + β with â = (z − μ)/s, μ and s² − ε the mean and biased variance of z over the N
    points of each task (per feature; s = √(var + ε)). p = (γ, β), each (C,) or (B, C).

    The Jacobian of â with respect to z is a projection, scaled: for any u (per feature, over the
    points), P(u) = (u − mean u − â · mean(â u)) / s, and it is symmetric. Then:

        backward     ∇γ = Σ_n δb ⊙ â,  ∇β = Σ_n δb,  δz = P(γ δb)
        R-forward    R{â} = P(R{z}),  R{b} = R{γ} â + γ R{â} + R{β}
        R-backward   R{∇γ} = Σ_n (R{δb} ⊙ â + δb ⊙ R{â}),  R{∇β} = Σ_n R{δb},  R{δâ} = γ R{δb} + R{γ} δb
                     R{δz} = P(R{δâ}) − (R{â} m + â · mean(R{â} δâ)) / s − (ρ / s) δz
                     with δâ = γ δb, m = mean(â δâ) and ρ = mean(â R{z}) = R{s}, per feature.
    """

    lowrank = False

    def __init__(self, size, start, eps):
        self.size, self.start, self.eps = size, start, eps
        self.stop = start + 2 * size                                    # γ then β in θ

    def shapes(self):
        return [(self.size,), (self.size,)]

    @staticmethod
    def _points(v):
        """(C,) or (B, C) -> broadcastable over the points axis: (C,) or (B, 1, C)."""
        return v if v.ndim == 1 else v[:, None, :]

    def _project(self, u, c, ws):
        """P(u) = (u − mean u − â mean(â u)) / s, means over the points axis."""
        m1 = ws.mean(u, axis=-2, keepdims=True)
        m2 = ws.mean(ws.mul(c.zhat, u), axis=-2, keepdims=True)
        return ws.mul(ws.sub(ws.sub(u, m1), ws.mul(c.zhat, m2)), c.inv_s)

    def forward(self, z, p, ws):
        c = Cache()
        centered = ws.sub(z, ws.mean(z, axis=-2, keepdims=True))
        var = ws.mean(ws.mul(centered, centered), axis=-2, keepdims=True)
        c.inv_s = ws.xp.reciprocal(ws.xp.sqrt(ws.add(var, self.eps)))  # (B, 1, C), small
        c.zhat = ws.mul(centered, c.inv_s)
        return ws.add(ws.mul(c.zhat, self._points(p[0])), self._points(p[1])), c

    def backward(self, db, c, p, out, ws, need_input_grad=True):
        c.db = db
        ws.xp.sum(ws.mul(db, c.zhat), axis=-2, out=out[0])
        ws.xp.sum(db, axis=-2, out=out[1])
        c.dzhat = ws.mul(db, self._points(p[0]))
        c.m = ws.mean(ws.mul(c.zhat, c.dzhat), axis=-2, keepdims=True)
        c.dz = self._project(c.dzhat, c, ws)
        return None, c.dz

    def r_forward(self, Rz, c, p, v, ws):
        c.rho = ws.mean(ws.mul(c.zhat, Rz), axis=-2, keepdims=True)
        c.Rzhat = self._project(Rz, c, ws)
        Rb = ws.add(ws.mul(c.zhat, self._points(v[0])), ws.mul(c.Rzhat, self._points(p[0])))
        return ws.add(Rb, self._points(v[1]))

    def r_backward(self, Rdb, c, p, v, out, ws, need_input_grad=True):
        ws.xp.sum(ws.add(ws.mul(Rdb, c.zhat), ws.mul(c.db, c.Rzhat)), axis=-2, out=out[0])
        ws.xp.sum(Rdb, axis=-2, out=out[1])
        Rdzhat = ws.add(ws.mul(Rdb, self._points(p[0])), ws.mul(c.db, self._points(v[0])))
        mixed = ws.mean(ws.mul(c.Rzhat, c.dzhat), axis=-2, keepdims=True)
        correction = ws.mul(ws.add(ws.mul(c.Rzhat, c.m), ws.mul(c.zhat, mixed)), c.inv_s)
        Rdz = ws.sub(ws.sub(self._project(Rdzhat, c, ws), correction), ws.mul(c.dz, ws.mul(c.rho, c.inv_s)))
        return None, Rdz


class Activation:
    """h = σ(z), elementwise; its output is written into an augmented buffer [h 1] for the next dense
    layer (R{h} is not: see the module docstring). ReLU: σ' = [z > 0], σ'' = 0.  tanh: σ' = 1 − h²,
    σ'' = −2 h σ'.

        backward     δz = σ'(z) ⊙ δh
        R-forward    R{h} = σ'(z) ⊙ R{z}
        R-backward   R{δz} = σ'(z) ⊙ R{δh} + σ''(z) ⊙ R{z} ⊙ δh
    """

    lowrank = False

    def __init__(self, kind):
        self.kind = kind

    def shapes(self):
        return []

    def forward(self, z, p, ws):
        c = Cache()
        h1 = ws.empty(z.shape[:-1] + (z.shape[-1] + 1,), z.dtype)     # [h 1]
        h1[..., -1] = 1
        h = h1[..., :-1]
        if self.kind == "relu":
            c.slope = ws.xp.greater(z, 0, out=ws.empty(z.shape, z.dtype))   # 1.0 where z > 0, as a float
            ws.xp.multiply(z, c.slope, out=h)       # not max(z, 0): NaN must stay NaN
        else:
            ws.xp.tanh(z, out=h)
            c.h = h
            c.slope = ws.sub(1, ws.mul(h, h))
        return h1, c

    def backward(self, dh, c, p, out, ws, need_input_grad=True):
        c.dh = dh
        return None, ws.mul(c.slope, dh)

    def r_forward(self, Rz, c, p, v, ws):
        c.Rz = Rz
        return ws.mul(c.slope, Rz)

    def r_backward(self, Rdh, c, p, v, out, ws, need_input_grad=True):
        Rdz = ws.mul(c.slope, Rdh)
        if self.kind == "tanh":                         # σ''(z) R{z} δh = −2 h σ' R{z} δh
            Rdz = ws.sub(Rdz, ws.mul(ws.mul(ws.mul(c.h, c.slope), ws.mul(c.Rz, c.dh)), 2))
        return None, Rdz


# ------------------------------------------------------------------------------------------
# Heads: the loss on the network's output z, averaged over the N points of each task.
# Each gives the per-task loss, δ = ∂L/∂z and R{δ} = ∇²_z L R{z}.
# ------------------------------------------------------------------------------------------
class MSEHead:
    """L = 1/(N m) Σ (z − y)²;  δ = c (z − y) and R{δ} = c R{z} with c = 2/(N m)."""

    def loss_and_delta(self, z, y, ws, need_loss=True):
        r = ws.sub(z, y)
        c = Cache()
        c.scale = 2.0 / (y.shape[-1] * y.shape[-2])
        loss = ws.mean(ws.mul(r, r), axis=(-1, -2)) if need_loss else None
        return loss, ws.mul(r, c.scale), c

    def r_delta(self, Rz, y, c, ws):
        return ws.mul(Rz, c.scale)


class CrossEntropyHead:
    """L = 1/N Σ_n (log Σ_c e^{z_nc} − z_{n, y_n});  δ = (p − onehot(y)) / N with p = softmax(z);
    R{δ} = (diag(p) − ppᵀ) R{z} / N = p ⊙ (R{z} − ⟨p, R{z}⟩) / N, row by row."""

    def loss_and_delta(self, z, y, ws, need_loss=True):
        xp, c = ws.xp, Cache()
        shifted = ws.sub(z, z.max(axis=-1, keepdims=True))        # stable: the max is a constant
        e = xp.exp(shifted, out=ws.empty(z.shape, z.dtype))
        total = ws.sum(e, axis=-1, keepdims=True)
        c.p = ws.mul(e, xp.reciprocal(total))
        c.inv_n = 1.0 / y.shape[-1]
        labels = y[..., None]
        loss = None
        if need_loss:
            loss = xp.mean(xp.log(total) - xp.take_along_axis(shifted, labels, axis=-1), axis=(-1, -2))
        delta = ws.copy(c.p)                                      # p − onehot(y)
        xp.put_along_axis(delta, labels, xp.take_along_axis(delta, labels, axis=-1) - 1, axis=-1)
        return loss, ws.mul(delta, c.inv_n), c

    def r_delta(self, Rz, y, c, ws):
        inner = ws.sum(ws.mul(c.p, Rz), axis=-1, keepdims=True)
        return ws.mul(ws.mul(c.p, ws.sub(Rz, inner)), c.inv_n)
