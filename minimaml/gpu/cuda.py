"""The CUDA kernels on a GPU, through CuPy: ``method="cuda"`` and ``minimaml train --device cuda``.

The only module of minimaml that imports CuPy, and only when one of its functions is called.
It reads ``kernels/*.cu``, compiles them with ``cupy.RawModule`` (NVRTC) once per configuration
(network sizes, activation, K, Kq: see ``_source.KernelConfig``) and launches them.

Public functions (all arrays float32 CuPy arrays; NumPy inputs are copied to the GPU):

* ``meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order=False)``
  -> (meta_loss, meta_grad): the fused kernel, one launch per meta-batch. ``meta_loss`` is a 0-d
  CuPy array (``float(meta_loss)`` waits for the GPU; keep it on the GPU to avoid a sync per step),
  ``meta_grad`` a (P,) CuPy array.
* ``adam_update(theta, grad, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8)``: one Adam step in place on
  θ, m, v (one elementwise kernel), the same arithmetic as ``minimaml.optim.Adam``; ``t`` is the
  step number after the increment (1 on the first step). The parameters and the optimizer state
  stay on the GPU for the whole training run.
* ``batched_update(theta, grads, inner_lr)`` -> (T, P): the teaching kernel θ'_t = θ − α g_t.
* ``available()`` -> (bool, reason): whether CuPy and a CUDA GPU are usable, without raising.
* ``array_module()`` -> the ``cupy`` module, for code that keeps θ and Adam's state on the GPU.

A training step on the GPU::

    theta, m, v = cupy.asarray(theta0, cupy.float32), cupy.zeros(P, cupy.float32), cupy.zeros(P, cupy.float32)
    for t in range(1, iterations + 1):
        loss, grad = cuda.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps)
        cuda.adam_update(theta, grad, m, v, t, meta_lr)
    theta_host = cupy.asnumpy(theta)   # e.g. for a checkpoint
"""

import functools

import numpy as np

from . import _source

INSTALL_HINT = "pip install 'minimaml[gpu]' (CuPy for CUDA 12: cupy-cuda12x)"

_modules = {}       # (kernel file, KernelConfig, kernel name, device id) -> compiled kernel
_adam_kernel = None
_checked_cupy = None   # CuPy, once it has shown a GPU


def _cupy():
    """Import CuPy and check that a CUDA GPU answers; otherwise raise, saying what is missing."""
    global _checked_cupy
    if _checked_cupy is not None:
        return _checked_cupy
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(
            f"method='cuda' needs CuPy with a working CUDA GPU, but CuPy is not installed ({e}):"
            f" {INSTALL_HINT}. Without a GPU, method='cuda-emulated' runs the same kernel on the CPU."
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:   # no driver, no device, driver too old for this CuPy...
        raise RuntimeError(
            f"method='cuda' needs a working CUDA GPU, but CuPy {cupy.__version__} cannot reach one: {e}."
            " Check `nvidia-smi`; without a GPU use method='cuda-emulated'."
        ) from None
    if count < 1:
        raise RuntimeError("method='cuda' needs a CUDA GPU, but CuPy sees 0 devices;"
                           " without a GPU use method='cuda-emulated'.")
    _checked_cupy = cupy
    return cupy


def array_module():
    """CuPy itself (after checking a GPU answers), for callers that keep arrays on the GPU, such as
    the training loop: they get it from here so that no other module imports CuPy."""
    return _cupy()


def available():
    """(True, "") when CuPy and a GPU are usable, else (False, the reason). Never raises."""
    try:
        _cupy()
    except RuntimeError as e:
        return False, str(e)
    return True, ""


def compile_options(config=None):
    """The options we give ``cupy.RawModule`` for one configuration (None: batched_update.cu, which
    has none). CuPy adds its own before NVRTC sees them: ``nvrtc_options`` has the full list."""
    return ("-std=c++17",) + (config.flags() if config is not None else ())


#: The GPU ``nvrtc_options`` compiles for when there is none to ask (the NVRTC check in CI):
#: compute capability 9.0, the H100 and H200 minimaml's kernel is measured on.
REFERENCE_ARCH = "90"


def nvrtc_options(config=None, arch=REFERENCE_ARCH):
    """Every option NVRTC gets when ``cupy.RawModule`` compiles with ``compile_options(config)`` on
    a GPU of compute capability ``arch``: ours, then what CuPy 13 appends (read in CuPy 13.6:
    ``assemble_cupy_compiler_options`` in cupy/_core/core.pyx; ``_compile_with_cache_cuda`` and
    ``compile_using_nvrtc`` in cupy/cuda/compiler.py):

    * ``-ftz=true``: denormal floats flush to zero on the GPU (the CPU build keeps them);
    * ``-arch=sm_XX``: NVRTC compiles all the way to the GPU's machine code (ptxas included).
      CuPy gives ``-arch=compute_XX`` (PTX only) instead when CUPY_COMPILE_WITH_PTX=1 or the GPU
      is newer than its NVRTC knows;
    * ``--device-as-default-execution-space`` (NVRTC 12 and later): a function without
      ``__device__`` is a device function, where nvcc would make it a host function.

    Left out: ``--std=c++11``, which CuPy adds only when no ``-std`` is given (we give one), and
    the ``-I`` folders of CuPy's and CUDA's headers, which change nothing while the kernels
    include no header (tests/gpu/test_nvrtc.py checks that they do not).
    ``minimaml.gpu.nvrtc`` compiles with this list, so CI and the GPU compile the same way.
    """
    cupy_adds = ("-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space")
    return compile_options(config) + cupy_adds


def _function(cupy, source_name, config, name):
    key = (source_name, config, name, cupy.cuda.Device().id)
    if key not in _modules:   # compile once per configuration and device (NVRTC, ~1 s)
        module = cupy.RawModule(code=_source.read_source(source_name), options=compile_options(config))
        _modules[key] = module.get_function(name)
    return _modules[key]


@functools.lru_cache(maxsize=64)
def _config(sizes, activation, k_support, k_query, threads):
    # Validated once per configuration: the training loop calls meta_value_and_grad every step.
    return _source.KernelConfig(sizes, activation, k_support, k_query, threads)


def _device_float32(cupy, a):
    if isinstance(a, cupy.ndarray) and a.dtype == cupy.float32 and a.flags.c_contiguous:
        return a   # the training loop's case: nothing to do, on the host's critical path
    return cupy.ascontiguousarray(cupy.asarray(a, dtype=cupy.float32))


def meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order=False, *, threads=256):
    """MAML meta-loss and meta-gradient by the fused CUDA kernel (one launch).

    Same contract as ``minimaml.meta_value_and_grad(..., method="hvp")``: θ (P,), xs (T, K, in),
    ys (T, K, out), xq (T, Kq, in), yq (T, Kq, out), α = inner_lr > 0, S = steps >= 0;
    ``first_order=True`` drops the Hessian terms. Computed in float32 on the current CuPy device.

    Returns (meta_loss 0-d CuPy array, meta_grad (P,) CuPy float32 array).
    """
    num_tasks = _source.check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order)
    config = _config(tuple(net.sizes), net.activation, int(xs.shape[1]), int(xq.shape[1]), threads)
    cupy = _cupy()
    kernel = _function(cupy, "maml_fused.cu", config, "maml_fused_meta_grad")
    theta, xs, ys, xq, yq = (_device_float32(cupy, a) for a in (theta, xs, ys, xq, yq))
    workspace = cupy.empty(num_tasks * config.workspace_floats(steps), dtype=cupy.float32)
    task_loss = cupy.empty(num_tasks, dtype=cupy.float32)
    sums = cupy.zeros(config.num_params + 1, dtype=cupy.float32)   # the kernel adds into: one memset
    meta_grad, meta_loss = sums[:-1], sums[-1:]
    grid, block = config.launch_dims(num_tasks)
    kernel(grid, block, (theta, xs, ys, xq, yq, np.float32(inner_lr), np.int32(steps),
                         np.int32(bool(first_order)), np.int32(num_tasks), workspace, task_loss,
                         meta_loss, meta_grad))
    return meta_loss.reshape(()), meta_grad


def batched_update(theta, grads, inner_lr, *, threads=256):
    """θ'_t = θ − α g_t for every task t (``kernels/batched_update.cu``): θ (P,), grads (T, P) -> (T, P)."""
    num_tasks, num_params = _source.check_update_args(theta, grads, inner_lr)
    cupy = _cupy()
    kernel = _function(cupy, "batched_update.cu", None, "batched_update")
    theta, grads = _device_float32(cupy, theta), _device_float32(cupy, grads)
    out = cupy.empty((num_tasks, num_params), dtype=cupy.float32)
    grid, block = _source.update_launch_dims(num_tasks, num_params, threads)
    kernel(grid, block, (theta, grads, np.float32(inner_lr), np.int32(num_tasks), np.int32(num_params), out))
    return out


# Adam as one elementwise kernel, θ, m, v updated in place (c1 = 1 − b1ᵗ, c2 = 1 − b2ᵗ):
#   m ← b1 m + (1 − b1) g,   v ← b2 v + (1 − b2) g²,   θ ← θ − lr (m / c1) / (√(v / c2) + ε)
ADAM_IN_PARAMS = "T grad, float32 lr, float32 b1, float32 b2, float32 eps, float32 c1, float32 c2"
ADAM_OUT_PARAMS = "T theta, T m, T v"
ADAM_OPERATION = """
    m = b1 * m + (1.0f - b1) * grad;
    v = b2 * v + (1.0f - b2) * grad * grad;
    theta -= lr * (m / c1) / (sqrt(v / c2) + eps);
"""


def adam_update(theta, grad, m, v, t, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step in place: θ, m, v are (P,) float32 CuPy arrays, updated where they are.

    ``t`` >= 1 is the step count including this step (bias correction 1 − b1ᵗ, 1 − b2ᵗ), matching
    ``minimaml.optim.Adam``. Returns θ (the same array).
    """
    if not (isinstance(t, (int, np.integer)) and t >= 1):
        raise ValueError(f"t must be the step number, an int >= 1, got {t!r}")
    arrays = {"theta": theta, "grad": grad, "m": m, "v": v}
    shapes = {k: tuple(getattr(a, "shape", ())) for k, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"adam_update needs theta, grad, m, v of one shape, got {shapes}")
    cupy = _cupy()
    for name, a in arrays.items():
        if not isinstance(a, cupy.ndarray) or a.dtype != cupy.float32:
            raise TypeError(f"adam_update needs float32 CuPy arrays, {name} is {type(a).__name__}"
                            f" of dtype {getattr(a, 'dtype', None)}")
    global _adam_kernel
    if _adam_kernel is None:
        _adam_kernel = cupy.ElementwiseKernel(ADAM_IN_PARAMS, ADAM_OUT_PARAMS, ADAM_OPERATION, "minimaml_adam")
    _adam_kernel(grad, np.float32(lr), np.float32(b1), np.float32(b2), np.float32(eps),
                 np.float32(1.0 - b1**t), np.float32(1.0 - b2**t), theta, m, v)
    return theta
