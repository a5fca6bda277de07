"""The CUDA kernels, run on the CPU: ``method="cuda-emulated"``.

``kernels/cuda_emulation.h`` maps CUDA's built-ins onto standard C++20 (one ``std::thread`` per
CUDA thread, ``__syncthreads()`` as a ``std::barrier``, ``__shared__`` as ``static``, blocks one
after another). This module compiles the unchanged kernel sources with it into a shared library
on first use and calls it through ctypes, so a student without a GPU can run, test and step
through (gdb on the .so) the very code the GPU runs.

Compiled libraries are cached in ``$MINIMAML_CACHE`` (default ``~/.cache/minimaml``, or
``$XDG_CACHE_HOME/minimaml``), named by a hash of the sources, the configuration and the
compiler, so editing a kernel rebuilds it. The compiler is ``$CXX`` or the first of c++, g++,
clang++ on PATH; it must speak C++20 (g++ >= 11, clang++ >= 14). With
``MINIMAML_EMULATED_DEBUG=1`` the library is built with ``-O0 -g``: run Python under gdb, break
in ``mm::backward<...>``, and ``info threads`` lists the block's CUDA threads.

Everything is float32, as on the GPU: inputs of another floating dtype are converted.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading

import numpy as np

from .. import files
from . import _source

#: Threads per block in the CPU build. Each is an OS thread and every __syncthreads() wakes them
#: all, so a CPU wants few (the kernel's loops hand out work for any block size, so results agree
#: to rounding): on 2 cores, T = 25, S = 1 takes about 11 ms with 2 threads, 40 ms with 8, 160 ms
#: with 32. 8 keeps the block visibly parallel for a student stepping through it.
DEFAULT_THREADS = 8

_ERROR_SIZE = 1024
_libraries = {}                   # path -> ctypes.CDLL, loaded once per process
_build_lock = threading.Lock()


def meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order=False, *,
                        threads=DEFAULT_THREADS, params_in_shared=None):
    """MAML meta-loss and meta-gradient by the fused CUDA kernel, run on the CPU.

    Same contract as ``minimaml.meta_value_and_grad(..., method="hvp")``: θ (P,), xs (T, K, in),
    ys (T, K, out), xq (T, Kq, in), yq (T, Kq, out), α = inner_lr > 0, S = steps >= 0;
    ``first_order=True`` drops the Hessian terms. Computed in float32. ``threads`` (CUDA threads
    per block) and ``params_in_shared`` (where θ and g live; None: shared memory if they fit) pick
    the kernel variant, see ``KernelConfig``.

    Returns (meta_loss float, meta_grad (P,) float32).
    """
    num_tasks = _source.check_meta_args(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order)
    config = _source.KernelConfig.for_problem(net, xs, xq, threads=threads, params_in_shared=params_in_shared)
    theta, xs, ys, xq, yq = (_float32(a) for a in (theta, xs, ys, xq, yq))
    lib = load_library(config)
    workspace = np.empty(num_tasks * config.workspace_floats(steps), dtype=np.float32)
    task_loss = np.empty(num_tasks, dtype=np.float32)
    meta_loss = np.zeros(1, dtype=np.float32)
    meta_grad = np.zeros(config.num_params, dtype=np.float32)
    (grid,), (block,) = config.launch_dims(num_tasks)
    _call(lib.mm_launch_maml_fused, grid, block, _ptr(theta), _ptr(xs), _ptr(ys), _ptr(xq), _ptr(yq),
          ctypes.c_float(inner_lr), steps, int(first_order), num_tasks, _ptr(workspace),
          _ptr(task_loss), _ptr(meta_loss), _ptr(meta_grad))
    return float(meta_loss[0]), meta_grad


def batched_update(theta, grads, inner_lr, *, threads=DEFAULT_THREADS):
    """θ'_t = θ − α g_t for every task t, by ``kernels/batched_update.cu``: θ (P,), grads (T, P) -> (T, P)."""
    num_tasks, num_params = _source.check_update_args(theta, grads, inner_lr)
    theta, grads = _float32(theta), _float32(grads)
    # batched_update.cu needs no configuration; any build of the library carries it.
    lib = load_library(_source.KernelConfig((1, 40, 40, 1), "relu", 10, 10, threads=threads))
    out = np.empty((num_tasks, num_params), dtype=np.float32)
    (grid,), (block,) = _source.update_launch_dims(num_tasks, num_params, threads)
    _call(lib.mm_launch_batched_update, grid, block, _ptr(theta), _ptr(grads), ctypes.c_float(inner_lr),
          num_tasks, num_params, _ptr(out))
    return out


# ------------------------------------------------------------------------------------------------
# Building and loading the library.
# ------------------------------------------------------------------------------------------------
def find_compiler():
    """The C++ compiler command: ``$CXX``, else c++ / g++ / clang++ from PATH."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        "method='cuda-emulated' compiles the CUDA kernel for the CPU and needs a C++20 compiler"
        f" (g++ >= 11 or clang++ >= 14); none found (tried {', '.join(candidates)}): install one"
        " (e.g. `apt install g++`) or point $CXX at it"
    )


def cache_dir():
    """Where compiled libraries are kept: minimaml's cache folder (``minimaml.files.cache_dir``)."""
    return files.cache_dir()


def compile_command(config, compiler, source, output):
    """The compiler command line for one configuration (also shows a student how to build it by hand)."""
    optimize = ["-O0", "-g"] if os.environ.get("MINIMAML_EMULATED_DEBUG") else ["-O2"]
    return [compiler, *optimize, "-std=c++20", "-shared", "-fPIC", "-pthread", "-Wno-unknown-pragmas",
            f"-I{_source.kernel_dir()}", *config.flags(block_size=False), str(source), "-o", str(output)]


def library_path(config):
    """The cached library's path for ``config``: its name hashes sources, flags and compiler."""
    compiler = find_compiler()
    digest = hashlib.sha256()
    for name in _source.KERNEL_FILES:
        digest.update(name.encode() + b"\0" + _source.read_source(name).encode() + b"\0")
    digest.update(" ".join(compile_command(config, compiler, "SRC", "OUT")).encode())
    digest.update(_compiler_version(compiler).encode())
    return cache_dir() / f"maml_fused_{digest.hexdigest()[:20]}.so"


def load_library(config):
    """The ctypes library for ``config``, compiled on first use."""
    path = library_path(config)
    with _build_lock:
        if path not in _libraries:
            if not path.exists():
                _build(config, path)
            _libraries[path] = _declare(ctypes.CDLL(str(path)), config)
    return _libraries[path]


def _build(config, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    source = _source.kernel_dir() / "emulated_launch.cpp"
    # Compile to a temporary name, then rename: another process never sees half a library.
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.so", dir=path.parent)
    os.close(fd)
    try:
        cmd = compile_command(config, find_compiler(), source, tmp)
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"compiling the emulated CUDA kernel failed (exit {done.returncode}):\n  {' '.join(cmd)}\n"
                f"{done.stderr.strip()[-4000:]}"
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _declare(lib, config):
    ptr, i32, f32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    err = [ctypes.c_char_p, i32]
    lib.mm_num_params.restype = i32
    lib.mm_shared_bytes.restype = i32
    lib.mm_launch_batched_update.argtypes = [i32, i32, ptr, ptr, f32, i32, i32, ptr] + err
    lib.mm_launch_maml_fused.argtypes = ([i32, i32, ptr, ptr, ptr, ptr, ptr, f32, i32, i32, i32,
                                         ptr, ptr, ptr, ptr] + err)
    for fn in (lib.mm_launch_batched_update, lib.mm_launch_maml_fused):
        fn.restype = i32
    got = (lib.mm_num_params(), lib.mm_shared_bytes())
    want = (config.num_params, config.shared_bytes)
    if got != want:   # the Python mirror of the kernel's layout has drifted from the .cu
        raise RuntimeError(f"emulated kernel library has (P, shared bytes) = {got}, expected {want}")
    return lib


def _compiler_version(compiler, _cache={}):
    if compiler not in _cache:
        done = subprocess.run([compiler, "--version"], capture_output=True, text=True)
        _cache[compiler] = done.stdout.splitlines()[0] if done.stdout else compiler
    return _cache[compiler]


# ------------------------------------------------------------------------------------------------
def _float32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _ptr(a):
    return ctypes.c_void_p(a.ctypes.data)


def _call(fn, *args):
    error = ctypes.create_string_buffer(_ERROR_SIZE)
    if fn(*args, error, _ERROR_SIZE) != 0:
        raise RuntimeError(f"emulated kernel launch failed: {error.value.decode(errors='replace')}")
