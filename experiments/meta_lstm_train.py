"""Meta-train the Meta-Learner LSTM on sinusoids (the MAML paper's family) with Adam, under a CPU-time budget.

python experiments/meta_lstm_train.py --order 2 --steps 5 --max-seconds 300 --out runs/lstm/order2
Writes OUT/phi.npz (φ, config, iterations, cpu seconds) and OUT/log.txt. The README's runs set glibc's
MALLOC_MMAP_THRESHOLD_=1000000000 MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_TOP_PAD_=100000000 in the
shell (freed memory is kept, so the engine's fresh (T, P) arrays do not page-fault: order 2 is 1.3x faster).
"""
import argparse
import json
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

import minimaml as mm
from minimaml.meta.meta_lstm import meta_lstm_init, meta_lstm_value_and_grad

ap = argparse.ArgumentParser()
ap.add_argument("--order", type=int, default=2)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--k", type=int, default=5)
ap.add_argument("--k-query", type=int, default=5)
ap.add_argument("--meta-batch", type=int, default=25)
ap.add_argument("--meta-lr", type=float, default=1e-3)
ap.add_argument("--max-seconds", type=float, default=240)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--out", required=True)
ap.add_argument("--log-every", type=int, default=500)
args = ap.parse_args()
os.makedirs(args.out, exist_ok=True)
threadpool_limits(1, user_api="blas")

net = mm.MLP([1, 40, 40, 1], activation="relu")
phi = meta_lstm_init(net.init(seed=args.seed), seed=args.seed)
opt = mm.Adam(lr=args.meta_lr)
family, rng = mm.Sinusoid(), np.random.default_rng(1000 + args.seed)
log = open(os.path.join(args.out, "log.txt"), "w")


def save(it, cpu):
    np.savez(os.path.join(args.out, "phi.npz"), phi=phi, iterations=it, cpu_seconds=cpu,
             config=json.dumps(vars(args)))


cpu0, losses, it = time.process_time(), [], 0
while time.process_time() - cpu0 < args.max_seconds:
    b = family.sample(args.meta_batch, args.k, args.k_query, rng=rng)
    value, g = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, args.steps, order=args.order)
    if not (np.isfinite(value) and np.isfinite(g).all()):
        print(f"iteration {it}: non-finite meta-loss or gradient; stopping, keeping the last φ", file=log, flush=True)
        break
    phi = opt.step(phi, g)
    losses.append(value)
    it += 1
    if it % args.log_every == 0:
        cpu = time.process_time() - cpu0
        P = net.num_params
        print(f"it {it:6d}  cpu {cpu:7.1f} s  meta-loss (mean of last {args.log_every}) {np.mean(losses[-args.log_every:]):.4f}"
              f"  b_I {phi[P + 6]:+.3f} b_F {phi[P + 13]:+.3f}  {1e3 * cpu / it:.1f} ms/it", file=log, flush=True)
    if it % 5000 == 0:
        save(it, time.process_time() - cpu0)
cpu = time.process_time() - cpu0
save(it, cpu)
print(f"done: {it} iterations in {cpu:.1f} s CPU ({1e3 * cpu / max(it, 1):.2f} ms per meta-step)", file=log, flush=True)
