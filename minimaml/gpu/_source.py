"""What both GPU back-ends share: the kernel sources, their configuration, and the checks.

The fused kernel (``kernels/maml_fused.cu``) is compiled once per configuration: the network's
layer widths and activation, the support and query set sizes K and Kq, the block size, and where
θ and g live. ``KernelConfig`` holds those, turns them into ``-DMM_...`` compiler flags, and
knows the kernel's memory layout (shared memory per block, workspace per task) so that a
configuration the kernel cannot run is refused here, in Python, with the numbers involved.

Limits of the fused kernel (one thread block per task, everything in static shared memory):

* 1 to 4 weight layers (``len(sizes) - 1``), every width ``sizes[l]`` from 1 to 64;
* activation "relu" or "tanh"; loss: MSE;
* 48 KB of static shared memory per block for the activations and deltas of max(K, Kq) points
  and their R-versions (4·max(K, Kq)·Σ sizes floats), the task's points, and, when they fit, the
  working copies of θ and g (2P floats). If θ and g do not fit they move to global memory (slower,
  still exact); if the rest does not fit, K or Kq is too large for this network.

E.g. 1-40-40-1 (P = 1761) keeps θ and g in shared memory for K = Kq up to 26 (the paper's K = 10:
27 372 bytes), and runs up to K = Kq = 37 with θ and g in global memory.
"""

import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..meta import checks

MAX_LAYERS = 4
MAX_WIDTH = 64
ACTIVATIONS = ("relu", "tanh")
SHARED_BYTES_LIMIT = 48 * 1024      # static __shared__ memory per block, any CUDA GPU
FLOAT_BYTES = 4
KERNEL_FILES = ("maml_fused.cu", "batched_update.cu", "cuda_emulation.h", "emulated_launch.cpp")


def kernel_dir():
    """The folder with the ``.cu`` sources: ``$MINIMAML_KERNEL_DIR``, else the package's ``gpu/kernels/``."""
    folder = Path(os.environ.get("MINIMAML_KERNEL_DIR") or Path(__file__).resolve().parent / "kernels")
    if not (folder / "maml_fused.cu").is_file():
        raise FileNotFoundError(
            f"CUDA kernel sources not found in {folder} (looked for maml_fused.cu); minimaml's GPU code"
            " reads kernels/ from its source checkout: install with `pip install -e .` or set"
            " MINIMAML_KERNEL_DIR to the kernels/ folder"
        )
    return folder


def read_source(name):
    """Text of one file of ``kernels/``."""
    return (kernel_dir() / name).read_text()


@dataclass(frozen=True)
class KernelConfig:
    """One compiled variant of the fused kernel.

    sizes: layer widths (sizes[0] = input, sizes[-1] = output); activation: "relu" | "tanh";
    k_support, k_query: points per task in the support and query sets; threads: CUDA threads per
    block; params_in_shared: where θ and g live (None: shared memory if it fits, else global).
    """

    sizes: tuple
    activation: str
    k_support: int
    k_query: int
    threads: int = 256
    params_in_shared: bool = None

    def __post_init__(self):
        sizes = tuple(int(n) for n in self.sizes)
        object.__setattr__(self, "sizes", sizes)
        layers = len(sizes) - 1
        if not 1 <= layers <= MAX_LAYERS:
            raise ValueError(
                f"the CUDA kernel supports 1 to {MAX_LAYERS} weight layers, got {layers} for sizes"
                f" {list(sizes)}; use method='hvp' for deeper networks"
            )
        if not all(1 <= n <= MAX_WIDTH for n in sizes):
            raise ValueError(
                f"the CUDA kernel supports layer widths 1 to {MAX_WIDTH}, got sizes {list(sizes)};"
                " use method='hvp' for wider networks"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"the CUDA kernel supports activations {ACTIVATIONS}, got {self.activation!r}")
        for name in ("k_support", "k_query", "threads"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.threads > 1024:
            raise ValueError(f"threads must be at most 1024 per CUDA block, got {self.threads}")
        base = self._shared_floats(params=False) * FLOAT_BYTES
        if base > SHARED_BYTES_LIMIT:
            raise ValueError(
                f"K={self.k_support} support and Kq={self.k_query} query points need {base} bytes of"
                f" shared memory per block for network {list(sizes)}, over the {SHARED_BYTES_LIMIT}-byte"
                f" limit; use fewer points per task or method='hvp'"
            )
        fits = (base + 2 * self.num_params * FLOAT_BYTES) <= SHARED_BYTES_LIMIT
        if self.params_in_shared is None:
            object.__setattr__(self, "params_in_shared", fits)
        elif self.params_in_shared and not fits:
            raise ValueError(
                f"params_in_shared=True needs {base + 2 * self.num_params * FLOAT_BYTES} bytes of shared"
                f" memory for network {list(sizes)} (P={self.num_params}), over {SHARED_BYTES_LIMIT}"
            )

    @classmethod
    def for_problem(cls, net, xs, xq, threads=256, params_in_shared=None):
        """The configuration for ``net`` (an MLP) on support set xs (T, K, in), query set xq (T, Kq, in)."""
        return cls(tuple(net.sizes), net.activation, int(xs.shape[1]), int(xq.shape[1]), threads,
                   params_in_shared)

    @property
    def num_layers(self):
        return len(self.sizes) - 1

    @property
    def num_params(self):
        """P = Σ_l (sizes[l] + 1) · sizes[l+1], as in ``MLP.num_params``."""
        return sum((a + 1) * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def _shared_floats(self, params):
        # Mirrors the __shared__ arrays of maml_fused.cu (mm::kSharedBytes, checked against ptxas).
        k = max(self.k_support, self.k_query)
        n_in, n_out = self.sizes[0], self.sizes[-1]
        return (4 * k * sum(self.sizes)                              # h, R{h}, δ, R{δ}
                + (self.k_support + self.k_query) * (n_in + n_out)   # the task's points
                + (2 * self.num_params if params else 0)             # θ and g, if there
                + 1)                                                  # the task's query loss

    @property
    def shared_bytes(self):
        """Static shared memory per block, in bytes (what ptxas reports as "smem")."""
        return self._shared_floats(self.params_in_shared) * FLOAT_BYTES

    def workspace_floats(self, steps):
        """Global scratch floats per task: θ_0..θ_{S−1} for the walk back, plus θ and g when they
        are not in shared memory (mirrors the kernel's `slots`)."""
        return (steps + (0 if self.params_in_shared else 2)) * self.num_params

    def defines(self):
        """The -D macros of maml_fused.cu for this configuration."""
        macros = {"MM_LAYERS": self.num_layers}
        macros.update({f"MM_SIZE{l}": n for l, n in enumerate(self.sizes)})
        macros.update({
            "MM_TANH": int(self.activation == "tanh"),
            "MM_K_SUPPORT": self.k_support,
            "MM_K_QUERY": self.k_query,
            "MM_THREADS": self.threads,
            "MM_PARAMS_IN_SHARED": int(self.params_in_shared),
        })
        return macros

    def flags(self, block_size=True):
        """Compiler flags, the same for nvcc, NVRTC and g++: ("-DMM_LAYERS=3", ...).

        ``block_size=False`` leaves out MM_THREADS, which only feeds ``__launch_bounds__``: the CPU
        build ignores it, so one library serves every block size."""
        return tuple(f"-D{name}={value}" for name, value in self.defines().items()
                     if block_size or name != "MM_THREADS")

    def launch_dims(self, num_tasks):
        """(grid, block) of the fused kernel: one block of ``threads`` threads per task."""
        return (int(num_tasks),), (self.threads,)


def update_launch_dims(num_tasks, num_params, threads=256):
    """(grid, block) of batched_update.cu: one thread per element of the (T, P) result."""
    return ((num_tasks * num_params + threads - 1) // threads,), (threads,)


# ------------------------------------------------------------------------------------------------
# Argument checks shared by the CUDA and emulated back-ends. They look only at .shape / .dtype,
# so they work on NumPy and CuPy arrays alike without moving data.
# ------------------------------------------------------------------------------------------------
def _check_float_array(name, a):
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    if np.dtype(a.dtype).kind != "f":
        raise TypeError(f"{name} must be a floating-point array (it is computed in float32), got dtype {a.dtype}")


def check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order):
    """Validate the arguments of ``meta_value_and_grad`` with the one check every route uses
    (``minimaml.meta.checks``), plus what the kernel needs: an MLP without batch norm, with MSE.
    Returns T, the number of tasks."""
    from ..nn import MLP
    if not isinstance(net, MLP) or net.norm is not None or net.param != "standard":
        other = "autodiff" if isinstance(net, MLP) and net.param != "standard" else "hvp"
        raise TypeError(f"the CUDA kernel runs a minimaml MLP without batch norm, in the standard "
                        f"parameterisation, got {net!r}; use method={other!r}")
    checks.check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps)
    for name, a in {"xs": xs, "ys": ys, "xq": xq, "yq": yq}.items():
        _check_float_array(name, a)
    if first_order not in (True, False):
        raise TypeError(f"first_order must be True or False, got {first_order!r}")
    return int(xs.shape[0])


def check_update_args(theta, grads, inner_lr):
    """Validate ``batched_update`` arguments: θ (P,), grads (T, P); returns (T, P)."""
    _check_float_array("theta", theta)
    _check_float_array("grads", grads)
    if theta.ndim != 1 or grads.ndim != 2 or grads.shape[1] != theta.shape[0]:
        raise ValueError(f"batched_update needs theta (P,) and grads (T, P), got {tuple(theta.shape)}"
                         f" and {tuple(grads.shape)}")
    if not isinstance(inner_lr, numbers.Real) or isinstance(inner_lr, bool) or not np.isfinite(inner_lr):
        raise ValueError(f"inner_lr must be a finite number, got {inner_lr!r}")
    return int(grads.shape[0]), int(grads.shape[1])
