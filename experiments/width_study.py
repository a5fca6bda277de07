"""MAML on the real network vs meta-kernel regression, as the width grows (issue 10, part 3).

For each width w: MLP([1, w, w, 1], relu, param="ntk"), float64, seeded θ₀. A fixed set of T_tr
sinusoid training tasks (K support, Q query points), trained by full-batch gradient descent on the
MAML meta-loss (k inner steps of α, outer step β, `outer` steps): (a) the real network; (b) the
network linearised at θ₀, whose trajectory is kernel regression with Φ (exact, closed form through
the same adaptation operator). Compared on T_te held-out test tasks after adaptation.

The real network's meta-gradient: the fast route implements the standard parameterisation only, so
we use the exact change of variables θ̃ = Dθ (D = 1/√fan_in on weights, 1 on biases): net_ntk(θ) =
net_std(Dθ); an inner step α on θ is a per-parameter step αD² on θ̃ (Meta-SGD's route with a fixed
α vector), ∇_θ = D ∇_θ̃, and the outer step β on θ is βD² on θ̃. Checked against the engine on the
NTK network at the smallest width.

README's study (about 10 minutes on 2 cores; width 1024 needs about 4 GB for its Jacobians):

    for a in relu tanh; do
      python experiments/width_study.py --depth 2 --activation $a --seeds 0 1 --beta 0.25 --outer 100 \
          --checkpoints 1 10 --out runs/width/d2_$a.json
      python experiments/width_study.py --depth 1 --activation $a --seeds 0 1 2 --beta 0.25 --outer 100 \
          --checkpoints 1 10 --widths 16 64 256 1024 4096 16384 --out runs/width/d1_$a.json
    done
    python experiments/width_study_plot.py runs/width
"""
import argparse
import json
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

import minimaml as mm
from minimaml.fastpath import mlp_loss_and_grad
from minimaml.meta.ntk import adaptation_operator, kernel_adapt, meta_kernel, ntk_gram

p = argparse.ArgumentParser()
p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024])
p.add_argument("--seeds", type=int, nargs="+", default=[0])
p.add_argument("--train-tasks", type=int, default=8)
p.add_argument("--test-tasks", type=int, default=16)
p.add_argument("--k", type=int, default=10)
p.add_argument("--q", type=int, default=10)
p.add_argument("--alpha", type=float, default=0.05)
p.add_argument("--steps", type=int, default=1)
p.add_argument("--beta", type=float, default=0.05)
p.add_argument("--outer", type=int, default=50)
p.add_argument("--activation", default="relu")
p.add_argument("--depth", type=int, default=2, help="hidden layers")
p.add_argument("--checkpoints", type=int, nargs="+", default=[1, 10])
p.add_argument("--out", default="runs/width/results.json")
args = p.parse_args()
os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
threadpool_limits(limits=1, user_api="blas")


def scales(net):
    d = np.ones(net.num_params)
    for L in net.layers:
        d[L.w:L.b] = 1 / np.sqrt(L.fan_in)
    return d


def real_adapted(std, theta_t, D2, xs, ys, xq):
    """Adapted query predictions (T, Q) of the real network, in θ̃ coordinates."""
    th = theta_t
    for _ in range(args.steps):
        th = th - args.alpha * D2 * mlp_loss_and_grad(std, th, xs, ys)[1]
    return std(th, xq)[..., 0]


results = []
rms = lambda v: float(np.sqrt(np.mean(v ** 2)))   # noqa: E731
for seed in args.seeds:
    tr_b = mm.Sinusoid().sample(args.train_tasks, args.k, args.q, rng=np.random.default_rng([seed, 1]))
    te_b = mm.Sinusoid().sample(args.test_tasks, args.k, args.q, rng=np.random.default_rng([seed, 2]))
    xs, ys, xq, yq = (np.concatenate([a, b_]) for a, b_ in
                      zip((tr_b.xs, tr_b.ys, tr_b.xq, tr_b.yq), (te_b.xs, te_b.ys, te_b.xq, te_b.yq)))
    T, Q = args.train_tasks, args.q
    tr, te = slice(0, T * Q), slice(T * Q, None)
    Y = yq[..., 0].ravel()
    for w in args.widths:
        t0, c0 = time.perf_counter(), time.process_time()
        sizes = [1] + [w] * args.depth + [1]
        ntk = mm.MLP(sizes, args.activation, param="ntk")
        std = mm.MLP(sizes, args.activation)
        D = scales(ntk)
        D2 = D * D
        theta0 = ntk.init(seed=seed)
        # (b) the linearised model: kernel regression with Φ
        gram = ntk_gram(ntk, theta0, xs, xq)
        c_in = 2 * args.alpha / args.k
        Phi = meta_kernel(gram, c_in, args.steps)
        F0 = kernel_adapt(gram, ys, c_in, args.steps).ravel()
        del gram
        c_out = 2 * args.beta / (T * Q)
        lam_max = np.linalg.eigvalsh(Phi[tr, tr])[-1]
        r0 = F0[tr] - Y[tr]
        ts = sorted(set(args.checkpoints) | {args.outer})
        F_kernel_t = {t: F0 - Phi[:, tr] @ (adaptation_operator(Phi[tr, tr], c_out, t) @ r0) for t in ts}
        F_kernel = F_kernel_t[args.outer]
        A = np.eye(T * Q) - c_out * Phi[tr, tr]
        r, kernel_curve = r0.copy(), []
        for t in range(args.outer + 1):
            kernel_curve.append(float(np.mean(r * r)))
            r = A @ r
        t_kernel = time.perf_counter() - t0
        # (a) the real network, in θ̃ = Dθ
        t1 = time.perf_counter()
        th = D * theta0
        F_real0 = real_adapted(std, th, D2, xs, ys, xq).ravel()
        real_curve, gaps = [], {}
        for t in range(1, args.outer + 1):
            value, (g, _) = mm.metasgd_value_and_grad(std, th, args.alpha * D2, tr_b.xs, tr_b.ys, tr_b.xq, tr_b.yq,
                                                      args.steps)
            real_curve.append(value)
            th = th - args.beta * D2 * g
            if t in F_kernel_t:
                F_real = real_adapted(std, th, D2, xs, ys, xq).ravel()
                gaps[t] = dict(test=rms(F_real[te] - F_kernel_t[t][te]), train=rms(F_real[tr] - F_kernel_t[t][tr]),
                               move_test=rms(F_real[te] - F_real0[te]))
        real_curve.append(float(np.mean((F_real[tr] - Y[tr]) ** 2)))
        if w == min(args.widths) and seed == args.seeds[0]:   # the change of variables, against the engine
            _, g_engine = mm.meta_value_and_grad(ntk, theta0, tr_b.xs, tr_b.ys, tr_b.xq, tr_b.yq, args.alpha,
                                                 args.steps, method="autodiff")
            _, (g_fast, _) = mm.metasgd_value_and_grad(std, D * theta0, args.alpha * D2, tr_b.xs, tr_b.ys, tr_b.xq,
                                                       tr_b.yq, args.steps)
            print(f"  check: fast route in θ̃ vs engine on the NTK net: max rel diff "
                  f"{np.abs(D * g_fast - g_engine).max() / np.abs(g_engine).max():.1e}", flush=True)
        t_real = time.perf_counter() - t1
        row = dict(seed=seed, width=w, P=ntk.num_params, lam_max_phi=float(lam_max), c_lam=float(c_out * lam_max),
                   gap_test0=rms(F_real0[te] - F0[te]), gap_test=rms(F_real[te] - F_kernel[te]),
                   gap_train0=rms(F_real0[tr] - F0[tr]), gap_train=rms(F_real[tr] - F_kernel[tr]),
                   move_test=rms(F_real[te] - F_real0[te]),
                   mse_test_real=float(np.mean((F_real[te] - Y[te]) ** 2)),
                   mse_test_kernel=float(np.mean((F_kernel[te] - Y[te]) ** 2)),
                   mse_test_init=float(np.mean((F_real0[te] - Y[te]) ** 2)),
                   mse_train_real=real_curve[-1], mse_train_kernel=kernel_curve[-1],
                   gaps=gaps, theta_move=float(np.linalg.norm(th / D - theta0) / np.linalg.norm(theta0)),
                   real_curve=real_curve, kernel_curve=kernel_curve, t_kernel=t_kernel, t_real=t_real,
                   cpu=time.process_time() - c0)
        results.append(row)
        print(f"seed {seed} w {w:5d} P {ntk.num_params:8d}  cβλmax {row['c_lam']:.2f}  gap test {row['gap_test0']:.2e} "
              f"-> {row['gap_test']:.2e} (moved {row['move_test']:.2f})  train {row['gap_train']:.2e}  "
              f"test MSE real {row['mse_test_real']:.3f} kernel {row['mse_test_kernel']:.3f} (init {row['mse_test_init']:.3f})"
              f"  |Δθ|/|θ0| {row['theta_move']:.1e}  kernel {t_kernel:.1f}s real {t_real:.1f}s cpu {row['cpu']:.1f}s  "
              + " ".join(f"t={t}:{g['test']:.1e}" for t, g in gaps.items()), flush=True)
        with open(args.out, "w") as f:
            json.dump(dict(args=vars(args), results=results), f)
