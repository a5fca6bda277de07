"""Milliseconds per MAML meta-step: meta-gradient of T tasks + one Adam update of θ.

Setup of the MAML paper's sinusoid experiment: T = 25 tasks, K = 10 support and 10 query points,
1-40-40-1 ReLU, α = 0.01; 1 and 5 inner steps, second and first order, float64 and float32.

    python bench/bench_meta_step.py                 # minimaml's routes
    /work/peers-venv/bin/python bench/bench_meta_step.py   # + JAX and PyTorch, with ratios

Methods are rows of a table ``name -> make(net, theta, batch, steps, first_order) -> step``; a
``make`` returns None where the method has no such variant. Timing: after warm-up, the methods of
one setting take turns (round robin, ~0.1 s each) so that load from other processes hits them
alike; each figure is the median of all the individually timed calls (robust to the process
being descheduled now and then on a loaded machine). Routes slower than 0.5 s per call (the
engine-based "hessian" teaching route) are timed by one call after the warm-up.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # for `import peers`

import peers  # noqa: E402
from minimaml import maml  # noqa: E402
from minimaml.fastpath.backprop import keep_freed_memory  # noqa: E402
from minimaml.nn import MLP  # noqa: E402
from minimaml.optim import Adam  # noqa: E402
from minimaml.tasks import Sinusoid  # noqa: E402

SIZES, ACTIVATION, T, K, INNER_LR = [1, 40, 40, 1], "relu", 25, 10, 0.01


def _minimaml_step(method, second_order_only=False, first_order_only=False):
    """A row for one of minimaml's meta-gradient methods (+ Adam)."""
    def make(net, theta, b, steps, first_order):
        if (first_order and second_order_only) or (not first_order and first_order_only):
            return None
        fo = None if method in ("autodiff", "hessian", "first_order") else first_order
        opt, state = Adam(1e-3), [theta.copy()]

        def step():
            loss, g = maml.meta_value_and_grad(net, state[0], b.xs, b.ys, b.xq, b.yq, INNER_LR, steps,
                                               method=method, first_order=fo)
            state[0] = opt.step(state[0], g)
            return loss
        return step
    return make


def _peer_step(name):
    def make(net, theta, b, steps, first_order):
        return peers.META_STEPS[name](net.sizes, net.activation, theta, b.xs, b.ys, b.xq, b.yq,
                                      INNER_LR, steps, first_order)
    return make


def methods(selected=None):
    """The table of (name, make). Slow teaching routes are included but timed by a single call."""
    table = [("hvp", _minimaml_step("hvp")),
             ("first_order", _minimaml_step("first_order", first_order_only=True)),
             ("hessian", _minimaml_step("hessian", second_order_only=True)),
             ("autodiff", _minimaml_step("autodiff", second_order_only=True))]
    table += [(name, _peer_step(name)) for name in peers.available()]
    return [(n, m) for n, m in table if selected is None or n in selected]


def time_round_robin(fns, rounds, budget_s=0.1, slow_s=0.5):
    """{name: median ms per call}. Each round runs every fn for ~budget_s (at least one call); a fn
    whose second call (after a warm-up call) takes over slow_s is timed by that call only."""
    calls, times = {}, {}
    for name, fn in fns.items():
        fn()                                      # warm-up: JAX compiles here
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        if dt > slow_s:
            times[name] = [dt]
        else:
            calls[name], times[name] = max(1, int(budget_s / max(dt, 1e-6))), []
    for _ in range(rounds):
        for name in calls:
            fn = fns[name]
            for _ in range(calls[name]):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--methods", nargs="*", default=None, help="subset of method names")
    p.add_argument("--steps", type=int, nargs="*", default=[1, 5])
    p.add_argument("--dtypes", nargs="*", default=["float64", "float32"])
    p.add_argument("--skip-slow", action="store_true", help='leave out the "hessian" method')
    args = p.parse_args(argv)
    keep_freed_memory()  # as `minimaml train` does: see backprop.keep_freed_memory

    net = MLP(SIZES, ACTIVATION)
    batch = Sinusoid().sample(T, K, K, rng=0)
    table = [(n, m) for n, m in methods(args.methods) if not (args.skip_slow and n == "hessian")]
    peer_names = [n for n, _ in table if n in peers.META_STEPS]
    print(f"meta-step = meta-gradient + Adam; T={T}, K={K}, {SIZES} {ACTIVATION}, alpha={INNER_LR}; "
          f"{os.cpu_count()} CPUs; numpy {np.__version__}; peers: {', '.join(peer_names) or 'none'}")
    header = f"{'dtype':8s} {'steps':>5s} {'order':6s} {'method':12s} {'ms':>9s}"
    header += "".join(f" {'/' + n:>8s}" for n in peer_names)
    print(header)
    print("-" * len(header))
    for dtype in args.dtypes:
        theta = net.init(seed=0).astype(dtype)
        for steps in args.steps:
            for first_order in (False, True):
                fns = {}
                for name, make in table:
                    fn = make(net, theta, batch, steps, first_order)
                    if fn is not None:
                        fns[name] = fn
                ms = time_round_robin(fns, args.rounds)
                for name, t in ms.items():
                    row = f"{dtype:8s} {steps:5d} {'first' if first_order else 'second':6s} {name:12s} {t:9.3f}"
                    row += "".join(f" {t / ms[n]:8.2f}" for n in peer_names)
                    print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
