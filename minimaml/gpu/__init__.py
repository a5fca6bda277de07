"""minimaml on a GPU: the MAML meta-gradient as one fused CUDA kernel (``kernels/maml_fused.cu``).

* ``minimaml.gpu.cuda``: compiles and launches the kernels with CuPy (``method="cuda"``,
  ``minimaml train --device cuda``); the only module that imports CuPy, lazily.
* ``minimaml.gpu.emulated``: the same kernel source compiled for the CPU with
  ``kernels/cuda_emulation.h`` and called through ctypes (``method="cuda-emulated"``).
* ``minimaml.gpu.nvrtc``: compiles the kernels with NVRTC and exactly the options ``method="cuda"``
  uses, without a GPU or CuPy (the compile check that runs in CI).
* ``minimaml.gpu._source``: what both back-ends share: the sources, ``KernelConfig``
  (compile-time sizes, limits, memory layout) and the argument checks.

Importing this package imports neither back-end: ``from minimaml.gpu import cuda, emulated``.
"""
