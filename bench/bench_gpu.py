"""GPU benchmark: milliseconds per MAML meta-step, minimaml's fused CUDA kernel against JAX and torch.func.

One meta-step = the meta-gradient of T tasks (second order unless --first-order) + one Adam update,
everything resident on the GPU, the same fixed meta-batch every step (task sampling excluded for
all contestants). Network 1-40-40-1 ReLU, K = Kq = 10 points, α = 0.01 (the MAML paper's sinusoid
setup), T in {25, 1024}, S in {1, 5} inner steps by default.

Contestants (each computes the same meta-gradient; the script checks that against the float64
NumPy "hvp" route before timing):
  minimaml   kernels/maml_fused.cu through minimaml.gpu.cuda (CuPy) + the Adam elementwise kernel
             (without CuPy: the same source via NVRTC + the driver API on PyTorch memory; the
             results say which under "minimaml_launcher")
  jax        jax.jit of value_and_grad of a vmap-over-tasks inner loop, Adam inside the same jit
  torch      torch.func.grad of a torch.func.vmap-over-tasks inner loop (eager), Adam with in-place ops

Timing: warm-up, then repeats of n back-to-back steps (n chosen so one repeat takes >= --min-time s),
device synchronised at the end of each repeat; the median per-step time is reported. Ratios are
peer time / minimaml time measured in the same run (> 1: minimaml faster).

Usage:
  python bench/bench_gpu.py                         # on a GPU machine; writes $OUT/bench_gpu.json
  python bench/bench_gpu.py --out results.json --tasks 25 --steps 1
  python bench/bench_gpu.py --dry-run               # no GPU: the CPU-emulated kernel, tiny sizes
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout without install
# Three array libraries share one GPU: JAX must not grab 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from minimaml.fastpath.backprop import hvp_meta_value_and_grad  # noqa: E402
from minimaml.nn import MLP  # noqa: E402

B1, B2, EPS = 0.9, 0.999, 1e-8
TARGETS = {25: 3.0, 1024: 2.0}   # issue 4: fused kernel vs the faster peer, at T = 25 and T = 1024


def make_batch(tasks, k, seed=0):
    """Sinusoid tasks as in the MAML paper: y = a sin(x + φ), a ~ U[0.1, 5], φ ~ U[0, π], x ~ U[−5, 5]."""
    rng = np.random.default_rng(seed)
    amp, phase = rng.uniform(0.1, 5.0, (tasks, 1, 1)), rng.uniform(0, np.pi, (tasks, 1, 1))
    xs, xq = rng.uniform(-5, 5, (tasks, k, 1)), rng.uniform(-5, 5, (tasks, k, 1))
    return xs, amp * np.sin(xs + phase), xq, amp * np.sin(xq + phase)


# ------------------------------------------------------------------------------------------------
# Contestants. Each: setup once, then step() = one meta-step (asynchronous), sync() waits for the
# device, grad() = the meta-gradient at the initial θ as a NumPy (P,) array in minimaml's order.
# ------------------------------------------------------------------------------------------------
class MinimamlCuda:
    name = "minimaml"

    def __init__(self, net, theta, batch, inner_lr, steps, first_order, lr=1e-3):
        import cupy
        from minimaml.gpu import cuda
        self.cupy, self.cuda = cupy, cuda
        self.net, self.inner_lr, self.steps, self.first_order, self.lr = net, inner_lr, steps, first_order, lr
        self.theta0 = cupy.asarray(theta, cupy.float32)
        self.theta = self.theta0.copy()
        self.m, self.v = cupy.zeros_like(self.theta), cupy.zeros_like(self.theta)
        self.batch = [cupy.asarray(a, cupy.float32) for a in batch]
        self.t = 0

    def grad(self):
        _, g = self.cuda.meta_value_and_grad(self.net, self.theta0, *self.batch, self.inner_lr, self.steps,
                                             self.first_order)
        return g.get()

    def step(self):
        _, g = self.cuda.meta_value_and_grad(self.net, self.theta, *self.batch, self.inner_lr, self.steps,
                                             self.first_order)
        self.t += 1
        self.cuda.adam_update(self.theta, g, self.m, self.v, self.t, self.lr)

    def sync(self):
        self.cupy.cuda.get_current_stream().synchronize()


class MinimamlDriver:
    """Fallback when CuPy is missing on the GPU machine but PyTorch has CUDA: the same kernel source,
    compiled with NVRTC (the library PyTorch ships) and launched with the CUDA driver API through
    ctypes on PyTorch's memory and stream; Adam as PyTorch in-place ops. Reported as "minimaml"
    with a note in the results, since this is not the code path of minimaml.gpu.cuda."""
    name = "minimaml"

    def __init__(self, net, theta, batch, inner_lr, steps, first_order, lr=1e-3):
        import ctypes

        import torch
        from minimaml.gpu import _source
        if not torch.cuda.is_available():
            raise RuntimeError("neither CuPy nor a CUDA build of PyTorch is available")
        self.ctypes, self.torch = ctypes, torch
        self.config = _source.KernelConfig.for_problem(net, batch[0], batch[2])
        major, minor = torch.cuda.get_device_capability()
        cubin = _nvrtc_compile(_source.read_source("maml_fused.cu"),
                               (f"--gpu-architecture=sm_{major}{minor}", "-std=c++17") + self.config.flags())
        torch.zeros(1, device="cuda")   # makes PyTorch's (primary) context current in this thread
        self.cuda = _load_libcuda()
        module, self.function = ctypes.c_void_p(), ctypes.c_void_p()
        _check_cu(self.cuda, self.cuda.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(cubin)))
        _check_cu(self.cuda, self.cuda.cuModuleGetFunction(ctypes.byref(self.function), module,
                                                           b"maml_fused_meta_grad"))
        self.module = module
        dev = dict(device="cuda", dtype=torch.float32)
        self.theta0 = torch.tensor(theta, **dev)
        self.theta = self.theta0.clone()
        self.m, self.v = torch.zeros_like(self.theta), torch.zeros_like(self.theta)
        self.batch = [torch.tensor(a, **dev).contiguous() for a in batch]
        self.tasks, self.steps, self.inner_lr, self.first_order, self.lr = len(batch[0]), steps, inner_lr, first_order, lr
        self.workspace = torch.empty(max(1, self.tasks * self.config.workspace_floats(steps)), **dev)
        self.task_loss = torch.empty(self.tasks, **dev)
        self.sums = torch.zeros(self.config.num_params + 1, **dev)
        self.t = 0

    def _meta_grad(self, theta):
        c = self.ctypes
        self.sums.zero_()
        ptr = lambda x: c.c_void_p(x.data_ptr())
        args = [ptr(theta), *map(ptr, self.batch), c.c_float(self.inner_lr), c.c_int(self.steps),
                c.c_int(int(self.first_order)), c.c_int(self.tasks), ptr(self.workspace), ptr(self.task_loss),
                c.c_void_p(self.sums.data_ptr() + 4 * self.config.num_params), ptr(self.sums)]
        params = (c.c_void_p * len(args))(*[c.cast(c.pointer(a), c.c_void_p) for a in args])
        stream = c.c_void_p(self.torch.cuda.current_stream().cuda_stream)
        _check_cu(self.cuda, self.cuda.cuLaunchKernel(self.function, self.tasks, 1, 1, self.config.threads, 1, 1,
                                                      0, stream, params, None))
        return self.sums[:-1]

    def grad(self):
        return self._meta_grad(self.theta0).cpu().numpy()

    def step(self):
        g = self._meta_grad(self.theta)
        self.t += 1
        self.m.mul_(B1).add_(g, alpha=1 - B1)
        self.v.mul_(B2).addcmul_(g, g, value=1 - B2)
        self.theta.addcdiv_(self.m / (1 - B1 ** self.t), (self.v / (1 - B2 ** self.t)).sqrt_().add_(EPS),
                            value=-self.lr)

    def sync(self):
        self.torch.cuda.synchronize()


def _load_libcuda():
    import ctypes
    lib = ctypes.CDLL("libcuda.so.1")
    lib.cuModuleLoadData.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.cuModuleGetFunction.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
    lib.cuLaunchKernel.argtypes = ([ctypes.c_void_p] + [ctypes.c_uint] * 7
                                   + [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p])
    return lib


def _check_cu(lib, status):
    if status != 0:
        import ctypes
        msg = ctypes.c_char_p()
        lib.cuGetErrorString(status, ctypes.byref(msg))
        raise RuntimeError(f"CUDA driver error {status}: {msg.value.decode() if msg.value else '?'}")


def _nvrtc_compile(source, options):
    """Compile CUDA C++ to a cubin with libnvrtc (found next to PyTorch's or the nvidia-* wheels)."""
    import ctypes
    import glob
    import site
    roots = site.getsitepackages() + [site.getusersitepackages()]
    candidates = [p for r in roots for p in sorted(glob.glob(f"{r}/nvidia/cuda_nvrtc/lib/libnvrtc.so*"))
                  + sorted(glob.glob(f"{r}/nvidia/cu*/lib/libnvrtc.so*")) + sorted(glob.glob(f"{r}/torch/lib/libnvrtc*.so*"))]
    candidates = ([p for p in candidates if "builtins" not in p] + sorted(glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*"))
                  + ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"])
    for path in candidates:
        try:
            nvrtc = ctypes.CDLL(path)
            break
        except OSError:
            continue
    else:
        raise RuntimeError(f"libnvrtc not found (looked in {roots})")
    prog = ctypes.c_void_p()
    nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"maml_fused.cu", 0, None, None)
    opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
    status = nvrtc.nvrtcCompileProgram(prog, len(options), opts)
    if status != 0:
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(prog, log)
        raise RuntimeError(f"NVRTC failed ({status}): {log.value.decode(errors='replace')}")
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    cubin = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetCUBIN(prog, cubin)
    return cubin.raw


class MinimamlEmulated:
    """--dry-run stand-in for MinimamlCuda: the same kernel on the CPU, NumPy Adam."""
    name = "minimaml"

    def __init__(self, net, theta, batch, inner_lr, steps, first_order, lr=1e-3):
        from minimaml.gpu import emulated
        from minimaml.optim import Adam
        self.emulated, self.adam = emulated, Adam(lr)
        self.args = (net, theta.astype(np.float32), *(a.astype(np.float32) for a in batch), inner_lr, steps,
                     first_order)
        self.theta = self.args[1]

    def grad(self):
        return self.emulated.meta_value_and_grad(*self.args)[1]

    def step(self):
        net, _, *rest = self.args
        _, g = self.emulated.meta_value_and_grad(net, self.theta, *rest)
        self.theta = self.adam.step(self.theta, g)

    def sync(self):
        pass


def _layers(net, theta):
    return [(np.asarray(W, np.float32), np.asarray(b, np.float32)) for W, b in net.unflatten(theta)]


class Jax:
    name = "jax"

    def __init__(self, net, theta, batch, inner_lr, steps, first_order, lr=1e-3):
        import jax
        import jax.numpy as jnp
        self.jax = jax
        # Full float32 matmuls, as minimaml's kernel and PyTorch (allow_tf32=False by default) do;
        # JAX's default may use TF32 on recent GPUs (about 1e-3 relative error).
        jax.config.update("jax_default_matmul_precision", "highest")
        act = jax.nn.relu if net.activation == "relu" else jnp.tanh
        tree_map = jax.tree_util.tree_map

        def forward(params, x):
            for i, (W, b) in enumerate(params):
                x = x @ W + b
                if i < len(params) - 1:
                    x = act(x)
            return x

        def loss(params, x, y):
            return jnp.mean((forward(params, x) - y) ** 2)

        def task_loss(params, xs, ys, xq, yq):
            for _ in range(steps):
                g = jax.grad(loss)(params, xs, ys)
                if first_order:
                    g = jax.lax.stop_gradient(g)
                params = tree_map(lambda p, g: p - inner_lr * g, params, g)
            return loss(params, xq, yq)

        def meta_loss(params, xs, ys, xq, yq):
            return jnp.mean(jax.vmap(task_loss, in_axes=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq))

        def step(params, m, v, t, xs, ys, xq, yq):
            value, g = jax.value_and_grad(meta_loss)(params, xs, ys, xq, yq)
            t = t + 1
            m = tree_map(lambda m, g: B1 * m + (1 - B1) * g, m, g)
            v = tree_map(lambda v, g: B2 * v + (1 - B2) * g * g, v, g)
            c1, c2 = 1 - B1 ** t, 1 - B2 ** t
            params = tree_map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + EPS), params, m, v)
            return params, m, v, t, value

        self._grad = jax.jit(jax.grad(meta_loss))
        self._step = jax.jit(step, donate_argnums=(0, 1, 2))
        self.params0 = [tuple(jnp.asarray(a) for a in layer) for layer in _layers(net, theta)]
        self.params = tree_map(lambda a: a.copy(), self.params0)
        self.m = tree_map(jnp.zeros_like, self.params)
        self.v = tree_map(jnp.zeros_like, self.params)
        self.t = jnp.zeros((), jnp.float32)
        self.batch = [jnp.asarray(a, jnp.float32) for a in batch]
        self.device = str(jax.devices()[0])

    def grad(self):
        g = self._grad(self.params0, *self.batch)
        return np.concatenate([np.concatenate([np.ravel(W), np.ravel(b)]) for W, b in g])

    def step(self):
        self.params, self.m, self.v, self.t, _ = self._step(self.params, self.m, self.v, self.t, *self.batch)

    def sync(self):
        self.jax.block_until_ready(self.params)


class Torch:
    name = "torch"

    def __init__(self, net, theta, batch, inner_lr, steps, first_order, lr=1e-3, device=None):
        import torch
        from torch.func import grad, vmap
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        act = torch.relu if net.activation == "relu" else torch.tanh
        nlayers = len(net.sizes) - 1

        def forward(params, x):
            for i in range(nlayers):
                x = x @ params[2 * i] + params[2 * i + 1]
                if i < nlayers - 1:
                    x = act(x)
            return x

        def loss(params, x, y):
            return ((forward(params, x) - y) ** 2).mean()

        def task_loss(params, xs, ys, xq, yq):
            for _ in range(steps):
                g = grad(loss)(params, xs, ys)
                if first_order:
                    g = tuple(gi.detach() for gi in g)
                params = tuple(p - inner_lr * gi for p, gi in zip(params, g))
            return loss(params, xq, yq)

        def meta_loss(params, xs, ys, xq, yq):
            return vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(params, xs, ys, xq, yq).mean()

        self._grad = grad(meta_loss)
        self.lr = lr
        flat = [a for layer in _layers(net, theta) for a in layer]
        self.params0 = tuple(torch.tensor(a, device=self.device) for a in flat)
        self.params = tuple(p.clone() for p in self.params0)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        self.batch = [torch.tensor(a, dtype=torch.float32, device=self.device) for a in batch]

    def grad(self):
        g = self._grad(self.params0, *self.batch)
        return np.concatenate([gi.detach().cpu().numpy().ravel() for gi in g])

    def step(self):
        g = self._grad(self.params, *self.batch)
        self.t += 1
        c1, c2 = 1 - B1 ** self.t, 1 - B2 ** self.t
        with self.torch.no_grad():
            for p, m, v, gi in zip(self.params, self.m, self.v, g):
                m.mul_(B1).add_(gi, alpha=1 - B1)
                v.mul_(B2).addcmul_(gi, gi, value=1 - B2)
                p.addcdiv_(m / c1, (v / c2).sqrt_().add_(EPS), value=-self.lr)

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------
def time_steps(runner, min_time, repeats, max_steps=2000):
    """Median ms per step over `repeats` runs of n back-to-back steps, n sized to take >= min_time s."""
    for _ in range(3):
        runner.step()
    runner.sync()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            runner.step()
        runner.sync()
        if time.perf_counter() - t0 >= min_time or n >= max_steps:
            break
        n = min(max_steps, n * 4)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            runner.step()
        runner.sync()
        times.append((time.perf_counter() - t0) / n * 1e3)
    return statistics.median(times), n


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("cupy", "jax", "torch"):
        try:
            out[name] = __import__(name).__version__
        except Exception as e:   # not installed, or broken: say so in the results
            out[name] = f"unavailable ({type(e).__name__}: {e})"
    return out


def device_name(dry_run, runner):
    if dry_run:
        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), --dry-run"
    try:
        if runner is MinimamlDriver:
            import torch
            return torch.cuda.get_device_name()
        import cupy
        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception as e:   # no GPU: the contestants will fail and say why
        return f"unknown ({type(e).__name__}: {e})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--out", help="JSON results file (default $OUT/bench_gpu.json, else bench/results/)")
    parser.add_argument("--tasks", type=int, nargs="+", help="meta-batch sizes T (default 25 1024)")
    parser.add_argument("--steps", type=int, nargs="+", help="inner steps S (default 1 5)")
    parser.add_argument("--k", type=int, default=10, help="support = query points per task")
    parser.add_argument("--inner-lr", type=float, default=0.01)
    parser.add_argument("--first-order", action="store_true", help="time first-order MAML instead")
    parser.add_argument("--peers", nargs="*", default=["jax", "torch"], choices=["jax", "torch"])
    parser.add_argument("--min-time", type=float, default=0.25, help="seconds per timing repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true",
                        help="no GPU needed: CPU-emulated kernel, peers on the CPU, T=2, S=1 unless given,"
                             " one short repeat (checks the script and the peers' gradients)")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.tasks, args.steps = args.tasks or [2], args.steps or [1]
        args.min_time, args.repeats = 0.01, 1
    args.tasks, args.steps = args.tasks or [25, 1024], args.steps or [1, 5]

    out_path = Path(args.out or Path(os.environ.get("OUT") or Path(__file__).parent / "results") / "bench_gpu.json")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    net = MLP([1, 40, 40, 1], "relu")
    theta = net.init(0)
    if args.dry_run:
        minimaml_runner = MinimamlEmulated
    else:
        try:
            import cupy  # noqa: F401
            minimaml_runner = MinimamlCuda
        except ImportError:
            minimaml_runner = MinimamlDriver
    contestants = [minimaml_runner]
    contestants += [{"jax": Jax, "torch": Torch}[p] for p in args.peers]
    results = {"device": device_name(args.dry_run, minimaml_runner), "versions": versions(),
               "minimaml_launcher": minimaml_runner.__name__,
               "setup": {"network": net.sizes, "activation": net.activation, "k": args.k,
                         "inner_lr": args.inner_lr, "second_order": not args.first_order,
                         "meta_step": "meta-gradient + Adam, data on the device",
                         "precision": "float32 everywhere; JAX matmul precision 'highest' (no TF32)",
                         "torch_mode": "eager torch.func (no torch.compile)"},
               "max_rel_err_vs_hvp_float64": {}, "ms_per_meta_step": {}, "ratio_peer_over_minimaml": {},
               "errors": {}}
    print(f"device: {results['device']}")
    print("versions:", json.dumps(results["versions"]))

    for tasks in args.tasks:
        batch = make_batch(tasks, args.k, seed=tasks)
        for steps in args.steps:
            key = f"T={tasks},S={steps}"
            _, ref = hvp_meta_value_and_grad(net, theta, *batch, args.inner_lr, steps, first_order=args.first_order)
            times, errs = {}, {}
            for cls in contestants:
                try:
                    runner = cls(net, theta, batch, args.inner_lr, steps, args.first_order)
                    errs[cls.name] = float(np.max(np.abs(runner.grad() - ref)) / np.max(np.abs(ref)))
                    times[cls.name], n = time_steps(runner, args.min_time, args.repeats)
                    print(f"{key:>14} {cls.name:>9}: {times[cls.name]:9.3f} ms/step  (n={n}),"
                          f" max rel err vs hvp {errs[cls.name]:.1e}", flush=True)
                except Exception as e:   # a peer missing on this machine must not sink the others
                    results["errors"][f"{key} {cls.name}"] = f"{type(e).__name__}: {e}"
                    print(f"{key:>14} {cls.name:>9}: FAILED {type(e).__name__}: {e}", flush=True)
            results["ms_per_meta_step"][key] = times
            results["max_rel_err_vs_hvp_float64"][key] = errs
            if "minimaml" in times:
                ratios = {p: times[p] / times["minimaml"] for p in times if p != "minimaml"}
                if ratios:
                    ratios["best_peer"] = min(ratios.values())
                    if tasks in TARGETS:
                        results.setdefault("target_met", {})[key] = (
                            f"{ratios['best_peer']:.2f}x vs target {TARGETS[tasks]:.0f}x: "
                            + ("met" if ratios["best_peer"] >= TARGETS[tasks] else "NOT met"))
                results["ratio_peer_over_minimaml"][key] = ratios
                print(f"{key:>14}    ratios: " + ", ".join(f"{p} {r:.2f}x" for p, r in ratios.items()))
            out_path.write_text(json.dumps(results, indent=2))   # partial results survive a timeout

    print(f"results written to {out_path}")
    return results


if __name__ == "__main__":
    main()
