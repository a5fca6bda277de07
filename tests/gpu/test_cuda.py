"""The fused kernel on a real GPU through CuPy, against the float64 NumPy "hvp" route.

Runs only where CuPy and a CUDA GPU are present (``bench/gpu_check.sh`` runs it on a GPU machine);
elsewhere the module is skipped with the reason. The CPU-side checks of the same code live in
test_kernels.py (compilation with nvcc, no spills, errors without CuPy), test_nvrtc.py (compilation
with NVRTC and the options below) and test_emulated.py (the same kernel source, run on the CPU,
against the same reference and tolerance).

Tolerance as in test_emulated.py: loss 1e-5 relative, gradient 1e-4 max-norm relative.
"""

import numpy as np
import pytest

from minimaml.gpu import _source, cuda
from minimaml.optim import Adam

from functools import partial

from minimaml.meta.maml import meta_value_and_grad
hvp_meta_value_and_grad = partial(meta_value_and_grad, method="hvp")   # the fast NumPy route

_ok, _reason = cuda.available()
if not _ok:
    pytest.skip(f"needs CuPy and a CUDA GPU: {_reason}", allow_module_level=True)

import cupy  # noqa: E402  (only reached with a GPU)

from tests.gpu.test_emulated import GRAD_RTOL, LOSS_RTOL, problem, rel_err  # noqa: E402


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("tasks", [25, 1024])
def test_kernel_matches_hvp_route(activation, steps, first_order, tasks):
    net, theta, xs, ys, xq, yq = problem((1, 40, 40, 1), activation, tasks, 10, 10)
    loss, grad = cuda.meta_value_and_grad(net, cupy.asarray(theta, cupy.float32), cupy.asarray(xs),
                                          cupy.asarray(ys), cupy.asarray(xq), cupy.asarray(yq),
                                          0.01, steps, first_order)
    assert isinstance(grad, cupy.ndarray) and grad.dtype == cupy.float32 and loss.shape == ()
    ref_loss, ref_grad = hvp_meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.01, steps,
                                                 first_order=first_order)
    err = rel_err(grad.get(), ref_grad)
    print(f"\nT={tasks} {activation} S={steps} first_order={first_order}: grad max rel err {err:.1e}")
    assert abs(float(loss) - ref_loss) <= LOSS_RTOL * ref_loss
    assert err <= GRAD_RTOL


def test_other_configuration_and_numpy_inputs():
    # 4 layers with θ and g in global memory; NumPy inputs are copied to the GPU.
    net, theta, xs, ys, xq, yq = problem((3, 64, 64, 64, 2), "tanh", 7, 5, 6, seed=1)
    loss, grad = cuda.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.05, 3)
    ref_loss, ref_grad = hvp_meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.05, 3)
    assert rel_err(grad.get(), ref_grad) <= GRAD_RTOL
    assert abs(float(loss) - ref_loss) <= LOSS_RTOL * ref_loss


def test_cupy_gives_nvrtc_the_options_of_nvrtc_options(monkeypatch):
    """test_nvrtc.py compiles the kernels in CI with cuda.nvrtc_options, standing in for CuPy. Here
    CuPy's own call to NVRTC is watched: it must get those options (its -I folders aside), so a
    CuPy that passes other ones shows up."""
    from cupy.cuda import compiler
    seen = []
    compile_program = compiler._NVRTCProgram.compile

    def spy(self, options=(), *args, **kwargs):
        seen.append(tuple(options))
        return compile_program(self, options, *args, **kwargs)

    monkeypatch.setattr(compiler._NVRTCProgram, "compile", spy)
    monkeypatch.setenv("CUPY_CACHE_IN_MEMORY", "1")   # compile now, not load CuPy's cached binary
    config = _source.KernelConfig((1, 5, 1), "relu", 3, 4)   # compiled by no other test
    module = cupy.RawModule(code=_source.read_source("maml_fused.cu"), options=cuda.compile_options(config))
    module.get_function("maml_fused_meta_grad")   # CuPy compiles on first use
    arch = cupy.cuda.Device().compute_capability
    assert [o for o in seen[-1] if not o.startswith("-I")] == list(cuda.nvrtc_options(config, arch))


def test_batched_update():
    rng = np.random.default_rng(0)
    theta, grads = rng.normal(size=1761).astype(np.float32), rng.normal(size=(25, 1761)).astype(np.float32)
    out = cuda.batched_update(cupy.asarray(theta), cupy.asarray(grads), 0.01).get()
    np.testing.assert_allclose(out, theta - np.float32(0.01) * grads, rtol=1e-6, atol=1e-7)


def test_adam_update_matches_optim_adam():
    rng = np.random.default_rng(1)
    theta = rng.normal(size=100)
    grads = rng.normal(size=(5, 100))
    t_gpu = cupy.asarray(theta, cupy.float32)
    m, v = cupy.zeros(100, cupy.float32), cupy.zeros(100, cupy.float32)
    adam = Adam(1e-2)
    for t, g in enumerate(grads, start=1):
        assert cuda.adam_update(t_gpu, cupy.asarray(g, cupy.float32), m, v, t, 1e-2) is t_gpu
        theta = adam.step(theta, g)
    np.testing.assert_allclose(t_gpu.get(), theta, rtol=1e-5, atol=1e-6)


def test_training_steps_lower_the_meta_loss():
    net, theta, xs, ys, xq, yq = problem((1, 40, 40, 1), "relu", 25, 10, 10, seed=2)
    theta = cupy.asarray(theta, cupy.float32)
    m, v = cupy.zeros_like(theta), cupy.zeros_like(theta)
    losses = []
    for t in range(1, 201):
        loss, grad = cuda.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.01, 1)
        cuda.adam_update(theta, grad, m, v, t, 1e-3)
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0]
