"""Milliseconds per meta-step of every algorithm of the MAML family, as the training loop runs it.

What is measured: ``minimaml.meta.algorithms.value_and_grad`` (the meta-loss and the gradient of
[θ, extra] for one meta-batch; no optimiser step, no task sampling) for each algorithm, with the
settings of README's comparison (``SETTINGS``), on
  sinusoid   T = 25 tasks, K = Q = 10, 1-40-40-1 ReLU, α = 0.01, float32
  omniglot   5-way 1-shot, T = 32, 784-256-128-64-64-5 with batch norm, α = 2.0, float32
             (random inputs: the timing does not depend on the pixels)
in this one process, BLAS on one thread (as ``minimaml train`` runs), the algorithms taking turns:
warm-up, then ``--rounds`` rounds, each timing a block of calls of every algorithm in a rotated
order; the median over rounds.

Run:  python bench/bench_algorithms.py [--task sinusoid|omniglot|both] [--rounds 7]
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

import minimaml as mm
from minimaml.meta import algorithms
from minimaml.run.train import TrainConfig

# The settings of README's comparison (train --algorithm NAME plus these options).
SETTINGS = {
    "maml": {}, "fomaml": {}, "anil": {}, "metasgd": {},
    "mamlpp": dict(steps=2, msl_iterations=20000, first_order_iterations=0),
    "reptile": dict(steps=5),
    "imaml": dict(steps=5, inner_lr=0.002, lam=100.0, cg_steps=20),
}
OMNIGLOT = {"reptile": dict(steps=3), "imaml": dict(steps=5, inner_lr=0.02, lam=20.0, cg_steps=20)}


def problem(task, name):
    """(config, net, params, batch, loss) for one algorithm on one task."""
    settings = {**SETTINGS[name], **(OMNIGLOT.get(name, {}) if task == "omniglot" else {})}
    config = TrainConfig(task=task, algorithm=name, data=".", **settings)
    net = config.make_net()
    theta = net.init(0).astype(np.float32)
    params = np.concatenate([theta, algorithms.extra(name, net, config).astype(np.float32)])
    rng = np.random.default_rng(0)
    if task == "sinusoid":
        b = mm.Sinusoid().sample(config.meta_batch, config.k_support, config.k_query, rng)
        batch = tuple(a.astype(np.float32) for a in (b.xs, b.ys, b.xq, b.yq))
    else:
        n = config.ways * config.k_support
        batch = (rng.random((config.meta_batch, n, 784), dtype=np.float32),
                 np.tile(np.arange(config.ways).repeat(config.k_support), (config.meta_batch, 1)),
                 rng.random((config.meta_batch, n, 784), dtype=np.float32),
                 np.tile(np.arange(config.ways).repeat(config.k_query), (config.meta_batch, 1)))
    return config, net, params, batch, config.problem.loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sinusoid", "omniglot", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=float, default=0.2, help="seconds per timed block")
    args = parser.parse_args()
    tasks = ("sinusoid", "omniglot") if args.task == "both" else (args.task,)
    with threadpool_limits(limits=1, user_api="blas"):
        for task in tasks:
            calls = {}
            for name in algorithms.NAMES:
                config, net, params, batch, loss = problem(task, name)
                # iteration 10**6: MAML++ past its first-order phase (second order, as most of a run)
                run = (lambda c=config, n=net, p=params, b=batch, l=loss, a=name:
                       algorithms.value_and_grad(a, n, p, b, c, l, 10**6))
                try:
                    run()
                    run()
                except ValueError as e:                 # e.g. iMAML refusing this meta-batch
                    print(f"{name}: refused: {e}")
                    continue
                t = time.perf_counter()
                run()
                per_call = time.perf_counter() - t
                calls[name] = (run, max(1, int(args.block / max(per_call, 1e-6))))
            times = {name: [] for name in calls}
            names = list(calls)
            for r in range(args.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    run, n = calls[name]
                    t = time.perf_counter()
                    for _ in range(n):
                        run()
                    times[name].append((time.perf_counter() - t) / n)
            print(f"\n{task}: ms per meta-step (median of {args.rounds} rounds), BLAS on one thread\n")
            print("| algorithm | ms | / maml |")
            print("|---|---|---|")
            base = np.median(times["maml"])
            for name in names:
                ms = np.median(times[name])
                print(f"| {name} | {ms * 1e3:.2f} | {ms / base:.2f} |")


if __name__ == "__main__":
    main()
