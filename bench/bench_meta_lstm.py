"""Cost per meta-step (CPU ms) of the Meta-Learner LSTM, order 1 vs 2, next to MAML's routes on the same
meta-batches, and the gap between the order-1 and order-2 meta-gradients at the same φ (at init and trained).

python bench/bench_meta_lstm.py [runs/lstm/order1/phi.npz ...]   (README: 13.8 / 23.9 ms, MAML hvp 2.8 ms)
"""
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

import minimaml as mm
from minimaml.meta.meta_lstm import NUM_GATE_PARAMS, meta_lstm_init, meta_lstm_value_and_grad

threadpool_limits(1, user_api="blas")
net = mm.MLP([1, 40, 40, 1])
P, S = net.num_params, 5
batches = [mm.Sinusoid().sample(25, 5, 5, rng=100 + s) for s in range(10)]
phis = {"init": meta_lstm_init(net.init(seed=0), seed=0)}
for path in sys.argv[1:]:
    phis[path] = np.load(path)["phi"]


def cpu_ms(call, reps=3):
    times = []
    for _ in range(reps):
        for b in batches:
            t = time.process_time()
            call(b)
            times.append(time.process_time() - t)
    return 1e3 * np.median(times)


phi = phis["init"]
theta = phi[:P]
routes = {
    "LSTM order 1": lambda b: meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, S, order=1),
    "LSTM order 2": lambda b: meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, S, order=2),
    "LSTM order 2, gates fixed": lambda b: meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, S, gates=(1.0, 0.01)),
    "MAML autodiff": lambda b: mm.meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.01, S, method="autodiff"),
    "MAML hvp": lambda b: mm.meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.01, S, method="hvp"),
    "MAML first_order": lambda b: mm.meta_value_and_grad(net, theta, b.xs, b.ys, b.xq, b.yq, 0.01, S,
                                                          method="first_order"),
}
for call in routes.values():
    call(batches[0])                                       # warm-up
print(f"CPU ms per meta-gradient, T = 25, K = Q = 5, S = {S}, 1-40-40-1 ReLU, float64 (median of {3 * len(batches)}):")
for name, call in routes.items():
    print(f"  {name:<28} {cpu_ms(call):7.2f}")

print("\n‖g1 − g2‖ / ‖g2‖ (mean over 10 meta-batches), by part of φ; cos(g1, g2) overall:")
for name, phi in phis.items():
    rel, rel_c, rel_gates, cos = [], [], [], []
    for b in batches:
        _, g1 = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, S, order=1)
        _, g2 = meta_lstm_value_and_grad(net, phi, b.xs, b.ys, b.xq, b.yq, S, order=2)
        d = g1 - g2
        rel.append(np.linalg.norm(d) / np.linalg.norm(g2))
        rel_c.append(np.linalg.norm(d[:P]) / np.linalg.norm(g2[:P]))
        rel_gates.append(np.linalg.norm(d[P:]) / np.linalg.norm(g2[P:]))
        cos.append(g1 @ g2 / np.linalg.norm(g1) / np.linalg.norm(g2))
    print(f"  φ = {name}: all {np.mean(rel):.3f}, c_0 {np.mean(rel_c):.3f}, gate parameters ({NUM_GATE_PARAMS}) "
          f"{np.mean(rel_gates):.3f};  cos {np.mean(cos):.3f}")
