"""Milliseconds per MAML meta-gradient: minimaml's "hvp" route against JAX and torch.func.

What is measured: one call computing (L_meta(θ), ∇θ L_meta(θ)) for a meta-batch of the MAML
paper's sinusoid experiment: T = 25 tasks, K = 10 support and Q = 10 query points, 1-40-40-1 ReLU,
α = 0.01; 1 and 5 inner steps, second and first order, float32 and float64. No optimiser step:
the meta-gradient only, the same θ (``MLP.init(seed=0)``) and the same data for every contender.

Contenders:
  minimaml    ``minimaml.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr=0.01, steps=S,
              method="hvp")`` (first order: ``first_order=True``)
  JAX         peers.make_jax_meta_grad: params as a list of (W, b), inner update by tree_map,
              jax.vmap over tasks, jax.jit(jax.value_and_grad(batched_maml_loss))
  torch.func  peers.make_torch_meta_grad: nn.Sequential + functional_call, grad, vmap,
              grad_and_value; ``--torch-threads`` intra-op threads (default 1)
Before timing, each peer's meta-gradient is checked against minimaml's (max |Δ| / max |g| below
1e-5 in float32, 1e-10 in float64), or the script stops.

Processes: by default each contender gets a fresh Python process for each setting, which imports
only its own library, as in a user's program, with no malloc tuning or other process-wide setting.
This matters (see harness.py): how fast NumPy code runs depends on what the process did before
(loading a peer into minimaml's process made minimaml ~3x faster; so, in some orders, did
running other settings first). ``--same-process`` runs everything in this one process instead. Either way the
contenders take turns in one run: warm-up (3 calls; JAX compiles on the first), calls per block
calibrated to ~``--block`` s, then ``--rounds`` rounds in which every contender times one block,
in an order rotated each round. A figure is the median over rounds of block time / calls; the
last column is minimaml's minor page faults per call (memory freshly mapped by malloc each call).

The teaching route "autodiff" (and "hessian" with ``--hessian``: seconds per call) is timed in
float64 by the median of 3 calls after a warm-up call, in minimaml's process.

Run:
    /work/peers-venv/bin/python bench/bench_meta_step.py     # minimaml + JAX + torch.func
    .venv/bin/python bench/bench_meta_step.py                # minimaml only (no peers installed)
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # for `import peers, harness`

import harness  # noqa: E402
import peers  # noqa: E402
import minimaml  # noqa: E402
from minimaml.tasks import Sinusoid  # noqa: E402

SIZES, ACTIVATION, T, K, INNER_LR = [1, 40, 40, 1], "relu", 25, 10, 0.01
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
LABELS = {"minimaml": "minimaml `hvp`", "jax": "JAX", "torch": "torch.func"}


def problem(dtype):
    """The network, θ and the meta-batch (xs, ys, xq, yq) in ``dtype``: the same in every process."""
    net = minimaml.MLP(SIZES, ACTIVATION)
    b = Sinusoid().sample(T, K, K, rng=0)
    return net, net.init(seed=0).astype(dtype), [a.astype(dtype) for a in (b.xs, b.ys, b.xq, b.yq)]


def make(name, config):
    """(run, result) for contender ``name`` ("minimaml" or a peer) in one setting ``config``."""
    net, theta, data = problem(config["dtype"])
    steps, first_order = config["steps"], config["first_order"]
    if name == "minimaml":
        method = config.get("method", "hvp")
        fo = first_order if method == "hvp" else None

        def run():
            return minimaml.meta_value_and_grad(net, theta, *data, inner_lr=INNER_LR, steps=steps,
                                                method=method, first_order=fo)
        return run, lambda out: (float(out[0]), np.asarray(out[1], np.float64))
    if name == "torch":
        return peers.make_torch_meta_grad(net, theta, *data, INNER_LR, steps, first_order,
                                          threads=config["torch_threads"])
    return peers.META_GRADS[name](net, theta, *data, INNER_LR, steps, first_order)


def check(reference, name, out, config):
    """Stop unless a contender's (loss, gradient) agree with minimaml's to the dtype's tolerance."""
    err = harness.relative_error(reference, out)
    if not err < TOLERANCE[config["dtype"]]:
        raise SystemExit(f"{name} disagrees with minimaml's meta-gradient ({config}): relative error "
                         f"{err:.1e} > {TOLERANCE[config['dtype']]:.0e}")


def markdown_row(cells):
    return "| " + " | ".join(cells) + " |"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--block", type=float, default=0.05, help="seconds per timed block of calls")
    p.add_argument("--steps", type=int, nargs="*", default=[1, 5])
    p.add_argument("--dtypes", nargs="*", default=["float32", "float64"])
    p.add_argument("--orders", nargs="*", default=["second", "first"], choices=["second", "first"])
    p.add_argument("--peers", nargs="*", default=None, help="subset of the installed peers (jax, torch)")
    p.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--same-process", action="store_true", help="all contenders in this process")
    p.add_argument("--hessian", action="store_true", help='also time the "hessian" teaching route (slow)')
    p.add_argument("--no-teaching", action="store_true", help='skip the "autodiff" teaching route')
    args = p.parse_args(argv)

    peer_names = [n for n in peers.available() if args.peers is None or n in args.peers]
    names = ["minimaml"] + peer_names
    if args.same_process:
        shared = {name: harness.InProcess(make, name) for name in names}
    threads = f"torch {args.torch_threads or 'default'} intra-op thread(s); " if "torch" in peer_names else ""
    print(f"MAML meta-gradient (no optimiser): T={T}, K=Q={K}, {SIZES} {ACTIVATION}, alpha={INNER_LR}; "
          f"{'all in one process' if args.same_process else 'a fresh process per contender and setting'}; "
          f"no process-wide settings ({harness.thread_settings()}); {os.cpu_count()} CPUs; minimaml from "
          f"{os.path.dirname(minimaml.__file__)}; numpy {np.__version__}"
          f"{', ' + peers.versions(peer_names) if peer_names else ''}; {threads}"
          f"median over {args.rounds} rotated rounds of ~{args.block} s blocks\n")
    header = ["dtype", "steps", "order"] + [f"{LABELS[n]} ms" for n in names]
    header += [f"hvp / {LABELS[n]}" for n in peer_names] + ["minimaml page faults / call"]
    print(markdown_row(header))
    print(markdown_row(["---"] * len(header)), flush=True)
    for dtype in args.dtypes:
        for steps in args.steps:
            for order in args.orders:
                config = dict(dtype=dtype, steps=steps, first_order=order == "first",
                              torch_threads=args.torch_threads)
                contenders = shared if args.same_process else {n: harness.Worker(make, n) for n in names}
                try:
                    reference = contenders["minimaml"].setup(config)
                    for name in peer_names:
                        check(reference, name, contenders[name].setup(config), config)
                    ms = harness.time_interleaved(contenders, args.rounds, args.block)
                finally:
                    if not args.same_process:
                        for c in contenders.values():
                            c.close()
                row = [dtype, str(steps), order] + [f"{ms[n][0]:.3f}" for n in names]
                row += [f"{ms['minimaml'][0] / ms[n][0]:.2f}" for n in peer_names] + [f"{ms['minimaml'][1]:.0f}"]
                print(markdown_row(row), flush=True)

    routes = ([] if args.no_teaching else ["autodiff"]) + (["hessian"] if args.hessian else [])
    if routes:
        print("\nTeaching routes, float64, second order, median of 3 calls after a warm-up call:\n")
        print(markdown_row(["method", "steps", "ms"]))
        print(markdown_row(["---"] * 3))
        for method in routes:
            for steps in args.steps:
                config = dict(dtype="float64", steps=steps, first_order=False, torch_threads=0)
                mm = shared["minimaml"] if args.same_process else harness.Worker(make, "minimaml")
                try:
                    reference = mm.setup(config)
                    check(reference, method, mm.setup(dict(config, method=method)), config)
                    ms = 1e3 * np.median([mm.time(1)[0] for _ in range(3)])
                finally:
                    if not args.same_process:
                        mm.close()
                print(markdown_row([method, str(steps), f"{ms:.1f}"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
