"""The kernels through NVRTC with exactly the options method="cuda" gives it (``minimaml.gpu.nvrtc``).

test_kernels.py compiles them with nvcc; on the GPU, CuPy compiles them with NVRTC, a different
front end. Here every kernel file and every configuration test_kernels.py compiles goes through
NVRTC as well, with ``cuda.nvrtc_options``, so a source that only NVRTC refuses fails in CI rather
than on a GPU. No GPU needed, and nothing is skipped: without NVRTC (the PyPI package
nvidia-cuda-nvrtc-cu12, in minimaml's test extras) these tests fail, saying what to install.
"""

import re
import subprocess

import pytest

from minimaml.gpu import _source, cuda, nvrtc
from tests.gpu.test_kernels import CONFIGURATIONS, DEFAULT, ENTRY_POINTS, NVCC


def entry_points(ptx):
    """The kernels a PTX module defines: ``.entry <name>(``. CuPy's ``get_function(name)`` looks
    them up by that name, which is the source's own because the kernels are ``extern "C"``."""
    return re.findall(r"\.entry\s+(\w+)\s*\(", ptx)


def test_options_are_ours_and_cupys():
    assert cuda.nvrtc_options(DEFAULT) == cuda.compile_options(DEFAULT) + (
        "-ftz=true", "-arch=sm_90", "--device-as-default-execution-space")
    assert cuda.nvrtc_options(None, arch="80")[-2] == "-arch=sm_80"


@pytest.mark.parametrize("source, entry", ENTRY_POINTS)
def test_every_kernel_compiles_as_method_cuda_compiles_it(source, entry):
    config = DEFAULT if source == "maml_fused.cu" else None   # batched_update.cu has no configuration
    ptx = nvrtc.compile_kernel(source, config)
    assert entry_points(ptx) == [entry]
    assert ".target sm_90" in ptx


@pytest.mark.parametrize("config", CONFIGURATIONS)
def test_other_configurations_compile(config):
    assert entry_points(nvrtc.compile_kernel("maml_fused.cu", config)) == ["maml_fused_meta_grad"]


def test_kernels_include_no_header():
    # cuda.nvrtc_options leaves out the -I folders CuPy adds (its headers, CUDA's): that is exact
    # only while the kernels include nothing.
    for source, _ in ENTRY_POINTS:
        assert not re.search(r"^\s*#\s*include", _source.read_source(source), re.MULTILINE), source


# ------------------------------------------------------------------------------------------------
# The check can fail, with NVRTC's own messages.
# ------------------------------------------------------------------------------------------------
def test_a_broken_source_fails_with_nvrtcs_log():
    source = _source.read_source("batched_update.cu").replace("theta_out[i] =", "theta_out[i] = oops +")
    with pytest.raises(nvrtc.NVRTCError, match=r"NVRTC could not compile batched_update\.cu") as error:
        nvrtc.compile_to_ptx(source, cuda.nvrtc_options(), name="batched_update.cu")
    assert 'identifier "oops" is undefined' in error.value.log
    assert error.value.log in str(error.value)


def test_kernel_limits_fail_through_nvrtc_too():
    # A width the kernel does not support (KernelConfig refuses it first): its static_assert fires.
    options = cuda.nvrtc_options() + ("-DMM_LAYERS=2", "-DMM_SIZE0=1", "-DMM_SIZE1=65", "-DMM_SIZE2=1")
    with pytest.raises(nvrtc.NVRTCError, match=r"(?s)static assertion failed.*must be 1\.\.64"):
        nvrtc.compile_to_ptx(_source.read_source("maml_fused.cu"), options, name="maml_fused.cu")


# A kernel that nvcc compiles but NVRTC refuses: NVRTC has no host C++ headers, so <cstdio> is not
# there (CUDA's printf needs no header at all). The kind of slip this check exists for.
PRINTF_KERNEL = '#include <cstdio>\nextern "C" __global__ void hello() { printf("%d\\n", threadIdx.x); }\n'


def test_nvrtc_refuses_a_host_header_that_nvcc_accepts(tmp_path):
    with pytest.raises(nvrtc.NVRTCError, match='could not open source file "cstdio"'):
        nvrtc.compile_to_ptx(PRINTF_KERNEL, cuda.nvrtc_options(), name="hello.cu")
    nvrtc.compile_to_ptx(PRINTF_KERNEL.replace("#include <cstdio>\n", ""), cuda.nvrtc_options())
    if NVCC is not None:   # the other half, where nvcc is installed: nvcc takes the same source
        (tmp_path / "hello.cu").write_text(PRINTF_KERNEL)
        done = subprocess.run([NVCC, "-ptx", "-std=c++17", "hello.cu"], cwd=tmp_path,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_missing_nvrtc_says_what_to_install():
    with pytest.raises(RuntimeError, match=r"nvidia-cuda-nvrtc-cu12.*pip install -e '\.\[test\]'"):
        nvrtc.library_path("nvidia.no_such_module")
    assert nvrtc.library_path().name == "libnvrtc.so.12"
    assert nvrtc.version() >= (12, 0)
