"""The CUDA kernels, compiled for the CPU with kernels/cuda_emulation.h, against the float64 NumPy
"hvp" route (``minimaml.meta_value_and_grad(..., method="hvp")``).

Tolerance: the kernel computes in float32. We require
    |loss − loss_ref| / |loss_ref| <= 1e-5   and   max_i |g_i − g_ref,i| / max_i |g_ref,i| <= 1e-4
(max-norm relative error of the gradient; measured about 1e-7 to 1e-6). Each second-order case also
checks that the Hessian terms move the gradient by far more than that tolerance, so the comparison
would catch a kernel that skipped or botched the walk back through the steps.
"""

import os

import numpy as np
import pytest

from minimaml.gpu import emulated
from minimaml.gpu._source import KernelConfig
from minimaml.nn import MLP

from functools import partial

from minimaml.meta.maml import meta_value_and_grad
hvp_meta_value_and_grad = partial(meta_value_and_grad, method="hvp")   # the fast NumPy route

GRAD_RTOL = 1e-4
LOSS_RTOL = 1e-5


def problem(sizes, activation, tasks, k_support, k_query, seed=0):
    """A sinusoid-like meta-batch for ``MLP(sizes)``: inputs U[−5, 5], targets a·sin(x + φ) per task."""
    rng = np.random.default_rng(seed)
    net = MLP(list(sizes), activation)
    n_in, n_out = sizes[0], sizes[-1]
    amp = rng.uniform(0.1, 5.0, (tasks, 1, n_out))
    phase = rng.uniform(0, np.pi, (tasks, 1, n_out))
    xs = rng.uniform(-5, 5, (tasks, k_support, n_in))
    xq = rng.uniform(-5, 5, (tasks, k_query, n_in))
    target = lambda x: amp * np.sin(x.sum(-1, keepdims=True) + phase)
    return net, net.init(seed), xs, target(xs), xq, target(xq)


def rel_err(got, ref):
    return float(np.max(np.abs(np.asarray(got, np.float64) - ref)) / np.max(np.abs(ref)))


def compare(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order, **kwargs):
    loss, grad = emulated.meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order,
                                              **kwargs)
    ref_loss, ref_grad = hvp_meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps,
                                                 first_order=first_order)
    assert isinstance(loss, float) and grad.dtype == np.float32 and grad.shape == (net.num_params,)
    err = rel_err(grad, ref_grad)
    print(f"\n{net} S={steps} first_order={first_order}: loss rel err "
          f"{abs(loss - ref_loss) / abs(ref_loss):.1e}, grad max rel err {err:.1e}")
    assert abs(loss - ref_loss) <= LOSS_RTOL * abs(ref_loss)
    assert err <= GRAD_RTOL
    if steps > 0 and not first_order:   # the H terms matter far beyond the tolerance
        _, fo_grad = hvp_meta_value_and_grad(net, theta, xs, ys, xq, yq, inner_lr, steps, first_order=True)
        assert rel_err(fo_grad, ref_grad) > 100 * GRAD_RTOL
    return err


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
def test_paper_network_matches_hvp_route(activation, steps, first_order):
    # 1-40-40-1, K = Kq = 10 as in the MAML paper; α = 0.05 so that 3 steps move θ visibly.
    compare(*problem((1, 40, 40, 1), activation, 4, 10, 10), 0.05, steps, first_order)


@pytest.mark.parametrize("params_in_shared", [True, False], ids=["theta-shared", "theta-global"])
def test_four_layers_multi_output_matches_hvp_route(params_in_shared):
    # 4 weight layers, 3 inputs, 2 outputs, K ≠ Kq, 7 threads per block (fewer than most loops'
    # work, not a power of two): every index computation and both homes of θ and g.
    compare(*problem((3, 7, 5, 6, 2), "tanh", 3, 4, 6, seed=1), 0.1, 2, False,
            threads=7, params_in_shared=params_in_shared)


def test_linear_model_and_zero_steps_match_hvp_route():
    net, theta, xs, ys, xq, yq = problem((2, 3), "relu", 3, 5, 4, seed=2)   # one layer: no activation
    compare(net, theta, xs, ys, xq, yq, 0.1, 2, False)
    compare(*problem((1, 40, 40, 1), "relu", 2, 10, 10), 0.05, 0, False)   # S = 0: ∇L_query(θ)


def test_many_tasks_and_float64_inputs():
    # T = 32 blocks one after another, 64 threads each; float64 arrays are computed in float32.
    net, theta, xs, ys, xq, yq = problem((1, 40, 40, 1), "relu", 32, 10, 10, seed=3)
    assert theta.dtype == np.float64
    compare(net, theta, xs, ys, xq, yq, 0.01, 1, False, threads=64)


def test_meta_value_and_grad_routes_to_emulated():
    from minimaml.meta.maml import meta_value_and_grad
    args = problem((1, 40, 40, 1), "tanh", 3, 10, 10, seed=4) + (0.05, 2)
    loss, grad = meta_value_and_grad(*args, method="cuda-emulated")
    ref_loss, ref_grad = meta_value_and_grad(*args, method="hvp")
    assert rel_err(grad, ref_grad) <= GRAD_RTOL and abs(loss - ref_loss) <= LOSS_RTOL * ref_loss


def test_batched_update_kernel():
    rng = np.random.default_rng(5)
    theta, grads = rng.normal(size=1761).astype(np.float32), rng.normal(size=(25, 1761)).astype(np.float32)
    out = emulated.batched_update(theta, grads, 0.01)
    assert out.shape == (25, 1761) and out.dtype == np.float32
    np.testing.assert_array_equal(out, theta - np.float32(0.01) * grads)


# ------------------------------------------------------------------------------------------------
# Non-finite input: NaN and inf come out where the NumPy route has them.
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("array, index, value", [
    ("xs", (1, 3, 0), np.nan),   # one support point of task 1
    ("theta", 0, np.inf),        # the weight W_0[0, 0]: z_0 = ±inf at every point
], ids=["nan-in-xs", "inf-in-theta"])
def test_non_finite_input_matches_hvp_route(activation, array, index, value):
    """The kernel's loss and gradient are NaN, ±inf or finite exactly where the hvp route's are,
    and agree where finite. Two ways it went wrong: a ReLU written fmaxf(z, 0) turned a NaN input
    into 0 (a finite loss beside an all-NaN gradient), and R{h_0}·W = 0·inf made NaN out of a
    tanh network's finite Hessian terms when a first-layer weight is infinite."""
    net, theta, xs, ys, xq, yq = problem((1, 40, 40, 1), activation, 3, 10, 10)
    data = dict(theta=theta, xs=xs, ys=ys, xq=xq, yq=yq)
    data[array] = data[array].copy()
    data[array][index] = value
    loss, grad = emulated.meta_value_and_grad(net, **data, inner_lr=0.05, steps=2)
    with np.errstate(invalid="ignore", over="ignore"):   # NumPy warns about the NaNs it makes
        ref_loss, ref_grad = hvp_meta_value_and_grad(net, **data, inner_lr=0.05, steps=2)
    for got, ref in ((np.float64(loss), np.float64(ref_loss)), (grad, ref_grad)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
        np.testing.assert_array_equal(got[np.isinf(ref)], ref[np.isinf(ref)])   # and the same sign
    if np.isfinite(ref_loss):
        assert abs(loss - ref_loss) <= LOSS_RTOL * abs(ref_loss)
    finite = np.isfinite(ref_grad)
    if finite.any():
        assert rel_err(grad[finite], ref_grad[finite]) <= GRAD_RTOL


# ------------------------------------------------------------------------------------------------
# Bad input: clear errors before anything runs.
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, error, message", [
    (lambda a: a.update(theta=a["theta"][:-1]), ValueError, r"theta must have shape \(P,\) = \(1761,\)"),
    (lambda a: a.update(theta=np.zeros(1761, dtype=np.int64)), TypeError, "float32 or float64.*int64"),
    (lambda a: a.update(xs=[[[0.0]]]), TypeError, "xs must be an array"),
    (lambda a: a.update(xs=a["xs"][..., 0]), ValueError, r"xs must have shape \(T, N, 1\)"),
    (lambda a: a.update(yq=a["yq"][:1]), ValueError, "same number of tasks T"),
    (lambda a: a.update(ys=a["ys"][:, :3]), ValueError, "same number of points N"),
    (lambda a: a.update(inner_lr=0.0), ValueError, r"inner_lr \(α\) must be a finite number > 0"),
    (lambda a: a.update(inner_lr=float("nan")), ValueError, r"inner_lr \(α\) must be a finite number > 0"),
    (lambda a: a.update(steps=-1), ValueError, "steps must be >= 0"),
    (lambda a: a.update(steps=1.5), TypeError, "steps must be an integer >= 0"),
    (lambda a: a.update(first_order="yes"), TypeError, "first_order must be True or False"),
    (lambda a: a.update(net=object()), TypeError, "the CUDA kernel runs a minimaml MLP"),
    (lambda a: a.update(net=MLP([1, 40, 40, 1], param="ntk")), TypeError, "standard parameterisation.*'autodiff'"),
])
def test_rejects_bad_input(change, error, message):
    net, theta, xs, ys, xq, yq = problem((1, 40, 40, 1), "relu", 2, 10, 10)
    args = dict(net=net, theta=theta, xs=xs, ys=ys, xq=xq, yq=yq, inner_lr=0.01, steps=1, first_order=False)
    change(args)
    with pytest.raises(error, match=message):
        emulated.meta_value_and_grad(**args)


@pytest.mark.parametrize("sizes, k, message", [
    ((1, 8, 8, 8, 8, 1), 5, "1 to 4 weight layers"),
    ((1, 65, 1), 5, "widths 1 to 64"),
    ((1, 40, 40, 1), 100, "shared memory per block"),
])
def test_rejects_networks_beyond_the_kernel_limits(sizes, k, message):
    net, theta, xs, ys, xq, yq = problem(sizes, "relu", 2, k, k)
    with pytest.raises(ValueError, match=message):
        emulated.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.01, 1)


def test_rejects_unknown_activation():
    net, theta, xs, ys, xq, yq = problem((1, 8, 1), "relu", 2, 5, 5)
    net.activation = "sigmoid"
    with pytest.raises(ValueError, match="activations.*sigmoid"):
        emulated.meta_value_and_grad(net, theta, xs, ys, xq, yq, 0.01, 1)


def test_batched_update_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"theta \(P,\) and grads \(T, P\)"):
        emulated.batched_update(np.zeros(3, np.float32), np.zeros((2, 4), np.float32), 0.1)


def test_no_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    with pytest.raises(RuntimeError, match="needs a C\\+\\+20 compiler.*no-such-c\\+\\+-compiler"):
        emulated.find_compiler()


def test_compile_error_shows_the_compiler_output(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIMAML_CACHE", str(tmp_path))
    command = emulated.compile_command   # the real command, with an unsupported layer count
    monkeypatch.setattr(emulated, "compile_command", lambda *a: command(*a) + ["-UMM_LAYERS", "-DMM_LAYERS=9"])
    config = KernelConfig((1, 4, 1), "relu", 3, 3, threads=4)
    with pytest.raises(RuntimeError, match="(?s)compiling the emulated CUDA kernel failed.*MM_LAYERS must be 1..4"):
        emulated.load_library(config)
    assert not list(tmp_path.iterdir()), "a failed build must leave no file behind"


def test_library_cache_builds_once_and_atomically(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIMAML_CACHE", str(tmp_path))
    config = KernelConfig((1, 4, 1), "relu", 3, 3, threads=4)
    path = emulated.library_path(config)
    assert path.parent == tmp_path and not path.exists()
    emulated.load_library(config)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]   # no temporary left over
    mtime = os.stat(path).st_mtime_ns
    emulated._libraries.clear()   # as in a new process: finds the file, does not rebuild
    emulated.load_library(config)
    assert os.stat(path).st_mtime_ns == mtime
    # Another configuration is another library; the block size is not part of the CPU build.
    assert emulated.library_path(KernelConfig((1, 4, 1), "tanh", 3, 3, threads=4)) != path
    assert emulated.library_path(KernelConfig((1, 4, 1), "relu", 3, 3, threads=9)) == path


def test_tests_build_into_a_temporary_cache(tmp_path_factory):
    # tests/conftest.py points MINIMAML_CACHE at a temporary folder for every test; without it
    # the emulated tests would fill the user's ~/.cache/minimaml.
    config = KernelConfig((1, 4, 1), "relu", 3, 3, threads=4)
    emulated.load_library(config)
    path = emulated.library_path(config)
    assert path.is_file() and path.is_relative_to(tmp_path_factory.getbasetemp()), path
