"""Milliseconds for one exact Hessian of the MSE loss of a 1-40-40-1 ReLU MLP on 10 points:
a 1761 x 1761 matrix, by each route, and how far each is from ``mlp_hessian``.

    python bench/bench_hessian.py                       # minimaml's routes
    /work/peers-venv/bin/python bench/bench_hessian.py  # + jax.hessian and torch.func.hessian

Routes: ``mlp_hessian`` (R-operator on all P basis directions at once), the engine's generic
``minimaml.hessian`` (the teaching route: jacobian of grad, reverse over reverse, all P rows
pulled back through the gradient's graph in one batched pass), and the
peers, all in this one process (no process-wide settings; note that loading a peer changes how
fast NumPy runs in the process, see harness.py). Timing: warm-up, then the routes take turns;
median over rounds.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
import minimaml  # noqa: E402
from minimaml.fastpath import mlp_hessian  # noqa: E402
from minimaml.nn import MLP, mse  # noqa: E402
from minimaml.tasks import Sinusoid  # noqa: E402

SIZES, ACTIVATION, N = [1, 40, 40, 1], "relu", 10


def routes(net, theta, x, y):
    engine_hessian = minimaml.hessian(lambda th: mse(net(th, x), y))
    table = {"mlp_hessian": lambda: mlp_hessian(net, theta, x, y),
             "engine hessian": lambda: engine_hessian(theta)}
    for name in peers.available():
        table[f"{name}.hessian"] = peers.HESSIANS[name](net, theta, x, y)
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--dtypes", nargs="*", default=["float64", "float32"])
    p.add_argument("--skip-engine", action="store_true", help="leave out the slow generic route")
    args = p.parse_args(argv)
    net = MLP(SIZES, ACTIVATION)
    b = Sinusoid().sample(1, N, N, rng=0)
    x, y = b.xs[0], b.ys[0]
    peer_names = [f"{n}.hessian" for n in peers.available()]
    print(f"exact Hessian of the MSE loss, {SIZES} {ACTIVATION}, {N} points: "
          f"{net.num_params} x {net.num_params}; {os.cpu_count()} CPUs; numpy {np.__version__}")
    header = f"{'dtype':8s} {'route':16s} {'ms':>9s} {'max|H - H_mlp|/max|H|':>22s}"
    header += "".join(f" {'/' + n:>14s}" for n in peer_names)
    print(header)
    print("-" * len(header))
    for dtype in args.dtypes:
        theta = net.init(seed=0).astype(dtype)
        table = routes(net, theta, x.astype(dtype), y.astype(dtype))
        if args.skip_engine:
            table.pop("engine hessian", None)
        results, times = {}, {name: [] for name in table}
        for name, fn in table.items():             # warm-up (and compile), keep the result
            results[name] = np.asarray(fn(), dtype=np.float64)
        for r in range(args.rounds):
            for name, fn in table.items():
                if name == "engine hessian" and r >= 2:
                    continue                        # the teaching route is slow: 2 rounds
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        ref = results["mlp_hessian"]
        ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
        for name in table:
            err = np.abs(results[name] - ref).max() / np.abs(ref).max()
            row = f"{dtype:8s} {name:16s} {ms[name]:9.2f} {err:22.1e}"
            row += "".join(f" {ms[name] / ms[n]:14.2f}" for n in peer_names)
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
