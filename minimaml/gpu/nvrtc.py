"""NVRTC without a GPU: compile the kernels exactly as ``method="cuda"`` does, in every CI run.

``method="cuda"`` gives ``kernels/*.cu`` to ``cupy.RawModule``, which compiles them with NVRTC,
CUDA's runtime compiler, on the user's GPU machine. nvcc, which tests/gpu/test_kernels.py runs,
is another front end with other defaults and the host's C++ headers, so a source that nvcc
accepts can still be refused by NVRTC, and that would only show on a GPU. NVRTC itself needs no
GPU and no driver: it is a library, libnvrtc.so.12, from the PyPI package nvidia-cuda-nvrtc-cu12
(in minimaml's ``test`` extras). This module calls it through ctypes with the options of
``cuda.nvrtc_options``: ours plus what CuPy adds, the one list both modules use. (CuPy's own
compile helper cannot stand in: it asks the driver for the GPU's architecture first.)

* ``compile_to_ptx(source, options, name="kernel.cu")`` -> the PTX text; raises ``NVRTCError``,
  which carries NVRTC's log (its error messages), when NVRTC refuses the source.
* ``compile_kernel(source_name, config=None, arch=cuda.REFERENCE_ARCH)`` -> the PTX of one file of
  ``kernels/`` compiled as ``method="cuda"`` compiles it for ``config`` (a ``KernelConfig`` for
  maml_fused.cu, None for batched_update.cu) on a GPU of compute capability ``arch``.
* ``version()`` -> NVRTC's (major, minor); ``library_path()`` -> where libnvrtc.so.12 is.

Not compiled here: the Adam step, ``cuda.adam_update``. It is a ``cupy.ElementwiseKernel``, whose
CUDA source CuPy writes itself around ``cuda.ADAM_OPERATION`` with CuPy's own headers; its
arithmetic is checked with the host compiler in tests/gpu/test_kernels.py.
Linux only (the package's library is a .so there), like the CPU build of the kernels.
"""

import ctypes
import functools
import importlib.util
from pathlib import Path

from . import _source, cuda

PACKAGE = "nvidia-cuda-nvrtc-cu12"
LIBRARY = "libnvrtc.so.12"
INSTALL_HINT = f"pip install {PACKAGE}, or the test extras: pip install -e '.[test]'"


class NVRTCError(RuntimeError):
    """NVRTC refused a program. ``log`` is NVRTC's program log: its errors and warnings."""

    def __init__(self, message, log=""):
        super().__init__(message)
        self.log = log


def library_path(module="nvidia.cuda_nvrtc"):
    """libnvrtc.so.12 in the ``lib/`` folder of the installed nvidia-cuda-nvrtc-cu12, which is the
    module ``nvidia.cuda_nvrtc`` (``nvidia`` is a namespace package shared by NVIDIA's wheels)."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:   # not even the `nvidia` namespace is installed
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "lib" / LIBRARY
        if path.is_file():
            return path
    raise RuntimeError(
        f"NVRTC ({LIBRARY}) not found: it comes from the PyPI package {PACKAGE} (module {module}),"
        f" which the GPU kernel's compile check needs: {INSTALL_HINT}"
    )


@functools.cache
def _library():
    lib = ctypes.CDLL(str(library_path()))
    program, program_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
    strings, size_p, text = ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p
    int_p = ctypes.POINTER(ctypes.c_int)
    signatures = {   # every nvrtc* function returns an nvrtcResult (an int, 0 = NVRTC_SUCCESS)
        "nvrtcVersion": [int_p, int_p],
        "nvrtcCreateProgram": [program_p, text, text, ctypes.c_int, strings, strings],
        "nvrtcCompileProgram": [program, ctypes.c_int, strings],
        "nvrtcGetProgramLogSize": [program, size_p],
        "nvrtcGetProgramLog": [program, ctypes.c_char_p],
        "nvrtcGetPTXSize": [program, size_p],
        "nvrtcGetPTX": [program, ctypes.c_char_p],
        "nvrtcDestroyProgram": [program_p],
    }
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [ctypes.c_int], ctypes.c_char_p
    return lib


def _check(lib, result, call):
    if result != 0:
        raise NVRTCError(f"{call} failed: {lib.nvrtcGetErrorString(result).decode()}")


def _read(lib, get_size, get_text, program):
    """One of the program's texts (log or PTX): ask for its size, then for the text."""
    size = ctypes.c_size_t()
    _check(lib, get_size(program, ctypes.byref(size)), get_size.__name__)
    buffer = ctypes.create_string_buffer(size.value)
    _check(lib, get_text(program, buffer), get_text.__name__)
    return buffer.value.decode(errors="replace")   # the log quotes source lines, which may be UTF-8


def version():
    """NVRTC's version, (major, minor)."""
    lib = _library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def compile_to_ptx(source, options=(), name="kernel.cu"):
    """Compile CUDA C++ ``source`` with NVRTC and ``options``; return the PTX text.

    ``name`` is the file name NVRTC's messages give the source. If NVRTC refuses the source,
    raises ``NVRTCError`` with NVRTC's log in its message and in its ``log`` attribute.
    """
    lib = _library()
    program = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        args = (ctypes.c_char_p * len(options))(*(option.encode() for option in options))
        result = lib.nvrtcCompileProgram(program, len(options), args)
        if result != 0:
            log = _read(lib, lib.nvrtcGetProgramLogSize, lib.nvrtcGetProgramLog, program)
            raise NVRTCError(
                f"NVRTC could not compile {name} ({lib.nvrtcGetErrorString(result).decode()}) with options"
                f" {' '.join(options)}:\n{log}", log)
        return _read(lib, lib.nvrtcGetPTXSize, lib.nvrtcGetPTX, program)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def compile_kernel(source_name, config=None, arch=cuda.REFERENCE_ARCH):
    """The PTX of ``kernels/<source_name>`` compiled as ``method="cuda"`` compiles it: the text
    ``cuda.py`` gives ``cupy.RawModule``, with ``cuda.nvrtc_options(config, arch)``."""
    options = cuda.nvrtc_options(config, arch)
    return compile_to_ptx(_source.read_source(source_name), options, name=source_name)
