"""Milliseconds and memory per MAML meta-gradient on the MAML paper's Omniglot network.

What is measured: one call computing (L_meta(θ), ∇θ L_meta(θ)), second order, for a meta-batch of
T = 32 tasks, 5-way 1-shot (5 support + 5 query points per task) and 5-way 5-shot (25 + 25),
float32. Network 784-256-128-64-64-5, each hidden layer dense -> batch norm -> ReLU (batch
statistics of the task's points in that call: mean and biased variance per feature, ε = 1e-3,
learned γ and β), last layer dense; softmax cross-entropy, mean over the task's points. One inner
step, α = 0.4, all parameters adapted. No optimiser step.

The inputs are random [0, 1] 784-vectors with labels 0..4 (K points per class): the timing does not
depend on the pixels. θ is drawn once (``init_theta``: weights and biases U[±1/√fan_in], γ and β
near 1 and 0, so that the gradient check sees a generic point) and given to every contender.

Contenders (peers.py):
  minimaml      ``minimaml.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr=0.4, steps=1,
                method="hvp", loss=minimaml.softmax_cross_entropy)`` with
                ``net = minimaml.MLP(SIZES, activation="relu", norm="batch")``, if that API exists
                (otherwise: "minimaml: not available yet (<error>)", and the peers alone)
  jax           straightforward: params a list of per-layer tuples, θ' = θ − α∇L by tree_map, so a
                per-task copy of every weight; jit(value_and_grad(mean of vmap(maml_loss)))
  jax-factored  the same maths without per-task weights: the adapted weight W − α hᵀδ applied as
                x W − α (x hᵀ) δ (see peers.make_jax_omniglot); same jit/vmap/value_and_grad
  torch         straightforward with torch.func (grad, vmap, grad_and_value), eager, 1 thread
Checks before timing, rel. error = max(|Δloss| / |loss|, max |Δg| / max |g|) against JAX
straightforward in float64 on the same θ and data: JAX factored in float64 below 1e-10 (the same
maths), every float32 contender below 1e-3 (the 1-shot problem amplifies float32 rounding: JAX's
own float32 result is ~1e-4 off); a peer that fails stops the script, minimaml is reported and
left out of the timing.

Timing: each contender in a fresh Python process per setting (no process-wide settings, see
harness.py); warm-up (2 calls: JAX compiles on the first), then ``--rounds`` rounds in which the
contenders take turns (order rotated), each timing a block of ~``--block`` s; median over rounds.
Memory, three numbers per contender:
  working set     the buffers of one call: for JAX, XLA's arguments + outputs + temporaries
                  (``compiled.memory_analysis()``); for minimaml, the peak of NumPy arrays during the
                  process's first call (tracemalloc), buffers kept for later calls included; not
                  measured for PyTorch
  peak RSS        the contender process's peak resident set size (Linux VmHWM) from the setting's
                  setup (JAX: compilation included) to the end of the timed calls
  peak − baseline that minus the RSS before the setup, after the imports and the library's start-up
                  (``start_library``): the setting's cost, compiled code and malloc's retained
                  memory included. Everything allocated through malloc or mmap is in RSS.

Run:
    /work/peers-venv/bin/python bench/bench_omniglot.py          # minimaml (if available) + peers
    /work/peers-venv/bin/python bench/bench_omniglot.py --shots 1 --rounds 3
"""

import argparse
import os
import sys
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))   # for `import peers, harness`

import harness  # noqa: E402
import peers  # noqa: E402
import minimaml  # noqa: E402

SIZES, WAYS, T, INNER_LR = [784, 256, 128, 64, 64, 5], 5, 32, 0.4
LABELS = {"minimaml": "minimaml `hvp`", "jax": "JAX straightforward", "jax-factored": "JAX factored",
          "torch": "torch.func straightforward"}
# float32 against the float64 result: the 1-shot problem (batch norm over 5 points, α = 0.4)
# amplifies rounding; JAX's own float32 gradient is ~1e-4 from its float64 one there.
TOLERANCE = {"float32": 1e-3, "float64": 1e-10}


def init_theta(seed=0):
    """θ in minimaml's layout: per hidden layer W (in, out) C order, b, γ, β; last layer W, b."""
    rng = np.random.default_rng(seed)
    parts = []
    for l, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        bound = 1 / np.sqrt(fan_in)
        parts += [rng.uniform(-bound, bound, fan_in * fan_out), rng.uniform(-bound, bound, fan_out)]
        if l < len(SIZES) - 2:
            parts += [rng.uniform(0.9, 1.1, fan_out), rng.uniform(-0.1, 0.1, fan_out)]
    return np.concatenate(parts)


def problem(shots, dtype="float32", tasks=T, seed=0):
    """θ and a meta-batch: xs, xq (T, WAYS·shots, 784) in [0, 1], ys, yq (T, WAYS·shots) int64."""
    rng = np.random.default_rng(seed)
    n = WAYS * shots
    xs, xq = (rng.uniform(0, 1, (tasks, n, SIZES[0])).astype(dtype) for _ in range(2))
    ys, yq = (np.stack([rng.permutation(np.repeat(np.arange(WAYS), shots)) for _ in range(tasks)])
              for _ in range(2))
    return init_theta().astype(dtype), xs, ys, xq, yq


class NotAvailable(Exception):
    """minimaml has no API for this network yet."""


def make(name, config):
    theta, *data = problem(config["shots"], config["dtype"], config["tasks"])
    if name == "minimaml":
        try:
            net = minimaml.MLP(SIZES, activation="relu", norm="batch")
            loss = minimaml.softmax_cross_entropy
        except (AttributeError, TypeError, ValueError) as e:
            raise NotAvailable(f"{type(e).__name__}: {e}") from e

        def run():
            return minimaml.meta_value_and_grad(net, theta, *data, inner_lr=INNER_LR, steps=1,
                                                method="hvp", loss=loss)

        # Working set: the peak of NumPy arrays (NumPy reports them to tracemalloc) during the
        # process's first call, so that buffers the library keeps for later calls are counted.
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        run.working_set = lambda: peak
        return run, lambda out: (float(out[0]), np.asarray(out[1], np.float64))
    if name == "torch":
        return peers.make_torch_omniglot(SIZES, theta, *data, INNER_LR, threads=config["torch_threads"])
    return peers.OMNIGLOT[name](SIZES, theta, *data, INNER_LR)


def start_library(name):
    """Run in each contender's process before its setting: start the peer's runtime (JAX's CPU
    client alone is ~170 MB of RSS), so that the RSS growth counts the setting, not the library."""
    if name.startswith("jax"):
        import jax
        jax.numpy.zeros(1).block_until_ready()
    elif name == "torch":
        import torch
        torch.zeros(1)


def float64_reference(shots, factored_check=True):
    """JAX straightforward's (loss, meta-gradient) in float64 on the same θ and data: the reference
    every float32 contender is checked against. Also checks that the factored formulation is the
    same maths: jax-factored in float64 agrees with it to 1e-10. Returns (reference, that error)."""
    config = dict(shots=shots, dtype="float64", tasks=T, torch_threads=1)
    results = {}
    for name in ("jax", "jax-factored") if factored_check else ("jax",):
        w = harness.Worker(make, name, start_library)
        try:
            results[name] = w.setup(config)
        finally:
            w.close()
    if not factored_check:
        return results["jax"], None
    err = harness.relative_error(results["jax"], results["jax-factored"])
    if not err < TOLERANCE["float64"]:
        raise SystemExit(f"jax-factored disagrees with jax in float64 ({shots}-shot): {err:.1e}")
    return results["jax"], err


def measure(names, config, reference, rounds, block_s, minimaml_env=None):
    """Check, time and measure the contenders of one setting, each in a fresh process. Returns
    ({name: (ms, faults)}, {name: (rss, peak)}, {name: working-set bytes}, {name: rel. error}), or
    None if no contender is left. A peer that fails stops the script; minimaml (whose API for this
    network may not exist yet) is reported and left out."""
    contenders, results, errors = {}, {}, {}

    def failed(name, what):
        if name != "minimaml":
            raise SystemExit(f"{name}: {what}")
        print(f"\nminimaml: {what}")
        contenders.pop(name).close()

    try:
        for name in names:
            env = minimaml_env if name == "minimaml" else None
            contenders[name] = harness.Worker(make, name, start_library, env)
        for name in list(contenders):
            try:
                results[name] = contenders[name].setup(config)
            except RuntimeError as e:
                error = str(e).removeprefix(f"{NotAvailable.__name__}: ")
                failed(name, f"not available yet ({error})" if error != str(e) else f"failed ({e})")
        for name in list(contenders):
            if reference is not None:
                errors[name] = harness.relative_error(reference, results[name])
                if not errors[name] < TOLERANCE["float32"]:
                    failed(name, f"left out: disagrees with the float64 reference, rel. error "
                                 f"{errors[name]:.1e} > {TOLERANCE['float32']:.0e}")
        for name in list(contenders):
            try:
                contenders[name].time(2)           # warm-up
            except RuntimeError as e:
                agreed = f"its first call agreed (rel. error {errors[name]:.1e}), " if name in errors else ""
                failed(name, f"left out: {agreed}a repeated call failed ({e})")
        if not contenders:
            return None
        ms = harness.time_interleaved(contenders, rounds, block_s, warmup=0)
        memory = {name: c.memory() for name, c in contenders.items()}
        working = {name: c.working_set() for name, c in contenders.items()}   # last: it may compile
        return ms, memory, working, errors
    finally:
        for c in contenders.values():
            c.close()


def mb(nbytes):
    return "n/a" if nbytes is None else f"{nbytes / 2**20:.0f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shots", type=int, nargs="*", default=[1, 5])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--block", type=float, default=0.3, help="seconds per timed block of calls")
    p.add_argument("--contenders", nargs="*", default=None,
                   help="subset of minimaml, jax, jax-factored, torch")
    p.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--blas-threads", type=int, default=0,
                   help="OPENBLAS_NUM_THREADS for minimaml's process only (0: NumPy's default)")
    args = p.parse_args(argv)

    peer_names = []
    if "jax" in peers.available():
        peer_names += ["jax", "jax-factored"]
    if "torch" in peers.available():
        peer_names += ["torch"]
    names = [n for n in ["minimaml"] + peer_names if args.contenders is None or n in args.contenders]
    print(f"Omniglot MAML meta-gradient (second order, no optimiser): {SIZES} dense-BN-ReLU, "
          f"{WAYS}-way, T={T}, alpha={INNER_LR}, 1 inner step, float32; a fresh process per contender "
          f"and setting ({harness.thread_settings()}"
          f"{f'; minimaml with OPENBLAS_NUM_THREADS={args.blas_threads}' if args.blas_threads else ''}); "
          f"{os.cpu_count()} CPUs; minimaml from {os.path.dirname(minimaml.__file__)}; "
          f"numpy {np.__version__}{', ' + peers.versions(peers.available()) if peer_names else ''}; "
          f"torch {args.torch_threads or 'default'} thread(s); median over {args.rounds} rotated rounds")
    if not peer_names:
        print("(JAX is not installed: minimaml's gradient is not checked)")

    for shots in args.shots:
        reference = None
        if "jax" in peer_names:
            reference, err = float64_reference(shots, factored_check="jax-factored" in names)
            if err is not None:
                print(f"\n{shots}-shot, float64: JAX factored vs straightforward, rel. error {err:.1e}")
        config = dict(shots=shots, dtype="float32", tasks=T, torch_threads=args.torch_threads)
        blas = {"OPENBLAS_NUM_THREADS": str(args.blas_threads)} if args.blas_threads else None
        measured = measure(names, config, reference, args.rounds, args.block, blas)
        if measured is None:
            print(f"\n{shots}-shot: nothing to time")
            continue
        ms, memory, working, errors = measured

        fastest_jax = "jax-factored" if "jax-factored" in ms else "jax" if "jax" in ms else None
        print(f"\n{WAYS}-way {shots}-shot ({WAYS * shots} support + {WAYS * shots} query points per task):\n")
        header = ["contender", "ms", f"/ {LABELS[fastest_jax]}" if fastest_jax else "",
                  "working set MB", "peak RSS MB", "peak − baseline RSS MB", "rel. error vs float64"]
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for name in ms:
            rss, peak = memory[name]
            row = [LABELS[name], f"{ms[name][0]:.1f}",
                   f"{ms[name][0] / ms[fastest_jax][0]:.2f}" if fastest_jax else "",
                   mb(working[name]), mb(peak), mb(None if peak is None else peak - rss),
                   f"{errors[name]:.1e}" if name in errors else "not checked"]
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
