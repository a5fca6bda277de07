"""The CUDA sources compile with nvcc, the default configuration spills nothing, and the Python
mirror of the kernel's layout (``KernelConfig``) agrees with what ptxas reports. No GPU needed;
skipped without nvcc. test_nvrtc.py compiles the same files and configurations through NVRTC,
as method="cuda" does, and runs everywhere.

Also: the pure-Python parts of ``minimaml.gpu.cuda`` (options, launch sizes, the error without CuPy).
"""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from minimaml.gpu import _source
from minimaml.gpu._source import KernelConfig
from minimaml.nn import MLP

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found on PATH: cannot compile the CUDA kernels")
ARCH = "sm_90"   # H100; the kernels use nothing newer than sm_70
DEFAULT = KernelConfig((1, 40, 40, 1), "relu", 10, 10)   # the MAML paper's sinusoid setup
# What test_nvrtc.py compiles through NVRTC as well: each kernel file and its entry point (the
# name cuda.py looks it up by), and the configurations beyond DEFAULT.
ENTRY_POINTS = [("batched_update.cu", "batched_update"), ("maml_fused.cu", "maml_fused_meta_grad")]
CONFIGURATIONS = [
    # 4 layers, θ and g in global memory
    pytest.param(KernelConfig((3, 7, 5, 6, 2), "tanh", 4, 6, threads=64, params_in_shared=False),
                 id="4-layers-global"),
    # the widest hidden layers that keep θ and g in shared memory
    pytest.param(KernelConfig((1, 64, 64, 1), "tanh", 5, 5), id="1-64-64-1"),
    # the limits: θ and g in global memory
    pytest.param(KernelConfig((64, 64, 64, 64, 64), "relu", 7, 7), id="widest"),
    # one layer: a linear model
    pytest.param(KernelConfig((2, 3), "relu", 7, 3), id="linear"),
]


def _nvcc(tmp_path, source, *flags):
    cmd = [NVCC, *flags, str(_source.kernel_dir() / source)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    return done.stdout + done.stderr


def resource_usage(tmp_path, source, flags=()):
    """Compile to a cubin with ptxas verbose output; return {function: {registers, smem, spill_stores,
    spill_loads, stack}} parsed from lines like

        ptxas info    : Function properties for maml_fused_meta_grad
            0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
        ptxas info    : Used 64 registers, used 1 barriers, 27372 bytes smem
    """
    text = _nvcc(tmp_path, source, "-cubin", f"-arch={ARCH}", "--resource-usage", "-std=c++17", *flags,
                 "-o", str(tmp_path / "k.cubin"))
    usage, current = {}, None
    for line in text.splitlines():
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = usage.setdefault(m.group(1), {})
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current is not None:
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m and current is not None:
            current["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(s.group(1)) if s else 0
    assert usage, f"no ptxas resource lines in nvcc output:\n{text}"
    return usage


# ------------------------------------------------------------------------------------------------
@needs_nvcc
@pytest.mark.parametrize("source, entry", ENTRY_POINTS)
def test_every_kernel_compiles_standalone_to_ptx(tmp_path, source, entry):
    _nvcc(tmp_path, source, "-ptx", "-o", str(tmp_path / "k.ptx"))
    ptx = (tmp_path / "k.ptx").read_text()
    assert re.search(rf"\.entry\s+{entry}\s*\(", ptx), f"no .entry {entry} in the PTX of {source}"


@needs_nvcc
def test_default_configuration_spills_nothing(tmp_path):
    usage = resource_usage(tmp_path, "maml_fused.cu", DEFAULT.flags())
    kernel = usage["maml_fused_meta_grad"]
    print(f"\nmaml_fused_meta_grad, 1-40-40-1 ReLU, K=Kq=10, {DEFAULT.threads} threads, {ARCH}: "
          f"{kernel['registers']} registers, {kernel['smem']} bytes smem, "
          f"{kernel['spill_stores']}/{kernel['spill_loads']} bytes spill stores/loads, "
          f"{kernel['stack']} bytes stack")
    for name, u in usage.items():   # no function of the module may touch local memory
        assert u.get("spill_stores", 0) == 0 and u.get("spill_loads", 0) == 0, (name, u)
        assert u.get("stack", 0) == 0, (name, u)
    assert kernel["smem"] == DEFAULT.shared_bytes == 27372


@needs_nvcc
def test_standalone_defaults_are_the_default_configuration(tmp_path):
    # `nvcc kernels/maml_fused.cu` with no -D flags builds the paper's 1-40-40-1 ReLU, K = Kq = 10.
    usage = resource_usage(tmp_path, "maml_fused.cu")
    assert usage["maml_fused_meta_grad"]["smem"] == DEFAULT.shared_bytes


@needs_nvcc
@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_other_configurations_compile_and_match_the_python_layout(tmp_path, config):
    usage = resource_usage(tmp_path, "maml_fused.cu", config.flags())
    kernel = usage["maml_fused_meta_grad"]
    print(f"\n{config.sizes} {config.activation}: {kernel}")
    assert kernel["smem"] == config.shared_bytes <= _source.SHARED_BYTES_LIMIT


@needs_nvcc
def test_kernel_rejects_out_of_range_configuration_at_compile_time(tmp_path):
    cmd = [NVCC, "-ptx", "-DMM_LAYERS=2", "-DMM_SIZE0=1", "-DMM_SIZE1=65", "-DMM_SIZE2=1",
           str(_source.kernel_dir() / "maml_fused.cu"), "-o", str(tmp_path / "k.ptx")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode != 0 and "1..64" in done.stderr


# ------------------------------------------------------------------------------------------------
# KernelConfig: the Python side of the limits.
# ------------------------------------------------------------------------------------------------
def test_config_flags_and_layout():
    assert DEFAULT.num_params == MLP([1, 40, 40, 1]).num_params == 1761
    assert DEFAULT.params_in_shared
    assert DEFAULT.flags() == ("-DMM_LAYERS=3", "-DMM_SIZE0=1", "-DMM_SIZE1=40", "-DMM_SIZE2=40",
                               "-DMM_SIZE3=1", "-DMM_TANH=0", "-DMM_K_SUPPORT=10", "-DMM_K_QUERY=10",
                               "-DMM_THREADS=256", "-DMM_PARAMS_IN_SHARED=1")
    assert DEFAULT.launch_dims(25) == ((25,), (256,))
    assert DEFAULT.workspace_floats(5) == 5 * 1761
    big = KernelConfig((64, 64, 64, 64, 64), "tanh", 7, 7)
    assert not big.params_in_shared and big.workspace_floats(5) == 7 * big.num_params
    assert _source.update_launch_dims(25, 1761, 256) == ((172,), (256,))   # ceil(44025 / 256)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=(1, 40, 40, 40, 40, 1)), "1 to 4 weight layers"),
    (dict(sizes=(1,)), "1 to 4 weight layers"),
    (dict(sizes=(1, 65, 1)), "widths 1 to 64"),
    (dict(activation="sigmoid"), "activations"),
    (dict(k_support=0), "k_support must be an int >= 1"),
    (dict(threads=2048), "at most 1024"),
    (dict(k_support=38, k_query=38), "over the 49152-byte limit"),
    (dict(k_support=30, params_in_shared=True), "params_in_shared=True needs"),
])
def test_config_rejects_what_the_kernel_cannot_run(kwargs, message):
    args = dict(sizes=(1, 40, 40, 1), activation="relu", k_support=10, k_query=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        KernelConfig(**args)


# ------------------------------------------------------------------------------------------------
# minimaml.gpu.cuda without CuPy: clear errors, and its CPU-side helpers.
# ------------------------------------------------------------------------------------------------
def _small_problem():
    net = MLP([1, 40, 40, 1])
    rng = np.random.default_rng(0)
    xs, xq = rng.uniform(-5, 5, (2, 10, 1)), rng.uniform(-5, 5, (2, 10, 1))
    return net, net.init(0), xs, np.sin(xs), xq, np.sin(xq)


def test_cuda_without_cupy_says_what_is_missing(monkeypatch):
    from minimaml.gpu import cuda
    monkeypatch.setitem(sys.modules, "cupy", None)   # makes `import cupy` raise ImportError
    monkeypatch.setattr(cuda, "_checked_cupy", None)
    with pytest.raises(RuntimeError, match=r"needs CuPy with a working CUDA GPU.*pip install 'minimaml\[gpu\]'"):
        cuda.meta_value_and_grad(*_small_problem(), 0.01, 1)
    with pytest.raises(RuntimeError, match="CuPy"):
        cuda.batched_update(np.zeros(3, np.float32), np.zeros((2, 3), np.float32), 0.1)
    ok, reason = cuda.available()
    assert not ok and "CuPy is not installed" in reason


def test_cuda_checks_arguments_before_touching_the_gpu(monkeypatch):
    from minimaml.gpu import cuda
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(cuda, "_checked_cupy", None)
    net, theta, xs, ys, xq, yq = _small_problem()
    with pytest.raises(ValueError, match="theta must have shape"):
        cuda.meta_value_and_grad(net, theta[:-1], xs, ys, xq, yq, 0.01, 1)
    with pytest.raises(ValueError, match="widths 1 to 64"):
        cuda.meta_value_and_grad(MLP([1, 100, 1]), np.zeros(301), xs, ys, xq, yq, 0.01, 1)


def test_cuda_compile_options():
    from minimaml.gpu import cuda
    assert cuda.compile_options(DEFAULT) == ("-std=c++17",) + DEFAULT.flags()
    assert cuda.compile_options(None) == ("-std=c++17",)


def test_adam_operation_is_optim_adam(tmp_path):
    """The Adam elementwise kernel's C body, compiled with the host C++ compiler around float
    variables, computes what ``minimaml.optim.Adam`` does (for three steps)."""
    from minimaml.gpu import cuda
    from minimaml.gpu.emulated import find_compiler
    from minimaml.optim import Adam
    grads = np.array([[0.2, -0.3, 1e-4], [0.1, 0.5, -2.0], [-0.4, 0.0, 3.0]])
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    program = tmp_path / "adam.cpp"
    program.write_text("""
        #include <cmath>
        #include <cstdio>
        using std::sqrt;
        int main() {
            float theta[3] = {0.5f, -1.0f, 2.0f}, m[3] = {0, 0, 0}, v[3] = {0, 0, 0};
            float grads[3][3] = {%s};
            float lr = %r, b1 = %r, b2 = %r, eps = %r;
            for (int t = 1; t <= 3; ++t)
                for (int i = 0; i < 3; ++i) {
                    float grad = grads[t - 1][i], c1 = 1 - std::pow(b1, t), c2 = 1 - std::pow(b2, t);
                    float& th = theta[i]; float& mi = m[i]; float& vi = v[i];
                    #define theta th
                    #define m mi
                    #define v vi
                    %s
                    #undef theta
                    #undef m
                    #undef v
                }
            std::printf("%%.9g %%.9g %%.9g\\n", theta[0], theta[1], theta[2]);
        }
    """ % (", ".join(f"{{{', '.join(map(str, g))}}}" for g in grads), lr, b1, b2, eps, cuda.ADAM_OPERATION))
    exe = tmp_path / "adam"
    subprocess.run([find_compiler(), "-std=c++17", str(program), "-o", str(exe)], check=True)
    got = np.array(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split(),
                   dtype=float)
    adam, theta = Adam(lr, b1, b2, eps), np.array([0.5, -1.0, 2.0])
    for g in grads:
        theta = adam.step(theta, g)
    np.testing.assert_allclose(got, theta, rtol=1e-6)   # float32 against float64
    assert not np.allclose(got, [0.5, -1.0, 2.0])


def _numpy_cupy(tmp_path):
    """A stand-in for CuPy built from NumPy and the CPU build of the kernels: enough of CuPy's API
    for minimaml.gpu.cuda, with RawModule compiling the given source and options with g++ and
    cuda_emulation.h. It checks, without a GPU, how cuda.py reads, configures and launches."""
    import ctypes
    import types

    from minimaml.gpu import emulated
    cp = types.ModuleType("cupy")
    cp.__version__ = "numpy-stand-in"
    cp.float32, cp.ndarray = np.float32, np.ndarray
    cp.asarray = lambda a, dtype=None: np.asarray(a, dtype=dtype)
    cp.ascontiguousarray, cp.empty, cp.zeros = np.ascontiguousarray, np.empty, np.zeros
    cp.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
                                    Device=lambda: types.SimpleNamespace(id=0))
    entry = {"maml_fused_meta_grad": "mm_launch_maml_fused", "batched_update": "mm_launch_batched_update"}

    class RawModule:
        def __init__(self, code, options):
            assert code in (_source.read_source("maml_fused.cu"), _source.read_source("batched_update.cu"))
            assert options[0] == "-std=c++17"
            lib_path = tmp_path / f"lib{len(list(tmp_path.iterdir()))}.so"
            subprocess.run([emulated.find_compiler(), "-O1", "-std=c++20", "-shared", "-fPIC", "-pthread",
                            "-Wno-unknown-pragmas", f"-I{_source.kernel_dir()}", *options[1:],
                            str(_source.kernel_dir() / "emulated_launch.cpp"), "-o", str(lib_path)], check=True)
            self.lib = ctypes.CDLL(str(lib_path))

        def get_function(self, name):
            fn = getattr(self.lib, entry[name])

            def launch(grid, block, args):
                assert len(grid) == len(block) == 1
                c_args = []
                for a in args:
                    if isinstance(a, np.ndarray):
                        assert a.dtype == np.float32 and a.flags.c_contiguous
                        c_args.append(ctypes.c_void_p(a.ctypes.data))
                    elif isinstance(a, np.float32):
                        c_args.append(ctypes.c_float(a))
                    else:
                        assert isinstance(a, np.int32), f"kernel argument {a!r} must be np.int32"
                        c_args.append(ctypes.c_int(a))
                error = ctypes.create_string_buffer(256)
                assert fn(ctypes.c_int(grid[0]), ctypes.c_int(block[0]), *c_args, error, ctypes.c_int(256)) == 0
            return launch

    cp.RawModule = RawModule
    return cp


def test_cuda_module_launches_the_kernel_correctly(monkeypatch, tmp_path):
    """minimaml.gpu.cuda end to end with the NumPy stand-in for CuPy: argument order, scalar types,
    the zeroed outputs, launch sizes; the result must match the float64 hvp route."""
    from functools import partial

    from minimaml.meta.maml import meta_value_and_grad
    hvp_meta_value_and_grad = partial(meta_value_and_grad, method="hvp")
    from minimaml.gpu import cuda
    monkeypatch.setitem(sys.modules, "cupy", _numpy_cupy(tmp_path))
    monkeypatch.setattr(cuda, "_modules", {})
    monkeypatch.setattr(cuda, "_checked_cupy", None)
    net, theta, xs, ys, xq, yq = _small_problem()
    for steps, first_order in ((2, False), (1, True)):
        loss, grad = cuda.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.05, steps, first_order, threads=16)
        ref_loss, ref_grad = hvp_meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.05, steps,
                                                     first_order=first_order)
        assert loss.shape == () and grad.shape == (net.num_params,)
        assert abs(float(loss) - ref_loss) <= 1e-5 * ref_loss
        assert np.max(np.abs(grad - ref_grad)) <= 1e-4 * np.max(np.abs(ref_grad))
    assert len(cuda._modules) == 1   # compiled once for the configuration, reused
    theta32, grads = theta.astype(np.float32), np.ones((3, net.num_params), np.float32)
    np.testing.assert_allclose(cuda.batched_update(theta32, grads, 0.5), theta32 - 0.5 * grads, rtol=1e-6)
